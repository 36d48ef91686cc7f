"""NAdam in plain NumPy, in docs/algorithms.md's operation order.

The momentum schedule ``mu_t`` and its running product are scalars: they are
computed in float64 here (as the Python layer will for the kernel) and the
product is history state, kept per tensor under torch's key ``mu_product``.
"""

from __future__ import annotations

import numpy as np

from ._common import ReferenceOptimizer


def nadam_mu(beta1: float, momentum_decay: float, t: int) -> float:
    """The momentum coefficient of step ``t``: ``beta1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))``."""
    return beta1 * (1.0 - 0.5 * 0.96 ** (t * momentum_decay))


def nadam_rule(p, g, m, v, *, t, lr, betas, eps, weight_decay, momentum_decay, decoupled_weight_decay,
               mu_product):
    """One NAdam step on one tensor. ``mu_product`` is the product of ``mu_1 .. mu_t``,
    this step's factor included (the caller keeps it)."""
    T = p.dtype.type
    b1, b2 = betas
    mu = nadam_mu(b1, momentum_decay, t)
    mu_next = nadam_mu(b1, momentum_decay, t + 1)
    if weight_decay != 0 and not decoupled_weight_decay:
        g = g + T(weight_decay) * p
    if weight_decay != 0 and decoupled_weight_decay:
        p[...] = p * T(1.0 - lr * weight_decay)
    m[...] = T(b1) * m + T(1.0 - b1) * g
    v[...] = T(b2) * v + T(1.0 - b2) * (g * g)
    denom = np.sqrt(v / T(1.0 - b2 ** t)) + T(eps)
    p[...] = p - T(lr * (1.0 - mu) / (1.0 - mu_product)) * (g / denom)
    p[...] = p - T(lr * mu_next / (1.0 - mu_product * mu_next)) * (m / denom)


class NAdam(ReferenceOptimizer):
    """[`fastadapt.NAdam`][fastadapt.NAdam] in plain NumPy, torch.optim.NAdam's defaults; per tensor
    [`nadam_rule`][fastadapt.reference.nadam_rule] with state ``exp_avg``, ``exp_avg_sq`` and the
    float64 scalar ``mu_product``."""

    defaults = dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
                    decoupled_weight_decay=False, maximize=False)

    def _apply(self, path, p, g):
        m = self._buffer(path, "exp_avg", p)
        v = self._buffer(path, "exp_avg_sq", p)
        st = self.state[path]
        if "mu_product" not in st:
            st["mu_product"] = np.array(1.0)          # a float64 scalar, as torch's state["mu_product"]
        st["mu_product"][...] = float(st["mu_product"]) * nadam_mu(self.betas[0], self.momentum_decay,
                                                                    self.step_count)
        nadam_rule(p, g, m, v, t=self.step_count, lr=self.lr, betas=self.betas, eps=self.eps,
                   weight_decay=self.weight_decay, momentum_decay=self.momentum_decay,
                   decoupled_weight_decay=self.decoupled_weight_decay, mu_product=float(st["mu_product"]))
