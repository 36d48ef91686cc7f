// NAdam (docs/algorithms.md, "NAdam"): torch.optim.NAdam's definition. The
// momentum schedule mu_t, mu_{t+1} and their running product are folded into
// two float64 step sizes by python/fastadapt/optim/nadam.py (the product is a
// carried per-group scalar). Included by cpp/rules/registry.hpp inside an ISA
// namespace (see loops.hpp).
#pragma once

struct NAdam {
  enum Flag : unsigned { kL2 = 1u << 0, kDecoupled = 1u << 1 };
  enum ScalarSlot { kB1, kOneMinusB1, kB2, kOneMinusB2, kBc2, kEps, kGradStep, kMomentumStep, kWd, kDecay };

  static unsigned slot_mask(unsigned, int) { return 0b11u; }

  static constexpr RuleInfo info = {
      "nadam",
      {"exp_avg", "exp_avg_sq"},
      {kLikeParam, kLikeParam},
      {"b1", "one_minus_b1", "b2", "one_minus_b2", "bc2", "eps", "grad_step", "momentum_step", "wd", "decay"},
      {"l2", "decoupled"},
      1,
      {kPerChunk},
      {0},
      slot_mask,
      {},
      nullptr,
      0b10u,  // never negative (exp_avg_sq): the unsigned 8-bit map
  };

  template <int Pass, class T>
  static ChunkResult pass(const ChunkTask& t, const GradPrep& gp) {
    T* p = static_cast<T*>(t.p);
    const T* g = static_cast<const T*>(t.g);
    T* m = static_cast<T*>(t.s[0]);
    T* v = static_cast<T*>(t.s[1]);
    const double* s = t.scalars;
    const T b1 = T(s[kB1]), omb1 = T(s[kOneMinusB1]), b2 = T(s[kB2]), omb2 = T(s[kOneMinusB2]),
            eps = T(s[kEps]), gstep = T(s[kGradStep]), mstep = T(s[kMomentumStep]), wd = T(s[kWd]),
            decay = T(s[kDecay]);
    const Divisor<T> bc2(s[kBc2]);
    const bool l2 = t.flags & kL2, decoupled = t.flags & kDecoupled;
    const T* const streams[] = {g, p, m, v};
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
      const W denom = vsqrt(div_by(vi, bc2)) + W::set1(eps);
      pi = pi - W::set1(gstep) * (gi / denom);
      pi = pi - W::set1(mstep) * (mi / denom);
      pi.store(p + i);
    });
  }
};
