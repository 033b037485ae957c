//! `softmax_v1_*` against `reference::softmax`.

use crate::harness::{assert_close, from_bf16, round_bf16, to_bf16, tol, Device, Rng, SCHEDULES};
use cyberhost_kernels::softmax::{launch_config, SoftmaxParams, SoftmaxShape};
use cyberhost_kernels::{kernel_name, reference, DType, KernelModule};
use half::bf16;

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
    let want = reference::softmax(&x, rows, cols, scale);
    let dx = if bf {
        dev.upload(&to_bf16(&x))?
    } else {
        dev.upload(&x)?
    };
    let dy = dev.alloc_poisoned(rows * cols * dtype.size_in_bytes())?;
    let shape = SoftmaxShape {
        rows: rows as u64,
        cols: cols as u64,
    };
    let p = SoftmaxParams::new(dx, dy, shape, scale)?;
    let entry = kernel_name("softmax", 1, dtype);
    dev.launch(KernelModule::Softmax, &entry, launch_config(shape), &p)?;
    let got = if bf {
        from_bf16(&dev.download::<bf16>(dy, rows * cols)?)
    } else {
        dev.download::<f32>(dy, rows * cols)?
    };
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

#[test]
fn softmax_f32() {
    for (i, (schedules, seed)) in SCHEDULES.iter().enumerate() {
        let mut dev = Device::new(*schedules, *seed);
        for (j, &(r, c, s)) in SHAPES.iter().enumerate() {
            run(&mut dev, DType::F32, r, c, s, (i * 10 + j) as u64).unwrap();
        }
    }
}

#[test]
fn softmax_bf16() {
    for (i, (schedules, seed)) in SCHEDULES.iter().enumerate() {
        let mut dev = Device::new(*schedules, *seed);
        for (j, &(r, c, s)) in SHAPES.iter().enumerate() {
            run(&mut dev, DType::Bf16, r, c, s, (i * 10 + j) as u64 + 50).unwrap();
        }
    }
}
