//! A loop of identical steps that a backend may run from one captured graph
//! ([`Backend::run_steps`]): the sampler's denoising loop.
//!
//! ```text
//! state₀ = init
//! for i in 0..steps:
//!     inputs_i = inputs(i)                 host values, fixed shapes (timestep, DDIM coefficients, time embedding)
//!     state_{i+1} = body(state_i, inputs_i) device work only, same shape and dtype as state
//!     after(i, state_{i+1})                e.g. progress, a host copy of the latents
//! ```
//!
//! Everything a step reads that changes between steps must come from `state` or the step
//! inputs: a backend replaying a captured graph re-runs exactly the recorded kernels on the
//! same buffers, so a value captured from the host inside `body` would be frozen at its first
//! value. The CUDA backend also refuses host reads inside `body`.

use anyhow::{bail, Result};

use super::{Backend, TensorLike};

/// The host values of one step's inputs, in the order of [`StepLoop::input_shapes`].
pub type StepInputs = Vec<Vec<f32>>;

/// See the module docs.
pub struct StepLoop<'a, B: Backend> {
    /// Number of iterations, e.g. 25.
    pub steps: usize,
    /// Shapes of the per-step inputs, e.g. `[[1], [8], [2, 1280]]`; they reach `body` as f32 tensors.
    pub input_shapes: Vec<Vec<usize>>,
    /// The input values of step `i`.
    pub inputs: &'a mut dyn FnMut(usize) -> Result<StepInputs>,
    /// One step: `(backend, state, inputs) → new state`.
    #[allow(clippy::type_complexity)]
    pub body: &'a mut dyn FnMut(&B, &B::Tensor, &[B::Tensor]) -> Result<B::Tensor>,
    /// Called after step `i` with the new state.
    pub after: &'a mut dyn FnMut(usize, &B::Tensor) -> Result<()>,
}

impl<B: Backend> StepLoop<'_, B> {
    /// Step `i`'s input values, checked against [`Self::input_shapes`].
    pub fn inputs_of(&mut self, i: usize) -> Result<StepInputs> {
        let values = (self.inputs)(i)?;
        if values.len() != self.input_shapes.len() {
            bail!(
                "step {i}: {} input arrays for {} input shapes",
                values.len(),
                self.input_shapes.len()
            );
        }
        for (k, (v, s)) in values.iter().zip(&self.input_shapes).enumerate() {
            let n: usize = s.iter().product();
            if v.len() != n {
                bail!("step {i}: input {k} has {} values for shape {s:?}", v.len());
            }
        }
        Ok(values)
    }
}

/// A step's result must be a new value of the state.
pub fn check_state<T: TensorLike>(state: &T, new: &T, step: usize) -> Result<()> {
    if state.shape() != new.shape() {
        bail!(
            "step {step}: the step returned {:?} for a state of shape {:?}",
            new.shape(),
            state.shape()
        );
    }
    Ok(())
}

/// The loop with plain op calls: the default of [`Backend::run_steps`].
pub fn run_plain<B: Backend>(
    be: &B,
    init: B::Tensor,
    mut lp: StepLoop<'_, B>,
) -> Result<B::Tensor> {
    let mut state = init;
    for i in 0..lp.steps {
        let values = lp.inputs_of(i)?;
        let inputs = values
            .iter()
            .zip(&lp.input_shapes)
            .map(|(v, s)| be.from_f32_full(s, v))
            .collect::<Result<Vec<_>>>()?;
        let next = (lp.body)(be, &state, &inputs)?;
        check_state(&state, &next, i)?;
        state = next;
        (lp.after)(i, &state)?;
    }
    Ok(state)
}
