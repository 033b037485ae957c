//! WAV decoding (hound, our checks, mono mix-down) and the resampler to 16 kHz.
#![no_main]
use cyberhost_engine::pipeline::audio::{load_wav_bytes_capped, TARGET_RATE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A short cap keeps each execution fast; longer inputs are refused from the header.
    if let Ok(s) = load_wav_bytes_capped(data, "fuzz.wav", 2.0) {
        let want = (s.seconds * TARGET_RATE as f64).round() as i64;
        assert!((s.samples.len() as i64 - want).abs() <= 1, "resampled length");
        assert!(s.samples.iter().all(|v| v.is_finite()));
        let _ = s.normalized();
    }
});
