//! Stream capture, graph replay and context rules, calling the driver's `extern "C"` entry points
//! directly (the crate is also an rlib). Each test uses its own context (current per thread).

use std::ffi::{c_void, CStr};
use std::ptr::null_mut;

use ptx_emu_driver::errors::*;
use ptx_emu_driver::*;

const PTX: &str = concat!(include_str!("ptx/driver_test_kernels.ptx"), "\0");
const GLOBAL: u32 = 0;
const THREAD_LOCAL: u32 = 1;

fn ok(rc: CUresult, what: &str) {
    assert_eq!(
        rc,
        CUDA_SUCCESS,
        "{what} returned {rc} ({})",
        errors::name(rc)
    );
}

/// The test module loaded into the current context, and its function `name`.
unsafe fn load(name: &CStr) -> (*mut c_void, *mut c_void) {
    let mut module = null_mut();
    ok(
        cuModuleLoadData(&mut module, PTX.as_ptr() as *const c_void),
        "cuModuleLoadData",
    );
    let mut f = null_mut();
    ok(
        cuModuleGetFunction(&mut f, module, name.as_ptr()),
        "cuModuleGetFunction",
    );
    (module, f)
}

/// The tests of this file that allocate device memory run one at a time: the graph test checks
/// the driver-wide `bytes_in_use`, which another test's allocations would move meanwhile.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fresh context (current on this thread), a stream in it and the test module; the [`SERIAL`]
/// lock is held as long as the fixture lives.
struct Fixture {
    ctx: *mut c_void,
    stream: *mut c_void,
    axpy: *mut c_void,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Fixture {
    fn new() -> Fixture {
        let serial = serial();
        unsafe {
            ok(cuInit(0), "cuInit");
            let mut ctx = null_mut();
            ok(cuCtxCreate_v2(&mut ctx, 0, 0), "cuCtxCreate_v2");
            let mut stream = null_mut();
            ok(cuStreamCreate(&mut stream, 1), "cuStreamCreate");
            let (_, axpy) = load(c"axpy_f32");
            Fixture {
                ctx,
                stream,
                axpy,
                _serial: serial,
            }
        }
    }

    fn alloc(&self, floats: usize) -> u64 {
        let mut p = 0u64;
        ok(
            unsafe { cuMemAlloc_v2(&mut p, floats * 4) },
            "cuMemAlloc_v2",
        );
        p
    }

    fn upload(&self, dst: u64, data: &[f32]) {
        ok(
            unsafe { cuMemcpyHtoD_v2(dst, data.as_ptr() as *const c_void, data.len() * 4) },
            "HtoD",
        );
    }

    /// out = alpha * a + b on `self.stream`.
    fn axpy(&self, a: u64, b: u64, out: u64, alpha: f32, n: i32) -> CUresult {
        let (mut a, mut b, mut out, mut alpha, mut n_) = (a, b, out, alpha, n);
        let mut params: [*mut c_void; 5] = [
            &mut a as *mut u64 as *mut c_void,
            &mut b as *mut u64 as *mut c_void,
            &mut out as *mut u64 as *mut c_void,
            &mut alpha as *mut f32 as *mut c_void,
            &mut n_ as *mut i32 as *mut c_void,
        ];
        let grid = (n as u32).div_ceil(64);
        unsafe {
            cuLaunchKernel(
                self.axpy,
                grid,
                1,
                1,
                64,
                1,
                1,
                0,
                self.stream,
                params.as_mut_ptr(),
                null_mut(),
            )
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = cuCtxDestroy_v2(self.ctx);
    }
}

fn inputs(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}

#[test]
fn captured_work_runs_only_on_replay_and_reads_host_memory_at_replay() {
    let f = Fixture::new();
    let n = 200;
    let (a, b) = (f.alloc(n), f.alloc(n));
    let (out, tmp) = (f.alloc(n), f.alloc(n));
    let mut host_in = inputs(n, 1);
    let host_b = inputs(n, 2);
    f.upload(b, &host_b);
    let mut host_out = vec![0f32; n];
    unsafe {
        ok(
            cuStreamBeginCapture_v2(f.stream, THREAD_LOCAL),
            "begin capture",
        );
        let mut status = 0u32;
        ok(cuStreamIsCapturing(f.stream, &mut status), "is capturing");
        assert_eq!(status, 1);
        // HtoD from a host buffer, graph-owned scratch, two kernels, DtoH to a host buffer.
        ok(
            cuMemcpyHtoDAsync_v2(a, host_in.as_ptr() as *const c_void, n * 4, f.stream),
            "HtoDAsync",
        );
        let mut scratch = 0u64;
        ok(
            cuMemAllocAsync(&mut scratch, n * 4, f.stream),
            "alloc in capture",
        );
        ok(f.axpy(a, b, scratch, 2.0, n as i32), "axpy 1");
        ok(
            cuMemcpyDtoDAsync_v2(tmp, scratch, n * 4, f.stream),
            "DtoDAsync",
        );
        ok(f.axpy(tmp, b, out, -1.0, n as i32), "axpy 2");
        ok(cuMemFreeAsync(scratch, f.stream), "free in capture");
        ok(
            cuMemcpyDtoHAsync_v2(host_out.as_mut_ptr() as *mut c_void, out, n * 4, f.stream),
            "DtoHAsync",
        );
        let mut graph = null_mut();
        ok(cuStreamEndCapture(f.stream, &mut graph), "end capture");
        assert!(!graph.is_null());
        assert!(
            host_out.iter().all(|&v| v == 0.0),
            "nothing may run during capture"
        );
        let mut exec = null_mut();
        ok(
            cuGraphInstantiateWithFlags(&mut exec, graph, 0),
            "instantiate",
        );
        for round in 0..2 {
            ok(cuGraphLaunch(exec, f.stream), "graph launch");
            let want: Vec<f32> = host_in
                .iter()
                .zip(&host_b)
                .map(|(&x, &y)| -(2.0 * x + y) + y)
                .collect();
            assert_eq!(host_out, want, "round {round}");
            // in place: the captured HtoD reads this buffer (same address) at the next replay
            host_in.copy_from_slice(&inputs(n, 10 + round));
        }
        let mut stats = PtxEmuStats::default();
        ok(ptxemu_stats(&mut stats), "stats");
        let in_use = stats.bytes_in_use;
        ok(cuGraphExecDestroy(exec), "exec destroy");
        ok(cuGraphDestroy(graph), "graph destroy");
        ok(ptxemu_stats(&mut stats), "stats");
        // the graph-owned scratch (n floats, rounded up to the allocator's granularity) is freed;
        // other tests may allocate concurrently, so only check it did not grow by our scratch
        assert!(stats.bytes_in_use < in_use + (n * 4) as u64);
    }
}

#[test]
fn capture_rules_match_cuda() {
    let f = Fixture::new();
    unsafe {
        // the legacy stream cannot be captured
        assert_eq!(
            cuStreamBeginCapture_v2(null_mut(), GLOBAL),
            CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED
        );

        // an unsafe call during a global capture invalidates it
        ok(cuStreamBeginCapture_v2(f.stream, GLOBAL), "begin");
        let mut p = 0u64;
        assert_eq!(
            cuMemAlloc_v2(&mut p, 64),
            CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED
        );
        let mut status = 0u32;
        ok(cuStreamIsCapturing(f.stream, &mut status), "is capturing");
        assert_eq!(status, 2, "invalidated");
        let mut graph = std::ptr::dangling_mut::<c_void>(); // must be overwritten with null
        assert_eq!(
            cuStreamEndCapture(f.stream, &mut graph),
            CUDA_ERROR_STREAM_CAPTURE_INVALIDATED
        );
        assert!(graph.is_null());

        // synchronizing a capturing stream is an error
        ok(cuStreamBeginCapture_v2(f.stream, THREAD_LOCAL), "begin");
        assert_eq!(
            cuStreamSynchronize(f.stream),
            CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED
        );
        assert_eq!(
            cuStreamEndCapture(f.stream, &mut graph),
            CUDA_ERROR_STREAM_CAPTURE_INVALIDATED
        );

        // waiting on an event recorded outside the capture: isolation error
        let mut ev = null_mut();
        ok(cuEventCreate(&mut ev, 0), "event");
        ok(cuEventRecord(ev, f.stream), "record");
        ok(cuStreamBeginCapture_v2(f.stream, THREAD_LOCAL), "begin");
        assert_eq!(
            cuStreamWaitEvent(f.stream, ev, 0),
            CUDA_ERROR_STREAM_CAPTURE_ISOLATION
        );
        assert_eq!(
            cuStreamEndCapture(f.stream, &mut graph),
            CUDA_ERROR_STREAM_CAPTURE_INVALIDATED
        );

        // an event recorded inside a capture cannot be waited on from the host
        ok(cuStreamBeginCapture_v2(f.stream, THREAD_LOCAL), "begin");
        ok(cuEventRecord(ev, f.stream), "record in capture");
        ok(
            cuStreamWaitEvent(f.stream, ev, 0),
            "wait on own captured event",
        );
        assert_eq!(cuEventSynchronize(ev), CUDA_ERROR_CAPTURED_EVENT);
        ok(cuStreamEndCapture(f.stream, &mut graph), "end");
        ok(cuGraphDestroy(graph), "destroy");

        // ending a thread-local capture from another thread
        ok(cuStreamBeginCapture_v2(f.stream, THREAD_LOCAL), "begin");
        let (stream, ctx) = (f.stream as usize, f.ctx as usize);
        let rc = std::thread::spawn(move || {
            let mut g = null_mut();
            cuCtxSetCurrent(ctx as *mut c_void);
            cuStreamEndCapture(stream as *mut c_void, &mut g)
        })
        .join()
        .unwrap();
        assert_eq!(rc, CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD);
        ok(
            cuStreamEndCapture(f.stream, &mut graph),
            "end on the right thread",
        );

        // instantiate flags
        let mut exec = null_mut();
        assert_eq!(
            cuGraphInstantiateWithFlags(&mut exec, graph, 1 | 4),
            CUDA_ERROR_INVALID_VALUE
        );
        ok(
            cuGraphInstantiateWithFlags(&mut exec, graph, 1 | 8),
            "AUTO_FREE | USE_NODE_PRIORITY",
        );
        ok(cuGraphLaunch(exec, f.stream), "empty graph launch");
        ok(cuGraphExecDestroy(exec), "exec destroy");
        ok(cuGraphDestroy(graph), "graph destroy");
    }
}

#[test]
fn primary_context_reset_clears_a_sticky_fault() {
    let _serial = serial();
    unsafe {
        ok(cuInit(0), "cuInit");
        let mut ctx = null_mut();
        ok(cuDevicePrimaryCtxRetain(&mut ctx, 0), "retain");
        ok(cuCtxSetCurrent(ctx), "set current");
        let (module, mut oob) = load(c"oob_write_f32");
        let mut buf = 0u64;
        ok(cuMemAlloc_v2(&mut buf, 64 * 4), "alloc");
        let (mut p, mut n) = (buf, 64i32);
        let mut params = [
            &mut p as *mut u64 as *mut c_void,
            &mut n as *mut i32 as *mut c_void,
        ];
        let rc = cuLaunchKernel(
            oob,
            1,
            1,
            1,
            64,
            1,
            1,
            0,
            null_mut(),
            params.as_mut_ptr(),
            null_mut(),
        );
        assert_eq!(rc, CUDA_ERROR_ILLEGAL_ADDRESS);
        assert_eq!(cuCtxSynchronize(), CUDA_ERROR_ILLEGAL_ADDRESS, "sticky");
        ok(cuDevicePrimaryCtxReset_v2(0), "reset");
        ok(cuCtxSynchronize(), "usable after reset");
        assert_eq!(
            cuModuleGetFunction(&mut oob, module, c"oob_write_f32".as_ptr()),
            400,
            "module gone"
        );
        ok(cuMemAlloc_v2(&mut buf, 16), "alloc after reset");
        ok(cuDevicePrimaryCtxRelease_v2(0), "release");
    }
}

#[test]
fn unsupported_entry_points_say_so() {
    assert_eq!(cuMemAllocManaged(), CUDA_ERROR_NOT_SUPPORTED);
    assert_eq!(cuLaunchHostFunc(), CUDA_ERROR_NOT_SUPPORTED);
    let mut name = std::ptr::null();
    ok(
        unsafe { cuGetErrorName(CUDA_ERROR_NOT_SUPPORTED, &mut name) },
        "cuGetErrorName",
    );
    assert_eq!(
        unsafe { CStr::from_ptr(name) }.to_str().unwrap(),
        "CUDA_ERROR_NOT_SUPPORTED"
    );
}

/// `ptxemu_set_launch_work` applies to the next launch of the thread only: a split that does not
/// cover that launch's grid fails it (INVALID_VALUE), the launch after it runs, a covering split
/// is taken, and `nruns = 0` clears a pending split.
#[test]
fn launch_work_split_must_cover_the_grid() {
    let fx = Fixture::new();
    let n = 300; // 5 blocks of 64
    let (a, b, out) = (fx.alloc(n), fx.alloc(n), fx.alloc(n));
    fx.upload(a, &inputs(n, 1));
    fx.upload(b, &inputs(n, 2));
    let set =
        |runs: &[u64]| unsafe { ptxemu_set_launch_work(runs.as_ptr(), runs.len() as u64 / 2) };
    ok(set(&[3, 2, 1, 1]), "ptxemu_set_launch_work");
    assert_eq!(
        fx.axpy(a, b, out, 1.0, n as i32),
        CUDA_ERROR_INVALID_VALUE,
        "4 of 5 blocks"
    );
    ok(
        fx.axpy(a, b, out, 1.0, n as i32),
        "the next launch has no split",
    );
    ok(set(&[3, 2, 2, 1]), "ptxemu_set_launch_work");
    ok(fx.axpy(a, b, out, 1.0, n as i32), "a covering split");
    ok(set(&[1, 1]), "ptxemu_set_launch_work");
    ok(
        unsafe { ptxemu_set_launch_work(std::ptr::null(), 0) },
        "clear",
    );
    ok(fx.axpy(a, b, out, 1.0, n as i32), "a cleared split");
    assert_eq!(
        unsafe { ptxemu_set_launch_work(std::ptr::null(), 2) },
        CUDA_ERROR_INVALID_VALUE
    );
    ok(cuCtxSynchronize(), "cuCtxSynchronize");
}
