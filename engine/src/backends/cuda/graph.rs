//! [`Backend::run_steps`] on CUDA: the step is planned once, captured once as a CUDA graph, and
//! every step of the loop is one graph launch.
//!
//! ```text
//! state, inputs      persistent device buffers (state ← init; inputs ← host values per step)
//! 1 record           dry run of body(state, inputs): no launches, no memory; every allocation
//!                    and free is logged → lifetimes → planner → arena offsets (arena.rs)
//! 2 arena            one allocation of the planned size, before the loop
//! 3 capture          body(state, inputs) with allocations from the arena, then state ← result
//!                    (a device copy), captured on the stream into one graph
//! 4 loop             per step: inputs ← host (one small copy each), launch the graph, after(i)
//! ```
//!
//! Inside the loop the driver sees no allocation, no free and no module load: only the input
//! copies, one graph launch and whatever `after` reads back. Weights, cached constants and
//! index lists live outside the arena. The result is bit-identical to plain launches: the graph
//! holds the same kernels with the same arguments in the same order.

use std::sync::Arc;

use anyhow::{Context, Result};
use cudarc::driver::{result, sys};

use super::arena::{AllocMode, ArenaCursor, Recorder};
use super::context::CudaBackend;
pub use super::context::StepGraphInfo;
use super::tensor::CudaTensor;
use super::DType;
use crate::backends::step_loop::{check_state, run_plain, StepLoop};
use crate::backends::TensorLike;

/// Restores plain allocation (and leaves dry mode) on every exit path.
struct ModeGuard<'a>(&'a CudaBackend);

impl Drop for ModeGuard<'_> {
    fn drop(&mut self) {
        *self.0.mode() = AllocMode::Plain;
        self.0.device().set_dry(false);
    }
}

/// See the module docs. Falls back to [`run_plain`] when graphs are off.
pub(crate) fn run_steps(
    be: &CudaBackend,
    init: CudaTensor,
    mut lp: StepLoop<'_, CudaBackend>,
) -> Result<CudaTensor> {
    if !be.graphs() || lp.steps == 0 {
        return run_plain(be, init, lp);
    }
    let stream = be.stream().clone();
    // Persistent buffers the graph reads and writes.
    let state = be.alloc(init.shape(), init.dtype())?;
    copy_device(be, &state, &init).context("run_steps: initial state")?;
    drop(init);
    let inputs = lp
        .input_shapes
        .iter()
        .map(|s| be.alloc(s, DType::F32))
        .collect::<Result<Vec<_>>>()?;

    // 1. record
    let plan = {
        let rec = Arc::new(Recorder::default());
        let _guard = ModeGuard(be);
        *be.mode() = AllocMode::Record(rec.clone());
        be.device().set_dry(true);
        let out = (lp.body)(be, &state, &inputs).context("run_steps: recording the step")?;
        check_state(&state, &out, 0)?;
        drop(out);
        Arc::new(rec.plan()?)
    };
    be.set_last_step_graph(StepGraphInfo::from(plan.as_ref()));

    // 2. arena
    // SAFETY: uninitialised device memory; every tensor placed in it is written by its
    // producing kernel before any read.
    let arena = Arc::new(
        unsafe { stream.alloc::<u8>(plan.arena_bytes.max(1) as usize) }
            .with_context(|| format!("allocating the {} byte step arena", plan.arena_bytes))?,
    );

    // 3. capture (step 0's inputs are in place before the graph first runs)
    write_inputs(be, &inputs, &lp.inputs_of(0)?)?;
    let graph = {
        let _guard = ModeGuard(be);
        *be.mode() = AllocMode::Replay(ArenaCursor::new(plan.clone(), arena.clone()));
        stream
            .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .context("run_steps: cuStreamBeginCapture")?;
        let captured = (|| -> Result<()> {
            let out = super::memory_format::contiguous(be, &(lp.body)(be, &state, &inputs)?)?;
            check_state(&state, &out, 0)?;
            if out.dtype() != state.dtype() {
                anyhow::bail!(
                    "the step returned {:?} for a {:?} state",
                    out.dtype(),
                    state.dtype()
                );
            }
            copy_device(be, &state, &out)?;
            let used = match &*be.mode() {
                AllocMode::Replay(c) => c.used(),
                _ => 0,
            };
            if used != plan.sizes.len() {
                anyhow::bail!(
                    "the captured step made {used} allocations, the recorded one {}: the step \
                     must allocate the same way every time",
                    plan.sizes.len()
                );
            }
            Ok(())
        })();
        // End the capture on every path, so the stream is usable afterwards.
        let ended = stream.end_capture(sys::CUgraphInstantiate_flags(0));
        captured.context("run_steps: capturing the step")?;
        ended
            .context("run_steps: cuStreamEndCapture / cuGraphInstantiate")?
            .context("run_steps: the captured step is empty")?
    };

    // 4. the loop: one graph launch per step
    for i in 0..lp.steps {
        if i > 0 {
            write_inputs(be, &inputs, &lp.inputs_of(i)?)?;
        }
        graph
            .launch()
            .with_context(|| format!("run_steps: launching the step graph (step {i})"))?;
        (lp.after)(i, &state)?;
    }
    drop(graph);
    drop(arena);
    Ok(state)
}

/// `dst ← src` on the stream (same size).
fn copy_device(be: &CudaBackend, dst: &CudaTensor, src: &CudaTensor) -> Result<()> {
    if dst.size_in_bytes() != src.size_in_bytes() || dst.dtype() != src.dtype() {
        anyhow::bail!("device copy {src:?} → {dst:?}: sizes or dtypes differ");
    }
    // SAFETY: both addresses are live buffers of at least `size_in_bytes` bytes on this stream.
    unsafe {
        result::memcpy_dtod_async(
            be.ptr(dst),
            be.ptr(src),
            src.size_in_bytes(),
            be.stream().cu_stream(),
        )
    }
    .context("cuMemcpyDtoDAsync")
}

/// Upload one step's input values into the persistent f32 input buffers.
fn write_inputs(be: &CudaBackend, bufs: &[CudaTensor], values: &[Vec<f32>]) -> Result<()> {
    for (b, v) in bufs.iter().zip(values) {
        // SAFETY: `b` is an f32 buffer of exactly `v.len()` elements (checked by `inputs_of`);
        // a copy from pageable host memory returns once the source has been read.
        unsafe { result::memcpy_htod_async(be.ptr(b), v.as_slice(), be.stream().cu_stream()) }
            .context("run_steps: uploading the step inputs")?;
    }
    Ok(())
}
