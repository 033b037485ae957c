//! cudarc 0.19's safe API on the stand-in driver (`tools/ptx-emu-driver`), and the engine's CUDA
//! layer (`cyberhost_engine::backends::cuda`) on top of it.
//!
//! The stand-in cdylib is loaded by path (it sits next to this test executable in
//! `target/<profile>/deps/`); its SONAME `libcuda.so` makes cudarc's `dlopen("libcuda.so")` return
//! it. No environment setup is needed. All tests here share one process-wide driver, so they take
//! `SERIAL` to keep the driver's call counters attributable.

mod common;
use common::{random, rel_l2};

use std::sync::{Arc, OnceLock};

use cyberhost_engine::backends::cuda::cudarc::driver::{
    sys, CudaContext, CudaSlice, CudaStream, DriverError, LaunchConfig, PushKernelArg,
};
use cyberhost_engine::backends::cuda::cudarc::nvrtc::Ptx;
use cyberhost_engine::backends::cuda::{CudaDevice, DRIVER_ENV, NO_DRIVER_MSG};
use cyberhost_kernels::pointwise::{self, PointwiseParams};
use cyberhost_kernels::KernelModule;

const TEST_PTX: &str = include_str!("../tools/ptx-emu-driver/tests/ptx/driver_test_kernels.ptx");

use common::cuda_serial as serial;

/// The engine device on the stand-in driver (loaded once per process; cargo builds
/// `libptx_emu_driver.so` into `target/<profile>/deps/` because the suite dev-depends on it).
fn emu_device() -> &'static CudaDevice {
    static DEV: OnceLock<CudaDevice> = OnceLock::new();
    DEV.get_or_init(|| {
        let dev = CudaDevice::new_emulated(0).expect("CudaDevice::new_emulated");
        assert!(
            dev.is_emulated(),
            "expected the stand-in driver, got {}",
            dev.name()
        );
        dev
    })
}

fn axpy_ref(alpha: f32, a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(&x, &y)| alpha * x + y).collect()
}

fn launch_axpy(
    stream: &Arc<CudaStream>,
    f: &cyberhost_engine::backends::cuda::cudarc::driver::CudaFunction,
    a: &CudaSlice<f32>,
    b: &CudaSlice<f32>,
    out: &mut CudaSlice<f32>,
    alpha: f32,
) -> Result<(), DriverError> {
    let n = a.len() as i32;
    let cfg = LaunchConfig {
        grid_dim: ((n as u32).div_ceil(128), 1, 1),
        block_dim: (128, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut b_ = stream.launch_builder(f);
    b_.arg(a).arg(b).arg(out).arg(&alpha).arg(&n);
    // SAFETY: axpy_f32(const float*, const float*, float*, float, int): three n-float buffers.
    unsafe { b_.launch(cfg) }.map(|_| ())
}

#[test]
fn cudarc_safe_api_roundtrip() {
    let _g = serial();
    let dev = emu_device();
    let ctx = dev.context();
    assert_eq!(ctx.compute_capability().unwrap(), (9, 0));
    assert_eq!(
        ctx.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .unwrap(),
        132
    );
    let stream = dev.stream();
    let n = 1000;
    let (a, b) = (random(n, 1), random(n, 2));
    let da = stream.clone_htod(&a).unwrap();
    let db = stream.clone_htod(&b).unwrap();
    let mut dout = stream.alloc_zeros::<f32>(n).unwrap();
    let module = ctx.load_module(Ptx::from_src(TEST_PTX)).unwrap();
    let f = module.load_function("axpy_f32").unwrap();
    launch_axpy(stream, &f, &da, &db, &mut dout, 0.75).unwrap();
    let got = stream.clone_dtoh(&dout).unwrap();
    let err = rel_l2(&got, &axpy_ref(0.75, &a, &b));
    assert!(err < 1e-6, "axpy_f32 rel L2 {err}");

    // device-to-device copy and memset through the safe API
    let mut copy = stream.alloc_zeros::<f32>(n).unwrap();
    stream.memcpy_dtod(&dout, &mut copy).unwrap();
    assert_eq!(stream.clone_dtoh(&copy).unwrap(), got);
    stream.memset_zeros(&mut copy).unwrap();
    assert!(stream.clone_dtoh(&copy).unwrap().iter().all(|&v| v == 0.0));

    // module global through cudarc's get_global
    let scale = module.load_function("scale_by_global_f32").unwrap();
    let mut g = module.get_global("g_scale", stream).unwrap();
    let mut g_scale = unsafe { g.transmute_mut::<f32>(1) }.unwrap();
    stream.memcpy_htod(&[3.0f32], &mut g_scale).unwrap();
    let mut x = stream.clone_htod(&a).unwrap();
    let ni = n as i32;
    let mut lb = stream.launch_builder(&scale);
    lb.arg(&mut x).arg(&ni);
    // SAFETY: scale_by_global_f32(float*, int) on an n-float buffer.
    unsafe { lb.launch(LaunchConfig::for_num_elems(n as u32)) }.unwrap();
    let want: Vec<f32> = a.iter().map(|v| 3.0 * v).collect();
    assert!(rel_l2(&stream.clone_dtoh(&x).unwrap(), &want) < 1e-6);

    // events: synchronous execution, 0 ms elapsed (documented)
    let t0 = stream
        .record_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
        .unwrap();
    let t1 = stream
        .record_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
        .unwrap();
    assert_eq!(t0.elapsed_ms(&t1).unwrap(), 0.0);
    ctx.synchronize().unwrap();
}

#[test]
fn stream_capture_records_then_graph_replays() {
    let _g = serial();
    let dev = emu_device();
    let stream = dev.stream();
    let module = dev.context().load_module(Ptx::from_src(TEST_PTX)).unwrap();
    let f = module.load_function("axpy_f32").unwrap();
    let n = 777;
    let (mut a_host, b) = (random(n, 3), random(n, 4));
    let mut da = stream.clone_htod(&a_host).unwrap();
    let db = stream.clone_htod(&b).unwrap();
    let mut tmp = stream.alloc_zeros::<f32>(n).unwrap();
    let mut out = stream.alloc_zeros::<f32>(n).unwrap();
    stream.synchronize().unwrap();

    // out = 2 * (0.5 * a + b) + b, recorded, not executed
    stream
        .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
        .unwrap();
    assert_eq!(
        stream.capture_status().unwrap(),
        sys::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_ACTIVE
    );
    stream.memset_zeros(&mut out).unwrap();
    launch_axpy(stream, &f, &da, &db, &mut tmp, 0.5).unwrap();
    launch_axpy(stream, &f, &tmp, &db, &mut out, 2.0).unwrap();
    let graph = stream
        .end_capture(sys::CUgraphInstantiate_flags(0))
        .unwrap()
        .expect("a graph");
    assert!(
        stream.clone_dtoh(&out).unwrap().iter().all(|&v| v == 0.0),
        "captured work must not run before the graph is launched"
    );

    let before = dev.emulator_stats().unwrap();
    let want = |a: &[f32]| axpy_ref(2.0, &axpy_ref(0.5, a, &b), &b);
    for step in 0..3 {
        graph.launch().unwrap();
        let err = rel_l2(&stream.clone_dtoh(&out).unwrap(), &want(&a_host));
        assert!(err < 1e-6, "replay {step}: rel L2 {err}");
        // new input in place; the graph reads it on the next replay
        a_host = random(n, 10 + step);
        stream.memcpy_htod(&a_host, &mut da).unwrap();
    }
    let after = dev.emulator_stats().unwrap();
    assert_eq!(
        after.alloc_calls, before.alloc_calls,
        "graph replays must not allocate"
    );
    assert_eq!(after.graph_launches - before.graph_launches, 3);
    assert_eq!(after.kernel_launches - before.kernel_launches, 6);
}

#[test]
fn capture_rejects_waits_on_uncaptured_events() {
    // With cudarc's event tracking on (its default), buffers record events outside the capture
    // and a capturing stream then waits on them: CUDA refuses (STREAM_CAPTURE_ISOLATION) and so
    // does the stand-in. CudaDevice turns tracking off for this reason.
    let _g = serial();
    emu_device();
    let ctx = CudaContext::new_non_primary(0, 0).unwrap();
    let stream = ctx.new_stream().unwrap();
    let mut buf = stream.clone_htod(&[1.0f32; 16]).unwrap();
    stream
        .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
        .unwrap();
    let err = stream.memset_zeros(&mut buf);
    let end = stream.end_capture(sys::CUgraphInstantiate_flags(0));
    let isolation = DriverError(sys::CUresult::CUDA_ERROR_STREAM_CAPTURE_ISOLATION);
    let invalidated = DriverError(sys::CUresult::CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
    assert!(
        matches!(&err, Err(e) if *e == isolation || *e == invalidated)
            || matches!(&end, Err(e) if *e == isolation || *e == invalidated),
        "expected a capture isolation error, got {err:?} / {:?}",
        end.as_ref().map(|g| g.is_some())
    );
    let _ = ctx.check_err();
}

#[test]
fn kernel_fault_returns_cuda_code_and_poisons_context() {
    let _g = serial();
    emu_device();
    let before = emu_device().emulator_stats().unwrap();
    for (kernel, code) in [
        ("oob_write_f32", sys::CUresult::CUDA_ERROR_ILLEGAL_ADDRESS),
        ("smem_race_f32", sys::CUresult::CUDA_ERROR_LAUNCH_FAILED),
        (
            "barrier_divergence_f32",
            sys::CUresult::CUDA_ERROR_LAUNCH_FAILED,
        ),
        ("uninit_smem_f32", sys::CUresult::CUDA_ERROR_LAUNCH_FAILED),
    ] {
        // A separate (non-primary) context, so the sticky error does not reach the other tests.
        let ctx = CudaContext::new_non_primary(0, 0).unwrap();
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().unwrap();
        let module = ctx.load_module(Ptx::from_src(TEST_PTX)).unwrap();
        let f = module.load_function(kernel).unwrap();
        let mut buf = stream.alloc_zeros::<f32>(64).unwrap();
        let n = 64i32;
        let mut lb = stream.launch_builder(&f);
        lb.arg(&mut buf);
        if kernel == "oob_write_f32" {
            lb.arg(&n);
        }
        let cfg = LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (64, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: deliberately broken kernels; the emulator catches the fault.
        let r = unsafe { lb.launch(cfg) };
        assert_eq!(r.err(), Some(DriverError(code)), "{kernel}");
        // sticky: the context is unusable afterwards, as on hardware
        assert_eq!(
            stream.alloc_zeros::<f32>(4).err(),
            Some(DriverError(code)),
            "{kernel} sticky"
        );
        drop(buf);
        drop(module);
        drop(stream);
        let _ = ctx.check_err();
    }
    let after = emu_device().emulator_stats().unwrap();
    assert_eq!(after.faults - before.faults, 4);
    // the primary context (other tests) is unaffected
    emu_device().stream().alloc_zeros::<f32>(4).unwrap();
}

#[test]
fn engine_loads_every_kernel_module_and_launches_affine() {
    let _g = serial();
    let dev = emu_device();
    for m in KernelModule::ALL {
        dev.module(m)
            .unwrap_or_else(|e| panic!("{}: {e:#}", m.name()));
    }
    let loads = dev.emulator_stats().unwrap().module_loads;
    dev.module(KernelModule::Pointwise).unwrap();
    assert_eq!(
        dev.emulator_stats().unwrap().module_loads,
        loads,
        "modules load once"
    );

    let stream = dev.stream();
    let n = 2 * 5 * 37 + 1029; // not a multiple of any block or grid-stride step
    let x = random(n, 20);
    let dx = stream.clone_htod(&x).unwrap();
    let dy = stream.alloc_zeros::<f32>(n).unwrap();
    let ptr = |s: &CudaSlice<f32>| {
        use cyberhost_engine::backends::cuda::cudarc::driver::DevicePtr;
        s.device_ptr(stream).0
    };
    let params = PointwiseParams {
        mul: 1.25,
        add: -0.5,
        ..PointwiseParams::flat(ptr(&dx), ptr(&dy), n as u64)
    };
    // SAFETY: PointwiseParams mirrors the .cu struct; x and y hold n floats.
    unsafe {
        dev.launch(
            KernelModule::Pointwise,
            "affine_v1_f32",
            pointwise::launch_config(n as u64),
            &params,
        )
    }
    .unwrap();
    let want: Vec<f32> = x.iter().map(|&v| v * 1.25 - 0.5).collect();
    let err = rel_l2(&stream.clone_dtoh(&dy).unwrap(), &want);
    assert!(err < 1e-6, "affine_v1_f32 rel L2 {err}");
}

#[test]
fn bad_driver_path_is_a_clear_error() {
    let text = common::child_test_output(
        "child_open_device",
        "EMU_DRIVER_TEST_CHILD",
        &[(DRIVER_ENV, Some("/nonexistent/libcuda-stand-in.so"))],
    );
    assert!(text.contains("CHILD-RESULT: Err"), "{text}");
    assert!(
        text.contains("/nonexistent/libcuda-stand-in.so") && text.contains(DRIVER_ENV),
        "{text}"
    );
}

#[test]
fn no_driver_is_a_clear_error_not_a_panic() {
    // A fresh process that never loads the stand-in, with nothing on LD_LIBRARY_PATH.
    let expected = format!("CHILD-RESULT: Err({NO_DRIVER_MSG})");
    common::assert_no_driver_is_reported(
        "child_open_device",
        "EMU_DRIVER_TEST_CHILD",
        &[&expected],
    );
}

/// Runs only as the child of the two tests above.
#[test]
fn child_open_device() {
    if std::env::var_os("EMU_DRIVER_TEST_CHILD").is_none() {
        return;
    }
    if std::env::var_os(DRIVER_ENV).is_none() && unsafe { sys::is_culib_present() } {
        println!("CHILD-SYSTEM-DRIVER");
    }
    match CudaDevice::new(0) {
        Ok(d) => println!("CHILD-RESULT: Ok({})", d.name()),
        Err(e) => println!("CHILD-RESULT: Err({e:#})"),
    }
}

/// The persistent launch of [`child_persistent_attention`]: sm_80 `attention_d80_v1_bf16`
/// (64-row query tiles, 3 blocks per SM) over B 1, H 2, Lq 320, Lk 72 = 10 tiles, on the grid of a
/// 2-SM GPU: 6 blocks, blocks 0..4 run 2 tiles and 4..6 run 1.
const PERSISTENT_SMS: u32 = 2;
fn persistent_attention_shape() -> cyberhost_kernels::attention::AttentionShape {
    cyberhost_kernels::attention::AttentionShape {
        batch: 1,
        heads: 2,
        lq: 320,
        lk: 72,
        d: 80,
    }
}

/// Rows of the stats file of a [`child_persistent_attention`] run with `sample` blocks at most.
fn persistent_attention_rows(
    dir: &std::path::Path,
    sample: Option<&str>,
) -> Vec<serde_json::Value> {
    let file = dir.join(format!("stats-{}.jsonl", sample.unwrap_or("all")));
    let path = file.to_str().unwrap();
    common::child_test_output(
        "child_persistent_attention",
        "EMU_DRIVER_PERSISTENT_CHILD",
        &[
            ("PTX_EMU_STATS", Some(path)),
            ("PTX_EMU_SAMPLE_BLOCKS", sample),
            ("PTX_EMU_GPU", None),
        ],
    );
    std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &serde_json::Value| r["kernel"] == "attention_d80_v1_bf16")
        .collect()
}

/// A persistent launch through the engine's `CudaDevice::launch` (which states the blocks'
/// tiles to the stand-in, `ptxemu_set_launch_work`), launched directly and replayed from a
/// captured graph: with 2 sampled blocks the profiler runs one block of each work class and its
/// scaled tensor work equals the full run's; the old rule (blocks 0 and 5, times 3) would count
/// 9 tiles of the 10.
#[test]
fn persistent_engine_launch_samples_exact_tensor_work() {
    let dir = tempfile::tempdir().unwrap();
    let full = persistent_attention_rows(dir.path(), None);
    let sampled = persistent_attention_rows(dir.path(), Some("2"));
    assert_eq!(
        (full.len(), sampled.len()),
        (2, 2),
        "a direct launch and a graph replay"
    );
    let u = |r: &serde_json::Value, k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k}: {r}"));
    for (f, s) in full.iter().zip(&sampled) {
        assert_eq!((u(f, "blocks_total"), u(f, "blocks_executed")), (6, 6));
        assert_eq!(f["emu__sampled"], false);
        assert!(f.get("emu__sample_weighting").is_none());
        assert_eq!((u(s, "blocks_total"), u(s, "blocks_executed")), (6, 2));
        assert_eq!(s["emu__sampled"], true);
        assert_eq!(s["emu__sample_weighting"], "work_classes");
        for k in [
            "flop_tensor",
            "sm__inst_executed_pipe_tensor.sum",
            "smsp__inst_executed.sum",
            "l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum",
            "l1tex__t_sectors_pipe_lsu_mem_global_op_st.sum",
        ] {
            assert_eq!(u(s, k), u(f, k), "{k}");
        }
        assert_eq!(
            s["emu__flop_tensor_by_dtype"],
            f["emu__flop_tensor_by_dtype"]
        );
        let per_tile = u(f, "flop_tensor") / 10;
        assert_eq!(per_tile * 10, u(f, "flop_tensor"), "equal tiles");
        assert_ne!(per_tile * 9, u(f, "flop_tensor"));
    }
}

/// Runs only as the child of [`persistent_engine_launch_samples_exact_tensor_work`]: the
/// persistent attention launch, then the same launch captured into a graph and replayed.
#[test]
fn child_persistent_attention() {
    if std::env::var_os("EMU_DRIVER_PERSISTENT_CHILD").is_none() {
        return;
    }
    use cyberhost_engine::backends::cuda::cudarc::driver::DevicePtr;
    use cyberhost_kernels::attention::{launch_config, traits_for, AttentionParams, AttnStrides};
    let dev = emu_device();
    let stream = dev.stream();
    let s = persistent_attention_shape();
    let t = traits_for(s.d, cyberhost_kernels::DType::Bf16).unwrap();
    let cfg = launch_config(t, s, PERSISTENT_SMS);
    assert_eq!((cfg.grid, cfg.persistent_tiles), ([6, 1, 1], 10));
    let bf16 = |n: u64, seed| -> Vec<u16> {
        random(n as usize, seed)
            .iter()
            .map(|&v| (v.to_bits() >> 16) as u16)
            .collect()
    };
    let (q_len, kv_len) = (s.lq * s.heads * s.d, s.lk * s.heads * s.d);
    let q = stream.clone_htod(&bf16(q_len, 1)).unwrap();
    let k = stream.clone_htod(&bf16(kv_len, 2)).unwrap();
    let v = stream.clone_htod(&bf16(kv_len, 3)).unwrap();
    let o = stream.clone_htod(&vec![0xffffu16; q_len as usize]).unwrap();
    let ptr = |b: &CudaSlice<u16>| b.device_ptr(stream).0;
    let st = |len| AttnStrides::bhld(s.heads, len, s.d);
    let p = AttentionParams::new(
        [ptr(&q), ptr(&k), ptr(&v), ptr(&o)],
        [st(s.lq), st(s.lk), st(s.lk), st(s.lq)],
        s,
        0.125,
    )
    .unwrap();
    let launch = || {
        // SAFETY: the params address q, k, v, o, each holding the B H L D bf16 elements of `s`.
        unsafe { dev.launch(KernelModule::Attention, t.entry, cfg, &p) }.unwrap()
    };
    launch();
    dev.synchronize().unwrap();
    stream
        .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
        .unwrap();
    launch();
    let graph = stream
        .end_capture(sys::CUgraphInstantiate_flags(0))
        .unwrap()
        .expect("a graph");
    graph.launch().unwrap();
    dev.synchronize().unwrap();
}
