// AdaGrad (docs/algorithms.md, "AdaGrad"): torch.optim.Adagrad's definition.
#pragma once

struct Adagrad {
  enum Flag : unsigned { kL2 = 1u << 0 };
  enum ScalarSlot { kWd, kClr, kEps };

  static unsigned slot_mask(unsigned, int) { return 0b001u; }

  static constexpr RuleInfo info = {
      "adagrad", {"sum"}, {kLikeParam}, {"wd", "clr", "eps"}, {"l2"}, 1, {kPerChunk}, {0}, slot_mask,
      {},
      nullptr,
      0b1u,  // never negative (sum): the unsigned 8-bit map
  };

  // pass<0, float, std::uint16_t>: bfloat16 state read and written in the
  // body (RuleKernels::bf16_state).
  static constexpr bool kFusedBf16State = true;

  // S: the state's storage (T, or std::uint16_t for bfloat16 bits).
  template <int Pass, class T, class S = T>
  static ChunkResult pass(const ChunkTask& t, const GradPrep& gp) {
    T* p = static_cast<T*>(t.p);
    const T* g = static_cast<const T*>(t.g);
    S* sum = static_cast<S*>(t.s[0]);
    const double* s = t.scalars;
    const T wd = T(s[kWd]), clr = T(s[kClr]), eps = T(s[kEps]);
    const bool l2 = t.flags & kL2;
    auto body = [&](auto& pr, std::size_t i, int k) {
      using W = VecOf<decltype(pr)>;
      W gi = pr.grad(g, i, k);
      W pi = W::load(p + i);
      if (l2) gi = gi + W::set1(wd) * pi;
      const W si = load_state<W>(sum + i) + gi * gi;
      store_state(sum + i, si);
      pi = pi - W::set1(clr) * (gi / (vsqrt(si) + W::set1(eps)));
      pi.store(p + i);
    };
    if constexpr (std::is_same_v<S, T>) {
      const T* const streams[] = {g, p, sum};
      return run_chunk<T>(t.n, gp, t.flags & kMaximize, streams, body);
    } else {
      return run_chunk_bf16_state(t.n, gp, t.flags & kMaximize, g, p, body);
    }
  }
};
