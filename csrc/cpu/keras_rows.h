// Internal: jobs of the Keras-semantics row losses and tf's element-wise
// sigmoid cross entropy, shared by the driver (keras_rows.cc, HWY_ONCE part)
// and the per-target kernels.
#pragma once
#include <cstdint>

#include "keras_row_math.h"
#include "lossx/lossx.h"

namespace lossx {
namespace cpu {

// Per-row sweeps (cross entropy on probabilities, focal, hinge) over rows
// [begin, end). Pointers typed by `dtype` (t, p, grad) or by the accumulation
// type A (everything else). row_scale[i] = d(returned loss)/d(loss_i).
struct KerasJob {
  DType dtype;
  KerasLoss kind;
  int64_t C;
  const void* t;           // rows x C, or nullptr (sparse)
  const int64_t* labels;   // sparse labels, already range-checked
  const void* p;           // rows x C
  bool from_logits;        // focal only: softmax first
  double smoothing, alpha, gamma;
  const void* alpha_vec;   // A[C] or nullptr
  bool has_ignore;
  int64_t ignore_class;
  const void* row_scale;   // A[rows], or nullptr when no gradient is wanted
  void* row_loss;          // A[rows]
  void* grad;              // dtype rows x C, or nullptr
};

// Losses that depend on a row only through sums (cosine, dice, tversky): rows
// are cut into fixed segments (independent of the thread count) so that one
// long row (axis=None) still runs in parallel. Task k = row * nseg + segment.
constexpr int kSumCount = kKerasSumCount;  // sum t*t, p*p, t*p, t, p
struct SumsJob {
  DType dtype;
  int64_t K, seg, nseg;
  const void* t;
  const void* p;
  void* partial;       // A[tasks * kSumCount]
  const void* coef;    // A[rows * 3]: grad = a t + b p + c (scale folded in)
  void* grad;          // dtype rows x K
};

Status cpu_keras_rows(const KerasRowsArgs& a, StatusInfo* info);

}  // namespace cpu
}  // namespace lossx
