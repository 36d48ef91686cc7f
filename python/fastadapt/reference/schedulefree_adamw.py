"""Schedule-Free AdamW (Defazio et al. 2024; schedulefree's
``AdamWScheduleFree``) in plain NumPy, in docs/algorithms.md's
operation order. The parameter array holds the training point ``y``."""

from __future__ import annotations

import numpy as np

from ._schedulefree import ScheduleFreeReference, lerp


def schedulefree_adamw_rule(y, g, z, v, *, t, betas, eps, weight_decay, scheduled_lr, ckp1):
    """One step on one tensor, in place: ``y`` (the parameter), ``z`` and
    ``v`` (exp_avg_sq). ``scheduled_lr`` and ``ckp1`` are this step's
    float64 schedule (``schedulefree_schedule``)."""
    T = y.dtype.type
    b1, b2 = betas
    lr = scheduled_lr
    v[...] = T(b2) * v + T(1.0 - b2) * (g * g)
    u = g / (np.sqrt(v / T(1.0 - b2 ** t)) + T(eps))
    if weight_decay != 0:
        u = u + T(weight_decay) * y          # decay at y, after the normalisation (as schedulefree)
    y[...] = lerp(y, z, ckp1)
    y[...] = y + T(lr * (b1 * (1.0 - ckp1) - 1.0)) * u
    z[...] = z - T(lr) * u


class ScheduleFreeAdamW(ScheduleFreeReference):
    """[`fastadapt.ScheduleFreeAdamW`][fastadapt.ScheduleFreeAdamW] in plain NumPy, schedulefree's
    defaults; per tensor [`schedulefree_adamw_rule`][fastadapt.reference.schedulefree_adamw_rule]
    with state ``z``, ``exp_avg_sq`` and the carried schedule scalars. The parameter array holds the
    training point ``y``."""

    defaults = dict(lr=0.0025, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, warmup_steps=0, r=0.0,
                    weight_lr_power=2.0, maximize=False)

    def _beta(self):
        return self.betas[0]

    def _apply(self, path, p, g):
        s = self._advance(path, p)
        st = self.state[path]
        if "exp_avg_sq" not in st:
            st["exp_avg_sq"] = np.zeros_like(p)
        schedulefree_adamw_rule(p, g, st["z"], st["exp_avg_sq"], t=self.step_count, betas=self.betas,
                                eps=self.eps, weight_decay=self.weight_decay, scheduled_lr=s["scheduled_lr"],
                                ckp1=s["ckp1"])
