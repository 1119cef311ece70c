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

// Test probe: max ulp error of the softplus family's log1p (which = 0:
// Log1pUnit(x), x in [0, 1]; 1: log1p(exp(-|x|)); 2: sigmoid(x)).
double log1p_unit_max_ulp(const void* x, bool f64, int64_t n, int which);

}  // namespace cpu
}  // namespace lossx
