"""Prodigy (Mishchenko & Defazio 2024; prodigyopt's ``Prodigy``, slice_p=1)
in plain NumPy, in docs/algorithms.md's operation order."""

from __future__ import annotations

import math

import numpy as np

from ._common import tensor_sum
from ._d_adam import GlobalStepReference, pymax, pymin


def prodigy_step_size(d: float, lr: float, k: float, betas, use_bias_correction: bool) -> float:
    """The step size of the step after ``k`` committed ones: ``d * lr``, times
    Adam's bias correction ``sqrt(1 - b2**(k+1)) / (1 - b1**(k+1))`` when on."""
    b1, b2 = betas
    bc = math.sqrt(1.0 - b2 ** (k + 1)) / (1.0 - b1 ** (k + 1)) if use_bias_correction else 1.0
    return d * lr * bc


def prodigy_pass0(p, g, p0, m, v, s, *, d, d0, dlr, betas, beta3, eps, weight_decay, decouple,
                  safeguard_warmup, active):
    """Pass 0 on one tensor, in place on m, v, s: returns the tensor's two
    sums, ``sum(g * (p0 - p))`` and ``sum(|s|)`` (float64, the kernels'
    order), or (0.0, 0.0) for a tensor whose lr is 0 (``active`` False),
    which updates nothing."""
    if not active:
        return 0.0, 0.0
    T = p.dtype.type
    b1, b2 = betas
    if weight_decay != 0 and not decouple:
        g = g + T(weight_decay) * p
    dot = tensor_sum(g.astype(np.float64) * (p0 - p).astype(np.float64))
    if b1 > 0:
        m[...] = T(b1) * m + T(d * (1.0 - b1)) * g
    v[...] = T(b2) * v + T(d * d * (1.0 - b2)) * (g * g)
    s[...] = T(beta3) * s + T((d / d0) * d if safeguard_warmup else (d / d0) * dlr) * g
    return dot, tensor_sum(np.abs(s).astype(np.float64))


def prodigy_pass1(p, g, m, v, *, d, dlr, betas, eps, weight_decay, decouple):
    """Pass 1 on one tensor, in place on p: ``d`` is the new d, ``dlr`` the
    step size of this step (from the old d)."""
    T = p.dtype.type
    b1 = betas[0]
    denom = np.sqrt(v) + T(d * eps)
    if weight_decay != 0:
        if decouple:
            p[...] = p - T(weight_decay * dlr) * p
        else:
            g = g + T(weight_decay) * p
    if b1 > 0:
        p[...] = p - T(dlr) * (m / denom)
    else:
        p[...] = p - T(dlr * d) * (g / denom)


def prodigy_update_d(*, d, d_max, d_numerator, numerator_sum, denominator_sum, d0, d_coef, growth_rate, beta3):
    """The global update of the learned scalars from the two sums over all
    tensors (float64, the package's order): returns (d, d_max, d_numerator)."""
    d_numerator = d_numerator * beta3 + numerator_sum
    d_hat = d_coef * d_numerator / denominator_sum
    if d == d0:
        d = pymax(d, d_hat)
    d_max = pymax(d_max, d_hat)
    d = pymin(d_max, d * growth_rate)
    return d, d_max, d_numerator


class Prodigy(GlobalStepReference):
    """[`fastadapt.Prodigy`][fastadapt.Prodigy] in plain NumPy, prodigyopt's defaults (``slice_p=1``):
    two passes over all tensors around one global update of ``d`` (learned
    scalars ``d``, ``d_max``, ``d_numerator``, ``k``, kept in every tensor's state)."""

    defaults = dict(lr=1.0, betas=(0.9, 0.999), beta3=None, eps=1e-8, weight_decay=0.0, decouple=True,
                    use_bias_correction=False, safeguard_warmup=False, d0=1e-6, d_coef=1.0,
                    growth_rate=float("inf"), maximize=False)
    scalars = ("d", "d_max", "d_numerator", "k")
    global_hyper = ("betas", "beta3", "decouple", "use_bias_correction", "d0", "d_coef", "growth_rate")

    def _initial_scalars(self):
        return {"d": self.d0, "d_max": self.d0, "d_numerator": 0.0, "k": 0.0}

    def _step(self, calls, glob, learned):
        betas = glob["betas"]
        beta3 = math.sqrt(betas[1]) if glob["beta3"] is None else glob["beta3"]
        d, d0 = learned["d"], glob["d0"]
        lr = max(hp["lr"] for _, _, _, hp in calls)
        dlr = prodigy_step_size(d, lr, learned["k"], betas, glob["use_bias_correction"])
        numerator, denominator = 0.0, 0.0
        for path, p, g, hp in calls:
            bufs = [self._buffer(path, "exp_avg", p), self._buffer(path, "exp_avg_sq", p), self._buffer(path, "s", p)]
            st = self.state[path]
            if "p0" not in st:
                st["p0"] = p.copy()
            dot, abs_sum = prodigy_pass0(p, g, st["p0"], *bufs, d=d, d0=d0, dlr=dlr, betas=betas, beta3=beta3,
                                         eps=hp["eps"], weight_decay=hp["weight_decay"], decouple=glob["decouple"],
                                         safeguard_warmup=hp["safeguard_warmup"], active=hp["lr"] > 0.0)
            numerator += (d / d0) * dlr * dot
            denominator += abs_sum
        if denominator == 0.0:
            # prodigyopt returns here: no gradient signal yet (every s is 0),
            # so neither d nor k nor any parameter changes; the moments and s
            # of pass 0 keep their update.
            return None
        new_d, d_max, d_numerator = prodigy_update_d(
            d=d, d_max=learned["d_max"], d_numerator=learned["d_numerator"], numerator_sum=numerator,
            denominator_sum=denominator, d0=d0, d_coef=glob["d_coef"], growth_rate=glob["growth_rate"], beta3=beta3)
        for path, p, g, hp in calls:
            st = self.state[path]
            prodigy_pass1(p, g, st["exp_avg"], st["exp_avg_sq"], d=new_d, dlr=dlr, betas=betas, eps=hp["eps"],
                          weight_decay=hp["weight_decay"], decouple=glob["decouple"])
        return {"d": new_d, "d_max": d_max, "d_numerator": d_numerator, "k": learned["k"] + 1.0}
