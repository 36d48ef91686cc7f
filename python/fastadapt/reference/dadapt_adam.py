"""D-Adapted Adam (Defazio & Mishchenko 2023; the dadaptation package's
``DAdaptAdam``) in plain NumPy, in docs/algorithms.md's operation order."""

from __future__ import annotations

import math

import numpy as np

from ._common import tensor_sum
from ._d_adam import GlobalStepReference, pymax, pymin


def dadapt_adam_step_size(d: float, lr: float, k: float, betas, use_bias_correction: bool) -> float:
    """``d * lr``, times ``sqrt(1 - b2**(k+1)) / (1 - b1**(k+1))`` with bias correction."""
    b1, b2 = betas
    bc = math.sqrt(1.0 - b2 ** (k + 1)) / (1.0 - b1 ** (k + 1)) if use_bias_correction else 1.0
    return d * lr * bc


def dadapt_adam_pass0(p, g, m, v, s, *, dlr, betas, eps, weight_decay, decouple, layer_scale, active):
    """Pass 0 on one tensor, in place on m, v, s: returns the tensor's two
    sums, ``sum(g * (s / (sqrt(v) + eps)))`` with the old s and v, and
    ``sum(|s|)`` with the new s (float64, the kernels' order); (0.0, 0.0)
    and nothing updated for a tensor whose lr is 0."""
    if not active:
        return 0.0, 0.0
    T = p.dtype.type
    b1, b2 = betas
    sb2 = math.sqrt(b2)
    if weight_decay != 0 and not decouple:
        g = g + T(weight_decay) * p
    dot = tensor_sum(g.astype(np.float64) * (s / (np.sqrt(v) + T(eps))).astype(np.float64))
    m[...] = T(b1) * m + T(layer_scale * dlr * (1.0 - b1)) * g
    v[...] = T(b2) * v + T(1.0 - b2) * (g * g)
    s[...] = T(sb2) * s + T(dlr * (1.0 - sb2)) * g
    return dot, tensor_sum(np.abs(s).astype(np.float64))


def dadapt_adam_pass1(p, m, v, *, dlr, eps, weight_decay, decouple):
    """Pass 1 on one tensor, in place on p (``dlr``: this step's step size,
    from the old d; the new d first acts on the next step)."""
    T = p.dtype.type
    denom = np.sqrt(v) + T(eps)
    if weight_decay != 0 and decouple:
        p[...] = p - T(weight_decay * dlr) * p
    p[...] = p - m / denom


def dadapt_adam_update_d(*, d, numerator_weighted, numerator_sum, denominator_sum, growth_rate, beta2):
    """From the sums over all tensors (``numerator_sum``: of ``layer_scale *
    dlr * dot``; ``denominator_sum``: of ``layer_scale * sum|s|``): returns
    (d, numerator_weighted), or None when ``denominator_sum`` is 0 (the
    package's early return)."""
    sb2 = math.sqrt(beta2)
    numerator_weighted = sb2 * numerator_weighted + (1.0 - sb2) * numerator_sum
    if denominator_sum == 0.0:
        return None
    d_hat = numerator_weighted / ((1.0 - sb2) * denominator_sum)
    return pymax(d, pymin(d_hat, d * growth_rate)), numerator_weighted


class DAdaptAdam(GlobalStepReference):
    """[`fastadapt.DAdaptAdam`][fastadapt.DAdaptAdam] in plain NumPy, dadaptation's defaults: two passes
    over all tensors around one global update of ``d`` (learned scalars ``d``,
    ``numerator_weighted``, ``k``, kept in every tensor's state)."""

    defaults = dict(lr=1.0, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decouple=False,
                    use_bias_correction=False, d0=1e-6, growth_rate=float("inf"), layer_scale=1.0, maximize=False)
    scalars = ("d", "numerator_weighted", "k")
    global_hyper = ("betas", "decouple", "use_bias_correction", "d0", "growth_rate")

    def _initial_scalars(self):
        return {"d": self.d0, "numerator_weighted": 0.0, "k": 0.0}

    def _step(self, calls, glob, learned):
        betas = glob["betas"]
        d = learned["d"]
        lr = max(hp["lr"] for _, _, _, hp in calls)
        dlr = dadapt_adam_step_size(d, lr, learned["k"], betas, glob["use_bias_correction"])
        numerator, denominator = 0.0, 0.0
        for path, p, g, hp in calls:
            m, v, s = (self._buffer(path, name, p) for name in ("exp_avg", "exp_avg_sq", "s"))
            r = hp["layer_scale"]
            dot, abs_sum = dadapt_adam_pass0(p, g, m, v, s, dlr=dlr, betas=betas, eps=hp["eps"],
                                             weight_decay=hp["weight_decay"], decouple=glob["decouple"],
                                             layer_scale=r, active=hp["lr"] > 0.0)
            numerator += r * dlr * dot
            denominator += r * abs_sum
        new = dadapt_adam_update_d(d=d, numerator_weighted=learned["numerator_weighted"], numerator_sum=numerator,
                                   denominator_sum=denominator, growth_rate=glob["growth_rate"], beta2=betas[1])
        if new is None:
            # the package returns here: every s is 0, so d, the weighted
            # numerator, k and the parameters stay; m, v and s keep pass 0's update.
            return None
        for path, p, g, hp in calls:
            st = self.state[path]
            dadapt_adam_pass1(p, st["exp_avg"], st["exp_avg_sq"], dlr=dlr, eps=hp["eps"],
                              weight_decay=hp["weight_decay"], decouple=glob["decouple"])
        return {"d": new[0], "numerator_weighted": new[1], "k": learned["k"] + 1.0}
