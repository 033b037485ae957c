//! `cyberhost serve` API behaviour: bad requests get the documented 4xx with the CLI's
//! messages and the server keeps serving; events match `generate --json`; Range on results;
//! cancel; metrics; the OpenAPI document.

mod serve_util;

use serve_util::*;
use std::time::Duration;

const KEY: &str = "s3cret-key";
const AUTH: (&str, &str) = ("Authorization", "Bearer s3cret-key");

fn with(mut parts: Vec<Part<'static>>, name: &'static str, value: &str) -> Vec<Part<'static>> {
    parts.retain(|p| p.name != name);
    parts.push(Part {
        name,
        file: None,
        data: value.as_bytes().to_vec(),
    });
    parts
}

fn without(mut parts: Vec<Part<'static>>, name: &str) -> Vec<Part<'static>> {
    parts.retain(|p| p.name != name);
    parts
}

fn start_keyed(tmp: &tempfile::TempDir, extra: &[&str]) -> Server {
    let keyfile = tmp.path().join("keys");
    std::fs::write(&keyfile, format!("# keys\n{KEY}\n")).unwrap();
    let mut flags = vec!["--api-key-file", keyfile.to_str().unwrap()];
    flags.extend_from_slice(extra);
    Server::start(&tmp.path().join("jobs"), &flags)
}

#[test]
fn bad_requests_get_documented_4xx_and_the_server_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start_keyed(
        &tmp,
        &["--max-image-bytes", "100000", "--max-audio-seconds", "5"],
    );
    let base = s.base.clone();
    let ct = content_type();
    let post = |parts: Vec<Part>| post_job(&base, &parts, &[AUTH]);
    let raw_post = |ctype: &str, body: &[u8]| {
        request(
            "POST",
            &format!("{base}/v1/jobs"),
            &[AUTH, ("Content-Type", ctype)],
            Some(body),
        )
    };
    let mut truncated = multipart(&small_job());
    truncated.truncate(truncated.len() / 2);
    let bad_png = {
        let mut p = png(64, 64);
        p.truncate(p.len() / 2);
        p
    };
    // Over --max-image-bytes (the cap acts while streaming, before any decoding).
    let big_png = vec![0x89u8; 150_000];

    // (case, answer, expected status, expected text in the error)
    let cases: Vec<(&str, Answer, u16, &str)> = vec![
        (
            "no key",
            post_job(&base, &small_job(), &[]),
            401,
            "missing API key",
        ),
        (
            "wrong key",
            post_job(&base, &small_job(), &[("Authorization", "Bearer nope")]),
            401,
            "wrong API key",
        ),
        (
            "wrong key header",
            post_job(&base, &small_job(), &[("X-API-Key", "s3cret-kez")]),
            401,
            "wrong API key",
        ),
        (
            "not multipart",
            raw_post("application/json", b"{\"image\": 1}"),
            400,
            "multipart",
        ),
        (
            "no content type",
            request("POST", &format!("{base}/v1/jobs"), &[AUTH], Some(b"x")),
            400,
            "multipart",
        ),
        (
            "truncated multipart",
            raw_post(&ct, &truncated),
            400,
            "multipart",
        ),
        (
            "garbage body",
            raw_post(&ct, b"this is not multipart at all"),
            400,
            "multipart",
        ),
        (
            "missing image",
            post(without(small_job(), "image")),
            400,
            "missing part `image`",
        ),
        (
            "missing audio",
            post(without(small_job(), "audio")),
            400,
            "missing part `audio`",
        ),
        (
            "unknown part",
            post(with(small_job(), "colour", "red")),
            400,
            "unknown part `colour`",
        ),
        (
            "duplicate part",
            post({
                let mut p = small_job();
                p.push(field("steps", "3"));
                p
            }),
            400,
            "given twice",
        ),
        (
            "image not an image",
            post({
                let mut p = without(small_job(), "image");
                p.push(file("image", "x.png", b"hello".to_vec()));
                p
            }),
            400,
            "is not a PNG or JPEG image",
        ),
        (
            "truncated image",
            post({
                let mut p = without(small_job(), "image");
                p.push(file("image", "x.png", bad_png.clone()));
                p
            }),
            400,
            "image `x.png`",
        ),
        (
            "audio not WAV",
            post({
                let mut p = without(small_job(), "audio");
                p.push(file("audio", "a.mp3", b"ID3junk".to_vec()));
                p
            }),
            400,
            "is not a readable WAV file",
        ),
        (
            "audio too short",
            post({
                let mut p = without(small_job(), "audio");
                p.push(file("audio", "a.wav", wav(0.01)));
                p
            }),
            400,
            "shorter than one video frame",
        ),
        (
            "audio too long",
            post({
                let mut p = without(small_job(), "audio");
                p.push(file("audio", "a.wav", wav(6.0)));
                p
            }),
            413,
            "--max-audio-seconds",
        ),
        (
            "image too large",
            post({
                let mut p = without(small_job(), "image");
                p.push(file("image", "big.png", big_png.clone()));
                p
            }),
            413,
            "--max-image-bytes",
        ),
        (
            "seed not a number",
            post(with(small_job(), "seed", "abc")),
            400,
            "invalid value 'abc' for '--seed <SEED>'",
        ),
        (
            "seed negative",
            post(with(small_job(), "seed", "-1")),
            400,
            "'--seed <SEED>'",
        ),
        (
            "steps zero",
            post(with(small_job(), "steps", "0")),
            400,
            "--steps 0: use 1..=",
        ),
        (
            "steps float",
            post(with(small_job(), "steps", "2.5")),
            400,
            "'--steps <STEPS>'",
        ),
        (
            "guidance negative",
            post(with(small_job(), "guidance", "-2")),
            400,
            "--guidance -2: use a finite scale",
        ),
        (
            "guidance NaN",
            post(with(small_job(), "guidance", "NaN")),
            400,
            "use a finite scale",
        ),
        (
            "size not WxH",
            post(with(small_job(), "size", "64")),
            400,
            "`64` is not WxH",
        ),
        (
            "size not a multiple",
            post(with(small_job(), "size", "63x64")),
            400,
            "--size 63x64: width and height must be positive multiples",
        ),
        (
            "hand clarity out of range",
            post(with(small_job(), "hand_clarity", "2")),
            400,
            "--hand-clarity 2: use a score in [0, 1]",
        ),
        (
            "huge field",
            post(with(small_job(), "seed", &"9".repeat(10_000))),
            413,
            "longer than 256 bytes",
        ),
        (
            "pose not JSON",
            post({
                let mut p = small_job();
                p.push(file("pose", "p.json", b"{nope".to_vec()));
                p
            }),
            400,
            "not a valid pose JSON",
        ),
        (
            "pose wrong keypoints",
            post({
                let mut p = small_job();
                p.push(file(
                    "pose",
                    "p.json",
                    b"{\"keypoints\": [[1,2,1]]}".to_vec(),
                ));
                p
            }),
            400,
            "`keypoints` has 1 entries",
        ),
        (
            "pose unknown key",
            post({
                let mut p = small_job();
                p.push(file("pose", "p.json", b"{\"elbows\": 2}".to_vec()));
                p
            }),
            400,
            "unknown field `elbows`",
        ),
        (
            "pose empty box",
            post({
                let mut p = small_job();
                p.push(file("pose", "p.json", b"{\"face\": [5,5,1,1]}".to_vec()));
                p
            }),
            400,
            "is empty",
        ),
        (
            "status: id not a UUID",
            request("GET", &format!("{base}/v1/jobs/not-a-uuid"), &[AUTH], None),
            400,
            "is not a job id",
        ),
        (
            "status: encoded traversal",
            request(
                "GET",
                &format!("{base}/v1/jobs/..%2F..%2Fetc%2Fpasswd"),
                &[AUTH],
                None,
            ),
            400,
            "is not a job id",
        ),
        (
            "result: traversal id",
            request(
                "GET",
                &format!("{base}/v1/jobs/..%2Fjob.json/result"),
                &[AUTH],
                None,
            ),
            400,
            "is not a job id",
        ),
        (
            "status: unknown job",
            request(
                "GET",
                &format!("{base}/v1/jobs/{}", "0b6c0d1e-2f3a-4b5c-8d7e-9f0a1b2c3d4e"),
                &[AUTH],
                None,
            ),
            404,
            "no job",
        ),
        (
            "cancel: unknown job",
            request(
                "DELETE",
                &format!("{base}/v1/jobs/{}", "0b6c0d1e-2f3a-4b5c-8d7e-9f0a1b2c3d4e"),
                &[AUTH],
                None,
            ),
            404,
            "no job",
        ),
        (
            "events: no key",
            request(
                "GET",
                &format!(
                    "{base}/v1/jobs/{}/events",
                    "0b6c0d1e-2f3a-4b5c-8d7e-9f0a1b2c3d4e"
                ),
                &[],
                None,
            ),
            401,
            "missing API key",
        ),
        (
            "wrong method",
            request("PUT", &format!("{base}/v1/jobs"), &[AUTH], Some(b"")),
            405,
            "",
        ),
        (
            "unknown route",
            request("GET", &format!("{base}/v2/anything"), &[AUTH], None),
            404,
            "no such route",
        ),
    ];
    assert!(cases.len() >= 20);
    let mut failures = Vec::new();
    for (name, a, status, text) in &cases {
        let ok = a.status == *status
            && (text.is_empty()
                || a.json()["error"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(text));
        if !ok {
            failures.push(format!("{name}: got {} {}", a.status, a.body));
        }
        // The server is still healthy after each.
        assert_eq!(get(&s.url("/healthz")).0, 200, "after {name}");
    }
    assert!(
        failures.is_empty(),
        "unexpected answers:\n{}",
        failures.join("\n")
    );

    // Literal `..` segments never reach a file.
    let (code, text) = raw(
        &s.addr(),
        "GET /v1/jobs/../../../../etc/passwd HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret-key\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(code, 404, "{text}");
    assert!(!text.contains("root:"));

    // And a good job still goes through, with the key in any of its three forms.
    let a = post_job(&base, &small_job(), &[("X-API-Key", KEY)]);
    assert_eq!(a.status, 202, "{}", a.body);
    let id = a.json()["id"].as_str().unwrap().to_string();
    let j = wait_final(&base, &id, &[AUTH], Duration::from_secs(300));
    assert_eq!(j["state"], "succeeded", "{j}");
    let (code, mp4) = get_bytes(&s.url(&format!("/v1/jobs/{id}/result?api_key={KEY}")), &[]);
    assert_eq!(code, 200);
    assert!(playable_mp4(&mp4));
    // No upload is left behind by the refused requests.
    let incoming = tmp.path().join("jobs/.incoming");
    assert_eq!(std::fs::read_dir(&incoming).unwrap().count(), 0);
}

/// The SSE events of a job are the `generate --json` lines of the same run (timings aside).
#[test]
fn events_match_generate_json_and_results_support_range() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("jobs"), &[]);
    let a = post_job(&s.base, &small_job(), &[]);
    assert_eq!(a.status, 202, "{}", a.body);
    let j = a.json();
    let id = j["id"].as_str().unwrap().to_string();
    assert_eq!(
        a.header("location"),
        Some(format!("/v1/jobs/{id}").as_str())
    );

    // Follow the stream to its end.
    let ev = request("GET", &s.url(&format!("/v1/jobs/{id}/events")), &[], None);
    assert_eq!(ev.status, 200);
    assert!(ev
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let events: Vec<serde_json::Value> = ev
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect();
    assert_eq!(events.last().unwrap()["event"], "done", "{events:?}");

    // The same run through the CLI.
    std::fs::write(tmp.path().join("face.png"), png(64, 64)).unwrap();
    std::fs::write(tmp.path().join("speech.wav"), wav(0.5)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cyberhost"))
        .args([
            "generate", "--json", "--size", "64x64", "--steps", "2", "--seed", "3",
        ])
        .arg("--image")
        .arg(tmp.path().join("face.png"))
        .arg("--audio")
        .arg(tmp.path().join("speech.wav"))
        .arg("--out")
        .arg(tmp.path().join("cli.mp4"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let strip = |v: &[serde_json::Value]| -> Vec<serde_json::Value> {
        v.iter()
            .map(|e| {
                let mut e = e.clone();
                let o = e.as_object_mut().unwrap();
                o.remove("t");
                o.remove("out");
                e
            })
            .collect()
    };
    assert_eq!(strip(&events), strip(&cli), "SSE events vs generate --json");

    // Resume after event 2 with Last-Event-ID.
    let ev2 = request(
        "GET",
        &s.url(&format!("/v1/jobs/{id}/events")),
        &[("Last-Event-ID", "1")],
        None,
    );
    let n2 = ev2.body.lines().filter(|l| l.starts_with("data:")).count();
    assert_eq!(n2, events.len() - 2);

    // The result, whole and in part; the same video as the CLI's for the same inputs.
    let (code, mp4) = get_bytes(&s.url(&format!("/v1/jobs/{id}/result")), &[]);
    assert_eq!(code, 200);
    assert!(playable_mp4(&mp4));
    let part = request(
        "GET",
        &s.url(&format!("/v1/jobs/{id}/result")),
        &[("Range", "bytes=0-99")],
        None,
    );
    assert_eq!(part.status, 206);
    assert_eq!(part.header("content-type"), Some("video/mp4"));
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 0-99/{}", mp4.len()).as_str())
    );
    let bad = request(
        "GET",
        &s.url(&format!("/v1/jobs/{id}/result")),
        &[("Range", "bytes=999999999-")],
        None,
    );
    assert_eq!(bad.status, 416);

    // Metrics saw it.
    let (code, m) = get(&s.url("/metrics"));
    assert_eq!(code, 200);
    for needle in [
        "cyberhost_queue_depth 0",
        "cyberhost_jobs{state=\"succeeded\"} 1",
        "cyberhost_step_seconds_count 2",
        "cyberhost_job_seconds_count 1",
        "cyberhost_job_latency_seconds_bucket",
    ] {
        assert!(m.contains(needle), "metrics lack `{needle}`:\n{m}");
    }

    // OpenAPI lists every route.
    let doc: serde_json::Value = serde_json::from_str(&get(&s.url("/openapi.json")).1).unwrap();
    for p in [
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/events",
        "/v1/jobs/{id}/result",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(doc["paths"][p].is_object(), "openapi lacks {p}");
    }
    // The page and its bundled inputs.
    let (code, page) = get(&s.url("/"));
    assert_eq!(code, 200);
    assert!(page.contains("EventSource"));
    assert_eq!(get_bytes(&s.url("/assets/reference.png"), &[]).0, 200);
    assert_eq!(get_bytes(&s.url("/assets/speech.wav"), &[]).0, 200);

    // Deleting a finished job removes it and its files.
    assert_eq!(
        request("DELETE", &s.url(&format!("/v1/jobs/{id}")), &[], None).status,
        204
    );
    assert_eq!(
        request("GET", &s.url(&format!("/v1/jobs/{id}")), &[], None).status,
        404
    );
    assert!(!tmp.path().join("jobs").join(&id).exists());
}

#[test]
fn cancel_stops_a_running_job_at_the_next_step_and_a_queued_one_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("jobs"), &["--workers", "1"]);
    let long = with(small_job(), "steps", "500");
    let running = post_job(&s.base, &long, &[]).json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let queued = post_job(&s.base, &long, &[]).json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let next = post_job(&s.base, &small_job(), &[]).json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let j = wait_for(&s.base, &running, "stepped", |j| {
        j["step"].as_u64().unwrap_or(0) >= 1
    });
    assert!(j["eta_seconds"].as_f64().unwrap() > 0.0, "{j}");
    assert_eq!(j["steps"], 500);
    let q = request("DELETE", &s.url(&format!("/v1/jobs/{queued}")), &[], None);
    assert_eq!(q.status, 200);
    assert_eq!(q.json()["state"], "cancelled");
    let r = request("DELETE", &s.url(&format!("/v1/jobs/{running}")), &[], None);
    assert_eq!(r.status, 202);
    assert_eq!(r.json()["cancel_requested"], true);
    let j = wait_final(&s.base, &running, &[], Duration::from_secs(60));
    assert_eq!(j["state"], "cancelled");
    assert!(j["step"].as_u64().unwrap() < 500, "{j}");
    let ev = request(
        "GET",
        &s.url(&format!("/v1/jobs/{running}/events")),
        &[],
        None,
    );
    assert!(ev.body.contains("\"event\":\"cancelled\""), "{}", ev.body);
    let res = request(
        "GET",
        &s.url(&format!("/v1/jobs/{running}/result")),
        &[],
        None,
    );
    assert_eq!(res.status, 409);
    // The worker is free again.
    let j = wait_final(&s.base, &next, &[], Duration::from_secs(120));
    assert_eq!(j["state"], "succeeded");
}
