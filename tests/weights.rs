//! Checkpoint loading: safetensors round trips, shards, weight-norm spellings, malformed
//! inputs (each error names the file / tensor), validation and `VarBuilder`.
//!
//! Fixtures are generated into temp dirs by the tests themselves.
//! Run: `cargo test --test weights`

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use cyberhost_engine::backends::cpu::CpuBackend;
use cyberhost_engine::backends::Backend;
use cyberhost_engine::var_builder::VarBuilder;
use cyberhost_weights::{
    inspect, inspect_path, weight_norm, write_safetensors, write_sharded_safetensors, Checkpoint,
    DType, ValidationError, WriteTensor,
};

// ---- helpers -----------------------------------------------------------------------------

/// Seeded uniform values in [-1, 1) (xorshift64*), never all zero.
fn randn(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            let r = s.wrapping_mul(0x2545_F491_4F6C_DD1D);
            ((r >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

/// A named f32 tensor owned by a test.
struct T {
    name: String,
    shape: Vec<usize>,
    data: Vec<f32>,
}

fn t(name: &str, shape: &[usize], seed: u64) -> T {
    let n = shape.iter().product();
    T {
        name: name.to_string(),
        shape: shape.to_vec(),
        data: randn(seed, n),
    }
}

fn views(ts: &[T], dtype: DType) -> Vec<WriteTensor<'_>> {
    ts.iter()
        .map(|x| WriteTensor::new(&x.name, dtype, &x.shape, &x.data))
        .collect()
}

/// The values a dtype stores for `x` (what reading back must give exactly).
fn quantise(x: &[f32], dtype: DType) -> Vec<f32> {
    match dtype {
        DType::F32 => x.to_vec(),
        DType::F16 => x.iter().map(|v| half::f16::from_f32(*v).to_f32()).collect(),
        DType::BF16 => x
            .iter()
            .map(|v| half::bf16::from_f32(*v).to_f32())
            .collect(),
        _ => unreachable!(),
    }
}

/// `json` as `config.json` of folder `dir` (created if missing).
fn write_config(dir: &Path, json: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), json).unwrap();
}

/// A checkpoint folder: config.json + model.safetensors holding `ts` as `dtype`.
fn make_ckpt(dir: &Path, ts: &[T], dtype: DType) -> PathBuf {
    write_config(dir, r#"{"_class_name": "Test", "hidden_size": 8}"#);
    write_safetensors(
        dir.join("model.safetensors"),
        &views(ts, dtype),
        &BTreeMap::new(),
    )
    .unwrap();
    dir.to_path_buf()
}

/// Raw safetensors bytes from a header JSON text and a data section.
fn raw_safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(data);
    v
}

fn err_text<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

/// [`make_ckpt`] in a fresh temporary folder (kept alive by the returned guard).
fn tmp_ckpt(name: &str, ts: &[T], dtype: DType) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = make_ckpt(&tmp.path().join(name), ts, dtype);
    (tmp, dir)
}

/// Asserts that `r` fails with an error naming every one of `needles`.
fn err_naming<T>(r: anyhow::Result<T>, needles: &[&str]) {
    let e = err_text(r);
    for n in needles {
        assert!(e.contains(n), "error lacks {n:?}: {e}");
    }
}

/// Asserts that opening the checkpoint at `dir` fails naming every one of `needles`.
fn open_fails(dir: &std::path::Path, needles: &[&str]) {
    err_naming(Checkpoint::open(dir), needles)
}

fn sample_tensors() -> Vec<T> {
    vec![
        t("conv_in.weight", &[8, 3, 3, 3], 1),
        t("conv_in.bias", &[8], 2),
        t("down_blocks.0.resnets.0.norm1.weight", &[8], 3),
        t("down_blocks.0.resnets.0.conv1.weight", &[8, 8, 3, 3], 4),
        t("scalar", &[], 5),
        t("odd", &[3, 5, 7], 6),
    ]
}

// ---- round trips ---------------------------------------------------------------------------

#[test]
fn round_trip_each_dtype() {
    let tmp = tempfile::tempdir().unwrap();
    let ts = sample_tensors();
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let dir = make_ckpt(&tmp.path().join(dtype.as_str()), &ts, dtype);
        let ck = Checkpoint::open(&dir).unwrap();
        assert_eq!(ck.config()["hidden_size"], 8);
        assert_eq!(ck.config_path().unwrap(), dir.join("config.json"));
        assert_eq!(ck.len(), ts.len());
        assert_eq!(
            ck.param_count(),
            ts.iter().map(|x| x.data.len()).sum::<usize>()
        );
        for x in &ts {
            let v = ck
                .get(&x.name)
                .unwrap_or_else(|| panic!("{} missing", x.name));
            assert_eq!(v.dtype, dtype);
            assert_eq!(v.shape, x.shape.as_slice());
            assert_eq!(v.bytes.len(), x.data.len() * dtype.size_in_bytes());
            let got = v.to_f32().unwrap();
            assert_eq!(got, quantise(&x.data, dtype), "{} as {dtype}", x.name);
            if dtype != DType::F32 {
                let e = rel_l2(&got, &x.data);
                let tol = if dtype == DType::F16 { 1e-3 } else { 8e-3 };
                assert!(e > 0.0 && e < tol, "{} {dtype}: rel err {e}", x.name);
            }
        }
        // tensors() is sorted by name and lists (name, dtype, shape).
        let names: Vec<&str> = ck.tensors().map(|v| v.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert!(ck.get("nope").is_none());
        assert!(!ck.contains("nope"));
    }
}

#[test]
fn mixed_dtypes_metadata_and_bare_file() {
    let tmp = tempfile::tempdir().unwrap();
    let a = t("a", &[3], 1); // odd-length f16 before f32 data: alignment must still hold
    let b = t("b", &[5, 2], 2);
    let c = t("c", &[7], 3);
    let meta: BTreeMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    let path = tmp.path().join("mixed.safetensors");
    write_safetensors(
        &path,
        &[
            WriteTensor::new("a", DType::F16, &a.shape, &a.data),
            WriteTensor::new("b", DType::F32, &b.shape, &b.data),
            WriteTensor::new("c", DType::BF16, &c.shape, &c.data),
        ],
        &meta,
    )
    .unwrap();
    // A bare file opens too, with no config.
    let ck = Checkpoint::open(&path).unwrap();
    assert!(ck.config().is_null() && ck.config_path().is_none());
    assert_eq!(ck.files()[0].metadata(), &meta);
    assert_eq!(
        ck.get("a").unwrap().to_f32().unwrap(),
        quantise(&a.data, DType::F16)
    );
    assert_eq!(ck.get("b").unwrap().to_f32().unwrap(), b.data);
    assert_eq!(
        ck.get("c").unwrap().to_f32().unwrap(),
        quantise(&c.data, DType::BF16)
    );
    // No temp files are left behind.
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

#[test]
fn diffusers_names_and_scheduler_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vae");
    write_config(&dir, r#"{"_class_name": "AutoencoderKL"}"#);
    let x = t("decoder.conv_out.weight", &[3, 4, 3, 3], 9);
    write_safetensors(
        dir.join("diffusion_pytorch_model.safetensors"),
        &views(std::slice::from_ref(&x), DType::F32),
        &BTreeMap::new(),
    )
    .unwrap();
    let ck = Checkpoint::open(&dir).unwrap();
    assert_eq!(
        ck.get("decoder.conv_out.weight").unwrap().to_f32().unwrap(),
        x.data
    );

    let sched = tmp.path().join("scheduler");
    std::fs::create_dir_all(&sched).unwrap();
    std::fs::write(
        sched.join("scheduler_config.json"),
        r#"{"num_train_timesteps": 1000}"#,
    )
    .unwrap();
    let ck = Checkpoint::open(&sched).unwrap();
    assert_eq!(ck.config()["num_train_timesteps"], 1000);
    assert!(ck.is_empty());
}

#[test]
fn sharded_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("unet");
    write_config(&dir, r#"{"_class_name": "UNet2DConditionModel"}"#);
    let ts = sample_tensors();
    // ~1 KiB per shard forces several shards.
    let written = write_sharded_safetensors(
        &dir,
        "diffusion_pytorch_model",
        &views(&ts, DType::BF16),
        1024,
    )
    .unwrap();
    assert!(written.len() >= 4, "{written:?}");
    let index = dir.join("diffusion_pytorch_model.safetensors.index.json");
    assert_eq!(written.last().unwrap(), &index);
    let ck = Checkpoint::open(&dir).unwrap();
    assert_eq!(ck.index_path(), Some(index.as_path()));
    assert_eq!(ck.files().len(), written.len() - 1);
    assert_eq!(ck.len(), ts.len());
    for x in &ts {
        assert_eq!(
            ck.get(&x.name).unwrap().to_f32().unwrap(),
            quantise(&x.data, DType::BF16)
        );
    }
    let idx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&index).unwrap()).unwrap();
    assert_eq!(idx["weight_map"].as_object().unwrap().len(), ts.len());
    assert_eq!(idx["metadata"]["total_size"], ck.data_bytes());
}

// ---- weight norm ---------------------------------------------------------------------------

/// Reference: w[i] = g[idx_dim(i)] * v[i] / sqrt(sum of v² over all j with idx_dim(j) == idx_dim(i)).
fn weight_norm_naive(g: &[f32], v: &[f32], shape: &[usize], dim: usize) -> Vec<f32> {
    let strides: Vec<usize> = (0..shape.len())
        .map(|d| shape[d + 1..].iter().product())
        .collect();
    let idx = |i: usize| (i / strides[dim]) % shape[dim];
    let mut norms = vec![0f64; shape[dim]];
    for (i, x) in v.iter().enumerate() {
        norms[idx(i)] += (*x as f64) * (*x as f64);
    }
    v.iter()
        .enumerate()
        .map(|(i, x)| (g[idx(i)] as f64 * *x as f64 / norms[idx(i)].sqrt()) as f32)
        .collect()
}

#[test]
fn weight_norm_matches_reference_on_every_dim() {
    let shape = [6, 4, 5];
    let v = randn(11, 120);
    for dim in 0..3 {
        let g = randn(12 + dim as u64, shape[dim]);
        let w = weight_norm(&g, &v, &shape, dim).unwrap();
        let r = weight_norm_naive(&g, &v, &shape, dim);
        assert!(rel_l2(&w, &r) < 1e-6, "dim {dim}");
        assert!(
            rel_l2(&w, &v) > 1e-2,
            "dim {dim}: weight norm must change v"
        );
    }
    assert!(err_text(weight_norm(&[1.0; 3], &v, &shape, 2)).contains("(1, 1, 5)"));
    assert!(err_text(weight_norm(&[1.0; 3], &v, &shape, 3)).contains("out of range"));
}

#[test]
fn weight_norm_both_spellings() {
    let tmp = tempfile::tempdir().unwrap();
    // wav2vec2's positional conv: weight (C, C/groups, K), normalised along dim 2.
    let shape = [8usize, 4, 5];
    let g_shape = [1usize, 1, 5];
    let g = t("g", &g_shape, 21);
    let v = t("v", &shape, 22);
    let expected = weight_norm_naive(&g.data, &v.data, &shape, 2);
    let p = "encoder.pos_conv_embed.conv";
    let spellings = [
        (format!("{p}.weight_g"), format!("{p}.weight_v")),
        (
            format!("{p}.parametrizations.weight.original0"),
            format!("{p}.parametrizations.weight.original1"),
        ),
    ];
    for (i, (gn, vn)) in spellings.iter().enumerate() {
        let dir = tmp.path().join(format!("s{i}"));
        let bias = t(&format!("{p}.bias"), &[8], 23);
        let ts = vec![
            T {
                name: gn.clone(),
                shape: g_shape.to_vec(),
                data: g.data.clone(),
            },
            T {
                name: vn.clone(),
                shape: shape.to_vec(),
                data: v.data.clone(),
            },
            bias,
        ];
        make_ckpt(&dir, &ts, DType::F32);
        let ck = Checkpoint::open(&dir).unwrap();
        // Canonical names are weight_g / weight_v; both spellings find them.
        let names: Vec<&str> = ck.names().collect();
        assert_eq!(
            names,
            vec![
                "encoder.pos_conv_embed.conv.bias",
                "encoder.pos_conv_embed.conv.weight_g",
                "encoder.pos_conv_embed.conv.weight_v",
            ]
        );
        for alias in [&spellings[0].0, &spellings[1].0] {
            assert_eq!(ck.get(alias).unwrap().to_f32().unwrap(), g.data);
        }
        let vb = VarBuilder::open(CpuBackend, &dir).unwrap();
        let w = vb
            .pp("encoder")
            .get_weight_norm("pos_conv_embed.conv", &shape, 2)
            .unwrap();
        let w = CpuBackend.to_f32(&w).unwrap();
        assert!(rel_l2(&w, &expected) < 1e-6, "spelling {i}");
        vb.pp(p).get("bias", &[8]).unwrap();
        vb.finish().unwrap();
    }

    // A plainly stored weight is used as is.
    let dir = tmp.path().join("plain");
    make_ckpt(
        &dir,
        &[T {
            name: format!("{p}.weight"),
            shape: shape.to_vec(),
            data: v.data.clone(),
        }],
        DType::F32,
    );
    let vb = VarBuilder::open(CpuBackend, &dir).unwrap();
    let w = CpuBackend
        .to_f32(&vb.get_weight_norm(p, &shape, 2).unwrap())
        .unwrap();
    assert_eq!(w, v.data);
    vb.finish().unwrap();

    // Neither spelling: both halves reported missing, with g's expected shape.
    let dir = tmp.path().join("none");
    make_ckpt(&dir, &[t("other", &[2], 1)], DType::F32);
    let vb = VarBuilder::open(CpuBackend, &dir).unwrap();
    vb.get_weight_norm(p, &shape, 2).unwrap();
    let e = vb.finish().unwrap_err().to_string();
    assert!(
        e.contains(&format!("{p}.weight_g")) && e.contains("(1, 1, 5)"),
        "{e}"
    );
    assert!(
        e.contains(&format!("{p}.weight_v")) && e.contains("(8, 4, 5)"),
        "{e}"
    );
}

#[test]
fn both_weight_norm_spellings_at_once_is_an_error() {
    let ts = vec![
        t("m.weight_g", &[1, 3], 1),
        t("m.parametrizations.weight.original0", &[1, 3], 2),
    ];
    let (_tmp, dir) = tmp_ckpt("dup", &ts, DType::F32);
    open_fails(&dir, &["m.weight_g", "m.parametrizations.weight.original0"]);
}

// ---- malformed input -----------------------------------------------------------------------

#[test]
fn missing_dir_config_and_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let nowhere = tmp.path().join("nowhere");
    open_fails(&nowhere, &["nowhere", "does not exist"]);

    let dir = tmp.path().join("noconfig");
    std::fs::create_dir_all(&dir).unwrap();
    write_safetensors(
        dir.join("model.safetensors"),
        &views(&[t("a", &[2], 1)], DType::F32),
        &BTreeMap::new(),
    )
    .unwrap();
    open_fails(&dir, &["config.json", "noconfig"]);

    let dir = tmp.path().join("badconfig");
    write_config(&dir, "{not json");
    open_fails(&dir, &["config.json", "not valid JSON"]);

    let dir = tmp.path().join("noweights");
    write_config(&dir, "{}");
    std::fs::write(dir.join("pytorch_model.bin"), b"x").unwrap();
    open_fails(&dir, &["noweights", "model.safetensors", ".bin"]);
}

/// Write `bytes` as `model.safetensors` of a folder with a config; return (dir, file).
fn ckpt_with_raw(root: &Path, name: &str, bytes: &[u8]) -> (PathBuf, PathBuf) {
    let dir = root.join(name);
    write_config(&dir, "{}");
    let file = dir.join("model.safetensors");
    std::fs::write(&file, bytes).unwrap();
    (dir, file)
}

#[test]
fn malformed_safetensors_files() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data: Vec<u8> = randn(3, 6).iter().flat_map(|x| x.to_le_bytes()).collect();
    let good = r#"{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}"#;

    // Baseline: the hand-made file is valid.
    let (dir, _) = ckpt_with_raw(root, "good", &raw_safetensors(good, &data));
    assert_eq!(
        Checkpoint::open(&dir).unwrap().get("w").unwrap().shape,
        &[2, 3]
    );

    // Files whose bytes are off as a whole, then hand-made headers over `data`.
    let raw: [(&str, Vec<u8>, &[&str]); 3] = [
        ("tiny", vec![1, 2, 3], &["truncated", "3 bytes"]),
        (
            "truncated_data",
            raw_safetensors(good, &data[..20]),
            &["'w'", "truncated"],
        ),
        (
            "header_too_long",
            {
                let mut b = raw_safetensors(good, &data);
                b[..8].copy_from_slice(&10_000u64.to_le_bytes());
                b
            },
            &["header length", "10000"],
        ),
    ];
    let headers: [(&str, &str, &[&str]); 8] = [
        (
            "bad_json",
            r#"{"w": {"dtype": "F32", "shape"#,
            &["not valid JSON"],
        ),
        (
            "offsets_out_of_range",
            r#"{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[24,48]}}"#,
            &["'w'", "[24, 48]"],
        ),
        (
            "offsets_reversed",
            r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}"#,
            &["'w'", "begin is after end"],
        ),
        (
            "size_mismatch",
            r#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,24]}}"#,
            &["'w'", "(2, 2)", "16 bytes"],
        ),
        (
            "overlap",
            r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#,
            &["'a'", "'b'", "overlap"],
        ),
        (
            "unknown_dtype",
            r#"{"w":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}}"#,
            &["'w'", "'F4'"],
        ),
        (
            "no_shape",
            r#"{"w":{"dtype":"F32","data_offsets":[0,24]}}"#,
            &["'w'", "shape"],
        ),
        ("not_object", "[1, 2]", &["JSON object"]),
    ];
    let headers =
        headers.map(|(name, header, needles)| (name, raw_safetensors(header, &data), needles));
    for (name, bytes, needles) in raw.into_iter().chain(headers) {
        let (dir, file) = ckpt_with_raw(root, name, &bytes);
        let e = err_text(Checkpoint::open(&dir));
        assert!(
            e.contains(&file.display().to_string()),
            "{name}: error does not name the file: {e}"
        );
        for &n in needles {
            assert!(e.contains(n), "{name}: error lacks {n:?}: {e}");
        }
    }
}

#[test]
fn unsupported_dtype_is_listed_but_not_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    let ids: Vec<u8> = (0..4i64).flat_map(|x| x.to_le_bytes()).collect();
    let mut data: Vec<u8> = randn(4, 2).iter().flat_map(|x| x.to_le_bytes()).collect();
    data.extend_from_slice(&ids);
    let header = r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"position_ids":{"dtype":"I64","shape":[1,4],"data_offsets":[8,40]}}"#;
    let (dir, file) = ckpt_with_raw(tmp.path(), "ints", &raw_safetensors(header, &data));
    let ck = Checkpoint::open(&dir).unwrap();
    let v = ck.get("position_ids").unwrap();
    assert_eq!(v.dtype, DType::I64);
    err_naming(
        v.to_f32(),
        &["position_ids", "I64", &file.display().to_string()],
    );
    assert!(inspect(&ck).contains("position_ids"));

    // Through validation and VarBuilder it is reported as unreadable, with the rest.
    let e = ck
        .validate([("w", vec![2]), ("position_ids", vec![1, 4])])
        .unwrap_err();
    assert_eq!(e.unreadable.len(), 1);
    assert!(e.to_string().contains("position_ids"), "{e}");
    let vb = VarBuilder::open(CpuBackend, &dir).unwrap();
    vb.get("w", &[2]).unwrap();
    let z = vb.get("position_ids", &[1, 4]).unwrap();
    assert_eq!(CpuBackend.to_f32(&z).unwrap(), vec![0.0; 4]);
    let e = vb.finish().unwrap_err();
    assert_eq!((e.unreadable.len(), e.len()), (1, 1), "{e}");
    assert!(e.to_string().contains("I64"), "{e}");
}

#[test]
fn broken_shard_indexes() {
    let tmp = tempfile::tempdir().unwrap();
    let ts = sample_tensors();
    let fresh = |name: &str| {
        let dir = tmp.path().join(name);
        write_config(&dir, "{}");
        write_sharded_safetensors(&dir, "model", &views(&ts, DType::F32), 512).unwrap();
        dir
    };

    // An index naming a shard that is not there.
    let dir = fresh("missing_shard");
    let shard = dir.join("model-00002-of-00004.safetensors");
    assert!(shard.exists(), "fixture layout changed");
    std::fs::remove_file(&shard).unwrap();
    open_fails(
        &dir,
        &[
            "model.safetensors.index.json",
            "model-00002-of-00004.safetensors",
            "does not exist",
        ],
    );

    // An index placing a tensor in a shard that does not hold it.
    let dir = fresh("wrong_shard");
    let index = dir.join("model.safetensors.index.json");
    let mut idx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&index).unwrap()).unwrap();
    idx["weight_map"]["ghost.weight"] = "model-00001-of-00004.safetensors".into();
    std::fs::write(&index, idx.to_string()).unwrap();
    open_fails(&dir, &["ghost.weight", "model-00001-of-00004.safetensors"]);

    // An index that is not JSON, and one without weight_map.
    let dir = fresh("bad_index");
    let index = dir.join("model.safetensors.index.json");
    std::fs::write(&index, "{oops").unwrap();
    open_fails(&dir, &["model.safetensors.index.json", "JSON"]);
    std::fs::write(&index, r#"{"metadata": {}}"#).unwrap();
    open_fails(&dir, &["weight_map"]);

    // A corrupt shard is reported with its own path.
    let dir = fresh("corrupt_shard");
    let shard = dir.join("model-00003-of-00004.safetensors");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() - 4]).unwrap();
    open_fails(&dir, &["model-00003-of-00004.safetensors", "truncated"]);
}

#[test]
fn writer_rejects_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("x.safetensors");
    let d = randn(1, 6);
    err_naming(
        write_safetensors(
            &p,
            &[WriteTensor::new("a", DType::F32, &[2, 2], &d)],
            &BTreeMap::new(),
        ),
        &["'a'", "(2, 2)", "6 values"],
    );
    err_naming(
        write_safetensors(
            &p,
            &[WriteTensor::new("a", DType::I32, &[6], &d)],
            &BTreeMap::new(),
        ),
        &["'a'", "I32"],
    );
    let two = [
        WriteTensor::new("a", DType::F32, &[6], &d),
        WriteTensor::new("a", DType::F16, &[6], &d),
    ];
    assert!(err_text(write_safetensors(&p, &two, &BTreeMap::new())).contains("twice"));
    assert!(!p.exists());
}

// ---- validation ----------------------------------------------------------------------------

#[test]
fn validation_lists_every_problem() {
    let ts = vec![
        t("conv_in.weight", &[8, 4, 3, 3], 1),
        t("conv_in.bias", &[8], 2),
        t("conv_out.bias", &[8], 3),        // expected (4,)
        t("time_proj.weight", &[16, 8], 4), // expected (16, 4)
        t("extra.weight", &[3], 5),
        t("extra.bias", &[3], 6),
    ];
    let (_tmp, dir) = tmp_ckpt("unet", &ts, DType::F16);
    let ck = Checkpoint::open(&dir).unwrap();
    let expected = vec![
        ("conv_in.weight", vec![8, 4, 3, 3]),
        ("conv_in.bias", vec![8]),
        ("conv_out.weight", vec![4, 8, 3, 3]),
        ("conv_out.bias", vec![4]),
        ("time_proj.weight", vec![16, 4]),
        ("mid_block.norm.weight", vec![8]),
    ];
    let check = |e: &ValidationError| {
        assert_eq!(
            e.missing,
            vec![
                ("conv_out.weight".to_string(), vec![4, 8, 3, 3]),
                ("mid_block.norm.weight".to_string(), vec![8]),
            ]
        );
        let mis: Vec<_> = e
            .mismatched
            .iter()
            .map(|m| (m.name.as_str(), m.expected.clone(), m.found.clone()))
            .collect();
        assert_eq!(
            mis,
            vec![
                ("conv_out.bias", vec![4], vec![8]),
                ("time_proj.weight", vec![16, 4], vec![16, 8])
            ]
        );
        assert_eq!(
            e.unexpected,
            vec![
                ("extra.bias".to_string(), vec![3]),
                ("extra.weight".to_string(), vec![3])
            ]
        );
        let s = e.to_string();
        assert!(s.contains(&dir.display().to_string()), "{s}");
        assert!(s.contains("2 missing, 2 mis-shaped, 2 unexpected"), "{s}");
        for needle in [
            "conv_out.weight",
            "expected (4, 8, 3, 3)",
            "mid_block.norm.weight",
            "expected (4,) found (8,)",
            "expected (16, 4) found (16, 8)",
            "extra.weight",
            "extra.bias",
        ] {
            assert!(s.contains(needle), "missing {needle:?} in:\n{s}");
        }
        assert_eq!(s.lines().count(), 7, "{s}");
    };
    check(&ck.validate(expected.clone()).unwrap_err());

    // The same through VarBuilder: every get returns a tensor of the requested shape.
    let vb = VarBuilder::open(CpuBackend, &dir).unwrap();
    for (name, shape) in &expected {
        let x = vb.get(name, shape).unwrap();
        assert_eq!(
            cyberhost_engine::backends::TensorLike::shape(&x),
            shape.as_slice()
        );
    }
    let e = vb.finish().unwrap_err();
    check(&e);
    // As an anyhow error (what `load` functions return) it keeps the full text.
    let any: anyhow::Error = e.clone().into();
    assert_eq!(format!("{any}"), e.to_string());

    // A complete request passes.
    let all: Vec<(String, Vec<usize>)> = ts
        .iter()
        .map(|x| (x.name.clone(), x.shape.clone()))
        .collect();
    ck.validate(all).unwrap();
}

// ---- VarBuilder ----------------------------------------------------------------------------

#[test]
fn var_builder_prefixes_values_and_shared_log() {
    let ts = sample_tensors();
    let (_tmp, dir) = tmp_ckpt("m", &ts, DType::BF16);
    let vb = VarBuilder::open(CpuBackend, &dir).unwrap();
    assert_eq!(vb.config()["_class_name"], "Test");
    assert!(vb.checkpoint().is_some());

    let res = vb.pp("down_blocks").pp(0).pp("resnets").pp(0);
    assert_eq!(res.prefix(), "down_blocks.0.resnets.0");
    assert_eq!(
        res.full_name("conv1.weight"),
        "down_blocks.0.resnets.0.conv1.weight"
    );
    assert!(res.contains("conv1.weight") && !res.contains("conv2.weight"));
    assert_eq!(res.shape_of("norm1.weight"), Some(vec![8]));
    let w = res.pp("conv1").get("weight", &[8, 8, 3, 3]).unwrap();
    let want = quantise(&ts[3].data, DType::BF16);
    assert_eq!(CpuBackend.to_f32(&w).unwrap(), want);
    assert_eq!(
        res.get_f32("norm1.weight", &[8]).unwrap(),
        quantise(&ts[2].data, DType::BF16)
    );
    assert!(res.get_opt("norm2.weight", &[8]).unwrap().is_none());

    // Not finished yet: the others are unexpected; a clone shares the log.
    let e = vb.clone().finish().unwrap_err();
    assert_eq!(e.unexpected.len(), 4, "{e}");
    assert!(e.missing.is_empty() && e.mismatched.is_empty());
    let c = vb.pp("conv_in");
    c.get("weight", &[8, 3, 3, 3]).unwrap();
    // A mis-shaped optional tensor is still reported, and replaced by zeros.
    let z = c.get_opt("bias", &[9]).unwrap().unwrap();
    assert_eq!(CpuBackend.to_f32(&z).unwrap(), vec![0.0; 9]);
    vb.skip("scalar");
    vb.pp("odd").skip_all();
    let e = vb.finish().unwrap_err();
    assert_eq!(e.len(), 1, "{e}");
    assert_eq!(e.mismatched[0].name, "conv_in.bias");

    // skip_all at the root silences unexpected tensors, never recorded problems.
    let vb2 = VarBuilder::open(CpuBackend, &dir).unwrap();
    vb2.skip_all();
    vb2.finish().unwrap();
    vb2.get("absent", &[1]).unwrap();
    assert_eq!(vb2.finish().unwrap_err().missing.len(), 1);
}

#[test]
fn var_builder_from_tensors() {
    let mut m = HashMap::new();
    m.insert("proj.weight".to_string(), (vec![4, 3], randn(1, 12)));
    m.insert("proj.bias".to_string(), (vec![4], randn(2, 4)));
    m.insert(
        "wn.parametrizations.weight.original0".to_string(),
        (vec![4, 1], randn(3, 4)),
    );
    m.insert(
        "wn.parametrizations.weight.original1".to_string(),
        (vec![4, 6], randn(4, 24)),
    );
    let cfg = serde_json::json!({"hidden_size": 4});
    let vb = VarBuilder::from_tensors_with_config(CpuBackend, m.clone(), cfg).unwrap();
    assert_eq!(vb.config()["hidden_size"], 4);
    assert!(vb.checkpoint().is_none());
    let p = vb.pp("proj");
    assert_eq!(
        CpuBackend
            .to_f32(&p.get("weight", &[4, 3]).unwrap())
            .unwrap(),
        m["proj.weight"].1
    );
    assert_eq!(
        CpuBackend.to_f32(&p.get("bias", &[4]).unwrap()).unwrap(),
        m["proj.bias"].1
    );
    let w = vb.get_weight_norm_f32("wn", &[4, 6], 0).unwrap();
    let r = weight_norm_naive(
        &m["wn.parametrizations.weight.original0"].1,
        &m["wn.parametrizations.weight.original1"].1,
        &[4, 6],
        0,
    );
    assert!(rel_l2(&w, &r) < 1e-6);
    vb.finish().unwrap();

    let mut bad = HashMap::new();
    bad.insert("x".to_string(), (vec![2, 2], vec![1.0; 3]));
    err_naming(
        VarBuilder::from_tensors(CpuBackend, bad),
        &["'x'", "(2, 2)"],
    );
}

// ---- inspect -------------------------------------------------------------------------------

#[test]
fn inspect_text() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pipe");
    let ts = sample_tensors();
    let unet = make_ckpt(&root.join("unet"), &ts, DType::F16);
    let sched = root.join("scheduler");
    std::fs::create_dir_all(&sched).unwrap();
    std::fs::write(sched.join("scheduler_config.json"), "{}").unwrap();
    std::fs::write(
        root.join("model_index.json"),
        r#"{"_class_name": "CyberHostPipeline"}"#,
    )
    .unwrap();

    let ck = Checkpoint::open(&unet).unwrap();
    let s = inspect(&ck);
    for x in &ts {
        let line = s
            .lines()
            .find(|l| l.split_whitespace().next() == Some(x.name.as_str()));
        let line = line.unwrap_or_else(|| panic!("no line for {} in\n{s}", x.name));
        assert!(
            line.contains("F16") && line.contains(&cyberhost_weights::fmt_shape(&x.shape)),
            "{line}"
        );
    }
    let total: usize = ts.iter().map(|x| x.data.len()).sum();
    assert!(
        s.contains(&format!("{total} parameters"))
            || s.contains(&cyberhost_weights::inspect::group_thousands(total)),
        "{s}"
    );
    assert!(
        s.contains("model.safetensors") && s.contains("config.json (Test)"),
        "{s}"
    );

    let p = inspect_path(&root).unwrap();
    assert!(
        p.contains("unet") && p.contains("scheduler_config.json") && p.contains("pipeline total"),
        "{p}"
    );
    assert_eq!(inspect_path(&unet).unwrap(), s);
}

#[test]
fn canonical_names() {
    use cyberhost_weights::canonical_name;
    assert_eq!(
        canonical_name("a.b.parametrizations.weight.original0"),
        "a.b.weight_g"
    );
    assert_eq!(
        canonical_name("a.b.parametrizations.weight.original1"),
        "a.b.weight_v"
    );
    assert_eq!(
        canonical_name("parametrizations.weight.original0"),
        "weight_g"
    );
    assert_eq!(
        canonical_name("parametrizations.weight.original1"),
        "weight_v"
    );
    assert_eq!(canonical_name("a.weight"), "a.weight");
    assert_eq!(
        canonical_name("a.parametrizations.weight.original"),
        "a.parametrizations.weight.original"
    );
}

#[test]
fn shapes_only_mode_checks_without_reading() {
    let ts = vec![
        t("b.weight", &[4, 2], 1),
        t("a.weight", &[3], 2),
        t("wn.weight_g", &[1, 3], 3),
        t("wn.weight_v", &[2, 3], 4),
    ];
    let (_tmp, dir) = tmp_ckpt("m", &ts, DType::F32);
    let vb = VarBuilder::open(CpuBackend, &dir).unwrap().shapes_only();
    let x = vb.pp("b").get("weight", &[4, 2]).unwrap();
    assert_eq!(CpuBackend.to_f32(&x).unwrap(), vec![0.0; 8]);
    let w = vb.get_weight_norm("wn", &[2, 3], 1).unwrap();
    assert_eq!(CpuBackend.to_f32(&w).unwrap(), vec![0.0; 6]);
    // Problems are recorded as usual, in request order.
    vb.get("z.missing", &[1]).unwrap();
    vb.get("a.weight", &[4]).unwrap();
    vb.get("c.missing", &[2]).unwrap();
    let e = vb.finish().unwrap_err();
    let missing: Vec<&str> = e.missing.iter().map(|m| m.0.as_str()).collect();
    assert_eq!(missing, vec!["z.missing", "c.missing"]);
    assert_eq!(e.mismatched.len(), 1);
    assert!(e.unexpected.is_empty(), "{e}");
}
