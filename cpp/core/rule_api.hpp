// What a rule is, to the machinery: ISA-independent declarations shared by the
// rules (cpp/rules), the SIMD layer (cpp/simd), the stepper, dispatch and the
// bindings. Nothing here depends on target flags.
//
// A rule (cpp/rules/<name>.hpp) describes itself with a RuleInfo (its state
// buffers, scalars, flags and passes) and implements its passes as one
// template over the element type; the SIMD layer instantiates it once per ISA
// and dtype. The stepper runs the passes in order over all tensors of a step,
// with the reductions a pass asks for summed between passes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace fastadapt {

// Work is cut into chunks of this many elements per tensor. The chunking does
// not depend on the thread count, and every sum (the gradient norm, a rule's
// reductions) is accumulated per chunk in kNormLanes float64 lanes, chunk sums
// added in chunk order; so every thread count and every ISA path gives the same
// bits. fastadapt.reference reproduces exactly this order.
constexpr std::size_t kChunk = 16384;
constexpr int kNormLanes = 16;
// Below this many elements a step runs on the calling thread: waking the pool
// costs more than it saves (measured: 1000 tensors x 100 ran slower on 2 threads).
constexpr std::size_t kMinParallelElements = 8 * kChunk;
// Software prefetch distance of the element loops (prefetcht0 on every
// stream read). Hardware prefetch alone left Adam at ~88% of a copy loop's
// bandwidth; 2, 4 and 8 KiB ahead were measured, 4 KiB was best (f32 and f64).
// prefetchnta / prefetchw hints were measured 3x slower.
constexpr std::size_t kPrefetchBytes = 4096;

// kF32 and kF64 are the compute types (kernels exist for them); the others
// are storage only (cpp/core/lowp.hpp): bfloat16/float16 params, grads and
// state are widened to float32 around the float32 kernel, uint8 is 8-bit
// block-quantized state.
enum DType : int { kF32 = 0, kF64 = 1, kBF16 = 2, kF16 = 3, kU8 = 4 };
constexpr std::size_t elem_size(DType d) {
  return d == kF64 ? 8 : d == kF32 ? 4 : d == kU8 ? 1 : 2;
}
inline const char* dtype_name(DType d) {
  switch (d) {
    case kF32: return "float32";
    case kF64: return "float64";
    case kBF16: return "bfloat16";
    case kF16: return "float16";
    case kU8: return "uint8";
  }
  return "?";
}

// Limits of a rule's description (raise them freely; they size small arrays).
constexpr int kMaxSlots = 5;       // state buffers per tensor
constexpr int kMaxScalars = 16;    // float64 scalars per group, rounded to the dtype once
constexpr int kMaxRuleFlags = 8;   // the rule's own switches, bits 0..7 of the group flags
constexpr int kMaxPasses = 3;      // element passes per step
constexpr int kMaxSums = 4;        // per-tensor sums a pass may emit
constexpr int kMaxTensorScalars = 8;  // float64 values a rule keeps per tensor across steps (DAdaptAdaGrad: 7)

// The one switch every rule shares: ascend instead of descend (the gradient
// pre-processing negates the gradient). A rule's own flags are bits 0.. in
// the order of RuleInfo::flags.
constexpr unsigned kMaximize = 1u << 31;

// The shape of a state buffer, relative to its parameter of shape
// (..., R, C): like the parameter, or one value per row (..., R, 1), or one
// per column (..., 1, C) (factored statistics, e.g. Adafactor).
enum SlotShape : int { kLikeParam = 0, kRowStats = 1, kColStats = 2 };

// How a pass runs: over fixed chunks of every tensor (element-wise work,
// parallel within a tensor), or once per whole tensor (work that walks rows
// and columns; parallel across tensors only).
enum PassKind : int { kPerChunk = 0, kPerTensor = 1 };

struct PassSums;

struct RuleInfo {
  const char* name;                     // the rule's public name ("adam")
  const char* slots[kMaxSlots];         // state buffer names, as the reference implementation calls them
  SlotShape slot_shape[kMaxSlots];
  const char* scalars[kMaxScalars];     // names of the per-group scalars, in slot order
  const char* flags[kMaxRuleFlags];     // names of the rule's flags: bit i is flags[i]
  int passes;                           // 1..kMaxPasses
  PassKind pass_kind[kMaxPasses];
  int sums[kMaxPasses];                 // per-tensor sums each pass emits (0..kMaxSums)
  // Which state slots (bit s = slot s) a tensor of `ndim` dimensions uses in
  // a group with these flags.
  unsigned (*slot_mask)(unsigned flags, int ndim);
  // Values the rule learns and keeps per tensor from step to step (the
  // learning-rate-free rules' d, DoG's rbar and G): float64, carried by the
  // optimizer as state, in before the step, written back when it commits.
  const char* tensor_scalars[kMaxTensorScalars] = {};
  // Called once after each pass, on one thread, with that pass's sums
  // reduced: turns sums into the scalars later passes use (a new step size)
  // and the tensor scalars the step carries forward. nullptr: none.
  void (*after_pass)(const PassSums&) = nullptr;
  // State slots (bit s = slot s) that are never negative (second moments):
  // 8-bit state quantizes them with the unsigned map, one more bit of
  // resolution (cpp/core/lowp.hpp); the others with the signed map.
  unsigned nonnegative_slots = 0;
};

// What a rule's after_pass hook sees. The sums are indexed
// [pass * kMaxSums + j] within a row; scalars and tensor_scalars are the
// step's own copies: what the hook writes there, later passes read (through
// ChunkTask) and, for tensor_scalars, the optimizer keeps when the step commits.
struct PassSums {
  int pass;                           // the pass that just ran
  int ngroups;
  double* scalars;                    // [group][kMaxScalars]
  const std::uint32_t* flags;         // [group]
  std::size_t ntensors;
  const std::uint32_t* tensor_group;  // [tensor]
  double* tensor_scalars;             // [tensor][kMaxTensorScalars]
  const double* tensor_sums;          // [tensor][kMaxPasses * kMaxSums]
  const double* group_sums;           // [group][kMaxPasses * kMaxSums]
  const double* global_sums;          // [kMaxPasses * kMaxSums]
};

// A tensor of shape (d0, ..., dn-2, dn-1) seen as `batch` matrices of
// `rows` x `cols` (a 1-D tensor is one row; a scalar one element).
struct TensorShape {
  std::size_t batch, rows, cols;
  int ndim;
};

// How the step treats the gradient before the update rule (docs/algorithms.md,
// "Gradient pre-processing"); maximize is a group flag.
struct QMap;
// Low-precision streams of a chunk (cpp/core/lowp.hpp). The kernel reads and
// writes float32 scratch; the element loop (run_chunk) widens each stream's
// next block of kNormLanes elements into it just before the kernel's body
// runs there, and rounds (or, per kQBlock block, quantizes) what the body
// wrote just after, so every stored stream is read and written in the same
// interleaved sweep as the float32 ones (no extra pass over memory).
struct StagedStream {
  DType store = kF32;            // kBF16, kF16, or kU8 (8-bit state)
  char* data = nullptr;          // the stored buffer at the chunk's start
  float* scratch = nullptr;      // the float32 values the kernel sees, chunk-relative
  float* absmax = nullptr;       // kU8: the scale of the chunk's first block
  const QMap* map = nullptr;     // kU8
  bool read = false, write = false;
  bool stochastic = false;       // kBF16 written with stochastic rounding:
  std::uint32_t key = 0;         //   its key, and
  std::uint64_t first = 0;       //   the chunk's offset in its tensor
};
struct Staging {
  int n = 0;
  StagedStream s[2 + kMaxSlots];
};

// The lanes of a chunk's sums between calls of one pass on consecutive
// pieces of the chunk (the staged low-precision path runs a chunk in pieces
// whose float32 scratch fits L1): each call starts from them and leaves them
// there instead of combining, so the pieces sum exactly as one call would.
struct ChunkCarry {
  double norm[kNormLanes] = {};
  double sums[kMaxSums][kNormLanes] = {};
  std::uint64_t bad = 0;
};

struct GradPrep {
  bool zero_nonfinite = false;  // replace NaN/Inf by 0 and count them
  bool clip = false;            // multiply by scale
  double scale = 1.0;
  bool track_norm = true;       // accumulate sum of squares of the (sanitized) grad
  const Staging* staging = nullptr;  // low-precision streams converted around the body (or none)
  ChunkCarry* carry = nullptr;       // continue (and leave) the lanes here instead of combining them
};

// One chunk of one tensor (or the whole tensor, for a per-tensor pass).
// p, g and the param-shaped slots point at the chunk start; row and column
// statistics slots point at the tensor's own start (index them by
// (begin + i) / cols and so on).
struct ChunkTask {
  void* p;
  const void* g;
  void* s[kMaxSlots];
  std::size_t n;              // elements in this chunk
  std::size_t begin;          // offset of the chunk in its tensor
  TensorShape shape;
  const double* scalars;      // the group's scalars
  unsigned flags;             // the group's flags
  // Sums of the passes before this one: tensor_sums[pass * kMaxSums + j]
  // for this tensor, global_sums[...] over all tensors (same layout).
  const double* tensor_sums;
  const double* global_sums;
  const double* tensor_scalars;  // this tensor's row of the rule's tensor scalars (after the hooks so far)
};

struct ChunkResult {
  double sumsq;               // the gradient norm's lanes, combined (pass 0 only)
  std::uint64_t nonfinite;
  double sums[kMaxSums];      // the pass's reductions over this chunk, combined
};

using PassFn = ChunkResult (*)(const ChunkTask&, const GradPrep&);
// How the sum-of-squares pass treats NaN/Inf: add them (the norm propagates
// them; nothing counted), count them too, or count them and add 0 instead.
enum NonfiniteMode : int { kSumOnly = 0, kSumAndCount = 1, kSkipAndCount = 2 };
using SumSqFn = ChunkResult (*)(const void* g, std::size_t n, NonfiniteMode mode);
using SanitizeFn = std::uint64_t (*)(void* g, std::size_t n);
using ScaleFn = void (*)(void* g, std::size_t n, double scale);
// Benchmark yardstick: reads `nreads` buffers and writes `nwrites` buffers of
// n elements each (their sum, no arithmetic worth the name).
constexpr int kMaxRoofBuffers = 10;  // Prodigy moves 9 arrays in and 4 out per element
using RoofFn = void (*)(char* const* reads, int nreads, char* const* writes, int nwrites, std::size_t n);


// One rule in one ISA: its description and its passes per dtype.
struct RuleKernels {
  const RuleInfo* info;
  PassFn pass[kMaxPasses][2];  // [pass][dtype]
  // A single-pass element-wise rule may also read and write bfloat16 state
  // itself (float32 params and grads, every param-shaped slot bfloat16):
  // widened and rounded in registers, with the bits of widen/narrow. Staged
  // conversions run as passes of their own next to a body bound by its
  // divider; in the body they overlap with it. Null: staged as any other.
  PassFn bf16_state = nullptr;
};

// Low-precision storage loops (cpp/simd/lowp_loops.hpp); n elements, the
// quantized ones from the start of a kQBlock block.
struct LowpFns {
  void (*widen)(DType src, const void* in, float* out, std::size_t n);
  void (*narrow)(DType dst, const float* in, void* out, std::size_t n);
  void (*narrow_sr)(const float* in, void* out, std::size_t n, std::uint32_t key, std::uint64_t first);
  void (*dequant)(const QMap& map, const std::uint8_t* codes, const float* absmax, float* out, std::size_t n);
  void (*quant)(const QMap& map, const float* in, std::uint8_t* codes, float* absmax, std::size_t n);
};

struct KernelTable {
  const char* name;
  std::vector<RuleKernels> rules;  // in the order of cpp/rules/registry.hpp
  SumSqFn sumsq[2];
  SanitizeFn sanitize[2];
  ScaleFn scale[2];
  RoofFn roof[2];
  LowpFns lowp;
};

// One table per ISA translation unit.
const KernelTable& kernels_baseline();
const KernelTable& kernels_avx2();
const KernelTable& kernels_avx512();

// The fixed pairwise order in which the 16 lanes of a chunk are added.
// static: each ISA unit keeps its own copy, so the linker never hands code built
// for AVX-512 to the baseline path.
static inline double combine_lanes(const double* lane) {
  double s8[8], s4[4];
  for (int j = 0; j < 8; ++j) s8[j] = lane[j] + lane[j + 8];
  for (int j = 0; j < 4; ++j) s4[j] = s8[j] + s8[j + 4];
  return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

}  // namespace fastadapt
