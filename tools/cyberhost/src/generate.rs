//! `cyberhost generate`: reference image + speech → MP4.

use crate::args::{Activations, SamplingArgs, WeightsDtype};
use anyhow::{Context, Result};
use cyberhost_engine::backends::cpu::CpuBackend;
use cyberhost_engine::backends::cuda::CudaBackend;
use cyberhost_engine::backends::Backend;
use cyberhost_engine::error::UserError;
use cyberhost_engine::pipeline::audio::{
    load_wav_bytes, load_wav_capped, max_seconds_from_env, parse_max_seconds,
};
use cyberhost_engine::pipeline::checkpoint::WeightsSource;
use cyberhost_engine::pipeline::conditions::PoseFile;
use cyberhost_engine::pipeline::generate::{Event, Request};
use cyberhost_engine::pipeline::image::{decode_image, load_image};
use cyberhost_engine::pipeline::presets::Preset;
use cyberhost_engine::pipeline::video::{
    abort_outputs, check_ffmpeg, check_frames_dir, check_output_path, write_outputs, AudioTrack,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// The bundled defaults: a drawn figure and ~2.4 s of espeak-ng speech.
const DEFAULT_IMAGE: &[u8] = include_bytes!("../../../engine/assets/reference.png");
const DEFAULT_SPEECH: &[u8] = include_bytes!("../../../engine/assets/speech.wav");

#[derive(clap::Args)]
pub struct Args {
    /// Reference photo (PNG or JPEG, any size). Default: a bundled drawn figure.
    #[arg(long)]
    image: Option<PathBuf>,
    /// Speech (WAV: 8/16/24/32-bit PCM or float, any channels, 8–192 kHz). Default: bundled speech.
    #[arg(long)]
    audio: Option<PathBuf>,
    /// Checkpoint directory (spec layout; see `make-weights`). Default: the built-in `tiny` model.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Output MP4.
    #[arg(long, default_value = "out.mp4")]
    out: PathBuf,
    /// Also write PNG frames into this directory.
    #[arg(long)]
    frames: Option<PathBuf>,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Keypoints / face / hands / movement JSON in input-image pixels (format in the README).
    #[arg(long)]
    pose: Option<PathBuf>,
    /// Hand clarity condition in [0, 1] (default: the checkpoint's, 1.0 = sharp hands).
    #[arg(long, allow_negative_numbers = true)]
    hand_clarity: Option<f32>,
    /// Backend: cpu (f32 reference) or cuda (our kernels; on the PTX emulator when
    /// CYBERHOST_CUDA_DRIVER points at the stand-in driver).
    #[arg(long, default_value = "cpu")]
    backend: String,
    /// CUDA: replay each sampler step from one captured CUDA graph (`on`, default) or launch
    /// every kernel from the host (`off`); results are bit-identical.
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    graphs: String,
    /// CUDA: storage dtype of the denoiser's activations. bf16 (default; f32 accumulation,
    /// statistics, timestep embeddings and sampler state) or f32 (f32-accurate products at about
    /// 2x the step time: 2x activation bytes, 2-3x tensor-core work on bf16 hi + lo operands
    /// split inside the kernels; fusions and flash attention stay on). Default:
    /// CYBERHOST_CUDA_ACTIVATIONS, else bf16.
    #[arg(long, value_enum)]
    activations: Option<Activations>,
    /// CUDA: storage of the linear weights: bf16 (default) or fp8 (e4m3 with per-output-channel
    /// scales, quantised once at load; linears on the Hopper FP8 GEMM with activations quantised
    /// per row; sm_90a devices only).
    #[arg(long, value_enum, default_value = "bf16")]
    weights_dtype: WeightsDtype,
    /// Longest accepted speech in seconds (checked from the WAV header before decoding).
    /// Default: CYBERHOST_MAX_AUDIO_SECONDS, else 600.
    #[arg(long, value_parser = parse_max_seconds)]
    max_audio_seconds: Option<f64>,
    /// Print progress as JSON lines on stdout instead of bars.
    #[arg(long)]
    json: bool,
}

/// Progress as bars (terminal), JSON lines (`--json`) or nothing.
struct Progress {
    json: bool,
    bar: Option<ProgressBar>,
    start: Instant,
}

impl Progress {
    fn new(json: bool) -> Self {
        Progress {
            json,
            bar: None,
            start: Instant::now(),
        }
    }

    fn emit(&mut self, v: serde_json::Value) {
        if self.json {
            println!("{v}");
        }
    }

    fn event(&mut self, e: Event) {
        let t = self.start.elapsed().as_secs_f64();
        match e {
            Event::Stage(s) => self.emit(serde_json::json!({"event": "stage", "stage": s, "t": t})),
            Event::Note(n) => {
                if self.json {
                    self.emit(serde_json::json!({"event": "note", "message": n, "t": t}));
                } else {
                    eprintln!("note: {n}");
                }
            }
            Event::Clip {
                index,
                count,
                steps,
            } => {
                self.emit(
                    serde_json::json!({"event": "clip", "clip": index, "clips": count, "t": t}),
                );
                if !self.json {
                    if self.bar.is_none() {
                        let bar = ProgressBar::new((count * steps) as u64);
                        let target = if std::io::stderr().is_terminal() {
                            ProgressDrawTarget::stderr()
                        } else {
                            ProgressDrawTarget::hidden()
                        };
                        bar.set_draw_target(target);
                        bar.set_style(
                            ProgressStyle::with_template(
                                "{msg} [{bar:30}] {pos}/{len} steps {elapsed}/{eta}",
                            )
                            .unwrap_or_else(|_| ProgressStyle::default_bar()),
                        );
                        self.bar = Some(bar);
                    }
                    if let Some(b) = &self.bar {
                        b.set_message(format!("clip {}/{count}", index + 1));
                    }
                }
            }
            Event::Step { clip, step, steps } => {
                self.emit(serde_json::json!({"event": "step", "clip": clip, "step": step, "steps": steps, "t": t}));
                if let Some(b) = &self.bar {
                    b.inc(1);
                }
            }
        }
    }
}

pub fn run(a: Args) -> Result<ExitCode> {
    match a.backend.as_str() {
        "cpu" => {
            a.weights_dtype.check_cpu()?;
            run_on(CpuBackend::new(), a)
        }
        "cuda" => {
            let be = CudaBackend::new(0)
                .map_err(|e| UserError::new(format!("--backend cuda: {e:#}")))?;
            a.weights_dtype.apply(&be)?;
            be.set_graphs(a.graphs == "on");
            if let Some(act) = a.activations {
                be.set_activations(act.dtype());
            }
            run_on(be, a)
        }
        other => Err(UserError::new(format!("--backend {other}: use `cpu` or `cuda`")).into()),
    }
}

/// Exit status after SIGINT / SIGTERM (128 + SIGINT, as shells report an interrupted program).
pub const INTERRUPTED: i32 = 130;

/// On SIGINT or SIGTERM: stop ffmpeg, remove every temporary output file and exit 130, so an
/// interrupted run leaves no partial video or frames (see `pipeline::video`).
fn install_interrupt_cleanup() -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("installing the SIGINT/SIGTERM handler")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                // Killing ffmpeg breaks the pipe the main thread may be writing frames into:
                // let that write fail (EPIPE) instead of SIGPIPE ending the process mid-cleanup.
                // SAFETY: changing a signal disposition from a normal thread.
                unsafe {
                    libc::signal(libc::SIGPIPE, libc::SIG_IGN);
                }
                let _held = abort_outputs(|pid| {
                    // SAFETY: plain syscalls on our own ffmpeg child.
                    unsafe {
                        libc::kill(pid as libc::pid_t, libc::SIGKILL);
                        libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
                    }
                });
                let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
                eprintln!("\ninterrupted ({name}): no output written");
                std::process::exit(INTERRUPTED);
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

fn run_on<B: Backend>(be: B, a: Args) -> Result<ExitCode> {
    install_interrupt_cleanup()?;
    check_output_path(&a.out)?;
    if let Some(dir) = &a.frames {
        check_frames_dir(dir)?;
    }
    check_ffmpeg()?;
    let reference = match &a.image {
        Some(p) => load_image(p)?,
        None => decode_image(DEFAULT_IMAGE, "bundled reference.png")?,
    };
    let max_seconds = match a.max_audio_seconds {
        Some(s) => s,
        None => max_seconds_from_env()?,
    };
    let speech = match &a.audio {
        Some(p) => load_wav_capped(p, max_seconds)?,
        None => load_wav_bytes(DEFAULT_SPEECH, "bundled speech.wav")?,
    };
    let pose = match &a.pose {
        Some(p) => {
            let pose = PoseFile::load(p)?;
            pose.check_against_image(
                reference.width(),
                reference.height(),
                &p.display().to_string(),
            )?;
            pose
        }
        None => PoseFile::default(),
    };
    let source = match &a.weights {
        Some(d) => WeightsSource::Dir(d.clone()),
        None => WeightsSource::Preset {
            preset: Preset::Tiny,
            seed: 0,
        },
    };
    let req = Request {
        seed: a.sampling.seed,
        steps: a.sampling.steps,
        guidance: a.sampling.guidance,
        size: a.sampling.size,
        hand_clarity: a.hand_clarity,
        trace: false,
    };
    let mut progress = Progress::new(a.json);
    progress.event(Event::Stage("load"));
    let comps = source.load(&be)?;
    comps.geometry(&req)?;
    let video = comps.generate(&be, &reference, &speech, &pose, &req, &mut |e| {
        progress.event(e)
    })?;
    if let Some(b) = &progress.bar {
        b.finish_and_clear();
    }
    let track = match &a.audio {
        Some(p) => AudioTrack::File(p),
        None => AudioTrack::Bytes(DEFAULT_SPEECH),
    };
    write_outputs(&a.out, a.frames.as_deref(), &video.frames, video.fps, track)
        .context("writing the video")?;
    let secs = progress.start.elapsed().as_secs_f64();
    if a.json {
        println!(
            "{}",
            serde_json::json!({"event": "done", "out": a.out.display().to_string(), "frames": video.frames.len(),
                "fps": video.fps, "audio_seconds": speech.seconds, "reference_hand_clarity": video.reference_hand_clarity, "t": secs})
        );
    } else {
        eprintln!(
            "wrote {} ({} frames at {} fps for {:.2} s of audio; reference hand clarity {:.2}) in {:.1} s",
            a.out.display(),
            video.frames.len(),
            video.fps,
            speech.seconds,
            video.reference_hand_clarity,
            secs
        );
    }
    Ok(ExitCode::SUCCESS)
}
