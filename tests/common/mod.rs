//! Helpers shared by the integration tests (`mod common;` in each test file that uses them; the
//! kernel tests include it as `tests/kernels/main.rs`'s `common`): the one seeded generator
//! ([`Rng`], [`random`]), the one comparison ([`rel_l2`], [`assert_close`]), bf16 rounding, the CPU
//! reference shorthands ([`CPU`], [`cpu`], [`host`]) and [`backend_test!`](crate::backend_test):
//! one test body run on the CPU backend and on the CUDA backend.

#![allow(dead_code)]

use std::sync::{Mutex, MutexGuard, OnceLock};

use cyberhost_engine::backends::cpu::{CpuBackend, CpuTensor};
use cyberhost_engine::backends::cuda::{
    CudaBackend, CudaTensor, DType, DRIVER_ENV as DRIVER_ENV_STAND_IN,
};
use cyberhost_engine::backends::{Backend, TensorLike};
use half::bf16;

// ------------------------------------------------------------------------------------------------
// seeded inputs
// ------------------------------------------------------------------------------------------------

/// Deterministic generator (splitmix64): no external crate, same data everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.uniform().max(1e-7);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }
    pub fn randn(&mut self, n: usize, scale: f32, offset: f32) -> Vec<f32> {
        (0..n).map(|_| self.normal() * scale + offset).collect()
    }
    /// `n` standard normals.
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        self.randn(n, 1.0, 0.0)
    }
}

/// `n` seeded uniform values in [−half_width, half_width) (a 64-bit LCG; stable across runs).
pub fn random_span(n: usize, seed: u64, half_width: f32) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * (2.0 * half_width) - half_width
        })
        .collect()
}

/// `n` seeded uniform values in [−1, 1).
pub fn random(n: usize, seed: u64) -> Vec<f32> {
    random_span(n, seed, 1.0)
}

pub fn to_bf16(x: &[f32]) -> Vec<bf16> {
    x.iter().map(|&v| bf16::from_f32(v)).collect()
}

pub fn from_bf16(x: &[bf16]) -> Vec<f32> {
    x.iter().map(|v| v.to_f32()).collect()
}

/// Rounds through bf16, so the reference sees exactly the values the kernel reads.
pub fn round_bf16(x: &[f32]) -> Vec<f32> {
    from_bf16(&to_bf16(x))
}

/// The bundled reference portrait and speech (`engine/assets`); with `samples`, the speech is cut
/// to its first `samples` samples (16 kHz) and its duration set to match.
pub fn reference_inputs(
    samples: Option<usize>,
) -> (image::RgbImage, cyberhost_engine::pipeline::audio::Speech) {
    const IMAGE: &[u8] = include_bytes!("../../engine/assets/reference.png");
    const SPEECH: &[u8] = include_bytes!("../../engine/assets/speech.wav");
    let img = cyberhost_engine::pipeline::image::decode_image(IMAGE, "reference.png").unwrap();
    let mut speech =
        cyberhost_engine::pipeline::audio::load_wav_bytes(SPEECH, "speech.wav").unwrap();
    if let Some(n) = samples {
        speech.samples.truncate(n);
        speech.seconds = n as f64 / 16_000.0;
    }
    (img, speech)
}

// ------------------------------------------------------------------------------------------------
// comparison
// ------------------------------------------------------------------------------------------------

/// Relative L2 error ‖got − want‖ / ‖want‖ in f64.
pub fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w as f64).powi(2))
        .sum();
    let den: f64 = want.iter().map(|&w| (w as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

pub mod fixtures;
pub mod numerics;

/// Tolerances by storage dtype: relative L2 of the whole tensor.
pub fn tol(bf16_storage: bool) -> f64 {
    if bf16_storage {
        1e-2
    } else {
        1e-5
    }
}

/// Fails unless every element is finite where `want` is (no poison left) and
/// ‖got − want‖ / ‖want‖ ≤ tol, naming the worst element.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let bad: Vec<usize> = (0..got.len())
        .filter(|&i| !got[i].is_finite() && want[i].is_finite())
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: {} non-finite outputs (poison left or NaN), first at index {} (got {}, want {})",
        bad.len(),
        bad[0],
        got[bad[0]],
        want[bad[0]]
    );
    let (mut max_err, mut max_at) = (0.0f64, 0usize);
    for i in 0..got.len() {
        let d = (got[i] as f64 - want[i] as f64).abs();
        if d > max_err {
            max_err = d;
            max_at = i;
        }
    }
    let rel = rel_l2(got, want);
    assert!(
        rel <= tol,
        "{what}: relative L2 {rel:.3e} > {tol:.0e}; max abs error {max_err:.3e} at index {max_at} (got {}, want {})",
        got[max_at],
        want[max_at]
    );
}

// ------------------------------------------------------------------------------------------------
// the CPU reference (the engine's CPU backend)
// ------------------------------------------------------------------------------------------------

/// The oracle every kernel test compares against.
pub const CPU: CpuBackend = CpuBackend;

/// Host data as a CPU tensor.
pub fn cpu(shape: &[usize], data: &[f32]) -> CpuTensor {
    CPU.from_f32(shape, data).expect("CpuBackend::from_f32")
}

/// A CPU tensor's data.
pub fn host(t: &CpuTensor) -> Vec<f32> {
    CPU.to_f32(t).expect("CpuBackend::to_f32")
}

// ------------------------------------------------------------------------------------------------
// one body, every backend
// ------------------------------------------------------------------------------------------------

/// Environment variable naming the CUDA device of the tests: `stand-in` (the default for the
/// backend tests; the kernel tests' default `emu` also means the stand-in here) or `cuda`.
pub const DEVICE_ENV: &str = "CYBERHOST_KERNEL_TEST_DEVICE";

/// The CUDA backend of the test process: the real driver when `CYBERHOST_KERNEL_TEST_DEVICE=cuda`,
/// else the stand-in driver; bf16 storage, every new output poisoned (NaN) before its kernel.
pub fn cuda_backend() -> &'static CudaBackend {
    static BE: OnceLock<CudaBackend> = OnceLock::new();
    BE.get_or_init(|| {
        let be = open_cuda_backend();
        be.set_poison_outputs(true);
        be
    })
}

/// A new CUDA backend on the device [`DEVICE_ENV`] names (`cuda`: the real driver, else the
/// stand-in), bf16 storage; panics with the driver's message when there is none.
pub fn open_cuda_backend() -> CudaBackend {
    let real = std::env::var(DEVICE_ENV).is_ok_and(|v| v == "cuda");
    let be = if real {
        CudaBackend::new(0)
    } else {
        CudaBackend::new_emulated(0)
    };
    be.unwrap_or_else(|e| panic!("CUDA backend ({DEVICE_ENV}): {e:#}"))
}

/// The CUDA backend on the stand-in driver whatever [`DEVICE_ENV`] says (for tests that read the
/// emulator's counters or faults), bf16 storage, every new output poisoned (NaN) before its kernel.
pub fn emulated_backend() -> &'static CudaBackend {
    static BE: OnceLock<CudaBackend> = OnceLock::new();
    BE.get_or_init(|| {
        let be = CudaBackend::new_emulated(0)
            .expect("CudaBackend::new_emulated (cargo build -p ptx-emu-driver)");
        assert!(be.device().is_emulated());
        be.set_poison_outputs(true);
        be
    })
}

/// Runs child test `test` ([`child_test_output`]) where no CUDA driver can be found (nothing on
/// `LD_LIBRARY_PATH`, no stand-in path): the child must return (no panic), print a
/// `CHILD-RESULT: ` and, unless it saw an NVIDIA driver installed system-wide (where the
/// no-driver path cannot happen), print every one of `expected`.
pub fn assert_no_driver_is_reported(test: &str, child_flag: &str, expected: &[&str]) {
    let text = child_test_output(
        test,
        child_flag,
        &[("LD_LIBRARY_PATH", Some("")), (DRIVER_ENV_STAND_IN, None)],
    );
    assert!(text.contains("CHILD-RESULT: "), "{text}");
    if !text.contains("CHILD-SYSTEM-DRIVER") {
        assert!(expected.iter().all(|e| text.contains(e)), "{text}");
    }
}

/// The CUDA backend is used by one test at a time (the stand-in's counters are per process).
pub fn cuda_serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Kernels the stand-in driver ([`emulated_backend`]) ran during `f` (hold [`cuda_serial`]).
pub fn emulated_launches(f: impl FnOnce()) -> u64 {
    let count = || {
        emulated_backend()
            .device()
            .emulator_stats()
            .expect("stand-in driver stats")
            .kernel_launches
    };
    let before = count();
    f();
    count() - before
}

/// One test body, generic over the backend, as two tests: `NAME::cpu` on the CPU reference and
/// `NAME::cuda` on the CUDA backend (stand-in driver, or a GPU with
/// `CYBERHOST_KERNEL_TEST_DEVICE=cuda`). candle's `test_device!` is the model:
///
/// ```ignore
/// fn softmax_rejects_a_scalar<B: Backend>(be: &B) -> anyhow::Result<()> { .. }
/// backend_test!(softmax_rejects_a_scalar);
/// ```
#[macro_export]
macro_rules! backend_test {
    ($body:ident) => {
        mod $body {
            #[test]
            fn cpu() -> anyhow::Result<()> {
                super::$body(&$crate::common::CPU)
            }
            #[test]
            fn cuda() -> anyhow::Result<()> {
                let _serial = $crate::common::cuda_serial();
                super::$body($crate::common::cuda_backend())
            }
        }
    };
}

/// Runs test `test` of this test binary alone in a child process with the environment variable
/// `child_flag` set to 1 and `env` applied (`Some(value)` sets, `None` removes), and returns its
/// stdout and stderr; fails unless the child succeeded.
pub fn child_test_output(test: &str, child_flag: &str, env: &[(&str, Option<&str>)]) -> String {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(child_flag, "1");
    for (name, value) in env {
        match value {
            Some(v) => cmd.env(name, v),
            None => cmd.env_remove(name),
        };
    }
    let out = cmd.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed (a panic?):\n{text}");
    text
}

// ------------------------------------------------------------------------------------------------
// the CUDA backend against the CPU backend, op by op
// ------------------------------------------------------------------------------------------------

/// One `#[test]` of the CUDA backend against the CPU backend: `body` runs once per storage of
/// [`storages`] (bf16, then f32) with that storage's backend and tolerance, holding
/// [`cuda_serial`] throughout:
///
/// ```ignore
/// storages_test!(softmax_matches_cpu, |be, tol| { check(.., &be, &be.softmax_last(&g)?, .., tol) });
/// ```
#[macro_export]
macro_rules! storages_test {
    ($name:ident, |$be:ident, $tol:tt| $body:block) => {
        #[test]
        fn $name() {
            let _serial = $crate::common::cuda_serial();
            for ($be, $tol) in $crate::common::storages() $body
        }
    };
}

/// The bf16-storage test backend ([`cuda_backend`]) and an f32-storage clone, each with its
/// relative L2 tolerance against the CPU.
pub fn storages() -> [(CudaBackend, f64); 2] {
    [
        (cuda_backend().clone(), 1e-2),
        (cuda_backend().with_storage(DType::F32), 1e-4),
    ]
}

/// The same data on both backends.
pub fn pair(be: &CudaBackend, shape: &[usize], data: &[f32]) -> (CudaTensor, CpuTensor) {
    (be.from_f32(shape, data).unwrap(), cpu(shape, data))
}

/// Seeded uniform data ([`random`]) on both backends.
pub fn rand_pair(be: &CudaBackend, shape: &[usize], seed: u64) -> (CudaTensor, CpuTensor) {
    let n: usize = shape.iter().product();
    pair(be, shape, &random(n, seed))
}

/// Layout ops: the CPU gets the values as the device stores them (bf16-rounded), so results
/// must match bit for bit.
pub fn rounded_pair(be: &CudaBackend, shape: &[usize], seed: u64) -> (CudaTensor, CpuTensor) {
    let n: usize = shape.iter().product();
    let g = be.from_f32(shape, &random(n, seed)).unwrap();
    let c = cpu(shape, &be.to_f32(&g).unwrap());
    (g, c)
}

/// Asserts `got` equals `want` bit for bit, counting the elements that differ from `whose` bits.
pub fn assert_same_bits(what: &str, got: &[f32], want: &[f32], whose: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let diff = got
        .iter()
        .zip(want)
        .filter(|(g, w)| g.to_bits() != w.to_bits())
        .count();
    assert_eq!(diff, 0, "{what}: {diff} elements differ from {whose} bits");
}

/// The traced pipeline graphs of `preset`'s weights (seed 0) at its default size.
pub fn trace_preset(
    preset: cyberhost_engine::pipeline::presets::Preset,
) -> cyberhost_engine::graph::pipeline::PipelineGraphs {
    let src = cyberhost_engine::pipeline::checkpoint::WeightsSource::Preset { preset, seed: 0 };
    cyberhost_engine::graph::pipeline::trace_pipeline(&src, None).unwrap()
}

/// [`check`]s op `op` of the CUDA backend `be` on the arguments before `~` against the CPU
/// backend's on the arguments after it:
///
/// ```ignore
/// check_op!(format!("softmax {shape:?}"), be, tol, softmax_last(&g) ~ (&c));
/// ```
#[macro_export]
macro_rules! check_op {
    ($what:expr, $be:expr, $tol:expr, $op:ident($($g:expr),*) ~ ($($c:expr),*)) => {
        $crate::common::check(
            &$what,
            &$be,
            &$be.$op($($g),*).unwrap(),
            &$crate::common::CPU.$op($($c),*).unwrap(),
            $tol,
        )
    };
}

/// Compares shapes and values (rel L2 ≤ tol; NaN from an unwritten poisoned element fails).
pub fn check(what: &str, be: &CudaBackend, got: &CudaTensor, want: &CpuTensor, tol: f64) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let g = be.to_f32(got).unwrap();
    let w = host(want);
    if let Some(i) = g.iter().position(|v| v.is_nan()) {
        if !w[i].is_nan() {
            panic!("{what}: element {i} is NaN (unwritten?), want {}", w[i]);
        }
    }
    if w.is_empty() {
        return;
    }
    let err = rel_l2(&g, &w);
    assert!(
        err <= tol,
        "{what} ({:?}, {}): rel L2 {err:e} > {tol:e}",
        got.dtype(),
        be.name()
    );
}
