"""Adamax in plain NumPy, in docs/algorithms.md's operation order."""

from __future__ import annotations

import numpy as np

from ._common import ReferenceOptimizer


def adamax_rule(p, g, m, u, *, t, lr, betas, eps, weight_decay):
    """One Adamax step on one tensor, in place on ``p``, ``m`` and the infinity
    norm ``u = max(b2 * u, |g| + eps)``; only ``m`` is bias-corrected. L2
    weight decay is added to ``g`` first."""
    T = p.dtype.type
    b1, b2 = betas
    if weight_decay != 0:
        g = g + T(weight_decay) * p
    m[...] = T(b1) * m + T(1.0 - b1) * g
    u[...] = np.maximum(T(b2) * u, np.abs(g) + T(eps))
    p[...] = p - T(lr / (1.0 - b1 ** t)) * (m / u)


class Adamax(ReferenceOptimizer):
    """[`fastadapt.Adamax`][fastadapt.Adamax] in plain NumPy, torch.optim.Adamax's defaults; per tensor
    [`adamax_rule`][fastadapt.reference.adamax_rule] with state ``exp_avg`` and ``exp_inf``."""

    defaults = dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, maximize=False)

    def _apply(self, path, p, g):
        m = self._buffer(path, "exp_avg", p)
        u = self._buffer(path, "exp_inf", p)
        adamax_rule(p, g, m, u, t=self.step_count, lr=self.lr, betas=self.betas, eps=self.eps,
                    weight_decay=self.weight_decay)
