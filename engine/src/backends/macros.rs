//! Macros shared by the backends.

/// [`Backend`](super::Backend) methods that only hand their arguments on to a function. Each row
/// `name(a: A, b: B) => path;` writes
/// `fn name(&self, a: A, b: B) -> Result<T> { path(self, a, b) }` (with `no_self`:
/// `path(a, b)`), `T` being the tensor type named first; `=> path, e;` passes the constant `e`
/// after the arguments. Rows may carry doc comments.
macro_rules! forward_ops {
    // rows of `primitive_ops!`: to the function of the same name in module `$m`, without `self`
    (to $m:ident; $($(#[$meta:meta])* $name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            fn $name(&self, $($arg: $ty),*) -> anyhow::Result<Self::Tensor> {
                $m::$name($($arg),*)
            }
        )*
    };
    ($t:ty; $($(#[$meta:meta])* $name:ident($($arg:ident: $ty:ty),*) => $f:path $(, $e:expr)*;)*) => {
        $(
            $(#[$meta])*
            fn $name(&self, $($arg: $ty),*) -> anyhow::Result<$t> {
                $f(self, $($arg,)* $($e),*)
            }
        )*
    };
    (no_self $t:ty; $($name:ident($($arg:ident: $ty:ty),*) => $f:path;)*) => {
        $(
            fn $name(&self, $($arg: $ty),*) -> anyhow::Result<$t> {
                $f($($arg),*)
            }
        )*
    };
}

/// The tensor ops every [`Backend`](super::Backend) implements itself (no default body), with
/// their docs, as rows `name(arg: Type, ..);` (tensors `Self::Tensor`), handed to `$m!` after
/// `$pre`: the trait declares them from here (`declare_ops!`) and the CPU backend forwards each
/// to the function of the same name in its `ops` module (`forward_ops!`).
macro_rules! primitive_ops {
    ($m:ident!($($pre:tt)*)) => {
        $m! {
            $($pre)*
            // ---- layout ------------------------------------------------------------------
            /// Same data, new shape (element counts must match).
            reshape(t: &Self::Tensor, shape: &[usize]);
            /// Reorder dimensions: output dim i is input dim `dims[i]`.
            permute(t: &Self::Tensor, dims: &[usize]);
            /// Concatenate along `dim` (all other dims equal).
            concat(ts: &[&Self::Tensor], dim: usize);
            /// The slice `start..start+len` of dimension `dim`.
            narrow(t: &Self::Tensor, dim: usize, start: usize, len: usize);
            /// Gather rows of `dim` by index (used for clamped windows and repeats).
            index_select(t: &Self::Tensor, dim: usize, idx: &[usize]);

            // ---- elementwise -------------------------------------------------------------
            /// `op(t)` elementwise.
            unary(t: &Self::Tensor, op: Unary);
            /// `op(a, b)` elementwise (NumPy broadcasting).
            binary(a: &Self::Tensor, b: &Self::Tensor, op: Binary);
            /// `t * mul + add`
            affine(t: &Self::Tensor, mul: f32, add: f32);

            // ---- normalisation and reductions --------------------------------------------
            /// Softmax over the last dimension.
            softmax_last(t: &Self::Tensor);
            /// GroupNorm over x (N, C, *spatial): statistics per (n, group) over C/groups
            /// channels and all spatial positions; optional per-channel affine.
            group_norm(x: &Self::Tensor, groups: usize, gamma: Option<&Self::Tensor>,
                beta: Option<&Self::Tensor>, eps: f32);
            /// LayerNorm over the last dimension with optional affine.
            layer_norm(x: &Self::Tensor, gamma: Option<&Self::Tensor>,
                beta: Option<&Self::Tensor>, eps: f32);

            // ---- linear algebra ----------------------------------------------------------
            /// x (.., K) · wᵀ with w (N, K), plus optional bias (N,).
            linear(x: &Self::Tensor, w: &Self::Tensor, bias: Option<&Self::Tensor>);
            /// Batched matmul a (.., M, K) · b (.., K, N); batch dims must be equal.
            matmul(a: &Self::Tensor, b: &Self::Tensor);
            /// Conv2d: x (N, C, H, W), w (O, C/groups, kh, kw), bias (O,).
            conv2d(x: &Self::Tensor, w: &Self::Tensor, bias: Option<&Self::Tensor>,
                p: Conv2dParams);
            /// Scaled dot-product attention: q (B, H, Lq, D), k (B, H, Lk, D), v (B, H, Lk, Dv)
            /// → (B, H, Lq, Dv), softmax(q kᵀ · scale) v. No mask.
            attention(q: &Self::Tensor, k: &Self::Tensor, v: &Self::Tensor, scale: f32);

            // ---- resampling --------------------------------------------------------------
            /// Nearest-neighbour resize of (N, C, H, W) to (N, C, out_h, out_w) (PyTorch
            /// `nearest`).
            upsample_nearest2d(x: &Self::Tensor, out_h: usize, out_w: usize);
            /// Zero padding of the last two dims: (left, right, top, bottom).
            pad2d(x: &Self::Tensor, left: usize, right: usize, top: usize, bottom: usize);
            /// Mean over dim, keeping it with size 1.
            mean_dim(t: &Self::Tensor, dim: usize);
            /// Max pooling of (N, C, H, W), square `kernel`, `stride`, `padding` (PyTorch
            /// `max_pool2d`: floor mode, padded positions −∞) → (N, C, Ho, Wo). ResNet stems.
            max_pool2d(x: &Self::Tensor, kernel: usize, stride: usize, padding: usize);
        }
    };
}

/// Trait declarations of the rows of `primitive_ops!`.
macro_rules! declare_ops {
    ($($(#[$meta:meta])* $name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            $(#[$meta])*
            fn $name(&self, $($arg: $ty),*) -> anyhow::Result<Self::Tensor>;
        )*
    };
}

/// `Clone`, `Copy` and `Default` for a struct of references and scalars with a lifetime and a
/// type parameter `T`, without the `T: Clone` / `T: Default` bounds `derive` would add. The
/// fields and their default values are listed.
macro_rules! copy_with_defaults {
    ($name:ident<T $(: $bound:path)?> { $($field:ident: $value:expr),* $(,)? }) => {
        impl<T $(: $bound)?> Clone for $name<'_, T> {
            fn clone(&self) -> Self {
                *self
            }
        }

        impl<T $(: $bound)?> Copy for $name<'_, T> {}

        impl<T $(: $bound)?> Default for $name<'_, T> {
            fn default() -> Self {
                $name {
                    $($field: $value),*
                }
            }
        }
    };
}
