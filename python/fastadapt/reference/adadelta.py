"""Adadelta in plain NumPy, in docs/algorithms.md's operation order."""

from __future__ import annotations

import numpy as np

from ._common import ReferenceOptimizer


def adadelta_rule(p, g, sq, acc, *, lr, rho, eps, weight_decay):
    """One Adadelta step on one tensor, in place on ``p``, ``sq`` (the running
    mean of ``g * g``) and ``acc`` (the running mean of the squared updates):
    ``delta = sqrt(acc + eps) / sqrt(sq + eps) * g``, ``p -= lr * delta``. L2
    weight decay is added to ``g`` first."""
    T = p.dtype.type
    if weight_decay != 0:
        g = g + T(weight_decay) * p
    sq[...] = T(rho) * sq + T(1.0 - rho) * (g * g)
    delta = np.sqrt(acc + T(eps)) / np.sqrt(sq + T(eps)) * g
    acc[...] = T(rho) * acc + T(1.0 - rho) * (delta * delta)
    p[...] = p - T(lr) * delta


class Adadelta(ReferenceOptimizer):
    """[`fastadapt.Adadelta`][fastadapt.Adadelta] in plain NumPy, torch.optim.Adadelta's defaults; per
    tensor [`adadelta_rule`][fastadapt.reference.adadelta_rule] with state ``square_avg`` and
    ``acc_delta``."""

    defaults = dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False)

    def _apply(self, path, p, g):
        sq = self._buffer(path, "square_avg", p)
        acc = self._buffer(path, "acc_delta", p)
        adadelta_rule(p, g, sq, acc, lr=self.lr, rho=self.rho, eps=self.eps, weight_decay=self.weight_decay)
