// Shared vector math for the CPU kernels, compiled once per SIMD target.
//
// FastExp (float32): Cephes-style range reduction plus a degree-5 polynomial.
// Measured against a float64 std::exp over [-87, 88] (tests/test_vecmath.py via
// lossx._core._exp_ulp): at most 2 ulp. Highway's own Exp measured about 1.7x
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
  return hn::IfThenZeroElse(underflow, hn::Exp(d, x));
}

// ExpSoftmax: exp for the softmax sweep, whose arguments are z - max <= 0.
// Cheaper than FastExp (about 14 vector ops instead of 26) because it needs no
// overflow handling: the rounding of x*log2(e) is done by adding 1.5*2^23, whose
// low mantissa bits then hold n, so 2^n is a shift and an integer add with no
// float<->int conversion; a degree-6 polynomial keeps it within ~1.05 ulp of
// float64 exp (tests/test_vecmath.py). Arguments below -87.3 give exactly 0
// (-inf included); NaN propagates. Valid for x <= 88 (n <= 127); the callers pass
// x <= 0. float64 uses FastExp.
template <class D, hwy::EnableIf<sizeof(hn::TFromD<D>) == 4>* = nullptr>
HWY_INLINE hn::Vec<D> ExpSoftmax(D d, hn::Vec<D> x) {
  const hn::RebindToSigned<D> di;
  const auto magic = hn::Set(d, 12582912.0f);  // 1.5 * 2^23
  const auto t = hn::MulAdd(x, hn::Set(d, 1.44269504088896341f), magic);
  const auto n = hn::Sub(t, magic);
  auto r = hn::NegMulAdd(n, hn::Set(d, 0.693359375f), x);
  r = hn::NegMulAdd(n, hn::Set(d, -2.12194440e-4f), r);
  auto p = hn::Set(d, 1.3843652559444308e-3f);
  p = hn::MulAdd(p, r, hn::Set(d, 8.37415549904108e-3f));
  p = hn::MulAdd(p, r, hn::Set(d, 4.166800156235695e-2f));
  p = hn::MulAdd(p, r, hn::Set(d, 1.6666431725025177e-1f));
  p = hn::MulAdd(p, r, hn::Set(d, 4.999999403953552e-1f));
  p = hn::MulAdd(p, r, hn::Set(d, 1.0f));
  p = hn::MulAdd(p, r, hn::Set(d, 1.0f));
  // t's low bits hold n in two's complement; shifting them into the exponent
  // field and adding scales p by 2^n (p in [0.70, 1.42], so the exponent stays
  // normal for n >= -126, which x >= -87.3 guarantees).
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
