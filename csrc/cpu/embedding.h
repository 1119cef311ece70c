// Internal: the pairwise/embedding family's per-row job, shared by the driver
// (embedding.cc, HWY_ONCE part) and the per-target kernels.
#pragma once
#include <cstdint>

#include "lossx/lossx.h"

namespace lossx {
namespace cpu {

// Rows [begin, end) of a row-pair loss. x[k] and grad[k] are typed by `dtype`;
// target, row_loss and grad_output by the accumulation type. The gradient
// scale of row i is base_scale * grad_output[i or 0] (grad_output may be null).
struct PairJob {
  DType dtype;
  PairLoss kind;
  int64_t D;
  const void* x[3];
  const void* target;
  double margin, p, eps;
  bool swap;
  bool per_row_go;  // grad_output holds one value per row (reduction "none")
  double base_scale;
  const void* grad_output;
  void* row_loss;
  void* grad[3];  // all null: forward only
};

Status cpu_pairwise(const PairwiseArgs& a, StatusInfo* info);

}  // namespace cpu
}  // namespace lossx
