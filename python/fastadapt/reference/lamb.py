"""LAMB (You et al. 2020, optax's ``lamb``) in plain NumPy, in
docs/algorithms.md's operation order."""

from __future__ import annotations

import numpy as np

from ._common import ReferenceOptimizer
from ._trust import sumsq, trust_ratio


def lamb_direction(p, m, v, *, t, betas, eps, eps_root, weight_decay):
    """The update direction ``u`` from ``p`` and the already updated moments:
    a function of ``(p, m, v)`` alone, so that the kernel's second pass
    recomputes it bit for bit."""
    T = p.dtype.type
    b1, b2 = betas
    u = (m / T(1.0 - b1 ** t)) / (np.sqrt(v / T(1.0 - b2 ** t) + T(eps_root)) + T(eps))
    if weight_decay != 0:
        u = u + T(weight_decay) * p
    return u


def lamb_rule(p, g, m, v, *, t, lr, betas, eps, eps_root, weight_decay):
    """One LAMB step on one tensor, in place: Adam moments, the direction
    ``u``, then ``p -= T(lr * trust_ratio(||p||^2, ||u||^2)) * u``."""
    T = p.dtype.type
    b1, b2 = betas
    m[...] = T(b1) * m + T(1.0 - b1) * g
    v[...] = T(b2) * v + T(1.0 - b2) * (g * g)
    u = lamb_direction(p, m, v, t=t, betas=betas, eps=eps, eps_root=eps_root, weight_decay=weight_decay)
    ratio = trust_ratio(sumsq(p), sumsq(u))
    p[...] = p - T(lr * ratio) * u


class LAMB(ReferenceOptimizer):
    """[`fastadapt.LAMB`][fastadapt.LAMB] in plain NumPy, optax.lamb's defaults with ``lr=1e-3``
    (optax has no default lr); per tensor [`lamb_rule`][fastadapt.reference.lamb_rule] with state
    ``mu`` and ``nu``."""

    defaults = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-6, eps_root=0.0, weight_decay=0.0, maximize=False)

    def _apply(self, path, p, g):
        m = self._buffer(path, "mu", p)
        v = self._buffer(path, "nu", p)
        lamb_rule(p, g, m, v, t=self.step_count, lr=self.lr, betas=self.betas, eps=self.eps,
                  eps_root=self.eps_root, weight_decay=self.weight_decay)
