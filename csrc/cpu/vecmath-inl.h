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
// whose cost bounds the cross-entropy kernel (on Zen 1 the FMA pipes are the
// limit, so what counts is the number of FMAs: 7 here, 9 in a Cephes-style exp).
// - Rounding x*log2(e) by adding 1.5*2^23 leaves n in t's low mantissa bits, so
//   2^n is a shift and an integer add, with no float<->int conversion and no
//   overflow handling (x <= 0).
// - One FMA reduces the argument: f = x*log2(e) - n in [-1/2, 1/2]. The float
//   log2(e) is off by 1.3e-8 relative, which adds |x|*1.4e-8 to the relative
//   error: nothing near the max (x in [-2, 0]: under 2.1 ulp), about 20 ulp at
//   x = -87 where exp(x) is 1e-38 and contributes nothing to a softmax. A
//   two-constant reduction would cost one more FMA (~12% of the sweep) for
//   digits that cannot change a loss or gradient at float32 tolerance.
// - 2^f by a degree-5 minimax polynomial (9e-8 relative).
// Arguments below -87.3 give exactly 0 (-inf included); NaN propagates. Valid
// for x <= 88. Bounds are tested in tests/test_softmax.py. float64 uses FastExp.
template <class D, hwy::EnableIf<sizeof(hn::TFromD<D>) == 4>* = nullptr>
HWY_INLINE hn::Vec<D> ExpSoftmax(D d, hn::Vec<D> x) {
  const hn::RebindToSigned<D> di;
  const auto magic = hn::Set(d, 12582912.0f);  // 1.5 * 2^23
  const auto log2e = hn::Set(d, 1.44269504088896341f);
  const auto t = hn::MulAdd(x, log2e, magic);
  const auto n = hn::Sub(t, magic);
  const auto f = hn::MulSub(x, log2e, n);
  auto p = hn::Set(d, 1.326472614891827e-3f);
  p = hn::MulAdd(p, f, hn::Set(d, 9.671512991189957e-3f));
  p = hn::MulAdd(p, f, hn::Set(d, 5.550733581185341e-2f));
  p = hn::MulAdd(p, f, hn::Set(d, 2.4022242426872253e-1f));
  p = hn::MulAdd(p, f, hn::Set(d, 6.931470036506653e-1f));
  p = hn::MulAdd(p, f, hn::Set(d, 1.0f));
  // t's low bits hold n in two's complement; shifted into the exponent field and
  // added, they scale p (in [0.70, 1.42]) by 2^n, staying normal for n >= -126,
  // which x >= -87.3 guarantees.
  const auto e = hn::ShiftLeft<23>(hn::BitCast(di, t));
  const auto y = hn::BitCast(d, hn::Add(hn::BitCast(di, p), e));
  return hn::IfThenZeroElse(hn::Lt(x, hn::Set(d, -87.3f)), y);
}

template <class D, hwy::EnableIf<sizeof(hn::TFromD<D>) == 8>* = nullptr>
HWY_INLINE hn::Vec<D> ExpSoftmax(D d, hn::Vec<D> x) {
  return FastExp(d, x);
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
