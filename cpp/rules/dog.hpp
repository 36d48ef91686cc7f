// DoG and LDoG (docs/algorithms.md, "DoG and LDoG"): the dog-optimizer
// package's rules. SGD with the learned step size eta = lr * rbar / sqrt(G),
// one per parameter group (DoG) or per tensor (LDoG). Two passes: the first
// reads g, p and x0 (init_buffer) and sums u^2 and (p - x0)^2 per tensor
// (||x0||^2 on the first step, when x0 is p); the after-pass hook turns the
// group's (DoG: the core's group_sums) or the tensor's sums into rbar, G, eta
// (float64, carried per tensor); the second pass rereads g and p and writes
// p = p - T(eta) * u.
// (Included inside an ISA namespace: no standard headers here; std::vector
// comes with rule_api.hpp, sqrt and isnan are the builtins.)
#pragma once

template <bool PerTensor>
struct DoGRule {
  // kDecay: weight_decay != 0. kFirst: the step that creates init_buffer (the
  // optimizer's fresh flag). kInitEta: init_eta is set.
  enum Flag : unsigned { kDecay = 1u << 0, kFirst = 1u << 1, kInitEta = 1u << 2 };
  enum ScalarSlot { kLr, kRepsRel, kEps, kInitEtaValue, kWd };
  enum TensorScalar { kRbar, kG, kEta };

  static unsigned slot_mask(unsigned, int) { return 0b1u; }

  // rbar, G, eta of one block (a group for DoG, a tensor for LDoG) from its
  // two sums and, after the first step, its values of the last step (`row`,
  // overwritten). The same float64 operations as
  // fastadapt.reference.dog.dog_scalars: bit for bit.
  static void block(double u_sumsq, double d_sumsq, const double* s, unsigned flags, double* row) {
    const bool first = flags & kFirst, init = flags & kInitEta;
    double rbar, G;
    if (first) {
      rbar = init ? 0.0 : s[kRepsRel] * (1.0 + __builtin_sqrt(d_sumsq));
      G = u_sumsq + s[kEps];
    } else {
      const double d = __builtin_sqrt(d_sumsq);  // torch.maximum: NaN if either is NaN
      rbar = (__builtin_isnan(row[kRbar]) || __builtin_isnan(d)) ? __builtin_nan("")
                                                       : (row[kRbar] < d ? d : row[kRbar]);
      G = row[kG] + u_sumsq;
    }
    // G == 0 only after gradients of exact zeros throughout (eps = 0): no
    // step, rather than the package's assertion or inf * 0 = NaN.
    double eta = G == 0.0 ? 0.0 : (s[kLr] * rbar) / __builtin_sqrt(G);
    if (first && init) eta = s[kInitEtaValue];
    row[kRbar] = rbar;
    row[kG] = G;
    row[kEta] = eta;
  }

  static void after_pass(const PassSums& ps) {
    if (ps.pass != 0) return;
    constexpr int kStride = kMaxPasses * kMaxSums;
    if constexpr (PerTensor) {
      for (std::size_t i = 0; i < ps.ntensors; ++i) {
        const std::uint32_t g = ps.tensor_group[i];
        const double* sums = ps.tensor_sums + i * kStride;
        block(sums[0], sums[1], ps.scalars + g * kMaxScalars, ps.flags[g], ps.tensor_scalars + i * kMaxTensorScalars);
      }
    } else {
      // A group's values are computed on its first tensor (key order; every
      // member holds the group's values from the last step) and copied to
      // the others.
      // (thread_local: no heap allocation once warm, as the rest of a step)
      thread_local std::vector<std::size_t> first;
      first.assign(static_cast<std::size_t>(ps.ngroups), ps.ntensors);
      for (std::size_t i = 0; i < ps.ntensors; ++i) {
        const std::uint32_t g = ps.tensor_group[i];
        double* row = ps.tensor_scalars + i * kMaxTensorScalars;
        if (first[g] == ps.ntensors) {
          first[g] = i;
          const double* sums = ps.group_sums + g * kStride;
          block(sums[0], sums[1], ps.scalars + g * kMaxScalars, ps.flags[g], row);
        } else {
          const double* lead = ps.tensor_scalars + first[g] * kMaxTensorScalars;
          for (int j = kRbar; j <= kEta; ++j) row[j] = lead[j];
        }
      }
    }
  }

  static constexpr RuleInfo info = {
      PerTensor ? "ldog" : "dog",
      {"init_buffer"},
      {kLikeParam},
      {"lr", "reps_rel", "eps", "init_eta", "wd"},
      {"decay", "first", "init_eta"},
      2,
      {kPerChunk, kPerChunk},
      {2, 0},
      slot_mask,
      {"rbar", "G", "eta"},
      after_pass,
  };

  template <int Pass, class T>
  static ChunkResult pass(const ChunkTask& t, const GradPrep& gp) {
    T* p = static_cast<T*>(t.p);
    const T* g = static_cast<const T*>(t.g);
    const T* x0 = static_cast<const T*>(t.s[0]);
    const T wd = T(t.scalars[kWd]);
    const bool decayed = t.flags & kDecay, first = t.flags & kFirst, maximize = t.flags & kMaximize;
    if constexpr (Pass == 0) {
      // On the first step x0 is p: its sum is ||x0||^2 and x0 is not read.
      const T* const streams[] = {g, p, first ? p : x0};
      return run_chunk<T, 2>(t.n, gp, maximize, streams, [&](auto& pr, std::size_t i, int k) {
        using W = VecOf<decltype(pr)>;
        const W gi = pr.grad(g, i, k);
        const W pi = W::load(p + i);
        pr.sum[0].add(decayed ? gi + W::set1(wd) * pi : gi, k);
        pr.sum[1].add(first ? pi : pi - W::load(x0 + i), k);
      });
    } else {
      const T eta = T(t.tensor_scalars[kEta]);
      const T* const streams[] = {g, p};
      return run_chunk<T>(t.n, gp, maximize, streams, [&](auto& pr, std::size_t i, int k) {
        using W = VecOf<decltype(pr)>;
        const W gi = pr.grad(g, i, k);
        const W pi = W::load(p + i);
        (pi - W::set1(eta) * (decayed ? gi + W::set1(wd) * pi : gi)).store(p + i);
      });
    }
  }
};

using DoG = DoGRule<false>;
using LDoG = DoGRule<true>;
