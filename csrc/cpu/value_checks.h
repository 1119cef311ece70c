// Internal: value-range checks of input arrays (see value_checks.cc).
#pragma once
#include <cstdint>

#include "lossx/lossx.h"

namespace lossx {
namespace cpu {

enum class ValueRule { kPlusMinusOne = 0, kUnitInterval = 1, kZeroOne = 2 };

// Flat index of the first element breaking `rule`, -1 if none, -2 for a dtype
// this check does not cover (float16/bfloat16: the caller uses NumPy).
int64_t first_invalid(const void* data, DType dtype, int64_t n, ValueRule rule);

}  // namespace cpu
}  // namespace lossx
