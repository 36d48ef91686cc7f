"""Argument checks for schedules, controllers and the LR finder: each
returns the cleaned value or raises TypeError/ValueError whose message
names the argument and its value (``warmup_steps=-1 must be >= 0``)."""

from __future__ import annotations

import math
import numbers
from typing import Any, List, Tuple

import numpy as np

from ._interop import not_array
from ._tree import flatten_any


def real(name: str, value: Any, *, low: float = -math.inf, high: float = math.inf, low_open: bool = False,
         high_open: bool = False) -> float:
    """A finite real number in the given range (a bound at infinity is no bound)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}={value!r} must be a real number")
    try:
        v = float(value)
    except OverflowError:  # an int beyond float range (10**400)
        raise ValueError(f"{name} (an integer of {len(str(abs(value)))} digits) must be a finite float") from None
    if not math.isfinite(v):
        raise ValueError(f"{name}={value!r} must be finite")
    below = v < low or (low_open and v == low)
    above = v > high or (high_open and v == high)
    if below or above:
        if math.isinf(high):
            rule = f"{'>' if low_open else '>='} {low:g}"
        elif math.isinf(low):
            rule = f"{'<' if high_open else '<='} {high:g}"
        else:
            rule = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name}={value!r} must be {rule}")
    return v


def integer(name: str, value: Any, minimum: int) -> int:
    """An integer (not a bool, not a float) >= minimum."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}={value!r} must be an integer")
    if value < minimum:
        raise ValueError(f"{name}={value!r} must be >= {minimum}")
    return int(value)


def choice(name: str, value: Any, options: Tuple[str, ...]) -> str:
    # A str check first: np.array(["x"]) == "x" is truthy elementwise.
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name}={value!r} must be one of {', '.join(map(repr, options))}")
    return value


def monitor_mode(mode: Any, monitor: str) -> str:
    """``"min"`` or ``"max"`` for a monitored log key; ``"auto"`` is Keras's
    rule: accuracies (and AUC, F-measures) are maximized, the rest minimized."""
    mode = choice("mode", mode, ("auto", "min", "max"))
    if mode != "auto":
        return mode
    return "max" if ("acc" in monitor or "auc" in monitor or monitor.startswith("fmeasure")) else "min"


def flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}={value!r} must be True or False")
    return bool(value)


def array_leaves(params: Any, prefix: str = "") -> Tuple[List[str], list]:
    """Key paths and leaves of a parameter tree; TypeError naming the first
    leaf that is not a NumPy array (``{prefix}params['fc1.w'] must be ...``)."""
    paths, leaves = flatten_any(params)
    for path, leaf in zip(paths, leaves):
        if not isinstance(leaf, np.ndarray):
            raise TypeError(f"{prefix}params{f'[{path!r}]' if path else ''} must be a NumPy array, "
                            f"got {type(leaf).__name__}; {not_array(leaf, 'params', True)}")
    return paths, leaves
