// Bindings of the row-softmax family: cross_entropy / nll_loss and
// log_softmax / logsumexp. The Python layer validates, allocates the outputs
// (NumPy, or the caller's GPU array library) and passes them in.
#include "bindings.h"

namespace lossx {

void bind_softmax(py::module_& m) {
  m.def(
      "cross_entropy",
      [](int device, uintptr_t stream, int dtype, int64_t rows, int64_t classes, py::handle logits,
         py::handle labels, py::handle target, py::handle weight, py::handle sample_weight,
         int64_t ignore_index, double label_smoothing, double z_loss, double softcap, int reduction,
         int normalizer, double normalizer_value, bool log_probs_input, py::handle loss,
         py::handle lse, py::handle grad_logits, py::handle grad_target, py::handle grad_output) {
        CrossEntropyArgs a;
        a.dtype = static_cast<DType>(dtype);
        a.device = static_cast<Device>(device);
        a.stream = reinterpret_cast<void*>(stream);
        a.rows = rows;
        a.classes = classes;
        const int64_t es = static_cast<int64_t>(dtype_size(a.dtype));
        const int64_t as = acc_is_f64(a.dtype) ? 8 : 4;
        const int64_t n = rows * classes;
        a.logits = ptr_of(logits, n * es, "logits");
        a.labels = static_cast<const int64_t*>(ptr_of(labels, rows * 8, "labels"));
        a.target = ptr_of(target, n * es, "target");
        a.weight = ptr_of(weight, classes * as, "weight");
        a.sample_weight = ptr_of(sample_weight, rows * as, "sample_weight");
        a.ignore_index = ignore_index;
        a.label_smoothing = label_smoothing;
        a.z_loss = z_loss;
        a.softcap = softcap;
        a.reduction = static_cast<Reduction>(reduction);
        a.normalizer = static_cast<Normalizer>(normalizer);
        a.normalizer_value = normalizer_value;
        a.log_probs_input = log_probs_input;
        const int64_t loss_n = a.reduction == Reduction::kNone ? rows : 1;
        a.loss = ptr_of(loss, loss_n * as, "loss");
        a.lse = ptr_of(lse, rows * as, "lse");
        a.grad_logits = ptr_of(grad_logits, n * es, "grad_logits");
        a.grad_target = ptr_of(grad_target, n * es, "grad_target");
        // One value, or one per row for "none" (none at all for an empty batch).
        a.grad_output = ptr_of(grad_output, loss_n * as, "grad_output");
        StatusInfo info;
        Status st;
        {
          py::gil_scoped_release release;
          st = lossx::cross_entropy(a, &info);
        }
        check(st, info);
      },
      "Internal: row-softmax cross entropy / nll kernel on pre-allocated outputs.");

  m.def(
      "softmax_family",
      [](int device, uintptr_t stream, int dtype, int64_t rows, int64_t cols, py::handle input,
         bool log_softmax, py::handle out, py::handle grad_output, py::handle grad_input) {
        SoftmaxArgs a;
        a.dtype = static_cast<DType>(dtype);
        a.device = static_cast<Device>(device);
        a.stream = reinterpret_cast<void*>(stream);
        a.rows = rows;
        a.cols = cols;
        const int64_t es = static_cast<int64_t>(dtype_size(a.dtype));
        const int64_t out_n = log_softmax ? rows * cols : rows;
        a.input = ptr_of(input, rows * cols * es, "input");
        a.log_softmax = log_softmax;
        a.out = ptr_of(out, out_n * es, "out");
        a.grad_output = ptr_of(grad_output, out_n * es, "grad_output");
        a.grad_input = ptr_of(grad_input, rows * cols * es, "grad_input");
        StatusInfo info;
        Status st;
        {
          py::gil_scoped_release release;
          st = lossx::softmax_family(a, &info);
        }
        check(st, info);
      },
      "Internal: log_softmax / logsumexp forward and backward over the last axis.");
}

}  // namespace lossx
