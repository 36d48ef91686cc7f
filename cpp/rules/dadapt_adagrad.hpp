// D-Adapted AdaGrad (docs/algorithms.md, "DAdaptAdaGrad"): the dadaptation
// package's DAdaptAdaGrad (dense), d global. The update of p needs none of
// this step's sums (they only feed the next step's d), so once a step has
// been committed pass 0 does all the work and pass 1 returns at once. Before
// that (skl1 still 0) the package holds p back when every sk is still 0: pass
// 0 then writes alphak and sk only, and pass 1 writes p if the hook found
// skl1 > 0.
#pragma once

struct DAdaptAdaGrad {
  enum Flag : unsigned { kDecay = 1u << 0, kMomentum = 1u << 1 };
  enum ScalarSlot { kLr, kWd, kEps, kOneMinusCk, kCk, kGrowth, kMode };  // kMode: written by the hook
  enum TensorScalar { kD, kGsq, kSksq, kSkl1 };
  enum Mode { kDone = 0, kMove = 1 };  // pass 1: nothing to do / write p

  static unsigned slot_mask(unsigned, int) { return 0b111u; }

  static double pymax(double a, double b) { return b > a ? b : a; }
  static double pymin(double a, double b) { return b < a ? b : a; }

  static void after_pass(const PassSums& v) {
    if (v.pass != 0 || v.ntensors == 0) return;
    const double* row0 = v.tensor_scalars;  // (every row holds the same values)
    const double lr = v.scalars[kLr], growth = v.scalars[kGrowth];
    double d = row0[kD], gsq = row0[kGsq], sksq = row0[kSksq];
    const double skl1 = row0[kSkl1];
    const double dlr = d * lr;
    // The package's per-tensor changes, added tensor by tensor from 0.
    double g_sq = 0.0, sksq_change = 0.0, skl1_change = 0.0;
    for (std::size_t i = 0; i < v.ntensors; ++i) {
      const double* ts = v.tensor_sums + i * kMaxPasses * kMaxSums;  // pass 0's: gw, new_w, old_w, dl1
      g_sq += ts[0];
      sksq_change += ts[1] - ts[2];
      skl1_change += ts[3];
    }
    const double new_skl1 = skl1 + skl1_change;
    // new_skl1 == 0: the package's early return (totals and d stay); p moves
    // in pass 1 only when pass 0 held it back.
    const bool commit = new_skl1 != 0.0;
    for (int g = 0; g < v.ngroups; ++g) v.scalars[g * kMaxScalars + kMode] = commit && skl1 == 0.0 ? kMove : kDone;
    if (!commit) return;
    sksq = sksq + sksq_change;
    gsq = gsq + dlr * dlr * g_sq;
    if (lr > 0.0) d = pymax(d, pymin((sksq - gsq) / new_skl1, d * growth));  // (lr 0: the totals move, d stays)
    for (std::size_t i = 0; i < v.ntensors; ++i) {
      double* row = v.tensor_scalars + i * kMaxTensorScalars;
      row[kD] = d;
      row[kGsq] = gsq;
      row[kSksq] = sksq;
      row[kSkl1] = new_skl1;
    }
  }

  static constexpr RuleInfo info = {
      "dadapt-adagrad",
      {"alphak", "sk", "x0"},
      {kLikeParam, kLikeParam, kLikeParam},
      {"lr", "wd", "eps", "one_minus_ck", "ck", "growth_rate", "mode"},
      {"decay", "momentum"},
      2,
      {kPerChunk, kPerChunk},
      {4, 0},
      slot_mask,
      {"d", "gsq_weighted", "sksq_weighted", "skl1"},
      after_pass,
  };

  // p from x0 and q = sk / (sqrt(alphak) + eps), both updated.
  template <class W, class T>
  static FA_INLINE W moved(const T* p, std::size_t i, W x0, W q, T omck, T ck, bool momentum) {
    const W z = x0 - q;
    return momentum ? W::load(p + i) * W::set1(omck) + W::set1(ck) * z : z;
  }

  template <int Pass, class T>
  static ChunkResult pass(const ChunkTask& t, const GradPrep& gp) {
    T* p = static_cast<T*>(t.p);
    T* a = static_cast<T*>(t.s[0]);
    T* sk = static_cast<T*>(t.s[1]);
    const T* x0 = static_cast<const T*>(t.s[2]);
    const double* s = t.scalars;
    const T eps = T(s[kEps]), omck = T(s[kOneMinusCk]), ck = T(s[kCk]);
    const bool momentum = t.flags & kMomentum;
    const bool maximize = t.flags & kMaximize;
    if constexpr (Pass == 0) {
      const T* g = static_cast<const T*>(t.g);
      const double* ts = t.tensor_scalars;
      const T dlr = T(ts[kD] * s[kLr]), wd = T(s[kWd]);
      const bool decayed = t.flags & kDecay;
      const bool write_p = ts[kSkl1] != 0.0;  // a step has been committed
      auto body = [&](auto& pr, std::size_t i, int k, auto move) {
        using W = VecOf<decltype(pr)>;
        W gi = pr.grad(g, i, k);
        if (decayed) gi = gi + W::set1(wd) * W::load(p + i);
        const W ai = W::load(a + i), si = W::load(sk + i);
        // The weighted squares as float64 products of two factors in T: one
        // division each, and sn / den is also p's.
        pr.sum[2].add_product(si, si / (vsqrt(ai) + W::set1(eps)), k);
        const W an = ai + gi * gi;
        const W den = vsqrt(an) + W::set1(eps);
        const W sn = si + W::set1(dlr) * gi;
        const W q = sn / den;
        pr.sum[0].add_product(gi, gi / den, k);
        pr.sum[1].add_product(sn, q, k);
        pr.sum[3].add_product(vabs(sn) - vabs(si), W::set1(T(1)), k);
        an.store(a + i);
        sn.store(sk + i);
        if constexpr (decltype(move)::value) moved(p, i, W::load(x0 + i), q, omck, ck, momentum).store(p + i);
      };
      if (write_p) {
        const T* const streams[] = {g, a, sk, x0, p};
        return run_chunk<T, 4>(t.n, gp, maximize, streams, [&](auto& pr, std::size_t i, int k) {
          body(pr, i, k, std::true_type{});
        });
      }
      const T* const streams[] = {g, a, sk, p};
      return run_chunk<T, 4>(t.n, gp, maximize, streams, [&](auto& pr, std::size_t i, int k) {
        body(pr, i, k, std::false_type{});
      });
    } else {
      if (s[kMode] != kMove) return ChunkResult{};
      const T* const streams[] = {a, sk, x0, p};
      return run_chunk<T>(t.n, gp, maximize, streams, [&](auto& pr, std::size_t i, int) {
        using W = VecOf<decltype(pr)>;
        const W q = W::load(sk + i) / (vsqrt(W::load(a + i)) + W::set1(eps));
        moved(p, i, W::load(x0 + i), q, omck, ck, momentum).store(p + i);
      });
    }
  }
};
