"""HD-SGD (docs/algorithms.md, "HD-SGD"); the C++ rule is cpp/rules/hd_sgd.hpp."""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from .. import _hyper as hv
from .._hyper import Hyper
from ._hypergradient import HypergradientMixin
from .base import Optimizer, Overrides


class HypergradientSGD(HypergradientMixin, Optimizer):
    """SGD with hypergradient descent on its learning rate (Baydin et al.,
    "Online Learning Rate Adaptation with Hypergradient Descent", ICLR 2018:
    SGD-HD, and SGDN-HD with ``nesterov=True``); torch.optim.SGD's momentum,
    dampening, Nesterov and L2 weight decay, as the authors' ``SGDHD``:

        g = g + wd * p
        alpha = alpha + hypergrad_lr * sum(g . d_prev)   (one alpha per group)
        buf = g (first step)  else  momentum * buf + (1 - dampening) * g
        d = g + momentum * buf  (nesterov)  else  buf  (momentum)  else  g
        p = p - alpha * d;  d_prev = d

    alpha starts at ``lr`` (assigning ``lr`` restarts it from the new value)
    and is state: ``opt.adapted["lr"]``, ``opt.lr_estimate``,
    ``opt.state[key]["lr"]``.

    ``momentum``, ``dampening``, ``weight_decay``, ``nesterov`` and ``maximize``
    are as in fa.SGD.

    Parameters
    ----------
    lr
        the initial learning rate alpha_0.
    momentum
        momentum factor (0: plain SGD-HD).
    dampening
        dampening of the momentum update.
    weight_decay
        L2 weight decay.
    nesterov
        Nesterov momentum, SGDN-HD (needs momentum > 0 and dampening 0).
    hypergrad_lr
        beta, the learning rate of alpha (the authors' default 1e-6; the paper's experiments use
        1e-3 with lr 1e-3).
    maximize
        ascend instead of descend.
    max_grad_norm, nonfinite, track_grad_norm, overrides, state_dtype, state_bits, master_weights, stochastic_rounding, seed
        the options every rule takes (gradient clipping, the NaN/Inf policy, per-key overrides, low
        precision): see [`Optimizer`][fastadapt.Optimizer].
    """

    algorithm = "hd-sgd"
    _kernel = "hd_sgd"
    _per_key = ("lr", "momentum", "dampening", "weight_decay", "nesterov", "hypergrad_lr", "maximize")

    lr = Hyper(hv.nonnegative, "Initial learning rate alpha_0 (assigning it restarts the adapted rate).")
    momentum = Hyper(hv.nonnegative, "Momentum factor (0: plain SGD-HD).")
    dampening = Hyper(hv.unit_closed, "Dampening of the momentum update.")
    weight_decay = Hyper(hv.nonnegative, "L2 weight decay.")
    nesterov = Hyper(hv.flag, "Nesterov momentum, SGDN-HD (needs momentum > 0 and dampening 0).")
    hypergrad_lr = Hyper(hv.nonnegative, "Hypergradient learning rate beta: the step size of alpha.")
    maximize = Hyper(hv.flag, "Ascend instead of descend.")

    def __init__(self, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, hypergrad_lr: float = 1e-6, *,
                 maximize: bool = False, max_grad_norm: Optional[float] = None, nonfinite: str = "propagate",
                 track_grad_norm: bool = False, overrides: Overrides = None, state_dtype: Optional[str] = None,
                 state_bits: Optional[int] = None, master_weights: bool = False,
                 stochastic_rounding: bool = False, seed: int = 0):
        super().__init__(dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                              nesterov=nesterov, hypergrad_lr=hypergrad_lr, maximize=maximize),
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
        if self._state_slots[slot] == "momentum_buffer":
            return np.empty_like(param)  # the first momentum step writes buf = g
        return np.zeros_like(param)      # d_0 = 0: the first hypergradient is 0

    def _fresh_flag(self, slot: int) -> int:
        return self._flag_bits(init_buffer=self._state_slots[slot] == "momentum_buffer")

    def _scalars_for(self, hp: Dict[str, Any], t: int) -> Dict[str, float]:
        return {"wd": hp["weight_decay"], "momentum": hp["momentum"],
                "one_minus_dampening": 1.0 - hp["dampening"], "lr": hp["lr"], "hypergrad_lr": hp["hypergrad_lr"]}

    def _flags_for(self, hp: Dict[str, Any]) -> int:
        return self._flag_bits(l2=hp["weight_decay"] != 0.0, momentum=hp["momentum"] != 0.0,
                               nesterov=hp["nesterov"], maximize=hp["maximize"])
