//! The HTTP API: routes, handlers and the OpenAPI document generated from them.

use super::jobs::{self, Params, Record, State};
use super::worker::{load_inputs, request, Model};
use super::Shared;
use crate::args::SamplingArgs;
use axum::body::Body;
use axum::extract::multipart::{Field, MultipartError, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, Request};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use cyberhost_engine::error::is_user_error;
use cyberhost_engine::pipeline::generate::video_frames;
use futures_util::Stream;
use serde::Serialize;
use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tower::ServiceExt;
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

type AppState = axum::extract::State<Arc<Shared>>;

const PAGE: &str = include_str!("page.html");
const BUNDLED_IMAGE: &[u8] = include_bytes!("../../../../engine/assets/reference.png");
const BUNDLED_SPEECH: &[u8] = include_bytes!("../../../../engine/assets/speech.wav");
/// Longest value of a text field (seed, steps, ...).
const MAX_FIELD_BYTES: usize = 256;
/// Most body bytes read from a request refused for its API key.
const UNAUTHENTICATED_DRAIN: usize = 1 << 20;
const PARTS: &str = "image, audio, pose, seed, steps, guidance, size, hand_clarity";

// ------------------------------------------------------------------------------------------------
// Errors

/// The body of every error response.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// What was wrong and how to fix it.
    error: String,
}

pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {e}"),
        )
    }
    fn no_job(id: Uuid) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("no job {id} (never submitted, deleted, or past the result TTL)"),
        )
    }
    /// An engine error: user errors are 400, the rest 500.
    fn engine(e: anyhow::Error) -> Self {
        if is_user_error(&e) {
            Self::bad(format!("{e:#}"))
        } else {
            Self::internal(format!("{e:#}"))
        }
    }
    fn multipart(e: MultipartError) -> Self {
        let status = e.status();
        let hint = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "the request body is larger than the sum of the upload limits"
        } else {
            "send a complete multipart/form-data body"
        };
        Self::new(status, format!("{}; {hint}", e.body_text()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

// ------------------------------------------------------------------------------------------------
// Schemas

/// `POST /v1/jobs` body (multipart/form-data). Knobs are the `generate` flags of the same
/// names and are checked with the same messages.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SubmitForm {
    /// Reference photo, PNG or JPEG.
    #[schema(value_type = String, format = Binary)]
    image: Vec<u8>,
    /// Speech, WAV (8/16/24/32-bit PCM or float, any channels, 8–192 kHz).
    #[schema(value_type = String, format = Binary)]
    audio: Vec<u8>,
    /// Optional keypoints / face / hands / movement JSON in input-image pixels.
    #[schema(value_type = String, format = Binary, nullable = false)]
    pose: Option<Vec<u8>>,
    /// Noise seed (default 0).
    #[schema(nullable = false)]
    seed: Option<u64>,
    /// DDIM steps (default: the checkpoint's).
    #[schema(nullable = false, minimum = 1)]
    steps: Option<u32>,
    /// Classifier-free guidance scale (default: the checkpoint's).
    #[schema(nullable = false, minimum = 0)]
    guidance: Option<f32>,
    /// Output size WxH, multiples of the latent grid (default: the checkpoint's).
    #[schema(nullable = false, example = "64x64", pattern = "^[0-9]+[xX][0-9]+$")]
    size: Option<String>,
    /// Hand clarity condition in [0, 1] (default: the checkpoint's).
    #[schema(nullable = false, minimum = 0, maximum = 1)]
    hand_clarity: Option<f32>,
}

/// Where to follow a job.
#[derive(Serialize, ToSchema)]
pub struct Urls {
    status: String,
    events: String,
    result: String,
}

impl Urls {
    fn of(id: Uuid) -> Self {
        Urls {
            status: format!("/v1/jobs/{id}"),
            events: format!("/v1/jobs/{id}/events"),
            result: format!("/v1/jobs/{id}/result"),
        }
    }
}

/// A job's state and progress.
#[derive(Serialize, ToSchema)]
pub struct JobStatus {
    id: Uuid,
    state: State,
    /// Sampler steps done, over all clips.
    step: usize,
    /// Sampler steps of the whole video (0 until known).
    steps: usize,
    /// Current clip (0-based) and number of clips.
    clip: usize,
    clips: usize,
    /// Seconds left, estimated from the mean step time so far.
    eta_seconds: Option<f64>,
    /// Place in the queue (0 = next), while queued.
    queue_position: Option<usize>,
    /// Times a worker started the job (2+ after a restart interrupted it).
    attempts: u32,
    /// Unix times in seconds.
    created: f64,
    started: Option<f64>,
    finished: Option<f64>,
    /// Why it failed.
    error: Option<String>,
    /// Set while a running job has been asked to stop.
    cancel_requested: bool,
    params: Params,
    urls: Urls,
}

fn status_of(t: &jobs::Table, job: &jobs::Job) -> JobStatus {
    let r = &job.rec;
    JobStatus {
        id: r.id,
        state: r.state,
        step: r.step,
        steps: r.steps_total,
        clip: r.clip,
        clips: r.clips,
        eta_seconds: r.eta(),
        queue_position: t.queue.iter().position(|q| *q == r.id),
        attempts: r.attempts,
        created: r.created,
        started: r.started,
        finished: r.finished,
        error: r.error.clone(),
        cancel_requested: r.state == State::Running && job.cancel.load(Ordering::SeqCst),
        params: r.params.clone(),
        urls: Urls::of(r.id),
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "cyberhost serve", description = "Audio-driven talking-body video jobs (docs/serving.md)."),
    paths(submit, job_status, cancel, events, result, healthz, readyz, metrics, openapi_json),
    components(schemas(SubmitForm, JobStatus, ErrorBody, Urls, Params, State)),
    modifiers(&ApiKeyScheme),
    security((), ("api_key" = []))
)]
pub struct ApiDoc;

struct ApiKeyScheme;
impl utoipa::Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

// ------------------------------------------------------------------------------------------------
// Router

pub fn router(shared: Arc<Shared>) -> Router {
    let c = &shared.cfg;
    let body_limit = (c.max_image_bytes + c.max_audio_bytes + c.max_pose_bytes + (64 << 10))
        .min(usize::MAX as u64) as usize;
    let v1 = Router::new()
        .route("/v1/jobs", post(submit))
        .route("/v1/jobs/{id}", get(job_status).delete(cancel))
        .route("/v1/jobs/{id}/events", get(events))
        .route("/v1/jobs/{id}/result", get(result))
        .layer(middleware::from_fn_with_state(shared.clone(), auth))
        .layer(DefaultBodyLimit::max(body_limit));
    Router::new()
        .merge(v1)
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/assets/reference.png",
            get(|| async { ([(header::CONTENT_TYPE, "image/png")], BUNDLED_IMAGE) }),
        )
        .route(
            "/assets/speech.wav",
            get(|| async { ([(header::CONTENT_TYPE, "audio/wav")], BUNDLED_SPEECH) }),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi_json))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "no such route; see /openapi.json")
        })
        .layer(middleware::from_fn_with_state(shared.clone(), count_errors))
        .with_state(shared)
}

async fn count_errors(sh: AppState, req: Request, next: Next) -> Response {
    let r = next.run(req).await;
    if r.status().is_client_error() || r.status().is_server_error() {
        sh.metrics
            .http_errors
            .with_label_values(&[r.status().as_str()])
            .inc();
    }
    r
}

/// Constant-time comparison of two keys.
fn same_key(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(sh: AppState, req: Request, next: Next) -> Response {
    if let Some(keys) = &sh.cfg.api_keys {
        let h = req.headers();
        let query = Query::<HashMap<String, String>>::try_from_uri(req.uri())
            .map(|q| q.0)
            .unwrap_or_default();
        let given = h
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .or_else(|| h.get("x-api-key").and_then(|v| v.to_str().ok()))
            .map(str::to_string)
            .or_else(|| query.get("api_key").cloned());
        let refusal = match given {
            None => Some("missing API key: send `Authorization: Bearer KEY` (or `X-API-Key: KEY`, or `?api_key=KEY`)"),
            Some(k) if !keys.iter().any(|x| same_key(x, k.trim())) => {
                Some("wrong API key: use one of the keys in the server's --api-key-file")
            }
            Some(_) => None,
        };
        if let Some(msg) = refusal {
            // Read (a bounded part of) the body first so a client still sending it gets the
            // answer instead of a reset connection; larger bodies just get the connection closed.
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                axum::body::to_bytes(req.into_body(), UNAUTHENTICATED_DRAIN),
            )
            .await;
            return ApiError::new(StatusCode::UNAUTHORIZED, msg).into_response();
        }
    }
    next.run(req).await
}

fn parse_id(s: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s).map_err(|_| {
        ApiError::bad(format!(
            "`{}` is not a job id; ids are the UUIDs returned by POST /v1/jobs",
            s.chars().take(80).collect::<String>()
        ))
    })
}

// ------------------------------------------------------------------------------------------------
// Submit

/// The `generate` flags a job may set, parsed by clap as the CLI does (same messages).
#[derive(Parser)]
#[command(
    name = "cyberhost generate",
    no_binary_name = true,
    disable_help_flag = true
)]
struct Knobs {
    #[command(flatten)]
    sampling: SamplingArgs,
    #[arg(long, allow_negative_numbers = true)]
    hand_clarity: Option<f32>,
}

/// Removes an upload directory unless it became a job.
struct Incoming(PathBuf);
impl Drop for Incoming {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Stream one part to `path`; more than `cap` bytes is 413.
async fn save_part(
    mut field: Field<'_>,
    path: &std::path::Path,
    cap: u64,
    flag: &str,
) -> Result<(), ApiError> {
    let part = field.name().unwrap_or_default().to_string();
    let mut f = tokio::fs::File::create(path)
        .await
        .map_err(ApiError::internal)?;
    let mut n = 0u64;
    while let Some(chunk) = field.chunk().await.map_err(ApiError::multipart)? {
        n += chunk.len() as u64;
        if n > cap {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("part `{part}` is larger than the server's {cap}-byte limit ({flag}); send a smaller file"),
            ));
        }
        f.write_all(&chunk).await.map_err(ApiError::internal)?;
    }
    f.flush().await.map_err(ApiError::internal)?;
    Ok(())
}

async fn read_text(mut field: Field<'_>) -> Result<String, ApiError> {
    let part = field.name().unwrap_or_default().to_string();
    let mut buf = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(ApiError::multipart)? {
        buf.extend_from_slice(&chunk);
        if buf.len() > MAX_FIELD_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("field `{part}` is longer than {MAX_FIELD_BYTES} bytes; it takes one value such as 5 or 512x512"),
            ));
        }
    }
    String::from_utf8(buf).map_err(|_| ApiError::bad(format!("field `{part}` is not UTF-8 text")))
}

/// Before an early error, read and drop the rest of the body (bounded by the body limit) so
/// the client, still sending, gets the answer instead of a reset connection.
async fn drain(mp: &mut Multipart) {
    while let Ok(Some(mut f)) = mp.next_field().await {
        while let Ok(Some(_)) = f.chunk().await {}
    }
}

fn display_name(part: &str, file_name: Option<&str>) -> String {
    match file_name {
        Some(f) if !f.is_empty() => format!("{part} `{}`", f.chars().take(100).collect::<String>()),
        _ => part.to_string(),
    }
}

/// The model, if it is loaded and the server takes jobs.
fn ready_model(sh: &Shared) -> Result<Arc<dyn Model>, ApiError> {
    if !sh.accepting.load(Ordering::SeqCst) {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down; submit again after it restarts",
        );
        e.retry_after = Some(5);
        return Err(e);
    }
    sh.model.get().cloned().ok_or_else(|| {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the model is still loading; retry once /readyz answers 200",
        );
        e.retry_after = Some(2);
        e
    })
}

/// Submit a job.
#[utoipa::path(post, path = "/v1/jobs",
    request_body(content = SubmitForm, content_type = "multipart/form-data"),
    responses(
        (status = 202, description = "Accepted and queued", body = JobStatus),
        (status = 400, description = "Bad input (the CLI's message)", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 413, description = "An upload or field over its limit", body = ErrorBody),
        (status = 429, description = "Queue full; see Retry-After", body = ErrorBody),
        (status = 503, description = "Model loading or shutting down", body = ErrorBody),
    ))]
async fn submit(
    sh: AppState,
    mp: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let mut mp = mp.map_err(|e| {
        ApiError::new(
            e.status(),
            format!(
                "{}; send multipart/form-data with the parts {PARTS}",
                e.body_text()
            ),
        )
    })?;
    let model = match ready_model(&sh) {
        Ok(m) => m,
        Err(e) => {
            drain(&mut mp).await;
            return Err(e);
        }
    };
    let id = Uuid::new_v4();
    let incoming = Incoming(sh.cfg.jobs_dir.join(jobs::INCOMING).join(id.to_string()));
    tokio::fs::create_dir_all(&incoming.0)
        .await
        .map_err(ApiError::internal)?;
    let c = &sh.cfg;
    // File parts: (name, file in the job directory, cap, the flag that sets the cap).
    let uploads = [
        ("image", jobs::IMAGE, c.max_image_bytes, "--max-image-bytes"),
        ("audio", jobs::AUDIO, c.max_audio_bytes, "--max-audio-bytes"),
        ("pose", jobs::POSE, c.max_pose_bytes, "--max-pose-bytes"),
    ];
    // Part → the name it goes by in messages.
    let mut files: HashMap<&str, String> = HashMap::new();
    let mut knobs: Vec<(String, String)> = Vec::new();
    while let Some(field) = mp.next_field().await.map_err(ApiError::multipart)? {
        let name = field.name().unwrap_or_default().to_string();
        let file_name = field.file_name().map(str::to_string);
        let seen = files.contains_key(name.as_str()) || knobs.iter().any(|(k, _)| *k == name);
        let upload = uploads.iter().find(|u| u.0 == name);
        let r = match (name.as_str(), upload) {
            _ if seen => Err(ApiError::bad(format!(
                "part `{name}` is given twice; send it once"
            ))),
            (_, Some(&(part, file, cap, flag))) => {
                files.insert(part, display_name(part, file_name.as_deref()));
                save_part(field, &incoming.0.join(file), cap, flag).await
            }
            ("seed" | "steps" | "guidance" | "size" | "hand_clarity", _) => {
                read_text(field).await.map(|v| knobs.push((name, v)))
            }
            ("", _) => Err(ApiError::bad(format!(
                "a part has no name; name each part one of {PARTS}"
            ))),
            (other, _) => Err(ApiError::bad(format!(
                "unknown part `{}`; the parts are {PARTS}",
                other.chars().take(80).collect::<String>()
            ))),
        };
        if let Err(e) = r {
            drain(&mut mp).await;
            return Err(e);
        }
    }
    let pose = files.contains_key("pose");
    let image_name = files.remove("image").ok_or_else(|| {
        ApiError::bad("missing part `image`: attach the reference photo (PNG or JPEG) as a file part named image")
    })?;
    let audio_name = files.remove("audio").ok_or_else(|| {
        ApiError::bad("missing part `audio`: attach the speech (WAV) as a file part named audio")
    })?;
    let args: Vec<String> = knobs
        .iter()
        .map(|(k, v)| format!("--{}={}", k.replace('_', "-"), v.trim()))
        .collect();
    let k = Knobs::try_parse_from(&args).map_err(|e| {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or_default();
        ApiError::bad(first.strip_prefix("error: ").unwrap_or(first).to_string())
    })?;
    let params = Params {
        seed: k.sampling.seed,
        steps: k.sampling.steps,
        guidance: k.sampling.guidance,
        size: k.sampling.size,
        hand_clarity: k.hand_clarity,
        pose,
    };
    let rec = Record {
        id,
        seq: 0,
        state: State::Queued,
        params,
        image_name,
        audio_name,
        created: jobs::now(),
        started: None,
        finished: None,
        attempts: 0,
        clip: 0,
        clips: 0,
        step: 0,
        steps_total: 0,
        sampling_started: None,
        error: None,
        events: Vec::new(),
    };
    let sh2 = sh.0.clone();
    tokio::task::spawn_blocking(move || validate_and_enqueue(&sh2, model.as_ref(), incoming, rec))
        .await
        .map_err(ApiError::internal)?
}

/// Check the inputs as `generate` does, then persist the job and queue it (or 429).
fn validate_and_enqueue(
    sh: &Shared,
    model: &dyn Model,
    incoming: Incoming,
    mut rec: Record,
) -> Result<Response, ApiError> {
    let speech = load_inputs(&incoming.0, &rec)
        .map_err(ApiError::engine)?
        .speech;
    if speech.seconds > sh.cfg.max_audio_seconds {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{}: {:.1} s of speech is longer than the server's {} s limit (--max-audio-seconds); send a shorter clip",
                rec.audio_name, speech.seconds, sh.cfg.max_audio_seconds
            ),
        ));
    }
    let g = model
        .geometry(&request(&rec.params))
        .map_err(ApiError::engine)?;
    video_frames(&speech, g.fps).map_err(ApiError::engine)?;

    let id = rec.id;
    let mut t = sh.lock();
    if !sh.accepting.load(Ordering::SeqCst) {
        drop(t);
        return Err(ready_model(sh)
            .err()
            .unwrap_or_else(|| ApiError::internal("not accepting")));
    }
    if t.queue.len() >= sh.cfg.max_queue {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "the queue is full ({} jobs waiting); retry after the Retry-After seconds",
                t.queue.len()
            ),
        );
        e.retry_after = Some(sh.retry_after(t.queue.len()));
        return Err(e);
    }
    rec.seq = t.next_seq;
    jobs::save(&incoming.0, &rec).map_err(ApiError::internal)?;
    let dir = jobs::job_dir(&sh.cfg.jobs_dir, id);
    std::fs::rename(&incoming.0, &dir).map_err(ApiError::internal)?;
    t.insert(rec);
    let body = status_of(&t, &t.jobs[&id]);
    drop(t);
    sh.work.notify_one();
    let mut r = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/jobs/{id}")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

// ------------------------------------------------------------------------------------------------
// Per job

/// Job `id` of the table, or 404.
fn job_of(t: &jobs::Table, id: Uuid) -> Result<&jobs::Job, ApiError> {
    t.jobs.get(&id).ok_or_else(|| ApiError::no_job(id))
}

/// A job's state, step n of N and ETA.
#[utoipa::path(get, path = "/v1/jobs/{id}",
    params(("id" = Uuid, Path, description = "Job id (a UUID from POST /v1/jobs)")),
    responses(
        (status = 200, body = JobStatus),
        (status = 400, description = "Not a UUID", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
    ))]
async fn job_status(sh: AppState, Path(id): Path<String>) -> Result<Json<JobStatus>, ApiError> {
    let id = parse_id(&id)?;
    let t = sh.lock();
    let job = job_of(&t, id)?;
    Ok(Json(status_of(&t, job)))
}

/// Cancel a queued or running job (a running one stops at its next sampler step), or delete a
/// finished job and its files.
#[utoipa::path(delete, path = "/v1/jobs/{id}",
    params(("id" = Uuid, Path, description = "Job id (a UUID from POST /v1/jobs)")),
    responses(
        (status = 200, description = "Cancelled (it was queued)", body = JobStatus),
        (status = 202, description = "Cancel requested (it is running)", body = JobStatus),
        (status = 204, description = "Finished job deleted"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
async fn cancel(sh: AppState, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let answer = {
        let mut t = sh.lock();
        let state = job_of(&t, id)?.rec.state;
        match state {
            State::Queued => {
                t.queue.retain(|q| *q != id);
                let job = t.jobs.get_mut(&id).expect("checked");
                job.rec.state = State::Cancelled;
                job.rec.finished = Some(jobs::now());
                job.rec
                    .events
                    .push(serde_json::json!({"event": "cancelled", "t": 0.0}));
                job.changed.send_replace(());
                if let Err(e) = jobs::save(&jobs::job_dir(&sh.cfg.jobs_dir, id), &job.rec) {
                    eprintln!("serve: cannot persist job {id}: {e:#}");
                }
                eprintln!("serve: job {id} cancelled while queued");
                Some((StatusCode::OK, Json(status_of(&t, &t.jobs[&id]))))
            }
            State::Running => {
                t.jobs[&id].cancel.store(true, Ordering::SeqCst);
                Some((StatusCode::ACCEPTED, Json(status_of(&t, &t.jobs[&id]))))
            }
            _ => {
                t.jobs.remove(&id);
                None
            }
        }
    };
    match answer {
        Some(a) => Ok(a.into_response()),
        None => {
            let _ = tokio::fs::remove_dir_all(jobs::job_dir(&sh.cfg.jobs_dir, id)).await;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    }
}

/// Progress as Server-Sent Events: each `data:` is one `cyberhost generate --json` line
/// (`stage`, `note`, `clip`, `step`, `done`), or `error` / `cancelled`; the stream ends after
/// the last event. Event ids allow resuming with `Last-Event-ID`.
#[utoipa::path(get, path = "/v1/jobs/{id}/events",
    params(("id" = Uuid, Path, description = "Job id (a UUID from POST /v1/jobs)")),
    responses(
        (status = 200, description = "text/event-stream", content_type = "text/event-stream", body = String),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
async fn events(
    sh: AppState,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let id = parse_id(&id)?;
    let rx = { job_of(&sh.lock(), id)?.changed.subscribe() };
    let start = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(0, |i| i + 1);
    let stop = sh.shutdown.subscribe();
    let stream = futures_util::stream::unfold(
        (sh.0.clone(), start, rx, stop),
        move |(sh, mut i, mut rx, mut stop)| async move {
            loop {
                rx.borrow_and_update();
                let (next, done) = {
                    let t = sh.lock();
                    match t.jobs.get(&id) {
                        None => (None, true),
                        Some(j) => (j.rec.events.get(i).cloned(), j.rec.state.is_final()),
                    }
                };
                if let Some(ev) = next {
                    let e = SseEvent::default().id(i.to_string()).data(ev.to_string());
                    i += 1;
                    return Some((Ok(e), (sh, i, rx, stop)));
                }
                if done || *stop.borrow() {
                    return None;
                }
                tokio::select! {
                    r = rx.changed() => if r.is_err() { return None },
                    _ = stop.changed() => {}
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The video (video/mp4), with Range requests.
#[utoipa::path(get, path = "/v1/jobs/{id}/result",
    params(("id" = Uuid, Path, description = "Job id (a UUID from POST /v1/jobs)")),
    responses(
        (status = 200, description = "The MP4", content_type = "video/mp4", body = String),
        (status = 206, description = "Part of the MP4 (Range)", content_type = "video/mp4", body = String),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not succeeded (yet)", body = ErrorBody),
    ))]
async fn result(sh: AppState, Path(id): Path<String>, req: Request) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let state = { job_of(&sh.lock(), id)?.rec.state };
    if state != State::Succeeded {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("job {id} is {}; its video is ready once it has succeeded (follow /v1/jobs/{id}/events)", state.name()),
        ));
    }
    let path = jobs::job_dir(&sh.cfg.jobs_dir, id).join(jobs::RESULT);
    let r = tower_http::services::ServeFile::new(path)
        .oneshot(req)
        .await
        .map_err(ApiError::internal)?;
    Ok(r.map(Body::new))
}

// ------------------------------------------------------------------------------------------------
// Service

/// Liveness: 200 while the process serves.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = String)))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: 200 once the model is loaded and jobs are taken, else 503.
#[utoipa::path(get, path = "/readyz", responses((status = 200, body = String), (status = 503, body = ErrorBody)))]
async fn readyz(sh: AppState) -> Result<&'static str, ApiError> {
    ready_model(&sh)?;
    Ok("ready\n")
}

/// Prometheus metrics: queue depth, jobs by state, step and job latency histograms, GPU memory.
#[utoipa::path(get, path = "/metrics", responses((status = 200, content_type = "text/plain", body = String)))]
async fn metrics(sh: AppState) -> impl IntoResponse {
    if let Some((used, total)) = sh.model.get().and_then(|m| m.device_memory()) {
        sh.metrics.device_memory_used.set(used as f64);
        sh.metrics.device_memory_total.set(total as f64);
    }
    let text = sh.metrics.render(&sh.lock());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, body = Object)))]
async fn openapi_json() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}
