"""HD-Adam (Baydin et al., ICLR 2018, Algorithm 6 "Adam-HD") in plain NumPy,
in docs/algorithms.md's operation order: the direction is the paper's
``m_hat / (sqrt(v_hat) + eps)``, stored as ``direction_prev`` for the next
step's hypergradient."""

from __future__ import annotations

import numpy as np

from ._hypergradient import HypergradientReference


def hd_adam_pass0(p, g, m, v, d_prev, *, t, betas, eps, weight_decay):
    """Pass 0 on one tensor: the float64 products ``g . d_prev``, the moment
    updates, and the new direction written into ``d_prev``'s array."""
    T = p.dtype.type
    b1, b2 = betas
    if weight_decay != 0:
        g = g + T(weight_decay) * p
    dots = g.astype(np.float64) * d_prev.astype(np.float64)
    m[...] = T(b1) * m + T(1.0 - b1) * g
    v[...] = T(b2) * v + T(1.0 - b2) * (g * g)
    m_hat = m / T(1.0 - b1 ** t)
    v_hat = v / T(1.0 - b2 ** t)
    d_prev[...] = m_hat / (np.sqrt(v_hat) + T(eps))
    return dots, d_prev


class HypergradientAdam(HypergradientReference):
    """[`fastadapt.HypergradientAdam`][fastadapt.HypergradientAdam] in plain NumPy:
    [`hd_adam_pass0`][fastadapt.reference.hd_adam_pass0] on every tensor, then one learned learning
    rate for the whole step (state ``exp_avg``, ``exp_avg_sq``, ``direction_prev``, and the float64
    scalars ``lr`` and ``lr_base``)."""

    defaults = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, hypergrad_lr=1e-8, maximize=False)

    def _pass0(self, path, p, g):
        m = self._buffer(path, "exp_avg", p)
        v = self._buffer(path, "exp_avg_sq", p)
        d_prev = self._buffer(path, "direction_prev", p)
        return hd_adam_pass0(p, g, m, v, d_prev, t=self.step_count, betas=self.betas, eps=self.eps,
                             weight_decay=self.weight_decay)
