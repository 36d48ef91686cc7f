"""LARS (docs/algorithms.md, "LARS"); the C++ rule is cpp/rules/lars.hpp."""

from __future__ import annotations

from typing import Any, Dict, Optional

from .. import _hyper as hv
from .._hyper import Hyper
from .base import Optimizer, Overrides


class LARS(Optimizer):
    """LARS (You et al., 2017), optax.lars's definition and defaults:

        u = g + wd * p                                   (weight_decay_mask)
        r = trust_coefficient * ||p|| / (||u|| + eps)    (trust_ratio_mask; 1 when a norm is 0)
        trace = -lr * r * u + momentum * trace
        p = p + trace          (nesterov: p + (-lr * r * u + momentum * trace))

    ``trace`` is optax's momentum trace (it holds the negative, lr-scaled steps).

    ``weight_decay``, ``weight_decay_mask``, ``trust_coefficient``, ``eps``,
    ``trust_ratio_mask``, ``momentum`` and ``nesterov`` are as in optax.lars.
    The two masks are booleans; set them per key with ``overrides``, e.g.
    ``{"*.b": {"weight_decay_mask": False, "trust_ratio_mask": False}}``.

    Parameters
    ----------
    lr
        optax's learning_rate (no default there; 1e-3 here, as fa.SGD).
    weight_decay
        weight decay, added to the gradient before the trust ratio.
    weight_decay_mask
        apply the weight decay to this tensor (per key through overrides).
    trust_coefficient
        multiplier of the trust ratio.
    eps
        added to the update norm in the trust ratio's denominator.
    trust_ratio_mask
        scale this tensor by its trust ratio (per key through overrides).
    momentum
        decay of the momentum trace.
    nesterov
        Nesterov momentum.
    maximize
        ascend instead of descend.
    max_grad_norm, nonfinite, track_grad_norm, overrides, state_dtype, state_bits, master_weights, stochastic_rounding, seed
        the options every rule takes (gradient clipping, the NaN/Inf policy, per-key overrides, low
        precision): see [`Optimizer`][fastadapt.Optimizer].
    """

    algorithm = "lars"
    _kernel = "lars"
    _per_key = ("lr", "weight_decay", "weight_decay_mask", "trust_coefficient", "eps", "trust_ratio_mask",
                "momentum", "nesterov", "maximize")

    lr = Hyper(hv.nonnegative, "Learning rate.")
    weight_decay = Hyper(hv.nonnegative, "Weight decay, added to the gradient before the trust ratio.")
    weight_decay_mask = Hyper(hv.flag, "Apply the weight decay to this tensor (per key through overrides).")
    trust_coefficient = Hyper(hv.nonnegative, "Multiplier of the trust ratio.")
    eps = Hyper(hv.nonnegative, "Added to the update norm in the trust ratio's denominator.")
    trust_ratio_mask = Hyper(hv.flag, "Scale this tensor by its trust ratio (per key through overrides).")
    momentum = Hyper(hv.nonnegative, "Decay of the momentum trace.")
    nesterov = Hyper(hv.flag, "Nesterov momentum.")
    maximize = Hyper(hv.flag, "Ascend instead of descend.")

    def __init__(self, lr: float = 1e-3, weight_decay: float = 0.0, weight_decay_mask: bool = True,
                 trust_coefficient: float = 0.001, eps: float = 0.0, trust_ratio_mask: bool = True,
                 momentum: float = 0.9, nesterov: bool = False, *, maximize: bool = False,
                 max_grad_norm: Optional[float] = None, nonfinite: str = "propagate",
                 track_grad_norm: bool = False, overrides: Overrides = None, state_dtype: Optional[str] = None,
                 state_bits: Optional[int] = None, master_weights: bool = False,
                 stochastic_rounding: bool = False, seed: int = 0):
        super().__init__(dict(lr=lr, weight_decay=weight_decay, weight_decay_mask=weight_decay_mask,
                              trust_coefficient=trust_coefficient, eps=eps, trust_ratio_mask=trust_ratio_mask,
                              momentum=momentum, nesterov=nesterov, maximize=maximize),
                         max_grad_norm=max_grad_norm, nonfinite=nonfinite,
                         track_grad_norm=track_grad_norm,
                         overrides=overrides, state_dtype=state_dtype, state_bits=state_bits,
                         master_weights=master_weights, stochastic_rounding=stochastic_rounding, seed=seed)

    def _scalars_for(self, hp: Dict[str, Any], t: int) -> Dict[str, float]:
        return {"wd": hp["weight_decay"], "lr": hp["lr"], "trust_coefficient": hp["trust_coefficient"],
                "eps": hp["eps"], "momentum": hp["momentum"]}

    def _flags_for(self, hp: Dict[str, Any]) -> int:
        return self._flag_bits(decay=hp["weight_decay_mask"] and hp["weight_decay"] != 0.0,
                               trust=hp["trust_ratio_mask"], nesterov=hp["nesterov"], maximize=hp["maximize"])
