"""Lion (Chen et al. 2023, lion-pytorch's ``Lion``) in plain NumPy, in
docs/algorithms.md's operation order."""

from __future__ import annotations

import numpy as np

from ._common import ReferenceOptimizer


def exact_sign(c: np.ndarray) -> np.ndarray:
    """The kernels' sign: 1 where ``c > 0``, -1 where ``c < 0``, +0 where
    ``c`` is +0 or -0, and ``c`` itself (its NaN, payload kept) where ``c`` is
    NaN. (torch's CPU ``sign``/``sgn`` gives 0 for NaN; NumPy and JAX give NaN.)"""
    T = c.dtype.type
    s = np.where(c > 0, T(1), np.where(c < 0, T(-1), T(0)))
    return np.where(np.isnan(c), c, s)


def lion_rule(p, g, m, *, lr, betas, weight_decay):
    """One Lion step on one tensor, in place. (lion-pytorch's
    ``decoupled_weight_decay=True`` with initial learning rate ``lr0`` is
    ``weight_decay = wd / lr0`` here: the same factor ``1 - lr * (wd / lr0)``.)"""
    T = p.dtype.type
    b1, b2 = betas
    if weight_decay != 0:
        p[...] = p * T(1.0 - lr * weight_decay)
    c = T(b1) * m + T(1.0 - b1) * g
    p[...] = p - T(lr) * exact_sign(c)
    m[...] = T(b2) * m + T(1.0 - b2) * g


class Lion(ReferenceOptimizer):
    """[`fastadapt.Lion`][fastadapt.Lion] in plain NumPy, lion-pytorch's defaults; per tensor
    [`lion_rule`][fastadapt.reference.lion_rule] with state ``exp_avg``."""

    defaults = dict(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, maximize=False)

    def _apply(self, path, p, g):
        m = self._buffer(path, "exp_avg", p)
        lion_rule(p, g, m, lr=self.lr, betas=self.betas, weight_decay=self.weight_decay)
