//! Stride arithmetic shared by the backends' layout and broadcasting ops.

/// Row-major strides of a contiguous tensor.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Merges adjacent dims of an output shape whose strides (one list per operand)
/// are mutually contiguous, so strided loops run over as few, long dims as
/// possible. Size-1 dims are dropped. Returns (sizes, strides per operand).
pub fn collapse_dims(shape: &[usize], strides: &[Vec<usize>]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut sizes: Vec<usize> = Vec::new();
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); strides.len()];
    for d in (0..shape.len()).rev() {
        if shape[d] == 1 {
            continue;
        }
        let merge = !sizes.is_empty()
            && strides
                .iter()
                .zip(out.iter())
                .all(|(s, o)| s[d] == o[0] * sizes[0]);
        if merge {
            sizes[0] *= shape[d];
        } else {
            sizes.insert(0, shape[d]);
            for (s, o) in strides.iter().zip(out.iter_mut()) {
                o.insert(0, s[d]);
            }
        }
    }
    if sizes.is_empty() {
        sizes.push(1);
        for o in out.iter_mut() {
            o.push(0);
        }
    }
    (sizes, out)
}

/// Strides that read a contiguous tensor of `shape` as the broadcast `out` shape
/// (0 on broadcast dims).
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let cs = contiguous_strides(shape);
    let off = out.len() - shape.len();
    (0..out.len())
        .map(|i| {
            if i < off || shape[i - off] == 1 {
                0
            } else {
                cs[i - off]
            }
        })
        .collect()
}
