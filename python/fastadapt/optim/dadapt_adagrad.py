"""D-Adapted AdaGrad (docs/algorithms.md, "DAdaptAdaGrad"); the C++ rule is
cpp/rules/dadapt_adagrad.hpp."""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from .. import _hyper as hv
from .._hyper import Hyper
from . import _dadapt
from .base import Optimizer, Overrides

ALPHAK_INIT = 1e-6  # the package's starting alphak (a constant: not eps, not d0)


class DAdaptAdaGrad(Optimizer):
    """AdaGrad with D-Adaptation (Defazio & Mishchenko, 2023), the
    ``dadaptation`` package's DAdaptAdaGrad (dense gradients): it learns the
    step size ``d`` (one value for all tensors); leave ``lr`` at 1:

        dlr = d * lr
        g = g + weight_decay * p
        alphak = alphak + g * g;   den = sqrt(alphak) + eps
        sk = sk + dlr * g
        p = momentum * p + (1 - momentum) * (x0 - sk / den)   (x0 - sk / den at momentum 0)
        d = max(d, min((sksq_weighted - gsq_weighted) / skl1, d * growth_rate))

    with the running totals ``sksq_weighted`` (sum sk^2 / den),
    ``gsq_weighted`` (sum dlr^2 g^2 / den) and ``skl1`` (sum |sk|), moved by each
    step's changes as the package does (docs/algorithms.md).

    ``opt.adapted`` is ``{"d": d, "d_lr": d * lr}`` and ``opt.lr_estimate``
    that ``d_lr``. State per key: ``alphak``, ``sk``, ``x0``, the learned
    ``d``, ``gsq_weighted``, ``sksq_weighted``, ``skl1`` (the same for every
    key), and the key's own sums after its last step, which the next step
    subtracts as the package does: ``sksq_weighted_param`` (sum sk^2 / den),
    ``skl1_param`` (sum |sk|) and ``sksq_weighted_eps`` (the eps of that sum;
    another eps has it recomputed).

    Parameters
    ----------
    lr
        multiplies the learned step size (the package's default 1.0); 0 is allowed (a schedule may
        end there): d then stays.
    momentum
        in [0, 1).
    weight_decay
        an L2 term added to the gradient (per key).
    eps
        added to sqrt(alphak) (per key; > 0).
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

    algorithm = "dadapt-adagrad"
    _kernel = "dadapt-adagrad"
    _per_key = ("eps", "weight_decay", "maximize")
    lr_free = True

    # (>= 0: the package refuses 0 at construction, but a schedule may end
    # there; d then stays, as the package's own lr > 0 check has it)
    lr = Hyper(hv.nonnegative, "Multiplies the learned step size (leave at 1).")
    momentum = Hyper(_dadapt.momentum, "Momentum in [0, 1).")
    weight_decay = Hyper(hv.nonnegative, "L2 penalty added to the gradient.")
    eps = Hyper(_dadapt.positive, "Added to sqrt(alphak), outside the root.")
    d0 = Hyper(_dadapt.positive, "The starting d.")
    growth_rate = Hyper(_dadapt.growth_rate, "The most d may grow in one step (inf: no limit).")
    maximize = Hyper(hv.flag, "Ascend instead of descend.")

    def __init__(self, lr: float = 1.0, momentum: float = 0.0, weight_decay: float = 0.0, eps: float = 1e-6,
                 d0: float = 1e-6, growth_rate: float = float("inf"), *, maximize: bool = False,
                 max_grad_norm: Optional[float] = None, nonfinite: str = "propagate",
                 track_grad_norm: bool = False, overrides: Overrides = None, state_dtype: Optional[str] = None,
                 state_bits: Optional[int] = None, master_weights: bool = False,
                 stochastic_rounding: bool = False, seed: int = 0):
        super().__init__(dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eps=eps, d0=d0,
                              growth_rate=growth_rate, maximize=maximize),
                         max_grad_norm=max_grad_norm, nonfinite=nonfinite,
                         track_grad_norm=track_grad_norm,
                         overrides=overrides, state_dtype=state_dtype, state_bits=state_bits,
                         master_weights=master_weights, stochastic_rounding=stochastic_rounding, seed=seed)

    def _scalars_for(self, hp: Dict[str, Any], t: int) -> Dict[str, float]:
        ck = 1.0 - hp["momentum"]
        # mode is the hook's (cpp/rules/dadapt_adagrad.hpp)
        return {"lr": hp["lr"], "wd": hp["weight_decay"], "eps": hp["eps"], "one_minus_ck": 1.0 - ck, "ck": ck,
                "growth_rate": hp["growth_rate"], "mode": 0.0}

    def _flags_for(self, hp: Dict[str, Any]) -> int:
        return self._flag_bits(decay=hp["weight_decay"] != 0.0, momentum=hp["momentum"] != 0.0,
                               maximize=hp["maximize"])

    def _initial_tensor_scalars(self, hp: Dict[str, Any]) -> Dict[str, float]:
        return {"d": hp["d0"]}

    def _new_state(self, slot: int, param: np.ndarray, hp: Dict[str, Any]) -> np.ndarray:
        name = self._state_slots[slot]
        if name == "x0":
            return np.array(param, copy=True, order="C")
        if name == "alphak":
            return np.full(param.shape, ALPHAK_INIT, dtype=param.dtype)
        return super()._new_state(slot, param, hp)

    def _adapted(self) -> Dict[str, float]:
        got = _dadapt.learned(self)
        return {} if got is None else {"d": got["d"], "d_lr": got["d"] * self._hyper["lr"]}

    def _lr_estimate(self) -> Optional[float]:
        return self._adapted().get("d_lr")
