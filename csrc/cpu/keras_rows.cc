// Keras-semantics row losses on the CPU (lossx.keras; lossx.tf's softmax ops use
// them too, its sigmoid op is the pointwise kernel's "tf." code). Highway kernels
// compiled for every target, dispatched at run time; the from_logits cross
// entropies go to the row-softmax kernel (softmax.cc) instead, which computes the
// same math.
//
// Probability inputs follow Keras' ops exactly: r = p / sum(p), q = clip(r,
// 1e-7, 1 - 1e-7), then log. With u_j = dL/dq_j (0 where the clip is active,
// as autograd of clip gives) the chain rule through the normalisation is
//   dL/dp_k = (u_k - U) / s,   U = sum_j u_j r_j,   s = sum_j p_j,
// so a row costs three sweeps: s, then loss and u (stored where the gradient
// goes), then the gradient in place.

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/keras_rows.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu/convert.h"
#include "cpu/keras_rows.h"
#include "cpu/vecmath-inl.h"
#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace lossx {
namespace cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

template <class D>
HWY_INLINE hn::Vec<D> KLoad(D d, const hn::TFromD<D>* p, int64_t j, int64_t n, hn::TFromD<D> pad = 0) {
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  return j + L <= n ? hn::LoadU(d, p + j) : LoadTail(d, p + j, static_cast<size_t>(n - j), pad);
}

template <class D>
HWY_INLINE void KStore(D d, hn::Vec<D> v, hn::TFromD<D>* p, int64_t j, int64_t n) {
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  if (j + L <= n) {
    hn::StoreU(v, d, p + j);
  } else {
    StoreTail(d, v, p + j, static_cast<size_t>(n - j));
  }
}

template <class D>
HWY_INLINE hn::Mask<D> KValid(D d, int64_t j, int64_t n) {
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  return hn::FirstN(d, static_cast<size_t>(std::min<int64_t>(L, n - j)));
}

template <class D>
HWY_INLINE hn::TFromD<D> KSum(D d, hn::Vec<D> v) {
  return hn::GetLane(hn::SumOfLanes(d, v));
}

template <typename T>
struct KScratch {
  std::vector<T> p, t, g, s;
  T* get(std::vector<T>& v, int64_t n) {
    if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
    return v.data();
  }
};

template <typename T>
KScratch<T>& KScratchOf() {
  static thread_local KScratch<T> s;
  return s;
}

// A row of a dtype buffer in the compute type: the buffer itself when it
// already has that type, else a converted copy in `buf`.
template <typename T>
HWY_INLINE const T* KRowOf(const void* base, DType dt, int64_t off, int64_t n, KScratch<T>& sc,
                          std::vector<T>& buf) {
  if (IsNative<T>(dt)) return static_cast<const T*>(base) + off;
  T* b = sc.get(buf, n);
  ConvertRow<T>(base, dt, off, n, b);
  return b;
}

// Cross entropy / focal cross entropy on probabilities (dense or sparse
// targets); focal with from_logits takes the softmax first.
template <typename T>
void ProbRowsImpl(const KerasJob& job, int64_t begin, int64_t end) {
  const hn::ScalableTag<T> d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const int64_t C = job.C;
  const bool native = IsNative<T>(job.dtype);
  const bool focal = job.kind == KerasLoss::kCategoricalFocalCE;
  const T eps = static_cast<T>(1e-7), hi = static_cast<T>(1.0 - 1e-7);
  const auto veps = hn::Set(d, eps), vhi = hn::Set(d, hi), one = hn::Set(d, T(1));
  const T ls = static_cast<T>(job.smoothing);
  const auto k1 = hn::Set(d, T(1) - ls), k2 = hn::Set(d, ls / static_cast<T>(C));
  const T gamma = static_cast<T>(job.gamma);
  const auto vgamma = hn::Set(d, gamma);
  const T* avec = static_cast<const T*>(job.alpha_vec);
  const auto valpha = hn::Set(d, static_cast<T>(job.alpha));
  const T* scales = static_cast<const T*>(job.row_scale);
  T* row_loss = static_cast<T*>(job.row_loss);
  const size_t es = dtype_size(job.dtype);
  KScratch<T>& sc = KScratchOf<T>();

  for (int64_t i = begin; i < end; ++i) {
    const int64_t off = i * C;
    if (job.labels && job.has_ignore && job.labels[i] == job.ignore_class) {
      row_loss[i] = 0;
      if (job.grad) std::memset(static_cast<char*>(job.grad) + off * es, 0, static_cast<size_t>(C) * es);
      continue;
    }
    const T scale = job.grad ? scales[i] : T(0);
    const T* p = KRowOf<T>(job.p, job.dtype, off, C, sc, sc.p);
    if (job.from_logits) {
      // softmax(z) = exp(z - max) / sum; -inf logits give exactly 0.
      auto vm = hn::Set(d, -std::numeric_limits<T>::infinity());
      for (int64_t j = 0; j < C; j += L)
        vm = hn::Max(vm, KLoad(d, p, j, C, -std::numeric_limits<T>::infinity()));
      const auto m = hn::Set(d, hn::GetLane(hn::MaxOfLanes(d, vm)));
      T* e = sc.get(sc.s, C);
      auto acc = hn::Zero(d);
      for (int64_t j = 0; j < C; j += L) {
        const auto ev = hn::IfThenElseZero(KValid(d, j, C), FastExp(d, hn::Sub(KLoad(d, p, j, C), m)));
        acc = hn::Add(acc, ev);
        KStore(d, ev, e, j, C);
      }
      const auto inv = hn::Set(d, T(1) / KSum(d, acc));
      for (int64_t j = 0; j < C; j += L) KStore(d, hn::Mul(KLoad(d, e, j, C), inv), e, j, C);
      p = e;
    }
    auto vs = hn::Zero(d);
    for (int64_t j = 0; j < C; j += L) vs = hn::Add(vs, KLoad(d, p, j, C));
    const T s = KSum(d, vs);
    vs = hn::Set(d, s);

    if (job.labels) {
      const int64_t y = job.labels[i];
      const T r = p[y] / s;
      const bool inside = r >= eps && r <= hi;
      const T q = std::isnan(r) ? r : std::min(std::max(r, eps), hi);
      row_loss[i] = -std::log(q);
      if (!job.grad) continue;
      const T uy = inside ? T(-1) / q : T(0);
      const T U = uy * r;
      T* g = native ? static_cast<T*>(job.grad) + off : sc.get(sc.g, C);
      const auto fill = hn::Set(d, -scale * U / s);
      for (int64_t j = 0; j < C; j += L) KStore(d, fill, g, j, C);
      g[y] = scale * (uy - U) / s;
      if (!native) StoreRow<T>(g, C, job.grad, job.dtype, off);
      continue;
    }

    const T* t = KRowOf<T>(job.t, job.dtype, off, C, sc, sc.t);
    // u is built where the gradient goes when nothing else needs that memory.
    T* u = nullptr;
    if (job.grad) u = (native && !job.from_logits) ? static_cast<T*>(job.grad) + off : sc.get(sc.g, C);
    auto lacc = hn::Zero(d), uacc = hn::Zero(d);
    for (int64_t j = 0; j < C; j += L) {
      const auto valid = KValid(d, j, C);
      const auto r = hn::Div(KLoad(d, p, j, C, T(1)), vs);
      // Keras' clip keeps NaN (np.clip / torch.clamp); Min/Max alone may not.
      const auto q = hn::IfThenElse(hn::IsNaN(r), r, hn::Min(hn::Max(r, veps), vhi));
      const auto inside = hn::And(hn::Ge(r, veps), hn::Le(r, vhi));
      auto tv = KLoad(d, t, j, C);
      if (ls != 0) tv = hn::MulAdd(tv, k1, k2);
      // Highway's Log is not NaN-safe: keep NaN rows NaN explicitly.
      const auto lq = hn::IfThenElse(hn::IsNaN(q), q, hn::Log(d, q));
      hn::Vec<decltype(d)> f, uv;
      if (focal) {
        const auto a = hn::Mul(avec ? KLoad(d, avec, j, C) : valpha, tv);
        const auto om = hn::Sub(one, q);
        // (1 - q)^gamma; 1 - q >= 1e-7 after the clip, so the log is finite.
        const auto pw = gamma == 0 ? one : hn::Exp(d, hn::Mul(vgamma, hn::Log(d, om)));
        f = hn::Neg(hn::Mul(hn::Mul(a, pw), lq));
        // d/dq [-a (1-q)^g log q] = a (1-q)^g (g log q / (1-q) - 1/q)
        uv = hn::Mul(hn::Mul(a, pw), hn::Sub(hn::Div(hn::Mul(vgamma, lq), om), hn::Div(one, q)));
      } else {
        f = hn::Neg(hn::Mul(tv, lq));
        uv = hn::Neg(hn::Div(tv, q));
      }
      lacc = hn::Add(lacc, hn::IfThenElseZero(valid, f));
      if (u) {
        uv = hn::IfThenElseZero(hn::And(valid, inside), uv);
        uacc = hn::MulAdd(uv, hn::IfThenElseZero(valid, r), uacc);
        KStore(d, uv, u, j, C);
      }
    }
    row_loss[i] = KSum(d, lacc);
    if (!u) continue;
    const auto vU = hn::Set(d, KSum(d, uacc)), cs = hn::Set(d, scale / s);
    for (int64_t j = 0; j < C; j += L) KStore(d, hn::Mul(cs, hn::Sub(KLoad(d, u, j, C), vU)), u, j, C);
    if (job.from_logits) {
      // Through the softmax: dz_k = p_k (g_k - sum_j g_j p_j).
      auto gacc = hn::Zero(d);
      for (int64_t j = 0; j < C; j += L) gacc = hn::MulAdd(KLoad(d, u, j, C), KLoad(d, p, j, C), gacc);
      const auto G = hn::Set(d, KSum(d, gacc));
      T* g = native ? static_cast<T*>(job.grad) + off : u;
      for (int64_t j = 0; j < C; j += L)
        KStore(d, hn::Mul(KLoad(d, p, j, C), hn::Sub(KLoad(d, u, j, C), G)), g, j, C);
      if (!native) StoreRow<T>(u, C, job.grad, job.dtype, off);
    } else if (!native) {
      StoreRow<T>(u, C, job.grad, job.dtype, off);
    }
  }
}

// Categorical hinge: max(neg - pos + 1, 0), pos = sum t p, neg = max (1-t) p.
// The gradient goes to the first maximal element of (1-t) p (ties are
// measure-zero for real data); it is 0 where the loss is exactly 0.
template <typename T>
void HingeRowsImpl(const KerasJob& job, int64_t begin, int64_t end) {
  const hn::ScalableTag<T> d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const int64_t C = job.C;
  const bool native = IsNative<T>(job.dtype);
  const T* scales = static_cast<const T*>(job.row_scale);
  T* row_loss = static_cast<T*>(job.row_loss);
  const auto one = hn::Set(d, T(1));
  const T ninf = -std::numeric_limits<T>::infinity();
  KScratch<T>& sc = KScratchOf<T>();
  for (int64_t i = begin; i < end; ++i) {
    const int64_t off = i * C;
    const T* p = KRowOf<T>(job.p, job.dtype, off, C, sc, sc.p);
    const T* t = KRowOf<T>(job.t, job.dtype, off, C, sc, sc.t);
    auto pos = hn::Zero(d), neg = hn::Set(d, ninf);
    auto nan_seen = hn::FirstN(d, 0);
    for (int64_t j = 0; j < C; j += L) {
      const auto tv = KLoad(d, t, j, C), pv = KLoad(d, p, j, C, ninf);
      pos = hn::MulAdd(tv, hn::IfThenElseZero(KValid(d, j, C), pv), pos);
      const auto v = hn::Mul(hn::Sub(one, tv), pv);
      nan_seen = hn::Or(nan_seen, hn::IsNaN(v));
      neg = hn::Max(neg, v);
    }
    // Keras' max (and torch's) propagates NaN; x86's max keeps or drops it by
    // operand order, so a NaN among the (1 - t) p is made the max explicitly.
    const T ng = hn::AllFalse(d, nan_seen) ? hn::GetLane(hn::MaxOfLanes(d, neg))
                                            : std::numeric_limits<T>::quiet_NaN();
    const T x = ng - KSum(d, pos) + T(1);
    const bool nan = std::isnan(x);
    row_loss[i] = (x > 0 || nan) ? x : T(0);
    if (!job.grad) continue;
    const T scale = scales[i];
    T* g = native ? static_cast<T*>(job.grad) + off : sc.get(sc.g, C);
    if (x > 0) {
      const auto vs = hn::Set(d, -scale);
      for (int64_t j = 0; j < C; j += L) KStore(d, hn::Mul(vs, KLoad(d, t, j, C)), g, j, C);
      for (int64_t j = 0; j < C; ++j) {
        if ((T(1) - t[j]) * p[j] == ng) {
          g[j] += scale * (T(1) - t[j]);
          break;
        }
      }
    } else {
      const auto fill = hn::Set(d, nan ? std::numeric_limits<T>::quiet_NaN() : T(0));
      for (int64_t j = 0; j < C; j += L) KStore(d, fill, g, j, C);
    }
    if (!native) StoreRow<T>(g, C, job.grad, job.dtype, off);
  }
}

// Partial sums of one segment per task (cosine, dice, tversky).
template <typename T>
void SumsImpl(const SumsJob& job, int64_t begin, int64_t end) {
  const hn::ScalableTag<T> d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  T* part = static_cast<T*>(job.partial);
  KScratch<T>& sc = KScratchOf<T>();
  for (int64_t k = begin; k < end; ++k) {
    const int64_t row = k / job.nseg, j0 = (k % job.nseg) * job.seg;
    const int64_t n = std::min(job.K - j0, job.seg), off = row * job.K + j0;
    const T* t = KRowOf<T>(job.t, job.dtype, off, n, sc, sc.t);
    const T* p = KRowOf<T>(job.p, job.dtype, off, n, sc, sc.p);
    auto tt = hn::Zero(d), pp = tt, tp = tt, st = tt, sp = tt;
    for (int64_t j = 0; j < n; j += L) {
      const auto tv = KLoad(d, t, j, n), pv = KLoad(d, p, j, n);
      tt = hn::MulAdd(tv, tv, tt);
      pp = hn::MulAdd(pv, pv, pp);
      tp = hn::MulAdd(tv, pv, tp);
      st = hn::Add(st, tv);
      sp = hn::Add(sp, pv);
    }
    T* o = part + k * kSumCount;
    o[0] = KSum(d, tt);
    o[1] = KSum(d, pp);
    o[2] = KSum(d, tp);
    o[3] = KSum(d, st);
    o[4] = KSum(d, sp);
  }
}

// grad = a t + b p + c per segment, with the row's coefficients.
template <typename T>
void AffineImpl(const SumsJob& job, int64_t begin, int64_t end) {
  const hn::ScalableTag<T> d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const T* coef = static_cast<const T*>(job.coef);
  const bool native = IsNative<T>(job.dtype);
  KScratch<T>& sc = KScratchOf<T>();
  for (int64_t k = begin; k < end; ++k) {
    const int64_t row = k / job.nseg, j0 = (k % job.nseg) * job.seg;
    const int64_t n = std::min(job.K - j0, job.seg), off = row * job.K + j0;
    const T* t = KRowOf<T>(job.t, job.dtype, off, n, sc, sc.t);
    const T* p = KRowOf<T>(job.p, job.dtype, off, n, sc, sc.p);
    const auto a = hn::Set(d, coef[3 * row]), b = hn::Set(d, coef[3 * row + 1]), c = hn::Set(d, coef[3 * row + 2]);
    T* g = native ? static_cast<T*>(job.grad) + off : sc.get(sc.g, n);
    for (int64_t j = 0; j < n; j += L)
      KStore(d, hn::MulAdd(a, KLoad(d, t, j, n), hn::MulAdd(b, KLoad(d, p, j, n), c)), g, j, n);
    if (!native) StoreRow<T>(g, n, job.grad, job.dtype, off);
  }
}

void ProbRowsF32(const KerasJob& j, int64_t b, int64_t e) { ProbRowsImpl<float>(j, b, e); }
void ProbRowsF64(const KerasJob& j, int64_t b, int64_t e) { ProbRowsImpl<double>(j, b, e); }
void HingeRowsF32(const KerasJob& j, int64_t b, int64_t e) { HingeRowsImpl<float>(j, b, e); }
void HingeRowsF64(const KerasJob& j, int64_t b, int64_t e) { HingeRowsImpl<double>(j, b, e); }
void SumsF32(const SumsJob& j, int64_t b, int64_t e) { SumsImpl<float>(j, b, e); }
void SumsF64(const SumsJob& j, int64_t b, int64_t e) { SumsImpl<double>(j, b, e); }
void AffineF32(const SumsJob& j, int64_t b, int64_t e) { AffineImpl<float>(j, b, e); }
void AffineF64(const SumsJob& j, int64_t b, int64_t e) { AffineImpl<double>(j, b, e); }

}  // namespace HWY_NAMESPACE
}  // namespace cpu
}  // namespace lossx
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <algorithm>
#include <cstdio>

#include "cpu/parallel.h"
#include "keras_row_math.h"
#include "status.h"
#include "cpu/softmax.h"

namespace lossx {
namespace cpu {

HWY_EXPORT(ProbRowsF32);
HWY_EXPORT(ProbRowsF64);
HWY_EXPORT(HingeRowsF32);
HWY_EXPORT(HingeRowsF64);
HWY_EXPORT(SumsF32);
HWY_EXPORT(SumsF64);
HWY_EXPORT(AffineF32);
HWY_EXPORT(AffineF64);

namespace {


constexpr int64_t kSegment = 1 << 14;

template <typename A>
Status KerasImpl(const KerasRowsArgs& a, StatusInfo* info) {
  const int64_t N = a.rows, C = a.cols;
  const bool sparse = a.kind == KerasLoss::kSparseCategoricalCE;
  const bool want_grad = a.grad != nullptr;

  // Labels: first offending position, whatever the thread count.
  int64_t count = N;
  if (sparse) {
    count = 0;
    for (int64_t i = 0; i < N; ++i) {
      const int64_t y = a.labels[i];
      if (a.has_ignore_class && y == a.ignore_class) continue;
      if (y < 0 || y >= C) {
        char msg[160];
        std::snprintf(msg, sizeof(msg), "label %lld at position %lld is out of range [0, %lld)",
                      static_cast<long long>(y), static_cast<long long>(i), static_cast<long long>(C));
        return fail(info, Status::kIndexError, msg, i, y);
      }
      ++count;
    }
  }
  // Keras' "sum_over_batch_size" divides with divide_no_nan: 0 when nothing counts.
  Reduction red = a.reduction;
  if (red == Reduction::kMean && count == 0) red = Reduction::kSum;

  if (a.from_logits && (a.kind == KerasLoss::kCategoricalCE || sparse)) {
    // Same math as the row-softmax family: -sum t' log_softmax(z) with
    // t' = t (1-e) + e/C (lossx's soft-target label smoothing is that mix).
    CrossEntropyArgs c;
    c.dtype = a.dtype;
    c.rows = N;
    c.classes = C;
    c.logits = a.y_pred;
    c.labels = sparse ? a.labels : nullptr;
    c.target = sparse ? nullptr : a.y_true;
    // Labels are checked above: -1 never matches a remaining label when there is no ignore_class.
    c.ignore_index = a.has_ignore_class ? a.ignore_class : -1;
    c.label_smoothing = sparse ? 0.0 : a.label_smoothing;
    c.reduction = red;
    c.normalizer = Normalizer::kValue;
    c.normalizer_value = static_cast<double>(count);
    c.loss = a.loss;
    c.grad_logits = a.grad;
    c.grad_output = a.grad_output;
    return cpu_cross_entropy(c, info);
  }

  const A* go = static_cast<const A*>(a.grad_output);
  std::vector<A> scale;
  if (want_grad) {
    scale.resize(static_cast<size_t>(N));
    const double base = red == Reduction::kMean ? 1.0 / static_cast<double>(count) : 1.0;
    for (int64_t i = 0; i < N; ++i) {
      double s = base;
      if (go) s *= static_cast<double>(red == Reduction::kNone ? go[i] : go[0]);
      scale[static_cast<size_t>(i)] = static_cast<A>(s);
    }
  }
  std::vector<A> row_loss_buf;
  A* row_loss = static_cast<A*>(a.loss);
  if (red != Reduction::kNone) {
    row_loss_buf.resize(static_cast<size_t>(N));
    row_loss = row_loss_buf.data();
  }
  const bool f64 = sizeof(A) == 8;

  switch (a.kind) {
    case KerasLoss::kCosineSimilarity:
    case KerasLoss::kDice:
    case KerasLoss::kTversky: {
      SumsJob job;
      job.dtype = a.dtype;
      job.K = C;
      job.seg = std::min<int64_t>(C, kSegment);
      job.nseg = (C + job.seg - 1) / job.seg;
      job.t = a.y_true;
      job.p = a.y_pred;
      const int64_t tasks = N * job.nseg;
      std::vector<A> partial(static_cast<size_t>(tasks * kSumCount));
      job.partial = partial.data();
      parallel_for(tasks, grain_for(job.seg), [&](int64_t b, int64_t e) {
        if (f64) HWY_DYNAMIC_DISPATCH(SumsF64)(job, b, e);
        else HWY_DYNAMIC_DISPATCH(SumsF32)(job, b, e);
      });
      std::vector<A> coef(want_grad ? static_cast<size_t>(N * 3) : 0);
      for (int64_t i = 0; i < N; ++i) {
        double S[kSumCount] = {0, 0, 0, 0, 0};
        for (int64_t k = i * job.nseg; k < (i + 1) * job.nseg; ++k)
          for (int q = 0; q < kSumCount; ++q) S[q] += static_cast<double>(partial[static_cast<size_t>(k * kSumCount + q)]);
        keras_row_from_sums<A>(a.kind, a.alpha, a.beta, S, want_grad ? scale[static_cast<size_t>(i)] : A(0),
                               &row_loss[i], want_grad ? coef.data() + 3 * i : nullptr);
      }
      if (want_grad) {
        job.coef = coef.data();
        job.grad = a.grad;
        parallel_for(tasks, grain_for(job.seg), [&](int64_t b, int64_t e) {
          if (f64) HWY_DYNAMIC_DISPATCH(AffineF64)(job, b, e);
          else HWY_DYNAMIC_DISPATCH(AffineF32)(job, b, e);
        });
      }
      break;
    }
    default: {
      KerasJob job;
      job.dtype = a.dtype;
      job.kind = a.kind;
      job.C = C;
      job.t = a.y_true;
      job.labels = sparse ? a.labels : nullptr;
      job.p = a.y_pred;
      job.from_logits = a.from_logits;
      job.smoothing = a.label_smoothing;
      job.alpha = a.alpha;
      job.gamma = a.gamma;
      job.alpha_vec = a.alpha_vec;
      job.has_ignore = a.has_ignore_class;
      job.ignore_class = a.ignore_class;
      job.row_scale = want_grad ? scale.data() : nullptr;
      job.row_loss = row_loss;
      job.grad = a.grad;
      const bool hinge = a.kind == KerasLoss::kCategoricalHinge;
      parallel_for(N, grain_for(C, kExpChunk), [&](int64_t b, int64_t e) {
        if (hinge) {
          if (f64) HWY_DYNAMIC_DISPATCH(HingeRowsF64)(job, b, e);
          else HWY_DYNAMIC_DISPATCH(HingeRowsF32)(job, b, e);
        } else {
          if (f64) HWY_DYNAMIC_DISPATCH(ProbRowsF64)(job, b, e);
          else HWY_DYNAMIC_DISPATCH(ProbRowsF32)(job, b, e);
        }
      });
      break;
    }
  }

  if (red != Reduction::kNone)
    store_reduced(row_loss, N, red == Reduction::kMean, static_cast<double>(count), a.loss);
  return Status::kOk;
}

}  // namespace

Status cpu_keras_rows(const KerasRowsArgs& a, StatusInfo* info) {
  return acc_is_f64(a.dtype) ? KerasImpl<double>(a, info) : KerasImpl<float>(a, info);
}

}  // namespace cpu
}  // namespace lossx
#endif  // HWY_ONCE
