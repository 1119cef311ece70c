// Pairwise/embedding family on CUDA: triplet_margin_loss and
// cosine_embedding_loss over `rows x dim` rows, with the semantics of
// csrc/cpu/embedding.cc (the reference: torch's formulas, its gradient at a
// zero distance, the swap tie split, the +-1 target rule).
//
// One kernel (pair_rows), a team of threads per row: a warp for rows shorter
// than kBlockTeamDim elements, the whole 256-thread block for longer ones (the
// choice depends on the shape only). Per row, as the CPU loop:
//   pass 1  the row's three sums (distances^p of a-p, a-n, p-n; or x1.x2,
//           |x1|^2, |x2|^2) in the compute type (float32 for float32 and half
//           inputs, float64 for float64), 16-byte loads when the rows are
//           aligned, team-reduced with a fixed tree;
//   finish  in double, by every thread of the team (same values, no broadcast):
//           the row's loss and the coefficients of its gradient combination;
//   pass 2  (gradients wanted) the row re-read, from L1/L2, and each input's
//           gradient written once.
// Row losses go to the output ("none"), or to a workspace summed in fixed
// chunks of rows, then by one block: deterministic, as the other families. The
// gradient scale (1/rows for a mean, times grad_output) is computed on the
// device, so nothing waits for the host except cosine_embedding_loss's target
// rule (every target must be +1 or -1: checked in the sweep, reported after one
// stream synchronisation with the CPU path's message). Like pointwise.cu, this
// file is built without --use_fast_math.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>

#include "common.cuh"
#include "hd_math.cuh"
#include "lossx/cuda.h"
#include "status.h"

namespace lossx {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kBlockTeamDim = 2048;  // rows this long or longer: a block per row
constexpr int64_t kRowChunk = 4096;      // rows per first-stage partial of a reduction

// Helpers and functors are __host__ __device__: tests/pair_functors_host.cu
// compiles them for the host (LOSSX_PAIR_FUNCTORS_ONLY) to check them against
// the CPU kernels on machines without a GPU.
// 0 at 0, else sign(x) (torch's sgn, which norm's backward uses for p = 1).
template <typename A>
LOSSX_HD A sgn(A x) {
  return x == A(0) ? A(0) : d_copysign(A(1), x);
}

// |x|^q for q > 0 as the CPU computes it (exp(q log|x|)), exactly 0 at x = 0.
template <typename A>
LOSSX_HD A abs_pow(A x, A q) {
  const A ax = d_abs(x);
  return ax == A(0) ? A(0) : d_exp(q * d_log(ax));
}

template <typename A>
struct Sum3 {
  A v[3];
};
template <typename A>
__device__ __forceinline__ Sum3<A> combine(Sum3<A> a, Sum3<A> b) {
  return Sum3<A>{{a.v[0] + b.v[0], a.v[1] + b.v[1], a.v[2] + b.v[2]}};
}
template <typename A>
__device__ __forceinline__ Sum3<A> shfl(Sum3<A> v, int off) {
  return Sum3<A>{{__shfl_xor_sync(0xffffffffu, v.v[0], off), __shfl_xor_sync(0xffffffffu, v.v[1], off),
                  __shfl_xor_sync(0xffffffffu, v.v[2], off)}};
}

// The team's sums, every thread of the team gets them (fixed tree).
template <int kTeam, typename A>
__device__ __forceinline__ Sum3<A> team_sum(Sum3<A> v, Sum3<A>* smem) {
  if constexpr (kTeam == 32) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v = combine(v, shfl(v, off));
    return v;
  } else {
    if (threadIdx.x == 0) smem[32] = Sum3<A>{{A(0), A(0), A(0)}};
    return block_reduce(v, smem);
  }
}

// ------------------------------------------------------------ functors ----
// The CPU's Triplet / Cosine (csrc/cpu/embedding.cc) element by element:
// acc adds one element to the row's sums, finish (double) gives the row's loss
// and gradient coefficients, grad gives each input's gradient element.

// kMode: 1 (p = 1), 2 (p = 2), 0 (any other p > 0). Sums: dist(a, p)^p,
// dist(a, n)^p, dist(p, n)^p (swap only), dist(u, v) = ||u - v + eps||_p.
template <int kMode>
struct TripletRow {
  static constexpr int kIn = 3;
  double margin, p, eps;
  bool swap;

  template <typename A>
  __host__ __device__ A pw(A x) const {
    if (kMode == 1) return d_abs(x);
    if (kMode == 2) return x * x;
    return abs_pow(x, static_cast<A>(p));
  }
  // The elementwise factor of norm's gradient (the row factor is in the coefficients).
  template <typename A>
  __host__ __device__ A h(A x) const {
    if (kMode == 1) return sgn(x);
    if (kMode == 2) return x;
    return d_copysign(abs_pow(x, static_cast<A>(p - 1)), x);
  }
  template <typename A>
  __host__ __device__ void acc(A a, A pos, A neg, Sum3<A>& s) const {
    const A e = static_cast<A>(eps);
    s.v[0] += pw((a - pos) + e);
    s.v[1] += pw((a - neg) + e);
    if (swap) s.v[2] += pw((pos - neg) + e);
  }
  __host__ __device__ double root(double s) const {
    if (kMode == 1) return s;
    if (kMode == 2) return sqrt(s);
    return pow(s, 1.0 / p);
  }
  // 1 (p = 1), else 1 / norm^(p-1), 0 at norm 0 (torch's masked_fill).
  __host__ __device__ double norm_scale(double dist) const {
    if (kMode == 1) return 1.0;
    if (dist == 0.0) return 0.0;
    return kMode == 2 ? 1.0 / dist : 1.0 / pow(dist, p - 1);
  }
  __host__ __device__ double finish(const double* s, int64_t, double scale, bool want_grad, double* c) const {
    const double dap = root(s[0]), dan = root(s[1]);
    double dneg = dan, wan = 1.0, wpn = 0.0, dpn = 0.0;
    if (swap) {
      // torch.minimum's gradient: all to the smaller, split in half on a tie.
      dpn = root(s[2]);
      if (dpn < dan) {
        dneg = dpn, wan = 0.0, wpn = 1.0;
      } else if (dpn == dan) {
        wan = wpn = 0.5;
      }
    }
    const double z = margin + dap - dneg;
    if (want_grad) {
      const double g = z >= 0.0 ? scale : 0.0;  // clamp_min passes the gradient at 0
      c[0] = g * norm_scale(dap);
      c[1] = g * wan * norm_scale(dan);
      c[2] = swap ? g * wpn * norm_scale(dpn) : 0.0;
    }
    return z < 0.0 ? 0.0 : z;  // NaN stays NaN
  }
  template <typename A>
  __host__ __device__ void grad(A a, A pos, A neg, const A* c, A* g) const {
    const A e = static_cast<A>(eps);
    const A tap = c[0] * h((a - pos) + e), tn = c[1] * h((a - neg) + e);
    g[0] = tap - tn;
    g[1] = -tap;
    g[2] = tn;
    if (swap) {
      const A tpn = c[2] * h((pos - neg) + e);
      g[1] -= tpn;
      g[2] += tpn;
    }
  }
};

// Sums: x1.x2, |x1|^2, |x2|^2. target (accumulation type) is +1 or -1 per row.
template <typename A>
struct CosineRow {
  static constexpr int kIn = 2;
  double margin;
  const A* target;

  __host__ __device__ void acc(A x1, A x2, A, Sum3<A>& s) const {
    s.v[0] = d_fma(x1, x2, s.v[0]);
    s.v[1] = d_fma(x1, x1, s.v[1]);
    s.v[2] = d_fma(x2, x2, s.v[2]);
  }
  __host__ __device__ double finish(const double* s, int64_t i, double scale, bool want_grad, double* c) const {
    constexpr double kEps = 1e-12;  // torch's EPSILON in cosine_embedding_loss
    const double m1 = s[1] + kEps, m2 = s[2] + kEps;
    const double denom = sqrt(m1 * m2);
    const double cos = s[0] / denom;
    const double y = static_cast<double>(target[i]);
    double loss, dcos;
    if (y > 0) {
      loss = 1.0 - cos;
      dcos = -1.0;
    } else {
      const double z = cos - margin;
      loss = z < 0.0 ? 0.0 : z;
      dcos = z >= 0.0 ? 1.0 : 0.0;
    }
    if (want_grad) {
      // d cos / d x1 = x2 / denom - cos x1 / m1 (and symmetrically for x2).
      const double k = scale * dcos;
      c[0] = -k * cos / m1;
      c[1] = k / denom;
      c[2] = -k * cos / m2;
    }
    return loss;
  }
  __host__ __device__ void grad(A x1, A x2, A, const A* c, A* g) const {
    g[0] = d_fma(c[0], x1, c[1] * x2);
    g[1] = d_fma(c[2], x2, c[1] * x1);
  }
  __host__ __device__ bool bad_row(int64_t i) const {
    const A y = target[i];
    return !(y == A(1) || y == A(-1));
  }
};

#ifndef LOSSX_PAIR_FUNCTORS_ONLY
// ---------------------------------------------------------------- kernel ----

template <typename T>
struct PairParams {
  using A = typename AccOf<T>::type;
  int64_t N, D;
  const T* x[3];
  T* g[3];  // all null: forward only
  bool want_grad, vec, per_row_go;
  double base_scale;  // 1/N for a mean, else 1
  const A* go;        // one value, or N ("none"); nullptr = 1
  A* row_loss;        // N values: the output ("none") or the workspace
  unsigned long long* bad;  // smallest bad target row (cosine)
};

template <class F>
__device__ __forceinline__ bool row_is_bad(const F& f, int64_t i) {
  if constexpr (F::kIn == 2) return f.bad_row(i);
  else return false;
}

template <typename T, class F, int kTeam>
__global__ void __launch_bounds__(kThreads) pair_rows(const PairParams<T> p, const F f) {
  using A = typename AccOf<T>::type;
  constexpr int G = 16 / sizeof(T);
  constexpr int kIn = F::kIn;
  __shared__ Sum3<A> sm[33];
  const int lane = kTeam == 32 ? static_cast<int>(threadIdx.x & 31) : static_cast<int>(threadIdx.x);
  constexpr int kTeamsPerBlock = kThreads / kTeam;
  const int64_t team0 = static_cast<int64_t>(blockIdx.x) * kTeamsPerBlock + threadIdx.x / kTeam;
  const int64_t nteams = static_cast<int64_t>(gridDim.x) * kTeamsPerBlock;
  const int64_t D = p.D, ngroups = p.vec ? D / G : 0;
  for (int64_t i = team0; i < p.N; i += nteams) {
    const int64_t off = i * D;
    const T* x[3];
#pragma unroll
    for (int k = 0; k < 3; ++k) x[k] = k < kIn ? p.x[k] + off : nullptr;

    // Pass 1: the sums, groups of 16 bytes (vec) or single elements.
    Sum3<A> s{{A(0), A(0), A(0)}};
    for (int64_t gi = lane; gi < ngroups; gi += kTeam) {
      T v[3][G];
#pragma unroll
      for (int k = 0; k < kIn; ++k) ld_group<T, G>(x[k], gi * G, true, v[k]);
#pragma unroll
      for (int e = 0; e < G; ++e)
        f.acc(to_acc(v[0][e]), to_acc(v[1][e]), kIn > 2 ? to_acc(v[2][e]) : A(0), s);
    }
    for (int64_t j = ngroups * G + lane; j < D; j += kTeam)
      f.acc(to_acc(x[0][j]), to_acc(x[1][j]), kIn > 2 ? to_acc(x[2][j]) : A(0), s);
    s = team_sum<kTeam>(s, sm);

    const double sums[3] = {static_cast<double>(s.v[0]), static_cast<double>(s.v[1]), static_cast<double>(s.v[2])};
    double scale = 0.0;
    if (p.want_grad) scale = p.base_scale * (p.go ? static_cast<double>(p.go[p.per_row_go ? i : 0]) : 1.0);
    double c[3] = {0.0, 0.0, 0.0};
    const double loss = f.finish(sums, i, scale, p.want_grad, c);
    if (lane == 0) {
      p.row_loss[i] = static_cast<A>(loss);
      if (row_is_bad(f, i)) note_bad(p.bad, i);
    }
    if (!p.want_grad) continue;

    // Pass 2: the gradients.
    const A ca[3] = {static_cast<A>(c[0]), static_cast<A>(c[1]), static_cast<A>(c[2])};
    for (int64_t gi = lane; gi < ngroups; gi += kTeam) {
      T v[3][G], o[3][G];
#pragma unroll
      for (int k = 0; k < kIn; ++k) ld_group<T, G>(x[k], gi * G, true, v[k]);
#pragma unroll
      for (int e = 0; e < G; ++e) {
        A g[3];
        f.grad(to_acc(v[0][e]), to_acc(v[1][e]), kIn > 2 ? to_acc(v[2][e]) : A(0), ca, g);
#pragma unroll
        for (int k = 0; k < kIn; ++k) o[k][e] = from_acc<T>(g[k]);
      }
#pragma unroll
      for (int k = 0; k < kIn; ++k)
        if (p.g[k]) st_group<T, G>(p.g[k] + off, gi * G, true, o[k]);
    }
    for (int64_t j = ngroups * G + lane; j < D; j += kTeam) {
      A g[3];
      f.grad(to_acc(x[0][j]), to_acc(x[1][j]), kIn > 2 ? to_acc(x[2][j]) : A(0), ca, g);
#pragma unroll
      for (int k = 0; k < kIn; ++k)
        if (p.g[k]) p.g[k][off + j] = from_acc<T>(g[k]);
    }
  }
}

// ---------------------------------------------------------------- launch ----

template <typename T, class F, int kTeam>
cudaError_t launch_rows(const PairParams<T>& p, const F& f, cudaStream_t stream) {
  constexpr int64_t kTeamsPerBlock = kThreads / kTeam;
  int64_t blocks = (p.N + kTeamsPerBlock - 1) / kTeamsPerBlock;
  if (blocks > 65535) blocks = 65535;  // grid-stride over the rest: the rows are independent
  pair_rows<T, F, kTeam><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p, f);
  return cudaGetLastError();
}

template <typename T, class F>
Status launch(const PairwiseArgs& a, const F& f, StatusInfo* info) {
  using A = typename AccOf<T>::type;
  constexpr int G = 16 / sizeof(T);
  DeviceGuard guard;
  LOSSX_CU(guard.enter(a.loss_out));
  cudaStream_t stream = static_cast<cudaStream_t>(a.stream);
  const int64_t N = a.rows;
  const bool none = a.reduction == Reduction::kNone;
  const bool check = F::kIn == 2;  // cosine's target rule
  if (check) LOSSX_NO_CAPTURE(stream, "cosine_embedding_loss");

  PairParams<T> p;
  p.N = N;
  p.D = a.dim;
  p.x[0] = static_cast<const T*>(a.x0);
  p.x[1] = static_cast<const T*>(a.x1);
  p.x[2] = F::kIn == 3 ? static_cast<const T*>(a.x2) : nullptr;
  p.g[0] = static_cast<T*>(a.grad0);
  p.g[1] = static_cast<T*>(a.grad1);
  p.g[2] = F::kIn == 3 ? static_cast<T*>(a.grad2) : nullptr;
  p.want_grad = p.g[0] || p.g[1] || p.g[2];
  p.vec = a.dim % G == 0;
  for (int k = 0; k < 3; ++k) p.vec = p.vec && aligned16(p.x[k]) && aligned16(p.g[k]);
  p.per_row_go = none;
  p.base_scale = a.reduction == Reduction::kMean ? 1.0 / static_cast<double>(N) : 1.0;
  p.go = static_cast<const A*>(a.grad_output);

  // Workspace: [error slot][row losses][chunk partials].
  const int64_t nchunks = (N + kRowChunk - 1) / kRowChunk;
  const size_t slot_bytes = 16;
  const size_t rows_off = slot_bytes;
  const size_t part_off = (rows_off + (none ? 0 : sizeof(A) * static_cast<size_t>(N)) + 15) & ~size_t(15);
  const size_t bytes = part_off + (none ? 0 : sizeof(double) * static_cast<size_t>(nchunks));
  void* ws = nullptr;
  if (check || !none) LOSSX_CU(cudaMallocAsync(&ws, bytes, stream));
  char* wsb = static_cast<char*>(ws);
  p.bad = check ? reinterpret_cast<unsigned long long*>(wsb) : nullptr;
  p.row_loss = none ? static_cast<A*>(a.loss_out) : reinterpret_cast<A*>(wsb + rows_off);
  double* part = none ? nullptr : reinterpret_cast<double*>(wsb + part_off);

  cudaError_t err = cudaSuccess;
  const char* where = "";
  auto step = [&](cudaError_t e, const char* w) {
    if (err == cudaSuccess && e != cudaSuccess) {
      err = e;
      where = w;
    }
  };
  if (check) step(cudaMemsetAsync(p.bad, 0xff, 8, stream), "cudaMemsetAsync(error slot)");
  if (N > 0 && err == cudaSuccess) {
    step(a.dim >= kBlockTeamDim ? launch_rows<T, F, kThreads>(p, f, stream) : launch_rows<T, F, 32>(p, f, stream),
         "pair_rows launch");
  }
  if (!none && err == cudaSuccess) {
    if (nchunks > 0) {
      chunk_sums<A><<<static_cast<unsigned>(nchunks), kThreads, 0, stream>>>(p.row_loss, N, kRowChunk, part);
      step(cudaGetLastError(), "chunk_sums launch");
    }
    if (err == cudaSuccess) {
      sum_partials<A><<<1, 1024, 0, stream>>>(part, nchunks, a.reduction == Reduction::kMean,
                                              static_cast<double>(N), static_cast<A*>(a.loss_out));
      step(cudaGetLastError(), "sum_partials launch");
    }
  }
  unsigned long long bad = ~0ull;
  if (check && err == cudaSuccess)
    step(cudaMemcpyAsync(&bad, p.bad, sizeof(bad), cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync(error slot)");
  if (ws) step(cudaFreeAsync(ws, stream), "cudaFreeAsync");
  if (check && err == cudaSuccess) step(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  if (err != cudaSuccess) return cuda_fail(info, err, where);
  if (check && bad != ~0ull) {
    const int64_t pos = static_cast<int64_t>(bad);
    A y;
    LOSSX_CU(cudaMemcpyAsync(&y, static_cast<const A*>(a.target) + pos, sizeof(A), cudaMemcpyDeviceToHost, stream));
    LOSSX_CU(cudaStreamSynchronize(stream));
    const double v = static_cast<double>(y);
    char msg[160];
    std::snprintf(msg, sizeof(msg), "cosine_embedding_loss: target at position %lld is %g; it must be 1 or -1",
                  static_cast<long long>(pos), v);
    return fail(info, Status::kInvalidArgument, msg, pos, value_field(v));
  }
  return Status::kOk;
}

template <typename T>
Status pairwise_typed(const PairwiseArgs& a, StatusInfo* info) {
  using A = typename AccOf<T>::type;
  if (a.loss == PairLoss::kCosine) return launch<T>(a, CosineRow<A>{a.margin, static_cast<const A*>(a.target)}, info);
  if (a.p == 2.0) return launch<T>(a, TripletRow<2>{a.margin, a.p, a.eps, a.swap}, info);
  if (a.p == 1.0) return launch<T>(a, TripletRow<1>{a.margin, a.p, a.eps, a.swap}, info);
  return launch<T>(a, TripletRow<0>{a.margin, a.p, a.eps, a.swap}, info);
}

}  // namespace

Status pairwise(const PairwiseArgs& a, StatusInfo* info) {
  switch (a.dtype) {
    case DType::kF32: return pairwise_typed<float>(a, info);
    case DType::kF64: return pairwise_typed<double>(a, info);
    case DType::kF16: return pairwise_typed<__half>(a, info);
    case DType::kBF16: return pairwise_typed<__nv_bfloat16>(a, info);
  }
  return fail(info, Status::kUnsupported, "unsupported dtype");
}

}  // namespace cuda
}  // namespace lossx
#else   // LOSSX_PAIR_FUNCTORS_ONLY
}  // namespace
}  // namespace cuda
}  // namespace lossx
#endif  // LOSSX_PAIR_FUNCTORS_ONLY
