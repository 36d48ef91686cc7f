"""The plainest schedules: a constant and a linear ramp."""

from __future__ import annotations

from .._checks import integer, real
from .base import Schedule, register

__all__ = ["constant", "linear"]


@register
def constant(value: float) -> Schedule:
    """``value`` at every step.

    Parameters
    ----------
    value
        the value (a finite number).

    Examples
    --------
    ``constant(1e-3)(12345) == 1e-3``.
    """
    v = real("value", value)
    return Schedule(lambda k: v, "constant", {"value": value})


@register
def linear(start: float, end: float, total_steps: int) -> Schedule:
    """Linear interpolation: ``start + (end - start) * min(k, T) / T``, then ``end``.

    Parameters
    ----------
    start
        value at step 0.
    end
        value from step ``total_steps`` on.
    total_steps
        ``T``, the length of the ramp (>= 1).

    Examples
    --------
    ``linear(0.0, 1.0, 4)`` gives 0, 0.25, 0.5, 0.75, 1, 1, ...
    """
    a, b = real("start", start), real("end", end)
    t = integer("total_steps", total_steps, 1)
    return Schedule(lambda k: a + (b - a) * min(k, t) / t, "linear",
                    {"start": start, "end": end, "total_steps": total_steps})
