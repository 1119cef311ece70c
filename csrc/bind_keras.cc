// Bindings of the Keras-semantics row losses and tf.nn's sigmoid cross
// entropy. The Python layer (lossx/keras.py, lossx/tf.py) validates, moves the
// reduced axes last, allocates the outputs and passes them in.
#include "bindings.h"

namespace lossx {

void bind_keras(py::module_& m) {
  m.def(
      "keras_rows",
      [](int device, uintptr_t stream, int dtype, int kind, int64_t rows, int64_t cols, py::handle y_true,
         py::handle labels, py::handle y_pred, bool from_logits, double label_smoothing, double alpha,
         double beta, double gamma, py::handle alpha_vec, bool has_ignore_class, int64_t ignore_class,
         int reduction, py::handle loss, py::handle grad, py::handle grad_output) {
        KerasRowsArgs a;
        a.dtype = static_cast<DType>(dtype);
        a.device = static_cast<Device>(device);
        a.stream = reinterpret_cast<void*>(stream);
        a.kind = static_cast<KerasLoss>(kind);
        a.rows = rows;
        a.cols = cols;
        const int64_t es = static_cast<int64_t>(dtype_size(a.dtype));
        const int64_t as = acc_is_f64(a.dtype) ? 8 : 4;
        const int64_t n = rows * cols;
        a.y_true = ptr_of(y_true, n * es, "y_true");
        a.labels = static_cast<const int64_t*>(ptr_of(labels, rows * 8, "labels"));
        a.y_pred = ptr_of(y_pred, n * es, "y_pred");
        a.from_logits = from_logits;
        a.label_smoothing = label_smoothing;
        a.alpha = alpha;
        a.beta = beta;
        a.gamma = gamma;
        a.alpha_vec = ptr_of(alpha_vec, cols * as, "alpha");
        a.has_ignore_class = has_ignore_class;
        a.ignore_class = ignore_class;
        a.reduction = static_cast<Reduction>(reduction);
        const int64_t loss_n = a.reduction == Reduction::kNone ? rows : 1;
        a.loss = ptr_of(loss, loss_n * as, "loss");
        a.grad = ptr_of(grad, n * es, "grad");
        a.grad_output = ptr_of(grad_output, loss_n * as, "grad_output");
        StatusInfo info;
        Status st;
        {
          py::gil_scoped_release release;
          st = lossx::keras_rows(a, &info);
        }
        check(st, info);
      },
      "Internal: Keras row losses (y_pred rows x cols) on pre-allocated outputs.");

  m.def(
      "keras_pointwise",
      [](int device, uintptr_t stream, int dtype, int kind, int64_t n, int64_t row_len, double row_scale,
         py::handle y_true, py::handle y_pred, double beta, bool from_logits, double label_smoothing,
         bool class_balancing, double alpha, double gamma, bool binary_labels, int reduction, py::handle loss,
         py::handle grad, py::handle grad_output) {
        // The pointwise family's kernel in row mode: input = y_pred, target = y_true.
        PointwiseArgs a;
        a.dtype = static_cast<DType>(dtype);
        a.device = static_cast<Device>(device);
        a.stream = reinterpret_cast<void*>(stream);
        a.kind = static_cast<PointwiseLoss>(kind);
        a.n = n;
        a.row_len = row_len;
        a.row_scale = row_scale;
        const int64_t es = static_cast<int64_t>(dtype_size(a.dtype));
        const int64_t as = acc_is_f64(a.dtype) ? 8 : 4;
        a.input = ptr_of(y_pred, n * es, "y_pred");
        a.target = ptr_of(y_true, n * es, "y_true");
        a.beta = beta;
        a.from_logits = from_logits;
        a.label_smoothing = label_smoothing;
        a.class_balancing = class_balancing;
        a.alpha = alpha;
        a.gamma = gamma;
        a.binary_labels = binary_labels;
        a.reduction = static_cast<Reduction>(reduction);
        const bool none = a.reduction == Reduction::kNone;
        const int64_t loss_n = none ? (row_len > 0 ? n / row_len : n) : 1;
        a.loss = ptr_of(loss, loss_n * as, "loss");
        a.grad_input = ptr_of(grad, n * es, "grad");
        a.grad_output = ptr_of(grad_output, loss_n * as, "grad_output");
        StatusInfo info;
        Status st;
        {
          py::gil_scoped_release release;
          st = lossx::pointwise(a, &info);
        }
        check(st, info);
      },
      "Internal: a Keras element-wise loss (pointwise kernel, row mode) on pre-allocated outputs.");

  m.def(
      "sigmoid_cross_entropy",
      [](int device, uintptr_t stream, int dtype, int64_t n, py::handle labels, py::handle logits,
         py::handle loss, py::handle grad, py::handle grad_output) {
        SigmoidCEArgs a;
        a.dtype = static_cast<DType>(dtype);
        a.device = static_cast<Device>(device);
        a.stream = reinterpret_cast<void*>(stream);
        a.n = n;
        const int64_t es = static_cast<int64_t>(dtype_size(a.dtype));
        const int64_t as = acc_is_f64(a.dtype) ? 8 : 4;
        a.labels = ptr_of(labels, n * es, "labels");
        a.logits = ptr_of(logits, n * es, "logits");
        a.loss = ptr_of(loss, n * as, "loss");
        a.grad = ptr_of(grad, n * es, "grad");
        a.grad_output = ptr_of(grad_output, n * as, "grad_output");
        StatusInfo info;
        Status st;
        {
          py::gil_scoped_release release;
          st = lossx::sigmoid_cross_entropy(a, &info);
        }
        check(st, info);
      },
      "Internal: tf.nn.sigmoid_cross_entropy_with_logits, element-wise, on pre-allocated outputs.");
}

}  // namespace lossx
