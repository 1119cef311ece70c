// Binding of the sequence family (ctc_loss). The Python layer validates
// shapes and dtypes, converts labels and lengths to int64 and allocates the
// outputs; lengths always come as host (NumPy) arrays.
#include "bindings.h"

namespace lossx {

void bind_ctc(py::module_& m) {
  m.def(
      "ctc",
      [](int device, uintptr_t stream, int dtype, int64_t T, int64_t N, int64_t C, py::handle log_probs,
         py::handle targets, bool concatenated, int64_t S, py::array input_lengths, py::array target_lengths,
         int64_t blank, bool zero_infinity, int reduction, py::handle loss, py::handle grad,
         py::handle grad_output) {
        CtcArgs a;
        a.dtype = static_cast<DType>(dtype);
        a.device = static_cast<Device>(device);
        a.stream = reinterpret_cast<void*>(stream);
        a.T = T;
        a.N = N;
        a.C = C;
        const int64_t es = static_cast<int64_t>(dtype_size(a.dtype));
        const int64_t as = acc_is_f64(a.dtype) ? 8 : 4;
        const int64_t n = T * N * C;
        a.log_probs = ptr_of(log_probs, n * es, "log_probs");
        a.concatenated = concatenated;
        a.S = S;
        a.targets = static_cast<const int64_t*>(ptr_of(targets, (concatenated ? S : N * S) * 8, "targets"));
        if (input_lengths.dtype().kind() != 'i' || input_lengths.itemsize() != 8 ||
            target_lengths.dtype().kind() != 'i' || target_lengths.itemsize() != 8)
          throw py::type_error("internal: lengths must be int64 arrays");
        a.input_lengths = static_cast<const int64_t*>(ptr_of(input_lengths, N * 8, "input_lengths"));
        a.target_lengths = static_cast<const int64_t*>(ptr_of(target_lengths, N * 8, "target_lengths"));
        a.blank = blank;
        a.zero_infinity = zero_infinity;
        a.reduction = static_cast<Reduction>(reduction);
        const int64_t loss_n = a.reduction == Reduction::kNone ? N : 1;
        a.loss = ptr_of(loss, loss_n * as, "loss");
        a.grad = ptr_of(grad, n * es, "grad");
        a.grad_output = ptr_of(grad_output, loss_n * as, "grad_output");
        StatusInfo info;
        Status st;
        {
          py::gil_scoped_release release;
          st = lossx::ctc_loss(a, &info);
        }
        check(st, info);
      },
      "Internal: CTC loss kernel on pre-allocated outputs.");
}

}  // namespace lossx
