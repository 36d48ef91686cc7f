// Schedule-Free SGD (docs/algorithms.md, "ScheduleFreeSGD"): the
// schedulefree package's SGDScheduleFree. The
// parameter holds the training point y, slot "z" the base sequence; the
// schedule is float64 Python work (python/fastadapt/optim/_schedulefree.py),
// so one pass and no reductions. Included by cpp/rules/registry.hpp inside
// an ISA namespace (see loops.hpp).
#pragma once

struct ScheduleFreeSGD {
  // kLerpFromZ: |c| >= 0.5, torch.lerp's second form (see schedulefree_adamw.hpp).
  enum Flag : unsigned { kDecay = 1u << 0, kLerpFromZ = 1u << 1 };
  enum ScalarSlot { kWd, kC, kOneMinusC, kYStep, kZStep };

  static unsigned slot_mask(unsigned, int) { return 0b1u; }

  static constexpr RuleInfo info = {
      "schedulefree-sgd",
      {"z"},
      {kLikeParam},
      {"wd", "c", "one_minus_c", "y_step", "z_step"},
      {"decay", "lerp_from_z"},
      1,
      {kPerChunk},
      {0},
      slot_mask,
  };

  template <int Pass, class T>
  static ChunkResult pass(const ChunkTask& t, const GradPrep& gp) {
    T* y = static_cast<T*>(t.p);
    const T* g = static_cast<const T*>(t.g);
    T* z = static_cast<T*>(t.s[0]);
    const double* s = t.scalars;
    const T wd = T(s[kWd]), c = T(s[kC]), omc = T(s[kOneMinusC]), ystep = T(s[kYStep]), zstep = T(s[kZStep]);
    const bool decay = t.flags & kDecay, from_z = t.flags & kLerpFromZ;
    const T* const streams[] = {g, y, z};
    return run_chunk<T>(t.n, gp, t.flags & kMaximize, streams, [&](auto& pr, std::size_t i, int k) {
      using W = VecOf<decltype(pr)>;
      W gi = pr.grad(g, i, k);
      W yi = W::load(y + i);
      const W zi = W::load(z + i);
      if (decay) gi = gi + W::set1(wd) * yi;
      const W d = zi - yi;
      yi = from_z ? zi - d * W::set1(omc) : yi + W::set1(c) * d;
      (yi + W::set1(ystep) * gi).store(y + i);
      (zi - W::set1(zstep) * gi).store(z + i);
    });
  }
};
