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
#include <type_traits>
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
  T alpha, gamma, margin;  // focal losses (torchvision's and Keras' binary), hinge_embedding
  int igamma;  // gamma when it is an integer in [0, 16] (exact powers by multiplication), else -1
  // Keras element-wise losses (set by KerasParams).
  T smooth;
  bool from_logits, balance, binary_labels;
};

template <typename T>
HWY_INLINE void KerasParams(const PointwiseArgs& a, PwParams<T>& p) {
  p.smooth = static_cast<T>(a.label_smoothing);
  p.from_logits = a.from_logits;
  p.balance = a.class_balancing;
  p.binary_labels = a.binary_labels;
}

// v where v is NaN, else r: Highway's Exp/Log/Max do not propagate NaN, torch does.
template <class V>
HWY_INLINE V KeepNaN(V v, V r) {
  return hn::IfThenElse(hn::IsNaN(v), v, r);
}

// sign(v) with sign(0) = 0 and sign(NaN) = 0, as torch's l1/smooth_l1 backward.
template <class D, class V = hn::Vec<D>>
HWY_INLINE V Sign0(D d, V v) {
  return hn::IfThenZeroElse(hn::Or(hn::Eq(v, hn::Zero(d)), hn::IsNaN(v)), hn::CopySign(hn::Set(d, 1), v));
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

// e = exp(-|z|), log1p(e) and inv = 1 / (1 + e): the shared pieces of
// softplus and sigmoid. One division r = 1 / ((1 + e)(2 + e)) gives both
// inv = (2 + e) r and log1p's s = e / (2 + e) = e (1 + e) r (Log1pFromS), a
// few ulp of float32 instead of a second division; forward-only kernels drop
// inv. Before: Highway's Log1p and a division for the sigmoid, 3 divisions
// per element in a forward+backward.
template <class D, class V = hn::Vec<D>>
HWY_INLINE void ExpNegAbs(D d, V z, V& e, V& lp, V& inv) {
  using T = hn::TFromD<D>;
  e = FastExp(d, hn::Neg(hn::Abs(z)));
  const auto ope = hn::Add(hn::Set(d, T(1)), e), tpe = hn::Add(hn::Set(d, T(2)), e);
  const auto r = hn::Div(hn::Set(d, T(1)), hn::Mul(ope, tpe));
  inv = hn::Mul(tpe, r);
  lp = Log1pFromS(d, hn::Mul(hn::Mul(e, ope), r));
}

// sigmoid(z) from e = exp(-|z|) and inv = 1 / (1 + e), never forming exp(+large).
template <class D, class V = hn::Vec<D>>
HWY_INLINE V SigmoidFrom(D d, V z, V e, V inv) {
  return hn::IfThenElse(hn::Ge(z, hn::Zero(d)), inv, hn::Mul(e, inv));
}

// pw: the third per-element operand (pos_weight, or gaussian_nll_loss's var;
// 1 when absent). gz: the gradient with respect to it, preset to 0 and only
// stored when the caller asks for it (grad_var).
#define LOSSX_PW_EVAL                                                             \
  template <class D, class V = hn::Vec<D>>                                        \
  static HWY_INLINE void Eval(D d, const PwParams<hn::TFromD<D>>& p, V x, V y, V pw, \
                              V& l, V& gx, V& gy, [[maybe_unused]] V& gz)

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
    hn::Vec<D> e, lp, inv;
    ExpNegAbs(d, x, e, lp, inv);
    const auto spn = hn::Add(hn::Max(hn::Neg(x), hn::Zero(d)), lp);
    const auto omy = hn::Sub(one, y);
    const auto sig = SigmoidFrom(d, x, e, inv);
    if (!p.has_pw) {
      l = hn::MulAdd(omy, x, spn);
      gx = hn::Sub(sig, y);
      gy = hn::Neg(x);
    } else {
      const auto pm1 = hn::Sub(pw, one);
      const auto lw = hn::MulAdd(pm1, y, one);
      l = hn::MulAdd(omy, x, hn::Mul(lw, spn));
      const auto sign = SigmoidFrom(d, hn::Neg(x), e, inv);  // 1 - sigmoid(x) without cancellation
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
    hn::Vec<D> e, lp, inv;
    ExpNegAbs(d, z, e, lp, inv);
    l = KeepNaN(z, hn::Add(hn::Max(z, hn::Zero(d)), lp));
    const auto s = KeepNaN(z, SigmoidFrom(d, z, e, inv));
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

// 0.5 (log v + d^2 / v) (+ log(2 pi) / 2 when full), v = max(var, eps). torch
// clamps var in place under no_grad on a differentiable clone, so autograd
// sees the identity: the var gradient is 0.5 (1/v - d^2/v^2) at the clamped v
// even where var < eps (not 0), and that is what this returns.
struct GaussianNLLFn {
  LOSSX_PW_EVAL {
    using T = hn::TFromD<D>;
    const auto half = hn::Set(d, T(0.5));
    const auto v = KeepNaN(pw, hn::Max(pw, hn::Set(d, p.beta)));
    const auto df = hn::Sub(x, y);
    const auto r = hn::Div(df, v);
    l = hn::Mul(half, hn::MulAdd(df, r, LogNonNeg(d, v)));
    if (p.full) l = hn::Add(l, hn::Set(d, T(0.91893853320467274178)));  // log(2 pi) / 2
    gx = r;
    gy = hn::Neg(r);
    gz = hn::Mul(half, hn::NegMulAdd(r, r, hn::Div(hn::Set(d, T(1)), v)));
  }
};

// Targets are +-1 (checked by the caller), so torch's
// where(y != 1, max(m - x, 0), 0) + where(y != -1, x, 0) is x or max(m - x, 0).
// torch's clamp_min backward passes the gradient where m - x >= 0 (at the
// kink too) and not where it is NaN. The target has no gradient (gy = 0).
struct HingeEmbeddingFn {
  LOSSX_PW_EVAL {
    (void)pw;
    using T = hn::TFromD<D>;
    const auto one = hn::Set(d, T(1)), zero = hn::Zero(d);
    const auto pos = hn::Eq(y, one);
    const auto h = hn::Sub(hn::Set(d, p.margin), x);
    l = hn::IfThenElse(pos, x, KeepNaN(h, hn::Max(h, zero)));
    gx = hn::IfThenElse(pos, one, hn::IfThenElseZero(hn::Ge(h, zero), hn::Neg(one)));
    gy = zero;
  }
};

// margin_ranking_loss: x = input1, y = input2, and the +-1 target rides in the
// third operand (pw). max(-t (x - y) + m, 0); clamp_min's gradient passes at
// the kink and not where the argument is NaN, as torch's.
struct MarginRankingFn {
  LOSSX_PW_EVAL {
    const auto z = hn::MulAdd(hn::Neg(pw), hn::Sub(x, y), hn::Set(d, p.margin));
    const auto zero = hn::Zero(d);
    l = KeepNaN(z, hn::Max(z, zero));
    const auto s = hn::IfThenElseZero(hn::Ge(z, zero), pw);
    gx = hn::Neg(s);
    gy = s;
  }
};

// torchvision's sigmoid_focal_loss: ce (1 - p_t)^gamma [alpha y + (1 - alpha)(1 - y)]
// with ce = BCE with logits, p = sigmoid(x), p_t = p y + (1 - p)(1 - y).
// q = 1 - p_t is formed as p (1 - y) + (1 - p) y from the two stable sigmoids,
// so it keeps its relative accuracy where p saturates (torch's 1 - p_t rounds
// to 0 there). Derivatives: dq/dx = p (1 - p)(1 - 2y), dq/dy = 1 - 2p.
struct SigmoidFocalFn {
  LOSSX_PW_EVAL {
    (void)pw;
    using T = hn::TFromD<D>;
    const auto one = hn::Set(d, T(1)), zero = hn::Zero(d);
    V e, lp, inv;
    ExpNegAbs(d, x, e, lp, inv);
    const auto omy = hn::Sub(one, y);
    const auto ce = hn::MulAdd(omy, x, hn::Add(hn::Max(hn::Neg(x), zero), lp));
    const auto sp = SigmoidFrom(d, x, e, inv);            // p
    const auto sn = SigmoidFrom(d, hn::Neg(x), e, inv);   // 1 - p, without cancellation
    const auto q = hn::MulAdd(sp, omy, hn::Mul(sn, y));
    // f = q^gamma, fd = gamma q^(gamma - 1).
    V f, fd;
    if (p.igamma == 0) {
      f = one;
      fd = zero;  // torch's pow backward with exponent 0 is 0, also at q = 0
    } else if (p.igamma > 0) {
      V qk = one;
      for (int k = 1; k < p.igamma; ++k) qk = hn::Mul(qk, q);
      f = hn::Mul(qk, q);
      fd = hn::Mul(hn::Set(d, static_cast<T>(p.igamma)), qk);
    } else {
      // exp(gamma log q): q = 0 gives 0; q < 0 (targets outside [0, 1]) has no
      // real power, NaN as torch. At q = 0, fd = 0: the chain-rule product
      // ce fd dq has limit 0 there (ce and dq vanish with q) even when gamma < 1,
      // where torch's autograd forms inf * 0 = NaN.
      const auto g = hn::Set(d, p.gamma);
      f = FastExp(d, hn::Mul(g, LogNonNeg(d, hn::Max(q, zero))));
      fd = hn::IfThenZeroElse(hn::Eq(q, zero), hn::Div(hn::Mul(g, f), q));
      const auto neg = hn::Lt(q, zero);
      const auto nan = hn::Set(d, std::numeric_limits<T>::quiet_NaN());
      f = hn::IfThenElse(neg, nan, f);
      fd = hn::IfThenElse(neg, nan, fd);
    }
    const auto cfd = hn::Mul(ce, fd);
    const auto dqx = hn::Mul(hn::Mul(sp, sn), hn::NegMulAdd(hn::Set(d, T(2)), y, one));
    l = hn::Mul(ce, f);
    gx = hn::MulAdd(cfd, dqx, hn::Mul(hn::Sub(sp, y), f));
    gy = hn::MulAdd(cfd, hn::Sub(sn, sp), hn::Mul(hn::Neg(x), f));
    if (p.alpha >= 0) {
      const auto a2 = hn::Set(d, T(2) * p.alpha - T(1));
      const auto at = hn::MulAdd(a2, y, hn::Set(d, T(1) - p.alpha));  // alpha y + (1 - alpha)(1 - y)
      gy = hn::MulAdd(at, gy, hn::Mul(a2, l));
      gx = hn::Mul(at, gx);
      l = hn::Mul(at, l);
    }
    // FastExp/Log1p do not keep NaN; torch does.
    const auto nan = hn::IsNaN(x);
    l = hn::IfThenElse(nan, x, l);
    gx = hn::IfThenElse(nan, x, gx);
    gy = hn::IfThenElse(nan, x, gy);
  }
};

// ---- Keras 3 element-wise losses (keras/src/losses/losses.py): x = y_pred,
// y = y_true, gx = d/dy_pred; Keras gives no y_true gradient (gy = 0, and the
// dispatcher refuses grad_target). Where Keras clips or takes a maximum the
// gradient is that of the clipped expression, with TensorFlow's conventions at
// the boundary: clip(v, lo, hi) passes the gradient for lo <= v <= hi,
// maximum(v, c) for v >= c; it is 0 elsewhere.

template <typename T>
constexpr T KerasEps() { return static_cast<T>(1e-7); }  // keras.backend.epsilon()

template <class D, class V = hn::Vec<D>>
HWY_INLINE V NaNOf(D d) {
  return hn::Set(d, std::numeric_limits<hn::TFromD<D>>::quiet_NaN());
}

// NaN where x or y is NaN (Highway's Min/Max/Log do not propagate it).
template <class V>
HWY_INLINE V KeepNaN2(V x, V y, V r) {
  return KeepNaN(x, KeepNaN(y, r));
}

// Keras' label smoothing of binary targets: y (1 - e) + e / 2.
template <class D, class V = hn::Vec<D>>
HWY_INLINE V KerasSmooth(D d, const PwParams<hn::TFromD<D>>& p, V y) {
  using T = hn::TFromD<D>;
  if (p.smooth == T(0)) return y;
  return hn::MulAdd(y, hn::Set(d, T(1) - p.smooth), hn::Set(d, T(0.5) * p.smooth));
}

// u^g as TensorFlow's pow: exact products for an integer g in [0, 16] (any
// sign of u), else exp(g log u): NaN for u < 0, 0 (g > 0) or inf (g < 0) at u = 0.
template <class D, class V = hn::Vec<D>>
HWY_INLINE V KerasPow(D d, V u, hn::TFromD<D> g, int gi) {
  using T = hn::TFromD<D>;
  if (gi >= 0) {
    V r = hn::Set(d, T(1));
    for (int k = 0; k < gi; ++k) r = hn::Mul(r, u);
    return r;
  }
  const T big = sizeof(T) == 4 ? T(88.0) : T(709.0);  // Highway's Exp has no overflow guard
  const auto arg = hn::Mul(hn::Set(d, g), LogNonNeg(d, hn::Abs(u)));
  const auto inf = hn::Set(d, std::numeric_limits<T>::infinity());
  auto r = hn::IfThenElse(hn::Gt(arg, hn::Set(d, big)), inf, hn::Exp(d, hn::Min(arg, hn::Set(d, big))));
  r = hn::IfThenElse(hn::Eq(u, hn::Zero(d)), hn::Set(d, g > 0 ? T(0) : (g == 0 ? T(1) : std::numeric_limits<T>::infinity())), r);
  return KeepNaN(u, hn::IfThenElse(hn::Lt(u, hn::Zero(d)), NaNOf(d), r));
}

// Keras' clipped binary cross entropy of a probability p against t:
// -(t log q + (1 - t) log(1 - q)), q = clip(p, 1e-7, 1 - 1e-7), and its
// derivative in p: (q - t) / (q (1 - q)) inside the clip, 0 outside.
template <class D, class V = hn::Vec<D>>
HWY_INLINE void KerasClippedBCE(D d, V p, V t, V& l, V& dl) {
  using T = hn::TFromD<D>;
  const auto one = hn::Set(d, T(1));
  const auto lo = hn::Set(d, KerasEps<T>()), hi = hn::Set(d, static_cast<T>(1.0 - 1e-7));
  const auto q = hn::Min(hn::Max(p, lo), hi);
  const auto omq = hn::Sub(one, q);
  // log(1 - q): the exact 1 - q above 1/2 (Sterbenz), log1p(-q) below.
  const auto l1q = hn::IfThenElse(hn::Ge(q, hn::Set(d, T(0.5))), hn::Log(d, omq), hn::Log1p(d, hn::Neg(q)));
  l = hn::Neg(hn::MulAdd(t, hn::Log(d, q), hn::Mul(hn::Sub(one, t), l1q)));
  const auto inside = hn::And(hn::Ge(p, lo), hn::Le(p, hi));
  dl = hn::IfThenElseZero(inside, hn::Div(hn::Sub(q, t), hn::Mul(q, omq)));
  l = KeepNaN2(p, t, l);
  dl = KeepNaN2(p, t, dl);
}

// |x - y| (kL1's math, but NaN keeps a NaN gradient, as TensorFlow's sign).
struct KerasMaeFn {
  LOSSX_PW_EVAL {
    (void)p; (void)pw;
    const auto df = hn::Sub(x, y);
    l = hn::Abs(df);
    gx = KeepNaN(df, Sign0(d, df));
    gy = hn::Zero(d);
  }
};

// 100 |y - x| / max(|y|, eps)
struct KerasMapeFn {
  LOSSX_PW_EVAL {
    (void)p; (void)pw;
    using T = hn::TFromD<D>;
    const auto df = hn::Sub(x, y);
    const auto k = hn::Div(hn::Set(d, T(100)), hn::Max(hn::Abs(y), hn::Set(d, KerasEps<T>())));
    l = hn::Mul(hn::Abs(df), k);
    gx = KeepNaN(df, hn::Mul(Sign0(d, df), k));
    gy = hn::Zero(d);
  }
};

// (log(max(x, eps) + 1) - log(max(y, eps) + 1))^2, the logs as log1p.
struct KerasMsleFn {
  LOSSX_PW_EVAL {
    (void)p; (void)pw;
    using T = hn::TFromD<D>;
    const auto eps = hn::Set(d, KerasEps<T>());
    const auto mx = hn::Max(x, eps);
    const auto df = hn::Sub(hn::Log1p(d, mx), hn::Log1p(d, hn::Max(y, eps)));
    l = KeepNaN2(x, y, hn::Mul(df, df));
    const auto g = hn::Div(hn::Add(df, df), hn::Add(mx, hn::Set(d, T(1))));
    gx = KeepNaN2(x, y, hn::IfThenElseZero(hn::Ge(x, eps), g));
    gy = hn::Zero(d);
  }
};

// Keras' z + softplus(-2z) - log 2 (z = x - y) = log cosh z, evaluated without
// its cancellation: log1p(u^2 / (2 (1 + u))) with u = expm1(|z|) for |z| < 1,
// |z| + log1p(exp(-2|z|)) - log 2 beyond. Gradient tanh(z).
// One Expm1 and one Log1p serve both branches (their arguments blended by
// lane): beyond 1, exp(-2|z|) = expm1(-2|z|) + 1 is off by at most an ulp of
// 1, i.e. 1e-7 of a loss of at least 0.43 in float32. Both branches' own
// Exp/Expm1/Log1p made the loss exp/log-bound at torch's speed (1.02x).
struct KerasLogCoshFn {
  LOSSX_PW_EVAL {
    (void)p; (void)pw;
    using T = hn::TFromD<D>;
    const auto one = hn::Set(d, T(1));
    const auto z = hn::Sub(x, y), az = hn::Abs(z);
    const auto lt = hn::Lt(az, one);
    const auto r = hn::Expm1(d, hn::IfThenElse(lt, az, hn::Mul(hn::Set(d, T(-2)), az)));
    // log1p(a), a = r^2 / (2 (1 + r)) or r + 1, both in [0, 0.55], is
    // Log1pFromS(a / (2 + a)); that quotient is r^2 / (r^2 + 4 (1 + r)) or
    // (r + 1) / (r + 3): one division per element for both branches.
    const auto r2 = hn::Mul(r, r), rp1 = hn::Add(r, one);
    const auto num = hn::IfThenElse(lt, r2, rp1);
    const auto den = hn::IfThenElse(lt, hn::MulAdd(hn::Set(d, T(4)), rp1, r2), hn::Add(rp1, hn::Set(d, T(2))));
    const auto lp = Log1pFromS(d, hn::Div(num, den));
    const auto large = hn::Sub(hn::Add(az, lp), hn::Set(d, T(0.693147180559945309417232)));
    l = KeepNaN(z, hn::IfThenElse(lt, lp, large));
    gx = KeepNaN(z, hn::Tanh(d, z));
    gy = hn::Zero(d);
  }
};

// x - y log(x + eps); NaN where x + eps < 0, as log.
struct KerasPoissonFn {
  LOSSX_PW_EVAL {
    (void)p; (void)pw;
    using T = hn::TFromD<D>;
    const auto xe = hn::Add(x, hn::Set(d, KerasEps<T>()));
    const auto lg = KeepNaN(xe, hn::IfThenElse(hn::Lt(xe, hn::Zero(d)), NaNOf(d), LogNonNeg(d, xe)));
    l = hn::NegMulAdd(y, lg, x);
    gx = hn::Sub(hn::Set(d, T(1)), hn::Div(y, xe));
    gy = hn::Zero(d);
  }
};

// yt log(yt / yp) with yt = clip(y, eps, 1), yp = clip(x, eps, 1); Keras sums
// it over the row (row_scale 1).
struct KerasKLFn {
  LOSSX_PW_EVAL {
    (void)p; (void)pw;
    using T = hn::TFromD<D>;
    const auto lo = hn::Set(d, KerasEps<T>()), one = hn::Set(d, T(1));
    const auto yt = hn::Min(hn::Max(y, lo), one);
    const auto yp = hn::Min(hn::Max(x, lo), one);
    l = KeepNaN2(x, y, hn::Mul(yt, hn::Log(d, hn::Div(yt, yp))));
    const auto inside = hn::And(hn::Ge(x, lo), hn::Le(x, one));
    gx = KeepNaN2(x, y, hn::IfThenElseZero(inside, hn::Neg(hn::Div(yt, yp))));
    gy = hn::Zero(d);
  }
};

// Probabilities: the clipped BCE. Logits: the stable
// max(x, 0) - x t + log1p(exp(-|x|)), gradient sigmoid(x) - t, unclipped, as
// Keras' TensorFlow, JAX and PyTorch backends (its NumPy backend clips sigmoid(x)).
struct KerasBCEFn {
  LOSSX_PW_EVAL {
    (void)pw;
    const auto t = KerasSmooth(d, p, y);
    if (p.from_logits) {
      hn::Vec<D> e, lp, inv;
      ExpNegAbs(d, x, e, lp, inv);
      l = KeepNaN(x, hn::Add(hn::NegMulAdd(x, t, hn::Max(x, hn::Zero(d))), lp));
      gx = KeepNaN(x, hn::Sub(SigmoidFrom(d, x, e, inv), t));
    } else {
      KerasClippedBCE(d, x, t, l, gx);
    }
    gy = hn::Zero(d);
  }
};

// w (1 - p_t)^gamma bce, p_t = t p + (1 - t)(1 - p), p = y_pred or sigmoid(y_pred),
// bce the clipped BCE of p, w = alpha t + (1 - alpha)(1 - t) with class balancing.
// From logits, 1 - p is sigmoid(-x) and, inside the clip, log p = -softplus(-x)
// and log(1 - p) = -softplus(x): the same function as Keras' without the
// cancellation of 1 - sigmoid(x) (outside the clip the logs are constants).
struct KerasBinaryFocalFn {
  LOSSX_PW_EVAL {
    (void)pw;
    using T = hn::TFromD<D>;
    const auto one = hn::Set(d, T(1));
    const auto t = KerasSmooth(d, p, y);
    const auto omt = hn::Sub(one, t);
    const auto du = hn::NegMulAdd(hn::Set(d, T(2)), t, one);  // d(1 - p_t)/dp = 1 - 2t
    hn::Vec<D> u, bce, dbce, dudx;  // 1 - p_t, bce, and their derivatives in x
    if (p.from_logits) {
      const T lo = KerasEps<T>(), hi = static_cast<T>(1.0 - 1e-7);
      hn::Vec<D> e, lp, inv;
      ExpNegAbs(d, x, e, lp, inv);
      const auto pr = KeepNaN(x, SigmoidFrom(d, x, e, inv));
      const auto omp = KeepNaN(x, SigmoidFrom(d, hn::Neg(x), e, inv));
      const auto below = hn::Lt(pr, hn::Set(d, lo)), above = hn::Gt(pr, hn::Set(d, hi));
      const auto spx = hn::Add(hn::Max(x, hn::Zero(d)), lp);           // softplus(x)
      const auto spn = hn::Add(hn::Max(hn::Neg(x), hn::Zero(d)), lp);  // softplus(-x)
      auto lq = hn::IfThenElse(below, hn::Set(d, static_cast<T>(std::log(static_cast<double>(lo)))), hn::Neg(spn));
      lq = hn::IfThenElse(above, hn::Set(d, static_cast<T>(std::log(static_cast<double>(hi)))), lq);
      auto l1q = hn::IfThenElse(below, hn::Set(d, static_cast<T>(std::log1p(-static_cast<double>(lo)))), hn::Neg(spx));
      l1q = hn::IfThenElse(above, hn::Set(d, static_cast<T>(std::log1p(-static_cast<double>(hi)))), l1q);
      bce = KeepNaN(x, hn::Neg(hn::MulAdd(t, lq, hn::Mul(omt, l1q))));
      // d bce / dx = (q - t) / (q (1 - q)) * p (1 - p) = p - t inside the clip.
      dbce = KeepNaN(x, hn::IfThenZeroElse(hn::Or(below, above), hn::Sub(pr, t)));
      u = hn::MulAdd(t, omp, hn::Mul(omt, pr));
      dudx = hn::Mul(du, hn::Mul(pr, omp));
    } else {
      KerasClippedBCE(d, x, t, bce, dbce);
      u = hn::MulAdd(t, hn::Sub(one, x), hn::Mul(omt, x));
      dudx = du;
    }
    const auto f = KerasPow(d, u, p.gamma, p.igamma);
    auto df = hn::Zero(d);  // d(u^g)/du; torch's pow backward gives 0 for g = 0 too
    if (p.gamma != T(0)) {
      const auto um1 = p.igamma >= 1 ? KerasPow(d, u, p.gamma - T(1), p.igamma - 1)
                                        : KerasPow(d, u, p.gamma - T(1), -1);
      df = hn::Mul(hn::Set(d, p.gamma), um1);
    }
    l = hn::Mul(f, bce);
    gx = hn::MulAdd(hn::Mul(df, dudx), bce, hn::Mul(f, dbce));
    if (p.balance) {
      const auto w = hn::MulAdd(t, hn::Set(d, p.alpha), hn::Mul(omt, hn::Set(d, T(1) - p.alpha)));
      l = hn::Mul(l, w);
      gx = hn::Mul(gx, w);
    }
    gy = hn::Zero(d);
  }
};

// max(1 - t x, 0); t = 2y - 1 when Keras converts {0, 1} labels.
template <class D, class V = hn::Vec<D>>
HWY_INLINE V KerasHingeLabels(D d, const PwParams<hn::TFromD<D>>& p, V y) {
  using T = hn::TFromD<D>;
  return p.binary_labels ? hn::MulSub(hn::Set(d, T(2)), y, hn::Set(d, T(1))) : y;
}

struct KerasHingeFn {
  LOSSX_PW_EVAL {
    (void)pw;
    using T = hn::TFromD<D>;
    const auto t = KerasHingeLabels(d, p, y);
    const auto m = hn::NegMulAdd(t, x, hn::Set(d, T(1)));
    const auto pos = hn::Ge(m, hn::Zero(d));
    l = KeepNaN(m, hn::IfThenElseZero(pos, m));
    gx = KeepNaN(m, hn::IfThenElseZero(pos, hn::Neg(t)));
    gy = hn::Zero(d);
  }
};

struct KerasSquaredHingeFn {
  LOSSX_PW_EVAL {
    (void)pw;
    using T = hn::TFromD<D>;
    const auto t = KerasHingeLabels(d, p, y);
    const auto m = hn::NegMulAdd(t, x, hn::Set(d, T(1)));
    const auto mp = KeepNaN(m, hn::IfThenElseZero(hn::Ge(m, hn::Zero(d)), m));
    l = hn::Mul(mp, mp);
    gx = hn::Mul(hn::Mul(hn::Set(d, T(-2)), t), mp);
    gy = hn::Zero(d);
  }
};

// tf.nn.sigmoid_cross_entropy_with_logits: x = logits, y = labels. tf's stable
// form max(x, 0) - x y + log1p(exp(-|x|)) (so +inf logits with a nonzero label
// give NaN, as tf), gradient sigmoid(x) - y; the labels get no gradient (gy = 0).
struct TfSigmoidCEFn {
  LOSSX_PW_EVAL {
    (void)p; (void)pw;
    V e, lp, inv;
    ExpNegAbs(d, x, e, lp, inv);
    l = hn::Add(hn::NegMulAdd(x, y, hn::Max(x, hn::Zero(d))), lp);
    gx = KeepNaN(x, hn::Sub(SigmoidFrom(d, x, e, inv), y));
    gy = hn::Zero(d);
  }
};

#undef LOSSX_PW_EVAL

template <typename T>
struct PwScratch {
  std::vector<T> x, y, w, pw, gx, gy;
  std::vector<T> rl, rs;  // row mode: element losses of the chunk, per-element gradient scales
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

// Row mode, kNone with grad_output: element i's gradient scale is
// grad_output[i / L] * row_scale, unrolled into the chunk's scratch.
template <typename T>
HWY_INLINE const T* PwRowScales(const PointwiseArgs& a, int64_t off, int64_t n, PwScratch<T>& sc) {
  const T* go = static_cast<const T*>(a.grad_output);
  const int64_t L = a.row_len;
  T* b = sc.get(sc.rs);
  int64_t r = off / L, k = off % L;
  T cur = static_cast<T>(static_cast<double>(go[r]) * a.row_scale);
  for (int64_t j = 0; j < n; ++j) {
    b[j] = cur;
    if (++k == L && j + 1 < n) {
      k = 0;
      cur = static_cast<T>(static_cast<double>(go[++r]) * a.row_scale);
    }
  }
  return b;
}

// Sum of `len` element losses: lane-wise in T, lanes and the tail in double.
template <class D, typename T = hn::TFromD<D>>
HWY_INLINE double PwSpanSum(D d, const T* v, int64_t len) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  int64_t j = 0;
  double s = 0.0;
  if (len >= N) {
    auto acc = hn::LoadU(d, v);
    for (j = N; j + N <= len; j += N) acc = hn::Add(acc, hn::LoadU(d, v + j));
    s = static_cast<double>(hn::GetLane(hn::SumOfLanes(d, acc)));
  }
  for (; j < len; ++j) s += static_cast<double>(v[j]);
  return s;
}

// Row mode, kNone: the chunk's element losses `el` become row losses. A row
// inside the chunk is written at once; the piece of a row that crosses a chunk
// boundary goes to row_part[2c] (the chunk's first piece) or row_part[2c + 1]
// (its last), and the driver adds the pieces in chunk order.
template <class D, typename T = hn::TFromD<D>>
HWY_INLINE void PwRowLosses(D d, const PointwiseJob& job, int64_t c, int64_t off, int64_t n, const T* el) {
  const PointwiseArgs& a = *job.a;
  const int64_t L = a.row_len;
  const double scale = a.row_scale;
  T* out = static_cast<T*>(a.loss);
  int64_t r = off / L;
  int64_t j = 0;
  if (r * L < off) {  // the end of a row that began in an earlier chunk
    j = std::min(n, r * L + L - off);
    job.row_part[2 * c] = PwSpanSum(d, el, j);
    ++r;
  }
  if (L == 1) {  // Keras' (N, 1) outputs: nothing to add
    for (; j < n; ++j, ++r) out[r] = static_cast<T>(static_cast<double>(el[j]) * scale);
  } else {
    for (; j + L <= n; j += L, ++r) out[r] = static_cast<T>(PwSpanSum(d, el + j, L) * scale);
  }
  if (j < n) job.row_part[2 * c + (j > 0 ? 1 : 0)] = PwSpanSum(d, el + j, n - j);  // continues after
}

// The one loop of the family: chunks [c0, c1).
template <typename T, class Fn, bool kGrad>
void PointwiseLoop(const PointwiseJob& job, int64_t c0, int64_t c1) {
  const PointwiseArgs& a = *job.a;
  const hn::ScalableTag<T> d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const bool native = IsNative<T>(a.dtype);
  const bool none = a.reduction == Reduction::kNone;
  const bool int_gamma = a.gamma == std::floor(a.gamma) && a.gamma <= 16;
  PwParams<T> prm{static_cast<T>(a.beta), a.pos_weight != nullptr, a.log_target, a.log_input, a.full,
                  static_cast<T>(a.alpha), static_cast<T>(a.gamma), static_cast<T>(a.margin),
                  int_gamma ? static_cast<int>(a.gamma) : -1};
  KerasParams(a, prm);
  const bool rows = none && a.row_len > 0;  // row mode, per-row output
  PwScratch<T>& sc = PwScratchOf<T>();
  const T pad = T(0.5);  // a value every loss accepts; padded lanes are masked anyway
  const auto one = hn::Set(d, T(1));
  const auto vscale = hn::Set(d, static_cast<T>(job.grad_scale));
  // kNone without grad_output: each element's gradient enters its row's loss times row_scale.
  const auto vnone = a.row_len > 0 ? hn::Set(d, static_cast<T>(a.row_scale)) : one;
  for (int64_t c = c0; c < c1; ++c) {
    const int64_t off = c * kPointwiseChunk;
    const int64_t n = std::min(kPointwiseChunk, a.n - off);
    const T* x = PwIn<T>(a.input, a.dtype, off, n, sc, sc.x);
    const T* y = PwIn<T>(a.target, a.dtype, off, n, sc, sc.y);
    const T* w = PwWeight<T>(a.weight, a.weight_period, a.n, off, n, sc, sc.w);
    // var is a dtype operand like input/target and rides in the pos_weight slot.
    const T* pwp = a.var ? PwIn<T>(a.var, a.dtype, off, n, sc, sc.pw)
                         : PwWeight<T>(a.pos_weight, a.pos_weight_period, a.n, off, n, sc, sc.pw);
    T* lo = none ? (rows ? sc.get(sc.rl) : static_cast<T*>(a.loss) + off) : nullptr;
    const T* go = nullptr;
    if (kGrad && none && a.grad_output)
      go = rows ? PwRowScales<T>(a, off, n, sc) : static_cast<const T*>(a.grad_output) + off;
    T* gxo = nullptr;
    T* gyo = nullptr;
    T* gzo = kGrad && a.grad_var ? static_cast<T*>(a.grad_var) + off : nullptr;  // acc type = T
    if (kGrad) {
      if (a.grad_input) gxo = native ? static_cast<T*>(a.grad_input) + off : sc.get(sc.gx);
      if (a.grad_target) gyo = native ? static_cast<T*>(a.grad_target) + off : sc.get(sc.gy);
    }
    // One vector of elements at j; kFull: L of them, else the rem < L of the tail.
    auto step = [&](int64_t j, auto full_tag, size_t rem, auto& acc) HWY_ATTR {
      constexpr bool full = decltype(full_tag)::value;
      const auto xv = full ? hn::LoadU(d, x + j) : LoadTail(d, x + j, rem, pad);
      const auto yv = full ? hn::LoadU(d, y + j) : LoadTail(d, y + j, rem, pad);
      const auto pv = pwp ? (full ? hn::LoadU(d, pwp + j) : LoadTail(d, pwp + j, rem, T(1))) : one;
      hn::Vec<decltype(d)> l, gx, gy, gz = hn::Zero(d);
      Fn::Eval(d, prm, xv, yv, pv, l, gx, gy, gz);
      if (w) {
        const auto wv = full ? hn::LoadU(d, w + j) : LoadTail(d, w + j, rem, T(1));
        l = hn::Mul(l, wv);
        if (kGrad) {
          gx = hn::Mul(gx, wv);
          gy = hn::Mul(gy, wv);
          gz = hn::Mul(gz, wv);
        }
      }
      if (none) {
        if (full) hn::StoreU(l, d, lo + j); else StoreTail(d, l, lo + j, rem);
      } else {
        acc = hn::Add(acc, full ? l : hn::IfThenElseZero(hn::FirstN(d, rem), l));
      }
      if (kGrad) {
        auto s = vscale;
        if (none) s = go ? (full ? hn::LoadU(d, go + j) : LoadTail(d, go + j, rem, T(1))) : vnone;
        if (gxo) {
          gx = hn::Mul(gx, s);
          if (full) hn::StoreU(gx, d, gxo + j); else StoreTail(d, gx, gxo + j, rem);
        }
        if (gyo) {
          gy = hn::Mul(gy, s);
          if (full) hn::StoreU(gy, d, gyo + j); else StoreTail(d, gy, gyo + j, rem);
        }
        if (gzo) {
          gz = hn::Mul(gz, s);
          if (full) hn::StoreU(gz, d, gzo + j); else StoreTail(d, gz, gzo + j, rem);
        }
      }
    };
    // Two vectors per step into two sums, and the tail apart: a single sum made
    // the family latency-bound on its adds (0.29 ns per mse element; measured).
    using kFull = std::true_type;
    auto acc = hn::Zero(d), acc1 = hn::Zero(d);
    int64_t j = 0;
    for (; j + 2 * L <= n; j += 2 * L) {
      step(j, kFull(), 0, acc);
      step(j + L, kFull(), 0, acc1);
    }
    for (; j + L <= n; j += L) step(j, kFull(), 0, acc);
    if (j < n) step(j, std::false_type(), static_cast<size_t>(n - j), acc1);
    acc = hn::Add(acc, acc1);
    if (!none) job.partial[c] = static_cast<double>(hn::GetLane(hn::SumOfLanes(d, acc)));
    if (rows) PwRowLosses(d, job, c, off, n, lo);
    if (kGrad && !native) {
      if (gxo) StoreRow<T>(gxo, n, a.grad_input, a.dtype, off);
      if (gyo) StoreRow<T>(gyo, n, a.grad_target, a.dtype, off);
    }
  }
}

template <typename T>
void PointwiseImpl(const PointwiseJob& job, int64_t c0, int64_t c1) {
  const bool grad = job.a->grad_input || job.a->grad_target || job.a->grad_var;
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

// Accuracy probe for the tests: max ulp error of Log1pUnit (t in [0, 1])
// against long double log1pl, and of ExpNegAbs's log1p(exp(-|z|)) and sigmoid
// (which = 1, 2) against long double formulas of the same exp(-|z|).
template <typename T>
double Log1pUnitMaxUlp(const T* x, int64_t n, int which) {
  const hn::ScalableTag<T> d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  double worst = 0;
  for (int64_t j = 0; j < n; j += L) {
    HWY_ALIGN T out[hn::MaxLanes(d)];
    HWY_ALIGN T ev[hn::MaxLanes(d)];
    const auto v = LoadTail(d, x + j, static_cast<size_t>(std::min<int64_t>(L, n - j)), T(0.5));
    if (which == 0) {
      hn::Store(Log1pUnit(d, v), d, out);
    } else {
      hn::Vec<decltype(d)> e, lp, inv;
      ExpNegAbs(d, v, e, lp, inv);
      hn::Store(which == 1 ? lp : SigmoidFrom(d, v, e, inv), d, out);
      hn::Store(e, d, ev);
    }
    for (int64_t k = 0; k < L && j + k < n; ++k) {
      const long double t = static_cast<long double>(x[j + k]), e = ev[k];
      const long double ref = which == 0   ? log1pl(t)
                              : which == 1 ? log1pl(e)
                                           : (t >= 0 ? 1.0L / (1.0L + e) : e / (1.0L + e));
      const T rf = static_cast<T>(ref);
      const long double ulp = static_cast<long double>(std::nextafter(rf, std::numeric_limits<T>::infinity())) - rf;
      worst = std::max(worst, static_cast<double>(std::fabs(static_cast<long double>(out[k]) - ref) / ulp));
    }
  }
  return worst;
}
double Log1pUnitMaxUlpF32(const float* x, int64_t n, int which) { return Log1pUnitMaxUlp(x, n, which); }
double Log1pUnitMaxUlpF64(const double* x, int64_t n, int which) { return Log1pUnitMaxUlp(x, n, which); }

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
HWY_EXPORT(Log1pUnitMaxUlpF32);
HWY_EXPORT(Log1pUnitMaxUlpF64);

double log1p_unit_max_ulp(const void* x, bool f64, int64_t n, int which) {
  return f64 ? HWY_DYNAMIC_DISPATCH(Log1pUnitMaxUlpF64)(static_cast<const double*>(x), n, which)
             : HWY_DYNAMIC_DISPATCH(Log1pUnitMaxUlpF32)(static_cast<const float*>(x), n, which);
}

namespace {

// Row mode, kNone: the rows that cross chunk boundaries, from their pieces
// (PwRowLosses) added in chunk order.
template <typename A>
void FinishSplitRows(const PointwiseArgs& a, int64_t chunks, const std::vector<double>& part) {
  const int64_t L = a.row_len, K = kPointwiseChunk;
  A* out = static_cast<A*>(a.loss);
  int64_t done = -1;
  for (int64_t b = 1; b < chunks; ++b) {
    const int64_t r = b * K / L;
    if (b * K % L == 0 || r == done) continue;
    done = r;
    const int64_t c0 = r * L / K, c1 = (r * L + L - 1) / K;
    double s = part[static_cast<size_t>(2 * c0 + (r * L % K != 0 ? 1 : 0))];
    for (int64_t c = c0 + 1; c <= c1; ++c) s += part[static_cast<size_t>(2 * c)];
    out[r] = static_cast<A>(s * a.row_scale);
  }
}

// The losses without a transcendental function per element.
bool memory_bound(PointwiseLoss k) {
  switch (k) {
    case PointwiseLoss::kL1: case PointwiseLoss::kMse: case PointwiseLoss::kSmoothL1:
    case PointwiseLoss::kHuber: case PointwiseLoss::kHingeEmbedding: case PointwiseLoss::kMarginRanking:
    case PointwiseLoss::kKerasMae: case PointwiseLoss::kKerasMape: case PointwiseLoss::kKerasHinge:
    case PointwiseLoss::kKerasSquaredHinge:
      return true;
    default:
      return false;
  }
}

template <typename A>
Status PointwiseDriver(const PointwiseArgs& a) {
  const int64_t chunks = (a.n + kPointwiseChunk - 1) / kPointwiseChunk;
  const bool none = a.reduction == Reduction::kNone;
  const bool row_mode = a.row_len > 0;
  std::vector<double> partial(none ? 0 : static_cast<size_t>(chunks));
  std::vector<double> row_part(none && row_mode ? static_cast<size_t>(2 * chunks) : 0);
  // Row mode: the row losses are row_scale * (row sums), so their sum is
  // row_scale * (sum of all element losses), averaged over the rows.
  const double count = row_mode ? static_cast<double>(a.n / a.row_len) : static_cast<double>(a.n);
  const double divisor = a.mean_divisor > 0 ? a.mean_divisor : count;
  const double rscale = row_mode ? a.row_scale : 1.0;
  double scale = 1.0;
  if (!none) {
    if (a.grad_output) scale = static_cast<double>(static_cast<const A*>(a.grad_output)[0]);
    scale *= rscale;
    if (a.reduction == Reduction::kMean) scale /= divisor;
  }
  PointwiseJob job{&a, scale, partial.data(), row_part.data()};
  // A memory-bound loss takes 4 chunks (32K elements) per thread at least:
  // below that it finishes before a second thread has woken up. The losses
  // with an exp or a log per element take about 1 ns per element (8 us per
  // chunk), so one chunk per thread pays: at 512x100 (7 chunks) BCE with
  // logits and soft_margin ran on one thread while torch used two.
  parallel_for(chunks, 1, [&](int64_t b, int64_t e) {
    if (sizeof(A) == 8) HWY_DYNAMIC_DISPATCH(PointwiseF64)(job, b, e);
    else HWY_DYNAMIC_DISPATCH(PointwiseF32)(job, b, e);
  }, memory_bound(a.kind) ? 4 : 1);
  if (none && row_mode) FinishSplitRows<A>(a, chunks, row_part);
  if (!none) {
    double total = 0.0;
    for (double p : partial) total += p;  // chunk order: the same bits for any thread count
    total *= rscale;
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
