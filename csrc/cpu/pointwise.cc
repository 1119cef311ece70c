// The pointwise loss family on the CPU (torch.nn.functional semantics): every
// loss is a small functor giving, for vectors x (input) and y (target), the
// value l and both derivatives dl/dx, dl/dy. ONE Highway loop (PointwiseLoop)
// loads, applies weights, scales the gradients, stores and accumulates the
// per-chunk partial sum of the reduction, so a loss never sweeps memory twice.
// The list of losses is lossx/pointwise_losses.def.

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/pointwise.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "cpu/convert.h"
#include "cpu/pointwise.h"
#include "cpu/vecmath-inl.h"
#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace lossx {
namespace cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Options as scalars: sizeless vector types (SVE, RVV) cannot be members.
template <typename T>
struct PwParams {
  T beta;
  bool has_pw, log_target, log_input, full;
};

// v where v is NaN, else r: Highway's Exp/Log/Max do not propagate NaN, torch does.
template <class V>
HWY_INLINE V KeepNaN(V v, V r) {
  return hn::IfThenElse(hn::IsNaN(v), v, r);
}

// sign(v) with sign(0) = 0, as torch's l1/smooth_l1 backward.
template <class D, class V = hn::Vec<D>>
HWY_INLINE V Sign0(D d, V v) {
  return hn::IfThenZeroElse(hn::Eq(v, hn::Zero(d)), hn::CopySign(hn::Set(d, 1), v));
}

// log(x) for x >= 0, -inf at 0, right for float32 denormals too (Highway's
// Log assumes normal inputs: scale them up first).
template <class D, class V = hn::Vec<D>>
HWY_INLINE V LogNonNeg(D d, V x) {
  using T = hn::TFromD<D>;
  const T tiny = std::numeric_limits<T>::min();
  V lg;
  if (sizeof(T) == 4) {
    const auto sub = hn::Lt(x, hn::Set(d, tiny));
    const auto xs = hn::IfThenElse(sub, hn::Mul(x, hn::Set(d, T(18446744073709551616.0))), x);
    lg = hn::Log(d, hn::Max(xs, hn::Set(d, tiny)));
    lg = hn::IfThenElse(sub, hn::Sub(lg, hn::Set(d, T(44.3614195558365))), lg);
  } else {
    lg = hn::Log(d, hn::Max(x, hn::Set(d, tiny)));
  }
  return hn::IfThenElse(hn::Eq(x, hn::Zero(d)), hn::Set(d, -std::numeric_limits<T>::infinity()), lg);
}

// exp(v), overflowing to inf like std::exp. Highway's Exp is specified up to
// +104 (float32) / +706 (float64) and far beyond that wraps to 0 or NaN
// (measured: from v = 177.8 / 1433), so v is clamped where exp is already inf.
// NaN is not kept: callers wrap the result with KeepNaN.
template <class D, class V = hn::Vec<D>>
HWY_INLINE V ExpInf(D d, V v) {
  using T = hn::TFromD<D>;
  return hn::Exp(d, hn::Min(v, hn::Set(d, sizeof(T) == 4 ? T(100) : T(1000))));
}

// e = exp(-|z|) and log1p(e): the shared pieces of softplus and sigmoid.
template <class D, class V = hn::Vec<D>>
HWY_INLINE void ExpNegAbs(D d, V z, V& e, V& lp) {
  e = FastExp(d, hn::Neg(hn::Abs(z)));
  lp = hn::Log1p(d, e);
}

// sigmoid(z) from e = exp(-|z|), never forming exp(+large).
template <class D, class V = hn::Vec<D>>
HWY_INLINE V SigmoidFrom(D d, V z, V e) {
  const auto inv = hn::Div(hn::Set(d, 1), hn::Add(hn::Set(d, 1), e));
  return hn::IfThenElse(hn::Ge(z, hn::Zero(d)), inv, hn::Mul(e, inv));
}

#define LOSSX_PW_EVAL                                                             \
  template <class D, class V = hn::Vec<D>>                                        \
  static HWY_INLINE void Eval(D d, const PwParams<hn::TFromD<D>>& p, V x, V y, V pw, \
                              V& l, V& gx, V& gy)

struct L1Fn {
  LOSSX_PW_EVAL {
    (void)p; (void)pw;
    const auto df = hn::Sub(x, y);
    l = hn::Abs(df);
    gx = Sign0(d, df);
    gy = hn::Neg(gx);
  }
};

struct MseFn {
  LOSSX_PW_EVAL {
    (void)p; (void)pw;
    const auto df = hn::Sub(x, y);
    l = hn::Mul(df, df);
    gx = hn::Add(df, df);
    gy = hn::Neg(gx);
  }
};

// 0.5 d^2 / beta inside |d| < beta, |d| - beta/2 outside; beta = 0 never takes
// the inside branch, which is exactly L1.
struct SmoothL1Fn {
  LOSSX_PW_EVAL {
    (void)pw;
    using T = hn::TFromD<D>;
    const auto df = hn::Sub(x, y), a = hn::Abs(df);
    const auto inside = hn::Lt(a, hn::Set(d, p.beta));
    const auto q = hn::Div(df, hn::Set(d, p.beta > 0 ? p.beta : T(1)));
    l = hn::IfThenElse(inside, hn::Mul(hn::Mul(hn::Set(d, T(0.5)), df), q),
                       hn::Sub(a, hn::Set(d, T(0.5) * p.beta)));
    gx = hn::IfThenElse(inside, q, Sign0(d, df));
    if (p.beta > 0) gx = KeepNaN(df, gx);  // beta = 0 is torch's l1 backward: sign(NaN) = 0 there
    gy = hn::Neg(gx);
  }
};

struct HuberFn {
  LOSSX_PW_EVAL {
    (void)pw;
    using T = hn::TFromD<D>;
    const auto df = hn::Sub(x, y), a = hn::Abs(df);
    const auto delta = hn::Set(d, p.beta);
    const auto inside = hn::Lt(a, delta);
    l = hn::IfThenElse(inside, hn::Mul(hn::Mul(hn::Set(d, T(0.5)), df), df),
                       hn::Mul(delta, hn::Sub(a, hn::Set(d, T(0.5) * p.beta))));
    gx = KeepNaN(df, hn::IfThenElse(inside, df, hn::Mul(delta, Sign0(d, df))));
    gy = hn::Neg(gx);
  }
};

// torch's form: (1 - y) x + lw softplus(-x), lw = 1 + (pw - 1) y, with
// softplus(-x) = max(-x, 0) + log1p(exp(-|x|)) (no overflow for any x).
struct BCEWithLogitsFn {
  LOSSX_PW_EVAL {
    const auto one = hn::Set(d, 1);
    hn::Vec<D> e, lp;
    ExpNegAbs(d, x, e, lp);
    const auto spn = hn::Add(hn::Max(hn::Neg(x), hn::Zero(d)), lp);
    const auto omy = hn::Sub(one, y);
    const auto sig = SigmoidFrom(d, x, e);
    if (!p.has_pw) {
      l = hn::MulAdd(omy, x, spn);
      gx = hn::Sub(sig, y);
      gy = hn::Neg(x);
    } else {
      const auto pm1 = hn::Sub(pw, one);
      const auto lw = hn::MulAdd(pm1, y, one);
      l = hn::MulAdd(omy, x, hn::Mul(lw, spn));
      const auto sign = SigmoidFrom(d, hn::Neg(x), e);  // 1 - sigmoid(x) without cancellation
      gx = hn::NegMulAdd(lw, sign, omy);
      gy = hn::MulAdd(pm1, spn, hn::Neg(x));
    }
    // FastExp/Log1p do not keep NaN; torch does.
    const auto nan = hn::IsNaN(x);
    l = hn::IfThenElse(nan, x, l);
    gx = hn::IfThenElse(nan, x, gx);
  }
};

// softplus(-y x), written stably (torch's log1p(exp(-y x)) overflows to inf
// for -y x > 88 in float32; the stable form agrees everywhere else).
struct SoftMarginFn {
  LOSSX_PW_EVAL {
    (void)p; (void)pw;
    const auto z = hn::Neg(hn::Mul(y, x));
    hn::Vec<D> e, lp;
    ExpNegAbs(d, z, e, lp);
    l = KeepNaN(z, hn::Add(hn::Max(z, hn::Zero(d)), lp));
    const auto s = KeepNaN(z, SigmoidFrom(d, z, e));
    gx = hn::Neg(hn::Mul(y, s));
    gy = hn::Neg(hn::Mul(x, s));
  }
};

// -(y log x + (1 - y) log(1 - x)), each log clamped at >= -100. log(1 - x)
// is log1p(-x) below 1/2 and the log of the exact 1 - x above (Sterbenz).
// Gradients are torch's: (x - y) / max(x (1 - x), 1e-12f) for the input, and
// for the target -logit(x), unclamped (infinite at x = 0 or 1, as autograd).
struct BCEFn {
  LOSSX_PW_EVAL {
    (void)p; (void)pw;
    using T = hn::TFromD<D>;
    const auto one = hn::Set(d, 1), lo = hn::Set(d, T(-100));
    const auto lx = LogNonNeg(d, x);
    const auto omx = hn::Sub(one, x);
    const auto l1x = hn::IfThenElse(hn::Ge(x, hn::Set(d, T(0.5))), LogNonNeg(d, omx), hn::Log1p(d, hn::Neg(x)));
    l = hn::NegMulAdd(y, hn::Max(lx, lo), hn::Mul(hn::Sub(y, one), hn::Max(l1x, lo)));
    gx = hn::Div(hn::Sub(x, y), hn::Max(hn::Mul(omx, x), hn::Set(d, T(1e-12f))));  // torch: float EPSILON
    gy = hn::Sub(l1x, lx);
  }
};

// log_target=False: xlogy(y, y) - y x (0 where y = 0); True: exp(y) (y - x).
struct KLDivFn {
  LOSSX_PW_EVAL {
    (void)pw;
    using T = hn::TFromD<D>;
    const auto one = hn::Set(d, 1);
    if (p.log_target) {
      const auto ey = KeepNaN(y, ExpInf(d, y));
      const auto df = hn::Sub(y, x);
      l = hn::Mul(ey, df);
      gx = hn::Neg(ey);
      gy = hn::Mul(ey, hn::Add(df, one));
    } else {
      const auto pos = hn::Gt(y, hn::Zero(d));
      const auto ly = hn::Log(d, hn::IfThenElse(pos, y, one));
      // y < 0 or NaN: torch's xlogy gives NaN.
      const auto bad = hn::Or(hn::Lt(y, hn::Zero(d)), hn::IsNaN(y));
      const auto xl = hn::IfThenElse(bad, hn::Set(d, std::numeric_limits<T>::quiet_NaN()),
                                     hn::IfThenElseZero(pos, hn::Mul(y, ly)));
      l = hn::NegMulAdd(y, x, xl);
      gx = hn::Neg(y);
      gy = KeepNaN(y, hn::Sub(hn::Add(ly, one), x));
    }
  }
};

// log_input: exp(x) - y x; else x - y log(x + eps). full adds Stirling's
// y log y - y + log(2 pi y) / 2 where y > 1.
struct PoissonNLLFn {
  LOSSX_PW_EVAL {
    (void)pw;
    using T = hn::TFromD<D>;
    const auto one = hn::Set(d, 1);
    if (p.log_input) {
      const auto ex = KeepNaN(x, ExpInf(d, x));
      l = hn::NegMulAdd(y, x, ex);
      gx = hn::Sub(ex, y);
      gy = hn::Neg(x);
    } else {
      const auto xe = hn::Add(x, hn::Set(d, p.beta));
      const auto lg = KeepNaN(xe, hn::Log(d, xe));
      l = hn::NegMulAdd(y, lg, x);
      gx = hn::Sub(one, hn::Div(y, xe));
      gy = hn::Neg(lg);
    }
    if (p.full) {
      const auto big = hn::Gt(y, one);
      const auto ys = hn::IfThenElse(big, y, one);
      const auto ly = hn::Log(d, ys);
      const auto st = hn::MulAdd(hn::Set(d, T(0.5)), hn::Log(d, hn::Mul(hn::Set(d, T(6.283185307179586)), ys)),
                                 hn::MulSub(ys, ly, ys));
      l = hn::Add(l, hn::IfThenElseZero(big, st));
      gy = hn::Add(gy, hn::IfThenElseZero(big, hn::Add(ly, hn::Div(hn::Set(d, T(0.5)), ys))));
      // torch masks the term where y <= 1, so a NaN target keeps it (NaN).
      l = KeepNaN(y, l);
      gy = KeepNaN(y, gy);
    }
  }
};

#undef LOSSX_PW_EVAL

template <typename T>
struct PwScratch {
  std::vector<T> x, y, w, pw, gx, gy;
  T* get(std::vector<T>& v) {
    if (v.size() < static_cast<size_t>(kPointwiseChunk)) v.resize(static_cast<size_t>(kPointwiseChunk));
    return v.data();
  }
};

template <typename T>
PwScratch<T>& PwScratchOf() {
  static thread_local PwScratch<T> s;
  return s;
}

// `n` compute-type values of a dtype buffer from `off`: the buffer itself when
// it has the compute type, else a converted copy.
template <typename T>
HWY_INLINE const T* PwIn(const void* base, DType dt, int64_t off, int64_t n, PwScratch<T>& sc,
                         std::vector<T>& buf) {
  if (IsNative<T>(dt)) return static_cast<const T*>(base) + off;
  T* b = sc.get(buf);
  ConvertRow<T>(base, dt, off, n, b);
  return b;
}

// Element i of a broadcast weight is w[i % period]: a period-n weight is read
// in place, any other is unrolled into the chunk's scratch.
template <typename T>
HWY_INLINE const T* PwWeight(const void* w, int64_t period, int64_t n_total, int64_t off, int64_t n,
                             PwScratch<T>& sc, std::vector<T>& buf) {
  if (!w) return nullptr;
  const T* wp = static_cast<const T*>(w);
  if (period == n_total) return wp + off;
  T* b = sc.get(buf);
  int64_t k = off % period;
  for (int64_t j = 0; j < n; ++j) {
    b[j] = wp[k];
    if (++k == period) k = 0;
  }
  return b;
}

// The one loop of the family: chunks [c0, c1).
template <typename T, class Fn, bool kGrad>
void PointwiseLoop(const PointwiseJob& job, int64_t c0, int64_t c1) {
  const PointwiseArgs& a = *job.a;
  const hn::ScalableTag<T> d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const bool native = IsNative<T>(a.dtype);
  const bool none = a.reduction == Reduction::kNone;
  PwParams<T> prm{static_cast<T>(a.beta), a.pos_weight != nullptr, a.log_target, a.log_input, a.full};
  PwScratch<T>& sc = PwScratchOf<T>();
  const T pad = T(0.5);  // a value every loss accepts; padded lanes are masked anyway
  const auto one = hn::Set(d, T(1));
  const auto vscale = hn::Set(d, static_cast<T>(job.grad_scale));
  for (int64_t c = c0; c < c1; ++c) {
    const int64_t off = c * kPointwiseChunk;
    const int64_t n = std::min(kPointwiseChunk, a.n - off);
    const T* x = PwIn<T>(a.input, a.dtype, off, n, sc, sc.x);
    const T* y = PwIn<T>(a.target, a.dtype, off, n, sc, sc.y);
    const T* w = PwWeight<T>(a.weight, a.weight_period, a.n, off, n, sc, sc.w);
    const T* pwp = PwWeight<T>(a.pos_weight, a.pos_weight_period, a.n, off, n, sc, sc.pw);
    T* lo = none ? static_cast<T*>(a.loss) + off : nullptr;
    const T* go = (none && a.grad_output) ? static_cast<const T*>(a.grad_output) + off : nullptr;
    T* gxo = nullptr;
    T* gyo = nullptr;
    if (kGrad) {
      if (a.grad_input) gxo = native ? static_cast<T*>(a.grad_input) + off : sc.get(sc.gx);
      if (a.grad_target) gyo = native ? static_cast<T*>(a.grad_target) + off : sc.get(sc.gy);
    }
    auto acc = hn::Zero(d);
    for (int64_t j = 0; j < n; j += L) {
      const bool full = j + L <= n;
      const size_t rem = static_cast<size_t>(n - j);
      const auto xv = full ? hn::LoadU(d, x + j) : LoadTail(d, x + j, rem, pad);
      const auto yv = full ? hn::LoadU(d, y + j) : LoadTail(d, y + j, rem, pad);
      const auto pv = pwp ? (full ? hn::LoadU(d, pwp + j) : LoadTail(d, pwp + j, rem, T(1))) : one;
      hn::Vec<decltype(d)> l, gx, gy;
      Fn::Eval(d, prm, xv, yv, pv, l, gx, gy);
      if (w) {
        const auto wv = full ? hn::LoadU(d, w + j) : LoadTail(d, w + j, rem, T(1));
        l = hn::Mul(l, wv);
        if (kGrad) {
          gx = hn::Mul(gx, wv);
          gy = hn::Mul(gy, wv);
        }
      }
      if (none) {
        if (full) hn::StoreU(l, d, lo + j); else StoreTail(d, l, lo + j, rem);
      } else {
        acc = hn::Add(acc, full ? l : hn::IfThenElseZero(hn::FirstN(d, rem), l));
      }
      if (kGrad) {
        auto s = vscale;
        if (none) s = go ? (full ? hn::LoadU(d, go + j) : LoadTail(d, go + j, rem, T(1))) : one;
        if (gxo) {
          gx = hn::Mul(gx, s);
          if (full) hn::StoreU(gx, d, gxo + j); else StoreTail(d, gx, gxo + j, rem);
        }
        if (gyo) {
          gy = hn::Mul(gy, s);
          if (full) hn::StoreU(gy, d, gyo + j); else StoreTail(d, gy, gyo + j, rem);
        }
      }
    }
    if (!none) job.partial[c] = static_cast<double>(hn::GetLane(hn::SumOfLanes(d, acc)));
    if (kGrad && !native) {
      if (gxo) StoreRow<T>(gxo, n, a.grad_input, a.dtype, off);
      if (gyo) StoreRow<T>(gyo, n, a.grad_target, a.dtype, off);
    }
  }
}

template <typename T>
void PointwiseImpl(const PointwiseJob& job, int64_t c0, int64_t c1) {
  const bool grad = job.a->grad_input || job.a->grad_target;
  switch (job.a->kind) {
#define LOSSX_POINTWISE(id, name, fn)                                       \
  case PointwiseLoss::id:                                                   \
    if (grad) PointwiseLoop<T, fn, true>(job, c0, c1);                      \
    else PointwiseLoop<T, fn, false>(job, c0, c1);                          \
    break;
#include "lossx/pointwise_losses.def"
#undef LOSSX_POINTWISE
    default: break;
  }
}

void PointwiseF32(const PointwiseJob& j, int64_t c0, int64_t c1) { PointwiseImpl<float>(j, c0, c1); }
void PointwiseF64(const PointwiseJob& j, int64_t c0, int64_t c1) { PointwiseImpl<double>(j, c0, c1); }

}  // namespace HWY_NAMESPACE
}  // namespace cpu
}  // namespace lossx
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "cpu/parallel.h"

namespace lossx {
namespace cpu {

HWY_EXPORT(PointwiseF32);
HWY_EXPORT(PointwiseF64);

namespace {

template <typename A>
Status PointwiseDriver(const PointwiseArgs& a) {
  const int64_t chunks = (a.n + kPointwiseChunk - 1) / kPointwiseChunk;
  const bool none = a.reduction == Reduction::kNone;
  std::vector<double> partial(none ? 0 : static_cast<size_t>(chunks));
  const double divisor = a.mean_divisor > 0 ? a.mean_divisor : static_cast<double>(a.n);
  double scale = 1.0;
  if (!none) {
    if (a.grad_output) scale = static_cast<double>(static_cast<const A*>(a.grad_output)[0]);
    if (a.reduction == Reduction::kMean) scale /= divisor;
  }
  PointwiseJob job{&a, scale, partial.data()};
  parallel_for(chunks, 1, [&](int64_t b, int64_t e) {
    if (sizeof(A) == 8) HWY_DYNAMIC_DISPATCH(PointwiseF64)(job, b, e);
    else HWY_DYNAMIC_DISPATCH(PointwiseF32)(job, b, e);
  });
  if (!none) {
    double total = 0.0;
    for (double p : partial) total += p;  // chunk order: the same bits for any thread count
    if (a.reduction == Reduction::kMean) total /= divisor;  // n = 0 gives nan, as torch
    static_cast<A*>(a.loss)[0] = static_cast<A>(total);
  }
  return Status::kOk;
}

}  // namespace

Status cpu_pointwise(const PointwiseArgs& a, StatusInfo*) {
  return acc_is_f64(a.dtype) ? PointwiseDriver<double>(a) : PointwiseDriver<float>(a);
}

}  // namespace cpu
}  // namespace lossx
#endif  // HWY_ONCE
