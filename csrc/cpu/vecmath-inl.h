// Shared vector math for the CPU kernels, compiled once per SIMD target.
//
// FastExp (float32): Cephes-style range reduction plus a degree-5 polynomial.
// Measured against a float64 std::exp over [-87, 88] (tests/test_vecmath.py via
// lossx._core._exp_max_ulp, tests/test_softmax.py): at most 2 ulp. Highway's own Exp measured about 1.7x
// slower here, and the softmax sweep is bound by it once the row is in cache.
// Inputs below -87.3 return exactly 0 (softmax of x - max never needs the
// denormal range); NaN propagates. float64 uses Highway's Exp (accurate).

#if defined(LOSSX_CPU_VECMATH_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef LOSSX_CPU_VECMATH_INL_H_
#undef LOSSX_CPU_VECMATH_INL_H_
#else
#define LOSSX_CPU_VECMATH_INL_H_
#endif

#include <cstring>

#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace lossx {
namespace cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

template <class D, hwy::EnableIf<sizeof(hn::TFromD<D>) == 4>* = nullptr>
HWY_INLINE hn::Vec<D> FastExp(D d, hn::Vec<D> x) {
  const hn::RebindToSigned<D> di;
  const auto kLo = hn::Set(d, -87.3f);
  const auto kHi = hn::Set(d, 88.72f);
  const auto underflow = hn::Lt(x, kLo);
  // Clamp; NaN survives because it fails both comparisons and is re-inserted below.
  const auto isnan = hn::IsNaN(x);  // not Ne(x, x): an ordered compare on AVX2, false for NaN
  auto xc = hn::Min(hn::Max(x, kLo), kHi);
  const auto n = hn::Round(hn::Mul(xc, hn::Set(d, 1.44269504088896341f)));
  auto r = hn::NegMulAdd(n, hn::Set(d, 0.693359375f), xc);
  r = hn::NegMulAdd(n, hn::Set(d, -2.12194440e-4f), r);
  const auto r2 = hn::Mul(r, r);
  auto p = hn::Set(d, 1.9875691500E-4f);
  p = hn::MulAdd(p, r, hn::Set(d, 1.3981999507E-3f));
  p = hn::MulAdd(p, r, hn::Set(d, 8.3334519073E-3f));
  p = hn::MulAdd(p, r, hn::Set(d, 4.1665795894E-2f));
  p = hn::MulAdd(p, r, hn::Set(d, 1.6666665459E-1f));
  p = hn::MulAdd(p, r, hn::Set(d, 5.0000001201E-1f));
  p = hn::MulAdd(p, r2, hn::Add(r, hn::Set(d, 1.0f)));
  // 2^n as 2^(n/2) * 2^(n - n/2): both factors stay normal for n in [-126, 128],
  // where a single exponent field would overflow (x near 88.7) or go denormal.
  const auto ni = hn::ConvertTo(di, n);
  const auto n1 = hn::ShiftRight<1>(ni);
  const auto n2 = hn::Sub(ni, n1);
  const auto bias = hn::Set(di, 127);
  const auto s1 = hn::BitCast(d, hn::ShiftLeft<23>(hn::Add(n1, bias)));
  const auto s2 = hn::BitCast(d, hn::ShiftLeft<23>(hn::Add(n2, bias)));
  auto y = hn::Mul(hn::Mul(p, s1), s2);
  y = hn::IfThenZeroElse(underflow, y);
  return hn::IfThenElse(isnan, x, y);
}

template <class D, hwy::EnableIf<sizeof(hn::TFromD<D>) == 8>* = nullptr>
HWY_INLINE hn::Vec<D> FastExp(D d, hn::Vec<D> x) {
  const auto underflow = hn::Lt(x, hn::Set(d, -708.0));
  // Highway's Exp clamps its argument, which turns NaN into a number; the
  // softmax sweep finds NaN rows by a NaN sum, so NaN must come through.
  return hn::IfThenElse(hn::IsNaN(x), x, hn::IfThenZeroElse(underflow, hn::Exp(d, x)));
}

// ExpSoftmax: exp for the softmax sweep, whose arguments are z - max <= 0, and
// whose cost bounds the cross-entropy kernel. ExpSoftmaxN takes K independent
// vectors and runs each step on all of them before the next: the exp is a chain
// of about ten dependent operations, and measured on this project's Zen machine
// the out-of-order core did not overlap separately written chains well enough
// (K = 2 sweeps 12% faster than one vector at a time; K = 4 or 8 no faster).
// - x is first clamped to -88, which keeps -inf out of the arithmetic (it
//   would make f = -inf + inf = NaN) and makes everything below -87.68 exactly 0.
// - Rounding x*log2(e) by adding 1.5*2^23 + 127 leaves n + 127 in t's low
//   mantissa bits, so 2^n is t shifted into the exponent field: no float<->int
//   conversion, no overflow handling (x <= 0), and for n = -127 (x below -87.68)
//   the shifted bits are +0.0, so the product is exactly 0 with no compare and
//   blend (which cost 20% of the sweep).
// - One FMA reduces the argument: f = x*log2(e) - n in [-1/2, 1/2]. The float
//   log2(e) is off by 1.3e-8 relative, which adds |x|*1.4e-8 to the relative
//   error: nothing near the max (x in [-2, 0]: under 2.1 ulp), about 20 ulp at
//   x = -87 where exp(x) is 1e-38 and contributes nothing to a softmax. A
//   two-constant reduction would cost one more FMA (~12% of the sweep) for
//   digits that cannot change a loss or gradient at float32 tolerance.
// - 2^f by a degree-5 minimax polynomial (9e-8 relative).
// - kAbove: also valid for 0 < x <= 88 (the sweep's chunks after the first run
//   against an estimated max, see RowMaxExpSum), by clamping at 88, where the
//   result is 2^127 and the caller sees the overflow in its sum. The reduction
//   error is the same |x|*1.4e-8, so about 3 ulp at x = 14.
// NaN propagates: x86's max and min return their second operand when either is
// NaN, so with x second a NaN survives both clamps (elsewhere it is put back).
// Bounds are tested in tests/test_softmax.py. float64 uses FastExp.
#if HWY_ARCH_X86 && HWY_TARGET != HWY_SCALAR && HWY_TARGET != HWY_EMU128
#define LOSSX_CLAMP_KEEPS_NAN 1
#else
#define LOSSX_CLAMP_KEEPS_NAN 0
#endif
template <size_t K, bool kAbove = false, class D,
          hwy::EnableIf<sizeof(hn::TFromD<D>) == 4>* = nullptr>
HWY_INLINE void ExpSoftmaxN(D d, hn::Vec<D>* x) {
  using V = hn::Vec<D>;
  const hn::RebindToSigned<D> di;
  const auto magic = hn::Set(d, 12583039.0f);  // 1.5 * 2^23 + 127
  const auto log2e = hn::Set(d, 1.44269504088896341f);
  V t[K], f[K], p[K];
#if !LOSSX_CLAMP_KEEPS_NAN
  V x0[K];
  for (size_t k = 0; k < K; ++k) x0[k] = x[k];
#endif
  for (size_t k = 0; k < K; ++k) x[k] = hn::Max(hn::Set(d, -88.0f), x[k]);
  if (kAbove) {
    for (size_t k = 0; k < K; ++k) x[k] = hn::Min(hn::Set(d, 88.0f), x[k]);
  }
  for (size_t k = 0; k < K; ++k) t[k] = hn::MulAdd(x[k], log2e, magic);
  for (size_t k = 0; k < K; ++k) f[k] = hn::MulSub(x[k], log2e, hn::Sub(t[k], magic));
  for (size_t k = 0; k < K; ++k)
    p[k] = hn::MulAdd(hn::Set(d, 1.326472614891827e-3f), f[k], hn::Set(d, 9.671512991189957e-3f));
  for (size_t k = 0; k < K; ++k) p[k] = hn::MulAdd(p[k], f[k], hn::Set(d, 5.550733581185341e-2f));
  for (size_t k = 0; k < K; ++k) p[k] = hn::MulAdd(p[k], f[k], hn::Set(d, 2.4022242426872253e-1f));
  for (size_t k = 0; k < K; ++k) p[k] = hn::MulAdd(p[k], f[k], hn::Set(d, 6.931470036506653e-1f));
  for (size_t k = 0; k < K; ++k) p[k] = hn::MulAdd(p[k], f[k], hn::Set(d, 1.0f));
  // p is in [0.70, 1.42]; for n = -126 the product may round to a subnormal (x
  // in [-87.68, -87.34]).
  for (size_t k = 0; k < K; ++k)
    x[k] = hn::Mul(p[k], hn::BitCast(d, hn::ShiftLeft<23>(hn::BitCast(di, t[k]))));
#if !LOSSX_CLAMP_KEEPS_NAN
  for (size_t k = 0; k < K; ++k) x[k] = hn::IfThenElse(hn::IsNaN(x0[k]), x0[k], x[k]);
#endif
}
#undef LOSSX_CLAMP_KEEPS_NAN

template <size_t K, bool kAbove = false, class D,
          hwy::EnableIf<sizeof(hn::TFromD<D>) == 8>* = nullptr>
HWY_INLINE void ExpSoftmaxN(D d, hn::Vec<D>* x) {
  for (size_t k = 0; k < K; ++k) x[k] = FastExp(d, x[k]);
}

template <class D>
HWY_INLINE hn::Vec<D> ExpSoftmax(D d, hn::Vec<D> x) {
  ExpSoftmaxN<1>(d, &x);
  return x;
}

// log1p(t) for t in [0, 1] (the softplus family's t = exp(-|z|)), from
// s = t / (2 + t) in [0, 1/3]: log1p(t) = 2 atanh(s) = 2s + 2s^3 Q(s^2). With
// s^2 <= 1/9 a short polynomial Q does, and there is no exponent split, pole
// test or second division as in Highway's general Log1p (two divisions and
// about 30 operations). Q's coefficients are a z-weighted least-squares fit on
// [0, 1/9] (mpmath, 50 digits) whose relative error in log1p is 4.6e-9
// (float32, degree 3) and 2.5e-18 (float64, degree 9), below half an ulp;
// measured against log1pl by _core._log1p_unit_max_ulp (tests/test_pointwise.py).
// Callers pass s, so one division can also serve the sigmoid (ExpNegAbs).
template <class D, hwy::EnableIf<sizeof(hn::TFromD<D>) == 4>* = nullptr>
HWY_INLINE hn::Vec<D> Log1pFromS(D d, hn::Vec<D> s) {
  const auto z = hn::Mul(s, s);
  auto q = hn::MulAdd(hn::Set(d, 0.14013819784135725f), z, hn::Set(d, 0.13999086629214952f));
  q = hn::MulAdd(q, z, hn::Set(d, 0.2001089542741974f));
  q = hn::MulAdd(q, z, hn::Set(d, 0.33333205234031577f));
  const auto s2 = hn::Add(s, s);
  return hn::MulAdd(hn::Mul(s2, z), q, s2);
}

template <class D, hwy::EnableIf<sizeof(hn::TFromD<D>) == 8>* = nullptr>
HWY_INLINE hn::Vec<D> Log1pFromS(D d, hn::Vec<D> s) {
  const auto z = hn::Mul(s, s), z2 = hn::Mul(z, z);
  // Two interleaved Horner chains (even and odd powers of z), half the latency.
  auto ev = hn::MulAdd(hn::Set(d, 0.04171206704811847), z2, hn::Set(d, 0.06650514713427046));
  auto od = hn::MulAdd(hn::Set(d, 0.0850703656359248), z2, hn::Set(d, 0.06052796949260683));
  ev = hn::MulAdd(ev, z2, hn::Set(d, 0.09090872023754785));
  od = hn::MulAdd(od, z2, hn::Set(d, 0.07693278174418576));
  ev = hn::MulAdd(ev, z2, hn::Set(d, 0.1428571427391698));
  od = hn::MulAdd(od, z2, hn::Set(d, 0.11111111984061162));
  ev = hn::MulAdd(ev, z2, hn::Set(d, 0.3333333333333315));
  od = hn::MulAdd(od, z2, hn::Set(d, 0.20000000000078996));
  const auto q = hn::MulAdd(od, z, ev);
  const auto s2 = hn::Add(s, s);
  return hn::MulAdd(hn::Mul(s2, z), q, s2);
}

// log1p(t), t in [0, 1]; NaN propagates.
template <class D>
HWY_INLINE hn::Vec<D> Log1pUnit(D d, hn::Vec<D> t) {
  return Log1pFromS(d, hn::Div(t, hn::Add(t, hn::Set(d, hn::TFromD<D>(2)))));
}

// Loads the last `rem` (< Lanes) elements, padding the other lanes with `pad`,
// without touching memory past p + rem.
// AVX2/AVX-512 masked loads and stores suppress faults on masked-off lanes, so
// the tail needs no copy there; elsewhere go through a stack buffer.
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
#define LOSSX_MASKED_TAIL 1
#else
#define LOSSX_MASKED_TAIL 0
#endif

template <class D>
HWY_INLINE hn::Vec<D> LoadTail(D d, const hn::TFromD<D>* p, size_t rem, hn::TFromD<D> pad) {
#if LOSSX_MASKED_TAIL
  const auto m = hn::FirstN(d, rem);
  return hn::IfThenElse(m, hn::MaskedLoad(m, d, p), hn::Set(d, pad));
#endif
  HWY_ALIGN hn::TFromD<D> buf[hn::MaxLanes(d)];
  for (size_t i = 0; i < hn::Lanes(d); ++i) buf[i] = i < rem ? p[i] : pad;
  return hn::Load(d, buf);
}

template <class D>
HWY_INLINE void StoreTail(D d, hn::Vec<D> v, hn::TFromD<D>* p, size_t rem) {
#if LOSSX_MASKED_TAIL
  hn::BlendedStore(v, hn::FirstN(d, rem), d, p);
  return;
#endif
  HWY_ALIGN hn::TFromD<D> buf[hn::MaxLanes(d)];
  hn::Store(v, d, buf);
  std::memcpy(p, buf, rem * sizeof(hn::TFromD<D>));
}

#undef LOSSX_MASKED_TAIL

}  // namespace HWY_NAMESPACE
}  // namespace cpu
}  // namespace lossx
HWY_AFTER_NAMESPACE();

#endif  // LOSSX_CPU_VECMATH_INL_H_
