"""Cyclical values between two bounds (torch's CyclicLR)."""

from __future__ import annotations

from typing import Union

from .._checks import choice, integer, real
from .base import Schedule, _positive, register

__all__ = ["cyclic"]


_CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


@register
def cyclic(base: float, max_value: float, step_size: int, step_size_down: Union[int, None] = None,
           mode: str = "triangular", gamma: float = 1.0) -> Schedule:
    """Cyclical values (Smith 2017; torch's CyclicLR).

    Rule: a cycle is ``up = step_size`` steps rising from ``base`` to
    ``max_value``, then ``down = step_size_down`` (default ``up``) steps
    falling back. At position ``p = k mod (up + down)`` the fraction is
    ``p / up`` while ``p <= up``, else ``(up + down - p) / down``, and the
    value is ``base + (max_value - base) * fraction * scale`` with
    ``scale`` 1 (``triangular``), ``0.5 ** (k // (up + down))``
    (``triangular2``: the amplitude halves every cycle) or ``gamma ** k``
    (``exp_range``). ``max_value < base`` gives the inverse curve (momentum).

    Parameters
    ----------
    base
        the value at the start of every cycle (torch's ``base_lr``).
    max_value
        the value at the top of the first cycle (torch's ``max_lr``).
    step_size
        ``up``, steps rising in a cycle (>= 1).
    step_size_down
        ``down``, steps falling in a cycle (>= 1; None: ``step_size``).
    mode
        ``"triangular"``, ``"triangular2"`` or ``"exp_range"``.
    gamma
        the per-step factor of ``exp_range`` (> 0).

    Examples
    --------
    ``cyclic(1e-4, 1e-2, step_size=2000)``: 1e-4 at step 0, 1e-2 at 2000, 1e-4 at 4000, ...
    """
    lo, hi = real("base", base), real("max_value", max_value)
    up = integer("step_size", step_size, 1)
    down = up if step_size_down is None else integer("step_size_down", step_size_down, 1)
    choice("mode", mode, _CYCLIC_MODES)
    g = _positive("gamma", gamma)
    period = up + down

    def fn(k: int) -> float:
        p = k % period
        fraction = p / up if p <= up else (period - p) / down
        if mode == "triangular":
            scale = 1.0
        elif mode == "triangular2":
            scale = 0.5 ** (k // period)
        else:
            scale = g ** k
        return lo + (hi - lo) * fraction * scale

    return Schedule(fn, "cyclic", {"base": base, "max_value": max_value, "step_size": step_size,
                                   "step_size_down": step_size_down, "mode": mode, "gamma": gamma})
