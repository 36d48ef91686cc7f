"""Argument checks shared by the tuners: each raises TypeError/ValueError that
names the argument, what came and what to pass instead."""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional

MODES = ("min", "max")


def integer(name: str, value: Any, minimum: int) -> int:
    """An int (not a bool, not a float that happens to be whole) >= minimum."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def real(name: str, value: Any, *, low: Optional[float] = None, high: Optional[float] = None,
         low_open: bool = False, high_open: bool = False) -> float:
    """A finite real number inside the stated interval."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v!r}")
    lo_ok = low is None or (v > low if low_open else v >= low)
    hi_ok = high is None or (v < high if high_open else v <= high)
    if not (lo_ok and hi_ok):
        interval = f"{'(' if low_open else '['}{'-inf' if low is None else low}, " \
                   f"{'inf' if high is None else high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {v!r}")
    return v


def mode(value: Any) -> str:
    if value not in MODES:
        raise ValueError(f"mode must be 'min' (lower metric is better) or 'max', got {value!r}")
    return str(value)


def seed(value: Any) -> int:
    """A seed for np.random.default_rng; None draws fresh entropy (then recorded in the result)."""
    if value is None:
        import numpy as np

        return int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]
    return integer("seed", value, 0)


def metric_name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"metric must be a non-empty string (the key read when train() returns a dict), "
                        f"got {value!r}")
    return value
