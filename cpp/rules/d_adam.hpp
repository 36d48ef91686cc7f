// What the D-adaptation rules (DAdaptAdam, Prodigy) share: one set of learned
// scalars for the whole optimizer, kept by the core per tensor (every tensor
// holds the same values; the hooks read tensor 0's and write all), and the
// packages' own max/min. fastadapt.reference._d_adam.
#pragma once

// Python's builtin max(a, b) and min(a, b), which the reference packages
// use: b only when b > a (b < a), so a NaN b is ignored and a NaN a is kept.
static inline double py_max(double a, double b) { return b > a ? b : a; }
static inline double py_min(double a, double b) { return b < a ? b : a; }

// Writes `n` learned values to every tensor's row.
static inline void set_learned(const PassSums& ps, const double* values, int n) {
  for (std::size_t t = 0; t < ps.ntensors; ++t)
    for (int j = 0; j < n; ++j) ps.tensor_scalars[t * kMaxTensorScalars + j] = values[j];
}

// Sum j of pass `pass` of tensor t, as the stepper reduced it (fixed order).
static inline double tensor_sum_of(const PassSums& ps, std::size_t t, int pass, int j) {
  return ps.tensor_sums[t * (kMaxPasses * kMaxSums) + pass * kMaxSums + j];
}

// The hooks' two sums over every tensor, in order: numerator += num_weight(t)
// * (pass 0's sum 0 of t), denominator += den_weight(t) * (its sum 1: sum|s|).
// A denominator of 0 is the packages' early return (every s is 0: no estimate
// yet): then kSkip, a scalar slot that pass 1 reads in every group, is set to
// 1 so that pass 1 leaves the parameters alone, and this returns false.
template <int kSkip, class NumWeight, class DenWeight>
static inline bool d_sums(const PassSums& ps, NumWeight num_weight, DenWeight den_weight, double& numerator,
                          double& denominator) {
  numerator = 0.0;
  denominator = 0.0;
  for (std::size_t t = 0; t < ps.ntensors; ++t) {
    numerator += num_weight(t) * tensor_sum_of(ps, t, 0, 0);
    denominator += den_weight(t) * tensor_sum_of(ps, t, 0, 1);
  }
  if (denominator != 0.0) return true;
  for (int g = 0; g < ps.ngroups; ++g) ps.scalars[g * kMaxScalars + kSkip] = 1.0;
  return false;
}

// Pass 0 of a group with lr 0: no share in d's sums and no moments; the
// gradient is still read once (the norm).
template <class T>
static inline ChunkResult read_gradient_only(const ChunkTask& t, const GradPrep& gp, bool maximize) {
  const T* g = static_cast<const T*>(t.g);
  const T* const streams[] = {g};
  return run_chunk<T, 2>(t.n, gp, maximize, streams, [&](auto& pr, std::size_t i, int k) {
    (void)pr.grad(g, i, k);
  });
}
