"""Adam and AdamW in plain NumPy, in docs/algorithms.md's operation order."""

from __future__ import annotations

import math

import numpy as np

from ._common import ReferenceOptimizer


def adam_rule(p, g, m, v, vmax, *, t, lr, betas, eps, weight_decay, amsgrad, decoupled):
    """One Adam (``decoupled=False``: L2 weight decay added to ``g``) or AdamW
    (``decoupled=True``: ``p`` decayed by ``1 - lr * weight_decay`` first) step
    on one tensor, in place on ``p``, ``m`` and ``v``, and on ``vmax`` with
    ``amsgrad`` (otherwise it may be None). ``t`` counts from 1; the bias
    corrections are float64 scalars rounded to the array dtype once."""
    T = p.dtype.type
    b1, b2 = betas
    if weight_decay != 0 and not decoupled:
        g = g + T(weight_decay) * p
    if decoupled and weight_decay != 0:
        p[...] = p * T(1.0 - lr * weight_decay)
    m[...] = T(b1) * m + T(1.0 - b1) * g
    v[...] = T(b2) * v + T(1.0 - b2) * (g * g)
    vv = v
    if amsgrad:
        vmax[...] = np.maximum(vmax, v)
        vv = vmax
    denom = np.sqrt(vv) / T(math.sqrt(1.0 - b2 ** t)) + T(eps)
    p[...] = p - T(lr / (1.0 - b1 ** t)) * (m / denom)


class Adam(ReferenceOptimizer):
    """[`fastadapt.Adam`][fastadapt.Adam] in plain NumPy, torch.optim.Adam's defaults; per tensor
    [`adam_rule`][fastadapt.reference.adam_rule] with state ``exp_avg``, ``exp_avg_sq`` (and
    ``max_exp_avg_sq`` with ``amsgrad``)."""

    defaults = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False)
    decoupled = False

    def _apply(self, path, p, g):
        m = self._buffer(path, "exp_avg", p)
        v = self._buffer(path, "exp_avg_sq", p)
        vmax = self._buffer(path, "max_exp_avg_sq", p) if self.amsgrad else None
        adam_rule(p, g, m, v, vmax, t=self.step_count, lr=self.lr, betas=self.betas, eps=self.eps,
                  weight_decay=self.weight_decay, amsgrad=self.amsgrad, decoupled=self.decoupled)


class AdamW(Adam):
    """[`fastadapt.AdamW`][fastadapt.AdamW] in plain NumPy: [`Adam`][fastadapt.reference.Adam] with
    decoupled weight decay, default ``weight_decay=1e-2``."""

    defaults = dict(Adam.defaults, weight_decay=1e-2)
    decoupled = True
