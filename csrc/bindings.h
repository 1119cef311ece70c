// Shared helpers for the pybind11 bindings (bindings.cc and bind_<family>.cc).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "lossx/lossx.h"

namespace lossx {
namespace py = pybind11;

// An array argument: None -> nullptr; a NumPy array -> its data (must be
// C-contiguous and hold at least `min_bytes`); an int -> a device pointer the
// Python layer took from __cuda_array_interface__ / DLPack.
inline void* ptr_of(const py::handle& obj, int64_t min_bytes, const char* name) {
  if (obj.is_none()) return nullptr;
  if (py::isinstance<py::array>(obj)) {
    auto arr = py::reinterpret_borrow<py::array>(obj);
    if (!(arr.flags() & py::array::c_style))
      throw py::value_error(std::string("internal: ") + name + " is not C-contiguous");
    if (arr.nbytes() < min_bytes)
      throw py::value_error(std::string("internal: ") + name + " is smaller than the kernel needs");
    return const_cast<void*>(arr.data());
  }
  if (py::isinstance<py::int_>(obj)) return reinterpret_cast<void*>(obj.cast<uintptr_t>());
  throw py::type_error(std::string("internal: ") + name + " must be an array, a device pointer or None");
}

// Raises the Python exception matching a failed status.
inline void check(Status st, const StatusInfo& info) {
  if (st == Status::kOk) return;
  switch (st) {
    case Status::kIndexError: throw py::index_error(info.message);
    case Status::kInvalidArgument: throw py::value_error(info.message);
    case Status::kUnsupported: throw py::type_error(info.message);
    default: throw std::runtime_error(info.message);
  }
}

void bind_softmax(py::module_& m);
void bind_buffer_cache(py::module_& m);
void bind_keras(py::module_& m);
void bind_pointwise(py::module_& m);
void bind_embedding(py::module_& m);
void bind_margin(py::module_& m);
void bind_ctc(py::module_& m);

}  // namespace lossx
