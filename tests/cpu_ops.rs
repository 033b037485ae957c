//! CPU reference backend (`engine/src/backends/cpu`) against slow, obviously
//! correct loops written here (f64 accumulation), on seeded random inputs with
//! odd shapes, plus hand-computed values.
//!
//! Run: `cargo test --test cpu_ops`

mod common;

use anyhow::Result;
use cyberhost_engine::backends::cpu::{CpuBackend, CpuTensor};
use cyberhost_engine::backends::{Backend, Binary, Conv2dParams, TensorLike, Unary};

// ---- helpers ---------------------------------------------------------------------

use common::Rng;

fn cpu() -> CpuBackend {
    CpuBackend::new()
}

fn rand_t(rng: &mut Rng, shape: &[usize]) -> (CpuTensor, Vec<f32>) {
    let n = shape.iter().product();
    let v = rng.vec(n);
    (cpu().from_f32(shape, &v).unwrap(), v)
}

fn rel_l2(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "length mismatch");
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).powi(2))
        .sum();
    let den: f64 = want.iter().map(|w| w * w).sum();
    (num / den.max(1e-300)).sqrt()
}

#[track_caller]
fn assert_close(name: &str, got: &CpuTensor, want_shape: &[usize], want: &[f64], tol: f64) {
    assert_eq!(got.shape(), want_shape, "{name}: shape");
    assert!(
        want.iter().any(|&w| w != 0.0),
        "{name}: reference is all zeros"
    );
    let e = rel_l2(got.data(), want);
    assert!(e <= tol, "{name}: rel-L2 error {e:.3e} > {tol:.0e}");
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
    idx
}

// ---- elementwise -------------------------------------------------------------------

#[test]
fn gelu_silu_hand_values() -> Result<()> {
    let xs = [-3.0f32, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0];
    let gelu = [
        -0.00404969409489031,
        -0.15865525393145707,
        -0.15426876936299344,
        0.0,
        0.34573123063700656,
        0.8413447460685429,
        1.9544997361036416,
    ];
    let gelu_tanh = [
        -0.0036373920817729943,
        -0.15880800939172324,
        -0.15428599017485606,
        0.0,
        0.34571400982514394,
        0.8411919906082768,
        1.954597694087775,
    ];
    let silu = [
        -0.14227761953270035,
        -0.2689414213699951,
        -0.1887703343990727,
        0.0,
        0.3112296656009273,
        0.7310585786300049,
        1.7615941559557646,
    ];
    let t = cpu().from_f32(&[7], &xs)?;
    for (op, want) in [
        (Unary::Gelu, gelu),
        (Unary::GeluTanh, gelu_tanh),
        (Unary::Silu, silu),
    ] {
        let got = cpu().to_f32(&cpu().unary(&t, op)?)?;
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g as f64 - w).abs() <= 1e-6 * (1.0 + w.abs()),
                "{op:?}({}) = {g}, want {w}",
                xs[i]
            );
        }
    }
    Ok(())
}

/// erf by its Taylor series in f64 (accurate to ~1e-9 for |x| ≤ 4.5).
fn erf_series(x: f64) -> f64 {
    if x.abs() > 4.5 {
        return x.signum();
    }
    let (mut term, mut sum) = (x, x);
    for n in 1..200 {
        term *= -x * x / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

#[test]
fn unary_ops_match_f64_formulas() -> Result<()> {
    let mut rng = Rng::new(1);
    let shape = [3, 5, 37];
    let x: Vec<f32> = rng.vec(3 * 5 * 37).iter().map(|v| v * 2.5).collect();
    let t = cpu().from_f32(&shape, &x)?;
    type Case = (Unary, fn(f64) -> f64);
    let cases: [Case; 9] = [
        (Unary::Gelu, |x| {
            0.5 * x * (1.0 + erf_series(x / 2f64.sqrt()))
        }),
        (Unary::GeluTanh, |x| {
            0.5 * x
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
        }),
        (Unary::Silu, |x| x / (1.0 + (-x).exp())),
        (Unary::Relu, |x| x.max(0.0)),
        (Unary::Sigmoid, |x| 1.0 / (1.0 + (-x).exp())),
        (Unary::Tanh, f64::tanh),
        (Unary::Exp, f64::exp),
        (Unary::Neg, |x| -x),
        (Unary::Sqrt, |x| x.abs().sqrt()),
    ];
    for (op, f) in cases {
        let input = if op == Unary::Sqrt {
            cpu().from_f32(&shape, &x.iter().map(|v| v.abs()).collect::<Vec<_>>())?
        } else {
            t.clone()
        };
        let want: Vec<f64> = x.iter().map(|&v| f(v as f64)).collect();
        let got = cpu().unary(&input, op)?;
        assert_close(&format!("{op:?}"), &got, &shape, &want, 1e-6);
        // pointwise too: rel-L2 can hide a bad tail
        for (&g, &w) in got.data().iter().zip(&want) {
            assert!(
                (g as f64 - w).abs() <= 2e-6 * (1.0 + w.abs()),
                "{op:?}: {g} vs {w}"
            );
        }
    }
    let a = cpu().affine(&t, 0.5, -2.0)?;
    let want: Vec<f64> = x.iter().map(|&v| v as f64 * 0.5 - 2.0).collect();
    assert_close("affine", &a, &shape, &want, 1e-7);
    Ok(())
}

fn naive_binary(
    a: &[f32],
    sa: &[usize],
    b: &[f32],
    sb: &[usize],
    op: Binary,
) -> (Vec<usize>, Vec<f64>) {
    let r = sa.len().max(sb.len());
    let pad = |s: &[usize]| -> Vec<usize> {
        std::iter::repeat_n(1, r - s.len())
            .chain(s.iter().copied())
            .collect()
    };
    let (pa, pb) = (pad(sa), pad(sb));
    let out: Vec<usize> = (0..r).map(|i| pa[i].max(pb[i])).collect();
    let (ta, tb) = (strides(&pa), strides(&pb));
    let n: usize = out.iter().product();
    let mut res = Vec::with_capacity(n);
    for i in 0..n {
        let idx = unravel(i, &out);
        let ia: usize = (0..r)
            .map(|d| if pa[d] == 1 { 0 } else { idx[d] * ta[d] })
            .sum();
        let ib: usize = (0..r)
            .map(|d| if pb[d] == 1 { 0 } else { idx[d] * tb[d] })
            .sum();
        let (x, y) = (a[ia] as f64, b[ib] as f64);
        res.push(match op {
            Binary::Add => x + y,
            Binary::Sub => x - y,
            Binary::Mul => x * y,
            Binary::Div => x / y,
        });
    }
    (out, res)
}

#[test]
fn binary_broadcasts_like_numpy() -> Result<()> {
    // Hand-computed: (2, 1) + (3,) → (2, 3).
    let a = cpu().from_f32(&[2, 1], &[1.0, 10.0])?;
    let b = cpu().from_f32(&[3], &[1.0, 2.0, 3.0])?;
    let c = cpu().binary(&a, &b, Binary::Add)?;
    assert_eq!(c.shape(), &[2, 3]);
    assert_eq!(cpu().to_f32(&c)?, vec![2.0, 3.0, 4.0, 11.0, 12.0, 13.0]);
    let d = cpu().binary(&b, &a, Binary::Sub)?;
    assert_eq!(cpu().to_f32(&d)?, vec![0.0, 1.0, 2.0, -9.0, -8.0, -7.0]);

    let mut rng = Rng::new(2);
    let cases: &[(&[usize], &[usize])] = &[
        (&[4, 7, 9], &[4, 7, 9]),
        (&[2, 3, 5, 5], &[1, 3, 1, 1]),
        (&[2, 3, 5, 5], &[2, 3, 1, 1]),
        (&[2, 1, 6], &[5, 1]),
        (&[1], &[3, 4]),
        (&[3, 1, 4, 1], &[1, 2, 1, 5]),
        (&[6, 10], &[10]),
        (&[7, 1, 3], &[7, 11, 1]),
    ];
    for (sa, sb) in cases {
        let (ta, va) = rand_t(&mut rng, sa);
        let (tb, mut vb) = rand_t(&mut rng, sb);
        for op in [Binary::Add, Binary::Sub, Binary::Mul, Binary::Div] {
            let tb = if op == Binary::Div {
                vb.iter_mut()
                    .for_each(|v| *v = v.signum() * (v.abs() + 0.5));
                cpu().from_f32(sb, &vb)?
            } else {
                tb.clone()
            };
            let (shape, want) = naive_binary(&va, sa, &vb, sb, op);
            let got = cpu().binary(&ta, &tb, op)?;
            assert_close(&format!("{op:?} {sa:?} {sb:?}"), &got, &shape, &want, 1e-7);
        }
    }
    let bad = cpu().binary(&cpu().zeros(&[2, 3])?, &cpu().zeros(&[4])?, Binary::Add);
    assert!(bad.unwrap_err().to_string().contains("binary"));
    Ok(())
}

// ---- layout -----------------------------------------------------------------------

#[test]
fn layout_ops() -> Result<()> {
    let mut rng = Rng::new(3);
    // permute
    for (shape, dims) in [
        (vec![2, 3, 4, 5], vec![0, 2, 1, 3]),
        (vec![2, 3, 4, 5], vec![3, 1, 0, 2]),
        (vec![7, 9], vec![1, 0]),
        (vec![2, 1, 3, 1, 4], vec![4, 3, 2, 1, 0]),
        (vec![3, 5, 2], vec![0, 1, 2]),
    ] {
        let (t, v) = rand_t(&mut rng, &shape);
        let out_shape: Vec<usize> = dims.iter().map(|&d| shape[d]).collect();
        let st = strides(&shape);
        let n: usize = shape.iter().product();
        let want: Vec<f64> = (0..n)
            .map(|i| {
                let idx = unravel(i, &out_shape);
                v[dims
                    .iter()
                    .enumerate()
                    .map(|(o, &d)| idx[o] * st[d])
                    .sum::<usize>()] as f64
            })
            .collect();
        assert_close(
            &format!("permute {shape:?} {dims:?}"),
            &cpu().permute(&t, &dims)?,
            &out_shape,
            &want,
            0.0,
        );
    }
    assert!(cpu().permute(&cpu().zeros(&[2, 3])?, &[0, 0]).is_err());

    // reshape
    let (t, v) = rand_t(&mut rng, &[4, 6]);
    let r = cpu().reshape(&t, &[2, 3, 4])?;
    assert_eq!(r.shape(), &[2, 3, 4]);
    assert_eq!(r.data(), &v[..]);
    assert!(cpu().reshape(&t, &[5, 5]).is_err());

    // concat along each dim
    let (a, va) = rand_t(&mut rng, &[2, 3, 4]);
    for dim in 0..3 {
        let mut sb = vec![2, 3, 4];
        sb[dim] = 5;
        let (b, vb) = rand_t(&mut rng, &sb);
        let mut so = vec![2, 3, 4];
        so[dim] = [2, 3, 4][dim] + 5;
        let n: usize = so.iter().product();
        let want: Vec<f64> = (0..n)
            .map(|i| {
                let mut idx = unravel(i, &so);
                let da = [2, 3, 4][dim];
                if idx[dim] < da {
                    va[idx
                        .iter()
                        .zip(strides(&[2, 3, 4]))
                        .map(|(i, s)| i * s)
                        .sum::<usize>()] as f64
                } else {
                    idx[dim] -= da;
                    vb[idx
                        .iter()
                        .zip(strides(&sb))
                        .map(|(i, s)| i * s)
                        .sum::<usize>()] as f64
                }
            })
            .collect();
        assert_close(
            &format!("concat dim {dim}"),
            &cpu().concat(&[&a, &b], dim)?,
            &so,
            &want,
            0.0,
        );
    }
    assert!(cpu().concat(&[&a, &cpu().zeros(&[2, 4, 4])?], 2).is_err());

    // narrow and index_select
    let (t, v) = rand_t(&mut rng, &[3, 5, 4]);
    let got = cpu().narrow(&t, 1, 1, 3)?;
    let want: Vec<f64> = (0..3 * 3 * 4)
        .map(|i| {
            let idx = unravel(i, &[3, 3, 4]);
            v[idx[0] * 20 + (idx[1] + 1) * 4 + idx[2]] as f64
        })
        .collect();
    assert_close("narrow", &got, &[3, 3, 4], &want, 0.0);
    assert!(cpu().narrow(&t, 1, 3, 3).is_err());
    let sel = [4, 0, 0, 2, 4, 4];
    let got = cpu().index_select(&t, 1, &sel)?;
    let want: Vec<f64> = (0..3 * 6 * 4)
        .map(|i| {
            let idx = unravel(i, &[3, 6, 4]);
            v[idx[0] * 20 + sel[idx[1]] * 4 + idx[2]] as f64
        })
        .collect();
    assert_close("index_select", &got, &[3, 6, 4], &want, 0.0);
    assert!(cpu().index_select(&t, 1, &[5]).is_err());

    // pad2d
    let (t, v) = rand_t(&mut rng, &[2, 3, 4, 5]);
    let (l, r, tp, b) = (1, 2, 3, 0);
    let (oh, ow) = (4 + tp + b, 5 + l + r);
    let got = cpu().pad2d(&t, l, r, tp, b)?;
    let want: Vec<f64> = (0..6 * oh * ow)
        .map(|i| {
            let idx = unravel(i, &[6, oh, ow]);
            let (y, x) = (idx[1] as isize - tp as isize, idx[2] as isize - l as isize);
            if !(0..4).contains(&y) || !(0..5).contains(&x) {
                0.0
            } else {
                v[idx[0] * 20 + y as usize * 5 + x as usize] as f64
            }
        })
        .collect();
    assert_close("pad2d", &got, &[2, 3, oh, ow], &want, 0.0);
    Ok(())
}

// ---- reductions and normalisation ------------------------------------------------

#[test]
fn softmax_and_mean_dim() -> Result<()> {
    let mut rng = Rng::new(4);
    for shape in [vec![3, 7, 13], vec![1, 1], vec![5, 1000]] {
        let (t, v) = rand_t(&mut rng, &shape);
        // add a large offset to some rows to exercise the max subtraction
        let v: Vec<f32> = v
            .iter()
            .enumerate()
            .map(|(i, x)| x * 4.0 + if i % 2 == 0 { 80.0 } else { 0.0 })
            .collect();
        let t = cpu().from_f32(t.shape(), &v)?;
        let last = *shape.last().unwrap();
        let mut want = Vec::new();
        for row in v.chunks(last) {
            let m = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
            let s: f64 = row.iter().map(|&x| (x as f64 - m).exp()).sum();
            want.extend(row.iter().map(|&x| (x as f64 - m).exp() / s));
        }
        let got = cpu().softmax_last(&t)?;
        assert!(got.data().iter().all(|x| x.is_finite()));
        assert_close(&format!("softmax {shape:?}"), &got, &shape, &want, 1e-6);
    }
    let (t, v) = rand_t(&mut rng, &[3, 4, 5]);
    for dim in 0..3 {
        let mut so = vec![3, 4, 5];
        let d = so[dim];
        so[dim] = 1;
        let st = strides(&[3, 4, 5]);
        let n: usize = so.iter().product();
        let want: Vec<f64> = (0..n)
            .map(|i| {
                let idx = unravel(i, &so);
                let base: usize = idx.iter().zip(&st).map(|(i, s)| i * s).sum();
                (0..d).map(|j| v[base + j * st[dim]] as f64).sum::<f64>() / d as f64
            })
            .collect();
        assert_close(
            &format!("mean_dim {dim}"),
            &cpu().mean_dim(&t, dim)?,
            &so,
            &want,
            1e-6,
        );
    }
    assert!(cpu().mean_dim(&t, 3).is_err());
    Ok(())
}

fn naive_group_norm(
    x: &[f32],
    shape: &[usize],
    groups: usize,
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    eps: f64,
) -> Vec<f64> {
    let (n, c) = (shape[0], shape[1]);
    let s: usize = shape[2..].iter().product();
    let cpg = c / groups;
    let mut out = vec![0.0; x.len()];
    for i in 0..n {
        for g in 0..groups {
            let idx: Vec<usize> = (g * cpg..(g + 1) * cpg)
                .flat_map(|ch| (0..s).map(move |p| (i * c + ch) * s + p))
                .collect();
            let m = idx.iter().map(|&j| x[j] as f64).sum::<f64>() / idx.len() as f64;
            let var =
                idx.iter().map(|&j| (x[j] as f64 - m).powi(2)).sum::<f64>() / idx.len() as f64;
            for &j in &idx {
                let ch = (j / s) % c;
                out[j] = (x[j] as f64 - m) / (var + eps).sqrt()
                    * gamma.map_or(1.0, |g| g[ch] as f64)
                    + beta.map_or(0.0, |b| b[ch] as f64);
            }
        }
    }
    out
}

#[test]
fn group_norm_matches_naive() -> Result<()> {
    let mut rng = Rng::new(5);
    for (shape, groups) in [
        (vec![2, 32, 5, 7], 32),
        (vec![2, 32, 5, 7], 8),
        (vec![1, 6, 9], 1),
        (vec![3, 12, 2, 3, 4], 4),
        (vec![2, 4], 2),
    ] {
        let (t, v) = rand_t(&mut rng, &shape);
        // an offset makes one-pass variance visibly wrong
        let v: Vec<f32> = v.iter().map(|x| x + 100.0).collect();
        let t2 = cpu().from_f32(t.shape(), &v)?;
        let c = shape[1];
        let (g, gv) = rand_t(&mut rng, &[c]);
        let (b, bv) = rand_t(&mut rng, &[c]);
        let want = naive_group_norm(&v, &shape, groups, Some(&gv), Some(&bv), 1e-5);
        let got = cpu().group_norm(&t2, groups, Some(&g), Some(&b), 1e-5)?;
        assert_close(
            &format!("group_norm {shape:?} g{groups}"),
            &got,
            &shape,
            &want,
            2e-5,
        );
        let want = naive_group_norm(&v, &shape, groups, None, None, 1e-6);
        let got = cpu().group_norm(&t2, groups, None, None, 1e-6)?;
        assert_close(
            &format!("group_norm {shape:?} g{groups} no affine"),
            &got,
            &shape,
            &want,
            2e-5,
        );
    }
    assert!(cpu()
        .group_norm(&cpu().zeros(&[1, 6, 2])?, 4, None, None, 1e-5)
        .is_err());
    assert!(cpu()
        .group_norm(
            &cpu().zeros(&[1, 6, 2])?,
            3,
            Some(&cpu().zeros(&[5])?),
            None,
            1e-5
        )
        .is_err());
    Ok(())
}

#[test]
fn layer_norm_matches_naive() -> Result<()> {
    let mut rng = Rng::new(6);
    for shape in [vec![2, 7, 320], vec![5, 33], vec![1, 1, 1, 3]] {
        let (_, v) = rand_t(&mut rng, &shape);
        let v: Vec<f32> = v.iter().map(|x| x * 3.0 + 50.0).collect();
        let t = cpu().from_f32(&shape, &v)?;
        let c = *shape.last().unwrap();
        let (g, gv) = rand_t(&mut rng, &[c]);
        let (b, bv) = rand_t(&mut rng, &[c]);
        for affine in [true, false] {
            let mut want = Vec::new();
            for row in v.chunks(c) {
                let m = row.iter().map(|&x| x as f64).sum::<f64>() / c as f64;
                let var = row.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / c as f64;
                for (j, &x) in row.iter().enumerate() {
                    let y = (x as f64 - m) / (var + 1e-5).sqrt();
                    want.push(if affine {
                        y * gv[j] as f64 + bv[j] as f64
                    } else {
                        y
                    });
                }
            }
            let got = if affine {
                cpu().layer_norm(&t, Some(&g), Some(&b), 1e-5)?
            } else {
                cpu().layer_norm(&t, None, None, 1e-5)?
            };
            assert_close(
                &format!("layer_norm {shape:?} affine={affine}"),
                &got,
                &shape,
                &want,
                2e-5,
            );
        }
    }
    assert!(cpu()
        .layer_norm(
            &cpu().zeros(&[2, 3])?,
            Some(&cpu().zeros(&[2])?),
            None,
            1e-5
        )
        .is_err());
    Ok(())
}

// ---- linear algebra ----------------------------------------------------------------

fn naive_matmul(
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
    b_transposed: bool,
) -> Vec<f64> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k)
                .map(|p| {
                    a[i * k + p] as f64
                        * if b_transposed {
                            b[j * k + p]
                        } else {
                            b[p * n + j]
                        } as f64
                })
                .sum();
        }
    }
    out
}

#[test]
fn linear_matches_naive() -> Result<()> {
    let mut rng = Rng::new(7);
    for (xs, n) in [
        (vec![2, 7, 33], 17),
        (vec![5, 64], 64),
        (vec![1, 300, 320], 96),
        (vec![3], 5),
        (vec![2, 1, 1, 9], 1),
    ] {
        let k = *xs.last().unwrap();
        let m: usize = xs[..xs.len() - 1].iter().product();
        let (x, xv) = rand_t(&mut rng, &xs);
        let (w, wv) = rand_t(&mut rng, &[n, k]);
        let (b, bv) = rand_t(&mut rng, &[n]);
        let mut os = xs.clone();
        *os.last_mut().unwrap() = n;
        let want = naive_matmul(&xv, &wv, m, k, n, true);
        assert_close(
            &format!("linear {xs:?}→{n}"),
            &cpu().linear(&x, &w, None)?,
            &os,
            &want,
            1e-5,
        );
        let want: Vec<f64> = want
            .iter()
            .enumerate()
            .map(|(i, v)| v + bv[i % n] as f64)
            .collect();
        assert_close(
            &format!("linear+bias {xs:?}→{n}"),
            &cpu().linear(&x, &w, Some(&b))?,
            &os,
            &want,
            1e-5,
        );
    }
    let x = cpu().zeros(&[2, 3])?;
    let e = cpu()
        .linear(&x, &cpu().zeros(&[4, 5])?, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("linear") && e.contains("[2, 3]"), "{e}");
    assert!(cpu()
        .linear(&x, &cpu().zeros(&[4, 3])?, Some(&cpu().zeros(&[3])?))
        .is_err());
    Ok(())
}

#[test]
fn matmul_matches_naive() -> Result<()> {
    let mut rng = Rng::new(8);
    for (batch, m, k, n) in [
        (vec![], 13, 7, 9),
        (vec![3], 1, 64, 5),
        (vec![2, 3], 17, 31, 23),
        (vec![2], 200, 150, 130),
        (vec![40], 8, 8, 8),
    ] {
        let bsz: usize = batch.iter().product();
        let sa: Vec<usize> = batch.iter().copied().chain([m, k]).collect();
        let sb: Vec<usize> = batch.iter().copied().chain([k, n]).collect();
        let so: Vec<usize> = batch.iter().copied().chain([m, n]).collect();
        let (a, av) = rand_t(&mut rng, &sa);
        let (b, bv) = rand_t(&mut rng, &sb);
        let want: Vec<f64> = (0..bsz)
            .flat_map(|i| {
                naive_matmul(
                    &av[i * m * k..(i + 1) * m * k],
                    &bv[i * k * n..(i + 1) * k * n],
                    m,
                    k,
                    n,
                    false,
                )
            })
            .collect();
        assert_close(
            &format!("matmul {sa:?}·{sb:?}"),
            &cpu().matmul(&a, &b)?,
            &so,
            &want,
            1e-5,
        );
    }
    assert!(cpu()
        .matmul(&cpu().zeros(&[2, 3, 4])?, &cpu().zeros(&[3, 4, 5])?)
        .is_err());
    assert!(cpu()
        .matmul(&cpu().zeros(&[3, 4])?, &cpu().zeros(&[3, 4])?)
        .is_err());
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn naive_conv2d(
    x: &[f32],
    xs: &[usize],
    w: &[f32],
    ws: &[usize],
    bias: Option<&[f32]>,
    p: Conv2dParams,
) -> (Vec<usize>, Vec<f64>) {
    let (n, c, h, wd) = (xs[0], xs[1], xs[2], xs[3]);
    let (o, cg, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
    let og = o / p.groups;
    let ho = (h + 2 * p.padding.0 - p.dilation.0 * (kh - 1) - 1) / p.stride.0 + 1;
    let wo = (wd + 2 * p.padding.1 - p.dilation.1 * (kw - 1) - 1) / p.stride.1 + 1;
    let mut out = vec![0.0; n * o * ho * wo];
    for b in 0..n {
        for oc in 0..o {
            let g = oc / og;
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = bias.map_or(0.0, |bb| bb[oc] as f64);
                    for ic in 0..cg {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * p.stride.0 + ky * p.dilation.0) as isize
                                    - p.padding.0 as isize;
                                let ix = (ox * p.stride.1 + kx * p.dilation.1) as isize
                                    - p.padding.1 as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                    continue;
                                }
                                let xv =
                                    x[((b * c + g * cg + ic) * h + iy as usize) * wd + ix as usize];
                                let wv = w[((oc * cg + ic) * kh + ky) * kw + kx];
                                acc += xv as f64 * wv as f64;
                            }
                        }
                    }
                    out[((b * o + oc) * ho + oy) * wo + ox] = acc;
                }
            }
        }
    }
    (vec![n, o, ho, wo], out)
}

#[test]
fn conv2d_matches_naive() -> Result<()> {
    let mut rng = Rng::new(9);
    let p = |s: usize, pad: usize, g: usize| Conv2dParams {
        stride: (s, s),
        padding: (pad, pad),
        dilation: (1, 1),
        groups: g,
    };
    let rect = |stride, padding, dilation, groups| Conv2dParams {
        stride,
        padding,
        dilation,
        groups,
    };
    let cases: Vec<(Vec<usize>, Vec<usize>, Conv2dParams)> = vec![
        (vec![2, 8, 9, 11], vec![6, 8, 3, 3], p(1, 1, 1)),
        (vec![2, 8, 9, 11], vec![6, 8, 3, 3], p(2, 1, 1)),
        (vec![1, 8, 10, 7], vec![12, 4, 3, 3], p(1, 1, 2)),
        (vec![2, 16, 7, 7], vec![16, 1, 3, 3], p(1, 1, 16)),
        (vec![2, 16, 7, 7], vec![32, 1, 3, 3], p(2, 1, 16)),
        (vec![3, 10, 6, 5], vec![7, 10, 1, 1], p(1, 0, 1)),
        (vec![1, 4, 12, 9], vec![5, 4, 1, 1], p(2, 0, 1)),
        (
            vec![1, 3, 11, 13],
            vec![4, 3, 2, 5],
            rect((2, 1), (0, 2), (1, 1), 1),
        ),
        (
            vec![1, 4, 13, 13],
            vec![4, 2, 3, 3],
            rect((1, 2), (2, 2), (2, 2), 2),
        ),
        (vec![1, 320, 16, 16], vec![64, 320, 3, 3], p(1, 1, 1)),
        // Tall enough that the im2col band splits into several chunks.
        (vec![1, 64, 130, 128], vec![8, 64, 3, 3], p(1, 1, 1)),
    ];
    for (xs, ws, prm) in cases {
        let (x, xv) = rand_t(&mut rng, &xs);
        let (w, wv) = rand_t(&mut rng, &ws);
        let (b, bv) = rand_t(&mut rng, &[ws[0]]);
        let (so, want) = naive_conv2d(&xv, &xs, &wv, &ws, Some(&bv), prm);
        assert_close(
            &format!("conv2d {xs:?} * {ws:?} {prm:?}"),
            &cpu().conv2d(&x, &w, Some(&b), prm)?,
            &so,
            &want,
            1e-5,
        );
        let (so, want) = naive_conv2d(&xv, &xs, &wv, &ws, None, prm);
        assert_close(
            &format!("conv2d {xs:?} * {ws:?} {prm:?} no bias"),
            &cpu().conv2d(&x, &w, None, prm)?,
            &so,
            &want,
            1e-5,
        );
    }
    let x = cpu().zeros(&[1, 6, 5, 5])?;
    let e = cpu()
        .conv2d(
            &x,
            &cpu().zeros(&[4, 4, 3, 3])?,
            None,
            Conv2dParams::new(1, 1),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("conv2d"), "{e}");
    assert!(cpu()
        .conv2d(
            &x,
            &cpu().zeros(&[4, 6, 7, 7])?,
            None,
            Conv2dParams::default()
        )
        .is_err());
    assert!(cpu()
        .conv2d(
            &x,
            &cpu().zeros(&[4, 3, 3, 3])?,
            None,
            Conv2dParams {
                groups: 4,
                ..Default::default()
            }
        )
        .is_err());
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn naive_attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    bh: usize,
    lq: usize,
    lk: usize,
    d: usize,
    dv: usize,
    scale: f64,
) -> Vec<f64> {
    let mut out = vec![0.0; bh * lq * dv];
    for h in 0..bh {
        for i in 0..lq {
            let s: Vec<f64> = (0..lk)
                .map(|j| {
                    (0..d)
                        .map(|p| q[(h * lq + i) * d + p] as f64 * k[(h * lk + j) * d + p] as f64)
                        .sum::<f64>()
                        * scale
                })
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for c in 0..dv {
                out[(h * lq + i) * dv + c] = (0..lk)
                    .map(|j| e[j] / z * v[(h * lk + j) * dv + c] as f64)
                    .sum();
            }
        }
    }
    out
}

#[test]
fn attention_matches_naive() -> Result<()> {
    let mut rng = Rng::new(10);
    for (b, h, lq, lk, d, dv) in [
        (1, 2, 77, 77, 40, 40),
        (2, 3, 50, 120, 64, 64),
        (1, 1, 300, 9, 80, 80),
        (1, 2, 5, 3000, 40, 24),
        (2, 1, 1, 1, 8, 8),
    ] {
        let (q, qv) = rand_t(&mut rng, &[b, h, lq, d]);
        let (k, kv) = rand_t(&mut rng, &[b, h, lk, d]);
        let (v, vv) = rand_t(&mut rng, &[b, h, lk, dv]);
        let scale = 1.0 / (d as f32).sqrt();
        let want = naive_attention(&qv, &kv, &vv, b * h, lq, lk, d, dv, scale as f64);
        assert_close(
            &format!("attention b{b} h{h} {lq}x{lk} d{d}"),
            &cpu().attention(&q, &k, &v, scale)?,
            &[b, h, lq, dv],
            &want,
            1e-5,
        );
    }
    // a key head dim other than the query's, and keys and values of different lengths
    let q = cpu().zeros(&[1, 2, 4, 8])?;
    for (ks, vs) in [([1, 2, 4, 7], [1, 2, 4, 8]), ([1, 2, 4, 8], [1, 2, 5, 8])] {
        let (k, v) = (cpu().zeros(&ks)?, cpu().zeros(&vs)?);
        assert!(
            cpu().attention(&q, &k, &v, 1.0).is_err(),
            "k {ks:?} v {vs:?}"
        );
    }
    Ok(())
}

// ---- resampling -----------------------------------------------------------------

#[test]
fn upsample_nearest_follows_pytorch_index_rule() -> Result<()> {
    // Hand-computed: 3 → 5 reads 0,0,1,1,2; 5 → 3 reads 0,1,3; 2 → 4 reads 0,0,1,1.
    let x = cpu().from_f32(&[1, 1, 1, 3], &[10.0, 20.0, 30.0])?;
    assert_eq!(
        cpu().to_f32(&cpu().upsample_nearest2d(&x, 1, 5)?)?,
        vec![10.0, 10.0, 20.0, 20.0, 30.0]
    );
    let x = cpu().from_f32(&[1, 1, 5, 1], &[1.0, 2.0, 3.0, 4.0, 5.0])?;
    assert_eq!(
        cpu().to_f32(&cpu().upsample_nearest2d(&x, 3, 1)?)?,
        vec![1.0, 2.0, 4.0]
    );
    let x = cpu().from_f32(&[1, 1, 1, 2], &[1.0, 2.0])?;
    assert_eq!(
        cpu().to_f32(&cpu().upsample_nearest2d(&x, 1, 4)?)?,
        vec![1.0, 1.0, 2.0, 2.0]
    );

    let mut rng = Rng::new(11);
    for (shape, oh, ow) in [
        ([2, 3, 4, 5], 8, 10),
        ([1, 2, 7, 3], 9, 11),
        ([1, 1, 6, 6], 4, 3),
    ] {
        let (t, v) = rand_t(&mut rng, &shape);
        let (h, w) = (shape[2], shape[3]);
        let n = shape[0] * shape[1] * oh * ow;
        let want: Vec<f64> = (0..n)
            .map(|i| {
                let idx = unravel(i, &[shape[0] * shape[1], oh, ow]);
                let sy = ((idx[1] as f64 * h as f64 / oh as f64).floor() as usize).min(h - 1);
                let sx = ((idx[2] as f64 * w as f64 / ow as f64).floor() as usize).min(w - 1);
                v[(idx[0] * h + sy) * w + sx] as f64
            })
            .collect();
        assert_close(
            &format!("upsample {shape:?}→{oh}x{ow}"),
            &cpu().upsample_nearest2d(&t, oh, ow)?,
            &[shape[0], shape[1], oh, ow],
            &want,
            0.0,
        );
    }
    assert!(cpu()
        .upsample_nearest2d(&cpu().zeros(&[2, 3])?, 4, 4)
        .is_err());
    Ok(())
}

#[test]
fn from_f32_checks_length() {
    assert!(cpu().from_f32(&[2, 3], &[0.0; 5]).is_err());
    assert_eq!(cpu().zeros(&[2, 3]).unwrap().elem_count(), 6);
}
