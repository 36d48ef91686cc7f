"""Validated hyperparameters: descriptors that check a value on assignment
and store it on the optimizer, so ``opt.lr = 3e-4`` (or a schedule) just
assigns. Validators raise TypeError/ValueError that name the argument."""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Optional, Tuple

import numpy as np


def as_float(name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    try:
        v = float(value)
    except OverflowError:  # an int beyond float range (10**400)
        raise ValueError(f"Invalid {name}: an integer of {len(str(abs(value)))} digits is too large "
                         f"(must be a finite float)") from None
    if not math.isfinite(v):
        raise ValueError(f"Invalid {name}: {v} (must be finite)")
    return v


def nonnegative(name: str, value: Any) -> float:
    v = as_float(name, value)
    if v < 0:
        raise ValueError(f"Invalid {name}: {v} (must be >= 0)")
    return v


def unit_closed(name: str, value: Any) -> float:
    v = as_float(name, value)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"Invalid {name}: {v} (must be in [0, 1])")
    return v


def flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def betas(name: str, value: Any) -> Tuple[float, float]:
    # Ordered pairs only: a set or dict has no defined order, so {0.999, 0.9}
    # could silently swap beta1 and beta2.
    ordered = isinstance(value, (tuple, list)) or (isinstance(value, np.ndarray) and value.ndim == 1)
    if not ordered or len(value) != 2:
        raise TypeError(f"{name} must be a pair (beta1, beta2) as a tuple or list, got "
                        f"{type(value).__name__} {value!r}")
    out = []
    for i, b in enumerate(value):
        v = as_float(f"{name}[{i}]", b)
        if not 0.0 <= v < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {v} (must be in [0, 1))")
        out.append(v)
    return (out[0], out[1])


def max_grad_norm(name: str, value: Any) -> Optional[float]:
    if value is None:
        return None
    v = as_float(name, value)
    if v <= 0:
        raise ValueError(f"Invalid {name}: {v} (must be > 0, or None to disable clipping)")
    return v


NONFINITE_POLICIES = ("propagate", "zero", "skip", "raise")


def nonfinite_policy(name: str, value: Any) -> str:
    # A str check first: np.array(["skip"]) == "skip" is truthy elementwise.
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {', '.join(map(repr, NONFINITE_POLICIES))}; got "
                        f"{type(value).__name__} {value!r}")
    if value not in NONFINITE_POLICIES:
        raise ValueError(f"Invalid {name}: {value!r} (expected one of {', '.join(map(repr, NONFINITE_POLICIES))})")
    return str(value)


class Hyper:
    """A hyperparameter attribute: validated on every assignment, then the
    owner's cross-checks run (e.g. nesterov needs momentum)."""

    def __init__(self, validate: Callable[[str, Any], Any], doc: str = ""):
        self.validate = validate
        self.__doc__ = doc
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            return self
        return obj._hyper[self.name]

    def __set__(self, obj: Any, value: Any) -> None:
        v = self.validate(self.name, value)
        candidate = dict(obj._hyper)
        candidate[self.name] = v
        obj._check_consistency(candidate, where="")
        obj._hyper[self.name] = v
