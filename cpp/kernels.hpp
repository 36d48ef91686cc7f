// The update rules of docs/algorithms.md, one template each, written once against
// the vector types of simd.hpp. An ISA translation unit defines FA_ISA (its
// namespace) and includes this file; it is compiled with that ISA's target
// flags and yields that ISA's KernelTable. Operation order is exactly the one
// docs/algorithms.md writes, so every instantiation matches fastadapt.reference.
#pragma once
#if !defined(FA_ISA)
#error "define FA_ISA before including kernels.hpp"
#endif

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "kernel_table.hpp"

namespace fastadapt {
namespace FA_ISA {

#include "simd.hpp"

// Gradient pre-processing of one element group: non-finite policy, norm
// accumulation, clip scale, maximize (docs/algorithms.md order).
template <class V>
struct Prep {
  using vec = V;
  using T = typename V::elem;
  bool zero, track, clip, negate;
  T scale;
  SqAcc<V> acc;
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

// Runs body over n elements: blocks of kNormLanes elements with the widest
// vector, then the tail one element at a time, continuing the same norm lanes.
// `streams` are the arrays the rule reads (prefetched ahead).
template <class T, std::size_t N, class Body>
FA_INLINE ChunkResult run_chunk(std::size_t n, const GradPrep& gp, bool maximize,
                                const T* const (&streams)[N], Body&& body) {
  using V = Widest<T>;
  constexpr int kPerBlock = kNormLanes / V::W;
  Prep<V> pv(gp, maximize);
  std::size_t i = 0;
  for (; i + kNormLanes <= n; i += kNormLanes) {
    prefetch_block(streams, i);
    for (int k = 0; k < kPerBlock; ++k) body(pv, i + static_cast<std::size_t>(k) * V::W, k);
  }
  Prep<Scalar<T>> ps(gp, maximize);
  pv.acc.to_lanes(ps.acc.lane);
  ps.bad = pv.bad;
  for (; i < n; ++i) body(ps, i, static_cast<int>(i % kNormLanes));
  return {ps.track ? combine_lanes(ps.acc.lane) : 0.0, ps.bad};
}

template <class P>
using VecOf = typename std::remove_reference_t<P>::vec;

template <class T>
ChunkResult adam_chunk(const ChunkTask& t, const GradPrep& gp) {
  T* p = static_cast<T*>(t.p);
  const T* g = static_cast<const T*>(t.g);
  T* m = static_cast<T*>(t.s[0]);
  T* v = static_cast<T*>(t.s[1]);
  T* vmax = static_cast<T*>(t.s[2]);
  const double* s = t.scalars;
  const T b1 = T(s[kAdamB1]), omb1 = T(s[kAdamOneMinusB1]), b2 = T(s[kAdamB2]),
          omb2 = T(s[kAdamOneMinusB2]), eps = T(s[kAdamEps]),
          step = T(s[kAdamStepSize]), wd = T(s[kAdamWd]), decay = T(s[kAdamDecay]);
  const Divisor<T> bc2s(s[kAdamBc2Sqrt]);
  const bool l2 = t.flags & kL2, decoupled = t.flags & kDecoupled, ams = t.flags & kAmsgrad;
  const T* const streams[] = {g, p, m, v, ams ? vmax : v};
  return run_chunk<T>(t.n, gp, t.flags & kMaximize, streams, [&](auto& pr, std::size_t i, int k) {
    using W = VecOf<decltype(pr)>;
    W gi = pr.grad(g, i, k);
    W pi = W::load(p + i);
    if (l2) gi = gi + W::set1(wd) * pi;
    if (decoupled) pi = pi * W::set1(decay);
    const W mi = W::set1(b1) * W::load(m + i) + W::set1(omb1) * gi;
    const W vi = W::set1(b2) * W::load(v + i) + W::set1(omb2) * (gi * gi);
    mi.store(m + i);
    vi.store(v + i);
    W vv = vi;
    if (ams) {
      vv = max_nan(W::load(vmax + i), vi);
      vv.store(vmax + i);
    }
    const W denom = div_by(vsqrt(vv), bc2s) + W::set1(eps);
    pi = pi - W::set1(step) * (mi / denom);
    pi.store(p + i);
  });
}

template <class T>
ChunkResult adagrad_chunk(const ChunkTask& t, const GradPrep& gp) {
  T* p = static_cast<T*>(t.p);
  const T* g = static_cast<const T*>(t.g);
  T* sum = static_cast<T*>(t.s[0]);
  const double* s = t.scalars;
  const T wd = T(s[kAdaGradWd]), clr = T(s[kAdaGradClr]), eps = T(s[kAdaGradEps]);
  const bool l2 = t.flags & kL2;
  const T* const streams[] = {g, p, sum};
  return run_chunk<T>(t.n, gp, t.flags & kMaximize, streams, [&](auto& pr, std::size_t i, int k) {
    using W = VecOf<decltype(pr)>;
    W gi = pr.grad(g, i, k);
    W pi = W::load(p + i);
    if (l2) gi = gi + W::set1(wd) * pi;
    const W si = W::load(sum + i) + gi * gi;
    si.store(sum + i);
    pi = pi - W::set1(clr) * (gi / (vsqrt(si) + W::set1(eps)));
    pi.store(p + i);
  });
}

template <class T>
ChunkResult rmsprop_chunk(const ChunkTask& t, const GradPrep& gp) {
  T* p = static_cast<T*>(t.p);
  const T* g = static_cast<const T*>(t.g);
  T* sq = static_cast<T*>(t.s[0]);
  T* ga = static_cast<T*>(t.s[1]);
  T* buf = static_cast<T*>(t.s[2]);
  const double* s = t.scalars;
  const T wd = T(s[kRmsWd]), alpha = T(s[kRmsAlpha]), oma = T(s[kRmsOneMinusAlpha]),
          eps = T(s[kRmsEps]), mom = T(s[kRmsMomentum]), lr = T(s[kRmsLr]);
  const bool l2 = t.flags & kL2, centered = t.flags & kCentered, momentum = t.flags & kMomentum;
  // Optional buffers fall back to sq (already fetched) when unused.
  const T* const streams[] = {g, p, sq, centered ? ga : sq, momentum ? buf : sq};
  return run_chunk<T>(t.n, gp, t.flags & kMaximize, streams, [&](auto& pr, std::size_t i, int k) {
    using W = VecOf<decltype(pr)>;
    W gi = pr.grad(g, i, k);
    W pi = W::load(p + i);
    if (l2) gi = gi + W::set1(wd) * pi;
    const W sqi = W::set1(alpha) * W::load(sq + i) + W::set1(oma) * (gi * gi);
    sqi.store(sq + i);
    W avg;
    if (centered) {
      const W gai = W::set1(alpha) * W::load(ga + i) + W::set1(oma) * gi;
      gai.store(ga + i);
      avg = vsqrt(sqi - gai * gai) + W::set1(eps);
    } else {
      avg = vsqrt(sqi) + W::set1(eps);
    }
    if (momentum) {
      const W bi = W::set1(mom) * W::load(buf + i) + gi / avg;
      bi.store(buf + i);
      pi = pi - W::set1(lr) * bi;
    } else {
      pi = pi - W::set1(lr) * (gi / avg);
    }
    pi.store(p + i);
  });
}

template <class T>
ChunkResult sgd_chunk(const ChunkTask& t, const GradPrep& gp) {
  T* p = static_cast<T*>(t.p);
  const T* g = static_cast<const T*>(t.g);
  T* buf = static_cast<T*>(t.s[0]);
  const double* s = t.scalars;
  const T wd = T(s[kSgdWd]), mom = T(s[kSgdMomentum]), omd = T(s[kSgdOneMinusDampening]),
          lr = T(s[kSgdLr]);
  const bool l2 = t.flags & kL2, momentum = t.flags & kMomentum, nesterov = t.flags & kNesterov,
             init = t.flags & kInitBuffer;
  const T* const streams[] = {g, p, (momentum && !init) ? buf : p};
  return run_chunk<T>(t.n, gp, t.flags & kMaximize, streams, [&](auto& pr, std::size_t i, int k) {
    using W = VecOf<decltype(pr)>;
    W gi = pr.grad(g, i, k);
    W pi = W::load(p + i);
    if (l2) gi = gi + W::set1(wd) * pi;
    if (momentum) {
      const W bi = init ? gi : W::set1(mom) * W::load(buf + i) + W::set1(omd) * gi;
      bi.store(buf + i);
      gi = nesterov ? gi + W::set1(mom) * bi : bi;
    }
    pi = pi - W::set1(lr) * gi;
    pi.store(p + i);
  });
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
  return {combine_lanes(tail.lane), bad};
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

inline const KernelTable& table() {
  static const KernelTable t = {
      FA_ISA_NAME,
      {{adam_chunk<float>, adam_chunk<double>},
       {adagrad_chunk<float>, adagrad_chunk<double>},
       {rmsprop_chunk<float>, rmsprop_chunk<double>},
       {sgd_chunk<float>, sgd_chunk<double>}},
      {sumsq_chunk<float>, sumsq_chunk<double>},
      {sanitize_chunk<float>, sanitize_chunk<double>},
      {scale_chunk<float>, scale_chunk<double>},
      {roof_chunk<float>, roof_chunk<double>},
  };
  return t;
}

}  // namespace FA_ISA
}  // namespace fastadapt
