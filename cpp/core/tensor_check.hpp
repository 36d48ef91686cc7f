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

// The storage type of an array in native byte order: float32, float64,
// float16, ml_dtypes.bfloat16 or uint8; false for anything else.
bool storage_dtype(const py::array& a, DType* out);

// A parameter-like array: float32/float64, native byte order, C-contiguous,
// aligned, and (if writeable) writeable. Never converts or copies.
// low_precision: float16 and bfloat16 are accepted too (params).
ArrayView check_float_array(py::handle obj, const KeyRef& where, bool writeable, bool low_precision = false);

// A gradient (or state) array that must match `param` (of key param_key).
// `fix` ends the message of a shape or dtype mismatch.
ArrayView check_matching_array(py::handle obj, const KeyRef& where, py::handle param,
                               const ArrayView& pv, const KeyRef& param_where, bool writeable,
                               const char* fix, unsigned allowed = 0);
// `allowed`: a mask of the DTypes accepted (bit 1 << dtype); 0: exactly pv's.

inline bool overlaps(const ArrayView& a, const ArrayView& b) {
  return a.nbytes > 0 && b.nbytes > 0 && a.data < b.data + b.nbytes && b.data < a.data + a.nbytes;
}

std::string shape_str(py::handle arr);

}  // namespace fastadapt
