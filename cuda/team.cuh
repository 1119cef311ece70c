// Teams for per-row (per-sample) code that runs both in CUDA kernels and, for
// the tests, on the host: the code strides its row by `lane` in [0, size),
// calls reduce(v, op) to give every member the team's result (a fixed order:
// the same bits every run) and sync() between phases that share memory.
// WarpTeam, BlockTeam<kSize> and ClusterTeam<kSize, S> (S blocks of a sm_90
// thread block cluster) serve the kernels; HostTeam (a team of one, compiled
// where LOSSX_HOST_TEAM is defined) and tests/host_team.h's ThreadTeam the
// host harnesses in tests/.
// ld/st convert between the storage and the compute type.
#pragma once
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "common.cuh"
#include "hd_math.cuh"

namespace lossx {
namespace cuda {
namespace {

// Storage <-> compute type; the host harnesses instantiate float and double only.
#pragma nv_exec_check_disable
template <typename A, typename T>
LOSSX_HD A ld(const T* p, int64_t j) {
  if constexpr (std::is_same<T, A>::value || std::is_floating_point<T>::value) return static_cast<A>(p[j]);
  else return static_cast<A>(to_acc(p[j]));
}
#pragma nv_exec_check_disable
template <typename T, typename A>
LOSSX_HD void st(T* p, int64_t j, A v) {
  if constexpr (std::is_same<T, A>::value || std::is_floating_point<T>::value) p[j] = static_cast<T>(v);
  else p[j] = from_acc<T>(static_cast<float>(v));  // half types round from float32, as the CPU's
}

struct OpSum {
  template <typename V>
  LOSSX_HD V operator()(V a, V b) const { return a + b; }
};
struct OpMax {  // NaN-ignoring (fmax): callers make NaN rows NaN by other means
  template <typename V>
  LOSSX_HD V operator()(V a, V b) const { return d_max(a, b); }
};
struct OpMin {
  template <typename V>
  LOSSX_HD V operator()(V a, V b) const { return b < a ? b : a; }
};

// NaN-propagating max: a row holding NaN reduces to NaN whatever the order.
struct OpMaxNaN {
  template <typename V>
  LOSSX_HD V operator()(V a, V b) const { return a != a ? a : (b != b || b > a ? b : a); }
};
struct OpSum2 {
  LOSSX_HD float2 operator()(float2 a, float2 b) const { return make_float2(a.x + b.x, a.y + b.y); }
};

template <typename V>
__device__ __forceinline__ V shfl_xor(V v, int off) {
  return __shfl_xor_sync(0xffffffffu, v, off);
}
__device__ __forceinline__ float2 shfl_xor(float2 v, int off) {
  return make_float2(__shfl_xor_sync(0xffffffffu, v.x, off), __shfl_xor_sync(0xffffffffu, v.y, off));
}

struct WarpTeam {
  int lane;
  static constexpr int size = 32;
  template <typename V, class Op>
  __device__ V reduce(V v, Op op) const {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v = op(v, shfl_xor(v, off));
    return v;
  }
  __device__ void sync() const { __syncwarp(); }
};

template <int kSize>
struct BlockTeam {
  static_assert(kSize % 32 == 0 && kSize <= 1024, "a block of whole warps");
  int lane;
  static constexpr int size = kSize;
  void* smem;  // >= kSize / 32 slots of 8 bytes, 8-byte aligned
  // Warp trees, then the warps' values combined in warp order by every thread.
  template <typename V, class Op>
  __device__ V reduce(V v, Op op) const {
    static_assert(sizeof(V) <= 8, "smem holds 8-byte slots");
    V* sm = static_cast<V*>(smem);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v = op(v, shfl_xor(v, off));
    __syncthreads();  // the previous reduction's values have been read
    if ((lane & 31) == 0) sm[lane >> 5] = v;
    __syncthreads();
    V r = sm[0];
#pragma unroll
    for (int w = 1; w < kSize / 32; ++w) r = op(r, sm[w]);
    return r;
  }
  __device__ void sync() const { __syncthreads(); }
};

// S blocks of a thread block cluster (sm_90+) as one team of S * kSize lanes
// (lane = rank * kSize + threadIdx.x): each block's BlockTeam result goes to a
// slot in its shared memory, and every thread combines the S slots in rank
// order through distributed shared memory, so all blocks hold the same bits.
// Two slots alternate between calls: a block writes a slot again only after
// the next call's cluster barrier, which every block reaches only after
// reading that slot. The kernel ends with a cluster barrier so that no block
// exits while another may still read its slots. S = 1 is a BlockTeam.
template <int kSize, int S>
struct ClusterTeam {
  static constexpr int size = kSize * S;
  int lane;
  BlockTeam<kSize> block;
  void* slots;  // 2 slots of 8 bytes in this block's shared memory, 8-byte aligned
  mutable int parity;
  template <typename V, class Op>
  __device__ V reduce(V v, Op op) const {
    const V r = block.reduce(v, op);
    if constexpr (S == 1) {
      return r;
    } else {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
      static_assert(sizeof(V) <= 8, "8-byte slots");
      cooperative_groups::cluster_group cl = cooperative_groups::this_cluster();
      V* slot = reinterpret_cast<V*>(static_cast<char*>(slots) + 8 * parity);
      parity ^= 1;
      if (threadIdx.x == 0) *slot = r;
      cl.sync();
      V out = *cl.map_shared_rank(slot, 0);
#pragma unroll
      for (int q = 1; q < S; ++q) out = op(out, *cl.map_shared_rank(slot, q));
      return out;
#else
      __trap();  // launchers use clusters only where the kernel was built for sm_90+
      return r;
#endif
    }
  }
  __device__ void end() const {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if constexpr (S > 1) cooperative_groups::this_cluster().sync();
#endif
  }
};

#ifdef LOSSX_HOST_TEAM
struct HostTeam {
  int lane = 0;
  static constexpr int size = 1;
  template <typename V, class Op>
  LOSSX_HD V reduce(V v, Op) const { return v; }
  LOSSX_HD void sync() const {}
};
#endif

}  // namespace
}  // namespace cuda
}  // namespace lossx
