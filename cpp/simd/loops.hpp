// The element loops every rule is written with, the gradient utilities
// (norm, sanitize, scale) and the benchmark roof, all against the vector types
// of simd.hpp. An ISA translation unit (isa_*.cpp) defines FA_ISA (its
// namespace), includes this file and table.hpp, and is compiled with that
// ISA's target flags. The rules (cpp/rules) are included inside the same
// namespace, so each ISA gets its own instantiation of every rule.
#pragma once
#if !defined(FA_ISA)
#error "define FA_ISA before including loops.hpp"
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../core/lowp.hpp"
#include "../core/rule_api.hpp"

namespace fastadapt {
namespace FA_ISA {

#include "simd.hpp"
#include "lowp_loops.hpp"

// Gradient pre-processing of one element group: non-finite policy, norm
// accumulation, clip scale, maximize (docs/algorithms.md order). It also
// carries the pass's reduction accumulators (sum[j]), which a rule feeds
// with sum[j].add(x, k) (x*x) or sum[j].add_product(x, y, k).
template <class V, int NSums = 0>
struct Prep {
  using vec = V;
  using T = typename V::elem;
  bool zero, track, clip, negate;
  T scale;
  SqAcc<V> acc;
  std::array<SqAcc<V>, NSums> sum;  // sized per rule: no cost for rules without reductions
  std::uint64_t bad = 0;

  Prep(const GradPrep& gp, bool maximize)
      : zero(gp.zero_nonfinite), track(gp.track_norm), clip(gp.clip), negate(maximize),
        scale(static_cast<T>(gp.scale)) {}

  FA_INLINE V grad(const T* g, std::size_t i, int k) {
    V x = V::load(g + i);
    if (zero) x = finite_or_zero(x, bad);
    if (track) acc.add(x, k);
    if (clip) x = x * V::set1(scale);
    if (negate) x = -x;
    return x;
  }
};

// Prefetches the cache lines of block [i, i + kNormLanes) kPrefetchBytes ahead.
template <class T, std::size_t N>
FA_INLINE void prefetch_block(const T* const (&streams)[N], std::size_t i) {
  constexpr std::size_t kBlockBytes = kNormLanes * sizeof(T);
  for (std::size_t s = 0; s < N; ++s) {
    const char* base = reinterpret_cast<const char*>(streams[s] + i) + kPrefetchBytes;
    for (std::size_t off = 0; off < kBlockBytes; off += 64) __builtin_prefetch(base + off, 0, 3);
  }
}

// Widen the staged streams' elements [i, i + len) of the chunk into their
// scratch (8-bit codes: times their block's scale), prefetching each stored
// stream as far ahead as the kernels prefetch theirs.
inline void stage_in(const Staging& st, std::size_t i, std::size_t len) {
  for (int k = 0; k < st.n; ++k) {
    const StagedStream& s = st.s[k];
    const std::size_t w = elem_size(s.store);
    for (std::size_t off = i * w; off < (i + len) * w; off += 64) __builtin_prefetch(s.data + off + kPrefetchBytes, 0, 3);
    if (!s.read) continue;
    if (s.store == kU8)
      dequant_block(*s.map, reinterpret_cast<const std::uint8_t*>(s.data) + i, s.absmax[i / kQBlock], s.scratch + i, len);
    else
      widen_chunk(s.store, s.data + i * w, s.scratch + i, len);
  }
}

// Round the written streams' [i, i + len) back; an 8-bit stream quantizes
// each block once the kernel has written all of it (at its end, or the
// chunk's).
inline void stage_out(const Staging& st, std::size_t i, std::size_t len, std::size_t n) {
  for (int k = 0; k < st.n; ++k) {
    const StagedStream& s = st.s[k];
    if (!s.write) continue;
    if (s.store == kU8) {
      const std::size_t end = i + len;
      if (end % kQBlock == 0 || end == n) {
        const std::size_t b0 = (end - 1) / kQBlock * kQBlock;
        quant_chunk(*s.map, s.scratch + b0, reinterpret_cast<std::uint8_t*>(s.data) + b0, s.absmax + b0 / kQBlock,
                    end - b0);
      }
    } else if (s.stochastic) {
      narrow_sr_chunk(s.scratch + i, s.data + 2 * i, len, s.key, s.first + i);
    } else {
      narrow_chunk(s.store, s.scratch + i, s.data + 2 * i, len);
    }
  }
}

// Runs body(prep, i, k) over n elements: blocks of kNormLanes elements with
// the widest vector, then the tail one element at a time, continuing the
// same lanes. `streams` are the arrays the rule reads (prefetched ahead).
// NSums: how many of prep.sum[] the rule feeds (returned combined in
// ChunkResult::sums, in the fixed lane order).
template <class T, int NSums = 0, std::size_t N, class Body>
FA_INLINE ChunkResult run_chunk(std::size_t n, const GradPrep& gp, bool maximize,
                                const T* const (&streams)[N], Body&& body) {
  using V = Widest<T>;
  constexpr int kPerBlock = kNormLanes / V::W;
  static_assert(NSums >= 0 && NSums <= kMaxSums, "at most kMaxSums sums per pass");
  Prep<V, NSums> pv(gp, maximize);
  if (gp.carry) {
    pv.acc.from_lanes(gp.carry->norm);
    for (int j = 0; j < NSums; ++j) pv.sum[j].from_lanes(gp.carry->sums[j]);
    pv.bad = gp.carry->bad;
  }
  const Staging* st = gp.staging;
  std::size_t i = 0;
  if (!st) {
    for (; i + kNormLanes <= n; i += kNormLanes) {
      prefetch_block(streams, i);
      for (int k = 0; k < kPerBlock; ++k) body(pv, i + static_cast<std::size_t>(k) * V::W, k);
    }
  } else {
    // Low-precision streams: converted a kQBlock block at a time around the
    // body's loop over it (the conversions stay out of the body's loop; the
    // block's scratch stays in L1; 8-bit blocks are quantized whole).
    const std::size_t vec_end = n - n % kNormLanes;
    for (std::size_t s0 = 0; s0 < vec_end; s0 += kQBlock) {
      const std::size_t s1 = s0 + kQBlock < vec_end ? s0 + kQBlock : vec_end;
      stage_in(*st, s0, s1 - s0);
      for (i = s0; i < s1; i += kNormLanes) {
        prefetch_block(streams, i);
        for (int k = 0; k < kPerBlock; ++k) body(pv, i + static_cast<std::size_t>(k) * V::W, k);
      }
      stage_out(*st, s0, s1 - s0, n);
    }
    i = vec_end;
  }
  Prep<Scalar<T>, NSums> ps(gp, maximize);
  pv.acc.to_lanes(ps.acc.lane);
  for (int j = 0; j < NSums; ++j) pv.sum[j].to_lanes(ps.sum[j].lane);
  ps.bad = pv.bad;
  const std::size_t tail = i;
  if (st && tail < n) stage_in(*st, tail, n - tail);
  for (; i < n; ++i) body(ps, i, static_cast<int>(i % kNormLanes));
  if (st && tail < n) stage_out(*st, tail, n - tail, n);
  if (gp.carry) {
    ps.acc.to_lanes(gp.carry->norm);
    for (int j = 0; j < NSums; ++j) ps.sum[j].to_lanes(gp.carry->sums[j]);
    gp.carry->bad = ps.bad;
    return ChunkResult{0.0, 0, {}};
  }
  ChunkResult r{ps.track ? combine_lanes(ps.acc.lane) : 0.0, ps.bad, {}};
  for (int j = 0; j < NSums; ++j) r.sums[j] = combine_lanes(ps.sum[j].lane);
  return r;
}

template <class P>
using VecOf = typename std::remove_reference_t<P>::vec;

// A rule body's state access in the state's storage type S: the vector's own
// element type (a plain load/store), or std::uint16_t for bfloat16 bits,
// widened on load and rounded to nearest even on store in registers (the
// bits widen_chunk/narrow_chunk give; RuleKernels::bf16_state).
template <class W>
struct Bf16IO;
template <>
struct Bf16IO<Scalar<float>> {
  static FA_INLINE Scalar<float> load(const std::uint16_t* p) {
    return {lowp::float_of(static_cast<std::uint32_t>(*p) << 16)};
  }
  static FA_INLINE void store(std::uint16_t* p, Scalar<float> x) { *p = lowp::bf16_rne(x.v); }
};
#if defined(__AVX512F__)
template <>
struct Bf16IO<F32x16> {
  static FA_INLINE F32x16 load(const std::uint16_t* p) {
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return {_mm512_castsi512_ps(_mm512_slli_epi32(w, 16))};
  }
  static FA_INLINE void store(std::uint16_t* p, F32x16 x) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(lowp::bf16_rne16(x.v)));
  }
};
#elif defined(__AVX2__)
template <>
struct Bf16IO<F32x8> {
  static FA_INLINE F32x8 load(const std::uint16_t* p) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return {_mm256_castsi256_ps(_mm256_slli_epi32(w, 16))};
  }
  static FA_INLINE void store(std::uint16_t* p, F32x8 x) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), lowp::pack16(lowp::bf16_rne8(x.v)));
  }
};
#endif

// run_chunk for a pass<0, float, std::uint16_t> (bfloat16 state): only the
// param and grad are prefetched by address; the state's lines, half as many,
// are left to the hardware prefetcher.
template <class Body>
FA_INLINE ChunkResult run_chunk_bf16_state(std::size_t n, const GradPrep& gp, bool maximize, const float* g,
                                           const float* p, Body&& body) {
  const float* const streams[] = {g, p};
  return run_chunk<float>(n, gp, maximize, streams, body);
}

template <class W, class S>
FA_INLINE W load_state(const S* p) {
  if constexpr (std::is_same_v<S, typename W::elem>) return W::load(p);
  else return Bf16IO<W>::load(p);
}
template <class W, class S>
FA_INLINE void store_state(S* p, W x) {
  if constexpr (std::is_same_v<S, typename W::elem>) x.store(p);
  else Bf16IO<W>::store(p, x);
}

// Sum of squares (and non-finite count) of a gradient chunk, with exactly the
// lanes the step kernels use. kSkipAndCount sums as if NaN/Inf were 0.
template <class T>
ChunkResult sumsq_chunk(const void* gv, std::size_t n, NonfiniteMode mode) {
  const bool skip_nonfinite = mode == kSkipAndCount, count = mode == kSumAndCount;
  const T* g = static_cast<const T*>(gv);
  using V = Widest<T>;
  constexpr int kPerBlock = kNormLanes / V::W;
  SqAcc<V> acc;
  std::uint64_t bad = 0;
  std::size_t i = 0;
  const T* const streams[] = {g};
  for (; i + kNormLanes <= n; i += kNormLanes) {
    prefetch_block(streams, i);
    for (int k = 0; k < kPerBlock; ++k) {
      V x = V::load(g + i + static_cast<std::size_t>(k) * V::W);
      if (skip_nonfinite) x = finite_or_zero(x, bad);
      else if (count) bad += count_nonfinite(x);
      acc.add(x, k);
    }
  }
  SqAcc<Scalar<T>> tail;
  acc.to_lanes(tail.lane);
  for (; i < n; ++i) {
    Scalar<T> x = Scalar<T>::load(g + i);
    if (skip_nonfinite) x = finite_or_zero(x, bad);
    else if (count) bad += count_nonfinite(x);
    tail.add(x, static_cast<int>(i % kNormLanes));
  }
  return {combine_lanes(tail.lane), bad, {}};
}

template <class T>
std::uint64_t sanitize_chunk(void* gv, std::size_t n) {
  T* g = static_cast<T*>(gv);
  using V = Widest<T>;
  std::uint64_t bad = 0;
  std::size_t i = 0;
  for (; i + V::W <= n; i += V::W) finite_or_zero(V::load(g + i), bad).store(g + i);
  for (; i < n; ++i) finite_or_zero(Scalar<T>::load(g + i), bad).store(g + i);
  return bad;
}

template <class T>
void scale_chunk(void* gv, std::size_t n, double scale) {
  T* g = static_cast<T*>(gv);
  using V = Widest<T>;
  const T s = static_cast<T>(scale);
  std::size_t i = 0;
  for (; i + V::W <= n; i += V::W) (V::load(g + i) * V::set1(s)).store(g + i);
  for (; i < n; ++i) (Scalar<T>::load(g + i) * Scalar<T>::set1(s)).store(g + i);
}

template <class T>
void roof_chunk(char* const* reads, int nreads, char* const* writes, int nwrites, std::size_t n) {
  using V = Widest<T>;
  const T* r[kMaxRoofBuffers];
  T* w[kMaxRoofBuffers];
  for (int k = 0; k < nreads; ++k) r[k] = reinterpret_cast<const T*>(reads[k]);
  for (int k = 0; k < nwrites; ++k) w[k] = reinterpret_cast<T*>(writes[k]);
  std::size_t i = 0;
  for (; i + V::W <= n; i += V::W) {
    // The same prefetching as the update rules, so the roof stays a roof.
    if (i % kNormLanes == 0)
      for (int k = 0; k < nreads; ++k)
        for (std::size_t off = 0; off < kNormLanes * sizeof(T); off += 64)
          __builtin_prefetch(reinterpret_cast<const char*>(r[k] + i) + kPrefetchBytes + off, 0, 3);
    V s = V::load(r[0] + i);
    for (int k = 1; k < nreads; ++k) s = s + V::load(r[k] + i);
    for (int k = 0; k < nwrites; ++k) s.store(w[k] + i);
  }
  for (; i < n; ++i) {
    T s = r[0][i];
    for (int k = 1; k < nreads; ++k) s = s + r[k][i];
    for (int k = 0; k < nwrites; ++k) w[k][i] = s;
  }
}

}  // namespace FA_ISA
}  // namespace fastadapt
