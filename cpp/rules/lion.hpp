// Lion (docs/algorithms.md, "Lion"): lion-pytorch's Lion, with an exact sign.
// Included by cpp/rules/registry.hpp inside an ISA namespace (see loops.hpp).
#pragma once

struct Lion {
  enum Flag : unsigned { kDecay = 1u << 0 };
  enum ScalarSlot { kB1, kOneMinusB1, kB2, kOneMinusB2, kLr, kDecayFactor };

  static unsigned slot_mask(unsigned, int) { return 0b1u; }

  static constexpr RuleInfo info = {
      "lion",
      {"exp_avg"},
      {kLikeParam},
      {"b1", "one_minus_b1", "b2", "one_minus_b2", "lr", "decay"},
      {"decay"},
      1,
      {kPerChunk},
      {0},
      slot_mask,
  };

  // sign(c) exactly, from the vector operations every ISA has (no
  // arithmetic rounds): 1 where c > 0, -1 where c < 0, +0 where c is +0 or
  // -0, and c itself where c is NaN (payload and sign kept).
  //   s = c * 2^k * 2^k   scales every nonzero c to |s| >= 1 (the smallest
  //                       subnormal included; powers of two are exact, large
  //                       values go to +-inf), keeps zeros and NaN;
  //   clamp s to [-1, 1]  with max_nan(s, -1) then -max_nan(-s, -1), which
  //                       keep a zero's sign and pass a NaN through (negated
  //                       twice, so unchanged);
  //   + 0                 turns -0 into +0 (and changes nothing else).
  template <class W>
  static FA_INLINE W exact_sign(W c) {
    using T = typename W::elem;
    // 2^100 for float (2^-149 * 2^200 >= 1), 2^600 for double (2^-1074 * 2^1200 >= 1).
    T scale;
    if constexpr (sizeof(T) == 4) scale = 0x1p100f;
    else scale = 0x1p600;
    const W big = W::set1(scale);
    const W minus_one = W::set1(T(-1));
    const W s = (c * big) * big;
    const W lo = max_nan(s, minus_one);
    return -max_nan(-lo, minus_one) + W::set1(T(0));
  }

  // pass<0, float, std::uint16_t>: bfloat16 state read and written in the
  // body (RuleKernels::bf16_state).
  static constexpr bool kFusedBf16State = true;

  // S: the state's storage (T, or std::uint16_t for bfloat16 bits).
  template <int Pass, class T, class S = T>
  static ChunkResult pass(const ChunkTask& t, const GradPrep& gp) {
    T* p = static_cast<T*>(t.p);
    const T* g = static_cast<const T*>(t.g);
    S* m = static_cast<S*>(t.s[0]);
    const double* s = t.scalars;
    const T b1 = T(s[kB1]), omb1 = T(s[kOneMinusB1]), b2 = T(s[kB2]), omb2 = T(s[kOneMinusB2]),
            lr = T(s[kLr]), decay = T(s[kDecayFactor]);
    const bool decayed = t.flags & kDecay;
    auto body = [&](auto& pr, std::size_t i, int k) {
      using W = VecOf<decltype(pr)>;
      const W gi = pr.grad(g, i, k);
      W pi = W::load(p + i);
      const W mi = load_state<W>(m + i);
      if (decayed) pi = pi * W::set1(decay);
      const W c = W::set1(b1) * mi + W::set1(omb1) * gi;
      pi = pi - W::set1(lr) * exact_sign(c);
      pi.store(p + i);
      store_state(m + i, W::set1(b2) * mi + W::set1(omb2) * gi);
    };
    if constexpr (std::is_same_v<S, T>) {
      const T* const streams[] = {g, p, m};
      return run_chunk<T>(t.n, gp, t.flags & kMaximize, streams, body);
    } else {
      return run_chunk_bf16_state(t.n, gp, t.flags & kMaximize, g, p, body);
    }
  }
};
