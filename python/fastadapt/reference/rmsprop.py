"""RMSProp in plain NumPy, in docs/algorithms.md's operation order."""

from __future__ import annotations

import numpy as np

from ._common import ReferenceOptimizer


def rmsprop_rule(p, g, sq, ga, buf, *, lr, alpha, eps, weight_decay, momentum, centered):
    """One RMSProp step on one tensor, in place on ``p`` and ``sq`` (the
    running mean of ``g * g``), on ``ga`` (the running mean of ``g``) when
    ``centered`` and on ``buf`` when ``momentum > 0`` (either may be None
    otherwise). L2 weight decay is added to ``g`` first."""
    T = p.dtype.type
    if weight_decay != 0:
        g = g + T(weight_decay) * p
    sq[...] = T(alpha) * sq + T(1.0 - alpha) * (g * g)
    if centered:
        ga[...] = T(alpha) * ga + T(1.0 - alpha) * g
        avg = np.sqrt(sq - ga * ga) + T(eps)
    else:
        avg = np.sqrt(sq) + T(eps)
    if momentum > 0:
        buf[...] = T(momentum) * buf + g / avg
        p[...] = p - T(lr) * buf
    else:
        p[...] = p - T(lr) * (g / avg)


class RMSProp(ReferenceOptimizer):
    """[`fastadapt.RMSprop`][fastadapt.RMSprop] in plain NumPy, torch.optim.RMSprop's defaults; per tensor
    [`rmsprop_rule`][fastadapt.reference.rmsprop_rule] with state ``square_avg`` (``grad_avg`` when centered,
    ``momentum_buffer`` with momentum)."""

    defaults = dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                    maximize=False)

    def _apply(self, path, p, g):
        sq = self._buffer(path, "square_avg", p)
        ga = self._buffer(path, "grad_avg", p) if self.centered else None
        buf = self._buffer(path, "momentum_buffer", p) if self.momentum > 0 else None
        rmsprop_rule(p, g, sq, ga, buf, lr=self.lr, alpha=self.alpha, eps=self.eps,
                     weight_decay=self.weight_decay, momentum=self.momentum, centered=self.centered)
