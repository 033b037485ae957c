//! Thread-block clusters of several blocks (tests/ptx/clusters.ptx): the `%cluster_*` special
//! registers, `mapa` and distributed shared memory (`ld/st/atom/red .shared::cluster`),
//! `barrier.cluster`, remote `mbarrier.arrive`, multicast TMA loads, and the cluster hazards
//! (a block exiting while another may still read its shared memory, a rank outside the cluster,
//! a deadlock across blocks, a multicast mask that misses a block). Every good launch goes
//! through `common::run_cluster`: 3 seeded schedules, cross-checked at `PTX_EMU_CHECKS=fast`
//! and without the decoded fast path.
#![allow(clippy::result_large_err)]
mod common;
use common::*;
use ptx_emu::tensor_map::TensorMap;
use ptx_emu::*;

fn src() -> String {
    ptx("clusters.ptx")
}

/// The ring over clusters of `cl` blocks on a grid of `grid` blocks of `block` threads.
fn ring(grid: [u32; 2], cl: [u32; 2], block: u32) {
    let mut e = Emu::new("clusters.ptx");
    let nblocks = grid[0] * grid[1];
    let out = e.alloc((nblocks * block * 48) as usize);
    let c = cfg([grid[0], grid[1], 1], [block, 1, 1], 0);
    e.try_cluster("cluster_ring", c, [cl[0], cl[1], 1], &[p64(out), p32(1)])
        .unwrap_or_else(|f| panic!("cluster {cl:?}: {f}"));
    let got = e.u32s(out, (nblocks * block * 12) as usize);
    let nrank = cl[0] * cl[1];
    for by in 0..grid[1] {
        for bx in 0..grid[0] {
            let (cx, cy) = (bx % cl[0], by % cl[1]);
            let rank = cx + cy * cl[0];
            let (idx, idy) = (bx / cl[0], by / cl[1]);
            // the next rank's block in the same cluster
            let next = (rank + 1) % nrank;
            let (nx, ny) = (idx * cl[0] + next % cl[0], idy * cl[1] + next / cl[0]);
            let explicit = (nrank > 1) as u32;
            for t in 0..block {
                let b = by * grid[0] + bx;
                let i = ((b * block + t) * 12) as usize;
                let want = [
                    rank,
                    nrank,
                    idx,
                    idy,
                    grid[0] / cl[0],
                    grid[1] / cl[1],
                    cx,
                    cy,
                    cl[0],
                    cl[1],
                    explicit,
                    (ny * grid[0] + nx) * 1000 + t,
                ];
                assert_eq!(
                    &got[i..i + 12],
                    &want,
                    "cluster {cl:?} block ({bx},{by}) thread {t}"
                );
            }
        }
    }
}

#[test]
fn ring_through_distributed_shared_memory() {
    ring([4, 2], [2, 1], 64);
    ring([4, 2], [2, 2], 96);
    ring([8, 1], [8, 1], 32);
    ring([4, 4], [4, 4], 32);
    // no cluster shape: implicit clusters of one block read their own shared memory
    ring([3, 1], [1, 1], 64);
}

#[test]
fn exit_without_a_cluster_barrier_is_flagged() {
    let mut e = Emu::new("clusters.ptx");
    let out = e.alloc(4 * 64 * 48);
    let c = cfg([4, 1, 1], [64, 1, 1], 0);
    let f = e
        .try_cluster("cluster_ring", c, [2, 1, 1], &[p64(out), p32(0)])
        .expect_err("no barrier before exit must fault");
    assert_eq!(f.kind, FaultKind::ClusterHazard, "{f}");
    assert_eq!(f.ptx_line, line_of(&src(), "// FLAG:ring_read"), "{f}");
    // the fixed twin (exitbar = 1) passes in `ring`; a single-block cluster needs no barrier
    e.try_cluster("cluster_ring", c, [1, 1, 1], &[p64(out), p32(0)])
        .unwrap();
}

#[test]
fn cluster_shape_is_checked_at_launch() {
    let mut e = Emu::new("clusters.ptx");
    let out = e.alloc(32 * 32 * 48);
    for (grid, cl) in [(32u32, 32u32), (6, 4), (4, 0)] {
        let c = cfg([grid, 1, 1], [32, 1, 1], 0);
        let f = e
            .try_cluster("cluster_ring", c, [cl, 1, 1], &[p64(out), p32(1)])
            .expect_err("bad cluster shape");
        assert_eq!(f.kind, FaultKind::InvalidParams, "{f}");
    }
    // 16 blocks is the non-portable maximum
    let c = cfg([32, 1, 1], [32, 1, 1], 0);
    e.try_cluster("cluster_ring", c, [16, 1, 1], &[p64(out), p32(1)])
        .unwrap();
}

#[test]
fn atomics_on_another_blocks_shared_memory() {
    for n in [2u32, 4] {
        let mut e = Emu::new("clusters.ptx");
        let nt = n * 64;
        let out = e.alloc((nt as usize + 2) * 4);
        let c = cfg([n, 1, 1], [64, 1, 1], 0);
        e.try_cluster("dsmem_atomics", c, [n, 1, 1], &[p64(out)])
            .unwrap_or_else(|f| panic!("{f}"));
        let got = e.u32s(out, nt as usize + 2);
        // the old values of the counter are 0..nt in some order
        let mut olds = got[..nt as usize].to_vec();
        olds.sort_unstable();
        assert_eq!(olds, (0..nt).collect::<Vec<_>>());
        assert_eq!(got[nt as usize], nt);
        // every block adds 0 + 1 + ... + 63 = 2016 (exact in f32 in any order)
        assert_eq!(f32::from_bits(got[nt as usize + 1]), (n * 2016) as f32);
    }
}

#[test]
fn producer_in_another_block_with_remote_arrivals() {
    let mut e = Emu::new("clusters.ptx");
    let out = e.alloc(128 * 8);
    let c = cfg([2, 1, 1], [128, 1, 1], 0);
    e.try_cluster("remote_producer", c, [2, 1, 1], &[p64(out), p32(0)])
        .unwrap_or_else(|f| panic!("{f}"));
    let got = e.u32s(out, 256);
    for t in 0..128u32 {
        assert_eq!(&got[2 * t as usize..2 * t as usize + 2], &[2 * t + 7, t]);
    }
    // broken: the producer waits on the cluster barrier the consumer reaches only after the
    // data, a deadlock across the two blocks, reported at the consumer's wait
    let f = e
        .try_cluster("remote_producer", c, [2, 1, 1], &[p64(out), p32(1)])
        .expect_err("deadlock");
    assert_eq!(f.kind, FaultKind::Deadlock, "{f}");
    assert_eq!(f.ptx_line, line_of(&src(), "// FLAG:consumer_wait"), "{f}");
    assert_eq!(f.block, [0, 0, 0], "{f}");
}

#[test]
fn multicast_tma_lands_in_every_masked_block() {
    let mut e = Emu::new("clusters.ptx");
    // u32 tensor 40 x 20, value 1000 y + x; box 16 x 8 at (30, 15): the parts past x = 40 and
    // y = 20 are zero-filled
    let (w, h) = (40u32, 20u32);
    let vals: Vec<u32> = (0..w * h).map(|i| (i / w) * 1000 + i % w).collect();
    let ga = e.up_u32(&vals);
    let tm = TensorMap::encode_tiled(
        2,
        2,
        ga,
        &[w as u64, h as u64],
        &[w as u64 * 4],
        &[16, 8],
        &[1, 1],
        0,
        0,
        0,
        0,
    )
    .unwrap();
    let bytes = tm.box_bytes();
    assert_eq!(bytes, 16 * 8 * 4);
    let want: Vec<u32> = (0..8u32)
        .flat_map(|j| {
            (0..16u32).map(move |i| {
                let (x, y) = (30 + i, 15 + j);
                if x < w && y < h {
                    y * 1000 + x
                } else {
                    0
                }
            })
        })
        .collect();
    let params = |out: u64, mask: u16| {
        vec![
            tm.to_bytes().to_vec(),
            p64(out),
            p32(30),
            p32(15),
            p32(bytes as i32),
            mask.to_le_bytes().to_vec(),
        ]
    };
    for n in [2u32, 4] {
        let out = e.alloc(bytes * n as usize);
        let c = cfg([2 * n, 1, 1], [32, 1, 1], 0);
        let all = ((1u32 << n) - 1) as u16;
        e.try_cluster("cluster_tma_multicast", c, [n, 1, 1], &params(out, all))
            .unwrap_or_else(|f| panic!("{f}"));
        let got = e.u32s(out, bytes / 4 * n as usize);
        for r in 0..n as usize {
            assert_eq!(&got[r * 128..(r + 1) * 128], &want[..], "rank {r}");
        }
        // a mask without the last rank: its announced bytes never arrive
        let f = e
            .try_cluster(
                "cluster_tma_multicast",
                c,
                [n, 1, 1],
                &params(out, all >> 1),
            )
            .expect_err("missing rank");
        assert_eq!(f.kind, FaultKind::TxCountMismatch, "{f}");
        // a rank the cluster does not have
        let f = e
            .try_cluster("cluster_tma_multicast", c, [n, 1, 1], &params(out, all + 1))
            .expect_err("rank outside the cluster");
        assert_eq!(f.kind, FaultKind::OutOfBounds, "{f}");
        assert_eq!(
            f.ptx_line,
            line_of(&src(), "// FLAG:cluster_multicast"),
            "{f}"
        );
    }
}

#[test]
fn dsmem_addresses_outside_the_cluster_or_the_block() {
    let mut e = Emu::new("clusters.ptx");
    let out = e.alloc(4);
    let c = cfg([2, 1, 1], [1, 1, 1], 0);
    let probe = |e: &mut Emu, rank: i32, off: i32| {
        e.try_cluster(
            "dsmem_probe",
            c,
            [2, 1, 1],
            &[p64(out), p32(rank), p32(off)],
        )
    };
    probe(&mut e, 1, 124).unwrap();
    probe(&mut e, 0, 0).unwrap();
    let f = probe(&mut e, 2, 0).expect_err("rank 2 of 2");
    assert_eq!(f.kind, FaultKind::OutOfBounds, "{f}");
    assert_eq!(f.ptx_line, line_of(&src(), "// FLAG:probe_mapa"), "{f}");
    let f = probe(&mut e, 1, 128).expect_err("past the 128 bytes of shared memory");
    assert_eq!(f.kind, FaultKind::OutOfBounds, "{f}");
    assert_eq!(f.ptx_line, line_of(&src(), "// FLAG:probe_load"), "{f}");
}

#[test]
fn cluster_directives() {
    let mut e = Emu::new("clusters.ptx");
    let out = e.alloc(4 * 4);
    let c = cfg([4, 1, 1], [32, 1, 1], 0);
    // .reqnctapercluster 2: a launch without a shape (or with the same) runs clusters of 2
    for cl in [[1, 1, 1], [2, 1, 1]] {
        e.try_cluster("req_cluster", c, cl, &[p64(out)]).unwrap();
        assert_eq!(e.u32s(out, 4), vec![200, 201, 200, 201]);
    }
    let f = e
        .try_cluster("req_cluster", c, [4, 1, 1], &[p64(out)])
        .expect_err("another shape");
    assert_eq!(f.kind, FaultKind::InvalidParams, "{f}");
    // .explicitcluster: a shape is required
    e.try_cluster("explicit_cluster", c, [4, 1, 1], &[p64(out)])
        .unwrap();
    assert_eq!(e.u32s(out, 4), vec![400, 401, 402, 403]);
    let f = e
        .try_cluster("explicit_cluster", c, [1, 1, 1], &[p64(out)])
        .expect_err("no shape");
    assert_eq!(f.kind, FaultKind::InvalidParams, "{f}");
}

/// A sampled profiling launch of a clustered kernel (here `.reqnctapercluster 2` launched
/// without a shape, as the CUDA backend launches `group_norm_sm90`) runs whole clusters
/// (`ceil(3 / 2)` = 2 clusters for a 3-block sample) and scales every count by
/// blocks_total / blocks_executed: the same instructions, global sectors and distinct DRAM read
/// sectors as running every block, each byte counted once.
#[test]
fn sampled_cluster_launch_runs_whole_clusters() {
    let counted = |sample: Option<u64>| {
        let mut e = Emu::new("clusters.ptx");
        let (grid, threads) = ([8u32, 2, 1], 32u32);
        let n = (grid[0] * grid[1] * threads) as usize;
        let input = e.alloc(n * 4);
        let out = e.alloc(n * 4);
        let c = cfg(grid, [threads, 1, 1], 0);
        let p = [p64(input), p64(out)];
        let params: Vec<&[u8]> = p.iter().map(Vec::as_slice).collect();
        let call = KernelCall {
            module: &e.m,
            kernel: "req_cluster_copy",
            cfg: &c,
            params: &params,
        };
        let (_, acc) = launch_counted_cluster(
            call,
            [1, 1, 1],
            &mut e.mem,
            &LaunchOptions::with_checks(Checks::Full),
            sample,
        )
        .unwrap_or_else(|f| panic!("{f}"));
        acc.finish(&gpu_model::LaunchInfo::new(
            "req_cluster_copy",
            c.grid,
            c.block,
        ))
    };
    let exact = counted(None);
    let sampled = counted(Some(3));
    assert_eq!((exact.blocks_executed, sampled.blocks_executed), (16, 4));
    assert_eq!(sampled.inst_executed, exact.inst_executed);
    assert_eq!(sampled.global_ld_sectors, exact.global_ld_sectors);
    assert_eq!(sampled.global_st_sectors, exact.global_st_sectors);
    assert_eq!(sampled.unique_read_sectors, exact.unique_read_sectors);
    assert!(sampled.sampled && !exact.sampled);
}
