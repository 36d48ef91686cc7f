"""The 1cycle policy: the learning rate and the momentum curve that goes
with it, phase for phase as torch's OneCycleLR."""

from __future__ import annotations

import math
from typing import Callable, List

from .._checks import choice, flag, integer, real
from .base import Schedule, _positive, register

__all__ = ["one_cycle", "one_cycle_momentum"]


_ANNEAL = ("cos", "linear")


def _anneal(kind: str, start: float, stop: float, pct: float) -> float:
    if kind == "cos":
        return stop + (start - stop) / 2.0 * (math.cos(math.pi * pct) + 1.0)
    return start + (stop - start) * pct


def _one_cycle_phases(total: int, pct_start: float, three_phase: bool) -> List[float]:
    """Last step of each phase, as torch's OneCycleLR places them."""
    up_end = pct_start * total - 1.0
    if not 0.0 < up_end:
        raise ValueError(f"pct_start={pct_start!r} with total_steps={total} leaves the rising phase empty; "
                         f"need pct_start * total_steps > 1")
    ends = [up_end, 2.0 * pct_start * total - 2.0, total - 1.0] if three_phase else [up_end, total - 1.0]
    if not all(a < b for a, b in zip(ends, ends[1:])):
        raise ValueError(f"pct_start={pct_start!r} with total_steps={total} leaves a phase empty; need "
                         f"pct_start < {'0.5' if three_phase else '1'} and more total_steps")
    return ends


def _piecewise_anneal(ends: List[float], values: List[float], kind: str) -> Callable[[int], float]:
    """Anneal from values[i] to values[i+1] over phase i; hold the last value."""

    def fn(k: int) -> float:
        start = 0.0
        for i, stop in enumerate(ends):
            if k <= stop or i == len(ends) - 1:
                pct = min((k - start) / (stop - start), 1.0)
                return _anneal(kind, values[i], values[i + 1], pct)
            start = stop
        raise AssertionError("unreachable")

    return fn


def _one_cycle_phase_ends(total_steps: int, pct_start: float, anneal: str, three_phase: bool) -> List[float]:
    """The arguments one_cycle and one_cycle_momentum share, checked; the phase ends."""
    total = integer("total_steps", total_steps, 2)
    pct = real("pct_start", pct_start)
    if not 0.0 < pct < 1.0:
        raise ValueError(f"pct_start={pct_start!r} must be in (0, 1)")
    choice("anneal", anneal, _ANNEAL)
    flag("three_phase", three_phase)
    return _one_cycle_phases(total, pct, three_phase)


@register
def one_cycle(max_value: float, total_steps: int, pct_start: float = 0.3, div_factor: float = 25.0,
              final_div_factor: float = 1e4, anneal: str = "cos", three_phase: bool = False) -> Schedule:
    """The 1cycle learning rate (Smith & Topin 2017; torch's OneCycleLR).

    Rule: from ``initial = max_value / div_factor`` up to ``max_value`` by
    step ``pct_start * total_steps - 1``, then down to
    ``initial / final_div_factor`` at step ``total_steps - 1`` (held after).
    ``three_phase=True`` goes back to ``initial`` by step
    ``2 * pct_start * total_steps - 2`` before the final descent.
    Pair it with [`one_cycle_momentum`][fastadapt.schedules.one_cycle_momentum] (same ``total_steps``,
    ``pct_start``, ``anneal``, ``three_phase``) for the momentum/beta1 curve.

    Parameters
    ----------
    max_value
        the peak learning rate.
    total_steps
        steps in the cycle (>= 2).
    pct_start
        fraction of the steps spent rising, in (0, 1).
    div_factor
        ``initial = max_value / div_factor``.
    final_div_factor
        ``final = initial / final_div_factor``.
    anneal
        ``"cos"`` (default) or ``"linear"``.
    three_phase
        add the symmetric descent to ``initial`` (fastai's old variant).

    Examples
    --------
        lr = fa.schedules.one_cycle(1e-2, total_steps=1000)
        b1 = fa.schedules.one_cycle_momentum(total_steps=1000)
        fa.Scheduler(opt, lr=lr, betas0=b1)
    """
    peak = real("max_value", max_value)
    div = _positive("div_factor", div_factor)
    final_div = _positive("final_div_factor", final_div_factor)
    ends = _one_cycle_phase_ends(total_steps, pct_start, anneal, three_phase)
    initial = peak / div
    values = [initial, peak, initial, initial / final_div] if three_phase else [initial, peak, initial / final_div]
    return Schedule(_piecewise_anneal(ends, values, anneal), "one_cycle",
                    {"max_value": max_value, "total_steps": total_steps, "pct_start": pct_start,
                     "div_factor": div_factor, "final_div_factor": final_div_factor, "anneal": anneal,
                     "three_phase": three_phase})


@register
def one_cycle_momentum(total_steps: int, pct_start: float = 0.3, base_momentum: float = 0.85,
                       max_momentum: float = 0.95, anneal: str = "cos", three_phase: bool = False) -> Schedule:
    """The momentum (or Adam's beta1) curve that goes with
    [`one_cycle`][fastadapt.schedules.one_cycle.one_cycle].

    Rule: inverse to the learning rate: ``max_momentum`` at step 0, down to
    ``base_momentum`` when the lr peaks, back up to ``max_momentum`` at the
    end (torch's OneCycleLR with ``cycle_momentum=True``). Use the same
    ``total_steps``, ``pct_start``, ``anneal`` and ``three_phase`` as the lr.

    Parameters
    ----------
    total_steps
        steps in the cycle (>= 2), as for the lr.
    pct_start
        fraction of the steps spent falling, in (0, 1), as for the lr.
    base_momentum
        the value when the lr peaks (<= ``max_momentum``).
    max_momentum
        the value at step 0 and at the end.
    anneal
        ``"cos"`` (default) or ``"linear"``.
    three_phase
        the three-phase variant, as for the lr.

    Examples
    --------
    ``fa.Scheduler(opt, betas0=one_cycle_momentum(1000))`` drives Adam's beta1.
    """
    lo, hi = real("base_momentum", base_momentum), real("max_momentum", max_momentum)
    if lo > hi:
        raise ValueError(f"base_momentum={base_momentum!r} must be <= max_momentum={max_momentum!r}")
    ends = _one_cycle_phase_ends(total_steps, pct_start, anneal, three_phase)
    values = [hi, lo, hi, hi] if three_phase else [hi, lo, hi]
    return Schedule(_piecewise_anneal(ends, values, anneal), "one_cycle_momentum",
                    {"total_steps": total_steps, "pct_start": pct_start, "base_momentum": base_momentum,
                     "max_momentum": max_momentum, "anneal": anneal, "three_phase": three_phase})
