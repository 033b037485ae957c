//! Hazard detection: for each hazard class a deliberately broken kernel (tests/ptx/hazards.ptx)
//! must be flagged with the right `FaultKind` at the marked PTX line, and its fixed twin must
//! run clean with the right results.
#![allow(clippy::needless_range_loop)]
mod common;
use common::*;
use ptx_emu::*;

fn p64(a: u64) -> Vec<u8> {
    a.to_le_bytes().to_vec()
}

struct H {
    src: String,
    m: Module,
}

fn h() -> H {
    let src = ptx("hazards.ptx");
    let m = Module::parse(&src).unwrap();
    H { src, m }
}

impl H {
    fn flag_line(&self, name: &str) -> usize {
        line_of(&self.src, &format!("// FLAG:{name}"))
    }
    fn expect(
        &self,
        kernel: &str,
        c: LaunchConfig,
        params: &[Vec<u8>],
        mem: &mut Memory,
        kind: FaultKind,
        flag: &str,
    ) -> Fault {
        let f = run(&self.m, kernel, c, params, mem).expect_err(&format!("{kernel} must fault"));
        println!("{f}");
        assert_eq!(f.kind, kind, "{kernel}: {f}");
        assert_eq!(f.ptx_line, self.flag_line(flag), "{kernel}: {f}");
        assert_eq!(f.kernel, kernel);
        assert!(!f.instruction.is_empty() && !f.detail.is_empty(), "{f}");
        let text = f.to_string();
        assert!(
            text.contains(&format!("PTX line {}", f.ptx_line)) && text.contains(kernel),
            "{text}"
        );
        f
    }
}

fn out_buf(mem: &mut Memory, bytes: usize) -> u64 {
    mem.alloc(bytes).unwrap()
}

#[test]
fn shared_race_across_warps() {
    let h = h();
    let mut mem = Memory::new();
    let o = out_buf(&mut mem, 64 * 4);
    let f = run(
        &h.m,
        "race_cross_warp_broken",
        cfg([1, 1, 1], [64, 1, 1], 0),
        &[p64(o)],
        &mut mem,
    )
    .unwrap_err();
    assert_eq!(f.kind, FaultKind::SharedRace, "{f}");
    // Depending on the schedule the read (RAW) or the other warp's later write (WAR) trips first.
    let lines = [
        h.flag_line("race_cross_warp_read"),
        h.flag_line("race_cross_warp_write"),
    ];
    assert!(lines.contains(&f.ptx_line), "{f}");
    assert!(
        f.detail.contains("warp"),
        "detail names the other thread: {f}"
    );
    run(
        &h.m,
        "race_cross_warp_fixed",
        cfg([1, 1, 1], [64, 1, 1], 0),
        &[p64(o)],
        &mut mem,
    )
    .unwrap();
    let out = bytes_f32(&download(&mem, o, 64 * 4));
    for t in 0..64 {
        assert_eq!(out[t], ((t + 32) % 64) as f32);
    }
}

#[test]
fn shared_race_inside_a_warp_needs_syncwarp() {
    let h = h();
    let mut mem = Memory::new();
    let o = out_buf(&mut mem, 32 * 4);
    let f = h.expect(
        "race_intra_warp_broken",
        cfg([1, 1, 1], [32, 1, 1], 0),
        &[p64(o)],
        &mut mem,
        FaultKind::SharedRace,
        "race_intra_warp_read",
    );
    assert!(f.detail.contains("read-after-write"), "{f}");
    run(
        &h.m,
        "race_intra_warp_fixed",
        cfg([1, 1, 1], [32, 1, 1], 0),
        &[p64(o)],
        &mut mem,
    )
    .unwrap();
    let out = bytes_u32(&download(&mem, o, 32 * 4));
    for l in 0..32u32 {
        assert_eq!(out[l as usize], (l ^ 1) * 3);
    }
}

#[test]
fn shared_write_write_race() {
    let h = h();
    let mut mem = Memory::new();
    let o = out_buf(&mut mem, 4);
    let f = h.expect(
        "race_waw_broken",
        cfg([1, 1, 1], [64, 1, 1], 0),
        &[p64(o)],
        &mut mem,
        FaultKind::SharedRace,
        "race_waw",
    );
    assert!(f.detail.contains("write-after-write"), "{f}");
    run(
        &h.m,
        "race_waw_fixed",
        cfg([1, 1, 1], [64, 1, 1], 0),
        &[p64(o)],
        &mut mem,
    )
    .unwrap();
    assert_eq!(bytes_u32(&download(&mem, o, 4))[0], 77);
}

#[test]
fn barrier_divergence() {
    let h = h();
    let mut mem = Memory::new();
    let o = out_buf(&mut mem, 64 * 4);
    let f = run(
        &h.m,
        "barrier_divergence_broken",
        cfg([1, 1, 1], [64, 1, 1], 0),
        &[p64(o)],
        &mut mem,
    )
    .unwrap_err();
    assert_eq!(f.kind, FaultKind::BarrierDivergence, "{f}");
    let lines = [h.flag_line("barrier_low"), h.flag_line("barrier_high")];
    assert!(lines.contains(&f.ptx_line), "{f}");
    assert!(f.detail.contains("different barriers"), "{f}");
    run(
        &h.m,
        "barrier_divergence_fixed",
        cfg([1, 1, 1], [64, 1, 1], 0),
        &[p64(o)],
        &mut mem,
    )
    .unwrap();
    assert_eq!(
        bytes_u32(&download(&mem, o, 64 * 4)),
        (0..64).collect::<Vec<u32>>()
    );
}

/// A barrier reached by only part of a warp, because the other lanes returned or branched
/// around it, is a divergent barrier (launch failure, 719) naming the barrier line, a waiting
/// thread and where the missing lanes went; whole warps exiting before the barrier are fine.
#[test]
fn divergent_barrier_partial_warp() {
    let h = h();
    let mut mem = Memory::new();
    let o = out_buf(&mut mem, 64 * 4);
    let f = h.expect(
        "barrier_partial_exit_broken",
        cfg([1, 1, 1], [64, 1, 1], 0),
        &[p64(o)],
        &mut mem,
        FaultKind::BarrierDivergence,
        "partial_exit_bar",
    );
    assert_eq!(f.kind.cuda_error_code(), 719);
    assert!(f.detail.contains("divergent barrier"), "{f}");
    assert!(
        f.detail.contains("0xffff0000"),
        "names the exited lanes: {f}"
    );
    assert!(
        f.detail
            .contains(&format!("PTX line {}", h.flag_line("partial_exit_ret"))),
        "names where they exited: {f}"
    );
    assert!(f.thread[0] % 32 < 16, "a waiting thread: {f}");

    let f = h.expect(
        "barrier_branch_around_broken",
        cfg([1, 1, 1], [64, 1, 1], 0),
        &[p64(o)],
        &mut mem,
        FaultKind::BarrierDivergence,
        "branch_around_bar",
    );
    assert!(f.detail.contains("divergent barrier"), "{f}");
    assert!(
        f.detail.contains("0x0000ffff"),
        "names the lanes that went around: {f}"
    );

    for (threads, cut) in [(64u32, 32u32), (48, 48), (96, 64)] {
        let o = out_buf(&mut mem, threads as usize * 4);
        run(
            &h.m,
            "barrier_whole_warp_exit_fixed",
            cfg([1, 1, 1], [threads, 1, 1], 0),
            &[p64(o), cut.to_le_bytes().to_vec()],
            &mut mem,
        )
        .unwrap_or_else(|f| panic!("{threads} threads, cut {cut}: {f}"));
        let got = bytes_u32(&download(&mem, o, threads as usize * 4));
        let want: Vec<u32> = (0..threads).map(|t| if t < cut { t } else { 0 }).collect();
        assert_eq!(got, want);
    }
}

#[test]
fn out_of_bounds_global() {
    let h = h();
    let mut mem = Memory::new();
    let n = 100u32;
    let o = out_buf(&mut mem, n as usize * 4);
    let f = h.expect(
        "oob_global_broken",
        cfg([1, 1, 1], [128, 1, 1], 0),
        &[p64(o), n.to_le_bytes().to_vec()],
        &mut mem,
        FaultKind::OutOfBounds,
        "oob_global",
    );
    assert_eq!(f.address, Some(o + 400), "{f}");
    assert_eq!(f.thread, [100, 0, 0], "{f}");
    assert!(f.detail.contains("outside every live allocation"), "{f}");
    assert_eq!(f.kind.cuda_error_code(), 700);
    run(
        &h.m,
        "oob_global_fixed",
        cfg([1, 1, 1], [128, 1, 1], 0),
        &[p64(o), n.to_le_bytes().to_vec()],
        &mut mem,
    )
    .unwrap();
    assert_eq!(
        bytes_u32(&download(&mem, o, n as usize * 4)),
        (0..n).collect::<Vec<u32>>()
    );
    // use after free is out of bounds too
    mem.free(o).unwrap();
    let f = run(
        &h.m,
        "oob_global_fixed",
        cfg([1, 1, 1], [128, 1, 1], 0),
        &[p64(o), n.to_le_bytes().to_vec()],
        &mut mem,
    )
    .unwrap_err();
    assert_eq!(f.kind, FaultKind::OutOfBounds, "{f}");
}

#[test]
fn out_of_bounds_shared() {
    let h = h();
    let mut mem = Memory::new();
    let o = out_buf(&mut mem, 4);
    let f = h.expect(
        "oob_shared_broken",
        cfg([1, 1, 1], [32, 1, 1], 0),
        &[p64(o)],
        &mut mem,
        FaultKind::OutOfBounds,
        "oob_shared",
    );
    assert_eq!(f.thread, [16, 0, 0], "{f}");
    assert!(f.detail.contains("64 bytes of shared memory"), "{f}");
    run(
        &h.m,
        "oob_shared_fixed",
        cfg([1, 1, 1], [32, 1, 1], 0),
        &[p64(o)],
        &mut mem,
    )
    .unwrap();
}

#[test]
fn out_of_bounds_local() {
    let h = h();
    let mut mem = Memory::new();
    let o = out_buf(&mut mem, 32 * 4);
    let f = h.expect(
        "oob_local_broken",
        cfg([1, 1, 1], [32, 1, 1], 0),
        &[p64(o)],
        &mut mem,
        FaultKind::OutOfBounds,
        "oob_local",
    );
    assert_eq!(f.thread, [4, 0, 0], "{f}");
    run(
        &h.m,
        "oob_local_fixed",
        cfg([1, 1, 1], [32, 1, 1], 0),
        &[p64(o)],
        &mut mem,
    )
    .unwrap();
    assert_eq!(
        bytes_u32(&download(&mem, o, 32 * 4)),
        (0..32).collect::<Vec<u32>>()
    );
}

#[test]
fn misaligned_vector_load() {
    let h = h();
    let mut mem = Memory::new();
    let x = rand_f32(32 * 4 + 4, 3);
    let i = upload(&mut mem, &f32_bytes(&x));
    let o = out_buf(&mut mem, 32 * 4);
    let f = h.expect(
        "misaligned_broken",
        cfg([1, 1, 1], [32, 1, 1], 0),
        &[p64(i), p64(o)],
        &mut mem,
        FaultKind::Misaligned,
        "misaligned",
    );
    assert_eq!(f.address, Some(i + 8), "{f}");
    assert_eq!(f.kind.cuda_error_code(), 700);
    run(
        &h.m,
        "misaligned_fixed",
        cfg([1, 1, 1], [32, 1, 1], 0),
        &[p64(i), p64(o)],
        &mut mem,
    )
    .unwrap();
    let out = bytes_f32(&download(&mem, o, 32 * 4));
    for t in 0..32 {
        assert_eq!(out[t], x[t * 4 + 2] + x[t * 4 + 5]);
    }
}

#[test]
fn uninitialised_shared_read() {
    let h = h();
    let mut mem = Memory::new();
    let x = rand_f32(32, 4);
    let i = upload(&mut mem, &f32_bytes(&x));
    let o = out_buf(&mut mem, 32 * 4);
    let f = h.expect(
        "uninit_shared_broken",
        cfg([1, 1, 1], [32, 1, 1], 0),
        &[p64(i), p64(o)],
        &mut mem,
        FaultKind::UninitSharedRead,
        "uninit",
    );
    assert_eq!(f.address, Some(0));
    assert_eq!(f.kind.cuda_error_code(), 719);
    // The detector can be switched off.
    let opts = LaunchOptions {
        detect_uninit_shared: false,
        ..LaunchOptions::default()
    };
    launch(
        &h.m,
        "uninit_shared_broken",
        &cfg([1, 1, 1], [32, 1, 1], 0),
        &[&i.to_le_bytes(), &o.to_le_bytes()],
        &mut mem,
        &opts,
    )
    .unwrap();
    run(
        &h.m,
        "uninit_shared_fixed",
        cfg([1, 1, 1], [32, 1, 1], 0),
        &[p64(i), p64(o)],
        &mut mem,
    )
    .unwrap();
    assert_eq!(bytes_f32(&download(&mem, o, 32 * 4)), x);
}

#[test]
fn cp_async_data_lands_only_at_wait() {
    let h = h();
    let mut mem = Memory::new();
    let x = rand_f32(32, 5);
    let i = upload(&mut mem, &f32_bytes(&x));
    let o = out_buf(&mut mem, 32 * 8);
    let f = h.expect(
        "cp_async_early_read_broken",
        cfg([1, 1, 1], [32, 1, 1], 0),
        &[p64(i), p64(o)],
        &mut mem,
        FaultKind::SharedRace,
        "cp_async_early",
    );
    assert!(f.detail.contains("cp.async"), "{f}");
    // With the race detector off the early read sees the old contents (7.0), the late one the copy.
    let opts = LaunchOptions {
        detect_races: false,
        ..LaunchOptions::default()
    };
    launch(
        &h.m,
        "cp_async_early_read_broken",
        &cfg([1, 1, 1], [32, 1, 1], 0),
        &[&i.to_le_bytes(), &o.to_le_bytes()],
        &mut mem,
        &opts,
    )
    .unwrap();
    let out = bytes_f32(&download(&mem, o, 32 * 8));
    for t in 0..32 {
        assert_eq!(out[2 * t], 7.0, "before the wait: old contents");
        assert_eq!(out[2 * t + 1], x[t], "after the wait: copied data");
    }
    run(
        &h.m,
        "cp_async_early_read_fixed",
        cfg([1, 1, 1], [32, 1, 1], 0),
        &[p64(i), p64(o)],
        &mut mem,
    )
    .unwrap();
    let out = bytes_f32(&download(&mem, o, 32 * 8));
    for t in 0..32 {
        assert_eq!((out[2 * t], out[2 * t + 1]), (7.0, x[t]));
    }
}

#[test]
fn cp_async_wait_group_completes_only_older_groups() {
    let h = h();
    let mut mem = Memory::new();
    let x = rand_f32(32 * 8, 6);
    let i = upload(&mut mem, &f32_bytes(&x));
    let o = out_buf(&mut mem, 32 * 8);
    h.expect(
        "cp_async_groups_broken",
        cfg([1, 1, 1], [32, 1, 1], 0),
        &[p64(i), p64(o)],
        &mut mem,
        FaultKind::SharedRace,
        "cp_async_group",
    );
    run(
        &h.m,
        "cp_async_groups_fixed",
        cfg([1, 1, 1], [32, 1, 1], 0),
        &[p64(i), p64(o)],
        &mut mem,
    )
    .unwrap();
    let out = bytes_f32(&download(&mem, o, 32 * 8));
    for t in 0..32 {
        assert_eq!((out[2 * t], out[2 * t + 1]), (x[4 * t], x[128 + 4 * t]));
    }
}

#[test]
fn divergent_warp_collective() {
    let h = h();
    let mut mem = Memory::new();
    let o = out_buf(&mut mem, 32 * 4);
    let f = run(
        &h.m,
        "shfl_divergent_broken",
        cfg([1, 1, 1], [32, 1, 1], 0),
        &[p64(o)],
        &mut mem,
    )
    .unwrap_err();
    assert_eq!(f.kind, FaultKind::BarrierDivergence, "{f}");
    let shfl_low = h.flag_line("shfl_high") + 3;
    assert!(
        [h.flag_line("shfl_high"), shfl_low].contains(&f.ptx_line),
        "{f}"
    );
    run(
        &h.m,
        "shfl_divergent_fixed",
        cfg([1, 1, 1], [32, 1, 1], 0),
        &[p64(o)],
        &mut mem,
    )
    .unwrap();
    let out = bytes_u32(&download(&mem, o, 32 * 4));
    for l in 0..32u32 {
        assert_eq!(out[l as usize], if l < 16 { l ^ 2 } else { l ^ 1 });
    }
}

#[test]
fn unsupported_instruction_is_rejected_with_line() {
    let h = h();
    let mut mem = Memory::new();
    let o = out_buf(&mut mem, 4);
    let f = h.expect(
        "uses_unsupported",
        cfg([1, 1, 1], [32, 1, 1], 0),
        &[p64(o)],
        &mut mem,
        FaultKind::Unsupported,
        "unsupported",
    );
    assert!(f.detail.contains("mul24.lo.s32"), "{f}");
    assert!(f.instruction.starts_with("mul24.lo.s32"), "{f}");
    assert_eq!(h.m.unsupported("uses_unsupported").len(), 1);
    // unsupported modifier
    let src = h
        .src
        .replace("mul24.lo.s32 %r2, %r1, %r1;", "add.cc.u32 %r2, %r1, %r1;");
    let m = Module::parse(&src).unwrap();
    let f = launch(
        &m,
        "uses_unsupported",
        &cfg([1, 1, 1], [32, 1, 1], 0),
        &[&o.to_le_bytes()],
        &mut mem,
        &LaunchOptions::default(),
    )
    .unwrap_err();
    assert_eq!(f.kind, FaultKind::Unsupported);
    assert!(f.detail.contains("add.cc"), "{f}");
}

#[test]
fn parse_errors_name_line_and_token() {
    let src = ".version 8.4\n.target sm_80\n.address_size 64\n.visible .entry k()\n{\n\tmov.u32 %r1, ;\n}\n";
    match Module::parse(src) {
        Err(EmuError::Parse { line, token, .. }) => {
            assert_eq!(line, 6);
            assert_eq!(token, ";");
        }
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("must not parse"),
    }
    let src2 = ".version 8.4\n.target sm_80\n.visible .entry k()\n{\n\tbra $L_missing;\n}\n";
    let e = Module::parse(src2).err().expect("undefined label");
    assert!(e.to_string().contains("line 5"), "{e}");
}

#[test]
fn invalid_launch_parameters() {
    let h = h();
    let mut mem = Memory::new();
    let o = out_buf(&mut mem, 4);
    let f = launch(
        &h.m,
        "oob_global_fixed",
        &cfg([1, 1, 1], [32, 1, 1], 0),
        &[&o.to_le_bytes()],
        &mut mem,
        &LaunchOptions::default(),
    )
    .unwrap_err();
    assert_eq!(f.kind, FaultKind::InvalidParams);
    assert_eq!(f.kind.cuda_error_code(), 1);
    let f = launch(
        &h.m,
        "oob_global_fixed",
        &cfg([1, 1, 1], [2048, 1, 1], 0),
        &[&o.to_le_bytes(), &1u32.to_le_bytes()],
        &mut mem,
        &LaunchOptions::default(),
    )
    .unwrap_err();
    assert_eq!(f.kind, FaultKind::InvalidParams);
    let f = launch(
        &h.m,
        "nope",
        &cfg([1, 1, 1], [32, 1, 1], 0),
        &[],
        &mut mem,
        &LaunchOptions::default(),
    )
    .unwrap_err();
    assert_eq!(f.kind, FaultKind::InvalidParams);
}

#[test]
fn collectives_after_partial_warp_exit() {
    let h = h();
    let mut mem = Memory::new();
    let o = out_buf(&mut mem, 32 * 4);
    mem.memset_d32(o, 0xdead, 32).unwrap();
    run(
        &h.m,
        "shfl_after_exit_fixed",
        cfg([1, 1, 1], [32, 1, 1], 0),
        &[p64(o)],
        &mut mem,
    )
    .unwrap();
    let out = bytes_u32(&download(&mem, o, 32 * 4));
    for l in 0..32u32 {
        // ballot of %p1 (lane >= 20) over the live lanes is 0
        let want = if l < 20 { (l ^ 1) * 10 } else { 0xdead };
        assert_eq!(out[l as usize], want, "lane {l}");
    }
    let f = h.expect(
        "shfl_reads_exited_broken",
        cfg([1, 1, 1], [32, 1, 1], 0),
        &[p64(o)],
        &mut mem,
        FaultKind::BarrierDivergence,
        "shfl_exited",
    );
    assert!(f.detail.contains("does not execute"), "{f}");
}
