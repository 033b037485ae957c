//! Hand-derived counts (issue 14 acceptance): global sectors per request, shared wavefronts and
//! bank conflicts, tensor instructions and FLOPs, and the JSON keys.

use gpu_model::counters::{
    shared_wavefronts, Access, BlockAccumulator, LaunchAccumulator, LaunchInfo, TensorDtype,
};

fn lanes(f: impl Fn(u64) -> u64) -> Vec<Option<u64>> {
    (0..32).map(|l| Some(f(l))).collect()
}

fn sectors_per_request(width: u32, addrs: &[Option<u64>]) -> f64 {
    let mut b = BlockAccumulator::new();
    b.on_global_access(Access::Load, width, addrs);
    b.c.global_ld_sectors as f64 / b.c.global_ld_requests as f64
}

#[test]
fn global_sectors_per_request() {
    let base = 1 << 20;
    // Coalesced 32-bit: 128 B = 4 sectors.
    assert_eq!(sectors_per_request(4, &lanes(|l| base + 4 * l)), 4.0);
    // Coalesced 128-bit: 512 B = 16 sectors.
    assert_eq!(sectors_per_request(16, &lanes(|l| base + 16 * l)), 16.0);
    // A 32-float stride: every lane its own sector.
    assert_eq!(sectors_per_request(4, &lanes(|l| base + 128 * l)), 32.0);
    // Broadcast: one sector.
    assert_eq!(sectors_per_request(4, &lanes(|_| base + 8)), 1.0);
    // Misaligned by 4 bytes: the 128 B straddle 5 sectors.
    assert_eq!(sectors_per_request(4, &lanes(|l| base + 4 + 4 * l)), 5.0);
}

#[test]
fn requests_need_an_active_lane() {
    let mut b = BlockAccumulator::new();
    b.on_global_access(Access::Load, 4, &[None; 32]);
    assert_eq!(b.c.global_ld_requests, 0);
    let mut half = vec![None; 32];
    for (l, a) in half.iter_mut().enumerate().take(16) {
        *a = Some(4 * l as u64);
    }
    b.on_global_access(Access::Store, 4, &half);
    assert_eq!((b.c.global_st_requests, b.c.global_st_sectors), (1, 2));
}

#[test]
fn shared_wavefronts_by_stride() {
    let wf = |width: u32, f: &dyn Fn(u64) -> u64| shared_wavefronts(width, &lanes(f)).0;
    assert_eq!(wf(4, &|l| 4 * l), 1, "stride 1");
    assert_eq!(wf(4, &|l| 8 * l), 2, "stride 2");
    assert_eq!(wf(4, &|l| 4 * 32 * l), 32, "stride 32");
    assert_eq!(wf(4, &|l| 4 * 33 * l), 1, "stride 33");
    assert_eq!(wf(4, &|_| 64), 1, "broadcast");
    assert_eq!(
        wf(4, &|l| 4 * (l % 2)),
        1,
        "two words in two banks, rest broadcast"
    );
    assert_eq!(wf(16, &|l| 16 * l), 4, "conflict-free 128-bit");
    assert_eq!(wf(8, &|l| 8 * l), 2, "conflict-free 64-bit");
    // 64-bit at a 16-byte stride: in each half-warp lanes i and i+8 share banks.
    assert_eq!(wf(8, &|l| 16 * l), 4);
    // 128-bit at a 32-byte stride: 2-way in each quarter-warp.
    assert_eq!(wf(16, &|l| 32 * l), 8);
}

#[test]
fn bank_conflicts_are_wavefronts_beyond_conflict_free() {
    let mut b = BlockAccumulator::new();
    b.on_shared_access(Access::Load, 4, &lanes(|l| 4 * 32 * l)); // 32 wavefronts, 31 conflicts
    b.on_shared_access(Access::Load, 16, &lanes(|l| 16 * l)); // 4 wavefronts, 0 conflicts
    b.on_shared_access(Access::Store, 4, &lanes(|l| 8 * l)); // 2 wavefronts, 1 conflict
    assert_eq!(b.c.shared_ld_inst, 2);
    assert_eq!(b.c.shared_ld_wavefronts, 36);
    assert_eq!(b.c.shared_ld_bank_conflicts, 31);
    assert_eq!(
        (
            b.c.shared_st_inst,
            b.c.shared_st_wavefronts,
            b.c.shared_st_bank_conflicts
        ),
        (1, 2, 1)
    );
}

#[test]
fn ldmatrix_wavefronts() {
    let mut b = BlockAccumulator::new();
    // x4, 32 rows of 16 B packed: 4 matrices, one wavefront each.
    b.on_ldmatrix(&lanes(|l| 16 * l));
    assert_eq!((b.c.ldsm_inst, b.c.ldsm_wavefronts), (1, 4));
    // x4 with 128-B row pitch (no swizzle): the 8 rows of a matrix share banks 0-3.
    b.on_ldmatrix(&lanes(|l| 128 * l));
    assert_eq!(b.c.ldsm_wavefronts, 4 + 32);
    // x1: only lanes 0-7 supply addresses.
    let x1: Vec<Option<u64>> = (0..32).map(|l| (l < 8).then_some(16 * l)).collect();
    b.on_ldmatrix(&x1);
    assert_eq!(b.c.ldsm_wavefronts, 4 + 32 + 1);
}

#[test]
fn mma_sync_m16n8k16_is_one_tensor_instruction_of_4096_flops() {
    let mut b = BlockAccumulator::new();
    b.on_warp_inst(32);
    b.on_mma(16, 8, 16, TensorDtype::Bf16);
    assert_eq!(b.c.tensor_inst, 1);
    assert_eq!(b.c.flop_tensor, 4096);
    assert_eq!(b.c.flop_tensor_by_dtype["bf16"], 4096);
    // wgmma m64n256k16: 4 warps, 4 tensor instructions, 2*64*256*16 FLOPs.
    for _ in 0..4 {
        b.on_wgmma_warp(64, 256, 16, TensorDtype::F16);
    }
    assert_eq!(b.c.tensor_inst, 5);
    assert_eq!(b.c.flop_tensor_by_dtype["f16"], 2 * 64 * 256 * 16);
}

#[test]
fn atomics_and_cp_async_count_under_their_own_metrics() {
    let mut b = BlockAccumulator::new();
    b.on_global_access(Access::Atomic, 4, &lanes(|_| 256));
    b.on_cp_async(16, &lanes(|l| 4096 + 16 * l));
    b.on_shared_access(Access::Atomic, 4, &lanes(|l| 4 * l));
    assert_eq!((b.c.global_atom_requests, b.c.global_atom_sectors), (1, 1));
    assert_eq!(
        (b.c.global_ldgsts_requests, b.c.global_ldgsts_sectors),
        (1, 16)
    );
    assert_eq!((b.c.global_ld_requests, b.c.shared_st_inst), (0, 0));
    assert_eq!((b.c.shared_atom_inst, b.c.shared_atom_wavefronts), (1, 1));
}

#[test]
fn launch_totals_footprint_and_waits() {
    let mut l = LaunchAccumulator::new();
    for blk in 0..2u64 {
        let mut b = BlockAccumulator::new();
        // Both blocks read the same 128 B and write their own 128 B.
        b.on_warp_inst(32);
        b.on_global_access(Access::Load, 4, &lanes(|i| 4 * i));
        b.on_warp_inst(32);
        b.on_global_access(Access::Store, 4, &lanes(|i| 4096 + 128 * blk + 4 * i));
        b.on_mem_wait(0, 128, 1);
        b.on_fp32(64);
        l.add_block(b);
    }
    let c = l.finish(&LaunchInfo::new("k", [2, 1, 1], [32, 1, 1]));
    assert_eq!(
        (c.blocks_total, c.blocks_executed, c.sampled),
        (2, 2, false)
    );
    assert_eq!((c.inst_executed, c.thread_inst_executed), (4, 128));
    assert_eq!(c.unique_read_sectors, 4);
    assert_eq!(c.block_unique_read_sectors, 8);
    assert_eq!(c.unique_write_sectors, 8);
    assert_eq!(
        (c.mem_round_trips, c.mem_wait_bytes, c.waiting_warps),
        (2.0, 256.0, 2)
    );
    assert_eq!(c.flop_fp32, 128);
}

#[test]
fn json_keys_are_nsight_metric_names() {
    let c = gpu_model::Counters {
        kernel: "k".into(),
        ..Default::default()
    };
    let v: serde_json::Value = serde_json::to_value(&c).unwrap();
    let obj = v.as_object().unwrap();
    for key in [
        "kernel",
        "launch__grid_size",
        "launch__block_size",
        "launch__registers_per_thread",
        "launch__shared_mem_per_block_static",
        "launch__shared_mem_per_block_dynamic",
        "blocks_total",
        "blocks_executed",
        "smsp__inst_executed.sum",
        "smsp__thread_inst_executed.sum",
        "l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum",
        "l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum",
        "l1tex__t_requests_pipe_lsu_mem_global_op_st.sum",
        "l1tex__t_sectors_pipe_lsu_mem_global_op_st.sum",
        "smsp__inst_executed_op_shared_ld.sum",
        "smsp__inst_executed_op_shared_st.sum",
        "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum",
        "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum",
        "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum",
        "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum",
        "sm__inst_executed_pipe_tensor.sum",
        "flop_tensor",
        "flop_fp32",
        "dram__bytes_read.sum",
        "dram__bytes_write.sum",
        "predicted_us",
        "bound",
    ] {
        assert!(obj.contains_key(key), "missing key {key}");
    }
    for k in obj.keys() {
        let nsight = k.contains("__") && !k.starts_with("emu__");
        let plain = [
            "kernel",
            "blocks_total",
            "blocks_executed",
            "flop_tensor",
            "flop_fp32",
            "predicted_us",
            "bound",
        ];
        assert!(
            nsight || k.starts_with("emu__") || plain.contains(&k.as_str()),
            "unexpected key {k}"
        );
    }
    let back: gpu_model::Counters = serde_json::from_value(v).unwrap();
    assert_eq!(back, c);
}

#[test]
fn registers_from_the_committed_ptxas_report() {
    let rep = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/calibration/reports/sgemm_a6000.txt"
    ))
    .unwrap();
    assert_eq!(
        gpu_model::counters::registers_from_report(&rep, "sgemm5_2d", "sm_80"),
        Some(101)
    );
    assert_eq!(
        gpu_model::counters::registers_from_report(&rep, "sgemm5_2d", "sm_86"),
        None
    );
    assert_eq!(
        gpu_model::counters::registers_from_report(&rep, "nope", "sm_80"),
        None
    );
}

#[test]
fn masked_variants_match_option_lanes() {
    let addrs: [u64; 32] = std::array::from_fn(|l| 4 * 33 * l as u64);
    let mut a = BlockAccumulator::new();
    let mut b = BlockAccumulator::new();
    a.on_shared_access_masked(Access::Load, 4, &addrs, 0x0000_ffff);
    a.on_global_access_masked(Access::Store, 4, &addrs, 0x8000_0001);
    a.on_global_access_masked(Access::Load, 4, &addrs, 0);
    let opt = |m: u32| -> Vec<Option<u64>> {
        (0..32)
            .map(|l| (m >> l & 1 == 1).then_some(addrs[l]))
            .collect()
    };
    b.on_shared_access(Access::Load, 4, &opt(0x0000_ffff));
    b.on_global_access(Access::Store, 4, &opt(0x8000_0001));
    assert_eq!(a.c, b.c);
    assert_eq!(
        (
            a.c.global_st_requests,
            a.c.global_st_sectors,
            a.c.global_ld_requests
        ),
        (1, 2, 0)
    );
}
