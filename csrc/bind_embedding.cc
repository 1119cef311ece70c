// Bindings of the pairwise/embedding, margin and sequence families. The
// Python layer validates, allocates the outputs and passes them in.
#include "bindings.h"

namespace lossx {

void bind_embedding(py::module_& m) {
  m.def(
      "pairwise",
      [](int device, uintptr_t stream, int dtype, int kind, int64_t rows, int64_t dim, py::handle x0,
         py::handle x1, py::handle x2, py::handle target, double margin, double p, double eps, bool swap,
         int reduction, py::handle loss, py::handle g0, py::handle g1, py::handle g2, py::handle grad_output) {
        PairwiseArgs a;
        a.dtype = static_cast<DType>(dtype);
        a.device = static_cast<Device>(device);
        a.stream = reinterpret_cast<void*>(stream);
        a.loss = static_cast<PairLoss>(kind);
        a.rows = rows;
        a.dim = dim;
        const int64_t es = static_cast<int64_t>(dtype_size(a.dtype));
        const int64_t as = acc_is_f64(a.dtype) ? 8 : 4;
        const int64_t n = rows * dim;
        a.x0 = ptr_of(x0, n * es, "x0");
        a.x1 = ptr_of(x1, n * es, "x1");
        a.x2 = ptr_of(x2, n * es, "x2");
        a.target = ptr_of(target, rows * as, "target");
        a.margin = margin;
        a.p = p;
        a.eps = eps;
        a.swap = swap;
        a.reduction = static_cast<Reduction>(reduction);
        const int64_t loss_n = a.reduction == Reduction::kNone ? rows : 1;
        a.loss_out = ptr_of(loss, loss_n * as, "loss");
        a.grad0 = ptr_of(g0, n * es, "grad0");
        a.grad1 = ptr_of(g1, n * es, "grad1");
        a.grad2 = ptr_of(g2, n * es, "grad2");
        a.grad_output = ptr_of(grad_output, (a.reduction == Reduction::kNone ? rows : 1) * as, "grad_output");
        StatusInfo info;
        Status st;
        {
          py::gil_scoped_release release;
          st = lossx::pairwise_embedding(a, &info);
        }
        check(st, info);
      },
      "Internal: triplet / cosine embedding kernel on pre-allocated outputs.");
}

}  // namespace lossx

namespace lossx {

void bind_margin(py::module_& m) {
  m.def(
      "margin",
      [](int device, uintptr_t stream, int dtype, int kind, int64_t rows, int64_t classes, py::handle x0,
         py::handle labels, py::handle weight, double margin, int p,
         int reduction, py::handle loss, py::handle g0, py::handle grad_output) {
        MarginArgs a;
        a.dtype = static_cast<DType>(dtype);
        a.device = static_cast<Device>(device);
        a.stream = reinterpret_cast<void*>(stream);
        a.loss = static_cast<MarginLoss>(kind);
        a.rows = rows;
        a.classes = classes;
        const int64_t es = static_cast<int64_t>(dtype_size(a.dtype));
        const int64_t as = acc_is_f64(a.dtype) ? 8 : 4;
        const int64_t n = rows * classes;
        a.x0 = ptr_of(x0, n * es, "x0");
        const int64_t nl = a.loss == MarginLoss::kMultilabelMargin ? n : rows;
        a.labels = static_cast<const int64_t*>(ptr_of(labels, nl * 8, "labels"));
        a.weight = ptr_of(weight, classes * as, "weight");
        a.margin = margin;
        a.p = p;
        a.reduction = static_cast<Reduction>(reduction);
        const int64_t loss_n = a.reduction == Reduction::kNone ? rows : 1;
        a.loss_out = ptr_of(loss, loss_n * as, "loss");
        a.grad0 = ptr_of(g0, n * es, "grad0");
        a.grad_output = ptr_of(grad_output, loss_n * as, "grad_output");
        StatusInfo info;
        Status st;
        {
          py::gil_scoped_release release;
          st = lossx::margin_loss(a, &info);
        }
        check(st, info);
      },
      "Internal: margin-family kernel on pre-allocated outputs.");
}

}  // namespace lossx
