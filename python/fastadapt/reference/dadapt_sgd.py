"""D-Adapted SGD (Defazio & Mishchenko 2023; the ``dadaptation`` package's
``DAdaptSGD``) in plain NumPy, in docs/algorithms.md's operation order
(section "DAdaptSGD").

One step over all tensors, with d global:

- the first step (no ``g0_norm`` yet) first sums ``g*g`` over every tensor
  (the gradient before weight decay, as the package does) and sets
  ``g0_norm = sqrt(sum)``; while that is 0 the step changes nothing (the
  package divides by it and raises ZeroDivisionError);
- ``dlr = d * lr / g0_norm``; per tensor ``gd = g + wd*p``, the dot
  ``<gd, s>`` with the old ``s``, ``s = s + dlr*gd``, ``sum(s*s)`` of the new
  ``s``, and ``p = p*(1-ck) + ck*(x0 - s)`` with ``ck = 1 - momentum``;
- then ``numerator_weighted += dlr * dot``,
  ``d_hat = 2*numerator_weighted / sqrt(sum s*s)`` and
  ``d = max(d, min(d_hat, d*growth_rate))`` (Python's max/min); ``d`` stays
  when ``lr`` is 0 (as in the package) or ``sum s*s`` is 0 (the package
  raises there).
"""

from __future__ import annotations

import math

import numpy as np

from ._common import global_sum
from ._dadapt import GlobalReference, pymax, pymin


def dadapt_sgd_scalars(*, d, lr, g0_norm, momentum):
    """The float64 scalars of the element pass: ``dlr``, ``1 - ck`` and ``ck``."""
    ck = 1.0 - momentum
    return d * lr / g0_norm, 1.0 - ck, ck


def dadapt_sgd_rule(ps, gs, ss, x0s, *, d, numerator_weighted, g0_norm, lr, momentum, weight_decay,
                    growth_rate):
    """One step over all tensors, in place (``ps``, ``ss``: lists of arrays;
    ``gs`` the pre-processed gradients). Returns the learned scalars after it:
    ``{"d", "numerator_weighted", "g0_norm"}`` (unchanged when the first
    gradient is all zero)."""
    if g0_norm == 0.0:
        # first step: the norm of the raw gradient (the package's weight decay
        # there is an out-of-place add whose result it drops)
        g0_norm = math.sqrt(global_sum([g.astype(np.float64) ** 2 for g in gs]))
        if g0_norm == 0.0:
            return dict(d=d, numerator_weighted=numerator_weighted, g0_norm=0.0)
    dlr, one_minus_ck, ck = dadapt_sgd_scalars(d=d, lr=lr, g0_norm=g0_norm, momentum=momentum)
    dots, sqs = [], []
    for p, g, s, x0 in zip(ps, gs, ss, x0s):
        T = p.dtype.type
        gd = g + T(weight_decay) * p if weight_decay != 0 else g
        dots.append(gd.astype(np.float64) * s.astype(np.float64))
        s[...] = s + T(dlr) * gd
        sqs.append(s.astype(np.float64) ** 2)
        p[...] = p * T(one_minus_ck) + T(ck) * (x0 - s)
    numerator_weighted = numerator_weighted + dlr * global_sum(dots)
    sk_sq = global_sum(sqs)
    if lr > 0.0 and sk_sq != 0.0:  # (the package: lr > 0 only; a zero sum raises there)
        d_hat = 2.0 * numerator_weighted / math.sqrt(sk_sq)
        d = pymax(d, pymin(d_hat, d * growth_rate))
    return dict(d=d, numerator_weighted=numerator_weighted, g0_norm=g0_norm)


class DAdaptSGD(GlobalReference):
    """[`fastadapt.DAdaptSGD`][fastadapt.DAdaptSGD] in plain NumPy: one step over all tensors with one
    global ``d`` (state ``s``, ``x0`` and the float64 scalars ``d``,
    ``numerator_weighted``, ``g0_norm``, the same in every tensor)."""

    defaults = dict(lr=1.0, momentum=0.0, weight_decay=0.0, d0=1e-6, growth_rate=float("inf"), maximize=False)

    def _initial_learned(self):
        return dict(d=float(self.d0), numerator_weighted=0.0, g0_norm=0.0)

    def _global_step(self, pending):
        paths = [path for path, *_ in pending]
        ps = [p for _, p, _, _ in pending]
        gs = [g for _, _, g, _ in pending]
        learned = self._learned()
        for path, p in zip(paths, ps):
            self._buffer(path, "s", p)
            st = self.state[path]
            if "x0" not in st:
                st["x0"] = p.copy()
        learned = dadapt_sgd_rule(ps, gs, [self.state[k]["s"] for k in paths], [self.state[k]["x0"] for k in paths],
                                  **learned, lr=self.lr, momentum=self.momentum,
                                  weight_decay=self.weight_decay, growth_rate=self.growth_rate)
        self._store_learned(paths, learned)
