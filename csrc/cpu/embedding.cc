// Pairwise/embedding family on the CPU: triplet_margin_loss and
// cosine_embedding_loss. One Highway loop over rows serves every loss of the
// family; a loss is a small functor with three parts:
//   Acc    vector: adds this chunk's contribution to up to three per-row sums
//               (distances ||u - v + eps||_p^p, or dot products / squared norms),
//   Finish scalar, in double: the row's loss and the gradient coefficients,
//   Grad   vector: each input's gradient as a combination of the row's elements.
// The row is read once for the sums and once more (while it is still in L1/L2)
// only when gradients are wanted. Half-precision rows are converted into a
// float scratch first and run the float32 code.

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/embedding.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

#include "cpu/convert.h"
#include "cpu/embedding.h"
#include "cpu/parallel.h"
#include "cpu/vecmath-inl.h"
#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
#include "status.h"

HWY_BEFORE_NAMESPACE();
namespace lossx {
namespace cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// What Finish hands to Grad: coefficients of the row's gradient combination.
struct RowCoef {
  double c[4];
};

// 0 at 0, else sign(x): torch's sgn, which norm's backward uses for p = 1.
template <class D>
HWY_INLINE hn::Vec<D> Sgn(D d, hn::Vec<D> x) {
  using T = hn::TFromD<D>;
  return hn::IfThenZeroElse(hn::Eq(x, hn::Zero(d)), hn::CopySign(hn::Set(d, T(1)), x));
}

// |x|^q for q > 0, exactly 0 at x = 0 (Log(0) = -inf must not reach Exp).
template <class D>
HWY_INLINE hn::Vec<D> AbsPow(D d, hn::Vec<D> x, hn::Vec<D> q) {
  const auto ax = hn::Abs(x);
  const auto is0 = hn::Eq(ax, hn::Zero(d));
  const auto safe = hn::IfThenElse(is0, hn::Set(d, hn::TFromD<D>(1)), ax);
  return hn::IfThenZeroElse(is0, hn::Exp(d, hn::Mul(q, hn::Log(d, safe))));
}

// triplet_margin_loss. kMode: 1 (p = 1), 2 (p = 2), 0 (any other p > 0).
// Sums: s0 = dist(a, p)^p, s1 = dist(a, n)^p, s2 = dist(p, n)^p (swap only).
template <class D, int kMode>
struct Triplet {
  using T = hn::TFromD<D>;
  using V = hn::Vec<D>;
  static constexpr int kSums = 3;
  double margin, p, eps;
  bool swap;
  V veps, vp, vpm1;

  Triplet(D d, const PairJob& j) : margin(j.margin), p(j.p), eps(j.eps), swap(j.swap) {
    veps = hn::Set(d, static_cast<T>(eps));
    vp = hn::Set(d, static_cast<T>(p));
    vpm1 = hn::Set(d, static_cast<T>(p - 1));
  }
  HWY_INLINE V Pow(D d, V x) const {
    if (kMode == 1) return hn::Abs(x);
    if (kMode == 2) return hn::Mul(x, x);
    return AbsPow(d, x, vp);
  }
  // d ||x||_p^... : the elementwise factor h(x) of norm's gradient (the
  // per-row factor 1/norm^(p-1) lives in the coefficients).
  HWY_INLINE V H(D d, V x) const {
    if (kMode == 1) return Sgn(d, x);
    if (kMode == 2) return x;
    return hn::CopySign(AbsPow(d, x, vpm1), x);
  }
  template <bool kTail, class M>
  HWY_INLINE void Acc(D d, V a, V pos, V neg, M m, V* s) const {
    auto c0 = Pow(d, hn::Add(hn::Sub(a, pos), veps));
    auto c1 = Pow(d, hn::Add(hn::Sub(a, neg), veps));
    if (kTail) {  // the padding lanes hold 0 - 0 + eps, which must not count
      c0 = hn::IfThenElseZero(m, c0);
      c1 = hn::IfThenElseZero(m, c1);
    }
    s[0] = hn::Add(s[0], c0);
    s[1] = hn::Add(s[1], c1);
    if (swap) {
      auto c2 = Pow(d, hn::Add(hn::Sub(pos, neg), veps));
      if (kTail) c2 = hn::IfThenElseZero(m, c2);
      s[2] = hn::Add(s[2], c2);
    }
  }
  double Root(double s) const {
    if (kMode == 1) return s;
    if (kMode == 2) return std::sqrt(s);
    return std::pow(s, 1.0 / p);
  }
  // Factor of norm's gradient: 1 (p = 1), else 1 / norm^(p-1), 0 at norm 0 (torch's masked_fill).
  double NormScale(double dist) const {
    if (kMode == 1) return 1.0;
    if (dist == 0.0) return 0.0;
    return kMode == 2 ? 1.0 / dist : 1.0 / std::pow(dist, p - 1);
  }
  double Finish(const double* s, int64_t, double scale, bool want_grad, RowCoef* rc) const {
    const double dap = Root(s[0]), dan = Root(s[1]);
    double dneg = dan, wan = 1.0, wpn = 0.0, dpn = 0.0;
    if (swap) {
      // torch.minimum's gradient: all to the smaller, split in half on a tie.
      dpn = Root(s[2]);
      if (dpn < dan) {
        dneg = dpn, wan = 0.0, wpn = 1.0;
      } else if (dpn == dan) {
        wan = wpn = 0.5;
      }
    }
    const double z = margin + dap - dneg;
    if (want_grad) {
      const double g = z >= 0.0 ? scale : 0.0;  // clamp_min passes the gradient at 0
      rc->c[0] = g * NormScale(dap);
      rc->c[1] = g * wan * NormScale(dan);
      rc->c[2] = swap ? g * wpn * NormScale(dpn) : 0.0;
    }
    return z < 0.0 ? 0.0 : z;  // NaN stays NaN
  }
  HWY_INLINE void Grad(D d, V a, V pos, V neg, const RowCoef& rc, V* g) const {
    const auto hap = H(d, hn::Add(hn::Sub(a, pos), veps));
    const auto han = H(d, hn::Add(hn::Sub(a, neg), veps));
    const auto cap = hn::Set(d, static_cast<T>(rc.c[0]));
    const auto can = hn::Set(d, static_cast<T>(rc.c[1]));
    // loss = margin + d(a,p) - wan d(a,n) - wpn d(p,n), and d d(u,v) / du = +-h(u - v + eps) * c.
    const auto tap = hn::Mul(cap, hap), tn = hn::Mul(can, han);
    g[0] = hn::Sub(tap, tn);
    g[1] = hn::Neg(tap);
    g[2] = tn;
    if (swap) {
      const auto tpn = hn::Mul(hn::Set(d, static_cast<T>(rc.c[2])), H(d, hn::Add(hn::Sub(pos, neg), veps)));
      g[1] = hn::Sub(g[1], tpn);
      g[2] = hn::Add(g[2], tpn);
    }
  }
};

// cosine_embedding_loss. Sums: x1.x2, |x1|^2, |x2|^2 (zero padding is harmless).
template <class D>
struct Cosine {
  using T = hn::TFromD<D>;
  using V = hn::Vec<D>;
  static constexpr int kSums = 3;
  double margin;
  const void* target;
  bool f64;

  Cosine(D, const PairJob& j) : margin(j.margin), target(j.target), f64(j.dtype == DType::kF64) {}
  template <bool kTail, class M>
  HWY_INLINE void Acc(D, V x1, V x2, V, M, V* s) const {
    s[0] = hn::MulAdd(x1, x2, s[0]);
    s[1] = hn::MulAdd(x1, x1, s[1]);
    s[2] = hn::MulAdd(x2, x2, s[2]);
  }
  double Finish(const double* s, int64_t i, double scale, bool want_grad, RowCoef* rc) const {
    constexpr double kEps = 1e-12;  // torch's EPSILON in cosine_embedding_loss
    const double m1 = s[1] + kEps, m2 = s[2] + kEps;
    const double denom = std::sqrt(m1 * m2);
    const double cos = s[0] / denom;
    const double y = f64 ? static_cast<const double*>(target)[i] : static_cast<const float*>(target)[i];
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
      rc->c[0] = -k * cos / m1;
      rc->c[1] = k / denom;
      rc->c[2] = -k * cos / m2;
    }
    return loss;
  }
  HWY_INLINE void Grad(D d, V x1, V x2, V, const RowCoef& rc, V* g) const {
    const auto a = hn::Set(d, static_cast<T>(rc.c[0]));
    const auto b = hn::Set(d, static_cast<T>(rc.c[1]));
    const auto c = hn::Set(d, static_cast<T>(rc.c[2]));
    g[0] = hn::MulAdd(a, x1, hn::Mul(b, x2));
    g[1] = hn::MulAdd(c, x2, hn::Mul(b, x1));
  }
};

template <typename T>
std::vector<T>& Scratch(int k) {
  static thread_local std::vector<T> s[6];
  return s[k];
}

// The family's one loop: sums over the row, the scalar finish, the gradient pass.
template <int kIn, class F, class D>
void PairRowsLoop(D d, const F& f, const PairJob& job, int64_t begin, int64_t end) {
  using T = hn::TFromD<D>;
  using V = hn::Vec<D>;
  const int64_t n = job.D;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const bool native = IsNative<T>(job.dtype);
  const bool want_grad = job.grad[0] || job.grad[1] || job.grad[2];
  T* row_loss = static_cast<T*>(job.row_loss);
  const T* go = static_cast<const T*>(job.grad_output);
  const T* x[3] = {nullptr, nullptr, nullptr};
  if (!native) {
    for (int k = 0; k < kIn; ++k) {
      Scratch<T>(k).resize(static_cast<size_t>(n));
      Scratch<T>(3 + k).resize(static_cast<size_t>(n));
    }
  }
  for (int64_t i = begin; i < end; ++i) {
    const int64_t off = i * n;
    for (int k = 0; k < kIn; ++k) {
      if (native) {
        x[k] = static_cast<const T*>(job.x[k]) + off;
      } else {
        ConvertRow<T>(job.x[k], job.dtype, off, n, Scratch<T>(k).data());
        x[k] = Scratch<T>(k).data();
      }
    }
    auto ld = [&](int k, int64_t j) { return kIn > k ? hn::LoadU(d, x[k] + j) : hn::Zero(d); };
    auto ldt = [&](int k, int64_t j, size_t rem) {
      return kIn > k ? LoadTail(d, x[k] + j, rem, T(0)) : hn::Zero(d);
    };
    // Two accumulator sets hide the add latency on short rows.
    V s[3] = {hn::Zero(d), hn::Zero(d), hn::Zero(d)};
    V t[3] = {hn::Zero(d), hn::Zero(d), hn::Zero(d)};
    const auto all = hn::FirstN(d, static_cast<size_t>(L));
    int64_t j = 0;
    for (; j + 2 * L <= n; j += 2 * L) {
      f.template Acc<false>(d, ld(0, j), ld(1, j), ld(2, j), all, s);
      f.template Acc<false>(d, ld(0, j + L), ld(1, j + L), ld(2, j + L), all, t);
    }
    for (; j + L <= n; j += L) f.template Acc<false>(d, ld(0, j), ld(1, j), ld(2, j), all, s);
    if (j < n) {
      const size_t rem = static_cast<size_t>(n - j);
      f.template Acc<true>(d, ldt(0, j, rem), ldt(1, j, rem), ldt(2, j, rem), hn::FirstN(d, rem), s);
    }
    double sums[3];
    for (int k = 0; k < 3; ++k) sums[k] = static_cast<double>(hn::GetLane(hn::SumOfLanes(d, hn::Add(s[k], t[k]))));
    double scale = 0.0;
    if (want_grad) scale = job.base_scale * (go ? static_cast<double>(go[job.per_row_go ? i : 0]) : 1.0);
    RowCoef rc;
    row_loss[i] = static_cast<T>(f.Finish(sums, i, scale, want_grad, &rc));
    if (!want_grad) continue;

    T* g[3] = {nullptr, nullptr, nullptr};
    for (int k = 0; k < kIn; ++k) {
      if (!job.grad[k]) {
        g[k] = nullptr;
      } else if (native) {
        g[k] = static_cast<T*>(job.grad[k]) + off;
      } else {
        g[k] = Scratch<T>(3 + k).data();
      }
    }
    V gv[3];
    for (j = 0; j + L <= n; j += L) {
      f.Grad(d, ld(0, j), ld(1, j), ld(2, j), rc, gv);
      for (int k = 0; k < kIn; ++k)
        if (g[k]) hn::StoreU(gv[k], d, g[k] + j);
    }
    if (j < n) {
      const size_t rem = static_cast<size_t>(n - j);
      f.Grad(d, ldt(0, j, rem), ldt(1, j, rem), ldt(2, j, rem), rc, gv);
      for (int k = 0; k < kIn; ++k)
        if (g[k]) StoreTail(d, gv[k], g[k] + j, rem);
    }
    if (!native) {
      for (int k = 0; k < kIn; ++k)
        if (g[k]) StoreRow<T>(g[k], n, job.grad[k], job.dtype, off);
    }
  }
}

template <typename T>
void PairRowsImpl(const PairJob& job, int64_t begin, int64_t end) {
  const hn::ScalableTag<T> d;
  if (job.kind == PairLoss::kCosine) {
    PairRowsLoop<2>(d, Cosine<decltype(d)>(d, job), job, begin, end);
  } else if (job.p == 2.0) {
    PairRowsLoop<3>(d, Triplet<decltype(d), 2>(d, job), job, begin, end);
  } else if (job.p == 1.0) {
    PairRowsLoop<3>(d, Triplet<decltype(d), 1>(d, job), job, begin, end);
  } else {
    PairRowsLoop<3>(d, Triplet<decltype(d), 0>(d, job), job, begin, end);
  }
}

void PairRowsF32(const PairJob& job, int64_t begin, int64_t end) { PairRowsImpl<float>(job, begin, end); }
void PairRowsF64(const PairJob& job, int64_t begin, int64_t end) { PairRowsImpl<double>(job, begin, end); }

}  // namespace HWY_NAMESPACE
}  // namespace cpu
}  // namespace lossx
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lossx {
namespace cpu {

HWY_EXPORT(PairRowsF32);
HWY_EXPORT(PairRowsF64);

namespace {

template <typename A>
Status PairwiseImpl(const PairwiseArgs& a, StatusInfo* info) {
  const int64_t N = a.rows;
  if (a.loss == PairLoss::kCosine) {
    const A* y = static_cast<const A*>(a.target);
    for (int64_t i = 0; i < N; ++i) {
      if (!(y[i] == A(1) || y[i] == A(-1))) {
        char msg[160];
        std::snprintf(msg, sizeof(msg), "cosine_embedding_loss: target at position %lld is %g; it must be 1 or -1",
                      static_cast<long long>(i), static_cast<double>(y[i]));
        return fail(info, Status::kInvalidArgument, msg, i, value_field(static_cast<double>(y[i])));
      }
    }
  }
  std::vector<A> row_buf;
  A* row_loss = static_cast<A*>(a.loss_out);
  if (a.reduction != Reduction::kNone) {
    row_buf.resize(static_cast<size_t>(N));
    row_loss = row_buf.data();
  }
  PairJob job;
  job.dtype = a.dtype;
  job.kind = a.loss;
  job.D = a.dim;
  job.x[0] = a.x0;
  job.x[1] = a.x1;
  job.x[2] = a.x2;
  job.target = a.target;
  job.margin = a.margin;
  job.p = a.p;
  job.eps = a.eps;
  job.swap = a.swap;
  job.per_row_go = a.reduction == Reduction::kNone;
  job.base_scale = a.reduction == Reduction::kMean ? 1.0 / static_cast<double>(N) : 1.0;
  job.grad_output = a.grad_output;
  job.row_loss = row_loss;
  job.grad[0] = a.grad0;
  job.grad[1] = a.grad1;
  job.grad[2] = a.loss == PairLoss::kTriplet ? a.grad2 : nullptr;
  parallel_for(N, grain_for(a.dim, 1 << 13), [&](int64_t b, int64_t e) {
    if (sizeof(A) == 8) {
      HWY_DYNAMIC_DISPATCH(PairRowsF64)(job, b, e);
    } else {
      HWY_DYNAMIC_DISPATCH(PairRowsF32)(job, b, e);
    }
  });
  if (a.reduction != Reduction::kNone)
    store_reduced(row_loss, N, a.reduction == Reduction::kMean, static_cast<double>(N), a.loss_out);
  return Status::kOk;
}

}  // namespace

Status cpu_pairwise(const PairwiseArgs& a, StatusInfo* info) {
  return acc_is_f64(a.dtype) ? PairwiseImpl<double>(a, info) : PairwiseImpl<float>(a, info);
}

}  // namespace cpu
}  // namespace lossx
#endif  // HWY_ONCE
