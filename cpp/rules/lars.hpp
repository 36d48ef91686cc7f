// LARS (docs/algorithms.md, "LARS"): optax's lars. Two passes: the first sums
// ||p||^2 and ||u||^2 of each tensor (u = g [+ wd * p]); the second rereads g
// and p, recomputes u and applies the trust ratio, the learning rate and the
// momentum trace.
#pragma once

#include "trust_ratio.hpp"

struct LARS {
  // kDecay: weight_decay_mask and weight_decay != 0; kTrust: trust_ratio_mask.
  enum Flag : unsigned { kDecay = 1u << 0, kTrust = 1u << 1, kNesterov = 1u << 2 };
  enum ScalarSlot { kWd, kLr, kTrustCoefficient, kEps, kMomentum };

  static unsigned slot_mask(unsigned, int) { return 0b1u; }

  static constexpr RuleInfo info = {
      "lars",
      {"trace"},
      {kLikeParam},
      {"wd", "lr", "trust_coefficient", "eps", "momentum"},
      {"decay", "trust", "nesterov"},
      2,
      {kPerChunk, kPerChunk},
      {2, 0},
      slot_mask,
  };

  template <int Pass, class T>
  static ChunkResult pass(const ChunkTask& t, const GradPrep& gp) {
    T* p = static_cast<T*>(t.p);
    const T* g = static_cast<const T*>(t.g);
    T* trace = static_cast<T*>(t.s[0]);
    const double* s = t.scalars;
    const T wd = T(s[kWd]);
    const bool decayed = t.flags & kDecay, trust = t.flags & kTrust, nesterov = t.flags & kNesterov;
    const bool maximize = t.flags & kMaximize;
    if constexpr (Pass == 0) {
      // Every gradient element is read here once (the norm and the non-finite
      // count ride on this pass), also where no trust ratio is needed.
      const T* const streams[] = {g, trust ? p : g};
      return run_chunk<T, 2>(t.n, gp, maximize, streams, [&](auto& pr, std::size_t i, int k) {
        using W = VecOf<decltype(pr)>;
        const W gi = pr.grad(g, i, k);
        if (!trust) return;
        const W pi = W::load(p + i);
        pr.sum[0].add(pi, k);
        pr.sum[1].add(decayed ? gi + W::set1(wd) * pi : gi, k);
      });
    } else {
      const double* sums = t.tensor_sums;  // pass 0's: ||p||^2, ||u||^2
      const double ratio = trust ? trust_ratio(sums[0], sums[1], s[kTrustCoefficient], s[kEps]) : 1.0;
      const T neg_step = T(-(s[kLr] * ratio)), mom = T(s[kMomentum]);
      const T* const streams[] = {g, p, trace};
      return run_chunk<T>(t.n, gp, maximize, streams, [&](auto& pr, std::size_t i, int k) {
        using W = VecOf<decltype(pr)>;
        const W gi = pr.grad(g, i, k);
        W pi = W::load(p + i);
        const W d = W::set1(neg_step) * (decayed ? gi + W::set1(wd) * pi : gi);
        const W tr = d + W::set1(mom) * W::load(trace + i);
        tr.store(trace + i);
        pi = pi + (nesterov ? d + W::set1(mom) * tr : tr);
        pi.store(p + i);
      });
    }
  }
};
