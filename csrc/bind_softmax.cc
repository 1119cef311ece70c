// Bindings of the row-softmax family: cross_entropy / nll_loss and
// log_softmax / logsumexp. The Python layer validates, allocates the outputs
// (NumPy, or the caller's GPU array library) and passes them in.
#include <pybind11/gil_safe_call_once.h>

#include <utility>
#include <vector>

#include "bindings.h"

namespace lossx {

namespace {

// NumPy type numbers; int64 is NPY_LONG (7) or NPY_LONGLONG (9) by platform.
constexpr int kNpyFloat = 11, kNpyDouble = 12, kNpyLong = 7, kNpyLongLong = 9;

// The reduction string of a plain call: 0/1/2, or -1 for anything else (the
// general path words the error).
int plain_reduction(py::handle r) {
  if (!PyUnicode_CheckExact(r.ptr())) return -1;
  if (PyUnicode_CompareWithASCIIString(r.ptr(), "mean") == 0) return 1;
  if (PyUnicode_CompareWithASCIIString(r.ptr(), "sum") == 0) return 2;
  if (PyUnicode_CompareWithASCIIString(r.ptr(), "none") == 0) return 0;
  return -1;
}

bool plain_array(py::handle h, int ndim) {
  if (!py::isinstance<py::array>(h)) return false;
  auto a = py::reinterpret_borrow<py::array>(h);
  constexpr int need = py::array::c_style | py::detail::npy_api::NPY_ARRAY_ALIGNED_;
  return a.ndim() == ndim && (a.flags() & need) == need;
}

py::object numpy_scalar(bool f64, double v) {
  PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<std::pair<py::object, py::object>> types;
  const auto& t = types
                      .call_once_and_store_result([] {
                        auto np = py::module_::import("numpy");
                        return std::make_pair(np.attr("float32"), np.attr("float64"));
                      })
                      .get_stored();
  return (f64 ? t.second : t.first)(v);
}

// cross_entropy(x, y) / nll_loss(x, y) with no options but reduction,
// ignore_index and return_grad, on 2-D C-contiguous float32/float64 NumPy
// logits and int64 labels: the whole call in C++, since at small sizes the
// general path's Python checks cost several times the kernel. None for any
// other input; the general path then handles it (and words its errors). The
// kernel and its arguments are the general path's, so the bits are too.
py::object ce_plain(py::handle logits, py::handle labels, py::handle ignore_index, py::handle reduction,
                    bool log_probs, bool want_grad) {
  if (!plain_array(logits, 2) || !plain_array(labels, 1) || !PyLong_CheckExact(ignore_index.ptr()))
    return py::none();
  auto x = py::reinterpret_borrow<py::array>(logits);
  auto y = py::reinterpret_borrow<py::array>(labels);
  const py::dtype xd = x.dtype(), yd = y.dtype();
  const int xt = xd.num(), yt = yd.num();
  // Native byte order too: a '>f4' array has float32's type number.
  if ((xt != kNpyFloat && xt != kNpyDouble) || (yt != kNpyLong && yt != kNpyLongLong) || yd.itemsize() != 8 ||
      xd.byteorder() != '=' || yd.byteorder() != '=')
    return py::none();
  const int64_t N = x.shape(0), C = x.shape(1);
  if (N < 1 || C < 1 || y.shape(0) != N) return py::none();
  // A large gradient comes from the general path's buffer cache (fresh pages
  // fault; 64-byte alignment lets it stream): 2x faster at 1024x32000.
  if (want_grad && N * C * x.itemsize() >= (int64_t{1} << 22)) return py::none();
  const int red = plain_reduction(reduction);
  int overflow = 0;
  const long long ig = PyLong_AsLongLongAndOverflow(ignore_index.ptr(), &overflow);
  if (red < 0 || overflow) return py::none();

  const bool f64 = xt == kNpyDouble;
  CrossEntropyArgs a;
  a.dtype = f64 ? DType::kF64 : DType::kF32;
  a.rows = N;
  a.classes = C;
  a.logits = x.data();
  a.labels = static_cast<const int64_t*>(y.data());
  a.ignore_index = ig;
  a.reduction = static_cast<Reduction>(red);
  a.log_probs_input = log_probs;
  double scalar[1] = {0.0};  // one value of the accumulation type (float or double)
  py::array loss_rows;
  if (red == 0) {
    loss_rows = py::array(xd, std::vector<py::ssize_t>{N});
    a.loss = loss_rows.mutable_data();
  } else {
    a.loss = scalar;
  }
  py::array grad;
  if (want_grad) {
    grad = py::array(xd, std::vector<py::ssize_t>{N, C});
    a.grad_logits = grad.mutable_data();
  }
  StatusInfo info;
  Status st;
  if (N * (log_probs && !want_grad ? 1 : C) >= (int64_t{1} << 16)) {
    py::gil_scoped_release release;
    st = lossx::cross_entropy(a, &info);
  } else {
    st = lossx::cross_entropy(a, &info);  // shorter than the GIL's hand-over
  }
  check(st, info);
  py::object loss = red == 0 ? py::object(loss_rows)
                             : numpy_scalar(f64, f64 ? scalar[0] : static_cast<double>(*reinterpret_cast<float*>(scalar)));
  if (!want_grad) return loss;
  return py::make_tuple(loss, grad);
}

}  // namespace

void bind_softmax(py::module_& m) {
  m.def("ce_plain", &ce_plain,
        "Internal: cross_entropy / nll_loss of plain NumPy arrays with default options, or None.");

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
