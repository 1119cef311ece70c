// Bindings of the pointwise loss family. The Python layer (lossx/pointwise.py)
// validates, broadcasts weights, allocates the outputs and passes them in.
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "bindings.h"
#include "cpu/pointwise.h"
#include "cpu/value_checks.h"

namespace lossx {

void bind_pointwise(py::module_& m) {
  // From lossx/pointwise_losses.def: pointwise_codes maps every name to its
  // code; pointwise_names lists the top-level (torch) losses in list order,
  // without the lossx.keras and lossx.tf ones ("keras.<name>", "tf.<name>").
  std::vector<std::string> names;
  py::dict codes;
  for (int k = 0; k < static_cast<int>(PointwiseLoss::kCount); ++k) {
    const std::string name = pointwise_name(static_cast<PointwiseLoss>(k));
    codes[py::str(name)] = k;
    if (name.rfind("keras.", 0) != 0 && name.rfind("tf.", 0) != 0) names.push_back(name);
  }
  m.attr("pointwise_names") = names;
  m.attr("pointwise_codes") = codes;
  std::vector<std::string> cuda_names;  // the losses this build runs on GPU arrays
  for (int k = 0; k < static_cast<int>(PointwiseLoss::kCount); ++k)
    if (pointwise_has_cuda(static_cast<PointwiseLoss>(k))) cuda_names.emplace_back(pointwise_name(static_cast<PointwiseLoss>(k)));
  m.attr("pointwise_cuda_names") = cuda_names;

  m.def(
      "_log1p_unit_max_ulp",
      [](py::array x, int which) {
        const bool f64 = x.dtype().is(py::dtype::of<double>());
        if (!f64 && !x.dtype().is(py::dtype::of<float>())) throw py::type_error("float32 or float64 expected");
        if (!(x.flags() & py::array::c_style)) throw py::value_error("C-contiguous array expected");
        return cpu::log1p_unit_max_ulp(x.data(), f64, x.size(), which);
      },
      py::arg("x"), py::arg("which") = 0,
      "Internal: max ulp error of the pointwise kernels' log1p on [0, 1] (which=0), of "
      "log1p(exp(-|x|)) (1) and of sigmoid(x) (2).");

  m.def(
      "first_invalid",
      [](py::handle arr, int dtype, int64_t n, int rule) {
        const void* p = ptr_of(arr, n * static_cast<int64_t>(dtype_size(static_cast<DType>(dtype))), "array");
        py::gil_scoped_release release;
        return cpu::first_invalid(p, static_cast<DType>(dtype), n, static_cast<cpu::ValueRule>(rule));
      },
      "Internal: flat index of the first element breaking a value rule (0: +-1, 1: [0, 1], 2: 0 or 1), "
      "-1 if none, -2 for a dtype it does not cover.");

  m.def(
      "pointwise",
      [](int device, uintptr_t stream, int dtype, int kind, int64_t n, py::handle input, py::handle target,
         py::handle weight, int64_t weight_period, py::handle pos_weight, int64_t pos_weight_period,
         double beta, bool log_target, bool log_input, bool full, int reduction, double mean_divisor,
         py::handle loss, py::handle grad_input, py::handle grad_target, py::handle grad_output,
         py::handle var, py::handle grad_var, double alpha, double gamma, double margin, int64_t row_len,
         double row_scale) {
        PointwiseArgs a;
        a.dtype = static_cast<DType>(dtype);
        a.device = static_cast<Device>(device);
        a.stream = reinterpret_cast<void*>(stream);
        a.kind = static_cast<PointwiseLoss>(kind);
        a.n = n;
        a.row_len = row_len;  // > 0: row mode (per-row losses, row_scale * row sum)
        a.row_scale = row_scale;
        const int64_t es = static_cast<int64_t>(dtype_size(a.dtype));
        const int64_t as = acc_is_f64(a.dtype) ? 8 : 4;
        a.input = ptr_of(input, n * es, "input");
        a.target = ptr_of(target, n * es, "target");
        a.weight = ptr_of(weight, weight_period * as, "weight");
        a.weight_period = weight_period;
        a.pos_weight = ptr_of(pos_weight, pos_weight_period * as, "pos_weight");
        a.pos_weight_period = pos_weight_period;
        a.beta = beta;
        a.log_target = log_target;
        a.log_input = log_input;
        a.full = full;
        a.reduction = static_cast<Reduction>(reduction);
        a.mean_divisor = mean_divisor;
        const bool none = a.reduction == Reduction::kNone;
        const int64_t loss_n = none ? (row_len > 0 ? n / row_len : n) : 1;
        a.loss = ptr_of(loss, loss_n * as, "loss");
        a.grad_input = ptr_of(grad_input, n * es, "grad_input");
        a.grad_target = ptr_of(grad_target, n * es, "grad_target");
        a.grad_output = ptr_of(grad_output, loss_n * as, "grad_output");
        a.var = ptr_of(var, n * es, "var");
        a.grad_var = ptr_of(grad_var, n * as, "grad_var");
        a.alpha = alpha;
        a.gamma = gamma;
        a.margin = margin;
        StatusInfo info;
        Status st;
        {
          py::gil_scoped_release release;
          st = lossx::pointwise(a, &info);
        }
        check(st, info);
      },
      "Internal: a pointwise loss (input/target n elements) on pre-allocated outputs.");
}

}  // namespace lossx
