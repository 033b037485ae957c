//! Helpers shared by the emulator self-tests (and its benches, and the emulator bench of the
//! workspace root).
#![allow(dead_code, clippy::result_large_err)]

use ptx_emu::*;

pub fn ptx(name: &str) -> String {
    let p = format!("{}/tests/ptx/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {p}: {e}"))
}

pub fn module(name: &str) -> Module {
    Module::parse(&ptx(name)).unwrap_or_else(|e| panic!("parse {name}: {e}"))
}

/// Deterministic pseudo-random f32 in [-1, 1).
pub fn rand_f32(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
pub fn u32_bytes(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
pub fn bytes_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}
pub fn bytes_u32(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

pub fn upload(mem: &mut Memory, data: &[u8]) -> u64 {
    let a = mem.alloc(data.len()).unwrap();
    mem.write(a, data).unwrap();
    a
}
pub fn download(mem: &Memory, addr: u64, bytes: usize) -> Vec<u8> {
    let mut out = vec![0u8; bytes];
    mem.read(addr, &mut out).unwrap();
    out
}

pub fn cfg(grid: [u32; 3], block: [u32; 3], smem: u32) -> LaunchConfig {
    LaunchConfig {
        grid,
        block,
        dynamic_smem_bytes: smem,
    }
}

/// Launch with `schedules` seeded schedules and all detectors on.
pub fn run(
    m: &Module,
    k: &str,
    c: LaunchConfig,
    params: &[Vec<u8>],
    mem: &mut Memory,
) -> Result<LaunchStats, Fault> {
    run_cluster(m, k, c, [1, 1, 1], params, mem)
}

/// [`run`] with thread-block clusters of `cluster` blocks.
pub fn run_cluster(
    m: &Module,
    k: &str,
    c: LaunchConfig,
    cluster: [u32; 3],
    params: &[Vec<u8>],
    mem: &mut Memory,
) -> Result<LaunchStats, Fault> {
    let p = slices(params);
    let launch = |m: &Module,
                  kernel: &str,
                  cfg: &LaunchConfig,
                  params: &[&[u8]],
                  mem: &mut Memory,
                  opts: &LaunchOptions| {
        let call = KernelCall {
            module: m,
            kernel,
            cfg,
            params,
        };
        launch_cluster(call, cluster, mem, opts)
    };
    let opts = LaunchOptions {
        schedules: 3,
        ..LaunchOptions::with_checks(Checks::Full)
    };
    // Every kernel also runs at `PTX_EMU_CHECKS=fast` on a copy of the memory: when the full
    // run passes, the fast one must pass with bit-identical memory.
    let mut fast_mem = mem.clone();
    let fast = launch(
        m,
        k,
        &c,
        &p,
        &mut fast_mem,
        &LaunchOptions::with_checks(Checks::Fast),
    );
    // ... and at `full` with the decoded fast path off (every instruction through the general
    // path): the same faults, statistics and bits.
    let mut general_mem = mem.clone();
    let general = launch(
        m,
        k,
        &c,
        &p,
        &mut general_mem,
        &LaunchOptions {
            decoded: false,
            ..opts
        },
    );
    let full = launch(m, k, &c, &p, mem, &opts);
    if let Ok(full_st) = &full {
        let st = fast.unwrap_or_else(|f| panic!("{k}: passes at full, faults at fast: {f}"));
        assert_eq!(st, *full_st, "{k}: statistics differ between levels");
        assert!(
            fast_mem == *mem,
            "{k}: results differ between PTX_EMU_CHECKS=full and fast"
        );
        let st = general.unwrap_or_else(|f| panic!("{k}: faults without the decoded path: {f}"));
        assert_eq!(
            st, *full_st,
            "{k}: statistics differ without the decoded path"
        );
        assert!(
            general_mem == *mem,
            "{k}: results differ with and without the decoded fast path"
        );
    } else {
        let (a, b) = (full.as_ref().unwrap_err(), general.as_ref().unwrap_err());
        assert_eq!(
            (a.kind, a.ptx_line, a.block, a.thread),
            (b.kind, b.ptx_line, b.block, b.thread),
            "{k}: a different fault without the decoded path"
        );
    }
    full
}

/// A pointer kernel parameter.
pub fn p64(a: u64) -> Vec<u8> {
    a.to_le_bytes().to_vec()
}
/// A 32-bit integer kernel parameter.
pub fn p32(a: i32) -> Vec<u8> {
    a.to_le_bytes().to_vec()
}

/// Kernel parameters: the pointers, then the 32-bit integers (the order of every test kernel).
pub fn params(ptrs: &[u64], ints: &[i32]) -> Vec<Vec<u8>> {
    let ptrs = ptrs.iter().map(|&a| p64(a));
    ptrs.chain(ints.iter().map(|&v| p32(v))).collect()
}
/// The parameters as `launch` takes them.
pub fn slices(params: &[Vec<u8>]) -> Vec<&[u8]> {
    params.iter().map(|v| v.as_slice()).collect()
}

/// `v` rounded to bf16, as little-endian bytes.
pub fn bf16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|&x| half::bf16::from_f32(x).to_bits().to_le_bytes())
        .collect()
}

/// gemm_bf16.ptx's `gemm_bf16_tile` for an `m` x `n` C: a block of 128 threads per 32x32 tile.
pub fn gemm_cfg(m: usize, n: usize) -> LaunchConfig {
    cfg([(n / 32) as u32, (m / 32) as u32, 1], [128, 1, 1], 0)
}

/// One parsed module and its device memory: the upload, launch (through [`run`], so every
/// level is cross-checked) and read-back steps the tests share.
pub struct Emu {
    pub m: Module,
    pub mem: Memory,
}

impl Emu {
    pub fn new(ptx_name: &str) -> Self {
        Self::from_module(module(ptx_name))
    }
    pub fn from_module(m: Module) -> Self {
        Emu {
            m,
            mem: Memory::new(),
        }
    }
    pub fn alloc(&mut self, bytes: usize) -> u64 {
        self.mem.alloc(bytes).unwrap()
    }
    pub fn upload(&mut self, data: &[u8]) -> u64 {
        upload(&mut self.mem, data)
    }
    pub fn up_f32(&mut self, v: &[f32]) -> u64 {
        self.upload(&f32_bytes(v))
    }
    pub fn up_u32(&mut self, v: &[u32]) -> u64 {
        self.upload(&u32_bytes(v))
    }
    pub fn up_i32(&mut self, v: &[i32]) -> u64 {
        self.upload(&v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>())
    }
    /// [`run`] on this module and memory.
    pub fn try_run(
        &mut self,
        k: &str,
        c: LaunchConfig,
        params: &[Vec<u8>],
    ) -> Result<LaunchStats, Fault> {
        run(&self.m, k, c, params, &mut self.mem)
    }
    /// [`run_cluster`] on this module and memory.
    pub fn try_cluster(
        &mut self,
        k: &str,
        c: LaunchConfig,
        cluster: [u32; 3],
        params: &[Vec<u8>],
    ) -> Result<LaunchStats, Fault> {
        run_cluster(&self.m, k, c, cluster, params, &mut self.mem)
    }
    /// [`Emu::try_run`] that must succeed.
    pub fn ok(&mut self, k: &str, c: LaunchConfig, params: &[Vec<u8>]) -> LaunchStats {
        self.try_run(k, c, params)
            .unwrap_or_else(|f| panic!("{k}: {f}"))
    }
    /// [`Emu::try_run`] that must fault with `kind`.
    pub fn fault(
        &mut self,
        k: &str,
        c: LaunchConfig,
        params: &[Vec<u8>],
        kind: FaultKind,
    ) -> Fault {
        let f = self
            .try_run(k, c, params)
            .expect_err(&format!("{k} must fault"));
        assert_eq!(f.kind, kind, "{k}: {f}");
        f
    }
    /// One launch with explicit options (no cross-checking between levels).
    pub fn launch_with(
        &mut self,
        k: &str,
        c: LaunchConfig,
        params: &[Vec<u8>],
        opts: &LaunchOptions,
    ) -> Result<LaunchStats, Fault> {
        launch(&self.m, k, &c, &slices(params), &mut self.mem, opts)
    }
    pub fn bytes(&self, addr: u64, bytes: usize) -> Vec<u8> {
        download(&self.mem, addr, bytes)
    }
    /// `n` f32 values at `addr`.
    pub fn f32s(&self, addr: u64, n: usize) -> Vec<f32> {
        bytes_f32(&self.bytes(addr, n * 4))
    }
    /// `n` u32 values at `addr`.
    pub fn u32s(&self, addr: u64, n: usize) -> Vec<u32> {
        bytes_u32(&self.bytes(addr, n * 4))
    }
    /// `n` i32 values at `addr`.
    pub fn i32s(&self, addr: u64, n: usize) -> Vec<i32> {
        self.u32s(addr, n).into_iter().map(|v| v as i32).collect()
    }
}

/// A one-dimensional launch: `grid` blocks of `block` threads, no dynamic shared memory.
pub fn lin(grid: u32, block: u32) -> LaunchConfig {
    cfg([grid, 1, 1], [block, 1, 1], 0)
}

/// A kernel of an [`Emu`]'s module, set up on its memory: launch shape, parameters and where
/// its output goes.
pub struct Prepared {
    pub kernel: &'static str,
    pub cfg: LaunchConfig,
    pub params: Vec<Vec<u8>>,
    pub out: u64,
}

/// softmax.ptx's `softmax_rows` over `rows` x `cols` random inputs (seed 3, scaled by 4), one
/// block of 128 threads a row: the emulator, the inputs and the launch.
pub fn softmax_setup(rows: usize, cols: usize) -> (Emu, Vec<f32>, Prepared) {
    let mut e = Emu::new("softmax.ptx");
    let x: Vec<f32> = rand_f32(rows * cols, 3).iter().map(|v| v * 4.0).collect();
    let px = e.up_f32(&x);
    let py = e.alloc(rows * cols * 4);
    let p = Prepared {
        kernel: "softmax_rows",
        cfg: lin(rows as u32, 128),
        params: params(&[px, py], &[cols as i32]),
        out: py,
    };
    (e, x, p)
}

/// gemm_bf16.ptx's `gemm_bf16_tile` on random A (`m` x `k`, seed `seed`) and B (`k` x `n`,
/// seed `seed + 1`) rounded to bf16: the emulator, A and B (f32) and the launch (C: f32).
pub fn gemm_setup(m: usize, n: usize, k: usize, seed: u64) -> (Emu, Vec<f32>, Vec<f32>, Prepared) {
    let mut e = Emu::new("gemm_bf16.ptx");
    let (a, b) = (rand_f32(m * k, seed), rand_f32(k * n, seed + 1));
    let pa = e.upload(&bf16_bytes(&a));
    let pb = e.upload(&bf16_bytes(&b));
    let pc = e.alloc(m * n * 4);
    let p = Prepared {
        kernel: "gemm_bf16_tile",
        cfg: gemm_cfg(m, n),
        params: params(&[pa, pb, pc], &[m as i32, n as i32, k as i32]),
        out: pc,
    };
    (e, a, b, p)
}

pub fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let mut num = 0f64;
    let mut den = 0f64;
    for (g, w) in got.iter().zip(want) {
        num += (*g as f64 - *w as f64).powi(2);
        den += (*w as f64).powi(2);
    }
    (num / den.max(1e-300)).sqrt()
}

/// Line (1-based) of the first line of `src` containing `needle`.
pub fn line_of(src: &str, needle: &str) -> usize {
    src.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` not in PTX"))
        + 1
}

/// CPU time of this thread (Linux `/proc/thread-self/stat`, clock ticks of 10 ms), so the number
/// is meaningful on a loaded machine.
pub fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}
