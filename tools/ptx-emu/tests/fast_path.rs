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

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    {
        let mut mem = Memory::new();
        let n = 3000usize;
        let pa = upload(&mut mem, &f32_bytes(&rand_f32(n, 1)));
        let pb = upload(&mut mem, &f32_bytes(&rand_f32(n, 2)));
        let pc = mem.alloc(n * 4).unwrap();
        out.push(Case {
            module: module("add.ptx"),
            kernel: "add_f32",
            cfg: cfg([12, 1, 1], [256, 1, 1], 0),
            params: vec![
                pa.to_le_bytes().to_vec(),
                pb.to_le_bytes().to_vec(),
                pc.to_le_bytes().to_vec(),
                (n as i32).to_le_bytes().to_vec(),
            ],
            mem,
        });
    }
    {
        let mut mem = Memory::new();
        let (rows, cols) = (6usize, 333usize);
        let x: Vec<f32> = rand_f32(rows * cols, 3).iter().map(|v| v * 4.0).collect();
        let px = upload(&mut mem, &f32_bytes(&x));
        let py = mem.alloc(rows * cols * 4).unwrap();
        out.push(Case {
            module: module("softmax.ptx"),
            kernel: "softmax_rows",
            cfg: cfg([rows as u32, 1, 1], [128, 1, 1], 0),
            params: vec![
                px.to_le_bytes().to_vec(),
                py.to_le_bytes().to_vec(),
                (cols as i32).to_le_bytes().to_vec(),
            ],
            mem,
        });
    }
    {
        let mut mem = Memory::new();
        let (m, n, k) = (64usize, 96usize, 128usize);
        let bf = |v: Vec<f32>| -> Vec<u8> {
            v.iter()
                .flat_map(|&x| half::bf16::from_f32(x).to_bits().to_le_bytes())
                .collect()
        };
        let pa = upload(&mut mem, &bf(rand_f32(m * k, 5)));
        let pb = upload(&mut mem, &bf(rand_f32(k * n, 6)));
        let pc = mem.alloc(m * n * 4).unwrap();
        out.push(Case {
            module: module("gemm_bf16.ptx"),
            kernel: "gemm_bf16_tile",
            cfg: cfg([(n / 32) as u32, (m / 32) as u32, 1], [128, 1, 1], 0),
            params: vec![
                pa.to_le_bytes().to_vec(),
                pb.to_le_bytes().to_vec(),
                pc.to_le_bytes().to_vec(),
                (m as i32).to_le_bytes().to_vec(),
                (n as i32).to_le_bytes().to_vec(),
                (k as i32).to_le_bytes().to_vec(),
            ],
            mem,
        });
    }
    out
}

#[test]
fn full_fast_decoded_general_and_thread_counts_agree_bit_for_bit() {
    for c in cases() {
        let p: Vec<&[u8]> = c.params.iter().map(|v| v.as_slice()).collect();
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
