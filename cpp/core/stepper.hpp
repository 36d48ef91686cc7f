// One optimizer step over all tensors in one call: check every array, build
// (or reuse) the chunk plan, then run the pre-pass (norm / non-finite scan,
// when clipping or skip/raise need it) and the rule's passes, each as one
// parallel region over fixed chunks (or whole tensors), with the GIL
// released. Between passes, the sums a pass emitted are reduced per tensor and
// globally, in chunk order, for the passes after it. Nothing here knows any
// rule: it reads the rule's RuleInfo.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <atomic>
#include <string>
#include <vector>

#include "rule_api.hpp"
#include "tensor_check.hpp"

namespace fastadapt {
namespace py = pybind11;

enum NonfinitePolicy : int { kPropagate = 0, kZero = 1, kSkip = 2, kRaise = 3 };
enum StepStatus : int { kStepped = 0, kSkipped = 1, kNonfiniteFound = 2 };
// Slots of the optimizer's int64 counter array (Stepper::step commits them).
enum StepCount : int {
  kCountStep = 0, kCountSkipped = 1, kCountTotalNonfinite = 2, kCountLastNonfinite = 3,
  kCountHaveNorm = 4, kNumCounts = 5
};

// The seed's clipping rule with NaN propagating: scale = c / max(norm, c).
double clip_scale(double norm, double max_norm);

struct TensorPlan {
  void* p;
  const void* g;
  void* s[kMaxSlots];
  std::size_t size;
  DType dtype;  // the compute type (float32 for bfloat16/float16 params)
  std::uint32_t group;
  TensorShape shape;
  // Low-precision storage (cpp/core/lowp.hpp). A tensor with any of it is
  // "staged": each chunk is widened to float32 scratch, the float32 kernel
  // runs on it, and what the pass wrote is rounded or quantized back.
  DType pstore = kF32, gstore = kF32;
  DType sstore[kMaxSlots] = {};
  float* scale[kMaxSlots] = {};  // absmax per kQBlock block of an 8-bit slot
  float* master = nullptr;       // float32 master weights of a bfloat16/float16 param
  bool stochastic = false;       // round a bfloat16 param stochastically
  std::uint32_t rounding_key = 0;
  bool staged = false;
  // float32 params and grads, every param-shaped state slot bfloat16: the
  // rule's RuleKernels::bf16_state (if it has one) runs on the stored bits.
  bool bf16_state = false;
};

struct ChunkRef {
  std::uint32_t tensor;
  std::size_t begin;
  std::size_t size;
};

// Cuts tensors of the given sizes into kChunk-element chunks, in order.
void plan_chunks(const std::vector<std::size_t>& sizes, std::vector<ChunkRef>* chunks);

// Groups consecutive chunks into work units of at least kChunk elements, so
// a thousand small tensors are a few units for the pool, not a thousand.
// Units only schedule: every chunk is still computed on its own, so results
// do not depend on them.
struct WorkUnit {
  std::size_t first, last;  // chunk indices [first, last)
};
void plan_units(const std::vector<ChunkRef>& chunks, std::vector<WorkUnit>* units);

// Runs fn(ctx, chunk) for every chunk: on the calling thread when the work
// is small, else over the units on the pool.
using ChunkFn = void (*)(void* ctx, std::size_t chunk);
void run_chunks(const std::vector<WorkUnit>& units, std::size_t total_elements, ChunkFn fn, void* ctx);

using IntArray = py::array_t<std::int32_t, py::array::c_style>;
using CountArray = py::array_t<std::int64_t, py::array::c_style>;
using DoubleArray = py::array_t<double, py::array::c_style>;
using FlagArray = py::array_t<std::uint32_t, py::array::c_style>;

class Stepper {
 public:
  // The rule registered under this name (cpp/rules/registry.hpp).
  explicit Stepper(const std::string& rule);

  // states: a list with one entry per state slot of the rule, each None or
  // a list with one array per tensor. Returns
  // (status, grad_norm or None, nonfinite_count, first_nonfinite_tensor or -1).
  // tensor_scalars: None for a rule without tensor scalars, else a writeable
  // float64 array (tensors, kMaxTensorScalars): read before the step, written
  // back (with the counters) when the step commits.
  //
  // The norm is computed when asked (track_norm, fused into the step) or when
  // a pre-pass reads the grads anyway (clipping, skip, raise).
  //
  // counts (int64: step, skipped steps, total non-finite, last non-finite,
  // have norm) and last_norm (float64[1]) are the optimizer's counters: this
  // call commits them (step = t when the step was applied) before it
  // returns, with the GIL held, so no Python code (a signal handler raising
  // KeyboardInterrupt) can run between the arrays being written and the
  // step being counted.
  py::tuple step(const py::sequence& keys, const py::list& params, const py::list& grads,
                 const py::list& states, const IntArray& tensor_group,
                 const DoubleArray& group_scalars, const FlagArray& group_flags, int policy,
                 double max_norm, bool track_norm, std::int64_t t, CountArray counts,
                 DoubleArray last_norm, const py::object& tensor_scalars,
                 const py::object& state_scales, const py::object& masters, const py::object& rounding,
                 const py::object& grad_addresses);

  const std::string& rule() const { return rule_name_; }
  // The state slots (bit s = slot s) a tensor of ndim dimensions uses with these flags.
  unsigned slot_mask(unsigned flags, int ndim) const;

 private:
  void check_inputs(const py::sequence& keys, const py::list& params, const py::list& grads,
                    const py::list& states, const IntArray& tensor_group,
                    const DoubleArray& group_scalars, const FlagArray& group_flags,
                    const py::object& state_scales, const py::object& masters, const py::object& rounding,
                    std::int64_t t, const py::object& grad_addresses);
  void check_param_overlap(const py::sequence& keys);

  int rule_;
  std::string rule_name_;
  const RuleInfo* info_;
  int nslots_ = 0;
  // One step at a time per optimizer: the pid of the process stepping, or 0.
  // A value from another pid was inherited locked through fork(); the child
  // may take it over.
  std::atomic<int> busy_pid_{0};
  // References to every array of the running step, so none can be freed
  // while the kernels write without the GIL.
  std::vector<py::object> keep_alive_;
  // Reused between steps: no heap allocation once the plan is warm.
  std::vector<TensorPlan> tensors_;
  std::vector<std::size_t> sizes_, planned_sizes_;
  std::vector<ChunkRef> chunks_, tensor_items_;     // per-chunk and per-tensor work items
  std::vector<WorkUnit> units_, tensor_units_;
  std::vector<ChunkResult> results_;
  std::vector<double> tensor_sums_, group_sums_, global_sums_;  // [tensor|group][pass][sum], [pass][sum]
  std::vector<double> tensor_scalars_;  // [tensor][kMaxTensorScalars]: this step's copy
  std::vector<std::uint32_t> tensor_group_;
  std::vector<ArrayView> params_view_, last_params_view_;
  std::vector<std::size_t> order_;
  std::vector<double> scalars_;     // groups x kMaxScalars
  std::vector<std::uint32_t> flags_;
};

}  // namespace fastadapt
