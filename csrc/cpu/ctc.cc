// Sequence family on the CPU: ctc_loss (torch.nn.functional semantics).
//
// Per sample, in float64 whatever the input dtype, the log-space
// forward-backward over the extended label sequence
// l' = (blank, y1, blank, y2, ..., yL, blank) of length 2L+1 (Graves et al.
// 2006, eqs. 6-16; the same recursions as PyTorch's LossCTC.cpp):
//   alpha_t(s) = lse(alpha_{t-1}(s), alpha_{t-1}(s-1), alpha_{t-1}(s-2) if l'(s) != l'(s-2)) + lp_t(l'(s))
//   beta_t(s)  = lse(beta_{t+1}(s), beta_{t+1}(s+1), beta_{t+1}(s+2) if l'(s) != l'(s+2)) + lp_t(l'(s))
//   loss       = -lse(alpha_{T-1}(2L), alpha_{T-1}(2L-1))
//   grad_t(c)  = exp(lp_t(c)) - sum_{s: l'(s) = c} exp(alpha_t(s) + beta_t(s) + loss - lp_t(c))
// A row of alpha (beta) depends only on the previous (next) row, so each frame
// is one Highway loop over s with float64 Exp/Log. float64 throughout keeps
// float32 inputs far from the underflow a float32 recursion hits on long
// sequences. The gradient's sum over s is linear (each term is the fraction of
// the alignment mass through (t, s), at most 1: no overflow, one exp per state)
// instead of PyTorch's per-class log-add; special values still come out as
// PyTorch's (see GradRow).
//
// Samples run in parallel (chunks of samples fixed by the problem size); each
// sample is computed by one thread in a fixed order and the per-sample losses
// are reduced with det_sum afterwards, so results are bit-identical for any
// thread count. The alpha table (input_length x (2L+1) doubles) is kept only
// when the gradient is wanted; the forward alone keeps two rows.

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/ctc.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <new>
#include <type_traits>
#include <vector>

#include "cpu/convert.h"
#include "cpu/ctc.h"
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

constexpr double kInf = std::numeric_limits<double>::infinity();

// exp with std::exp's special values: NaN stays NaN, -inf gives 0, and
// arguments near or past the overflow threshold go to std::exp (Highway's Exp
// maps NaN to 0 and is only specified below about 709). The recursions only
// feed it arguments <= 0; large ones come from invalid (positive) log_probs.
// Results below 2^-1021 (x < -708) are flushed to 0: Highway's Exp would build
// them from denormal intermediates, which cost a microcode assist per lane on
// x86 (about 10x slower overall, since most states have a -inf neighbour),
// and a term of 1e-308 changes no log-sum and no gradient entry.
template <class D>
HWY_INLINE hn::Vec<D> ExpD(D d, hn::Vec<D> x) {
  const auto nan = hn::IsNaN(x);  // not Ne(x, x): AVX2's Ne is an ordered compare, false for NaN
  const auto big = hn::Gt(x, hn::Set(d, 700.0));
  const auto tiny = hn::Lt(x, hn::Set(d, -708.0));
  const auto xs = hn::Max(hn::IfThenZeroElse(nan, hn::IfThenZeroElse(big, x)), hn::Set(d, -708.0));
  auto y = hn::IfThenZeroElse(tiny, hn::Exp(d, xs));
  if (HWY_UNLIKELY(!hn::AllFalse(d, big))) {
    HWY_ALIGN double xb[hn::MaxLanes(d)];
    HWY_ALIGN double yb[hn::MaxLanes(d)];
    hn::Store(x, d, xb);
    hn::Store(y, d, yb);
    for (size_t i = 0; i < hn::Lanes(d); ++i)
      if (xb[i] > 700.0) yb[i] = std::exp(xb[i]);
    y = hn::Load(d, yb);
  }
  return hn::IfThenElse(nan, x, y);
}

// exp for the log-sum terms, x <= 0: the caller replaces NaN lanes.
template <class D>
HWY_INLINE hn::Vec<D> ExpNonPos(D d, hn::Vec<D> x) {
  const auto tiny = hn::Lt(x, hn::Set(d, -708.0));
  return hn::IfThenZeroElse(tiny, hn::Exp(d, hn::Max(hn::IfThenZeroElse(hn::IsNaN(x), x), hn::Set(d, -708.0))));
}

// log(exp(a1) + exp(a2) + exp(a3)) + e with PyTorch's special values: all -inf
// gives -inf + e; any NaN, or a +inf (inf - inf in torch's max shift), gives NaN.
// The largest term is exp(0) = 1, so only the other two need an Exp.
template <class D, class V = hn::Vec<D>>
HWY_INLINE V LogSumExp3Add(D d, V a1, V a2, V a3, V e) {
  const V ninf = hn::Set(d, -kInf);
  const V hi = hn::Max(a1, a2);
  const V lo = hn::Min(a1, a2);
  const V m = hn::Max(hi, a3);
  const V mid = hn::Min(hi, a3);
  const auto bad =
      hn::Or(hn::Or(hn::IsNaN(a1), hn::IsNaN(a2)), hn::Or(hn::IsNaN(a3), hn::Eq(m, hn::Set(d, kInf))));
  const auto empty = hn::Eq(m, ninf);
  const V s = hn::Add(hn::Set(d, 1.0), hn::Add(ExpNonPos(d, hn::Sub(lo, m)), ExpNonPos(d, hn::Sub(mid, m))));
  V r = hn::Add(hn::Log(d, s), m);  // s in [1, 3]
  r = hn::IfThenElse(empty, ninf, r);
  r = hn::IfThenElse(bad, hn::Set(d, std::numeric_limits<double>::quiet_NaN()), r);
  return hn::Add(r, e);
}

// One alpha row: out[s] for s in [0, n), from prev (readable at [-2, n + lanes)).
// skip[s] > 0 where the s-2 -> s transition exists. Writes up to n + lanes - 1.
template <class D>
HWY_INLINE void AlphaRow(D d, const double* prev, const double* skip, const double* e, int64_t n, double* out) {
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const auto ninf = hn::Set(d, -kInf);
  const auto zero = hn::Zero(d);
  for (int64_t s = 0; s < n; s += L) {
    const auto a3 = hn::IfThenElse(hn::Gt(hn::LoadU(d, skip + s), zero), hn::LoadU(d, prev + s - 2), ninf);
    hn::StoreU(LogSumExp3Add(d, hn::LoadU(d, prev + s), hn::LoadU(d, prev + s - 1), a3, hn::LoadU(d, e + s)), d,
               out + s);
  }
}

// One beta row from next (readable at [0, n + lanes + 2), -inf at n and n + 1):
// beta(s) uses s + 2 where skip[s + 2] > 0, i.e. l'(s + 2) != l'(s).
template <class D>
HWY_INLINE void BetaRow(D d, const double* next, const double* skip, const double* e, int64_t n, double* out) {
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const auto ninf = hn::Set(d, -kInf);
  const auto zero = hn::Zero(d);
  for (int64_t s = 0; s < n; s += L) {
    const auto b3 = hn::IfThenElse(hn::Gt(hn::LoadU(d, skip + s + 2), zero), hn::LoadU(d, next + s + 2), ninf);
    hn::StoreU(LogSumExp3Add(d, hn::LoadU(d, next + s), hn::LoadU(d, next + s + 1), b3, hn::LoadU(d, e + s)), d,
               out + s);
  }
}

// gam[s] = exp(alpha(s) + beta(s) + nll - e(s)): the fraction of the sample's
// alignment mass that passes through state s at this frame.
template <class D>
HWY_INLINE void GammaRow(D d, const double* alpha, const double* beta, const double* e, double nll, int64_t n,
                         double* gam) {
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const auto vnll = hn::Set(d, nll);
  for (int64_t s = 0; s < n; s += L) {
    const auto ab = hn::Add(hn::LoadU(d, alpha + s), hn::LoadU(d, beta + s));
    hn::StoreU(ExpD(d, hn::Sub(hn::Add(ab, vnll), hn::LoadU(d, e + s))), d, gam + s);
  }
}

// g[c] = scale * (exp(x[c]) - exp(r_c + nll - x[c])), PyTorch's formula, where
// exp(r_c + nll - x[c]) is G[c] (the summed gamma) for classes of the target.
// For a class no state visits PyTorch has r_c = -inf, and the term is
// exp(-inf + nll - x): 0, or NaN when nll is +inf/NaN or x is -inf/NaN (an
// impossible alignment without zero_infinity gives NaN gradients, as torch).
// Adding that term to every class reproduces both cases: wherever it is NaN,
// the visited classes' terms are NaN in PyTorch too. x and g may alias.
template <class D>
HWY_INLINE void GradRow(D d, const double* x, const double* G, int64_t n, double nll, double scale, double* g) {
  using V = hn::Vec<D>;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const auto ninf = hn::Set(d, -kInf);
  const auto vq = hn::Set(d, -kInf + nll);
  const auto vs = hn::Set(d, scale);
  auto one = [&](V xv, V gv) {
    const auto q = hn::Sub(vq, xv);  // -inf or NaN
    const auto unvisited = hn::IfThenZeroElse(hn::Eq(q, ninf), q);
    return hn::Mul(hn::Sub(hn::Sub(ExpD(d, xv), unvisited), gv), vs);
  };
  int64_t c = 0;
  for (; c + L <= n; c += L) hn::StoreU(one(hn::LoadU(d, x + c), hn::LoadU(d, G + c)), d, g + c);
  if (c < n) {
    const size_t rem = static_cast<size_t>(n - c);
    StoreTail(d, one(LoadTail(d, x + c, rem, 0.0), LoadTail(d, G + c, rem, 0.0)), g + c, rem);
  }
}

inline double ToD(float v) { return v; }
inline double ToD(double v) { return v; }
inline double ToD(uint16_t v) { return F32FromF16Bits(v); }  // float16 bits
inline double ToD(hwy::bfloat16_t v) { return hwy::F32FromBF16(v); }
inline void FromD(double v, float* p) { *p = static_cast<float>(v); }
inline void FromD(double v, double* p) { *p = v; }
inline void FromD(double v, uint16_t* p) { *p = F16BitsFromF32(static_cast<float>(v)); }
inline void FromD(double v, hwy::bfloat16_t* p) { *p = BF16Round(static_cast<float>(v)); }

struct Scratch {
  std::vector<int64_t> ext;  // l'(s)
  std::vector<double> skip, e, alpha, beta, gam, G, row;
};

// torch's final log-add of the two end states (scalar, as in LossCTC.cpp).
inline double LogAdd2(double l1, double l2) {
  double m = std::max(l1, l2);
  m = m == -kInf ? 0.0 : m;
  return std::log(std::exp(l1 - m) + std::exp(l2 - m)) + m;
}

template <typename S>
void CtcSample(const CtcJob& job, int64_t b, Scratch& w) {
  const hn::ScalableTag<double> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const int64_t T = job.T, N = job.N, C = job.C;
  const S* lp = static_cast<const S*>(job.log_probs);
  S* grad = static_cast<S*>(job.grad);
  const int64_t Ti = job.input_lengths[b], L = job.target_lengths[b];
  const int64_t n = 2 * L + 1;
  const int64_t* y = job.targets + job.target_offset[b];
  const auto frame = [&](int64_t t) { return (t * N + b) * C; };
  // All-zero bits are +0 in every storage type.
  const auto zero_frames = [&](int64_t t0) {
    for (int64_t t = t0; t < T; ++t) std::memset(grad + frame(t), 0, static_cast<size_t>(C) * sizeof(S));
  };

  if (Ti == 0) {
    const double nll = -(L == 0 ? 0.0 : -kInf);  // torch: -log_likelihood, so -0.0 for an empty target
    job.nll[b] = job.zero_infinity && nll == kInf ? 0.0 : nll;
    if (grad) zero_frames(0);
    return;
  }

  const bool want_grad = grad != nullptr;
  // Row layout: 2 leading -inf pads (s - 1, s - 2 at s = 0, 1), n values, then
  // room for the vector overhang and beta's reads of s + 1, s + 2.
  const int64_t stride = n + 4 + lanes;
  const int64_t arows = want_grad ? Ti : 2;
  if (stride > (std::numeric_limits<int64_t>::max() / 16) / arows) throw std::bad_alloc();
  w.ext.resize(static_cast<size_t>(n));
  for (int64_t s = 0; s < n; ++s) w.ext[s] = (s & 1) ? y[s >> 1] : job.blank;
  w.skip.assign(static_cast<size_t>(n + 4 + lanes), 0.0);
  for (int64_t s = 3; s < n; s += 2) w.skip[s] = w.ext[s] != w.ext[s - 2] ? 1.0 : 0.0;  // even s: blank -> blank
  w.e.assign(static_cast<size_t>(n + lanes), 0.0);
  w.alpha.assign(static_cast<size_t>(arows * stride), -kInf);
  const int64_t* ext = w.ext.data();
  const double* skip = w.skip.data();
  double* e = w.e.data();
  const auto gather = [&](int64_t t) {
    const S* row = lp + frame(t);
    for (int64_t s = 0; s < n; ++s) e[s] = ToD(row[ext[s]]);
  };
  const auto arow = [&](int64_t t) { return w.alpha.data() + (want_grad ? t : (t & 1)) * stride + 2; };

  gather(0);
  arow(0)[0] = e[0];
  if (L > 0) arow(0)[1] = e[1];
  for (int64_t t = 1; t < Ti; ++t) {
    gather(t);
    AlphaRow(d, arow(t - 1), skip, e, n, arow(t));
  }
  const double* last = arow(Ti - 1);
  const double nll = L == 0 ? -last[0] : -LogAdd2(last[2 * L], last[2 * L - 1]);
  const bool zeroed = job.zero_infinity && nll == kInf;
  job.nll[b] = zeroed ? 0.0 : nll;
  if (!want_grad) return;
  if (zeroed) {
    zero_frames(0);
    return;
  }

  const double scale = job.grad_scale[b];
  w.beta.assign(static_cast<size_t>(2 * stride), -kInf);
  w.gam.assign(static_cast<size_t>(n + lanes), 0.0);
  w.G.assign(static_cast<size_t>(C), 0.0);
  if constexpr (!std::is_same<S, double>::value) w.row.resize(static_cast<size_t>(C));
  double* G = w.G.data();
  double* bcur = w.beta.data() + 2;
  double* bnext = w.beta.data() + stride + 2;
  const auto grad_frame = [&](int64_t t) {
    if constexpr (std::is_same<S, double>::value) {
      GradRow(d, lp + frame(t), G, C, nll, scale, grad + frame(t));
    } else {
      const S* x = lp + frame(t);
      S* g = grad + frame(t);
      double* r = w.row.data();
      for (int64_t c = 0; c < C; ++c) r[c] = ToD(x[c]);
      GradRow(d, r, G, C, nll, scale, r);
      for (int64_t c = 0; c < C; ++c) FromD(r[c], g + c);
    }
    for (int64_t s = 0; s < n; ++s) G[ext[s]] = 0.0;
  };

  // Last frame: e still holds it. Only the two end states carry beta here (as
  // in torch, which accumulates just those two at t = input_length - 1).
  {
    const double* a = arow(Ti - 1);
    bcur[2 * L] = e[2 * L];
    G[ext[2 * L]] += std::exp(a[2 * L] + bcur[2 * L] + nll - e[2 * L]);
    if (L > 0) {
      bcur[2 * L - 1] = e[2 * L - 1];
      G[ext[2 * L - 1]] += std::exp(a[2 * L - 1] + bcur[2 * L - 1] + nll - e[2 * L - 1]);
    }
    grad_frame(Ti - 1);
  }
  for (int64_t t = Ti - 2; t >= 0; --t) {
    std::swap(bcur, bnext);
    gather(t);
    BetaRow(d, bnext, skip, e, n, bcur);
    bcur[n] = bcur[n + 1] = -kInf;  // the overhang wrote there; beta of s = 2L, 2L - 1 reads them
    GammaRow(d, arow(t), bcur, e, nll, n, w.gam.data());
    for (int64_t s = 0; s < n; ++s) G[ext[s]] += w.gam[s];
    grad_frame(t);
  }
  zero_frames(Ti);
}

template <typename S>
void CtcSamplesImpl(const CtcJob& job, int64_t begin, int64_t end) {
  Scratch w;
  for (int64_t b = begin; b < end; ++b) CtcSample<S>(job, b, w);
}

void CtcSamples(const CtcJob& job, int64_t begin, int64_t end) {
  switch (job.dtype) {
    case DType::kF32: return CtcSamplesImpl<float>(job, begin, end);
    case DType::kF64: return CtcSamplesImpl<double>(job, begin, end);
    case DType::kF16: return CtcSamplesImpl<uint16_t>(job, begin, end);
    case DType::kBF16: return CtcSamplesImpl<hwy::bfloat16_t>(job, begin, end);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace cpu
}  // namespace lossx
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lossx {
namespace cpu {

HWY_EXPORT(CtcSamples);

Status ctc_label_error(StatusInfo* info, bool concatenated, int64_t i, int64_t j, int64_t k, int64_t v,
                       int64_t blank, int64_t C) {
  char where[64], msg[256];
  if (concatenated)
    std::snprintf(where, sizeof(where), "targets[%lld]", static_cast<long long>(k));
  else
    std::snprintf(where, sizeof(where), "targets[%lld, %lld]", static_cast<long long>(i), static_cast<long long>(j));
  if (v == blank) {
    std::snprintf(msg, sizeof(msg),
                  "ctc_loss: sample %lld, label position %lld (%s) is %lld, the blank index; "
                  "target labels must differ from blank",
                  static_cast<long long>(i), static_cast<long long>(j), where, static_cast<long long>(v));
    return fail(info, Status::kInvalidArgument, msg, k, v);
  }
  std::snprintf(msg, sizeof(msg),
                "ctc_loss: sample %lld, label position %lld (%s) is %lld, out of range [0, C) = [0, %lld)",
                static_cast<long long>(i), static_cast<long long>(j), where, static_cast<long long>(v),
                static_cast<long long>(C));
  return fail(info, Status::kIndexError, msg, k, v);
}

Status cpu_ctc(const CtcArgs& a, StatusInfo* info) {
  const int64_t N = a.N, C = a.C;
  // Labels first, in flat order: the first offending one whatever the thread
  // count. Only the first target_lengths[i] labels of a sample are read
  // (padding after them may hold anything, as in torch).
  std::vector<int64_t> offset(static_cast<size_t>(N));
  int64_t pos = 0;
  for (int64_t i = 0; i < N; ++i) {
    offset[i] = a.concatenated ? pos : i * a.S;
    const int64_t tl = a.target_lengths[i];
    for (int64_t j = 0; j < tl; ++j) {
      const int64_t k = offset[i] + j;
      const int64_t v = a.targets[k];
      if (v >= 0 && v < C && v != a.blank) continue;
      return ctc_label_error(info, a.concatenated, i, j, k, v, a.blank, C);
    }
    pos += tl;
  }

  std::vector<double> nll(static_cast<size_t>(N));
  std::vector<double> scale;
  const bool f64 = acc_is_f64(a.dtype);
  const bool want_grad = a.grad != nullptr;
  if (want_grad) {
    scale.resize(static_cast<size_t>(N));
    const bool per = a.reduction == Reduction::kNone;
    for (int64_t i = 0; i < N; ++i) {
      const int64_t k = per ? i : 0;
      double g = a.grad_output == nullptr ? 1.0
                 : f64                    ? static_cast<const double*>(a.grad_output)[k]
                                          : static_cast<double>(static_cast<const float*>(a.grad_output)[k]);
      if (a.reduction == Reduction::kMean)
        g = g / static_cast<double>(N) / static_cast<double>(std::max<int64_t>(a.target_lengths[i], 1));
      scale[i] = g;
    }
  }
  CtcJob job;
  job.dtype = a.dtype;
  job.T = a.T;
  job.N = N;
  job.C = C;
  job.log_probs = a.log_probs;
  job.targets = a.targets;
  job.target_offset = offset.data();
  job.input_lengths = a.input_lengths;
  job.target_lengths = a.target_lengths;
  job.blank = a.blank;
  job.zero_infinity = a.zero_infinity;
  job.nll = nll.data();
  job.grad_scale = want_grad ? scale.data() : nullptr;
  job.grad = a.grad;
  // Chunks of about 2^16 cells of work, cut by the problem size only.
  const int64_t mean_states = N > 0 ? 2 * (pos / N) + 1 : 1;
  const int64_t grain = grain_for(std::max<int64_t>(a.T, 1) * (mean_states + (want_grad ? C : 0)), 1 << 16);
  std::atomic<bool> oom(false);
  parallel_for(N, grain, [&](int64_t b, int64_t e) {
    try {
      HWY_DYNAMIC_DISPATCH(CtcSamples)(job, b, e);
    } catch (const std::bad_alloc&) {  // exceptions must not leave an OpenMP region
      oom.store(true);
    }
  });
  if (oom.load())
    return fail(info, Status::kDeviceError,
                "ctc_loss: out of host memory for the alpha table (input_length x (2 * target_length + 1) "
                "float64 values per sample)");

  const bool none = a.reduction == Reduction::kNone;
  if (none) {
    for (int64_t i = 0; i < N; ++i) {
      if (f64) static_cast<double*>(a.loss)[i] = nll[i];
      else static_cast<float*>(a.loss)[i] = static_cast<float>(nll[i]);
    }
    return Status::kOk;
  }
  double total;
  if (a.reduction == Reduction::kMean) {
    // torch: (loss / target_lengths.clamp_min(1)).mean(); N = 0 gives NaN.
    for (int64_t i = 0; i < N; ++i) nll[i] /= static_cast<double>(std::max<int64_t>(a.target_lengths[i], 1));
    total = det_sum(nll.data(), N) / static_cast<double>(N);
  } else {
    total = det_sum(nll.data(), N);
  }
  if (f64) static_cast<double*>(a.loss)[0] = total;
  else static_cast<float*>(a.loss)[0] = static_cast<float>(total);
  return Status::kOk;
}

}  // namespace cpu
}  // namespace lossx
#endif  // HWY_ONCE
