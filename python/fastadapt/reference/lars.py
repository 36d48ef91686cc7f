"""LARS (You et al. 2017, optax's ``lars``) in plain NumPy, in
docs/algorithms.md's operation order."""

from __future__ import annotations

from ._common import ReferenceOptimizer
from ._trust import sumsq, trust_ratio


def lars_direction(p, g, *, weight_decay, weight_decay_mask):
    """``u = g + wd * p`` (or ``g`` where weight decay is off for this tensor):
    a function of ``(p, g)``, recomputed bit for bit by the second pass."""
    T = p.dtype.type
    if weight_decay_mask and weight_decay != 0:
        return g + T(weight_decay) * p
    return g


def lars_rule(p, g, trace, *, lr, weight_decay, weight_decay_mask, trust_coefficient, eps, trust_ratio_mask,
              momentum, nesterov):
    """One LARS step on one tensor, in place. ``trace`` holds optax's trace of
    the (negative, lr-scaled) updates, so ``p = p + trace`` without Nesterov."""
    T = p.dtype.type
    u = lars_direction(p, g, weight_decay=weight_decay, weight_decay_mask=weight_decay_mask)
    ratio = trust_ratio(sumsq(p), sumsq(u), trust_coefficient, eps) if trust_ratio_mask else 1.0
    d = T(-(lr * ratio)) * u
    trace[...] = d + T(momentum) * trace
    step = d + T(momentum) * trace if nesterov else trace
    p[...] = p + step


class LARS(ReferenceOptimizer):
    """[`fastadapt.LARS`][fastadapt.LARS] in plain NumPy, optax.lars's defaults with ``lr=1e-3``
    (optax has no default lr); per tensor [`lars_rule`][fastadapt.reference.lars_rule] with state
    ``trace``."""

    defaults = dict(lr=1e-3, weight_decay=0.0, weight_decay_mask=True, trust_coefficient=0.001, eps=0.0,
                    trust_ratio_mask=True, momentum=0.9, nesterov=False, maximize=False)

    def _apply(self, path, p, g):
        trace = self._buffer(path, "trace", p)
        lars_rule(p, g, trace, lr=self.lr, weight_decay=self.weight_decay, weight_decay_mask=self.weight_decay_mask,
                  trust_coefficient=self.trust_coefficient, eps=self.eps, trust_ratio_mask=self.trust_ratio_mask,
                  momentum=self.momentum, nesterov=self.nesterov)
