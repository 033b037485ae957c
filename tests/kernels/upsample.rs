//! `kernels/cuda/upsample.cu` (`upsample_nearest2d_v1_*`) through the CUDA backend against the CPU
//! backend: bit for bit, both storages, up and down and non-integer scales; bad arguments and
//! known values on both backends (`backend_test!`).

use crate::check_op;
use crate::common::rounded_pair;
use cyberhost_engine::backends::Backend;

/// Not (N, C, H, W), or an empty plane resized to a non-empty one, is an error; 2x nearest
/// upsampling repeats each pixel.
fn upsample_bad_arguments_and_known_values<B: Backend>(be: &B) -> anyhow::Result<()> {
    let v = be.from_f32(&[2, 2], &[1.0; 4])?;
    assert!(be.upsample_nearest2d(&v, 4, 4).is_err(), "rank 2");
    let e = be.from_f32(&[1, 1, 0, 3], &[])?;
    assert!(
        be.upsample_nearest2d(&e, 2, 2).is_err(),
        "empty plane to 2x2"
    );
    let x = be.from_f32(&[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0])?;
    let y = be.to_f32(&be.upsample_nearest2d(&x, 4, 4)?)?;
    let want = [
        1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 3.0, 3.0, 4.0, 4.0,
    ];
    assert_eq!(y, want);
    Ok(())
}
crate::backend_test!(upsample_bad_arguments_and_known_values);

crate::storages_test!(upsample_nearest2d_is_exact, |be, _| {
    let (x, xc) = rounded_pair(&be, &[2, 3, 5, 7], 90);
    for (oh, ow) in [(10, 14), (5, 7), (3, 4), (15, 9), (11, 20)] {
        check_op!(format!("upsample {oh}x{ow}"), be, 0.0,
            upsample_nearest2d(&x, oh, ow) ~ (&xc, oh, ow));
    }
});

/// `upsample_nearest2d_nhwc_v1`: channels-last rows `(N, H, W, C)` to `(N, oh, ow, C)` against
/// the host's nearest rule (PyTorch's f32 scale), bit for bit; C = 40 and 320 (16-byte vectors),
/// C = 6 and 3 (element-wise), up, down and non-integer scales, and pointers one element off 16
/// bytes (element-wise). The output is poisoned first, so an unwritten element fails.
fn upsample_nhwc_case(
    dev: &mut crate::harness::Device,
    dtype: cyberhost_kernels::DType,
    (n, h, w, c): (usize, usize, usize, usize),
    (oh, ow): (usize, usize),
    misaligned: bool,
    seed: u64,
) -> anyhow::Result<()> {
    use cyberhost_kernels::upsample::{launch_config, LayoutParams};
    use cyberhost_kernels::{kernel_name, DType, KernelModule};
    let mut x = crate::common::random(n * h * w * c, seed);
    if dtype == DType::Bf16 {
        x = crate::common::round_bf16(&x);
    }
    let lead = misaligned as usize;
    let sz = dtype.size_in_bytes();
    let mut xl = vec![f32::NAN; lead];
    xl.extend_from_slice(&x);
    let dx = dev.upload_as(dtype, &xl)? + (lead * sz) as u64;
    let out_len = n * oh * ow * c;
    let dy0 = dev.alloc_poisoned((lead + out_len) * sz)?;
    let mut p = LayoutParams::new(
        dx,
        dy0 + (lead * sz) as u64,
        &[n as u32, oh as u32, ow as u32, c as u32],
    )?;
    p.src_h = h as u32;
    p.src_w = w as u32;
    p.scale_h = h as f32 / oh as f32;
    p.scale_w = w as f32 / ow as f32;
    let vectors = (n * oh * ow * c.div_ceil(16 / sz)) as u64;
    let entry = kernel_name("upsample_nearest2d_nhwc", 1, dtype);
    dev.launch(KernelModule::Upsample, &entry, launch_config(vectors), &p)?;
    let got = dev.download_as(dtype, dy0, lead + out_len)?[lead..].to_vec();
    // the reference's own scales (PyTorch: in / out in f32), not the params'
    let (scale_h, scale_w) = (h as f32 / oh as f32, w as f32 / ow as f32);
    let mut want = vec![0.0; out_len];
    for i in 0..n {
        for y in 0..oh {
            let sy = ((y as f32 * scale_h).floor() as usize).min(h - 1);
            for xx in 0..ow {
                let sx = ((xx as f32 * scale_w).floor() as usize).min(w - 1);
                let d = ((i * oh + y) * ow + xx) * c;
                let s = ((i * h + sy) * w + sx) * c;
                want[d..d + c].copy_from_slice(&x[s..s + c]);
            }
        }
    }
    crate::common::assert_close(
        &format!(
            "{entry} (N, H, W, C) = ({n}, {h}, {w}, {c}) -> {oh}x{ow}, misaligned {misaligned}"
        ),
        &got,
        &want,
        0.0,
    );
    Ok(())
}

fn sweep_upsample_nhwc(dtype: cyberhost_kernels::DType) {
    let cases = [
        ((2, 5, 7, 40), (10, 14), false),
        ((1, 4, 4, 320), (8, 8), false),
        ((2, 3, 5, 6), (7, 11), false),
        ((1, 5, 3, 3), (3, 2), false),
        ((3, 2, 3, 16), (5, 9), false),
        ((1, 3, 3, 24), (6, 6), true),
    ];
    for (i, (schedules, seed)) in crate::harness::SCHEDULES.iter().enumerate() {
        let mut dev = crate::harness::Device::new(*schedules, *seed);
        for (j, (shape, out, mis)) in cases.into_iter().enumerate() {
            upsample_nhwc_case(&mut dev, dtype, shape, out, mis, (i * 100 + j) as u64 + 5).unwrap();
        }
    }
}

crate::harness::sweep_tests!(sweep_upsample_nhwc;
    upsample_nearest2d_nhwc_f32 => (cyberhost_kernels::DType::F32),
    upsample_nearest2d_nhwc_bf16 => (cyberhost_kernels::DType::Bf16),
);
