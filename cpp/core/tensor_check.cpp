#include "tensor_check.hpp"

#include <cstring>
#include <sstream>
#include <utility>

namespace fastadapt {
namespace {


std::string type_name(py::handle obj) { return py::str(py::type::handle_of(obj).attr("__name__")); }

std::string describe(py::handle obj) {
  if (!py::isinstance<py::array>(obj)) return type_name(obj);
  auto a = py::reinterpret_borrow<py::array>(obj);
  return std::string(py::str(a.dtype())) + " array of shape " + shape_str(obj);
}

bool native_float(const py::array& a, DType* out) {
  const py::dtype dt = a.dtype();
  const char bo = dt.byteorder();
  if (bo != '=' && bo != '<' && bo != '|') return false;  // x86 is little-endian
  if (dt.num() == py::detail::npy_api::NPY_FLOAT_) { *out = kF32; return true; }
  if (dt.num() == py::detail::npy_api::NPY_DOUBLE_) { *out = kF64; return true; }
  return false;
}

}  // namespace

bool storage_dtype(const py::array& a, DType* out) {
  if (native_float(a, out)) return true;
  const py::dtype dt = a.dtype();
  const char bo = dt.byteorder();
  if (bo != '=' && bo != '<' && bo != '|') return false;
  const int num = dt.num();
  if (num == 23 /* NPY_HALF */) { *out = kF16; return true; }
  if (num == 2 /* NPY_UBYTE */) { *out = kU8; return true; }
  // ml_dtypes.bfloat16 registers a user dtype (its number depends on the
  // import order): recognized by name once, then by number.
  static int bf16_num = -1;
  if (num == bf16_num) { *out = kBF16; return true; }
  if (num >= 256 && dt.itemsize() == 2 && std::string(py::str(dt.attr("name"))) == "bfloat16") {
    bf16_num = num;
    *out = kBF16;
    return true;
  }
  return false;
}

namespace {

[[noreturn]] void fail_type(const KeyRef& w, const std::string& msg) {
  throw py::type_error(w.str() + ": " + msg);
}

// ndarray subclasses whose meaning the kernels would silently drop: a masked
// array's mask (masked values would be updated from their hidden data) and
// np.matrix (2-D only, its own operator semantics). Plain ndarrays take the
// exact-type fast path; the modules are looked up only if already imported
// (an object cannot be a MaskedArray unless numpy.ma was loaded).
void refuse_subclass(py::handle obj, const KeyRef& w, bool is_param) {
  static PyTypeObject* const ndarray = reinterpret_cast<PyTypeObject*>(
      py::module_::import("numpy").attr("ndarray").ptr());
  if (Py_TYPE(obj.ptr()) == ndarray) return;
  const py::dict modules = py::module_::import("sys").attr("modules");
  if (modules.contains("numpy.ma")) {
    const py::object masked = modules["numpy.ma"].attr("MaskedArray");
    if (py::isinstance(obj, masked))
      fail_type(w, std::string("masked arrays are not supported: the kernels would ignore the mask; ") +
                       (is_param ? "store the plain array (np.ma.getdata(p), a view) in the structure"
                                 : "pass np.ma.filled(g, 0.0) (masked gradients as zeros)"));
  }
  const py::object matrix = py::module_::import("numpy").attr("matrix");
  if (py::isinstance(obj, matrix))
    fail_type(w, std::string("np.matrix is not supported; ") +
                     (is_param ? "store np.asarray(p) (a view of the same memory) in the structure"
                               : "pass np.asarray(g)"));
}
[[noreturn]] void fail_value(const KeyRef& w, const std::string& msg) {
  throw py::value_error(w.str() + ": " + msg);
}

// The advice for arrays from torch, JAX and other buffer owners lives in
// fastadapt/_interop.py (it inspects foreign types); called on error paths only.
template <typename... Args>
std::string interop_hint(const char* fn, Args&&... args) {
  return py::str(py::module_::import("fastadapt._interop").attr(fn)(std::forward<Args>(args)...));
}

}  // namespace

std::string KeyRef::str() const {
  std::string key = py::str((*keys)[index]);
  if (key.empty()) return role;
  return std::string(role) + "['" + key + "']";
}

std::string shape_str(py::handle obj) {
  auto a = py::reinterpret_borrow<py::array>(obj);
  std::ostringstream os;
  os << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) os << (i ? ", " : "") << a.shape(i);
  os << (a.ndim() == 1 ? ",)" : ")");
  return os.str();
}

static ArrayView view_of(const py::array& a, DType dt) {
  ArrayView v;
  v.data = static_cast<char*>(const_cast<void*>(a.data()));
  v.size = static_cast<std::size_t>(a.size());
  v.nbytes = v.size * elem_size(dt);
  v.dtype = dt;
  return v;
}

// `fix()` gives the advice for a non-contiguous array; for one updated in place
// it must not be a copy presented as the array itself (the copy would be
// updated, the caller's array not), see _interop.non_contiguous. It is a
// callable, run only when the check fails: building that advice calls into
// Python, which must not happen per tensor on every good step.
template <class Fix>
static void check_layout(const py::array& a, const KeyRef& w, bool writeable, Fix&& fix) {
  const int flags = a.flags();
  if (!(flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_))
    fail_value(w, "expected a C-contiguous array, got a non-contiguous view of shape " +
                      shape_str(a) + "; fastadapt never copies silently: " + std::string(fix()));
  if (!(flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    fail_value(w, std::string("expected an aligned array, got an unaligned view; ") +
                      (writeable ? "a copy is needed: store a.copy() in the structure and keep using it "
                                   "(updates do not reach the unaligned original)"
                                 : "pass g.copy()"));
  if (writeable && !(flags & py::detail::npy_api::NPY_ARRAY_WRITEABLE_))
    fail_value(w, "array is read-only, but it is updated in place; " + interop_hint("read_only", a));
}

ArrayView check_float_array(py::handle obj, const KeyRef& w, bool writeable, bool low_precision) {
  const bool is_param = std::strcmp(w.role, "params") == 0;
  const char* kinds = low_precision ? "a float32, float64, float16 or bfloat16" : "a float32 or float64";
  if (!py::isinstance<py::array>(obj))
    fail_type(w, "expected a float32 or float64 NumPy array, got " + describe(obj) + "; " +
                     interop_hint("not_array", obj, w.role, writeable));
  refuse_subclass(obj, w, is_param);
  auto a = py::reinterpret_borrow<py::array>(obj);
  DType dt;
  const bool ok = low_precision ? storage_dtype(a, &dt) && dt != kU8 : native_float(a, &dt);
  if (!ok)
    fail_type(w, std::string("expected ") + kinds + " array in native byte order, got " + describe(obj) +
                     "; convert it once with .astype(np.float32) (or np.float64)");
  check_layout(a, w, writeable, [&]() -> std::string {
    return is_param    ? interop_hint("non_contiguous", true, "p")
           : writeable ? "pass np.ascontiguousarray(g) and use the result (it is modified in place)"
                       : "pass np.ascontiguousarray(g)";
  });
  return view_of(a, dt);
}

ArrayView check_matching_array(py::handle obj, const KeyRef& w, py::handle param,
                               const ArrayView& pv, const KeyRef& pw, bool writeable,
                               const char* fix, unsigned allowed) {
  if (!allowed) allowed = 1u << pv.dtype;
  if (!py::isinstance<py::array>(obj))
    fail_type(w, "expected a NumPy array like " + pw.str() + " (" + dtype_name(pv.dtype) +
                     ", shape " + shape_str(param) + "), got " + describe(obj) + "; " +
                     interop_hint("not_array", obj, w.role, writeable, dtype_name(pv.dtype)));
  // Optimizer state (fix given) is always a plain ndarray the optimizer made
  // or copied on load; only gradients can arrive as a subclass.
  if (!fix) refuse_subclass(obj, w, false);
  auto a = py::reinterpret_borrow<py::array>(obj);
  DType dt;
  if (!storage_dtype(a, &dt) || !(allowed & (1u << dt))) {
    std::string also;
    for (DType d : {kF32, kF64, kBF16, kF16, kU8})
      if ((allowed & (1u << d)) && d != pv.dtype) also += std::string(also.empty() ? " (or " : ", ") + dtype_name(d);
    if (!also.empty()) also += ")";
    fail_type(w, std::string("expected ") + dtype_name(pv.dtype) + " (the dtype of " + pw.str() + ")" + also +
                     ", got " + describe(obj) + "; " +
                     (fix ? std::string(fix)
                          : pv.dtype == kBF16 ? std::string("cast it with .astype(ml_dtypes.bfloat16)")
                                              : "cast it with .astype(np." + std::string(dtype_name(pv.dtype)) + ")"));
  }
  auto p = py::reinterpret_borrow<py::array>(param);
  bool same_shape = a.ndim() == p.ndim();
  for (py::ssize_t i = 0; same_shape && i < a.ndim(); ++i) same_shape = a.shape(i) == p.shape(i);
  if (!same_shape)
    fail_value(w, "expected shape " + shape_str(param) + " (the shape of " + pw.str() + "), got " +
                      shape_str(obj) + "; " + (fix ? fix : "the gradient must have the parameter's shape"));
  check_layout(a, w, writeable, [] { return std::string("pass np.ascontiguousarray(g)"); });
  ArrayView v = view_of(a, dt);
  if (overlaps(v, pv))
    fail_value(w, "shares memory with " + pw.str() +
                      "; the gradient must be a separate array (pass g.copy())");
  return v;
}

}  // namespace fastadapt
