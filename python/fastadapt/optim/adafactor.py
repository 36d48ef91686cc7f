"""Adafactor (docs/algorithms.md, "Adafactor"); the C++ rule is cpp/rules/adafactor.hpp."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

from .. import _hyper as hv
from .._hyper import Hyper
from .base import Optimizer, Overrides


def _beta2_decay(name: str, value: Any) -> float:
    v = hv.as_float(name, value)
    if v > 0:
        raise ValueError(f"Invalid {name}: {v} (must be <= 0; beta2_t = 1 - t**beta2_decay)")
    return v


def _eps_pair(name: str, value: Any) -> Tuple[Optional[float], float]:
    ordered = isinstance(value, (tuple, list)) or (isinstance(value, np.ndarray) and value.ndim == 1)
    if not ordered or len(value) != 2:
        raise TypeError(f"{name} must be a pair (eps1, eps2) as a tuple or list (eps1 may be None: the "
                        f"dtype's machine epsilon), got {type(value).__name__} {value!r}")
    eps1 = None if value[0] is None else hv.nonnegative(f"{name}[0]", value[0])
    return (eps1, hv.nonnegative(f"{name}[1]", value[1]))


def _clip_threshold(name: str, value: Any) -> float:
    v = hv.as_float(name, value)
    if v < 1.0:
        raise ValueError(f"Invalid {name}: {v} (the clipping threshold must be >= 1)")
    return v


class Adafactor(Optimizer):
    """Adafactor (Shazeer & Stern, 2018), with torch.optim.Adafactor's
    definition and defaults.

    For a parameter with ``ndim >= 2`` (matrices over its last two axes) the
    second moment is factored into per-row and per-column statistics
    (``row_var``, ``col_var``); 1-D and 0-D parameters keep a full ``variance``.
    Update (docs/algorithms.md, t counts from 1):

        rho   = min(lr, 1 / sqrt(t))
        alpha = max(eps2, RMS(p)) * rho
        row_var, col_var (or variance) move towards the row / column means of g*g
            (or g*g) with weight t**beta2_decay
        v     = row_var * col_var / max(mean(row_var), eps1)      (or variance)
        u     = g / sqrt(max(v, eps1**2))
        p     = p * (1 - lr * weight_decay)
        p     = p - alpha / max(1, RMS(u) / d) * u

    Parameters
    ----------
    lr
        the largest relative step size (and the weight decay's factor).
    beta2_decay
        exponent of the decay of beta2 (<= 0).
    eps
        (eps1, eps2); eps1 None means the machine epsilon of the parameter's dtype.
    d
        clipping threshold of the update's RMS (>= 1).
    weight_decay
        decoupled weight decay, scaled by lr.
    maximize
        ascend instead of descend.
    max_grad_norm, nonfinite, track_grad_norm, overrides, state_dtype, state_bits, master_weights, stochastic_rounding, seed
        the options every rule takes (gradient clipping, the NaN/Inf policy, per-key overrides, low
        precision): see [`Optimizer`][fastadapt.Optimizer].

    Examples
    --------
        opt = fa.Adafactor()
        opt.update(params, grads)   # in place
    """

    algorithm = "adafactor"
    _kernel = "adafactor"
    _per_key = ("lr", "beta2_decay", "eps", "d", "weight_decay", "maximize")

    lr = Hyper(hv.nonnegative, "Largest relative step size (rho = min(lr, 1/sqrt(t))).")
    beta2_decay = Hyper(_beta2_decay, "beta2_t = 1 - t**beta2_decay (<= 0).")
    eps = Hyper(_eps_pair, "(eps1, eps2): the floor of the second moment estimate (None: the dtype's "
                           "machine epsilon) and of RMS(p) in the step size.")
    d = Hyper(_clip_threshold, "Clipping threshold of the update's RMS.")
    weight_decay = Hyper(hv.nonnegative, "Decoupled weight decay (p *= 1 - lr * weight_decay).")
    maximize = Hyper(hv.flag, "Ascend instead of descend.")

    def __init__(self, lr: float = 1e-2, beta2_decay: float = -0.8,
                 eps: Tuple[Optional[float], float] = (None, 1e-3), d: float = 1.0,
                 weight_decay: float = 0.0, *, maximize: bool = False,
                 max_grad_norm: Optional[float] = None, nonfinite: str = "propagate",
                 track_grad_norm: bool = False, overrides: Overrides = None, state_dtype: Optional[str] = None,
                 state_bits: Optional[int] = None, master_weights: bool = False,
                 stochastic_rounding: bool = False, seed: int = 0):
        super().__init__(dict(lr=lr, beta2_decay=beta2_decay, eps=eps, d=d, weight_decay=weight_decay,
                              maximize=maximize),
                         max_grad_norm=max_grad_norm, nonfinite=nonfinite,
                         track_grad_norm=track_grad_norm,
                         overrides=overrides, state_dtype=state_dtype, state_bits=state_bits,
                         master_weights=master_weights, stochastic_rounding=stochastic_rounding, seed=seed)

    def _scalars_for(self, hp: Dict[str, Any], t: int) -> Dict[str, float]:
        lr, wd = hp["lr"], hp["weight_decay"]
        eps1, eps2 = hp["eps"]
        w = float(t) ** hp["beta2_decay"]
        return {"w": w, "one_minus_w": 1.0 - w, "rho": min(lr, 1.0 / float(t) ** 0.5),
                "eps1": 0.0 if eps1 is None else eps1, "eps2": eps2, "d": hp["d"], "decay": 1.0 - lr * wd}

    def _flags_for(self, hp: Dict[str, Any]) -> int:
        return self._flag_bits(weight_decay=hp["weight_decay"] != 0.0, eps1_auto=hp["eps"][0] is None,
                               maximize=hp["maximize"])
