"""SGD with momentum in plain NumPy, in docs/algorithms.md's operation order."""

from __future__ import annotations

from ._common import ReferenceOptimizer


def sgd_rule(p, g, buf, *, first, lr, momentum, dampening, weight_decay, nesterov):
    """One SGD step on one tensor, in place on ``p`` and, with ``momentum``, on
    the momentum buffer ``buf`` (None without momentum). ``first`` marks the
    buffer's first step, which stores ``g`` itself (torch's rule); ``nesterov``
    steps along ``g + momentum * buf``. L2 weight decay is added to ``g`` first."""
    T = p.dtype.type
    if weight_decay != 0:
        g = g + T(weight_decay) * p
    if momentum != 0:
        if first:
            buf[...] = g
        else:
            buf[...] = T(momentum) * buf + T(1.0 - dampening) * g
        g = g + T(momentum) * buf if nesterov else buf.copy()
    p[...] = p - T(lr) * g


class SGD(ReferenceOptimizer):
    """[`fastadapt.SGD`][fastadapt.SGD] in plain NumPy (``lr=1e-3`` as fastadapt's default); per
    tensor [`sgd_rule`][fastadapt.reference.sgd_rule] with state ``momentum_buffer`` when momentum is on."""

    defaults = dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False)

    def _apply(self, path, p, g):
        buf = None
        first = False
        if self.momentum != 0:
            first = "momentum_buffer" not in self.state.get(path, {})
            buf = self._buffer(path, "momentum_buffer", p)
        sgd_rule(p, g, buf, first=first, lr=self.lr, momentum=self.momentum, dampening=self.dampening,
                 weight_decay=self.weight_decay, nesterov=self.nesterov)
