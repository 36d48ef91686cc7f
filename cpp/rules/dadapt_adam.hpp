// DAdaptAdam (docs/algorithms.md, "DAdaptAdam"): the dadaptation package's
// DAdaptAdam. Two passes around one global update of d: pass 0 sums
// g.(s / (sqrt(v) + eps)) with the old s and v, takes the moments and s and
// sums |s| per tensor; the hook turns every tensor's sums into the new d;
// pass 1 moves p (with this step's d, inside m) unless the hook found no
// estimate. d, numerator_weighted and k are tensor scalars.
// fastadapt.reference.dadapt_adam.
#pragma once

#include "d_adam.hpp"

struct DAdaptAdam {
  enum Flag : unsigned { kL2 = 1u << 0, kDecoupled = 1u << 1, kActive = 1u << 2 };
  // Per group, from the learned scalars before the step (the Python class);
  // kSkip is written by the hook.
  enum ScalarSlot { kB1, kB2, kOneMinusB2, kSb2, kMCoef, kSCoef, kWd, kEps, kWdDlr, kNumFactor, kLayerScale,
                    kGrowth, kSkip };
  enum Learned { kD, kNumeratorWeighted, kK };

  static unsigned slot_mask(unsigned, int) { return 0b111u; }

  // After pass 0: numerator = sum over tensors (in order) of (r * dlr) *
  // sum0, denominator = sum of r * sum|s| (r: the tensor's layer_scale);
  // then the package's update of d.
  static void after_pass(const PassSums& ps) {
    if (ps.pass != 0 || ps.ntensors == 0) return;
    const double* g0 = ps.scalars + ps.tensor_group[0] * kMaxScalars;  // (sb2, growth_rate: any group's)
    const double* row = ps.tensor_scalars;
    const double d = row[kD], k = row[kK];
    // (each tensor's own group's num_factor and layer_scale)
    auto of_group = [&](std::size_t t, int slot) { return ps.scalars[ps.tensor_group[t] * kMaxScalars + slot]; };
    double numerator, denominator;
    if (!d_sums<kSkip>(ps, [&](std::size_t t) { return of_group(t, kNumFactor); },
                       [&](std::size_t t) { return of_group(t, kLayerScale); }, numerator, denominator))
      return;
    const double sb2 = g0[kSb2];
    const double nw = sb2 * row[kNumeratorWeighted] + (1.0 - sb2) * numerator;
    const double d_hat = nw / ((1.0 - sb2) * denominator);
    const double learned[] = {py_max(d, py_min(d_hat, d * g0[kGrowth])), nw, k + 1.0};
    set_learned(ps, learned, 3);
  }

  static constexpr RuleInfo info = {
      "dadapt-adam",
      {"exp_avg", "exp_avg_sq", "s"},
      {kLikeParam, kLikeParam, kLikeParam},
      {"b1", "b2", "one_minus_b2", "sb2", "m_coef", "s_coef", "wd", "eps", "wd_dlr", "num_factor", "layer_scale",
       "growth_rate", "skip"},
      {"l2", "decoupled", "active"},
      2,
      {kPerChunk, kPerChunk},
      {2, 0},
      slot_mask,
      {"d", "numerator_weighted", "k"},
      after_pass,
  };

  template <int Pass, class T>
  static ChunkResult pass(const ChunkTask& t, const GradPrep& gp) {
    T* p = static_cast<T*>(t.p);
    const T* g = static_cast<const T*>(t.g);
    T* m = static_cast<T*>(t.s[0]);
    T* v = static_cast<T*>(t.s[1]);
    const double* s = t.scalars;
    const bool maximize = t.flags & kMaximize;
    const T eps = T(s[kEps]);
    if constexpr (Pass == 0) {
      if (!(t.flags & kActive)) return read_gradient_only<T>(t, gp, maximize);
      T* sb = static_cast<T*>(t.s[2]);
      const bool l2 = t.flags & kL2;
      const T b1 = T(s[kB1]), b2 = T(s[kB2]), omb2 = T(s[kOneMinusB2]), sb2 = T(s[kSb2]), mc = T(s[kMCoef]),
              sc = T(s[kSCoef]), wd = T(s[kWd]);
      auto body = [&](auto& pr, std::size_t i, int k) {
        using W = VecOf<decltype(pr)>;
        W gi = pr.grad(g, i, k);
        if (l2) gi = gi + W::set1(wd) * W::load(p + i);
        const W vi = W::load(v + i), si = W::load(sb + i);
        pr.sum[0].add_product(gi, si / (vsqrt(vi) + W::set1(eps)), k);
        (W::set1(b1) * W::load(m + i) + W::set1(mc) * gi).store(m + i);
        (W::set1(b2) * vi + W::set1(omb2) * (gi * gi)).store(v + i);
        const W sn = W::set1(sb2) * si + W::set1(sc) * gi;
        sn.store(sb + i);
        pr.sum[1].add_product(vabs(sn), W::set1(T(1)), k);  // float64(|s|) * 1: exact
      };
      // p is read (and prefetched) only for the L2 term.
      if (l2) {
        const T* const streams[] = {g, p, m, v, sb};
        return run_chunk<T, 2>(t.n, gp, maximize, streams, body);
      }
      const T* const streams[] = {g, m, v, sb};
      return run_chunk<T, 2>(t.n, gp, maximize, streams, body);
    } else {
      if (s[kSkip] != 0.0) return ChunkResult{};
      const T wd_dlr = T(s[kWdDlr]);
      const bool decoupled = t.flags & kDecoupled;
      const T* const streams[] = {p, m, v};
      return run_chunk<T>(t.n, gp, maximize, streams, [&](auto& pr, std::size_t i, int) {
        using W = VecOf<decltype(pr)>;
        W pi = W::load(p + i);
        const W denom = vsqrt(W::load(v + i)) + W::set1(eps);
        if (decoupled) pi = pi - W::set1(wd_dlr) * pi;
        (pi - W::load(m + i) / denom).store(p + i);
      });
    }
  }
};
