"""D-Adapted SGD (docs/algorithms.md, "DAdaptSGD"); the C++ rule is
cpp/rules/dadapt_sgd.hpp."""

from __future__ import annotations

import math
from typing import Any, Dict, Optional

import numpy as np

from .. import _hyper as hv
from .._hyper import Hyper
from . import _dadapt
from .base import Optimizer, Overrides


class DAdaptSGD(Optimizer):
    """SGD with D-Adaptation (Defazio & Mishchenko, 2023), the
    ``dadaptation`` package's DAdaptSGD: it learns the step size ``d`` (one
    value for all tensors) from the gradients; leave ``lr`` at 1:

        first step:  g0_norm = ||g||  (all tensors; an all-zero g changes nothing)
        dlr = d * lr / g0_norm
        g = g + weight_decay * p
        numerator_weighted += dlr * <g, s>;  s = s + dlr * g
        p = momentum * p + (1 - momentum) * (x0 - s)
        d = max(d, min(2 * numerator_weighted / ||s||, d * growth_rate))

    ``opt.adapted`` is ``{"d": d, "d_lr": d * lr / g0_norm}`` and
    ``opt.lr_estimate`` that ``d_lr``. State per key: ``s``, ``x0`` and the
    learned ``d``, ``numerator_weighted``, ``g0_norm`` (the same for every key).

    Parameters
    ----------
    lr
        multiplies the learned step size (the package's default 1.0); 0 is allowed (a schedule may
        end there): d then stays.
    momentum
        in [0, 1).
    weight_decay
        an L2 term added to the gradient.
    d0
        the starting d (1e-6).
    growth_rate
        the most d may grow in one step (inf: no limit).
    maximize
        ascend instead of descend (fastadapt's; the package has none).
    max_grad_norm, nonfinite, track_grad_norm, overrides, state_dtype, state_bits, master_weights, stochastic_rounding, seed
        the options every rule takes (gradient clipping, the NaN/Inf policy, per-key overrides, low
        precision): see [`Optimizer`][fastadapt.Optimizer].
    """

    algorithm = "dadapt-sgd"
    _kernel = "dadapt-sgd"
    _per_key = ("maximize",)
    lr_free = True

    # (>= 0: the package refuses 0 at construction, but a schedule may end
    # there; d then stays, as the package's own lr > 0 check has it)
    lr = Hyper(hv.nonnegative, "Multiplies the learned step size (leave at 1).")
    momentum = Hyper(_dadapt.momentum, "Momentum in [0, 1).")
    weight_decay = Hyper(hv.nonnegative, "L2 penalty added to the gradient.")
    d0 = Hyper(_dadapt.positive, "The starting d.")
    growth_rate = Hyper(_dadapt.growth_rate, "The most d may grow in one step (inf: no limit).")
    maximize = Hyper(hv.flag, "Ascend instead of descend.")

    def __init__(self, lr: float = 1.0, momentum: float = 0.0, weight_decay: float = 0.0, d0: float = 1e-6,
                 growth_rate: float = float("inf"), *, maximize: bool = False,
                 max_grad_norm: Optional[float] = None, nonfinite: str = "propagate",
                 track_grad_norm: bool = False, overrides: Overrides = None, state_dtype: Optional[str] = None,
                 state_bits: Optional[int] = None, master_weights: bool = False,
                 stochastic_rounding: bool = False, seed: int = 0):
        super().__init__(dict(lr=lr, momentum=momentum, weight_decay=weight_decay, d0=d0, growth_rate=growth_rate,
                              maximize=maximize),
                         max_grad_norm=max_grad_norm, nonfinite=nonfinite,
                         track_grad_norm=track_grad_norm,
                         overrides=overrides, state_dtype=state_dtype, state_bits=state_bits,
                         master_weights=master_weights, stochastic_rounding=stochastic_rounding, seed=seed)

    def _scalars_for(self, hp: Dict[str, Any], t: int) -> Dict[str, float]:
        ck = 1.0 - hp["momentum"]
        # dlr, g0 and mode are the hook's (cpp/rules/dadapt_sgd.hpp)
        return {"lr": hp["lr"], "wd": hp["weight_decay"], "one_minus_ck": 1.0 - ck, "ck": ck,
                "growth_rate": hp["growth_rate"], "dlr": 0.0, "g0": 0.0, "mode": 0.0}

    def _flags_for(self, hp: Dict[str, Any]) -> int:
        return self._flag_bits(decay=hp["weight_decay"] != 0.0, maximize=hp["maximize"])

    def _initial_tensor_scalars(self, hp: Dict[str, Any]) -> Dict[str, float]:
        return {"d": hp["d0"]}

    def _new_state(self, slot: int, param: np.ndarray, hp: Dict[str, Any]) -> np.ndarray:
        if self._state_slots[slot] == "x0":
            return np.array(param, copy=True, order="C")
        return super()._new_state(slot, param, hp)

    def _step_size(self) -> Optional[Dict[str, float]]:
        got = _dadapt.learned(self)
        if got is None:
            return None
        g0 = got["g0_norm"]
        return {"d": got["d"], "d_lr": got["d"] * self._hyper["lr"] / g0 if g0 != 0.0 else math.nan}

    def _adapted(self) -> Dict[str, float]:
        return self._step_size() or {}

    def _lr_estimate(self) -> Optional[float]:
        got = self._step_size()
        return None if got is None or math.isnan(got["d_lr"]) else got["d_lr"]
