// Adadelta (docs/algorithms.md, "Adadelta"): torch.optim.Adadelta's definition.
// Included by cpp/rules/registry.hpp inside an ISA namespace (see loops.hpp).
#pragma once

struct Adadelta {
  enum Flag : unsigned { kL2 = 1u << 0 };
  enum ScalarSlot { kRho, kOneMinusRho, kEps, kLr, kWd };

  static unsigned slot_mask(unsigned, int) { return 0b11u; }

  static constexpr RuleInfo info = {
      "adadelta",
      {"square_avg", "acc_delta"},
      {kLikeParam, kLikeParam},
      {"rho", "one_minus_rho", "eps", "lr", "wd"},
      {"l2"},
      1,
      {kPerChunk},
      {0},
      slot_mask,
      {},
      nullptr,
      0b11u,  // never negative (square_avg, acc_delta): the unsigned 8-bit map
  };

  template <int Pass, class T>
  static ChunkResult pass(const ChunkTask& t, const GradPrep& gp) {
    T* p = static_cast<T*>(t.p);
    const T* g = static_cast<const T*>(t.g);
    T* sq = static_cast<T*>(t.s[0]);
    T* acc = static_cast<T*>(t.s[1]);
    const double* s = t.scalars;
    const T rho = T(s[kRho]), omr = T(s[kOneMinusRho]), eps = T(s[kEps]), lr = T(s[kLr]), wd = T(s[kWd]);
    const bool l2 = t.flags & kL2;
    const T* const streams[] = {g, p, sq, acc};
    return run_chunk<T>(t.n, gp, t.flags & kMaximize, streams, [&](auto& pr, std::size_t i, int k) {
      using W = VecOf<decltype(pr)>;
      W gi = pr.grad(g, i, k);
      W pi = W::load(p + i);
      if (l2) gi = gi + W::set1(wd) * pi;
      const W sqi = W::set1(rho) * W::load(sq + i) + W::set1(omr) * (gi * gi);
      sqi.store(sq + i);
      const W delta = vsqrt(W::load(acc + i) + W::set1(eps)) / vsqrt(sqi + W::set1(eps)) * gi;
      const W acci = W::set1(rho) * W::load(acc + i) + W::set1(omr) * (delta * delta);
      acci.store(acc + i);
      pi = pi - W::set1(lr) * delta;
      pi.store(p + i);
    });
  }
};
