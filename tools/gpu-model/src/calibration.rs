//! Calibration: public step-by-step kernel optimisation series with published throughput on a
//! named GPU, and the counters of each step.
//!
//! Each step's kernel is written in `tools/gpu-model/calibration/*.cu` (committed PTX and ptxas
//! reports beside it). Until the emulator feeds [`crate::counters::BlockAccumulator`] itself, the
//! counters come from [`trace_counters`]: a warp-level replay of each kernel's loops and index
//! arithmetic (the same expressions as the `.cu`) that calls the accumulator with every memory
//! instruction's lane addresses, every FMA / tensor instruction and every memory wait, for a
//! deterministic sample of blocks (the `PTX_EMU_SAMPLE_BLOCKS` rule) scaled to the grid. Warp
//! instructions that are neither memory nor math (address arithmetic, loop control) are not
//! replayed: the caller supplies the kernel's executed warp-instruction count (the calibration
//! test measures it by running the PTX through `ptx-emu` at two small sizes and extrapolating),
//! or [`Kernel::other_per_iter`] gives it from the PTX loop body where the emulator cannot run
//! the kernel (Hopper instructions). Switching to the emulator's own counters replaces
//! [`trace_counters`] by one sampled emulator launch per step.

use crate::counters::{
    Access, BlockAccumulator, Counters, LaunchAccumulator, LaunchInfo, TensorDtype,
};
use crate::sampling::{block_coords, sample_blocks};

/// One published optimisation series.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: &'static str,
    /// `PTX_EMU_GPU` name of the GPU the numbers were published on.
    pub gpu: &'static str,
    pub source: &'static str,
    /// Square problem size (M = N = K).
    pub n: u64,
    pub steps: Vec<Step>,
}

/// One step of a series.
#[derive(Debug, Clone)]
pub struct Step {
    pub label: &'static str,
    pub kernel: Kernel,
    /// Published throughput (GFLOP/s, 2·M·N·K per run).
    pub published_gflops: f64,
}

/// The calibration kernels (entry names in the committed PTX).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    Sgemm1Naive,
    Sgemm2Coalesce,
    Sgemm3Smem,
    Sgemm4OneD,
    Sgemm5TwoD,
    Sgemm6Vectorize,
    Sgemm10Warptile,
    Hgemm1Simt,
    Hgemm2TmaWgmma,
    Hgemm4WarpSpecialized,
    Hgemm11Cluster,
}

/// Launch shape and resources of a kernel for problem size `n`.
#[derive(Debug, Clone)]
pub struct Shape {
    pub grid: [u32; 3],
    pub block: [u32; 3],
    /// Registers per thread from the committed ptxas report (sm_80 for the compute_80 kernels,
    /// sm_90a for the Hopper ones).
    pub regs: u32,
    pub smem_static: u64,
    pub smem_dynamic: u64,
}

impl Shape {
    /// The launch description of kernel `k` in this shape, reads bounded by `read_cap` bytes.
    pub fn launch_info(&self, k: Kernel, read_cap: u64) -> LaunchInfo {
        LaunchInfo {
            kernel: k.entry().to_string(),
            grid: self.grid,
            block: self.block,
            registers_per_thread: Some(self.regs),
            smem_static: self.smem_static,
            smem_dynamic: self.smem_dynamic,
            read_footprint_cap_bytes: Some(read_cap),
            read_allocations: Vec::new(),
        }
    }
}

impl Kernel {
    pub fn entry(self) -> &'static str {
        match self {
            Kernel::Sgemm1Naive => "sgemm1_naive",
            Kernel::Sgemm2Coalesce => "sgemm2_coalesce",
            Kernel::Sgemm3Smem => "sgemm3_smem",
            Kernel::Sgemm4OneD => "sgemm4_1d",
            Kernel::Sgemm5TwoD => "sgemm5_2d",
            Kernel::Sgemm6Vectorize => "sgemm6_vectorize",
            Kernel::Sgemm10Warptile => "sgemm10_warptile",
            Kernel::Hgemm1Simt => "hgemm1_simt",
            Kernel::Hgemm2TmaWgmma => "hgemm2_tma_wgmma",
            Kernel::Hgemm4WarpSpecialized => "hgemm4_warp_specialized",
            Kernel::Hgemm11Cluster => "hgemm11_cluster",
        }
    }

    /// The committed PTX file (relative to `tools/gpu-model/calibration/ptx`).
    pub fn ptx_file(self) -> &'static str {
        match self {
            Kernel::Hgemm1Simt => "hgemm_simt.ptx",
            Kernel::Hgemm2TmaWgmma | Kernel::Hgemm4WarpSpecialized | Kernel::Hgemm11Cluster => {
                "hgemm_h100.ptx"
            }
            _ => "sgemm_a6000.ptx",
        }
    }

    /// Whether the current emulator can run the PTX (no Hopper-only instructions).
    pub fn emulator_runs(self) -> bool {
        !matches!(
            self,
            Kernel::Hgemm2TmaWgmma | Kernel::Hgemm4WarpSpecialized | Kernel::Hgemm11Cluster
        )
    }

    /// Launch shape for an `n`×`n`×`n` problem. Registers and static shared memory are the
    /// committed ptxas report's (`calibration/reports`).
    pub fn shape(self, n: u64) -> Shape {
        let n32 = n as u32;
        let sq = |t: u32| [n32.div_ceil(t), n32.div_ceil(t), 1];
        let (grid, block, regs, smem_static, smem_dynamic) = match self {
            Kernel::Sgemm1Naive => (sq(32), [32, 32, 1], 32, 0, 0),
            Kernel::Sgemm2Coalesce => (sq(32), [1024, 1, 1], 32, 0, 0),
            Kernel::Sgemm3Smem => (sq(32), [1024, 1, 1], 31, 8192, 0),
            Kernel::Sgemm4OneD => (sq(64), [512, 1, 1], 46, 4096, 0),
            Kernel::Sgemm5TwoD => (sq(128), [256, 1, 1], 101, 8192, 0),
            Kernel::Sgemm6Vectorize => (sq(128), [256, 1, 1], 116, 8192, 0),
            Kernel::Sgemm10Warptile => ([n32 / 128, n32 / 64, 1], [128, 1, 1], 116, 6144, 0),
            Kernel::Hgemm1Simt => (sq(128), [256, 1, 1], HGEMM1_REGS, 8192, 0),
            Kernel::Hgemm2TmaWgmma => (
                [(n32 / 128) * (n32 / 128), 1, 1],
                [128, 1, 1],
                HGEMM2_REGS,
                0,
                2 * 128 * 64 * 2 + 1024,
            ),
            Kernel::Hgemm4WarpSpecialized => {
                let t = n32.div_ceil(192);
                (
                    [t * t, 1, 1],
                    [512, 1, 1],
                    HGEMM4_REGS,
                    0,
                    4 * 2 * 192 * 64 * 2 + 1024,
                )
            }
            Kernel::Hgemm11Cluster => (
                [128, 1, 1],
                [384, 1, 1],
                HGEMM11_REGS,
                0,
                3 * (128 + 256) * 64 * 2 + 128 * 256 * 2 + 1024,
            ),
        };
        Shape {
            grid,
            block,
            regs,
            smem_static,
            smem_dynamic,
        }
    }
}

// Registers per thread of the Hopper kernels from calibration/reports/*.txt (sm_90a). The
// warp-specialised kernels use `setmaxnreg`; the report gives the launch value.
const HGEMM1_REGS: u32 = 115;
const HGEMM2_REGS: u32 = 187;
const HGEMM4_REGS: u32 = 128;
const HGEMM11_REGS: u32 = 168;

/// The calibration series.
pub fn series() -> Vec<Series> {
    vec![
        Series {
            name: "SGEMM worklog (Simon Boehm)",
            gpu: "a6000",
            source: "https://siboehm.com/articles/22/CUDA-MMM (table of GFLOP/s per kernel, RTX A6000, 4096^3 fp32)",
            n: 4096,
            steps: vec![
                Step { label: "1: naive", kernel: Kernel::Sgemm1Naive, published_gflops: 309.0 },
                Step { label: "2: GMEM coalescing", kernel: Kernel::Sgemm2Coalesce, published_gflops: 1986.5 },
                Step { label: "3: SMEM caching", kernel: Kernel::Sgemm3Smem, published_gflops: 2980.3 },
                Step { label: "4: 1D blocktiling", kernel: Kernel::Sgemm4OneD, published_gflops: 8474.7 },
                Step { label: "5: 2D blocktiling", kernel: Kernel::Sgemm5TwoD, published_gflops: 15971.7 },
                Step { label: "6: vectorized mem access", kernel: Kernel::Sgemm6Vectorize, published_gflops: 18237.3 },
                Step { label: "10: warptiling", kernel: Kernel::Sgemm10Warptile, published_gflops: 21779.3 },
            ],
        },
        Series {
            name: "H100 BF16 GEMM worklog (Pranjal Shankhdhar, fast.cu)",
            gpu: "h100-sxm",
            source: "https://github.com/pranjalssh/fast.cu README (H100 SXM, N=8192 bf16 in, fp32 accumulate)",
            n: 8192,
            steps: vec![
                Step { label: "1: SIMT tiled (no tensor cores)", kernel: Kernel::Hgemm1Simt, published_gflops: 32_400.0 },
                Step { label: "2: TMA + WGMMA, one warpgroup", kernel: Kernel::Hgemm2TmaWgmma, published_gflops: 488_500.0 },
                Step { label: "4: producer/consumer warpgroups", kernel: Kernel::Hgemm4WarpSpecialized, published_gflops: 635_400.0 },
                Step { label: "11: persistent, clusters + multicast, TMA store", kernel: Kernel::Hgemm11Cluster, published_gflops: 807_700.0 },
            ],
        },
    ]
}

const A_BASE: u64 = 0;
const B_BASE: u64 = 1 << 40;
const C_BASE: u64 = 2 << 40;

/// One warp's replay context.
struct W<'a> {
    acc: &'a mut BlockAccumulator,
    warp: u32,
    /// Bytes of global loads issued since the last wait.
    pending: u64,
    /// Count "other" instructions (kernels the emulator cannot run).
    count_other: bool,
}

impl W<'_> {
    fn lanes(f: impl Fn(u32) -> Option<u64>) -> [Option<u64>; 32] {
        std::array::from_fn(|l| f(l as u32))
    }
    fn active(l: &[Option<u64>; 32]) -> u32 {
        l.iter().filter(|a| a.is_some()).count() as u32
    }
    fn ldg(&mut self, width: u32, f: impl Fn(u32) -> Option<u64>) {
        let l = Self::lanes(f);
        self.acc.on_warp_inst(Self::active(&l));
        let before = self.acc.c.global_ld_sectors;
        self.acc.on_global_access(Access::Load, width, &l);
        self.pending += (self.acc.c.global_ld_sectors - before) * 32;
    }
    fn stg(&mut self, width: u32, f: impl Fn(u32) -> Option<u64>) {
        let l = Self::lanes(f);
        self.acc.on_warp_inst(Self::active(&l));
        self.acc.on_global_access(Access::Store, width, &l);
    }
    fn lds(&mut self, width: u32, f: impl Fn(u32) -> Option<u64>) {
        let l = Self::lanes(f);
        self.acc.on_warp_inst(Self::active(&l));
        self.acc.on_shared_access(Access::Load, width, &l);
    }
    fn sts(&mut self, width: u32, f: impl Fn(u32) -> Option<u64>) {
        let l = Self::lanes(f);
        self.acc.on_warp_inst(Self::active(&l));
        self.acc.on_shared_access(Access::Store, width, &l);
    }
    /// `n` warp-level FP32 FMAs with all lanes active.
    fn ffma(&mut self, n: u64) {
        for _ in 0..n {
            self.acc.on_warp_inst(32);
        }
        self.acc.on_fp32(n * 64);
    }
    fn other(&mut self, n: u64) {
        if self.count_other {
            for _ in 0..n {
                self.acc.on_warp_inst(32);
            }
        }
    }
    fn bar(&mut self) {
        self.acc.on_warp_inst(32);
    }
    /// Wait for the loads issued since the last wait (`in_flight` transfer groups outstanding).
    fn wait(&mut self, in_flight: u32) {
        if self.pending > 0 {
            self.acc.on_mem_wait(self.warp, self.pending, in_flight);
        }
        self.pending = 0;
    }
    fn wait_bytes(&mut self, bytes: u64, in_flight: u32) {
        self.acc.on_mem_wait(self.warp, bytes, in_flight);
    }
    /// A TMA box load by one thread: `rows` rows of `row_bytes` at `row_stride`.
    fn tma_load(&mut self, base: u64, rows: u64, row_bytes: u64, row_stride: u64) {
        self.acc.on_warp_inst(1);
        for r in 0..rows {
            self.acc.on_bulk_copy(base + r * row_stride, row_bytes);
        }
        // One bulk instruction is one request, whatever the box size.
        self.acc.c.global_ldgsts_requests -= rows - 1;
    }
    fn wgmma(&mut self, m: u32, n: u32, k: u32) {
        self.acc.on_warp_inst(32);
        self.acc.on_wgmma_warp(m, n, k, TensorDtype::Bf16);
    }
}

fn f32_at(base: u64, idx: u64) -> Option<u64> {
    Some(base + 4 * idx)
}

/// Replay one block of `k` for problem size `n` into `acc`.
fn trace_block(k: Kernel, n: u64, block: [u32; 3], acc: &mut BlockAccumulator) {
    let s = k.shape(n);
    let threads = s.block[0] * s.block[1];
    let warps = threads.div_ceil(32);
    let (bx, by) = (u64::from(block[0]), u64::from(block[1]));
    let count_other = !k.emulator_runs();
    for w in 0..warps {
        let mut x = W {
            acc: &mut *acc,
            warp: w,
            pending: 0,
            count_other,
        };
        let tid = |l: u32| u64::from(w * 32 + l);
        match k {
            Kernel::Sgemm1Naive | Kernel::Sgemm2Coalesce => {
                // (row, col) of each lane.
                let rc = |l: u32| -> (u64, u64) {
                    if k == Kernel::Sgemm1Naive {
                        (bx * 32 + u64::from(l), by * 32 + u64::from(w))
                    } else {
                        (bx * 32 + u64::from(w), by * 32 + u64::from(l))
                    }
                };
                let mut i = 0;
                while i < n {
                    // The PTX loop is unrolled 4x: 8 loads, then 4 FMAs.
                    for j in i..i + 4 {
                        x.ldg(4, |l| f32_at(A_BASE, rc(l).0 * n + j));
                        x.ldg(4, |l| f32_at(B_BASE, j * n + rc(l).1));
                    }
                    x.wait(1);
                    x.ffma(4);
                    i += 4;
                }
                x.ldg(4, |l| f32_at(C_BASE, rc(l).0 * n + rc(l).1));
                x.wait(1);
                x.stg(4, |l| f32_at(C_BASE, rc(l).0 * n + rc(l).1));
            }
            Kernel::Sgemm3Smem => {
                let (tr, row0, col0) = (u64::from(w), bx * 32, by * 32);
                for k0 in (0..n).step_by(32) {
                    x.ldg(4, |l| f32_at(A_BASE, (row0 + tr) * n + k0 + u64::from(l)));
                    x.ldg(4, |l| f32_at(B_BASE, (k0 + tr) * n + col0 + u64::from(l)));
                    x.wait(1);
                    x.sts(4, |l| Some(4 * (tr * 32 + u64::from(l))));
                    x.sts(4, |l| Some(4096 + 4 * (tr * 32 + u64::from(l))));
                    x.bar();
                    for d in 0..32 {
                        x.lds(4, |_| Some(4 * (tr * 32 + d)));
                        x.lds(4, |l| Some(4096 + 4 * (d * 32 + u64::from(l))));
                        x.ffma(1);
                    }
                    x.bar();
                }
                x.ldg(4, |l| f32_at(C_BASE, (row0 + tr) * n + col0 + u64::from(l)));
                x.wait(1);
                x.stg(4, |l| f32_at(C_BASE, (row0 + tr) * n + col0 + u64::from(l)));
            }
            Kernel::Sgemm4OneD => {
                let (row0, col0) = (by * 64, bx * 64);
                for k0 in (0..n).step_by(8) {
                    x.ldg(4, |l| {
                        f32_at(A_BASE, (row0 + tid(l) / 8) * n + k0 + tid(l) % 8)
                    });
                    x.ldg(4, |l| {
                        f32_at(B_BASE, (k0 + tid(l) / 64) * n + col0 + tid(l) % 64)
                    });
                    x.wait(1);
                    x.sts(4, |l| Some(4 * tid(l)));
                    x.sts(4, |l| Some(2048 + 4 * tid(l)));
                    x.bar();
                    for d in 0..8 {
                        x.lds(4, |l| Some(2048 + 4 * (d * 64 + tid(l) % 64)));
                        for r in 0..8 {
                            x.lds(4, |l| Some(4 * ((tid(l) / 64 * 8 + r) * 8 + d)));
                        }
                        x.ffma(8);
                    }
                    x.bar();
                }
                for r in 0..8 {
                    let a = |l: u32| {
                        f32_at(
                            C_BASE,
                            (row0 + tid(l) / 64 * 8 + r) * n + col0 + tid(l) % 64,
                        )
                    };
                    x.ldg(4, a);
                    x.wait(1);
                    x.stg(4, a);
                }
            }
            Kernel::Sgemm5TwoD => {
                let (row0, col0) = (by * 128, bx * 128);
                let (tr, tc) = (|l: u32| tid(l) / 16, |l: u32| tid(l) % 16);
                for k0 in (0..n).step_by(8) {
                    for o in (0..128).step_by(32) {
                        x.ldg(4, |l| {
                            f32_at(A_BASE, (row0 + tid(l) / 8 + o) * n + k0 + tid(l) % 8)
                        });
                    }
                    for o in (0..8).step_by(2) {
                        x.ldg(4, |l| {
                            f32_at(B_BASE, (k0 + tid(l) / 128 + o) * n + col0 + tid(l) % 128)
                        });
                    }
                    x.wait(1);
                    for o in (0..128).step_by(32) {
                        x.sts(4, |l| Some(4 * ((tid(l) / 8 + o) * 8 + tid(l) % 8)));
                    }
                    for o in (0..8).step_by(2) {
                        x.sts(4, |l| {
                            Some(4096 + 4 * ((tid(l) / 128 + o) * 128 + tid(l) % 128))
                        });
                    }
                    x.bar();
                    for d in 0..8 {
                        for i in 0..8 {
                            x.lds(4, |l| Some(4 * ((tr(l) * 8 + i) * 8 + d)));
                        }
                        for i in 0..8 {
                            x.lds(4, |l| Some(4096 + 4 * (d * 128 + tc(l) * 8 + i)));
                        }
                        x.ffma(64);
                    }
                    x.bar();
                }
                for i in 0..8 {
                    for j in 0..8 {
                        let a = |l: u32| {
                            f32_at(C_BASE, (row0 + tr(l) * 8 + i) * n + col0 + tc(l) * 8 + j)
                        };
                        x.ldg(4, a);
                        x.wait(1);
                        x.stg(4, a);
                    }
                }
            }
            Kernel::Sgemm6Vectorize | Kernel::Hgemm1Simt => {
                let (bm, bn, bk, tm, tn) = (128u64, 128u64, 8u64, 8u64, 8u64);
                vec_body(&mut x, k, n, bx, by, w, (bm, bn, bk, tm, tn));
            }
            Kernel::Sgemm10Warptile => {
                let (bm, bn, bk, wm, wn, wniter, tm, tn, nt) =
                    (64u64, 128u64, 8u64, 32u64, 64u64, 2u64, 4u64, 4u64, 128u64);
                let wmiter = (wm * wn) / (32 * tm * tn * wniter);
                let (wsm, wsn) = (wm / wmiter, wn / wniter);
                let (row0, col0) = (by * bm, bx * bn);
                let (wr, wc) = (u64::from(w) / (bn / wn), u64::from(w) % (bn / wn));
                let tcw = |l: u32| u64::from(l) % (wsn / tn);
                let trw = |l: u32| u64::from(l) / (wsn / tn);
                let as_ = 0u64;
                let bs = 4 * bm * bk;
                for k0 in (0..n).step_by(bk as usize) {
                    load_tiles(&mut x, w, n, row0, col0, k0, (bm, bn, bk), nt, as_, bs);
                    x.bar();
                    for d in 0..bk {
                        for m in 0..wmiter {
                            x.lds(16, |l| {
                                Some(as_ + 4 * (d * bm + wr * wm + m * wsm + trw(l) * tm))
                            });
                        }
                        for nn in 0..wniter {
                            x.lds(16, |l| {
                                Some(bs + 4 * (d * bn + wc * wn + nn * wsn + tcw(l) * tn))
                            });
                        }
                        x.ffma(wmiter * wniter * tm * tn);
                    }
                    x.bar();
                }
                for m in 0..wmiter {
                    for nn in 0..wniter {
                        for i in 0..tm {
                            let a = |l: u32| {
                                f32_at(
                                    C_BASE,
                                    (row0 + wr * wm + m * wsm + trw(l) * tm + i) * n
                                        + col0
                                        + wc * wn
                                        + nn * wsn
                                        + tcw(l) * tn,
                                )
                            };
                            x.ldg(16, a);
                            x.wait(1);
                            x.stg(16, a);
                        }
                    }
                }
            }
            Kernel::Hgemm2TmaWgmma => {
                // One warpgroup, BM = BN = 128, BK = 64; A row-major (K contiguous), B stored
                // N x K (column-major K x N), C column-major; synchronous: load, wait, compute, wait.
                let tiles_n = n / 128;
                let (m0, n0) = ((bx / tiles_n) * 128, (bx % tiles_n) * 128);
                for k0 in (0..n).step_by(64) {
                    if w == 0 {
                        x.tma_load(A_BASE + 2 * (m0 * n + k0), 128, 128, 2 * n);
                        x.tma_load(B_BASE + 2 * (n0 * n + k0), 128, 128, 2 * n);
                    }
                    x.wait_bytes(2 * 128 * 64 * 2, 1);
                    for _ in 0..2 * 4 {
                        x.wgmma(64, 128, 16);
                    }
                    x.other(HGEMM2_OTHER_PER_ITER);
                }
                wgmma_epilogue(&mut x, n, m0, n0, 2, 128, w % 4);
            }
            Kernel::Hgemm4WarpSpecialized => {
                // Warpgroup 0 produces (one thread issues TMA), warpgroups 1-3 consume, each a
                // 64-row slice of the 192 x 192 tile; 4-stage pipeline.
                let tiles = n.div_ceil(192);
                let (m0, n0) = ((bx / tiles) * 192, (bx % tiles) * 192);
                let wg = w / 4;
                for k0 in (0..n).step_by(64) {
                    if w == 0 {
                        x.tma_load(A_BASE + 2 * (m0 * n + k0), 192.min(n - m0), 128, 2 * n);
                        x.tma_load(B_BASE + 2 * (n0 * n + k0), 192.min(n - n0), 128, 2 * n);
                        x.other(HGEMM4_PRODUCER_OTHER_PER_ITER);
                    }
                    if wg > 0 {
                        x.wait_bytes(2 * 192 * 64 * 2, 4);
                        for _ in 0..4 {
                            x.wgmma(64, 192, 16);
                        }
                        x.other(HGEMM4_CONSUMER_OTHER_PER_ITER);
                    }
                }
                if wg > 0 {
                    wgmma_epilogue(&mut x, n, m0 + u64::from(wg - 1) * 64, n0, 1, 192, w % 4);
                }
            }
            Kernel::Hgemm11Cluster => {
                // Persistent: block b takes tiles b, b + 128, ... of the 128 x 256 tiles (the
                // Hilbert order only changes which tiles share the L2, not the counts).
                // Cluster of 2 along M: each CTA loads its A box and half of the shared B box,
                // multicast to both. 3-stage pipeline, TMA store of C from shared memory.
                let tiles_m = n / 128;
                let total = (n / 128) * (n / 256);
                let wg = w / 4;
                let mut t = bx;
                while t < total {
                    let (m0, n0) = ((t % tiles_m) * 128, (t / tiles_m) * 256);
                    let half = (bx % 2) * 128;
                    for k0 in (0..n).step_by(64) {
                        if w == 0 {
                            x.tma_load(A_BASE + 2 * (m0 * n + k0), 128, 128, 2 * n);
                            x.tma_load(B_BASE + 2 * ((n0 + half) * n + k0), 128, 128, 2 * n);
                            x.other(HGEMM11_PRODUCER_OTHER_PER_ITER);
                        }
                        if wg > 0 {
                            x.wait_bytes((128 + 256) * 64 * 2, 3);
                            for _ in 0..4 {
                                x.wgmma(64, 256, 16);
                            }
                            x.other(HGEMM11_CONSUMER_OTHER_PER_ITER);
                        }
                    }
                    if wg > 0 {
                        // Accumulators to shared memory (bf16x2 per store), then one TMA store.
                        let row = |l: u32| {
                            u64::from(wg - 1) * 64 + u64::from(w % 4) * 16 + u64::from(l) / 4
                        };
                        for j in 0..64u64 {
                            let col = |l: u32| 8 * (j / 2) + 2 * (u64::from(l) % 4);
                            let r8 = (j % 2) * 8;
                            x.sts(4, |l| Some(2 * ((row(l) + r8) * 256 + col(l))));
                        }
                    }
                    if w == 4 {
                        x.acc.on_warp_inst(1);
                        for c in 0..256u64 {
                            let a = C_BASE + 2 * ((n0 + c) * n + m0);
                            let l = W::lanes(|lane| (lane < 8).then_some(a + 32 * u64::from(lane)));
                            x.acc.on_global_access(Access::Store, 32, &l);
                        }
                        x.acc.c.global_st_requests -= 255;
                    }
                    t += 128;
                }
            }
        }
    }
}

// "Other" warp instructions per k-iteration of the Hopper kernels (the emulator cannot run them
// yet), counted approximately in the committed PTX (calibration/ptx/hgemm_h100.ptx) as the lines
// of the loop body between its label and its back-branch, less the wgmma and wait instructions.
const HGEMM2_OTHER_PER_ITER: u64 = 110;
const HGEMM4_PRODUCER_OTHER_PER_ITER: u64 = 40;
const HGEMM4_CONSUMER_OTHER_PER_ITER: u64 = 90;
const HGEMM11_PRODUCER_OTHER_PER_ITER: u64 = 45;
const HGEMM11_CONSUMER_OTHER_PER_ITER: u64 = 90;

/// Stores of wgmma accumulators (m64nN per m-slice) to column-major bf16 C, one `st.global.b16`
/// per element, in the wgmma register layout: row = 16·warp + lane/4 (+8),
/// col = 8·j + 2·(lane % 4) (+1).
#[allow(clippy::too_many_arguments)]
fn wgmma_epilogue(x: &mut W, n: u64, m0: u64, n0: u64, mslices: u64, nn: u64, warp_in_wg: u32) {
    for ms in 0..mslices {
        for j in 0..nn / 8 {
            for (dr, dc) in [(0u64, 0u64), (0, 1), (8, 0), (8, 1)] {
                let a = |l: u32| {
                    let row = m0 + ms * 64 + u64::from(warp_in_wg) * 16 + u64::from(l) / 4 + dr;
                    let col = n0 + 8 * j + 2 * (u64::from(l) % 4) + dc;
                    (row < n && col < n).then_some(C_BASE + 2 * (col * n + row))
                };
                x.stg(2, a);
            }
        }
    }
}

/// Global → shared tile loads of the vectorised kernels: float4 loads of A stored transposed
/// (4 scalar stores), float4 loads of B stored as float4.
#[allow(clippy::too_many_arguments)]
fn load_tiles(
    x: &mut W,
    w: u32,
    n: u64,
    row0: u64,
    col0: u64,
    k0: u64,
    (bm, bn, bk): (u64, u64, u64),
    nt: u64,
    as_: u64,
    bs: u64,
) {
    let tid = |l: u32| u64::from(w * 32 + l);
    let mut it = 0;
    while it * nt < bm * bk / 4 {
        let e = |l: u32| tid(l) + it * nt;
        let ok = |l: u32| e(l) < bm * bk / 4;
        x.ldg(16, |l| {
            ok(l).then(|| A_BASE + 4 * ((row0 + e(l) / (bk / 4)) * n + k0 + e(l) % (bk / 4) * 4))
        });
        x.wait(1);
        for j in 0..4 {
            x.sts(4, |l| {
                ok(l).then(|| as_ + 4 * ((e(l) % (bk / 4) * 4 + j) * bm + e(l) / (bk / 4)))
            });
        }
        it += 1;
    }
    let mut it = 0;
    while it * nt < bn * bk / 4 {
        let e = |l: u32| tid(l) + it * nt;
        let ok = |l: u32| e(l) < bn * bk / 4;
        x.ldg(16, |l| {
            ok(l).then(|| B_BASE + 4 * ((k0 + e(l) / (bn / 4)) * n + col0 + e(l) % (bn / 4) * 4))
        });
        x.wait(1);
        x.sts(16, |l| {
            ok(l).then(|| bs + 4 * (e(l) / (bn / 4) * bn + e(l) % (bn / 4) * 4))
        });
        it += 1;
    }
}

/// The vectorised block-tiled body (step 6; and the bf16 SIMT Hopper step 1, whose tiles are
/// loaded as 8 bf16 per 16-byte load and stored transposed as f32).
fn vec_body(
    x: &mut W,
    k: Kernel,
    n: u64,
    bx: u64,
    by: u64,
    w: u32,
    (bm, bn, bk, tm, tn): (u64, u64, u64, u64, u64),
) {
    let nt = (bm * bn) / (tm * tn);
    let (row0, col0) = (by * bm, bx * bn);
    let tid = |l: u32| u64::from(w * 32 + l);
    let tc = |l: u32| tid(l) % (bn / tn);
    let tr = |l: u32| tid(l) / (bn / tn);
    let as_ = 0u64;
    let bs = 4 * bm * bk;
    for k0 in (0..n).step_by(bk as usize) {
        if k == Kernel::Hgemm1Simt {
            // Threads 0-127 load a row of A (8 bf16 = 16 B), 128-255 a column of B; each stores
            // its 8 values transposed into the f32 tiles.
            let a_side = w < 4;
            let r = |l: u32| tid(l) % 128;
            let (base, first) = if a_side {
                (A_BASE, row0)
            } else {
                (B_BASE, col0)
            };
            x.ldg(16, |l| Some(base + 2 * ((first + r(l)) * n + k0)));
            x.wait(1);
            let dst = if a_side { as_ } else { bs };
            for j in 0..8 {
                x.sts(4, |l| Some(dst + 4 * (j * 128 + r(l))));
            }
        } else {
            load_tiles(x, w, n, row0, col0, k0, (bm, bn, bk), nt, as_, bs);
        }
        x.bar();
        for d in 0..bk {
            for i in (0..tm).step_by(4) {
                x.lds(16, |l| Some(as_ + 4 * (d * bm + tr(l) * tm + i)));
            }
            for j in (0..tn).step_by(4) {
                x.lds(16, |l| Some(bs + 4 * (d * bn + tc(l) * tn + j)));
            }
            x.ffma(tm * tn);
        }
        x.bar();
    }
    for i in 0..tm {
        for j in (0..tn).step_by(4) {
            if k == Kernel::Hgemm1Simt {
                // Column-major bf16 C: 4 scalar stores.
                for jj in 0..4 {
                    x.stg(2, |l| {
                        Some(
                            C_BASE + 2 * ((col0 + tc(l) * tn + j + jj) * n + row0 + tr(l) * tm + i),
                        )
                    });
                }
            } else {
                let a =
                    |l: u32| f32_at(C_BASE, (row0 + tr(l) * tm + i) * n + col0 + tc(l) * tn + j);
                x.ldg(16, a);
                x.wait(1);
                x.stg(16, a);
            }
        }
    }
}

/// Bytes of the buffers a step reads (A and B): bounds the sampled footprint.
fn read_footprint(k: Kernel, n: u64) -> u64 {
    let elem = if matches!(
        k,
        Kernel::Hgemm1Simt
            | Kernel::Hgemm2TmaWgmma
            | Kernel::Hgemm4WarpSpecialized
            | Kernel::Hgemm11Cluster
    ) {
        2
    } else {
        4
    };
    // SGEMM also reads C (beta).
    let mats = if elem == 4 { 3 } else { 2 };
    mats * n * n * elem
}

/// Counters of kernel `k` at size `n` from the warp-level replay of `sample` blocks (all blocks
/// when `None`), scaled to the grid. `inst_executed`: the kernel's executed warp instructions
/// when measured elsewhere (replaces the replay's count, which has only memory, math and
/// barrier instructions for kernels the emulator runs).
pub fn trace_counters(
    k: Kernel,
    n: u64,
    sample: Option<u64>,
    inst_executed: Option<u64>,
) -> Counters {
    let s = k.shape(n);
    let total = u64::from(s.grid[0]) * u64::from(s.grid[1]) * u64::from(s.grid[2]);
    let mut launch = LaunchAccumulator::new();
    for b in sample_blocks(total, sample) {
        let mut acc = BlockAccumulator::new();
        trace_block(k, n, block_coords(b, s.grid), &mut acc);
        launch.add_block(acc);
    }
    let mut c = launch.finish(&s.launch_info(k, read_footprint(k, n)));
    if let Some(i) = inst_executed {
        let ratio = c.thread_inst_executed as f64 / c.inst_executed.max(1) as f64;
        c.inst_executed = i;
        c.thread_inst_executed = (i as f64 * ratio).round() as u64;
    }
    c
}
