// HD-Adam (docs/algorithms.md, "HD-Adam"; Baydin et al. 2018, Adam-HD):
// Adam with a learned learning rate. Two passes: pass 0 reads g (and p for
// weight decay), m, v and the last direction, sums g . d_prev, updates the
// moments and stores the new direction m_hat / (sqrt(v_hat) + eps); the hook
// moves alpha; pass 1 writes p = p - alpha * d.
#pragma once

#include "hypergradient.hpp"

struct HDAdam {
  enum Flag : unsigned { kL2 = 1u << 0 };
  enum ScalarSlot { kB1, kOneMinusB1, kB2, kOneMinusB2, kBc1, kBc2, kEps, kWd, kLr, kHypergradLr };

  static unsigned slot_mask(unsigned, int) { return 0b111u; }

  static constexpr RuleInfo info = {
      "hd_adam",
      {"exp_avg", "exp_avg_sq", "direction_prev"},
      {kLikeParam, kLikeParam, kLikeParam},
      {"b1", "one_minus_b1", "b2", "one_minus_b2", "bc1", "bc2", "eps", "wd", "lr", "hypergrad_lr"},
      {"l2"},
      2,
      {kPerChunk, kPerChunk},
      {1, 0},
      slot_mask,
      {"lr", "lr_base"},
      hypergradient::after_pass<kLr, kHypergradLr>,
  };

  template <int Pass, class T>
  static ChunkResult pass(const ChunkTask& t, const GradPrep& gp) {
    T* p = static_cast<T*>(t.p);
    const T* g = static_cast<const T*>(t.g);
    T* m = static_cast<T*>(t.s[0]);
    T* v = static_cast<T*>(t.s[1]);
    T* d = static_cast<T*>(t.s[2]);
    const bool maximize = t.flags & kMaximize;
    if constexpr (Pass == 0) {
      const double* s = t.scalars;
      const T b1 = T(s[kB1]), omb1 = T(s[kOneMinusB1]), b2 = T(s[kB2]), omb2 = T(s[kOneMinusB2]),
              eps = T(s[kEps]), wd = T(s[kWd]);
      const Divisor<T> bc1(s[kBc1]), bc2(s[kBc2]);
      const bool l2 = t.flags & kL2;
      // (streams are prefetched: p only when weight decay reads it)
      const T* const streams[] = {g, m, v, d, l2 ? p : g};
      return run_chunk<T, 1>(t.n, gp, maximize, streams, [&](auto& pr, std::size_t i, int k) {
        using W = VecOf<decltype(pr)>;
        W gi = pr.grad(g, i, k);
        if (l2) gi = gi + W::set1(wd) * W::load(p + i);
        pr.sum[0].add_product(gi, W::load(d + i), k);
        const W mi = W::set1(b1) * W::load(m + i) + W::set1(omb1) * gi;
        const W vi = W::set1(b2) * W::load(v + i) + W::set1(omb2) * (gi * gi);
        mi.store(m + i);
        vi.store(v + i);
        (div_by(mi, bc1) / (vsqrt(div_by(vi, bc2)) + W::set1(eps))).store(d + i);
      });
    } else {
      return hypergradient::step_along_direction<T>(t, gp, p, d);
    }
  }
};
