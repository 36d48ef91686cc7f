"""Search spaces: bounded domains sampled from a seeded generator, moved by
PBT's explore step and projected back into their bounds.

A space is a plain dict from hyperparameter name to a domain or a constant::

    space = {"lr": fa.tune.loguniform(1e-5, 1e-1),
             "batch_size": fa.tune.choice([16, 32, 64]),
             "momentum": fa.tune.uniform(0.0, 0.99),
             "hidden": 128}                          # a constant: passed through unchanged
    rng = np.random.default_rng(0)
    config = fa.tune.sample_config(space, rng)      # {"lr": ..., "batch_size": ..., ...}

Domains sample in the order of the dict's keys, so one seed gives one
sequence of configs on every machine.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .. import _checks

__all__ = ["Domain", "Float", "Integer", "Categorical", "uniform", "loguniform", "randint", "choice",
           "sample_config", "check_space", "check_config", "check_boundary", "domains", "BOUNDARIES"]

# What happens to a value pushed past a bound: "clip" stops at the bound;
# "reflect" bounces back by the overshoot (in log space for log domains), so
# repeated pushes against a bound keep exploring instead of piling up on it.
BOUNDARIES = ("clip", "reflect")


class Domain:
    """A hyperparameter's prior and bounds. Subclasses: :class:`Float`,
    :class:`Integer`, :class:`Categorical`."""

    def sample(self, rng: np.random.Generator) -> Any:
        """One value drawn from the prior with ``rng``."""
        raise NotImplementedError

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is inside the domain."""
        raise NotImplementedError

    def project(self, value: Any, boundary: str = "clip") -> Any:
        """``value`` moved into the domain by ``boundary`` ("clip" or "reflect")."""
        raise NotImplementedError

    def perturb(self, value: Any, factor: float, rng: np.random.Generator, boundary: str = "clip") -> Any:
        """PBT's explore move from ``value``: continuous values are multiplied by
        ``factor`` then projected; categorical ones move to a neighbour."""
        raise NotImplementedError


def check_boundary(value: str) -> str:
    if value not in BOUNDARIES:
        raise ValueError(f"boundary must be 'clip' or 'reflect', got {value!r}")
    return value


def _reflect(x: float, low: float, high: float) -> float:
    """Mirror x at the bound it passed; clip what is still outside (an overshoot wider than the interval)."""
    if x > high:
        x = 2 * high - x
    elif x < low:
        x = 2 * low - x
    return min(max(x, low), high)


class Float(Domain):
    """Real values in ``[low, high]``, uniform in the value or (``log=True``)
    in its logarithm. Build with :func:`uniform` or :func:`loguniform`."""

    def __init__(self, low: float, high: float, *, log: bool = False):
        low = _checks.real("low", low)
        high = _checks.real("high", high)
        if not low < high:
            raise ValueError(f"low must be < high, got low={low!r}, high={high!r}")
        if log and low <= 0:
            raise ValueError(f"loguniform needs low > 0 (a logarithm is taken), got low={low!r}; "
                             f"use uniform(...) for ranges that include 0")
        self.low, self.high, self.log = low, high, bool(log)

    def _to_axis(self, x: float) -> float:
        return math.log(x) if self.log else x

    def _from_axis(self, y: float) -> float:
        return math.exp(y) if self.log else y

    def sample(self, rng: np.random.Generator) -> float:
        lo, hi = self._to_axis(self.low), self._to_axis(self.high)
        return self.project(self._from_axis(float(rng.uniform(lo, hi))))

    def contains(self, value: Any) -> bool:
        return (isinstance(value, numbers.Real) and not isinstance(value, bool)
                and self.low <= float(value) <= self.high)

    def project(self, value: Any, boundary: str = "clip") -> float:
        v = float(value)
        if math.isnan(v):
            raise ValueError(f"cannot project NaN into {self!r}")
        if check_boundary(boundary) == "reflect" and not (self.log and v <= 0):
            lo, hi = self._to_axis(self.low), self._to_axis(self.high)
            v = self._from_axis(_reflect(self._to_axis(v), lo, hi))
        # exp(log(x)) can land one ulp outside; the final clip makes "within bounds" exact.
        return min(max(v, self.low), self.high)

    def perturb(self, value: Any, factor: float, rng: np.random.Generator, boundary: str = "clip") -> float:
        return self.project(float(value) * factor, boundary)

    def __repr__(self) -> str:
        return f"{'loguniform' if self.log else 'uniform'}({self.low!r}, {self.high!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Float) and (self.low, self.high, self.log) == (other.low, other.high, other.log)

    def __hash__(self) -> int:
        return hash((Float, self.low, self.high, self.log))


class Integer(Domain):
    """Integers ``low <= v < high`` (upper bound excluded, as NumPy's and Ray
    Tune's ``randint``), uniform. Build with :func:`randint`."""

    def __init__(self, low: int, high: int):
        low = _checks.integer("low", low, -(2 ** 62))
        high = _checks.integer("high", high, -(2 ** 62))
        if not low < high:
            raise ValueError(f"randint needs low < high (high is excluded), got low={low!r}, high={high!r}")
        self.low, self.high = low, high

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.low, self.high))

    def contains(self, value: Any) -> bool:
        return (isinstance(value, numbers.Integral) and not isinstance(value, bool)
                and self.low <= int(value) < self.high)

    def project(self, value: Any, boundary: str = "clip") -> int:
        v = float(value)
        if math.isnan(v):
            raise ValueError(f"cannot project NaN into {self!r}")
        top = self.high - 1
        if check_boundary(boundary) == "reflect":
            v = _reflect(v, self.low, top)
        return int(min(max(round(v), self.low), top))

    def perturb(self, value: Any, factor: float, rng: np.random.Generator, boundary: str = "clip") -> int:
        v = int(value)
        moved = round(v * factor)
        if moved == v and factor != 1:
            # Small integers (and 0) would never move under a multiplicative step; step by one instead.
            moved = v + (1 if factor > 1 else -1)
        return self.project(moved, boundary)

    def __repr__(self) -> str:
        return f"randint({self.low!r}, {self.high!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Integer) and (self.low, self.high) == (other.low, other.high)

    def __hash__(self) -> int:
        return hash((Integer, self.low, self.high))


class Categorical(Domain):
    """One of a fixed list of values, uniform. The list's order defines the
    neighbours that PBT's explore moves between (so list ordered values, e.g.
    batch sizes, in order). Build with :func:`choice`."""

    def __init__(self, values: Sequence[Any]):
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise TypeError(f"choice needs a list of values such as [16, 32, 64], got {values!r}")
        if len(values) == 0:
            raise ValueError("choice needs at least one value, got an empty list")
        self.values: Tuple[Any, ...] = tuple(values)

    def sample(self, rng: np.random.Generator) -> Any:
        return self.values[int(rng.integers(len(self.values)))]

    def index(self, value: Any) -> int:
        for i, v in enumerate(self.values):
            if v == value and type(v) is type(value):
                return i
        for i, v in enumerate(self.values):
            if v == value:
                return i
        raise ValueError(f"{value!r} is not one of {list(self.values)!r}")

    def contains(self, value: Any) -> bool:
        try:
            self.index(value)
        except ValueError:
            return False
        return True

    def project(self, value: Any, boundary: str = "clip") -> Any:
        check_boundary(boundary)
        return self.values[self.index(value)]  # a categorical value is inside or is an error

    def perturb(self, value: Any, factor: float, rng: np.random.Generator, boundary: str = "clip") -> Any:
        i = self.index(value)
        neighbours = [j for j in (i - 1, i + 1) if 0 <= j < len(self.values)]
        if not neighbours:
            return self.values[i]
        return self.values[neighbours[int(rng.integers(len(neighbours)))]]

    def __repr__(self) -> str:
        return f"choice({list(self.values)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Categorical) and self.values == other.values

    def __hash__(self) -> int:
        return hash((Categorical, self.values))


def uniform(low: float, high: float) -> Float:
    """Real values uniform in ``[low, high]``."""
    return Float(low, high)


def loguniform(low: float, high: float) -> Float:
    """Real values in ``[low, high]`` (``low > 0``) whose logarithm is uniform:
    each decade is equally likely (learning rates, weight decay)."""
    return Float(low, high, log=True)


def randint(low: int, high: int) -> Integer:
    """Integers ``low <= v < high``, uniform."""
    return Integer(low, high)


def choice(values: Sequence[Any]) -> Categorical:
    """One of ``values``, uniform; PBT moves to a neighbour in the list's order."""
    return Categorical(values)


def check_space(space: Any) -> Dict[str, Any]:
    """The space as a dict (a copy), or TypeError/ValueError saying what to fix."""
    if not isinstance(space, Mapping):
        raise TypeError(f"space must be a dict of name -> domain (fa.tune.uniform, loguniform, randint, "
                        f"choice) or constant, got {type(space).__name__}")
    out: Dict[str, Any] = {}
    for name, value in space.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"space keys must be non-empty strings (hyperparameter names), got {name!r}")
        out[name] = value
    if not any(isinstance(v, Domain) for v in out.values()):
        raise ValueError("space has no domain to search; give at least one hyperparameter as "
                         "fa.tune.uniform/loguniform/randint/choice")
    return out


def domains(space: Mapping[str, Any]) -> Iterator[Tuple[str, Domain]]:
    """The (name, domain) pairs of a space, in its order (constants left out)."""
    for name, value in space.items():
        if isinstance(value, Domain):
            yield name, value


def sample_config(space: Mapping[str, Any], rng: np.random.Generator,
                  given: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """A config: ``given`` values where present (checked against their
    domains), every other domain sampled in key order, constants copied.

    Every domain draws from ``rng`` even when ``given`` fixes it, so the
    configs sampled after a partial initial config do not depend on which
    keys it fixed.
    """
    given = dict(given or {})
    config: Dict[str, Any] = {}
    for name, value in space.items():
        drawn = value.sample(rng) if isinstance(value, Domain) else value
        config[name] = given.pop(name) if name in given else drawn
    if given:
        raise ValueError(f"config has keys {sorted(given)} that the space does not define "
                         f"(space keys: {', '.join(space)})")
    check_config(space, config, "config")
    return config


def check_config(space: Mapping[str, Any], config: Mapping[str, Any], where: str) -> None:
    """ValueError unless each value of ``config`` is inside its domain."""
    for name, domain in domains(space):
        if name in config and not domain.contains(config[name]):
            raise ValueError(f"{where}[{name!r}] = {config[name]!r} is outside its domain {domain!r}")


def space_repr(space: Mapping[str, Any]) -> List[Tuple[str, str]]:
    """A comparable description of a space (for resume checks)."""
    return [(name, repr(value)) for name, value in space.items()]
