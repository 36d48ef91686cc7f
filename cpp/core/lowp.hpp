// Low-precision storage, ISA-independent part: the storage types a tensor's
// param, grad and state may have, the 8-bit block quantization maps, and the
// stochastic-rounding hash. The element loops (cpp/simd/lowp_loops.hpp) and
// fastadapt.reference.lowp implement the same operations bit for bit.
//
// 8-bit state (Dettmers et al., "8-bit Optimizers via Block-wise
// Quantization", ICLR 2022): a state buffer is cut into blocks of kQBlock
// elements from the tensor's start; each block keeps its absolute maximum
// (float32) and one byte per element, the index of the nearest value of a
// sorted 256-entry "dynamic" map times that maximum. The signed map (first
// moments) and the unsigned map (second moments: one more bit of fraction)
// are the paper's dynamic tree maps (values below).
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace fastadapt {

constexpr std::size_t kQBlock = 256;
static_assert(16384 % kQBlock == 0, "a quantization block never straddles a chunk");

// The map in closed form, so both directions are a few vector operations
// (no table gathers). The non-zero magnitudes come in levels L = 0..6 of
// n_L values (signed: 2^L, unsigned: 2^(L+1)) spanning [0.1, 1] x 10^(L-6),
// plus level 7, the value 1 alone. Value k of level L, in float32 operations:
//   (0.1f + step[L] * (k + 0.5f)) * invdec[L]
// (the paper's means of linspace(0.1, 1, n_L + 1), to float32 rounding).
// A magnitude a in [0, 1] is coded by its level (the number of thresholds
// thr[L] <= a, less one; none: the code of 0) and, within it,
//   k = clamp(rint((a * dec[L] - 0.1f) * invstep[L] - 0.5f), 0, last[L])
// (the nearest value), its index among the magnitudes being offset[L] + k.
// One exception to "nearest": the unsigned map (second moments) codes a
// positive value below half its smallest non-zero value as that value, not 0.
// A second moment stored as 0 under a non-zero first moment would make Adam's
// step m / eps: measured, a rarely active MNIST pixel's weight moved 790 lr in
// one step (v / absmax ~ 1e-9, m / absmax ~ 1e-4). Rounded up, v errs on the
// safe side (a smaller step).
constexpr int kQLevels = 8;

struct QMap {
  bool is_signed;
  float value[256];              // code -> value, sorted (signed: value[127] == 0; unsigned: value[0] == 0)
  float thr[kQLevels];           // a >= thr[L]: level L or above (thr[0]: half the smallest magnitude)
  float dec[kQLevels];           // 10^(6-L) (1 for L = 7)
  float invdec[kQLevels];        // float32(10^(L-6))
  float step[kQLevels];          // float32(0.9 / n_L) (1.8 for L = 7: 0.1f + 0.9f is 1.0f)
  float invstep[kQLevels];       // float32(n_L / 0.9)
  std::int32_t offset[kQLevels]; // index of the level's first value among the magnitudes (0 is index 0)
  std::int32_t last[kQLevels];   // n_L - 1

  // The same level search in a vector-friendly form (AVX-512 quantizer; built
  // and checked in qmap.cpp). The octave of a in [0, 1], E = bits(a) >> 23,
  // holds at most one threshold, so with e = max(E, 96) - 96 (0..31; no
  // threshold lies below 2^-30) the count of thresholds <= a is
  //   oct_base[e] + (bits(a) >= oct_thr[e])
  // oct_base: the thresholds <= 2^(E-127); oct_thr: the bits of the one
  // strictly inside the octave (0x7f800000 if none).
  alignas(64) std::int32_t oct_base[32];
  alignas(64) std::int32_t oct_thr[32];
  // Level tables indexed by that count (level count - 1); row 0 (below thr[0])
  // has offset 0 and last 0, which gives the magnitude index 0; rows 9..15: 0.
  // k = rint(t) is never negative past a level's threshold (checked), so only
  // the upper clamp, min(k, last), is needed. The signed map's rows give the
  // code directly: cnt_offset = 127 + offset (a positive x: code 127 + j) and
  // cnt_offset_neg = 127 - min(offset, 127) (a negative x: that minus k, which
  // is 127 - min(j, 127); checked: min() only bites where last is 0).
  alignas(64) float cnt_dec[16];
  alignas(64) float cnt_invstep[16];
  alignas(64) std::int32_t cnt_offset[16];
  alignas(64) std::int32_t cnt_offset_neg[16];
  alignas(64) std::int32_t cnt_last[16];
  // value[]'s float32 bits cut into byte planes (plane b: byte b of each
  // value, little-endian) for the AVX-512 VBMI byte-table dequantization.
  alignas(64) std::uint8_t vplane[4][256];
};

// The two maps, built once (thread-safe static initialization).
const QMap& qmap(bool is_signed);

// AVX-512 extensions the avx512 path's low-precision loops use beyond AVX-512F, one
// bit each; set at load to what the CPU has. Tests clear them (_core._lowp_ext)
// to run the AVX-512F-only code on the same machine.
constexpr unsigned kLowpVbmi = 1;  // AVX512_VBMI + AVX512BW: byte-table dequantization
constexpr unsigned kLowpBw = 2;    // AVX512BW: bfloat16 narrowing by word permutes
extern std::atomic<unsigned> lowp_ext;
unsigned lowp_ext_supported();

// "lowbias32" (Chris Wellons' integer hash constants): the stochastic-rounding
// noise of element i of a tensor is lowbias32(i ^ key) & 0xFFFF, with the key
// of (seed, step, tensor) below.
inline std::uint32_t lowbias32(std::uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

inline std::uint32_t rounding_key(std::uint64_t seed, std::uint64_t step, std::uint32_t tensor) {
  const std::uint32_t s = static_cast<std::uint32_t>(seed) ^ static_cast<std::uint32_t>(seed >> 32);
  const std::uint32_t t = static_cast<std::uint32_t>(step) ^ static_cast<std::uint32_t>(step >> 32);
  return lowbias32(s ^ lowbias32(t ^ lowbias32(tensor + 0x632be5abu)));
}

}  // namespace fastadapt
