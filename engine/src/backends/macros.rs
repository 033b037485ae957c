//! Macros shared by the backends.

/// [`Backend`](super::Backend) methods that only hand their arguments on to a function. Each row
/// `name(a: A, b: B) => path;` writes
/// `fn name(&self, a: A, b: B) -> Result<T> { path(self, a, b) }` (with `no_self`:
/// `path(a, b)`), `T` being the tensor type named first; `=> path, e;` passes the constant `e`
/// after the arguments. Rows may carry doc comments.
macro_rules! forward_ops {
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
