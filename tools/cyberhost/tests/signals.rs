//! SIGINT / SIGTERM during `cyberhost generate`: exit 130, no video, no frames directory and
//! no temporary file left, whether the signal comes while the model runs or while the
//! outputs are being written (ffmpeg running, frames staged).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod cli_util;
use cli_util::{bin, wait_exit, wav_spec};

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
}

/// Everything in `dir` but the names in `inputs`.
fn leftovers(dir: &Path, inputs: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !inputs.contains(&n.as_str()))
        .collect()
}

/// Temporaries of ours in the system temp dir (the bundled speech's WAV copy).
fn system_temps(before: &[String]) -> Vec<String> {
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".cyberhost-") && !before.contains(n))
        .collect()
}

/// `cyberhost generate --out DIR/out.mp4 --frames DIR/frames` (stderr piped); the test adds
/// its own flags.
fn generate_into(dir: &Path) -> Command {
    let mut cmd = bin();
    cmd.arg("generate")
        .arg("--out")
        .arg(dir.join("out.mp4"))
        .arg("--frames")
        .arg(dir.join("frames"))
        .stderr(Stdio::piped());
    cmd
}

#[test]
fn sigterm_while_the_model_runs_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Many steps: the run is still denoising when the first step event arrives.
    let mut child = generate_into(dir.path())
        .args(["--json", "--steps", "200"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut saw_step = false;
    for l in lines.by_ref() {
        if l.unwrap().contains("\"event\":\"step\"") {
            saw_step = true;
            break;
        }
    }
    assert!(saw_step, "no step event before generate ended");
    signal(&child, libc::SIGTERM);
    let status = wait_exit(child, Duration::from_secs(20), "generate");
    assert_eq!(status.code(), Some(130), "exit status {status:?}");
    assert_eq!(leftovers(dir.path(), &[]), Vec::<String>::new());
}

#[test]
fn sigint_while_the_outputs_are_written_removes_the_temporaries() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ffmpeg-started");
    // An ffmpeg stand-in that reports its start and then hangs, so the signal lands while the
    // video temporary exists, the frames are staged and "ffmpeg" runs.
    let fake = dir.path().join("slow-ffmpeg.sh");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nif [ \"$1\" = -version ]; then echo fake; exit 0; fi\ntouch '{}'\nexec sleep 60\n",
            marker.display()
        ),
    )
    .unwrap();
    let mut perm = std::fs::metadata(&fake).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&fake, perm).unwrap();
    let wav = dir.path().join("a.wav");
    let mut w = hound::WavWriter::create(&wav, wav_spec(16_000, 1, 16, false)).unwrap();
    for i in 0..8000 {
        w.write_sample(((i * 37) % 2000) as i16 - 1000).unwrap();
    }
    w.finalize().unwrap();
    let before = system_temps(&[]);
    let child = generate_into(dir.path())
        .env("CYBERHOST_FFMPEG", &fake)
        .args(["--steps", "1", "--audio"])
        .arg(&wav)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !marker.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "ffmpeg stand-in never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Temporaries exist now: the staged frames and the video being encoded.
    let during = leftovers(dir.path(), &["a.wav", "slow-ffmpeg.sh", "ffmpeg-started"]);
    assert!(
        during.iter().any(|n| n.starts_with(".cyberhost-frames-"))
            && during.iter().any(|n| n.ends_with(".mp4")),
        "expected staged temporaries while ffmpeg runs, found {during:?}"
    );
    signal(&child, libc::SIGINT);
    let status = wait_exit(child, Duration::from_secs(20), "generate");
    assert_eq!(status.code(), Some(130), "exit status {status:?}");
    assert_eq!(
        leftovers(dir.path(), &["a.wav", "slow-ffmpeg.sh", "ffmpeg-started"]),
        Vec::<String>::new()
    );
    assert_eq!(system_temps(&before), Vec::<String>::new());
}
