// Prodigy (docs/algorithms.md, "Prodigy"): prodigyopt's Prodigy, slice_p=1.
// Two passes around one global update of d: pass 0 takes the moments and s
// and sums g.(p0 - p) and |s| per tensor; the hook turns every tensor's sums
// into the new d (one for all tensors); pass 1 moves p with it. d, d_max,
// d_numerator and k are tensor scalars. fastadapt.reference.prodigy.
#pragma once

#include "d_adam.hpp"

struct Prodigy {
  enum Flag : unsigned { kL2 = 1u << 0, kDecoupled = 1u << 1, kActive = 1u << 2, kMomentum = 1u << 3 };
  // Per group, from the learned scalars before the step (the Python class):
  // the step size dlr = d * lr * bc and the coefficients of pass 0; kSkip is
  // written by the hook (1: no estimate, pass 1 does nothing).
  enum ScalarSlot { kB1, kB2, kBeta3, kMCoef, kVCoef, kSCoef, kWd, kEps, kDlr, kNumFactor, kD0, kDCoef, kGrowth,
                    kWdDlr, kSkip };
  enum Learned { kD, kDMax, kDNumerator, kK };

  static unsigned slot_mask(unsigned, int) { return 0b1111u; }

  // After pass 0: numerator = sum over tensors (in order) of num_factor *
  // g.(p0 - p), denominator = sum of sum|s|; then prodigyopt's update of d.
  // The global hyperparameters and num_factor are the same in every group
  // (overrides cannot set them): tensor 0's group's row.
  static void after_pass(const PassSums& ps) {
    if (ps.pass != 0 || ps.ntensors == 0) return;
    const double* g0 = ps.scalars + ps.tensor_group[0] * kMaxScalars;  // (the global values: any group's)
    const double* row = ps.tensor_scalars;
    double d = row[kD], d_max = row[kDMax], d_numerator = row[kDNumerator];
    const double k = row[kK];
    double numerator, denominator;
    // (a weight of 1.0 for sum|s|: times 1.0 is exact)
    if (!d_sums<kSkip>(ps, [&](std::size_t) { return g0[kNumFactor]; }, [](std::size_t) { return 1.0; }, numerator,
                       denominator))
      return;
    d_numerator = d_numerator * g0[kBeta3] + numerator;
    const double d_hat = g0[kDCoef] * d_numerator / denominator;
    if (d == g0[kD0]) d = py_max(d, d_hat);
    d_max = py_max(d_max, d_hat);
    d = py_min(d_max, d * g0[kGrowth]);
    const double learned[] = {d, d_max, d_numerator, k + 1.0};
    set_learned(ps, learned, 4);
  }

  static constexpr RuleInfo info = {
      "prodigy",
      {"exp_avg", "exp_avg_sq", "s", "p0"},
      {kLikeParam, kLikeParam, kLikeParam, kLikeParam},
      {"b1", "b2", "beta3", "m_coef", "v_coef", "s_coef", "wd", "eps", "dlr", "num_factor", "d0", "d_coef",
       "growth_rate", "wd_dlr", "skip"},
      {"l2", "decoupled", "active", "momentum"},
      2,
      {kPerChunk, kPerChunk},
      {2, 0},
      slot_mask,
      {"d", "d_max", "d_numerator", "k"},
      after_pass,
  };

  template <int Pass, class T>
  static ChunkResult pass(const ChunkTask& t, const GradPrep& gp) {
    T* p = static_cast<T*>(t.p);
    const T* g = static_cast<const T*>(t.g);
    T* m = static_cast<T*>(t.s[0]);
    T* v = static_cast<T*>(t.s[1]);
    const double* s = t.scalars;
    const bool l2 = t.flags & kL2, momentum = t.flags & kMomentum;
    const bool maximize = t.flags & kMaximize;
    const T wd = T(s[kWd]);
    if constexpr (Pass == 0) {
      if (!(t.flags & kActive)) return read_gradient_only<T>(t, gp, maximize);
      T* sb = static_cast<T*>(t.s[2]);
      const T* p0 = static_cast<const T*>(t.s[3]);
      const T b1 = T(s[kB1]), b2 = T(s[kB2]), beta3 = T(s[kBeta3]), mc = T(s[kMCoef]), vc = T(s[kVCoef]),
              sc = T(s[kSCoef]);
      auto body = [&](auto& pr, std::size_t i, int k) {
        using W = VecOf<decltype(pr)>;
        W gi = pr.grad(g, i, k);
        const W pi = W::load(p + i);
        if (l2) gi = gi + W::set1(wd) * pi;
        pr.sum[0].add_product(gi, W::load(p0 + i) - pi, k);
        if (momentum) (W::set1(b1) * W::load(m + i) + W::set1(mc) * gi).store(m + i);
        (W::set1(b2) * W::load(v + i) + W::set1(vc) * (gi * gi)).store(v + i);
        const W si = W::set1(beta3) * W::load(sb + i) + W::set1(sc) * gi;
        si.store(sb + i);
        pr.sum[1].add_product(vabs(si), W::set1(T(1)), k);  // float64(|s|) * 1: exact
      };
      // m is read (and prefetched) only with momentum (b1 > 0).
      if (momentum) {
        const T* const streams[] = {g, p, p0, m, v, sb};
        return run_chunk<T, 2>(t.n, gp, maximize, streams, body);
      }
      const T* const streams[] = {g, p, p0, v, sb};
      return run_chunk<T, 2>(t.n, gp, maximize, streams, body);
    } else {
      if (s[kSkip] != 0.0) return ChunkResult{};
      const double d = t.tensor_scalars[kD];  // the new d (the hook's)
      const T eps_d = T(d * s[kEps]), dlr = T(s[kDlr]), wd_dlr = T(s[kWdDlr]), dlr_d = T(s[kDlr] * d);
      const bool decoupled = t.flags & kDecoupled;
      if (momentum) {
        const T* const streams[] = {p, m, v};
        return run_chunk<T>(t.n, gp, maximize, streams, [&](auto& pr, std::size_t i, int) {
          using W = VecOf<decltype(pr)>;
          W pi = W::load(p + i);
          const W denom = vsqrt(W::load(v + i)) + W::set1(eps_d);
          if (decoupled) pi = pi - W::set1(wd_dlr) * pi;
          (pi - W::set1(dlr) * (W::load(m + i) / denom)).store(p + i);
        });
      }
      const T* const streams[] = {g, p, v};
      return run_chunk<T>(t.n, gp, maximize, streams, [&](auto& pr, std::size_t i, int k) {
        using W = VecOf<decltype(pr)>;
        W pi = W::load(p + i);
        W gi = pr.grad(g, i, k);
        if (l2) gi = gi + W::set1(wd) * pi;
        const W denom = vsqrt(W::load(v + i)) + W::set1(eps_d);
        if (decoupled) pi = pi - W::set1(wd_dlr) * pi;
        (pi - W::set1(dlr_d) * (gi / denom)).store(p + i);
      });
    }
  }
};
