//! `CudaBackend`'s state and the layer every op file launches through: the device and stream,
//! allocation (plain, recorded or from the planned arena), host uploads and step constants, and
//! `launch`. The `Backend` trait itself is implemented in `backend.rs`, over the op files; this
//! file uses none of them (arrows: backend -> op files -> context -> tensor, util, device, arena).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{bail, Context, Result};
use cudarc::driver::{CudaSlice, DevicePtr};
use cyberhost_kernels::{kernel_name, DType, KernelModule, LaunchConfig, RowsShape};

use super::arena::{AllocMode, ArenaPlan, DeviceBuffer};
use super::device::CudaDevice;
use super::tensor::CudaTensor;
use crate::backends::TensorLike;

/// What the last graph-replayed loop planned (for `cyberhost bench` and tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepGraphInfo {
    /// Allocations one step makes (all from the arena).
    pub allocations: usize,
    pub arena_bytes: u64,
    /// The same allocations without reuse (aligned).
    pub naive_bytes: u64,
    /// Largest set of simultaneously live allocations (aligned): the arena's lower bound.
    pub max_live_bytes: u64,
}

impl From<&ArenaPlan> for StepGraphInfo {
    fn from(p: &ArenaPlan) -> Self {
        StepGraphInfo {
            allocations: p.sizes.len(),
            arena_bytes: p.arena_bytes,
            naive_bytes: p.naive_bytes,
            max_live_bytes: p.max_live_bytes,
        }
    }
}

struct Inner {
    dev: Arc<CudaDevice>,
    storage: DType,
    /// Fill every freshly allocated output with 0xFF bytes (NaN in f32 and bf16) before the kernel
    /// that writes it runs: tests catch elements a kernel forgets to write.
    poison: AtomicBool,
    /// Plain driver allocations, a dry-run log, or a planned arena (`arena.rs`, `graph.rs`).
    mode: Mutex<AllocMode>,
    /// Host constants uploaded inside recorded / replayed steps, by content: a captured step may
    /// not copy from the host, so the dry run uploads them once and the capture reuses them.
    constants: Mutex<HashMap<(Vec<usize>, DType, Vec<u8>), CudaTensor>>,
    /// `index_select` index lists on the device, by content (same reason; bounded by the model).
    indices: Mutex<HashMap<Vec<u32>, Arc<CudaSlice<u32>>>>,
    /// Replay sampler steps from captured CUDA graphs (`Backend::run_steps`).
    graphs: AtomicBool,
    last_step: Mutex<Option<StepGraphInfo>>,
    /// Storage dtype of the denoiser's activations (`Backend::to_activation`).
    activations: Mutex<DType>,
    /// `--weights-dtype fp8`: linear weights quantised to e4m3 at load (`prepare_linear_weight`)
    /// and their linears on `gemm_fp8_sm90`. Shared with `with_storage` copies.
    fp8: Arc<Fp8Weights>,
    /// Channels-last trunk (`memory_format.rs`) and the packed conv weights it runs on. Shared
    /// with `with_storage` copies.
    channels_last: Arc<ChannelsLastWeights>,
}

/// [`CudaBackend::set_channels_last`]'s switch and the conv weights packed for `conv2d_nhwc` at
/// load, by the device address of the `(O, C, kh, kw)` weight (the entry holds that weight, so
/// the address stays its own): `(weight, packed (O, K_pad))`.
#[derive(Default)]
pub(crate) struct ChannelsLastWeights {
    pub(crate) on: AtomicBool,
    pub(crate) by_weight: Mutex<HashMap<u64, (CudaTensor, CudaTensor)>>,
}

/// The e4m3 copies of the linear weights, by the device address of the bf16 weight they were
/// quantised from (the entry holds that weight, so the address stays its own).
#[derive(Default)]
pub(crate) struct Fp8Weights {
    pub(crate) on: AtomicBool,
    pub(crate) by_weight: Mutex<HashMap<u64, Arc<Fp8Weight>>>,
}

/// One linear weight `(rows, k)` as e4m3 codes `q` (rows x ldq bytes, in an f32 tensor of
/// `rows * ldq / 4` elements) and f32 per-row (output-channel) scales `s`.
pub(crate) struct Fp8Weight {
    pub(crate) _weight: CudaTensor,
    pub(crate) q: CudaTensor,
    pub(crate) s: CudaTensor,
    pub(crate) rows: usize,
    pub(crate) k: usize,
}

/// The CUDA backend: one device, one stream; clones share them.
#[derive(Clone)]
pub struct CudaBackend {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("device", &self.inner.dev)
            .field("storage", &self.inner.storage)
            .finish()
    }
}

impl CudaBackend {
    /// Open CUDA device `ordinal` (e.g. 0) with bf16 storage. Without a driver this is an error
    /// naming how to install one or select the stand-in (`NO_DRIVER_MSG`), never a panic.
    pub fn new(ordinal: usize) -> Result<Self> {
        let dev = CudaDevice::new(ordinal).context("CudaBackend::new")?;
        Ok(Self::from_device(Arc::new(dev), DType::Bf16))
    }

    /// Device `ordinal` on the stand-in driver (`tools/ptx-emu-driver`), bf16 storage.
    pub fn new_emulated(ordinal: usize) -> Result<Self> {
        let dev = CudaDevice::new_emulated(ordinal).context("CudaBackend::new_emulated")?;
        Ok(Self::from_device(Arc::new(dev), DType::Bf16))
    }

    /// A backend on an open device whose new tensors use `storage` (bf16 or f32).
    pub fn from_device(dev: Arc<CudaDevice>, storage: DType) -> Self {
        let dev_arch = dev.arch();
        CudaBackend {
            inner: Arc::new(Inner {
                dev,
                storage,
                poison: AtomicBool::new(false),
                mode: Mutex::new(AllocMode::Plain),
                constants: Mutex::new(HashMap::new()),
                indices: Mutex::new(HashMap::new()),
                graphs: AtomicBool::new(graphs_default()),
                last_step: Mutex::new(None),
                activations: Mutex::new(default_activations()),
                fp8: Arc::new(Fp8Weights::default()),
                channels_last: Arc::new(ChannelsLastWeights {
                    on: AtomicBool::new(channels_last_default(dev_arch)),
                    by_weight: Mutex::new(HashMap::new()),
                }),
            }),
        }
    }

    /// The same device with another storage dtype for new tensors.
    pub fn with_storage(&self, storage: DType) -> Self {
        let b = Self::from_device(self.inner.dev.clone(), storage);
        b.set_poison_outputs(self.poison_outputs());
        b.set_graphs(self.graphs());
        b.set_activations(self.activations());
        let mut b = b;
        Arc::get_mut(&mut b.inner)
            .expect("a fresh backend is not shared")
            .fp8 = self.inner.fp8.clone();
        Arc::get_mut(&mut b.inner)
            .expect("a fresh backend is not shared")
            .channels_last = self.inner.channels_last.clone();
        b
    }

    /// Channels-last U-Net trunk on the sm_80 kernel set (`on`; default: the environment
    /// variable `CYBERHOST_CHANNELS_LAST=1`): conv weights loaded after this call are packed for
    /// `conv2d_nhwc`, and their convolutions read and write channels-last activations
    /// ([`MemoryFormat`](super::tensor::MemoryFormat); docs/performance.md). Errors on the sm_90a
    /// set, whose `conv2d_sm90` runs on NCHW planes.
    pub fn set_channels_last(&self, on: bool) -> Result<()> {
        let arch = self.inner.dev.arch();
        if on && arch != cyberhost_kernels::Arch::Sm80 {
            bail!(
                "channels-last activations run on the sm_80 kernel set only: {} runs the {arch} \
                 set (on the stand-in, set PTX_EMU_ARCH=sm_80 or CYBERHOST_CUDA_ARCH=sm_80)",
                self.inner.dev.name()
            );
        }
        self.inner.channels_last.on.store(on, Ordering::Relaxed);
        Ok(())
    }

    /// Whether convolutions run channels-last ([`Self::set_channels_last`]).
    pub fn channels_last(&self) -> bool {
        self.inner.channels_last.on.load(Ordering::Relaxed)
    }

    /// The packed `conv2d_nhwc` copy of conv weight `w`, if it was packed at load.
    pub(crate) fn packed_conv_weight(&self, w: &CudaTensor) -> Option<CudaTensor> {
        if !self.channels_last() {
            return None;
        }
        let key = self.ptr(w);
        let map = self.inner.channels_last.by_weight.lock();
        let map = map.unwrap_or_else(|e| e.into_inner());
        map.get(&key).map(|(_, packed)| packed.clone())
    }

    /// Records the packed copy of conv weight `w`.
    pub(crate) fn insert_packed_conv_weight(&self, w: &CudaTensor, packed: CudaTensor) {
        let key = self.ptr(w);
        let map = self.inner.channels_last.by_weight.lock();
        let mut map = map.unwrap_or_else(|e| e.into_inner());
        map.insert(key, (w.clone(), packed));
    }

    /// `--weights-dtype fp8` (`true`) or bf16: with fp8, linear weights loaded after this call are
    /// quantised to e4m3 (per-output-channel scales) and their linears run on the Hopper FP8
    /// GEMM. Errors, naming the flag and the fix, on a device without the sm_90a kernel set.
    pub fn set_weights_fp8(&self, on: bool) -> Result<()> {
        let arch = self.inner.dev.arch();
        if on && arch != cyberhost_kernels::Arch::Sm90a {
            bail!(
                "--weights-dtype fp8 needs an sm_90a (Hopper, compute capability 9.0) device: {} \
                 runs the {arch} kernel set (on the stand-in, unset PTX_EMU_ARCH or set it to \
                 sm_90a); use --weights-dtype bf16 here",
                self.inner.dev.name()
            );
        }
        self.inner.fp8.on.store(on, Ordering::Relaxed);
        Ok(())
    }

    /// Whether linear weights are quantised to fp8 at load ([`Self::set_weights_fp8`]).
    pub fn weights_fp8(&self) -> bool {
        self.inner.fp8.on.load(Ordering::Relaxed)
    }

    /// The e4m3 copy of weight `w`, if it was quantised at load.
    pub(crate) fn fp8_weight(&self, w: &CudaTensor) -> Option<Arc<Fp8Weight>> {
        if !self.weights_fp8() {
            return None;
        }
        let key = self.ptr(w);
        self.inner
            .fp8
            .by_weight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned()
    }

    /// Records the e4m3 copy of its weight.
    pub(crate) fn insert_fp8_weight(&self, f: Fp8Weight) {
        let key = self.ptr(&f._weight);
        self.inner
            .fp8
            .by_weight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, Arc::new(f));
    }

    /// Storage dtype of tensors made by `from_f32` / `zeros`.
    pub fn storage(&self) -> DType {
        self.inner.storage
    }

    pub fn device(&self) -> &Arc<CudaDevice> {
        &self.inner.dev
    }

    /// Tests: fill new outputs with 0xFF (NaN) before kernels write them.
    pub fn set_poison_outputs(&self, on: bool) {
        self.inner.poison.store(on, Ordering::Relaxed);
    }

    pub fn poison_outputs(&self) -> bool {
        self.inner.poison.load(Ordering::Relaxed)
    }

    /// Replay each sampler step from one captured CUDA graph (default on; off with the
    /// environment variable `CYBERHOST_CUDA_GRAPHS=0`): see [`Backend::run_steps`].
    pub fn set_graphs(&self, on: bool) {
        self.inner.graphs.store(on, Ordering::Relaxed);
    }

    pub fn graphs(&self) -> bool {
        self.inner.graphs.load(Ordering::Relaxed)
    }

    /// Storage dtype of the denoiser's activations: `Bf16` halves their bytes and runs every
    /// GEMM / conv / attention on the bf16 tensor-core path; `F32` keeps them in f32 and makes the
    /// products f32-accurate (split bf16 hi + lo operands: about twice the tensor-core work).
    /// Default from `CYBERHOST_CUDA_ACTIVATIONS` (`bf16` or `f32`), else bf16.
    pub fn set_activations(&self, dtype: DType) {
        *self
            .inner
            .activations
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = dtype;
    }

    pub fn activations(&self) -> DType {
        *self
            .inner
            .activations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The arena and allocation count of the last graph-replayed step loop.
    pub fn last_step_graph(&self) -> Option<StepGraphInfo> {
        self.inner
            .last_step
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn set_last_step_graph(&self, info: StepGraphInfo) {
        *self
            .inner
            .last_step
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(info);
    }

    /// The allocation mode (`arena.rs`).
    pub(crate) fn mode(&self) -> MutexGuard<'_, AllocMode> {
        self.inner.mode.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True while a step is recorded (dry run) or captured: host copies are not allowed.
    pub(crate) fn in_step(&self) -> bool {
        !matches!(*self.mode(), AllocMode::Plain)
    }

    /// A zero-filled tensor of `shape` and `dtype`.
    pub fn zeros_as(&self, shape: &[usize], dtype: DType) -> Result<CudaTensor> {
        let mut t = self.alloc(shape, dtype)?;
        if !self.inner.dev.is_dry() {
            let stream = self.stream().clone();
            stream.memset_zeros(t.buf_mut()?).context("zeros: memset")?;
        }
        Ok(t)
    }

    /// Upload host f32 data as a tensor of `dtype`.
    pub fn from_f32_as(&self, shape: &[usize], data: &[f32], dtype: DType) -> Result<CudaTensor> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            bail!(
                "from_f32: shape {shape:?} needs {n} elements, got {}",
                data.len()
            );
        }
        let bytes: Vec<u8> = match dtype {
            DType::F32 => bytemuck::cast_slice(data).to_vec(),
            DType::Bf16 => {
                let v: Vec<u16> = data
                    .iter()
                    .map(|&x| half::bf16::from_f32(x).to_bits())
                    .collect();
                bytemuck::cast_slice(&v).to_vec()
            }
        };
        let mut padded = bytes;
        if padded.is_empty() {
            padded.resize(dtype.size_in_bytes(), 0);
        }
        if self.in_step() {
            return self.step_constant(shape, dtype, padded);
        }
        self.upload(shape, dtype, &padded)
    }

    fn upload(&self, shape: &[usize], dtype: DType, bytes: &[u8]) -> Result<CudaTensor> {
        let buf = self.stream().clone_htod(bytes).with_context(|| {
            format!("uploading a {shape:?} tensor to {}", self.inner.dev.name())
        })?;
        Ok(CudaTensor {
            buf: Arc::new(DeviceBuffer::driver(buf)),
            shape: shape.to_vec(),
            dtype,
            format: super::tensor::MemoryFormat::Contiguous,
        })
    }

    /// A host constant made inside a recorded or captured step: uploaded once (during the dry
    /// run, when nothing is being captured) and shared by content afterwards.
    fn step_constant(&self, shape: &[usize], dtype: DType, bytes: Vec<u8>) -> Result<CudaTensor> {
        let key = (shape.to_vec(), dtype, bytes);
        let mut cache = self
            .inner
            .constants
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(t) = cache.get(&key) {
            return Ok(t.clone());
        }
        if matches!(*self.mode(), AllocMode::Replay(_)) {
            bail!(
                "a {shape:?} host constant first appeared while a step was being captured: a \
                 replayed step must upload the same constants in its recorded run (values that \
                 change per step belong in the step inputs)"
            );
        }
        let t = self.upload(shape, dtype, &key.2)?;
        cache.insert(key, t.clone());
        Ok(t)
    }

    /// `index_select` indices on the device, uploaded once per distinct list.
    pub(crate) fn index_buffer(&self, idx: &[u32]) -> Result<u64> {
        let mut cache = self.inner.indices.lock().unwrap_or_else(|e| e.into_inner());
        let buf = match cache.get(idx) {
            Some(b) => b.clone(),
            None => {
                if matches!(*self.mode(), AllocMode::Replay(_)) {
                    bail!(
                        "index_select with a new index list ({} entries) while a step was being \
                         captured: the recorded run of the step must use the same indices",
                        idx.len()
                    );
                }
                let b = Arc::new(self.stream().clone_htod(idx)?);
                cache.insert(idx.to_vec(), b.clone());
                b
            }
        };
        let (ptr, _sync) = cudarc::driver::DevicePtr::device_ptr(buf.as_ref(), self.stream());
        Ok(ptr)
    }

    // ---- helpers for the op files ------------------------------------------------------------

    pub(crate) fn stream(&self) -> &Arc<cudarc::driver::CudaStream> {
        self.inner.dev.stream()
    }

    /// Device address of a tensor's first element.
    pub(crate) fn ptr(&self, t: &CudaTensor) -> u64 {
        let (p, _sync) = t.buf.device_ptr(self.stream());
        p
    }

    /// An uninitialised (poisoned in tests) tensor of `shape` and `dtype`.
    pub(crate) fn alloc(&self, shape: &[usize], dtype: DType) -> Result<CudaTensor> {
        let n: usize = shape.iter().product();
        let bytes = n.max(1) * dtype.size_in_bytes();
        let planned = self.mode().take(self.stream(), bytes)?;
        let buf = match planned {
            Some(b) => b,
            None => {
                // SAFETY: the buffer is uninitialised device memory; every op writes all `n`
                // elements before any read (tests poison it to check exactly that).
                let b = unsafe { self.stream().alloc::<u8>(bytes) }.with_context(|| {
                    format!(
                        "allocating {bytes} bytes for a {shape:?} tensor on {}",
                        self.inner.dev.name()
                    )
                })?;
                DeviceBuffer::driver(b)
            }
        };
        let t = CudaTensor {
            buf: Arc::new(buf),
            shape: shape.to_vec(),
            dtype,
            format: super::tensor::MemoryFormat::Contiguous,
        };
        if self.poison_outputs() && !self.inner.dev.is_dry() {
            let p = self.ptr(&t);
            // SAFETY: `p` addresses the `bytes` bytes just allocated on this stream.
            unsafe {
                cudarc::driver::result::memset_d8_async(p, 0xFF, bytes, self.stream().cu_stream())
            }
            .context("poisoning a new output")?;
        }
        Ok(t)
    }

    /// Launch `op`_v1_`dtype` of `module` with one params struct.
    ///
    /// # Safety
    /// As [`CudaDevice::launch`]: `params` is the entry's params struct and every address in it
    /// points to a live buffer of this backend large enough for the described shape.
    pub(crate) unsafe fn launch<P: bytemuck::Pod>(
        &self,
        module: KernelModule,
        op: &str,
        dtype: DType,
        cfg: LaunchConfig,
        params: &P,
    ) -> Result<()> {
        // SAFETY: forwarded to the caller.
        unsafe { self.launch_version(module, op, 1, dtype, cfg, params) }
    }

    /// [`launch`](Self::launch) of entry `op`_v`version`_`dtype`.
    ///
    /// # Safety
    /// As [`launch`](Self::launch).
    pub(crate) unsafe fn launch_version<P: bytemuck::Pod>(
        &self,
        module: KernelModule,
        op: &str,
        version: u32,
        dtype: DType,
        cfg: LaunchConfig,
        params: &P,
    ) -> Result<()> {
        let entry = kernel_name(op, version, dtype);
        // SAFETY: forwarded to the caller.
        unsafe { self.inner.dev.launch(module, &entry, cfg, params) }
    }

    /// [`launch`](Self::launch) of `op` in `out`'s dtype (the op's inputs share it); returns
    /// `out`, the tensor the kernel writes.
    ///
    /// # Safety
    /// As [`launch`](Self::launch).
    pub(crate) unsafe fn launch_to<P: bytemuck::Pod>(
        &self,
        module: KernelModule,
        op: &str,
        cfg: LaunchConfig,
        params: &P,
        out: CudaTensor,
    ) -> Result<CudaTensor> {
        // SAFETY: forwarded to the caller.
        unsafe { self.launch(module, op, out.dtype(), cfg, params) }?;
        Ok(out)
    }

    /// A row kernel (`layer_norm`, `softmax`: one warp per row of `x`'s last dim, `cols` long):
    /// `op` writing a new tensor like `x`, with the params `params` builds for the `(rows, cols)`
    /// shape and the output's address; an empty `x` launches nothing.
    ///
    /// # Safety
    /// As [`launch`](Self::launch): `params` describes `x` and an output like it as `op` reads them.
    pub(crate) unsafe fn launch_rows<P: bytemuck::Pod>(
        &self,
        module: KernelModule,
        op: &str,
        x: &CudaTensor,
        cols: usize,
        launch_config: fn(RowsShape) -> LaunchConfig,
        params: impl FnOnce(RowsShape, u64) -> Result<P>,
    ) -> Result<CudaTensor> {
        let out = self.alloc(x.shape(), x.dtype())?;
        if x.elem_count() == 0 {
            return Ok(out);
        }
        let shape = RowsShape::of(x.elem_count(), cols);
        let p = params(shape, self.ptr(&out))?;
        // SAFETY: forwarded to the caller.
        unsafe { self.launch_to(module, op, launch_config(shape), &p, out) }
    }
}

/// `CYBERHOST_CUDA_ACTIVATIONS=bf16|f32` (default bf16; docs/numerics.md).
pub fn default_activations() -> DType {
    match std::env::var("CYBERHOST_CUDA_ACTIVATIONS").as_deref() {
        Ok("f32") => DType::F32,
        _ => DType::Bf16,
    }
}

/// Channels-last trunk on the sm_80 kernel set with `CYBERHOST_CHANNELS_LAST=1`
/// ([`CudaBackend::set_channels_last`]); never on the sm_90a set. Off by default until the
/// `paper` profiles with it on are measured (docs/performance.md, `trunk3`).
fn channels_last_default(arch: cyberhost_kernels::Arch) -> bool {
    arch == cyberhost_kernels::Arch::Sm80
        && std::env::var("CYBERHOST_CHANNELS_LAST").is_ok_and(|v| v.trim() == "1")
}

/// `CYBERHOST_CUDA_GRAPHS=0` turns graph replay off by default.
fn graphs_default() -> bool {
    std::env::var("CYBERHOST_CUDA_GRAPHS").map_or(true, |v| v != "0")
}
