"""HD-SGD (Baydin et al., ICLR 2018, Algorithm 4 "SGD-HD", and with Nesterov
momentum Algorithm 5 "SGDN-HD") in plain NumPy, in docs/algorithms.md's
operation order. Momentum, dampening and Nesterov are torch.optim.SGD's, as
in the authors' ``SGDHD``: with ``hypergrad_lr=0`` this is fa.SGD bit for bit.
"""

from __future__ import annotations

import numpy as np

from ._hypergradient import HypergradientReference


def hd_sgd_pass0(p, g, buf, d_prev, *, first, momentum, dampening, weight_decay, nesterov):
    """Pass 0 on one tensor: returns the float64 products ``g . d_prev`` (one
    per element, summed by the caller) and writes ``buf`` and the new
    direction ``d`` into ``d_prev``'s array (returned too)."""
    T = p.dtype.type
    if weight_decay != 0:
        g = g + T(weight_decay) * p
    dots = g.astype(np.float64) * d_prev.astype(np.float64)
    if momentum != 0:
        if first:
            buf[...] = g
        else:
            buf[...] = T(momentum) * buf + T(1.0 - dampening) * g
        d = g + T(momentum) * buf if nesterov else buf
    else:
        d = g
    d_prev[...] = d
    return dots, d_prev


class HypergradientSGD(HypergradientReference):
    """[`fastadapt.HypergradientSGD`][fastadapt.HypergradientSGD] in plain NumPy:
    [`hd_sgd_pass0`][fastadapt.reference.hd_sgd_pass0] on every tensor, then one learned learning
    rate for the whole step (state ``grad_prev``, ``momentum_buffer`` with momentum, and the float64
    scalars ``lr`` and ``lr_base``)."""

    defaults = dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, hypergrad_lr=1e-6,
                    maximize=False)

    def _pass0(self, path, p, g):
        buf = None
        first = False
        if self.momentum != 0:
            first = "momentum_buffer" not in self.state.get(path, {})
            buf = self._buffer(path, "momentum_buffer", p)
        d_prev = self._buffer(path, "grad_prev", p)
        return hd_sgd_pass0(p, g, buf, d_prev, first=first, momentum=self.momentum, dampening=self.dampening,
                            weight_decay=self.weight_decay, nesterov=self.nesterov)
