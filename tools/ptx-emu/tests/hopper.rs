//! sm_90a in the emulator (tests/ptx/hopper.ptx): mbarrier phases and transaction counts,
//! waits across warps, cp.async.bulk, TMA tile loads/stores in every swizzle mode with
//! out-of-bounds fill, elect.sync, setmaxnreg, and the new hazard classes (deadlock,
//! tx-count mismatch, reading a bulk-copy destination early). Every good launch goes through
//! `common::run`: 3 seeded schedules, cross-checked at `PTX_EMU_CHECKS=fast` and without the
//! decoded fast path.
#![allow(clippy::needless_range_loop, clippy::result_large_err)]
mod common;
use common::*;
use ptx_emu::tensor_map::{Swizzle, TensorMap};
use ptx_emu::*;

fn src() -> String {
    ptx("hopper.ptx")
}

fn u64s(e: &Emu, a: u64, n: usize) -> Vec<u64> {
    e.bytes(a, n * 8)
        .chunks(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn parses_sm90a_target_and_version() {
    let m = Module::parse(&src()).unwrap();
    assert_eq!(m.target(), "sm_90a");
    assert_eq!(m.ptx_isa_version(), "8.4");
    assert!(m.check_arch(Arch::Sm90a).is_ok());
    assert!(m.check_arch(Arch::Sm80).is_err());
    assert!(m.check_arch(Arch::Sm89).is_err());
    for k in m.kernel_names() {
        assert!(m.unsupported(&k).is_empty(), "{k}: {:?}", m.unsupported(&k));
    }
    // sm_90-only instructions in sm_80 PTX are unsupported (ptxas would reject them)
    let old = src().replace(".target sm_90a", ".target sm_80");
    let m = Module::parse(&old).unwrap();
    let u = m.unsupported("bulk_roundtrip");
    assert!(!u.is_empty() && u[0].2.contains("sm_90"), "{u:?}");
    // plain mbarrier arrive/test_wait exist on sm_80
    assert!(m.unsupported("mbar_deadlock").is_empty());
}

#[test]
fn mbarrier_phases_by_hand() {
    let mut e = Emu::new("hopper.ptx");
    let out = e.alloc(14 * 8);
    e.ok("mbar_states", lin(1, 1), &[p64(out)]);
    let got = u64s(&e, out, 14);
    // state of phase 0; test_wait(state) false; parity 0 not done; parity 1 (the preceding
    // phase) done; second arrive completes phase 0 (state 0); now state/parity 0 done, parity 1
    // not; expect_tx 32 + arrive(2): phase 1 waits for bytes; complete_tx 32 completes it;
    // arrive.expect_tx 16 + complete_tx 16 + arrive completes phase 2 (parity 0 done);
    // arrive_drop leaves one expected arrival: arrive completes phase 3, the next arrive
    // returns state 4 and completes phase 4; try_wait(state 4) true; generic-address arrive
    // in phase 5 returns 5.
    assert_eq!(got, vec![0, 0, 0, 1, 0, 1, 1, 0, 0, 1, 1, 4, 1, 5]);
}

#[test]
fn producer_consumer_ring_across_warps() {
    let mut e = Emu::new("hopper.ptx");
    let out = e.alloc(32 * 4);
    e.ok("mbar_pipeline", lin(1, 64), &[p64(out), p32(1)]);
    let got = e.u32s(out, 32);
    let want: Vec<u32> = (0..32)
        .map(|l| (0..6).map(|it| it * 100 + 31 - l).sum())
        .collect();
    assert_eq!(got, want);
}

#[test]
fn wrong_parity_is_a_deadlock_report() {
    let s = src();
    let mut e = Emu::new("hopper.ptx");
    let out = e.alloc(32 * 4);
    let f = e.fault(
        "mbar_pipeline",
        lin(1, 64),
        &[p64(out), p32(0)],
        FaultKind::Deadlock,
    );
    assert_eq!(f.ptx_line, line_of(&s, "// FLAG:producer_wait"), "{f}");
    assert!(f.thread[0] < 32, "{f}");
    assert!(
        f.detail.contains("parity 0") && f.detail.contains("no thread can arrive"),
        "{f}"
    );
}

#[test]
fn missing_arrival_is_a_deadlock_report() {
    let s = src();
    let mut e = Emu::new("hopper.ptx");
    let f = e.fault("mbar_deadlock", lin(1, 64), &[], FaultKind::Deadlock);
    assert_eq!(f.ptx_line, line_of(&s, "// FLAG:deadlock_wait"), "{f}");
    assert!(f.detail.contains("1 of 2 arrivals pending"), "{f}");
    assert!(f.to_string().contains("mbar_deadlock"), "{f}");
}

fn bulk(tx: u32, early: u32) -> (Emu, Vec<u8>, u64, u64, Result<LaunchStats, Fault>) {
    let mut e = Emu::new("hopper.ptx");
    let data: Vec<u8> = (0..256u32).map(|i| (i * 7 + 3) as u8).collect();
    let inp = e.upload(&data);
    let out = e.alloc(256);
    let out2 = e.alloc(256);
    let r = e.try_run(
        "bulk_roundtrip",
        lin(1, 32),
        &[
            p64(inp),
            p64(out),
            p64(out2),
            p32(tx as i32),
            p32(early as i32),
        ],
    );
    (e, data, out, out2, r)
}

#[test]
fn bulk_copy_round_trip() {
    let (e, data, out, out2, r) = bulk(256, 0);
    r.unwrap();
    assert_eq!(e.bytes(out, 256), data);
    assert_eq!(e.bytes(out2, 256), data);
}

#[test]
fn expect_tx_too_large_is_flagged() {
    let (_, _, _, _, r) = bulk(512, 0);
    let f = r.unwrap_err();
    assert_eq!(f.kind, FaultKind::TxCountMismatch, "{f}");
    assert_eq!(f.ptx_line, line_of(&src(), "// FLAG:bulk_wait"), "{f}");
    assert!(
        f.detail
            .contains("256 expected transaction bytes never arrive"),
        "{f}"
    );
}

#[test]
fn expect_tx_too_small_is_flagged() {
    let (_, _, _, _, r) = bulk(128, 0);
    let f = r.unwrap_err();
    assert_eq!(f.kind, FaultKind::TxCountMismatch, "{f}");
    assert!(f.detail.contains("128 bytes more arrived"), "{f}");
}

#[test]
fn reading_a_bulk_destination_early_is_flagged() {
    let (_, _, _, _, r) = bulk(256, 1);
    let f = r.unwrap_err();
    assert_eq!(f.kind, FaultKind::AsyncProxyRace, "{f}");
    assert_eq!(f.ptx_line, line_of(&src(), "// FLAG:early_read"), "{f}");
}

/// The tile a TMA load of `tm` at `coords` must leave in shared memory (relative to a
/// 1024-byte aligned destination): the box in dim-0-fastest order, OOB elements filled, each
/// element at its swizzled byte offset. Computed here from the definitions, independently of
/// `TensorMap::box_elements`.
fn expected_tile(tm: &TensorMap, global: &[u8], gbase: u64, coords: &[i32]) -> Vec<u8> {
    let r = tm.rank as usize;
    let es = tm.elem_size as usize;
    let counts: Vec<usize> = (0..r)
        .map(|i| (tm.box_dim[i] as usize).div_ceil(tm.element_strides[i] as usize))
        .collect();
    let total: usize = counts.iter().product();
    let mut tile = vec![0u8; total * es];
    for k in 0..total {
        let mut rem = k;
        let mut off = 0u64;
        let mut inside = true;
        for i in 0..r {
            let j = rem % counts[i];
            rem /= counts[i];
            let x = coords[i] as i64 + (j * tm.element_strides[i] as usize) as i64;
            if x < 0 || x >= tm.global_dim[i] as i64 {
                inside = false;
            }
            let stride = if i == 0 {
                es as u64
            } else {
                tm.global_strides[i - 1]
            };
            off = off.wrapping_add((x as u64).wrapping_mul(stride));
        }
        let dst = hand_swizzle(k * es, tm.swizzle);
        let val: Vec<u8> = if inside {
            let a = (gbase + off - tm.global_address) as usize;
            global[a..a + es].to_vec()
        } else if tm.oob_fill == 1 {
            match es {
                2 => 0x7fffu16.to_le_bytes().to_vec(),
                4 => 0x7fff_ffffu32.to_le_bytes().to_vec(),
                _ => 0x7fff_ffff_ffff_ffffu64.to_le_bytes().to_vec(),
            }
        } else {
            vec![0; es]
        };
        tile[dst..dst + es].copy_from_slice(&val);
    }
    tile
}

/// The documented swizzle, by hand: within each 128-byte row of the tile, the 16-byte chunk
/// index is XORed with the row index modulo 2^B (B = 1, 2, 3 for 32B, 64B, 128B; CuTe
/// `Swizzle<B,4,3>` on byte offsets).
fn hand_swizzle(lin: usize, swz: Swizzle) -> usize {
    let b = match swz {
        Swizzle::None => return lin,
        Swizzle::B32 => 1,
        Swizzle::B64 => 2,
        Swizzle::B128 => 3,
    };
    let row = lin / 128;
    let chunk = (lin / 16) % 8;
    row * 128 + ((chunk ^ (row % (1 << b))) * 16) + lin % 16
}

fn coords_param(c: &[i32]) -> Vec<u8> {
    let mut v = vec![0u8; 20];
    for (i, x) in c.iter().enumerate() {
        v[4 * i..4 * i + 4].copy_from_slice(&x.to_le_bytes());
    }
    v
}

/// A global tensor of `dims` elements of `es` bytes with row pitch padding; bytes are a
/// pattern. Returns (device address, bytes, strides).
fn tensor(e: &mut Emu, dims: &[u64], es: usize) -> (u64, Vec<u8>, Vec<u64>) {
    let mut strides = Vec::new();
    let mut s = (dims[0] as usize * es).div_ceil(16) as u64 * 16 + 16; // padded pitch
    for i in 1..dims.len() {
        strides.push(s);
        s *= dims[i];
    }
    let bytes: Vec<u8> = (0..s as usize)
        .map(|i| (i as u32).wrapping_mul(2654435761).rotate_right(13) as u8)
        .collect();
    let a = e.upload(&bytes);
    (a, bytes, strides)
}

#[allow(clippy::too_many_arguments)]
fn tma_load_case(
    dtype: u32,
    dims: &[u64],
    box_dim: &[u32],
    estr: &[u32],
    swz: u32,
    oob: u32,
    coords: &[i32],
) {
    let rank = dims.len();
    let kernel = format!("tma_load_{rank}d");
    let mut e = Emu::new("hopper.ptx");
    let es = tensor_map::dtype_size(dtype).unwrap() as usize;
    let (ga, gbytes, strides) = tensor(&mut e, dims, es);
    let tm = TensorMap::encode_tiled(
        dtype,
        rank as u32,
        ga,
        dims,
        &strides,
        box_dim,
        estr,
        0,
        swz,
        0,
        oob,
    )
    .unwrap_or_else(|m| panic!("{m}"));
    let bytes = tm.box_bytes();
    assert!(bytes.is_multiple_of(128) && bytes <= 8192);
    let out = e.alloc(bytes);
    e.ok(
        &kernel,
        lin(1, 128),
        &[
            tm.to_bytes().to_vec(),
            p64(out),
            coords_param(coords),
            p32(bytes as i32),
        ],
    );
    let want = expected_tile(&tm, &gbytes, ga, coords);
    let got = e.bytes(out, bytes);
    assert_eq!(
        got, want,
        "{kernel} swizzle {swz} dtype {dtype} coords {coords:?}"
    );
}

#[test]
fn tma_load_2d_every_swizzle_with_oob() {
    // bf16, 40 × 20 elements; boxes straddle the left and bottom edges (zero fill) and sit
    // inside; inner box bytes = the swizzle span (32B: 16 elements, 64B: 32, 128B: 64).
    for (swz, b0) in [(0u32, 64u32), (1, 16), (2, 32), (3, 64)] {
        for c in [[-8, 15], [0, 0], [24, 3], [-70, -30]] {
            tma_load_case(9, &[40, 20], &[b0, 8 * (1 + swz)], &[1, 1], swz, 0, &c);
        }
    }
}

#[test]
fn tma_load_nan_fill_and_f32() {
    tma_load_case(9, &[40, 20], &[64, 16], &[1, 1], 3, 1, &[-8, 15]);
    tma_load_case(7, &[33, 9], &[32, 8], &[1, 1], 3, 1, &[20, -2]);
    tma_load_case(7, &[33, 9], &[8, 16], &[1, 1], 1, 0, &[30, 1]);
}

#[test]
fn tma_load_1d_3d_5d_and_element_strides() {
    tma_load_case(0, &[1000], &[256], &[1], 0, 0, &[900]);
    tma_load_case(2, &[50], &[64], &[2], 0, 0, &[-3]);
    tma_load_case(9, &[24, 7, 5], &[16, 4, 4], &[1, 2, 1], 1, 0, &[6, 1, 0]);
    tma_load_case(
        6,
        &[16, 3, 4, 2, 3],
        &[8, 2, 2, 2, 2],
        &[1, 1, 1, 1, 2],
        0,
        0,
        &[4, 2, -1, 1, 1],
    );
    tma_load_case(
        8,
        &[6, 5, 4, 3, 2],
        &[8, 2, 2, 2, 2],
        &[1, 1, 1, 1, 1],
        2,
        1,
        &[-2, 3, 2, 1, 0],
    );
}

#[test]
fn tma_store_2d_every_swizzle_skips_oob() {
    for (swz, b0) in [(0u32, 32u32), (1, 16), (2, 32), (3, 64)] {
        for c in [[0, 0], [30, 16], [-10, -3]] {
            let mut e = Emu::new("hopper.ptx");
            let dims = [40u64, 20];
            let (ga, before, strides) = tensor(&mut e, &dims, 2);
            let tm =
                TensorMap::encode_tiled(9, 2, ga, &dims, &strides, &[b0, 8], &[1, 1], 0, swz, 0, 0)
                    .unwrap();
            let bytes = tm.box_bytes();
            let tile: Vec<u8> = (0..bytes).map(|i| (i * 13 + 5) as u8).collect();
            let inp = e.upload(&tile);
            e.ok(
                "tma_store_2d",
                lin(1, 128),
                &[
                    tm.to_bytes().to_vec(),
                    p64(inp),
                    coords_param(&c),
                    p32(bytes as i32),
                ],
            );
            let got = e.bytes(ga, before.len());
            // expected: every in-bounds box element of the global tensor gets the tile's
            // element at its swizzled shared offset; everything else is unchanged.
            let mut want = before.clone();
            let n0 = b0 as usize;
            for k in 0..bytes / 2 {
                let (j0, j1) = ((k % n0) as i64, (k / n0) as i64);
                let (x, y) = (c[0] as i64 + j0, c[1] as i64 + j1);
                if x < 0 || y < 0 || x >= 40 || y >= 20 {
                    continue;
                }
                let src = hand_swizzle(k * 2, tm.swizzle);
                let dst = y as usize * strides[0] as usize + x as usize * 2;
                want[dst..dst + 2].copy_from_slice(&tile[src..src + 2]);
            }
            assert_eq!(got, want, "swizzle {swz} coords {c:?}");
        }
    }
}

#[test]
fn elect_sync_elects_the_lowest_active_lane() {
    let mut e = Emu::new("hopper.ptx");
    let out = e.alloc(768);
    e.ok("elect_test", lin(1, 64), &[p64(out)]);
    let got = e.u32s(out, 192);
    for t in 0..64 {
        assert_eq!(got[2 * t], 0, "thread {t}");
        assert_eq!(got[2 * t + 1], (t % 32 == 0) as u32, "thread {t}");
        assert_eq!(got[128 + t], if t % 2 == 1 { 1 } else { 99 }, "thread {t}");
    }
}

#[test]
fn setmaxnreg_budget() {
    let mut e = Emu::new("hopper.ptx");
    // 40 + 232 + 232 = 504 registers × 128 threads = 64512 ≤ 65536 (the incs may wait for the dec)
    e.ok("regs_ok", lin(1, 384), &[]);
    // 40 + 240 + 240 = 520 × 128 = 66560 > 65536
    let f = e.fault("regs_over", lin(1, 384), &[], FaultKind::RegisterBudget);
    assert_eq!(f.ptx_line, line_of(&src(), "// FLAG:regs_over_inc"), "{f}");
    assert!(f.detail.contains("65536"), "{f}");
}

#[test]
fn bulk_bytes_in_the_profiler_counters() {
    let mut e = Emu::new("hopper.ptx");
    let data: Vec<u8> = (0..256u32).map(|i| i as u8).collect();
    let inp = e.upload(&data);
    let out = e.alloc(256);
    let out2 = e.alloc(256);
    let params = [p64(inp), p64(out), p64(out2), p32(256), p32(0)];
    let p: Vec<&[u8]> = params.iter().map(Vec::as_slice).collect();
    let c = lin(1, 32);
    let call = KernelCall {
        module: &e.m,
        kernel: "bulk_roundtrip",
        cfg: &c,
        params: &p,
    };
    let opts = LaunchOptions::with_checks(Checks::Full);
    let (_, acc) = launch_counted(call, &mut e.mem, &opts, None).unwrap();
    let cn = acc.finish(&gpu_model::LaunchInfo::new(
        "bulk_roundtrip",
        c.grid,
        c.block,
    ));
    assert_eq!((cn.bulk_load_bytes, cn.bulk_store_bytes), (256, 256));
    // the load's source counted like cp.async: one request, 8 sectors of 32 bytes
    assert_eq!(
        (cn.global_ldgsts_requests, cn.global_ldgsts_sectors),
        (1, 8)
    );
    // the one warp parked on the mbarrier until the copy landed: one memory round trip
    assert_eq!((cn.mem_round_trips, cn.mem_wait_bytes), (1.0, 256.0));
}

#[test]
fn clusters_of_one_block() {
    let mut e = Emu::new("hopper.ptx");
    let (grid, block) = (3u32, 64u32);
    let out = e.alloc((grid * block * 32) as usize);
    e.ok("cluster_one", lin(grid, block), &[p64(out)]);
    let got = e.u32s(out, (grid * block * 8) as usize);
    for b in 0..grid {
        for t in 0..block {
            let i = ((b * block + t) * 8) as usize;
            let want = [0, 1, b, grid, 0, 1, 0, b * 1000 + (t ^ 1)];
            assert_eq!(&got[i..i + 8], &want, "block {b} thread {t}");
        }
    }
    let f = e.fault("cluster_bad_rank", lin(1, 32), &[], FaultKind::OutOfBounds);
    assert_eq!(f.ptx_line, line_of(&src(), "// FLAG:bad_rank"), "{f}");
}

#[test]
fn multicast_to_the_own_cta_and_cluster_arrive() {
    let mut e = Emu::new("hopper.ptx");
    let dims = [64u64, 16];
    let (ga, gbytes, strides) = tensor(&mut e, &dims, 2);
    let tm =
        TensorMap::encode_tiled(9, 2, ga, &dims, &strides, &[64, 8], &[1, 1], 0, 3, 0, 0).unwrap();
    let bytes = tm.box_bytes();
    let out = e.alloc(bytes);
    let mask = |m: u16| m.to_le_bytes().to_vec();
    let params = |m: u16| {
        vec![
            tm.to_bytes().to_vec(),
            p64(out),
            coords_param(&[0, 5]),
            p32(bytes as i32),
            mask(m),
        ]
    };
    e.ok("tma_multicast", lin(1, 128), &params(1));
    assert_eq!(
        e.bytes(out, bytes),
        expected_tile(&tm, &gbytes, ga, &[0, 5])
    );
    // a CTA rank the one-block cluster does not have
    let f = e.fault(
        "tma_multicast",
        lin(1, 128),
        &params(3),
        FaultKind::OutOfBounds,
    );
    assert_eq!(f.ptx_line, line_of(&src(), "// FLAG:multicast"), "{f}");
}

#[test]
fn warp_specialised_tma_pipeline() {
    let nt = 6usize;
    let mut e = Emu::new("hopper.ptx");
    let dims = [64u64, 8 * nt as u64];
    // u16 tensor, row pitch 128 bytes, value = 7 * index + 1 (mod 2^16)
    let vals: Vec<u16> = (0..64 * 8 * nt)
        .map(|i| (i as u16).wrapping_mul(7).wrapping_add(1))
        .collect();
    let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    let ga = e.upload(&bytes);
    let tm =
        TensorMap::encode_tiled(1, 2, ga, &dims, &[128], &[64, 8], &[1, 1], 0, 0, 0, 0).unwrap();
    let out = e.alloc(32 * 4);
    let params = |nowait: i32| {
        vec![
            tm.to_bytes().to_vec(),
            p64(out),
            p32(nt as i32),
            p32(nowait),
        ]
    };
    e.ok("tma_pipeline", lin(1, 64), &params(0));
    let got = e.u32s(out, 32);
    for l in 0..32 {
        let want: u32 = (0..nt)
            .map(|t| {
                (16 * l..16 * l + 16)
                    .map(|k| vals[t * 512 + k] as u32)
                    .sum::<u32>()
            })
            .sum();
        assert_eq!(got[l], want, "lane {l}");
    }
    // consumers that do not wait on full[s] read a stage the TMA has not filled yet
    let f = e.fault(
        "tma_pipeline",
        lin(1, 64),
        &params(1),
        FaultKind::AsyncProxyRace,
    );
    assert_eq!(f.ptx_line, line_of(&src(), "// FLAG:pipeline_read"), "{f}");
}

#[test]
fn generic_writes_need_a_proxy_fence_before_a_bulk_store() {
    let mut e = Emu::new("hopper.ptx");
    let out = e.alloc(256);
    e.ok("proxy_fence_store", lin(1, 64), &[p64(out), p32(1)]);
    let want: Vec<u32> = (0..64).map(|t| 4 * t + 1).collect();
    assert_eq!(e.u32s(out, 64), want);
    let f = e.fault(
        "proxy_fence_store",
        lin(1, 64),
        &[p64(out), p32(0)],
        FaultKind::AsyncProxyRace,
    );
    assert_eq!(f.ptx_line, line_of(&src(), "// FLAG:proxy_store"), "{f}");
    assert!(f.detail.contains("fence.proxy.async"), "{f}");
}

#[test]
fn bulk_reduce_add_f32_and_bf16() {
    let mut e = Emu::new("hopper.ptx");
    // f32: 1000 + t, plus 2t + 0.5 (exact); bf16: t plus 2t = 3t (exact below 256)
    let g: Vec<f32> = (0..64).map(|t| 1000.0 + t as f32).collect();
    let fout = e.up_f32(&g);
    let bf = |x: f32| (x.to_bits() >> 16) as u16;
    let to_bytes = |v: Vec<u16>| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let bout = e.upload(&to_bytes((0..64).map(|t| bf(t as f32)).collect()));
    let bsrc = e.upload(&to_bytes((0..64).map(|t| bf(2.0 * t as f32)).collect()));
    e.ok(
        "bulk_reduce_add",
        lin(1, 64),
        &[p64(fout), p64(bout), p64(bsrc)],
    );
    let want: Vec<f32> = (0..64).map(|t| 1000.0 + 3.0 * t as f32 + 0.5).collect();
    assert_eq!(e.f32s(fout, 64), want);
    let got: Vec<u16> = e
        .bytes(bout, 128)
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let want: Vec<u16> = (0..64).map(|t| bf(3.0 * t as f32)).collect();
    assert_eq!(got, want);
}
