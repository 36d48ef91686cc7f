"""Adamax (docs/algorithms.md, "Adamax"); the C++ rule is cpp/rules/adamax.hpp."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from .. import _hyper as hv
from .._hyper import Hyper
from .base import Optimizer, Overrides


class Adamax(Optimizer):
    """Adamax (Kingma & Ba, 2015, section 7.1): Adam with the infinity norm,
    torch.optim.Adamax's definition and defaults:

        g = g + wd * p
        m = b1 * m + (1 - b1) * g
        u = maximum(b2 * u, |g| + eps)
        p = p - lr / (1 - b1**t) * m / u

    ``lr``, ``betas``, ``eps``, ``weight_decay`` and ``maximize`` are as in
    torch.optim.Adamax.

    Parameters
    ----------
    lr
        learning rate.
    betas
        decay rates (beta1, beta2) of the moment and the infinity norm.
    eps
        added to |g| inside the maximum, for stability.
    weight_decay
        L2 weight decay.
    maximize
        ascend instead of descend.
    max_grad_norm, nonfinite, track_grad_norm, overrides, state_dtype, state_bits, master_weights, stochastic_rounding, seed
        the options every rule takes (gradient clipping, the NaN/Inf policy, per-key overrides, low
        precision): see [`Optimizer`][fastadapt.Optimizer].
    """

    algorithm = "adamax"
    _kernel = "adamax"
    _per_key = ("lr", "betas", "eps", "weight_decay", "maximize")

    lr = Hyper(hv.nonnegative, "Learning rate.")
    betas = Hyper(hv.betas, "Decay rates (beta1, beta2) of the moment and the infinity norm.")
    eps = Hyper(hv.nonnegative, "Added to |g| inside the maximum, for stability.")
    weight_decay = Hyper(hv.nonnegative, "L2 weight decay.")
    maximize = Hyper(hv.flag, "Ascend instead of descend.")

    def __init__(self, lr: float = 2e-3, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, *, maximize: bool = False, max_grad_norm: Optional[float] = None,
                 nonfinite: str = "propagate", track_grad_norm: bool = False, overrides: Overrides = None, state_dtype: Optional[str] = None,
                 state_bits: Optional[int] = None, master_weights: bool = False,
                 stochastic_rounding: bool = False, seed: int = 0):
        super().__init__(dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize),
                         max_grad_norm=max_grad_norm, nonfinite=nonfinite,
                         track_grad_norm=track_grad_norm,
                         overrides=overrides, state_dtype=state_dtype, state_bits=state_bits,
                         master_weights=master_weights, stochastic_rounding=stochastic_rounding, seed=seed)

    def _scalars_for(self, hp: Dict[str, Any], t: int) -> Dict[str, float]:
        b1, b2 = hp["betas"]
        return {"b1": b1, "one_minus_b1": 1.0 - b1, "b2": b2, "eps": hp["eps"],
                "step_size": hp["lr"] / (1.0 - b1 ** t), "wd": hp["weight_decay"]}

    def _flags_for(self, hp: Dict[str, Any]) -> int:
        return self._flag_bits(l2=hp["weight_decay"] != 0.0, maximize=hp["maximize"])
