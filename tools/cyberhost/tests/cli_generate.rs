//! `cyberhost generate` end to end, and every bad input of the pipeline issue:
//! each either works or exits 2 with a message naming the problem, leaving no output file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod cli_util;
use cli_util::{json_ok, run, stderr, wav_spec};

/// A speech-like WAV: a chirp with a few formant-ish harmonics.
fn write_wav(path: &Path, rate: u32, channels: u16, bits: u16, float: bool, seconds: f64) {
    let spec = wav_spec(rate, channels, bits, float);
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let n = (rate as f64 * seconds) as usize;
    for i in 0..n {
        let t = i as f64 / rate as f64;
        let v = 0.4 * (2.0 * std::f64::consts::PI * (180.0 + 60.0 * t) * t).sin()
            + 0.2 * (2.0 * std::f64::consts::PI * 720.0 * t).sin();
        for c in 0..channels {
            let v = v * (1.0 - 0.2 * c as f64);
            if float {
                w.write_sample(v as f32).unwrap();
            } else {
                let max = ((1i64 << (bits - 1)) - 1) as f64;
                let s = (v * max) as i32;
                match bits {
                    8 => w.write_sample(s as i8).unwrap(),
                    16 => w.write_sample(s as i16).unwrap(),
                    _ => w.write_sample(s).unwrap(),
                }
            }
        }
    }
    w.finalize().unwrap();
}

fn write_png(path: &Path, w: u32, h: u32) {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x + y) % 239) as u8])
    });
    img.save(path).unwrap();
}

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        Case {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn s(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
    /// `cyberhost generate ARGS --out <case>/o.mp4`.
    fn generate(&self, args: &[&str]) -> Output {
        let out = self.s("o.mp4");
        run(&[&["generate"][..], args, &["--out", &out]].concat())
    }
    /// [`Case::generate`] must stop with a user error mentioning `needle`.
    fn generate_fails(&self, args: &[&str], needle: &str) {
        expect_user_error(&self.generate(args), needle);
    }
    /// `generate FLAG <file>` for each (file, contents, needle): the file written first (left
    /// absent for `None`), the run must stop naming `needle`; then no output is left.
    fn bad_files(&self, flag: &str, cases: &[(&str, Option<&[u8]>, &str)]) {
        for &(file, contents, needle) in cases {
            if let Some(b) = contents {
                std::fs::write(self.path(file), b).unwrap();
            }
            self.generate_fails(&[flag, &self.s(file)], needle);
        }
        self.no_mp4();
    }
    /// No file but those the test made itself.
    fn no_mp4(&self) {
        let leftovers: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".mp4"))
            .collect();
        assert!(leftovers.is_empty(), "output left behind: {leftovers:?}");
    }
}

/// Fast settings for runs that should work: 1 step, short audio.
const FAST: [&str; 2] = ["--steps", "1"];

fn expect_user_error(o: &Output, needle: &str) {
    assert_eq!(
        o.status.code(),
        Some(2),
        "expected exit 2; stderr: {}",
        stderr(o)
    );
    let e = stderr(o).to_lowercase();
    assert!(
        e.contains(&needle.to_lowercase()),
        "stderr does not mention `{needle}`: {}",
        stderr(o)
    );
    assert!(!e.contains("panicked"), "panic: {}", stderr(o));
}

fn ffprobe(path: &Path) -> serde_json::Value {
    let o = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_streams",
            "-show_format",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .expect("ffprobe");
    json_ok(&o)
}

#[test]
fn default_run_writes_a_playable_mp4_with_the_right_frame_count_and_audio() {
    let c = Case::new();
    let out = c.s("out.mp4");
    let o = run(&["generate", "--out", &out, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let probe = ffprobe(&c.path("out.mp4"));
    let streams = probe["streams"].as_array().unwrap();
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .expect("video stream");
    let audio = streams
        .iter()
        .find(|s| s["codec_type"] == "audio")
        .expect("audio stream");
    assert_eq!(video["codec_name"], "h264");
    let frames: usize = video["nb_frames"].as_str().unwrap().parse().unwrap();
    // The bundled speech lasts 2.41 s: round(2.41 × 12) = 29 frames.
    let done: serde_json::Value = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "done")
        .expect("done event");
    let secs = done["audio_seconds"].as_f64().unwrap();
    assert_eq!(frames, (secs * 12.0).round() as usize);
    let adur: f64 = audio["duration"].as_str().unwrap().parse().unwrap();
    assert!(
        (adur - secs).abs() < 0.05,
        "audio track {adur} s vs input {secs} s"
    );
}

#[test]
fn same_seed_same_frames_other_seed_other_frames() {
    let c = Case::new();
    let wav = c.s("a.wav");
    write_wav(&c.path("a.wav"), 16_000, 1, 16, false, 0.5);
    let gen = |seed: &str, dir: &str| {
        let o = run(&[
            "generate",
            "--audio",
            &wav,
            "--out",
            &c.s(&format!("{dir}.mp4")),
            "--frames",
            &c.s(dir),
            "--seed",
            seed,
            "--steps",
            "2",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let mut frames = Vec::new();
        let mut names: Vec<_> = std::fs::read_dir(c.path(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            frames.push(std::fs::read(p).unwrap());
        }
        frames
    };
    let a = gen("7", "a");
    let b = gen("7", "b");
    let d = gen("8", "d");
    assert_eq!(a.len(), 6);
    assert_eq!(a, b, "same seed must give bit-identical frames");
    assert_ne!(a, d, "another seed must change the video");
}

#[test]
fn wav_formats_rates_and_channels_work() {
    let c = Case::new();
    for (i, (rate, ch, bits, float)) in [
        (8_000, 1, 8, false),
        (22_050, 2, 16, false),
        (44_100, 1, 24, false),
        (48_000, 2, 32, false),
        (32_000, 1, 32, true),
    ]
    .into_iter()
    .enumerate()
    {
        let wav = c.path(&format!("in{i}.wav"));
        write_wav(&wav, rate, ch, bits, float, 0.3);
        let out = c.s(&format!("o{i}.mp4"));
        let o = run(&[
            "generate",
            "--audio",
            &wav.display().to_string(),
            "--out",
            &out,
            FAST[0],
            FAST[1],
        ]);
        assert!(
            o.status.success(),
            "{rate} Hz {ch} ch {bits}-bit float={float}: {}",
            stderr(&o)
        );
        assert!(c.path(&format!("o{i}.mp4")).is_file());
    }
}

#[test]
fn very_short_audio() {
    let c = Case::new();
    // 0.1 s at 12 fps = round(1.2) = 1 frame: works.
    write_wav(&c.path("short.wav"), 16_000, 1, 16, false, 0.1);
    let o = c.generate(&["--audio", &c.s("short.wav"), FAST[0], FAST[1]]);
    assert!(o.status.success(), "{}", stderr(&o));
    // An empty WAV stops with a message.
    let c2 = Case::new();
    write_wav(&c2.path("empty.wav"), 16_000, 1, 16, false, 0.0);
    c2.generate_fails(&["--audio", &c2.s("empty.wav")], "no audio");
    c2.no_mp4();
}

#[test]
fn missing_and_non_wav_audio() {
    let c = Case::new();
    let fake: &[u8] = b"this is not a wav file at all";
    c.bad_files(
        "--audio",
        &[
            ("nope.wav", None, "nope.wav"),
            ("fake.wav", Some(fake), "not a readable WAV"),
        ],
    );
}

#[test]
fn bad_images() {
    let c = Case::new();
    write_png(&c.path("ok.png"), 64, 48);
    let mut bytes = std::fs::read(c.path("ok.png")).unwrap();
    bytes.truncate(bytes.len() / 2);
    c.bad_files(
        "--image",
        &[
            ("missing.png", None, "missing.png"),
            ("corrupt.png", Some(&bytes), "corrupt.png"),
            ("text.png", Some(b"hello"), "not a PNG or JPEG"),
        ],
    );
}

#[test]
fn huge_image_works() {
    let c = Case::new();
    let img = image::RgbImage::from_fn(10_000, 10_000, |x, y| {
        image::Rgb([(x / 40) as u8, (y / 40) as u8, 128])
    });
    img.save(c.path("big.png")).unwrap();
    drop(img);
    write_wav(&c.path("a.wav"), 16_000, 1, 16, false, 0.2);
    let (big, a) = (c.s("big.png"), c.s("a.wav"));
    let o = c.generate(&["--image", &big, "--audio", &a, FAST[0], FAST[1]]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn bad_flags() {
    let c = Case::new();
    for (flag, value) in [
        ("--steps", "0"),
        ("--guidance", "-1"),
        ("--size", "100x100"),
        ("--hand-clarity", "2"),
    ] {
        c.generate_fails(&[flag, value], flag);
    }
    let o = run(&["generate", "--out", &c.s("no/such/dir/o.mp4")]);
    expect_user_error(&o, "does not exist");
    c.no_mp4();
}

#[test]
fn bad_weights_directories() {
    let c = Case::new();
    let w = c.path("w");
    let o = run(&[
        "make-weights",
        "--preset",
        "tiny",
        "--out",
        &w.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // inspect validates every component.
    let o = run(&["inspect", &w.display().to_string()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("ok"));
    // A config that contradicts the tensors: every mismatch named.
    let cfg_path = w.join("vae/config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["block_out_channels"] = serde_json::json!([32, 32, 64, 96]);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let ws = w.display().to_string();
    let o = c.generate(&["--weights", &ws]);
    expect_user_error(&o, "does not match");
    assert!(stderr(&o).contains("vae"), "{}", stderr(&o));
    // A missing component.
    std::fs::remove_dir_all(w.join("audio_encoder")).unwrap();
    c.generate_fails(&["--weights", &ws], "audio_encoder");
    c.no_mp4();
}
