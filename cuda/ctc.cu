// Sequence family on CUDA: ctc_loss with the semantics of csrc/cpu/ctc.cc (the
// reference: float64 log-space forward-backward for every input dtype, torch's
// special values, torch's gradient convention exp(lp) - gamma).
//
// Lengths live on the host (as in PyTorch), so the launcher lays out each
// sample's workspace there and uploads one descriptor per sample. Per call, on
// the caller's stream:
//   check   the labels each sample reads (not the padding), the smallest bad
//           flat position through an error slot; one stream synchronisation
//           reads it, and the error is raised with the CPU's message;
//   samples one 256-thread block per sample (grid-stride over samples) runs the
//           same code as the host harness of the tests (tests/ctc_functors_host.cu,
//           a team of one): alpha over the extended label sequence frame by
//           frame (threads over states, a block barrier per frame; the whole
//           table when the gradient is wanted, two rows otherwise), the loss,
//           then beta frame by frame backwards with the occupation of each
//           class (blank: a fixed-tree sum over the blank states; a label: its
//           states in ascending order) and the gradient row of the frame;
//   reduce  one block: the mean (loss_i / max(L_i, 1), then / N) or the sum of
//           the per-sample losses with a fixed tree.
// Built without --use_fast_math: float64 exp/log as the CPU.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "common.cuh"
#include "cpu/ctc.h"
#include "hd_math.cuh"
#include "lossx/cuda.h"
#include "status.h"
#include "team.cuh"

namespace lossx {
namespace cuda {
namespace {

constexpr int kThreads = 256;

// --------------------------------------------------------------- scalar math ----

// exp with the CPU's special values (its ExpD): NaN stays NaN, below -708 (and
// -inf) gives 0.
LOSSX_HD double exp_d(double x) { return x < -708.0 ? 0.0 : exp(x); }

// log(exp(a1) + exp(a2) + exp(a3)) + e with torch's special values: all -inf
// gives -inf + e; any NaN, or a +inf (inf - inf in torch's max shift), NaN.
LOSSX_HD double lse3_add(double a1, double a2, double a3, double e) {
  const double inf = INFINITY;
  if (is_nan(a1) || is_nan(a2) || is_nan(a3)) return NAN + e;
  const double hi = d_max(a1, a2), lo = d_min(a1, a2);
  const double m = d_max(hi, a3), mid = d_min(hi, a3);
  if (m == inf) return NAN + e;
  if (m == -inf) return -inf + e;
  const double s = 1.0 + (exp_d(lo - m) + exp_d(mid - m));  // lo - m <= 0; -inf gives 0
  return (log(s) + m) + e;
}

// torch's final log-add of the two end states (the CPU's LogAdd2).
LOSSX_HD double log_add2(double l1, double l2) {
  double m = l1 < l2 ? l2 : l1;
  m = m == -INFINITY ? 0.0 : m;
  return log(exp(l1 - m) + exp(l2 - m)) + m;
}

// ------------------------------------------------------------- sample code ----

// Where sample b's data and scratch live. Offsets count doubles (dws) and
// int64 values (iws) of the workspace.
struct SampleDesc {
  int64_t Ti, L;   // input length, target length
  int64_t toff;    // first label in targets
  int64_t aoff;    // alpha: Ti rows (gradient) or 2 rows of 2L + 1
  int64_t boff;    // beta: 2 rows (gradient only)
  int64_t goff;    // class occupation G: C values (gradient only)
  int64_t loff;    // per label: next label index of the same class, first-of-its-class flag (gradient only)
};

template <typename T>
struct CtcParams {
  using A = typename AccOf<T>::type;
  int64_t T_, N, C, blank;
  const T* lp;
  const int64_t* targets;
  const SampleDesc* desc;
  bool zero_infinity, mean;
  const A* go;       // one value, or N ("none"); nullptr = 1
  bool per_row_go;
  double* dws;
  int64_t* iws;
  double* nll;       // N: per-sample losses after zero_infinity
  T* grad;           // T x N x C, or nullptr
};

#pragma nv_exec_check_disable
template <typename T, class Team>
LOSSX_HD void zero_frames(const Team& tm, const CtcParams<T>& P, int64_t b, int64_t t0) {
  for (int64_t t = t0; t < P.T_; ++t)
    for (int64_t c = tm.lane; c < P.C; c += tm.size) st(P.grad, (t * P.N + b) * P.C + c, 0.0);
}

#pragma nv_exec_check_disable
template <typename T, class Team>
LOSSX_HD void ctc_sample(const Team& tm, const CtcParams<T>& P, int64_t b) {
  const SampleDesc D = P.desc[b];
  const int64_t Ti = D.Ti, L = D.L, n = 2 * L + 1, N = P.N, C = P.C;
  const int64_t* y = P.targets + D.toff;
  const double ninf = -INFINITY;
  auto ext = [&](int64_t s) { return (s & 1) ? y[s >> 1] : P.blank; };
  // The s - 2 -> s transition exists between different labels (never blank -> blank).
  auto skip = [&](int64_t s) { return (s & 1) && s >= 3 && y[s >> 1] != y[(s >> 1) - 1]; };
  auto frame = [&](int64_t t) { return P.lp + (t * N + b) * C; };
  auto e = [&](int64_t t, int64_t s) { return ld<double>(frame(t), ext(s)); };
  const bool want_grad = P.grad != nullptr;

  if (Ti == 0) {
    const double nll = L == 0 ? -0.0 : INFINITY;  // torch: -log_likelihood, so -0.0 for an empty target
    if (tm.lane == 0) P.nll[b] = P.zero_infinity && nll == INFINITY ? 0.0 : nll;
    if (want_grad) zero_frames(tm, P, b, 0);
    return;
  }

  double* alpha = P.dws + D.aoff;
  auto arow = [&](int64_t t) { return alpha + (want_grad ? t : (t & 1)) * n; };
  {
    double* a0 = arow(0);
    for (int64_t s = tm.lane; s < n; s += tm.size) a0[s] = s == 0 ? e(0, 0) : (s == 1 ? e(0, 1) : ninf);
  }
  tm.sync();
  for (int64_t t = 1; t < Ti; ++t) {
    const double* prev = arow(t - 1);
    double* out = arow(t);
    for (int64_t s = tm.lane; s < n; s += tm.size)
      out[s] = lse3_add(prev[s], s >= 1 ? prev[s - 1] : ninf, skip(s) ? prev[s - 2] : ninf, e(t, s));
    tm.sync();
  }
  const double* last = arow(Ti - 1);
  const double nll = L == 0 ? -last[0] : -log_add2(last[2 * L], last[2 * L - 1]);
  const bool zeroed = P.zero_infinity && nll == INFINITY;
  if (tm.lane == 0) P.nll[b] = zeroed ? 0.0 : nll;
  if (!want_grad) return;
  if (zeroed) {
    zero_frames(tm, P, b, 0);
    return;
  }

  double scale = P.go ? static_cast<double>(P.go[P.per_row_go ? b : 0]) : 1.0;
  if (P.mean) scale = scale / static_cast<double>(N) / static_cast<double>(L > 1 ? L : 1);
  double* G = P.dws + D.goff;
  int64_t* nxt = P.iws + D.loff;  // next label of the same class, or -1
  int64_t* first = nxt + L;       // 1 where no earlier label has the class
  // In O(L + C), not by a scan per label (O(L^2), seconds for L near 1e5):
  // walking the labels backwards, G (C doubles, zeroed after) holds per class
  // the index of the latest label seen (as a double: exact below 2^53, and no
  // second type for the same memory), so the first index left is each class's
  // first. The labels were checked to be in [0, C) before the launch.
  for (int64_t c = tm.lane; c < C; c += tm.size) G[c] = -1.0;
  tm.sync();
  if (tm.lane == 0) {
    for (int64_t j = L - 1; j >= 0; --j) {
      nxt[j] = static_cast<int64_t>(G[y[j]]);
      G[y[j]] = static_cast<double>(j);
    }
  }
  tm.sync();
  for (int64_t j = tm.lane; j < L; j += tm.size) first[j] = G[y[j]] == static_cast<double>(j);
  tm.sync();
  for (int64_t c = tm.lane; c < C; c += tm.size) G[c] = 0.0;
  tm.sync();

  // grad_t(c) = scale ((exp(x) - unvisited) - G[c]): the CPU's GradRow, torch's
  // special values (an unvisited class gets exp(-inf + nll - x): 0 or NaN).
  auto grad_frame = [&](int64_t t) {
    const T* x = frame(t);
    for (int64_t c = tm.lane; c < C; c += tm.size) {
      const double xv = ld<double>(x, c);
      const double q = (ninf + nll) - xv;
      const double unvisited = q == ninf ? 0.0 : q;
      st(P.grad, (t * N + b) * C + c, ((exp_d(xv) - unvisited) - G[c]) * scale);
    }
    tm.sync();
    for (int64_t s = tm.lane; s < n; s += tm.size) G[ext(s)] = 0.0;  // (same value from every writer)
    tm.sync();
  };

  double* bcur = P.dws + D.boff;
  double* bnext = bcur + n;
  {
    // Last frame: only the two end states carry beta (as torch accumulates them).
    const int64_t t = Ti - 1;
    const double* a = arow(t);
    for (int64_t s = tm.lane; s < n; s += tm.size) bcur[s] = (s == 2 * L || s == 2 * L - 1) ? e(t, s) : ninf;
    if (tm.lane == 0) {
      G[P.blank] = exp(((a[2 * L] + e(t, 2 * L)) + nll) - e(t, 2 * L));  // (the CPU's std::exp here)
      if (L > 0) G[y[L - 1]] = exp(((a[2 * L - 1] + e(t, 2 * L - 1)) + nll) - e(t, 2 * L - 1));
    }
    tm.sync();
    grad_frame(t);
  }
  for (int64_t t = Ti - 2; t >= 0; --t) {
    double* tmp = bcur;
    bcur = bnext;
    bnext = tmp;
    for (int64_t s = tm.lane; s < n; s += tm.size) {
      const double b3 = (s + 2 < n && skip(s + 2)) ? bnext[s + 2] : ninf;
      bcur[s] = lse3_add(bnext[s], s + 1 < n ? bnext[s + 1] : ninf, b3, e(t, s));
    }
    tm.sync();
    const double* a = arow(t);
    auto gam = [&](int64_t s) { return exp_d(((a[s] + bcur[s]) + nll) - e(t, s)); };
    double gb = 0.0;  // the blank states 0, 2, ..., 2L
    for (int64_t k = tm.lane; k <= L; k += tm.size) gb += gam(2 * k);
    gb = tm.reduce(gb, OpSum());
    if (tm.lane == 0) G[P.blank] = gb;
    for (int64_t j = tm.lane; j < L; j += tm.size) {
      if (!first[j]) continue;
      double g = 0.0;
      for (int64_t k = j; k >= 0; k = nxt[k]) g += gam(2 * k + 1);
      G[y[j]] = g;
    }
    tm.sync();
    grad_frame(t);
  }
  zero_frames(tm, P, b, Ti);
}

// Each sample's descriptor and the workspace sizes (doubles, int64 values),
// laid out on the host from the lengths (checked by the dispatcher). false when
// the sizes overflow.
inline bool ctc_layout(const CtcArgs& a, bool want_grad, std::vector<SampleDesc>& desc, int64_t* dn_out,
                       int64_t* in_out) {
  const int64_t N = a.N, C = a.C;
  desc.resize(static_cast<size_t>(N));
  int64_t pos = 0, dn = 0, in = 0;
  for (int64_t i = 0; i < N; ++i) {
    SampleDesc& D = desc[static_cast<size_t>(i)];
    D.Ti = a.input_lengths[i];
    D.L = a.target_lengths[i];
    D.toff = a.concatenated ? pos : i * a.S;
    pos += D.L;
    const int64_t n = 2 * D.L + 1;
    const int64_t arows = want_grad ? D.Ti : 2;
    if (n > (INT64_MAX / 8 - dn - C) / (arows + 2)) return false;
    D.aoff = dn;
    dn += arows * n;
    D.boff = dn;
    D.goff = dn + (want_grad ? 2 * n : 0);
    dn = D.goff + (want_grad ? C : 0);
    D.loff = in;
    in += want_grad ? 2 * D.L : 0;
  }
  *dn_out = dn;
  *in_out = in;
  return true;
}

#ifndef LOSSX_CTC_FUNCTORS_ONLY
// ---------------------------------------------------------------- kernels ----

template <typename T>
__global__ void __launch_bounds__(kThreads) ctc_samples(const CtcParams<T> P) {
  __shared__ double sm[kThreads / 32];  // BlockTeam's reduction slots
  const BlockTeam<kThreads> tm{static_cast<int>(threadIdx.x), sm};
  for (int64_t b = blockIdx.x; b < P.N; b += gridDim.x) {
    ctc_sample(tm, P, b);
    __syncthreads();  // the next sample's block-wide phases start together
  }
}

// The labels each sample reads: the smallest bad flat position of targets.
__global__ void ctc_check(const int64_t* targets, const SampleDesc* desc, int64_t N, int64_t C, int64_t blank,
                          unsigned long long* slot) {
  for (int64_t b = blockIdx.x; b < N; b += gridDim.x) {
    const SampleDesc D = desc[b];
    for (int64_t j = threadIdx.x; j < D.L; j += blockDim.x) {
      const int64_t v = targets[D.toff + j];
      if (v < 0 || v >= C || v == blank) note_bad(slot, D.toff + j);
    }
  }
}

// One block: per-sample losses to the output ("none"), or their mean / sum.
template <typename A>
__global__ void __launch_bounds__(1024) ctc_reduce(const double* nll, const SampleDesc* desc, int64_t N, int red,
                                                   A* out) {
  __shared__ double sm[33];
  if (red == static_cast<int>(Reduction::kNone)) {
    for (int64_t i = threadIdx.x; i < N; i += blockDim.x) out[i] = static_cast<A>(nll[i]);
    return;
  }
  const bool mean = red == static_cast<int>(Reduction::kMean);
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) {
    const int64_t L = desc[i].L;
    s += mean ? nll[i] / static_cast<double>(L > 1 ? L : 1) : nll[i];  // torch: / target_lengths.clamp_min(1)
  }
  s = block_sum(s, sm);
  if (threadIdx.x == 0) out[0] = static_cast<A>(mean ? s / static_cast<double>(N) : s);  // N = 0: nan, as torch
}

// ------------------------------------------------------------------ launch ----

template <typename T>
Status ctc_typed(const CtcArgs& a, StatusInfo* info) {
  using A = typename AccOf<T>::type;
  DeviceGuard guard;
  LOSSX_CU(guard.enter(a.loss));
  cudaStream_t stream = static_cast<cudaStream_t>(a.stream);
  const int64_t N = a.N, C = a.C;
  const bool want_grad = a.grad != nullptr;
  LOSSX_NO_CAPTURE(stream, "ctc_loss");

  std::vector<SampleDesc> desc;
  int64_t dn = 0, in = 0;
  if (!ctc_layout(a, want_grad, desc, &dn, &in))
    return fail(info, Status::kDeviceError, "ctc_loss: the alpha tables do not fit in a 64-bit byte count");

  auto up16 = [](size_t b) { return (b + 15) & ~size_t(15); };
  const size_t slot_b = 16, desc_b = up16(sizeof(SampleDesc) * static_cast<size_t>(N));
  const size_t nll_b = up16(sizeof(double) * static_cast<size_t>(N));
  const size_t dws_b = up16(sizeof(double) * static_cast<size_t>(dn)), iws_b = sizeof(int64_t) * static_cast<size_t>(in);
  void* ws = nullptr;
  const cudaError_t merr = cudaMallocAsync(&ws, slot_b + desc_b + nll_b + dws_b + iws_b, stream);
  if (merr == cudaErrorMemoryAllocation)
    return fail(info, Status::kDeviceError,
                "ctc_loss: out of GPU memory for the alpha tables (input_length x (2 * target_length + 1) "
                "float64 values per sample when the gradient is wanted)");
  LOSSX_CU(merr);
  char* w = static_cast<char*>(ws);
  auto* slot = reinterpret_cast<unsigned long long*>(w);
  auto* ddesc = reinterpret_cast<SampleDesc*>(w + slot_b);
  auto* nll = reinterpret_cast<double*>(w + slot_b + desc_b);
  CtcParams<T> P;
  P.T_ = a.T;
  P.N = N;
  P.C = C;
  P.blank = a.blank;
  P.lp = static_cast<const T*>(a.log_probs);
  P.targets = a.targets;
  P.desc = ddesc;
  P.zero_infinity = a.zero_infinity;
  P.mean = a.reduction == Reduction::kMean;
  P.go = static_cast<const A*>(a.grad_output);
  P.per_row_go = a.reduction == Reduction::kNone;
  P.dws = reinterpret_cast<double*>(w + slot_b + desc_b + nll_b);
  P.iws = reinterpret_cast<int64_t*>(w + slot_b + desc_b + nll_b + dws_b);
  P.nll = nll;
  P.grad = static_cast<T*>(a.grad);

  cudaError_t err = cudaSuccess;
  const char* where = "";
  auto step = [&](cudaError_t e, const char* wh) {
    if (err == cudaSuccess && e != cudaSuccess) {
      err = e;
      where = wh;
    }
  };
  const unsigned grid = static_cast<unsigned>(N < 65535 ? (N > 0 ? N : 1) : 65535);
  unsigned long long bad = ~0ull;
  step(cudaMemsetAsync(slot, 0xff, 8, stream), "cudaMemsetAsync(error slot)");
  if (N > 0) {
    // From pageable memory: returns once `desc` is staged; the synchronisation below covers it anyway.
    step(cudaMemcpyAsync(ddesc, desc.data(), sizeof(SampleDesc) * static_cast<size_t>(N), cudaMemcpyHostToDevice,
                         stream),
         "cudaMemcpyAsync(sample layout)");
    if (err == cudaSuccess) {
      ctc_check<<<grid, kThreads, 0, stream>>>(a.targets, ddesc, N, C, a.blank, slot);
      step(cudaGetLastError(), "ctc label check launch");
    }
    step(cudaMemcpyAsync(&bad, slot, sizeof(bad), cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync(error slot)");
    step(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  }
  if (err == cudaSuccess && bad != ~0ull) {
    const int64_t k = static_cast<int64_t>(bad);
    int64_t i = 0;
    while (i + 1 < N && desc[static_cast<size_t>(i + 1)].toff <= k) ++i;
    // Padded rows: sample i holds [i S, i S + L_i); concatenated: they tile [0, S).
    int64_t v = 0;
    step(cudaMemcpyAsync(&v, a.targets + k, sizeof(v), cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync(label)");
    step(cudaFreeAsync(ws, stream), "cudaFreeAsync");
    step(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    if (err != cudaSuccess) return cuda_fail(info, err, where);
    return cpu::ctc_label_error(info, a.concatenated, i, k - desc[static_cast<size_t>(i)].toff, k, v, a.blank, C);
  }
  if (err == cudaSuccess && N > 0) {
    ctc_samples<T><<<grid, kThreads, 0, stream>>>(P);
    step(cudaGetLastError(), "ctc_samples launch");
  }
  if (err == cudaSuccess) {
    ctc_reduce<A><<<1, 1024, 0, stream>>>(nll, ddesc, N, static_cast<int>(a.reduction), static_cast<A*>(a.loss));
    step(cudaGetLastError(), "ctc_reduce launch");
  }
  step(cudaFreeAsync(ws, stream), "cudaFreeAsync");
  if (err != cudaSuccess) return cuda_fail(info, err, where);
  return Status::kOk;
}

}  // namespace

Status ctc(const CtcArgs& a, StatusInfo* info) {
  switch (a.dtype) {
    case DType::kF32: return ctc_typed<float>(a, info);
    case DType::kF64: return ctc_typed<double>(a, info);
    case DType::kF16: return ctc_typed<__half>(a, info);
    case DType::kBF16: return ctc_typed<__nv_bfloat16>(a, info);
  }
  return fail(info, Status::kUnsupported, "unsupported dtype");
}

}  // namespace cuda
}  // namespace lossx
#else   // LOSSX_CTC_FUNCTORS_ONLY
}  // namespace
}  // namespace cuda
}  // namespace lossx
#endif  // LOSSX_CTC_FUNCTORS_ONLY
