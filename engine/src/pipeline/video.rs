//! Output: an MP4 (H.264 video + the input speech as AAC) through the system
//! `ffmpeg`, and optional PNG frames. Everything is written to temporary files
//! in the destination directories and renamed at the end, so a failed run leaves
//! no half-written file.
//!
//! Every temporary (and the running ffmpeg) is registered while it exists, so that a
//! program interrupted by a signal can remove them before it exits: [`abort_outputs`]
//! takes the registry's lock for good, and renames into place happen under the same
//! lock, so an interrupted run leaves either the finished outputs or nothing.

use crate::error::UserError;
use anyhow::{bail, Context, Result};
use image::RgbImage;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};

/// Temporaries and ffmpeg processes of the outputs being written.
struct Pending {
    paths: Vec<PathBuf>,
    children: Vec<u32>,
}

static PENDING: Mutex<Pending> = Mutex::new(Pending {
    paths: Vec::new(),
    children: Vec::new(),
});

fn pending() -> MutexGuard<'static, Pending> {
    PENDING.lock().unwrap_or_else(|p| p.into_inner())
}

/// A registered temporary path (file or directory); unregistered on drop.
struct TempGuard(PathBuf);

impl Drop for TempGuard {
    fn drop(&mut self) {
        pending().paths.retain(|p| p != &self.0);
    }
}

/// Create a temporary with `make` and register `path_of` it, both under the registry's lock
/// (an interrupt can never fall between the two).
fn registered<T>(
    make: impl FnOnce() -> std::io::Result<T>,
    path_of: impl Fn(&T) -> &Path,
) -> std::io::Result<(T, TempGuard)> {
    let mut g = pending();
    let t = make()?;
    let path = path_of(&t).to_path_buf();
    g.paths.push(path.clone());
    Ok((t, TempGuard(path)))
}

/// Holds the output registry's lock until the process exits (see [`abort_outputs`]).
pub struct AbortGuard(#[allow(dead_code)] MutexGuard<'static, Pending>);

/// For a signal handler: call `kill` on every running ffmpeg, remove every registered
/// temporary, and return the registry's lock. Hold the guard until the process exits:
/// while it is held no output is renamed into place and no new temporary is created.
pub fn abort_outputs(kill: impl Fn(u32)) -> AbortGuard {
    let g = pending();
    for &pid in &g.children {
        kill(pid);
    }
    for p in &g.paths {
        if p.is_dir() {
            let _ = std::fs::remove_dir_all(p);
        } else {
            let _ = std::fs::remove_file(p);
        }
    }
    AbortGuard(g)
}

/// Where the audio track comes from.
#[derive(Clone, Debug)]
pub enum AudioTrack<'a> {
    /// A WAV file on disk (the user's `--audio`).
    File(&'a Path),
    /// WAV bytes in memory (the bundled default speech).
    Bytes(&'a [u8]),
}

/// The `ffmpeg` binary: `$CYBERHOST_FFMPEG` or `ffmpeg` on PATH.
pub fn ffmpeg_binary() -> PathBuf {
    std::env::var_os("CYBERHOST_FFMPEG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("ffmpeg"))
}

/// Fail early, with the fix, if ffmpeg cannot run.
pub fn check_ffmpeg() -> Result<()> {
    let bin = ffmpeg_binary();
    match Command::new(&bin).arg("-version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => Ok(()),
        _ => Err(UserError::new(format!(
            "`{}` was not found or does not run: cyberhost writes MP4 through ffmpeg; install it (`apt-get install ffmpeg`, `brew install ffmpeg`) or set CYBERHOST_FFMPEG to its path",
            bin.display()
        ))
        .into()),
    }
}

/// Check that `out` can be written: its directory exists and it is not a directory.
pub fn check_output_path(out: &Path) -> Result<()> {
    let dir = parent_dir(out);
    if !dir.is_dir() {
        return Err(UserError::new(format!(
            "output directory {} does not exist; create it first or choose another --out",
            dir.display()
        ))
        .into());
    }
    if out.is_dir() {
        return Err(UserError::new(format!(
            "--out {} is a directory; give a file name such as out.mp4",
            out.display()
        ))
        .into());
    }
    Ok(())
}

fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Encode `frames` at `fps` with `audio` into `out` (atomically).
pub fn write_mp4(out: &Path, frames: &[RgbImage], fps: f64, audio: AudioTrack<'_>) -> Result<()> {
    write_outputs(out, None, frames, fps, audio)
}

/// Write the video to `out` and, with `frames_dir`, the frames as `frame_00000.png`, ... into
/// that directory (created if missing). Everything is written to temporaries first and renamed
/// into place together at the end: a failure or an interrupt leaves none of the outputs.
pub fn write_outputs(
    out: &Path,
    frames_dir: Option<&Path>,
    frames: &[RgbImage],
    fps: f64,
    audio: AudioTrack<'_>,
) -> Result<()> {
    let staged = match frames_dir {
        Some(dir) => Some((dir, stage_png_frames(dir, frames)?)),
        None => None,
    };
    let video = encode_mp4(out, frames, fps, audio)?;
    // Rename everything into place under the lock; the temporaries (now moved) are dropped
    // after it is released.
    let lock = pending();
    std::fs::rename(video.0.path(), out)
        .with_context(|| format!("cannot move the finished video to {}", out.display()))?;
    if let Some((dir, stage)) = &staged {
        commit_frames(dir, stage.path())?;
    }
    drop(lock);
    Ok(())
}

/// A registered temporary file, deleted on drop (then unregistered).
struct Staged(tempfile::NamedTempFile, #[allow(dead_code)] TempGuard);

fn staged_file(
    make: impl FnOnce() -> std::io::Result<tempfile::NamedTempFile>,
) -> std::io::Result<Staged> {
    let (f, g) = registered(make, |f| f.path())?;
    Ok(Staged(f, g))
}

fn encode_mp4(out: &Path, frames: &[RgbImage], fps: f64, audio: AudioTrack<'_>) -> Result<Staged> {
    if frames.is_empty() {
        bail!("no frames to encode");
    }
    check_output_path(out)?;
    check_ffmpeg()?;
    let (w, h) = frames[0].dimensions();
    let dir = parent_dir(out);
    let tmp = staged_file(|| {
        tempfile::Builder::new()
            .prefix(".cyberhost-")
            .suffix(".mp4")
            .tempfile_in(&dir)
    })
    .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    // The bundled audio goes through a temporary WAV.
    let wav_tmp;
    let audio_path: &Path = match audio {
        AudioTrack::File(p) => p,
        AudioTrack::Bytes(b) => {
            let mut f = staged_file(|| {
                tempfile::Builder::new()
                    .prefix(".cyberhost-")
                    .suffix(".wav")
                    .tempfile()
            })?;
            f.0.write_all(b)?;
            wav_tmp = f;
            wav_tmp.0.path()
        }
    };
    let child = Command::new(ffmpeg_binary())
        .args([
            "-y",
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
        ])
        .args([
            "-s",
            &format!("{w}x{h}"),
            "-framerate",
            &format!("{fps}"),
            "-i",
            "-",
        ])
        .arg("-i")
        .arg(audio_path)
        .args([
            "-map", "0:v:0", "-map", "1:a:0", "-c:v", "libx264", "-preset", "veryfast", "-crf",
            "18",
        ])
        .args([
            "-pix_fmt",
            "yuv420p",
            "-af",
            "aformat=channel_layouts=mono|stereo",
            "-c:a",
            "aac",
            "-b:a",
            "128k",
        ])
        .args(["-movflags", "+faststart", "-f", "mp4"])
        .arg(tmp.0.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start ffmpeg")?;
    let pid = child.id();
    pending().children.push(pid);
    // (An interrupt between spawn and this line leaves ffmpeg writing to a removed file; it
    // ends when our stdin pipe closes at exit.)
    let result = feed_and_wait(child, frames, (w, h));
    pending().children.retain(|&c| c != pid);
    result?;
    Ok(tmp)
}

/// Write every frame to ffmpeg's stdin and wait for it to finish.
fn feed_and_wait(
    mut child: std::process::Child,
    frames: &[RgbImage],
    (w, h): (u32, u32),
) -> Result<()> {
    {
        let mut stdin = child.stdin.take().context("ffmpeg stdin")?;
        for f in frames {
            if f.dimensions() != (w, h) {
                bail!("frame size changed mid-video");
            }
            if stdin.write_all(f.as_raw()).is_err() {
                break; // ffmpeg died: its stderr says why
            }
        }
    }
    let output = child.wait_with_output().context("waiting for ffmpeg")?;
    if !output.status.success() {
        bail!(
            "ffmpeg failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Write `frame_00000.png`, ... into `dir` (created if missing), all renamed into place at the end.
pub fn write_png_frames(dir: &Path, frames: &[RgbImage]) -> Result<()> {
    let stage = stage_png_frames(dir, frames)?;
    let lock = pending();
    let r = commit_frames(dir, stage.path());
    drop(lock);
    r
}

/// A registered temporary directory, removed on drop (then unregistered).
struct StagedDir(tempfile::TempDir, #[allow(dead_code)] TempGuard);

impl StagedDir {
    fn path(&self) -> &Path {
        self.0.path()
    }
}

fn frame_name(i: usize) -> String {
    format!("frame_{i:05}.png")
}

/// Check that `--frames DIR` can be created or filled (before any work is done).
pub fn check_frames_dir(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(UserError::new(format!(
            "--frames {} is a file; give a directory (it is created if missing)",
            dir.display()
        ))
        .into());
    }
    let parent = parent_dir(dir);
    if !parent.is_dir() {
        return Err(UserError::new(format!(
            "cannot create frames directory {}: {} does not exist; create it first",
            dir.display(),
            parent.display()
        ))
        .into());
    }
    Ok(())
}

/// Write the frames into a temporary directory beside `dir`.
fn stage_png_frames(dir: &Path, frames: &[RgbImage]) -> Result<StagedDir> {
    check_frames_dir(dir)?;
    let parent = parent_dir(dir);
    let (t, g) = registered(
        || {
            tempfile::Builder::new()
                .prefix(".cyberhost-frames-")
                .tempdir_in(&parent)
        },
        |t| t.path(),
    )
    .map_err(|e| {
        UserError::new(format!(
            "cannot create frames directory {}: {e}",
            dir.display()
        ))
    })?;
    let stage = StagedDir(t, g);
    for (i, f) in frames.iter().enumerate() {
        let path = stage.path().join(frame_name(i));
        let file =
            std::fs::File::create(&path).with_context(|| format!("writing {}", path.display()))?;
        let mut w = std::io::BufWriter::new(file);
        f.write_to(&mut w, image::ImageFormat::Png)
            .with_context(|| format!("writing {}", path.display()))?;
        w.flush()
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(stage)
}

/// Move the staged frames into `dir`: the whole directory when `dir` does not exist yet,
/// else frame by frame (each rename is atomic). Call with the registry's lock held.
fn commit_frames(dir: &Path, stage: &Path) -> Result<()> {
    if !dir.exists() && std::fs::rename(stage, dir).is_ok() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        UserError::new(format!(
            "cannot create frames directory {}: {e}",
            dir.display()
        ))
    })?;
    let mut names: Vec<_> = std::fs::read_dir(stage)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    for n in names {
        let to = dir.join(&n);
        std::fs::rename(stage.join(&n), &to)
            .with_context(|| format!("writing {}", to.display()))?;
    }
    Ok(())
}
