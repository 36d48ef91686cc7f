// Adam and AdamW (docs/algorithms.md, "Adam"): torch.optim.Adam's definition.
// Included by cpp/rules/registry.hpp inside an ISA namespace (see loops.hpp).
#pragma once

struct Adam {
  enum Flag : unsigned { kL2 = 1u << 0, kDecoupled = 1u << 1, kAmsgrad = 1u << 2 };
  enum ScalarSlot { kB1, kOneMinusB1, kB2, kOneMinusB2, kBc2Sqrt, kEps, kStepSize, kWd, kDecay };

  static unsigned slot_mask(unsigned flags, int) { return 0b011u | ((flags & kAmsgrad) ? 0b100u : 0u); }

  static constexpr RuleInfo info = {
      "adam",
      {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"},
      {kLikeParam, kLikeParam, kLikeParam},
      {"b1", "one_minus_b1", "b2", "one_minus_b2", "bc2_sqrt", "eps", "step_size", "wd", "decay"},
      {"l2", "decoupled", "amsgrad"},
      1,
      {kPerChunk},
      {0},
      slot_mask,
      {},
      nullptr,
      0b110u,  // never negative (exp_avg_sq, max_exp_avg_sq): the unsigned 8-bit map
  };

  // pass<0, float, std::uint16_t>: bfloat16 state read and written in the
  // body (RuleKernels::bf16_state).
  static constexpr bool kFusedBf16State = true;

  // S: the state's storage (T, or std::uint16_t for bfloat16 bits).
  template <int Pass, class T, class S = T>
  static ChunkResult pass(const ChunkTask& t, const GradPrep& gp) {
    T* p = static_cast<T*>(t.p);
    const T* g = static_cast<const T*>(t.g);
    S* m = static_cast<S*>(t.s[0]);
    S* v = static_cast<S*>(t.s[1]);
    S* vmax = static_cast<S*>(t.s[2]);
    const double* s = t.scalars;
    const T b1 = T(s[kB1]), omb1 = T(s[kOneMinusB1]), b2 = T(s[kB2]), omb2 = T(s[kOneMinusB2]),
            eps = T(s[kEps]), step = T(s[kStepSize]), wd = T(s[kWd]), decay = T(s[kDecay]);
    const Divisor<T> bc2s(s[kBc2Sqrt]);
    const bool l2 = t.flags & kL2, decoupled = t.flags & kDecoupled, ams = t.flags & kAmsgrad;
    auto body = [&](auto& pr, std::size_t i, int k) {
      using W = VecOf<decltype(pr)>;
      W gi = pr.grad(g, i, k);
      W pi = W::load(p + i);
      if (l2) gi = gi + W::set1(wd) * pi;
      if (decoupled) pi = pi * W::set1(decay);
      const W mi = W::set1(b1) * load_state<W>(m + i) + W::set1(omb1) * gi;
      const W vi = W::set1(b2) * load_state<W>(v + i) + W::set1(omb2) * (gi * gi);
      store_state(m + i, mi);
      store_state(v + i, vi);
      W vv = vi;
      if (ams) {
        vv = max_nan(load_state<W>(vmax + i), vi);
        store_state(vmax + i, vv);
      }
      const W denom = div_by(vsqrt(vv), bc2s) + W::set1(eps);
      pi = pi - W::set1(step) * (mi / denom);
      pi.store(p + i);
    };
    if constexpr (std::is_same_v<S, T>) {
      const T* const streams[] = {g, p, m, v, ams ? vmax : v};
      return run_chunk<T>(t.n, gp, t.flags & kMaximize, streams, body);
    } else {
      return run_chunk_bf16_state(t.n, gp, t.flags & kMaximize, g, p, body);
    }
  }
};
