// LAMB (docs/algorithms.md, "LAMB"): optax's lamb. Two passes: the first
// updates the moments and sums ||p||^2 and ||u||^2 of each tensor; the second
// recomputes u from (p, m, v), which it rereads, and applies the trust ratio.
#pragma once

#include "trust_ratio.hpp"

struct LAMB {
  enum Flag : unsigned { kDecay = 1u << 0 };
  enum ScalarSlot { kB1, kOneMinusB1, kB2, kOneMinusB2, kBc1, kBc2, kEpsRoot, kEps, kWd, kLr };

  static unsigned slot_mask(unsigned, int) { return 0b11u; }

  static constexpr RuleInfo info = {
      "lamb",
      {"mu", "nu"},
      {kLikeParam, kLikeParam},
      {"b1", "one_minus_b1", "b2", "one_minus_b2", "bc1", "bc2", "eps_root", "eps", "wd", "lr"},
      {"decay"},
      2,
      {kPerChunk, kPerChunk},
      {2, 0},
      slot_mask,
  };

  // u = (m / bc1) / (sqrt(v / bc2 + eps_root) + eps) [+ wd * p]: a function
  // of p, the updated m, v and the scalars, so both passes get the same bits.
  template <class W, class T>
  static FA_INLINE W direction(W pi, W mi, W vi, const Divisor<T>& bc1, const Divisor<T>& bc2, T eps_root, T eps,
                               T wd, bool decayed) {
    W u = div_by(mi, bc1) / (vsqrt(div_by(vi, bc2) + W::set1(eps_root)) + W::set1(eps));
    if (decayed) u = u + W::set1(wd) * pi;
    return u;
  }

  template <int Pass, class T>
  static ChunkResult pass(const ChunkTask& t, const GradPrep& gp) {
    T* p = static_cast<T*>(t.p);
    const T* g = static_cast<const T*>(t.g);
    T* m = static_cast<T*>(t.s[0]);
    T* v = static_cast<T*>(t.s[1]);
    const double* s = t.scalars;
    const T b1 = T(s[kB1]), omb1 = T(s[kOneMinusB1]), b2 = T(s[kB2]), omb2 = T(s[kOneMinusB2]),
            eps_root = T(s[kEpsRoot]), eps = T(s[kEps]), wd = T(s[kWd]);
    const Divisor<T> bc1(s[kBc1]), bc2(s[kBc2]);
    const bool decayed = t.flags & kDecay;
    const bool maximize = t.flags & kMaximize;
    if constexpr (Pass == 0) {
      const T* const streams[] = {g, p, m, v};
      return run_chunk<T, 2>(t.n, gp, maximize, streams, [&](auto& pr, std::size_t i, int k) {
        using W = VecOf<decltype(pr)>;
        const W gi = pr.grad(g, i, k);
        const W pi = W::load(p + i);
        const W mi = W::set1(b1) * W::load(m + i) + W::set1(omb1) * gi;
        const W vi = W::set1(b2) * W::load(v + i) + W::set1(omb2) * (gi * gi);
        mi.store(m + i);
        vi.store(v + i);
        pr.sum[0].add(pi, k);
        pr.sum[1].add(direction(pi, mi, vi, bc1, bc2, eps_root, eps, wd, decayed), k);
      });
    } else {
      const double* sums = t.tensor_sums;  // pass 0's: ||p||^2, ||u||^2
      const T step = T(s[kLr] * trust_ratio(sums[0], sums[1], 1.0, 0.0));
      const T* const streams[] = {p, m, v};
      return run_chunk<T>(t.n, gp, maximize, streams, [&](auto& pr, std::size_t i, int) {
        using W = VecOf<decltype(pr)>;
        const W pi = W::load(p + i);
        const W u = direction(pi, W::load(m + i), W::load(v + i), bc1, bc2, eps_root, eps, wd, decayed);
        (pi - W::set1(step) * u).store(p + i);
      });
    }
  }
};
