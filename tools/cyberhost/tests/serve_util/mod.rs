//! Helpers for the `cyberhost serve` tests: start the real binary on a free loopback port,
//! build multipart bodies, talk HTTP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

#[path = "../cli_util/mod.rs"]
mod cli_util;

/// A running `cyberhost serve`; killed on drop if still running.
pub struct Server {
    child: Option<Child>,
    pub base: String,
    pub jobs_dir: PathBuf,
    pub log: PathBuf,
}

impl Server {
    /// Start on 127.0.0.1 (free port) with `jobs_dir` and extra flags; stderr is appended to
    /// `jobs_dir/../serve.log` (kept across restarts). Waits for /readyz.
    pub fn start(jobs_dir: &Path, extra: &[&str]) -> Server {
        let log = jobs_dir.with_extension("log");
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut child = cli_util::bin()
            .args(["serve", "--addr", "127.0.0.1:0", "--jobs-dir"])
            .arg(jobs_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("start cyberhost serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .to_string();
        assert!(
            base.starts_with("http://127.0.0.1:"),
            "no address line from the server: {line:?}; log: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let s = Server {
            child: Some(child),
            base,
            jobs_dir: jobs_dir.to_path_buf(),
            log,
        };
        let t0 = Instant::now();
        while get(&s.url("/readyz")).0 != 200 {
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "server never got ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_string()
    }

    /// SIGTERM, then wait (at most `limit`) for the exit.
    pub fn terminate(mut self, limit: Duration) -> ExitStatus {
        let child = self.child.take().unwrap();
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        cli_util::wait_exit(child, limit, "the server")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One multipart part: name, optional file name, bytes.
pub struct Part<'a> {
    pub name: &'a str,
    pub file: Option<&'a str>,
    pub data: Vec<u8>,
}

pub fn file<'a>(name: &'a str, file: &'a str, data: Vec<u8>) -> Part<'a> {
    Part {
        name,
        file: Some(file),
        data,
    }
}

pub fn field<'a>(name: &'a str, value: &str) -> Part<'a> {
    Part {
        name,
        file: None,
        data: value.as_bytes().to_vec(),
    }
}

pub const BOUNDARY: &str = "----cyberhost-test-boundary-7f3a";

pub fn multipart(parts: &[Part]) -> Vec<u8> {
    let mut b = Vec::new();
    for p in parts {
        write!(
            b,
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{}\"",
            p.name
        )
        .unwrap();
        if let Some(f) = p.file {
            write!(
                b,
                "; filename=\"{f}\"\r\nContent-Type: application/octet-stream"
            )
            .unwrap();
        }
        b.extend_from_slice(b"\r\n\r\n");
        b.extend_from_slice(&p.data);
        b.extend_from_slice(b"\r\n");
    }
    write!(b, "--{BOUNDARY}--\r\n").unwrap();
    b
}

pub fn content_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

/// An HTTP answer: status, body, headers (lower-case names).
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .build()
}

fn answer(r: Result<ureq::Response, ureq::Error>) -> Answer {
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .into_iter()
        .map(|n| {
            let v = resp.header(&n).unwrap_or_default().to_string();
            (n.to_ascii_lowercase(), v)
        })
        .collect();
    let mut body = String::new();
    let _ = resp.into_reader().read_to_string(&mut body);
    Answer {
        status,
        body,
        headers,
    }
}

/// Send a request with optional headers and body.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Answer {
    let mut r = agent().request(method, url);
    for (k, v) in headers {
        r = r.set(k, v);
    }
    answer(match body {
        Some(b) => r.send_bytes(b),
        None => r.call(),
    })
}

/// (status, body)
pub fn get(url: &str) -> (u16, String) {
    let a = request("GET", url, &[], None);
    (a.status, a.body)
}

pub fn post_job(base: &str, parts: &[Part], headers: &[(&str, &str)]) -> Answer {
    let ct = content_type();
    let mut h = vec![("Content-Type", ct.as_str())];
    h.extend_from_slice(headers);
    request(
        "POST",
        &format!("{base}/v1/jobs"),
        &h,
        Some(&multipart(parts)),
    )
}

/// Raw HTTP/1.1 over a socket (for paths a client library would normalise).
pub fn raw(addr: &str, request: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Poll a job until it is final; returns its status JSON.
pub fn wait_final(
    base: &str,
    id: &str,
    headers: &[(&str, &str)],
    limit: Duration,
) -> serde_json::Value {
    let t0 = Instant::now();
    loop {
        let a = request("GET", &format!("{base}/v1/jobs/{id}"), headers, None);
        assert_eq!(a.status, 200, "{}", a.body);
        let j = a.json();
        let s = j["state"].as_str().unwrap().to_string();
        if s == "succeeded" || s == "failed" || s == "cancelled" {
            return j;
        }
        assert!(t0.elapsed() < limit, "job {id} still {s} after {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A 64×64 PNG with some structure.
pub fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x * 4 % 251) as u8,
            (y * 3 % 241) as u8,
            ((x + y) % 239) as u8,
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// `seconds` of a speech-like chirp, 16 kHz mono 16-bit WAV.
pub fn wav(seconds: f64) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
        for i in 0..(16_000.0 * seconds) as usize {
            let t = i as f64 / 16_000.0;
            let v = 0.4 * (2.0 * std::f64::consts::PI * (180.0 + 60.0 * t) * t).sin();
            w.write_sample((v * 32767.0) as i16).unwrap();
        }
        w.finalize().unwrap();
    }
    out.into_inner()
}

/// The parts of a small valid job (64×64, 2 steps, 0.5 s of speech: one clip of 6 frames).
pub fn small_job() -> Vec<Part<'static>> {
    vec![
        file("image", "face.png", png(64, 64)),
        file("audio", "speech.wav", wav(0.5)),
        field("size", "64x64"),
        field("steps", "2"),
        field("seed", "3"),
    ]
}

/// ffprobe says the file has an H.264 video stream and an audio stream.
pub fn playable_mp4(bytes: &[u8]) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v.mp4");
    std::fs::write(&p, bytes).unwrap();
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(&p)
        .output()
        .expect("ffprobe");
    let s = String::from_utf8_lossy(&out.stdout);
    out.status.success() && s.contains("h264,video") && s.contains("audio")
}

/// Download bytes (for the MP4).
pub fn get_bytes(url: &str, headers: &[(&str, &str)]) -> (u16, Vec<u8>) {
    let mut r = agent().get(url);
    for (k, v) in headers {
        r = r.set(k, v);
    }
    let resp = match r.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = resp.status();
    let mut b = Vec::new();
    resp.into_reader().read_to_end(&mut b).unwrap();
    (status, b)
}

/// Poll job `id` until `pred` holds on its status JSON (at most 120 s); returns that status.
pub fn wait_for(
    base: &str,
    id: &str,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let t0 = Instant::now();
    loop {
        let j = request("GET", &format!("{base}/v1/jobs/{id}"), &[], None).json();
        if pred(&j) {
            return j;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "job {id}: never {what}: {j}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Job `id` ends `succeeded` and its result is a playable MP4.
pub fn assert_succeeds_with_mp4(base: &str, id: &str) {
    let j = wait_final(base, id, &[], Duration::from_secs(600));
    assert_eq!(j["state"], "succeeded", "{j}");
    let (code, mp4) = get_bytes(&format!("{base}/v1/jobs/{id}/result"), &[]);
    assert_eq!(code, 200);
    assert!(
        playable_mp4(&mp4),
        "job {id}: the result is not a playable MP4"
    );
}
