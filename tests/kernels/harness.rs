//! The one place tests touch a device: [`Device`] allocates, uploads, poisons, launches and reads
//! back. The per-kernel tests never see which device runs them; `CYBERHOST_KERNEL_TEST_DEVICE`
//! picks it:
//!
//! * `emu` (default): `ptx_emu::launch` directly, with the warp schedules each test asks for;
//! * `stand-in`: cudarc through the engine's `CudaDevice` on the stand-in driver
//!   (`tools/ptx-emu-driver`, schedules from `PTX_EMU_SCHEDULES`);
//! * `cuda`: cudarc on the real NVIDIA driver (a GPU machine).

use anyhow::{anyhow, bail, Context, Result};
use bytemuck::Pod;
use cyberhost_engine::backends::cuda::cudarc::driver::{CudaSlice, DevicePtr};
use cyberhost_engine::backends::cuda::CudaDevice;
use cyberhost_kernels::{KernelModule, LaunchConfig};
use half::bf16;
use std::collections::HashMap;
use std::sync::OnceLock;

/// Byte written over every output before a launch: 0xFF.. is NaN in f32 and in bf16, so an element
/// the kernel forgot to write fails the comparison.
pub const POISON: u8 = 0xFF;

/// Environment variable choosing the device: `emu` (default), `stand-in` or `cuda`.
pub const DEVICE_ENV: &str = "CYBERHOST_KERNEL_TEST_DEVICE";

pub enum Device {
    Emu {
        mem: ptx_emu::Memory,
        modules: HashMap<KernelModule, ptx_emu::Module>,
        opts: ptx_emu::LaunchOptions,
    },
    Cuda {
        dev: &'static CudaDevice,
        /// Live buffers by device address (freed when the test's `Device` drops).
        bufs: HashMap<u64, CudaSlice<u8>>,
    },
}

/// One `CudaDevice` per test process (a driver is loaded once).
fn cuda_device(kind: &str) -> &'static CudaDevice {
    static DEV: OnceLock<CudaDevice> = OnceLock::new();
    DEV.get_or_init(|| {
        let dev = match kind {
            "stand-in" => CudaDevice::new_emulated(0),
            _ => CudaDevice::new(0),
        };
        dev.unwrap_or_else(|e| panic!("{DEVICE_ENV}={kind}: {e:#}"))
    })
}

impl Device {
    /// The device named by [`DEVICE_ENV`]; on the direct emulator every launch runs under
    /// `schedules` seeded warp schedules starting from `seed`.
    pub fn new(schedules: u32, seed: u64) -> Device {
        let kind = std::env::var(DEVICE_ENV).unwrap_or_else(|_| "emu".to_string());
        match kind.as_str() {
            "emu" | "" => Device::Emu {
                mem: ptx_emu::Memory::new(),
                modules: HashMap::new(),
                opts: ptx_emu::LaunchOptions {
                    schedules,
                    seed,
                    ..Default::default()
                },
            },
            "stand-in" | "cuda" => Device::Cuda {
                dev: cuda_device(&kind),
                bufs: HashMap::new(),
            },
            other => panic!("{DEVICE_ENV}={other}: expected emu, stand-in or cuda"),
        }
    }

    fn alloc_bytes(&mut self, bytes: &[u8]) -> Result<u64> {
        match self {
            Device::Emu { mem, .. } => {
                let addr = mem
                    .alloc(bytes.len().max(1))
                    .map_err(|e| anyhow!("alloc {} bytes: {e:?}", bytes.len()))?;
                mem.write(addr, bytes)
                    .map_err(|e| anyhow!("write {} bytes: {e:?}", bytes.len()))?;
                Ok(addr)
            }
            Device::Cuda { dev, bufs } => {
                let stream = dev.stream();
                let data: &[u8] = if bytes.is_empty() { &[0] } else { bytes };
                let slice = stream
                    .clone_htod(data)
                    .with_context(|| format!("upload {} bytes to {}", data.len(), dev.name()))?;
                let (addr, _sync) = slice.device_ptr(stream);
                drop(_sync);
                bufs.insert(addr, slice);
                Ok(addr)
            }
        }
    }

    pub fn upload<T: Pod>(&mut self, data: &[T]) -> Result<u64> {
        self.alloc_bytes(bytemuck::cast_slice(data))
    }

    /// An output buffer of `bytes`, filled with [`POISON`].
    pub fn alloc_poisoned(&mut self, bytes: usize) -> Result<u64> {
        self.alloc_bytes(&vec![POISON; bytes])
    }

    /// Reads `len` elements from the start of the buffer at `addr`.
    pub fn download<T: Pod + Default + Clone>(&self, addr: u64, len: usize) -> Result<Vec<T>> {
        let mut out = vec![T::default(); len];
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut out);
        match self {
            Device::Emu { mem, .. } => mem
                .read(addr, bytes)
                .map_err(|e| anyhow!("read {len} elements: {e:?}"))?,
            Device::Cuda { dev, bufs } => {
                let Some(slice) = bufs.get(&addr) else {
                    bail!("download: {addr:#x} is not the start of a buffer of this test");
                };
                let n = bytes.len();
                dev.stream()
                    .memcpy_dtoh(&slice.slice(0..n), bytes)
                    .with_context(|| format!("download {n} bytes from {}", dev.name()))?;
                dev.synchronize()?;
            }
        }
        Ok(out)
    }

    /// Launches `entry` of `module` with its params struct as the single argument and waits.
    pub fn launch<P: Pod>(
        &mut self,
        module: KernelModule,
        entry: &str,
        cfg: LaunchConfig,
        params: &P,
    ) -> Result<()> {
        let what = || format!("launch {entry} grid {:?} block {:?}", cfg.grid, cfg.block);
        match self {
            Device::Emu { mem, modules, opts } => {
                let m = match modules.entry(module) {
                    std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(ptx_emu::Module::parse(module.ptx()).map_err(|e| {
                            anyhow!("parse kernels/ptx/{}.ptx: {e:?}", module.name())
                        })?)
                    }
                };
                let emu_cfg = ptx_emu::LaunchConfig {
                    grid: cfg.grid,
                    block: cfg.block,
                    dynamic_smem_bytes: cfg.dynamic_smem_bytes,
                };
                ptx_emu::launch(m, entry, &emu_cfg, &[bytemuck::bytes_of(params)], mem, opts)
                    .map_err(|f| anyhow!("{f}"))
                    .with_context(what)?;
            }
            Device::Cuda { dev, .. } => {
                // SAFETY: every test builds `params` with the kernel's own params constructor over
                // buffers it allocated here with the sizes that shape describes.
                unsafe { dev.launch(module, entry, cfg, params) }.with_context(what)?;
                dev.synchronize().with_context(what)?;
            }
        }
        Ok(())
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
