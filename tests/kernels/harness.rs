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
use cyberhost_engine::backends::{Backend, LinearEpilogue};
use cyberhost_kernels::{gemm_sm90, DType, KernelModule, LaunchConfig};
use half::bf16;

use crate::common::{assert_close, cpu, from_bf16, host, to_bf16, CPU};
use std::collections::HashMap;

/// Byte written over every output before a launch: 0xFF.. is NaN in f32 and in bf16, so an element
/// the kernel forgot to write fails the comparison.
pub const POISON: u8 = 0xFF;

pub use crate::common::DEVICE_ENV;

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

/// The test process's CUDA device (one driver, loaded once): the device of
/// [`common::cuda_backend`](crate::common::cuda_backend), so raw launches and backend ops share it.
pub fn cuda_device() -> &'static CudaDevice {
    crate::common::cuda_backend().device()
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
                dev: cuda_device(),
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

    /// `data` stored as `dtype`: f32, or rounded to bf16.
    pub fn upload_as(&mut self, dtype: DType, data: &[f32]) -> Result<u64> {
        match dtype {
            DType::Bf16 => self.upload(&to_bf16(data)),
            DType::F32 => self.upload(data),
        }
    }

    /// Each of `data` stored as `dtype` ([`Self::upload_as`]), in order.
    pub fn upload_all<const N: usize>(
        &mut self,
        dtype: DType,
        data: [&[f32]; N],
    ) -> Result<[u64; N]> {
        let mut addrs = [0; N];
        for (addr, d) in addrs.iter_mut().zip(data) {
            *addr = self.upload_as(dtype, d)?;
        }
        Ok(addrs)
    }

    /// An optional bf16 operand (bias, residual, ..): uploaded when `on`, else the null address 0.
    pub fn upload_bf16_opt(&mut self, on: bool, data: &[f32]) -> Result<u64> {
        if on {
            self.upload(&to_bf16(data))
        } else {
            Ok(0)
        }
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

    /// Reads `len` elements of `dtype` from the start of the buffer at `addr`, as f32.
    pub fn download_as(&self, dtype: DType, addr: u64, len: usize) -> Result<Vec<f32>> {
        Ok(match dtype {
            DType::Bf16 => from_bf16(&self.download::<bf16>(addr, len)?),
            DType::F32 => self.download::<f32>(addr, len)?,
        })
    }

    /// Compares the bf16 output at `addr` with `want` ([`assert_close`], [`TOL_BF16`]).
    pub fn check_bf16(&self, what: &str, addr: u64, want: &[f32]) -> Result<()> {
        let got = self.download_as(DType::Bf16, addr, want.len())?;
        assert_close(what, &got, want, TOL_BF16);
        Ok(())
    }

    /// The 128-byte `CUtensorMap` of `t` ([`gemm_sm90::TmaTile`]): the emulator's encoder on the
    /// direct emulator, the driver's `cuTensorMapEncodeTiled` (engine launcher) otherwise.
    pub fn tensor_map(&self, t: &gemm_sm90::TmaTile) -> Result<[u64; 16]> {
        self.tensor_map_as(t, false)
    }

    /// [`Self::tensor_map`] of bf16 elements, or (`bytes`) of uint8 ones (e4m3 codes).
    pub fn tensor_map_as(&self, t: &gemm_sm90::TmaTile, bytes: bool) -> Result<[u64; 16]> {
        match self {
            Device::Emu { .. } => {
                let map = ptx_emu::tensor_map::TensorMap::encode_tiled(
                    if bytes {
                        cyberhost_kernels::gemm_fp8_sm90::TMA_DTYPE_UINT8
                    } else {
                        gemm_sm90::TMA_DTYPE_BF16
                    },
                    t.rank,
                    t.base,
                    t.used().0,
                    t.used().1,
                    t.used().2,
                    &[1, 1, 1, 1][..t.rank as usize],
                    0, // CU_TENSOR_MAP_INTERLEAVE_NONE
                    gemm_sm90::TMA_SWIZZLE_128B,
                    gemm_sm90::TMA_L2_PROMOTION_128B,
                    0, // CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE
                )
                .map_err(|e| anyhow!("encode {t:?}: {e}"))?;
                Ok(bytemuck::cast(map.to_bytes()))
            }
            Device::Cuda { .. } if bytes => {
                cyberhost_engine::backends::cuda::gemm_fp8_sm90::encode_tensor_map_u8(t)
            }
            Device::Cuda { .. } => {
                cyberhost_engine::backends::cuda::gemm_sm90::encode_tensor_map(t)
            }
        }
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

/// Whether `dev` runs `module`'s PTX: on the direct emulator the `.target` against
/// `PTX_EMU_ARCH`, on CUDA the device's kernel set ([`CudaDevice::arch`]). `Some(reason)` when it
/// refuses the module (a Hopper-only module on an sm_80-set device).
pub fn refusal(dev: &Device, module: KernelModule) -> Option<String> {
    match dev {
        Device::Emu { .. } => ptx_emu::Arch::from_env()
            .can_run(module.arch().name())
            .err(),
        Device::Cuda { dev, .. } => dev.module(module).err().map(|e| format!("{e:#}")),
    }
}

/// For a Hopper-only module's test: `true` when `dev` runs `module` (the cases run); on a device
/// that cannot (`PTX_EMU_ARCH=sm_80`, an A100), asserts that the module is refused with an error
/// naming its arch, and returns `false` (the cases cannot run there).
pub fn runs_or_refuses(dev: &Device, module: KernelModule) -> bool {
    match refusal(dev, module) {
        None => true,
        Some(why) => {
            let arch = module.arch().name();
            assert!(
                why.contains(arch),
                "kernels/ptx/{}.ptx was refused without naming its arch {arch}: {why}",
                module.name()
            );
            false
        }
    }
}

/// One `#[test]` per row, calling `sweep` once per argument tuple of the row (a kernel's
/// dtype combinations as separate tests):
///
/// ```ignore
/// sweep_tests!(sweep; norm_f32 => (DType::F32, false), norm_silu_f32 => (DType::F32, true));
/// ```
macro_rules! sweep_tests {
    ($sweep:ident; $($(#[$attr:meta])* $name:ident => $(($($arg:expr),*))+),+ $(,)?) => {
        $(
            $(#[$attr])*
            #[test]
            fn $name() {
                $($sweep($($arg),*);)+
            }
        )+
    };
}
pub(crate) use sweep_tests;

/// (schedules, seed) pairs every test runs under: the emulator's default interleaving plus seeded
/// alternatives for its race/hazard search.
pub const SCHEDULES: [(u32, u64); 2] = [(1, 0x5eed), (3, 0xc0ffee)];

/// Runs `case` on a fresh [`Device`] per schedule of [`SCHEDULES`], with a distinct seed per
/// (schedule, case index): the loop every kernel test shares.
pub fn for_each_schedule<C: Copy>(
    cases: &[C],
    seed_base: u64,
    mut run: impl FnMut(&mut Device, C, u64) -> Result<()>,
) {
    for (i, &(schedules, seed)) in SCHEDULES.iter().enumerate() {
        let mut dev = Device::new(schedules, seed);
        for (j, &c) in cases.iter().enumerate() {
            run(&mut dev, c, seed_base + (i * 100 + j) as u64).unwrap();
        }
    }
}

/// One `#[test]` running `run` on every case of `cases` under every schedule
/// ([`for_each_schedule`]), data seeds from `seed_base`.
macro_rules! schedules_test {
    ($name:ident, $cases:expr, $seed_base:expr, $run:expr) => {
        #[test]
        fn $name() {
            $crate::harness::for_each_schedule(&$cases, $seed_base, $run);
        }
    };
}
pub(crate) use schedules_test;

// ------------------------------------------------------------------------------------------------
// the engine's slice launchers (`backends::cuda::{gemm, conv2d, attention}`)
// ------------------------------------------------------------------------------------------------

/// Relative L2 tolerance of the bf16 tensor-core kernels (bf16 operands and output, f32 sums).
pub const TOL_BF16: f64 = 1e-2;

/// The device the engine's launchers run on: the stand-in driver, or a real GPU with
/// `CYBERHOST_KERNEL_TEST_DEVICE=cuda` (whatever the raw launches above use).
pub fn engine_device() -> &'static CudaDevice {
    cuda_device()
}

pub type Bf16Slice = CudaSlice<u16>;

/// bf16 values as raw bits (any 2-byte element type works for the launchers).
pub fn upload_bf16(dev: &CudaDevice, x: &[f32]) -> Bf16Slice {
    let bits: Vec<u16> = to_bf16(x).iter().map(|v| v.to_bits()).collect();
    dev.stream().clone_htod(&bits).expect("upload")
}

pub fn download_bf16(dev: &CudaDevice, x: &Bf16Slice) -> Vec<f32> {
    let v = dev.stream().clone_dtoh(x).expect("download");
    dev.synchronize().unwrap();
    v.iter()
        .map(|&b| half::bf16::from_bits(b).to_f32())
        .collect()
}

// ------------------------------------------------------------------------------------------------
// CPU references composed from the CPU backend
// ------------------------------------------------------------------------------------------------

/// `C[z] = scale * (A[z] · op(B[z]) + bias [GEGLU] + R[z])` per batch entry `z` on the CPU
/// backend (`linear_ext`). `b_kn`: B is `(K, N)` (matmul), else `(N | 2N, K)` (linear);
/// `b_batched`: B has `batch` copies, else one is shared. GEGLU: B and bias have `2N` rows, value
/// rows first. Dense row-major operands; returns `(batch, M, N)`.
#[allow(clippy::too_many_arguments)]
pub fn gemm_ref(
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    (batch, m, n, k): (usize, usize, usize, usize),
    b_kn: bool,
    b_batched: bool,
    scale: f32,
    geglu: bool,
) -> Vec<f32> {
    let b_rows = if geglu { 2 * n } else { n };
    let b_size = b_rows * k;
    let bias = bias.map(|v| cpu(&[b_rows], v));
    let mut out = Vec::with_capacity(batch * m * n);
    for z in 0..batch {
        let x = cpu(&[m, k], &a[z * m * k..(z + 1) * m * k]);
        let bz = if b_batched {
            &b[z * b_size..(z + 1) * b_size]
        } else {
            &b[..b_size]
        };
        let w = if b_kn {
            CPU.permute(&cpu(&[k, n], bz), &[1, 0]).unwrap()
        } else {
            cpu(&[b_rows, k], bz)
        };
        let res = residual.map(|r| cpu(&[m, n], &r[z * m * n..(z + 1) * m * n]));
        let epi = LinearEpilogue {
            residual: res.as_ref(),
            scale,
            geglu,
        };
        out.extend(host(
            &CPU.linear_ext(&x, &w, bias.as_ref(), epi)
                .expect("CPU linear_ext"),
        ));
    }
    out
}
