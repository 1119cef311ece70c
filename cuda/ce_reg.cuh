// cross_entropy with hard labels, the row held in registers: one read of the
// logits from memory and one write of the gradient, whatever the row length
// (cuda/softmax.cu's ce_rows reads each row twice, the second time from L2).
//
// A team (team.cuh) of `size` lanes owns a row: lane l holds the 16-byte
// vectors l, l + size, l + 2 size, ... (kVec of them) as raw storage bits, so
// a warp's loads and stores stay coalesced. The team is a thread block, or on
// sm_90 a cluster of blocks exchanging partials through distributed shared
// memory, which is how rows of 128K-256K classes fit in registers. Three
// sweeps over the registers: max (NaN-propagating), then sum of exp(z - max)
// (with sum w_j z_j for label smoothing), then the gradient, stored once.
//
// The row code is __host__ __device__: tests/ce_reg_host.cu runs it under
// teams of host threads (tests/test_ce_reg_cuda_functors.py) on machines
// without a GPU.
#pragma once
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "common.cuh"
#include "hd_math.cuh"
#include "team.cuh"

namespace lossx {
namespace cuda {
namespace {

// --------------------------------------------------- per-call parameters ----

// The per-call device workspace starts with this header.
struct Header {
  unsigned long long err_pos;  // smallest bad label position, ~0 when none
  long long err_val;
  double norm;      // the mean's denominator
  double wsum_all;  // sum of the class weights (C without weights)
  double pad[4];
};

struct CEParams {
  int64_t N, C;
  const void* x;
  const int64_t* labels;
  const void* target;
  const void* w;
  const void* sw;
  int64_t ignore_index;
  double eps, zl, softcap;
  int reduction;   // Reduction
  int normalizer;  // Normalizer
  double normalizer_value;
  void* loss;       // final output
  void* row_loss;   // N acc values (output itself for kNone)
  void* lse;
  void* grad;
  void* grad_t;
  const void* go;
  Header* hdr;
  double* prep_part;  // 3 per chunk
  double* loss_part;  // 1 per chunk
};

template <typename A>
LOSSX_HD A ldA(const void* p, int64_t i) {
  return static_cast<const A*>(p)[i];
}

// d(returned loss)/d(loss_i), as the CPU computes it (double, then acc type).
template <typename A>
LOSSX_HD A row_scale(const CEParams& p, int64_t i, bool ignored) {
  if (ignored) return A(0);
  double s = p.reduction == static_cast<int>(Reduction::kMean) ? 1.0 / p.hdr->norm : 1.0;
  if (p.sw) s *= static_cast<double>(ldA<A>(p.sw, i));
  if (p.go) s *= static_cast<double>(ldA<A>(p.go, p.reduction == static_cast<int>(Reduction::kNone) ? i : 0));
  return static_cast<A>(s);
}

// ------------------------------------------------------------------ math ----

// The device side is built with --use_fast_math: __expf/__logf, about 2 ulp.
LOSSX_HD float fast_exp(float x) {
#ifdef __CUDA_ARCH__
  return __expf(x);
#else
  return expf(x);
#endif
}
LOSSX_HD float fast_log(float x) {
#ifdef __CUDA_ARCH__
  return __logf(x);
#else
  return logf(x);
#endif
}
// tanhf under --use_fast_math may become tanh.approx (about 2^-11 relative
// error): too coarse for softcap's 1e-5 agreement with the CPU. Odd Taylor
// series near 0, exp form elsewhere (relative error a few 1e-7).
LOSSX_HD float softcap_tanh(float x) {
  const float ax = fabsf(x);
  if (ax < 0.125f) {
    const float x2 = x * x;
    return x * (1.f + x2 * (-1.f / 3.f + x2 * (2.f / 15.f + x2 * (-17.f / 315.f))));
  }
  const float t = fast_exp(-2.f * ax);
  return copysignf((1.f - t) / (1.f + t), x);
}

// log(s) for a row's loss (both cross-entropy kernels), s >= 1: the row's
// maximum contributes exp(0). Once per row, so accurately: fast __logf's
// absolute error (2^-21.4) is a large part of a confidently right row's loss.
template <typename A>
LOSSX_HD A log_loss(A s) {
  return d_log1p(s - A(1));
}

// ------------------------------------------------------------ row code ----

constexpr int kRegVec = 8;  // 16-byte vectors per lane: 32 registers of row data

// Rows of at most this many elements fit a team of `lanes`.
template <typename T>
constexpr int64_t reg_capacity(int64_t lanes) {
  return lanes * kRegVec * static_cast<int64_t>(16 / sizeof(T));
}

// Rows first, first + step, ... of cross_entropy with hard labels (p.labels),
// float accumulation (T: float, __half or __nv_bfloat16), C <= reg_capacity,
// whole 16-byte vectors: C * sizeof(T) a multiple of 16 and the logits (and
// gradient) 16-byte aligned, so every row is. A lane's vectors past the row
// (j >= C) hold nothing and are skipped.
// Every lane of the team runs this with the same rows, so the team's
// reductions (the only synchronisation) are reached by all lanes together.
//
// kOpts false compiles out softcap and label smoothing (the caller guarantees
// p.softcap <= 0 and p.eps == 0): their tanh and extra terms, live next to the
// row's 32 registers, made ptxas spill 40-58 bytes per bf16 thread in every team
// (sm_90, 64 registers); without them no team below 1024x8 spills.
template <typename T, bool kOpts, class Team>
LOSSX_HD void ce_reg_rows(const Team& tm, const CEParams& p, int64_t first, int64_t step) {
  constexpr int V = 16 / sizeof(T);
  // 32-bit offsets within a row (C <= reg_capacity < 2^31): fewer live
  // registers next to the row's 32.
  const int C = static_cast<int>(p.C);
  const int stride = Team::size * V;  // elements between a lane's vectors
  const int j0 = tm.lane * V;
  const bool cap = kOpts && p.softcap > 0;
  const float capv = static_cast<float>(p.softcap), capinv = cap ? 1.f / capv : 0.f;
  const float eps = kOpts ? static_cast<float>(p.eps) : 0.f, zl = static_cast<float>(p.zl);
  const float inv_c = 1.f / static_cast<float>(C);
  const float* w = static_cast<const float*>(p.w);
  float* row_loss = static_cast<float*>(p.row_loss);
  float* lse_out = static_cast<float*>(p.lse);
  // A bad label fails the call (ce_prep recorded it): leave every output, and
  // the logits under inplace_grad, as they were, as the CPU path does. Every
  // lane reads the same header, so the whole team returns together.
  if (p.hdr->err_pos != ~0ull) return;
  const auto zval = [&](T raw) {
    const float z = ld<float>(&raw, 0);
    return cap ? capv * softcap_tanh(z * capinv) : z;
  };

  for (int64_t i = first; i < p.N; i += step) {
    const int64_t off = i * p.C;
    const T* x = static_cast<const T*>(p.x) + off;
    T* g = p.grad ? static_cast<T*>(p.grad) + off : nullptr;
    const int64_t y64 = p.labels[i];
    // Out-of-range labels were recorded by ce_prep and fail the call; the row
    // is treated as ignored so that nothing is read out of bounds.
    const bool ignored = y64 == p.ignore_index || y64 < 0 || y64 >= C;
    const int y = ignored ? -1 : static_cast<int>(y64);
    const auto zero_grad = [&] {
      if (!g) return;
      T zs[V];
#pragma unroll
      for (int e = 0; e < V; ++e) st(zs, e, 0.f);
      uint4 q;
      memcpy(&q, zs, 16);
#pragma unroll
      for (int k = 0; k < kRegVec; ++k) {
        const int j = j0 + k * stride;
        if (j < C) *reinterpret_cast<uint4*>(g + j) = q;
      }
    };
    if (ignored && !lse_out) {
      if (tm.lane == 0) row_loss[i] = 0.f;
      zero_grad();
      continue;
    }
    // z_y before the first reduction: with inplace_grad another block of the
    // cluster may overwrite x[y] with its gradient once the row's last
    // reduction is done, and that needs this lane's arrival.
    const float zy = (!ignored && tm.lane == 0) ? zval(x[y]) : 0.f;

    uint4 r[kRegVec];
#pragma unroll
    for (int k = 0; k < kRegVec; ++k) {
      const int j = j0 + k * stride;
      r[k] = j < C ? *reinterpret_cast<const uint4*>(x + j) : make_uint4(0u, 0u, 0u, 0u);
    }

    float m = -INFINITY;
#pragma unroll
    for (int k = 0; k < kRegVec; ++k) {
      const int j = j0 + k * stride;
      T t[V];
      memcpy(t, &r[k], 16);
      if (j >= C) continue;
#pragma unroll
      for (int e = 0; e < V; ++e) m = OpMaxNaN{}(m, zval(t[e]));
    }
    m = tm.reduce(m, OpMaxNaN{});

    float s = 0.f, acc = 0.f;
#pragma unroll
    for (int k = 0; k < kRegVec; ++k) {
      const int j = j0 + k * stride;
      if (j >= C) continue;
      T t[V];
      memcpy(t, &r[k], 16);
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const float z = zval(t[e]);
        s += fast_exp(z - m);
        // (shifted by the max: no cancellation against Acoef lse for large logits)
        if (eps > 0.f) acc += (w ? w[j + e] : 1.f) * (z - m);
      }
    }
    const float2 sa = tm.reduce(make_float2(s, acc), OpSum2{});
    // NaN for rows holding NaN or +inf, or only -inf, as ce_rows and the CPU.
    const bool finite_max = m == m && m != INFINITY && m != -INFINITY;
    const float lse = finite_max ? m + fast_log(sa.x) : NAN;
    if (lse_out && tm.lane == 0) lse_out[i] = lse;
    if (ignored) {
      if (tm.lane == 0) row_loss[i] = 0.f;
      zero_grad();
      continue;
    }

    const float wy = w ? w[y] : 1.f;
    float Acoef = (1.f - eps) * wy;
    if (eps > 0.f) Acoef += eps * static_cast<float>(p.hdr->wsum_all) * inv_c;
    if (tm.lane == 0) {
      float loss;
      if (eps == 0.f && lse == lse) {
        // w_y (log s + (m - z_y)): no cancellation of lse - z_y for large logits.
        loss = Acoef * (log_loss(sa.x) + (m - zy));
      } else {
        const float log_s = lse == lse ? log_loss(sa.x) : lse;  // lse - m
        loss = Acoef * log_s - ((1.f - eps) * wy * (zy - m) + (eps > 0.f ? eps * inv_c * sa.y : 0.f));
      }
      if (zl != 0.f) loss += zl * lse * lse;
      row_loss[i] = (p.sw ? ldA<float>(p.sw, i) : 1.f) * loss;
    }
    if (!g) continue;

    const float scale = row_scale<float>(p, i, false);
    const float coef = scale * (Acoef + 2.f * zl * lse);
    const float smooth = scale * eps * inv_c;
    const float corr = scale * (1.f - eps) * wy;
#pragma unroll
    for (int k = 0; k < kRegVec; ++k) {
      const int j = j0 + k * stride;
      if (j >= C) continue;
      T t[V], o[V];
      memcpy(t, &r[k], 16);
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const float z = zval(t[e]);
        float gv = coef * fast_exp(z - lse);
        if (eps > 0.f) gv -= smooth * (w ? w[j + e] : 1.f);
        if (j + e == y) gv -= corr;
        if (cap) {
          const float zc = z * capinv;
          gv *= 1.f - zc * zc;
        }
        st(o, e, gv);
      }
      uint4 q;
      memcpy(&q, o, 16);
      *reinterpret_cast<uint4*>(g + j) = q;
    }
  }
}

// Does the call need ce_reg_rows' kOpts = true variant?
LOSSX_HD bool ce_reg_needs_opts(const CEParams& p) { return p.softcap > 0 || p.eps != 0; }

}  // namespace
}  // namespace cuda
}  // namespace lossx
