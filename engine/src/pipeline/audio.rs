//! Speech input: any common WAV → mono → 16 kHz → zero-mean, unit-variance.
//!
//! WAV decoding is `hound` (8/16/24/32-bit integer PCM and 32-bit float, any
//! channel count); resampling is `rubato`'s FFT resampler. Normalisation is
//! `Wav2Vec2FeatureExtractor(do_normalize=True)`: `(x − mean) / sqrt(var + 1e-7)`.

use crate::error::UserError;
use anyhow::{Context, Result};
use rubato::{FftFixedIn, Resampler};
use std::path::Path;

/// The wav2vec2 sample rate.
pub const TARGET_RATE: u32 = 16_000;
/// Rates outside this range are rejected (telephony to studio).
pub const MIN_RATE: u32 = 8_000;
pub const MAX_RATE: u32 = 192_000;
/// Default longest accepted speech, in seconds (`--max-audio-seconds`,
/// `CYBERHOST_MAX_AUDIO_SECONDS`). Checked from the WAV header before any sample is read.
pub const DEFAULT_MAX_SECONDS: f64 = 600.0;
/// Shortest accepted speech: one video frame's worth at 30 fps, rounded up.
pub const MIN_SECONDS: f64 = 0.04;
/// Most channels accepted (7.1 surround has 8).
pub const MAX_CHANNELS: u16 = 32;

/// The audio length cap in force: `CYBERHOST_MAX_AUDIO_SECONDS` if set (a positive number),
/// else [`DEFAULT_MAX_SECONDS`].
pub fn max_seconds_from_env() -> Result<f64> {
    match std::env::var("CYBERHOST_MAX_AUDIO_SECONDS") {
        Err(_) => Ok(DEFAULT_MAX_SECONDS),
        Ok(v) => parse_max_seconds(&v)
            .map_err(|e| UserError::new(format!("CYBERHOST_MAX_AUDIO_SECONDS: {e}")).into()),
    }
}

/// Parse a length cap in seconds (a positive, finite number).
pub fn parse_max_seconds(v: &str) -> std::result::Result<f64, String> {
    match v.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 => Ok(s),
        _ => Err(format!(
            "`{v}` is not a positive number of seconds (e.g. 600)"
        )),
    }
}

/// Mono speech at `TARGET_RATE`, plus its original duration.
#[derive(Clone, Debug)]
pub struct Speech {
    /// Mono samples at 16 kHz, in [-1, 1] (not yet normalised).
    pub samples: Vec<f32>,
    /// Duration of the input file in seconds.
    pub seconds: f64,
    /// What the input was, for logs.
    pub source_rate: u32,
    pub source_channels: u16,
}

impl Speech {
    /// Number of video frames for this audio: round(seconds · fps).
    pub fn frame_count(&self, fps: f64) -> usize {
        (self.seconds * fps).round() as usize
    }

    /// Zero mean, unit variance (as `Wav2Vec2FeatureExtractor` with `do_normalize`).
    pub fn normalized(&self) -> Vec<f32> {
        normalize(&self.samples)
    }
}

/// `(x − mean) / sqrt(var + 1e-7)` computed in f64.
pub fn normalize(x: &[f32]) -> Vec<f32> {
    if x.is_empty() {
        return Vec::new();
    }
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let inv = 1.0 / (var + 1e-7).sqrt();
    x.iter()
        .map(|&v| ((v as f64 - mean) * inv) as f32)
        .collect()
}

/// Read a WAV file and convert it to 16 kHz mono (length cap: [`max_seconds_from_env`]).
pub fn load_wav(path: &Path) -> Result<Speech> {
    load_wav_capped(path, max_seconds_from_env()?)
}

/// Read a WAV file of at most `max_seconds` and convert it to 16 kHz mono.
pub fn load_wav_capped(path: &Path, max_seconds: f64) -> Result<Speech> {
    let file = std::fs::File::open(path).map_err(|e| {
        UserError::new(format!(
            "cannot open audio file {}: {e}; pass an existing WAV file with --audio",
            path.display()
        ))
    })?;
    let reader = hound::WavReader::new(std::io::BufReader::new(file)).map_err(|e| {
        UserError::new(format!(
            "{} is not a readable WAV file ({e}); convert it first, e.g. `ffmpeg -i in.mp3 out.wav`",
            path.display()
        ))
    })?;
    decode(reader, &path.display().to_string(), max_seconds)
}

/// Decode WAV bytes already in memory (the bundled default speech).
pub fn load_wav_bytes(bytes: &[u8], name: &str) -> Result<Speech> {
    load_wav_bytes_capped(bytes, name, DEFAULT_MAX_SECONDS)
}

/// Decode WAV bytes of at most `max_seconds` (the fuzz target's entry point).
pub fn load_wav_bytes_capped(bytes: &[u8], name: &str, max_seconds: f64) -> Result<Speech> {
    let reader = hound::WavReader::new(std::io::Cursor::new(bytes)).map_err(|e| {
        UserError::new(format!(
            "{name} is not a readable WAV file ({e}); convert it first, e.g. `ffmpeg -i in.mp3 out.wav`"
        ))
    })?;
    decode(reader, name, max_seconds)
}

fn decode<R: std::io::Read>(
    mut reader: hound::WavReader<R>,
    name: &str,
    max_seconds: f64,
) -> Result<Speech> {
    let spec = reader.spec();
    if spec.channels == 0 || spec.channels > MAX_CHANNELS {
        return Err(UserError::new(format!(
            "{name}: WAV header says {} channels; use 1 to {MAX_CHANNELS} channels (e.g. \
             `ffmpeg -i in.wav -ac 1 out.wav`)",
            spec.channels
        ))
        .into());
    }
    if !(MIN_RATE..=MAX_RATE).contains(&spec.sample_rate) {
        return Err(UserError::new(format!(
            "{name}: sample rate {} Hz is not supported; use {MIN_RATE}..{MAX_RATE} Hz (e.g. `ffmpeg -i in.wav -ar 16000 out.wav`)",
            spec.sample_rate
        ))
        .into());
    }
    // The header's length, checked before any sample is read: a lying or huge WAV is
    // refused without decoding (or allocating for) it.
    let header_frames = reader.duration() as u64;
    let header_seconds = header_frames as f64 / spec.sample_rate as f64;
    if header_seconds > max_seconds {
        return Err(UserError::new(format!(
            "{name}: the WAV header says {header_seconds:.1} s of audio, longer than the \
             {max_seconds} s limit; cut it (e.g. `ffmpeg -i in.wav -t {max_seconds} out.wav`) or \
             raise the limit with --max-audio-seconds / CYBERHOST_MAX_AUDIO_SECONDS"
        ))
        .into());
    }
    let ch = spec.channels as usize;
    let corrupt = |e: hound::Error| {
        UserError::new(format!(
            "{name}: corrupt or truncated WAV data ({e}); re-export the file (e.g. \
             `ffmpeg -i in.wav out.wav`)"
        ))
    };
    // Mix down to mono while reading (never holding all channels).
    let mut mono: Vec<f32> = Vec::with_capacity(header_frames.min(1 << 22) as usize);
    let mut push = |i: usize, v: f32, acc: &mut f32| {
        *acc += v;
        if i % ch == ch - 1 {
            mono.push(*acc / ch as f32);
            *acc = 0.0;
        }
    };
    let mut acc = 0.0f32;
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => {
            for (i, v) in reader.samples::<f32>().enumerate() {
                push(i, v.map_err(corrupt)?, &mut acc);
            }
        }
        (hound::SampleFormat::Int, bits @ 1..=32) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            for (i, v) in reader.samples::<i32>().enumerate() {
                push(i, v.map_err(corrupt)? as f32 * scale, &mut acc);
            }
        }
        (fmt, bits) => {
            return Err(UserError::new(format!(
                "{name}: {bits}-bit {fmt:?} WAV is not supported; use 8/16/24/32-bit PCM or 32-bit float"
            ))
            .into())
        }
    };
    let frames = mono.len();
    if frames == 0 {
        return Err(UserError::new(format!(
            "{name}: the WAV file holds no audio samples; pass a recording of speech"
        ))
        .into());
    }
    if let Some(i) = mono.iter().position(|v| !v.is_finite()) {
        return Err(UserError::new(format!(
            "{name}: sample {i} is {} (not a finite number); the float WAV is corrupt, re-export it",
            mono[i]
        ))
        .into());
    }
    let seconds = frames as f64 / spec.sample_rate as f64;
    if seconds < MIN_SECONDS {
        return Err(UserError::new(format!(
            "{name}: the audio is only {seconds:.4} s long, shorter than one video frame; \
             pass at least {MIN_SECONDS} s of speech"
        ))
        .into());
    }
    let samples = resample(&mono, spec.sample_rate, TARGET_RATE).with_context(|| {
        format!(
            "resampling {name} from {} Hz to {TARGET_RATE} Hz",
            spec.sample_rate
        )
    })?;
    Ok(Speech {
        samples,
        seconds,
        source_rate: spec.sample_rate,
        source_channels: spec.channels,
    })
}

/// Resample mono audio with rubato's FFT resampler, compensating its delay so the
/// output is time-aligned and exactly `round(len · to / from)` samples long.
pub fn resample(x: &[f32], from: u32, to: u32) -> Result<Vec<f32>> {
    if from == to {
        return Ok(x.to_vec());
    }
    let new_len = ((x.len() as u64 * to as u64 + from as u64 / 2) / from as u64) as usize;
    let chunk = 1024;
    let mut rs = FftFixedIn::<f32>::new(from as usize, to as usize, chunk, 2, 1)?;
    let delay = rs.output_delay();
    let mut out: Vec<f32> = Vec::with_capacity(new_len + delay + chunk);
    let mut pos = 0;
    while x.len() - pos >= rs.input_frames_next() {
        let n = rs.input_frames_next();
        let o = rs.process(&[&x[pos..pos + n]], None)?;
        out.extend_from_slice(&o[0]);
        pos += n;
    }
    if pos < x.len() {
        let o = rs.process_partial(Some(&[&x[pos..]]), None)?;
        out.extend_from_slice(&o[0]);
    }
    while out.len() < new_len + delay {
        let o = rs.process_partial::<&[f32]>(None, None)?;
        if o[0].is_empty() {
            break;
        }
        out.extend_from_slice(&o[0]);
    }
    out.resize(new_len + delay, 0.0);
    Ok(out[delay..delay + new_len].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resample_keeps_a_tone_and_its_length() {
        let from = 44_100u32;
        let secs = 0.5;
        let n = (from as f64 * secs) as usize;
        let f = 440.0f64;
        let x: Vec<f32> = (0..n)
            .map(|i| (2.0 * std::f64::consts::PI * f * i as f64 / from as f64).sin() as f32)
            .collect();
        let y = resample(&x, from, TARGET_RATE).unwrap();
        assert_eq!(y.len(), (n as f64 * 16_000.0 / 44_100.0).round() as usize);
        // Compare against the ideal tone away from the edges.
        let mut err = 0.0f64;
        let mut den = 0.0f64;
        for (i, &v) in y.iter().enumerate().skip(400).take(y.len() - 800) {
            let ideal = (2.0 * std::f64::consts::PI * f * i as f64 / 16_000.0).sin();
            err += (v as f64 - ideal).powi(2);
            den += ideal * ideal;
        }
        assert!((err / den).sqrt() < 1e-2, "rel err {}", (err / den).sqrt());
    }

    #[test]
    fn normalize_gives_zero_mean_unit_variance() {
        let x: Vec<f32> = (0..1000)
            .map(|i| ((i * 37 % 101) as f32) / 50.0 - 0.3)
            .collect();
        let y = normalize(&x);
        let mean = y.iter().map(|&v| v as f64).sum::<f64>() / y.len() as f64;
        let var = y.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / y.len() as f64;
        assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4);
    }
}
