// Checks NumPy arrays handed to the kernels and turns every problem into a
// TypeError/ValueError that names the key and the fix. Runs with the GIL
// held, before anything is written.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <string>

#include "rule_api.hpp"

namespace fastadapt {
namespace py = pybind11;

struct ArrayView {
  char* data = nullptr;
  std::size_t size = 0;   // elements
  std::size_t nbytes = 0;
  DType dtype = kF32;
};

// `role` is "params", "grads" or a state name; keys[i] names the tensor.
struct KeyRef {
  const char* role;
  const py::sequence* keys;
  std::size_t index;
  std::string str() const;  // e.g. grads['fc1.w']
};

// A parameter-like array: float32/float64, native byte order, C-contiguous,
// aligned, and (if writeable) writeable. Never converts or copies.
ArrayView check_float_array(py::handle obj, const KeyRef& where, bool writeable);

// A gradient (or state) array that must match `param` (of key param_key).
// `fix` ends the message of a shape or dtype mismatch.
ArrayView check_matching_array(py::handle obj, const KeyRef& where, py::handle param,
                               const ArrayView& pv, const KeyRef& param_where, bool writeable,
                               const char* fix);

inline bool overlaps(const ArrayView& a, const ArrayView& b) {
  return a.nbytes > 0 && b.nbytes > 0 && a.data < b.data + b.nbytes && b.data < a.data + a.nbytes;
}

std::string shape_str(py::handle arr);

}  // namespace fastadapt
