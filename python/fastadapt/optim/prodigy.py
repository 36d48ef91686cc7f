"""Prodigy (docs/algorithms.md, "Prodigy"); the C++ rule is cpp/rules/prodigy.hpp."""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

import numpy as np

from .. import _hyper as hv
from .._hyper import Hyper
from . import _d_adam as da
from .base import Overrides


class Prodigy(da.DAdaptOptimizer):
    """Prodigy (Mishchenko & Defazio, 2024), prodigyopt's ``Prodigy``
    (``slice_p=1``): Adam whose step size ``d * lr`` is learned; leave ``lr``
    at 1.0 unless it is unstable. With ``dlr = d * lr`` (times Adam's bias
    correction when ``use_bias_correction``) and ``p0`` the starting point:

        m = b1 * m + d * (1 - b1) * g
        v = b2 * v + d * d * (1 - b2) * g * g
        s = beta3 * s + (d / d0) * dlr * g                  ((d / d0) * d with safeguard_warmup)
        d_numerator = beta3 * d_numerator + (d / d0) * dlr * sum(g * (p0 - p))
        d_hat = d_coef * d_numerator / sum|s|               (sums over every key)
        d = max(d, d_hat) while d == d0;  d_max = max(d_max, d_hat);  d = min(d_max, d * growth_rate)
        p = p - dlr * m / (sqrt(v) + d * eps)               (the new d in the denominator)

    One ``d`` for all keys (``opt.adapted``; per key in ``opt.state[key]["d"]``).
    docs/algorithms.md gives the exact update, the early return before any
    gradient signal and what differs from prodigyopt.

    ``lr``, ``betas``, ``beta3``, ``eps``, ``weight_decay``, ``decouple``,
    ``use_bias_correction``, ``safeguard_warmup``, ``d0``, ``d_coef`` and
    ``growth_rate`` are as in prodigyopt.Prodigy (fsdp_in_use and slice_p are
    not offered). betas, beta3, decouple, use_bias_correction, d0, d_coef,
    growth_rate shape the one d and are not per key; a key's lr must be the
    largest lr or 0.

    Parameters
    ----------
    lr
        scales the learned step size d (leave at 1.0); a key's lr is the largest or 0.
    betas
        decay rates (beta1, beta2) of the moment estimates.
    beta3
        decay rate of s and d's numerator (None: sqrt(beta2)).
    eps
        added to the denominator (times d), outside the square root.
    weight_decay
        weight decay (decoupled, AdamW form, unless decouple=False: L2).
    decouple
        decay the weights directly (AdamW) instead of adding the L2 term to g.
    use_bias_correction
        multiply the step size by Adam's bias correction.
    safeguard_warmup
        leave lr out of s's coefficient (steadier d under warm-up schedules).
    d0
        the starting d.
    d_coef
        scales d's estimate (the preferred knob: 0.5 and 2.0 also work).
    growth_rate
        the most d may grow per step, as a factor (inf: no limit).
    maximize
        ascend instead of descend.
    max_grad_norm, nonfinite, track_grad_norm, overrides, state_dtype, state_bits, master_weights, stochastic_rounding, seed
        the options every rule takes (gradient clipping, the NaN/Inf policy, per-key overrides, low
        precision): see [`Optimizer`][fastadapt.Optimizer].
    """

    algorithm = "prodigy"
    _kernel = "prodigy"
    _per_key = ("lr", "eps", "weight_decay", "safeguard_warmup", "maximize")

    # (lr, betas, decouple, use_bias_correction, d0, growth_rate, maximize: da.DAdaptOptimizer's)
    beta3 = Hyper(da.beta3, "Decay rate of s and d's numerator (None: sqrt(beta2)).")
    eps = Hyper(da.positive, "Added to the denominator (times d), outside the square root.")
    weight_decay = Hyper(hv.nonnegative, "Weight decay (decoupled, AdamW form, unless decouple=False: L2).")
    safeguard_warmup = Hyper(hv.flag, "Leave lr out of s's coefficient (steadier d under warm-up schedules).")
    d_coef = Hyper(da.positive, "Scales d's estimate (the preferred knob: 0.5 and 2.0 also work).")

    def __init__(self, lr: float = 1.0, betas: Tuple[float, float] = (0.9, 0.999), beta3: Optional[float] = None,
                 eps: float = 1e-8, weight_decay: float = 0.0, decouple: bool = True,
                 use_bias_correction: bool = False, safeguard_warmup: bool = False, d0: float = 1e-6,
                 d_coef: float = 1.0, growth_rate: float = float("inf"), *, maximize: bool = False,
                 max_grad_norm: Optional[float] = None, nonfinite: str = "propagate",
                 track_grad_norm: bool = False, overrides: Overrides = None, state_dtype: Optional[str] = None,
                 state_bits: Optional[int] = None, master_weights: bool = False,
                 stochastic_rounding: bool = False, seed: int = 0):
        super().__init__(dict(lr=lr, betas=betas, beta3=beta3, eps=eps, weight_decay=weight_decay,
                              decouple=decouple, use_bias_correction=use_bias_correction,
                              safeguard_warmup=safeguard_warmup, d0=d0, d_coef=d_coef, growth_rate=growth_rate,
                              maximize=maximize),
                         max_grad_norm=max_grad_norm, nonfinite=nonfinite,
                         track_grad_norm=track_grad_norm,
                         overrides=overrides, state_dtype=state_dtype, state_bits=state_bits,
                         master_weights=master_weights, stochastic_rounding=stochastic_rounding, seed=seed)

    def _initial_tensor_scalars(self, hp: Dict[str, Any]) -> Dict[str, float]:
        return {"d": hp["d0"], "d_max": hp["d0"], "d_numerator": 0.0, "k": 0.0}

    def _new_state(self, slot: int, param: np.ndarray, hp: Dict[str, Any]) -> np.ndarray:
        if self._state_slots[slot] == "p0":
            return np.array(param, copy=True, order="C")
        return super()._new_state(slot, param, hp)

    def _scalars_for(self, hp: Dict[str, Any], t: int) -> Dict[str, float]:
        learned = self._learned()
        d, d0 = learned["d"], hp["d0"]
        b1, b2 = hp["betas"]
        beta3 = math.sqrt(b2) if hp["beta3"] is None else hp["beta3"]
        dlr = self._step_size(learned, self._step_lr(), hp)
        wd = hp["weight_decay"]
        return {"b1": b1, "b2": b2, "beta3": beta3, "m_coef": d * (1.0 - b1), "v_coef": d * d * (1.0 - b2),
                "s_coef": (d / d0) * d if hp["safeguard_warmup"] else (d / d0) * dlr, "wd": wd, "eps": hp["eps"],
                "dlr": dlr, "num_factor": (d / d0) * dlr, "d0": d0, "d_coef": hp["d_coef"],
                "growth_rate": hp["growth_rate"], "wd_dlr": wd * dlr, "skip": 0.0}

    def _flags_for(self, hp: Dict[str, Any]) -> int:
        return self._common_flags(hp, momentum=hp["betas"][0] > 0.0)

    def _adapted(self) -> Dict[str, float]:
        out = super()._adapted()
        if out:
            out["d_max"] = self._learned()["d_max"]
        return out
