//! Helpers shared by the CLI tests: the binary, the stand-in CUDA driver, reading a run's
//! output, waiting for a child with a deadline, and test WAV formats.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output};
use std::time::{Duration, Instant};

/// The `cyberhost` binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cyberhost"))
}

/// `cyberhost ARGS`, run to the end.
pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run cyberhost")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stdout as JSON, after checking the run succeeded.
pub fn json_ok(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The `kernels` rows of a bench report (more than 5 of them) and the sum of their `key`.
pub fn kernel_rows<'a>(report: &'a serde_json::Value, key: &str) -> (&'a [serde_json::Value], f64) {
    let kernels = report["kernels"].as_array().unwrap();
    assert!(kernels.len() > 5, "{kernels:?}");
    let sum = kernels.iter().map(|k| k[key].as_f64().unwrap()).sum();
    (kernels, sum)
}

/// The stand-in CUDA driver (the PTX emulator), built beside the test binaries
/// (target/<profile>/).
pub fn stand_in() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_cyberhost"));
    let dir = exe.parent().unwrap().to_path_buf();
    let lib = [
        dir.join("libptx_emu_driver.so"),
        dir.join("deps").join("libptx_emu_driver.so"),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .unwrap_or_else(|| dir.join("libptx_emu_driver.so"));
    assert!(
        lib.is_file(),
        "stand-in driver not built at {}",
        lib.display()
    );
    lib
}

/// `cyberhost ARGS` on the stand-in driver.
pub fn on_stand_in(args: &[&str]) -> Command {
    let mut c = bin();
    c.args(args).env("CYBERHOST_CUDA_DRIVER", stand_in());
    c
}

/// The tiny preset on the CUDA backend at 32x32: the small stand-in runs.
pub const TINY_CUDA: [&str; 6] = ["--preset", "tiny", "--backend", "cuda", "--size", "32x32"];

/// Wait for `child` with a deadline; kill it and fail, naming `what` it waited for, if it does
/// not exit.
pub fn wait_exit(mut child: Child, limit: Duration, what: &str) -> ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("{what} did not exit within {limit:?} of the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A WAV format: `rate` Hz, `channels`, `bits` per sample, float or integer samples.
pub fn wav_spec(rate: u32, channels: u16, bits: u16, float: bool) -> hound::WavSpec {
    hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: if float {
            hound::SampleFormat::Float
        } else {
            hound::SampleFormat::Int
        },
    }
}
