// D-Adapted SGD (docs/algorithms.md, "DAdaptSGD"): the dadaptation package's
// DAdaptSGD, d global. After the first step the update needs no reduction
// first (dlr comes from the last step's d and the stored g0_norm), so pass 0
// does all the work and pass 1 returns at once. The first step (g0_norm still
// 0) needs the norm of the gradient before anything moves: pass 0 sums g*g,
// the hook sets g0_norm and dlr (or, for an all-zero gradient, tells pass 1
// to write nothing), and pass 1 does the update.
#pragma once

struct DAdaptSGD {
  enum Flag : unsigned { kDecay = 1u << 0 };
  // kDlr, kG0, kMode: written by the hook for the passes after it.
  enum ScalarSlot { kLr, kWd, kOneMinusCk, kCk, kGrowth, kDlr, kG0, kMode };
  enum TensorScalar { kD, kNumerator, kG0Norm };
  enum Mode { kDone = 0, kFirst = 1 };  // pass 1: nothing to do / the first step's update

  static unsigned slot_mask(unsigned, int) { return 0b11u; }

  // Python's max(a, b) and min(a, b) (a NaN second operand is not taken).
  static double pymax(double a, double b) { return b > a ? b : a; }
  static double pymin(double a, double b) { return b < a ? b : a; }

  // numerator += dlr * <g, s>; d from the new numerator and sum(s*s); every
  // tensor gets the same values. `sums`: the pass's global sums {dot, sq}.
  static void learn(const PassSums& v, const double* sums, double dlr, double g0) {
    const double* row0 = v.tensor_scalars;  // (every row holds the same values)
    const double numerator = row0[kNumerator] + dlr * sums[0];
    double d = row0[kD];
    // (the package: lr > 0 only; with sum(s*s) == 0 it divides by zero and raises)
    if (v.scalars[kLr] > 0.0 && sums[1] != 0.0) {
      const double d_hat = 2.0 * numerator / __builtin_sqrt(sums[1]);
      d = pymax(d, pymin(d_hat, d * v.scalars[kGrowth]));
    }
    for (std::size_t i = 0; i < v.ntensors; ++i) {
      double* row = v.tensor_scalars + i * kMaxTensorScalars;
      row[kD] = d;
      row[kNumerator] = numerator;
      row[kG0Norm] = g0;
    }
  }

  static void after_pass(const PassSums& v) {
    if (v.ntensors == 0) return;
    double* group0 = v.scalars;
    const double* row0 = v.tensor_scalars;
    const double* sums = v.global_sums + v.pass * kMaxSums;
    if (v.pass == 0) {
      if (row0[kG0Norm] != 0.0) {  // a later step: pass 0 made it
        for (int g = 0; g < v.ngroups; ++g) v.scalars[g * kMaxScalars + kMode] = kDone;
        learn(v, sums, row0[kD] * group0[kLr] / row0[kG0Norm], row0[kG0Norm]);
        return;
      }
      // The first step: g0_norm from the raw gradient; 0 leaves all as it was.
      const double g0 = __builtin_sqrt(sums[0]);
      const double dlr = row0[kD] * group0[kLr] / g0;
      for (int g = 0; g < v.ngroups; ++g) {
        double* s = v.scalars + g * kMaxScalars;
        s[kMode] = g0 == 0.0 ? kDone : kFirst;
        s[kDlr] = dlr;
        s[kG0] = g0;
      }
    } else if (group0[kMode] == kFirst) {
      learn(v, sums, group0[kDlr], group0[kG0]);
    }
  }

  static constexpr RuleInfo info = {
      "dadapt-sgd",
      {"s", "x0"},
      {kLikeParam, kLikeParam},
      {"lr", "wd", "one_minus_ck", "ck", "growth_rate", "dlr", "g0", "mode"},
      {"decay"},
      2,
      {kPerChunk, kPerChunk},
      {2, 2},
      slot_mask,
      {"d", "numerator_weighted", "g0_norm"},
      after_pass,
  };

  // The update of one step: sums {<g, s_old>, sum s_new^2}.
  template <class T>
  static ChunkResult update(const ChunkTask& t, const GradPrep& gp, T dlr) {
    T* p = static_cast<T*>(t.p);
    const T* g = static_cast<const T*>(t.g);
    T* sv = static_cast<T*>(t.s[0]);
    const T* x0 = static_cast<const T*>(t.s[1]);
    const double* s = t.scalars;
    const T wd = T(s[kWd]), omck = T(s[kOneMinusCk]), ck = T(s[kCk]);
    const bool decayed = t.flags & kDecay;
    const T* const streams[] = {g, p, sv, x0};
    return run_chunk<T, 2>(t.n, gp, t.flags & kMaximize, streams, [&](auto& pr, std::size_t i, int k) {
      using W = VecOf<decltype(pr)>;
      const W pi = W::load(p + i);
      W gi = pr.grad(g, i, k);
      if (decayed) gi = gi + W::set1(wd) * pi;
      const W si = W::load(sv + i);
      pr.sum[0].add_product(gi, si, k);
      const W sn = si + W::set1(dlr) * gi;
      sn.store(sv + i);
      pr.sum[1].add(sn, k);
      (pi * W::set1(omck) + W::set1(ck) * (W::load(x0 + i) - sn)).store(p + i);
    });
  }

  template <int Pass, class T>
  static ChunkResult pass(const ChunkTask& t, const GradPrep& gp) {
    const double* ts = t.tensor_scalars;
    if constexpr (Pass == 0) {
      if (ts[kG0Norm] != 0.0) return update<T>(t, gp, T(ts[kD] * t.scalars[kLr] / ts[kG0Norm]));
      const T* g = static_cast<const T*>(t.g);
      const T* const streams[] = {g};
      return run_chunk<T, 1>(t.n, gp, t.flags & kMaximize, streams, [&](auto& pr, std::size_t i, int k) {
        pr.sum[0].add(pr.grad(g, i, k), k);
      });
    } else {
      if (t.scalars[kMode] != kFirst) return ChunkResult{};
      return update<T>(t, gp, T(t.scalars[kDlr]));
    }
  }
};
