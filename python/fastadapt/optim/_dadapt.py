"""Validators and the learned-scalar readout the two D-Adaptation classes
share (fa.DAdaptSGD, fa.DAdaptAdaGrad)."""

from __future__ import annotations

import math
from typing import Any, Dict, Optional

import numpy as np

from .. import _hyper as hv


def positive(name: str, value: Any) -> float:
    v = hv.as_float(name, value)
    if not v > 0:
        raise ValueError(f"Invalid {name}: {v} (must be > 0)")
    return v


def momentum(name: str, value: Any) -> float:
    v = hv.as_float(name, value)
    if not 0.0 <= v < 1.0:
        raise ValueError(f"Invalid {name}: {v} (must be in [0, 1))")
    return v


def growth_rate(name: str, value: Any) -> float:
    """> 0; float('inf') (the default: no limit) is allowed."""
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        if value > 0:
            return math.inf
        raise ValueError(f"Invalid {name}: {float(value)} (must be > 0, or float('inf') for no limit)")
    v = hv.as_float(name, value)
    if not v > 0:
        raise ValueError(f"Invalid {name}: {v} (must be > 0, or float('inf') for no limit)")
    return v


def learned(opt: Any) -> Optional[Dict[str, float]]:
    """The learned scalars after the last committed step (every key holds
    the same values), or None before one."""
    names = type(opt)._tensor_scalar_names
    first = opt._state.get(names[0]) if names else None
    for i, view in enumerate(first or ()):
        if view is not None:
            return {n: float(opt._state[n][i]) for n in names}
    return None
