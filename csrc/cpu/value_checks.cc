// Value-range checks for the pointwise family's inputs (soft_margin's +-1
// targets, binary_cross_entropy's probabilities, Keras' {0, 1} hinge labels):
// one read of the array in Highway vectors, a block's lanes OR-ed into one
// mask, a scalar search only in a block that holds a bad value. Blocks run on
// the thread pool; the first bad block wins, so the position does not depend
// on the thread count. (The compiler's SSE2 vectorisation of a plain loop cost
// 8.5 us for 64000 float32 values, a fifth of soft_margin_loss's forward.)

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/value_checks.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "cpu/value_checks.h"
#include "hwy/highway.h"

#ifndef LOSSX_VALUE_CHECKS_SCALAR_
#define LOSSX_VALUE_CHECKS_SCALAR_  // (foreach_target includes this file once per target)
namespace lossx {
namespace cpu {

template <typename T>
inline bool bad_value(T v, ValueRule rule) {
  switch (rule) {
    case ValueRule::kPlusMinusOne: return !(v == T(1) || v == T(-1));
    case ValueRule::kUnitInterval: return !(v >= T(0) && v <= T(1));  // NaN is bad
    case ValueRule::kZeroOne: return !(v == T(0) || v == T(1));
  }
  return true;
}

}  // namespace cpu
}  // namespace lossx
#endif

HWY_BEFORE_NAMESPACE();
namespace lossx {
namespace cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// True when [b, e) holds a value breaking the rule.
template <typename T>
bool BlockHasBad(const T* p, int64_t b, int64_t e, ValueRule rule) {
  const hn::ScalableTag<T> d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const auto lo = hn::Set(d, rule == ValueRule::kPlusMinusOne ? T(-1) : T(0));
  const auto hi = hn::Set(d, T(1));
  auto bad = hn::Zero(d);  // lanes of all-ones bits where a value was bad
  int64_t i = b;
  for (; i + L <= e; i += L) {
    const auto v = hn::LoadU(d, p + i);
    // Comparisons with NaN are false: NaN is bad under every rule.
    const auto ok = rule == ValueRule::kUnitInterval ? hn::And(hn::Ge(v, lo), hn::Le(v, hi))
                                                     : hn::Or(hn::Eq(v, lo), hn::Eq(v, hi));
    bad = hn::Or(bad, hn::VecFromMask(d, hn::Not(ok)));
  }
  if (!hn::AllTrue(d, hn::Eq(bad, hn::Zero(d)))) return true;
  for (; i < e; ++i)
    if (bad_value(p[i], rule)) return true;
  return false;
}

bool BlockHasBadF32(const float* p, int64_t b, int64_t e, ValueRule r) { return BlockHasBad(p, b, e, r); }
bool BlockHasBadF64(const double* p, int64_t b, int64_t e, ValueRule r) { return BlockHasBad(p, b, e, r); }

}  // namespace HWY_NAMESPACE
}  // namespace cpu
}  // namespace lossx
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "cpu/parallel.h"

namespace lossx {
namespace cpu {

HWY_EXPORT(BlockHasBadF32);
HWY_EXPORT(BlockHasBadF64);

namespace {

template <typename T>
int64_t first_bad(const T* p, int64_t n, ValueRule rule) {
  constexpr int64_t kBlock = 4096;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::atomic<int64_t> first{blocks};  // the smallest bad block
  // Several blocks per thread: waking one costs more than a block's scan.
  parallel_for(
      blocks, 1,
      [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1 && c < first.load(std::memory_order_relaxed); ++c) {
          const int64_t b = c * kBlock, e = std::min(n, b + kBlock);
          bool bad;
          if constexpr (sizeof(T) == 4) {
            bad = HWY_DYNAMIC_DISPATCH(BlockHasBadF32)(p, b, e, rule);
          } else {
            bad = HWY_DYNAMIC_DISPATCH(BlockHasBadF64)(p, b, e, rule);
          }
          if (bad) {
            int64_t cur = first.load(std::memory_order_relaxed);
            while (c < cur && !first.compare_exchange_weak(cur, c, std::memory_order_relaxed)) {
            }
            return;
          }
        }
      },
      8);
  const int64_t c = first.load();
  if (c == blocks) return -1;
  for (int64_t i = c * kBlock, e = std::min(n, (c + 1) * kBlock); i < e; ++i)
    if (bad_value(p[i], rule)) return i;
  return -1;  // not reached: the block held a bad value
}

}  // namespace

int64_t first_invalid(const void* data, DType dtype, int64_t n, ValueRule rule) {
  switch (dtype) {
    case DType::kF32: return first_bad(static_cast<const float*>(data), n, rule);
    case DType::kF64: return first_bad(static_cast<const double*>(data), n, rule);
    default: return -2;  // not handled here: the caller checks another way
  }
}

}  // namespace cpu
}  // namespace lossx
#endif  // HWY_ONCE
