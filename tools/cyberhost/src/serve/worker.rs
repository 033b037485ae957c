//! The loaded model and the worker threads that run queued jobs on it.

use super::jobs::{self, State};
use super::Shared;
use anyhow::Result;
use cyberhost_engine::backends::cuda::profiling::Telemetry;
use cyberhost_engine::backends::Backend;
use cyberhost_engine::pipeline::audio::{load_wav_bytes, Speech};
use cyberhost_engine::pipeline::checkpoint::Components;
use cyberhost_engine::pipeline::conditions::PoseFile;
use cyberhost_engine::pipeline::generate::{Cancelled, Event, Geometry, Request, Video};
use cyberhost_engine::pipeline::image::decode_image;
use cyberhost_engine::pipeline::video::{write_mp4, AudioTrack};
use image::RgbImage;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;

/// A job's decoded inputs.
pub struct Inputs {
    pub image: RgbImage,
    pub speech: Speech,
    pub pose: PoseFile,
}

/// A model loaded on one backend, behind an object-safe interface.
pub trait Model: Send + Sync {
    fn geometry(&self, req: &Request) -> Result<Geometry>;
    fn generate(
        &self,
        inputs: &Inputs,
        req: &Request,
        on: &mut dyn FnMut(Event),
        stop: &dyn Fn() -> bool,
    ) -> Result<Video>;
    /// GPU memory (used, total) in bytes, when NVML can tell.
    fn device_memory(&self) -> Option<(u64, u64)>;
}

pub struct Loaded<B: Backend> {
    pub be: B,
    pub comps: Components<B>,
    pub telemetry: Option<Telemetry>,
}

impl<B: Backend> Model for Loaded<B>
where
    Components<B>: Send + Sync,
{
    fn geometry(&self, req: &Request) -> Result<Geometry> {
        self.comps.geometry(req)
    }

    fn generate(
        &self,
        inputs: &Inputs,
        req: &Request,
        on: &mut dyn FnMut(Event),
        stop: &dyn Fn() -> bool,
    ) -> Result<Video> {
        let Inputs {
            image,
            speech,
            pose,
        } = inputs;
        self.comps
            .generate_until(&self.be, image, speech, pose, req, on, stop)
    }

    fn device_memory(&self) -> Option<(u64, u64)> {
        let s = self.telemetry.as_ref()?.sample().ok()?;
        Some((s.memory_used_bytes?, s.memory_total_bytes?))
    }
}

/// The request of a job's knobs.
pub fn request(p: &jobs::Params) -> Request {
    Request {
        seed: p.seed,
        steps: p.steps,
        guidance: p.guidance,
        size: p.size,
        hand_clarity: p.hand_clarity,
        trace: false,
    }
}

/// Decode a job's inputs as the CLI does; errors are user errors naming the input.
pub fn load_inputs(dir: &std::path::Path, rec: &jobs::Record) -> Result<Inputs> {
    let image = decode_image(&std::fs::read(dir.join(jobs::IMAGE))?, &rec.image_name)?;
    let speech = load_wav_bytes(&std::fs::read(dir.join(jobs::AUDIO))?, &rec.audio_name)?;
    let pose = if rec.params.pose {
        let bytes = std::fs::read(dir.join(jobs::POSE))?;
        let text = String::from_utf8(bytes).map_err(|_| {
            cyberhost_engine::error::UserError::new(
                "pose: the pose part is not UTF-8 text; send the pose as JSON text",
            )
        })?;
        PoseFile::parse(&text, "pose")?
    } else {
        PoseFile::default()
    };
    Ok(Inputs {
        image,
        speech,
        pose,
    })
}

/// Take jobs from the queue until the server stops.
pub fn worker(shared: Arc<Shared>, model: Arc<dyn Model>) {
    loop {
        let id = {
            let mut t = shared.lock();
            loop {
                if shared.stopping.load(Ordering::SeqCst) {
                    return;
                }
                if let Some(id) = t.queue.pop_front() {
                    break id;
                }
                t = shared.work.wait(t).unwrap_or_else(|e| e.into_inner());
            }
        };
        run_job(&shared, model.as_ref(), id);
    }
}

/// Fold a progress event into the record.
fn apply(rec: &mut jobs::Record, e: &Event, t: f64) {
    match e {
        Event::Clip {
            index,
            count,
            steps,
        } => {
            rec.clip = *index;
            rec.clips = *count;
            rec.steps_total = count * steps;
            if rec.sampling_started.is_none() {
                rec.sampling_started = Some(jobs::now());
            }
        }
        Event::Step { .. } => rec.step += 1,
        _ => {}
    }
    rec.events.push(e.to_json(t));
}

fn run_job(shared: &Shared, model: &dyn Model, id: Uuid) {
    let dir = jobs::job_dir(&shared.cfg.jobs_dir, id);
    let Some((rec, cancel)) = shared.update(id, |job| {
        let r = &mut job.rec;
        r.requeue();
        r.state = State::Running;
        r.started = Some(jobs::now());
        r.attempts += 1;
        (r.clone(), job.cancel.clone())
    }) else {
        return;
    };
    shared.persist(id);
    eprintln!("serve: job {id} started (attempt {})", rec.attempts);
    let t0 = Instant::now();
    let mut last = Instant::now();
    let mut on = |e: Event| {
        let t = t0.elapsed().as_secs_f64();
        match e {
            Event::Step { .. } => {
                shared
                    .metrics
                    .step_seconds
                    .observe(last.elapsed().as_secs_f64());
                last = Instant::now();
            }
            Event::Clip { .. } => last = Instant::now(),
            _ => {}
        }
        shared.update(id, |job| apply(&mut job.rec, &e, t));
    };
    let stop = || cancel.load(Ordering::SeqCst) || shared.abort_running.load(Ordering::SeqCst);
    let outcome = (|| -> Result<serde_json::Value> {
        // As `generate --json`: the `load` stage (here: the job's inputs; the model is loaded).
        on(Event::Stage("load"));
        let inputs = load_inputs(&dir, &rec)?;
        let video = model.generate(&inputs, &request(&rec.params), &mut on, &stop)?;
        let speech = inputs.speech;
        let audio = dir.join(jobs::AUDIO);
        write_mp4(
            &dir.join(jobs::RESULT),
            &video.frames,
            video.fps,
            AudioTrack::File(&audio),
        )?;
        Ok(serde_json::json!({
            "event": "done",
            "out": format!("/v1/jobs/{id}/result"),
            "frames": video.frames.len(),
            "fps": video.fps,
            "audio_seconds": speech.seconds,
            "reference_hand_clarity": video.reference_hand_clarity,
            "t": t0.elapsed().as_secs_f64(),
        }))
    })();
    let secs = t0.elapsed().as_secs_f64();
    let cancelled = matches!(&outcome, Err(e) if e.downcast_ref::<Cancelled>().is_some());
    if cancelled && !cancel.load(Ordering::SeqCst) {
        // The server is stopping and the grace period is over: checkpoint = queue it again.
        shared.update(id, |job| job.rec.requeue());
        shared.persist(id);
        eprintln!("serve: job {id} interrupted by shutdown; queued again");
        return;
    }
    let (state, event, error) = match outcome {
        Ok(done) => (State::Succeeded, done, None),
        Err(_) if cancelled => (
            State::Cancelled,
            serde_json::json!({"event": "cancelled", "t": secs}),
            None,
        ),
        Err(e) => {
            let msg = format!("{e:#}");
            (
                State::Failed,
                serde_json::json!({"event": "error", "message": msg, "t": secs}),
                Some(msg),
            )
        }
    };
    let created = shared.update(id, |job| {
        let r = &mut job.rec;
        r.state = state;
        r.finished = Some(jobs::now());
        r.error = error.clone();
        r.events.push(event);
        r.created
    });
    shared.persist(id);
    shared.metrics.job_seconds.observe(secs);
    if let Some(c) = created {
        shared
            .metrics
            .latency_seconds
            .observe((jobs::now() - c).max(0.0));
    }
    shared.record_job_time(secs);
    match error {
        Some(e) => eprintln!("serve: job {id} failed in {secs:.2} s: {e}"),
        None => eprintln!("serve: job {id} {} in {secs:.2} s", state.name()),
    }
}
