// Schedule-Free AdamW (docs/algorithms.md, "ScheduleFreeAdamW"): the
// schedulefree package's AdamWScheduleFree. The parameter holds the training
// point y, slot "z" the base sequence. The
// schedule (warmup, lr_max, the averaging weight c and the two step sizes) is
// float64 Python work (python/fastadapt/optim/_schedulefree.py): nothing in
// it depends on the arrays, so one pass and no reductions. Included by
// cpp/rules/registry.hpp inside an ISA namespace (see loops.hpp).
#pragma once

struct ScheduleFreeAdamW {
  // kLerpFromZ: |c| >= 0.5, so y moves towards z in torch.lerp's second form
  // (z - (z - y) * (1 - c)), which gives z exactly at c = 1 (the first step).
  enum Flag : unsigned { kDecay = 1u << 0, kLerpFromZ = 1u << 1 };
  enum ScalarSlot { kB2, kOneMinusB2, kBc2, kEps, kWd, kC, kOneMinusC, kYStep, kZStep };

  static unsigned slot_mask(unsigned, int) { return 0b11u; }

  static constexpr RuleInfo info = {
      "schedulefree-adamw",
      {"z", "exp_avg_sq"},
      {kLikeParam, kLikeParam},
      {"b2", "one_minus_b2", "bc2", "eps", "wd", "c", "one_minus_c", "y_step", "z_step"},
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
    T* v = static_cast<T*>(t.s[1]);
    const double* s = t.scalars;
    const T b2 = T(s[kB2]), omb2 = T(s[kOneMinusB2]), eps = T(s[kEps]), wd = T(s[kWd]), c = T(s[kC]),
            omc = T(s[kOneMinusC]), ystep = T(s[kYStep]), zstep = T(s[kZStep]);
    const Divisor<T> bc2(s[kBc2]);
    const bool decay = t.flags & kDecay, from_z = t.flags & kLerpFromZ;
    const T* const streams[] = {g, y, z, v};
    return run_chunk<T>(t.n, gp, t.flags & kMaximize, streams, [&](auto& pr, std::size_t i, int k) {
      using W = VecOf<decltype(pr)>;
      const W gi = pr.grad(g, i, k);
      W yi = W::load(y + i);
      const W zi = W::load(z + i);
      const W vi = W::set1(b2) * W::load(v + i) + W::set1(omb2) * (gi * gi);
      vi.store(v + i);
      W ui = gi / (vsqrt(div_by(vi, bc2)) + W::set1(eps));
      if (decay) ui = ui + W::set1(wd) * yi;
      const W d = zi - yi;
      yi = from_z ? zi - d * W::set1(omc) : yi + W::set1(c) * d;
      (yi + W::set1(ystep) * ui).store(y + i);
      (zi - W::set1(zstep) * ui).store(z + i);
    });
  }
};
