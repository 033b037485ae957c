// arch: sm_90a
// Calibration series 2, Hopper steps: the H100 BF16 GEMM worklog (pranjalssh/fast.cu, "Outperforming
// cuBLAS on H100: a worklog"), written here from the README's description of each kernel.
// Layout of the series: A row-major M x K, B column-major K x N (stored N x K, K contiguous),
// C column-major M x N; bf16 inputs, fp32 accumulation. Tensor maps (CUtensorMap, 128-B swizzle,
// box inner dimension 64 bf16 = 128 B) are built by the host and passed as __grid_constant__.
//   hgemm2_tma_wgmma        step 2: one warpgroup per block, TMA loads of a 128x64 A box and a
//                           128x64 B box, wait, 8 x wgmma m64n128k16, wait; 128x128 tiles.
//   hgemm4_warp_specialized step 4: step 2 + producer/consumer: warpgroup 0 issues TMA into a
//                           4-stage ring, warpgroups 1-3 each compute a 64x192 slice of a 192x192
//                           tile with m64n192k16; setmaxnreg moves registers to the consumers.
//   hgemm11_cluster         step 11 (= 5, 6, 7 + Hilbert order + TMA store): persistent blocks
//                           walk a host-made tile schedule (Hilbert order), clusters of 2 CTAs on
//                           the same B columns share the B box by TMA multicast, 2 consumer
//                           warpgroups on 128x256 tiles with m64n256k16, mbarrier parity waits,
//                           3 stages, C staged in shared memory and written by a TMA store.
#include <cuda_bf16.h>

typedef __nv_bfloat16 bf16;

struct alignas(64) TmaDesc {
    unsigned long long v[16];
};

__device__ __forceinline__ unsigned smem_u32(const void *p) {
    return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void mbar_init(unsigned long long *b, unsigned count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(b)), "r"(count));
}

__device__ __forceinline__ void fence_mbar_init() {
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}

__device__ __forceinline__ void mbar_expect_tx(unsigned long long *b, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(b)), "r"(bytes)
                 : "memory");
}

__device__ __forceinline__ void mbar_arrive(unsigned long long *b) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_u32(b)) : "memory");
}

// Arrive on the same barrier in CTA `rank` of the cluster.
__device__ __forceinline__ void mbar_arrive_cluster(unsigned long long *b, unsigned rank) {
    asm volatile(
        "{\n .reg .b32 remote;\n mapa.shared::cluster.u32 remote, %0, %1;\n"
        " mbarrier.arrive.release.cluster.shared::cluster.b64 _, [remote];\n}\n" ::"r"(smem_u32(b)),
        "r"(rank)
        : "memory");
}

__device__ __forceinline__ void mbar_wait(unsigned long long *b, unsigned parity) {
    unsigned done;
    do {
        asm volatile(
            "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
            " selp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done)
            : "r"(smem_u32(b)), "r"(parity)
            : "memory");
    } while (!done);
}

__device__ __forceinline__ void tma_load(void *dst, const TmaDesc *map, unsigned long long *bar, int c0, int c1) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
        " [%0], [%1, {%3, %4}], [%2];" ::"r"(smem_u32(dst)),
        "l"(reinterpret_cast<unsigned long long>(map)), "r"(smem_u32(bar)), "r"(c0), "r"(c1)
        : "memory");
}

__device__ __forceinline__ void tma_load_multicast(void *dst, const TmaDesc *map, unsigned long long *bar, int c0,
                                                   int c1, unsigned short mask) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.multicast::cluster"
        " [%0], [%1, {%3, %4}], [%2], %5;" ::"r"(smem_u32(dst)),
        "l"(reinterpret_cast<unsigned long long>(map)), "r"(smem_u32(bar)), "r"(c0), "r"(c1), "h"(mask)
        : "memory");
}

__device__ __forceinline__ void tma_store(const TmaDesc *map, const void *src, int c0, int c1) {
    asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.tile.bulk_group [%0, {%2, %3}], [%1];" ::"l"(
                     reinterpret_cast<unsigned long long>(map)),
                 "r"(smem_u32(src)), "r"(c0), "r"(c1)
                 : "memory");
    asm volatile("cp.async.bulk.commit_group;" ::: "memory");
    asm volatile("cp.async.bulk.wait_group.read 0;" ::: "memory");
}

// Shared-memory matrix descriptor for a K-major tile with 128-byte swizzle (8 rows x 128 B atoms,
// 1024 B apart).
__device__ __forceinline__ unsigned long long smem_desc(const bf16 *p) {
    const unsigned long long a = smem_u32(p);
    return ((a & 0x3FFFF) >> 4) | ((16ull >> 4) << 16) | ((1024ull >> 4) << 32) | (1ull << 62);
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait0() { asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory"); }

// One m64nNk16 wgmma (bf16 in, f32 accumulate, A and B from shared-memory descriptors): the
// N/2 accumulator registers per thread are asm operands %0.. (WG_R<k>: 16 of them in the
// template, WG_D<n>(i): n of them as in/out operands from d[i]), the descriptors follow.
#define WG_R0 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15"
#define WG_R16 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define WG_R32 "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47"
#define WG_R48 "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define WG_R64 "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79"
#define WG_R80 "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95"
#define WG_R96 "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111"
#define WG_R112 "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
#define WG_D8(i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), "+f"(d[i + 7])
#define WG_D32(i) WG_D8(i), WG_D8(i + 8), WG_D8(i + 16), WG_D8(i + 24)
#define WG_D64(i) WG_D32(i), WG_D32(i + 32)
#define WGMMA_M64N(NN, REGS, DESCS, ...)                                                          \
    __device__ __forceinline__ void wgmma_m64n##NN(float *d, unsigned long long da,                 \
                                                   unsigned long long db) {                         \
        asm volatile("{\n wgmma.mma_async.sync.aligned.m64n" #NN "k16.f32.bf16.bf16 {" REGS "}, "      \
                     DESCS ", 1, 1, 1, 0, 0;\n}\n"                                                    \
                     : __VA_ARGS__                                                                 \
                     : "l"(da), "l"(db));                                                          \
    }

WGMMA_M64N(128, WG_R0 ", " WG_R16 ", " WG_R32 ", " WG_R48, "%64, %65", WG_D64(0))
WGMMA_M64N(192, WG_R0 ", " WG_R16 ", " WG_R32 ", " WG_R48 ", " WG_R64 ", " WG_R80, "%96, %97", WG_D64(0),
           WG_D32(64))
WGMMA_M64N(256, WG_R0 ", " WG_R16 ", " WG_R32 ", " WG_R48 ", " WG_R64 ", " WG_R80 ", " WG_R96 ", " WG_R112,
           "%128, %129", WG_D64(0), WG_D64(64))

// Accumulators of one m64nN wgmma (N/2 floats per thread) to column-major bf16 C.
template <int NN>
__device__ __forceinline__ void store_acc(const float *d, bf16 *C, int M, int N, int m0, int n0) {
    const int lane = threadIdx.x % 32, warp = (threadIdx.x % 128) / 32;
    const int row = m0 + warp * 16 + lane / 4;
    for (int w = 0; w < NN / 16; ++w) {
        const int col = n0 + 16 * w + 2 * (lane % 4);
        const int rr[8] = {0, 0, 8, 8, 0, 0, 8, 8};
        const int cc[8] = {0, 1, 0, 1, 8, 9, 8, 9};
        for (int e = 0; e < 8; ++e) {
            const int r = row + rr[e], c = col + cc[e];
            if (r < M && c < N) C[(size_t)c * M + r] = __float2bfloat16(d[w * 8 + e]);
        }
    }
}

__device__ __forceinline__ bf16 *align1024(unsigned char *p) {
    return reinterpret_cast<bf16 *>((reinterpret_cast<size_t>(p) + 1023) & ~size_t(1023));
}

extern "C" __global__ void __launch_bounds__(128)
    hgemm2_tma_wgmma(int M, int N, int K, bf16 *C, const __grid_constant__ TmaDesc tmA,
                     const __grid_constant__ TmaDesc tmB) {
    extern __shared__ unsigned char smem_raw[];
    bf16 *sA = align1024(smem_raw);
    bf16 *sB = sA + 128 * 64;
    __shared__ unsigned long long bar;
    float d[2][64];
#pragma unroll
    for (int m = 0; m < 2; ++m)
#pragma unroll
        for (int i = 0; i < 64; ++i) d[m][i] = 0.f;
    const int tiles_n = N / 128;
    const int m0 = (blockIdx.x / tiles_n) * 128, n0 = (blockIdx.x % tiles_n) * 128;
    if (threadIdx.x == 0) {
        mbar_init(&bar, 1);
        fence_mbar_init();
    }
    __syncthreads();
    unsigned phase = 0;
    for (int k0 = 0; k0 < K; k0 += 64) {
        if (threadIdx.x == 0) {
            mbar_expect_tx(&bar, 2 * 128 * 64 * 2);
            tma_load(sA, &tmA, &bar, k0, m0);
            tma_load(sB, &tmB, &bar, k0, n0);
        }
        mbar_wait(&bar, phase);
        phase ^= 1;
        wgmma_fence();
#pragma unroll
        for (int m = 0; m < 2; ++m)
#pragma unroll
            for (int kk = 0; kk < 4; ++kk)
                wgmma_m64n128(d[m], smem_desc(sA + m * 64 * 64 + kk * 16), smem_desc(sB + kk * 16));
        wgmma_commit();
        wgmma_wait0();
        __syncthreads();
    }
#pragma unroll
    for (int m = 0; m < 2; ++m) store_acc<128>(d[m], C, M, N, m0 + m * 64, n0);
}

extern "C" __global__ void __launch_bounds__(512)
    hgemm4_warp_specialized(int M, int N, int K, bf16 *C, const __grid_constant__ TmaDesc tmA,
                            const __grid_constant__ TmaDesc tmB) {
    const int QS = 4, BM = 192, BN = 192, BK = 64;
    extern __shared__ unsigned char smem_raw[];
    bf16 *sA = align1024(smem_raw);
    bf16 *sB = sA + QS * BM * BK;
    __shared__ unsigned long long full[QS], empty[QS];
    const int wg = threadIdx.x / 128;
    const int tiles_n = (N + BN - 1) / BN;
    const int m0 = (blockIdx.x / tiles_n) * BM, n0 = (blockIdx.x % tiles_n) * BN;
    const int iters = K / BK;
    if (threadIdx.x == 0) {
        for (int i = 0; i < QS; ++i) {
            mbar_init(&full[i], 1);
            mbar_init(&empty[i], 3);
        }
        fence_mbar_init();
    }
    __syncthreads();
    if (wg == 0) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;");
        if (threadIdx.x == 0) {
            for (int it = 0; it < iters; ++it) {
                const int s = it % QS;
                if (it >= QS) mbar_wait(&empty[s], ((it / QS) - 1) & 1);
                mbar_expect_tx(&full[s], 2 * BM * BK * 2);
                tma_load(sA + s * BM * BK, &tmA, &full[s], it * BK, m0);
                tma_load(sB + s * BN * BK, &tmB, &full[s], it * BK, n0);
            }
        }
    } else {
        asm volatile("setmaxnreg.inc.sync.aligned.u32 232;");
        float d[96];
        for (int i = 0; i < 96; ++i) d[i] = 0.f;
        for (int it = 0; it < iters; ++it) {
            const int s = it % QS;
            mbar_wait(&full[s], (it / QS) & 1);
            wgmma_fence();
            for (int kk = 0; kk < 4; ++kk)
                wgmma_m64n192(d, smem_desc(sA + s * BM * BK + (wg - 1) * 64 * BK + kk * 16),
                              smem_desc(sB + s * BN * BK + kk * 16));
            wgmma_commit();
            wgmma_wait0();
            if (threadIdx.x % 128 == 0) mbar_arrive(&empty[s]);
        }
        store_acc<192>(d, C, M, N, m0 + (wg - 1) * 64, n0);
    }
}

extern "C" __global__ void __cluster_dims__(2, 1, 1) __launch_bounds__(384)
    hgemm11_cluster(int M, int N, int K, const int *schedule, int tiles_per_block,
                    const __grid_constant__ TmaDesc tmA, const __grid_constant__ TmaDesc tmB,
                    const __grid_constant__ TmaDesc tmC) {
    const int QS = 3, BM = 128, BN = 256, BK = 64;
    extern __shared__ unsigned char smem_raw[];
    bf16 *sA = align1024(smem_raw);
    bf16 *sB = sA + QS * BM * BK;
    bf16 *sC = sB + QS * BN * BK;
    __shared__ unsigned long long full[QS], empty[QS];
    unsigned rank;
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(rank));
    const int wg = threadIdx.x / 128;
    const int tiles_m = M / BM;
    const int iters = K / BK;
    if (threadIdx.x == 0) {
        for (int i = 0; i < QS; ++i) {
            mbar_init(&full[i], 1);
            mbar_init(&empty[i], 4);  // 2 consumer warpgroups x 2 CTAs (the B box is shared)
        }
        fence_mbar_init();
    }
    asm volatile("barrier.cluster.arrive;\nbarrier.cluster.wait;" ::: "memory");
    if (wg == 0) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;");
        if (threadIdx.x == 0) {
            int g = 0;
            for (int t = 0; t < tiles_per_block; ++t) {
                const int tile = schedule[blockIdx.x * tiles_per_block + t];
                const int m0 = (tile % tiles_m) * BM, n0 = (tile / tiles_m) * BN;
                for (int it = 0; it < iters; ++it, ++g) {
                    const int s = g % QS;
                    if (g >= QS) mbar_wait(&empty[s], ((g / QS) - 1) & 1);
                    mbar_expect_tx(&full[s], (BM + BN) * BK * 2);
                    tma_load(sA + s * BM * BK, &tmA, &full[s], it * BK, m0);
                    tma_load_multicast(sB + s * BN * BK + rank * 128 * BK, &tmB, &full[s], it * BK,
                                       n0 + rank * 128, 0x3);
                }
            }
        }
    } else {
        asm volatile("setmaxnreg.inc.sync.aligned.u32 232;");
        float d[128];
        int g = 0;
        for (int t = 0; t < tiles_per_block; ++t) {
            const int tile = schedule[blockIdx.x * tiles_per_block + t];
            const int m0 = (tile % tiles_m) * BM, n0 = (tile / tiles_m) * BN;
            for (int i = 0; i < 128; ++i) d[i] = 0.f;
            for (int it = 0; it < iters; ++it, ++g) {
                const int s = g % QS;
                mbar_wait(&full[s], (g / QS) & 1);
                wgmma_fence();
                for (int kk = 0; kk < 4; ++kk)
                    wgmma_m64n256(d, smem_desc(sA + s * BM * BK + (wg - 1) * 64 * BK + kk * 16),
                                  smem_desc(sB + s * BN * BK + kk * 16));
                wgmma_commit();
                wgmma_wait0();
                if (threadIdx.x % 128 == 0) {
                    mbar_arrive(&empty[s]);
                    mbar_arrive_cluster(&empty[s], rank ^ 1);
                }
            }
            // C tile to shared memory (column-major box 128 x 256), then one TMA store.
            const int lane = threadIdx.x % 32, warp = (threadIdx.x % 128) / 32;
            const int row = (wg - 1) * 64 + warp * 16 + lane / 4;
            for (int w = 0; w < 16; ++w) {
                const int col = 16 * w + 2 * (lane % 4);
                const int rr[8] = {0, 0, 8, 8, 0, 0, 8, 8};
                const int cc[8] = {0, 1, 0, 1, 8, 9, 8, 9};
                for (int e = 0; e < 8; ++e) sC[(col + cc[e]) * BM + row + rr[e]] = __float2bfloat16(d[w * 8 + e]);
            }
            asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
            asm volatile("bar.sync 1, 256;" ::: "memory");
            if (threadIdx.x == 128) tma_store(&tmC, sC, m0, n0);
            asm volatile("bar.sync 1, 256;" ::: "memory");
        }
    }
}
