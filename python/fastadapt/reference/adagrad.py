"""AdaGrad in plain NumPy, in docs/algorithms.md's operation order."""

from __future__ import annotations

import numpy as np

from ._common import ReferenceOptimizer


def adagrad_rule(p, g, s, *, t, lr, lr_decay, weight_decay, eps):
    """One AdaGrad step on one tensor, in place on ``p`` and the sum of squares
    ``s``: ``p -= lr / (1 + (t - 1) * lr_decay) * g / (sqrt(s) + eps)``, with
    L2 weight decay added to ``g`` first (``t`` counts from 1)."""
    T = p.dtype.type
    if weight_decay != 0:
        g = g + T(weight_decay) * p
    s[...] = s + g * g
    p[...] = p - T(lr / (1.0 + (t - 1) * lr_decay)) * (g / (np.sqrt(s) + T(eps)))


class AdaGrad(ReferenceOptimizer):
    """[`fastadapt.Adagrad`][fastadapt.Adagrad] in plain NumPy, torch.optim.Adagrad's defaults; per tensor
    [`adagrad_rule`][fastadapt.reference.adagrad_rule] with state ``sum`` (starting at
    ``initial_accumulator_value``)."""

    defaults = dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10,
                    maximize=False)

    def _apply(self, path, p, g):
        s = self._buffer(path, "sum", p, self.initial_accumulator_value)
        adagrad_rule(p, g, s, t=self.step_count, lr=self.lr, lr_decay=self.lr_decay,
                     weight_decay=self.weight_decay, eps=self.eps)
