"""RMSProp (docs/algorithms.md, "RMSProp"); the C++ rule is cpp/rules/rmsprop.hpp."""

from __future__ import annotations

from typing import Any, Dict, Optional


from .. import _hyper as hv
from .._hyper import Hyper
from .base import Optimizer, Overrides


class RMSprop(Optimizer):
    """RMSProp (Hinton, 2012), torch.optim.RMSprop's definition:

        g = g + wd * p
        sq = alpha * sq + (1 - alpha) * g * g
        avg = sqrt(sq) + eps                        (centered: sqrt(sq - ga * ga) + eps,
                                                     ga = alpha * ga + (1 - alpha) * g)
        p = p - lr * g / avg                        (momentum: buf = momentum * buf + g / avg,
                                                     p = p - lr * buf)

    The hyperparameters are torch.optim.RMSprop's.

    Parameters
    ----------
    lr
        learning rate.
    alpha
        smoothing constant of the squared-gradient average.
    eps
        added to the denominator for stability.
    weight_decay
        L2 weight decay.
    momentum
        momentum factor (0: off).
    centered
        normalize by the estimated variance of the gradient.
    maximize
        ascend instead of descend.
    max_grad_norm, nonfinite, track_grad_norm, overrides, state_dtype, state_bits, master_weights, stochastic_rounding, seed
        the options every rule takes (gradient clipping, the NaN/Inf policy, per-key overrides, low
        precision): see [`Optimizer`][fastadapt.Optimizer].
    """

    algorithm = "rmsprop"
    _kernel = "rmsprop"
    _per_key = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered", "maximize")

    lr = Hyper(hv.nonnegative, "Learning rate.")
    alpha = Hyper(hv.unit_closed, "Smoothing constant of the squared-gradient average.")
    eps = Hyper(hv.nonnegative, "Added to the denominator for stability.")
    weight_decay = Hyper(hv.nonnegative, "L2 weight decay.")
    momentum = Hyper(hv.nonnegative, "Momentum factor (0: off).")
    centered = Hyper(hv.flag, "Normalize by the estimated variance of the gradient.")
    maximize = Hyper(hv.flag, "Ascend instead of descend.")

    def __init__(self, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
                 momentum: float = 0.0, centered: bool = False, *, maximize: bool = False,
                 max_grad_norm: Optional[float] = None, nonfinite: str = "propagate",
                 track_grad_norm: bool = False, overrides: Overrides = None, state_dtype: Optional[str] = None,
                 state_bits: Optional[int] = None, master_weights: bool = False,
                 stochastic_rounding: bool = False, seed: int = 0):
        super().__init__(dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                              centered=centered, maximize=maximize),
                         max_grad_norm=max_grad_norm, nonfinite=nonfinite,
                         track_grad_norm=track_grad_norm,
                         overrides=overrides, state_dtype=state_dtype, state_bits=state_bits,
                         master_weights=master_weights, stochastic_rounding=stochastic_rounding, seed=seed)

    def _scalars_for(self, hp: Dict[str, Any], t: int) -> Dict[str, float]:
        return {"wd": hp["weight_decay"], "alpha": hp["alpha"], "one_minus_alpha": 1.0 - hp["alpha"],
                "eps": hp["eps"], "momentum": hp["momentum"], "lr": hp["lr"]}

    def _flags_for(self, hp: Dict[str, Any]) -> int:
        return self._flag_bits(l2=hp["weight_decay"] != 0.0, centered=hp["centered"], momentum=hp["momentum"] > 0.0,
                          maximize=hp["maximize"])


RMSProp = RMSprop  # the earlier spelling (the same class: isinstance and pickles keep working)
