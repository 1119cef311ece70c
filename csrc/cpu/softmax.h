// Internal: the row-softmax family's per-row jobs, shared by the driver
// (softmax.cc, HWY_ONCE part) and the per-target kernels.
#pragma once
#include <cstdint>

#include "lossx/lossx.h"

namespace lossx {
namespace cpu {

// One cross-entropy sweep over rows [begin, end). Pointers typed by `dtype`
// (x, target, grad, grad_target) or by the accumulation type A (everything
// else). row_scale[i] is d(returned loss)/d(loss_i): 0 for ignored rows.
struct CEJob {
  DType dtype;
  int64_t C;
  const void* x;
  const int64_t* labels;  // nullptr: soft targets
  const void* target;
  const void* weight;  // A[C] or nullptr
  double weight_sum;   // sum of weight (C when none)
  const void* sample_weight;
  int64_t ignore_index;
  double eps, z_loss, softcap;
  const void* row_scale;  // A[rows] or nullptr when no gradient is wanted
  void* row_loss;         // A[rows]
  void* lse;              // A[rows] or nullptr
  void* grad;             // dtype, or nullptr
  void* grad_target;      // dtype, or nullptr
  bool stream_grad = false;  // write gradient rows with non-temporal stores (see CERowsImpl)
};

struct SoftmaxJob {
  DType dtype;
  int64_t cols;
  const void* x;
  bool log_softmax;
  void* out;
  const void* grad_output;  // nullptr = ones
  void* grad_input;         // nullptr = forward only
};

Status cpu_cross_entropy(const CrossEntropyArgs& a, StatusInfo* info);
Status cpu_softmax_family(const SoftmaxArgs& a, StatusInfo* info);

}  // namespace cpu
}  // namespace lossx
