"""Schedule-Free SGD (Defazio et al. 2024; schedulefree's ``SGDScheduleFree``)
in plain NumPy, in docs/algorithms.md's operation order. The
parameter array holds the training point ``y``."""

from __future__ import annotations

from ._schedulefree import ScheduleFreeReference, lerp


def schedulefree_sgd_rule(y, g, z, *, momentum, weight_decay, scheduled_lr, ckp1):
    """One step on one tensor, in place: ``y`` (the parameter) and ``z``.
    ``scheduled_lr`` and ``ckp1`` are this step's float64 schedule
    (``schedulefree_schedule``)."""
    T = y.dtype.type
    lr = scheduled_lr
    if weight_decay != 0:
        g = g + T(weight_decay) * y
    y[...] = lerp(y, z, ckp1)
    y[...] = y + T(lr * (momentum * (1.0 - ckp1) - 1.0)) * g
    z[...] = z - T(lr) * g


class ScheduleFreeSGD(ScheduleFreeReference):
    """[`fastadapt.ScheduleFreeSGD`][fastadapt.ScheduleFreeSGD] in plain NumPy, schedulefree's
    defaults; per tensor [`schedulefree_sgd_rule`][fastadapt.reference.schedulefree_sgd_rule] with
    state ``z`` and the carried schedule scalars. The parameter array holds the training point
    ``y``."""

    defaults = dict(lr=1.0, momentum=0.9, weight_decay=0.0, warmup_steps=0, r=0.0, weight_lr_power=2.0,
                    maximize=False)

    def _beta(self):
        return self.momentum

    def _apply(self, path, p, g):
        s = self._advance(path, p)
        schedulefree_sgd_rule(p, g, self.state[path]["z"], momentum=self.momentum,
                              weight_decay=self.weight_decay, scheduled_lr=s["scheduled_lr"], ckp1=s["ckp1"])
