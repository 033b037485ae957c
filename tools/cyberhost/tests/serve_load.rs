//! `cyberhost serve` under load on loopback: 200 concurrent submissions against a queue of 50
//! (every request answered 202 or 429, every accepted job succeeds with a playable MP4), then
//! SIGTERM in the middle of a run and a restart: every accepted job completes exactly once.

mod serve_util;

use serve_util::*;
use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const SUBMISSIONS: usize = 200;
const MAX_QUEUE: usize = 50;

/// Submit `n` small jobs at once; returns (ids accepted, number refused with 429).
fn burst(base: &str, n: usize) -> (Vec<String>, usize) {
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let base = base.to_string();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut parts = small_job();
                let seed = i.to_string();
                parts.retain(|p| p.name != "seed");
                parts.push(field("seed", &seed));
                barrier.wait();
                post_job(&base, &parts, &[])
            })
        })
        .collect();
    let mut ids = Vec::new();
    let mut refused = 0;
    for h in handles {
        let a = h.join().expect("submitter thread");
        match a.status {
            202 => {
                let j = a.json();
                assert_eq!(j["state"], "queued");
                ids.push(j["id"].as_str().unwrap().to_string());
            }
            429 => {
                let s: u64 = a
                    .header("retry-after")
                    .expect("429 without Retry-After")
                    .parse()
                    .expect("Retry-After is seconds");
                assert!(s >= 1);
                refused += 1;
            }
            other => panic!("answer {other} to a valid submission: {}", a.body),
        }
    }
    (ids, refused)
}

/// Count the log lines that report job `id` as succeeded.
fn completions(log: &str, id: &str) -> usize {
    let needle = format!("job {id} succeeded");
    log.lines().filter(|l| l.contains(&needle)).count()
}

#[test]
fn load_then_sigterm_and_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let jobs = tmp.path().join("jobs");
    let q = MAX_QUEUE.to_string();
    let flags = ["--max-queue", q.as_str(), "--workers", "1"];
    let t0 = Instant::now();

    // 1. The burst.
    let server = Server::start(&jobs, &flags);
    let (ids, refused) = burst(&server.base, SUBMISSIONS);
    assert_eq!(ids.len() + refused, SUBMISSIONS, "every request answered");
    assert!(
        ids.len() >= MAX_QUEUE && refused > 0,
        "{} accepted, {refused} refused: the queue bound did not act",
        ids.len()
    );
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "job ids are unique");
    for id in &ids {
        assert_succeeds_with_mp4(&server.base, id);
    }
    let burst_secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "burst: {} accepted, {refused} refused, all succeeded in {burst_secs:.1} s",
        ids.len()
    );

    // 2. A second batch, SIGTERM while a job runs (the default grace lets it finish; the rest
    //    stay queued on disk), then a restart that finishes everything.
    let (more, _) = burst(&server.base, 12);
    assert!(!more.is_empty());
    wait_for(&server.base, &more[0], "started", |j| {
        j["state"] == "running" || j["state"] == "succeeded"
    });
    let status = server.terminate(Duration::from_secs(60));
    assert!(status.success(), "SIGTERM exit: {status:?}");

    let server = Server::start(&jobs, &flags);
    let mut all = ids.clone();
    all.extend(more.iter().cloned());
    for id in &more {
        assert_succeeds_with_mp4(&server.base, id);
    }
    // Jobs of the first burst are still known, succeeded, after the restart.
    for id in &ids {
        let j = request("GET", &server.url(&format!("/v1/jobs/{id}")), &[], None).json();
        assert_eq!(j["state"], "succeeded");
    }
    let log = server.log_text();
    for id in &all {
        assert_eq!(
            completions(&log, id),
            1,
            "job {id} completed other than once:\n{log}"
        );
    }
    eprintln!(
        "load test: {} jobs, total {:.1} s",
        all.len(),
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn sigterm_with_no_grace_checkpoints_the_running_job() {
    let tmp = tempfile::tempdir().unwrap();
    let jobs = tmp.path().join("jobs");
    let flags = ["--workers", "1", "--shutdown-grace", "0"];
    let server = Server::start(&jobs, &flags);
    // A long job (many steps) so SIGTERM lands mid-run, and two queued behind it.
    let mut long = small_job();
    long.retain(|p| p.name != "steps");
    long.push(field("steps", "60"));
    let a = post_job(&server.base, &long, &[]);
    assert_eq!(a.status, 202, "{}", a.body);
    let long_id = a.json()["id"].as_str().unwrap().to_string();
    let queued: Vec<String> = (0..2)
        .map(|_| {
            let a = post_job(&server.base, &small_job(), &[]);
            assert_eq!(a.status, 202, "{}", a.body);
            a.json()["id"].as_str().unwrap().to_string()
        })
        .collect();
    wait_for(&server.base, &long_id, "stepped", |j| {
        j["step"].as_u64().unwrap_or(0) >= 1
    });
    let status = server.terminate(Duration::from_secs(60));
    assert!(status.success(), "SIGTERM exit: {status:?}");
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(jobs.join(&long_id).join("job.json")).unwrap())
            .unwrap();
    assert_eq!(
        record["state"], "queued",
        "checkpointed as queued: {record}"
    );

    let server = Server::start(&jobs, &["--workers", "1"]);
    for id in std::iter::once(&long_id).chain(&queued) {
        let j = wait_final(&server.base, id, &[], Duration::from_secs(600));
        assert_eq!(j["state"], "succeeded", "{j}");
    }
    let j = request(
        "GET",
        &server.url(&format!("/v1/jobs/{long_id}")),
        &[],
        None,
    )
    .json();
    assert_eq!(j["attempts"], 2, "the interrupted job ran again: {j}");
    let log = server.log_text();
    for id in std::iter::once(&long_id).chain(&queued) {
        assert_eq!(completions(&log, id), 1, "job {id}:\n{log}");
    }
}
