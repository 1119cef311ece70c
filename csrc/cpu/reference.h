// Scalar double-precision references of the row-softmax family, written as
// plain loops straight from the formulas (no SIMD, no threads, no shortcuts)
// so that they are easy to read against PyTorch's definitions. The C++
// benchmark checks every kernel against them before timing it.
#pragma once
#include <cstdint>

#include "lossx/lossx.h"

namespace lossx {
namespace ref {

// Hard-label cross_entropy, PyTorch semantics:
//   z'_j   = softcap * tanh(z_j / softcap)            (softcap > 0 only)
//   lse    = log sum_j exp(z'_j)
//   loss_i = (1-eps) w[y] (lse - z'_y) + eps/C sum_j w[j] (lse - z'_j) + z_loss * lse^2
// 0 for y == ignore_index. mean divides by sum_i w[y_i] over non-ignored rows
// (0/0 = nan when there are none), sum adds, none keeps the rows.
struct CrossEntropy {
  int64_t rows = 0, classes = 0;
  const int64_t* labels = nullptr;
  const double* weight = nullptr;  // classes values, or nullptr (all 1)
  int64_t ignore_index = -100;
  double label_smoothing = 0.0;
  double z_loss = 0.0;
  double softcap = 0.0;  // 0: off
  Reduction reduction = Reduction::kMean;
};

// The mean's denominator: sum of w[y_i] over non-ignored rows.
double ce_normalizer(const CrossEntropy& a);

// d(returned loss)/d(loss_i): 1/normalizer for mean, 1 otherwise, 0 when ignored.
double ce_row_scale(const CrossEntropy& a, int64_t i, double normalizer);

// Loss of row i (before reduction). When grad_row is not null it receives the
// C values scale * d loss_i / d z_i. `logits` points at the whole matrix.
double ce_row(const CrossEntropy& a, const float* logits, int64_t i, double scale, double* grad_row);
double ce_row(const CrossEntropy& a, const double* logits, int64_t i, double scale, double* grad_row);

// The whole call: returns the reduced loss (for kNone, the sum, with the rows
// in row_loss when it is not null); grad (rows x classes, or nullptr) receives
// the gradient of the returned loss (of sum(row losses) for kNone).
double cross_entropy(const CrossEntropy& a, const float* logits, double* row_loss, double* grad);
double cross_entropy(const CrossEntropy& a, const double* logits, double* row_loss, double* grad);

}  // namespace ref
}  // namespace lossx
