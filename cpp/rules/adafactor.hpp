// Adafactor (docs/algorithms.md, "Adafactor"): torch.optim.Adafactor's
// definition. Included by cpp/rules/registry.hpp inside an ISA namespace.
//
// A tensor of ndim >= 2 is `batch` matrices of rows x cols with factored
// statistics row_var (batch x rows) and col_var (batch x cols); any other
// tensor keeps a param-shaped `variance`. Three passes:
//   0 (per tensor): the row and column sums of g*g in their fixed sequential
//     orders, the lerp of row_var / col_var and, for a single matrix, the sum
//     of row_var (its sum 0); factored tensors only: the others only read the
//     gradient when non-finite values must be counted;
//   1 (per chunk): sum(p*p) and sum(u*u), u = g / sqrt(max(v, eps1^2)); the
//     lerp of `variance` for unfactored tensors;
//   2 (per chunk): alpha and the clip denominator from those two sums, then
//     the weight decay and p = p - (alpha / denom) * u (u computed again).
// fastadapt.reference.adafactor computes exactly this, operation by operation.
#pragma once

struct Adafactor {
  enum Flag : unsigned { kWeightDecay = 1u << 0, kEps1Auto = 1u << 1 };
  enum ScalarSlot { kW, kOneMinusW, kRho, kEps1, kEps2, kD, kDecay };
  enum Slot { kRowVar = 0, kColVar = 1, kVariance = 2 };

  static unsigned slot_mask(unsigned, int ndim) { return ndim >= 2 ? 0b011u : 0b100u; }

  static constexpr RuleInfo info = {
      "adafactor",
      {"row_var", "col_var", "variance"},
      {kRowStats, kColStats, kLikeParam},
      {"w", "one_minus_w", "rho", "eps1", "eps2", "d", "decay"},
      {"weight_decay", "eps1_auto"},
      3,
      {kPerTensor, kPerChunk, kPerChunk},
      {1, 2, 0},
      slot_mask,
  };

  // eps1: given, or the machine epsilon of T (np.finfo(T).eps) when None.
  template <class T>
  static double eps1_of(const ChunkTask& t) {
    if (t.flags & kEps1Auto) return sizeof(T) == 4 ? 0x1p-23 : 0x1p-52;
    return t.scalars[kEps1];
  }

  // torch's lerp, v + w * (x - v), in its two forms (chosen by the float64 w).
  template <class V>
  static FA_INLINE V lerp(V v, V x, bool small, V w, V omw) {
    return small ? v + w * (x - v) : x - (x - v) * omw;
  }

  template <class T>
  static FA_INLINE T max_nan_scalar(T a, T b) {
    return max_nan(Scalar<T>{a}, Scalar<T>{b}).v;
  }

  // Pass 0, one whole tensor.
  template <class T>
  static ChunkResult statistics(const ChunkTask& t, const GradPrep& gp) {
    const T* g = static_cast<const T*>(t.g);
    Prep<Scalar<T>> pr(gp, t.flags & kMaximize);
    const std::size_t n = t.n;
    if (t.shape.ndim < 2 || n == 0) {
      // Unfactored: the variance moves in pass 1. Read the gradient here only
      // to count non-finite values (the first pass's duty).
      if (gp.zero_nonfinite)
        for (std::size_t i = 0; i < n; ++i) pr.grad(g, i, static_cast<int>(i % kNormLanes));
      return {0.0, pr.bad, {}};
    }
    const std::size_t B = t.shape.batch, R = t.shape.rows, C = t.shape.cols;
    T* rv = static_cast<T*>(t.s[kRowVar]);
    T* cv = static_cast<T*>(t.s[kColVar]);
    const bool small = __builtin_fabs(t.scalars[kW]) < 0.5;
    const Scalar<T> w{T(t.scalars[kW])}, omw{T(t.scalars[kOneMinusW])};
    auto square = [&](std::size_t idx) {
      const double x = static_cast<double>(pr.grad(g, idx, static_cast<int>(idx % kNormLanes)).v);
      return x * x;
    };
    auto set_row = [&](std::size_t r, double rowsum) {
      const Scalar<T> mean{static_cast<T>(rowsum / static_cast<double>(C))};
      rv[r] = lerp(Scalar<T>{rv[r]}, mean, small, w, omw).v;
    };
    thread_local std::vector<double> colsum;
    for (std::size_t b = 0; b < B; ++b) {
      colsum.assign(C, 0.0);
      std::size_t i = 0;
      // Four rows side by side: four independent row sums (each still left to
      // right), and each column sum still adds its rows top to bottom.
      for (; i + 4 <= R; i += 4) {
        const std::size_t base = (b * R + i) * C;
        double r0 = 0.0, r1 = 0.0, r2 = 0.0, r3 = 0.0;
        for (std::size_t j = 0; j < C; ++j) {
          const double x0 = square(base + j), x1 = square(base + C + j), x2 = square(base + 2 * C + j),
                       x3 = square(base + 3 * C + j);
          r0 = r0 + x0;
          r1 = r1 + x1;
          r2 = r2 + x2;
          r3 = r3 + x3;
          colsum[j] = (((colsum[j] + x0) + x1) + x2) + x3;
        }
        set_row(b * R + i, r0);
        set_row(b * R + i + 1, r1);
        set_row(b * R + i + 2, r2);
        set_row(b * R + i + 3, r3);
      }
      for (; i < R; ++i) {
        const std::size_t base = (b * R + i) * C;
        double rowsum = 0.0;
        for (std::size_t j = 0; j < C; ++j) {
          const double x = square(base + j);
          rowsum = rowsum + x;
          colsum[j] = colsum[j] + x;
        }
        set_row(b * R + i, rowsum);
      }
      for (std::size_t j = 0; j < C; ++j) {
        const Scalar<T> mean{static_cast<T>(colsum[j] / static_cast<double>(R))};
        cv[b * C + j] = lerp(Scalar<T>{cv[b * C + j]}, mean, small, w, omw).v;
      }
    }
    // One matrix (the usual case): hand the chunk passes the sum of row_var
    // (the tensor's sum 0 of this pass), so that they need not add it again.
    return {0.0, pr.bad, {B == 1 ? row_var_sum(rv, R) : 0.0}};
  }

  // The rows of one matrix's row_var, top to bottom, in float64 from 0.0.
  template <class T>
  static double row_var_sum(const T* rv, std::size_t R) {
    double sum = 0.0;
    for (std::size_t i = 0; i < R; ++i) sum = sum + static_cast<double>(rv[i]);
    return sum;
  }

  // Walks the (batch, row, col) of consecutive elements of a factored tensor,
  // from the chunk start on, handing out row_var, col_var and the clamped
  // row_var mean of each element's matrix.
  template <class T>
  struct Factors {
    const T* rv;
    const T* cv;
    const T* rmean;  // clamped means of the batches b0 .. b1 the chunk touches
    std::size_t R, C, b0, b, row, col;

    template <class V>
    FA_INLINE void next(V* r, V* c, V* m) {
      if (C == 1 && row + V::W <= R) {  // a column: contiguous row factors, one column factor
        *r = V::load(rv + b * R + row);
        *c = V::set1(cv[b]);
        *m = V::set1(rmean[b - b0]);
        row += V::W;
        if (row == R) {
          row = 0;
          ++b;
        }
        return;
      }
      if (col + V::W <= C) {  // within one row: one row factor, contiguous column factors
        *r = V::set1(rv[b * R + row]);
        *c = V::load(cv + b * C + col);
        *m = V::set1(rmean[b - b0]);
        col += V::W;
        if (col == C) {
          col = 0;
          if (++row == R) {
            row = 0;
            ++b;
          }
        }
        return;
      }
      alignas(64) T rb[16], cb[16], mb[16];
      for (int l = 0; l < V::W; ++l) {
        rb[l] = rv[b * R + row];
        cb[l] = cv[b * C + col];
        mb[l] = rmean[b - b0];
        if (++col == C) {
          col = 0;
          if (++row == R) {
            row = 0;
            ++b;
          }
        }
      }
      *r = V::load(rb);
      *c = V::load(cb);
      *m = V::load(mb);
    }
  };

  template <class T>
  static Factors<T> factors_for(const ChunkTask& t, double eps1) {
    const std::size_t R = t.shape.rows, C = t.shape.cols, RC = R * C;
    const T* rv = static_cast<const T*>(t.s[kRowVar]);
    const std::size_t b0 = t.begin / RC, b1 = (t.begin + t.n - 1) / RC;
    thread_local std::vector<T> rmean;
    rmean.resize(b1 - b0 + 1);
    for (std::size_t b = b0; b <= b1; ++b) {
      // (a batch of matrices: each chunk adds the rows of the matrices it touches)
      const double sum = t.shape.batch == 1 ? t.tensor_sums[0] : row_var_sum(rv + b * R, R);
      rmean[b - b0] = max_nan_scalar(static_cast<T>(sum / static_cast<double>(R)), static_cast<T>(eps1));
    }
    const std::size_t rem = t.begin % RC;
    return {rv, static_cast<const T*>(t.s[kColVar]), rmean.data(), R, C, b0, b0, rem / C, rem % C};
  }

  template <int Pass, class T>
  static ChunkResult pass(const ChunkTask& t, const GradPrep& gp) {
    if constexpr (Pass == 0) {
      return statistics<T>(t, gp);
    } else {
      T* p = static_cast<T*>(t.p);
      const T* g = static_cast<const T*>(t.g);
      const bool maximize = t.flags & kMaximize;
      const double eps1 = eps1_of<T>(t);
      const T eps1_sq = static_cast<T>(eps1 * eps1);
      const bool factored = t.shape.ndim >= 2;
      if constexpr (Pass == 1) {
        if (factored) {
          Factors<T> f = factors_for<T>(t, eps1);
          const T* const streams[] = {g, p};
          return run_chunk<T, 2>(t.n, gp, maximize, streams, [&](auto& pr, std::size_t i, int k) {
            using W = VecOf<decltype(pr)>;
            const W gi = pr.grad(g, i, k);
            pr.sum[0].add(W::load(p + i), k);
            W r, c, m;
            f.next(&r, &c, &m);
            const W v = (r * c) / m;
            pr.sum[1].add(gi / vsqrt(max_nan(v, W::set1(eps1_sq))), k);
          });
        }
        T* var = static_cast<T*>(t.s[kVariance]);
        const bool small = __builtin_fabs(t.scalars[kW]) < 0.5;
        const T w = T(t.scalars[kW]), omw = T(t.scalars[kOneMinusW]);
        const T* const streams[] = {g, p, var};
        return run_chunk<T, 2>(t.n, gp, maximize, streams, [&](auto& pr, std::size_t i, int k) {
          using W = VecOf<decltype(pr)>;
          const W gi = pr.grad(g, i, k);
          pr.sum[0].add(W::load(p + i), k);
          const W v = lerp(W::load(var + i), gi * gi, small, W::set1(w), W::set1(omw));
          v.store(var + i);
          pr.sum[1].add(gi / vsqrt(max_nan(v, W::set1(eps1_sq))), k);
        });
      } else {
        // alpha and the clip denominator, in float64 as the reference (Python's
        // max: the second operand only if it is greater, so NaN sums give
        // eps2 and 1).
        const double n = static_cast<double>(t.shape.batch * t.shape.rows * t.shape.cols);
        const double sum_pp = t.tensor_sums[kMaxSums + 0], sum_uu = t.tensor_sums[kMaxSums + 1];
        const double eps2 = t.scalars[kEps2];
        const double root_n = __builtin_sqrt(n);
        const double rms = __builtin_sqrt(sum_pp) / root_n;
        const double alpha = (rms > eps2 ? rms : eps2) * t.scalars[kRho];
        const double q = __builtin_sqrt(sum_uu) / (root_n * t.scalars[kD]);
        const double denom = q > 1.0 ? q : 1.0;
        const T step = static_cast<T>(alpha / denom);
        const bool decay = t.flags & kWeightDecay;
        const T factor = static_cast<T>(t.scalars[kDecay]);
        if (factored) {
          Factors<T> f = factors_for<T>(t, eps1);
          const T* const streams[] = {g, p};
          return run_chunk<T>(t.n, gp, maximize, streams, [&](auto& pr, std::size_t i, int k) {
            using W = VecOf<decltype(pr)>;
            const W gi = pr.grad(g, i, k);
            W r, c, m;
            f.next(&r, &c, &m);
            const W v = (r * c) / m;
            const W u = gi / vsqrt(max_nan(v, W::set1(eps1_sq)));
            W pi = W::load(p + i);
            if (decay) pi = pi * W::set1(factor);
            pi = pi - W::set1(step) * u;
            pi.store(p + i);
          });
        }
        const T* var = static_cast<const T*>(t.s[kVariance]);
        const T* const streams[] = {g, p, var};
        return run_chunk<T>(t.n, gp, maximize, streams, [&](auto& pr, std::size_t i, int k) {
          using W = VecOf<decltype(pr)>;
          const W gi = pr.grad(g, i, k);
          const W u = gi / vsqrt(max_nan(W::load(var + i), W::set1(eps1_sq)));
          W pi = W::load(p + i);
          if (decay) pi = pi * W::set1(factor);
          pi = pi - W::set1(step) * u;
          pi.store(p + i);
        });
      }
    }
  }
};
