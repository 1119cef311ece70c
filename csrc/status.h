// Internal: filling a StatusInfo on failure, shared by every backend.
#pragma once
#include <cmath>
#include <cstdio>

#include "lossx/lossx.h"

namespace lossx {

inline Status fail(StatusInfo* info, Status code, const char* msg, int64_t pos = -1, int64_t val = 0) {
  if (info) {
    info->code = code;
    info->position = pos;
    info->value = val;
    std::snprintf(info->message, sizeof(info->message), "%s", msg);
  }
  return code;
}

// A bad value for StatusInfo::value (an integer): 0 where converting it would
// be undefined behaviour (NaN, infinities, magnitudes from 2^63 on).
inline int64_t value_field(double v) {
  return std::isfinite(v) && std::fabs(v) < 9.2e18 ? static_cast<int64_t>(v) : 0;
}

}  // namespace lossx
