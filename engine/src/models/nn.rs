//! Leaf layers shared by every model: `Linear`, `Conv2d`, `GroupNorm`, `LayerNorm`
//! and the diffusers activation names (`get_activation`).
//!
//! Each layer holds its weights (PyTorch layout, shapes in the field comments),
//! loads them with `load(vb, ..)` under the checkpoint's own key names
//! (`weight`, `bias`) and runs with `forward(be, x)`.

use anyhow::{bail, Result};

use crate::backends::{Backend, Conv2dParams, ConvEpilogue, LinearEpilogue, Unary};
use crate::var_builder::VarBuilder;

// ---------------------------------------------------------------------------
// Activation
// ---------------------------------------------------------------------------

/// A diffusers activation name (`diffusers.models.activations.get_activation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `"silu"` / `"swish"`
    Silu,
    /// `"gelu"` (exact, erf)
    Gelu,
    /// `"relu"`
    Relu,
}

impl Activation {
    /// Parse a diffusers activation name; `key` names the config field for the error.
    pub fn parse(name: &str, key: &str) -> Result<Self> {
        Ok(match name {
            "silu" | "swish" => Activation::Silu,
            "gelu" => Activation::Gelu,
            "relu" => Activation::Relu,
            other => bail!(
                "config `{key}` = {other:?} is not supported (supported activations: \"silu\", \"swish\", \"gelu\", \"relu\")"
            ),
        })
    }

    /// The backend's pointwise op for this activation.
    pub fn unary(&self) -> Unary {
        match self {
            Activation::Silu => Unary::Silu,
            Activation::Gelu => Unary::Gelu,
            Activation::Relu => Unary::Relu,
        }
    }

    pub fn forward<B: Backend>(&self, be: &B, x: &B::Tensor) -> Result<B::Tensor> {
        be.unary(x, self.unary())
    }
}

// ---------------------------------------------------------------------------
// Linear
// ---------------------------------------------------------------------------

/// `nn.Linear`: y = x · Wᵀ + b over the last dimension.
#[derive(Clone, Debug)]
pub struct Linear<B: Backend> {
    /// (out, in)
    pub weight: B::Tensor,
    /// (out,)
    pub bias: Option<B::Tensor>,
}

impl<B: Backend> Linear<B> {
    pub fn load(vb: &VarBuilder<B>, in_dim: usize, out_dim: usize, bias: bool) -> Result<Self> {
        let weight = vb.get("weight", &[out_dim, in_dim])?;
        vb.backend().prepare_linear_weight(&weight)?;
        let bias = if bias {
            Some(vb.get("bias", &[out_dim])?)
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }

    /// `linear_1` (`dims.0 → dims.1`) and `linear_2` (`dims.1 → dims.2`), both with bias: the
    /// two layers of a timestep-style MLP.
    pub fn load_mlp(vb: &VarBuilder<B>, dims: (usize, usize, usize)) -> Result<(Self, Self)> {
        let (a, b, c) = dims;
        let linear_1 = Linear::load(&vb.pp("linear_1"), a, b, true)?;
        Ok((linear_1, Linear::load(&vb.pp("linear_2"), b, c, true)?))
    }

    pub fn forward(&self, be: &B, x: &B::Tensor) -> Result<B::Tensor> {
        be.linear(x, &self.weight, self.bias.as_ref())
    }

    /// `forward` with a fused epilogue (residual, output scale, GEGLU): one launch on CUDA.
    pub fn forward_ext(
        &self,
        be: &B,
        x: &B::Tensor,
        epi: LinearEpilogue<'_, B::Tensor>,
    ) -> Result<B::Tensor> {
        be.linear_ext(x, &self.weight, self.bias.as_ref(), epi)
    }
}

// ---------------------------------------------------------------------------
// Conv2d
// ---------------------------------------------------------------------------

/// `nn.Conv2d` with a square kernel.
#[derive(Clone, Debug)]
pub struct Conv2d<B: Backend> {
    /// (out, in/groups, k, k)
    pub weight: B::Tensor,
    /// (out,)
    pub bias: Option<B::Tensor>,
    pub params: Conv2dParams,
}

impl<B: Backend> Conv2d<B> {
    /// Conv2d `in_ch → out_ch`, kernel `k`, `stride`, `padding`, groups 1.
    pub fn load(
        vb: &VarBuilder<B>,
        in_ch: usize,
        out_ch: usize,
        k: usize,
        stride: usize,
        padding: usize,
        bias: bool,
    ) -> Result<Self> {
        let weight = vb.get("weight", &[out_ch, in_ch, k, k])?;
        let bias = if bias {
            Some(vb.get("bias", &[out_ch])?)
        } else {
            None
        };
        let params = Conv2dParams::new(stride, padding);
        vb.backend().prepare_conv_weight(&weight, params)?;
        Ok(Conv2d {
            weight,
            bias,
            params,
        })
    }

    /// Conv2d `in_ch → out_ch` with stride 1 and "same" padding `(k - 1) / 2` for an odd
    /// kernel `k` (3x3 padding 1, 1x1 padding 0).
    pub fn load_same(
        vb: &VarBuilder<B>,
        in_ch: usize,
        out_ch: usize,
        k: usize,
        bias: bool,
    ) -> Result<Self> {
        Conv2d::load(vb, in_ch, out_ch, k, 1, (k - 1) / 2, bias)
    }

    pub fn forward(&self, be: &B, x: &B::Tensor) -> Result<B::Tensor> {
        be.conv2d(x, &self.weight, self.bias.as_ref(), self.params)
    }

    /// `forward` with a fused epilogue (time embedding, residual, output scale).
    pub fn forward_ext(
        &self,
        be: &B,
        x: &B::Tensor,
        epi: ConvEpilogue<'_, B::Tensor>,
    ) -> Result<B::Tensor> {
        be.conv2d_ext(x, &self.weight, self.bias.as_ref(), self.params, epi)
    }

    /// `forward_ext`, then (with a `tail`) `concat([out, tail], 1)` in one op
    /// ([`Backend::conv2d_concat`]: on CUDA the conv writes its channels of the concat in place).
    pub fn forward_ext_concat(
        &self,
        be: &B,
        x: &B::Tensor,
        epi: ConvEpilogue<'_, B::Tensor>,
        tail: Option<&B::Tensor>,
    ) -> Result<B::Tensor> {
        match tail {
            Some(t) => be.conv2d_concat(x, &self.weight, self.bias.as_ref(), self.params, epi, t),
            None => self.forward_ext(be, x, epi),
        }
    }
}

// ---------------------------------------------------------------------------
// GroupNorm
// ---------------------------------------------------------------------------

/// `nn.GroupNorm(num_groups, num_channels, eps, affine=True)` over (N, C, *spatial).
#[derive(Clone, Debug)]
pub struct GroupNorm<B: Backend> {
    /// (C,)
    pub weight: B::Tensor,
    /// (C,)
    pub bias: B::Tensor,
    pub groups: usize,
    pub eps: f32,
}

impl<B: Backend> GroupNorm<B> {
    pub fn load(vb: &VarBuilder<B>, groups: usize, channels: usize, eps: f32) -> Result<Self> {
        if groups == 0 || channels % groups != 0 {
            bail!(
                "GroupNorm `{}`: {channels} channels are not divisible into {groups} groups (check `norm_num_groups`)",
                vb.prefix()
            );
        }
        Ok(GroupNorm {
            weight: vb.get("weight", &[channels])?,
            bias: vb.get("bias", &[channels])?,
            groups,
            eps,
        })
    }

    pub fn forward(&self, be: &B, x: &B::Tensor) -> Result<B::Tensor> {
        be.group_norm(
            x,
            self.groups,
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
        )
    }

    /// `act(forward(x))` in one op (`Backend::group_norm_act`).
    pub fn forward_act(&self, be: &B, x: &B::Tensor, act: Activation) -> Result<B::Tensor> {
        be.group_norm_act(
            x,
            self.groups,
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
            Some(act.unary()),
        )
    }
}

// ---------------------------------------------------------------------------
// LayerNorm
// ---------------------------------------------------------------------------

/// `nn.LayerNorm(dim, eps, elementwise_affine)` over the last dimension.
#[derive(Clone, Debug)]
pub struct LayerNorm<B: Backend> {
    /// (dim,) when elementwise_affine
    pub weight: Option<B::Tensor>,
    /// (dim,) when elementwise_affine
    pub bias: Option<B::Tensor>,
    pub eps: f32,
}

impl<B: Backend> LayerNorm<B> {
    pub fn load(vb: &VarBuilder<B>, dim: usize, eps: f32, affine: bool) -> Result<Self> {
        let (weight, bias) = if affine {
            (
                Some(vb.get("weight", &[dim])?),
                Some(vb.get("bias", &[dim])?),
            )
        } else {
            (None, None)
        };
        Ok(LayerNorm { weight, bias, eps })
    }

    pub fn forward(&self, be: &B, x: &B::Tensor) -> Result<B::Tensor> {
        be.layer_norm(x, self.weight.as_ref(), self.bias.as_ref(), self.eps)
    }

    /// `forward(x) + table`, the row table `(1, L, C)` broadcast over x `(N, L, C)`
    /// ([`Backend::layer_norm_add`]).
    pub fn forward_add(&self, be: &B, x: &B::Tensor, table: &B::Tensor) -> Result<B::Tensor> {
        be.layer_norm_add(x, self.weight.as_ref(), self.bias.as_ref(), self.eps, table)
    }
}
