"""RAdam (docs/algorithms.md, "RAdam"); the C++ rule is cpp/rules/radam.hpp."""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

from .. import _hyper as hv
from .._hyper import Hyper
from .base import Optimizer, Overrides


class RAdam(Optimizer):
    """RAdam (Liu et al., 2020): Adam with the variance of the adaptive
    learning rate rectified, torch.optim.RAdam's definition and defaults.
    With ``rho_inf = 2 / (1 - b2) - 1`` and
    ``rho_t = rho_inf - 2 t b2**t / (1 - b2**t)``:

        g = g + wd * p                      (weight_decay, L2 form)
        p = p * (1 - lr * wd)               (decoupled_weight_decay=True instead)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        if rho_t > 5:                       (r_t: the rectification term)
            p = p - lr * r_t * sqrt(1 - b2**t) / (1 - b1**t) * m / (sqrt(v) + eps)
        else:
            p = p - lr / (1 - b1**t) * m

    ``lr``, ``betas``, ``eps``, ``weight_decay``, ``decoupled_weight_decay`` and
    ``maximize`` are as in torch.optim.RAdam.

    Parameters
    ----------
    lr
        learning rate.
    betas
        decay rates (beta1, beta2) of the moment estimates.
    eps
        added to sqrt(v) for stability.
    weight_decay
        weight decay (L2, or decoupled with decoupled_weight_decay).
    decoupled_weight_decay
        decay the weights directly, as AdamW, instead of L2.
    maximize
        ascend instead of descend.
    max_grad_norm, nonfinite, track_grad_norm, overrides, state_dtype, state_bits, master_weights, stochastic_rounding, seed
        the options every rule takes (gradient clipping, the NaN/Inf policy, per-key overrides, low
        precision): see [`Optimizer`][fastadapt.Optimizer].
    """

    algorithm = "radam"
    _kernel = "radam"
    _per_key = ("lr", "betas", "eps", "weight_decay", "decoupled_weight_decay", "maximize")

    lr = Hyper(hv.nonnegative, "Learning rate.")
    betas = Hyper(hv.betas, "Decay rates (beta1, beta2) of the moment estimates.")
    eps = Hyper(hv.nonnegative, "Added to sqrt(v) for stability.")
    weight_decay = Hyper(hv.nonnegative, "Weight decay (L2, or decoupled with decoupled_weight_decay).")
    decoupled_weight_decay = Hyper(hv.flag, "Decay the weights directly, as AdamW, instead of L2.")
    maximize = Hyper(hv.flag, "Ascend instead of descend.")

    def __init__(self, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, decoupled_weight_decay: bool = False, *, maximize: bool = False,
                 max_grad_norm: Optional[float] = None, nonfinite: str = "propagate",
                 track_grad_norm: bool = False, overrides: Overrides = None, state_dtype: Optional[str] = None,
                 state_bits: Optional[int] = None, master_weights: bool = False,
                 stochastic_rounding: bool = False, seed: int = 0):
        super().__init__(dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                              decoupled_weight_decay=decoupled_weight_decay, maximize=maximize),
                         max_grad_norm=max_grad_norm, nonfinite=nonfinite,
                         track_grad_norm=track_grad_norm,
                         overrides=overrides, state_dtype=state_dtype, state_bits=state_bits,
                         master_weights=master_weights, stochastic_rounding=stochastic_rounding, seed=seed)

    def _scalars_for(self, hp: Dict[str, Any], t: int) -> Dict[str, float]:
        b1, b2 = hp["betas"]
        lr, wd = hp["lr"], hp["weight_decay"]
        rho_inf = 2.0 / (1.0 - b2) - 1.0
        rho_t = rho_inf - 2.0 * t * b2 ** t / (1.0 - b2 ** t)
        rectify = rho_t > 5.0
        rect = math.sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)) \
            if rectify else 0.0
        return {"b1": b1, "one_minus_b1": 1.0 - b1, "b2": b2, "one_minus_b2": 1.0 - b2, "eps": hp["eps"],
                "rectify": 1.0 if rectify else 0.0,
                "rect_step": lr * rect * math.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t),
                "plain_step": lr / (1.0 - b1 ** t), "wd": wd, "decay": 1.0 - lr * wd}

    def _flags_for(self, hp: Dict[str, Any]) -> int:
        wd = hp["weight_decay"] != 0.0
        decoupled = hp["decoupled_weight_decay"]
        return self._flag_bits(l2=wd and not decoupled, decoupled=wd and decoupled, maximize=hp["maximize"])
