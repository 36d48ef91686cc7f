"""What every schedule is built on: [`Schedule`][fastadapt.schedules.Schedule] (a pure function of
the step with a readable repr that pickles by its arguments), the registry
that unpickling rebuilds from, and the argument checks the builders share.

A new schedule family is a module beside this one whose builders return a
[`Schedule`][fastadapt.schedules.Schedule] and carry ``@register``; the package's ``__init__``
imports it and lists its names.
"""

from __future__ import annotations

import operator
from typing import Any, Callable, Dict, List, Sequence, Tuple, TypeVar, Union

from .._checks import integer, real

__all__ = ["Schedule", "ScheduleLike", "register"]

ScheduleLike = Union["Schedule", Callable[[int], float]]


class Schedule:
    """A pure function of the step count with a readable repr.

    Built by the functions of ``fastadapt.schedules``; calling it with a
    step (an integer >= 0) returns a float. It pickles as "call
    builder(**args) again", so schedules travel to worker processes.
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


_BUILDERS: Dict[str, Callable[..., Schedule]] = {}
_Builder = TypeVar("_Builder", bound=Callable[..., Schedule])


def register(fn: _Builder) -> _Builder:
    """Mark ``fn`` as a public schedule builder: a pickled schedule it built
    is rebuilt by calling it again, by name."""
    _BUILDERS[fn.__name__] = fn
    return fn


def _rebuild(builder: str, args: Dict[str, Any]) -> Schedule:
    fn = _BUILDERS.get(builder)
    if fn is None:
        raise ValueError(f"no schedule named {builder!r}")
    return fn(**args)


# Pickles name the function they call. Before the schedules became a package
# it was fastadapt.schedules._rebuild; it is still found there (the package
# re-exports it), and naming it so keeps pickles written now loadable by
# older versions and by later layouts alike.
_rebuild.__module__ = "fastadapt.schedules"


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
