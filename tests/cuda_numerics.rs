//! Where the CUDA backend's error against the CPU reference comes from, op by op.
//!
//! [`Probe`] wraps a backend. Each op runs on the wrapped backend; with `check` on, the op's
//! inputs are downloaded and the same op runs on the CPU reference on exactly those values, and
//! the local relative L2 error of the output is recorded per op kind and shape next to the
//! "bf16 floor" (the error of merely rounding the CPU output to bf16). An op far above its floor
//! has a kernel problem; an op at its floor is as good as bf16 storage allows. `round` simulates
//! bf16 numerics on the CPU (every op output rounded to bf16, or only the GEMM/conv/attention
//! operands) to measure how sensitive the whole network is to bf16 rounding alone.
//!
//! The tests here are diagnostics (ignored; the commands are in the ignore reasons), plus one
//! fast CPU test that checks the probe itself.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use common::{random, random_span, round_bf16};
use cyberhost_engine::backends::cpu::{CpuBackend, CpuTensor};
use cyberhost_engine::backends::cuda::{CudaBackend, CudaTensor};
use cyberhost_engine::backends::{
    Backend, Binary, Conv2dParams, ConvEpilogue, LinearEpilogue, TensorLike, Unary,
};
use cyberhost_engine::pipeline::audio::Speech;
use cyberhost_engine::pipeline::checkpoint::WeightsSource;
use cyberhost_engine::pipeline::conditions::PoseFile;
use cyberhost_engine::pipeline::generate::{Request, Video};
use cyberhost_engine::pipeline::presets::Preset;

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    cyberhost_engine::conformance::rel_l2(a, b)
}

/// What the probe does to the numbers of the wrapped backend (CPU simulations of bf16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Round {
    /// Nothing: the wrapped backend's own numerics.
    None,
    /// Every op's output rounded to bf16 (bf16 storage with exact f32 math inside each op).
    Outputs,
    /// Only the operands of linear/matmul/conv/attention rounded to bf16, outputs kept in f32
    /// (the CUDA backend with f32 storage: tensor-core operands are bf16).
    GemmOperands,
}

/// Error statistics of one op kind and shape.
#[derive(Clone, Debug, Default)]
struct Stat {
    count: usize,
    sum_err: f64,
    max_err: f64,
    sum_floor: f64,
}

#[derive(Clone)]
struct Probe<B: Backend> {
    inner: B,
    cpu: CpuBackend,
    check: bool,
    round: Round,
    /// With `Round::Outputs`: round only the outputs of ops whose key starts with this; with
    /// `Round::GemmOperands`: round the outputs of these ops too.
    only: Option<String>,
    /// With `Round::Outputs`: ops whose key starts with this round their output even on f32
    /// inputs (a cast to bf16 there), and ops whose key starts with `keep_f32` never do.
    force: Option<String>,
    keep_f32: Option<String>,
    /// With `Round::GemmOperands`: op kinds whose operands stay f32 (hi + lo split operands);
    /// when non-empty, `from_f32` data (weights, inputs) is rounded to bf16 as on the CUDA backend.
    exact: Vec<&'static str>,
    stats: Arc<Mutex<BTreeMap<String, Stat>>>,
}

impl<B: Backend> Probe<B> {
    fn new(inner: B, check: bool, round: Round) -> Self {
        Probe {
            inner,
            cpu: CpuBackend::new(),
            check,
            round,
            only: None,
            force: None,
            keep_f32: None,
            exact: Vec::new(),
            stats: Arc::default(),
        }
    }

    fn host(&self, t: &B::Tensor) -> Result<CpuTensor> {
        CpuTensor::from_vec(t.shape(), self.inner.to_f32(t)?)
    }

    fn host_opt(&self, t: Option<&B::Tensor>) -> Result<Option<CpuTensor>> {
        t.map(|t| self.host(t)).transpose()
    }

    /// `t` with its values rounded to bf16.
    fn rounded(&self, t: &B::Tensor) -> Result<B::Tensor> {
        let v = self.inner.to_f32(t)?;
        self.inner.from_f32(t.shape(), &round_bf16(&v))
    }

    /// GEMM-like operand: rounded to bf16 under `Round::GemmOperands`.
    fn operand(&self, kind: &str, t: &B::Tensor) -> Result<B::Tensor> {
        if self.round == Round::GemmOperands && !self.exact.contains(&kind) {
            self.rounded(t)
        } else {
            Ok(t.clone())
        }
    }

    fn operand_opt(&self, kind: &str, t: Option<&B::Tensor>) -> Result<Option<B::Tensor>> {
        t.map(|t| self.operand(kind, t)).transpose()
    }

    /// GEMM-like op `kind` on input `x`, weight `w` and optional bias (each an
    /// [`Self::operand`]): `op` runs it on the wrapped backend, `reference` on the CPU; the stats
    /// key is [`epilogue_key`] of `kind` and the epilogue `flags`.
    fn gemm_like(
        &self,
        kind: &'static str,
        flags: &[(bool, &str)],
        (x, w, bias): (&B::Tensor, &B::Tensor, Option<&B::Tensor>),
        op: impl FnOnce(&B::Tensor, &B::Tensor, Option<&B::Tensor>) -> Result<B::Tensor>,
        reference: impl FnOnce(&CpuTensor, &CpuTensor, Option<&CpuTensor>) -> Result<CpuTensor>,
    ) -> Result<B::Tensor> {
        let (x, w) = (self.operand(kind, x)?, self.operand(kind, w)?);
        let bias = self.operand_opt(kind, bias)?;
        let out = op(&x, &w, bias.as_ref())?;
        let key = epilogue_key(kind, flags, &x, &w);
        self.finish(&[&x, &w], key, out, || {
            let b = self.host_opt(bias.as_ref())?;
            reference(&self.host(&x)?, &self.host(&w)?, b.as_ref())
        })
    }

    /// Post-process `out` of op `key` (rounding), and with `check`, compare it to `reference`
    /// (the CPU op on the same inputs, computed lazily).
    fn finish(
        &self,
        inputs: &[&B::Tensor],
        key: String,
        out: B::Tensor,
        reference: impl FnOnce() -> Result<CpuTensor>,
    ) -> Result<B::Tensor> {
        self.finish_as(inputs, key, out, false, reference)
    }

    /// [`Self::finish`]; `f32_out`: the op's output stays f32 on the CUDA backend whatever the
    /// storage (never rounded by `Round::Outputs`).
    fn finish_as(
        &self,
        inputs: &[&B::Tensor],
        key: String,
        out: B::Tensor,
        f32_out: bool,
        reference: impl FnOnce() -> Result<CpuTensor>,
    ) -> Result<B::Tensor> {
        let selected = self
            .only
            .as_ref()
            .is_none_or(|p| key.starts_with(p.as_str()));
        // The CUDA backend computes in f32 when any input is f32 (e.g. the latents, timesteps):
        // an input whose values are not all bf16 numbers is one.
        let bf16_inputs = || -> Result<bool> {
            for t in inputs {
                let v = self.inner.to_f32(t)?;
                if v.iter()
                    .any(|&x| half::bf16::from_f32(x).to_f32().to_bits() != x.to_bits())
                {
                    return Ok(false);
                }
            }
            Ok(true)
        };
        let round_out = match self.round {
            Round::None => false,
            Round::Outputs => {
                let starts =
                    |p: &Option<String>| p.as_ref().is_some_and(|p| key.starts_with(p.as_str()));
                !f32_out
                    && selected
                    && !starts(&self.keep_f32)
                    && (starts(&self.force) || bf16_inputs()?)
            }
            // f32 storage: only the selected ops round their output (e.g. a bf16-only kernel).
            Round::GemmOperands => self.only.is_some() && selected,
        };
        let out = if round_out { self.rounded(&out)? } else { out };
        if self.check {
            let r = reference()?;
            let got = self.inner.to_f32(&out)?;
            let err = rel_l2(&got, r.data());
            let floor = rel_l2(&round_bf16(r.data()), r.data());
            let mut stats = self.stats.lock().unwrap();
            let s = stats.entry(key).or_default();
            s.count += 1;
            s.sum_err += err;
            s.max_err = s.max_err.max(err);
            s.sum_floor += floor;
        }
        Ok(out)
    }

    /// One table row per op kind and shape, worst excess over the bf16 floor first.
    fn report(&self, title: &str) -> Vec<(String, Stat)> {
        let stats = self.stats.lock().unwrap();
        let mut rows: Vec<(String, Stat)> =
            stats.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let ratio = |s: &Stat| s.sum_err / s.sum_floor.max(1e-12);
        rows.sort_by(|a, b| ratio(&b.1).partial_cmp(&ratio(&a.1)).unwrap());
        eprintln!("== {title}: per-op local rel L2 (CUDA op vs CPU op on the same inputs)");
        eprintln!(
            "{:>6} {:>10} {:>10} {:>10} {:>7}  op",
            "count", "mean err", "max err", "bf16 flr", "ratio"
        );
        for (k, s) in &rows {
            let n = s.count as f64;
            eprintln!(
                "{:>6} {:>10.3e} {:>10.3e} {:>10.3e} {:>7.2}  {k}",
                s.count,
                s.sum_err / n,
                s.max_err,
                s.sum_floor / n,
                ratio(s)
            );
        }
        rows
    }
}

fn shp<T: TensorLike>(t: &T) -> String {
    format!("{:?}", t.shape())
}

/// The stats key of a GEMM-like op: `op`, the epilogue parts in use (none for the unfused ops),
/// the input and weight shapes, e.g. `linear_ext geglu res [2, 8] [16, 8]`.
fn epilogue_key<T: TensorLike>(op: &str, flags: &[(bool, &str)], x: &T, w: &T) -> String {
    let mut key = op.to_string();
    for (_, name) in flags.iter().filter(|(on, _)| *on) {
        key.push(' ');
        key.push_str(name);
    }
    format!("{key} {} {}", shp(x), shp(w))
}

impl<B: Backend> Backend for Probe<B> {
    type Tensor = B::Tensor;

    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn from_f32(&self, shape: &[usize], data: &[f32]) -> Result<B::Tensor> {
        if self.round == Round::Outputs || !self.exact.is_empty() {
            self.inner.from_f32(shape, &round_bf16(data))
        } else {
            self.inner.from_f32(shape, data)
        }
    }

    fn from_f32_full(&self, shape: &[usize], data: &[f32]) -> Result<B::Tensor> {
        self.inner.from_f32_full(shape, data)
    }

    fn to_f32(&self, t: &B::Tensor) -> Result<Vec<f32>> {
        self.inner.to_f32(t)
    }

    fn to_activation(&self, t: &B::Tensor) -> Result<B::Tensor> {
        self.inner.to_activation(t)
    }

    fn zeros(&self, shape: &[usize]) -> Result<B::Tensor> {
        self.inner.zeros(shape)
    }

    fn reshape(&self, t: &B::Tensor, shape: &[usize]) -> Result<B::Tensor> {
        self.inner.reshape(t, shape)
    }

    fn permute(&self, t: &B::Tensor, dims: &[usize]) -> Result<B::Tensor> {
        let out = self.inner.permute(t, dims)?;
        self.finish(&[t], format!("permute {}", shp(t)), out, || {
            self.cpu.permute(&self.host(t)?, dims)
        })
    }

    fn concat(&self, ts: &[&B::Tensor], dim: usize) -> Result<B::Tensor> {
        let out = self.inner.concat(ts, dim)?;
        self.finish(ts, format!("concat {}", shp(&out)), out, || {
            let h: Vec<CpuTensor> = ts.iter().map(|t| self.host(t)).collect::<Result<_>>()?;
            let r: Vec<&CpuTensor> = h.iter().collect();
            self.cpu.concat(&r, dim)
        })
    }

    fn narrow(&self, t: &B::Tensor, dim: usize, start: usize, len: usize) -> Result<B::Tensor> {
        let out = self.inner.narrow(t, dim, start, len)?;
        self.finish(&[t], format!("narrow {}", shp(&out)), out, || {
            self.cpu.narrow(&self.host(t)?, dim, start, len)
        })
    }

    fn index_select(&self, t: &B::Tensor, dim: usize, idx: &[usize]) -> Result<B::Tensor> {
        let out = self.inner.index_select(t, dim, idx)?;
        self.finish(&[t], format!("index_select {}", shp(&out)), out, || {
            self.cpu.index_select(&self.host(t)?, dim, idx)
        })
    }

    fn unary(&self, t: &B::Tensor, op: Unary) -> Result<B::Tensor> {
        let out = self.inner.unary(t, op)?;
        self.finish(&[t], format!("unary {op:?} {}", shp(t)), out, || {
            self.cpu.unary(&self.host(t)?, op)
        })
    }

    fn binary(&self, a: &B::Tensor, b: &B::Tensor, op: Binary) -> Result<B::Tensor> {
        let out = self.inner.binary(a, b, op)?;
        self.finish(
            &[a, b],
            format!("binary {op:?} {} {}", shp(a), shp(b)),
            out,
            || self.cpu.binary(&self.host(a)?, &self.host(b)?, op),
        )
    }

    fn affine(&self, t: &B::Tensor, mul: f32, add: f32) -> Result<B::Tensor> {
        let out = self.inner.affine(t, mul, add)?;
        self.finish(&[t], format!("affine {}", shp(t)), out, || {
            self.cpu.affine(&self.host(t)?, mul, add)
        })
    }

    fn softmax_last(&self, t: &B::Tensor) -> Result<B::Tensor> {
        let out = self.inner.softmax_last(t)?;
        self.finish(&[t], format!("softmax {}", shp(t)), out, || {
            self.cpu.softmax_last(&self.host(t)?)
        })
    }

    fn group_norm(
        &self,
        x: &B::Tensor,
        groups: usize,
        gamma: Option<&B::Tensor>,
        beta: Option<&B::Tensor>,
        eps: f32,
    ) -> Result<B::Tensor> {
        let out = self.inner.group_norm(x, groups, gamma, beta, eps)?;
        self.finish(
            &[x],
            format!("group_norm g{groups} {}", shp(x)),
            out,
            || {
                let (g, b) = (self.host_opt(gamma)?, self.host_opt(beta)?);
                self.cpu
                    .group_norm(&self.host(x)?, groups, g.as_ref(), b.as_ref(), eps)
            },
        )
    }

    fn layer_norm(
        &self,
        x: &B::Tensor,
        gamma: Option<&B::Tensor>,
        beta: Option<&B::Tensor>,
        eps: f32,
    ) -> Result<B::Tensor> {
        let out = self.inner.layer_norm(x, gamma, beta, eps)?;
        self.finish(&[x], format!("layer_norm {}", shp(x)), out, || {
            let (g, b) = (self.host_opt(gamma)?, self.host_opt(beta)?);
            self.cpu
                .layer_norm(&self.host(x)?, g.as_ref(), b.as_ref(), eps)
        })
    }

    fn linear(&self, x: &B::Tensor, w: &B::Tensor, bias: Option<&B::Tensor>) -> Result<B::Tensor> {
        self.gemm_like(
            "linear",
            &[],
            (x, w, bias),
            |x, w, b| self.inner.linear(x, w, b),
            |x, w, b| self.cpu.linear(x, w, b),
        )
    }

    fn matmul(&self, a: &B::Tensor, b: &B::Tensor) -> Result<B::Tensor> {
        let (a, b) = (self.operand("matmul", a)?, self.operand("matmul", b)?);
        let out = self.inner.matmul(&a, &b)?;
        self.finish(
            &[&a, &b],
            format!("matmul {} {}", shp(&a), shp(&b)),
            out,
            || self.cpu.matmul(&self.host(&a)?, &self.host(&b)?),
        )
    }

    fn conv2d(
        &self,
        x: &B::Tensor,
        w: &B::Tensor,
        bias: Option<&B::Tensor>,
        p: Conv2dParams,
    ) -> Result<B::Tensor> {
        self.gemm_like(
            "conv2d",
            &[],
            (x, w, bias),
            |x, w, b| self.inner.conv2d(x, w, b, p),
            |x, w, b| self.cpu.conv2d(x, w, b, p),
        )
    }

    fn attention(
        &self,
        q: &B::Tensor,
        k: &B::Tensor,
        v: &B::Tensor,
        scale: f32,
    ) -> Result<B::Tensor> {
        let (q, k, v) = (
            self.operand("attention", q)?,
            self.operand("attention", k)?,
            self.operand("attention", v)?,
        );
        let out = self.inner.attention(&q, &k, &v, scale)?;
        self.finish(
            &[&q, &k, &v],
            format!("attention q{} k{}", shp(&q), shp(&k)),
            out,
            || {
                self.cpu
                    .attention(&self.host(&q)?, &self.host(&k)?, &self.host(&v)?, scale)
            },
        )
    }

    fn upsample_nearest2d(&self, x: &B::Tensor, out_h: usize, out_w: usize) -> Result<B::Tensor> {
        let out = self.inner.upsample_nearest2d(x, out_h, out_w)?;
        self.finish(&[x], format!("upsample {}", shp(x)), out, || {
            self.cpu.upsample_nearest2d(&self.host(x)?, out_h, out_w)
        })
    }

    fn pad2d(
        &self,
        x: &B::Tensor,
        left: usize,
        right: usize,
        top: usize,
        bottom: usize,
    ) -> Result<B::Tensor> {
        let out = self.inner.pad2d(x, left, right, top, bottom)?;
        self.finish(&[x], format!("pad2d {}", shp(x)), out, || {
            self.cpu.pad2d(&self.host(x)?, left, right, top, bottom)
        })
    }

    fn mean_dim(&self, t: &B::Tensor, dim: usize) -> Result<B::Tensor> {
        let out = self.inner.mean_dim(t, dim)?;
        self.finish(&[t], format!("mean_dim {dim} {}", shp(t)), out, || {
            self.cpu.mean_dim(&self.host(t)?, dim)
        })
    }

    fn max_pool2d(
        &self,
        x: &B::Tensor,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<B::Tensor> {
        let out = self.inner.max_pool2d(x, kernel, stride, padding)?;
        self.finish(&[x], format!("max_pool2d {}", shp(x)), out, || {
            self.cpu.max_pool2d(&self.host(x)?, kernel, stride, padding)
        })
    }

    fn group_norm_act(
        &self,
        x: &B::Tensor,
        groups: usize,
        gamma: Option<&B::Tensor>,
        beta: Option<&B::Tensor>,
        eps: f32,
        act: Option<Unary>,
    ) -> Result<B::Tensor> {
        let out = self
            .inner
            .group_norm_act(x, groups, gamma, beta, eps, act)?;
        self.finish(
            &[x],
            format!("group_norm_act {act:?} g{groups} {}", shp(x)),
            out,
            || {
                let (g, b) = (self.host_opt(gamma)?, self.host_opt(beta)?);
                self.cpu
                    .group_norm_act(&self.host(x)?, groups, g.as_ref(), b.as_ref(), eps, act)
            },
        )
    }

    fn linear_ext(
        &self,
        x: &B::Tensor,
        w: &B::Tensor,
        bias: Option<&B::Tensor>,
        epi: LinearEpilogue<'_, B::Tensor>,
    ) -> Result<B::Tensor> {
        let flags = [
            (epi.geglu, "geglu"),
            (epi.residual.is_some(), "res"),
            (epi.scale != 1.0, "scale"),
        ];
        self.gemm_like(
            "linear_ext",
            &flags,
            (x, w, bias),
            |x, w, b| self.inner.linear_ext(x, w, b, epi),
            |x, w, b| {
                let r = self.host_opt(epi.residual)?;
                let e = LinearEpilogue {
                    residual: r.as_ref(),
                    scale: epi.scale,
                    geglu: epi.geglu,
                };
                self.cpu.linear_ext(x, w, b, e)
            },
        )
    }

    fn conv2d_ext(
        &self,
        x: &B::Tensor,
        w: &B::Tensor,
        bias: Option<&B::Tensor>,
        p: Conv2dParams,
        epi: ConvEpilogue<'_, B::Tensor>,
    ) -> Result<B::Tensor> {
        let flags = [
            (epi.temb.is_some(), "temb"),
            (epi.residual.is_some(), "res"),
            (epi.scale != 1.0, "scale"),
        ];
        self.gemm_like(
            "conv2d_ext",
            &flags,
            (x, w, bias),
            |x, w, b| self.inner.conv2d_ext(x, w, b, p, epi),
            |x, w, b| {
                let t = self.host_opt(epi.temb)?;
                let r = self.host_opt(epi.residual)?;
                let e = ConvEpilogue {
                    temb: t.as_ref(),
                    residual: r.as_ref(),
                    scale: epi.scale,
                };
                self.cpu.conv2d_ext(x, w, b, p, e)
            },
        )
    }

    fn timestep_embedding(
        &self,
        t: &B::Tensor,
        dim: usize,
        flip_sin_to_cos: bool,
        downscale_freq_shift: f32,
    ) -> Result<B::Tensor> {
        let out = self
            .inner
            .timestep_embedding(t, dim, flip_sin_to_cos, downscale_freq_shift)?;
        self.finish(
            &[t],
            format!("timestep_embedding {}", shp(&out)),
            out,
            || {
                self.cpu.timestep_embedding(
                    &self.host(t)?,
                    dim,
                    flip_sin_to_cos,
                    downscale_freq_shift,
                )
            },
        )
    }

    fn cfg_ddim_step(
        &self,
        out: &B::Tensor,
        z: &B::Tensor,
        frame_offset: usize,
        coeffs: &B::Tensor,
    ) -> Result<B::Tensor> {
        let res = self.inner.cfg_ddim_step(out, z, frame_offset, coeffs)?;
        self.finish_as(&[], format!("cfg_ddim_step {}", shp(z)), res, true, || {
            self.cpu.cfg_ddim_step(
                &self.host(out)?,
                &self.host(z)?,
                frame_offset,
                &self.host(coeffs)?,
            )
        })
    }
}

// ------------------------------------------------------------------------------------------------
// runs
// ------------------------------------------------------------------------------------------------

fn inputs(samples: usize) -> (image::RgbImage, Speech) {
    let (img, speech) = common::reference_inputs(Some(samples));
    (img, speech)
}

fn run<B: Backend>(be: &B, req: &Request, samples: usize) -> Video {
    let (img, speech) = inputs(samples);
    let src = WeightsSource::Preset {
        preset: Preset::Tiny,
        seed: 0,
    };
    src.load(be)
        .unwrap()
        .generate(be, &img, &speech, &PoseFile::default(), req, &mut |_| {})
        .unwrap()
}

fn compare(label: &str, reference: &Video, got: &Video) -> f64 {
    let mut worst = 0f64;
    for (c, (rc, gc)) in reference.trace.iter().zip(&got.trace).enumerate() {
        for (s, (r, g)) in rc.iter().zip(gc).enumerate() {
            let e = rel_l2(g, r);
            worst = worst.max(e);
            eprintln!("{label}: clip {c} step {s}: latents rel_l2 {e:.3e}");
        }
    }
    for (i, (r, g)) in reference.frames.iter().zip(&got.frames).enumerate() {
        let r: Vec<f32> = r.as_raw().iter().map(|&v| v as f32).collect();
        let g: Vec<f32> = g.as_raw().iter().map(|&v| v as f32).collect();
        let e = rel_l2(&g, &r);
        worst = worst.max(e);
        eprintln!("{label}: frame {i}: rel_l2 {e:.3e}");
    }
    worst
}

fn one_step_request() -> Request {
    Request {
        seed: 3,
        steps: Some(1),
        size: Some((64, 64)),
        trace: true,
        ..Default::default()
    }
}

/// The probe on the CPU compares the CPU with itself: every op at zero error, so the wrapper
/// forwards every op faithfully (and the bf16-output simulation sits at its floor).
#[test]
fn probe_on_the_cpu_is_exact() {
    let be = Probe::new(CpuBackend::new(), true, Round::None);
    let req = Request {
        size: Some((32, 32)),
        ..one_step_request()
    };
    let reference = run(&CpuBackend::new(), &req, 4_000);
    let got = run(&be, &req, 4_000);
    assert_eq!(compare("cpu probe", &reference, &got), 0.0);
    let rows = be.report("cpu probe");
    assert!(rows.len() > 10, "only {} op kinds seen", rows.len());
    for (k, s) in &rows {
        assert_eq!(s.max_err, 0.0, "{k}");
    }
}

/// CPU simulation of bf16 numerics: how far bf16 rounding alone (no kernel) moves the whole
/// tiny model, per step and frame.
#[test]
#[ignore = "diagnostic (~1 min): cargo test --test cuda_numerics bf16_sensitivity_on_the_cpu -- --ignored --nocapture"]
fn bf16_sensitivity_on_the_cpu() {
    let req = Request {
        steps: Some(2),
        ..one_step_request()
    };
    let reference = run(&CpuBackend::new(), &req, 16_000);
    let cases = [
        (Round::Outputs, None),
        (Round::GemmOperands, None),
        (Round::GemmOperands, Some("conv2d")),
        (
            Round::GemmOperands,
            Some("conv2d [20, 32, 8, 8] [4, 32, 3, 3]"),
        ),
    ];
    for (round, only) in cases {
        let mut be = Probe::new(CpuBackend::new(), false, round);
        be.only = only.map(str::to_string);
        let got = run(&be, &req, 16_000);
        compare(&format!("cpu {round:?} {only:?}"), &reference, &got);
    }
    // f32 path with bf16 weights, one op kind's activation operands split into bf16 hi + lo
    // (exact): which kinds' operand rounding the whole-model error comes from.
    let all = [
        "linear",
        "linear_ext",
        "matmul",
        "conv2d",
        "conv2d_ext",
        "attention",
    ];
    let mut sets: Vec<Vec<&'static str>> = all.iter().map(|k| vec![*k]).collect();
    sets.push(vec!["conv2d", "conv2d_ext"]);
    sets.push(vec!["linear", "linear_ext", "matmul", "attention"]);
    sets.push(all.to_vec());
    for exact in sets {
        let mut be = Probe::new(CpuBackend::new(), false, Round::GemmOperands);
        be.exact = exact.clone();
        let got = run(&be, &req, 16_000);
        compare(&format!("cpu f32 path, exact {exact:?}"), &reference, &got);
    }
    // A bf16 denoiser: its input cast to bf16 after concat(motion, z), its last conv (conv_out)
    // kept f32, CFG + DDIM in f32.
    let mut be = Probe::new(CpuBackend::new(), false, Round::Outputs);
    be.force = Some("concat [1, 4, 10, 8, 8]".into());
    be.keep_f32 = Some("conv2d [20, 32, 8, 8] [4, 32, 3, 3]".into());
    let got = run(&be, &req, 16_000);
    compare("cpu bf16 denoiser, f32 conv_out", &reference, &got);
    be.keep_f32 = None;
    let got = run(&be, &req, 16_000);
    compare("cpu bf16 denoiser, bf16 conv_out", &reference, &got);
}

/// Per-op local error of the CUDA backend (stand-in driver) over one denoising step.
#[test]
#[ignore = "diagnostic (~5 min): cargo test --test cuda_numerics per_op_error_on_cuda -- --ignored --nocapture"]
fn per_op_error_on_cuda() {
    let req = one_step_request();
    let reference = run(&CpuBackend::new(), &req, 10_000);
    let gpu = CudaBackend::new_emulated(0).expect("stand-in driver");
    let be = Probe::new(gpu, true, Round::None);
    let got = run(&be, &req, 10_000);
    compare("cuda", &reference, &got);
    be.report("cuda (bf16 storage)");
}

/// f32 activations through the CUDA products (the denoiser runs in f32 once the latents are f32):
/// f32 operands go to the tensor cores as bf16 hi + lo parts and the outputs stay f32, so against
/// the CPU on the same values (bf16 weights, f32 activations) the error is ~1e-5, far below the
/// ~1.7e-3 of one bf16 rounding of an operand or output.
#[test]
fn cuda_f32_products_are_f32_accurate() {
    use cyberhost_kernels::DType;
    let gpu = CudaBackend::new_emulated(0).expect("stand-in driver");
    let cpu = CpuBackend::new();
    let up = |shape: &[usize], v: &[f32]| gpu.from_f32_as(shape, v, DType::F32).unwrap();
    let host = |shape: &[usize], v: &[f32]| CpuTensor::from_vec(shape, v.to_vec()).unwrap();
    let check = |what: &str, got: &CudaTensor, want: &CpuTensor| {
        assert_eq!(got.dtype(), DType::F32, "{what}");
        let e = rel_l2(&gpu.to_f32(got).unwrap(), want.data());
        eprintln!("{what}: rel L2 {e:.3e}");
        assert!(e < 5e-5, "{what}: rel L2 {e:.3e}");
    };
    // conv2d: f32 x, bf16-valued weights (as loaded), bias
    let (n, c, h, w, o) = (2usize, 24usize, 9usize, 7usize, 20usize);
    let x = random(n * c * h * w, 1);
    let wt = round_bf16(&random(o * c * 9, 2));
    let b = round_bf16(&random(o, 3));
    let p = Conv2dParams::new(1, 1);
    let gw = gpu.from_f32(&[o, c, 3, 3], &wt).unwrap();
    let gb = gpu.from_f32(&[o], &b).unwrap();
    let gy = gpu
        .conv2d(&up(&[n, c, h, w], &x), &gw, Some(&gb), p)
        .unwrap();
    let want = cpu
        .conv2d(
            &host(&[n, c, h, w], &x),
            &host(&[o, c, 3, 3], &wt),
            Some(&host(&[o], &b)),
            p,
        )
        .unwrap();
    check("conv2d", &gy, &want);
    // linear: f32 x (3, 5, 40), bf16 w (24, 40)
    let x = random(3 * 5 * 40, 4);
    let wt = round_bf16(&random(24 * 40, 5));
    let gy = gpu
        .linear(
            &up(&[3, 5, 40], &x),
            &gpu.from_f32(&[24, 40], &wt).unwrap(),
            None,
        )
        .unwrap();
    let want = cpu
        .linear(&host(&[3, 5, 40], &x), &host(&[24, 40], &wt), None)
        .unwrap();
    check("linear", &gy, &want);
    // matmul: both f32
    let a = random(2 * 7 * 33, 6);
    let bm = random(2 * 33 * 9, 7);
    let gy = gpu
        .matmul(&up(&[2, 7, 33], &a), &up(&[2, 33, 9], &bm))
        .unwrap();
    let want = cpu
        .matmul(&host(&[2, 7, 33], &a), &host(&[2, 33, 9], &bm))
        .unwrap();
    check("matmul", &gy, &want);
    // attention: f32 q, k, v (B 2, H 2, Lq 11, Lk 13, D 16)
    let q = random_span(2 * 2 * 11 * 16, 8, 2.0);
    let k = random_span(2 * 2 * 13 * 16, 9, 2.0);
    let v = random(2 * 2 * 13 * 16, 10);
    let (sq, sk) = ([2, 2, 11, 16], [2, 2, 13, 16]);
    let gy = gpu
        .attention(&up(&sq, &q), &up(&sk, &k), &up(&sk, &v), 0.25)
        .unwrap();
    let want = cpu
        .attention(&host(&sq, &q), &host(&sk, &k), &host(&sk, &v), 0.25)
        .unwrap();
    check("attention", &gy, &want);
}
