//! The speed work must not change a single bit: the NVRTC-compiled test kernels (elementwise add,
//! row softmax, the ldmatrix/mma/cp.async bf16 GEMM tile) give identical device memory and
//! statistics at `PTX_EMU_CHECKS=full` and `fast`, with the decoded fast path on and off
//! (`LaunchOptions::decoded`), on one block thread and on several. (Every kernel test also runs
//! through `common::run`, which compares `full`, `fast` and `full` without the decoded path.)
mod common;
use common::*;
use ptx_emu::*;

struct Case {
    module: Module,
    kernel: &'static str,
    cfg: LaunchConfig,
    params: Vec<Vec<u8>>,
    mem: Memory,
}

impl Case {
    /// `kernel` of `e`'s module on `e`'s memory as set up.
    fn new(e: Emu, kernel: &'static str, cfg: LaunchConfig, params: Vec<Vec<u8>>) -> Case {
        Case {
            module: e.m,
            kernel,
            cfg,
            params,
            mem: e.mem,
        }
    }
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    {
        let mut e = Emu::new("add.ptx");
        let n = 3000usize;
        let pa = e.up_f32(&rand_f32(n, 1));
        let pb = e.up_f32(&rand_f32(n, 2));
        let pc = e.alloc(n * 4);
        let p = params(&[pa, pb, pc], &[n as i32]);
        out.push(Case::new(e, "add_f32", lin(12, 256), p));
    }
    let (e, _, p) = softmax_setup(6, 333);
    out.push(Case::new(e, p.kernel, p.cfg, p.params));
    let (e, _, _, p) = gemm_setup(64, 96, 128, 5);
    out.push(Case::new(e, p.kernel, p.cfg, p.params));
    out
}

#[test]
fn full_fast_decoded_general_and_thread_counts_agree_bit_for_bit() {
    for c in cases() {
        let p = slices(&c.params);
        let mut reference: Option<(Memory, LaunchStats)> = None;
        for checks in [Checks::Full, Checks::Fast] {
            for decoded in [true, false] {
                for threads in [1, 3] {
                    let opts = LaunchOptions {
                        decoded,
                        threads,
                        ..LaunchOptions::with_checks(checks)
                    };
                    let mut mem = c.mem.clone();
                    let st = launch(&c.module, c.kernel, &c.cfg, &p, &mut mem, &opts)
                        .unwrap_or_else(|f| panic!("{} {opts:?}: {f}", c.kernel));
                    match &reference {
                        None => reference = Some((mem, st)),
                        Some((m0, s0)) => {
                            assert_eq!(st, *s0, "{} {opts:?}: statistics differ", c.kernel);
                            assert!(mem == *m0, "{} {opts:?}: device memory differs", c.kernel);
                        }
                    }
                }
            }
        }
    }
}
