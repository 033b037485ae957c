//! `CudaBackend`: the [`Backend`] trait on one CUDA device, tensors in bf16 (or f32) storage with
//! f32 math inside every kernel.
//!
//! `CudaTensor` is a device buffer + shape + storage dtype. `from_f32` / `to_f32` convert on the
//! host (f32 -> bf16 rounds to nearest even). New tensors take the backend's storage dtype
//! ([`CudaBackend::storage`], bf16 by default); [`CudaBackend::from_f32_as`] and
//! [`CudaBackend::to_dtype`] make f32 tensors where precision matters (e.g. the latents the sampler
//! reads). Every op returns the dtype of its input; ops with several tensor inputs promote to f32
//! when the dtypes differ (per-channel vectors such as gamma / beta / bias follow `x` instead).
//!
//! One file per op family, each a thin launcher over one `kernels/cuda/*.cu` module:
//! `layout.rs` (`layout.cu`), `elementwise.rs` (`pointwise.cu`), `norm.rs` (`softmax.cu`,
//! `group_norm.cu`, `layer_norm.cu`), `pool.rs` (`pool.cu`), `linalg.rs` (the launchers of
//! `gemm.rs`, `conv2d.rs`, `attention.rs`, plus `gemm_bf16.cu` for f32 outputs).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{bail, Context, Result};
use cudarc::driver::{CudaSlice, DevicePtr};
use cyberhost_kernels::{kernel_name, DType, KernelModule, LaunchConfig};

use super::arena::{AllocMode, DeviceBuffer};
use super::device::CudaDevice;
use super::graph::StepGraphInfo;
use super::{elementwise, fused, layout, linalg, norm, pool};
use crate::backends::{
    Backend, Binary, Conv2dParams, ConvEpilogue, LinearEpilogue, TensorLike, Unary,
};

/// A contiguous row-major tensor on the device. Cheap to clone (the buffer is shared).
#[derive(Clone)]
pub struct CudaTensor {
    /// At least one element is allocated, so the address is never null (even for empty shapes).
    buf: Arc<DeviceBuffer>,
    shape: Vec<usize>,
    dtype: DType,
}

impl CudaTensor {
    /// Storage dtype of the elements.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Bytes the elements occupy (`elem_count * dtype size`).
    pub fn size_in_bytes(&self) -> usize {
        self.elem_count() * self.dtype.size_in_bytes()
    }

    /// The device bytes (at least one element, even for empty shapes).
    pub(crate) fn buf(&self) -> &CudaSlice<u8> {
        &self.buf
    }

    /// Mutable device bytes of a tensor no clone shares yet (a fresh output).
    pub(crate) fn buf_mut(&mut self) -> Result<&mut CudaSlice<u8>> {
        Arc::get_mut(&mut self.buf)
            .map(|b| &mut **b)
            .ok_or_else(|| anyhow::anyhow!("CudaTensor{:?}: output buffer is shared", self.shape))
    }

    /// Same buffer, new shape (the caller checked the element count).
    pub(crate) fn with_shape(&self, shape: Vec<usize>) -> CudaTensor {
        CudaTensor {
            buf: self.buf.clone(),
            shape,
            dtype: self.dtype,
        }
    }
}

impl std::fmt::Debug for CudaTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaTensor{:?}<{}>", self.shape, self.dtype.suffix())
    }
}

impl TensorLike for CudaTensor {
    fn shape(&self) -> &[usize] {
        &self.shape
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
                activations: Mutex::new(activations_default()),
            }),
        }
    }

    /// The same device with another storage dtype for new tensors.
    pub fn with_storage(&self, storage: DType) -> Self {
        let b = Self::from_device(self.inner.dev.clone(), storage);
        b.set_poison_outputs(self.poison_outputs());
        b.set_graphs(self.graphs());
        b.set_activations(self.activations());
        b
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
    fn in_step(&self) -> bool {
        !matches!(*self.mode(), AllocMode::Plain)
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

    /// The tensor converted to `dtype` (a clone when it already has it).
    pub fn to_dtype(&self, t: &CudaTensor, dtype: DType) -> Result<CudaTensor> {
        elementwise::cast(self, t, dtype)
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
        let entry = kernel_name(op, 1, dtype);
        // SAFETY: forwarded to the caller.
        unsafe { self.inner.dev.launch(module, &entry, cfg, params) }
    }

    /// Bring `t` to `dtype` when it differs (per-channel vectors following `x`).
    pub(crate) fn as_dtype(&self, t: &CudaTensor, dtype: DType) -> Result<CudaTensor> {
        if t.dtype == dtype {
            Ok(t.clone())
        } else {
            elementwise::cast(self, t, dtype)
        }
    }
}

/// `CYBERHOST_CUDA_ACTIVATIONS=bf16|f32` (default bf16; docs/numerics.md).
fn activations_default() -> DType {
    match std::env::var("CYBERHOST_CUDA_ACTIVATIONS").as_deref() {
        Ok("f32") => DType::F32,
        _ => DType::Bf16,
    }
}

/// `CYBERHOST_CUDA_GRAPHS=0` turns graph replay off by default.
fn graphs_default() -> bool {
    std::env::var("CYBERHOST_CUDA_GRAPHS").map_or(true, |v| v != "0")
}

/// The dtype several tensor operands are computed in: theirs when equal, else f32.
pub(crate) fn promote(ts: &[&CudaTensor]) -> DType {
    match ts.first() {
        Some(f) if ts.iter().all(|t| t.dtype == f.dtype) => f.dtype,
        Some(_) => DType::F32,
        None => DType::Bf16,
    }
}

/// A size as the `u32` a kernel field holds, naming the op and the quantity in the error.
pub(crate) fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v)
        .map_err(|_| anyhow::anyhow!("{what} = {v} does not fit the kernel's u32 field"))
}

impl Backend for CudaBackend {
    type Tensor = CudaTensor;

    fn name(&self) -> &'static str {
        "cuda"
    }

    fn from_f32(&self, shape: &[usize], data: &[f32]) -> Result<CudaTensor> {
        self.from_f32_as(shape, data, self.storage())
    }

    fn to_f32(&self, t: &CudaTensor) -> Result<Vec<f32>> {
        if self.in_step() {
            bail!(
                "to_f32 of {t:?} inside a recorded or captured sampler step: a replayed step \
                 cannot read the device from the host (move the read after `run_steps`)"
            );
        }
        let bytes = self
            .stream()
            .clone_dtoh(t.buf())
            .with_context(|| format!("downloading {t:?} from {}", self.inner.dev.name()))?;
        self.inner.dev.synchronize()?;
        let n = t.elem_count();
        Ok(match t.dtype {
            DType::F32 => bytemuck::pod_collect_to_vec::<u8, f32>(&bytes[..n * 4]),
            DType::Bf16 => bytemuck::pod_collect_to_vec::<u8, u16>(&bytes[..n * 2])
                .into_iter()
                .map(|b| half::bf16::from_bits(b).to_f32())
                .collect(),
        })
    }

    fn from_f32_full(&self, shape: &[usize], data: &[f32]) -> Result<CudaTensor> {
        self.from_f32_as(shape, data, DType::F32)
    }

    fn to_activation(&self, t: &CudaTensor) -> Result<CudaTensor> {
        self.as_dtype(t, self.activations())
    }

    fn run_steps(
        &self,
        init: CudaTensor,
        lp: crate::backends::step_loop::StepLoop<'_, Self>,
    ) -> Result<CudaTensor> {
        super::graph::run_steps(self, init, lp)
    }

    fn zeros(&self, shape: &[usize]) -> Result<CudaTensor> {
        let mut t = self.alloc(shape, self.storage())?;
        if !self.inner.dev.is_dry() {
            let stream = self.stream().clone();
            stream.memset_zeros(t.buf_mut()?).context("zeros: memset")?;
        }
        Ok(t)
    }

    fn reshape(&self, t: &CudaTensor, shape: &[usize]) -> Result<CudaTensor> {
        layout::reshape(t, shape)
    }

    fn permute(&self, t: &CudaTensor, dims: &[usize]) -> Result<CudaTensor> {
        layout::permute(self, t, dims)
    }

    fn concat(&self, ts: &[&CudaTensor], dim: usize) -> Result<CudaTensor> {
        layout::concat(self, ts, dim)
    }

    fn narrow(&self, t: &CudaTensor, dim: usize, start: usize, len: usize) -> Result<CudaTensor> {
        layout::narrow(self, t, dim, start, len)
    }

    fn index_select(&self, t: &CudaTensor, dim: usize, idx: &[usize]) -> Result<CudaTensor> {
        layout::index_select(self, t, dim, idx)
    }

    fn unary(&self, t: &CudaTensor, op: Unary) -> Result<CudaTensor> {
        elementwise::unary(self, t, op)
    }

    fn binary(&self, a: &CudaTensor, b: &CudaTensor, op: Binary) -> Result<CudaTensor> {
        elementwise::binary(self, a, b, op)
    }

    fn affine(&self, t: &CudaTensor, mul: f32, add: f32) -> Result<CudaTensor> {
        elementwise::affine(self, t, mul, add)
    }

    fn softmax_last(&self, t: &CudaTensor) -> Result<CudaTensor> {
        norm::softmax_last(self, t, 1.0)
    }

    fn group_norm(
        &self,
        x: &CudaTensor,
        groups: usize,
        gamma: Option<&CudaTensor>,
        beta: Option<&CudaTensor>,
        eps: f32,
    ) -> Result<CudaTensor> {
        norm::group_norm(self, x, groups, gamma, beta, eps)
    }

    fn layer_norm(
        &self,
        x: &CudaTensor,
        gamma: Option<&CudaTensor>,
        beta: Option<&CudaTensor>,
        eps: f32,
    ) -> Result<CudaTensor> {
        norm::layer_norm(self, x, gamma, beta, eps)
    }

    fn linear(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        bias: Option<&CudaTensor>,
    ) -> Result<CudaTensor> {
        linalg::linear(self, x, w, bias)
    }

    fn matmul(&self, a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor> {
        linalg::matmul(self, a, b)
    }

    fn conv2d(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        bias: Option<&CudaTensor>,
        p: Conv2dParams,
    ) -> Result<CudaTensor> {
        super::conv2d::conv2d_op(self, x, w, bias, p)
    }

    fn attention(
        &self,
        q: &CudaTensor,
        k: &CudaTensor,
        v: &CudaTensor,
        scale: f32,
    ) -> Result<CudaTensor> {
        linalg::attention(self, q, k, v, scale)
    }

    fn upsample_nearest2d(&self, x: &CudaTensor, out_h: usize, out_w: usize) -> Result<CudaTensor> {
        layout::upsample_nearest2d(self, x, out_h, out_w)
    }

    fn pad2d(
        &self,
        x: &CudaTensor,
        left: usize,
        right: usize,
        top: usize,
        bottom: usize,
    ) -> Result<CudaTensor> {
        layout::pad2d(self, x, left, right, top, bottom)
    }

    fn mean_dim(&self, t: &CudaTensor, dim: usize) -> Result<CudaTensor> {
        pool::mean_dim(self, t, dim)
    }

    fn max_pool2d(
        &self,
        x: &CudaTensor,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<CudaTensor> {
        pool::max_pool2d(self, x, kernel, stride, padding)
    }

    fn group_norm_act(
        &self,
        x: &CudaTensor,
        groups: usize,
        gamma: Option<&CudaTensor>,
        beta: Option<&CudaTensor>,
        eps: f32,
        act: Option<Unary>,
    ) -> Result<CudaTensor> {
        fused::group_norm_act(self, x, groups, gamma, beta, eps, act)
    }

    fn linear_ext(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        bias: Option<&CudaTensor>,
        epi: LinearEpilogue<'_, CudaTensor>,
    ) -> Result<CudaTensor> {
        fused::linear_ext(self, x, w, bias, epi)
    }

    fn conv2d_ext(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        bias: Option<&CudaTensor>,
        p: Conv2dParams,
        epi: ConvEpilogue<'_, CudaTensor>,
    ) -> Result<CudaTensor> {
        fused::conv2d_ext(self, x, w, bias, p, epi)
    }

    fn rca_attention(
        &self,
        q: &CudaTensor,
        k: &CudaTensor,
        v: &CudaTensor,
        heads: usize,
        scale: f32,
    ) -> Result<CudaTensor> {
        super::rca::rca_attention(self, q, k, v, heads, scale)
    }

    fn rca_temporal_query(
        &self,
        x: &CudaTensor,
        a_s: &CudaTensor,
        bank: &CudaTensor,
    ) -> Result<CudaTensor> {
        super::rca::rca_temporal_query(self, x, a_s, bank)
    }

    fn rca_motion_sum(
        &self,
        a_s: &CudaTensor,
        a_t: &CudaTensor,
        f_id: Option<(&CudaTensor, usize)>,
    ) -> Result<CudaTensor> {
        super::rca::rca_motion_sum(self, a_s, a_t, f_id)
    }

    fn rca_merge(
        &self,
        f_in: &CudaTensor,
        tokens: &CudaTensor,
        mask_hidden: &CudaTensor,
        mask_w: &CudaTensor,
        mask_b: Option<&CudaTensor>,
    ) -> Result<CudaTensor> {
        super::rca::rca_merge(self, f_in, tokens, mask_hidden, mask_w, mask_b)
    }

    fn timestep_embedding(
        &self,
        t: &CudaTensor,
        dim: usize,
        flip_sin_to_cos: bool,
        downscale_freq_shift: f32,
    ) -> Result<CudaTensor> {
        super::sampler::timestep_embedding(self, t, dim, flip_sin_to_cos, downscale_freq_shift)
    }

    fn cfg_ddim_step(
        &self,
        out: &CudaTensor,
        z: &CudaTensor,
        frame_offset: usize,
        coeffs: &CudaTensor,
    ) -> Result<CudaTensor> {
        super::sampler::cfg_ddim_step(self, out, z, frame_offset, coeffs)
    }
}
