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

  // pass<0, float, std::uint16_t>: bfloat16 state read and written in the
  // body (RuleKernels::bf16_state).
  static constexpr bool kFusedBf16State = true;

  // S: the state's storage (T, or std::uint16_t for bfloat16 bits).
  template <int Pass, class T, class S = T>
  static ChunkResult pass(const ChunkTask& t, const GradPrep& gp) {
    T* p = static_cast<T*>(t.p);
    const T* g = static_cast<const T*>(t.g);
    S* sq = static_cast<S*>(t.s[0]);
    S* ga = static_cast<S*>(t.s[1]);
    S* buf = static_cast<S*>(t.s[2]);
    const double* s = t.scalars;
    const T wd = T(s[kWd]), alpha = T(s[kAlpha]), oma = T(s[kOneMinusAlpha]), eps = T(s[kEps]),
            mom = T(s[kMomentumFactor]), lr = T(s[kLr]);
    const bool l2 = t.flags & kL2, centered = t.flags & kCentered, momentum = t.flags & kMomentum;
    // Optional buffers fall back to sq (already fetched) when unused.
    auto body = [&](auto& pr, std::size_t i, int k) {
      using W = VecOf<decltype(pr)>;
      W gi = pr.grad(g, i, k);
      W pi = W::load(p + i);
      if (l2) gi = gi + W::set1(wd) * pi;
      const W sqi = W::set1(alpha) * load_state<W>(sq + i) + W::set1(oma) * (gi * gi);
      store_state(sq + i, sqi);
      W avg;
      if (centered) {
        const W gai = W::set1(alpha) * load_state<W>(ga + i) + W::set1(oma) * gi;
        store_state(ga + i, gai);
        avg = vsqrt(sqi - gai * gai) + W::set1(eps);
      } else {
        avg = vsqrt(sqi) + W::set1(eps);
      }
      if (momentum) {
        const W bi = W::set1(mom) * load_state<W>(buf + i) + gi / avg;
        store_state(buf + i, bi);
        pi = pi - W::set1(lr) * bi;
      } else {
        pi = pi - W::set1(lr) * (gi / avg);
      }
      pi.store(p + i);
    };
    if constexpr (std::is_same_v<S, T>) {
      const T* const streams[] = {g, p, sq, centered ? ga : sq, momentum ? buf : sq};
      return run_chunk<T>(t.n, gp, t.flags & kMaximize, streams, body);
    } else {
      return run_chunk_bf16_state(t.n, gp, t.flags & kMaximize, g, p, body);
    }
  }
};
