// The per-tensor trust ratio of LAMB and LARS (docs/algorithms.md, "LAMB"):
// optax's scale_by_trust_ratio with min_norm = 0, in float64, from the two
// sums of squares a rule's first pass emits (||p||^2 and ||u||^2 of the
// tensor, in the stepper's fixed order). fastadapt.reference._trust.trust_ratio.
#pragma once

static inline double trust_ratio(double p_sumsq, double u_sumsq, double coefficient, double eps) {
  const double p_norm = __builtin_sqrt(p_sumsq), u_norm = __builtin_sqrt(u_sumsq);
  // Exactly 1 when either norm is 0 (a NaN norm is not 0: the ratio is NaN).
  if (p_norm == 0.0 || u_norm == 0.0) return 1.0;
  return coefficient * p_norm / (u_norm + eps);
}
