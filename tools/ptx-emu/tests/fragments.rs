//! Fragment layouts of `mma.sync` and `ldmatrix` cross-checked against an independent source:
//! the CuTe layout tables, transcribed below from CUTLASS 4.2 (PyPI `nvidia-cutlass` 4.2.0.0):
//!
//! * `cute/atom/mma_traits_sm80.hpp`: `SM80_16x8x16_F16F16F16F16_TN` (inherited by
//!   `SM80_16x8x16_F32F16F16F32_TN` and `SM80_16x8x16_F32BF16BF16F32_TN`) and
//!   `SM80_16x8x8_F16F16F16F16_TN` (inherited by the F32/BF16 variants), with the aliases
//!   `SM80_16x8_Row` and `SM80_8x8_Row` from the same file.
//! * `cute/atom/copy_traits_sm75.hpp`: `SM75_U32x{1,2,4}_LDSM_N` and `SM75_U16x{2,4,8}_LDSM_T`.
//!
//! A CuTe layout maps (thread, value) to an offset: each mode is split colexicographically over
//! its shape and dotted with its stride. For MMA the offset indexes an (M,K) / (N,K) / (M,N)
//! matrix column-major; values are packed in register order (two 16-bit values per A/B register,
//! one f32 per C/D register). For ldmatrix the offset is a bit index into the reference layout in
//! which source thread s supplies bits [128 s, 128 s + 128) (row s, eight b16 elements); value v of
//! a destination thread is bit v % 32 of register v / 32.
//!
//! The kernels in tests/ptx/fragments.ptx load per-lane registers from memory, run one
//! mma/ldmatrix in the emulator and store the per-lane results, so the emulator's own layout code
//! is only exercised, never consulted, by these checks.
mod common;
use common::*;
use half::{bf16, f16};
use ptx_emu::*;

/// One CuTe layout: (thread shape, thread stride), (value shape, value stride), flattened.
/// One mode of a layout: (shape, stride).
type Mode = (&'static [usize], &'static [usize]);

struct CuteLayout {
    thr: Mode,
    val: Mode,
}

/// A layout from its thread mode and its value mode, each (shape, stride).
const fn cute(thr: Mode, val: Mode) -> CuteLayout {
    CuteLayout { thr, val }
}

fn eval_mode(shape: &[usize], stride: &[usize], mut idx: usize) -> usize {
    let mut off = 0;
    for (s, d) in shape.iter().zip(stride) {
        off += (idx % s) * d;
        idx /= s;
    }
    off
}

impl CuteLayout {
    fn off(&self, t: usize, v: usize) -> usize {
        eval_mode(self.thr.0, self.thr.1, t) + eval_mode(self.val.0, self.val.1, v)
    }
    fn nval(&self) -> usize {
        self.val.0.iter().product()
    }
}

// mma_traits_sm80.hpp
// SM80_16x8x16_F16F16F16F16_TN::ALayout = Layout<Shape<Shape<_4,_8>,Shape<_2,_2,_2>>, Stride<Stride<_32,_1>,Stride<_16,_8,_128>>>
const A_16X8X16: CuteLayout = cute((&[4, 8], &[32, 1]), (&[2, 2, 2], &[16, 8, 128]));
// SM80_16x8x16_F16F16F16F16_TN::BLayout = Layout<Shape<Shape<_4,_8>,Shape<_2,_2>>, Stride<Stride<_16,_1>,Stride<_8,_64>>>
const B_16X8X16: CuteLayout = cute((&[4, 8], &[16, 1]), (&[2, 2], &[8, 64]));
// SM80_16x8_Row = Layout<Shape<Shape<_4,_8>,Shape<_2,_2>>, Stride<Stride<_32,_1>,Stride<_16,_8>>>
const ROW_16X8: CuteLayout = cute((&[4, 8], &[32, 1]), (&[2, 2], &[16, 8]));
// SM80_8x8_Row = Layout<Shape<Shape<_4,_8>,_2>, Stride<Stride<_16,_1>,_8>>
const ROW_8X8: CuteLayout = cute((&[4, 8], &[16, 1]), (&[2], &[8]));

fn bits16(x: f32, is_bf16: bool) -> (u16, f64) {
    if is_bf16 {
        let b = bf16::from_f32(x);
        (b.to_bits(), b.to_f64())
    } else {
        let h = f16::from_f32(x);
        (h.to_bits(), h.to_f64())
    }
}

fn check_mma(kernel: &str, k: usize, is_bf16: bool) {
    let m = module("fragments.ptx");
    let (al, bl, cl) = if k == 16 {
        (&A_16X8X16, &B_16X8X16, &ROW_16X8)
    } else {
        (&ROW_16X8, &ROW_8X8, &ROW_16X8)
    };
    let (na, nb) = (al.nval() / 2, bl.nval() / 2);
    // A: 16 x k, B: k x 8 (stored as (N, K) for the .col operand), C: 16 x 8
    let ra = rand_f32(16 * k, 1 + k as u64);
    let rb = rand_f32(k * 8, 2 + k as u64);
    let rc = rand_f32(16 * 8, 3 + k as u64);
    let mut a = vec![0f64; 16 * k];
    let mut b = vec![0f64; k * 8];
    let mut areg = vec![0u32; 32 * na];
    let mut breg = vec![0u32; 32 * nb];
    let mut creg = vec![0f32; 32 * 4];
    for t in 0..32 {
        for v in 0..al.nval() {
            let off = al.off(t, v);
            let (mm, kk) = (off % 16, off / 16);
            let (bits, val) = bits16(ra[mm * k + kk], is_bf16);
            a[mm * k + kk] = val;
            areg[t * na + v / 2] |= (bits as u32) << (16 * (v % 2));
        }
        for v in 0..bl.nval() {
            let off = bl.off(t, v);
            let (nn, kk) = (off % 8, off / 8);
            let (bits, val) = bits16(rb[kk * 8 + nn], is_bf16);
            b[kk * 8 + nn] = val;
            breg[t * nb + v / 2] |= (bits as u32) << (16 * (v % 2));
        }
        for v in 0..4 {
            let off = cl.off(t, v);
            creg[t * 4 + v] = rc[(off % 16) * 8 + off / 16];
        }
    }
    let mut mem = Memory::new();
    let pa = upload(&mut mem, &u32_bytes(&areg));
    let pb = upload(&mut mem, &u32_bytes(&breg));
    let pc = upload(&mut mem, &f32_bytes(&creg));
    let pd = mem.alloc(32 * 16).unwrap();
    let params: Vec<Vec<u8>> = [pa, pb, pc, pd]
        .iter()
        .map(|p| p.to_le_bytes().to_vec())
        .collect();
    run(&m, kernel, cfg([1, 1, 1], [32, 1, 1], 0), &params, &mut mem)
        .unwrap_or_else(|f| panic!("{f}"));
    let d = bytes_f32(&download(&mem, pd, 32 * 16));
    let mut got = vec![0f32; 16 * 8];
    let mut want = vec![0f32; 16 * 8];
    for t in 0..32 {
        for v in 0..4 {
            let off = cl.off(t, v);
            got[(off % 16) * 8 + off / 16] = d[t * 4 + v];
        }
    }
    for mm in 0..16 {
        for nn in 0..8 {
            let mut s = rc[mm * 8 + nn] as f64;
            for kk in 0..k {
                s += a[mm * k + kk] * b[kk * 8 + nn];
            }
            want[mm * 8 + nn] = s as f32;
        }
    }
    let e = rel_l2(&got, &want);
    assert!(
        e < 1e-6,
        "{kernel}: rel L2 {e}\ngot  {got:?}\nwant {want:?}"
    );
}

/// One test per mma kernel: `name: (kernel, k, bf16)`.
macro_rules! mma_tests {
    ($($name:ident: ($kernel:literal, $k:literal, $bf16:literal),)*) => {$(
        #[test]
        fn $name() {
            check_mma($kernel, $k, $bf16);
        }
    )*};
}

mma_tests! {
    mma_m16n8k16_bf16_matches_cute_layouts: ("mma_bf16_k16", 16, true),
    mma_m16n8k16_f16_matches_cute_layouts: ("mma_f16_k16", 16, false),
    mma_m16n8k8_bf16_matches_cute_layouts: ("mma_bf16_k8", 8, true),
    mma_m16n8k8_f16_matches_cute_layouts: ("mma_f16_k8", 8, false),
}

// copy_traits_sm75.hpp, DstLayout of each ldmatrix atom.
// SM75_U32x1_LDSM_N: Layout<Shape<_32,_32>, Stride<_32,_1>>
const LDSM_N_X1: CuteLayout = cute((&[32], &[32]), (&[32], &[1]));
// SM75_U32x2_LDSM_N: Layout<Shape<_32,Shape<_32,_2>>, Stride<_32,Stride<_1,_1024>>>
const LDSM_N_X2: CuteLayout = cute((&[32], &[32]), (&[32, 2], &[1, 1024]));
// SM75_U32x4_LDSM_N: Layout<Shape<_32,Shape<_32,_4>>, Stride<_32,Stride<_1,_1024>>>
const LDSM_N_X4: CuteLayout = cute((&[32], &[32]), (&[32, 4], &[1, 1024]));
// SM75_U16x2_LDSM_T: Layout<Shape<Shape<_4,_8>,Shape<_16,_2>>, Stride<Stride<_256,_16>,Stride<_1,_128>>>
const LDSM_T_X1: CuteLayout = cute((&[4, 8], &[256, 16]), (&[16, 2], &[1, 128]));
// SM75_U16x4_LDSM_T: Layout<Shape<Shape<_4,_8>,Shape<_16,_2,_2>>, Stride<Stride<_256,_16>,Stride<_1,_128,_1024>>>
const LDSM_T_X2: CuteLayout = cute((&[4, 8], &[256, 16]), (&[16, 2, 2], &[1, 128, 1024]));
// SM75_U16x8_LDSM_T: Layout<Shape<Shape<_4,_8>,Shape<_16,_2,_4>>, Stride<Stride<_256,_16>,Stride<_1,_128,_1024>>>
const LDSM_T_X4: CuteLayout = cute((&[4, 8], &[256, 16]), (&[16, 2, 4], &[1, 128, 1024]));

fn check_ldsm(kernel: &str, num: usize, layout: &CuteLayout) {
    let m = module("fragments.ptx");
    // 32 rows of 8 b16 values: row r element e = r * 8 + e + 1000 (distinct, never zero)
    let rows: Vec<u16> = (0..32 * 8).map(|i| (i + 1000) as u16).collect();
    let bytes: Vec<u8> = rows.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut mem = Memory::new();
    let pin = upload(&mut mem, &bytes);
    let pout = mem.alloc(32 * num * 4).unwrap();
    run(
        &m,
        kernel,
        cfg([1, 1, 1], [32, 1, 1], 0),
        &[pin.to_le_bytes().to_vec(), pout.to_le_bytes().to_vec()],
        &mut mem,
    )
    .unwrap_or_else(|f| panic!("{f}"));
    let out = bytes_u32(&download(&mem, pout, 32 * num * 4));
    assert_eq!(layout.nval(), 32 * num);
    for t in 0..32 {
        for v in (0..layout.nval()).step_by(16) {
            let bit = layout.off(t, v);
            // source thread s supplies ref bits [128 s, 128 s + 128): the row at its address
            let s = bit / 128;
            let e = (bit % 128) / 16;
            let row = (5 * s + 3) % 32; // the address lane s passes (see fragments.ptx)
            let want = rows[row * 8 + e];
            let got = (out[t * num + v / 32] >> (v % 32)) as u16;
            assert_eq!(
                got,
                want,
                "{kernel}: thread {t} value {v} (register {}, half {})",
                v / 32,
                (v % 32) / 16
            );
        }
    }
}

#[test]
fn ldmatrix_matches_cute_layouts() {
    check_ldsm("ldsm_x1", 1, &LDSM_N_X1);
    check_ldsm("ldsm_x2", 2, &LDSM_N_X2);
    check_ldsm("ldsm_x4", 4, &LDSM_N_X4);
    check_ldsm("ldsm_x1_trans", 1, &LDSM_T_X1);
    check_ldsm("ldsm_x2_trans", 2, &LDSM_T_X2);
    check_ldsm("ldsm_x4_trans", 4, &LDSM_T_X4);
}
