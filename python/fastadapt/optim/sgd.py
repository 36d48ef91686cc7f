"""SGD with momentum (docs/algorithms.md, "SGD"); the C++ rule is cpp/rules/sgd.hpp."""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from .. import _hyper as hv
from .._hyper import Hyper
from .base import Optimizer, Overrides


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, torch.optim.SGD's definition:

        g = g + wd * p
        buf = g (first step)  else  momentum * buf + (1 - dampening) * g
        g = g + momentum * buf  (nesterov)  else  buf
        p = p - lr * g

    The hyperparameters are torch.optim.SGD's.

    Parameters
    ----------
    lr
        learning rate.
    momentum
        momentum factor (0: plain SGD).
    dampening
        dampening of the momentum update.
    weight_decay
        L2 weight decay.
    nesterov
        Nesterov momentum (needs momentum > 0 and dampening 0).
    maximize
        ascend instead of descend.
    max_grad_norm, nonfinite, track_grad_norm, overrides, state_dtype, state_bits, master_weights, stochastic_rounding, seed
        the options every rule takes (gradient clipping, the NaN/Inf policy, per-key overrides, low
        precision): see [`Optimizer`][fastadapt.Optimizer].
    """

    algorithm = "sgd"
    _kernel = "sgd"
    _per_key = ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize")

    lr = Hyper(hv.nonnegative, "Learning rate.")
    momentum = Hyper(hv.nonnegative, "Momentum factor (0: plain SGD).")
    dampening = Hyper(hv.unit_closed, "Dampening of the momentum update.")
    weight_decay = Hyper(hv.nonnegative, "L2 weight decay.")
    nesterov = Hyper(hv.flag, "Nesterov momentum (needs momentum > 0 and dampening 0).")
    maximize = Hyper(hv.flag, "Ascend instead of descend.")

    def __init__(self, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, maximize: bool = False,
                 max_grad_norm: Optional[float] = None, nonfinite: str = "propagate",
                 track_grad_norm: bool = False, overrides: Overrides = None, state_dtype: Optional[str] = None,
                 state_bits: Optional[int] = None, master_weights: bool = False,
                 stochastic_rounding: bool = False, seed: int = 0):
        super().__init__(dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                              nesterov=nesterov, maximize=maximize),
                         max_grad_norm=max_grad_norm, nonfinite=nonfinite,
                         track_grad_norm=track_grad_norm,
                         overrides=overrides, state_dtype=state_dtype, state_bits=state_bits,
                         master_weights=master_weights, stochastic_rounding=stochastic_rounding, seed=seed)

    def _check_consistency(self, hp: Dict[str, Any], where: str) -> None:
        if hp.get("nesterov") and (hp.get("momentum", 0.0) <= 0.0 or hp.get("dampening", 0.0) != 0.0):
            raise ValueError(f"{where}Nesterov momentum requires momentum > 0 and dampening = 0 "
                             f"(got momentum={hp.get('momentum')}, dampening={hp.get('dampening')}); "
                             f"set momentum first or nesterov=False")

    def _new_state(self, slot: int, param: np.ndarray, hp: Dict[str, Any]) -> np.ndarray:
        return np.empty_like(param)  # the first momentum step writes buf = g

    def _fresh_flag(self, slot: int) -> int:
        return self._flag_bits(init_buffer=True)

    def _scalars_for(self, hp: Dict[str, Any], t: int) -> Dict[str, float]:
        return {"wd": hp["weight_decay"], "momentum": hp["momentum"],
                "one_minus_dampening": 1.0 - hp["dampening"], "lr": hp["lr"]}

    def _flags_for(self, hp: Dict[str, Any]) -> int:
        return self._flag_bits(l2=hp["weight_decay"] != 0.0, momentum=hp["momentum"] != 0.0,
                          nesterov=hp["nesterov"], maximize=hp["maximize"])
