"""Adafactor (torch.optim.Adafactor) in plain NumPy, in docs/algorithms.md's
operation order (section "Adafactor").

A parameter with ``ndim >= 2`` is seen as a batch of matrices over its last two
axes, ``(..., R, C)``; its second moment is factored into ``row_var`` (shape
``(..., R, 1)``) and ``col_var`` (``(..., 1, C)``). Any other parameter (1-D,
and 0-D as torch does) keeps a full ``variance`` shaped like it.

Summation orders (fixed, so that one C++ loop over a whole tensor reproduces
them bit for bit; never NumPy's pairwise ``sum``/``mean``):

- the two per-tensor sums, ``sum(p*p)`` (for RMS(p)) and ``sum(u*u)`` (for
  RMS of the update), are ``tensor_sum`` of the float64 squares;
- the row sums of ``g*g`` run left to right along a row, the column sums top
  to bottom along a column, and the sum of ``row_var`` over the rows of one
  matrix top to bottom: each is a float64 accumulator starting at 0.0 to which
  ``float64(x) * float64(x)`` (``float64(r)`` for ``row_var``) is added
  element by element; the mean is that sum divided by the count in float64,
  rounded to T once.
"""

from __future__ import annotations

import math

import numpy as np

from ._common import ReferenceOptimizer, tensor_sum


def row_sums(values: np.ndarray) -> np.ndarray:
    """float64 sums along the last axis of ``(..., R, C)`` float64 values, each
    row added left to right starting from 0.0; shape ``(..., R, 1)``."""
    acc = np.zeros(values.shape[:-1] + (1,))
    for j in range(values.shape[-1]):
        acc = acc + values[..., j:j + 1]
    return acc


def col_sums(values: np.ndarray) -> np.ndarray:
    """float64 sums along the second-to-last axis of ``(..., R, C)`` float64
    values, each column added top to bottom starting from 0.0; shape ``(..., 1, C)``."""
    acc = np.zeros(values.shape[:-2] + (1,) + values.shape[-1:])
    for i in range(values.shape[-2]):
        acc = acc + values[..., i:i + 1, :]
    return acc


def lerp(v: np.ndarray, x: np.ndarray, w: float) -> None:
    """``v += w * (x - v)`` in place, in torch's two forms: ``v + S(w) * (x - v)``
    when ``|w| < 0.5``, else ``x - (x - v) * S(1 - w)`` (so ``w = 1`` gives ``x``)."""
    T = v.dtype.type
    if abs(w) < 0.5:
        v[...] = v + T(w) * (x - v)
    else:
        v[...] = x - (x - v) * T(1.0 - w)


def _pymax(a: float, b: float) -> float:
    """Python's ``max(a, b)`` spelled out (``b`` only if ``b > a``, so a NaN
    ``b`` gives ``a``), as torch's scalar code computes it."""
    return b if b > a else a


def adafactor_scalars(*, t, lr, beta2_decay):
    """The float64 scalars that depend only on hyperparameters and ``t``:
    ``w = t ** beta2_decay`` (one minus beta2_t, the lerp weight) and the
    relative step size ``rho = min(lr, 1 / sqrt(t))``."""
    w = float(t) ** beta2_decay
    rho = min(lr, 1.0 / float(t) ** 0.5)
    return w, rho


def adafactor_rule(p, g, row_var, col_var, variance, *, t, lr, beta2_decay, eps, d, weight_decay):
    """One tensor's Adafactor step, in place. ``row_var``/``col_var`` for
    ``p.ndim >= 2`` (``variance`` None), else ``variance`` (the others None)."""
    T = p.dtype.type
    n = p.size
    if n == 0:  # nothing to update (torch divides 0.0 by sqrt(0) here and raises ZeroDivisionError)
        return
    eps1, eps2 = eps
    if eps1 is None:
        eps1 = float(np.finfo(p.dtype).eps)
    w, rho = adafactor_scalars(t=t, lr=lr, beta2_decay=beta2_decay)

    # per-tensor sum 1: RMS of p before the weight decay
    sum_pp = tensor_sum(p.astype(np.float64) ** 2)

    if p.ndim >= 2:
        g2 = g.astype(np.float64) ** 2
        rows, cols = p.shape[-2], p.shape[-1]
        row_mean = (row_sums(g2) / cols).astype(p.dtype)   # (..., R, 1)
        col_mean = (col_sums(g2) / rows).astype(p.dtype)   # (..., 1, C)
        lerp(row_var, row_mean, w)
        lerp(col_var, col_mean, w)
        r_mean = (col_sums(row_var.astype(np.float64)) / rows).astype(p.dtype)  # (..., 1, 1)
        v = (row_var * col_var) / np.maximum(r_mean, T(eps1))
    else:
        lerp(variance, g * g, w)
        v = variance
    u = g / np.sqrt(np.maximum(v, T(eps1 * eps1)))

    # per-tensor sum 2: RMS of the update
    sum_uu = tensor_sum(u.astype(np.float64) ** 2)

    root_n = math.sqrt(n)
    alpha = _pymax(eps2, math.sqrt(sum_pp) / root_n) * rho
    denom = _pymax(1.0, math.sqrt(sum_uu) / (root_n * d))
    if weight_decay != 0:
        p[...] = p * T(1.0 - lr * weight_decay)
    p[...] = p - T(alpha / denom) * u


class Adafactor(ReferenceOptimizer):
    """[`fastadapt.Adafactor`][fastadapt.Adafactor] in plain NumPy, torch.optim.Adafactor's defaults; per
    tensor [`adafactor_rule`][fastadapt.reference.adafactor_rule] with state ``row_var`` and ``col_var`` (a
    parameter with ``ndim >= 2``) or ``variance`` (any other)."""

    defaults = dict(lr=1e-2, beta2_decay=-0.8, eps=(None, 1e-3), d=1.0, weight_decay=0.0, maximize=False)

    def _apply(self, path, p, g):
        st = self.state.setdefault(path, {})
        row_var = col_var = variance = None
        if p.ndim >= 2:
            if "row_var" not in st:
                st["row_var"] = np.zeros(p.shape[:-1] + (1,), dtype=p.dtype)
                st["col_var"] = np.zeros(p.shape[:-2] + (1,) + p.shape[-1:], dtype=p.dtype)
            row_var, col_var = st["row_var"], st["col_var"]
        else:
            variance = self._buffer(path, "variance", p)
        adafactor_rule(p, g, row_var, col_var, variance, t=self.step_count, lr=self.lr,
                       beta2_decay=self.beta2_decay, eps=self.eps, d=self.d, weight_decay=self.weight_decay)
