// Row-softmax family on CUDA: cross_entropy (hard and soft targets, label
// smoothing, class and sample weights, z-loss, softcap), nll_loss, log_softmax
// and logsumexp. Same semantics as csrc/cpu/softmax.cc (the reference).
//
// Per call, all on the caller's stream:
//   prep      (cross_entropy only) validates labels (smallest bad position via
//             atomicMin into a device slot, never a device assert) and sums the
//             mean's normaliser per fixed chunk of rows;
//   finalize  one block: normaliser, sum of class weights, the bad label's value;
//   rows      one block per row (grid-stride over rows): an online softmax
//             (running max + rescaled sum) in ONE read of the logits with 16-byte
//             loads, then the gradient written once, re-reading the row (the
//             grid is sized so that the rows in flight stay in L2);
//   reduce    per-row losses -> fixed-chunk partials -> one block: deterministic
//             (same bits for the same inputs, whatever the GPU's scheduling).
// The per-row gradient scale (mean's 1/normaliser, sample weight, grad_output)
// is computed by each row block from the device-side normaliser, so nothing
// waits for the host.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "ce_reg.cuh"
#include "common.cuh"
#include "lossx/cuda.h"
#include "status.h"

namespace lossx {
namespace cuda {
namespace {

// ------------------------------------------------------------ math ----

__device__ __forceinline__ float exp_acc(float x) { return __expf(x); }
__device__ __forceinline__ double exp_acc(double x) { return exp(x); }
__device__ __forceinline__ float log_acc(float x) { return __logf(x); }
__device__ __forceinline__ double log_acc(double x) { return log(x); }
__device__ __forceinline__ float tanh_acc(float x) { return softcap_tanh(x); }
__device__ __forceinline__ double tanh_acc(double x) { return tanh(x); }

template <typename A> __device__ __forceinline__ A neg_inf() { return -INFINITY; }
template <typename A> __device__ __forceinline__ A qnan() { return static_cast<A>(NAN); }

// ------------------------------------------------------------ row sweeps ----

constexpr int kUnroll = 4;  // 16-byte loads in flight per thread before first use

// Calls f(j, x_j) for every j of a row of C elements of T, each thread of the
// block taking 16-byte vectors (a scalar head until the row is 16-byte
// aligned, a scalar tail). Order of calls per thread is fixed.
template <typename T, typename FV, typename FS>
__device__ __forceinline__ void row_read_v(const T* __restrict__ row, int64_t C, FV&& fv, FS&& fs) {
  constexpr int V = 16 / sizeof(T);
  const int64_t tid = threadIdx.x, nt = blockDim.x;
  int64_t head = static_cast<int64_t>(((16 - (reinterpret_cast<uintptr_t>(row) & 15)) & 15) / sizeof(T));
  if (head > C) head = C;
  for (int64_t j = tid; j < head; j += nt) fs(j, row[j]);
  const int64_t nvec = (C - head) / V;
  const uint4* vp = reinterpret_cast<const uint4*>(row + head);
  for (int64_t k0 = tid; k0 < nvec; k0 += kUnroll * nt) {
    uint4 r[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t k = k0 + u * nt;
      if (k < nvec) r[u] = __ldg(vp + k);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t k = k0 + u * nt;
      if (k < nvec) {
        T v[V];
        memcpy(v, &r[u], 16);
        fv(head + k * V, v);
      }
    }
  }
  for (int64_t j = head + nvec * V + tid; j < C; j += nt) fs(j, row[j]);
}

// Element-wise form of row_read_v: f(j, x[j]) for every element.
template <typename T, typename F>
__device__ __forceinline__ void row_read(const T* __restrict__ row, int64_t C, F&& f) {
  constexpr int V = 16 / sizeof(T);
  row_read_v(
      row, C,
      [&](int64_t j0, const T* v) {
#pragma unroll
        for (int e = 0; e < V; ++e) f(j0 + e, v[e]);
      },
      f);
}

// out[j] = f(j, in[j]) over a row; vectorised when in and out share their
// 16-byte alignment (always, for rows of buffers from the same allocator).
template <typename T, typename F>
__device__ __forceinline__ void row_map(const T* __restrict__ in, T* out, int64_t C, F&& f) {
  constexpr int V = 16 / sizeof(T);
  const int64_t tid = threadIdx.x, nt = blockDim.x;
  if (((reinterpret_cast<uintptr_t>(in) ^ reinterpret_cast<uintptr_t>(out)) & 15) != 0) {
    for (int64_t j = tid; j < C; j += nt) out[j] = f(j, in[j]);
    return;
  }
  int64_t head = static_cast<int64_t>(((16 - (reinterpret_cast<uintptr_t>(in) & 15)) & 15) / sizeof(T));
  if (head > C) head = C;
  for (int64_t j = tid; j < head; j += nt) out[j] = f(j, in[j]);
  const int64_t nvec = (C - head) / V;
  const uint4* vp = reinterpret_cast<const uint4*>(in + head);
  uint4* op = reinterpret_cast<uint4*>(out + head);
  for (int64_t k0 = tid; k0 < nvec; k0 += kUnroll * nt) {
    uint4 r[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t k = k0 + u * nt;
      if (k < nvec) r[u] = vp[k];  // not __ldg: `out` may alias `in` (in-place gradient)
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t k = k0 + u * nt;
      if (k < nvec) {
        T v[V], o[V];
        memcpy(v, &r[u], 16);
#pragma unroll
        for (int e = 0; e < V; ++e) o[e] = f(head + k * V + e, v[e]);
        uint4 w;
        memcpy(&w, o, 16);
        op[k] = w;
      }
    }
  }
  for (int64_t j = head + nvec * V + tid; j < C; j += nt) out[j] = f(j, in[j]);
}

template <typename T>
__device__ __forceinline__ void row_zero(T* out, int64_t C) {
  for (int64_t j = threadIdx.x; j < C; j += blockDim.x) out[j] = from_acc<T>(typename AccOf<T>::type(0));
}

// ----------------------------------------------------- block reductions ----

// Online-softmax state: running max, sum of exp(x - max), NaN seen.
template <typename A>
struct MS {
  A m, s;
  bool nan;
};

template <typename A>
__device__ __forceinline__ void ms_add(MS<A>& st, A x) {
  if (x != x) {
    st.nan = true;
    return;
  }
  if (x > st.m) {
    // exp(-inf - x) is 0, so the first finite element needs no special case;
    // a +inf makes the row non-finite, handled at the end.
    st.s = st.s * exp_acc(st.m - x) + A(1);
    st.m = x;
  } else if (x != neg_inf<A>()) {  // -inf adds 0; skipping it avoids -inf - -inf = NaN
    st.s += exp_acc(x - st.m);
  }
}

// One 16-byte vector into the online state: the running max moves at most
// once per vector, so each element costs one exp and no divergent branch.
template <typename T, typename A>
__device__ __forceinline__ void ms_add_vec(MS<A>& st, const T* v) {
  constexpr int V = 16 / sizeof(T);
  A z[V];
  A vmax = neg_inf<A>();
  bool nan = false;
#pragma unroll
  for (int e = 0; e < V; ++e) {
    z[e] = to_acc(v[e]);
    nan |= z[e] != z[e];
    vmax = z[e] > vmax ? z[e] : vmax;
  }
  if (nan) {
    st.nan = true;
    return;
  }
  if (!(vmax > neg_inf<A>())) return;  // all -inf: adds 0
  if (vmax > st.m) {
    st.s *= exp_acc(st.m - vmax);  // exp(-inf) = 0 for the first finite vector
    st.m = vmax;
  }
  A acc = 0;
#pragma unroll
  for (int e = 0; e < V; ++e) acc += exp_acc(z[e] - st.m);
  st.s += acc;
}

template <typename A>
__device__ __forceinline__ MS<A> ms_merge(MS<A> a, MS<A> b) {
  MS<A> r;
  r.nan = a.nan || b.nan;
  r.m = a.m > b.m ? a.m : b.m;
  const A ea = a.m == r.m ? A(1) : exp_acc(a.m - r.m);
  const A eb = b.m == r.m ? A(1) : exp_acc(b.m - r.m);
  r.s = a.s * ea + b.s * eb;
  return r;
}

template <typename A>
__device__ __forceinline__ MS<A> shfl(MS<A> v, int off) {
  MS<A> r;
  r.m = __shfl_xor_sync(0xffffffffu, v.m, off);
  r.s = __shfl_xor_sync(0xffffffffu, v.s, off);
  r.nan = __shfl_xor_sync(0xffffffffu, static_cast<int>(v.nan), off) != 0;
  return r;
}

template <typename A> __device__ __forceinline__ MS<A> combine(MS<A> a, MS<A> b) { return ms_merge(a, b); }


template <typename A>
__device__ __forceinline__ MS<A> block_ms(MS<A> v, MS<A>* smem) {
  if (threadIdx.x == 0) smem[32] = MS<A>{neg_inf<A>(), A(0), false};
  return block_reduce(v, smem);
}

// lse from the block's online state: NaN for rows holding NaN, +inf, or only
// -inf (the CPU reference's exact path gives NaN for these: inf - inf).
template <typename A>
__device__ __forceinline__ A lse_of(const MS<A>& st) {
  if (st.nan || !(st.m > neg_inf<A>()) || st.m == -neg_inf<A>()) return qnan<A>();
  return st.m + log_acc(st.s);
}

// --------------------------------------------------------- workspace ----

// One cudaMallocAsync per call: the Header (ce_reg.cuh) first, then chunk
// partials and the per-row losses.
constexpr int kChunk = 4096;      // rows per first-stage partial (fixed: determinism)
constexpr int kReduceThreads = 256;

// Stage 1 of the label pass: validation and per-chunk sums of
// (w[y], w[y] * sw, valid) for hard labels, or (sw, 0, 0) for soft targets.
template <typename A>
__global__ void ce_prep(CEParams p) {
  __shared__ double sm[33];
  const int64_t c0 = static_cast<int64_t>(blockIdx.x) * kChunk;
  const int64_t c1 = min(c0 + kChunk, p.N);
  double a = 0, b = 0, v = 0;
  for (int64_t i = c0 + threadIdx.x; i < c1; i += blockDim.x) {
    const double swi = p.sw ? static_cast<double>(ldA<A>(p.sw, i)) : 1.0;
    if (p.labels) {
      const int64_t y = p.labels[i];
      if (y == p.ignore_index) continue;
      if (y < 0 || y >= p.C) {
        atomicMin(&p.hdr->err_pos, static_cast<unsigned long long>(i));
        continue;
      }
      const double wy = p.w ? static_cast<double>(ldA<A>(p.w, y)) : 1.0;
      a += wy;
      b += wy * swi;
      v += 1.0;
    } else {
      a += swi;
    }
  }
  a = block_sum(a, sm);
  b = block_sum(b, sm);
  v = block_sum(v, sm);
  if (threadIdx.x == 0) {
    p.prep_part[3 * blockIdx.x + 0] = a;
    p.prep_part[3 * blockIdx.x + 1] = b;
    p.prep_part[3 * blockIdx.x + 2] = v;
  }
}

// One block: the normaliser, the class-weight sum, the bad label's value.
template <typename A>
__global__ void ce_finalize(CEParams p, int64_t nchunks) {
  __shared__ double sm[33];
  double a = 0, b = 0, v = 0, ws = 0;
  for (int64_t k = threadIdx.x; k < nchunks; k += blockDim.x) {
    a += p.prep_part[3 * k];
    b += p.prep_part[3 * k + 1];
    v += p.prep_part[3 * k + 2];
  }
  if (p.w) {
    for (int64_t j = threadIdx.x; j < p.C; j += blockDim.x) ws += static_cast<double>(ldA<A>(p.w, j));
  }
  a = block_sum(a, sm);
  b = block_sum(b, sm);
  v = block_sum(v, sm);
  ws = block_sum(ws, sm);
  if (threadIdx.x == 0) {
    double norm = 0;
    const bool hard = p.labels != nullptr;
    switch (static_cast<Normalizer>(p.normalizer)) {
      case Normalizer::kAuto: norm = hard ? a : static_cast<double>(p.N); break;
      case Normalizer::kValid: norm = hard ? v : static_cast<double>(p.N); break;
      case Normalizer::kWeights: norm = hard ? b : (p.sw ? a : static_cast<double>(p.N)); break;
      case Normalizer::kValue: norm = p.normalizer_value; break;
    }
    p.hdr->norm = norm;
    p.hdr->wsum_all = p.w ? ws : static_cast<double>(p.C);
    const unsigned long long pos = p.hdr->err_pos;
    p.hdr->err_val = pos != ~0ull ? static_cast<long long>(p.labels[pos]) : 0;
  }
}

template <typename T, typename A>
__device__ __forceinline__ A capped(A v, bool cap, A s, A inv) {
  return cap ? s * tanh_acc(v * inv) : v;
}

// kPlain: hard labels without softcap, label smoothing or a target gradient,
// the common call, compiled apart so that the options' code and registers are
// gone from it (the bf16/fp16 kernel spilled 270 bytes per thread with them).
template <typename T, bool kPlain>
__global__ void __launch_bounds__(1024) ce_rows(CEParams p) {
  using A = typename AccOf<T>::type;
  __shared__ MS<A> sm_ms[33];
  __shared__ A sm_a[33];
  const int64_t N = p.N, C = p.C;
  const bool cap = !kPlain && p.softcap > 0;
  const A capv = static_cast<A>(p.softcap), capinv = cap ? A(1) / capv : A(0);
  const A eps = kPlain ? A(0) : static_cast<A>(p.eps), zl = static_cast<A>(p.zl);
  const bool hard = kPlain || p.labels != nullptr;
  const A inv_c = A(1) / static_cast<A>(C);
  const A* w = static_cast<const A*>(p.w);
  T* const grad_t = kPlain ? nullptr : static_cast<T*>(p.grad_t);
  const bool want_grad = p.grad != nullptr || grad_t != nullptr;
  A* row_loss = static_cast<A*>(p.row_loss);
  A* lse_out = static_cast<A*>(p.lse);

  // A bad label fails the call (ce_prep found it): leave every output, and the
  // logits under inplace_grad, as they were, as the CPU path does.
  if (p.hdr->err_pos != ~0ull) return;
  for (int64_t i = blockIdx.x; i < N; i += gridDim.x) {
    const int64_t off = i * C;
    const T* x = static_cast<const T*>(p.x) + off;
    int64_t y = -1;
    bool ignored = false;
    if (hard) {
      y = p.labels[i];
      // Out-of-range labels were recorded by ce_prep and fail the call; the
      // row is treated as ignored so that nothing is read out of bounds.
      ignored = y == p.ignore_index || y < 0 || y >= C;
    }
    if (ignored) {
      if (threadIdx.x == 0) row_loss[i] = A(0);
      if (!lse_out) {
        if (p.grad) row_zero(static_cast<T*>(p.grad) + off, C);  // exact zeros, NaN logits or not
        continue;
      }
    }
    const T* t = hard ? nullptr : static_cast<const T*>(p.target) + off;

    // Pass 1: online softmax, plus the loss coefficients that need the row:
    // acc = sum a_j (z_j - c) (smoothing or soft targets), asum = sum a_j (soft).
    // The shift c (the row's first logit) keeps A lse - sum a_j z_j from
    // cancelling catastrophically when the logits are large: the terms are of
    // the size of the row's spread, not of its values (the CPU shifts by the max).
    MS<A> st{neg_inf<A>(), A(0), false};
    A acc = 0, asum = 0;
    const bool need_acc = !hard || eps > A(0);
    A c = 0;
    if (need_acc) {
      c = capped<T, A>(to_acc(x[0]), cap, capv, capinv);
      if (!(c - c == A(0))) c = A(0);  // NaN or infinite: no shift (the row's loss is NaN/inf anyway)
    }
    if (!need_acc && !cap) {
      row_read_v(x, C, [&](int64_t, const T* v) { ms_add_vec<T, A>(st, v); },
                 [&](int64_t, T raw) { ms_add(st, to_acc(raw)); });
    } else row_read(x, C, [&](int64_t j, T raw) {
      const A z = capped<T, A>(to_acc(raw), cap, capv, capinv);
      ms_add(st, z);
      if (need_acc) {
        if (hard) {
          acc += (w ? w[j] : A(1)) * (z - c);
        } else {
          A a = (A(1) - eps) * to_acc(t[j]) + eps * inv_c;
          if (w) a *= w[j];
          asum += a;
          acc += a * (z - c);
        }
      }
    });
    // z_y before the row's reductions: with inplace_grad, warps past the last
    // barrier below start overwriting x with the gradient, x[y] included.
    const A zy = (hard && !ignored) ? capped<T, A>(to_acc(x[y]), cap, capv, capinv) : A(0);
    st = block_ms(st, sm_ms);
    if (need_acc) {
      acc = block_sum(acc, sm_a);
      if (!hard) asum = block_sum(asum, sm_a);
    }
    const A lse = lse_of(st);
    if (lse_out && threadIdx.x == 0) lse_out[i] = lse;
    if (ignored) {
      // After the reductions' barriers every read of the row is done, so the
      // zeros may overwrite it (inplace_grad) without changing its lse.
      if (p.grad) row_zero(static_cast<T*>(p.grad) + off, C);
      continue;
    }

    A Acoef, AZ;
    if (hard) {
      const A wy = w ? w[y] : A(1);
      Acoef = (A(1) - eps) * wy;
      AZ = Acoef * (zy - c);
      if (eps > A(0)) {
        Acoef += eps * static_cast<A>(p.hdr->wsum_all) * inv_c;
        AZ += eps * inv_c * acc;
      }
    } else {
      Acoef = asum;
      AZ = acc;
    }
    A loss = Acoef * (lse == lse ? (st.m - c) + log_loss(st.s) : lse) - AZ;  // Acoef (lse - c) - AZ
    // Plain hard labels: w_y (log s + (m - z_y)) avoids the cancellation of
    // lse - z_y when the logits are large (the CPU path computes the same).
    if (hard && eps == A(0) && lse == lse) loss = Acoef * (log_loss(st.s) + (st.m - zy));
    if (zl != A(0)) loss += zl * lse * lse;
    if (threadIdx.x == 0) row_loss[i] = (p.sw ? ldA<A>(p.sw, i) : A(1)) * loss;
    if (!want_grad) continue;

    // Pass 2: gradient, re-reading the row (from L2: see the grid size).
    const A scale = row_scale<A>(p, i, false);
    const A coef = scale * (Acoef + A(2) * zl * lse);
    if (grad_t) {
      // d loss / d t_j = scale (1 - eps) w_j (lse - z_j); written before the
      // logits gradient, which may overwrite x (inplace_grad).
      T* gt = grad_t + off;
      const A k = scale * (A(1) - eps);
      row_map(x, gt, C, [&](int64_t j, T raw) {
        const A z = capped<T, A>(to_acc(raw), cap, capv, capinv);
        A gv = k * (lse - z);
        if (w) gv *= w[j];
        return from_acc<T>(gv);
      });
      // row_map deals out elements by the alignment of both pointers: when gt
      // is misaligned against x, this pass's owner of x[j] need not be the
      // next pass's, which may overwrite x[j] (inplace_grad) before it is read.
      if (p.grad == p.x) __syncthreads();
    }
    if (p.grad) {
      T* g = static_cast<T*>(p.grad) + off;
      const A smooth = scale * eps * inv_c;
      const A wy = hard ? (w ? w[y] : A(1)) : A(0);
      const A corr = scale * (A(1) - eps) * wy;
      row_map(x, g, C, [&](int64_t j, T raw) {
        const A z = capped<T, A>(to_acc(raw), cap, capv, capinv);
        A gv = coef * exp_acc(z - lse);
        if (hard) {
          if (eps > A(0)) gv -= smooth * (w ? w[j] : A(1));
          if (j == y) gv -= corr;
        } else {
          A a = scale * (A(1) - eps) * to_acc(t[j]) + smooth;
          if (w) a *= w[j];
          gv -= a;
        }
        if (cap) {
          const A zc = z * capinv;
          gv *= A(1) - zc * zc;
        }
        return from_acc<T>(gv);
      });
    }
  }
}

// nll_loss: loss_i = -sw_i w[y] x[i, y]. Nothing is written after a bad label.
template <typename T>
__global__ void nll_rows(CEParams p) {
  using A = typename AccOf<T>::type;
  if (p.hdr->err_pos != ~0ull) return;
  const A* w = static_cast<const A*>(p.w);
  A* row_loss = static_cast<A*>(p.row_loss);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < p.N;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t y = p.labels[i];
    if (y == p.ignore_index || y < 0 || y >= p.C) {
      row_loss[i] = A(0);
      continue;
    }
    const A wy = w ? w[y] : A(1);
    const A xv = to_acc(static_cast<const T*>(p.x)[i * p.C + y]);
    row_loss[i] = -(p.sw ? ldA<A>(p.sw, i) : A(1)) * wy * xv;
  }
}

// nll_loss's gradient, after nll_rows (so that it may overwrite the
// log-probabilities it read): -scale_i w[y] at the label, 0 elsewhere; a warp
// per row, the lanes along it. Instead of a memset, which would write even
// after a bad label.
template <typename T>
__global__ void nll_grad(CEParams p) {
  using A = typename AccOf<T>::type;
  if (p.hdr->err_pos != ~0ull) return;
  const A* w = static_cast<const A*>(p.w);
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  const int lane = static_cast<int>(threadIdx.x % 32);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32; i < p.N; i += warps) {
    const int64_t y = p.labels[i];
    const bool live = y != p.ignore_index && y >= 0 && y < p.C;
    const T gy = from_acc<T>(live ? -row_scale<A>(p, i, false) * (w ? w[y] : A(1)) : A(0));
    T* g = static_cast<T*>(p.grad) + i * p.C;
    for (int64_t j = lane; j < p.C; j += 32) g[j] = j == y ? gy : from_acc<T>(A(0));
  }
}

// ce_reg_rows (ce_reg.cuh) with one block, or one cluster of S blocks, per
// row. The bounds allow 64 registers per thread: the row's 32 and the rest.
template <typename T, int kThreads, int S, bool kOpts>
__global__ void __launch_bounds__(kThreads, 1024 / kThreads) ce_reg(CEParams p) {
  __shared__ double red[kThreads / 32];
  __shared__ double slots[2];
  const int tid = static_cast<int>(threadIdx.x);
  const int rank = static_cast<int>(blockIdx.x % S);  // a 1-D grid's clusters are runs of S blocks
  const ClusterTeam<kThreads, S> tm{rank * kThreads + tid, BlockTeam<kThreads>{tid, red}, slots, 0};
  ce_reg_rows<T, kOpts>(tm, p, blockIdx.x / S, gridDim.x / S);
  tm.end();
}

// Per-row losses -> per-chunk double partials (fixed chunks, fixed tree).
template <typename A>
__global__ void loss_stage1(const A* row_loss, int64_t N, const Header* hdr, double* part) {
  __shared__ double sm[33];
  if (hdr->err_pos != ~0ull) return;  // a bad label: the rows were never written
  const int64_t c0 = static_cast<int64_t>(blockIdx.x) * kChunk;
  const int64_t c1 = min(c0 + kChunk, N);
  double s = 0;
  for (int64_t i = c0 + threadIdx.x; i < c1; i += blockDim.x) s += static_cast<double>(row_loss[i]);
  s = block_sum(s, sm);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}

template <typename A>
__global__ void loss_stage2(const double* part, int64_t nchunks, const Header* hdr, bool mean, A* out) {
  __shared__ double sm[33];
  if (hdr->err_pos != ~0ull) return;  // the loss stays as it was, as on the CPU
  double s = 0;
  for (int64_t k = threadIdx.x; k < nchunks; k += blockDim.x) s += part[k];
  s = block_sum(s, sm);
  if (threadIdx.x == 0) out[0] = static_cast<A>(mean ? s / hdr->norm : s);
}

// ---------------------------------------------------- log_softmax / lse ----

struct SMParams {
  int64_t N, C;
  const void* x;
  bool log_softmax;
  void* out;
  const void* go;
  void* gi;
};

template <typename T>
__global__ void __launch_bounds__(1024) softmax_rows(SMParams p) {
  using A = typename AccOf<T>::type;
  __shared__ MS<A> sm_ms[33];
  __shared__ A sm_a[33];
  const int64_t C = p.C;
  for (int64_t i = blockIdx.x; i < p.N; i += gridDim.x) {
    const int64_t off = i * C;
    const T* x = static_cast<const T*>(p.x) + off;
    const T* g = (p.log_softmax && p.go) ? static_cast<const T*>(p.go) + off : nullptr;
    MS<A> st{neg_inf<A>(), A(0), false};
    A gsum = 0;
    row_read(x, C, [&](int64_t j, T raw) {
      ms_add(st, to_acc(raw));
      if (g) gsum += to_acc(g[j]);
    });
    st = block_ms(st, sm_ms);
    if (g) gsum = block_sum(gsum, sm_a);
    if (!g) gsum = static_cast<A>(C);
    A lse = lse_of(st);
    // logsumexp as torch's (and the CPU path's): +inf for a row holding +inf, -inf
    // for a row of -inf; log_softmax of those rows stays NaN.
    if (!p.log_softmax && !st.nan && (st.m == -neg_inf<A>() || !(st.m > neg_inf<A>()))) lse = st.m;
    if (p.out) {
      if (p.log_softmax) {
        row_map(x, static_cast<T*>(p.out) + off, C,
                [&](int64_t, T raw) { return from_acc<T>(to_acc(raw) - lse); });
      } else if (threadIdx.x == 0) {
        static_cast<T*>(p.out)[i] = from_acc<T>(lse);
      }
    }
    if (!p.gi) continue;
    T* gi = static_cast<T*>(p.gi) + off;
    if (p.log_softmax) {
      row_map(x, gi, C, [&](int64_t j, T raw) {
        const A pj = exp_acc(to_acc(raw) - lse);
        return from_acc<T>((g ? to_acc(g[j]) : A(1)) - pj * gsum);
      });
    } else {
      const A go = p.go ? to_acc(static_cast<const T*>(p.go)[i]) : A(1);
      row_map(x, gi, C, [&](int64_t, T raw) { return from_acc<T>(go * exp_acc(to_acc(raw) - lse)); });
    }
  }
}

// ------------------------------------------------------------ launching ----

int threads_for(int64_t C, size_t es) {
  const int64_t V = static_cast<int64_t>(16 / es);
  const int64_t want = (C / V + kUnroll - 1) / kUnroll;  // each thread: kUnroll vectors
  int t = 32;
  while (t < want && t < 1024) t *= 2;
  return t;
}

// Blocks for the row kernels: enough to fill the GPU, few enough that the rows
// in flight (read twice: softmax pass, then gradient pass) fit in about half of
// L2, so that the second read costs no HBM traffic when rows are big.
template <typename K>
cudaError_t grid_for(K kernel, int dev, int threads, int64_t rows, int64_t row_bytes, int* grid) {
  int sms = 0, l2 = 0, per_sm = 0;
  cudaError_t e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev);
  if (e == cudaSuccess) e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, 0);
  if (e != cudaSuccess) return e;
  int64_t g = static_cast<int64_t>(sms) * (per_sm > 0 ? per_sm : 1);
  const int64_t fit = row_bytes > 0 ? (static_cast<int64_t>(l2) / 2) / row_bytes : g;
  if (fit < g) g = fit > sms ? fit : sms;
  if (g > rows) g = rows;
  if (g < 1) g = 1;
  *grid = static_cast<int>(g);
  return cudaSuccess;
}

// ce_reg's team for a row of C classes: the smallest that holds it. Blocks
// of up to 512 threads (two per SM at 64 registers: one loads while the other
// reduces), then clusters of 2, 4 or 8 of them, then 8 blocks of 1024; without
// clusters one block of up to 1024. nullptr when the row is too long.
using RegKernel = void (*)(CEParams);
struct RegPlan {
  RegKernel kernel;
  int threads, cluster;
};

template <typename T, bool O>
bool reg_plan(int64_t C, bool clusters, RegPlan* plan) {
  static const RegPlan blocks[] = {{ce_reg<T, 32, 1, O>, 32, 1},   {ce_reg<T, 64, 1, O>, 64, 1},
                                   {ce_reg<T, 128, 1, O>, 128, 1}, {ce_reg<T, 256, 1, O>, 256, 1},
                                   {ce_reg<T, 512, 1, O>, 512, 1}};
  static const RegPlan big[] = {{ce_reg<T, 512, 2, O>, 512, 2}, {ce_reg<T, 512, 4, O>, 512, 4},
                                {ce_reg<T, 512, 8, O>, 512, 8}, {ce_reg<T, 1024, 8, O>, 1024, 8}};
  static const RegPlan one_big{ce_reg<T, 1024, 1, O>, 1024, 1};
  for (const RegPlan& r : blocks) {
    if (C <= reg_capacity<T>(r.threads)) {
      *plan = r;
      return true;
    }
  }
  if (!clusters) {
    *plan = one_big;
    return C <= reg_capacity<T>(one_big.threads);
  }
  for (const RegPlan& r : big) {
    if (C <= reg_capacity<T>(static_cast<int64_t>(r.threads) * r.cluster)) {
      *plan = r;
      return true;
    }
  }
  return false;
}

// Launches ce_reg for p when a team holds its rows; *launched false (and
// cudaSuccess) otherwise, for ce_rows to take the call.
template <typename T>
cudaError_t launch_reg(const CEParams& p, int dev, cudaStream_t stream, bool* launched) {
  *launched = false;
  int major = 0, sms = 0;
  cudaError_t e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  if (e != cudaSuccess) return e;
  bool clusters = major >= 9;
  if (clusters) {
    // The cluster code exists only where the kernels were built for sm_90+
    // (a build for sm_80 alone runs here through its sm_80 PTX).
    cudaFuncAttributes fa;
    e = cudaFuncGetAttributes(&fa, ce_reg<T, 512, 2, true>);
    if (e != cudaSuccess) return e;
    clusters = fa.ptxVersion >= 90;
  }
  RegPlan pl;
  const bool planned = ce_reg_needs_opts(p) ? reg_plan<T, true>(p.C, clusters, &pl)
                                            : reg_plan<T, false>(p.C, clusters, &pl);
  if (!planned) return cudaSuccess;
  const int64_t N = p.N;
  if (pl.cluster == 1) {
    int per_sm = 0;
    e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, pl.kernel, pl.threads, 0);
    if (e != cudaSuccess) return e;
    const int64_t resident = static_cast<int64_t>(sms) * (per_sm > 0 ? per_sm : 1);
    pl.kernel<<<static_cast<unsigned>(N < resident ? N : resident), pl.threads, 0, stream>>>(p);
    *launched = true;
    return cudaGetLastError();
  }
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = static_cast<unsigned>(pl.cluster);
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(pl.cluster) * 2 * static_cast<unsigned>(sms));
  cfg.blockDim = dim3(static_cast<unsigned>(pl.threads));
  cfg.dynamicSmemBytes = 0;
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  int nclusters = 0;
  if (cudaOccupancyMaxActiveClusters(&nclusters, pl.kernel, &cfg) != cudaSuccess || nclusters < 1) {
    cudaGetLastError();  // no such cluster fits this GPU (or its partition): ce_rows instead
    return cudaSuccess;
  }
  cfg.gridDim = dim3(static_cast<unsigned>(pl.cluster) * static_cast<unsigned>(N < nclusters ? N : nclusters));
  e = cudaLaunchKernelEx(&cfg, pl.kernel, p);
  *launched = true;
  return e;
}

// LOSSX_CUDA_CE_KERNEL=reg sends cross_entropy with hard labels to ce_reg
// where a team holds the row; the default stays ce_rows until ce_reg has run
// tests/cuda on a GPU (tools/gpu_check.sh runs them under both).
inline bool reg_requested() {
  const char* v = std::getenv("LOSSX_CUDA_CE_KERNEL");
  return v != nullptr && std::strcmp(v, "reg") == 0;
}

template <typename T>
Status launch_ce(const CrossEntropyArgs& a, StatusInfo* info) {
  using A = typename AccOf<T>::type;
  DeviceGuard guard;
  LOSSX_CU(guard.enter(a.logits));
  cudaStream_t stream = static_cast<cudaStream_t>(a.stream);
  const int64_t N = a.rows, C = a.classes;
  const bool hard = a.labels != nullptr;
  if (hard) LOSSX_NO_CAPTURE(stream, "cross_entropy / nll_loss with integer labels");
  if (a.log_probs_input && !hard) return fail(info, Status::kInvalidArgument, "nll_loss needs integer labels");
  const bool reduce = a.reduction != Reduction::kNone;
  const int64_t nchunks = (N + kChunk - 1) / kChunk;

  size_t bytes = sizeof(Header) + sizeof(double) * static_cast<size_t>(4 * nchunks);
  const size_t row_loss_off = (bytes + 255) & ~size_t(255);
  if (reduce) bytes = row_loss_off + sizeof(A) * static_cast<size_t>(N);
  void* ws = nullptr;
  LOSSX_CU(cudaMallocAsync(&ws, bytes, stream));

  CEParams p;
  p.N = N;
  p.C = C;
  p.x = a.logits;
  p.labels = a.labels;
  p.target = a.target;
  p.w = a.weight;
  p.sw = a.sample_weight;
  p.ignore_index = a.ignore_index;
  p.eps = a.label_smoothing;
  p.zl = a.z_loss;
  p.softcap = a.softcap;
  p.reduction = static_cast<int>(a.reduction);
  p.normalizer = static_cast<int>(a.normalizer);
  p.normalizer_value = a.normalizer_value;
  p.loss = a.loss;
  p.lse = a.lse;
  p.grad = a.grad_logits;
  p.grad_t = a.grad_target;
  p.go = a.grad_output;
  p.hdr = static_cast<Header*>(ws);
  p.prep_part = reinterpret_cast<double*>(static_cast<char*>(ws) + sizeof(Header));
  p.loss_part = p.prep_part + 3 * nchunks;
  p.row_loss = reduce ? static_cast<void*>(static_cast<char*>(ws) + row_loss_off) : a.loss;

  // From here on every error path must still free ws: collect the first error.
  cudaError_t err = cudaMemsetAsync(ws, 0xff, sizeof(unsigned long long), stream);
  const char* where = "cudaMemsetAsync";
  auto step = [&](cudaError_t e, const char* w) {
    if (err == cudaSuccess && e != cudaSuccess) {
      err = e;
      where = w;
    }
  };
  if (nchunks > 0 && err == cudaSuccess) {
    ce_prep<A><<<static_cast<unsigned>(nchunks), kReduceThreads, 0, stream>>>(p);
    step(cudaGetLastError(), "ce_prep launch");
  }
  if (err == cudaSuccess) {
    ce_finalize<A><<<1, 1024, 0, stream>>>(p, nchunks);
    step(cudaGetLastError(), "ce_finalize launch");
  }
  if (N > 0 && err == cudaSuccess) {
    if (a.log_probs_input) {
      const int64_t blocks = (N + 255) / 256;
      nll_rows<T><<<static_cast<unsigned>(blocks < 65536 ? blocks : 65536), 256, 0, stream>>>(p);
      step(cudaGetLastError(), "nll_rows launch");
      if (a.grad_logits && err == cudaSuccess) {
        const int64_t gblocks = (N + 7) / 8;  // 8 warps, 8 rows, per block
        nll_grad<T><<<static_cast<unsigned>(gblocks < 65536 ? gblocks : 65536), 256, 0, stream>>>(p);
        step(cudaGetLastError(), "nll_grad launch");
      }
    } else {
      bool launched = false;
      if constexpr (!std::is_same<T, double>::value) {
        // ce_reg moves whole 16-byte vectors: every row must start on one.
        constexpr int64_t kV = 16 / static_cast<int64_t>(sizeof(T));
        const bool whole_vectors =
            C % kV == 0 && aligned16(a.logits) && (a.grad_logits == nullptr || aligned16(a.grad_logits));
        if (hard && a.grad_target == nullptr && whole_vectors && reg_requested()) {
          step(launch_reg<T>(p, guard.device(), stream, &launched), "ce_reg launch");
        }
      }
      if (!launched && err == cudaSuccess) {
        const int threads = threads_for(C, sizeof(T));
        int grid = 1;
        const bool two_pass = a.grad_logits != nullptr || a.grad_target != nullptr;
        const bool plain = hard && a.softcap == 0 && a.label_smoothing == 0 && a.grad_target == nullptr;
        void (*const rows)(CEParams) = plain ? ce_rows<T, true> : ce_rows<T, false>;
        step(grid_for(rows, guard.device(), threads, N, two_pass ? C * static_cast<int64_t>(sizeof(T)) : 0, &grid),
             "device attributes");
        if (err == cudaSuccess) {
          rows<<<grid, threads, 0, stream>>>(p);
          step(cudaGetLastError(), "ce_rows launch");
        }
      }
    }
  }
  if (reduce && err == cudaSuccess) {
    if (nchunks > 0) {
      loss_stage1<A><<<static_cast<unsigned>(nchunks), kReduceThreads, 0, stream>>>(
          static_cast<const A*>(p.row_loss), N, p.hdr, p.loss_part);
      step(cudaGetLastError(), "loss_stage1 launch");
    }
    if (err == cudaSuccess) {
      loss_stage2<A><<<1, 1024, 0, stream>>>(p.loss_part, nchunks, p.hdr, a.reduction == Reduction::kMean,
                                             static_cast<A*>(a.loss));
      step(cudaGetLastError(), "loss_stage2 launch");
    }
  }
  // The label check needs the error slot on the host: one 16-byte copy and a
  // stream synchronisation per call with hard labels. This is the only host
  // sync; calls with soft targets stay fully asynchronous.
  long long slot[2] = {-1, 0};
  if (hard && err == cudaSuccess) step(cudaMemcpyAsync(slot, ws, sizeof(slot), cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync(error slot)");
  step(cudaFreeAsync(ws, stream), "cudaFreeAsync");
  if (hard && err == cudaSuccess) step(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  if (err != cudaSuccess) return cuda_fail(info, err, where);
  if (hard && static_cast<unsigned long long>(slot[0]) != ~0ull) {
    char msg[160];
    std::snprintf(msg, sizeof(msg), "label %lld at position %lld is out of range [0, %lld)", slot[1], slot[0],
                  static_cast<long long>(C));
    return fail(info, Status::kIndexError, msg, slot[0], slot[1]);
  }
  return Status::kOk;
}

template <typename T>
Status launch_softmax(const SoftmaxArgs& a, StatusInfo* info) {
  DeviceGuard guard;
  LOSSX_CU(guard.enter(a.input));
  if (a.rows == 0) return Status::kOk;
  SMParams p{a.rows, a.cols, a.input, a.log_softmax, a.out, a.grad_output, a.grad_input};
  const int threads = threads_for(a.cols, sizeof(T));
  int grid = 1;
  const bool two_pass = a.grad_input != nullptr || (a.log_softmax && a.out != nullptr);
  LOSSX_CU(grid_for(softmax_rows<T>, guard.device(), threads, a.rows,
                    two_pass ? a.cols * static_cast<int64_t>(sizeof(T)) : 0, &grid));
  softmax_rows<T><<<grid, threads, 0, static_cast<cudaStream_t>(a.stream)>>>(p);
  LOSSX_CU(cudaGetLastError());
  return Status::kOk;
}

}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear it: "no driver" must not poison later calls
    return 0;
  }
  return n;
}

Status cross_entropy(const CrossEntropyArgs& a, StatusInfo* info) {
  switch (a.dtype) {
    case DType::kF32: return launch_ce<float>(a, info);
    case DType::kF64: return launch_ce<double>(a, info);
    case DType::kF16: return launch_ce<__half>(a, info);
    case DType::kBF16: return launch_ce<__nv_bfloat16>(a, info);
  }
  return fail(info, Status::kUnsupported, "unsupported dtype");
}

Status softmax_family(const SoftmaxArgs& a, StatusInfo* info) {
  switch (a.dtype) {
    case DType::kF32: return launch_softmax<float>(a, info);
    case DType::kF64: return launch_softmax<double>(a, info);
    case DType::kF16: return launch_softmax<__half>(a, info);
    case DType::kBF16: return launch_softmax<__nv_bfloat16>(a, info);
  }
  return fail(info, Status::kUnsupported, "unsupported dtype");
}

}  // namespace cuda
}  // namespace lossx
