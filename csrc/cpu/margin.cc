// Margin family on the CPU: multi_margin_loss, multilabel_margin_loss
// (torch.nn.functional semantics). margin_ranking_loss and
// multilabel_soft_margin_loss are element-wise and run in the pointwise family.
//
// These are short per-row scalar loops (a label lookup, a hinge per class, a
// pair loop for multilabel_margin) rather than streaming reductions, so they
// are plain C++ compiled once: one row functor per loss inside one driver
// loop, parallel over rows with size-only chunking, per-row losses reduced
// with det_sum (bit-identical for any thread count). Arithmetic is in the
// accumulation type; half-precision rows go through a float scratch.
#include <cmath>
#include <cstdio>
#include <vector>

#include "cpu/convert.h"
#include "cpu/parallel.h"
#include "lossx/lossx.h"
#include "status.h"

namespace lossx {
namespace cpu {
namespace {

template <typename A>
struct Row {
  const A* x;      // row of x0 (classes values)
  A* g;            // gradient row of x0 or nullptr
  int64_t i;       // row index
  A scale;         // d(returned loss) / d(loss_i)
};

template <typename A>
struct MultiMargin {
  const int64_t* labels;
  const A* w;
  int64_t C;
  A margin;
  int p;
  A operator()(const Row<A>& r) const {
    const int64_t y = labels[r.i];
    const A xy = r.x[y];
    const A wy = w ? w[y] : A(1);
    const A invc = A(1) / static_cast<A>(C);
    A sum = 0, gy = 0;
    for (int64_t j = 0; j < C; ++j) {
      if (j == y) continue;
      const A z = margin - xy + r.x[j];
      A gj = 0;
      if (z > 0) {  // torch's kernel: strictly positive
        sum += (p == 1 ? z : z * z) * wy;
        gj = r.scale * invc * wy * (p == 1 ? A(1) : 2 * z);
        gy -= gj;
      }
      if (r.g) r.g[j] = gj;
    }
    if (r.g) r.g[y] = gy;
    return sum * invc;
  }
};

template <typename A>
struct MultilabelMargin {
  const int64_t* labels;
  int64_t C;
  A operator()(const Row<A>& r) const {
    const int64_t* t = labels + r.i * C;
    static thread_local std::vector<unsigned char> is_target;
    is_target.assign(static_cast<size_t>(C), 0);
    int64_t nt = 0;
    while (nt < C && t[nt] >= 0) is_target[static_cast<size_t>(t[nt++])] = 1;
    const A invc = A(1) / static_cast<A>(C);
    const A gs = r.scale * invc;
    if (r.g)
      for (int64_t c = 0; c < C; ++c) r.g[c] = 0;
    double sum = 0;  // up to (C/2)^2 hinge terms: float32 would lose digits
    for (int64_t a = 0; a < nt; ++a) {
      const int64_t j = t[a];
      const A xj = r.x[j];
      for (int64_t k = 0; k < C; ++k) {
        if (is_target[static_cast<size_t>(k)]) continue;
        const A z = 1 - xj + r.x[k];
        if (z > 0) {
          sum += z;
          if (r.g) {
            r.g[j] -= gs;
            r.g[k] += gs;
          }
        }
      }
    }
    return static_cast<A>(sum * invc);
  }
};

template <typename A, class F>
void RunRows(const MarginArgs& a, const F& f, A* row_loss) {
  const int64_t C = a.classes;
  const bool native = IsNative<A>(a.dtype);
  const bool want_grad = a.grad0 != nullptr;
  const A* go = static_cast<const A*>(a.grad_output);
  const bool per_row = a.reduction == Reduction::kNone;
  const A base = a.reduction == Reduction::kMean ? A(1) / static_cast<A>(a.rows) : A(1);
  parallel_for(a.rows, grain_for(C, 1 << 14), [&](int64_t b, int64_t e) {
    std::vector<A> xb, gb;
    if (!native) {
      xb.resize(static_cast<size_t>(C));
      gb.resize(static_cast<size_t>(C));
    }
    for (int64_t i = b; i < e; ++i) {
      const int64_t off = i * C;
      Row<A> r;
      r.i = i;
      r.scale = want_grad ? base * (go ? go[per_row ? i : 0] : A(1)) : A(0);
      if (native) {
        r.x = static_cast<const A*>(a.x0) + off;
        r.g = want_grad ? static_cast<A*>(a.grad0) + off : nullptr;
      } else {
        ConvertRow<A>(a.x0, a.dtype, off, C, xb.data());
        r.x = xb.data();
        r.g = want_grad ? gb.data() : nullptr;
      }
      row_loss[i] = f(r);
      if (!native && want_grad) StoreRow<A>(gb.data(), C, a.grad0, a.dtype, off);
    }
  });
}

template <typename A>
Status MarginImpl(const MarginArgs& a, StatusInfo* info) {
  const int64_t N = a.rows, C = a.classes;
  char msg[200];
  // Input checks first, smallest offending position whatever the thread count.
  if (a.loss == MarginLoss::kMultiMargin) {
    for (int64_t i = 0; i < N; ++i) {
      const int64_t y = a.labels[i];
      if (y < 0 || y >= C) {
        std::snprintf(msg, sizeof(msg), "multi_margin_loss: label %lld at position %lld is out of range [0, %lld)",
                      static_cast<long long>(y), static_cast<long long>(i), static_cast<long long>(C));
        return fail(info, Status::kIndexError, msg, i, y);
      }
    }
  } else if (a.loss == MarginLoss::kMultilabelMargin) {
    for (int64_t i = 0; i < N; ++i) {
      for (int64_t k = 0; k < C; ++k) {
        const int64_t y = a.labels[i * C + k];
        if (y < 0) break;  // the row's list ends here; what follows is not read
        if (y >= C) {
          std::snprintf(msg, sizeof(msg),
                        "multilabel_margin_loss: label %lld at position (%lld, %lld) is out of range [-1, %lld)",
                        static_cast<long long>(y), static_cast<long long>(i), static_cast<long long>(k),
                        static_cast<long long>(C));
          return fail(info, Status::kIndexError, msg, i * C + k, y);
        }
      }
    }
  }

  std::vector<A> row_buf;
  A* row_loss = static_cast<A*>(a.loss_out);
  if (a.reduction != Reduction::kNone) {
    row_buf.resize(static_cast<size_t>(N));
    row_loss = row_buf.data();
  }
  const A* w = static_cast<const A*>(a.weight);
  switch (a.loss) {
    case MarginLoss::kMultiMargin:
      RunRows<A>(a, MultiMargin<A>{a.labels, w, C, static_cast<A>(a.margin), a.p}, row_loss);
      break;
    case MarginLoss::kMultilabelMargin:
      RunRows<A>(a, MultilabelMargin<A>{a.labels, C}, row_loss);
      break;
  }
  if (a.reduction != Reduction::kNone)
    store_reduced(row_loss, N, a.reduction == Reduction::kMean, static_cast<double>(N), a.loss_out);
  return Status::kOk;
}

}  // namespace

Status cpu_margin(const MarginArgs& a, StatusInfo* info) {
  return acc_is_f64(a.dtype) ? MarginImpl<double>(a, info) : MarginImpl<float>(a, info);
}

}  // namespace cpu
}  // namespace lossx
