// ------------------------------------------------------------------------------------------------
// pool.cuh: what pool.cu (max_pool2d) and mean_dim.cu (mean_dim) share: the launch geometry, the
// params struct and the entry macro.
// ------------------------------------------------------------------------------------------------
#pragma once

#include "common.cuh"

// ------------------------------------------------------------------------------------------------
// geometry
// ------------------------------------------------------------------------------------------------

// Launch rule (kernels/src/pool.rs, kernels/src/mean_dim.rs): block = POOL_THREADS,
// grid = clamp(ceil(n_out / (POOL_THREADS * 4)), 1, 65535); the grid-stride loop covers the rest.
enum : uint32_t { POOL_THREADS = 256 };

// ------------------------------------------------------------------------------------------------
// params (mirrored by kernels/src/pool.rs `PoolParams`, 64 bytes)
// ------------------------------------------------------------------------------------------------

struct PoolParams {
  const void* x;    // T
  void* y;          // T, never aliases x
  uint64_t n_out;   // output elements: outer * inner (mean_dim) or planes * ho * wo (max_pool2d)
  uint32_t d;       // mean_dim: reduced dim size
  uint32_t inner;   // mean_dim: product of the dims after it
  uint32_t h, w;    // max_pool2d: input plane
  uint32_t ho, wo;  // max_pool2d: output plane
  uint32_t kernel;  // max_pool2d
  uint32_t stride;  // max_pool2d
  uint32_t padding; // max_pool2d
  uint32_t _pad;
};

// entries take one PoolParams
#define POOL_ENTRY(NAME, BODY, T)                                                                  \
  extern "C" __global__ void __launch_bounds__(POOL_THREADS) NAME(const PoolParams p) {            \
    BODY<T>(p);                                                                                    \
  }
