"""What fa.Prodigy and fa.DAdaptAdam share: one set of learned scalars (d,
...) for the whole optimizer, which the C++ rule keeps per tensor (every
tensor holding the same values), the step's learning rate (the largest of all
keys; each key's must be that one or 0, as in the reference packages), and
the validators of their hyperparameters."""

from __future__ import annotations

import math
from typing import Any, Dict, Optional

from .. import _hyper as hv
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
