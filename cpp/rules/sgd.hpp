// SGD with momentum (docs/algorithms.md, "SGD"): torch.optim.SGD's definition.
#pragma once

struct SGD {
  // kInitBuffer: the first step with momentum, buf = g (set by the Python
  // layer when it has just created the buffer).
  enum Flag : unsigned { kL2 = 1u << 0, kMomentum = 1u << 1, kNesterov = 1u << 2, kInitBuffer = 1u << 3 };
  enum ScalarSlot { kWd, kMomentumFactor, kOneMinusDampening, kLr };

  static unsigned slot_mask(unsigned flags, int) { return (flags & kMomentum) ? 0b001u : 0u; }

  static constexpr RuleInfo info = {
      "sgd",
      {"momentum_buffer"},
      {kLikeParam},
      {"wd", "momentum", "one_minus_dampening", "lr"},
      {"l2", "momentum", "nesterov", "init_buffer"},
      1,
      {kPerChunk},
      {0},
      slot_mask,
  };

  // pass<0, float, std::uint16_t>: bfloat16 state read and written in the
  // body (RuleKernels::bf16_state).
  static constexpr bool kFusedBf16State = true;

  // S: the state's storage (T, or std::uint16_t for bfloat16 bits).
  template <int Pass, class T, class S = T>
  static ChunkResult pass(const ChunkTask& t, const GradPrep& gp) {
    T* p = static_cast<T*>(t.p);
    const T* g = static_cast<const T*>(t.g);
    S* buf = static_cast<S*>(t.s[0]);
    const double* s = t.scalars;
    const T wd = T(s[kWd]), mom = T(s[kMomentumFactor]), omd = T(s[kOneMinusDampening]), lr = T(s[kLr]);
    const bool l2 = t.flags & kL2, momentum = t.flags & kMomentum, nesterov = t.flags & kNesterov,
               init = t.flags & kInitBuffer;
    auto body = [&](auto& pr, std::size_t i, int k) {
      using W = VecOf<decltype(pr)>;
      W gi = pr.grad(g, i, k);
      W pi = W::load(p + i);
      if (l2) gi = gi + W::set1(wd) * pi;
      if (momentum) {
        const W bi = init ? gi : W::set1(mom) * load_state<W>(buf + i) + W::set1(omd) * gi;
        store_state(buf + i, bi);
        gi = nesterov ? gi + W::set1(mom) * bi : bi;
      }
      pi = pi - W::set1(lr) * gi;
      pi.store(p + i);
    };
    if constexpr (std::is_same_v<S, T>) {
      const T* const streams[] = {g, p, (momentum && !init) ? buf : p};
      return run_chunk<T>(t.n, gp, t.flags & kMaximize, streams, body);
    } else {
      return run_chunk_bf16_state(t.n, gp, t.flags & kMaximize, g, p, body);
    }
  }
};
