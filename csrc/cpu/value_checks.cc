// Value-range checks for the pointwise family's inputs (soft_margin's +-1
// targets, binary_cross_entropy's probabilities, Keras' {0, 1} hinge labels). A plain loop the compiler
// vectorises: one read of the array, branch-free per block, scalar search
// only in a block that holds a bad value. Replaces a NumPy check that made
// float64 copies and cost more than the loss itself.
#include "cpu/value_checks.h"

#include <algorithm>

namespace lossx {
namespace cpu {
namespace {

template <typename T>
bool bad_value(T v, ValueRule rule) {
  switch (rule) {
    case ValueRule::kPlusMinusOne: return !(v == T(1) || v == T(-1));
    case ValueRule::kUnitInterval: return !(v >= T(0) && v <= T(1));  // NaN is bad
    case ValueRule::kZeroOne: return !(v == T(0) || v == T(1));
  }
  return true;
}

template <typename T>
int64_t first_bad(const T* p, int64_t n, ValueRule rule) {
  constexpr int64_t kBlock = 4096;
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t e = std::min(n, b + kBlock);
    // Bitwise, not short-circuit, so that the loops vectorise.
    int any = 0;
    if (rule == ValueRule::kPlusMinusOne) {
      for (int64_t i = b; i < e; ++i) any |= static_cast<int>(p[i] != T(1)) & static_cast<int>(p[i] != T(-1));
    } else if (rule == ValueRule::kZeroOne) {
      for (int64_t i = b; i < e; ++i) any |= static_cast<int>(p[i] != T(0)) & static_cast<int>(p[i] != T(1));
    } else {
      for (int64_t i = b; i < e; ++i) any |= static_cast<int>(!(p[i] >= T(0))) | static_cast<int>(!(p[i] <= T(1)));
    }
    if (any) {
      for (int64_t i = b; i < e; ++i)
        if (bad_value(p[i], rule)) return i;
    }
  }
  return -1;
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
