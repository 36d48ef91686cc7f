// RAdam (docs/algorithms.md, "RAdam"): torch.optim.RAdam's definition. The
// rectification (rho_t, r_t) is a scalar of (beta2, t): python/fastadapt/optim/radam.py
// folds it into the step size and sets `rectify` (0 or 1) per step, which picks
// the branch for every element. Included by cpp/rules/registry.hpp inside an
// ISA namespace (see loops.hpp).
#pragma once

struct RAdam {
  enum Flag : unsigned { kL2 = 1u << 0, kDecoupled = 1u << 1 };
  enum ScalarSlot { kB1, kOneMinusB1, kB2, kOneMinusB2, kEps, kRectify, kRectStep, kPlainStep, kWd, kDecay };

  static unsigned slot_mask(unsigned, int) { return 0b11u; }

  static constexpr RuleInfo info = {
      "radam",
      {"exp_avg", "exp_avg_sq"},
      {kLikeParam, kLikeParam},
      {"b1", "one_minus_b1", "b2", "one_minus_b2", "eps", "rectify", "rect_step", "plain_step", "wd", "decay"},
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
            eps = T(s[kEps]), rstep = T(s[kRectStep]), pstep = T(s[kPlainStep]), wd = T(s[kWd]),
            decay = T(s[kDecay]);
    const bool rectify = s[kRectify] != 0.0;
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
      if (rectify) pi = pi - W::set1(rstep) * (mi / (vsqrt(vi) + W::set1(eps)));
      else pi = pi - W::set1(pstep) * mi;
      pi.store(p + i);
    });
  }
};
