"""Schedules: pure functions ``step -> value`` that can drive any
hyperparameter (lr, betas[0], momentum, weight decay) through
:class:`fastadapt.Scheduler`, or be called directly.

Every builder checks its arguments when the schedule is built (the message
names the argument: ``warmup_steps=-1 must be >= 0``) and returns a
:class:`Schedule`: a callable with a readable repr that pickles by its
arguments. ``step`` is the 0-based count of steps (or epochs) taken so far.
Past the end of a finite schedule the final value holds (torch's OneCycleLR
raises there instead, and its CosineAnnealingLR rises again).

    import fastadapt as fa
    sched = fa.schedules.cosine(base=1e-3, total_steps=10_000, warmup_steps=500)
    sched(0), sched(499), sched(10_000)      # 2e-06, 0.001, 0.0

Definitions are ALGORITHMS.md's; one-cycle and cyclic follow torch's
OneCycleLR and CyclicLR step for step.
"""

from __future__ import annotations

import bisect
import math
import operator
from typing import Any, Callable, Dict, List, Sequence, Tuple, Union

from ._checks import choice, flag, integer, real

__all__ = [
    "Schedule",
    "constant",
    "linear",
    "linear_warmup",
    "step_decay",
    "exponential",
    "cosine",
    "cosine_restarts",
    "one_cycle",
    "one_cycle_momentum",
    "cyclic",
    "piecewise_constant",
    "join",
]

ScheduleLike = Union["Schedule", Callable[[int], float]]


class Schedule:
    """A pure function of the step count with a readable repr.

    Built by the functions of this module; calling it with a step (an
    integer >= 0) returns a float. It pickles as "call builder(**args)
    again", so schedules travel to worker processes.
    """

    __slots__ = ("_fn", "_builder", "_args")

    def __init__(self, fn: Callable[[int], float], builder: str, args: Dict[str, Any]):
        self._fn = fn
        self._builder = builder
        self._args = args

    def __call__(self, step: int) -> float:
        return float(self._fn(_check_step(step)))

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self._args.items())
        return f"{self._builder}({shown})"

    def __reduce__(self) -> Tuple[Any, ...]:
        return (_rebuild, (self._builder, self._args))


def _rebuild(builder: str, args: Dict[str, Any]) -> Schedule:
    if builder not in __all__ or builder == "Schedule":
        raise ValueError(f"no schedule named {builder!r}")
    return globals()[builder](**args)


# ---- argument checks: messages name the argument and its value -------------

def _check_step(step: Any) -> int:
    if isinstance(step, bool):
        raise TypeError(f"step must be an integer >= 0, got {step!r}")
    try:
        k = operator.index(step)
    except TypeError:
        raise TypeError(f"step must be an integer >= 0, got {type(step).__name__} {step!r}") from None
    if k < 0:
        raise ValueError(f"step={k} must be >= 0")
    return k


def _positive(name: str, value: Any) -> float:
    return real(name, value, low=0.0, low_open=True)


def _schedule_arg(name: str, value: Any) -> ScheduleLike:
    if not callable(value):
        raise TypeError(f"{name}={value!r} must be a schedule (a callable step -> value)")
    return value


def _boundaries(name: str, value: Any) -> List[int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name}={value!r} must be a list of step counts")
    out = [integer(f"{name}[{i}]", b, 1) for i, b in enumerate(value)]
    for i in range(1, len(out)):
        if out[i] <= out[i - 1]:
            raise ValueError(f"{name}={list(value)!r} must be strictly increasing "
                             f"({name}[{i}]={out[i]} <= {name}[{i - 1}]={out[i - 1]})")
    return out


# ---- the schedules -----------------------------------------------------------

def constant(value: float) -> Schedule:
    """``value`` at every step.

    Example: ``constant(1e-3)(12345) == 1e-3``.
    """
    v = real("value", value)
    return Schedule(lambda k: v, "constant", {"value": value})


def linear(start: float, end: float, total_steps: int) -> Schedule:
    """Linear interpolation: ``start + (end - start) * min(k, T) / T``, then ``end``.

    Args:
        start: value at step 0.
        end: value from step ``total_steps`` on.
        total_steps: ``T``, the length of the ramp (>= 1).

    Example: ``linear(0.0, 1.0, 4)`` gives 0, 0.25, 0.5, 0.75, 1, 1, ...
    """
    a, b = real("start", start), real("end", end)
    t = integer("total_steps", total_steps, 1)
    return Schedule(lambda k: a + (b - a) * min(k, t) / t, "linear",
                    {"start": start, "end": end, "total_steps": total_steps})


def _warmup_then(target: ScheduleLike, w: int) -> Callable[[int], float]:
    """The seed's warmup: ``target(0) * (k + 1) / w`` for k < w, then
    ``target`` shifted by w (so step w-1 and step w both give target(0))."""
    if w == 0:
        return target
    peak = float(target(0))
    return lambda k: peak * (k + 1) / w if k < w else target(k - w)


def linear_warmup(target: Union[float, ScheduleLike], warmup_steps: int) -> Schedule:
    """Linear warmup to ``target``, then ``target`` (a value or a schedule).

    Rule (ALGORITHMS.md, the seed's warmup): ``base * (k + 1) / w`` for
    ``k < w`` where ``base = target(0)``, then ``target(k - w)``. The first
    step already gets ``base / w`` (never 0), and the ramp ends at ``base``
    at step ``w - 1``.

    Args:
        target: the value (or the schedule) to warm up to.
        warmup_steps: ``w`` >= 0 (0: no warmup).

    Example: ``linear_warmup(1e-3, 10)`` gives 1e-4, 2e-4, ..., 1e-3, 1e-3, ...
    """
    w = integer("warmup_steps", warmup_steps, 0)
    inner = _schedule_arg("target", target) if callable(target) else constant(real("target", target))
    return Schedule(_warmup_then(inner, w), "linear_warmup", {"target": target, "warmup_steps": warmup_steps})


def step_decay(base: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """Step decay (torch's StepLR): ``base * gamma ** (k // step_size)``.

    Example: ``step_decay(0.1, step_size=30, gamma=0.1)``: 0.1 for steps
    0-29, 0.01 for 30-59, ...
    """
    b = real("base", base)
    s = integer("step_size", step_size, 1)
    g = _positive("gamma", gamma)
    return Schedule(lambda k: b * g ** (k // s), "step_decay", {"base": base, "step_size": step_size, "gamma": gamma})


def exponential(base: float, gamma: float) -> Schedule:
    """Exponential decay (torch's ExponentialLR): ``base * gamma ** k``.

    Example: ``exponential(1e-2, gamma=0.99)(100) == 1e-2 * 0.99 ** 100``.
    """
    b = real("base", base)
    g = _positive("gamma", gamma)
    return Schedule(lambda k: b * g ** k, "exponential", {"base": base, "gamma": gamma})


def _cosine_value(base: float, end: float, t: int, period: int) -> float:
    return end + (base - end) * (1.0 + math.cos(math.pi * min(t, period) / period)) / 2.0


def cosine(base: float, total_steps: int, end: float = 0.0, warmup_steps: int = 0) -> Schedule:
    """Cosine annealing from ``base`` to ``end``, with an optional linear warmup.

    Rule: with ``w = warmup_steps`` and ``T = total_steps - w``: the
    warmup of :func:`linear_warmup` for ``k < w``, then
    ``end + (base - end) * (1 + cos(pi * min(j, T) / T)) / 2`` with
    ``j = k - w``; ``end`` from step ``total_steps`` on (torch's
    CosineAnnealingLR climbs back up past ``T_max``; for cycles use
    :func:`cosine_restarts`). ``total_steps`` counts the warmup (like
    Hugging Face's cosine-with-warmup, whose warmup starts at 0, not ``base / w``).

    Args:
        base: peak value (reached at step ``w - 1`` and again at ``w``).
        total_steps: length of warmup plus decay (> warmup_steps).
        end: final value (torch's ``eta_min``).
        warmup_steps: linear warmup steps (0: none).

    Example: ``cosine(1e-3, total_steps=10_000, warmup_steps=500)``.
    """
    b, e = real("base", base), real("end", end)
    total = integer("total_steps", total_steps, 1)
    w = integer("warmup_steps", warmup_steps, 0)
    if total <= w:
        raise ValueError(f"total_steps={total_steps!r} must be > warmup_steps={warmup_steps!r}")
    decay = total - w
    fn = _warmup_then(lambda j: _cosine_value(b, e, j, decay), w)
    return Schedule(fn, "cosine", {"base": base, "total_steps": total_steps, "end": end, "warmup_steps": warmup_steps})


def cosine_restarts(base: float, first_period: int, period_mult: int = 1, end: float = 0.0,
                    cycle_decay: float = 1.0, warmup_steps: int = 0) -> Schedule:
    """Cosine annealing with warm restarts (SGDR; torch's CosineAnnealingWarmRestarts).

    Rule: after the optional warmup, cycle ``i`` lasts ``T_i = T_0 * mult**i``
    steps; at position ``t`` in it the value is
    ``end + (base_i - end) * (1 + cos(pi * t / T_i)) / 2`` with
    ``base_i = base * cycle_decay**i``. Each restart jumps back to ``base_i``.

    Args:
        base: value at the start of the first cycle.
        first_period: ``T_0`` >= 1, steps in the first cycle.
        period_mult: integer >= 1 growth of the period (torch's ``T_mult``).
        end: floor of every cycle (``eta_min``).
        cycle_decay: multiplies the peak at each restart (1: no decay).
        warmup_steps: linear warmup to ``base`` before the first cycle.

    Example: ``cosine_restarts(0.1, first_period=10, period_mult=2)``
    restarts at steps 10, 30, 70, ...
    """
    b, e = real("base", base), real("end", end)
    t0 = integer("first_period", first_period, 1)
    mult = integer("period_mult", period_mult, 1)
    decay = _positive("cycle_decay", cycle_decay)
    w = integer("warmup_steps", warmup_steps, 0)

    def cycles(j: int) -> float:
        if mult == 1:
            i, t, period = j // t0, j % t0, t0
        else:  # periods grow geometrically: at most log_mult(j) iterations
            i, t, period = 0, j, t0
            while t >= period:
                t -= period
                period *= mult
                i += 1
        return _cosine_value(b * decay ** i, e, t, period)

    return Schedule(_warmup_then(cycles, w), "cosine_restarts",
                    {"base": base, "first_period": first_period, "period_mult": period_mult, "end": end,
                     "cycle_decay": cycle_decay, "warmup_steps": warmup_steps})


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


def one_cycle(max_value: float, total_steps: int, pct_start: float = 0.3, div_factor: float = 25.0,
              final_div_factor: float = 1e4, anneal: str = "cos", three_phase: bool = False) -> Schedule:
    """The 1cycle learning rate (Smith & Topin 2017; torch's OneCycleLR).

    Rule: from ``initial = max_value / div_factor`` up to ``max_value`` by
    step ``pct_start * total_steps - 1``, then down to
    ``initial / final_div_factor`` at step ``total_steps - 1`` (held after).
    ``three_phase=True`` goes back to ``initial`` by step
    ``2 * pct_start * total_steps - 2`` before the final descent.
    Pair it with :func:`one_cycle_momentum` (same ``total_steps``,
    ``pct_start``, ``anneal``, ``three_phase``) for the momentum/beta1 curve.

    Args:
        max_value: the peak learning rate.
        total_steps: steps in the cycle (>= 2).
        pct_start: fraction of the steps spent rising, in (0, 1).
        div_factor: ``initial = max_value / div_factor``.
        final_div_factor: ``final = initial / final_div_factor``.
        anneal: ``"cos"`` (default) or ``"linear"``.
        three_phase: add the symmetric descent to ``initial`` (fastai's old variant).

    Example::

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


def one_cycle_momentum(total_steps: int, pct_start: float = 0.3, base_momentum: float = 0.85,
                       max_momentum: float = 0.95, anneal: str = "cos", three_phase: bool = False) -> Schedule:
    """The momentum (or Adam's beta1) curve that goes with :func:`one_cycle`.

    Rule: inverse to the learning rate: ``max_momentum`` at step 0, down to
    ``base_momentum`` when the lr peaks, back up to ``max_momentum`` at the
    end (torch's OneCycleLR with ``cycle_momentum=True``). Use the same
    ``total_steps``, ``pct_start``, ``anneal`` and ``three_phase`` as the lr.

    Example: ``fa.Scheduler(opt, betas0=one_cycle_momentum(1000))`` drives Adam's beta1.
    """
    lo, hi = real("base_momentum", base_momentum), real("max_momentum", max_momentum)
    if lo > hi:
        raise ValueError(f"base_momentum={base_momentum!r} must be <= max_momentum={max_momentum!r}")
    ends = _one_cycle_phase_ends(total_steps, pct_start, anneal, three_phase)
    values = [hi, lo, hi, hi] if three_phase else [hi, lo, hi]
    return Schedule(_piecewise_anneal(ends, values, anneal), "one_cycle_momentum",
                    {"total_steps": total_steps, "pct_start": pct_start, "base_momentum": base_momentum,
                     "max_momentum": max_momentum, "anneal": anneal, "three_phase": three_phase})


_CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


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

    Example: ``cyclic(1e-4, 1e-2, step_size=2000)``: 1e-4 at step 0,
    1e-2 at 2000, 1e-4 at 4000, ...
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


def piecewise_constant(boundaries: Sequence[int], values: Sequence[float]) -> Schedule:
    """``values[i]`` for ``boundaries[i-1] <= k < boundaries[i]``.

    The new value starts *at* the boundary step (like torch's MultiStepLR;
    Keras's PiecewiseConstantDecay switches one step later).

    Args:
        boundaries: strictly increasing step counts >= 1.
        values: one more value than boundaries.

    Example: ``piecewise_constant([100, 200], [1e-2, 1e-3, 1e-4])``.
    """
    bounds = _boundaries("boundaries", boundaries)
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"values={values!r} must be a list of numbers")
    vals = [real(f"values[{i}]", v) for i, v in enumerate(values)]
    if len(vals) != len(bounds) + 1:
        raise ValueError(f"values has {len(vals)} entries; with {len(bounds)} boundaries it needs {len(bounds) + 1}")
    return Schedule(lambda k: vals[bisect.bisect_right(bounds, k)], "piecewise_constant",
                    {"boundaries": list(boundaries), "values": list(values)})


def join(schedules: Sequence[ScheduleLike], boundaries: Sequence[int]) -> Schedule:
    """Schedules in sequence (optax's join_schedules, torch's SequentialLR).

    Rule: ``schedules[i]`` runs for ``boundaries[i-1] <= k < boundaries[i]``
    and sees the step counted from its own start, ``k - boundaries[i-1]``.

    Args:
        schedules: callables ``step -> value``, one more than boundaries.
        boundaries: strictly increasing step counts >= 1 where the next
            schedule takes over.

    Example: a 100-step warmup from 0, then exponential decay::

        join([linear(0.0, 1e-3, 100), exponential(1e-3, 0.999)], boundaries=[100])
    """
    bounds = _boundaries("boundaries", boundaries)
    if isinstance(schedules, (str, bytes)) or not isinstance(schedules, Sequence):
        raise TypeError(f"schedules={schedules!r} must be a list of schedules")
    parts = [_schedule_arg(f"schedules[{i}]", s) for i, s in enumerate(schedules)]
    if len(parts) != len(bounds) + 1:
        raise ValueError(f"schedules has {len(parts)} entries; with {len(bounds)} boundaries it needs "
                         f"{len(bounds) + 1}")
    starts = [0] + bounds

    def fn(k: int) -> float:
        i = bisect.bisect_right(bounds, k)
        return parts[i](k - starts[i])

    return Schedule(fn, "join", {"schedules": list(schedules), "boundaries": list(boundaries)})
