//! `cyberhost serve`: an HTTP jobs API over the pipeline (docs/serving.md).
//!
//! The model is loaded once; worker threads (one per GPU, or `--workers` on the CPU) take
//! jobs from a bounded queue. Jobs are persisted in `--jobs-dir` (see [`jobs`]), so a restart
//! resumes queued jobs and re-runs interrupted ones. SIGTERM/SIGINT: stop accepting, let the
//! running jobs finish (or, after `--shutdown-grace`, stop them at the next sampler step and
//! queue them again), persist, exit 0.

mod api;
mod jobs;
mod metrics;
mod worker;

use anyhow::{Context, Result};
use cyberhost_engine::backends::cpu::CpuBackend;
use cyberhost_engine::backends::cuda::profiling::Telemetry;
use cyberhost_engine::backends::cuda::CudaBackend;
use cyberhost_engine::backends::Backend;
use cyberhost_engine::error::UserError;
use cyberhost_engine::pipeline::checkpoint::WeightsSource;
use cyberhost_engine::pipeline::video::check_ffmpeg;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use uuid::Uuid;
use worker::{Loaded, Model};

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Checkpoint directory (spec layout). Default: the built-in `tiny` model.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Backend: cpu (f32 reference) or cuda (one worker per GPU of --gpus).
    #[arg(long, default_value = "cpu")]
    backend: String,
    /// CUDA devices, one worker (and one copy of the model) each.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    gpus: Vec<usize>,
    /// Worker threads on the CPU backend (they share one copy of the model).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Where jobs, their inputs and results are kept (created if missing).
    #[arg(long, default_value = "cyberhost-jobs")]
    jobs_dir: PathBuf,
    /// Most jobs waiting in the queue; more are answered 429 with Retry-After.
    #[arg(long, default_value_t = 64)]
    max_queue: usize,
    /// A file holding the API keys, one per line; requests to /v1 must then send one
    /// (`Authorization: Bearer KEY`, `X-API-Key: KEY` or `?api_key=KEY`).
    #[arg(long)]
    api_key_file: Option<PathBuf>,
    /// Largest photo upload in bytes.
    #[arg(long, default_value_t = 20 << 20)]
    max_image_bytes: u64,
    /// Largest speech upload in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    max_audio_bytes: u64,
    /// Largest pose JSON in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_pose_bytes: u64,
    /// Longest speech in seconds.
    #[arg(long, default_value_t = 300.0)]
    max_audio_seconds: f64,
    /// Seconds a finished job (and its video) is kept.
    #[arg(long, default_value_t = 86_400)]
    result_ttl: u64,
    /// Seconds running jobs get to finish after SIGTERM before they are stopped at the next
    /// step and queued again for the next start.
    #[arg(long, default_value_t = 30)]
    shutdown_grace: u64,
}

/// Limits and settings the handlers need.
pub struct Config {
    pub jobs_dir: PathBuf,
    pub max_queue: usize,
    pub api_keys: Option<Vec<String>>,
    pub max_image_bytes: u64,
    pub max_audio_bytes: u64,
    pub max_pose_bytes: u64,
    pub max_audio_seconds: f64,
    pub result_ttl: f64,
}

/// State shared by the handlers and the workers.
pub struct Shared {
    pub cfg: Config,
    table: Mutex<jobs::Table>,
    /// Workers wait here for queued jobs.
    pub work: Condvar,
    pub metrics: metrics::Metrics,
    /// Set once the model is loaded (`/readyz`); used to validate requests.
    pub model: OnceLock<Arc<dyn Model>>,
    /// False once shutdown began: submissions are refused with 503.
    pub accepting: AtomicBool,
    /// Workers take no new jobs.
    pub stopping: AtomicBool,
    /// Running jobs stop at the next step and are queued again.
    pub abort_running: AtomicBool,
    /// Fires when shutdown begins (ends the event streams).
    pub shutdown: tokio::sync::watch::Sender<bool>,
    /// Mean run time of recent jobs, for Retry-After.
    job_seconds: Mutex<f64>,
    pub workers: usize,
}

impl Shared {
    /// Accepting jobs, no model yet (set `model` once loaded).
    fn new(cfg: Config, table: jobs::Table, workers: usize) -> Result<Shared> {
        Ok(Shared {
            cfg,
            table: Mutex::new(table),
            work: Condvar::new(),
            metrics: metrics::Metrics::new().context("metrics registry")?,
            model: OnceLock::new(),
            accepting: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
            abort_running: AtomicBool::new(false),
            shutdown: tokio::sync::watch::channel(false).0,
            job_seconds: Mutex::new(1.0),
            workers,
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, jobs::Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Change job `id` under the lock and wake its event streams.
    pub fn update<R>(&self, id: Uuid, f: impl FnOnce(&mut jobs::Job) -> R) -> Option<R> {
        let mut t = self.lock();
        let job = t.jobs.get_mut(&id)?;
        let r = f(job);
        job.changed.send_replace(());
        Some(r)
    }

    /// Write job `id`'s record to disk (atomically; errors are logged).
    pub fn persist(&self, id: Uuid) {
        let t = self.lock();
        if let Some(job) = t.jobs.get(&id) {
            let dir = jobs::job_dir(&self.cfg.jobs_dir, id);
            if let Err(e) = jobs::save(&dir, &job.rec) {
                eprintln!("serve: cannot persist job {id}: {e:#}");
            }
        }
    }

    pub fn record_job_time(&self, secs: f64) {
        let mut m = self.job_seconds.lock().unwrap_or_else(|e| e.into_inner());
        *m = 0.8 * *m + 0.2 * secs;
    }

    /// Seconds until the queue has room, roughly.
    pub fn retry_after(&self, queued: usize) -> u64 {
        let per_job = *self.job_seconds.lock().unwrap_or_else(|e| e.into_inner());
        let secs = per_job * (queued as f64 / self.workers.max(1) as f64).max(1.0);
        secs.ceil().clamp(1.0, 3600.0) as u64
    }
}

/// The serve app in process, for the HTTP fuzz target: the built-in `tiny` model on the CPU,
/// jobs under `jobs_dir`, `api_key` required on `/v1`, no listener and no workers. The queue
/// holds no job (`max_queue` 0), so a request that passes every check is answered 429 after
/// its uploads were validated exactly as a real submission's, and nothing accumulates on disk.
pub fn in_process_app(jobs_dir: &std::path::Path, api_key: &str) -> Result<axum::Router> {
    std::fs::create_dir_all(jobs_dir.join(jobs::INCOMING))
        .with_context(|| format!("creating {}", jobs_dir.display()))?;
    let source = WeightsSource::Preset {
        preset: cyberhost_engine::pipeline::presets::Preset::Tiny,
        seed: 0,
    };
    let be = CpuBackend::new();
    let comps = source.load(&be)?;
    let model: Arc<dyn Model> = Arc::new(Loaded {
        be,
        comps,
        telemetry: None,
    });
    let cfg = Config {
        jobs_dir: jobs_dir.to_path_buf(),
        max_queue: 0,
        api_keys: Some(vec![api_key.to_string()]),
        max_image_bytes: 1 << 20,
        max_audio_bytes: 1 << 20,
        max_pose_bytes: 64 << 10,
        max_audio_seconds: 30.0,
        result_ttl: 60.0,
    };
    let shared = Arc::new(Shared::new(cfg, jobs::Table::default(), 1)?);
    let _ = shared.model.set(model);
    Ok(api::router(shared))
}

fn read_api_keys(path: &PathBuf) -> Result<Vec<String>> {
    let text = crate::args::read_arg_file(path, |e| {
        let p = path.display();
        format!("cannot read --api-key-file {p}: {e}; give a file with one key per line")
    })?;
    let keys: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    if keys.is_empty() {
        cyberhost_engine::user_bail!(
            "--api-key-file {} holds no key; put one key per line",
            path.display()
        );
    }
    Ok(keys)
}

/// Load the model(s) on the chosen backend: one per worker on CUDA, one shared on the CPU.
fn load_models(a: &Args, source: &WeightsSource) -> Result<Vec<Arc<dyn Model>>> {
    fn load<B: Backend>(
        be: B,
        source: &WeightsSource,
        telemetry: Option<Telemetry>,
    ) -> Result<Arc<dyn Model>>
    where
        cyberhost_engine::pipeline::checkpoint::Components<B>: Send + Sync,
    {
        let comps = source.load(&be)?;
        Ok(Arc::new(Loaded {
            be,
            comps,
            telemetry,
        }))
    }
    match a.backend.as_str() {
        "cpu" => {
            let m = load(CpuBackend::new(), source, None)?;
            Ok(vec![m; a.workers.max(1)])
        }
        "cuda" => a
            .gpus
            .iter()
            .map(|&g| {
                let be = CudaBackend::new(g)
                    .map_err(|e| UserError::new(format!("--backend cuda (GPU {g}): {e:#}")))?;
                let telemetry = Telemetry::open(be.device()).ok();
                load(be, source, telemetry)
            })
            .collect(),
        other => Err(UserError::new(format!("--backend {other}: use `cpu` or `cuda`")).into()),
    }
}

pub fn run(a: Args) -> Result<ExitCode> {
    if a.backend != "cpu" && a.backend != "cuda" {
        return Err(UserError::new(format!("--backend {}: use `cpu` or `cuda`", a.backend)).into());
    }
    if a.workers == 0 {
        return Err(UserError::new("--workers 0: use at least one worker").into());
    }
    let api_keys = a.api_key_file.as_ref().map(read_api_keys).transpose()?;
    check_ffmpeg()?;
    std::fs::create_dir_all(a.jobs_dir.join(jobs::INCOMING)).map_err(|e| {
        UserError::new(format!(
            "cannot create --jobs-dir {}: {e}; choose a writable directory",
            a.jobs_dir.display()
        ))
    })?;
    let cfg = Config {
        jobs_dir: a.jobs_dir.clone(),
        max_queue: a.max_queue,
        api_keys,
        max_image_bytes: a.max_image_bytes,
        max_audio_bytes: a.max_audio_bytes,
        max_pose_bytes: a.max_pose_bytes,
        max_audio_seconds: a.max_audio_seconds,
        result_ttl: a.result_ttl as f64,
    };
    let mut table = jobs::Table::default();
    for rec in jobs::load_all(&cfg.jobs_dir, cfg.result_ttl)? {
        table.insert(rec);
    }
    let resumed = table.queue.len();
    let workers = if a.backend == "cuda" {
        a.gpus.len()
    } else {
        a.workers
    };
    let shared = Arc::new(Shared::new(cfg, table, workers)?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve(a, shared, resumed))
}

async fn serve(a: Args, shared: Arc<Shared>, resumed: usize) -> Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(&a.addr)
        .await
        .map_err(|e| UserError::new(format!("cannot listen on --addr {}: {e}", a.addr)))?;
    let addr = listener.local_addr()?;
    // The first line on stdout: tests and scripts read the port from it.
    println!("cyberhost serve: listening on http://{addr}");
    eprintln!(
        "serve: jobs in {}; {resumed} queued job(s) resumed",
        shared.cfg.jobs_dir.display()
    );
    let app = api::router(shared.clone());
    let mut stop_rx = shared.shutdown.subscribe();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            })
            .await
    });
    tokio::spawn(janitor(shared.clone()));

    // Load the model(s) while the server already answers /healthz.
    let source = match &a.weights {
        Some(d) => WeightsSource::Dir(d.clone()),
        None => WeightsSource::Preset {
            preset: cyberhost_engine::pipeline::presets::Preset::Tiny,
            seed: 0,
        },
    };
    let loading = tokio::task::spawn_blocking(move || load_models(&a, &source).map(|m| (m, a)));
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let (models, a) = tokio::select! {
        r = loading => match r.context("loading the model")? {
            Ok(m) => m,
            Err(e) => {
                shared.shutdown.send_replace(true);
                let _ = server.await;
                return Err(e);
            }
        },
        _ = &mut signal => {
            shared.shutdown.send_replace(true);
            let _ = server.await;
            return Ok(ExitCode::SUCCESS);
        }
    };
    let _ = shared.model.set(models[0].clone());
    let handles: Vec<_> = models
        .into_iter()
        .map(|m| {
            let sh = shared.clone();
            std::thread::spawn(move || worker::worker(sh, m))
        })
        .collect();
    eprintln!("serve: model loaded; {} worker(s) ready", handles.len());

    signal.await;
    eprintln!("serve: shutting down: no new jobs; waiting for running jobs");
    {
        let _t = shared.lock();
        shared.accepting.store(false, Ordering::SeqCst);
        shared.stopping.store(true, Ordering::SeqCst);
    }
    shared.work.notify_all();
    shared.shutdown.send_replace(true);
    let join = tokio::task::spawn_blocking(move || {
        for h in handles {
            let _ = h.join();
        }
    });
    tokio::pin!(join);
    let grace = tokio::time::sleep(Duration::from_secs(a.shutdown_grace));
    tokio::select! {
        _ = &mut join => {}
        _ = grace => {
            eprintln!("serve: grace period over: stopping running jobs at the next step");
            shared.abort_running.store(true, Ordering::SeqCst);
            let _ = join.await;
        }
    }
    let _ = server.await;
    let t = shared.lock();
    eprintln!(
        "serve: stopped; {} job(s) queued for the next start",
        t.count(jobs::State::Queued)
    );
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Delete finished jobs older than the TTL, every minute (or TTL, if shorter).
async fn janitor(shared: Arc<Shared>) {
    let period = Duration::from_secs_f64(shared.cfg.result_ttl.clamp(1.0, 60.0));
    loop {
        tokio::time::sleep(period).await;
        let expired: Vec<Uuid> = {
            let mut t = shared.lock();
            let now = jobs::now();
            let ids: Vec<Uuid> = t
                .jobs
                .values()
                .filter(|j| {
                    j.rec.state.is_final()
                        && j.rec
                            .finished
                            .is_some_and(|f| f + shared.cfg.result_ttl < now)
                })
                .map(|j| j.rec.id)
                .collect();
            for id in &ids {
                t.jobs.remove(id);
            }
            ids
        };
        for id in expired {
            let _ = tokio::fs::remove_dir_all(jobs::job_dir(&shared.cfg.jobs_dir, id)).await;
        }
    }
}
