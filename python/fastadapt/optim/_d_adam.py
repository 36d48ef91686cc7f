"""What fa.Prodigy and fa.DAdaptAdam share: one set of learned scalars (d,
...) for the whole optimizer, which the C++ rule keeps per tensor (every
tensor holding the same values), the step's learning rate (the largest of all
keys; each key's must be that one or 0, as in the reference packages), and
the validators of their hyperparameters."""

from __future__ import annotations

import math
from typing import Any, Dict, Optional

from .. import _hyper as hv
from .._hyper import Hyper
from .base import Optimizer


def positive(name: str, value: Any) -> float:
    v = hv.as_float(name, value)
    if not v > 0:
        raise ValueError(f"Invalid {name}: {v} (must be > 0)")
    return v


def growth_rate(name: str, value: Any) -> float:
    """> 0, and float('inf') (the packages' default: no limit) allowed."""
    if isinstance(value, float) and math.isinf(value) and value > 0:   # (np.float64 is a float)
        return float("inf")
    if isinstance(value, float) and math.isnan(value):
        raise ValueError(f"Invalid {name}: nan (must be > 0, or inf for no limit)")
    v = hv.as_float(name, value)
    if not v > 0:
        raise ValueError(f"Invalid {name}: {v} (must be > 0, or inf for no limit)")
    return v


def beta3(name: str, value: Any) -> Optional[float]:
    if value is None:
        return None
    v = hv.as_float(name, value)
    if not 0.0 <= v < 1.0:
        raise ValueError(f"Invalid {name}: {v} (must be in [0, 1), or None for sqrt(beta2))")
    return v


def bias_correction(betas, k: float, on: bool) -> float:
    """Adam's bias correction of the step after ``k`` committed ones:
    ``sqrt(1 - b2**(k+1)) / (1 - b1**(k+1))`` when on, else 1."""
    b1, b2 = betas
    return math.sqrt(1.0 - b2 ** (k + 1)) / (1.0 - b1 ** (k + 1)) if on else 1.0


class DAdaptOptimizer(Optimizer):
    """The base of the two D-adaptation rules (no ``algorithm``: not registered)."""

    lr_free = True

    # The hyperparameters both rules have, with the same meaning (eps and
    # weight_decay enter differently: each rule declares its own).
    lr = Hyper(hv.nonnegative, "Scales the learned step size d (leave at 1.0); a key's lr is the largest or 0.")
    betas = Hyper(hv.betas, "Decay rates (beta1, beta2) of the moment estimates.")
    decouple = Hyper(hv.flag, "Decay the weights directly (AdamW) instead of adding the L2 term to g.")
    use_bias_correction = Hyper(hv.flag, "Multiply the step size by Adam's bias correction.")
    d0 = Hyper(positive, "The starting d.")
    # (the validator is the module's growth_rate above: this name is bound after the call)
    growth_rate = Hyper(growth_rate, "The most d may grow per step, as a factor (inf: no limit).")
    maximize = Hyper(hv.flag, "Ascend instead of descend.")

    def _learned(self) -> Dict[str, float]:
        """The learned scalars now: tensor 0's (every tensor holds the same),
        or the starting values before the first step."""
        names = self._tensor_scalar_names
        if len(self._paths) and self._state[names[0]][0] is not None:
            row = self._tensor_scalars[0]
            return {name: float(row[j]) for j, name in enumerate(names)}
        initial = self._initial_tensor_scalars(self._hyper)
        return {name: float(initial.get(name, 0.0)) for name in names}

    def _step_lr(self) -> float:
        """The step's lr: the largest of all keys; every key's lr must be it
        or 0 (a ValueError naming a key of the group otherwise)."""
        lrs = [self._group_hyper(g)["lr"] for g in range(len(self._group_members))]
        lr = max(lrs, default=self._hyper["lr"])
        for g, value in enumerate(lrs):
            if value not in (lr, 0.0):
                key = self._paths[self._group_members[g][0]]
                raise ValueError(f"lr of {key!r} is {value}: every key's lr must be the largest lr ({lr}) "
                                 "or 0 (d is one step size for all keys)")
        return lr

    def _current_lr(self) -> float:
        """The largest lr of all keys now (for adapted / lr_estimate)."""
        if not len(self._group_members):
            return self._hyper["lr"]
        return max(self._group_hyper(g)["lr"] for g in range(len(self._group_members)))

    def _stepped(self) -> bool:
        names = self._tensor_scalar_names
        return bool(len(self._paths)) and self._state[names[0]][0] is not None

    def _step_size(self, learned: Dict[str, float], lr: float, hp: Dict[str, Any]) -> float:
        """``d * lr``, times Adam's bias correction when use_bias_correction."""
        return learned["d"] * lr * bias_correction(hp["betas"], learned["k"], hp["use_bias_correction"])

    def _common_flags(self, hp: Dict[str, Any], **more: bool) -> int:
        """The flags both kernels have (weight decay as an L2 term or
        decoupled; active: lr > 0; maximize), and ``more``."""
        wd = hp["weight_decay"] != 0.0
        return self._flag_bits(l2=wd and not hp["decouple"], decoupled=wd and hp["decouple"], active=hp["lr"] > 0.0,
                               **more, maximize=hp["maximize"])

    def _adapted(self) -> Dict[str, float]:
        if not self._stepped():
            return {}
        learned = self._learned()
        # (the running numerator and k stay in opt.state: a running sum and a count, no step sizes)
        return {"d": learned["d"], "d_lr": learned["d"] * self._current_lr()}

    def _lr_estimate(self) -> Optional[float]:
        if not self._stepped():
            return None
        return self._step_size(self._learned(), self._current_lr(), self._hyper)
