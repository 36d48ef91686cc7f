// What HD-SGD and HD-Adam share (docs/algorithms.md, "HD-SGD", "HD-Adam"):
// one learning rate alpha per group, learned from the group's sum of
// g . d_prev that pass 0 emits. Each tensor carries alpha ("lr") and the
// value of the lr hyperparameter alpha started from ("lr_base"); every
// member of a group holds the same pair, so each computes the same alpha.
#pragma once

namespace hypergradient {

enum TensorScalar { kAlpha, kLrBase };

// alpha_t = alpha_{t-1} + hypergrad_lr * sum_group(g_t . d_{t-1}) (the
// paper's alpha_{t-1} - beta h_t), restarting from lr when lr was assigned
// since the last step. Runs once, single-threaded, after pass 0.
template <int kLrSlot, int kHypergradLrSlot>
inline void after_pass(const PassSums& ps) {
  if (ps.pass != 0) return;
  for (std::size_t i = 0; i < ps.ntensors; ++i) {
    const int grp = ps.tensor_group[i];
    const double* s = ps.scalars + static_cast<std::size_t>(grp) * kMaxScalars;
    double* ts = ps.tensor_scalars + i * kMaxTensorScalars;
    const double dot = ps.group_sums[static_cast<std::size_t>(grp) * kMaxPasses * kMaxSums + 0];
    const double lr = s[kLrSlot];
    double alpha = ts[kAlpha];
    if (lr != ts[kLrBase]) {  // lr assigned since the last step: start again from it
      alpha = lr;
      ts[kLrBase] = lr;
    }
    ts[kAlpha] = alpha + s[kHypergradLrSlot] * dot;
  }
}

// Pass 1 of both: p = p - alpha * d, with the new alpha (the hook's, in
// this tensor's row) and the direction d that pass 0 stored.
template <class T>
inline ChunkResult step_along_direction(const ChunkTask& t, const GradPrep& gp, T* p, const T* d) {
  const T alpha = T(t.tensor_scalars[kAlpha]);
  const bool maximize = t.flags & kMaximize;
  const T* const streams[] = {p, d};
  return run_chunk<T>(t.n, gp, maximize, streams, [&](auto& pr, std::size_t i, int) {
    using W = VecOf<decltype(pr)>;
    (W::load(p + i) - W::set1(alpha) * W::load(d + i)).store(p + i);
  });
}

}  // namespace hypergradient
