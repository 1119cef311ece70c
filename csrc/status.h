// Internal: filling a StatusInfo on failure, shared by every backend.
#pragma once
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

}  // namespace lossx
