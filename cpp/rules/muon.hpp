// Muon (docs/algorithms.md, "Muon"): torch.optim.Muon's definition, with
// Newton-Schulz in the parameter's dtype. The element-wise parts only: the
// matrix products run in NumPy between two fused calls
// (python/fastadapt/optim/muon.py), which keeps the step atomic:
//
//   "muon"         the direction call: writes nothing that lasts. For each
//                  matrix, the direction d (from the momentum buffer this step
//                  will store) into the scratch array passed as the param,
//                  then d / S(max(||d||, eps)) in place (the Frobenius norm
//                  is this pass's per-tensor sum). For every other tensor (the
//                  companion's keys) the pre-processed gradient.
//   "muon_commit"  the commit: the momentum buffer recomputed bit for bit as
//                  in the direction call, stored, and the parameter updated
//                  with the orthogonalized direction O (the second slot).
//
// Both calls see every key and apply the same gradient pre-processing, so the
// clipping norm and the non-finite policy cover the whole tree, companion
// keys included. They share the scalar and flag layout (the Python class
// fills one table for both).
#pragma once

struct MuonLayout {
  // kRawDirection: leave d unscaled (ns_dtype="bfloat16" scales the rounded d in NumPy).
  enum Flag : unsigned { kNesterov = 1u << 0, kMatchRmsAdamw = 1u << 1, kRawDirection = 1u << 2 };
  enum ScalarSlot { kMomentum, kOneMinusMomentum, kEps, kLr, kDecay };
#define FA_MUON_SCALARS {"momentum", "one_minus_momentum", "eps", "lr", "decay"}
#define FA_MUON_FLAGS {"nesterov", "match_rms_adamw", "raw_direction"}

  static bool is_matrix(const ChunkTask& t) { return t.shape.ndim == 2; }

  // torch's _adjust_lr in float64, from the matrix shape: lr * sqrt(max(1, rows / cols))
  // ("original", the default) or lr * (0.2 * sqrt(max(rows, cols))) ("match_rms_adamw").
  static double adjusted_lr(const ChunkTask& t) {
    const double rows = static_cast<double>(t.shape.rows), cols = static_cast<double>(t.shape.cols);
    const double ratio = (t.flags & kMatchRmsAdamw) ? 0.2 * __builtin_sqrt(rows > cols ? rows : cols)
                                                    : __builtin_sqrt(rows / cols > 1.0 ? rows / cols : 1.0);
    return t.scalars[kLr] * ratio;
  }
};

struct Muon : MuonLayout {
  static unsigned slot_mask(unsigned, int ndim) { return ndim == 2 ? 0b1u : 0u; }

  static constexpr RuleInfo info = {
      "muon",
      {"momentum_buffer"},
      {kLikeParam},
      FA_MUON_SCALARS,
      FA_MUON_FLAGS,
      2,
      {kPerChunk, kPerChunk},
      {1, 0},
      slot_mask,
  };

  template <int Pass, class T>
  static ChunkResult pass(const ChunkTask& t, const GradPrep& gp) {
    T* out = static_cast<T*>(t.p);  // the scratch array, not the parameter
    const bool maximize = t.flags & kMaximize;
    if constexpr (Pass == 0) {
      const T* g = static_cast<const T*>(t.g);
      if (!is_matrix(t)) {  // a companion key: its pre-processed gradient
        const T* const streams[] = {g};
        return run_chunk<T>(t.n, gp, maximize, streams, [&](auto& pr, std::size_t i, int k) {
          pr.grad(g, i, k).store(out + i);
        });
      }
      const T* buf = static_cast<const T*>(t.s[0]);
      const double* s = t.scalars;
      const T mom = T(s[kMomentum]), omm = T(s[kOneMinusMomentum]);
      const bool nesterov = t.flags & kNesterov;
      const T* const streams[] = {g, buf};
      return run_chunk<T, 1>(t.n, gp, maximize, streams, [&](auto& pr, std::size_t i, int k) {
        using W = VecOf<decltype(pr)>;
        const W gi = pr.grad(g, i, k);
        const W mi = W::set1(mom) * W::load(buf + i) + W::set1(omm) * gi;
        const W di = nesterov ? W::set1(omm) * gi + W::set1(mom) * mi : mi;
        di.store(out + i);
        pr.sum[0].add(di, k);
      });
    } else {
      ChunkResult none{0.0, 0, {}};
      if (!is_matrix(t) || (t.flags & kRawDirection)) return none;
      // d / S(max(sqrt(sumsq), eps)), max NaN-propagating (torch's clamp(min=eps)).
      const double norm = __builtin_sqrt(t.tensor_sums[0]), eps = t.scalars[kEps];
      const Divisor<T> by((norm != norm || norm > eps) ? norm : eps);
      const T* const streams[] = {out};
      GradPrep plain;  // this pass reads no gradient
      plain.track_norm = false;
      run_chunk<T>(t.n, plain, false, streams, [&](auto& pr, std::size_t i, int) {
        using W = VecOf<decltype(pr)>;  // (pr itself is unused: no gradient here)
        div_by(W::load(out + i), by).store(out + i);
      });
      return none;
    }
  }
};

struct MuonCommit : MuonLayout {
  static unsigned slot_mask(unsigned, int ndim) { return ndim == 2 ? 0b11u : 0u; }

  static constexpr RuleInfo info = {
      "muon_commit",
      {"momentum_buffer", "orthogonalized"},
      {kLikeParam, kLikeParam},
      FA_MUON_SCALARS,
      FA_MUON_FLAGS,
      1,
      {kPerChunk},
      {0},
      slot_mask,
  };

  template <int Pass, class T>
  static ChunkResult pass(const ChunkTask& t, const GradPrep& gp) {
    const T* g = static_cast<const T*>(t.g);
    const bool maximize = t.flags & kMaximize;
    if (!is_matrix(t)) {  // a companion key: read for the norm and the non-finite count only
      const T* const streams[] = {g};
      return run_chunk<T>(t.n, gp, maximize, streams, [&](auto& pr, std::size_t i, int k) { pr.grad(g, i, k); });
    }
    T* p = static_cast<T*>(t.p);
    T* buf = static_cast<T*>(t.s[0]);
    const T* o = static_cast<const T*>(t.s[1]);
    const double* s = t.scalars;
    const T mom = T(s[kMomentum]), omm = T(s[kOneMinusMomentum]), decay = T(s[kDecay]), step = T(adjusted_lr(t));
    const T* const streams[] = {g, buf, p, o};
    return run_chunk<T>(t.n, gp, maximize, streams, [&](auto& pr, std::size_t i, int k) {
      using W = VecOf<decltype(pr)>;
      const W gi = pr.grad(g, i, k);
      const W mi = W::set1(mom) * W::load(buf + i) + W::set1(omm) * gi;
      mi.store(buf + i);
      (W::load(p + i) * W::set1(decay) - W::set1(step) * W::load(o + i)).store(p + i);
    });
  }
};

#undef FA_MUON_SCALARS
#undef FA_MUON_FLAGS
