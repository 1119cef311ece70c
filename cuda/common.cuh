// Helpers shared by the CUDA kernel families (cuda/*.cu): error statuses,
// storage <-> accumulation type conversion, a deterministic block reduction and
// the device guard. Everything has internal linkage (one copy per .cu file).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstring>

#include "lossx/lossx.h"
#include "status.h"

namespace lossx {
namespace cuda {
namespace {

// ---------------------------------------------------------------- errors ----

inline Status cuda_fail(StatusInfo* info, cudaError_t e, const char* what) {
  // A failed call (cudaMallocAsync out of memory, say) also leaves its error as
  // the thread's last error; the caller's next launch check (PyTorch's
  // C10_CUDA_KERNEL_LAUNCH_CHECK) would then report it as its own. Clear it:
  // the error is reported here. (DeviceGuard::enter cleared anything older.)
  (void)cudaGetLastError();
  char msg[200];
  std::snprintf(msg, sizeof(msg), "CUDA error in %s: %s (%s)", what, cudaGetErrorString(e),
                cudaGetErrorName(e));
  return fail(info, Status::kDeviceError, msg);
}

// Calls that read a flag back to the host (the label and value checks) cannot
// be captured into a CUDA graph: the synchronisation would invalidate the
// capture with an opaque error. Refuse first, before anything is queued, so
// the capture stays valid and the caller learns why.
inline Status refuse_capture(cudaStream_t s, const char* what, StatusInfo* info) {
  cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  const cudaError_t e = cudaStreamIsCapturing(s, &cs);
  if (e != cudaSuccess) return cuda_fail(info, e, "cudaStreamIsCapturing");
  if (cs == cudaStreamCaptureStatusNone) return Status::kOk;
  char msg[240];
  std::snprintf(msg, sizeof(msg),
                "%s reads a check flag back to the host (one small copy and a stream synchronisation), "
                "which CUDA graph capture does not allow; run it outside the captured region",
                what);
  return fail(info, Status::kDeviceError, msg);
}

#define LOSSX_NO_CAPTURE(stream, what)                                       \
  do {                                                                       \
    const Status s_ = refuse_capture((stream), (what), info);                \
    if (s_ != Status::kOk) return s_;                                        \
  } while (0)

#define LOSSX_CU(call)                                     \
  do {                                                     \
    const cudaError_t err_ = (call);                       \
    if (err_ != cudaSuccess) return cuda_fail(info, err_, #call); \
  } while (0)

// ----------------------------------------------------------- type helpers ----

template <typename T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };

// Host-callable too (the conversions are): the host harnesses in tests/ run
// row code on half-type storage.
__host__ __device__ __forceinline__ float to_acc(float v) { return v; }
__host__ __device__ __forceinline__ double to_acc(double v) { return v; }
__host__ __device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__host__ __device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __host__ __device__ __forceinline__ T from_acc(float v);
template <> __host__ __device__ __forceinline__ float from_acc<float>(float v) { return v; }
template <> __host__ __device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half_rn(v); }
template <> __host__ __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <typename T> __device__ __forceinline__ T from_acc(double v) { return static_cast<T>(v); }

// ----------------------------------------------------- block reductions ----

template <typename A>
__device__ __forceinline__ A shfl(A v, int off) {
  return __shfl_xor_sync(0xffffffffu, v, off);
}
template <typename V> __device__ __forceinline__ V combine(V a, V b) { return a + b; }

// Block-wide reduction with a fixed tree (deterministic); every thread gets
// the result. blockDim.x is a multiple of 32 and at most 1024.
template <typename V>
__device__ __forceinline__ V block_reduce(V v, V* smem /* >= 33 entries */) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = combine(v, shfl(v, off));
  __syncthreads();  // smem may still be read by a previous reduction
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  if (warp == 0) {
    V w = smem[lane < nw ? lane : 0];
    if (lane >= nw) w = smem[32];  // identity, set by the caller
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) w = combine(w, shfl(w, off));
    if (lane == 0) smem[0] = w;
  }
  __syncthreads();
  return smem[0];
}

template <typename A>
__device__ __forceinline__ A block_sum(A v, A* smem) {
  if (threadIdx.x == 0) smem[32] = A(0);
  return block_reduce(v, smem);
}

// ------------------------------------------------- reductions, I/O, errors ----

// First stage: per-chunk sums (double) of n accumulation-type values, one block
// of any multiple of 32 threads per chunk of `chunk` values (fixed: determinism).
template <typename A>
__global__ void chunk_sums(const A* v, int64_t n, int64_t chunk, double* part) {
  __shared__ double sm[33];
  const int64_t c0 = static_cast<int64_t>(blockIdx.x) * chunk;
  const int64_t c1 = c0 + chunk < n ? c0 + chunk : n;
  double s = 0;
  for (int64_t i = c0 + threadIdx.x; i < c1; i += blockDim.x) s += static_cast<double>(v[i]);
  s = block_sum(s, sm);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}

// Final stage of a deterministic reduction, launched as <<<1, 1024>>>: the
// partials added with a fixed tree, divided by `divisor` for a mean (nothing to
// add and a divisor of 0 give 0 / 0 = nan, as torch's mean of nothing).
template <typename A>
__global__ void __launch_bounds__(1024) sum_partials(const double* partial, int64_t nparts, bool mean,
                                                     double divisor, A* out) {
  __shared__ double sm[33];
  double s = 0;
  for (int64_t k = threadIdx.x; k < nparts; k += blockDim.x) s += partial[k];
  s = block_sum(s, sm);
  if (threadIdx.x == 0) out[0] = static_cast<A>(mean ? s / divisor : s);
}

// Records position i in an error slot holding the smallest bad position. The
// plain read first keeps an input that is bad everywhere from serialising on
// one atomic per element.
__device__ __forceinline__ void note_bad(unsigned long long* slot, int64_t i) {
  const unsigned long long v = static_cast<unsigned long long>(i);
  if (v < *static_cast<volatile unsigned long long*>(slot)) atomicMin(slot, v);
}

// M elements of p from e0: 16-byte loads when `vec` (p + e0 is then aligned),
// element loads otherwise.
template <typename T, int M>
__device__ __forceinline__ void ld_group(const T* __restrict__ p, int64_t e0, bool vec, T (&v)[M]) {
  if constexpr ((M * sizeof(T)) % 16 == 0) {
    if (vec) {
      const uint4* q = reinterpret_cast<const uint4*>(p + e0);
#pragma unroll
      for (int k = 0; k < static_cast<int>(M * sizeof(T) / 16); ++k) {
        const uint4 r = __ldg(q + k);
        memcpy(reinterpret_cast<char*>(v) + 16 * k, &r, 16);
      }
      return;
    }
  }
#pragma unroll
  for (int e = 0; e < M; ++e) v[e] = p[e0 + e];
}

template <typename T, int M>
__device__ __forceinline__ void st_group(T* __restrict__ p, int64_t e0, bool vec, const T (&v)[M]) {
  if constexpr ((M * sizeof(T)) % 16 == 0) {
    if (vec) {
      uint4* q = reinterpret_cast<uint4*>(p + e0);
#pragma unroll
      for (int k = 0; k < static_cast<int>(M * sizeof(T) / 16); ++k) {
        uint4 r;
        memcpy(&r, reinterpret_cast<const char*>(v) + 16 * k, 16);
        q[k] = r;
      }
      return;
    }
  }
#pragma unroll
  for (int e = 0; e < M; ++e) p[e0 + e] = v[e];
}

// ------------------------------------------------------------ launching ----

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// A storage value copied back to the host, for an error message.
inline double host_value(float v) { return v; }
inline double host_value(double v) { return v; }
inline double host_value(__half v) { return static_cast<double>(__half2float(v)); }
inline double host_value(__nv_bfloat16 v) { return static_cast<double>(__bfloat162float(v)); }

// Makes the device owning `ptr` current for this call (the caller's library
// may have a different current device on this thread) and restores it after.
class DeviceGuard {
 public:
  cudaError_t enter(const void* ptr) {
    cudaError_t e = cudaGetDevice(&prev_);
    if (e != cudaSuccess) return e;
    cudaPointerAttributes attr;
    e = cudaPointerGetAttributes(&attr, ptr);
    if (e != cudaSuccess) return e;
    if (attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged) dev_ = attr.device;
    else dev_ = prev_;
    if (dev_ != prev_) {
      e = cudaSetDevice(dev_);
      if (e != cudaSuccess) return e;
    }
    // A launch error left by earlier, unrelated work (the runtime keeps the
    // thread's last one) would otherwise be read by this call's first launch
    // check and blamed on it. Sticky errors still fail every later call.
    cudaGetLastError();
    return cudaSuccess;
  }
  int device() const { return dev_; }
  ~DeviceGuard() {
    if (dev_ >= 0 && prev_ >= 0 && dev_ != prev_) cudaSetDevice(prev_);
  }

 private:
  int prev_ = -1, dev_ = -1;
};

}  // namespace
}  // namespace cuda
}  // namespace lossx
