// The private extension module fastadapt._core. The Python layer
// (python/fastadapt) is the public API; this file only marshals.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>


#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "busy_lock.hpp"
#include "cpu.hpp"
#include "dispatch.hpp"
#include "rule_api.hpp"
#include "lowp.hpp"
#include "stepper.hpp"
#include "tensor_check.hpp"
#include "thread_pool.hpp"

namespace py = pybind11;
using namespace fastadapt;

namespace {

// Gradient utilities work over a list of arrays, chunked like the step.
struct GradList {
  std::vector<ArrayView> arrays;
  std::vector<ChunkRef> chunks;
  std::vector<WorkUnit> units;
  std::vector<ChunkResult> results;
  std::size_t total = 0;

  GradList(const py::sequence& keys, const py::list& arrays_in, bool writeable) {
    if (keys.size() != arrays_in.size()) throw py::value_error("internal: keys and arrays differ");
    std::vector<std::size_t> sizes;
    for (std::size_t i = 0; i < arrays_in.size(); ++i) {
      arrays.push_back(check_float_array(arrays_in[i], KeyRef{"grads", &keys, i}, writeable));
      sizes.push_back(arrays.back().size);
      total += arrays.back().size;
    }
    if (writeable) check_no_shared_memory(keys);
    plan_chunks(sizes, &chunks);
    plan_units(chunks, &units);
    results.resize(chunks.size());
  }

  // In-place operations on two views of the same memory would apply twice.
  void check_no_shared_memory(const py::sequence& keys) const {
    std::vector<std::size_t> order;
    for (std::size_t i = 0; i < arrays.size(); ++i)
      if (arrays[i].nbytes > 0) order.push_back(i);
    std::sort(order.begin(), order.end(),
              [&](std::size_t a, std::size_t b) { return arrays[a].data < arrays[b].data; });
    for (std::size_t k = 1; k < order.size(); ++k)
      if (overlaps(arrays[order[k - 1]], arrays[order[k]]))
        throw py::value_error(KeyRef{"grads", &keys, order[k]}.str() + " shares memory with " +
                              KeyRef{"grads", &keys, order[k - 1]}.str() +
                              "; each array may appear once (it is modified in place)");
  }

  char* chunk_ptr(std::size_t c) const {
    const ArrayView& a = arrays[chunks[c].tensor];
    return a.data + chunks[c].begin * elem_size(a.dtype);
  }

  template <class F>
  void for_chunks(F&& f) {
    auto task = [](void* c, std::size_t i) { (*static_cast<F*>(c))(i); };
    py::gil_scoped_release nogil;
    run_chunks(units, total, task, &f);
  }

  std::pair<double, std::uint64_t> sumsq(bool skip_nonfinite) {
    const KernelTable& kt = active_kernels();
    const NonfiniteMode mode = skip_nonfinite ? kSkipAndCount : kSumAndCount;
    for_chunks([&](std::size_t c) {
      const ArrayView& a = arrays[chunks[c].tensor];
      results[c] = kt.sumsq[a.dtype](chunk_ptr(c), chunks[c].size, mode);
    });
    double s = 0.0;
    std::uint64_t n = 0;
    for (const auto& r : results) { s += r.sumsq; n += r.nonfinite; }
    return {s, n};
  }
};

py::tuple global_sumsq(const py::sequence& keys, const py::list& arrays, bool skip_nonfinite) {
  GradList gl(keys, arrays, false);
  auto r = gl.sumsq(skip_nonfinite);
  return py::make_tuple(r.first, r.second);
}

// In place: g = g * S(scale) with scale = max_norm / max(norm, max_norm).
py::tuple clip_by_global_norm(const py::sequence& keys, const py::list& arrays, double max_norm) {
  if (!(std::isfinite(max_norm) && max_norm > 0))
    throw py::value_error("max_norm must be a finite number > 0, got " + std::to_string(max_norm));
  GradList gl(keys, arrays, true);
  const auto r = gl.sumsq(false);
  const double norm = std::sqrt(r.first);
  const double scale = clip_scale(norm, max_norm);
  if (!(scale == 1.0)) {
    const KernelTable& kt = active_kernels();
    gl.for_chunks([&](std::size_t c) {
      kt.scale[gl.arrays[gl.chunks[c].tensor].dtype](gl.chunk_ptr(c), gl.chunks[c].size, scale);
    });
  }
  return py::make_tuple(norm, scale);
}

std::uint64_t sanitize(const py::sequence& keys, const py::list& arrays) {
  GradList gl(keys, arrays, true);
  const KernelTable& kt = active_kernels();
  std::vector<std::uint64_t> counts(gl.chunks.size());
  gl.for_chunks([&](std::size_t c) {
    counts[c] = kt.sanitize[gl.arrays[gl.chunks[c].tensor].dtype](gl.chunk_ptr(c), gl.chunks[c].size);
  });
  std::uint64_t n = 0;
  for (auto c : counts) n += c;
  return n;
}

// The roof kernel over cached buffers (benchmarks only): buffers[k][t] is
// buffer k of tensor t; the first `nreads` buffers are read, the rest written.
class Roof {
 public:
  Roof(const py::list& buffers, int nreads) : nreads_(nreads) {
    const int nbuf = static_cast<int>(buffers.size());
    if (nreads < 1 || nbuf - nreads < 1 || nreads > kMaxRoofBuffers || nbuf - nreads > kMaxRoofBuffers)
      throw py::value_error("roof: need 1.." + std::to_string(kMaxRoofBuffers) + " read and 1.." +
                            std::to_string(kMaxRoofBuffers) + " written buffers");
    nwrites_ = nbuf - nreads;
    const py::list first = buffers[0].cast<py::list>();
    py::list keys;
    for (std::size_t t = 0; t < first.size(); ++t) keys.append(py::str("t" + std::to_string(t)));
    keys_ = keys;
    std::vector<std::size_t> sizes;
    for (int k = 0; k < nbuf; ++k) {
      const py::list lst = buffers[k].cast<py::list>();
      if (lst.size() != first.size()) throw py::value_error("roof: every buffer needs one array per tensor");
      for (std::size_t t = 0; t < lst.size(); ++t) {
        views_.push_back(check_float_array(lst[t], KeyRef{"buffer", &keys_, t}, k >= nreads));
        if (k == 0) sizes.push_back(views_.back().size);
        else if (views_.back().size != sizes[t] || views_.back().dtype != views_[t].dtype)
          throw py::value_error("roof: buffers of one tensor must match in size and dtype");
      }
      arrays_.append(lst);  // keep the arrays alive
    }
    ntensors_ = first.size();
    plan_chunks(sizes, &chunks_);
    plan_units(chunks_, &units_);
    for (std::size_t s : sizes) total_ += s;
  }

  void run() {
    struct Ctx { Roof* self; const KernelTable* kt; } ctx{this, &active_kernels()};
    auto task = [](void* c, std::size_t i) {
      auto* x = static_cast<Ctx*>(c);
      Roof& r = *x->self;
      const ChunkRef& ch = r.chunks_[i];
      const ArrayView& v0 = r.views_[ch.tensor];
      const std::size_t off = ch.begin * elem_size(v0.dtype);
      char* rd[kMaxRoofBuffers];
      char* wr[kMaxRoofBuffers];
      for (int k = 0; k < r.nreads_; ++k) rd[k] = r.views_[k * r.ntensors_ + ch.tensor].data + off;
      for (int k = 0; k < r.nwrites_; ++k)
        wr[k] = r.views_[(r.nreads_ + k) * r.ntensors_ + ch.tensor].data + off;
      x->kt->roof[v0.dtype](rd, r.nreads_, wr, r.nwrites_, ch.size);
    };
    py::gil_scoped_release nogil;
    run_chunks(units_, total_, task, &ctx);
  }

 private:
  int nreads_, nwrites_ = 0;
  std::size_t ntensors_ = 0, total_ = 0;
  py::sequence keys_;
  py::list arrays_;
  std::vector<ArrayView> views_;
  std::vector<ChunkRef> chunks_;
  std::vector<WorkUnit> units_;
};

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastadapt's fused optimizer kernels (private; use the fastadapt package)";

  m.attr("CHUNK_ELEMENTS") = kChunk;
  m.attr("NORM_LANES") = kNormLanes;
  m.attr("MIN_PARALLEL_ELEMENTS") = kMinParallelElements;
  m.attr("MAX_SCALARS") = kMaxScalars;
  m.attr("MAX_TENSOR_SCALARS") = kMaxTensorScalars;
  m.attr("MAX_SLOTS") = kMaxSlots;
  m.attr("FLAG_MAXIMIZE") = kMaximize;
  // Every registered rule's description (cpp/rules): what the Python layer
  // needs to drive it without knowing it.
  {
    py::dict rules;
    static const char* const kShapeNames[] = {"param", "rows", "cols"};
    static const char* const kPassNames[] = {"chunk", "tensor"};
    for (const RuleKernels& rk : kernels_baseline().rules) {
      const RuleInfo& r = *rk.info;
      py::list slots, shapes, scalars, flags, passes, sums, tensor_scalars;
      for (int s = 0; s < kMaxSlots && r.slots[s]; ++s) {
        slots.append(r.slots[s]);
        shapes.append(kShapeNames[r.slot_shape[s]]);
      }
      for (int s = 0; s < kMaxScalars && r.scalars[s]; ++s) scalars.append(r.scalars[s]);
      for (int f = 0; f < kMaxRuleFlags && r.flags[f]; ++f) flags.append(r.flags[f]);
      for (int s = 0; s < kMaxTensorScalars && r.tensor_scalars[s]; ++s) tensor_scalars.append(r.tensor_scalars[s]);
      for (int k = 0; k < r.passes; ++k) {
        passes.append(kPassNames[r.pass_kind[k]]);
        sums.append(r.sums[k]);
      }
      py::list nonneg;
      for (int s = 0; s < kMaxSlots && r.slots[s]; ++s)
        if (r.nonnegative_slots >> s & 1u) nonneg.append(r.slots[s]);
      rules[r.name] = py::dict(py::arg("nonnegative_slots") = py::tuple(nonneg),
                               py::arg("slots") = py::tuple(slots), py::arg("slot_shapes") = py::tuple(shapes),
                               py::arg("scalars") = py::tuple(scalars), py::arg("flags") = py::tuple(flags),
                               py::arg("passes") = py::tuple(passes), py::arg("sums") = py::tuple(sums),
                               py::arg("tensor_scalars") = py::tuple(tensor_scalars));
    }
    m.attr("RULES") = rules;
  }
  m.attr("POLICIES") = py::dict(py::arg("propagate") = int(kPropagate), py::arg("zero") = int(kZero),
                                py::arg("skip") = int(kSkip), py::arg("raise") = int(kRaise));

  py::class_<Stepper>(m, "Stepper", "Per-optimizer step plan and reusable buffers.")
      .def(py::init<const std::string&>(), py::arg("rule"))
      .def_property_readonly("rule", &Stepper::rule)
      .def("slot_mask", &Stepper::slot_mask, py::arg("flags"), py::arg("ndim"),
           "The state slots (bit s = slot s) a tensor of ndim dimensions uses with these flags.")
      .def("step", &Stepper::step, py::arg("keys"), py::arg("params"), py::arg("grads"),
           py::arg("states"), py::arg("tensor_group").noconvert(),
           py::arg("group_scalars").noconvert(), py::arg("group_flags").noconvert(),
           py::arg("policy"), py::arg("max_norm"), py::arg("track_norm"), py::arg("t"),
           py::arg("counts").noconvert(), py::arg("last_norm").noconvert(),
           py::arg("tensor_scalars") = py::none(), py::arg("state_scales") = py::none(),
           py::arg("masters") = py::none(), py::arg("rounding") = py::none(),
           py::arg("grad_addresses") = py::none());

  py::class_<BusyLock>(m, "BusyLock",
                       "One call at a time (a context manager; non-blocking, raises when busy).")
      .def(py::init<std::string>(), py::arg("what"))
      .def("__enter__", [](BusyLock& b) { b.enter(); })
      .def("__exit__", [](BusyLock& b, py::args) { b.exit(); return false; })
      .def("waiting", [](py::object self) { return BusyWait{&self.cast<BusyLock&>(), self}; },
           "A context manager that waits for the lock instead of raising.");
  py::class_<BusyWait>(m, "_BusyWait")
      .def("__enter__", [](BusyWait& w) { w.lock->enter_wait(); })
      .def("__exit__", [](BusyWait& w, py::args) { w.lock->exit(); return false; });

  m.def("global_sumsq", &global_sumsq, py::arg("keys"), py::arg("arrays"),
        py::arg("skip_nonfinite") = false,
        "Sum of squares in float64 (fixed chunk/lane order) and the non-finite count.");
  m.def("clip_by_global_norm", &clip_by_global_norm, py::arg("keys"), py::arg("arrays"),
        py::arg("max_norm"), "Scale in place; returns (norm before clipping, scale).");
  m.def("sanitize", &sanitize, py::arg("keys"), py::arg("arrays"),
        "Replace NaN/Inf by 0 in place; returns how many were replaced.");

  py::class_<Roof>(m, "_Roof", "Memory-roof yardstick for benchmarks (private).")
      .def(py::init<const py::list&, int>(), py::arg("buffers"), py::arg("nreads"))
      .def("run", &Roof::run);

  // Low-precision storage (cpp/core/lowp.hpp), exposed for the tests that hold
  // the active path to fastadapt.reference.lowp bit for bit.
  m.attr("QBLOCK") = kQBlock;
  m.def(
      "_qmap",
      [](bool is_signed) {
        const QMap& q = qmap(is_signed);
        return py::dict(py::arg("values") = py::array_t<float>(256, q.value),
                        py::arg("thr") = py::array_t<float>(kQLevels, q.thr),
                        py::arg("dec") = py::array_t<float>(kQLevels, q.dec),
                        py::arg("invdec") = py::array_t<float>(kQLevels, q.invdec),
                        py::arg("step") = py::array_t<float>(kQLevels, q.step),
                        py::arg("invstep") = py::array_t<float>(kQLevels, q.invstep),
                        py::arg("offset") = py::array_t<std::int32_t>(kQLevels, q.offset),
                        py::arg("last") = py::array_t<std::int32_t>(kQLevels, q.last));
      },
      py::arg("signed"), "The 8-bit dynamic map: its 256 sorted values and its level tables (cpp/core/lowp.hpp).");
  m.def(
      "_quantize",
      [](py::array_t<float, py::array::c_style | py::array::forcecast> x, bool is_signed) {
        const std::size_t n = static_cast<std::size_t>(x.size());
        py::array_t<std::uint8_t> codes(n);
        py::array_t<float> absmax((n + kQBlock - 1) / kQBlock);
        active_kernels().lowp.quant(qmap(is_signed), x.data(), codes.mutable_data(), absmax.mutable_data(), n);
        return py::make_tuple(codes, absmax);
      },
      py::arg("x"), py::arg("signed"), "8-bit block quantization of a float32 vector (tests).");
  m.def(
      "_dequantize",
      [](py::array_t<std::uint8_t, py::array::c_style> codes, py::array_t<float, py::array::c_style> absmax,
         bool is_signed) {
        const std::size_t n = static_cast<std::size_t>(codes.size());
        if (static_cast<std::size_t>(absmax.size()) != (n + kQBlock - 1) / kQBlock)
          throw py::value_error("absmax must have one value per block");
        py::array_t<float> out(n);
        active_kernels().lowp.dequant(qmap(is_signed), codes.data(), absmax.data(), out.mutable_data(), n);
        return out;
      },
      py::arg("codes"), py::arg("absmax"), py::arg("signed"), "8-bit block dequantization (tests).");
  m.def(
      "_round_bf16",
      [](py::array_t<float, py::array::c_style | py::array::forcecast> x, py::object key, std::uint64_t first) {
        const std::size_t n = static_cast<std::size_t>(x.size());
        py::array_t<std::uint16_t> out(n);
        if (key.is_none()) active_kernels().lowp.narrow(kBF16, x.data(), out.mutable_data(), n);
        else active_kernels().lowp.narrow_sr(x.data(), out.mutable_data(), n, key.cast<std::uint32_t>(), first);
        return out;
      },
      py::arg("x"), py::arg("key") = py::none(), py::arg("first") = 0,
      "float32 -> bfloat16 bits, to nearest even or (key given) stochastically (tests).");
  m.def(
      "_views_at",
      [](const py::list& like, const py::list& addresses, const py::list& owners) {
        // Read-only arrays over memory the caller owns: element i has like[i]'s
        // dtype and shape, starts at addresses[i] and keeps owners[i] alive.
        // For fastadapt.torch, whose CPU tensors' data_ptr() it gets in one
        // C-level map (Tensor.numpy() costs ~1 us a tensor); the caller has
        // checked each buffer (contiguous, same dtype and element count).
        const std::size_t n = like.size();
        if (addresses.size() != n || owners.size() != n)
          throw py::value_error("internal: like, addresses and owners differ in length");
        auto& api = py::detail::npy_api::get();
        py::list out(n);
        for (std::size_t i = 0; i < n; ++i) {
          PyObject* a = PyList_GET_ITEM(like.ptr(), static_cast<Py_ssize_t>(i));
          if (!api.PyArray_Check_(a)) throw py::type_error("internal: like must hold NumPy arrays");
          const auto* proxy = py::detail::array_proxy(a);
          const auto addr = PyLong_AsVoidPtr(PyList_GET_ITEM(addresses.ptr(), static_cast<Py_ssize_t>(i)));
          if (addr == nullptr) {
            if (PyErr_Occurred()) throw py::error_already_set();
            if (static_cast<std::size_t>(py::array(py::reinterpret_borrow<py::object>(a)).size()) != 0)
              throw py::value_error("internal: null address for a non-empty array");
          }
          Py_INCREF(proxy->descr);  // (stolen by NewFromDescr)
          PyObject* v = api.PyArray_NewFromDescr_(api.PyArray_Type_, proxy->descr, proxy->nd, proxy->dimensions,
                                                  nullptr, addr, py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_ |
                                                  py::detail::npy_api::NPY_ARRAY_ALIGNED_, nullptr);
          if (v == nullptr) throw py::error_already_set();
          PyObject* owner = PyList_GET_ITEM(owners.ptr(), static_cast<Py_ssize_t>(i));
          Py_INCREF(owner);
          if (api.PyArray_SetBaseObject_(v, owner) != 0) {
            Py_DECREF(v);
            throw py::error_already_set();
          }
          PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i), v);
        }
        return out;
      },
      py::arg("like"), py::arg("addresses"), py::arg("owners"),
      "Read-only views of caller-owned memory shaped like `like` (fastadapt.torch; internal).");
  m.def(
      "_lowp_ext",
      [](long value) {
        const unsigned before = lowp_ext.load();
        if (value >= 0) lowp_ext.store(static_cast<unsigned>(value) & lowp_ext_supported());
        return before;
      },
      py::arg("value") = -1,
      "Read (and with value >= 0 set, within what the CPU has) the AVX-512 extensions the avx512 path's low-precision "
      "loops use: bit 0, VBMI byte-table dequantization; bit 1, BW bfloat16 narrowing (tests run with and without).");
  m.def("_rounding_key", &rounding_key, py::arg("seed"), py::arg("step"), py::arg("tensor"));

  m.def("compiled_isas", &compiled_isas);
  m.def("supported_isas", &supported_isas);
  m.def("active_isa", [] { return std::string(active_kernels().name); });
  m.def("_set_simd", &set_active_isa, py::arg("name"),
        "Force a SIMD path (tests and benchmarks).");
  m.def(
      "_mxcsr",
      [](long value) {
        const unsigned before = fp_mode_get();
        if (value >= 0) fp_mode_set(static_cast<unsigned>(value));
        return before;
      },
      py::arg("value") = -1, "Read (and with value >= 0 set) this thread's floating-point control word: MXCSR on x86, FPCR on AArch64 (tests only).");
  m.def("get_num_threads", [] { return ThreadPool::instance().num_threads(); });
  m.def("default_num_threads", &ThreadPool::default_num_threads);
  m.def(
      "set_num_threads",
      [](int n) {
        if (n < 1) throw py::value_error("num_threads must be >= 1, got " + std::to_string(n));
        py::gil_scoped_release nogil;  // may wait for a running step to finish
        ThreadPool::instance().set_num_threads(n);
      },
      py::arg("n"));
}
