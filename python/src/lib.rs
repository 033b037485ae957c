//! `import cyberhost`: the engine from Python.
//!
//! ```python
//! import cyberhost
//! p = cyberhost.Pipeline("tiny", backend="cpu")      # or a checkpoint directory
//! info = p.generate(image="me.png", audio="hello.wav", out="a.mp4", seed=5,
//!                   on_progress=lambda e: print(e["event"]))
//! ```
//!
//! `generate` releases the GIL while it runs; `on_progress` gets the events of
//! `cyberhost generate --json` as dicts (with the GIL held, briefly). An exception raised in
//! the callback, or Ctrl-C, stops the run at the next sampler step and is raised from
//! `generate`. Bad inputs raise `ValueError` with the CLI's message; a missing GPU or other
//! failures raise `RuntimeError`.

use anyhow::Result;
use cyberhost_engine::backends::cpu::CpuBackend;
use cyberhost_engine::backends::cuda::CudaBackend;
use cyberhost_engine::backends::Backend;
use cyberhost_engine::error::{is_user_error, UserError};
use cyberhost_engine::pipeline::audio::{load_wav, load_wav_bytes, Speech};
use cyberhost_engine::pipeline::checkpoint::{Components, WeightsSource};
use cyberhost_engine::pipeline::conditions::PoseFile;
use cyberhost_engine::pipeline::generate::{Cancelled, Event, Request, Video};
use cyberhost_engine::pipeline::image::{decode_image, load_image};
use cyberhost_engine::pipeline::presets::Preset;
use cyberhost_engine::pipeline::video::{check_ffmpeg, check_output_path, write_mp4, AudioTrack};
use image::RgbImage;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

const DEFAULT_IMAGE: &[u8] = include_bytes!("../../engine/assets/reference.png");
const DEFAULT_SPEECH: &[u8] = include_bytes!("../../engine/assets/speech.wav");

/// The model on one backend, as one call `(image, speech, pose, request, on_event, stop) → video`
/// (so one Python class serves both backends).
type Model = Box<
    dyn Fn(
            &RgbImage,
            &Speech,
            &PoseFile,
            &Request,
            &mut dyn FnMut(Event),
            &dyn Fn() -> bool,
        ) -> Result<Video>
        + Send
        + Sync,
>;

/// The [`Model`] of components loaded on `be`.
fn model<B: Backend + Send + Sync + 'static>(be: B, comps: Components<B>) -> Model
where
    Components<B>: Send + Sync,
{
    Box::new(move |image, speech, pose, req, on, stop| {
        comps.geometry(req)?;
        comps.generate_until(&be, image, speech, pose, req, on, stop)
    })
}

fn to_py(e: anyhow::Error) -> PyErr {
    if is_user_error(&e) {
        PyValueError::new_err(format!("{e:#}"))
    } else {
        PyRuntimeError::new_err(format!("{e:#}"))
    }
}

/// A loaded CyberHost model.
#[pyclass(module = "cyberhost", frozen)]
struct Pipeline {
    model: Model,
    weights: String,
    backend: String,
}

fn parse_size(s: &str) -> Result<(usize, usize)> {
    let bad = || UserError::new(format!("`{s}` is not WxH, e.g. 512x512"));
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    Ok((
        w.trim().parse().map_err(|_| bad())?,
        h.trim().parse().map_err(|_| bad())?,
    ))
}

#[pymethods]
impl Pipeline {
    /// `weights`: "tiny" or "paper" (synthetic weights of a preset) or a checkpoint directory.
    /// `backend`: "cpu" or "cuda" (`device` picks the GPU).
    #[new]
    #[pyo3(signature = (weights = "tiny", backend = "cpu", device = 0))]
    fn new(py: Python<'_>, weights: &str, backend: &str, device: usize) -> PyResult<Self> {
        let source = match weights {
            "tiny" | "paper" => WeightsSource::Preset {
                preset: Preset::parse(weights).map_err(to_py)?,
                seed: 0,
            },
            dir => WeightsSource::Dir(PathBuf::from(dir)),
        };
        let backend_name = backend.to_string();
        let model = py
            .detach(move || -> Result<Model> {
                Ok(match backend_name.as_str() {
                    "cpu" => {
                        let be = CpuBackend::new();
                        let comps = source.load(&be)?;
                        model(be, comps)
                    }
                    "cuda" => {
                        let be = CudaBackend::new(device)
                            .map_err(|e| UserError::new(format!("backend=\"cuda\": {e:#}")))?;
                        let comps = source.load(&be)?;
                        model(be, comps)
                    }
                    other => {
                        return Err(UserError::new(format!(
                            "backend={other:?}: use \"cpu\" or \"cuda\""
                        ))
                        .into())
                    }
                })
            })
            .map_err(to_py)?;
        Ok(Pipeline {
            model,
            weights: weights.to_string(),
            backend: backend.to_string(),
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "Pipeline(weights={:?}, backend={:?})",
            self.weights, self.backend
        )
    }

    /// Make a video. `image` (PNG/JPEG) and `audio` (WAV) default to the bundled ones; `size`
    /// is "WxH" or (width, height). Returns the `done` event as a dict.
    #[pyo3(signature = (image = None, audio = None, out = "out.mp4".into(), *, seed = 0, steps = None,
        guidance = None, size = None, hand_clarity = None, pose = None, on_progress = None))]
    #[allow(clippy::too_many_arguments)]
    fn generate<'py>(
        &self,
        py: Python<'py>,
        image: Option<PathBuf>,
        audio: Option<PathBuf>,
        out: PathBuf,
        seed: u64,
        steps: Option<usize>,
        guidance: Option<f32>,
        size: Option<Bound<'py, PyAny>>,
        hand_clarity: Option<f32>,
        pose: Option<PathBuf>,
        on_progress: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let size = match size {
            None => None,
            Some(s) => Some(match s.extract::<String>() {
                Ok(text) => parse_size(&text).map_err(to_py)?,
                Err(_) => s.extract::<(usize, usize)>().map_err(|_| {
                    PyValueError::new_err("size: give \"WxH\" or a (width, height) tuple")
                })?,
            }),
        };
        let req = Request {
            seed,
            steps,
            guidance,
            size,
            hand_clarity,
            trace: false,
        };
        // The first Python error raised by the callback (or Ctrl-C); it stops the run.
        let failure: Mutex<Option<PyErr>> = Mutex::new(None);
        let result = py.detach(|| -> Result<serde_json::Value> {
            let start = Instant::now();
            check_output_path(&out)?;
            check_ffmpeg()?;
            let reference = match &image {
                Some(p) => load_image(p)?,
                None => decode_image(DEFAULT_IMAGE, "bundled reference.png")?,
            };
            let speech = match &audio {
                Some(p) => load_wav(p)?,
                None => load_wav_bytes(DEFAULT_SPEECH, "bundled speech.wav")?,
            };
            let pose = match &pose {
                Some(p) => PoseFile::load(p)?,
                None => PoseFile::default(),
            };
            let mut on = |e: Event| {
                let v = e.to_json(start.elapsed().as_secs_f64());
                Python::attach(|py| {
                    let r = (|| -> PyResult<()> {
                        py.check_signals()?;
                        if let Some(cb) = &on_progress {
                            cb.call1(py, (json_to_dict(py, &v)?,))?;
                        }
                        Ok(())
                    })();
                    if let Err(err) = r {
                        let mut f = failure.lock().unwrap_or_else(|e| e.into_inner());
                        f.get_or_insert(err);
                    }
                });
            };
            let stop = || failure.lock().map(|f| f.is_some()).unwrap_or(true);
            let video = (self.model)(&reference, &speech, &pose, &req, &mut on, &stop)?;
            let track = match &audio {
                Some(p) => AudioTrack::File(p),
                None => AudioTrack::Bytes(DEFAULT_SPEECH),
            };
            write_mp4(&out, &video.frames, video.fps, track)?;
            Ok(serde_json::json!({
                "event": "done", "out": out.display().to_string(), "frames": video.frames.len(),
                "fps": video.fps, "audio_seconds": speech.seconds,
                "reference_hand_clarity": video.reference_hand_clarity,
                "t": start.elapsed().as_secs_f64(),
            }))
        });
        if let Some(err) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(err);
        }
        match result {
            Ok(done) => json_to_dict(py, &done),
            Err(e) if e.downcast_ref::<Cancelled>().is_some() => {
                Err(PyRuntimeError::new_err("the run was cancelled"))
            }
            Err(e) => Err(to_py(e)),
        }
    }
}

/// A flat JSON object (the events) as a dict.
fn json_to_dict<'py>(py: Python<'py>, v: &serde_json::Value) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    if let Some(o) = v.as_object() {
        for (k, v) in o {
            match v {
                serde_json::Value::String(s) => d.set_item(k, s)?,
                serde_json::Value::Bool(b) => d.set_item(k, b)?,
                serde_json::Value::Number(n) if n.is_u64() => d.set_item(k, n.as_u64())?,
                serde_json::Value::Number(n) if n.is_i64() => d.set_item(k, n.as_i64())?,
                serde_json::Value::Number(n) => d.set_item(k, n.as_f64())?,
                serde_json::Value::Null => d.set_item(k, py.None())?,
                other => d.set_item(k, other.to_string())?,
            }
        }
    }
    Ok(d)
}

#[pymodule]
fn cyberhost(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Pipeline>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
