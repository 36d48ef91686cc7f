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

// The packages' early return (every s is 0: no estimate yet): a scalar slot
// that pass 1 reads in every group, so it leaves the parameters alone.
static inline void set_group_scalar(const PassSums& ps, int slot, double value) {
  for (int g = 0; g < ps.ngroups; ++g) ps.scalars[g * kMaxScalars + slot] = value;
}

// Sum j of pass `pass` of tensor t, as the stepper reduced it (fixed order).
static inline double tensor_sum_of(const PassSums& ps, std::size_t t, int pass, int j) {
  return ps.tensor_sums[t * (kMaxPasses * kMaxSums) + pass * kMaxSums + j];
}
