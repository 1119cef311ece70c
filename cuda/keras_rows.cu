// Keras-semantics row losses on CUDA: lossx.keras's categorical cross entropy
// (dense and sparse), categorical focal cross entropy, categorical hinge,
// cosine_similarity, dice and tversky, and lossx.tf's two softmax ops, which use
// them. The semantics are csrc/cpu/keras_rows.cc's (the reference): Keras'
// normalise-then-clip of probabilities with the clip's zero gradient, the
// first-maximum rule of the hinge, divide_no_nan means.
//
// Per call, on the caller's stream:
//   check   (sparse only) labels against [0, C) outside ignore_class, the
//           smallest bad position through an error slot, and the count of
//           rows that are not ignored (the mean's divisor); one stream
//           synchronisation reads both, as the error must be raised on the host;
//   rows    a team per row (a warp for rows shorter than kBlockTeamCols, else
//           the whole 256-thread block), running the same row code as the host
//           harness of the tests (tests/keras_functors_host.cu): several sweeps
//           over the row, later ones re-reading it from L1/L2, each element's
//           terms recomputed rather than stored;
//   sums    (cosine, dice, tversky) the five row sums per fixed segment of
//           kSegment elements as the CPU cuts them, then one thread per row adds
//           the segments in double and finishes the row with the CPU's code
//           (keras_row_from_sums), then the gradient a t + b p + c element-wise;
//   reduce  row losses -> fixed-chunk partials -> one block (deterministic).
// from_logits cross entropies (dense and sparse) go to the row-softmax kernels
// (cuda/softmax.cu), as on the CPU. Sparse ones then synchronise twice: the
// check's count is the mean's divisor, a host value of cross_entropy's call,
// which makes its own label check. Built without --use_fast_math.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <type_traits>

#include "common.cuh"
#include "hd_math.cuh"
#include "team.cuh"
#include "keras_row_math.h"
#include "lossx/cuda.h"
#include "status.h"

namespace lossx {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kBlockTeamCols = 2048;  // rows (segments) this long or longer: a block per row
constexpr int64_t kRowChunk = 4096;       // rows per first-stage partial of a reduction
constexpr int64_t kSegment = 1 << 14;     // the CPU's segment of the sums losses (same bits)

// ------------------------------------------------------------ element math ----

// One element of the probability losses (categorical and focal cross entropy):
// r = p / sum(p), t the target; f is the loss term, u = df/dq (0 where Keras'
// clip is active, and for NaN). Keras' order: clip, then log.
template <typename A>
struct ProbTerm {
  bool focal, smooth;
  A k1, k2;  // label smoothing: t' = t k1 + k2
  A gamma, alpha;
  const A* avec;  // per-class alpha or nullptr

  LOSSX_HD void operator()(A r, A t, int64_t j, A& f, A& u) const {
    const A eps = static_cast<A>(1e-7), hi = static_cast<A>(1.0 - 1e-7);
    const A q = is_nan(r) ? r : d_min(d_max(r, eps), hi);
    const bool inside = r >= eps && r <= hi;
    const A tv = smooth ? d_fma(t, k1, k2) : t;
    const A lq = is_nan(q) ? q : d_log(q);
    if (focal) {
      const A a = (avec ? avec[j] : alpha) * tv;
      const A om = A(1) - q;  // >= 1e-7 after the clip: the log is finite
      const A pw = gamma == A(0) ? A(1) : d_exp(gamma * d_log(om));
      f = -((a * pw) * lq);
      // d/dq [-a (1-q)^g log q] = a (1-q)^g (g log q / (1-q) - 1/q)
      u = (a * pw) * ((gamma * lq) / om - A(1) / q);
    } else {
      f = -(tv * lq);
      u = -(tv / q);
    }
    if (!inside) u = A(0);
  }
};

// -------------------------------------------------------------- row code ----

template <typename T>
struct RowParams {
  using A = typename AccOf<T>::type;
  int64_t N, C;
  KerasLoss kind;
  bool from_logits;                       // focal only (the cross entropies go to softmax.cu)
  const T* t;                             // N x C, or nullptr (sparse)
  const int64_t* labels;                  // sparse: N labels, already checked
  const T* p;                             // N x C
  bool has_ignore;
  int64_t ignore_class;
  ProbTerm<A> term;
  double base;                            // 1/count for a mean, else 1
  const A* go;                            // one value, or N ("none"); nullptr = 1
  bool per_row_go;
  A* row_loss;                            // N
  T* grad;                                // N x C, or nullptr
};

template <typename T>
LOSSX_HD typename AccOf<T>::type row_scale(const RowParams<T>& k, int64_t i) {
  using A = typename AccOf<T>::type;
  if (!k.grad) return A(0);
  double s = k.base;
  if (k.go) s *= static_cast<double>(k.go[k.per_row_go ? i : 0]);
  return static_cast<A>(s);
}

// Sparse categorical cross entropy on probabilities: only p[y] enters the loss.
#pragma nv_exec_check_disable
template <typename T, class Team>
LOSSX_HD void sparse_row(const Team& tm, const RowParams<T>& k, int64_t i) {
  using A = typename AccOf<T>::type;
  const int64_t C = k.C, off = i * C;
  const T* p = k.p + off;
  T* g = k.grad ? k.grad + off : nullptr;
  const int64_t y = k.labels[i];
  if (k.has_ignore && y == k.ignore_class) {
    if (tm.lane == 0) k.row_loss[i] = A(0);
    if (g)
      for (int64_t j = tm.lane; j < C; j += tm.size) st(g, j, A(0));
    return;
  }
  A s = A(0);
  for (int64_t j = tm.lane; j < C; j += tm.size) s += ld<A>(p, j);
  s = tm.reduce(s, OpSum());
  const A eps = static_cast<A>(1e-7), hi = static_cast<A>(1.0 - 1e-7);
  const A r = ld<A>(p, y) / s;
  const bool inside = r >= eps && r <= hi;
  const A q = is_nan(r) ? r : d_min(d_max(r, eps), hi);
  if (tm.lane == 0) k.row_loss[i] = -d_log(q);
  if (!g) return;
  const A scale = row_scale(k, i);
  const A uy = inside ? A(-1) / q : A(0);
  const A U = uy * r;
  const A fill = -scale * U / s, gy = scale * (uy - U) / s;
  for (int64_t j = tm.lane; j < C; j += tm.size) st(g, j, j == y ? gy : fill);
}

// Categorical hinge: max(neg - pos + 1, 0), pos = sum t p, neg = max (1-t) p;
// the gradient's neg part goes to the first maximal element, as the CPU's.
#pragma nv_exec_check_disable
template <typename T, class Team>
LOSSX_HD void hinge_row(const Team& tm, const RowParams<T>& k, int64_t i) {
  using A = typename AccOf<T>::type;
  const int64_t C = k.C, off = i * C;
  const T* p = k.p + off;
  const T* t = k.t + off;
  T* g = k.grad ? k.grad + off : nullptr;
  const A ninf = -INFINITY;
  A pos = A(0), neg = ninf;
  for (int64_t j = tm.lane; j < C; j += tm.size) {
    const A tv = ld<A>(t, j), pv = ld<A>(p, j);
    pos = d_fma(tv, pv, pos);
    neg = OpMaxNaN{}(neg, (A(1) - tv) * pv);  // Keras' max propagates NaN (so does the CPU's)
  }
  pos = tm.reduce(pos, OpSum());
  neg = tm.reduce(neg, OpMaxNaN());
  const A x = neg - pos + A(1);
  const bool nan = is_nan(x);
  if (tm.lane == 0) k.row_loss[i] = (x > A(0) || nan) ? x : A(0);
  if (!g) return;
  const A scale = row_scale(k, i);
  if (x > A(0)) {
    int64_t first = INT64_MAX;
    for (int64_t j = tm.lane; j < C && first == INT64_MAX; j += tm.size)
      if ((A(1) - ld<A>(t, j)) * ld<A>(p, j) == neg) first = j;
    first = tm.reduce(first, OpMin());
    for (int64_t j = tm.lane; j < C; j += tm.size) {
      const A tv = ld<A>(t, j);
      A v = -scale * tv;
      if (j == first) v += scale * (A(1) - tv);
      st(g, j, v);
    }
  } else {
    const A fill = nan ? A(NAN) : A(0);
    for (int64_t j = tm.lane; j < C; j += tm.size) st(g, j, fill);
  }
}

// Dense categorical / focal cross entropy on probabilities (focal with
// from_logits: on softmax(p) first). With u_j = df/dq_j, U = sum u r, s = sum p:
// dL/dp_k = scale (u_k - U) / s, then through the softmax for from_logits.
#pragma nv_exec_check_disable
template <typename T, class Team>
LOSSX_HD void dense_row(const Team& tm, const RowParams<T>& k, int64_t i) {
  using A = typename AccOf<T>::type;
  const int64_t C = k.C, off = i * C;
  const T* z = k.p + off;
  const T* t = k.t + off;
  T* g = k.grad ? k.grad + off : nullptr;
  A m = A(0), inv = A(1);
  if (k.from_logits) {
    const A ninf = -INFINITY;
    A vm = ninf;
    for (int64_t j = tm.lane; j < C; j += tm.size) vm = d_max(vm, ld<A>(z, j));
    m = tm.reduce(vm, OpMax());
    A se = A(0);
    for (int64_t j = tm.lane; j < C; j += tm.size) se += d_exp(ld<A>(z, j) - m);
    inv = A(1) / tm.reduce(se, OpSum());
  }
  const bool lg = k.from_logits;
  auto prob = [&](int64_t j) { return lg ? d_exp(ld<A>(z, j) - m) * inv : ld<A>(z, j); };
  A s = A(0);
  for (int64_t j = tm.lane; j < C; j += tm.size) s += prob(j);
  s = tm.reduce(s, OpSum());
  A lacc = A(0), uacc = A(0);
  for (int64_t j = tm.lane; j < C; j += tm.size) {
    const A r = prob(j) / s;
    A f, u;
    k.term(r, ld<A>(t, j), j, f, u);
    lacc += f;
    uacc = d_fma(u, r, uacc);
  }
  lacc = tm.reduce(lacc, OpSum());
  if (tm.lane == 0) k.row_loss[i] = lacc;
  if (!g) return;
  const A U = tm.reduce(uacc, OpSum());
  const A cs = row_scale(k, i) / s;
  auto grad_q = [&](int64_t j) {
    const A pj = prob(j), r = pj / s;
    A f, u;
    k.term(r, ld<A>(t, j), j, f, u);
    return cs * (u - U);
  };
  if (!lg) {
    for (int64_t j = tm.lane; j < C; j += tm.size) st(g, j, grad_q(j));
    return;
  }
  // Through the softmax: dz_k = p_k (g_k - sum_j g_j p_j).
  A gacc = A(0);
  for (int64_t j = tm.lane; j < C; j += tm.size) gacc = d_fma(grad_q(j), prob(j), gacc);
  const A G = tm.reduce(gacc, OpSum());
  for (int64_t j = tm.lane; j < C; j += tm.size) st(g, j, prob(j) * (grad_q(j) - G));
}

template <typename T>
LOSSX_HD bool sums_kind(const RowParams<T>& k) {
  return k.kind == KerasLoss::kCosineSimilarity || k.kind == KerasLoss::kDice || k.kind == KerasLoss::kTversky;
}

#pragma nv_exec_check_disable
template <typename T, class Team>
LOSSX_HD void any_row(const Team& tm, const RowParams<T>& k, int64_t i) {
  if (k.labels) sparse_row(tm, k, i);
  else if (k.kind == KerasLoss::kCategoricalHinge) hinge_row(tm, k, i);
  else dense_row(tm, k, i);
}

// The five sums of segment `task` (row task / nseg) in the compute type.
#pragma nv_exec_check_disable
template <typename T, class Team>
LOSSX_HD void sums_task(const Team& tm, const RowParams<T>& k, int64_t seg, int64_t nseg, int64_t task,
                        typename AccOf<T>::type* partial) {
  using A = typename AccOf<T>::type;
  const int64_t row = task / nseg, j0 = (task % nseg) * seg;
  const int64_t n = k.C - j0 < seg ? k.C - j0 : seg, off = row * k.C + j0;
  A v[kKerasSumCount] = {A(0), A(0), A(0), A(0), A(0)};
  for (int64_t j = tm.lane; j < n; j += tm.size) {
    const A tv = ld<A>(k.t, off + j), pv = ld<A>(k.p, off + j);
    v[0] = d_fma(tv, tv, v[0]);
    v[1] = d_fma(pv, pv, v[1]);
    v[2] = d_fma(tv, pv, v[2]);
    v[3] += tv;
    v[4] += pv;
  }
  for (int q = 0; q < kKerasSumCount; ++q) {
    const A r = tm.reduce(v[q], OpSum());
    if (tm.lane == 0) partial[task * kKerasSumCount + q] = r;
  }
}

// Row i of the sums losses from its segments' partials: value and coefficients.
template <typename T>
LOSSX_HD void sums_finish(const RowParams<T>& k, double alpha, double beta, int64_t nseg,
                          const typename AccOf<T>::type* partial, int64_t i, typename AccOf<T>::type* coef) {
  double S[kKerasSumCount] = {0, 0, 0, 0, 0};
  for (int64_t s = i * nseg; s < (i + 1) * nseg; ++s)
    for (int q = 0; q < kKerasSumCount; ++q) S[q] += static_cast<double>(partial[s * kKerasSumCount + q]);
  keras_row_from_sums(k.kind, alpha, beta, S, row_scale(k, i), &k.row_loss[i], k.grad ? coef + 3 * i : nullptr);
}

#pragma nv_exec_check_disable
template <typename T>
LOSSX_HD void sums_grad(const RowParams<T>& k, const typename AccOf<T>::type* coef, int64_t e) {
  const int64_t row = e / k.C;
  const auto* c = coef + 3 * row;
  using A = typename AccOf<T>::type;
  st(k.grad, e, d_fma(c[0], ld<A>(k.t, e), d_fma(c[1], ld<A>(k.p, e), c[2])));
}

#ifndef LOSSX_KERAS_FUNCTORS_ONLY
// ---------------------------------------------------------------- kernels ----

template <typename T, int kTeam>
__global__ void __launch_bounds__(kThreads) keras_rows_kernel(const RowParams<T> k) {
  __shared__ double sm[kThreads / 32];  // BlockTeam's reduction slots
  constexpr int kTeamsPerBlock = kThreads / kTeam;
  const int64_t team0 = static_cast<int64_t>(blockIdx.x) * kTeamsPerBlock + threadIdx.x / kTeam;
  const int64_t nteams = static_cast<int64_t>(gridDim.x) * kTeamsPerBlock;
  if constexpr (kTeam == 32) {
    const WarpTeam tm{static_cast<int>(threadIdx.x & 31)};
    for (int64_t i = team0; i < k.N; i += nteams) any_row(tm, k, i);
  } else {
    const BlockTeam<kThreads> tm{static_cast<int>(threadIdx.x), sm};
    for (int64_t i = team0; i < k.N; i += nteams) any_row(tm, k, i);
  }
}

template <typename T, int kTeam>
__global__ void __launch_bounds__(kThreads) sums_kernel(const RowParams<T> k, int64_t seg, int64_t nseg,
                                                        typename AccOf<T>::type* partial) {
  __shared__ double sm[kThreads / 32];
  constexpr int kTeamsPerBlock = kThreads / kTeam;
  const int64_t team0 = static_cast<int64_t>(blockIdx.x) * kTeamsPerBlock + threadIdx.x / kTeam;
  const int64_t nteams = static_cast<int64_t>(gridDim.x) * kTeamsPerBlock, tasks = k.N * nseg;
  if constexpr (kTeam == 32) {
    const WarpTeam tm{static_cast<int>(threadIdx.x & 31)};
    for (int64_t task = team0; task < tasks; task += nteams) sums_task(tm, k, seg, nseg, task, partial);
  } else {
    const BlockTeam<kThreads> tm{static_cast<int>(threadIdx.x), sm};
    for (int64_t task = team0; task < tasks; task += nteams) sums_task(tm, k, seg, nseg, task, partial);
  }
}

template <typename T>
__global__ void sums_finish_kernel(const RowParams<T> k, double alpha, double beta, int64_t nseg,
                                   const typename AccOf<T>::type* partial, typename AccOf<T>::type* coef) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < k.N;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    sums_finish(k, alpha, beta, nseg, partial, i, coef);
}

template <typename T>
__global__ void sums_grad_kernel(const RowParams<T> k, const typename AccOf<T>::type* coef) {
  const int64_t n = k.N * k.C;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x)
    sums_grad(k, coef, e);
}

// Sparse labels: the smallest bad position (outside ignore_class) and the
// number of rows that are not ignored (integer atomics: exact, any order).
__global__ void check_labels(const int64_t* labels, int64_t N, int64_t C, bool has_ignore, int64_t ignore_class,
                             unsigned long long* slot) {
  __shared__ unsigned long long sm[33];
  unsigned long long count = 0;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < N;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t y = labels[i];
    if (has_ignore && y == ignore_class) continue;
    if (y < 0 || y >= C) note_bad(slot, i);
    ++count;
  }
  count = block_sum(count, sm);
  if (threadIdx.x == 0 && count) atomicAdd(slot + 1, count);
}

// ------------------------------------------------------------------ launch ----

unsigned grid_for(int64_t work, int64_t per_block) {
  int64_t b = (work + per_block - 1) / per_block;
  if (b < 1) b = 1;
  return static_cast<unsigned>(b > 65535 ? 65535 : b);  // grid-stride over the rest
}

// Labels of a sparse call: checked on the device, the error raised here with
// the CPU's message; *count = rows that are not ignored.
Status check_sparse(const KerasRowsArgs& a, cudaStream_t stream, int64_t* count, StatusInfo* info) {
  *count = a.rows;
  if (a.rows == 0) return Status::kOk;
  unsigned long long* slot = nullptr;
  LOSSX_CU(cudaMallocAsync(reinterpret_cast<void**>(&slot), 16, stream));
  unsigned long long host[2] = {~0ull, 0};
  cudaError_t err = cudaMemsetAsync(slot, 0xff, 8, stream);
  if (err == cudaSuccess) err = cudaMemsetAsync(slot + 1, 0, 8, stream);
  if (err == cudaSuccess) {
    check_labels<<<grid_for(a.rows, kThreads), kThreads, 0, stream>>>(a.labels, a.rows, a.cols, a.has_ignore_class,
                                                                      a.ignore_class, slot);
    err = cudaGetLastError();
  }
  if (err == cudaSuccess) err = cudaMemcpyAsync(host, slot, sizeof(host), cudaMemcpyDeviceToHost, stream);
  const cudaError_t ferr = cudaFreeAsync(slot, stream);
  if (err == cudaSuccess) err = ferr;
  if (err == cudaSuccess) err = cudaStreamSynchronize(stream);
  if (err != cudaSuccess) return cuda_fail(info, err, "keras_rows label check");
  *count = static_cast<int64_t>(host[1]);
  if (host[0] != ~0ull) {
    const int64_t i = static_cast<int64_t>(host[0]);
    int64_t y = 0;
    LOSSX_CU(cudaMemcpyAsync(&y, a.labels + i, sizeof(y), cudaMemcpyDeviceToHost, stream));
    LOSSX_CU(cudaStreamSynchronize(stream));
    char msg[160];
    std::snprintf(msg, sizeof(msg), "label %lld at position %lld is out of range [0, %lld)", static_cast<long long>(y),
                  static_cast<long long>(i), static_cast<long long>(a.cols));
    return fail(info, Status::kIndexError, msg, i, y);
  }
  return Status::kOk;
}

template <typename T>
Status keras_typed(const KerasRowsArgs& a, StatusInfo* info) {
  using A = typename AccOf<T>::type;
  DeviceGuard guard;
  LOSSX_CU(guard.enter(a.y_pred));
  cudaStream_t stream = static_cast<cudaStream_t>(a.stream);
  const int64_t N = a.rows, C = a.cols;
  const bool sparse = a.kind == KerasLoss::kSparseCategoricalCE;
  int64_t count = N;
  if (sparse) {
    LOSSX_NO_CAPTURE(stream, "sparse_categorical_crossentropy");
    const Status s = check_sparse(a, stream, &count, info);
    if (s != Status::kOk) return s;
  }
  // Keras' "sum_over_batch_size" divides with divide_no_nan: 0 when nothing counts.
  Reduction red = a.reduction;
  if (red == Reduction::kMean && count == 0) red = Reduction::kSum;

  if (a.from_logits && (a.kind == KerasLoss::kCategoricalCE || sparse)) {
    // The row-softmax kernels compute the same math (see the CPU driver).
    CrossEntropyArgs c;
    c.dtype = a.dtype;
    c.device = Device::kCUDA;
    c.stream = a.stream;
    c.rows = N;
    c.classes = C;
    c.logits = a.y_pred;
    c.labels = sparse ? a.labels : nullptr;
    c.target = sparse ? nullptr : a.y_true;
    c.ignore_index = a.has_ignore_class ? a.ignore_class : -1;  // labels are checked: -1 matches none
    c.label_smoothing = sparse ? 0.0 : a.label_smoothing;
    c.reduction = red;
    c.normalizer = Normalizer::kValue;
    c.normalizer_value = static_cast<double>(count);
    c.loss = a.loss;
    c.grad_logits = a.grad;
    c.grad_output = a.grad_output;
    return cuda::cross_entropy(c, info);
  }

  RowParams<T> k;
  k.N = N;
  k.C = C;
  k.kind = a.kind;
  k.from_logits = a.from_logits;
  k.t = static_cast<const T*>(a.y_true);
  k.labels = sparse ? a.labels : nullptr;
  k.p = static_cast<const T*>(a.y_pred);
  k.has_ignore = a.has_ignore_class;
  k.ignore_class = a.ignore_class;
  const A ls = static_cast<A>(a.label_smoothing);
  k.term = ProbTerm<A>{a.kind == KerasLoss::kCategoricalFocalCE, ls != A(0), A(1) - ls, ls / static_cast<A>(C),
                       static_cast<A>(a.gamma), static_cast<A>(a.alpha), static_cast<const A*>(a.alpha_vec)};
  k.base = red == Reduction::kMean ? 1.0 / static_cast<double>(count) : 1.0;
  k.go = static_cast<const A*>(a.grad_output);
  k.per_row_go = red == Reduction::kNone;
  k.grad = static_cast<T*>(a.grad);
  const bool none = red == Reduction::kNone;
  const bool sums = sums_kind(k);
  const int64_t seg = C < kSegment ? C : kSegment, nseg = (C + seg - 1) / seg;

  // Workspace: [row losses][chunk partials][sums partials][coefficients], 16-byte aligned parts.
  auto up16 = [](size_t b) { return (b + 15) & ~size_t(15); };
  const int64_t nchunks = (N + kRowChunk - 1) / kRowChunk;
  const size_t rows_b = none ? 0 : up16(sizeof(A) * static_cast<size_t>(N));
  const size_t chunk_b = none ? 0 : up16(sizeof(double) * static_cast<size_t>(nchunks));
  const size_t part_b = sums ? up16(sizeof(A) * kKerasSumCount * static_cast<size_t>(N * nseg)) : 0;
  const size_t coef_b = sums && k.grad ? up16(sizeof(A) * 3 * static_cast<size_t>(N)) : 0;
  const size_t bytes = rows_b + chunk_b + part_b + coef_b;
  void* ws = nullptr;
  if (bytes) LOSSX_CU(cudaMallocAsync(&ws, bytes, stream));
  char* wsb = static_cast<char*>(ws);
  k.row_loss = none ? static_cast<A*>(a.loss) : reinterpret_cast<A*>(wsb);
  double* chunk = reinterpret_cast<double*>(wsb + rows_b);
  A* partial = reinterpret_cast<A*>(wsb + rows_b + chunk_b);
  A* coef = reinterpret_cast<A*>(wsb + rows_b + chunk_b + part_b);

  cudaError_t err = cudaSuccess;
  const char* where = "";
  auto step = [&](cudaError_t e, const char* w) {
    if (err == cudaSuccess && e != cudaSuccess) {
      err = e;
      where = w;
    }
  };
  if (N > 0 && sums) {
    const int64_t tasks = N * nseg;
    if (seg >= kBlockTeamCols)
      sums_kernel<T, kThreads><<<grid_for(tasks, 1), kThreads, 0, stream>>>(k, seg, nseg, partial);
    else
      sums_kernel<T, 32><<<grid_for(tasks, kThreads / 32), kThreads, 0, stream>>>(k, seg, nseg, partial);
    step(cudaGetLastError(), "keras sums launch");
    if (err == cudaSuccess) {
      sums_finish_kernel<T><<<grid_for(N, kThreads), kThreads, 0, stream>>>(k, a.alpha, a.beta, nseg, partial, coef);
      step(cudaGetLastError(), "keras sums finish launch");
    }
    if (err == cudaSuccess && k.grad) {
      sums_grad_kernel<T><<<grid_for(N * C, kThreads), kThreads, 0, stream>>>(k, coef);
      step(cudaGetLastError(), "keras sums gradient launch");
    }
  } else if (N > 0) {
    if (C >= kBlockTeamCols)
      keras_rows_kernel<T, kThreads><<<grid_for(N, 1), kThreads, 0, stream>>>(k);
    else
      keras_rows_kernel<T, 32><<<grid_for(N, kThreads / 32), kThreads, 0, stream>>>(k);
    step(cudaGetLastError(), "keras rows launch");
  }
  if (!none && err == cudaSuccess) {
    if (nchunks > 0) {
      chunk_sums<A><<<static_cast<unsigned>(nchunks), kThreads, 0, stream>>>(k.row_loss, N, kRowChunk, chunk);
      step(cudaGetLastError(), "chunk_sums launch");
    }
    if (err == cudaSuccess) {
      sum_partials<A><<<1, 1024, 0, stream>>>(chunk, nchunks, red == Reduction::kMean, static_cast<double>(count),
                                              static_cast<A*>(a.loss));
      step(cudaGetLastError(), "sum_partials launch");
    }
  }
  if (ws) step(cudaFreeAsync(ws, stream), "cudaFreeAsync");
  if (err != cudaSuccess) return cuda_fail(info, err, where);
  return Status::kOk;
}

}  // namespace

Status keras_rows(const KerasRowsArgs& a, StatusInfo* info) {
  switch (a.dtype) {
    case DType::kF32: return keras_typed<float>(a, info);
    case DType::kF64: return keras_typed<double>(a, info);
    case DType::kF16: return keras_typed<__half>(a, info);
    case DType::kBF16: return keras_typed<__nv_bfloat16>(a, info);
  }
  return fail(info, Status::kUnsupported, "unsupported dtype");
}

}  // namespace cuda
}  // namespace lossx
#else   // LOSSX_KERAS_FUNCTORS_ONLY
}  // namespace
}  // namespace cuda
}  // namespace lossx
#endif  // LOSSX_KERAS_FUNCTORS_ONLY
