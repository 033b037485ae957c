//! The one place tests touch a device: [`Device`] allocates, uploads, poisons, launches and reads
//! back. Today it drives `ptx_emu` directly; a cudarc-backed `Device` with the same methods can
//! replace it without touching the per-kernel tests.

use anyhow::{anyhow, Context, Result};
use bytemuck::Pod;
use cyberhost_kernels::{KernelModule, LaunchConfig};
use half::bf16;
use std::collections::HashMap;

/// Byte written over every output before a launch: 0xFF.. is NaN in f32 and in bf16, so an element
/// the kernel forgot to write fails the comparison.
pub const POISON: u8 = 0xFF;

pub struct Device {
    mem: ptx_emu::Memory,
    modules: HashMap<KernelModule, ptx_emu::Module>,
    pub opts: ptx_emu::LaunchOptions,
}

impl Device {
    /// Emulator device running each launch under `schedules` seeded warp schedules.
    pub fn emu(schedules: u32, seed: u64) -> Device {
        let opts = ptx_emu::LaunchOptions {
            schedules,
            seed,
            ..Default::default()
        };
        Device {
            mem: ptx_emu::Memory::new(),
            modules: HashMap::new(),
            opts,
        }
    }

    pub fn upload<T: Pod>(&mut self, data: &[T]) -> Result<u64> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let addr = self
            .mem
            .alloc(bytes.len().max(1))
            .map_err(|e| anyhow!("alloc {} bytes: {e:?}", bytes.len()))?;
        self.mem
            .write(addr, bytes)
            .map_err(|e| anyhow!("write {} bytes: {e:?}", bytes.len()))?;
        Ok(addr)
    }

    /// An output buffer of `bytes`, filled with [`POISON`].
    pub fn alloc_poisoned(&mut self, bytes: usize) -> Result<u64> {
        let addr = self
            .mem
            .alloc(bytes.max(1))
            .map_err(|e| anyhow!("alloc {bytes} bytes: {e:?}"))?;
        self.mem
            .memset_d8(addr, POISON, bytes)
            .map_err(|e| anyhow!("memset {bytes} bytes: {e:?}"))?;
        Ok(addr)
    }

    pub fn download<T: Pod + Default + Clone>(&self, addr: u64, len: usize) -> Result<Vec<T>> {
        let mut out = vec![T::default(); len];
        self.mem
            .read(addr, bytemuck::cast_slice_mut(&mut out))
            .map_err(|e| anyhow!("read {len} elements: {e:?}"))?;
        Ok(out)
    }

    /// Launches `entry` of `module` with its params struct as the single argument.
    pub fn launch<P: Pod>(
        &mut self,
        module: KernelModule,
        entry: &str,
        cfg: LaunchConfig,
        params: &P,
    ) -> Result<ptx_emu::LaunchStats> {
        let m = match self.modules.entry(module) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(
                ptx_emu::Module::parse(module.ptx())
                    .map_err(|e| anyhow!("parse kernels/ptx/{}.ptx: {e:?}", module.name()))?,
            ),
        };
        let cfg = ptx_emu::LaunchConfig {
            grid: cfg.grid,
            block: cfg.block,
            dynamic_smem_bytes: cfg.dynamic_smem_bytes,
        };
        let bytes: &[u8] = bytemuck::bytes_of(params);
        ptx_emu::launch(m, entry, &cfg, &[bytes], &mut self.mem, &self.opts)
            .map_err(|f| anyhow!("{f}"))
            .with_context(|| format!("launch {entry} grid {:?} block {:?}", cfg.grid, cfg.block))
    }
}

/// (schedules, seed) pairs every test runs under: the emulator's default interleaving plus seeded
/// alternatives for its race/hazard search.
pub const SCHEDULES: [(u32, u64); 2] = [(1, 0x5eed), (3, 0xc0ffee)];

// ------------------------------------------------------------------------------------------------
// inputs
// ------------------------------------------------------------------------------------------------

/// Deterministic generator (splitmix64): no external crate, same data everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.uniform().max(1e-7);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }
    pub fn randn(&mut self, n: usize, scale: f32, offset: f32) -> Vec<f32> {
        (0..n).map(|_| self.normal() * scale + offset).collect()
    }
}

pub fn to_bf16(x: &[f32]) -> Vec<bf16> {
    x.iter().map(|&v| bf16::from_f32(v)).collect()
}

pub fn from_bf16(x: &[bf16]) -> Vec<f32> {
    x.iter().map(|v| v.to_f32()).collect()
}

/// Rounds through bf16, so the reference sees exactly the values the kernel reads.
pub fn round_bf16(x: &[f32]) -> Vec<f32> {
    from_bf16(&to_bf16(x))
}

// ------------------------------------------------------------------------------------------------
// comparison
// ------------------------------------------------------------------------------------------------

/// Tolerances by storage dtype: relative L2 of the whole tensor.
pub fn tol(bf16_storage: bool) -> f64 {
    if bf16_storage {
        1e-2
    } else {
        1e-5
    }
}

/// Fails unless every element is finite (no poison left) and ||got - want|| / ||want|| <= tol.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let bad: Vec<usize> = (0..got.len())
        .filter(|&i| !got[i].is_finite() && want[i].is_finite())
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: {} non-finite outputs (poison left or NaN), first at index {} (got {}, want {})",
        bad.len(),
        bad[0],
        got[bad[0]],
        want[bad[0]]
    );
    let (mut num, mut den, mut max_err, mut max_at) = (0.0f64, 0.0f64, 0.0f64, 0usize);
    for i in 0..got.len() {
        let d = (got[i] as f64 - want[i] as f64).abs();
        num += d * d;
        den += (want[i] as f64).powi(2);
        if d > max_err {
            max_err = d;
            max_at = i;
        }
    }
    let rel = (num / den.max(1e-30)).sqrt();
    assert!(
        rel <= tol,
        "{what}: relative L2 {rel:.3e} > {tol:.0e}; max abs error {max_err:.3e} at index {max_at} (got {}, want {})",
        got[max_at],
        want[max_at]
    );
}
