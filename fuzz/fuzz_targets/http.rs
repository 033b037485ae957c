//! The HTTP jobs API (`cyberhost serve`) in process: routing, API-key check, multipart parsing,
//! upload limits, knob parsing and the validation of the uploaded photo, speech and pose, through
//! the real axum router with the built-in `tiny` model on the CPU (no listener, no workers).
//!
//! Input: byte 0 picks the route and the credentials; the bytes up to the first `\n` are the
//! route's variable part (the multipart `Content-Type` for a submission, the job id or path
//! otherwise); the rest is the request body.
//! Property besides "no panic": no input gets a 5xx answer (every bad request is a 4xx).
#![no_main]
use axum::body::Body;
use axum::http::{header, Method, Request};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use tower::ServiceExt;

const KEY: &str = "fuzz-key";

static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
});

static APP: LazyLock<axum::Router> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("temporary jobs dir");
    let app = cyberhost_cli::serve::in_process_app(dir.path(), KEY).expect("serve app");
    std::mem::forget(dir); // lives for the whole run
    app
});

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let (line, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(line) = std::str::from_utf8(line) else { return };
    let (method, uri) = match sel % 8 {
        0..=2 => (Method::POST, "/v1/jobs".to_string()),
        3 => (Method::GET, format!("/v1/jobs/{line}")),
        4 => (Method::DELETE, format!("/v1/jobs/{line}")),
        5 => (Method::GET, format!("/v1/jobs/{line}/result")),
        6 => (Method::GET, format!("/v1/jobs/{line}/events")),
        _ => (Method::GET, format!("/{line}")),
    };
    let mut req = Request::builder().method(method.clone()).uri(uri);
    req = match (sel >> 3) % 4 {
        0 => req.header(header::AUTHORIZATION, format!("Bearer {KEY}")),
        1 => req.header("x-api-key", KEY),
        2 => req.header(header::AUTHORIZATION, "Bearer wrong-key"),
        _ => req,
    };
    if method == Method::POST {
        req = req.header(header::CONTENT_TYPE, line);
    } else if sel & 0x20 != 0 {
        req = req.header(header::RANGE, line);
    }
    let Ok(req) = req.body(Body::from(body.to_vec())) else { return };
    RT.block_on(async {
        let resp = APP.clone().oneshot(req).await.expect("router is infallible");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20).await;
        assert!(
            !status.is_server_error(),
            "answered {status}: {}",
            bytes.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
        );
    });
});
