"""RAdam in plain NumPy, in docs/algorithms.md's operation order.

The length of the approximated SMA ``rho_t`` and the rectification term are
scalars of (beta2, t), computed in float64; ``rho_t > 5`` picks the branch
for the whole step.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ._common import ReferenceOptimizer


def radam_rectification(beta2: float, t: int) -> Optional[float]:
    """The variance rectification term ``r_t`` of step ``t``, or None when
    ``rho_t <= 5`` (the un-adapted, momentum-only step)."""
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    rho_t = rho_inf - 2.0 * t * beta2 ** t / (1.0 - beta2 ** t)
    if not rho_t > 5.0:
        return None
    return math.sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))


def radam_rule(p, g, m, v, *, t, lr, betas, eps, weight_decay, decoupled_weight_decay):
    """One RAdam step on one tensor, in place on ``p``, ``m`` and ``v``: the
    rectified adaptive step while ``rho_t > 5`` (``radam_rectification``),
    else the bias-corrected momentum step. Weight decay is L2, or decoupled
    (``p *= 1 - lr * weight_decay``) with ``decoupled_weight_decay``."""
    T = p.dtype.type
    b1, b2 = betas
    if weight_decay != 0 and not decoupled_weight_decay:
        g = g + T(weight_decay) * p
    if weight_decay != 0 and decoupled_weight_decay:
        p[...] = p * T(1.0 - lr * weight_decay)
    m[...] = T(b1) * m + T(1.0 - b1) * g
    v[...] = T(b2) * v + T(1.0 - b2) * (g * g)
    rect = radam_rectification(b2, t)
    if rect is not None:
        p[...] = p - T(lr * rect * math.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)) * (m / (np.sqrt(v) + T(eps)))
    else:
        p[...] = p - T(lr / (1.0 - b1 ** t)) * m


class RAdam(ReferenceOptimizer):
    """[`fastadapt.RAdam`][fastadapt.RAdam] in plain NumPy, torch.optim.RAdam's defaults; per tensor
    [`radam_rule`][fastadapt.reference.radam_rule] with state ``exp_avg`` and ``exp_avg_sq``."""

    defaults = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled_weight_decay=False,
                    maximize=False)

    def _apply(self, path, p, g):
        m = self._buffer(path, "exp_avg", p)
        v = self._buffer(path, "exp_avg_sq", p)
        radam_rule(p, g, m, v, t=self.step_count, lr=self.lr, betas=self.betas, eps=self.eps,
                   weight_decay=self.weight_decay, decoupled_weight_decay=self.decoupled_weight_decay)
