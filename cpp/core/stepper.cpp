#include "stepper.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "dispatch.hpp"
#include "lowp.hpp"
#include "thread_pool.hpp"

namespace fastadapt {
namespace {


struct StepContext {
  const KernelTable* kt;
  const RuleKernels* rule;
  int pass;
  const TensorPlan* tensors;
  const ChunkRef* chunks;       // the work items of the current pass
  ChunkResult* results;
  const double* scalars;
  const std::uint32_t* flags;
  const double* tensor_sums;    // [tensor][kMaxPasses * kMaxSums]
  const double* global_sums;    // [kMaxPasses * kMaxSums]
  const double* tensor_scalars; // [tensor][kMaxTensorScalars] or nullptr
  GradPrep prep;
  NonfiniteMode prepass_mode;
};

constexpr std::size_t kSumsPerTensor = static_cast<std::size_t>(kMaxPasses) * kMaxSums;

// Per-thread float32 scratch of staged tensors: [0] param, [1] grad, [2 + s]
// state slot s. A chunk's worth each (a whole tensor for per-tensor passes),
// allocated once per thread and kept.
struct Scratch {
  std::vector<float> buf[2 + kMaxSlots];
  float* get(int k, std::size_t n) {
    if (buf[k].size() < n) buf[k].resize(n);
    return buf[k].data();
  }
};
thread_local Scratch scratch;

void prepass_task(void* c, std::size_t i) {
  auto* ctx = static_cast<StepContext*>(c);
  const ChunkRef& ch = ctx->chunks[i];
  const TensorPlan& t = ctx->tensors[ch.tensor];
  const char* g = static_cast<const char*>(t.g) + ch.begin * elem_size(t.gstore);
  if (t.gstore != t.dtype) {
    float* g32 = scratch.get(1, ch.size);
    ctx->kt->lowp.widen(t.gstore, g, g32, ch.size);
    g = reinterpret_cast<const char*>(g32);
  }
  ctx->results[i] = ctx->kt->sumsq[t.dtype](g, ch.size, ctx->prepass_mode);
}

// A pass over one chunk of a staged tensor. The float32 kernel runs on
// scratch: a param, grad or state buffer stored in low precision gets a
// chunk-sized float32 scratch that the element loop fills block by block
// just before the kernel's body reaches it, and rounds (or quantizes) back
// just after (run_chunk, GradPrep::staging): one interleaved sweep over the
// stored bytes, the scratch staying in L1 between the two. Master weights
// are float32 already: the kernel updates them in place and the loop rounds
// them into the param. 8-bit blocks start at multiples of kQBlock in the
// tensor, chunks at multiples of kChunk: a chunk holds whole blocks (the
// tensor's last one may be short).
//
// Per-tensor passes (and rules that call the element loop more than once in
// a pass) cannot be converted block by block: their chunk (or tensor) is
// widened whole before the kernel and rounded after.
constexpr std::size_t kStagePiece = 1024;
static_assert(kStagePiece % kQBlock == 0 && kStagePiece % kNormLanes == 0, "pieces hold whole blocks");

ChunkResult staged_pass(const StepContext& ctx, const ChunkRef& ch, const TensorPlan& t, ChunkTask& task) {
  const RuleInfo& info = *ctx.rule->info;
  const std::size_t n = ch.size, b = ch.begin;
  // Element-wise single-pass rules call run_chunk once per chunk: the loop
  // converts as it goes, in pieces of kStagePiece elements whose scratch
  // stays in L1. Others: the whole item is converted around the kernel.
  const bool streaming = info.passes == 1 && info.pass_kind[0] == kPerChunk;
  const std::size_t span = streaming ? std::min(n, kStagePiece) : n;
  Staging st;
  bool direct[2 + kMaxSlots] = {};  // the stream's scratch is a float32 array of the tensor (master weights)
  auto add = [&](DType store, char* data, float* scratch, bool read, bool write) -> StagedStream& {
    StagedStream& s = st.s[st.n++];
    s.store = store;
    s.data = data;
    s.scratch = scratch;
    s.read = read;
    s.write = write;
    return s;
  };
  // The float32 arrays the kernel sees: a pointer into the tensor (float32
  // storage, master weights) that moves with the piece, or scratch that does not.
  float* p32;
  bool p_moves = true;
  if (t.master) {
    p32 = t.master + b;
    add(t.pstore, static_cast<char*>(t.p) + 2 * b, p32, false, true);
    direct[st.n - 1] = true;
  } else if (t.pstore == kF32) {
    p32 = static_cast<float*>(t.p) + b;
  } else {
    p32 = scratch.get(0, span);
    p_moves = false;
    add(t.pstore, static_cast<char*>(t.p) + 2 * b, p32, true, true);
  }
  if (t.pstore == kBF16 && t.stochastic) {
    StagedStream& s = st.s[st.n - 1];
    s.stochastic = true;
    s.key = t.rounding_key;
    s.first = b;
  }
  const float* g32;
  bool g_moves = true;
  if (t.gstore == kF32) {
    g32 = static_cast<const float*>(t.g) + b;
  } else {
    float* buf = scratch.get(1, span);
    add(t.gstore, const_cast<char*>(static_cast<const char*>(t.g)) + 2 * b, buf, true, false);
    g32 = buf;
    g_moves = false;
  }
  float* s32[kMaxSlots] = {};
  bool s_moves[kMaxSlots] = {};
  for (int s = 0; s < kMaxSlots; ++s) {
    if (!t.s[s]) continue;
    if (info.slot_shape[s] != kLikeParam || t.sstore[s] == kF32) {
      // (row/column statistics are always float32: checked up front)
      s32[s] = static_cast<float*>(t.s[s]) + (info.slot_shape[s] == kLikeParam ? b : 0);
      s_moves[s] = info.slot_shape[s] == kLikeParam;
      continue;
    }
    s32[s] = scratch.get(2 + s, span);
    StagedStream& x = add(t.sstore[s], static_cast<char*>(t.s[s]) + b * elem_size(t.sstore[s]), s32[s], true, true);
    if (t.sstore[s] == kU8) {
      x.absmax = t.scale[s] + b / kQBlock;
      x.map = &qmap(!(info.nonnegative_slots >> s & 1u));
    }
  }
  task.p = p32;
  task.g = g32;
  for (int s = 0; s < kMaxSlots; ++s) task.s[s] = s32[s];
  if (streaming) {
    // The sums' lanes carry from piece to piece: the chunk sums exactly as in one call.
    ChunkCarry carry;
    GradPrep prep = ctx.prep;
    prep.staging = &st;
    prep.carry = &carry;
    const Staging whole = st;
    for (std::size_t off = 0; off < n; off += kStagePiece) {
      for (int k = 0; k < whole.n; ++k) {
        const StagedStream& w = whole.s[k];
        StagedStream& s = st.s[k];
        s.data = w.data + off * elem_size(w.store);
        s.scratch = direct[k] ? w.scratch + off : w.scratch;
        if (w.store == kU8) s.absmax = w.absmax + off / kQBlock;
        s.first = w.first + off;
      }
      task.p = p_moves ? p32 + off : p32;
      task.g = g_moves ? g32 + off : g32;
      for (int s = 0; s < kMaxSlots; ++s) task.s[s] = s32[s] && s_moves[s] ? s32[s] + off : s32[s];
      task.n = std::min(kStagePiece, n - off);
      task.begin = b + off;
      ctx.rule->pass[ctx.pass][kF32](task, prep);
    }
    ChunkResult r{prep.track_norm ? combine_lanes(carry.norm) : 0.0, carry.bad, {}};
    for (int j = 0; j < kMaxSums; ++j) r.sums[j] = combine_lanes(carry.sums[j]);
    return r;
  }
  const LowpFns& L = ctx.kt->lowp;
  for (int k = 0; k < st.n; ++k) {
    const StagedStream& s = st.s[k];
    if (!s.read) continue;
    if (s.store == kU8) L.dequant(*s.map, reinterpret_cast<const std::uint8_t*>(s.data), s.absmax, s.scratch, n);
    else L.widen(s.store, s.data, s.scratch, n);
  }
  const ChunkResult r = ctx.rule->pass[ctx.pass][kF32](task, ctx.prep);
  for (int k = 0; k < st.n; ++k) {
    const StagedStream& s = st.s[k];
    if (!s.write) continue;
    if (s.store == kU8) L.quant(*s.map, s.scratch, reinterpret_cast<std::uint8_t*>(s.data), s.absmax, n);
    else if (s.stochastic) L.narrow_sr(s.scratch, s.data, n, s.key, s.first);
    else L.narrow(s.store, s.scratch, s.data, n);
  }
  return r;
}

void pass_task(void* c, std::size_t i) {
  auto* ctx = static_cast<StepContext*>(c);
  const ChunkRef& ch = ctx->chunks[i];
  const TensorPlan& t = ctx->tensors[ch.tensor];
  const std::size_t off = ch.begin * elem_size(t.dtype);
  const RuleInfo& info = *ctx->rule->info;
  ChunkTask task;
  task.p = static_cast<char*>(t.p) + off;
  task.g = static_cast<const char*>(t.g) + off;
  for (int s = 0; s < kMaxSlots; ++s) {
    // Param-shaped buffers follow the chunk; row/column statistics do not.
    const bool follows = info.slot_shape[s] == kLikeParam;
    task.s[s] = t.s[s] ? static_cast<char*>(t.s[s]) + (follows ? off : 0) : nullptr;
  }
  task.n = ch.size;
  task.begin = ch.begin;
  task.shape = t.shape;
  task.scalars = ctx->scalars + static_cast<std::size_t>(t.group) * kMaxScalars;
  task.flags = ctx->flags[t.group];
  task.tensor_sums = ctx->tensor_sums ? ctx->tensor_sums + ch.tensor * kSumsPerTensor : nullptr;
  task.global_sums = ctx->global_sums;
  task.tensor_scalars = ctx->tensor_scalars ? ctx->tensor_scalars + ch.tensor * kMaxTensorScalars : nullptr;
  if (t.staged && t.bf16_state && ctx->rule->bf16_state) {
    // The rule reads and writes the bfloat16 bits itself: no staging.
    for (int s = 0; s < kMaxSlots; ++s)
      if (t.s[s] && info.slot_shape[s] == kLikeParam) task.s[s] = static_cast<char*>(t.s[s]) + 2 * ch.begin;
    ctx->results[i] = ctx->rule->bf16_state(task, ctx->prep);
    return;
  }
  if (t.staged) {
    ctx->results[i] = staged_pass(*ctx, ch, t, task);
    return;
  }
  ctx->results[i] = ctx->rule->pass[ctx->pass][t.dtype](task, ctx->prep);
}

struct UnitContext {
  const WorkUnit* units;
  ChunkFn fn;
  void* ctx;
};

void unit_task(void* c, std::size_t u) {
  auto* x = static_cast<UnitContext*>(c);
  for (std::size_t i = x->units[u].first; i < x->units[u].last; ++i) x->fn(x->ctx, i);
}

// Chunk partial sums are added in chunk order: the same for any thread count.
void reduce(const std::vector<ChunkResult>& r, std::size_t n_items, double* sumsq, std::uint64_t* nonfinite) {
  double s = 0.0;
  std::uint64_t n = 0;
  for (std::size_t i = 0; i < n_items; ++i) {
    s += r[i].sumsq;
    n += r[i].nonfinite;
  }
  *sumsq = s;
  *nonfinite = n;
}

// A pass's sums: per tensor, its chunks' sums added in chunk order; per
// group and globally, every chunk's sum (of the group's tensors) added in
// one running total in chunk order (the order of the norm).
// fastadapt.reference: tensor_sum and global_sum.
void reduce_sums(const std::vector<ChunkResult>& r, const std::vector<ChunkRef>& items, int pass,
                 int nsums, const std::vector<std::uint32_t>& tensor_group, std::vector<double>* tensor_sums,
                 std::vector<double>* group_sums, std::vector<double>* global_sums) {
  for (std::size_t i = 0; i < items.size(); ++i) {
    double* ts = tensor_sums->data() + items[i].tensor * kSumsPerTensor + pass * kMaxSums;
    double* grs = group_sums->data() + tensor_group[items[i].tensor] * kSumsPerTensor + pass * kMaxSums;
    double* gs = global_sums->data() + pass * kMaxSums;
    for (int j = 0; j < nsums; ++j) {
      ts[j] += r[i].sums[j];
      grs[j] += r[i].sums[j];
      gs[j] += r[i].sums[j];
    }
  }
}

}  // namespace

double clip_scale(double norm, double max_norm) {
  const double denom = (std::isnan(norm) || norm > max_norm) ? norm : max_norm;
  return max_norm / denom;
}

void plan_units(const std::vector<ChunkRef>& chunks, std::vector<WorkUnit>* units) {
  units->clear();
  std::size_t first = 0, elements = 0;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    elements += chunks[i].size;
    if (elements >= kChunk) {
      units->push_back({first, i + 1});
      first = i + 1;
      elements = 0;
    }
  }
  if (first < chunks.size()) units->push_back({first, chunks.size()});
}

void run_chunks(const std::vector<WorkUnit>& units, std::size_t total_elements, ChunkFn fn, void* ctx) {
  UnitContext uc{units.data(), fn, ctx};
  if (total_elements < kMinParallelElements || units.size() < 2) {
    for (std::size_t u = 0; u < units.size(); ++u) unit_task(&uc, u);
  } else {
    ThreadPool::instance().parallel_for(units.size(), unit_task, &uc);
  }
}

void plan_chunks(const std::vector<std::size_t>& sizes, std::vector<ChunkRef>* chunks) {
  chunks->clear();
  for (std::size_t t = 0; t < sizes.size(); ++t)
    for (std::size_t b = 0; b < sizes[t]; b += kChunk)
      chunks->push_back({static_cast<std::uint32_t>(t), b, std::min(kChunk, sizes[t] - b)});
}

Stepper::Stepper(const std::string& rule) : rule_(-1), rule_name_(rule), info_(nullptr) {
  const auto& rules = active_kernels().rules;
  for (std::size_t r = 0; r < rules.size(); ++r)
    if (rule == rules[r].info->name) rule_ = static_cast<int>(r);
  if (rule_ < 0) throw py::value_error("unknown rule '" + rule + "'");
  info_ = rules[rule_].info;
  while (nslots_ < kMaxSlots && info_->slots[nslots_]) ++nslots_;
}

unsigned Stepper::slot_mask(unsigned flags, int ndim) const { return info_->slot_mask(flags, ndim); }

namespace {

TensorShape shape_of(py::handle p) {
  const auto a = py::reinterpret_borrow<py::array>(p);
  TensorShape sh{1, 1, 1, static_cast<int>(a.ndim())};
  if (sh.ndim >= 1) sh.cols = static_cast<std::size_t>(a.shape(sh.ndim - 1));
  if (sh.ndim >= 2) sh.rows = static_cast<std::size_t>(a.shape(sh.ndim - 2));
  for (int d = 0; d + 2 < sh.ndim; ++d) sh.batch *= static_cast<std::size_t>(a.shape(d));
  return sh;
}

// Elements of a state buffer of this shape kind for a tensor of shape sh.
std::size_t slot_elements(SlotShape kind, const TensorShape& sh, std::size_t size) {
  switch (kind) {
    case kLikeParam: return size;
    case kRowStats: return sh.batch * sh.rows;
    case kColStats: return sh.batch * sh.cols;
  }
  return size;
}

}  // namespace

void Stepper::check_inputs(const py::sequence& keys, const py::list& params,
                           const py::list& grads, const py::list& states,
                           const IntArray& tensor_group, const DoubleArray& group_scalars,
                           const FlagArray& group_flags, const py::object& state_scales,
                           const py::object& masters, const py::object& rounding, std::int64_t step,
                           const py::object& grad_addresses) {
  const std::size_t n = params.size();
  // Gradients given by address (Optimizer._update_at, for fastadapt.torch):
  // grads[i] is the object that owns the memory (kept alive for the call) and
  // grad_addresses[i] its start, which the caller has checked holds the
  // param's dtype and element count contiguously. Making a NumPy view per
  // gradient only for this call to take it apart was most of the torch
  // adapter's own work with new gradients every step.
  PyObject* addrs = nullptr;
  if (!grad_addresses.is_none()) {
    if (!PyList_Check(grad_addresses.ptr()) || static_cast<std::size_t>(PyList_GET_SIZE(grad_addresses.ptr())) != n)
      throw py::value_error("internal: grad_addresses must be None or a list per tensor");
    addrs = grad_addresses.ptr();
  }
  if (grads.size() != n || keys.size() != n || static_cast<std::size_t>(tensor_group.size()) != n ||
      tensor_group.ndim() != 1 || group_flags.ndim() != 1)
    throw py::value_error("internal: params, grads, keys and groups differ in length");
  if (states.size() != static_cast<std::size_t>(nslots_))
    throw py::value_error("internal: expected one entry per state slot of the rule");
  const std::size_t ngroups = static_cast<std::size_t>(group_flags.size());
  if (group_scalars.ndim() != 2 || static_cast<std::size_t>(group_scalars.shape(0)) != ngroups ||
      group_scalars.shape(1) != kMaxScalars)
    throw py::value_error("internal: group scalars must have shape (groups, kMaxScalars)");

  // Copy group data into our own buffers (reused between steps).
  scalars_.assign(group_scalars.data(), group_scalars.data() + ngroups * kMaxScalars);
  flags_.assign(group_flags.data(), group_flags.data() + ngroups);

  tensors_.clear();
  tensor_group_.clear();
  sizes_.clear();
  params_view_.clear();
  keep_alive_.clear();
  const std::int32_t* groups = tensor_group.data();
  py::object slot_lists[kMaxSlots];
  bool has_slot[kMaxSlots] = {};
  for (int s = 0; s < nslots_; ++s) {
    slot_lists[s] = states[s];
    has_slot[s] = !slot_lists[s].is_none();
    if (has_slot[s] && (!PyList_Check(slot_lists[s].ptr()) ||
                        static_cast<std::size_t>(PyList_GET_SIZE(slot_lists[s].ptr())) != n))
      throw py::value_error("internal: each state slot must be None or a list per tensor");
  }
  // Low-precision extras: per slot None or a list per tensor of absmax arrays
  // (8-bit slots); a list per tensor of float32 master weights or None; and
  // (seed, [stochastic per tensor]) or None.
  auto per_tensor_list = [&](const py::object& o, const char* what) {
    if (!PyList_Check(o.ptr()) || static_cast<std::size_t>(PyList_GET_SIZE(o.ptr())) != n)
      throw py::value_error(std::string("internal: ") + what + " must be None or a list per tensor");
  };
  py::object scale_lists[kMaxSlots];
  if (!state_scales.is_none()) {
    if (!PyList_Check(state_scales.ptr()) || static_cast<int>(PyList_GET_SIZE(state_scales.ptr())) != nslots_)
      throw py::value_error("internal: state_scales must be None or a list per state slot");
    for (int s = 0; s < nslots_; ++s) {
      scale_lists[s] = py::reinterpret_borrow<py::object>(PyList_GET_ITEM(state_scales.ptr(), s));
      if (!scale_lists[s].is_none()) per_tensor_list(scale_lists[s], "state_scales[slot]");
    }
  }
  if (!masters.is_none()) per_tensor_list(masters, "masters");
  std::uint64_t seed = 0;
  py::object stochastic;
  if (!rounding.is_none()) {
    const py::tuple r = rounding.cast<py::tuple>();
    if (r.size() != 2) throw py::value_error("internal: rounding must be (seed, [flag per tensor])");
    seed = r[0].cast<std::uint64_t>();
    stochastic = r[1];
    per_tensor_list(stochastic, "rounding flags");
  }
  bool single_pass = info_->passes == 1 && info_->pass_kind[0] == kPerChunk;
  for (std::size_t i = 0; i < n; ++i) {
    const KeyRef pw{"params", &keys, i};
    const KeyRef gw{"grads", &keys, i};
    py::handle p = params[i];
    const ArrayView pv = check_float_array(p, pw, /*writeable=*/true, /*low_precision=*/true);
    // float64 params compute in float64; float32, bfloat16 and float16 ones
    // in float32, with grads in any of those three.
    const DType compute = pv.dtype == kF64 ? kF64 : kF32;
    const unsigned low = (1u << kF32) | (1u << kBF16) | (1u << kF16);
    ArrayView gv;
    if (addrs) {
      gv = ArrayView{static_cast<char*>(PyLong_AsVoidPtr(PyList_GET_ITEM(addrs, static_cast<Py_ssize_t>(i)))),
                     pv.size, pv.nbytes, pv.dtype};
      if (gv.data == nullptr) {
        if (PyErr_Occurred()) throw py::error_already_set();
        if (pv.size) throw py::value_error("internal: " + gw.str() + " has a null address");
      }
    } else {
      gv = check_matching_array(grads[i], gw, p, pv, pw, /*writeable=*/false, nullptr,
                                compute == kF64 ? 1u << kF64 : low);
    }
    if (groups[i] < 0 || static_cast<std::size_t>(groups[i]) >= ngroups)
      throw py::value_error("internal: group index out of range");
    TensorPlan t{pv.data, gv.data, {}, pv.size, compute, static_cast<std::uint32_t>(groups[i]),
                 shape_of(p)};
    t.pstore = pv.dtype;
    t.gstore = gv.dtype;
    for (int s = 0; s < kMaxSlots; ++s) t.sstore[s] = compute;
    const unsigned need = info_->slot_mask(flags_[t.group], t.shape.ndim);
    for (int s = 0; s < nslots_; ++s) {
      if (!(need & (1u << s))) continue;
      const char* name = info_->slots[s];
      py::handle item = has_slot[s] ? py::handle(PyList_GET_ITEM(slot_lists[s].ptr(), i)) : py::none();
      if (item.is_none())
        throw py::value_error(std::string("internal: optimizer state '") + name + "' is missing");
      const KeyRef sw{name, &keys, i};
      ArrayView sv;
      if (info_->slot_shape[s] == kLikeParam) {
        ArrayView cv = pv;
        cv.dtype = compute;
        sv = check_matching_array(
            item, sw, p, cv, pw, true,
            "the parameter changed since the optimizer state was created; call opt.reset() "
            "(or load a matching state_dict)",
            compute == kF64 ? 1u << kF64 : (1u << kF32) | (1u << kBF16) | (1u << kU8));
        if (sv.dtype != compute) {
          if (!single_pass)
            throw py::type_error(sw.str() + ": " + dtype_name(sv.dtype) + " state needs a single-pass element-wise "
                                 "rule; '" + rule_name_ + "' keeps float32 state");
          t.staged = true;
        }
        if (sv.dtype == kU8) {
          py::handle sc = scale_lists[s] ? py::handle(PyList_GET_ITEM(scale_lists[s].ptr(), i)) : py::none();
          const std::size_t blocks = (pv.size + kQBlock - 1) / kQBlock;
          if (sc.is_none() || !py::isinstance<py::array_t<float>>(sc))
            throw py::type_error(sw.str() + ": 8-bit state needs its float32 block scales; call opt.reset() "
                                 "(or load a matching state_dict)");
          auto sa = py::reinterpret_borrow<py::array>(sc);
          DType sdt;
          if (!storage_dtype(sa, &sdt) || sdt != kF32 || sa.ndim() != 1 ||
              static_cast<std::size_t>(sa.shape(0)) != blocks || !(sa.flags() & py::array::c_style) ||
              !sa.writeable())
            throw py::value_error(sw.str() + ": its block scales must be a writeable float32 array of shape (" +
                                  std::to_string(blocks) + ",) (one per " + std::to_string(kQBlock) +
                                  " elements), got " + std::string(py::str(sa.dtype())) + " of shape " +
                                  shape_str(sc) + "; call opt.reset() (or load a matching state_dict)");
          t.scale[s] = static_cast<float*>(sa.mutable_data());
          keep_alive_.push_back(py::reinterpret_borrow<py::object>(sc));
        }
        t.sstore[s] = sv.dtype;
      } else {
        // Row or column statistics: the param's dtype (else TypeError, as for
        // param-shaped state) and its shape with the last axis (rows) or the
        // second-to-last (columns) of length 1 (else ValueError).
        sv = check_float_array(item, sw, true);
        const ArrayView pv_c{pv.data, pv.size, pv.nbytes, compute};
        const ArrayView& pv = pv_c;  // row/column statistics are kept in the compute type
        const std::string fix =
            "the parameter changed since the optimizer state was created; call opt.reset() "
            "(or load a matching state_dict)";
        auto dtype_str = [](DType d) { return std::string(d == kF32 ? "float32" : "float64"); };
        if (sv.dtype != pv.dtype)
          throw py::type_error(sw.str() + ": expected " + dtype_str(pv.dtype) + " (the dtype of " + pw.str() +
                               "), got " + dtype_str(sv.dtype) + "; " + fix);
        const auto pa = py::reinterpret_borrow<py::array>(p);
        const auto sa = py::reinterpret_borrow<py::array>(item);
        const py::ssize_t nd = pa.ndim();
        bool fits = sv.size == slot_elements(info_->slot_shape[s], t.shape, pv.size);
        std::string expected = "(" + std::to_string(slot_elements(info_->slot_shape[s], t.shape, pv.size)) +
                               " elements)";
        if (nd >= 2) {
          const py::ssize_t unit = info_->slot_shape[s] == kRowStats ? nd - 1 : nd - 2;
          fits = sa.ndim() == nd;
          expected = "(";
          for (py::ssize_t d = 0; d < nd; ++d) {
            const py::ssize_t want = d == unit ? 1 : pa.shape(d);
            fits = fits && sa.shape(d) == want;
            expected += (d ? ", " : "") + std::to_string(want);
          }
          expected += ")";
        }
        if (!fits)
          throw py::value_error(sw.str() + ": expected shape " + expected + " (what the rule keeps for " +
                                pw.str() + " of shape " + shape_str(p) + "), got " + shape_str(item) + "; " + fix);
      }
      if (overlaps(sv, gv))
        throw py::value_error(sw.str() + ": optimizer state shares memory with " + gw.str() +
                              "; call opt.reset() or load a fresh state_dict");
      t.s[s] = sv.data;
    }
    if (!masters.is_none()) {
      py::handle mh = PyList_GET_ITEM(masters.ptr(), i);
      if (!mh.is_none()) {
        if (t.pstore == kF32 || t.pstore == kF64)
          throw py::value_error(pw.str() + ": master weights are kept for bfloat16/float16 params only, this one "
                                "is " + dtype_name(t.pstore));
        ArrayView cv = pv;
        cv.dtype = kF32;
        const ArrayView mv = check_matching_array(
            mh, KeyRef{"master_param", &keys, i}, p, cv, pw, true,
            "the parameter changed since the optimizer state was created; call opt.reset() "
            "(or load a matching state_dict)", 1u << kF32);
        t.master = reinterpret_cast<float*>(mv.data);
        keep_alive_.push_back(py::reinterpret_borrow<py::object>(mh));
      }
    }
    if (stochastic) {
      if (py::bool_(py::reinterpret_borrow<py::object>(PyList_GET_ITEM(stochastic.ptr(), i)))) {
        if (t.pstore != kBF16)
          throw py::value_error(pw.str() + ": stochastic rounding is for bfloat16 params, this one is " +
                                dtype_name(t.pstore));
        t.stochastic = true;
        t.rounding_key = rounding_key(seed, static_cast<std::uint64_t>(step), static_cast<std::uint32_t>(i));
      }
    }
    t.staged = t.staged || t.pstore != compute || t.gstore != compute || t.master;
    if (t.staged && compute == kF32 && t.pstore == kF32 && t.gstore == kF32 && !t.master && single_pass) {
      bool all_bf16 = true;
      for (int s = 0; s < nslots_; ++s)
        if (t.s[s] && info_->slot_shape[s] == kLikeParam) all_bf16 = all_bf16 && t.sstore[s] == kBF16;
      t.bf16_state = all_bf16;
    }
    keep_alive_.push_back(py::reinterpret_borrow<py::object>(p));
    keep_alive_.push_back(py::reinterpret_borrow<py::object>(grads[i]));
    for (int s = 0; s < nslots_; ++s)
      if (t.s[s]) keep_alive_.push_back(py::reinterpret_borrow<py::object>(PyList_GET_ITEM(slot_lists[s].ptr(), i)));
    tensors_.push_back(t);
    tensor_group_.push_back(t.group);
    sizes_.push_back(pv.size);
    params_view_.push_back(pv);
  }
  check_param_overlap(keys);
}

// Two parameters sharing memory would be updated twice (or raced on); a grad
// overlapping another key's parameter would be read while it is written.
// The address order of the parameters is recomputed only when some parameter
// array changed since the last check that passed. Empty arrays own no memory
// and stay out of the order (they would hide a neighbouring overlap).
void Stepper::check_param_overlap(const py::sequence& keys) {
  const std::size_t n = params_view_.size();
  bool same = last_params_view_.size() == n;
  for (std::size_t i = 0; same && i < n; ++i)
    same = params_view_[i].data == last_params_view_[i].data &&
           params_view_[i].nbytes == last_params_view_[i].nbytes;
  if (!same) {
    last_params_view_.clear();  // nothing cached until this check passes
    order_.clear();
    for (std::size_t i = 0; i < n; ++i)
      if (params_view_[i].nbytes > 0) order_.push_back(i);
    std::sort(order_.begin(), order_.end(), [&](std::size_t a, std::size_t b) {
      return params_view_[a].data < params_view_[b].data;
    });
    // Sorted by start, non-empty: any overlap shows between neighbours.
    for (std::size_t k = 1; k < order_.size(); ++k) {
      if (overlaps(params_view_[order_[k - 1]], params_view_[order_[k]]))
        throw py::value_error(KeyRef{"params", &keys, order_[k]}.str() + " shares memory with " +
                              KeyRef{"params", &keys, order_[k - 1]}.str() +
                              "; every parameter must be its own array");
    }
    last_params_view_ = params_view_;
  }
  // Each gradient against the parameters (binary search in address order).
  for (std::size_t i = 0; i < n; ++i) {
    const TensorPlan& t = tensors_[i];
    if (t.size == 0) continue;
    const ArrayView gv{const_cast<char*>(static_cast<const char*>(t.g)), t.size,
                       t.size * elem_size(t.gstore), t.gstore};
    auto it = std::upper_bound(order_.begin(), order_.end(), gv.data,
                               [&](const char* x, std::size_t k) { return x < params_view_[k].data; });
    // Candidates: the parameter starting at or before the grad, then those
    // starting inside it.
    if (it != order_.begin()) --it;
    for (; it != order_.end() && params_view_[*it].data < gv.data + gv.nbytes; ++it) {
      if (*it != i && overlaps(gv, params_view_[*it]))
        throw py::value_error(KeyRef{"grads", &keys, i}.str() + " shares memory with " +
                              KeyRef{"params", &keys, *it}.str() +
                              "; the gradient must be a separate array (pass g.copy())");
    }
  }
}

py::tuple Stepper::step(const py::sequence& keys, const py::list& params, const py::list& grads,
                        const py::list& states, const IntArray& tensor_group,
                        const DoubleArray& group_scalars, const FlagArray& group_flags,
                        int policy, double max_norm, bool track_norm, std::int64_t t,
                        CountArray counts, DoubleArray last_norm, const py::object& tensor_scalars,
                        const py::object& state_scales, const py::object& masters, const py::object& rounding,
                        const py::object& grad_addresses) {
  const int me = static_cast<int>(getpid());
  int owner = 0;
  if (!busy_pid_.compare_exchange_strong(owner, me)) {
    if (owner == me || !busy_pid_.compare_exchange_strong(owner, me))
      throw std::runtime_error("this optimizer is already stepping in another thread; "
                               "use one optimizer per thread");
  }
  struct Release {
    Stepper* s;
    ~Release() {
      s->keep_alive_.clear();  // GIL held: we are back in Python's thread
      s->busy_pid_.store(0);
    }
  } release{this};
  if (policy < kPropagate || policy > kRaise) throw py::value_error("internal: bad policy");
  if (counts.ndim() != 1 || counts.shape(0) != kNumCounts || !counts.writeable() ||
      last_norm.ndim() != 1 || last_norm.shape(0) != 1 || !last_norm.writeable())
    throw py::value_error("internal: counters must be writeable int64[5] and float64[1]");
  check_inputs(keys, params, grads, states, tensor_group, group_scalars, group_flags, state_scales, masters,
               rounding, t, grad_addresses);
  const bool has_tensor_scalars = info_->tensor_scalars[0] != nullptr;
  DoubleArray tensor_scalars_out;
  if (has_tensor_scalars) {
    // Checked exactly (no conversion: the write-back must reach the caller's array).
    if (tensor_scalars.is_none() || !py::isinstance<DoubleArray>(tensor_scalars))
      throw py::value_error("internal: this rule needs its tensor scalars (float64 array)");
    tensor_scalars_out = py::reinterpret_borrow<DoubleArray>(tensor_scalars);
    if (tensor_scalars_out.ndim() != 2 || static_cast<std::size_t>(tensor_scalars_out.shape(0)) != tensors_.size() ||
        tensor_scalars_out.shape(1) != kMaxTensorScalars || !tensor_scalars_out.writeable() ||
        !(tensor_scalars_out.flags() & py::array::c_style))
      throw py::value_error("internal: tensor scalars must be a writeable C-contiguous float64 (tensors, " +
                            std::to_string(kMaxTensorScalars) + ") array");
    tensor_scalars_.assign(tensor_scalars_out.data(), tensor_scalars_out.data() + tensors_.size() * kMaxTensorScalars);
  }

  const bool clip = std::isfinite(max_norm) && max_norm > 0;
  const RuleKernels& rule = active_kernels().rules[rule_];
  const RuleInfo& info = *rule.info;
  bool per_tensor = false;
  for (int k = 0; k < info.passes; ++k) per_tensor |= info.pass_kind[k] == kPerTensor;
  if (sizes_ != planned_sizes_) {
    plan_chunks(sizes_, &chunks_);
    plan_units(chunks_, &units_);
    tensor_items_.clear();
    for (std::size_t i = 0; i < sizes_.size(); ++i)
      tensor_items_.push_back({static_cast<std::uint32_t>(i), 0, sizes_[i]});
    plan_units(tensor_items_, &tensor_units_);
    planned_sizes_ = sizes_;
  }
  results_.resize(per_tensor ? std::max(chunks_.size(), tensor_items_.size()) : chunks_.size());
  bool any_sums = false;
  for (int k = 0; k < info.passes; ++k) any_sums |= info.sums[k] > 0;
  const int ngroups = static_cast<int>(flags_.size());
  if (any_sums) {  // (zeroed per step; rules without reductions skip it)
    tensor_sums_.assign(tensors_.size() * kSumsPerTensor, 0.0);
    group_sums_.assign(static_cast<std::size_t>(ngroups) * kSumsPerTensor, 0.0);
    global_sums_.assign(kSumsPerTensor, 0.0);
  }
  std::size_t total = 0;
  for (std::size_t s : sizes_) total += s;

  StepContext ctx{&active_kernels(), &rule, 0, tensors_.data(), chunks_.data(), results_.data(),
                  scalars_.data(), flags_.data(), tensor_sums_.data(), global_sums_.data(),
                  has_tensor_scalars ? tensor_scalars_.data() : nullptr,
                  GradPrep{}, policy == kZero ? kSkipAndCount : kSumOnly};
  const PassSums hook_view{0, ngroups, scalars_.data(), flags_.data(), tensors_.size(), tensor_group_.data(),
                           has_tensor_scalars ? tensor_scalars_.data() : nullptr, tensor_sums_.data(),
                           group_sums_.data(), global_sums_.data()};
  int status = kStepped;
  double sumsq = 0.0;
  std::uint64_t nonfinite = 0;
  std::int64_t first_bad = -1;
  {
    py::gil_scoped_release nogil;
    // The norm rides on the first pass when that pass reads every gradient
    // element once, chunk by chunk (then its lanes are the norm's lanes);
    // otherwise a pre-pass computes it.
    const bool fused_norm = info.pass_kind[0] == kPerChunk;
    const bool prepass = clip || policy == kSkip || policy == kRaise || (track_norm && !fused_norm);
    if (prepass) {
      run_chunks(units_, total, prepass_task, &ctx);
      reduce(results_, chunks_.size(), &sumsq, &nonfinite);
      // skip/raise: a NaN or Inf anywhere makes the sum of squares non-finite
      // (float64 squares of huge finite values can too), so the pass that
      // counts them runs only then; counting in every step costs ~8%.
      if ((policy == kSkip || policy == kRaise) && !std::isfinite(sumsq)) {
        ctx.prepass_mode = kSumAndCount;
        run_chunks(units_, total, prepass_task, &ctx);
        reduce(results_, chunks_.size(), &sumsq, &nonfinite);
      }
      if (nonfinite > 0 && (policy == kSkip || policy == kRaise)) {
        status = policy == kSkip ? kSkipped : kNonfiniteFound;
        for (std::size_t c = 0; c < chunks_.size(); ++c)
          if (results_[c].nonfinite) { first_bad = chunks_[c].tensor; break; }
      }
    }
    if (status == kStepped) {
      ctx.prep.zero_nonfinite = policy == kZero;
      ctx.prep.clip = clip;
      ctx.prep.scale = clip ? clip_scale(std::sqrt(sumsq), max_norm) : 1.0;
      for (int k = 0; k < info.passes; ++k) {
        const bool whole = info.pass_kind[k] == kPerTensor;
        const std::vector<ChunkRef>& items = whole ? tensor_items_ : chunks_;
        ctx.pass = k;
        ctx.chunks = items.data();
        // Only the first pass accumulates the norm and counts non-finite values.
        ctx.prep.track_norm = k == 0 && track_norm && !prepass;
        run_chunks(whole ? tensor_units_ : units_, total, pass_task, &ctx);
        if (k == 0 && !prepass) reduce(results_, items.size(), &sumsq, &nonfinite);
        if (info.sums[k] > 0)
          reduce_sums(results_, items, k, info.sums[k], tensor_group_, &tensor_sums_, &group_sums_, &global_sums_);
        if (info.after_pass) {
          PassSums view = hook_view;
          view.pass = k;
          info.after_pass(view);
        }
      }
    }
  }
  const bool have_norm = track_norm || clip || policy == kSkip || policy == kRaise;
  // Commit the counters (GIL held; nothing below can raise before return).
  if (status != kNonfiniteFound) {
    std::int64_t* c = counts.mutable_data();
    const std::int64_t counted = policy == kPropagate ? 0 : static_cast<std::int64_t>(nonfinite);
    if (status == kStepped) c[kCountStep] = t;
    else c[kCountSkipped] += 1;
    c[kCountTotalNonfinite] += counted;
    c[kCountLastNonfinite] = counted;
    c[kCountHaveNorm] = have_norm ? 1 : 0;
    *last_norm.mutable_data() = have_norm ? std::sqrt(sumsq) : 0.0;
    if (has_tensor_scalars && status == kStepped)
      std::copy(tensor_scalars_.begin(), tensor_scalars_.end(), tensor_scalars_out.mutable_data());
  }
  return py::make_tuple(status, have_norm ? py::object(py::float_(std::sqrt(sumsq))) : py::object(py::none()),
                        nonfinite, first_bad);
}

}  // namespace fastadapt
