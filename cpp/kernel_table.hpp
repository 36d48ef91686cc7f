// ISA-independent declarations shared by the kernels, the dispatcher and the
// stepper. Nothing here depends on target flags, so it is safe to include from
// every translation unit.
#pragma once
#include <cstddef>
#include <cstdint>

namespace fastadapt {

// Work is cut into chunks of this many elements per tensor. The chunking does
// not depend on the thread count, and the gradient norm is accumulated per
// chunk in kNormLanes float64 lanes, so every thread count and every ISA path
// gives the same bits. fastadapt.reference reproduces exactly this order.
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

enum Algo : int { kAdam = 0, kAdaGrad = 1, kRMSProp = 2, kSGD = 3, kNumAlgos = 4 };
enum DType : int { kF32 = 0, kF64 = 1 };
constexpr std::size_t elem_size(DType d) { return d == kF32 ? 4 : 8; }

// Per-group switches, set by the Python layer from the hyperparameters.
enum GroupFlag : unsigned {
  kL2 = 1u << 0,          // g = g + wd * p
  kDecoupled = 1u << 1,   // AdamW: p = p * (1 - lr * wd)
  kAmsgrad = 1u << 2,
  kMaximize = 1u << 3,
  kCentered = 1u << 4,    // RMSProp
  kMomentum = 1u << 5,    // RMSProp, SGD
  kNesterov = 1u << 6,    // SGD
  kInitBuffer = 1u << 7,  // SGD: first step with momentum, buf = g
};

// Scalar slots per algorithm (float64, rounded to the array dtype once).
constexpr int kMaxScalars = 10;
enum AdamScalar { kAdamB1, kAdamOneMinusB1, kAdamB2, kAdamOneMinusB2, kAdamBc2Sqrt,
                  kAdamEps, kAdamStepSize, kAdamWd, kAdamDecay };
enum AdaGradScalar { kAdaGradWd, kAdaGradClr, kAdaGradEps };
enum RMSPropScalar { kRmsWd, kRmsAlpha, kRmsOneMinusAlpha, kRmsEps, kRmsMomentum, kRmsLr };
enum SGDScalar { kSgdWd, kSgdMomentum, kSgdOneMinusDampening, kSgdLr };

// How the step treats the gradient before the update rule (docs/algorithms.md,
// "Gradient pre-processing"); maximize is a group flag.
struct GradPrep {
  bool zero_nonfinite = false;  // replace NaN/Inf by 0 and count them
  bool clip = false;            // multiply by scale
  double scale = 1.0;
  bool track_norm = true;       // accumulate sum of squares of the (sanitized) grad
};

// One chunk of one tensor: pointers already offset to the chunk start.
struct ChunkTask {
  void* p;
  const void* g;
  void* s[3];
  std::size_t n;
  const double* scalars;
  unsigned flags;
};

struct ChunkResult {
  double sumsq;        // lanes combined in the fixed order of combine_lanes
  std::uint64_t nonfinite;
};

using StepFn = ChunkResult (*)(const ChunkTask&, const GradPrep&);
// How the sum-of-squares pass treats NaN/Inf: add them (the norm propagates
// them; nothing counted), count them too, or count them and add 0 instead.
enum NonfiniteMode : int { kSumOnly = 0, kSumAndCount = 1, kSkipAndCount = 2 };
using SumSqFn = ChunkResult (*)(const void* g, std::size_t n, NonfiniteMode mode);
using SanitizeFn = std::uint64_t (*)(void* g, std::size_t n);
using ScaleFn = void (*)(void* g, std::size_t n, double scale);
// Benchmark yardstick: reads `nreads` buffers and writes `nwrites` buffers of
// n elements each (their sum, no arithmetic worth the name).
constexpr int kMaxRoofBuffers = 6;
using RoofFn = void (*)(char* const* reads, int nreads, char* const* writes, int nwrites, std::size_t n);

struct KernelTable {
  const char* name;
  StepFn step[kNumAlgos][2];  // [algo][dtype]
  SumSqFn sumsq[2];
  SanitizeFn sanitize[2];
  ScaleFn scale[2];
  RoofFn roof[2];
};

// One table per ISA translation unit.
const KernelTable& kernels_baseline();
const KernelTable& kernels_avx2();
const KernelTable& kernels_avx512();

// The fixed pairwise order in which the 16 norm lanes of a chunk are added.
// static: each ISA unit keeps its own copy, so the linker never hands code built
// for AVX-512 to the baseline path.
static inline double combine_lanes(const double* lane) {
  double s8[8], s4[4];
  for (int j = 0; j < 8; ++j) s8[j] = lane[j] + lane[j + 8];
  for (int j = 0; j < 4; ++j) s4[j] = s8[j] + s8[j + 4];
  return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

}  // namespace fastadapt
