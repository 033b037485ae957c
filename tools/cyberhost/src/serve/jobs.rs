//! Jobs: their persisted record, the bounded queue and the files of each job.
//!
//! Layout of `--jobs-dir`:
//!
//! ```text
//! .incoming/<uuid>/      an upload in progress (removed at start-up)
//! <uuid>/job.json        the record, rewritten atomically (temporary file + rename)
//! <uuid>/image           the uploaded photo (PNG or JPEG)
//! <uuid>/audio.wav       the uploaded speech
//! <uuid>/pose.json       the optional pose JSON
//! <uuid>/result.mp4      the video, once the job succeeded
//! ```
//!
//! A job directory appears by renaming a complete upload directory, so a job that was
//! answered 202 always has its inputs and record on disk. At start-up queued jobs go back in
//! the queue in submission order, and jobs found `running` (the server died mid-run) run again.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use uuid::Uuid;

pub const RECORD: &str = "job.json";
pub const IMAGE: &str = "image";
pub const AUDIO: &str = "audio.wav";
pub const POSE: &str = "pose.json";
pub const RESULT: &str = "result.mp4";
pub const INCOMING: &str = ".incoming";

/// Seconds since the Unix epoch.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl State {
    pub const ALL: [State; 5] = [
        State::Queued,
        State::Running,
        State::Succeeded,
        State::Failed,
        State::Cancelled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, State::Succeeded | State::Failed | State::Cancelled)
    }
}

/// The knobs of a job (the `generate` flags of the same names).
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Params {
    pub seed: u64,
    pub steps: Option<usize>,
    pub guidance: Option<f32>,
    /// `[width, height]`
    pub size: Option<(usize, usize)>,
    pub hand_clarity: Option<f32>,
    /// Whether a pose JSON was given.
    pub pose: bool,
}

/// What is persisted of a job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub id: Uuid,
    /// Submission order (the queue order after a restart).
    pub seq: u64,
    pub state: State,
    pub params: Params,
    /// Names the inputs go by in messages (from the upload's file names).
    pub image_name: String,
    pub audio_name: String,
    pub created: f64,
    pub started: Option<f64>,
    pub finished: Option<f64>,
    /// How many times a worker started it (more than 1 after an interrupted run).
    pub attempts: u32,
    pub clip: usize,
    pub clips: usize,
    /// Sampler steps done, over all clips.
    pub step: usize,
    /// Sampler steps of the whole video (clips × steps), once known.
    pub steps_total: usize,
    /// Wall time when the first clip started (for the ETA).
    pub sampling_started: Option<f64>,
    pub error: Option<String>,
    /// The progress events so far, as `generate --json` prints them.
    pub events: Vec<Value>,
}

impl Record {
    /// Back to a fresh queued job (an interrupted run starts over).
    pub fn requeue(&mut self) {
        self.state = State::Queued;
        self.started = None;
        self.clip = 0;
        self.clips = 0;
        self.step = 0;
        self.steps_total = 0;
        self.sampling_started = None;
        self.events.clear();
    }

    /// Seconds left, from the mean step time so far.
    pub fn eta(&self) -> Option<f64> {
        let t0 = self.sampling_started?;
        if self.state != State::Running || self.step == 0 || self.steps_total == 0 {
            return None;
        }
        let per_step = (now() - t0) / self.step as f64;
        Some(per_step * self.steps_total.saturating_sub(self.step) as f64)
    }
}

/// A job in memory: its record, its cancel flag, and a signal that fires on every change.
pub struct Job {
    pub rec: Record,
    pub cancel: Arc<AtomicBool>,
    pub changed: tokio::sync::watch::Sender<()>,
}

impl Job {
    pub fn new(rec: Record) -> Self {
        Job {
            rec,
            cancel: Arc::new(AtomicBool::new(false)),
            changed: tokio::sync::watch::channel(()).0,
        }
    }
}

/// Every job and the queue, behind one lock.
#[derive(Default)]
pub struct Table {
    pub jobs: HashMap<Uuid, Job>,
    pub queue: VecDeque<Uuid>,
    pub next_seq: u64,
}

impl Table {
    pub fn count(&self, s: State) -> usize {
        self.jobs.values().filter(|j| j.rec.state == s).count()
    }

    /// Insert a job loaded from disk or just accepted; queued ones join the queue.
    pub fn insert(&mut self, rec: Record) {
        self.next_seq = self.next_seq.max(rec.seq + 1);
        if rec.state == State::Queued {
            self.queue.push_back(rec.id);
        }
        self.jobs.insert(rec.id, Job::new(rec));
    }
}

/// The directory of job `id`.
pub fn job_dir(root: &Path, id: Uuid) -> PathBuf {
    root.join(id.to_string())
}

/// Write `rec` to `dir/job.json` atomically.
pub fn save(dir: &Path, rec: &Record) -> Result<()> {
    let mut tmp = tempfile::Builder::new()
        .prefix(".job-")
        .suffix(".json")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    serde_json::to_writer(&mut tmp, rec)?;
    tmp.flush()?;
    tmp.as_file().sync_all()?;
    tmp.persist(dir.join(RECORD))
        .with_context(|| format!("cannot write {}", dir.join(RECORD).display()))?;
    Ok(())
}

/// Load every job under `root` (sorted by submission order). Jobs found running were
/// interrupted: they are queued again. Finished jobs older than `ttl` seconds are deleted.
/// Leftover uploads are removed.
pub fn load_all(root: &Path, ttl: f64) -> Result<Vec<Record>> {
    let _ = std::fs::remove_dir_all(root.join(INCOMING));
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root).with_context(|| format!("reading {}", root.display()))? {
        let entry = entry?;
        let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(|n| Uuid::parse_str(n).ok())
        else {
            continue;
        };
        let dir = entry.path();
        let rec: Record = match std::fs::read(dir.join(RECORD))
            .map_err(anyhow::Error::from)
            .and_then(|b| Ok(serde_json::from_slice(&b)?))
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!(
                    "serve: skipping {}: unreadable {RECORD} ({e})",
                    dir.display()
                );
                continue;
            }
        };
        if rec.id != id {
            eprintln!(
                "serve: skipping {}: its {RECORD} names another id",
                dir.display()
            );
            continue;
        }
        let mut rec = rec;
        if rec.state.is_final() && rec.finished.is_some_and(|f| f + ttl < now()) {
            let _ = std::fs::remove_dir_all(&dir);
            continue;
        }
        if rec.state == State::Running {
            eprintln!("serve: job {id} was interrupted; it runs again");
            rec.requeue();
            save(&dir, &rec)?;
        }
        out.push(rec);
    }
    out.sort_by_key(|r| r.seq);
    Ok(out)
}
