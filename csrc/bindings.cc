// The pybind11 module lossx._core: runtime information plus one bind_<family>
// call per kernel family (csrc/bind_<family>.cc).
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "bindings.h"

namespace lossx {
namespace cpu {
double exp_max_ulp(const float* x, int64_t n, bool softmax);
}
}  // namespace lossx

PYBIND11_MODULE(_core, m) {
  namespace py = pybind11;
  using namespace lossx;
  m.doc() = "lossx compiled kernels (private: use the lossx package)";
  m.def("version", &version);
  m.def("num_threads", &num_threads);
  m.def("set_num_threads", &set_num_threads);
  m.def("simd_target", &simd_target);
  m.def("simd_targets", [](bool compiled) {
    const char* names[64];
    const int n = simd_targets(names, 64, compiled);
    std::vector<std::string> out(names, names + n);
    return out;
  }, py::arg("compiled") = false);
  m.def("_force_simd_target", [](const std::string& name) { return force_simd_target(name.c_str()); });
  m.def("cuda_compiled", &cuda_compiled);
  m.def("cuda_available", &cuda_available);
  m.def("_exp_max_ulp", [](py::array_t<float, py::array::c_style | py::array::forcecast> x,
                           bool softmax) { return cpu::exp_max_ulp(x.data(), x.size(), softmax); },
        py::arg("x"), py::arg("softmax") = false);
  bind_buffer_cache(m);
  bind_softmax(m);
  bind_embedding(m);
  bind_margin(m);
  bind_ctc(m);
  bind_keras(m);
  bind_pointwise(m);
}
