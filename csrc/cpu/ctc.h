// Internal: the CTC per-sample job, shared by the driver (ctc.cc, HWY_ONCE
// part) and the per-target kernels.
#pragma once
#include <cstdint>

#include "lossx/lossx.h"

namespace lossx {
namespace cpu {

// Samples [begin, end) of a validated ctc_loss call (labels in [0, C) and not
// blank, lengths in range). log_probs and grad are typed by `dtype`.
struct CtcJob {
  DType dtype;
  int64_t T, N, C;
  const void* log_probs;
  const int64_t* targets;
  const int64_t* target_offset;  // per sample: index of its first label in targets
  const int64_t* input_lengths;
  const int64_t* target_lengths;
  int64_t blank;
  bool zero_infinity;
  double* nll;               // out: per-sample loss, after zero_infinity
  const double* grad_scale;  // per sample: d(returned loss) / d(loss_i); null with grad
  void* grad;                // T x N x C, or null: forward only
};

Status cpu_ctc(const CtcArgs& a, StatusInfo* info);

// The error for a bad label v at targets' flat position k (sample i, label j):
// IndexError outside [0, C), InvalidArgument for the blank. Both devices use it.
Status ctc_label_error(StatusInfo* info, bool concatenated, int64_t i, int64_t j, int64_t k, int64_t v,
                       int64_t blank, int64_t C);

}  // namespace cpu
}  // namespace lossx
