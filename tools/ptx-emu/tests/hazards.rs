//! Hazard detection: for each hazard class a deliberately broken kernel (tests/ptx/hazards.ptx)
//! must be flagged with the right `FaultKind` at the marked PTX line, and its fixed twin must
//! run clean with the right results.
#![allow(clippy::needless_range_loop, clippy::result_large_err)]
mod common;
use common::*;
use ptx_emu::*;
use FaultKind as K;

/// hazards.ptx, its source (for the `// FLAG:` lines) and device memory. A broken kernel and
/// its fixed twin take the same launch: one block of `threads` threads and `params`.
struct H {
    src: String,
    e: Emu,
    threads: u32,
    params: Vec<Vec<u8>>,
}

fn h(threads: u32) -> H {
    let src = ptx("hazards.ptx");
    let m = Module::parse(&src).unwrap();
    H {
        src,
        e: Emu::from_module(m),
        threads,
        params: Vec::new(),
    }
}

impl H {
    fn flag_line(&self, name: &str) -> usize {
        line_of(&self.src, &format!("// FLAG:{name}"))
    }
    fn buf(&mut self, bytes: usize) -> u64 {
        self.e.alloc(bytes)
    }
    /// A buffer of `bytes` bytes, also appended to the kernels' parameters.
    fn arg_buf(&mut self, bytes: usize) -> u64 {
        let a = self.buf(bytes);
        self.params.push(p64(a));
        a
    }
    /// `x` uploaded, also appended to the kernels' parameters.
    fn arg_f32(&mut self, x: &[f32]) -> u64 {
        let a = self.e.up_f32(x);
        self.params.push(p64(a));
        a
    }
    /// `n` seeded values (`rand_f32`) uploaded, also appended to the kernels' parameters.
    fn arg_rand(&mut self, n: usize, seed: u64) -> Vec<f32> {
        let x = rand_f32(n, seed);
        self.arg_f32(&x);
        x
    }
    fn try_run(&mut self, kernel: &str) -> Result<LaunchStats, Fault> {
        self.e.try_run(kernel, lin(1, self.threads), &self.params)
    }
    fn ok(&mut self, kernel: &str) {
        let threads = self.threads;
        self.try_run(kernel)
            .unwrap_or_else(|f| panic!("{kernel}, {threads} threads: {f}"));
    }
    /// `kernel` must fault with `kind`, anywhere.
    fn fault(&mut self, kernel: &str, kind: K) -> Fault {
        let f = self
            .try_run(kernel)
            .expect_err(&format!("{kernel} must fault"));
        println!("{f}");
        assert_eq!(f.kind, kind, "{kernel}: {f}");
        f
    }
    /// `kernel` must fault with `kind` at the line marked `// FLAG:<flag>`, and say so.
    fn expect(&mut self, kernel: &str, kind: K, flag: &str) -> Fault {
        let f = self.fault(kernel, kind);
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
    /// [`Self::expect`], and the fault's detail must contain `detail`.
    fn expect_saying(&mut self, kernel: &str, kind: K, flag: &str, detail: &str) -> Fault {
        let f = self.expect(kernel, kind, flag);
        assert!(f.detail.contains(detail), "{f}");
        f
    }
    /// One launch with explicit options, straight through [`launch`].
    fn launch(&mut self, kernel: &str, opts: &LaunchOptions) -> Result<LaunchStats, Fault> {
        self.e
            .launch_with(kernel, lin(1, self.threads), &self.params, opts)
    }
}

#[test]
fn shared_race_across_warps() {
    let mut h = h(64);
    let o = h.arg_buf(64 * 4);
    let f = h.fault("race_cross_warp_broken", K::SharedRace);
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
    h.ok("race_cross_warp_fixed");
    let out = h.e.f32s(o, 64);
    for t in 0..64 {
        assert_eq!(out[t], ((t + 32) % 64) as f32);
    }
}

#[test]
fn shared_race_inside_a_warp_needs_syncwarp() {
    let mut h = h(32);
    let o = h.arg_buf(32 * 4);
    h.expect_saying(
        "race_intra_warp_broken",
        K::SharedRace,
        "race_intra_warp_read",
        "read-after-write",
    );
    h.ok("race_intra_warp_fixed");
    let out = h.e.u32s(o, 32);
    for l in 0..32u32 {
        assert_eq!(out[l as usize], (l ^ 1) * 3);
    }
}

#[test]
fn shared_write_write_race() {
    let mut h = h(64);
    let o = h.arg_buf(4);
    h.expect_saying(
        "race_waw_broken",
        K::SharedRace,
        "race_waw",
        "write-after-write",
    );
    h.ok("race_waw_fixed");
    assert_eq!(h.e.u32s(o, 1)[0], 77);
}

#[test]
fn barrier_divergence() {
    let mut h = h(64);
    let o = h.arg_buf(64 * 4);
    let f = h.fault("barrier_divergence_broken", K::BarrierDivergence);
    let lines = [h.flag_line("barrier_low"), h.flag_line("barrier_high")];
    assert!(lines.contains(&f.ptx_line), "{f}");
    assert!(f.detail.contains("different barriers"), "{f}");
    h.ok("barrier_divergence_fixed");
    assert_eq!(h.e.u32s(o, 64), (0..64).collect::<Vec<u32>>());
}

/// A barrier reached by only part of a warp, because the other lanes returned or branched
/// around it, is a divergent barrier (launch failure, 719) naming the barrier line, a waiting
/// thread and where the missing lanes went; whole warps exiting before the barrier are fine.
#[test]
fn divergent_barrier_partial_warp() {
    let mut h = h(64);
    h.arg_buf(64 * 4);
    let f = h.expect(
        "barrier_partial_exit_broken",
        K::BarrierDivergence,
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

    let f = h.expect_saying(
        "barrier_branch_around_broken",
        K::BarrierDivergence,
        "branch_around_bar",
        "divergent barrier",
    );
    assert!(
        f.detail.contains("0x0000ffff"),
        "names the lanes that went around: {f}"
    );

    for (threads, cut) in [(64u32, 32u32), (48, 48), (96, 64)] {
        h.threads = threads;
        h.params.clear();
        let o = h.arg_buf(threads as usize * 4);
        h.params.push(cut.to_le_bytes().to_vec());
        h.ok("barrier_whole_warp_exit_fixed");
        let want: Vec<u32> = (0..threads).map(|t| if t < cut { t } else { 0 }).collect();
        assert_eq!(h.e.u32s(o, threads as usize), want, "cut {cut}");
    }
}

#[test]
fn out_of_bounds_global() {
    let mut h = h(128);
    let n = 100u32;
    let o = h.arg_buf(n as usize * 4);
    h.params.push(n.to_le_bytes().to_vec());
    let f = h.expect("oob_global_broken", K::OutOfBounds, "oob_global");
    assert_eq!(f.address, Some(o + 400), "{f}");
    assert_eq!(f.thread, [100, 0, 0], "{f}");
    assert!(f.detail.contains("outside every live allocation"), "{f}");
    assert_eq!(f.kind.cuda_error_code(), 700);
    h.ok("oob_global_fixed");
    assert_eq!(h.e.u32s(o, n as usize), (0..n).collect::<Vec<u32>>());
    // use after free is out of bounds too
    h.e.mem.free(o).unwrap();
    h.fault("oob_global_fixed", K::OutOfBounds);
}

#[test]
fn out_of_bounds_shared() {
    let mut h = h(32);
    h.arg_buf(4);
    let f = h.expect("oob_shared_broken", K::OutOfBounds, "oob_shared");
    assert_eq!(f.thread, [16, 0, 0], "{f}");
    assert!(f.detail.contains("64 bytes of shared memory"), "{f}");
    h.ok("oob_shared_fixed");
}

#[test]
fn out_of_bounds_local() {
    let mut h = h(32);
    let o = h.arg_buf(32 * 4);
    let f = h.expect("oob_local_broken", K::OutOfBounds, "oob_local");
    assert_eq!(f.thread, [4, 0, 0], "{f}");
    h.ok("oob_local_fixed");
    assert_eq!(h.e.u32s(o, 32), (0..32).collect::<Vec<u32>>());
}

#[test]
fn misaligned_vector_load() {
    let mut h = h(32);
    let x = rand_f32(32 * 4 + 4, 3);
    let i = h.arg_f32(&x);
    let o = h.arg_buf(32 * 4);
    let f = h.expect("misaligned_broken", K::Misaligned, "misaligned");
    assert_eq!(f.address, Some(i + 8), "{f}");
    assert_eq!(f.kind.cuda_error_code(), 700);
    h.ok("misaligned_fixed");
    let out = h.e.f32s(o, 32);
    for t in 0..32 {
        assert_eq!(out[t], x[t * 4 + 2] + x[t * 4 + 5]);
    }
}

#[test]
fn uninitialised_shared_read() {
    let mut h = h(32);
    let x = h.arg_rand(32, 4);
    let o = h.arg_buf(32 * 4);
    let f = h.expect("uninit_shared_broken", K::UninitSharedRead, "uninit");
    assert_eq!(f.address, Some(0));
    assert_eq!(f.kind.cuda_error_code(), 719);
    // The detector can be switched off.
    let opts = LaunchOptions {
        detect_uninit_shared: false,
        ..LaunchOptions::default()
    };
    h.launch("uninit_shared_broken", &opts).unwrap();
    h.ok("uninit_shared_fixed");
    assert_eq!(h.e.f32s(o, 32), x);
}

#[test]
fn cp_async_data_lands_only_at_wait() {
    let mut h = h(32);
    let x = h.arg_rand(32, 5);
    let o = h.arg_buf(32 * 8);
    h.expect_saying(
        "cp_async_early_read_broken",
        K::SharedRace,
        "cp_async_early",
        "cp.async",
    );
    // With the race detector off the early read sees the old contents (7.0), the late one the copy.
    let opts = LaunchOptions {
        detect_races: false,
        ..LaunchOptions::default()
    };
    h.launch("cp_async_early_read_broken", &opts).unwrap();
    let out = h.e.f32s(o, 64);
    for t in 0..32 {
        assert_eq!(out[2 * t], 7.0, "before the wait: old contents");
        assert_eq!(out[2 * t + 1], x[t], "after the wait: copied data");
    }
    h.ok("cp_async_early_read_fixed");
    let out = h.e.f32s(o, 64);
    for t in 0..32 {
        assert_eq!((out[2 * t], out[2 * t + 1]), (7.0, x[t]));
    }
}

#[test]
fn cp_async_wait_group_completes_only_older_groups() {
    let mut h = h(32);
    let x = h.arg_rand(32 * 8, 6);
    let o = h.arg_buf(32 * 8);
    h.expect("cp_async_groups_broken", K::SharedRace, "cp_async_group");
    h.ok("cp_async_groups_fixed");
    let out = h.e.f32s(o, 64);
    for t in 0..32 {
        assert_eq!((out[2 * t], out[2 * t + 1]), (x[4 * t], x[128 + 4 * t]));
    }
}

#[test]
fn divergent_warp_collective() {
    let mut h = h(32);
    let o = h.arg_buf(32 * 4);
    let f = h.fault("shfl_divergent_broken", K::BarrierDivergence);
    let shfl_low = h.flag_line("shfl_high") + 3;
    assert!(
        [h.flag_line("shfl_high"), shfl_low].contains(&f.ptx_line),
        "{f}"
    );
    h.ok("shfl_divergent_fixed");
    let out = h.e.u32s(o, 32);
    for l in 0..32u32 {
        assert_eq!(out[l as usize], if l < 16 { l ^ 2 } else { l ^ 1 });
    }
}

#[test]
fn unsupported_instruction_is_rejected_with_line() {
    let mut h = h(32);
    let o = h.arg_buf(4);
    let f = h.expect_saying(
        "uses_unsupported",
        K::Unsupported,
        "unsupported",
        "mul24.lo.s32",
    );
    assert!(f.instruction.starts_with("mul24.lo.s32"), "{f}");
    assert_eq!(h.e.m.unsupported("uses_unsupported").len(), 1);
    // unsupported modifier
    let src = h
        .src
        .replace("mul24.lo.s32 %r2, %r1, %r1;", "add.cc.u32 %r2, %r1, %r1;");
    let m = Module::parse(&src).unwrap();
    let f = launch(
        &m,
        "uses_unsupported",
        &lin(1, 32),
        &[&o.to_le_bytes()],
        &mut h.e.mem,
        &LaunchOptions::default(),
    )
    .unwrap_err();
    assert_eq!(f.kind, K::Unsupported);
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
    let mut h = h(32);
    let o = h.buf(4);
    // (kernel, threads, parameters): too few parameters (CUDA error 1), too many threads, no
    // such kernel.
    let cases = [
        ("oob_global_fixed", 32, vec![p64(o)]),
        ("oob_global_fixed", 2048, vec![p64(o), p32(1)]),
        ("nope", 32, vec![]),
    ];
    for (kernel, threads, params) in cases {
        (h.threads, h.params) = (threads, params);
        let f = h.launch(kernel, &LaunchOptions::default()).unwrap_err();
        assert_eq!(f.kind, K::InvalidParams, "{kernel}, {threads} threads");
        assert_eq!(f.kind.cuda_error_code(), 1);
    }
}

#[test]
fn collectives_after_partial_warp_exit() {
    let mut h = h(32);
    let o = h.arg_buf(32 * 4);
    h.e.mem.memset_d32(o, 0xdead, 32).unwrap();
    h.ok("shfl_after_exit_fixed");
    let out = h.e.u32s(o, 32);
    for l in 0..32u32 {
        // ballot of %p1 (lane >= 20) over the live lanes is 0
        let want = if l < 20 { (l ^ 1) * 10 } else { 0xdead };
        assert_eq!(out[l as usize], want, "lane {l}");
    }
    h.expect_saying(
        "shfl_reads_exited_broken",
        K::BarrierDivergence,
        "shfl_exited",
        "does not execute",
    );
}
