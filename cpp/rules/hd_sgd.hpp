// HD-SGD (docs/algorithms.md, "HD-SGD"; Baydin et al. 2018, SGD-HD and
// SGDN-HD): torch.optim.SGD's step with a learned learning rate. Two passes:
// pass 0 reads g (and p for weight decay), the momentum buffer and the last
// direction, sums g . d_prev and stores the new direction; the hook moves
// alpha; pass 1 writes p = p - alpha * d.
#pragma once

#include "hypergradient.hpp"

struct HDSGD {
  // kInitBuffer: the first step with momentum, buf = g (set by the Python
  // layer when it has just created the buffer).
  enum Flag : unsigned { kL2 = 1u << 0, kMomentum = 1u << 1, kNesterov = 1u << 2, kInitBuffer = 1u << 3 };
  enum ScalarSlot { kWd, kMomentumFactor, kOneMinusDampening, kLr, kHypergradLr };

  static unsigned slot_mask(unsigned flags, int) { return (flags & kMomentum) ? 0b11u : 0b10u; }

  static constexpr RuleInfo info = {
      "hd_sgd",
      {"momentum_buffer", "grad_prev"},
      {kLikeParam, kLikeParam},
      {"wd", "momentum", "one_minus_dampening", "lr", "hypergrad_lr"},
      {"l2", "momentum", "nesterov", "init_buffer"},
      2,
      {kPerChunk, kPerChunk},
      {1, 0},
      slot_mask,
      {"lr", "lr_base"},
      hypergradient::after_pass<kLr, kHypergradLr>,
  };

  template <int Pass, class T>
  static ChunkResult pass(const ChunkTask& t, const GradPrep& gp) {
    T* p = static_cast<T*>(t.p);
    const T* g = static_cast<const T*>(t.g);
    T* buf = static_cast<T*>(t.s[0]);
    T* d = static_cast<T*>(t.s[1]);
    const bool maximize = t.flags & kMaximize;
    if constexpr (Pass == 0) {
      const double* s = t.scalars;
      const T wd = T(s[kWd]), mom = T(s[kMomentumFactor]), omd = T(s[kOneMinusDampening]);
      const bool l2 = t.flags & kL2, momentum = t.flags & kMomentum, nesterov = t.flags & kNesterov,
                 init = t.flags & kInitBuffer;
      // (streams are prefetched: an array the pass does not read is replaced by one it does)
      const T* const streams[] = {g, d, l2 ? p : g, (momentum && !init) ? buf : d};
      return run_chunk<T, 1>(t.n, gp, maximize, streams, [&](auto& pr, std::size_t i, int k) {
        using W = VecOf<decltype(pr)>;
        W gi = pr.grad(g, i, k);
        if (l2) gi = gi + W::set1(wd) * W::load(p + i);
        pr.sum[0].add_product(gi, W::load(d + i), k);
        W di = gi;
        if (momentum) {
          const W bi = init ? gi : W::set1(mom) * W::load(buf + i) + W::set1(omd) * gi;
          bi.store(buf + i);
          di = nesterov ? gi + W::set1(mom) * bi : bi;
        }
        di.store(d + i);
      });
    } else {
      return hypergradient::step_along_direction<T>(t, gp, p, d);
    }
  }
};
