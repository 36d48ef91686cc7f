// RMSProp (docs/algorithms.md, "RMSProp"): torch.optim.RMSprop's definition.
#pragma once

struct RMSprop {
  enum Flag : unsigned { kL2 = 1u << 0, kCentered = 1u << 1, kMomentum = 1u << 2 };
  enum ScalarSlot { kWd, kAlpha, kOneMinusAlpha, kEps, kMomentumFactor, kLr };

  static unsigned slot_mask(unsigned flags, int) {
    return 0b001u | ((flags & kCentered) ? 0b010u : 0u) | ((flags & kMomentum) ? 0b100u : 0u);
  }

  static constexpr RuleInfo info = {
      "rmsprop",
      {"square_avg", "grad_avg", "momentum_buffer"},
      {kLikeParam, kLikeParam, kLikeParam},
      {"wd", "alpha", "one_minus_alpha", "eps", "momentum", "lr"},
      {"l2", "centered", "momentum"},
      1,
      {kPerChunk},
      {0},
      slot_mask,
      {},
      nullptr,
      0b001u,  // never negative (square_avg): the unsigned 8-bit map
  };

  template <int Pass, class T>
  static ChunkResult pass(const ChunkTask& t, const GradPrep& gp) {
    T* p = static_cast<T*>(t.p);
    const T* g = static_cast<const T*>(t.g);
    T* sq = static_cast<T*>(t.s[0]);
    T* ga = static_cast<T*>(t.s[1]);
    T* buf = static_cast<T*>(t.s[2]);
    const double* s = t.scalars;
    const T wd = T(s[kWd]), alpha = T(s[kAlpha]), oma = T(s[kOneMinusAlpha]), eps = T(s[kEps]),
            mom = T(s[kMomentumFactor]), lr = T(s[kLr]);
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
};
