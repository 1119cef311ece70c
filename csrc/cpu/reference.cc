// Scalar double-precision references; see reference.h for the formulas.
#include "cpu/reference.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace lossx {
namespace ref {
namespace {

template <typename T>
double RowImpl(const CrossEntropy& a, const T* logits, int64_t i, double scale, double* g) {
  const int64_t C = a.classes;
  const T* x = logits + i * C;
  const int64_t y = a.labels[i];
  if (y == a.ignore_index) {
    if (g) std::fill(g, g + C, 0.0);
    return 0.0;
  }
  auto w = [&](int64_t j) { return a.weight ? a.weight[j] : 1.0; };
  const double cap = a.softcap;
  std::vector<double> z(static_cast<size_t>(C));
  for (int64_t j = 0; j < C; ++j) {
    const double v = static_cast<double>(x[j]);
    z[j] = cap > 0 ? cap * std::tanh(v / cap) : v;
  }
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < C; ++j) m = std::max(m, z[j]);
  double s = 0.0;
  for (int64_t j = 0; j < C; ++j) s += std::exp(z[j] - m);
  const double lse = m + std::log(s);

  const double eps = a.label_smoothing;
  // loss = sum_j c_j (lse - z_j) + z_loss lse^2, with c_j the target weights.
  std::vector<double> c(static_cast<size_t>(C));
  for (int64_t j = 0; j < C; ++j) c[j] = eps / static_cast<double>(C) * w(j);
  c[y] += (1.0 - eps) * w(y);
  double loss = 0.0, csum = 0.0;
  for (int64_t j = 0; j < C; ++j) {
    loss += c[j] * (lse - z[j]);
    csum += c[j];
  }
  loss += a.z_loss * lse * lse;

  if (g) {
    // d loss / d z'_j = (csum + 2 z_loss lse) softmax_j - c_j; then the chain
    // rule through softcap: d z'/d z = 1 - tanh^2(z / cap).
    for (int64_t j = 0; j < C; ++j) {
      const double p = std::exp(z[j] - lse);
      double d = (csum + 2.0 * a.z_loss * lse) * p - c[j];
      if (cap > 0) {
        const double t = std::tanh(static_cast<double>(x[j]) / cap);
        d *= 1.0 - t * t;
      }
      g[j] = scale * d;
    }
  }
  return loss;
}

template <typename T>
double Impl(const CrossEntropy& a, const T* logits, double* row_loss, double* grad) {
  const double norm = ce_normalizer(a);
  double total = 0.0;
  for (int64_t i = 0; i < a.rows; ++i) {
    const double scale = ce_row_scale(a, i, norm);
    const double l = RowImpl(a, logits, i, scale, grad ? grad + i * a.classes : nullptr);
    if (row_loss) row_loss[i] = l;
    total += l;
  }
  return a.reduction == Reduction::kMean ? total / norm : total;
}

}  // namespace

double ce_normalizer(const CrossEntropy& a) {
  double n = 0.0;
  for (int64_t i = 0; i < a.rows; ++i) {
    const int64_t y = a.labels[i];
    if (y != a.ignore_index) n += a.weight ? a.weight[y] : 1.0;
  }
  return n;
}

double ce_row_scale(const CrossEntropy& a, int64_t i, double normalizer) {
  if (a.labels[i] == a.ignore_index) return 0.0;
  return a.reduction == Reduction::kMean ? 1.0 / normalizer : 1.0;
}

double ce_row(const CrossEntropy& a, const float* logits, int64_t i, double scale, double* grad_row) {
  return RowImpl(a, logits, i, scale, grad_row);
}
double ce_row(const CrossEntropy& a, const double* logits, int64_t i, double scale, double* grad_row) {
  return RowImpl(a, logits, i, scale, grad_row);
}
double cross_entropy(const CrossEntropy& a, const float* logits, double* row_loss, double* grad) {
  return Impl(a, logits, row_loss, grad);
}
double cross_entropy(const CrossEntropy& a, const double* logits, double* row_loss, double* grad) {
  return Impl(a, logits, row_loss, grad);
}

}  // namespace ref
}  // namespace lossx
