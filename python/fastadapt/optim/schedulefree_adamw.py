"""Schedule-Free AdamW (docs/algorithms.md, "ScheduleFreeAdamW"); the C++
rule is cpp/rules/schedulefree_adamw.hpp, the shared schedule and the
train/eval switch optim/_schedulefree.py."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

from .. import _hyper as hv
from .._hyper import Hyper
from ._schedulefree import ScheduleFree, schedulefree_betas, warmup_steps_value
from .base import Overrides


class ScheduleFreeAdamW(ScheduleFree):
    """Schedule-Free AdamW (Defazio et al. 2024, "The Road Less Scheduled"):
    the schedulefree package's ``AdamWScheduleFree``, its definition and
    defaults. No learning-rate schedule is needed (``warmup_steps`` gives a
    linear warmup). ``params`` hold the training point y; ``opt.eval(params)``
    writes the averaged point x into them for evaluation and
    ``opt.train(params)`` writes y back (``update`` runs in train mode only):

        v = b2 * v + (1 - b2) * g * g
        u = g / (sqrt(v / (1 - b2**t)) + eps) + wd * y
        y = lerp(y, z, c)                         c = weight_t / sum of weights
        y = y + lr_t * (b1 * (1 - c) - 1) * u
        z = z - lr_t * u

    with ``lr_t`` the warmed-up lr and the weights ``t**r * lr_max**weight_lr_power``.

    ``lr``, ``betas``, ``eps``, ``weight_decay``, ``warmup_steps``, ``r`` and
    ``weight_lr_power`` are as in schedulefree.AdamWScheduleFree (there,
    beta1 must be > 0).

    Parameters
    ----------
    lr
        learning rate (after warmup).
    betas
        (beta1, beta2): the interpolation of y between z and x, and the decay of the second moment.
    eps
        added to the denominator for stability.
    weight_decay
        weight decay, taken at y and added to the normalised gradient.
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

    algorithm = "schedulefree-adamw"
    _kernel = "schedulefree-adamw"
    _per_key = ("lr", "betas", "eps", "weight_decay", "warmup_steps", "r", "weight_lr_power", "maximize")

    lr = Hyper(hv.nonnegative, "Learning rate (after warmup).")
    betas = Hyper(schedulefree_betas, "(beta1, beta2): the interpolation of y between z and x, and the decay "
                                      "of the second moment.")
    eps = Hyper(hv.nonnegative, "Added to the denominator for stability.")
    weight_decay = Hyper(hv.nonnegative, "Weight decay, taken at y and added to the normalised gradient.")
    warmup_steps = Hyper(warmup_steps_value, "Steps of linear learning-rate warmup (0: none).")
    r = Hyper(hv.as_float, "Polynomial weighting of the average: weight t**r.")
    weight_lr_power = Hyper(hv.nonnegative, "The average weighs each step by lr_max**weight_lr_power.")
    maximize = Hyper(hv.flag, "Ascend instead of descend.")

    def __init__(self, lr: float = 0.0025, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, warmup_steps: int = 0, r: float = 0.0, weight_lr_power: float = 2.0,
                 *, maximize: bool = False, max_grad_norm: Optional[float] = None, nonfinite: str = "propagate",
                 track_grad_norm: bool = False, overrides: Overrides = None, state_dtype: Optional[str] = None,
                 state_bits: Optional[int] = None, master_weights: bool = False,
                 stochastic_rounding: bool = False, seed: int = 0):
        super().__init__(dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, warmup_steps=warmup_steps,
                              r=r, weight_lr_power=weight_lr_power, maximize=maximize),
                         max_grad_norm=max_grad_norm, nonfinite=nonfinite,
                         track_grad_norm=track_grad_norm,
                         overrides=overrides, state_dtype=state_dtype, state_bits=state_bits,
                         master_weights=master_weights, stochastic_rounding=stochastic_rounding, seed=seed)

    def _beta(self, hp: Mapping[str, Any]) -> float:
        return hp["betas"][0]

    def _scalars_for(self, hp: Dict[str, Any], t: int) -> Dict[str, float]:
        b1, b2 = hp["betas"]
        c, lr = hp["ckp1"], hp["scheduled_lr"]
        return {"b2": b2, "one_minus_b2": 1.0 - b2, "bc2": 1.0 - b2 ** t, "eps": hp["eps"],
                "wd": hp["weight_decay"], "c": c, "one_minus_c": 1.0 - c, "y_step": lr * (b1 * (1.0 - c) - 1.0),
                "z_step": lr}

    def _flags_for(self, hp: Dict[str, Any]) -> int:
        return self._flag_bits(decay=hp["weight_decay"] != 0.0, lerp_from_z=abs(hp["ckp1"]) >= 0.5,
                               maximize=hp["maximize"])
