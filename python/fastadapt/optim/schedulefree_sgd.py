"""Schedule-Free SGD (docs/algorithms.md, "ScheduleFreeSGD"); the C++ rule
is cpp/rules/schedulefree_sgd.hpp, the shared schedule and the train/eval
switch optim/_schedulefree.py."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

from .. import _hyper as hv
from .._hyper import Hyper
from ._schedulefree import ScheduleFree, open_unit, warmup_steps_value
from .base import Overrides


class ScheduleFreeSGD(ScheduleFree):
    """Schedule-Free SGD (Defazio et al. 2024, "The Road Less Scheduled"):
    the schedulefree package's ``SGDScheduleFree``, its definition and
    defaults. ``params`` hold the training point y; ``opt.eval(params)``
    writes the averaged point x into them for evaluation and
    ``opt.train(params)`` writes y back (``update`` runs in train mode only):

        g = g + wd * y
        y = lerp(y, z, c)                         c = weight_t / sum of weights
        y = y + lr_t * (momentum * (1 - c) - 1) * g
        z = z - lr_t * g

    with ``lr_t`` the warmed-up lr and the weights ``t**r * lr_max**weight_lr_power``.

    ``lr``, ``momentum``, ``weight_decay``, ``warmup_steps``, ``r`` and
    ``weight_lr_power`` are as in schedulefree.SGDScheduleFree.

    Parameters
    ----------
    lr
        learning rate (after warmup).
    momentum
        the interpolation of y between z (0) and x (1); in (0, 1).
    weight_decay
        weight decay (L2, taken at y).
    warmup_steps
        steps of linear learning-rate warmup (0: none).
    r
        polynomial weighting of the average: weight t**r.
    weight_lr_power
        the average weighs each step by lr_max**weight_lr_power.
    maximize
        ascend instead of descend.
    max_grad_norm, nonfinite, track_grad_norm, overrides, state_dtype, state_bits, master_weights, stochastic_rounding, seed
        the options every rule takes (gradient clipping, the NaN/Inf policy, per-key overrides, low
        precision): see [`Optimizer`][fastadapt.Optimizer].
    """

    algorithm = "schedulefree-sgd"
    _kernel = "schedulefree-sgd"
    _per_key = ("lr", "momentum", "weight_decay", "warmup_steps", "r", "weight_lr_power", "maximize")

    lr = Hyper(hv.nonnegative, "Learning rate (after warmup).")
    momentum = Hyper(open_unit, "The interpolation of y between z (0) and x (1); in (0, 1).")
    weight_decay = Hyper(hv.nonnegative, "Weight decay (L2, taken at y).")
    warmup_steps = Hyper(warmup_steps_value, "Steps of linear learning-rate warmup (0: none).")
    r = Hyper(hv.as_float, "Polynomial weighting of the average: weight t**r.")
    weight_lr_power = Hyper(hv.nonnegative, "The average weighs each step by lr_max**weight_lr_power.")
    maximize = Hyper(hv.flag, "Ascend instead of descend.")

    def __init__(self, lr: float = 1.0, momentum: float = 0.9, weight_decay: float = 0.0, warmup_steps: int = 0,
                 r: float = 0.0, weight_lr_power: float = 2.0, *, maximize: bool = False,
                 max_grad_norm: Optional[float] = None, nonfinite: str = "propagate", track_grad_norm: bool = False,
                 overrides: Overrides = None, state_dtype: Optional[str] = None,
                 state_bits: Optional[int] = None, master_weights: bool = False,
                 stochastic_rounding: bool = False, seed: int = 0):
        super().__init__(dict(lr=lr, momentum=momentum, weight_decay=weight_decay, warmup_steps=warmup_steps, r=r,
                              weight_lr_power=weight_lr_power, maximize=maximize),
                         max_grad_norm=max_grad_norm, nonfinite=nonfinite,
                         track_grad_norm=track_grad_norm,
                         overrides=overrides, state_dtype=state_dtype, state_bits=state_bits,
                         master_weights=master_weights, stochastic_rounding=stochastic_rounding, seed=seed)

    def _beta(self, hp: Mapping[str, Any]) -> float:
        return hp["momentum"]

    def _scalars_for(self, hp: Dict[str, Any], t: int) -> Dict[str, float]:
        c, lr = hp["ckp1"], hp["scheduled_lr"]
        return {"wd": hp["weight_decay"], "c": c, "one_minus_c": 1.0 - c,
                "y_step": lr * (hp["momentum"] * (1.0 - c) - 1.0), "z_step": lr}

    def _flags_for(self, hp: Dict[str, Any]) -> int:
        return self._flag_bits(decay=hp["weight_decay"] != 0.0, lerp_from_z=abs(hp["ckp1"]) >= 0.5,
                               maximize=hp["maximize"])
