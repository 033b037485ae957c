// A minimal CuTe TMA copy (independent PTX for issue 17), in the style of CUTLASS 4.2's
// test/unit/cute/hopper/tma_load_testbed.hpp / tma_store_testbed.hpp: one (64 × BN) half tile per
// block, loaded global → shared by SM90_TMA_LOAD (completing on an mbarrier transaction count) into
// a GMMA K-major swizzled shared layout (SW128 / SW64 / SW32 atoms), read back through CuTe's
// swizzled layout into `out` (plain stores: checks the TMA's swizzle against CuTe's), negated into
// a second shared tile by CuTe's layout and stored shared → global by SM90_TMA_STORE (bulk_group
// commit / wait). The TMA atoms' types come from make_tma_atom (whose descriptor encoding is
// host-only); the kernel takes them as __grid_constant__ parameters.
// Global tensors: (m, n) row-major half; grid (m / 64, n / BN), 128 threads.
#include <cute/tensor.hpp>
#include <cutlass/arch/barrier.h>

using namespace cute;

template <class T, class SmemLayout>
struct CopyStorage
{
  alignas(1024) cute::ArrayEngine<T, cosize_v<SmemLayout>> A;
  alignas(1024) cute::ArrayEngine<T, cosize_v<SmemLayout>> B;
  alignas(8) uint64_t mbar;
};

template <class T, class SmemLayout, class TmaLoad, class TmaStore>
__device__ __forceinline__ void
tma_copy_device(int m, int n, TmaLoad const& tma_load, TmaStore const& tma_store, T* out)
{
  extern __shared__ char shared_memory[];
  using Storage = CopyStorage<T, SmemLayout>;
  Storage& smem = *reinterpret_cast<Storage*>(shared_memory);
  Tensor sA = make_tensor(make_smem_ptr(smem.A.begin()), SmemLayout{});   // (BM,BN,1)
  Tensor sB = make_tensor(make_smem_ptr(smem.B.begin()), SmemLayout{});   // (BM,BN,1)

  auto tiler = make_shape(size<0>(SmemLayout{}), size<1>(SmemLayout{}));
  auto coord = make_coord(blockIdx.x, _);
  Tensor mS = tma_load.get_tma_tensor(make_shape(m, n));                 // (M,N) TMA coords
  Tensor mD = tma_store.get_tma_tensor(make_shape(m, n));
  Tensor mO = make_tensor(make_gmem_ptr(out), make_shape(m, n), make_stride(n, Int<1>{}));
  Tensor gS = local_tile(mS, tiler, coord);                                // (BM,BN,n/BN)
  Tensor gD = local_tile(mD, tiler, coord);
  Tensor gO = local_tile(mO, tiler, coord)(_,_,blockIdx.y);                // (BM,BN)

  // As the tutorial GEMM: the TMA takes mode 0 of the (TMA, rest) tensors, no multicast.
  auto [tSgS, tSsA] = tma_partition(tma_load, Int<0>{}, Layout<_1>{},
                                    group_modes<0,2>(sA), group_modes<0,2>(gS));  // (TMA,n/BN) (TMA,1)
  auto [tDgD, tDsB] = tma_partition(tma_store, Int<0>{}, Layout<_1>{},
                                    group_modes<0,2>(sB), group_modes<0,2>(gD));

  constexpr int tx_bytes = decltype(size(SmemLayout{}))::value * int(sizeof(T));
  using Bar = cutlass::arch::ClusterTransactionBarrier;
  if (threadIdx.x == 0) {
    Bar::init(&smem.mbar, 1);
  }
  cutlass::arch::fence_barrier_init();
  __syncthreads();
  if (threadIdx.x == 0) {
    Bar::arrive_and_expect_tx(&smem.mbar, tx_bytes);
    copy(tma_load.with(smem.mbar), tSgS(_,blockIdx.y), tSsA(_,0));
  }
  Bar::wait(&smem.mbar, 0);

  for (int i = threadIdx.x; i < size(sA); i += blockDim.x) {
    gO(i) = sA(i);
    sB(i) = -sA(i);
  }
  tma_store_fence();
  __syncthreads();
  if (threadIdx.x == 0) {
    copy(tma_store, tDsB(_,0), tDgD(_,blockIdx.y));
    tma_store_arrive();
    tma_store_wait<0>();
  }
}

using T = half_t;
using GL = decltype(make_layout(make_shape(int(0), int(0)), make_stride(int(0), Int<1>{})));
template <class Atom, int BN>
using SL = decltype(tile_to_shape(Atom{}, make_shape(Int<64>{}, Int<BN>{}, Int<1>{})));
template <class S>
using Load = decltype(make_tma_atom(SM90_TMA_LOAD{}, make_tensor(make_gmem_ptr((T const*)nullptr), GL{}),
                                   S{}(_,_,0), make_shape(size<0>(S{}), size<1>(S{}))));
template <class S>
using Store = decltype(make_tma_atom(SM90_TMA_STORE{}, make_tensor(make_gmem_ptr((T*)nullptr), GL{}),
                                    S{}(_,_,0), make_shape(size<0>(S{}), size<1>(S{}))));

#define CUTE_TMA_COPY_ENTRY(NAME, ATOM, BN)                                                       \
  extern "C" __global__ void __launch_bounds__(128)                                               \
  NAME(int m, int n, CUTE_GRID_CONSTANT Load<SL<ATOM, BN>> const tma_load,                        \
       CUTE_GRID_CONSTANT Store<SL<ATOM, BN>> const tma_store, T* out)                            \
  {                                                                                               \
    tma_copy_device<T, SL<ATOM, BN>>(m, n, tma_load, tma_store, out);                             \
  }

CUTE_TMA_COPY_ENTRY(cute_tma_copy_sw128, GMMA::Layout_K_SW128_Atom<T>, 64)
CUTE_TMA_COPY_ENTRY(cute_tma_copy_sw64, GMMA::Layout_K_SW64_Atom<T>, 32)
CUTE_TMA_COPY_ENTRY(cute_tma_copy_sw32, GMMA::Layout_K_SW32_Atom<T>, 16)
