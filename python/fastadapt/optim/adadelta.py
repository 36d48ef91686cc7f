"""Adadelta (docs/algorithms.md, "Adadelta"); the C++ rule is cpp/rules/adadelta.hpp."""

from __future__ import annotations

from typing import Any, Dict, Optional

from .. import _hyper as hv
from .._hyper import Hyper
from .base import Optimizer, Overrides


class Adadelta(Optimizer):
    """Adadelta (Zeiler, 2012), torch.optim.Adadelta's definition and defaults:

        g = g + wd * p
        sq = rho * sq + (1 - rho) * g * g
        delta = sqrt(acc + eps) / sqrt(sq + eps) * g
        acc = rho * acc + (1 - rho) * delta * delta
        p = p - lr * delta

    ``lr``, ``rho``, ``eps``, ``weight_decay`` and ``maximize`` are as in
    torch.optim.Adadelta.

    Parameters
    ----------
    lr
        coefficient that scales delta before it is applied.
    rho
        decay rate of the running averages of g**2 and delta**2.
    eps
        added inside both square roots, for stability.
    weight_decay
        L2 weight decay.
    maximize
        ascend instead of descend.
    max_grad_norm, nonfinite, track_grad_norm, overrides, state_dtype, state_bits, master_weights, stochastic_rounding, seed
        the options every rule takes (gradient clipping, the NaN/Inf policy, per-key overrides, low
        precision): see [`Optimizer`][fastadapt.Optimizer].
    """

    algorithm = "adadelta"
    _kernel = "adadelta"
    _per_key = ("lr", "rho", "eps", "weight_decay", "maximize")

    lr = Hyper(hv.nonnegative, "Coefficient that scales delta before it is applied.")
    rho = Hyper(hv.unit_closed, "Decay rate of the running averages of g**2 and delta**2.")
    eps = Hyper(hv.nonnegative, "Added inside both square roots, for stability.")
    weight_decay = Hyper(hv.nonnegative, "L2 weight decay.")
    maximize = Hyper(hv.flag, "Ascend instead of descend.")

    def __init__(self, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6, weight_decay: float = 0.0, *,
                 maximize: bool = False, max_grad_norm: Optional[float] = None, nonfinite: str = "propagate",
                 track_grad_norm: bool = False, overrides: Overrides = None, state_dtype: Optional[str] = None,
                 state_bits: Optional[int] = None, master_weights: bool = False,
                 stochastic_rounding: bool = False, seed: int = 0):
        super().__init__(dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize),
                         max_grad_norm=max_grad_norm, nonfinite=nonfinite,
                         track_grad_norm=track_grad_norm,
                         overrides=overrides, state_dtype=state_dtype, state_bits=state_bits,
                         master_weights=master_weights, stochastic_rounding=stochastic_rounding, seed=seed)

    def _scalars_for(self, hp: Dict[str, Any], t: int) -> Dict[str, float]:
        rho = hp["rho"]
        return {"rho": rho, "one_minus_rho": 1.0 - rho, "eps": hp["eps"], "lr": hp["lr"], "wd": hp["weight_decay"]}

    def _flags_for(self, hp: Dict[str, Any]) -> int:
        return self._flag_bits(l2=hp["weight_decay"] != 0.0, maximize=hp["maximize"])
