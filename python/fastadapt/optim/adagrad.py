"""AdaGrad (docs/algorithms.md, "AdaGrad"); the C++ rule is cpp/rules/adagrad.hpp."""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from .. import _hyper as hv
from .._hyper import Hyper
from .base import Optimizer, Overrides


class Adagrad(Optimizer):
    """AdaGrad (Duchi et al., 2011), torch.optim.Adagrad's definition:

        g = g + wd * p
        sum = sum + g * g
        p = p - lr / (1 + (t - 1) * lr_decay) * g / (sqrt(sum) + eps)

    ``sum`` starts at ``initial_accumulator_value``.

    The hyperparameters are torch.optim.Adagrad's.

    Parameters
    ----------
    lr
        learning rate.
    lr_decay
        learning-rate decay per step.
    weight_decay
        L2 weight decay.
    initial_accumulator_value
        starting value of the squared-gradient sum.
    eps
        added to the denominator for stability.
    maximize
        ascend instead of descend.
    max_grad_norm, nonfinite, track_grad_norm, overrides, state_dtype, state_bits, master_weights, stochastic_rounding, seed
        the options every rule takes (gradient clipping, the NaN/Inf policy, per-key overrides, low
        precision): see [`Optimizer`][fastadapt.Optimizer].
    """

    algorithm = "adagrad"
    _kernel = "adagrad"
    _per_key = ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps", "maximize")

    lr = Hyper(hv.nonnegative, "Learning rate.")
    lr_decay = Hyper(hv.nonnegative, "Learning-rate decay per step.")
    weight_decay = Hyper(hv.nonnegative, "L2 weight decay.")
    initial_accumulator_value = Hyper(hv.nonnegative, "Starting value of the squared-gradient sum.")
    eps = Hyper(hv.nonnegative, "Added to the denominator for stability.")
    maximize = Hyper(hv.flag, "Ascend instead of descend.")

    def __init__(self, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10, *, maximize: bool = False,
                 max_grad_norm: Optional[float] = None, nonfinite: str = "propagate",
                 track_grad_norm: bool = False, overrides: Overrides = None, state_dtype: Optional[str] = None,
                 state_bits: Optional[int] = None, master_weights: bool = False,
                 stochastic_rounding: bool = False, seed: int = 0):
        super().__init__(dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                              initial_accumulator_value=initial_accumulator_value, eps=eps, maximize=maximize),
                         max_grad_norm=max_grad_norm, nonfinite=nonfinite,
                         track_grad_norm=track_grad_norm,
                         overrides=overrides, state_dtype=state_dtype, state_bits=state_bits,
                         master_weights=master_weights, stochastic_rounding=stochastic_rounding, seed=seed)

    def _new_state(self, slot: int, param: np.ndarray, hp: Dict[str, Any]) -> np.ndarray:
        return np.full_like(param, hp["initial_accumulator_value"])

    def _scalars_for(self, hp: Dict[str, Any], t: int) -> Dict[str, float]:
        return {"wd": hp["weight_decay"], "clr": hp["lr"] / (1.0 + (t - 1) * hp["lr_decay"]), "eps": hp["eps"]}

    def _flags_for(self, hp: Dict[str, Any]) -> int:
        return self._flag_bits(l2=hp["weight_decay"] != 0.0, maximize=hp["maximize"])


AdaGrad = Adagrad  # the earlier spelling (the same class: isinstance and pickles keep working)
