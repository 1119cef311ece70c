// Internal: the job of the pointwise loss family, shared by the driver
// (pointwise.cc, HWY_ONCE part) and the per-target kernels.
#pragma once
#include <cstdint>

#include "lossx/lossx.h"

namespace lossx {
namespace cpu {

// Elements are cut into chunks of kPointwiseChunk whatever the thread count;
// each chunk writes its own partial sum, added in chunk order in double.
constexpr int64_t kPointwiseChunk = 1 << 13;

struct PointwiseJob {
  const PointwiseArgs* a;
  double grad_scale;  // reduced losses: grad_output / divisor (mean) or grad_output (sum)
  double* partial;    // one per chunk (reduced losses), else nullptr
  double* row_part;   // row mode, kNone: two per chunk (pieces of rows crossing chunks), else nullptr
};

Status cpu_pointwise(const PointwiseArgs& a, StatusInfo* info);

}  // namespace cpu
}  // namespace lossx
