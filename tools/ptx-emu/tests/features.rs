//! NVRTC-compiled feature kernels (tests/ptx/features.cu): divergence and reconvergence,
//! shuffles and votes, `.func` calls, `.local` arrays, dynamic shared memory, atomics, math
//! approximations and conversions, each against a CPU reference.
#![allow(clippy::needless_range_loop)]
mod common;
use common::*;
use half::{bf16, f16};
use ptx_emu::*;

fn rand_i32(n: usize, seed: u64, modulo: i32) -> Vec<i32> {
    rand_f32(n, seed)
        .iter()
        .map(|v| ((v + 1.0) * 0.5 * modulo as f32) as i32)
        .collect()
}

#[test]
fn divergent_loops_branches_and_early_return() {
    let mut e = Emu::new("features.ptx");
    let n = 300usize;
    let input = rand_i32(n, 11, 200);
    let pin = e.up_i32(&input);
    let pout = e.alloc(n * 4);
    e.ok(
        "divergence",
        lin(3, 128),
        &[p64(pin), p64(pout), p32(n as i32)],
    );
    let out = e.i32s(pout, n);
    for i in 0..n {
        let v = input[i];
        let mut acc = 0i32;
        let want = if v % 3 == 0 {
            for k in 0..(v & 15) {
                acc += k * v;
            }
            if acc > 100 {
                -acc
            } else {
                acc
            }
        } else if v % 3 == 1 {
            let mut k = v;
            while k > 1 {
                k = if k & 1 != 0 { 3 * k + 1 } else { k >> 1 };
                acc += 1;
            }
            acc
        } else {
            v * v - 7
        };
        assert_eq!(out[i], want, "thread {i} input {v}");
    }
}

#[test]
fn shuffles_after_divergence_reconverge() {
    let mut e = Emu::new("features.ptx");
    let nb = 2usize;
    let input = rand_f32(nb * 64, 5);
    let pin = e.up_f32(&input);
    let pout = e.alloc(nb * 64 * 16);
    e.ok(
        "reconverge_shfl",
        lin(nb as u32, 64),
        &[p64(pin), p64(pout)],
    );
    let out = e.f32s(pout, nb * 64 * 4);
    for w in 0..nb * 2 {
        let mut x = [0f32; 32];
        for lane in 0..32 {
            let mut v = input[w * 32 + lane];
            if lane % 3 == 0 {
                v *= 2.0;
            } else if lane % 3 == 1 {
                for _ in 0..lane {
                    v += 0.5;
                }
            } else {
                v = -v;
            }
            x[lane] = v;
        }
        for o in [16, 8, 4, 2, 1] {
            let prev = x;
            for lane in 0..32 {
                x[lane] = prev[lane] + prev[lane ^ o];
            }
        }
        for lane in 0..32 {
            let base = (w * 32 + lane) * 4;
            let src_up = if lane >= 3 { lane - 3 } else { lane };
            let seg = lane & !15;
            let src_dn = if (lane & 15) + 5 < 16 { lane + 5 } else { lane };
            let seg8 = lane & !7;
            let src_ix = seg8 + (((lane * 7) & 31) & 7);
            assert!(
                (out[base] - x[lane]).abs() <= 1e-4 * x[lane].abs().max(1.0),
                "xor reduce lane {lane}"
            );
            assert_eq!(
                out[base + 1],
                x[src_up] + src_up as f32,
                "shfl.up lane {lane}"
            );
            let _ = seg;
            assert_eq!(
                out[base + 2],
                x[src_dn] + src_dn as f32,
                "shfl.down width 16 lane {lane}"
            );
            assert_eq!(out[base + 3], src_ix as f32, "shfl.idx width 8 lane {lane}");
        }
    }
}

#[test]
fn vote_ballot_any_all_activemask() {
    let mut e = Emu::new("features.ptx");
    let input: Vec<i32> = (0..64)
        .map(|i| if i % 5 == 0 { -3 } else { i * 3 })
        .collect();
    let pin = e.up_i32(&input);
    let pout = e.alloc(64 * 16);
    e.ok("vote_ballot", lin(1, 64), &[p64(pin), p64(pout)]);
    let out = e.u32s(pout, 64 * 4);
    for w in 0..2 {
        let mut ballot = 0u32;
        let mut any = false;
        for l in 0..32 {
            let v = input[w * 32 + l];
            if v > 0 {
                ballot |= 1 << l;
            }
            any |= v > 100;
        }
        for l in 0..32 {
            let t = w * 32 + l;
            assert_eq!(out[t * 4], ballot, "ballot thread {t}");
            assert_eq!(out[t * 4 + 1], any as u32, "any thread {t}");
            assert_eq!(out[t * 4 + 2], 1, "all thread {t}");
            let want_am = if l & 1 == 1 { 0xaaaa_aaaa } else { 0 };
            assert_eq!(out[t * 4 + 3], want_am, "activemask thread {t}");
        }
    }
}

#[test]
fn noinline_func_call_with_struct_return() {
    let mut e = Emu::new("features.ptx");
    let p = rand_f32(8, 9);
    let pp = e.up_f32(&p);
    let pout = e.alloc(64 * 4);
    e.ok("func_call", lin(1, 64), &[p64(pp), p64(pout)]);
    let out = e.f32s(pout, 64);
    for t in 0..64i32 {
        let (a, b) = if t & 1 == 1 {
            (t as f32 * p[(t & 7) as usize], t * 3)
        } else {
            (t as f32 + 1.0, -t)
        };
        assert_eq!(out[t as usize], a + b as f32, "thread {t}");
    }
}

#[test]
fn local_array_dynamic_index() {
    let mut e = Emu::new("features.ptx");
    let idx = rand_i32(32, 4, 1000);
    let pi = e.up_i32(&idx);
    let pout = e.alloc(32 * 4);
    e.ok("local_array", lin(1, 32), &[p64(pi), p64(pout)]);
    let out = e.f32s(pout, 32);
    for t in 0..32usize {
        let mut arr: Vec<f32> = (0..16).map(|k| (k * t) as f32).collect();
        let j = (idx[t] & 15) as usize;
        arr[j] += 100.0;
        assert_eq!(out[t], arr[j] + arr[(j + 5) & 15], "thread {t}");
    }
}

#[test]
fn dynamic_shared_memory() {
    let mut e = Emu::new("features.ptx");
    let n = 96usize;
    let x = rand_f32(2 * n, 8);
    let pin = e.up_f32(&x);
    let pout = e.alloc(2 * n * 4);
    e.ok(
        "dyn_smem",
        cfg([2, 1, 1], [n as u32, 1, 1], (n * 4) as u32),
        &[p64(pin), p64(pout), p32(n as i32)],
    );
    let out = e.f32s(pout, 2 * n);
    for b in 0..2 {
        for t in 0..n {
            assert_eq!(out[b * n + t], x[b * n + n - 1 - t]);
        }
    }
    // Too little dynamic shared memory for the block: out of bounds at the st.shared.
    let f = e.fault(
        "dyn_smem",
        cfg([2, 1, 1], [n as u32, 1, 1], (n * 4 - 4) as u32),
        &[p64(pin), p64(pout), p32(n as i32)],
        FaultKind::OutOfBounds,
    );
    assert!(f.instruction.starts_with("st.shared"), "{f}");
}

#[test]
fn atomics_global_and_shared() {
    let mut e = Emu::new("features.ptx");
    let nb = 3usize;
    let input = rand_i32(nb * 128, 21, 100_000);
    let pin = e.up_i32(&input);
    let pf = e.upload(&0f32.to_le_bytes());
    let pm = e.upload(&i32::MIN.to_le_bytes());
    let ph = e.upload(&[0u8; 32]);
    let pc = e.upload(&[0u8; 4]);
    e.ok(
        "atomics",
        lin(nb as u32, 128),
        &[p64(pin), p64(pf), p64(pm), p64(ph), p64(pc)],
    );
    let fsum = e.f32s(pf, 1)[0];
    let imax = e.i32s(pm, 1)[0];
    let hist = e.u32s(ph, 8);
    let ctr = e.i32s(pc, 1)[0];
    let want_sum: f64 = input.iter().map(|v| (v & 255) as f64 * 0.5).sum();
    assert!(
        (fsum as f64 - want_sum).abs() < 1e-3 * want_sum,
        "{fsum} vs {want_sum}"
    );
    assert_eq!(imax, *input.iter().max().unwrap());
    for b in 0..8 {
        assert_eq!(
            hist[b] as usize,
            input.iter().filter(|v| (*v & 7) as usize == b).count(),
            "bin {b}"
        );
    }
    assert_eq!(ctr, 2 * input.len() as i32);
}

#[test]
fn math_approximations_within_documented_error() {
    let mut e = Emu::new("features.ptx");
    let x: Vec<f32> = rand_f32(64, 31).iter().map(|v| v * 3.0).collect();
    let pin = e.up_f32(&x);
    let pout = e.alloc(64 * 48);
    e.ok("math_fns", lin(1, 64), &[p64(pin), p64(pout)]);
    let out = e.f32s(pout, 64 * 12);
    for t in 0..64 {
        let v = x[t] as f64;
        let want = [
            v.exp(),
            ((v.abs() as f32 + 0.5) as f64).ln(),
            v.sin(),
            v.cos(),
            1.0 / ((v.abs() as f32 + 0.1) as f64).sqrt(),
            v.abs().sqrt(),
            v / (v * v + 1.0),
            v.exp(),
            v.tanh(),
            1.0 / (v + 3.0),
            v.tanh(),
            erf(v),
        ];
        for (k, w) in want.iter().enumerate() {
            let g = out[t * 12 + k] as f64;
            let tol = 2e-6 * w.abs().max(1.0);
            assert!((g - w).abs() <= tol, "thread {t} fn {k}: got {g}, want {w}");
        }
    }
}

/// erf via a high-precision series (|x| ≤ 3).
fn erf(x: f64) -> f64 {
    let mut sum = 0.0f64;
    let mut term = x;
    let mut n = 0.0f64;
    while term.abs() > 1e-17 * sum.abs().max(1e-300) || n < 5.0 {
        sum += term / (2.0 * n + 1.0);
        n += 1.0;
        term *= -x * x / n;
        if n > 200.0 {
            break;
        }
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

#[test]
fn conversions_with_rounding_modes() {
    let mut e = Emu::new("features.ptx");
    let mut x: Vec<f32> = vec![
        2.5,
        -2.5,
        3.5,
        -0.5,
        1e10,
        -1e10,
        65520.0,
        1.000_488_3,
        -7.99,
        0.3,
        f32::NAN,
        1e-8,
    ];
    x.extend(rand_f32(52, 77).iter().map(|v| v * 1000.0));
    let pin = e.up_f32(&x);
    let pout = e.alloc(64 * 40);
    e.ok("conversions", lin(1, 64), &[p64(pin), p64(pout)]);
    let out = e.u32s(pout, 64 * 10);
    let sat_i32 = |v: f64| -> u32 {
        if v.is_nan() {
            0
        } else {
            v.clamp(i32::MIN as f64, i32::MAX as f64) as i32 as u32
        }
    };
    for t in 0..64 {
        let v = x[t] as f64;
        let o = &out[t * 10..t * 10 + 10];
        assert_eq!(o[0], sat_i32(v.round_ties_even()), "rn {v}");
        assert_eq!(o[1], sat_i32(v.trunc()), "rz {v}");
        assert_eq!(o[2], sat_i32(v.floor()), "rd {v}");
        assert_eq!(o[3], sat_i32(v.ceil()), "ru {v}");
        let b = bf16::from_f32(x[t]);
        if x[t].is_nan() {
            assert!(bf16::from_bits(o[4] as u16).is_nan());
            assert!(f16::from_bits(o[5] as u16).is_nan());
            continue;
        }
        assert_eq!(o[4], b.to_bits() as u32, "bf16 rn {v}");
        assert_eq!(o[5], f16::from_f32(x[t]).to_bits() as u32, "f16 rn {v}");
        // rz: |r| ≤ |x| and the next f16 away from zero exceeds |x|
        let rz = f16::from_bits(o[6] as u16).to_f64();
        assert!(rz.abs() <= v.abs(), "f16 rz {v} -> {rz}");
        let next = f16::from_bits((o[6] as u16 & 0x7fff) + 1).to_f64();
        assert!(
            next > v.abs() || (rz.abs() == 65504.0),
            "f16 rz {v} -> {rz}"
        );
        let u = if v <= 0.0 {
            0
        } else {
            v.round_ties_even().min(u32::MAX as f64) as u32
        };
        assert_eq!(o[7], u, "f2uint rn {v}");
        // __floats2bfloat162_rn(x, -x): .x (low half) = x, .y (high half) = -x
        assert_eq!(
            o[8],
            ((bf16::from_f32(-x[t]).to_bits() as u32) << 16) | b.to_bits() as u32,
            "bf16x2 {v}"
        );
        let i = ((x[t] * 10.0) as f64)
            .trunc()
            .clamp(i32::MIN as f64, i32::MAX as f64) as i32;
        assert_eq!(o[9], (i as i8) as i32 as u32, "s8 trunc {v}");
    }
}

#[test]
fn nvrtc_reduction_missing_syncthreads_is_a_race() {
    let src = ptx("features.ptx");
    let mut e = Emu::new("features.ptx");
    let nb = 3usize;
    let x = rand_f32(nb * 256, 12);
    let pin = e.up_f32(&x);
    let pout = e.alloc(nb * 4);
    e.ok("block_sum", lin(nb as u32, 256), &[p64(pin), p64(pout)]);
    let out = e.f32s(pout, nb);
    for b in 0..nb {
        let want: f64 = x[b * 256..(b + 1) * 256].iter().map(|v| *v as f64).sum();
        assert!(
            (out[b] as f64 - want).abs() < 1e-4,
            "block {b}: {} vs {want}",
            out[b]
        );
    }
    let f = e.fault(
        "block_sum_racy",
        lin(nb as u32, 256),
        &[p64(pin), p64(pout)],
        FaultKind::SharedRace,
    );
    let start = line_of(&src, ".entry block_sum_racy(");
    assert!(f.ptx_line > start, "{f}");
    assert!(
        f.instruction.starts_with("ld.shared") || f.instruction.starts_with("st.shared"),
        "{f}"
    );
}

#[test]
fn const_and_global_variables_generic_shared_and_exch() {
    let mut e = Emu::new("memory_spaces.ptx");
    let globals = e.m.globals();
    assert_eq!(
        globals
            .iter()
            .map(|g| (g.name.as_str(), g.size, g.is_const))
            .collect::<Vec<_>>(),
        vec![
            ("table", 16, true),
            ("scale", 4, true),
            ("counter", 4, false),
            ("last_exch", 4, false)
        ]
    );
    let n = 128usize;
    let x = rand_f32(n, 41);
    let pin = e.up_f32(&x);
    let pout = e.alloc(n * 4);
    e.ok("spaces", lin(1, n as u32), &[p64(pin), p64(pout)]);
    let out = e.f32s(pout, n);
    for t in 0..n {
        assert_eq!(out[t], x[t] * 2.0 + (t % 4 + 1) as f32, "thread {t}");
    }
    let counter = e
        .mem
        .global_address(&e.m, "counter")
        .expect("counter is backed");
    assert_eq!(e.u32s(counter, 1)[0], n as u32);
    let last = e.mem.global_address(&e.m, "last_exch").unwrap();
    assert_eq!(e.u32s(last, 1)[0], 7);
    // a second launch sees the global state of the first
    e.ok("spaces", lin(1, n as u32), &[p64(pin), p64(pout)]);
    assert_eq!(e.u32s(counter, 1)[0], 2 * n as u32);
}

/// Labels are scoped per `{ }` block, like registers: the same inline-asm block repeated by the
/// compiler (CUTLASS's mbarrier wait loop `LAB_WAIT: … @P1 bra DONE; bra LAB_WAIT; DONE:`) declares
/// its labels once per copy, and each branch goes to the label of its own (innermost) block,
/// forward or backward; a name not declared there resolves in the enclosing blocks.
#[test]
fn labels_are_scoped_per_block() {
    let src = r#"
.version 8.4
.target sm_80
.address_size 64
.visible .entry scoped_labels(.param .u64 out)
{
	.reg .b32 %r<3>;
	.reg .b64 %rd<2>;
	ld.param.u64 %rd1, [out];
	mov.u32 %r1, 0;
	mov.u32 %r2, 0;
	{
	.reg .pred P;
	LOOP:
	add.u32 %r1, %r1, 1;
	setp.lt.u32 P, %r1, 3;
	@P bra LOOP;
	bra DONE;
	add.u32 %r1, %r1, 100;
	DONE:
	}
	{
	.reg .pred P;
	LOOP:
	add.u32 %r2, %r2, 10;
	setp.lt.u32 P, %r2, 30;
	@P bra LOOP;
	bra END;
	DONE:
	add.u32 %r2, %r2, 100;
	}
	mov.u32 %r1, 7;
END:
	st.global.u32 [%rd1], %r1;
	st.global.u32 [%rd1+4], %r2;
	ret;
}
"#;
    let mut e = Emu::from_module(Module::parse(src).unwrap_or_else(|e| panic!("parse: {e}")));
    let out = e.alloc(8);
    e.ok("scoped_labels", cfg([1, 1, 1], [1, 1, 1], 0), &[p64(out)]);
    assert_eq!(e.u32s(out, 2), vec![3, 30]);
}
