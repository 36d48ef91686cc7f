// Adamax (docs/algorithms.md, "Adamax"): torch.optim.Adamax's definition.
// Included by cpp/rules/registry.hpp inside an ISA namespace (see loops.hpp).
#pragma once

struct Adamax {
  enum Flag : unsigned { kL2 = 1u << 0 };
  enum ScalarSlot { kB1, kOneMinusB1, kB2, kEps, kStepSize, kWd };

  static unsigned slot_mask(unsigned, int) { return 0b11u; }

  static constexpr RuleInfo info = {
      "adamax",
      {"exp_avg", "exp_inf"},
      {kLikeParam, kLikeParam},
      {"b1", "one_minus_b1", "b2", "eps", "step_size", "wd"},
      {"l2"},
      1,
      {kPerChunk},
      {0},
      slot_mask,
      {},
      nullptr,
      0b10u,  // never negative (exp_inf): the unsigned 8-bit map
  };

  template <int Pass, class T>
  static ChunkResult pass(const ChunkTask& t, const GradPrep& gp) {
    T* p = static_cast<T*>(t.p);
    const T* g = static_cast<const T*>(t.g);
    T* m = static_cast<T*>(t.s[0]);
    T* u = static_cast<T*>(t.s[1]);
    const double* s = t.scalars;
    const T b1 = T(s[kB1]), omb1 = T(s[kOneMinusB1]), b2 = T(s[kB2]), eps = T(s[kEps]),
            step = T(s[kStepSize]), wd = T(s[kWd]);
    const bool l2 = t.flags & kL2;
    const T* const streams[] = {g, p, m, u};
    return run_chunk<T>(t.n, gp, t.flags & kMaximize, streams, [&](auto& pr, std::size_t i, int k) {
      using W = VecOf<decltype(pr)>;
      W gi = pr.grad(g, i, k);
      W pi = W::load(p + i);
      if (l2) gi = gi + W::set1(wd) * pi;
      const W mi = W::set1(b1) * W::load(m + i) + W::set1(omb1) * gi;
      const W ui = max_nan(W::set1(b2) * W::load(u + i), vabs(gi) + W::set1(eps));
      mi.store(m + i);
      ui.store(u + i);
      pi = pi - W::set1(step) * (mi / ui);
      pi.store(p + i);
    });
  }
};
