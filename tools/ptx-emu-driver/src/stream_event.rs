//! Streams (capture included) and events.

use crate::*;

// ------------------------------------------------------------------------------------------------
// Streams

/// A new handle of `kind` owned by the current context (which must not be sticky-errored), and
/// that context.
fn new_in_current(kind: Kind) -> Result<(Arc<Mutex<Ctx>>, Handle), CUresult> {
    let cell = current_ctx()?;
    let ctx_handle = {
        let ctx = lock(&cell);
        ctx.check()?;
        ctx.handle
    };
    let h = registry().new_handle(kind, ctx_handle);
    Ok((cell, h))
}

pub(crate) fn stream_create(pstream: *mut Ptr) -> Result<(), CUresult> {
    let (cell, sh) = new_in_current(Kind::Stream)?;
    lock(&cell).streams.insert(sh, StreamState::default());
    unsafe { out(pstream, ptr(sh)) }
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamCreate(pstream: *mut Ptr, _flags: c_uint) -> CUresult {
    entry("cuStreamCreate", || stream_create(pstream))
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamCreateWithPriority(
    pstream: *mut Ptr,
    _flags: c_uint,
    _priority: c_int,
) -> CUresult {
    entry("cuStreamCreateWithPriority", || stream_create(pstream))
}

pub(crate) fn stream_destroy(stream: Ptr) -> Result<(), CUresult> {
    let cell = owner(stream, Kind::Stream)?;
    let mut ctx = lock(&cell);
    if let Some(st) = ctx.streams.remove(&h(stream)) {
        if let Some(cap) = st.capture {
            ctx.release_graph_allocs(Arc::new(cap.allocs));
        }
    }
    drop(ctx);
    registry().owner.remove(&h(stream));
    Ok(())
}

aliases! {
    [cuStreamDestroy_v2, cuStreamDestroy](stream: Ptr) => stream_destroy(stream);
}

/// Synchronize/query: work is already done; illegal on a capturing stream.
pub(crate) fn stream_sync(stream: Ptr) -> Result<(), CUresult> {
    profile::flush();
    let (cell, s) = stream_ctx(stream)?;
    let mut ctx = lock(&cell);
    ctx.check()?;
    if s == 0 {
        return ctx.forbid_unsafe_call();
    }
    if let Some(Some(cap)) = ctx.streams.get_mut(&s).map(|st| st.capture.as_mut()) {
        cap.invalidated
            .get_or_insert(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
        return Err(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
    }
    Ok(())
}

aliases! {
    [cuStreamSynchronize, cuStreamQuery](stream: Ptr) => stream_sync(stream);
}

#[no_mangle]
pub extern "C" fn cuStreamWaitEvent(stream: Ptr, event: Ptr, _flags: c_uint) -> CUresult {
    entry("cuStreamWaitEvent", || {
        let (cell, s) = stream_ctx(stream)?;
        let ev_cell = registry().owner_of(h(event), Kind::Event)?;
        if !Arc::ptr_eq(&cell, &ev_cell) {
            // Cross-context waits are fine on hardware; here contexts never share work, and all
            // work is already complete, so the wait is a no-op.
            return lock(&cell).check();
        }
        let mut ctx = lock(&cell);
        ctx.check()?;
        let ev = *ctx.events.get(&h(event)).ok_or(CUDA_ERROR_INVALID_HANDLE)?;
        let capturing = match ctx.streams.get_mut(&s).and_then(|st| st.capture.as_mut()) {
            Some(cap) => {
                if cap.invalidated.is_some() {
                    return Err(CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
                }
                if ev.recorded && ev.captured_in != Some(cap.id) {
                    // CUDA: a capturing stream may not depend on work outside its capture.
                    cap.invalidated
                        .get_or_insert(CUDA_ERROR_STREAM_CAPTURE_ISOLATION);
                    eprintln!(
                        "ptx-emu-driver: cuStreamWaitEvent: capturing stream waits on an event recorded \
                         outside the capture (CUDA_ERROR_STREAM_CAPTURE_ISOLATION); with cudarc, call \
                         `ctx.disable_event_tracking()` before capturing"
                    );
                    return Err(CUDA_ERROR_STREAM_CAPTURE_ISOLATION);
                }
                true
            }
            None => false,
        };
        if !capturing {
            if let Some(id) = ev.captured_in {
                let live = ctx
                    .streams
                    .values()
                    .any(|st| st.capture.as_ref().is_some_and(|c| c.id == id));
                if live {
                    return Err(unsupported(
                        "cuStreamWaitEvent joining another stream into a capture",
                    ));
                }
                return Err(CUDA_ERROR_CAPTURED_EVENT);
            }
        }
        Ok(())
    })
}

pub(crate) fn begin_capture(stream: Ptr, mode: u32) -> Result<(), CUresult> {
    let (cell, s) = stream_ctx(stream)?;
    if s == 0 {
        eprintln!("ptx-emu-driver: cuStreamBeginCapture: the legacy/null stream cannot be captured; use a created stream");
        return Err(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
    }
    if mode > 2 {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    let id = registry().capture_id();
    let mut ctx = lock(&cell);
    ctx.check()?;
    let st = ctx.streams.get_mut(&s).ok_or(CUDA_ERROR_INVALID_HANDLE)?;
    if st.capture.is_some() {
        return Err(401); // CUDA_ERROR_ILLEGAL_STATE
    }
    st.capture = Some(Capture {
        id,
        mode,
        thread: std::thread::current().id(),
        ops: Vec::new(),
        allocs: Vec::new(),
        invalidated: None,
    });
    Ok(())
}

#[no_mangle]
pub extern "C" fn cuStreamBeginCapture_v2(stream: Ptr, mode: c_uint) -> CUresult {
    entry("cuStreamBeginCapture_v2", || begin_capture(stream, mode))
}

/// The pre-10.1 entry point (no mode argument): global mode.
#[no_mangle]
pub extern "C" fn cuStreamBeginCapture(stream: Ptr) -> CUresult {
    entry("cuStreamBeginCapture", || begin_capture(stream, 0))
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamEndCapture(stream: Ptr, pgraph: *mut Ptr) -> CUresult {
    entry("cuStreamEndCapture", || {
        let (cell, s) = stream_ctx(stream)?;
        if pgraph.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let ctx_handle = lock(&cell).handle;
        // Reserve the graph handle before taking the context lock (lock order: registry, context).
        let gh = registry().new_handle(Kind::Graph, ctx_handle);
        let mut ctx = lock(&cell);
        let st = ctx.streams.get_mut(&s);
        let cap = match st.and_then(|st| st.capture.take()) {
            Some(cap) => cap,
            None => {
                drop(ctx);
                registry().owner.remove(&gh);
                return Err(if s == 0 {
                    CUDA_ERROR_STREAM_CAPTURE_UNMATCHED
                } else {
                    401
                });
            }
        };
        if cap.mode == 1 && cap.thread != std::thread::current().id() {
            if let Some(st) = ctx.streams.get_mut(&s) {
                st.capture = Some(cap);
            }
            drop(ctx);
            registry().owner.remove(&gh);
            return Err(CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD);
        }
        if cap.invalidated.is_some() {
            ctx.release_graph_allocs(Arc::new(cap.allocs));
            drop(ctx);
            registry().owner.remove(&gh);
            unsafe { out(pgraph, std::ptr::null_mut())? };
            return Err(CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
        }
        ctx.graphs.insert(
            gh,
            GraphState {
                ops: Arc::new(cap.ops),
                allocs: Arc::new(cap.allocs),
            },
        );
        unsafe { out(pgraph, ptr(gh)) }
    })
}

pub(crate) fn capture_status(stream: Ptr) -> Result<(u32, u64, Handle), CUresult> {
    let (cell, s) = stream_ctx(stream)?;
    let ctx = lock(&cell);
    Ok(
        match ctx.streams.get(&s).and_then(|st| st.capture.as_ref()) {
            Some(c) if c.invalidated.is_some() => (2, c.id, 0),
            Some(c) => (1, c.id, 0),
            None => (0, 0, 0),
        },
    )
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamIsCapturing(stream: Ptr, status: *mut c_uint) -> CUresult {
    entry("cuStreamIsCapturing", || {
        let (st, _, _) = capture_status(stream)?;
        unsafe { out(status, st) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamGetCaptureInfo(
    stream: Ptr,
    status: *mut c_uint,
    id: *mut u64,
) -> CUresult {
    entry("cuStreamGetCaptureInfo", || unsafe {
        capture_info(stream, status, id)
    })
}

/// Graph and dependency outputs are null/0: the recorded graph is linear and has no node handles.
#[no_mangle]
pub unsafe extern "C" fn cuStreamGetCaptureInfo_v2(
    stream: Ptr,
    status: *mut c_uint,
    id: *mut u64,
    graph: *mut Ptr,
    deps: *mut *const Ptr,
    num_deps: *mut usize,
) -> CUresult {
    entry("cuStreamGetCaptureInfo_v2", || unsafe {
        capture_info(stream, status, id)?;
        out_opt(graph, std::ptr::null_mut())?;
        out_opt(deps, std::ptr::null())?;
        out_opt(num_deps, 0)
    })
}

/// The capture status of `stream` into `*status` and its capture id into `*id` (when not null).
unsafe fn capture_info(stream: Ptr, status: *mut c_uint, id: *mut u64) -> Result<(), CUresult> {
    let (st, cid, _) = capture_status(stream)?;
    unsafe {
        out(status, st)?;
        out_opt(id, cid)
    }
}

// ------------------------------------------------------------------------------------------------
// Events

#[no_mangle]
pub unsafe extern "C" fn cuEventCreate(pevent: *mut Ptr, flags: c_uint) -> CUresult {
    entry("cuEventCreate", || {
        let (cell, eh) = new_in_current(Kind::Event)?;
        lock(&cell).events.insert(
            eh,
            EventState {
                flags,
                ..Default::default()
            },
        );
        unsafe { out(pevent, ptr(eh)) }
    })
}

pub(crate) fn event_destroy(event: Ptr) -> Result<(), CUresult> {
    let cell = owner(event, Kind::Event)?;
    lock(&cell).events.remove(&h(event));
    registry().owner.remove(&h(event));
    Ok(())
}

aliases! {
    [cuEventDestroy_v2, cuEventDestroy](event: Ptr) => event_destroy(event);
}

pub(crate) fn event_record(event: Ptr, stream: Ptr) -> Result<(), CUresult> {
    let (cell, s) = stream_ctx(stream)?;
    let ev_cell = registry().owner_of(h(event), Kind::Event)?;
    if !Arc::ptr_eq(&cell, &ev_cell) {
        return Err(CUDA_ERROR_INVALID_HANDLE);
    }
    let mut ctx = lock(&cell);
    ctx.check()?;
    let captured_in = ctx.capture_of(s)?.map(|c| c.id);
    let ev = ctx
        .events
        .get_mut(&h(event))
        .ok_or(CUDA_ERROR_INVALID_HANDLE)?;
    ev.recorded = true;
    ev.captured_in = captured_in;
    Ok(())
}

#[no_mangle]
pub extern "C" fn cuEventRecord(event: Ptr, stream: Ptr) -> CUresult {
    entry("cuEventRecord", || event_record(event, stream))
}

#[no_mangle]
pub extern "C" fn cuEventRecordWithFlags(event: Ptr, stream: Ptr, _flags: c_uint) -> CUresult {
    entry("cuEventRecordWithFlags", || event_record(event, stream))
}

pub(crate) fn event_wait(event: Ptr) -> Result<(), CUresult> {
    profile::flush();
    let cell = owner(event, Kind::Event)?;
    let ctx = lock(&cell);
    ctx.check()?;
    let ev = ctx.events.get(&h(event)).ok_or(CUDA_ERROR_INVALID_HANDLE)?;
    if ev.captured_in.is_some() {
        return Err(CUDA_ERROR_CAPTURED_EVENT);
    }
    Ok(())
}

aliases! {
    [cuEventSynchronize, cuEventQuery](event: Ptr) => event_wait(event);
}

/// Work runs synchronously at submission, so no device time passes between two records: the
/// elapsed time is always 0 ms (documented in docs/stand-in-driver.md).
pub(crate) fn event_elapsed(ms: *mut f32, start: Ptr, end: Ptr) -> Result<(), CUresult> {
    let cell = owner(start, Kind::Event)?;
    let end_cell = registry().owner_of(h(end), Kind::Event)?;
    if !Arc::ptr_eq(&cell, &end_cell) {
        return Err(CUDA_ERROR_INVALID_HANDLE);
    }
    let ctx = lock(&cell);
    ctx.check()?;
    for e in [start, end] {
        let ev = ctx.events.get(&h(e)).ok_or(CUDA_ERROR_INVALID_HANDLE)?;
        if !ev.recorded || ev.flags & 0x2 != 0 {
            // never recorded, or CU_EVENT_DISABLE_TIMING
            return Err(CUDA_ERROR_INVALID_HANDLE);
        }
        if ev.captured_in.is_some() {
            return Err(CUDA_ERROR_CAPTURED_EVENT);
        }
    }
    unsafe { out(ms, 0.0) }
}

aliases! {
    unsafe [cuEventElapsedTime, cuEventElapsedTime_v2](ms: *mut f32, start: Ptr, end: Ptr) =>
        event_elapsed(ms, start, end);
}
