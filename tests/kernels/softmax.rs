//! `softmax_v1_*` against the CPU backend's `softmax_last` (of `affine(x, scale)`); fully masked
//! rows are 0 from the kernel (the attention convention) where the CPU, as PyTorch, gives NaN.

use crate::check_op;
use crate::common::{assert_close, cpu, host, round_bf16, tol, Rng, CPU};
use crate::common::{pair, random};
use crate::harness::{Device, SCHEDULES};
use cyberhost_engine::backends::{Backend, TensorLike};
use cyberhost_kernels::softmax::{launch_config, SoftmaxParams, SoftmaxShape};
use cyberhost_kernels::{kernel_name, DType, KernelModule};

/// (rows, cols, scale): rows not a multiple of the 4 rows per block, cols below, at and above a
/// warp's 32 lanes and not multiples of it.
const SHAPES: &[(usize, usize, f32)] = &[
    (1, 1, 1.0),
    (5, 33, 1.0),
    (9, 100, 0.125),
    (3, 257, 2.0),
    (4, 32, 1.0),
    (6, 1000, 0.0625),
];

fn run(
    dev: &mut Device,
    dtype: DType,
    rows: usize,
    cols: usize,
    scale: f32,
    seed: u64,
) -> anyhow::Result<()> {
    let bf = dtype == DType::Bf16;
    let mut rng = Rng::new(seed);
    let mut x = rng.randn(rows * cols, 3.0, 0.5);
    // Attention-style masking: a few -inf entries, and a fully masked last row when rows > 2.
    for i in (0..x.len()).step_by(11) {
        x[i] = f32::NEG_INFINITY;
    }
    if rows > 2 {
        x[(rows - 1) * cols..].fill(f32::NEG_INFINITY);
    }
    let x = if bf { round_bf16(&x) } else { x };
    let mut want = host(&CPU.softmax_last(&CPU.affine(&cpu(&[rows, cols], &x), scale, 0.0)?)?);
    // Fully masked rows: 0 from the kernel (the attention convention), NaN from the CPU (PyTorch).
    for (xr, wr) in x.chunks(cols).zip(want.chunks_mut(cols)) {
        if xr.iter().all(|&v| v == f32::NEG_INFINITY) {
            wr.fill(0.0);
        }
    }
    let dx = dev.upload_as(dtype, &x)?;
    let dy = dev.alloc_poisoned(rows * cols * dtype.size_in_bytes())?;
    let shape = SoftmaxShape {
        rows: rows as u64,
        cols: cols as u64,
    };
    let p = SoftmaxParams::new(dx, dy, shape, scale)?;
    let entry = kernel_name("softmax", 1, dtype);
    dev.launch(KernelModule::Softmax, &entry, launch_config(shape), &p)?;
    let got = dev.download_as(dtype, dy, rows * cols)?;
    assert_close(
        &format!("{entry} ({rows}, {cols}) scale {scale}"),
        &got,
        &want,
        tol(bf),
    );
    if rows > 2 {
        assert!(
            got[(rows - 1) * cols..].iter().all(|&v| v == 0.0),
            "{entry}: fully masked row must be zeros"
        );
    }
    Ok(())
}

/// Every shape of [`SHAPES`] in `dtype` under every schedule, data seeds from `seed_base`.
fn sweep(dtype: DType, seed_base: u64) {
    for (i, (schedules, seed)) in SCHEDULES.iter().enumerate() {
        let mut dev = Device::new(*schedules, *seed);
        for (j, &(r, c, s)) in SHAPES.iter().enumerate() {
            run(&mut dev, dtype, r, c, s, (i * 10 + j) as u64 + seed_base).unwrap();
        }
    }
}

crate::harness::sweep_tests!(sweep;
    softmax_f32 => (DType::F32, 0),
    softmax_bf16 => (DType::Bf16, 50),
);

/// A scalar is an error; a row of equal values is uniform; an empty last dim stays empty.
fn softmax_bad_arguments_and_known_values<B: Backend>(be: &B) -> anyhow::Result<()> {
    let s = be.from_f32(&[], &[1.0])?;
    assert!(be.softmax_last(&s).is_err(), "scalar");
    let x = be.from_f32(&[2, 4], &[7.0; 8])?;
    assert_eq!(be.to_f32(&be.softmax_last(&x)?)?, [0.25; 8]);
    let e = be.from_f32(&[3, 0], &[])?;
    assert_eq!(be.softmax_last(&e)?.shape(), &[3, 0]);
    Ok(())
}
crate::backend_test!(softmax_bad_arguments_and_known_values);

// ------------------------------------------------------------------------------------------------
// through the CUDA backend (stand-in driver, or a GPU), against the CPU backend
// ------------------------------------------------------------------------------------------------

crate::storages_test!(softmax_matches_cpu, |be, tol| {
    for shape in [vec![3usize, 7], vec![2, 5, 33], vec![4, 130], vec![1]] {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = random(n, 100).iter().map(|v| v * 4.0).collect();
        let (g, c) = pair(&be, &shape, &data);
        check_op!(format!("softmax {shape:?}"), be, tol.max(1e-5), softmax_last(&g) ~ (&c));
    }
});
