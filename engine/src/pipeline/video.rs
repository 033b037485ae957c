//! Output: an MP4 (H.264 video + the input speech as AAC) through the system
//! `ffmpeg`, and optional PNG frames. Everything is written to a temporary file
//! in the destination directory and renamed at the end, so a failed run leaves
//! no half-written file.

use crate::error::UserError;
use anyhow::{bail, Context, Result};
use image::RgbImage;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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
    if frames.is_empty() {
        bail!("no frames to encode");
    }
    check_output_path(out)?;
    check_ffmpeg()?;
    let (w, h) = frames[0].dimensions();
    let dir = parent_dir(out);
    let tmp = tempfile::Builder::new()
        .prefix(".cyberhost-")
        .suffix(".mp4")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    // The bundled audio goes through a temporary WAV.
    let wav_tmp;
    let audio_path: &Path = match audio {
        AudioTrack::File(p) => p,
        AudioTrack::Bytes(b) => {
            let mut f = tempfile::Builder::new().suffix(".wav").tempfile()?;
            f.write_all(b)?;
            wav_tmp = f;
            wav_tmp.path()
        }
    };
    let mut child = Command::new(ffmpeg_binary())
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
        .arg(tmp.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start ffmpeg")?;
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
    tmp.persist(out)
        .with_context(|| format!("cannot move the finished video to {}", out.display()))?;
    Ok(())
}

/// Write `frame_00000.png`, ... into `dir` (created if missing), each atomically.
pub fn write_png_frames(dir: &Path, frames: &[RgbImage]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| {
        UserError::new(format!(
            "cannot create frames directory {}: {e}",
            dir.display()
        ))
    })?;
    for (i, f) in frames.iter().enumerate() {
        let path = dir.join(format!("frame_{i:05}.png"));
        let tmp = tempfile::Builder::new()
            .prefix(".frame-")
            .suffix(".png")
            .tempfile_in(dir)?;
        f.write_to(
            &mut std::io::BufWriter::new(tmp.as_file()),
            image::ImageFormat::Png,
        )
        .with_context(|| format!("writing {}", path.display()))?;
        tmp.persist(&path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
