// ------------------------------------------------------------------------------------------------
// sm90.cuh: sm_90a (Hopper) building blocks shared by the *_sm90.cu modules (inline PTX): the
// wgmma shared-memory matrix descriptor, wgmma fence / commit / wait, the generic -> async proxy
// fence, and the accumulator operand lists of the wgmma.mma_async wrappers.
// ------------------------------------------------------------------------------------------------
#pragma once

#include "common.cuh"

// 64-bit wgmma shared-memory matrix descriptor: start address, leading / stride byte offsets (all
// in 16-byte units), swizzle mode 1 = 128B (bits 62-63); base offset 0 (atoms 1024-byte aligned).
__device__ __forceinline__ uint64_t wgmma_desc(uint32_t smem_addr, uint32_t lbo_bytes, uint32_t sbo_bytes) {
  return (uint64_t)((smem_addr & 0x3ffffu) >> 4) | ((uint64_t)((lbo_bytes >> 4) & 0x3fffu) << 16) |
         ((uint64_t)((sbo_bytes >> 4) & 0x3fffu) << 32) | (1ull << 62);
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Generic-proxy shared writes (cp.async, st.shared) visible to the async proxy (wgmma operands).
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// Accumulator operand lists of the wgmma.mma_async wrappers (accumulators `float (&d)[n]` first):
// WG_R<n> the asm text "%0, ..., %(n-1)" (inline asm needs literal operand numbers), WG_D<n> the
// matching "+f"(d[i]) constraints.
#define WG_R8 "%0, %1, %2, %3, %4, %5, %6, %7"
#define WG_R16 WG_R8 ", %8, %9, %10, %11, %12, %13, %14, %15"
#define WG_R20 WG_R16 ", %16, %17, %18, %19"
#define WG_R32 WG_R20 ", %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define WG_R40 WG_R32 ", %32, %33, %34, %35, %36, %37, %38, %39"
#define WG_R64 WG_R40 ", %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define WG_R80 WG_R64 ", %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79"
#define WG_R128 WG_R80 ", %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
#define WG_D4(i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3])
#define WG_D8 WG_D4(0), WG_D4(4)
#define WG_D16 WG_D8, WG_D4(8), WG_D4(12)
#define WG_D20 WG_D16, WG_D4(16)
#define WG_D32 WG_D20, WG_D4(20), WG_D4(24), WG_D4(28)
#define WG_D40 WG_D32, WG_D4(32), WG_D4(36)
#define WG_D64 WG_D40, WG_D4(40), WG_D4(44), WG_D4(48), WG_D4(52), WG_D4(56), WG_D4(60)
#define WG_D80 WG_D64, WG_D4(64), WG_D4(68), WG_D4(72), WG_D4(76)
#define WG_D128 WG_D80, WG_D4(80), WG_D4(84), WG_D4(88), WG_D4(92), WG_D4(96), WG_D4(100), WG_D4(104), WG_D4(108), WG_D4(112), WG_D4(116), WG_D4(120), WG_D4(124)

// ------------------------------------------------------------------------------------------------
// hopper::  mbarrier / TMA wrappers and the 128-byte CUtensorMap param type, shared by the TMA
// modules (gemm_sm90, gemm_fp8_sm90).
// ------------------------------------------------------------------------------------------------
namespace hopper {

struct __align__(64) TmaDesc {
  uint64_t w[16];
};

__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count));
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred done;\nWAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT_%=;\n}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}
// TMA 3D tile load of box (c0, c1, c2) of `map` into shared `dst`, completing on mbarrier `bar`.
__device__ __forceinline__ void tma_load_3d(uint32_t dst, const TmaDesc* map, uint32_t bar, int32_t c0, int32_t c1,
                                            int32_t c2) {
  asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, "
               "%4}], [%5];\n" ::"r"(dst),
               "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(bar)
               : "memory");
}
// TMA 4D tile load of box (c0, c1, c2, c3) of `map` into shared `dst`, completing on mbarrier `bar`.
__device__ __forceinline__ void tma_load_4d(uint32_t dst, const TmaDesc* map, uint32_t bar, int32_t c0, int32_t c1,
                                            int32_t c2, int32_t c3) {
  asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, "
               "%4, %5}], [%6];\n" ::"r"(dst),
               "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(bar)
               : "memory");
}
// wgmma_wait<N> with the R accumulators as operands: no read or write of them moves across it.
template <uint32_t N, uint32_t R> __device__ __forceinline__ void wgmma_wait_acc(float (&d)[R]) {
#pragma unroll
  for (uint32_t i = 0; i < R; ++i) asm volatile("" : "+f"(d[i])::"memory");
  wgmma_wait<N>();
#pragma unroll
  for (uint32_t i = 0; i < R; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
// Two f32 as e4m3 (round to nearest even, saturating to +-448): `lo` in bits 0-7, `hi` in 8-15.
__device__ __forceinline__ uint16_t f32x2_to_e4m3x2(float lo, float hi) {
  uint16_t r;
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;\n" : "=h"(r) : "f"(hi), "f"(lo));
  return r;
}

} // namespace hopper
