//! Graphs: instantiate captured operations, replay them.

use crate::*;

// ------------------------------------------------------------------------------------------------
// Graphs

pub(crate) fn instantiate(pexec: *mut Ptr, graph: Ptr, flags: u64) -> Result<(), CUresult> {
    need_init()?;
    const AUTO_FREE: u64 = 1;
    const UPLOAD: u64 = 2;
    const DEVICE_LAUNCH: u64 = 4;
    const NODE_PRIORITY: u64 = 8;
    if flags & !(AUTO_FREE | UPLOAD | DEVICE_LAUNCH | NODE_PRIORITY) != 0
        || flags & (AUTO_FREE | DEVICE_LAUNCH) == (AUTO_FREE | DEVICE_LAUNCH)
    {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    if flags & DEVICE_LAUNCH != 0 {
        return Err(unsupported(
            "cuGraphInstantiateWithFlags(CUDA_GRAPH_INSTANTIATE_FLAG_DEVICE_LAUNCH)",
        ));
    }
    let cell = registry().owner_of(h(graph), Kind::Graph)?;
    let ctx_handle = lock(&cell).handle;
    let eh = registry().new_handle(Kind::GraphExec, ctx_handle);
    let mut ctx = lock(&cell);
    ctx.check()?;
    let g = ctx.graphs.get(&h(graph)).ok_or(CUDA_ERROR_INVALID_HANDLE)?;
    let exec = GraphState {
        ops: g.ops.clone(),
        allocs: g.allocs.clone(),
    };
    ctx.execs.insert(eh, exec);
    unsafe { out(pexec, ptr(eh)) }
}

#[no_mangle]
pub unsafe extern "C" fn cuGraphInstantiateWithFlags(
    pexec: *mut Ptr,
    graph: Ptr,
    flags: u64,
) -> CUresult {
    entry("cuGraphInstantiateWithFlags", || {
        instantiate(pexec, graph, flags)
    })
}

/// The 11.x five-argument form (error node and log buffer are left untouched).
#[no_mangle]
pub unsafe extern "C" fn cuGraphInstantiate_v2(
    pexec: *mut Ptr,
    graph: Ptr,
    _err_node: *mut Ptr,
    _log: *mut c_char,
    _size: usize,
) -> CUresult {
    entry("cuGraphInstantiate_v2", || instantiate(pexec, graph, 0))
}

#[no_mangle]
pub extern "C" fn cuGraphLaunch(exec: Ptr, stream: Ptr) -> CUresult {
    entry("cuGraphLaunch", || {
        let cell = owner(exec, Kind::GraphExec)?;
        let (stream_cell, s) = stream_ctx(stream)?;
        if !Arc::ptr_eq(&cell, &stream_cell) {
            return Err(CUDA_ERROR_INVALID_HANDLE);
        }
        let mut ctx = lock(&cell);
        ctx.check()?;
        let ops = ctx
            .execs
            .get(&h(exec))
            .ok_or(CUDA_ERROR_INVALID_HANDLE)?
            .ops
            .clone();
        bump(&counters().graph_launches);
        if let Some(cap) = ctx.capture_of(s)? {
            // A graph launched into a capturing stream becomes part of that capture.
            cap.ops.extend(ops.iter().cloned());
            return Ok(());
        }
        for op in ops.iter() {
            exec_op(&mut ctx, op)?;
        }
        Ok(())
    })
}

#[no_mangle]
pub extern "C" fn cuGraphUpload(exec: Ptr, stream: Ptr) -> CUresult {
    entry("cuGraphUpload", || {
        let cell = owner(exec, Kind::GraphExec)?;
        stream_ctx(stream)?;
        let r = lock(&cell).check();
        r
    })
}

/// Destroy a graph (`Kind::Graph`, in `ctx.graphs`) or an executable graph (`Kind::GraphExec`,
/// in `ctx.execs`); its memory is freed once nothing references it.
fn destroy(p: Ptr, kind: Kind) -> Result<(), CUresult> {
    let cell = owner(p, kind)?;
    let mut ctx = lock(&cell);
    let table = if kind == Kind::Graph {
        &mut ctx.graphs
    } else {
        &mut ctx.execs
    };
    if let Some(g) = table.remove(&h(p)) {
        ctx.release_graph_allocs(g.allocs);
    }
    drop(ctx);
    registry().owner.remove(&h(p));
    Ok(())
}

#[no_mangle]
pub extern "C" fn cuGraphDestroy(graph: Ptr) -> CUresult {
    entry("cuGraphDestroy", || destroy(graph, Kind::Graph))
}

#[no_mangle]
pub extern "C" fn cuGraphExecDestroy(exec: Ptr) -> CUresult {
    entry("cuGraphExecDestroy", || destroy(exec, Kind::GraphExec))
}
