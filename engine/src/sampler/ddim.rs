//! DDIM sampler: a port of diffusers 0.42.1 `DDIMScheduler`
//! (`schedulers/scheduling_ddim.py`), built from a `scheduler_config.json`.
//!
//! The noise schedule is computed the way torch computes it on the CPU, so the
//! f32 `alphas_cumprod` match diffusers bit for bit:
//! - `torch.linspace(.., dtype=float32)` is replayed with ATen's CPU kernel
//!   (symmetric halves, fused multiply-add);
//! - `torch.cumprod` on a CPU f32 tensor accumulates in f64 and rounds each
//!   prefix to f32;
//! - every tensor op (`1 - betas`, `** 2`, `sqrt`) is one f32 rounding.
//!
//! Exception: torch's CPU `sqrt` on f32 tensors (MKL VML) is not always correctly
//! rounded, while ours is; with `rescale_betas_zero_snr` (which takes a sqrt of the
//! whole schedule) and in the per-step `** 0.5` scalars, values can differ by 1 ulp
//! (fixture `ddim_e`: final sample rel L2 ~4e-7). All other schedules match exactly.
//!
//! `set_timesteps` replays NumPy (`np.linspace(..).round()`, `np.arange` with a
//! float step, round half to even). The step itself is a host-side f32
//! elementwise function of `(model_output, sample)` driven by the per-step
//! scalars in [`DdimStepCoeffs`], which a fused device kernel can reuse.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::Path;

/// `scheduler_config.json` fields (diffusers names; defaults as in diffusers 0.42.1).
/// Unknown keys (`_class_name`, `_diffusers_version`, ...) are ignored.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct DdimConfig {
    /// e.g. 1000
    pub num_train_timesteps: usize,
    /// e.g. 0.00085
    pub beta_start: f64,
    /// e.g. 0.012
    pub beta_end: f64,
    /// "linear" | "scaled_linear" | "squaredcos_cap_v2"
    pub beta_schedule: String,
    /// Explicit betas; overrides `beta_schedule` when present.
    pub trained_betas: Option<Vec<f64>>,
    /// e.g. false
    pub clip_sample: bool,
    /// e.g. false
    pub set_alpha_to_one: bool,
    /// e.g. 1
    pub steps_offset: usize,
    /// "epsilon" | "v_prediction" | "sample"
    pub prediction_type: String,
    /// Dynamic thresholding (unsupported: must be false).
    pub thresholding: bool,
    pub dynamic_thresholding_ratio: f64,
    /// e.g. 1.0
    pub clip_sample_range: f64,
    pub sample_max_value: f64,
    /// "leading" | "trailing" | "linspace"
    pub timestep_spacing: String,
    /// e.g. false
    pub rescale_betas_zero_snr: bool,
}

impl Default for DdimConfig {
    fn default() -> Self {
        DdimConfig {
            num_train_timesteps: 1000,
            beta_start: 0.0001,
            beta_end: 0.02,
            beta_schedule: "linear".into(),
            trained_betas: None,
            clip_sample: true,
            set_alpha_to_one: true,
            steps_offset: 0,
            prediction_type: "epsilon".into(),
            thresholding: false,
            dynamic_thresholding_ratio: 0.995,
            clip_sample_range: 1.0,
            sample_max_value: 1.0,
            timestep_spacing: "leading".into(),
            rescale_betas_zero_snr: false,
        }
    }
}

impl DdimConfig {
    /// Parse a `scheduler_config.json` text.
    pub fn from_json_str(s: &str) -> Result<Self> {
        serde_json::from_str(s).context("scheduler config is not a valid DDIMScheduler config JSON")
    }

    /// Read a `scheduler_config.json` file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read scheduler config {}", path.display()))?;
        Self::from_json_str(&text).with_context(|| format!("in {}", path.display()))
    }
}

/// `beta_schedule`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BetaSchedule {
    Linear,
    ScaledLinear,
    SquaredcosCapV2,
    /// `trained_betas` given explicitly.
    Trained,
}

/// `prediction_type`: what the denoiser outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PredictionType {
    Epsilon,
    VPrediction,
    Sample,
}

/// `timestep_spacing`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestepSpacing {
    Leading,
    Trailing,
    Linspace,
}

impl PredictionType {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "epsilon" => PredictionType::Epsilon,
            "v_prediction" => PredictionType::VPrediction,
            "sample" => PredictionType::Sample,
            other => bail!(
                "scheduler config: `prediction_type` is \"{other}\"; DDIM supports \"epsilon\", \"v_prediction\" and \"sample\""
            ),
        })
    }
}

impl TimestepSpacing {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "leading" => TimestepSpacing::Leading,
            "trailing" => TimestepSpacing::Trailing,
            "linspace" => TimestepSpacing::Linspace,
            other => bail!(
                "scheduler config: `timestep_spacing` is \"{other}\"; DDIM supports \"leading\", \"trailing\" and \"linspace\""
            ),
        })
    }
}

impl BetaSchedule {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "linear" => BetaSchedule::Linear,
            "scaled_linear" => BetaSchedule::ScaledLinear,
            "squaredcos_cap_v2" => BetaSchedule::SquaredcosCapV2,
            other => bail!(
                "scheduler config: `beta_schedule` is \"{other}\"; DDIM supports \"linear\", \"scaled_linear\" and \"squaredcos_cap_v2\" (or explicit `trained_betas`)"
            ),
        })
    }
}

/// The per-step scalars of one DDIM step `t → prev_t` (all f32, as diffusers
/// computes them from 0-d float32 tensors). [`DdimStepCoeffs::apply`] is the
/// elementwise update; a device kernel takes the same fields.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DdimStepCoeffs {
    pub timestep: usize,
    /// `t − num_train_timesteps / num_inference_steps`; negative → final alpha.
    pub prev_timestep: i64,
    /// ᾱ_t
    pub alpha_prod_t: f32,
    /// ᾱ_prev (or `final_alpha_cumprod`)
    pub alpha_prod_t_prev: f32,
    /// √ᾱ_t
    pub sqrt_alpha_prod_t: f32,
    /// √(1 − ᾱ_t)
    pub sqrt_beta_prod_t: f32,
    /// √ᾱ_prev
    pub sqrt_alpha_prod_t_prev: f32,
    /// √(1 − ᾱ_prev − σ²): weight of the predicted noise
    pub direction_coeff: f32,
    /// σ_t = eta·√variance (0 for eta 0)
    pub std_dev_t: f32,
    pub prediction_type: PredictionType,
    /// `Some(r)`: clamp x̂₀ to [−r, r] (`clip_sample`).
    pub clip_sample_range: Option<f32>,
}

impl DdimStepCoeffs {
    /// The coefficient vector of [`crate::backends::Backend::cfg_ddim_step`] for classifier-free
    /// guidance scale `guidance`. Errors for eta > 0 (the fused step draws no noise).
    pub fn device_coeffs(
        &self,
        guidance: f32,
    ) -> Result<[f32; crate::backends::composed::CFG_DDIM_COEFFS]> {
        if self.std_dev_t > 0.0 {
            bail!(
                "the fused CFG + DDIM step supports eta = 0 only (got σ_t = {})",
                self.std_dev_t
            );
        }
        let pred = match self.prediction_type {
            PredictionType::Epsilon => 0.0,
            PredictionType::VPrediction => 1.0,
            PredictionType::Sample => 2.0,
        };
        let (lo, hi) = match self.clip_sample_range {
            Some(r) => (-r, r),
            None => (f32::NEG_INFINITY, f32::INFINITY),
        };
        Ok([
            guidance,
            self.sqrt_alpha_prod_t,
            self.sqrt_beta_prod_t,
            self.sqrt_alpha_prod_t_prev,
            self.direction_coeff,
            pred,
            lo,
            hi,
        ])
    }

    /// One element: returns `(prev_sample, pred_original_sample)`. `noise` is the
    /// variance noise (only read when `std_dev_t > 0`).
    #[inline]
    pub fn apply_one(&self, model_output: f32, sample: f32, noise: f32) -> (f32, f32) {
        let (sa, sb) = (self.sqrt_alpha_prod_t, self.sqrt_beta_prod_t);
        let (mut x0, eps) = match self.prediction_type {
            PredictionType::Epsilon => ((sample - sb * model_output) / sa, model_output),
            PredictionType::Sample => (model_output, (sample - sa * model_output) / sb),
            PredictionType::VPrediction => (
                sa * sample - sb * model_output,
                sa * model_output + sb * sample,
            ),
        };
        if let Some(r) = self.clip_sample_range {
            // torch.clamp(x, -r, r) = min(max(x, -r), r); NaN stays NaN.
            if x0 < -r {
                x0 = -r;
            }
            if x0 > r {
                x0 = r;
            }
        }
        let mut prev = self.sqrt_alpha_prod_t_prev * x0 + self.direction_coeff * eps;
        if self.std_dev_t > 0.0 {
            prev += self.std_dev_t * noise;
        }
        (prev, x0)
    }

    /// The elementwise step over a whole sample: returns `prev_sample`.
    /// `variance_noise` must be given (same length) when `std_dev_t > 0`.
    pub fn apply(
        &self,
        model_output: &[f32],
        sample: &[f32],
        variance_noise: Option<&[f32]>,
    ) -> Result<Vec<f32>> {
        if model_output.len() != sample.len() {
            bail!(
                "DDIM step: model_output has {} elements but sample has {}",
                model_output.len(),
                sample.len()
            );
        }
        match variance_noise {
            Some(n) if n.len() != sample.len() => {
                bail!(
                    "DDIM step: variance_noise has {} elements but sample has {}",
                    n.len(),
                    sample.len()
                )
            }
            None if self.std_dev_t > 0.0 => {
                bail!("DDIM step with eta > 0 needs variance_noise (the Gaussian noise diffusers would draw)")
            }
            _ => {}
        }
        Ok(match variance_noise {
            Some(n) => model_output
                .iter()
                .zip(sample)
                .zip(n)
                .map(|((&m, &s), &z)| self.apply_one(m, s, z).0)
                .collect(),
            None => model_output
                .iter()
                .zip(sample)
                .map(|(&m, &s)| self.apply_one(m, s, 0.0).0)
                .collect(),
        })
    }
}

/// diffusers `DDIMScheduler`.
#[derive(Clone, Debug)]
pub struct DdimScheduler {
    pub config: DdimConfig,
    pub beta_schedule: BetaSchedule,
    pub prediction_type: PredictionType,
    pub timestep_spacing: TimestepSpacing,
    /// (num_train_timesteps,)
    pub betas: Vec<f32>,
    /// (num_train_timesteps,)
    pub alphas_cumprod: Vec<f32>,
    pub final_alpha_cumprod: f32,
    num_inference_steps: Option<usize>,
    timesteps: Vec<usize>,
}

impl DdimScheduler {
    /// Build from a parsed config, validating every option.
    pub fn new(config: DdimConfig) -> Result<Self> {
        let n = config.num_train_timesteps;
        if n == 0 {
            bail!("scheduler config: `num_train_timesteps` is 0; it must be at least 1");
        }
        if config.thresholding {
            bail!(
                "scheduler config: `thresholding` is true; dynamic thresholding is not supported by this DDIM port (set it to false, `clip_sample` is supported)"
            );
        }
        let prediction_type = PredictionType::parse(&config.prediction_type)?;
        let timestep_spacing = TimestepSpacing::parse(&config.timestep_spacing)?;
        let (beta_schedule, mut betas) = match &config.trained_betas {
            Some(tb) => {
                if tb.len() != n {
                    bail!(
                        "scheduler config: `trained_betas` has {} values but `num_train_timesteps` is {n}",
                        tb.len()
                    );
                }
                (
                    BetaSchedule::Trained,
                    tb.iter().map(|&b| b as f32).collect::<Vec<f32>>(),
                )
            }
            None => {
                let s = BetaSchedule::parse(&config.beta_schedule)?;
                let betas = match s {
                    BetaSchedule::Linear => {
                        torch_linspace_f32(config.beta_start as f32, config.beta_end as f32, n)
                    }
                    BetaSchedule::ScaledLinear => torch_linspace_f32(
                        config.beta_start.powf(0.5) as f32,
                        config.beta_end.powf(0.5) as f32,
                        n,
                    )
                    .into_iter()
                    .map(|b| b * b)
                    .collect(),
                    BetaSchedule::SquaredcosCapV2 => betas_for_alpha_bar_cosine(n, 0.999),
                    BetaSchedule::Trained => unreachable!("parse never yields Trained"),
                };
                (s, betas)
            }
        };
        if config.rescale_betas_zero_snr {
            betas = rescale_zero_terminal_snr(&betas);
        }
        let alphas: Vec<f32> = betas.iter().map(|&b| 1.0f32 - b).collect();
        let alphas_cumprod = torch_cumprod_f32(&alphas);
        let final_alpha_cumprod = if config.set_alpha_to_one {
            1.0
        } else {
            alphas_cumprod[0]
        };
        let timesteps = (0..n).rev().collect();
        Ok(DdimScheduler {
            config,
            beta_schedule,
            prediction_type,
            timestep_spacing,
            betas,
            alphas_cumprod,
            final_alpha_cumprod,
            num_inference_steps: None,
            timesteps,
        })
    }

    /// Read `scheduler_config.json` (a file, or a directory holding it).
    pub fn from_config_file(path: &Path) -> Result<Self> {
        let file = if path.is_dir() {
            path.join("scheduler_config.json")
        } else {
            path.to_path_buf()
        };
        let cfg = DdimConfig::from_file(&file)?;
        Self::new(cfg).with_context(|| format!("in {}", file.display()))
    }

    /// diffusers `set_timesteps(num_inference_steps)`.
    pub fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<()> {
        let t = self.config.num_train_timesteps;
        if num_inference_steps == 0 {
            bail!("DDIM: num_inference_steps must be at least 1");
        }
        if num_inference_steps > t {
            bail!(
                "DDIM: num_inference_steps {num_inference_steps} cannot be larger than num_train_timesteps {t}"
            );
        }
        let n = num_inference_steps;
        let ts: Vec<i64> = match self.timestep_spacing {
            TimestepSpacing::Linspace => numpy_linspace(0.0, (t - 1) as f64, n)
                .into_iter()
                .rev()
                .map(|v| v.round_ties_even() as i64)
                .collect(),
            TimestepSpacing::Leading => {
                let ratio = (t / n) as i64;
                (0..n as i64)
                    .rev()
                    .map(|i| i * ratio + self.config.steps_offset as i64)
                    .collect()
            }
            TimestepSpacing::Trailing => {
                let ratio = t as f64 / n as f64;
                numpy_arange_f64(t as f64, 0.0, -ratio)
                    .into_iter()
                    .map(|v| v.round_ties_even() as i64 - 1)
                    .collect()
            }
        };
        let mut out = Vec::with_capacity(ts.len());
        for v in ts {
            if v < 0 || v as usize >= t {
                bail!(
                    "DDIM: timestep {v} (spacing \"{}\", steps_offset {}, {n} steps) is outside 0..{t}",
                    self.config.timestep_spacing,
                    self.config.steps_offset
                );
            }
            out.push(v as usize);
        }
        self.num_inference_steps = Some(n);
        self.timesteps = out;
        Ok(())
    }

    /// The timesteps, descending (after `set_timesteps`; all training steps before).
    pub fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    pub fn num_inference_steps(&self) -> Option<usize> {
        self.num_inference_steps
    }

    /// diffusers `init_noise_sigma`.
    pub fn init_noise_sigma(&self) -> f32 {
        1.0
    }

    /// The scalars of the step at `timestep` with noise weight `eta`.
    pub fn step_coeffs(&self, timestep: usize, eta: f32) -> Result<DdimStepCoeffs> {
        let n = self
            .num_inference_steps
            .context("DDIM: call set_timesteps before step (number of inference steps is unset)")?;
        if !(eta >= 0.0) || !eta.is_finite() {
            bail!("DDIM: eta must be a finite number >= 0 (got {eta})");
        }
        let t_train = self.config.num_train_timesteps;
        if timestep >= t_train {
            bail!("DDIM: timestep {timestep} is outside 0..{t_train}");
        }
        let prev_timestep = timestep as i64 - (t_train / n) as i64;
        let alpha_prod_t = self.alphas_cumprod[timestep];
        let alpha_prod_t_prev = if prev_timestep >= 0 {
            self.alphas_cumprod[prev_timestep as usize]
        } else {
            self.final_alpha_cumprod
        };
        let beta_prod_t = 1.0f32 - alpha_prod_t;
        let beta_prod_t_prev = 1.0f32 - alpha_prod_t_prev;
        let std_dev_t = if eta > 0.0 {
            let variance =
                (beta_prod_t_prev / beta_prod_t) * (1.0f32 - alpha_prod_t / alpha_prod_t_prev);
            eta * variance.sqrt()
        } else {
            0.0
        };
        let clip_sample_range = if self.config.clip_sample {
            Some(self.config.clip_sample_range as f32)
        } else {
            None
        };
        Ok(DdimStepCoeffs {
            timestep,
            prev_timestep,
            alpha_prod_t,
            alpha_prod_t_prev,
            sqrt_alpha_prod_t: alpha_prod_t.sqrt(),
            sqrt_beta_prod_t: beta_prod_t.sqrt(),
            sqrt_alpha_prod_t_prev: alpha_prod_t_prev.sqrt(),
            direction_coeff: (1.0f32 - alpha_prod_t_prev - std_dev_t * std_dev_t).sqrt(),
            std_dev_t,
            prediction_type: self.prediction_type,
            clip_sample_range,
        })
    }

    /// diffusers `step(model_output, timestep, sample, eta)` → `prev_sample`.
    /// With `eta > 0`, `variance_noise` is the Gaussian noise diffusers would draw.
    pub fn step(
        &self,
        model_output: &[f32],
        timestep: usize,
        sample: &[f32],
        eta: f32,
        variance_noise: Option<&[f32]>,
    ) -> Result<Vec<f32>> {
        self.step_coeffs(timestep, eta)?
            .apply(model_output, sample, variance_noise)
    }
}

/// `torch.linspace(start, end, steps, dtype=torch.float32)` on the CPU (torch 2.15.0,
/// x86-64 build): ATen's `linspace_kernel` counts the first half up from `start` and
/// the second half down from `end`, and the compiler contracts `start + step·i` into
/// one fused multiply-add. Verified bit for bit against torch for the schedules the
/// fixtures use.
pub fn torch_linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    match steps {
        0 => return Vec::new(),
        1 => return vec![start],
        _ => {}
    }
    let step = (end - start) / (steps - 1) as f32;
    let halfway = steps / 2;
    (0..steps)
        .map(|idx| {
            if idx < halfway {
                step.mul_add(idx as f32, start)
            } else {
                (-step).mul_add((steps - idx - 1) as f32, end)
            }
        })
        .collect()
}

/// `torch.cumprod` of a CPU float32 tensor: accumulates in f64, rounds each prefix.
pub fn torch_cumprod_f32(x: &[f32]) -> Vec<f32> {
    let mut acc = 1.0f64;
    x.iter()
        .map(|&v| {
            acc *= v as f64;
            acc as f32
        })
        .collect()
}

/// diffusers `betas_for_alpha_bar(n, max_beta, "cosine")` (computed in f64, stored as f32).
fn betas_for_alpha_bar_cosine(n: usize, max_beta: f64) -> Vec<f32> {
    let alpha_bar = |t: f64| -> f64 {
        let c = ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0).cos();
        c * c
    };
    (0..n)
        .map(|i| {
            let t1 = i as f64 / n as f64;
            let t2 = (i + 1) as f64 / n as f64;
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(max_beta) as f32
        })
        .collect()
}

/// diffusers `rescale_zero_terminal_snr` on f32 betas (each tensor op one f32 rounding).
fn rescale_zero_terminal_snr(betas: &[f32]) -> Vec<f32> {
    let alphas: Vec<f32> = betas.iter().map(|&b| 1.0f32 - b).collect();
    let mut abs: Vec<f32> = torch_cumprod_f32(&alphas)
        .into_iter()
        .map(f32::sqrt)
        .collect();
    let a0 = abs[0];
    let at = abs[abs.len() - 1];
    for v in abs.iter_mut() {
        *v -= at;
    }
    let scale = a0 / (a0 - at);
    for v in abs.iter_mut() {
        *v *= scale;
    }
    let ab: Vec<f32> = abs.iter().map(|&v| v * v).collect();
    let mut out = Vec::with_capacity(ab.len());
    out.push(1.0f32 - ab[0]);
    for i in 1..ab.len() {
        out.push(1.0f32 - ab[i] / ab[i - 1]);
    }
    out
}

/// `np.linspace(start, stop, num)` (endpoint=True) in f64.
fn numpy_linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 0 {
        return Vec::new();
    }
    let div = num - 1;
    let delta = stop - start;
    let mut y: Vec<f64> = (0..num).map(|i| i as f64).collect();
    if div > 0 {
        let step = delta / div as f64;
        if step == 0.0 {
            for v in y.iter_mut() {
                *v = *v / div as f64 * delta;
            }
        } else {
            for v in y.iter_mut() {
                *v *= step;
            }
        }
    } else {
        for v in y.iter_mut() {
            *v *= delta;
        }
    }
    for v in y.iter_mut() {
        *v += start;
    }
    if num > 1 {
        y[num - 1] = stop;
    }
    y
}

/// `np.arange(start, stop, step)` for f64: length ⌈(stop − start)/step⌉, then
/// NumPy's fill (`start + i·(buf[1] − buf[0])`).
fn numpy_arange_f64(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let len = ((stop - start) / step).ceil();
    if !(len > 0.0) {
        return Vec::new();
    }
    let len = len as usize;
    let mut out = Vec::with_capacity(len);
    out.push(start);
    if len > 1 {
        let second = start + step;
        out.push(second);
        let delta = second - start;
        for i in 2..len {
            out.push(start + i as f64 * delta);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_timesteps_match_diffusers() {
        let cfg = DdimConfig {
            steps_offset: 1,
            ..Default::default()
        };
        let mut s = DdimScheduler::new(cfg).unwrap();
        s.set_timesteps(4).unwrap();
        assert_eq!(s.timesteps(), &[751, 501, 251, 1]);
    }

    #[test]
    fn trailing_and_linspace_timesteps() {
        let mut s = DdimScheduler::new(DdimConfig {
            timestep_spacing: "trailing".into(),
            ..Default::default()
        })
        .unwrap();
        s.set_timesteps(3).unwrap();
        assert_eq!(s.timesteps(), &[999, 666, 332]);
        let mut s = DdimScheduler::new(DdimConfig {
            timestep_spacing: "linspace".into(),
            ..Default::default()
        })
        .unwrap();
        s.set_timesteps(4).unwrap();
        assert_eq!(s.timesteps(), &[999, 666, 333, 0]);
    }

    #[test]
    fn config_errors_name_key_and_value() {
        let e = DdimScheduler::new(DdimConfig {
            beta_schedule: "sigmoid".into(),
            ..Default::default()
        })
        .unwrap_err();
        let m = format!("{e:#}");
        assert!(m.contains("beta_schedule") && m.contains("sigmoid"), "{m}");
        let e = DdimScheduler::new(DdimConfig {
            thresholding: true,
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("thresholding"));
    }
}
