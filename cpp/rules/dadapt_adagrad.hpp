// D-Adapted AdaGrad (docs/algorithms.md, "DAdaptAdaGrad"): the dadaptation
// package's DAdaptAdaGrad (dense), d global. The update of p needs none of
// this step's sums (they only feed the next step's d), so once a step has
// been committed pass 0 does all the work and pass 1 returns at once. Before
// that (skl1 still 0) the package holds p back when every sk is still 0: pass
// 0 then writes alphak and sk only, and pass 1 writes p if the hook found
// skl1 > 0.
//
// The package subtracts each tensor's sums over the old sk and alphak
// (sum sk^2 / den, sum |sk|) from the new ones. Those old sums are the new
// sums of the tensor's last step, bit for bit (same elements, same order), so
// each tensor carries them: pass 0 recomputes the old weighted sum (a square
// root and a division per element) only when eps is not the one it was
// computed with, and never the old sum of |sk|.
#pragma once

struct DAdaptAdaGrad {
  enum Flag : unsigned { kDecay = 1u << 0, kMomentum = 1u << 1 };
  enum ScalarSlot { kLr, kWd, kEps, kOneMinusCk, kCk, kGrowth, kMode };  // kMode: written by the hook
  // kD .. kSkl1: the package's global values (the same in every row); then
  // this tensor's sum sk^2 / den and sum |sk| after its last step, and the
  // eps that weighted sum used (0: none yet, recompute).
  enum TensorScalar { kD, kGsq, kSksq, kSkl1, kSksqParam, kSkl1Param, kSksqEps };
  enum Mode { kDone = 0, kMove = 1 };  // pass 1: nothing to do / write p
  // Pass 0's sums: always 3, the 4th only when the old weighted sum is recomputed.
  enum Sum { kGw, kNewW, kNewL1, kOldW };

  static unsigned slot_mask(unsigned, int) { return 0b111u; }

  static double pymax(double a, double b) { return b > a ? b : a; }
  static double pymin(double a, double b) { return b < a ? b : a; }

  // Whether this tensor's carried weighted sum holds for eps (else pass 0
  // recomputed it as sum kOldW). Pass 0 and the hook decide alike.
  static bool carried(const double* row, double eps) { return row[kSksqEps] == eps; }

  static void after_pass(const PassSums& v) {
    if (v.pass != 0 || v.ntensors == 0) return;
    const double* row0 = v.tensor_scalars;  // (every row holds the same global values)
    const double lr = v.scalars[kLr], growth = v.scalars[kGrowth];
    double d = row0[kD], gsq = row0[kGsq], sksq = row0[kSksq];
    const double skl1 = row0[kSkl1];
    const double dlr = d * lr;
    // The package's per-tensor changes, added tensor by tensor from 0. The
    // tensor's new sums are carried whether or not the step commits: alphak
    // and sk have moved either way.
    double g_sq = 0.0, sksq_change = 0.0, skl1_change = 0.0;
    for (std::size_t i = 0; i < v.ntensors; ++i) {
      const double* ts = v.tensor_sums + i * kMaxPasses * kMaxSums;  // pass 0's
      double* row = v.tensor_scalars + i * kMaxTensorScalars;
      const double eps = v.scalars[v.tensor_group[i] * kMaxScalars + kEps];
      const double old_w = carried(row, eps) ? row[kSksqParam] : ts[kOldW];
      g_sq += ts[kGw];
      sksq_change += ts[kNewW] - old_w;
      skl1_change += ts[kNewL1] - row[kSkl1Param];
      row[kSksqParam] = ts[kNewW];
      row[kSkl1Param] = ts[kNewL1];
      row[kSksqEps] = eps;
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
      {"d", "gsq_weighted", "sksq_weighted", "skl1", "sksq_weighted_param", "skl1_param", "sksq_weighted_eps"},
      after_pass,
  };

  // p from x0 and q = sk / (sqrt(alphak) + eps), both updated.
  template <class W, class T>
  static FA_INLINE W moved(const T* p, std::size_t i, W x0, W q, T omck, T ck, bool momentum) {
    const W z = x0 - q;
    return momentum ? W::load(p + i) * W::set1(omck) + W::set1(ck) * z : z;
  }

  // Pass 0 with p written (Move) or held back, the old weighted sum
  // recomputed (OldW) or carried.
  template <bool Move, bool OldW, class T>
  static ChunkResult first_pass(const ChunkTask& t, const GradPrep& gp) {
    T* p = static_cast<T*>(t.p);
    T* a = static_cast<T*>(t.s[0]);
    T* sk = static_cast<T*>(t.s[1]);
    const T* x0 = static_cast<const T*>(t.s[2]);
    const T* g = static_cast<const T*>(t.g);
    const double* s = t.scalars;
    const T eps = T(s[kEps]), omck = T(s[kOneMinusCk]), ck = T(s[kCk]);
    const bool momentum = t.flags & kMomentum;
    const bool maximize = t.flags & kMaximize;
    const T dlr = T(t.tensor_scalars[kD] * s[kLr]), wd = T(s[kWd]);
    const bool decayed = t.flags & kDecay;
    auto body = [&](auto& pr, std::size_t i, int k) {
      using W = VecOf<decltype(pr)>;
      W gi = pr.grad(g, i, k);
      if (decayed) gi = gi + W::set1(wd) * W::load(p + i);
      const W ai = W::load(a + i), si = W::load(sk + i);
      // The weighted squares as float64 products of two factors in T: one
      // division each, and sn / den is also p's.
      if constexpr (OldW) pr.sum[kOldW].add_product(si, si / (vsqrt(ai) + W::set1(eps)), k);
      const W an = ai + gi * gi;
      const W den = vsqrt(an) + W::set1(eps);
      const W sn = si + W::set1(dlr) * gi;
      const W q = sn / den;
      pr.sum[kGw].add_product(gi, gi / den, k);
      pr.sum[kNewW].add_product(sn, q, k);
      pr.sum[kNewL1].add_product(vabs(sn), W::set1(T(1)), k);  // (x 1: exact, |sn| widened)
      an.store(a + i);
      sn.store(sk + i);
      if constexpr (Move) moved(p, i, W::load(x0 + i), q, omck, ck, momentum).store(p + i);
    };
    constexpr int kSums = OldW ? 4 : 3;
    if constexpr (Move) {
      const T* const streams[] = {g, a, sk, x0, p};
      return run_chunk<T, kSums>(t.n, gp, maximize, streams, body);
    } else {
      const T* const streams[] = {g, a, sk, p};
      return run_chunk<T, kSums>(t.n, gp, maximize, streams, body);
    }
  }

  template <int Pass, class T>
  static ChunkResult pass(const ChunkTask& t, const GradPrep& gp) {
    if constexpr (Pass == 0) {
      const double* ts = t.tensor_scalars;
      const bool move = ts[kSkl1] != 0.0;  // a step has been committed
      const bool old_w = !carried(ts, t.scalars[kEps]);
      if (move) return old_w ? first_pass<true, true, T>(t, gp) : first_pass<true, false, T>(t, gp);
      return old_w ? first_pass<false, true, T>(t, gp) : first_pass<false, false, T>(t, gp);
    } else {
      if (t.scalars[kMode] != kMove) return ChunkResult{};
      T* p = static_cast<T*>(t.p);
      const T* a = static_cast<const T*>(t.s[0]);
      const T* sk = static_cast<const T*>(t.s[1]);
      const T* x0 = static_cast<const T*>(t.s[2]);
      const T eps = T(t.scalars[kEps]), omck = T(t.scalars[kOneMinusCk]), ck = T(t.scalars[kCk]);
      const bool momentum = t.flags & kMomentum;
      const T* const streams[] = {a, sk, x0, p};
      return run_chunk<T>(t.n, gp, t.flags & kMaximize, streams, [&](auto& pr, std::size_t i, int) {
        using W = VecOf<decltype(pr)>;
        const W q = W::load(sk + i) / (vsqrt(W::load(a + i)) + W::set1(eps));
        moved(p, i, W::load(x0 + i), q, omck, ck, momentum).store(p + i);
      });
    }
  }
};
