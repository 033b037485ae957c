//! The bad-input table: every kind of broken or hostile input the CLI reads (image, audio,
//! pose, checkpoint: safetensors, shard index, config.json), each run through the real
//! `cyberhost generate` and checked for exit 2, a message naming the problem and its fix, no
//! panic, and no output (no video, no frames directory, no temporary file).
//!
//! The table is listed in `docs/reliability.md`. Huge inputs are synthesised as lying headers
//! (a 30000×30000 PNG header, a 10-hour WAV header), never written out in full.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

mod cli_util;
use cli_util::{bin, wav_spec};

// ------------------------------------------------------------------------------------------
// Input builders

/// A 16-bit mono tone of `seconds` at `rate`.
fn write_wav(path: &Path, rate: u32, seconds: f64) {
    let mut w = hound::WavWriter::create(path, wav_spec(rate, 1, 16, false)).unwrap();
    for i in 0..(rate as f64 * seconds) as usize {
        let t = i as f64 / rate as f64;
        w.write_sample((8000.0 * (2.0 * std::f64::consts::PI * 220.0 * t).sin()) as i16)
            .unwrap();
    }
    w.finalize().unwrap();
}

/// A canonical 44-byte WAV header (PCM or IEEE float) whose data chunk claims `data_len`
/// bytes, followed by `body` (which may be much shorter: a lying header).
fn wav_header(
    rate: u32,
    channels: u16,
    bits: u16,
    format: u16,
    data_len: u32,
    body: &[u8],
) -> Vec<u8> {
    let block = channels as u32 * bits as u32 / 8;
    let mut v = Vec::new();
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36u32.wrapping_add(data_len)).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&format.to_le_bytes());
    v.extend_from_slice(&channels.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(rate * block).to_le_bytes());
    v.extend_from_slice(&(block as u16).to_le_bytes());
    v.extend_from_slice(&bits.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data_len.to_le_bytes());
    v.extend_from_slice(body);
    v
}

fn write_png(path: &Path, w: u32, h: u32) {
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, 90])
    })
    .save(path)
    .unwrap();
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A PNG whose IHDR claims `w×h` (RGB, 8-bit) followed by a tiny IDAT: a header-only
/// decompression bomb (or a lying header when the size is modest).
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    let chunk = |v: &mut Vec<u8>, kind: &[u8], data: &[u8]| {
        v.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        v.extend_from_slice(&body);
        v.extend_from_slice(&crc32(&body).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut v, b"IHDR", &ihdr);
    // zlib stream of a few zero bytes (far fewer than w×h pixels).
    chunk(
        &mut v,
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x60, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01],
    );
    chunk(&mut v, b"IEND", &[]);
    v
}

/// A valid small JPEG with its SOF0 dimensions patched to `w×h`.
fn jpeg_with_dims(dir: &Path, w: u16, h: u16) -> Vec<u8> {
    let p = dir.join("src.jpg");
    image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8 * 4, y as u8 * 4, 128]))
        .save(&p)
        .unwrap();
    let mut b = std::fs::read(&p).unwrap();
    std::fs::remove_file(&p).unwrap();
    let sof = b
        .windows(2)
        .position(|m| m == [0xFF, 0xC0])
        .expect("baseline JPEG has SOF0");
    b[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    b[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    b
}

// ------------------------------------------------------------------------------------------
// Checkpoints

/// One tiny synthetic checkpoint per test process; cases copy the component they break.
fn base_weights() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let t = tempfile::tempdir().unwrap();
        let w = t.path().join("w");
        let o = bin()
            .args(["make-weights", "--preset", "tiny", "--out"])
            .arg(&w)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (t, w)
    })
    .1
}

/// A checkpoint in `dir/w`: `component` copied (to be broken by `edit`), the rest linked.
fn weights_with(dir: &Path, component: &str, edit: impl FnOnce(&Path)) -> PathBuf {
    let w = dir.join("w");
    std::fs::create_dir(&w).unwrap();
    for e in std::fs::read_dir(base_weights()).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name == component {
            let to = w.join(&name);
            std::fs::create_dir(&to).unwrap();
            for f in std::fs::read_dir(e.path()).unwrap() {
                let f = f.unwrap();
                std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
            }
        } else {
            std::os::unix::fs::symlink(e.path(), w.join(&name)).unwrap();
        }
    }
    edit(&w.join(component));
    w
}

const DIFFUSERS_FILE: &str = "diffusion_pytorch_model.safetensors";

/// Split a safetensors file into (header JSON, data).
fn read_st(path: &Path) -> (serde_json::Value, Vec<u8>) {
    let b = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    (
        serde_json::from_slice(&b[8..8 + n]).unwrap(),
        b[8 + n..].to_vec(),
    )
}

fn write_st(path: &Path, header: &serde_json::Value, data: &[u8]) {
    let h = serde_json::to_vec(header).unwrap();
    let mut b = (h.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(&h);
    b.extend_from_slice(data);
    std::fs::write(path, b).unwrap();
}

/// Edit the header of a component's weights file (data unchanged).
fn edit_header(file: &Path, f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let (mut h, data) = read_st(file);
    f(h.as_object_mut().unwrap());
    write_st(file, &h, &data);
}

/// The (name, entry) of the first tensor with at least `min` elements and a 2-D+ shape.
fn pick(h: &serde_json::Map<String, serde_json::Value>, min: u64) -> (String, serde_json::Value) {
    h.iter()
        .filter(|(k, _)| *k != "__metadata__")
        .find(|(_, v)| {
            let s: Vec<u64> = v["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .collect();
            s.len() >= 2 && s.iter().product::<u64>() >= min && s[0] != s[1]
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap()
}

/// Overwrite the first value of a tensor's data with the f32 `v` (in its stored dtype).
fn poison(file: &Path, v: f32) {
    let (h, mut data) = read_st(file);
    let (_, e) = pick(h.as_object().unwrap(), 4);
    let start = e["data_offsets"][0].as_u64().unwrap() as usize;
    let bytes: Vec<u8> = match e["dtype"].as_str().unwrap() {
        "F32" => v.to_le_bytes().to_vec(),
        d => panic!("make-weights writes F32, found {d}"),
    };
    data[start..start + bytes.len()].copy_from_slice(&bytes);
    write_st(file, &h, &data);
}

/// Turn a component's single weights file into a one-shard checkpoint whose index maps every
/// tensor to `shard_name` (the real shard is written as `real_shard`).
fn shard(dir: &Path, file: &str, real_shard: &str, shard_name: &str) {
    let (h, _) = read_st(&dir.join(file));
    let map: serde_json::Map<String, serde_json::Value> = h
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "__metadata__")
        .map(|k| (k.clone(), serde_json::Value::from(shard_name)))
        .collect();
    std::fs::rename(dir.join(file), dir.join(real_shard)).unwrap();
    std::fs::write(
        dir.join(format!("{file}.index.json")),
        serde_json::json!({"metadata": {}, "weight_map": map}).to_string(),
    )
    .unwrap();
}

fn edit_json(file: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(file, v.to_string()).unwrap();
}

// ------------------------------------------------------------------------------------------
// The table

/// What one case passes to `generate`, built in its own directory.
type Setup = fn(&Path) -> Vec<String>;

struct Case {
    name: &'static str,
    setup: Setup,
    /// Words of the message that name the problem ...
    problem: &'static str,
    /// ... and the fix.
    fix: &'static str,
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn img(dir: &Path, bytes: &[u8]) -> Vec<String> {
    let p = dir.join("in.png");
    std::fs::write(&p, bytes).unwrap();
    vec!["--image".into(), s(&p)]
}

fn audio(dir: &Path, bytes: &[u8]) -> Vec<String> {
    let p = dir.join("in.wav");
    std::fs::write(&p, bytes).unwrap();
    vec!["--audio".into(), s(&p)]
}

fn pose(dir: &Path, json: &str) -> Vec<String> {
    let p = dir.join("pose.json");
    std::fs::write(&p, json).unwrap();
    // A 320×240 reference so that pose coordinates can be checked against it.
    write_png(&dir.join("ref.png"), 320, 240);
    vec![
        "--pose".into(),
        s(&p),
        "--image".into(),
        s(&dir.join("ref.png")),
    ]
}

fn weights(w: PathBuf) -> Vec<String> {
    vec!["--weights".into(), s(&w)]
}

/// 18 keypoints inside a 320×240 image, with one replaced.
fn keypoints_with(i: usize, kp: &str) -> String {
    let pts: Vec<String> = (0..18)
        .map(|k| {
            if k == i {
                kp.to_string()
            } else {
                format!("[{}, {}, 1]", 100 + k * 5, 50 + k * 8)
            }
        })
        .collect();
    format!("{{\"keypoints\": [{}]}}", pts.join(", "))
}

fn cases() -> Vec<Case> {
    vec![
        // ---------------- image
        Case {
            name: "image: missing file",
            setup: |d| vec!["--image".into(), s(&d.join("missing.png"))],
            problem: "missing.png",
            fix: "pass an existing",
        },
        Case {
            name: "image: not an image",
            setup: |d| img(d, b"hello, world"),
            problem: "not a PNG or JPEG",
            fix: "convert",
        },
        Case {
            name: "image: empty file",
            setup: |d| img(d, b""),
            problem: "not a PNG or JPEG",
            fix: "convert",
        },
        Case {
            name: "image: truncated PNG",
            setup: |d| {
                write_png(&d.join("ok.png"), 200, 100);
                let b = std::fs::read(d.join("ok.png")).unwrap();
                std::fs::remove_file(d.join("ok.png")).unwrap();
                img(d, &b[..b.len() / 2])
            },
            problem: "corrupt or truncated",
            fix: "re-export",
        },
        Case {
            name: "image: 1x1",
            setup: |d| {
                write_png(&d.join("in.png"), 1, 1);
                vec!["--image".into(), s(&d.join("in.png"))]
            },
            problem: "1×1",
            fix: "at least",
        },
        Case {
            name: "image: 30000x30000 header only (decompression bomb)",
            setup: |d| img(d, &png_header_only(30_000, 30_000)),
            problem: "30000×30000",
            fix: "downscale",
        },
        Case {
            name: "image: 70000x10 PNG header (side over limit)",
            setup: |d| img(d, &png_header_only(70_000, 10)),
            problem: "70000×10",
            fix: "downscale",
        },
        Case {
            name: "image: 0-height PNG header",
            setup: |d| img(d, &png_header_only(100, 0)),
            problem: "image",
            fix: "re-export",
        },
        Case {
            name: "image: lying PNG header (400x300, a few bytes of pixels)",
            setup: |d| img(d, &png_header_only(400, 300)),
            problem: "corrupt or truncated",
            fix: "re-export",
        },
        Case {
            name: "image: JPEG header claiming 40000x40000",
            setup: |d| {
                let b = jpeg_with_dims(d, 40_000, 40_000);
                img(d, &b)
            },
            problem: "40000×40000",
            fix: "downscale",
        },
        Case {
            name: "image: truncated JPEG",
            setup: |d| {
                let b = jpeg_with_dims(d, 64, 64);
                img(d, &b[..b.len() / 3])
            },
            problem: "corrupt",
            fix: "re-export",
        },
        // ---------------- audio
        Case {
            name: "audio: missing file",
            setup: |d| vec!["--audio".into(), s(&d.join("nope.wav"))],
            problem: "nope.wav",
            fix: "pass an existing",
        },
        Case {
            name: "audio: not a WAV",
            setup: |d| audio(d, b"ID3\x03 this is an mp3, honestly"),
            problem: "not a readable WAV",
            fix: "ffmpeg -i",
        },
        Case {
            name: "audio: empty WAV (no samples)",
            setup: |d| audio(d, &wav_header(16_000, 1, 16, 1, 0, &[])),
            problem: "no audio samples",
            fix: "pass a recording",
        },
        Case {
            name: "audio: 10-hour lying header",
            setup: |d| {
                audio(
                    d,
                    &wav_header(16_000, 1, 16, 1, 16_000 * 2 * 36_000, &[0; 64]),
                )
            },
            problem: "36000.0 s",
            fix: "--max-audio-seconds",
        },
        Case {
            name: "audio: over --max-audio-seconds",
            setup: |d| {
                write_wav(&d.join("a.wav"), 16_000, 0.5);
                vec![
                    "--audio".into(),
                    s(&d.join("a.wav")),
                    "--max-audio-seconds".into(),
                    "0.25".into(),
                ]
            },
            problem: "longer than the 0.25 s limit",
            fix: "--max-audio-seconds",
        },
        Case {
            name: "audio: truncated data (header says 1 s)",
            setup: |d| audio(d, &wav_header(16_000, 1, 16, 1, 32_000, &[1; 1001])),
            problem: "truncated",
            fix: "re-export",
        },
        Case {
            name: "audio: 4 kHz sample rate",
            setup: |d| {
                write_wav(&d.join("a.wav"), 4_000, 0.5);
                vec!["--audio".into(), s(&d.join("a.wav"))]
            },
            problem: "4000 Hz",
            fix: "-ar 16000",
        },
        Case {
            name: "audio: 0 channels",
            setup: |d| audio(d, &wav_header(16_000, 0, 16, 1, 0, &[])),
            problem: "wav",
            fix: "ffmpeg",
        },
        Case {
            name: "audio: 64 channels",
            setup: |d| {
                audio(
                    d,
                    &wav_header(16_000, 64, 16, 1, 64 * 2 * 100, &vec![0; 64 * 2 * 100]),
                )
            },
            problem: "64 channels",
            fix: "-ac 1",
        },
        Case {
            name: "audio: 64-bit float samples",
            setup: |d| {
                audio(
                    d,
                    &wav_header(16_000, 1, 64, 3, 8 * 1600, &vec![0; 8 * 1600]),
                )
            },
            problem: "wav",
            fix: "ffmpeg",
        },
        Case {
            name: "audio: NaN samples in a float WAV",
            setup: |d| {
                let body: Vec<u8> = (0..1600)
                    .flat_map(|i| if i == 7 { f32::NAN } else { 0.1 }.to_le_bytes())
                    .collect();
                audio(d, &wav_header(16_000, 1, 32, 3, body.len() as u32, &body))
            },
            problem: "not a finite number",
            fix: "re-export",
        },
        Case {
            name: "audio: shorter than one frame",
            setup: |d| {
                write_wav(&d.join("a.wav"), 16_000, 0.005);
                vec!["--audio".into(), s(&d.join("a.wav"))]
            },
            problem: "shorter than one video frame",
            fix: "at least",
        },
        Case {
            name: "audio: bad CYBERHOST_MAX_AUDIO_SECONDS",
            setup: |_| vec!["env:CYBERHOST_MAX_AUDIO_SECONDS=ten".into()],
            problem: "CYBERHOST_MAX_AUDIO_SECONDS",
            fix: "positive number",
        },
        // ---------------- pose
        Case {
            name: "pose: missing file",
            setup: |d| vec!["--pose".into(), s(&d.join("pose.json"))],
            problem: "pose.json",
            fix: "pass an existing",
        },
        Case {
            name: "pose: not JSON",
            setup: |d| pose(d, "keypoints: nose"),
            problem: "not a valid pose JSON",
            fix: "expected",
        },
        Case {
            name: "pose: 17 keypoints",
            setup: |d| {
                pose(
                    d,
                    &format!("{{\"keypoints\": [{}]}}", vec!["[1, 2, 1]"; 17].join(",")),
                )
            },
            problem: "17 entries",
            fix: "exactly 18",
        },
        Case {
            name: "pose: NaN box (as Python's json writes it)",
            setup: |d| pose(d, "{\"face\": [NaN, 10, 50, 60]}"),
            problem: "NaN",
            fix: "finite",
        },
        Case {
            name: "pose: infinite keypoint",
            setup: |d| pose(d, &keypoints_with(3, "[Infinity, 4, 1]")),
            problem: "Infinity",
            fix: "finite",
        },
        Case {
            name: "pose: box outside the image",
            setup: |d| pose(d, "{\"face\": [500, 400, 600, 480]}"),
            problem: "outside the 320×240",
            fix: "pixels of the --image",
        },
        Case {
            name: "pose: empty box",
            setup: |d| pose(d, "{\"movement\": [50, 50, 40, 80]}"),
            problem: "is empty",
            fix: "x1 > x0",
        },
        Case {
            name: "pose: three hand boxes",
            setup: |d| pose(d, "{\"hands\": [[1,1,5,5],[6,6,9,9],[10,10,20,20]]}"),
            problem: "hands",
            fix: "exactly two",
        },
        Case {
            name: "pose: unknown key",
            setup: |d| pose(d, "{\"body\": [1, 2]}"),
            problem: "unknown field `body`",
            fix: "expected",
        },
        Case {
            name: "pose: keypoint outside the image",
            setup: |d| pose(d, &keypoints_with(5, "[900, 20, 1]")),
            problem: "keypoint 5",
            fix: "conf 0",
        },
        Case {
            name: "pose: keypoint conf 7",
            setup: |d| pose(d, &keypoints_with(2, "[10, 20, 7]")),
            problem: "keypoint 2",
            fix: "[0, 1]",
        },
        Case {
            name: "pose: 2 MB file",
            setup: |d| {
                pose(
                    d,
                    &format!("{{\"face\": [1, 1, 5, 5]}}{}", " ".repeat(2 << 20)),
                )
            },
            problem: "limit",
            fix: "check the path",
        },
        // ---------------- checkpoint folder and configs
        Case {
            name: "weights: no such directory",
            setup: |d| weights(d.join("nope")),
            problem: "nope",
            fix: "make-weights",
        },
        Case {
            name: "weights: component folder missing",
            setup: |d| {
                let w = weights_with(d, "audio_encoder", |_| {});
                std::fs::remove_file(w.join("audio_encoder")).ok();
                std::fs::remove_dir_all(w.join("audio_encoder")).ok();
                weights(w)
            },
            problem: "audio_encoder",
            fix: "make-weights",
        },
        Case {
            name: "config: not JSON",
            setup: |d| {
                weights(weights_with(d, "vae", |c| {
                    std::fs::write(c.join("config.json"), "{\"in_channels\": 3,").unwrap()
                }))
            },
            problem: "not valid JSON",
            fix: "re-save",
        },
        Case {
            name: "config: unknown key (cyberhost)",
            setup: |d| {
                weights(weights_with(d, "cyberhost", |c| {
                    edit_json(&c.join("config.json"), |v| {
                        v["colour_grading"] = 1.into();
                    })
                }))
            },
            problem: "colour_grading",
            fix: "expected",
        },
        Case {
            name: "config: wrong type (vae)",
            setup: |d| {
                weights(weights_with(d, "vae", |c| {
                    edit_json(&c.join("config.json"), |v| {
                        v["latent_channels"] = "four".into();
                    })
                }))
            },
            problem: "latent_channels",
            fix: "integer",
        },
        Case {
            name: "config: contradicts the tensors",
            setup: |d| {
                weights(weights_with(d, "vae", |c| {
                    edit_json(&c.join("config.json"), |v| {
                        v["block_out_channels"] = serde_json::json!([32, 32, 64, 96]);
                    })
                }))
            },
            problem: "does not match",
            fix: "fix the tensors or the config.json",
        },
        Case {
            name: "config: 70 MB config.json",
            setup: |d| {
                weights(weights_with(d, "vae", |c| {
                    let f = std::fs::File::create(c.join("config.json")).unwrap();
                    f.set_len(70 << 20).unwrap();
                }))
            },
            problem: "limit",
            fix: "check the path",
        },
        // ---------------- safetensors
        Case {
            name: "safetensors: truncated to 5 bytes",
            setup: |d| {
                weights(weights_with(d, "vae", |c| {
                    std::fs::write(c.join(DIFFUSERS_FILE), b"\x10\0\0\0\0").unwrap()
                }))
            },
            problem: "truncated",
            fix: "re-download",
        },
        Case {
            name: "safetensors: truncated data section",
            setup: |d| {
                weights(weights_with(d, "vae", |c| {
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .open(c.join(DIFFUSERS_FILE))
                        .unwrap();
                    let n = f.metadata().unwrap().len();
                    f.set_len(n - 1000).unwrap();
                }))
            },
            problem: "run past the end",
            fix: "re-download",
        },
        Case {
            name: "safetensors: header length beyond the file",
            setup: |d| {
                weights(weights_with(d, "vae", |c| {
                    let mut b = std::fs::read(c.join(DIFFUSERS_FILE)).unwrap();
                    let n = b.len() as u64;
                    b[..8].copy_from_slice(&n.to_le_bytes());
                    std::fs::write(c.join(DIFFUSERS_FILE), b).unwrap();
                }))
            },
            problem: "header length field",
            fix: "re-download",
        },
        Case {
            name: "safetensors: header length 2^62 (over the cap)",
            setup: |d| {
                weights(weights_with(d, "vae", |c| {
                    let mut b = std::fs::read(c.join(DIFFUSERS_FILE)).unwrap();
                    b[..8].copy_from_slice(&(1u64 << 62).to_le_bytes());
                    std::fs::write(c.join(DIFFUSERS_FILE), b).unwrap();
                }))
            },
            problem: "limit",
            fix: "re-download",
        },
        Case {
            name: "safetensors: header not JSON",
            setup: |d| {
                weights(weights_with(d, "vae", |c| {
                    let mut b = std::fs::read(c.join(DIFFUSERS_FILE)).unwrap();
                    b[8] = b'x';
                    std::fs::write(c.join(DIFFUSERS_FILE), b).unwrap();
                }))
            },
            problem: "not valid JSON",
            fix: "re-download",
        },
        Case {
            name: "safetensors: overlapping tensors",
            setup: |d| {
                weights(weights_with(d, "vae", |c| {
                    edit_header(&c.join(DIFFUSERS_FILE), |h| {
                        // Move a second tensor's bytes onto the first one's.
                        let (a, ea) = pick(h, 4);
                        let (b, mut eb) = h
                            .iter()
                            .find(|(k, _)| *k != "__metadata__" && **k != a)
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .unwrap();
                        let off = |e: &serde_json::Value, i: usize| {
                            e["data_offsets"][i].as_u64().unwrap()
                        };
                        let len = off(&eb, 1) - off(&eb, 0);
                        eb["data_offsets"] = serde_json::json!([off(&ea, 0), off(&ea, 0) + len]);
                        h.insert(b, eb);
                    })
                }))
            },
            problem: "overlap",
            fix: "re-save",
        },
        Case {
            name: "safetensors: offsets out of range",
            setup: |d| {
                weights(weights_with(d, "vae", |c| {
                    edit_header(&c.join(DIFFUSERS_FILE), |h| {
                        let (a, mut e) = pick(h, 4);
                        let len = e["data_offsets"][1].as_u64().unwrap()
                            - e["data_offsets"][0].as_u64().unwrap();
                        e["data_offsets"] = serde_json::json!([1u64 << 40, (1u64 << 40) + len]);
                        h.insert(a, e);
                    })
                }))
            },
            problem: "run past the end",
            fix: "re-download",
        },
        Case {
            name: "safetensors: begin after end",
            setup: |d| {
                weights(weights_with(d, "vae", |c| {
                    edit_header(&c.join(DIFFUSERS_FILE), |h| {
                        let (a, mut e) = pick(h, 4);
                        e["data_offsets"] = serde_json::json!([
                            e["data_offsets"][1].clone(),
                            e["data_offsets"][0].clone()
                        ]);
                        h.insert(a, e);
                    })
                }))
            },
            problem: "begin is after end",
            fix: "re-download",
        },
        Case {
            name: "safetensors: shape does not fit the bytes",
            setup: |d| {
                weights(weights_with(d, "vae", |c| {
                    edit_header(&c.join(DIFFUSERS_FILE), |h| {
                        let (a, mut e) = pick(h, 4);
                        e["shape"][0] = (e["shape"][0].as_u64().unwrap() * 2).into();
                        h.insert(a, e);
                    })
                }))
            },
            problem: "needs",
            fix: "re-save",
        },
        Case {
            name: "safetensors: shape overflows usize",
            setup: |d| {
                weights(weights_with(d, "vae", |c| {
                    edit_header(&c.join(DIFFUSERS_FILE), |h| {
                        let (a, mut e) = pick(h, 4);
                        e["shape"] = serde_json::json!([u64::MAX / 2, 4, 4]);
                        h.insert(a, e);
                    })
                }))
            },
            problem: "overflows",
            fix: "re-save",
        },
        Case {
            name: "safetensors: wrong shape (transposed)",
            setup: |d| {
                weights(weights_with(d, "vae", |c| {
                    edit_header(&c.join(DIFFUSERS_FILE), |h| {
                        let (a, mut e) = pick(h, 4);
                        let s0 = e["shape"][0].clone();
                        e["shape"][0] = e["shape"][1].clone();
                        e["shape"][1] = s0;
                        h.insert(a, e);
                    })
                }))
            },
            problem: "does not match",
            fix: "fix the tensors",
        },
        Case {
            name: "safetensors: integer dtype (I32)",
            setup: |d| {
                weights(weights_with(d, "vae", |c| {
                    edit_header(&c.join(DIFFUSERS_FILE), |h| {
                        let (a, mut e) = pick(h, 4);
                        assert_eq!(e["dtype"], "F32", "make-weights writes F32");
                        e["dtype"] = "I32".into();
                        h.insert(a, e);
                    })
                }))
            },
            problem: "dtype I32",
            fix: "fix the tensors",
        },
        Case {
            name: "safetensors: unknown dtype",
            setup: |d| {
                weights(weights_with(d, "vae", |c| {
                    edit_header(&c.join(DIFFUSERS_FILE), |h| {
                        let (a, mut e) = pick(h, 4);
                        e["dtype"] = "F128".into();
                        h.insert(a, e);
                    })
                }))
            },
            problem: "F128",
            fix: "re-save",
        },
        Case {
            name: "safetensors: missing data_offsets",
            setup: |d| {
                weights(weights_with(d, "vae", |c| {
                    edit_header(&c.join(DIFFUSERS_FILE), |h| {
                        let (a, mut e) = pick(h, 4);
                        e.as_object_mut().unwrap().remove("data_offsets");
                        h.insert(a, e);
                    })
                }))
            },
            problem: "data_offsets",
            fix: "re-download",
        },
        Case {
            name: "safetensors: NaN weight",
            setup: |d| {
                weights(weights_with(d, "vae", |c| {
                    poison(&c.join(DIFFUSERS_FILE), f32::NAN)
                }))
            },
            problem: "NaN or infinite",
            fix: "re-export",
        },
        Case {
            name: "safetensors: +Inf weight",
            setup: |d| {
                weights(weights_with(d, "denoising_unet", |c| {
                    poison(&c.join(DIFFUSERS_FILE), f32::INFINITY)
                }))
            },
            problem: "NaN or infinite",
            fix: "re-export",
        },
        // ---------------- sharded index
        Case {
            name: "index: names a missing shard",
            setup: |d| {
                weights(weights_with(d, "vae", |c| {
                    shard(
                        c,
                        DIFFUSERS_FILE,
                        "s-00001-of-00001.safetensors",
                        "gone-00001-of-00001.safetensors",
                    )
                }))
            },
            problem: "does not exist",
            fix: "gone-00001",
        },
        Case {
            name: "index: shard outside the folder",
            setup: |d| {
                weights(weights_with(d, "vae", |c| {
                    shard(c, DIFFUSERS_FILE, "s.safetensors", "../vae/s.safetensors")
                }))
            },
            problem: "not a file name",
            fix: "fix the weight_map",
        },
        Case {
            name: "index: not JSON",
            setup: |d| {
                weights(weights_with(d, "vae", |c| {
                    shard(c, DIFFUSERS_FILE, "s.safetensors", "s.safetensors");
                    std::fs::write(
                        c.join(format!("{DIFFUSERS_FILE}.index.json")),
                        "{\"weight_map\": ",
                    )
                    .unwrap();
                }))
            },
            problem: "not valid JSON",
            fix: "index",
        },
        Case {
            name: "index: no weight_map",
            setup: |d| {
                weights(weights_with(d, "vae", |c| {
                    shard(c, DIFFUSERS_FILE, "s.safetensors", "s.safetensors");
                    std::fs::write(
                        c.join(format!("{DIFFUSERS_FILE}.index.json")),
                        "{\"metadata\": {}}",
                    )
                    .unwrap();
                }))
            },
            problem: "weight_map",
            fix: "index",
        },
    ]
}

/// Run one case; `Err` says what is wrong.
fn check(case: &Case, dir: &Path) -> Result<(), String> {
    let mut args = (case.setup)(dir);
    let out = dir.join("out.mp4");
    let frames = dir.join("frames");
    let mut cmd = bin();
    cmd.env_remove("CYBERHOST_MAX_AUDIO_SECONDS");
    args.retain(
        |a| match a.strip_prefix("env:").and_then(|kv| kv.split_once('=')) {
            Some((k, v)) => {
                cmd.env(k, v);
                false
            }
            None => true,
        },
    );
    let o: Output = cmd
        .arg("generate")
        .args(&args)
        .args(["--steps", "1", "--out"])
        .arg(&out)
        .arg("--frames")
        .arg(&frames)
        .output()
        .map_err(|e| format!("cannot run cyberhost: {e}"))?;
    let err = String::from_utf8_lossy(&o.stderr);
    let low = err.to_lowercase();
    let mut why = Vec::new();
    if o.status.code() != Some(2) {
        why.push(format!("exit {:?}, not 2", o.status.code()));
    }
    if low.contains("panicked") {
        why.push("panicked".into());
    }
    for (what, needle) in [("problem", case.problem), ("fix", case.fix)] {
        if !low.contains(&needle.to_lowercase()) {
            why.push(format!("message does not name the {what} (`{needle}`)"));
        }
    }
    if out.exists() || frames.exists() {
        why.push("an output was written".into());
    }
    let temps: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".cyberhost"))
        .collect();
    if !temps.is_empty() {
        why.push(format!("temporaries left: {temps:?}"));
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n    stderr: {}", why.join("; "), err.trim()))
    }
}

#[test]
fn every_bad_input_exits_2_naming_the_problem_and_the_fix_with_no_output() {
    let table = cases();
    assert!(table.len() >= 40, "the table must hold at least 40 cases");
    let mut failures = Vec::new();
    for case in &table {
        let dir = tempfile::tempdir().unwrap();
        if let Err(e) = check(case, dir.path()) {
            failures.push(format!("{}: {e}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad-input cases failed:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );
}

#[test]
fn case_names_are_unique() {
    let table = cases();
    let mut names: Vec<_> = table.iter().map(|c| c.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), table.len());
}
