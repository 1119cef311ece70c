// The pointwise loss family on CUDA: the losses of csrc/lossx/pointwise_losses.def
// with the semantics of csrc/cpu/pointwise.cc, which is the reference (torch's
// formulas, NaN propagation, BCE's -100 clamps, torch's gradient conventions).
//
// ONE kernel template serves the family, pw_kernel<T, Fn, kGrad>, one launch per
// call plus, for "mean"/"sum", one small final kernel:
//   * a grid-stride loop over groups of 16 bytes of input (4 float32, 2 float64,
//     8 float16/bfloat16): each thread issues the 16-byte loads of kUnroll groups
//     of input and target before using any, then computes value and both
//     gradients element by element with the loss's functor (float32 arithmetic
//     for float32/float16/bfloat16, float64 for float64), and writes the
//     per-element loss ("none") or adds it to a thread-local sum;
//   * gradients are written in the same pass: for "mean"/"sum" their scale is
//     grad_output / divisor, which each thread reads from device memory up front;
//   * reductions are deterministic without float atomics: the grid depends only
//     on n (not on the GPU), each thread adds its groups in increasing order, each
//     block reduces with a fixed tree into partial[blockIdx.x] (double), and
//     sum_partials (one block) adds the partials with a fixed tree. The same inputs
//     give the same bits on every run, whatever the GPU's scheduling.
// Index arithmetic is 64-bit throughout; misaligned buffers (views with an
// offset) take scalar loads over the very same groups, so they sum in the same
// order. Errors come back as Status codes, never device asserts:
// binary_cross_entropy's [0, 1] rule and the +-1 rules of soft_margin_loss and
// hinge_embedding_loss are checked
// in the same sweep (the smallest bad position, via an integer atomicMin) and
// cost one 16-byte copy and a stream synchronisation per call.
//
// Numerics: this file is compiled WITHOUT --use_fast_math (CMakeLists.txt), so
// float32 denormals are kept (BCE of a 1e-40 probability is -92.1, as on the
// CPU, not the -100 clamp a flush-to-zero would give) and division is IEEE.
// expf/logf/log1pf are CUDA's accurate versions (<= 2 ulp).
//
// ---- Adding a loss ---------------------------------------------------------
// After its line in csrc/lossx/pointwise_losses.def and its CPU functor:
//   1. write a functor below, `struct FooFn : NoCheck { LOSSX_CU_PW_EVAL { ... } };`,
//      the CPU functor in scalar form: same formula, same NaN handling, l, gx
//      (d l / d input) and gy (d l / d target) of one element. Options are in
//      PwOpt (beta is smooth_l1's beta, huber's delta and poisson's eps); `pw` is
//      the element's pos_weight (1 without one). A loss that must reject values
//      (like BCE) derives from a struct like ProbCheck instead of NoCheck.
//   2. add `LOSSX_CUDA_POINTWISE(kFoo, FooFn)` to the table below the functors;
//   3. give the loss a case in CASES of tests/test_pointwise.py: the host check of
//      the functors (tests/test_pointwise_cuda_functors.py, needs only nvcc) and
//      the GPU tests (tests/cuda/test_pointwise_cuda.py) take their cases from it.
// A .def line without a table entry still builds: that loss answers GPU arrays
// with kNotCompiled ("<name> has no CUDA kernel yet"), and in any CUDA build
// tests/test_pointwise.py::test_every_pointwise_loss_has_a_cuda_functor fails
// until the functor is added. (A compile error instead would break every CUDA
// build, including the GPU test machine's, for a loss merged from a CPU-only
// branch.)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <type_traits>

#include "common.cuh"
#include "hd_math.cuh"
#include "lossx/cuda.h"
#include "status.h"

// The functors and their math are __host__ __device__ (hd_math.cuh):
// tests/pw_functors_host.cu compiles them for the host (LOSSX_PW_FUNCTORS_ONLY)
// to check them against the CPU kernels on machines without a GPU.
namespace lossx {
namespace cuda {
namespace {

// v where v is NaN, else r (the CPU's KeepNaN).
template <typename A>
LOSSX_HD A keep_nan(A v, A r) {
  return is_nan(v) ? v : r;
}

// sign(v) with sign(0) = 0 and sign(NaN) = 0, as torch's l1 backward (the CPU's Sign0).
template <typename A>
LOSSX_HD A sign0(A v) {
  return (v == A(0) || v != v) ? A(0) : d_copysign(A(1), v);
}

// sigmoid(z) from e = exp(-|z|), never forming exp(+large) (the CPU's SigmoidFrom).
template <typename A>
LOSSX_HD A sigmoid_from(A z, A e, A inv /* 1 / (1 + e) */) {
  return z >= A(0) ? inv : e * inv;
}

// ------------------------------------------------------------- functors ----

// Options as the kernel sees them (the CPU's PwParams).
template <typename A>
struct PwOpt {
  A beta;  // smooth_l1 beta, huber delta, poisson eps
  bool has_pw, log_target, log_input, full;
  A alpha, gamma, margin;  // sigmoid_focal (alpha < 0: no weighting), hinge_embedding
  int igamma;  // gamma when it is an integer in [0, 16] (exact powers by multiplication), else -1
  // Keras element-wise losses: binary label smoothing, from_logits, class
  // balancing (binary focal), {0, 1} -> {-1, 1} hinge labels.
  A smooth;
  bool from_logits, balance, binary_labels;
  // Keras' clipped logs at the clip bounds 1e-7 and 1 - 1e-7, as the CPU forms
  // them (double logs of the compute-type bounds), so no element computes them.
  A log_lo, log_hi, log1m_lo, log1m_hi;
};

template <typename A>
LOSSX_HD A keras_eps() { return static_cast<A>(1e-7); }  // keras.backend.epsilon()
template <typename A>
LOSSX_HD A keras_hi() { return static_cast<A>(1.0 - 1e-7); }

// The options from the C API's arguments, as the CPU loop forms them.
template <typename A>
PwOpt<A> make_opt(const PointwiseArgs& a) {
  const bool int_gamma = a.gamma == std::floor(a.gamma) && a.gamma <= 16;
  PwOpt<A> o;
  o.beta = static_cast<A>(a.beta);
  o.has_pw = a.pos_weight != nullptr;
  o.log_target = a.log_target;
  o.log_input = a.log_input;
  o.full = a.full;
  o.alpha = static_cast<A>(a.alpha);
  o.gamma = static_cast<A>(a.gamma);
  o.margin = static_cast<A>(a.margin);
  o.igamma = int_gamma ? static_cast<int>(a.gamma) : -1;
  o.smooth = static_cast<A>(a.label_smoothing);
  o.from_logits = a.from_logits;
  o.balance = a.class_balancing;
  o.binary_labels = a.binary_labels;
  const double lo = static_cast<double>(keras_eps<A>()), hi = static_cast<double>(keras_hi<A>());
  o.log_lo = static_cast<A>(std::log(lo));
  o.log_hi = static_cast<A>(std::log(hi));
  o.log1m_lo = static_cast<A>(std::log1p(-lo));
  o.log1m_hi = static_cast<A>(std::log1p(-hi));
  return o;
}

// Value rules checked on the device (the CPU path checks them in Python):
// kCheckInput / kCheckTarget turn the check on, bad_*() flags an element,
// k*Rule is the message ("<loss>: <rule>; element i is v").
struct NoCheck {
  static constexpr bool kCheckInput = false, kCheckTarget = false;
  static constexpr const char* kInputRule = "";
  static constexpr const char* kTargetRule = "";
  template <typename A> __host__ __device__ static bool bad_input(A) { return false; }
  template <typename A> __host__ __device__ static bool bad_target(A) { return false; }
};

// torch 2.13's binary_cross_entropy: input and target both in [0, 1] (NaN is outside).
struct ProbCheck : NoCheck {
  static constexpr bool kCheckInput = true, kCheckTarget = true;
  static constexpr const char* kInputRule = "input must hold probabilities in [0, 1]";
  static constexpr const char* kTargetRule = "target must hold probabilities in [0, 1]";
  template <typename A> __host__ __device__ static bool bad_input(A v) { return !(v >= A(0) && v <= A(1)); }
  template <typename A> __host__ __device__ static bool bad_target(A v) { return !(v >= A(0) && v <= A(1)); }
};

struct PlusMinusOneTargetCheck : NoCheck {
  static constexpr bool kCheckTarget = true;
  static constexpr const char* kTargetRule = "target must hold only -1 and +1";
  template <typename A> __host__ __device__ static bool bad_target(A v) { return d_abs(v) != A(1); }
};

// One element: l, d l / d input, d l / d target and, for the losses with a
// third operand (pw: pos_weight, gaussian_nll's var, margin_ranking's target),
// gz = d l / d pw where it is differentiable (preset to 0), before weights and scaling.
#define LOSSX_CU_PW_EVAL                                                                       \
  template <typename A>                                                                        \
  __host__ __device__ static __forceinline__ void eval(const PwOpt<A>& p, A x, A y, A pw, A& l, \
                                                       A& gx, A& gy, [[maybe_unused]] A& gz)

struct L1Fn : NoCheck {
  LOSSX_CU_PW_EVAL {
    (void)p; (void)pw;
    const A df = x - y;
    l = d_abs(df);
    gx = sign0(df);
    gy = -gx;
  }
};

struct MseFn : NoCheck {
  LOSSX_CU_PW_EVAL {
    (void)p; (void)pw;
    const A df = x - y;
    l = df * df;
    gx = df + df;
    gy = -gx;
  }
};

// 0.5 d^2 / beta inside |d| < beta, |d| - beta/2 outside; beta = 0 is L1.
struct SmoothL1Fn : NoCheck {
  LOSSX_CU_PW_EVAL {
    (void)pw;
    const A df = x - y, a = d_abs(df);
    const bool inside = a < p.beta;
    const A q = df / (p.beta > A(0) ? p.beta : A(1));
    l = inside ? (A(0.5) * df) * q : a - A(0.5) * p.beta;
    gx = inside ? q : sign0(df);
    if (p.beta > A(0)) gx = keep_nan(df, gx);  // beta = 0 is torch's l1 backward
    gy = -gx;
  }
};

struct HuberFn : NoCheck {
  LOSSX_CU_PW_EVAL {
    (void)pw;
    const A df = x - y, a = d_abs(df), delta = p.beta;
    const bool inside = a < delta;
    l = inside ? (A(0.5) * df) * df : delta * (a - A(0.5) * delta);
    gx = keep_nan(df, inside ? df : delta * sign0(df));
    gy = -gx;
  }
};

// torch's form: (1 - y) x + lw softplus(-x), lw = 1 + (pw - 1) y, with
// softplus(-x) = max(-x, 0) + log1p(exp(-|x|)).
struct BCEWithLogitsFn : NoCheck {
  LOSSX_CU_PW_EVAL {
    const A e = d_exp(-d_abs(x));
    const A spn = d_max(-x, A(0)) + d_log1p(e);
    const A omy = A(1) - y;
    const A inv = A(1) / (A(1) + e);
    if (!p.has_pw) {
      l = omy * x + spn;
      gx = sigmoid_from(x, e, inv) - y;
      gy = -x;
    } else {
      const A pm1 = pw - A(1);
      const A lw = pm1 * y + A(1);
      l = omy * x + lw * spn;
      gx = omy - lw * sigmoid_from(-x, e, inv);  // 1 - sigmoid(x) without cancellation
      gy = pm1 * spn - x;
    }
    if (is_nan(x)) l = gx = x;
  }
};

// softplus(-y x), stably.
struct SoftMarginFn : PlusMinusOneTargetCheck {
  LOSSX_CU_PW_EVAL {
    (void)p; (void)pw;
    const A z = -(y * x);
    const A e = d_exp(-d_abs(z));
    l = keep_nan(z, d_max(z, A(0)) + d_log1p(e));
    const A s = keep_nan(z, sigmoid_from(z, e, A(1) / (A(1) + e)));
    gx = -(y * s);
    gy = -(x * s);
  }
};

// -(y log x + (1 - y) log(1 - x)), each log clamped at >= -100; log(1 - x) is
// log1p(-x) below 1/2 and the log of the exact 1 - x above. Gradients are
// torch's: (x - y) / max(x (1 - x), 1e-12f), and -logit(x) (unclamped) for the target.
struct BCEFn : ProbCheck {
  LOSSX_CU_PW_EVAL {
    (void)p; (void)pw;
    const A lx = d_log(x);  // -inf at 0; exact for denormals (no flush-to-zero here)
    const A omx = A(1) - x;
    const A l1x = x >= A(0.5) ? d_log(omx) : d_log1p(-x);
    l = -(y * d_max(lx, A(-100))) + (y - A(1)) * d_max(l1x, A(-100));
    gx = (x - y) / d_max(omx * x, A(1e-12f));  // torch: float EPSILON, in every dtype
    gy = l1x - lx;
  }
};

// log_target=False: xlogy(y, y) - y x (0 where y = 0, NaN where y < 0); True: exp(y) (y - x).
struct KLDivFn : NoCheck {
  LOSSX_CU_PW_EVAL {
    (void)pw;
    if (p.log_target) {
      const A ey = keep_nan(y, d_exp(y));
      const A df = y - x;
      l = ey * df;
      gx = -ey;
      gy = ey * (df + A(1));
    } else {
      const bool pos = y > A(0);
      const A ly = d_log(pos ? y : A(1));
      const A xl = (y < A(0) || is_nan(y)) ? static_cast<A>(NAN) : (pos ? y * ly : A(0));
      l = -(y * x) + xl;
      gx = -y;
      gy = keep_nan(y, (ly + A(1)) - x);
    }
  }
};

// log_input: exp(x) - y x; else x - y log(x + eps). full adds Stirling's
// y log y - y + log(2 pi y) / 2 where y > 1 (NaN targets keep it: NaN).
struct PoissonNLLFn : NoCheck {
  LOSSX_CU_PW_EVAL {
    (void)pw;
    if (p.log_input) {
      const A ex = keep_nan(x, d_exp(x));
      l = -(y * x) + ex;
      gx = ex - y;
      gy = -x;
    } else {
      const A xe = x + p.beta;
      const A lg = keep_nan(xe, d_log(xe));
      l = -(y * lg) + x;
      gx = A(1) - y / xe;
      gy = -lg;
    }
    if (p.full) {
      const bool big = y > A(1);
      const A ys = big ? y : A(1);
      const A ly = d_log(ys);
      const A st = A(0.5) * d_log(A(6.283185307179586) * ys) + (ys * ly - ys);
      l += big ? st : A(0);
      gy += big ? ly + A(0.5) / ys : A(0);
      l = keep_nan(y, l);
      gy = keep_nan(y, gy);
    }
  }
};

// Targets are +-1 (checked in the sweep), so torch's two where() terms reduce to
// x or max(m - x, 0); clamp_min's gradient passes at the kink (m - x >= 0) and
// not where it is NaN. The target has no gradient.
struct HingeEmbeddingFn : PlusMinusOneTargetCheck {
  LOSSX_CU_PW_EVAL {
    (void)pw;
    const bool pos = y == A(1);
    const A h = p.margin - x;
    l = pos ? x : keep_nan(h, d_max(h, A(0)));
    gx = pos ? A(1) : (h >= A(0) ? A(-1) : A(0));
    gy = A(0);
  }
};

// torchvision's sigmoid_focal_loss, as the CPU's SigmoidFocalFn: ce (1 - p_t)^gamma,
// with q = 1 - p_t formed as p (1 - y) + (1 - p) y from the two stable sigmoids,
// dq/dx = p (1 - p)(1 - 2y), dq/dy = 1 - 2p; times alpha y + (1 - alpha)(1 - y)
// when alpha >= 0.
struct SigmoidFocalFn : NoCheck {
  LOSSX_CU_PW_EVAL {
    (void)pw;
    const A e = d_exp(-d_abs(x));
    const A inv = A(1) / (A(1) + e);
    const A omy = A(1) - y;
    const A ce = omy * x + (d_max(-x, A(0)) + d_log1p(e));
    const A sp = sigmoid_from(x, e, inv), sn = sigmoid_from(-x, e, inv);
    const A q = sp * omy + sn * y;
    A f, fd;  // q^gamma and gamma q^(gamma - 1)
    if (p.igamma == 0) {
      f = A(1);
      fd = A(0);  // torch's pow backward with exponent 0 is 0, also at q = 0
    } else if (p.igamma > 0) {
      A qk = A(1);
      for (int k = 1; k < p.igamma; ++k) qk *= q;
      f = qk * q;
      fd = static_cast<A>(p.igamma) * qk;
    } else if (q < A(0)) {
      f = fd = static_cast<A>(NAN);  // no real power of a negative q, as torch
    } else {
      // At q = 0, fd = 0: the product ce fd dq has limit 0 there (torch: inf * 0).
      f = q > A(0) ? d_exp(p.gamma * d_log(q)) : A(0);
      fd = q > A(0) ? p.gamma * f / q : A(0);
      if (is_nan(q)) f = fd = q;
    }
    const A cfd = ce * fd;
    const A dqx = (sp * sn) * (A(1) - A(2) * y);
    l = ce * f;
    gx = cfd * dqx + (sp - y) * f;
    gy = cfd * (sn - sp) + (-x) * f;
    if (p.alpha >= A(0)) {
      const A a2 = A(2) * p.alpha - A(1);
      const A at = a2 * y + (A(1) - p.alpha);
      gy = at * gy + a2 * l;
      gx = at * gx;
      l = at * l;
    }
  }
};

// 0.5 (log v + (x - y)^2 / v), v = max(var, eps) (beta), + log(2 pi) / 2 when full;
// var rides in pw. d/dvar = 0.5 (1/v - r^2) at the clamped v also below eps, as
// torch's autograd (its clamp runs under no_grad).
struct GaussianNLLFn : NoCheck {
  LOSSX_CU_PW_EVAL {
    const A v = keep_nan(pw, d_max(pw, p.beta));
    const A df = x - y;
    const A r = df / v;
    l = A(0.5) * (df * r + d_log(v));
    if (p.full) l += A(0.91893853320467274178);  // log(2 pi) / 2
    gx = r;
    gy = -r;
    gz = A(0.5) * (A(1) / v - r * r);
  }
};

// margin_ranking_loss: x = input1, y = input2, the +-1 target in pw (checked by
// the wrapper). max(-t (x - y) + m, 0); the gradient passes at the kink and not
// where the argument is NaN, as torch's clamp_min. The target has no gradient.
struct MarginRankingFn : NoCheck {
  LOSSX_CU_PW_EVAL {
    const A z = -pw * (x - y) + p.margin;
    l = keep_nan(z, d_max(z, A(0)));
    const A s = z >= A(0) ? pw : A(0);
    gx = -s;
    gy = s;
  }
};

// ---- Keras 3 element-wise losses, as csrc/cpu/pointwise.cc's Keras*Fn: x = y_pred,
// y = y_true, gx = d/dy_pred, no y_true gradient (gy = 0). Clips and maxima pass
// the gradient as TensorFlow's: clip(v, lo, hi) for lo <= v <= hi, maximum(v, c)
// for v >= c. fmin/fmax return the number when one operand is NaN, as the CPU's
// x86 min/max with the bound second, so clipped NaNs come out the same; the
// results put NaN back explicitly where the CPU does (keep_nan).

template <typename A>
LOSSX_HD A keep_nan2(A x, A y, A r) {
  return keep_nan(x, keep_nan(y, r));
}

// Keras' label smoothing of binary targets: y (1 - e) + e / 2.
template <typename A>
LOSSX_HD A keras_smooth(const PwOpt<A>& p, A y) {
  return p.smooth == A(0) ? y : y * (A(1) - p.smooth) + A(0.5) * p.smooth;
}

// u^g as TensorFlow's pow: exact products for an integer g in [0, 16], else
// exp(g log u): NaN for u < 0, 0 (g > 0) or inf (g < 0) at u = 0.
template <typename A>
LOSSX_HD A keras_pow(A u, A g, int gi) {
  if (gi >= 0) {
    A r = A(1);
    for (int k = 0; k < gi; ++k) r *= u;
    return r;
  }
  const A big = sizeof(A) == 4 ? A(88.0) : A(709.0);  // the CPU's overflow guard
  const A arg = g * d_log(d_abs(u));
  A r = arg > big ? static_cast<A>(INFINITY) : d_exp(d_min(arg, big));
  if (u == A(0)) r = g > A(0) ? A(0) : (g == A(0) ? A(1) : static_cast<A>(INFINITY));
  return keep_nan(u, u < A(0) ? static_cast<A>(NAN) : r);
}

// -(t log q + (1 - t) log(1 - q)), q = clip(p, 1e-7, 1 - 1e-7), and its
// derivative in p: (q - t) / (q (1 - q)) inside the clip, 0 outside.
template <typename A>
LOSSX_HD void keras_clipped_bce(A pr, A t, A& l, A& dl) {
  const A lo = keras_eps<A>(), hi = keras_hi<A>();
  const A q = d_min(d_max(pr, lo), hi);
  const A omq = A(1) - q;
  const A l1q = q >= A(0.5) ? d_log(omq) : d_log1p(-q);
  l = -(t * d_log(q) + (A(1) - t) * l1q);
  const bool inside = pr >= lo && pr <= hi;
  dl = inside ? (q - t) / (q * omq) : A(0);
  l = keep_nan2(pr, t, l);
  dl = keep_nan2(pr, t, dl);
}

struct KerasMaeFn : NoCheck {
  LOSSX_CU_PW_EVAL {
    (void)p; (void)pw;
    const A df = x - y;
    l = d_abs(df);
    gx = keep_nan(df, sign0(df));
    gy = A(0);
  }
};

// 100 |y - x| / max(|y|, eps)
struct KerasMapeFn : NoCheck {
  LOSSX_CU_PW_EVAL {
    (void)p; (void)pw;
    const A df = x - y;
    const A k = A(100) / d_max(d_abs(y), keras_eps<A>());
    l = d_abs(df) * k;
    gx = keep_nan(df, sign0(df) * k);
    gy = A(0);
  }
};

// (log1p(max(x, eps)) - log1p(max(y, eps)))^2
struct KerasMsleFn : NoCheck {
  LOSSX_CU_PW_EVAL {
    (void)p; (void)pw;
    const A eps = keras_eps<A>();
    const A mx = d_max(x, eps);
    const A df = d_log1p(mx) - d_log1p(d_max(y, eps));
    l = keep_nan2(x, y, df * df);
    gx = keep_nan2(x, y, x >= eps ? (df + df) / (mx + A(1)) : A(0));
    gy = A(0);
  }
};

// log cosh z (z = x - y) without Keras' cancellation: log1p(u^2 / (2 (1 + u)))
// with u = expm1(|z|) for |z| < 1, |z| + log1p(exp(-2|z|)) - log 2 beyond.
struct KerasLogCoshFn : NoCheck {
  LOSSX_CU_PW_EVAL {
    (void)p; (void)pw;
    const A z = x - y, az = d_abs(z);
    A v;
    if (az < A(1)) {
      const A u = d_expm1(az);
      v = d_log1p((u * u) / (A(2) * (A(1) + u)));
    } else {
      v = (az + d_log1p(d_exp(A(-2) * az))) - A(0.693147180559945309417232);
    }
    l = keep_nan(z, v);
    gx = keep_nan(z, d_tanh(z));
    gy = A(0);
  }
};

// x - y log(x + eps); NaN where x + eps < 0, as log.
struct KerasPoissonFn : NoCheck {
  LOSSX_CU_PW_EVAL {
    (void)p; (void)pw;
    const A xe = x + keras_eps<A>();
    const A lg = keep_nan(xe, xe < A(0) ? static_cast<A>(NAN) : d_log(xe));
    l = x - y * lg;
    gx = A(1) - y / xe;
    gy = A(0);
  }
};

// yt log(yt / yp), yt = clip(y, eps, 1), yp = clip(x, eps, 1) (summed over the row).
struct KerasKLFn : NoCheck {
  LOSSX_CU_PW_EVAL {
    (void)p; (void)pw;
    const A lo = keras_eps<A>();
    const A yt = d_min(d_max(y, lo), A(1));
    const A yp = d_min(d_max(x, lo), A(1));
    const A r = yt / yp;
    l = keep_nan2(x, y, yt * d_log(r));
    gx = keep_nan2(x, y, (x >= lo && x <= A(1)) ? -r : A(0));
    gy = A(0);
  }
};

// Probabilities: the clipped BCE. Logits: max(x, 0) - x t + log1p(exp(-|x|)),
// gradient sigmoid(x) - t, unclipped (Keras' TensorFlow, JAX and torch backends).
struct KerasBCEFn : NoCheck {
  LOSSX_CU_PW_EVAL {
    (void)pw;
    const A t = keras_smooth(p, y);
    if (p.from_logits) {
      const A e = d_exp(-d_abs(x));
      l = keep_nan(x, (d_max(x, A(0)) - x * t) + d_log1p(e));
      gx = keep_nan(x, sigmoid_from(x, e, A(1) / (A(1) + e)) - t);
    } else {
      keras_clipped_bce(x, t, l, gx);
    }
    gy = A(0);
  }
};

// w (1 - p_t)^gamma bce, p_t = t p + (1 - t)(1 - p), p = y_pred or sigmoid(y_pred);
// from logits, inside the clip, log p = -softplus(-x) and log(1 - p) = -softplus(x).
struct KerasBinaryFocalFn : NoCheck {
  LOSSX_CU_PW_EVAL {
    (void)pw;
    const A t = keras_smooth(p, y);
    const A omt = A(1) - t;
    const A du = A(1) - A(2) * t;  // d(1 - p_t)/dp
    A u, bce, dbce, dudx;
    if (p.from_logits) {
      const A e = d_exp(-d_abs(x));
      const A lp = d_log1p(e);
      const A inv = A(1) / (A(1) + e);
      const A pr = keep_nan(x, sigmoid_from(x, e, inv));
      const A omp = keep_nan(x, sigmoid_from(-x, e, inv));
      const bool below = pr < keras_eps<A>(), above = pr > keras_hi<A>();
      const A spx = d_max(x, A(0)) + lp;   // softplus(x)
      const A spn = d_max(-x, A(0)) + lp;  // softplus(-x)
      const A lq = below ? p.log_lo : (above ? p.log_hi : -spn);
      const A l1q = below ? p.log1m_lo : (above ? p.log1m_hi : -spx);
      bce = keep_nan(x, -(t * lq + omt * l1q));
      dbce = keep_nan(x, (below || above) ? A(0) : pr - t);
      u = t * omp + omt * pr;
      dudx = du * (pr * omp);
    } else {
      keras_clipped_bce(x, t, bce, dbce);
      u = t * (A(1) - x) + omt * x;
      dudx = du;
    }
    const A f = keras_pow(u, p.gamma, p.igamma);
    A df = A(0);  // d(u^g)/du; 0 for g = 0, as torch's pow backward
    if (p.gamma != A(0)) df = p.gamma * keras_pow(u, p.gamma - A(1), p.igamma >= 1 ? p.igamma - 1 : -1);
    l = f * bce;
    gx = (df * dudx) * bce + f * dbce;
    if (p.balance) {
      const A w = t * p.alpha + omt * (A(1) - p.alpha);
      l *= w;
      gx *= w;
    }
    gy = A(0);
  }
};

// max(1 - t x, 0); t = 2y - 1 when Keras converts {0, 1} labels.
template <typename A>
LOSSX_HD A keras_hinge_label(const PwOpt<A>& p, A y) {
  return p.binary_labels ? A(2) * y - A(1) : y;
}

struct KerasHingeFn : NoCheck {
  LOSSX_CU_PW_EVAL {
    (void)pw;
    const A t = keras_hinge_label(p, y);
    const A m = A(1) - t * x;
    const bool pos = m >= A(0);
    l = keep_nan(m, pos ? m : A(0));
    gx = keep_nan(m, pos ? -t : A(0));
    gy = A(0);
  }
};

struct KerasSquaredHingeFn : NoCheck {
  LOSSX_CU_PW_EVAL {
    (void)pw;
    const A t = keras_hinge_label(p, y);
    const A m = A(1) - t * x;
    const A mp = keep_nan(m, m >= A(0) ? m : A(0));
    l = mp * mp;
    gx = (A(-2) * t) * mp;
    gy = A(0);
  }
};

// tf.nn.sigmoid_cross_entropy_with_logits, as the CPU's TfSigmoidCEFn: tf's form
// max(x, 0) - x y + log1p(exp(-|x|)), gradient sigmoid(x) - y, no label gradient.
struct TfSigmoidCEFn : NoCheck {
  LOSSX_CU_PW_EVAL {
    (void)p; (void)pw;
    const A e = d_exp(-d_abs(x));
    l = (d_max(x, A(0)) - x * y) + d_log1p(e);
    if (is_nan(x)) l = x;
    gx = keep_nan(x, sigmoid_from(x, e, A(1) / (A(1) + e)) - y);
    gy = A(0);
  }
};

#undef LOSSX_CU_PW_EVAL

// ---------------------------------------------------------- the table ----

// Loss id (from the .def) -> CUDA functor; `void` where none exists yet.
template <PointwiseLoss K>
struct CudaPw {
  using type = void;
};
#define LOSSX_CUDA_POINTWISE(id, fn)      \
  template <>                             \
  struct CudaPw<PointwiseLoss::id> {      \
    using type = fn;                      \
  };
LOSSX_CUDA_POINTWISE(kL1, L1Fn)
LOSSX_CUDA_POINTWISE(kMse, MseFn)
LOSSX_CUDA_POINTWISE(kSmoothL1, SmoothL1Fn)
LOSSX_CUDA_POINTWISE(kHuber, HuberFn)
LOSSX_CUDA_POINTWISE(kBCEWithLogits, BCEWithLogitsFn)
LOSSX_CUDA_POINTWISE(kSoftMargin, SoftMarginFn)
LOSSX_CUDA_POINTWISE(kBCE, BCEFn)
LOSSX_CUDA_POINTWISE(kKLDiv, KLDivFn)
LOSSX_CUDA_POINTWISE(kPoissonNLL, PoissonNLLFn)
LOSSX_CUDA_POINTWISE(kHingeEmbedding, HingeEmbeddingFn)
LOSSX_CUDA_POINTWISE(kSigmoidFocal, SigmoidFocalFn)
LOSSX_CUDA_POINTWISE(kGaussianNLL, GaussianNLLFn)
LOSSX_CUDA_POINTWISE(kMarginRanking, MarginRankingFn)
LOSSX_CUDA_POINTWISE(kKerasMae, KerasMaeFn)
LOSSX_CUDA_POINTWISE(kKerasMape, KerasMapeFn)
LOSSX_CUDA_POINTWISE(kKerasMsle, KerasMsleFn)
LOSSX_CUDA_POINTWISE(kKerasLogCosh, KerasLogCoshFn)
LOSSX_CUDA_POINTWISE(kKerasPoisson, KerasPoissonFn)
LOSSX_CUDA_POINTWISE(kKerasKLDivergence, KerasKLFn)
LOSSX_CUDA_POINTWISE(kKerasBCE, KerasBCEFn)
LOSSX_CUDA_POINTWISE(kKerasBinaryFocal, KerasBinaryFocalFn)
LOSSX_CUDA_POINTWISE(kKerasHinge, KerasHingeFn)
LOSSX_CUDA_POINTWISE(kKerasSquaredHinge, KerasSquaredHingeFn)
LOSSX_CUDA_POINTWISE(kTfSigmoidCE, TfSigmoidCEFn)
#undef LOSSX_CUDA_POINTWISE

// One element, as the CPU loop does it: the functor, then the weight on the
// value and both gradients (the caller scales the gradients).
template <class Fn, typename A>
LOSSX_HD void pw_element(const PwOpt<A>& o, A x, A y, A pw, bool has_w, A w, A& l, A& gx, A& gy, A& gz) {
  gz = A(0);
  Fn::eval(o, x, y, pw, l, gx, gy, gz);
  if (has_w) {
    l *= w;
    gx *= w;
    gy *= w;
    gz *= w;
  }
}

#ifndef LOSSX_PW_FUNCTORS_ONLY
// ----------------------------------------------------------------- kernel ----

constexpr int kThreads = 256;
constexpr int kUnroll = 4;         // groups whose loads are in flight per thread
constexpr int64_t kMaxBlocks = 4096;  // fixed, not per GPU: the summation order depends on n only

template <typename T>
struct PwParams {
  using A = typename AccOf<T>::type;
  int64_t n;
  const T* x;
  const T* y;
  const A* w;  // element i: w[i % wp]
  int64_t wp;
  const A* pw;
  int64_t pwp;
  // The third operand in the input's dtype, one per element (gaussian_nll's var,
  // margin_ranking's target; it takes pw's place in the functor), and its
  // gradient (acc type, per element, or nullptr).
  const T* v;
  A* gv;
  PwOpt<A> opt;
  bool none, mean;
  bool vec;  // every per-element stream is 16-byte aligned
  double divisor;
  A* loss;  // n values ("none"), else unused (sum_partials writes the one value)
  T* gx;
  T* gy;
  const A* go;  // n values ("none") or one; nullptr = 1
  double* partial;           // one per block (reductions)
  unsigned long long* bad;   // [2]: smallest bad input / target position (checked losses)
};

// i % m, with a 32-bit division when both fit (a 64-bit one is far slower).
__device__ __forceinline__ int64_t mod64(int64_t i, int64_t m) {
  if (((i | m) >> 32) == 0) return static_cast<uint32_t>(i) % static_cast<uint32_t>(m);
  return i % m;
}

// Elements [e0, e0 + M): value, weights, gradients, stores; adds to `acc`.
template <typename T, class Fn, bool kGrad, int M>
__device__ __forceinline__ void pw_elems(const PwParams<T>& p, int64_t e0, const T (&xr)[M], const T (&yr)[M],
                                         const T (&vr)[M], bool vec, typename AccOf<T>::type gscale,
                                         typename AccOf<T>::type& acc) {
  using A = typename AccOf<T>::type;
  A ls[M], gos[M], gvs[M];
  T gxs[M], gys[M];
  if (kGrad && p.none) {
    if (p.go) {
      ld_group<A, M>(p.go, e0, vec, gos);
    } else {
#pragma unroll
      for (int e = 0; e < M; ++e) gos[e] = A(1);
    }
  }
  // Broadcast weights: the index into the weight advances with wrap-around,
  // one modulo per group.
  int64_t kw = 0, kp = 0;
  if (p.w) kw = p.wp == p.n ? e0 : mod64(e0, p.wp);
  if (p.pw) kp = p.pwp == p.n ? e0 : mod64(e0, p.pwp);
#pragma unroll
  for (int e = 0; e < M; ++e) {
    const A x = to_acc(xr[e]), y = to_acc(yr[e]);
    A pwv = A(1), wv = A(1);
    if (p.v) {
      pwv = to_acc(vr[e]);
    } else if (p.pw) {
      pwv = __ldg(p.pw + kp);
      if (++kp == p.pwp) kp = 0;
    }
    if (p.w) {
      wv = __ldg(p.w + kw);
      if (++kw == p.wp) kw = 0;
    }
    A l, gx, gy, gz;
    pw_element<Fn>(p.opt, x, y, pwv, p.w != nullptr, wv, l, gx, gy, gz);
    if (Fn::kCheckInput && Fn::bad_input(x)) note_bad(p.bad, e0 + e);
    if (Fn::kCheckTarget && Fn::bad_target(y)) note_bad(p.bad + 1, e0 + e);
    if (p.none) ls[e] = l;
    else acc += l;
    if (kGrad) {
      const A s = p.none ? gos[e] : gscale;
      gxs[e] = from_acc<T>(gx * s);
      gys[e] = from_acc<T>(gy * s);
      gvs[e] = gz * s;
    }
  }
  if (p.none) st_group<A, M>(p.loss, e0, vec, ls);
  if (kGrad) {
    if (p.gx) st_group<T, M>(p.gx, e0, vec, gxs);
    if (p.gy) st_group<T, M>(p.gy, e0, vec, gys);
    if (p.gv) st_group<A, M>(p.gv, e0, vec, gvs);
  }
}

template <typename T, class Fn, bool kGrad>
__global__ void __launch_bounds__(kThreads) pw_kernel(const PwParams<T> p) {
  using A = typename AccOf<T>::type;
  constexpr int G = 16 / sizeof(T);
  __shared__ double sm[33];
  A gscale = A(1);
  if (kGrad && !p.none) {  // as the CPU: double grad_output / divisor, then the compute type
    double s = p.go ? static_cast<double>(p.go[0]) : 1.0;
    if (p.mean) s /= p.divisor;
    gscale = static_cast<A>(s);
  }
  A acc = A(0);
  const int64_t P = static_cast<int64_t>(gridDim.x) * kThreads;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t ngroups = p.n / G;
  for (int64_t g0 = t; g0 < ngroups; g0 += kUnroll * P) {
    T xr[kUnroll][G], yr[kUnroll][G], vr[kUnroll][G];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t g = g0 + u * P;
      if (g < ngroups) {
        ld_group<T, G>(p.x, g * G, p.vec, xr[u]);
        ld_group<T, G>(p.y, g * G, p.vec, yr[u]);
        if (p.v) ld_group<T, G>(p.v, g * G, p.vec, vr[u]);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t g = g0 + u * P;
      if (g < ngroups) pw_elems<T, Fn, kGrad, G>(p, g * G, xr[u], yr[u], vr[u], p.vec, gscale, acc);
    }
  }
  // The n % G last elements: one per thread of the first block.
  const int64_t tail0 = ngroups * G;
  if (t < p.n - tail0) {
    const T xr[1] = {p.x[tail0 + t]}, yr[1] = {p.y[tail0 + t]}, vr[1] = {p.v ? p.v[tail0 + t] : T{}};
    pw_elems<T, Fn, kGrad, 1>(p, tail0 + t, xr, yr, vr, false, gscale, acc);
  }
  if (!p.none) {
    const double s = block_sum(static_cast<double>(acc), sm);
    if (threadIdx.x == 0) p.partial[blockIdx.x] = s;
  }
}

// Row mode, "none" (lossx.keras): rows of L consecutive elements, one warp per
// row. The lanes stride the row (coalesced), each adds its elements in order,
// and a fixed shuffle tree adds the lanes: the same bits on every run. Row r's
// loss is row_scale * sum; its gradient scale grad_output[r] * row_scale.
// (Rows shorter than a warp leave lanes idle; Keras' last axes are rarely that
// short on a GPU workload, and the element-wise kernel serves every reduction.)
template <typename T, class Fn, bool kGrad>
__global__ void __launch_bounds__(kThreads) pw_rows_kernel(const PwParams<T> p, int64_t rows, int64_t L,
                                                           double row_scale) {
  using A = typename AccOf<T>::type;
  constexpr int kWarps = kThreads / 32;
  // Each element as the element-wise kernel's pw_elems does it, adding its loss
  // to the lane's sum (none = false) with the row's gradient scale.
  PwParams<T> q = p;
  q.none = false;
  const int lane = threadIdx.x & 31;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kWarps;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5); r < rows; r += stride) {
    A gs = A(0);
    if (kGrad) gs = static_cast<A>((p.go ? static_cast<double>(p.go[r]) : 1.0) * row_scale);
    A acc = A(0);
    for (int64_t j = lane; j < L; j += 32) {
      const int64_t i = r * L + j;
      const T xr[1] = {p.x[i]}, yr[1] = {p.y[i]}, vr[1] = {p.v ? p.v[i] : T{}};
      pw_elems<T, Fn, kGrad, 1>(q, i, xr, yr, vr, false, gs, acc);
    }
    double s = static_cast<double>(acc);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) s += shfl(s, off);
    if (lane == 0) p.loss[r] = static_cast<A>(row_scale * s);
  }
}

// ---------------------------------------------------------------- launch ----

template <typename T, class Fn>
Status launch(const PointwiseArgs& a, StatusInfo* info) {
  using A = typename AccOf<T>::type;
  constexpr int G = 16 / sizeof(T);
  constexpr bool kCheck = Fn::kCheckInput || Fn::kCheckTarget;
  DeviceGuard guard;
  LOSSX_CU(guard.enter(a.loss));
  cudaStream_t stream = static_cast<cudaStream_t>(a.stream);
  const int64_t n = a.n;
  const bool none = a.reduction == Reduction::kNone;
  const bool grad = a.grad_input != nullptr || a.grad_target != nullptr || a.grad_var != nullptr;
  if (kCheck) LOSSX_NO_CAPTURE(stream, "this loss's input/target range check");

  PwParams<T> p;
  p.n = n;
  p.x = static_cast<const T*>(a.input);
  p.y = static_cast<const T*>(a.target);
  p.w = static_cast<const A*>(a.weight);
  p.wp = a.weight_period;
  p.pw = static_cast<const A*>(a.pos_weight);
  p.pwp = a.pos_weight_period;
  p.v = static_cast<const T*>(a.var);
  p.gv = static_cast<A*>(a.grad_var);
  p.opt = make_opt<A>(a);
  // Row mode: "none" runs pw_rows_kernel; "sum" / "mean" of the row losses
  // row_scale * (row sums) are the element-wise kernel's sum with the divisor
  // (rows, or mean_divisor) over row_scale, and the same scale on the gradient.
  const int64_t L = a.row_len;
  const bool rows_none = L > 0 && none;
  p.none = none;
  p.mean = a.reduction == Reduction::kMean;
  p.divisor = a.mean_divisor > 0 ? a.mean_divisor : static_cast<double>(n);
  if (L > 0 && !none) {
    const double rows_div = a.mean_divisor > 0 ? a.mean_divisor : static_cast<double>(n / L);
    p.divisor = (p.mean ? rows_div : 1.0) / a.row_scale;
    p.mean = true;
  }
  p.loss = static_cast<A*>(a.loss);
  p.gx = static_cast<T*>(a.grad_input);
  p.gy = static_cast<T*>(a.grad_target);
  p.go = static_cast<const A*>(a.grad_output);
  p.vec = aligned16(p.x) && aligned16(p.y) && aligned16(p.v) &&
          (!grad || (aligned16(p.gx) && aligned16(p.gy) && aligned16(p.gv))) &&
          (!none || (aligned16(p.loss) && (!grad || aligned16(p.go))));

  const int64_t ngroups = n / G;
  int64_t blocks = (ngroups + kThreads * kUnroll - 1) / (kThreads * kUnroll);
  if (rows_none) blocks = (n / L + kThreads / 32 - 1) / (kThreads / 32);  // a warp per row
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  if (blocks < 1 && n > 0) blocks = 1;

  // Workspace: [2 error slots][one partial per block].
  const size_t slot_bytes = kCheck ? 16 : 0;
  const size_t bytes = slot_bytes + (none ? 0 : sizeof(double) * static_cast<size_t>(blocks));
  void* ws = nullptr;
  if (bytes > 0) LOSSX_CU(cudaMallocAsync(&ws, bytes, stream));
  p.bad = kCheck ? static_cast<unsigned long long*>(ws) : nullptr;
  p.partial = none ? nullptr : reinterpret_cast<double*>(static_cast<char*>(ws) + slot_bytes);

  // From here on every path must free ws: keep the first error.
  cudaError_t err = cudaSuccess;
  const char* where = "";
  auto step = [&](cudaError_t e, const char* w) {
    if (err == cudaSuccess && e != cudaSuccess) {
      err = e;
      where = w;
    }
  };
  if (kCheck) step(cudaMemsetAsync(p.bad, 0xff, 16, stream), "cudaMemsetAsync(error slots)");
  if (blocks > 0 && err == cudaSuccess) {
    const unsigned nb = static_cast<unsigned>(blocks);
    if (rows_none) {
      if (grad) pw_rows_kernel<T, Fn, true><<<nb, kThreads, 0, stream>>>(p, n / L, L, a.row_scale);
      else pw_rows_kernel<T, Fn, false><<<nb, kThreads, 0, stream>>>(p, n / L, L, a.row_scale);
    } else if (grad) {
      pw_kernel<T, Fn, true><<<nb, kThreads, 0, stream>>>(p);
    } else {
      pw_kernel<T, Fn, false><<<nb, kThreads, 0, stream>>>(p);
    }
    step(cudaGetLastError(), "pw_kernel launch");
  }
  if (!none && err == cudaSuccess) {
    sum_partials<A><<<1, 1024, 0, stream>>>(p.partial, blocks, p.mean, p.divisor, p.loss);
    step(cudaGetLastError(), "sum_partials launch");
  }
  // Checked losses: the error slots come back to the host (the only sync).
  unsigned long long slot[2] = {~0ull, ~0ull};
  if (kCheck && err == cudaSuccess)
    step(cudaMemcpyAsync(slot, p.bad, sizeof(slot), cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync(error slots)");
  if (ws) step(cudaFreeAsync(ws, stream), "cudaFreeAsync");
  if (kCheck && err == cudaSuccess) step(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  if (err != cudaSuccess) return cuda_fail(info, err, where);
  if (kCheck && (slot[0] != ~0ull || slot[1] != ~0ull)) {
    // The input rule first, as the CPU path checks the whole input before the target.
    const bool in_x = slot[0] != ~0ull;
    const int64_t pos = static_cast<int64_t>(in_x ? slot[0] : slot[1]);
    T raw;
    LOSSX_CU(cudaMemcpyAsync(&raw, (in_x ? p.x : p.y) + pos, sizeof(T), cudaMemcpyDeviceToHost, stream));
    LOSSX_CU(cudaStreamSynchronize(stream));
    const double v = host_value(raw);
    char msg[200];
    std::snprintf(msg, sizeof(msg), "%s: %s; element %lld is %g", pointwise_name(a.kind),
                  in_x ? Fn::kInputRule : Fn::kTargetRule, static_cast<long long>(pos), v);
    return fail(info, Status::kInvalidArgument, msg, pos, value_field(v));
  }
  return Status::kOk;
}

template <typename T, class Fn>
Status launch_or_missing(const PointwiseArgs& a, StatusInfo* info) {
  if constexpr (std::is_void_v<Fn>) {
    char msg[160];
    std::snprintf(msg, sizeof(msg),
                  "%s has no CUDA kernel yet (no functor in cuda/pointwise.cu); pass NumPy arrays",
                  pointwise_name(a.kind));
    return fail(info, Status::kNotCompiled, msg);
  } else {
    return launch<T, Fn>(a, info);
  }
}

template <typename T>
Status pointwise_typed(const PointwiseArgs& a, StatusInfo* info) {
  switch (a.kind) {
#define LOSSX_POINTWISE(id, name, fn) \
  case PointwiseLoss::id:             \
    return launch_or_missing<T, typename CudaPw<PointwiseLoss::id>::type>(a, info);
#include "lossx/pointwise_losses.def"
#undef LOSSX_POINTWISE
    default:
      break;
  }
  return fail(info, Status::kInvalidArgument, "unknown pointwise loss");
}

}  // namespace

Status pointwise(const PointwiseArgs& a, StatusInfo* info) {
  switch (a.dtype) {
    case DType::kF32: return pointwise_typed<float>(a, info);
    case DType::kF64: return pointwise_typed<double>(a, info);
    case DType::kF16: return pointwise_typed<__half>(a, info);
    case DType::kBF16: return pointwise_typed<__nv_bfloat16>(a, info);
  }
  return fail(info, Status::kUnsupported, "unsupported dtype");
}

bool pointwise_supported(PointwiseLoss kind) {
  switch (kind) {
#define LOSSX_POINTWISE(id, name, fn) \
  case PointwiseLoss::id:             \
    return !std::is_void_v<typename CudaPw<PointwiseLoss::id>::type>;
#include "lossx/pointwise_losses.def"
#undef LOSSX_POINTWISE
    default:
      return false;
  }
}

}  // namespace cuda
}  // namespace lossx
#else   // LOSSX_PW_FUNCTORS_ONLY
}  // namespace
}  // namespace cuda
}  // namespace lossx
#endif  // LOSSX_PW_FUNCTORS_ONLY
