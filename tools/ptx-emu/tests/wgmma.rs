//! sm_90 `wgmma.mma_async` (+ fence / commit_group / wait_group), checked against hand-computed
//! results: small-integer operands (every product and partial sum exact, so the expected D is
//! exact whatever the summation order) placed into shared memory by this file's own transcription
//! of CuTe's canonical GMMA layouts (CUTLASS 4.2 `cute/atom/mma_traits_sm90_gmma.hpp`,
//! `make_gmma_desc`, in 16-byte units):
//!
//! K-major   INTERLEAVE ((8,m),2):((1,SBO),LBO)      B32/B64/B128 ((8,m),2):((W,SBO),1)
//! MN-major  INTERLEAVE ((1,n),(8,k)):((X,SBO),(1,LBO))  B32/B64/B128 ((W,n),(8,k)):((1,LBO),(W,SBO))
//!
//! with W = 2/4/8 and CuTe's `Swizzle<log2 W, 4, 3>` on the byte address. The accumulator and A
//! register fragments are read through CuTe's `CLayout_64xN` / `ALayout_64x16` (same file,
//! `mma_traits_sm90_gmma.hpp`): thread (4,8,4):(128,1,16), value (2,2,N/8):(64,8,512), column-major
//! offsets into the 64 x N (64 x 16) matrix.
//!
//! The kernels are generated here (one per shape and operand form), so every case is one PTX
//! text; each runs through `common::run` (3 seeded schedules, full and fast checks, with and
//! without the decoded fast path).
#![allow(
    clippy::needless_range_loop,
    clippy::too_many_arguments,
    clippy::result_large_err
)]
mod common;
use common::*;
use ptx_emu::*;

#[derive(Clone, Copy, Debug, PartialEq)]
enum T {
    BF16,
    F16,
    E4M3,
    E5M2,
}

impl T {
    fn name(self) -> &'static str {
        match self {
            T::BF16 => "bf16",
            T::F16 => "f16",
            T::E4M3 => "e4m3",
            T::E5M2 => "e5m2",
        }
    }
    fn bytes(self) -> usize {
        match self {
            T::BF16 | T::F16 => 2,
            _ => 1,
        }
    }
    fn k(self) -> usize {
        32 / self.bytes()
    }
    /// Bits of a small integer (|x| ≤ 8: exact in every one of these formats).
    fn bits(self, x: i32) -> u32 {
        let f = x as f32;
        match self {
            T::BF16 => half::bf16::from_f32(f).to_bits() as u32,
            T::F16 => half::f16::from_f32(f).to_bits() as u32,
            T::E4M3 | T::E5M2 => {
                // sign, then the magnitude's exponent and mantissa (hand-encoded)
                let (mb, bias) = if self == T::E4M3 { (3, 7) } else { (2, 15) };
                let a = x.unsigned_abs();
                let s = if x < 0 { 0x80 } else { 0 };
                if a == 0 {
                    return s;
                }
                let e = 31 - a.leading_zeros();
                let m = (a << mb >> e) & ((1 << mb) - 1);
                s | ((e + bias) << mb) | m
            }
        }
    }
}

/// A shared-memory operand layout: major-ness, swizzle width W (1 = interleave) and the two
/// strides in bytes.
#[derive(Clone, Copy, Debug)]
struct Lay {
    mn_major: bool,
    w: usize,
    lbo: usize,
    sbo: usize,
}

impl Lay {
    fn mode_bits(&self) -> u64 {
        match self.w {
            1 => 0,
            8 => 1,
            4 => 2,
            _ => 3,
        }
    }
    /// The descriptor for an operand starting at shared byte `start` (start, LBO, SBO >> 4).
    fn desc(&self, start: usize) -> u64 {
        ((start as u64 >> 4) & 0x3fff)
            | (((self.lbo as u64 >> 4) & 0x3fff) << 16)
            | (((self.sbo as u64 >> 4) & 0x3fff) << 32)
            | (self.mode_bits() << 62)
    }
    /// CuTe's layout: the byte offset (before the swizzle) of element (mn, k), element size eb.
    fn offset(&self, mn: usize, k: usize, eb: usize) -> usize {
        let t = 16 / eb; // elements per 16-byte unit
        let (lbo, sbo, w) = (self.lbo / 16, self.sbo / 16, self.w);
        let units = if !self.mn_major {
            // ((8,m),2) over (mn, k / t)
            let (r, m, kk) = (mn % 8, mn / 8, k / t);
            if w == 1 {
                r + m * sbo + kk * lbo
            } else {
                r * w + m * sbo + kk
            }
        } else {
            // ((W,n),(8,k)) over (mn / t, k)
            let (c, kr, kg) = (mn / t, k % 8, k / 8);
            if w == 1 {
                c * sbo + kr + kg * lbo
            } else {
                (c % w) + (c / w) * lbo + kr * w + kg * sbo
            }
        };
        let within = if self.mn_major { mn % t } else { k % t };
        units * 16 + within * eb
    }
}

/// CuTe `Swizzle<B,4,3>` on a byte address.
fn swizzle(a: usize, w: usize) -> usize {
    let b = w.trailing_zeros() as usize;
    let yyy = ((1usize << b) - 1) << 7;
    a ^ ((a & yyy) >> 3)
}

/// Place `x` (rows × k, row r = row r of A or column r of B) at `start` of `img`.
fn place(img: &mut [u8], used: &mut [bool], start: usize, lay: &Lay, t: T, x: &[i32], rows: usize) {
    let k = t.k();
    for r in 0..rows {
        for kk in 0..k {
            let a = swizzle(start + lay.offset(r, kk, t.bytes()), lay.w);
            let bits = t.bits(x[r * k + kk]);
            for b in 0..t.bytes() {
                assert!(
                    !used[a + b],
                    "test layout overlaps itself at byte {}",
                    a + b
                );
                used[a + b] = true;
                img[a + b] = (bits >> (8 * b)) as u8;
            }
        }
    }
}

/// CuTe CLayout_64xN / ALayout_64x16: (thread, value) → column-major offset.
fn frag_off(tid: usize, v: usize) -> usize {
    let (t, g, wp) = (tid % 4, (tid / 4) % 8, tid / 32);
    let (v0, v1, v2) = (v % 2, (v / 2) % 2, v / 4);
    t * 128 + g + wp * 16 + v0 * 64 + v1 * 8 + v2 * 512
}

#[derive(Clone, Debug)]
struct Case {
    t: T,
    /// B's element type (= `t` except for mixed FP8).
    tb: T,
    n: usize,
    /// Accumulate in f16 (f16x2 registers) instead of f32.
    acc_f16: bool,
    /// A from registers (else from shared memory with layout `la`).
    a_regs: bool,
    la: Lay,
    lb: Lay,
    scale_d: bool,
    neg_a: bool,
    neg_b: bool,
    /// Number of chained wgmmas over K (each advancing the descriptors' start by `kstep` bytes).
    chain: usize,
    kstep: usize,
    /// Deliberate bug to inject (see `kernel`).
    bug: Bug,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Bug {
    None,
    /// Store an accumulator between commit_group and wait_group.
    ReadAccEarly,
    /// No wait_group at all before the epilogue.
    NoWait,
    /// Overwrite a B byte in shared memory between commit_group and wait_group.
    SmemEarly,
    /// Overwrite the same B byte after the wait and a bar.sync (the fixed twin of SmemEarly).
    SmemAfter,
    /// No wgmma.fence before the wgmma.
    NoFence,
}

fn k_case(t: T, n: usize, la: Lay, lb: Lay) -> Case {
    Case {
        t,
        tb: t,
        n,
        acc_f16: false,
        a_regs: false,
        la,
        lb,
        scale_d: true,
        neg_a: false,
        neg_b: false,
        chain: 1,
        kstep: 0,
        bug: Bug::None,
    }
}

const SMEM: usize = 48 * 1024;
const B_BASE: usize = 16 * 1024;

/// The kernel of one case. Params: image (u32 words), word count, desc A, desc B, A fragments
/// (4 u32 per thread), D in/out (per thread), scale-d flag.
fn kernel(c: &Case) -> String {
    let nacc = if c.acc_f16 { c.n / 4 } else { c.n / 2 };
    let (rt, acc_ty) = if c.acc_f16 {
        ("b32", "f16")
    } else {
        ("f32", "f32")
    };
    let accs: Vec<String> = (0..nacc).map(|i| format!("%d{i}")).collect();
    let accv = format!("{{{}}}", accs.join(", "));
    let mut s = String::new();
    s += &format!(
        ".version 8.4\n.target sm_90a\n.address_size 64\n\n.visible .entry wg(\n\t.param .u64 p_img,\n\t.param .u32 p_nwords,\n\t.param .u64 p_da,\n\t.param .u64 p_db,\n\t.param .u64 p_afrag,\n\t.param .u64 p_dio,\n\t.param .u32 p_scale\n)\n{{\n\t.reg .pred %p<4>;\n\t.reg .b32 %r<16>;\n\t.reg .b64 %rd<16>;\n\t.reg .{rt} %d<{nacc}>;\n\t.reg .b32 %a<4>;\n\t.shared .align 1024 .b8 smem[{SMEM}];\n"
    );
    s += "\tld.param.u64 %rd1, [p_img];\n\tld.param.u32 %r1, [p_nwords];\n\tld.param.u64 %rd2, [p_da];\n\tld.param.u64 %rd3, [p_db];\n\tld.param.u64 %rd4, [p_afrag];\n\tld.param.u64 %rd5, [p_dio];\n\tld.param.u32 %r2, [p_scale];\n";
    s += "\tcvta.to.global.u64 %rd1, %rd1;\n\tcvta.to.global.u64 %rd4, %rd4;\n\tcvta.to.global.u64 %rd5, %rd5;\n\tmov.u32 %r3, %tid.x;\n\tmov.u32 %r4, %r3;\n";
    s += "COPY:\n\tsetp.ge.u32 %p1, %r4, %r1;\n\t@%p1 bra COPIED;\n\tmul.wide.u32 %rd6, %r4, 4;\n\tadd.s64 %rd7, %rd1, %rd6;\n\tld.global.u32 %r5, [%rd7];\n\tmov.u32 %r6, smem;\n\tshl.b32 %r7, %r4, 2;\n\tadd.u32 %r8, %r6, %r7;\n\tst.shared.u32 [%r8], %r5;\n\tadd.u32 %r4, %r4, 128;\n\tbra COPY;\nCOPIED:\n\tbar.sync 0;\n";
    s += "\tmov.u32 %r6, smem;\n\tshr.u32 %r9, %r6, 4;\n\tcvt.u64.u32 %rd8, %r9;\n\tadd.s64 %rd2, %rd2, %rd8;\n\tadd.s64 %rd3, %rd3, %rd8;\n";
    s += &format!(
        "\tmul.wide.u32 %rd9, %r3, {};\n\tadd.s64 %rd10, %rd5, %rd9;\n",
        nacc * 4
    );
    for i in 0..nacc {
        s += &format!("\tld.global.{rt} %d{i}, [%rd10+{}];\n", 4 * i);
    }
    s += "\tmul.wide.u32 %rd11, %r3, 16;\n\tadd.s64 %rd12, %rd4, %rd11;\n";
    for i in 0..4 {
        s += &format!("\tld.global.u32 %a{i}, [%rd12+{}];\n", 4 * i);
    }
    s += "\tsetp.ne.u32 %p2, %r2, 0;\n";
    if c.bug != Bug::NoFence {
        s += "\twgmma.fence.sync.aligned;\n";
    }
    let sa = if c.neg_a { -1 } else { 1 };
    let sb = if c.neg_b { -1 } else { 1 };
    let fp8 = c.t.bytes() == 1;
    for j in 0..c.chain {
        if j > 0 {
            // advance both descriptors along K (start address field, 16-byte units)
            s += &format!(
                "\tadd.s64 %rd2, %rd2, {};\n\tadd.s64 %rd3, %rd3, {};\n",
                c.kstep / 16,
                c.kstep / 16
            );
        }
        let a = if c.a_regs {
            "{%a0, %a1, %a2, %a3}".to_string()
        } else {
            "%rd2".to_string()
        };
        let trans = if fp8 {
            String::new()
        } else if c.a_regs {
            format!(", {}", c.lb.mn_major as u32)
        } else {
            format!(", {}, {}", c.la.mn_major as u32, c.lb.mn_major as u32)
        };
        s += &format!(
            "\twgmma.mma_async.sync.aligned.m64n{}k{}.{acc_ty}.{t}.{tb} {accv}, {a}, %rd3, %p2, {sa}, {sb}{trans}; // WGMMA{j}\n",
            c.n,
            c.t.k(),
            t = c.t.name(),
            tb = c.tb.name()
        );
    }
    s += "\twgmma.commit_group.sync.aligned;\n";
    match c.bug {
        Bug::ReadAccEarly => s += "\tst.global.b32 [%rd10], %d1; // FLAG\n",
        Bug::SmemEarly => s += &format!("\tst.shared.u32 [smem+{}], %r2; // FLAG\n", B_BASE + 4),
        _ => {}
    }
    if c.bug != Bug::NoWait {
        s += "\twgmma.wait_group.sync.aligned 0;\n";
    }
    if c.bug == Bug::SmemAfter {
        // every warp of the warpgroup must have waited before anyone overwrites the operand
        s += &format!(
            "\tbar.sync 0;\n\tst.shared.u32 [smem+{}], %r2;\n",
            B_BASE + 4
        );
    }
    for i in 0..nacc {
        let flag = if i == 0 && c.bug == Bug::NoWait {
            " // FLAG"
        } else {
            ""
        };
        s += &format!("\tst.global.b32 [%rd10+{}], %d{i};{flag}\n", 4 * i);
    }
    s += "\tret;\n}\n";
    s
}

struct Out {
    got: Vec<f64>,
    want: Vec<f64>,
}

/// Run `c` with seeded small-integer operands; the expected D (64 × N, column-major).
fn run_case(c: &Case, seed: u64) -> Result<Out, (Fault, String)> {
    let (t, n, k) = (c.t, c.n, c.t.k());
    let ktot = k * c.chain;
    let ri = |len: usize, s: u64| -> Vec<i32> {
        rand_f32(len, s)
            .iter()
            .map(|x| (x * 4.0).round() as i32)
            .collect()
    };
    // logical A (64 × ktot, row-major), B (n × ktot: row j = column j of B), C (64 × n col-major)
    let a = ri(64 * ktot, seed);
    let b = ri(n * ktot, seed + 1);
    let c0 = ri(64 * n, seed + 2);
    let mut img = vec![0u8; SMEM];
    let mut used = vec![false; SMEM];
    // chained wgmmas: wgmma j reads K columns [j k, j k + k) at start + j·kstep
    for j in 0..c.chain {
        let sub = |x: &[i32], rows: usize| -> Vec<i32> {
            (0..rows)
                .flat_map(|r| (0..k).map(move |kk| (r, kk)))
                .map(|(r, kk)| x[r * ktot + j * k + kk])
                .collect()
        };
        if !c.a_regs {
            place(&mut img, &mut used, j * c.kstep, &c.la, t, &sub(&a, 64), 64);
        }
        place(
            &mut img,
            &mut used,
            B_BASE + j * c.kstep,
            &c.lb,
            c.tb,
            &sub(&b, n),
            n,
        );
    }
    // A fragments: 4 registers per thread, 16-bit: 2 values each (ALayout_64x16); fp8: 4 each
    let mut afrag = vec![0u32; 128 * 4];
    if c.a_regs {
        assert_eq!(c.chain, 1);
        for tid in 0..128 {
            for v in 0..8 * (2 / t.bytes()) {
                let (reg, part, off) = if t.bytes() == 2 {
                    (v / 2, v % 2, frag_off(tid, v))
                } else {
                    // 8-bit ALayout_64x32: value (4,2,2):(64,8,1024) — 4 consecutive k per register
                    let (v0, v1, v2) = (v % 4, (v / 4) % 2, v / 8);
                    let (tt, g, wp) = (tid % 4, (tid / 4) % 8, tid / 32);
                    let off = tt * 256 + g + wp * 16 + v0 * 64 + v1 * 8 + v2 * 1024;
                    (v1 + 2 * v2, v0, off)
                };
                let (m, kk) = (off % 64, off / 64);
                let bits = t.bits(a[m * ktot + kk]);
                let sh = 32 / (4 / t.bytes()) * part;
                afrag[tid * 4 + reg] |= bits << sh;
            }
        }
    }
    // D in: per thread, the accumulator registers in order
    let nacc = if c.acc_f16 { n / 4 } else { n / 2 };
    let mut dio = vec![0u32; 128 * nacc];
    for tid in 0..128 {
        for v in 0..n / 2 {
            let off = frag_off(tid, v);
            let x = c0[off] as f32;
            if c.acc_f16 {
                let h = half::f16::from_f32(x).to_bits() as u32;
                dio[tid * nacc + v / 2] |= h << (16 * (v % 2));
            } else {
                dio[tid * nacc + v] = x.to_bits();
            }
        }
    }
    // expected
    let (sa, sb) = (if c.neg_a { -1 } else { 1 }, if c.neg_b { -1 } else { 1 });
    let mut want = vec![0f64; 64 * n];
    for m in 0..64 {
        for j in 0..n {
            let mut s = if c.scale_d { c0[m + 64 * j] } else { 0 };
            for kk in 0..ktot {
                s += sa * a[m * ktot + kk] * sb * b[j * ktot + kk];
            }
            want[m + 64 * j] = s as f64;
        }
    }
    let src = kernel(c);
    let m = Module::parse(&src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    let mut e = Emu::from_module(m);
    let words: Vec<u32> = img
        .chunks_exact(4)
        .map(|w| u32::from_le_bytes(w.try_into().unwrap()))
        .collect();
    let pimg = e.up_u32(&words);
    let pa = e.up_u32(&afrag);
    let pd = e.up_u32(&dio);
    let da = c.la.desc(0);
    let db = c.lb.desc(B_BASE);
    let params = vec![
        p64(pimg),
        p32(words.len() as i32),
        da.to_le_bytes().to_vec(),
        db.to_le_bytes().to_vec(),
        p64(pa),
        p64(pd),
        p32(c.scale_d as i32),
    ];
    e.try_run("wg", lin(1, 128), &params)
        .map_err(|f| (f, src.clone()))?;
    let out = e.u32s(pd, 128 * nacc);
    let mut got = vec![f64::NAN; 64 * n];
    for tid in 0..128 {
        for v in 0..n / 2 {
            let x = if c.acc_f16 {
                half::f16::from_bits((out[tid * nacc + v / 2] >> (16 * (v % 2))) as u16).to_f64()
            } else {
                f32::from_bits(out[tid * nacc + v]) as f64
            };
            got[frag_off(tid, v)] = x;
        }
    }
    Ok(Out { got, want })
}

fn check(c: &Case) {
    let o = run_case(c, 7 + c.n as u64).unwrap_or_else(|(f, src)| panic!("{c:?}: {f}\n{src}"));
    for i in 0..o.want.len() {
        assert_eq!(
            o.got[i],
            o.want[i],
            "{:?} N={} D[{}][{}]",
            c.t,
            c.n,
            i % 64,
            i / 64
        );
    }
}

const K128: Lay = Lay {
    mn_major: false,
    w: 8,
    lbo: 16,
    sbo: 1024,
};

fn k_sw(w: usize) -> Lay {
    Lay {
        mn_major: false,
        w,
        lbo: 16,
        sbo: 128 * w,
    }
}

/// K-major interleave: core matrices (8 rows × 16 bytes) column of `rows / 8` along MN (SBO 128),
/// the second K half at LBO.
fn k_inter(rows: usize) -> Lay {
    Lay {
        mn_major: false,
        w: 1,
        lbo: rows * 16,
        sbo: 128,
    }
}

/// MN-major swizzled: atoms of (16·W bytes along MN) × 8 K rows; K groups at SBO, MN atoms at LBO.
fn mn_sw(w: usize) -> Lay {
    Lay {
        mn_major: true,
        w,
        lbo: 2 * 128 * w,
        sbo: 128 * w,
    }
}

fn mn_inter(rows: usize) -> Lay {
    Lay {
        mn_major: true,
        w: 1,
        lbo: rows * 16,
        sbo: 128,
    }
}

#[test]
fn wgmma_bf16_k_major_128b_swizzle_several_n() {
    for n in [8, 16, 64, 128, 256] {
        check(&k_case(T::BF16, n, K128, K128));
    }
}

#[test]
fn wgmma_every_swizzle_mode_k_major() {
    for (w, n) in [(1, 24), (2, 32), (4, 40), (8, 72)] {
        let la = if w == 1 { k_inter(64) } else { k_sw(w) };
        let lb = if w == 1 { k_inter(n) } else { k_sw(w) };
        check(&k_case(T::BF16, n, la, lb));
        check(&k_case(T::F16, n, la, lb));
    }
}

#[test]
fn wgmma_every_swizzle_mode_mn_major() {
    for (w, n) in [(1, 32), (2, 48), (4, 64), (8, 128)] {
        let la = if w == 1 { mn_inter(64) } else { mn_sw(w) };
        let lb = if w == 1 { mn_inter(n) } else { mn_sw(w) };
        check(&k_case(T::BF16, n, la, lb));
        // A K-major, B MN-major and the reverse
        let ka = if w == 1 { k_inter(64) } else { k_sw(w) };
        check(&k_case(T::F16, n, ka, lb));
        let kb = if w == 1 { k_inter(n) } else { k_sw(w) };
        check(&k_case(T::BF16, n, la, kb));
    }
}

#[test]
fn wgmma_a_from_registers() {
    for n in [8, 64, 256] {
        let mut c = k_case(T::BF16, n, K128, K128);
        c.a_regs = true;
        check(&c);
        c.lb = mn_sw(8);
        c.t = T::F16;
        c.tb = T::F16;
        check(&c);
    }
}

#[test]
fn wgmma_scale_d_and_negation() {
    for (scale_d, neg_a, neg_b) in [
        (false, false, false),
        (true, true, false),
        (true, false, true),
        (false, true, true),
    ] {
        let mut c = k_case(T::BF16, 32, K128, K128);
        c.scale_d = scale_d;
        c.neg_a = neg_a;
        c.neg_b = neg_b;
        check(&c);
        c.a_regs = true;
        check(&c);
    }
}

#[test]
fn wgmma_f16_accumulator() {
    let mut c = k_case(T::F16, 64, K128, K128);
    c.acc_f16 = true;
    check(&c);
    c.a_regs = true;
    c.scale_d = false;
    check(&c);
}

#[test]
fn wgmma_fp8_k32() {
    for (ta, n) in [(T::E4M3, 64), (T::E5M2, 32), (T::E4M3, 256)] {
        check(&k_case(ta, n, K128, K128));
        let mut c = k_case(ta, n, k_sw(4), k_sw(2));
        c.neg_b = true;
        check(&c);
        c.a_regs = true;
        check(&c);
        let mut c = k_case(ta, n, k_inter(64), k_inter(n));
        c.scale_d = false;
        check(&c);
    }
    // mixed FP8 operands, and f16 accumulators from FP8
    let mut c = k_case(T::E4M3, 48, K128, K128);
    c.tb = T::E5M2;
    check(&c);
    c.t = T::E5M2;
    c.tb = T::E4M3;
    c.a_regs = true;
    check(&c);
    c.acc_f16 = true;
    check(&c);
}

/// The GEMM mainloop pattern: a 64-wide K tile in one 128B-swizzled K-major atom row, consumed
/// by four chained wgmmas whose descriptors advance the start address by 32 bytes each (CuTe's
/// DescriptorIterator), accumulating into the same registers within one commit group.
#[test]
fn wgmma_chained_k_advance_inside_128b_swizzle() {
    for n in [64, 128] {
        let mut c = k_case(T::BF16, n, K128, K128);
        c.chain = 4;
        c.kstep = 32;
        check(&c);
    }
    // MN-major: K advances by 16 rows = two 8-row groups of SBO
    let mut c = k_case(T::BF16, 64, mn_sw(8), mn_sw(8));
    c.la.sbo = 1024;
    c.lb.sbo = 1024;
    c.la.lbo = 8192;
    c.lb.lbo = 8192;
    c.chain = 4;
    c.kstep = 2048;
    check(&c);
}

fn bug_case(bug: Bug) -> Case {
    let mut c = k_case(T::BF16, 64, K128, K128);
    c.bug = bug;
    c
}

fn expect_flag(bug: Bug, kind: FaultKind) {
    let c = bug_case(bug);
    let (f, src) = match run_case(&c, 3) {
        Ok(_) => panic!("{bug:?} must be flagged"),
        Err(x) => x,
    };
    println!("{f}");
    assert_eq!(f.kind, kind, "{bug:?}: {f}");
    if bug == Bug::NoFence {
        assert_eq!(f.ptx_line, line_of(&src, "// WGMMA0"), "{f}");
    } else {
        assert_eq!(f.ptx_line, line_of(&src, "// FLAG"), "{f}");
    }
}

#[test]
fn wgmma_hazards_flagged() {
    expect_flag(Bug::ReadAccEarly, FaultKind::AsyncHazard);
    expect_flag(Bug::NoWait, FaultKind::AsyncHazard);
    expect_flag(Bug::SmemEarly, FaultKind::AsyncHazard);
    expect_flag(Bug::NoFence, FaultKind::AsyncHazard);
    // the fixed twin of the early shared write: the same store after the wait is fine
    check(&bug_case(Bug::SmemAfter));
}

/// Asynchrony: the accumulators keep their old values until the wait (checked without the
/// hazard: a kernel that stores them early is flagged, so read them through a copy made by the
/// wgmma's issue-time view — here, the register copy taken before the wgmma).
#[test]
fn wgmma_results_land_at_wait_group() {
    // chain of two commit groups: wait_group 1 completes only the first
    let src = r#".version 8.4
.target sm_90a
.address_size 64
.visible .entry two(.param .u64 p_out)
{
	.reg .pred %p<2>;
	.reg .b32 %r<8>;
	.reg .b64 %rd<8>;
	.reg .f32 %f<8>;
	.shared .align 1024 .b8 smem[2048];
	ld.param.u64 %rd1, [p_out];
	cvta.to.global.u64 %rd1, %rd1;
	mov.u32 %r1, %tid.x;
	// A (64 x 16, K-major interleave, one 8x8 core matrix per 128 bytes) = all ones (bf16 0x3f80),
	// B (8 x 16) likewise: every D element is 16 per wgmma
	mov.u32 %r2, 0x3f803f80;
	shl.b32 %r3, %r1, 4;
	mov.u32 %r4, smem;
	add.u32 %r5, %r4, %r3;
	st.shared.v4.u32 [%r5], {%r2, %r2, %r2, %r2};
	bar.sync 0;
	// interleave: LBO 1024 (second K half), SBO 128; A at 0, B at 0 too (all ones)
	mov.b64 %rd2, 0x0000000800400000;
	mov.f32 %f0, 0f00000000;
	mov.f32 %f1, 0f00000000;
	mov.f32 %f2, 0f00000000;
	mov.f32 %f3, 0f00000000;
	setp.eq.u32 %p1, %r1, %r1;
	wgmma.fence.sync.aligned;
	wgmma.mma_async.sync.aligned.m64n8k16.f32.bf16.bf16 {%f0, %f1, %f2, %f3}, %rd2, %rd2, %p1, 1, 1, 0, 0;
	wgmma.commit_group.sync.aligned;
	wgmma.mma_async.sync.aligned.m64n8k16.f32.bf16.bf16 {%f0, %f1, %f2, %f3}, %rd2, %rd2, %p1, 1, 1, 0, 0;
	wgmma.commit_group.sync.aligned;
	wgmma.wait_group.sync.aligned 1;
	wgmma.wait_group.sync.aligned 0;
	mul.wide.u32 %rd3, %r1, 16;
	add.s64 %rd4, %rd1, %rd3;
	st.global.v4.f32 [%rd4], {%f0, %f1, %f2, %f3};
	ret;
}
"#;
    let mut e = Emu::from_module(Module::parse(src).unwrap());
    let out = e.alloc(128 * 16);
    e.ok("two", lin(1, 128), &[p64(out)]);
    assert!(e.f32s(out, 128 * 4).iter().all(|&x| x == 32.0));
    // the same, with the first group's accumulator read between the two waits: flagged,
    // because the second wgmma (same registers) is still outstanding
    let bad = src.replace(
        "\twgmma.wait_group.sync.aligned 1;\n",
        "\twgmma.wait_group.sync.aligned 1;\n\tst.global.f32 [%rd1], %f0; // FLAG\n",
    );
    let mut e = Emu::from_module(Module::parse(&bad).unwrap());
    let out = e.alloc(128 * 16);
    let f = e
        .try_run("two", lin(1, 128), &[p64(out)])
        .expect_err("read between waits must be flagged");
    assert_eq!(f.kind, FaultKind::AsyncHazard, "{f}");
    assert_eq!(f.ptx_line, line_of(&bad, "// FLAG"));
}

/// `stmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16`: lane l supplies element pair
/// (row l/4, columns 2(l%4), 2(l%4)+1) of matrix i in register i (ldmatrix's fragment, CuTe
/// `SM90_U32x{1,2,4}_STSM_N` / `_T`), lanes 8i..8i+7 the row addresses of matrix i. Each lane
/// stores its register values (value = 256·matrix + 16·row + column, computed by the kernel
/// from the fragment formula) and the test reads the 8×8 matrices back from shared memory.
#[test]
fn stmatrix_x1_x2_x4_and_trans() {
    for (num, trans) in [
        (1, false),
        (2, false),
        (4, false),
        (1, true),
        (2, true),
        (4, true),
    ] {
        let regs: Vec<String> = (0..num).map(|i| format!("%s{i}")).collect();
        let mut body = String::new();
        for i in 0..num {
            // value pair of matrix i for this lane: (g, 2t) and (g, 2t+1) → 256 i + 16 g + 2t (+1)
            body += &format!(
                "\tmad.lo.u32 %r10, %r3, 16, {};\n\tshl.b32 %r11, %r4, 1;\n\tadd.u32 %r10, %r10, %r11;\n\tadd.u32 %r12, %r10, 1;\n\tshl.b32 %r12, %r12, 16;\n\tor.b32 %s{i}, %r10, %r12;\n",
                256 * i
            );
        }
        let src = format!(
            r#".version 8.4
.target sm_90a
.address_size 64
.visible .entry st(.param .u64 p_out)
{{
	.reg .b32 %r<16>;
	.reg .b32 %s<4>;
	.reg .b64 %rd<4>;
	.shared .align 16 .b8 sm[512];
	ld.param.u64 %rd1, [p_out];
	cvta.to.global.u64 %rd1, %rd1;
	mov.u32 %r1, %tid.x;
	shr.u32 %r3, %r1, 2;
	and.b32 %r4, %r1, 3;
{body}	// row address of lane l: matrix l/8, row l%8, rows of 16 bytes, matrices 128 bytes apart
	mov.u32 %r5, sm;
	shl.b32 %r6, %r1, 4;
	add.u32 %r7, %r5, %r6;
	stmatrix.sync.aligned.m8n8.x{num}{t}.shared.b16 [%r7], {{{regs}}};
	bar.sync 0;
	// copy the matrices out: lane l copies 16 bytes of row l
	setp.ge.u32 %p1, %r1, {rows};
	@%p1 bra DONE;
	ld.shared.v4.u32 {{%r8, %r9, %r10, %r11}}, [%r7];
	mul.wide.u32 %rd2, %r1, 16;
	add.s64 %rd3, %rd1, %rd2;
	st.global.v4.u32 [%rd3], {{%r8, %r9, %r10, %r11}};
DONE:
	ret;
}}
"#,
            t = if trans { ".trans" } else { "" },
            regs = regs.join(", "),
            rows = 8 * num
        )
        .replace(
            "\t.reg .b64 %rd<4>;",
            "\t.reg .b64 %rd<4>;\n\t.reg .pred %p<2>;",
        );
        let mut e =
            Emu::from_module(Module::parse(&src).unwrap_or_else(|er| panic!("{er}\n{src}")));
        let out = e.alloc(512);
        e.ok("st", lin(1, 32), &[p64(out)]);
        let b = e.bytes(out, 128 * num);
        for m in 0..num {
            for r in 0..8 {
                for c in 0..8 {
                    let o = m * 128 + r * 16 + c * 2;
                    let got = u16::from_le_bytes([b[o], b[o + 1]]) as usize;
                    // element (r, c) of stored matrix m; with .trans the fragment's (g, j) lands at (j, g)
                    let (g, j) = if trans { (c, r) } else { (r, c) };
                    assert_eq!(
                        got,
                        256 * m + 16 * g + j,
                        "x{num} trans={trans} m{m} ({r},{c})"
                    );
                }
            }
        }
    }
}

/// FP8 `cvt` through PTX, hand-computed bit patterns (OCP E4M3 / E5M2; E4M3 saturates to 448 =
/// 0x7e and has NaN 0x7f, E5M2 saturates to 57344 = 0x7b).
#[test]
fn cvt_fp8_forms() {
    let src = r#".version 8.4
.target sm_90a
.address_size 64
.visible .entry cv(.param .u64 p_in, .param .u64 p_out)
{
	.reg .b16 %h<4>;
	.reg .b32 %r<8>;
	.reg .f32 %f<4>;
	.reg .b64 %rd<6>;
	ld.param.u64 %rd1, [p_in];
	ld.param.u64 %rd2, [p_out];
	cvta.to.global.u64 %rd1, %rd1;
	cvta.to.global.u64 %rd2, %rd2;
	mov.u32 %r1, %tid.x;
	mul.wide.u32 %rd3, %r1, 8;
	add.s64 %rd4, %rd1, %rd3;
	ld.global.f32 %f1, [%rd4];
	ld.global.f32 %f2, [%rd4+4];
	cvt.rn.satfinite.e4m3x2.f32 %h1, %f1, %f2;
	cvt.rn.satfinite.e5m2x2.f32 %h2, %f1, %f2;
	cvt.rn.f16x2.e4m3x2 %r2, %h1;
	cvt.rn.f16x2.e5m2x2 %r3, %h2;
	cvt.rn.satfinite.relu.e4m3x2.f16x2 %h3, %r2;
	cvt.u32.u16 %r4, %h1;
	cvt.u32.u16 %r5, %h2;
	cvt.u32.u16 %r6, %h3;
	mul.wide.u32 %rd3, %r1, 20;
	add.s64 %rd5, %rd2, %rd3;
	st.global.u32 [%rd5], %r4;
	st.global.u32 [%rd5+4], %r5;
	st.global.u32 [%rd5+8], %r2;
	st.global.u32 [%rd5+12], %r3;
	st.global.u32 [%rd5+16], %r6;
	ret;
}
"#;
    // (a, b) pairs; a → upper byte
    let cases: [(f32, f32); 6] = [
        (1.0, -0.5),
        (1.0625, 1.1875), // ties: to even
        (500.0, -1e30),   // e4m3 saturates; e5m2 rounds 500 to 512
        (f32::INFINITY, f32::NAN),
        (0.001953125, 0.0009765625), // 2^-9 (e4m3 min subnormal), 2^-10 (tie → 0)
        (3.0e4, 1.0e5),
    ];
    // expected: e4m3x2, e5m2x2, f16x2 of the e4m3 pair, f16x2 of the e5m2 pair, relu e4m3x2 of it
    let want: [[u32; 5]; 6] = [
        [0x38b0, 0x3cb8, 0x3c00_b800, 0x3c00_b800, 0x3800],
        [0x383a, 0x3c3d, 0x3c00_3d00, 0x3c00_3d00, 0x383a],
        [0x7efe, 0x60fb, 0x5f00_df00, 0x6000_fb00, 0x7e00],
        [0x7e7f, 0x7b7f, 0x5f00_7fff, 0x7b00_7fff, 0x7e7f],
        [0x0100, 0x1814, 0x1800_0000, 0x1800_1400, 0x0100],
        [0x7e7e, 0x777b, 0x5f00_5f00, 0x7700_7b00, 0x7e7e],
    ];
    let mut e = Emu::from_module(Module::parse(src).unwrap());
    let inp: Vec<f32> = cases.iter().flat_map(|&(a, b)| [a, b]).collect();
    let pin = e.up_f32(&inp);
    let pout = e.alloc(20 * cases.len());
    e.ok("cv", lin(1, cases.len() as u32), &[p64(pin), p64(pout)]);
    let got = e.u32s(pout, 5 * cases.len());
    for (i, w) in want.iter().enumerate() {
        assert_eq!(
            &got[5 * i..5 * i + 5],
            w,
            "case {i} {:?}: {:#x?}",
            cases[i],
            &got[5 * i..5 * i + 5]
        );
    }
}
