"""Search spaces: bounded domains sampled from a seeded generator, moved by
PBT's explore step and projected back into their bounds.

A space is a plain dict from hyperparameter name to a domain or a constant:

    space = {"lr": fa.tune.loguniform(1e-5, 1e-1),
             "batch_size": fa.tune.choice([16, 32, 64]),
             "momentum": fa.tune.uniform(0.0, 0.99),
             "hidden": 128}                          # a constant: passed through unchanged
    rng = np.random.default_rng(0)
    config = fa.tune.sample_config(space, rng)      # {"lr": ..., "batch_size": ..., ...}

A nested dict is a nested config, as in Ray Tune: each of its domains is
sampled and the trainable receives plain values at the same place:

    space = {"optim": {"lr": fa.tune.loguniform(1e-4, 1e-1), "momentum": 0.9}, "layers": fa.tune.randint(1, 4)}
    # config == {"optim": {"lr": 0.0031..., "momentum": 0.9}, "layers": 2}

A nested hyperparameter is named by its path joined with "/"
(``"optim/lr"``: PBT's ``mutations``, the progress lines, ``result.space``).
Only dicts nest: a domain inside a list or tuple is refused, so a trainable
never receives a Domain object.

A conditional hyperparameter lives in a branch of a choice (hyperopt's
tree-structured space): a ``choice`` whose values are dicts holding domains
picks a branch, then samples that branch's domains; the trainable receives
a plain dict:

    space = {"optim": fa.tune.choice([{"name": "sgd", "momentum": fa.tune.uniform(0.0, 0.99)},
                                      {"name": "adam", "beta2": fa.tune.uniform(0.9, 0.999)}])}
    # config == {"optim": {"name": "adam", "beta2": 0.95...}}

A value belongs to the first branch it fits (same keys, its constants equal,
its domains containing the values), so give branches a distinguishing
constant such as ``"name"``. A branch's hyperparameters are named by their
path below the choice (``"optim/momentum"``) in ``branch_domains``.

Domains sample in the order of the dict's keys (depth first), so one seed
gives one sequence of configs on every machine. A domain is refused when it
could sample a value that is not finite (``uniform(-1e308, 1e308)``: its
width overflows to inf).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .. import _checks

__all__ = ["Domain", "Float", "Integer", "Categorical", "uniform", "loguniform", "randint", "choice",
           "sample_config", "check_space", "check_config", "check_boundary", "domains", "domain_paths",
           "branch_domains", "plain_values",
           "leaf_paths", "get_path", "set_path", "lookup", "copy_config", "BOUNDARIES", "PATH_SEPARATOR"]

# Joins the keys of a nested hyperparameter into its name ("optim/lr").
PATH_SEPARATOR = "/"

# What happens to a value pushed past a bound: "clip" stops at the bound;
# "reflect" bounces back by the overshoot (in log space for log domains), so
# repeated pushes against a bound keep exploring instead of piling up on it.
BOUNDARIES = ("clip", "reflect")


class Domain:
    """A hyperparameter's prior and bounds. Subclasses: [`Float`][fastadapt.tune.Float],
    [`Integer`][fastadapt.tune.Integer], [`Categorical`][fastadapt.tune.Categorical]."""

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
    # high - (x - high) rather than 2 * high - x: 2 * high overflows near the float limits, and inf - inf is
    # NaN, which no clip can bring back. An overshoot that still overflows is clipped.
    if x > high:
        mirrored = high - (x - high)
        x = mirrored if math.isfinite(mirrored) else high
    elif x < low:
        mirrored = low + (low - x)
        x = mirrored if math.isfinite(mirrored) else low
    return min(max(x, low), high)


class Float(Domain):
    """Real values in ``[low, high]``, uniform in the value or (``log=True``)
    in its logarithm. Build with [`uniform`][fastadapt.tune.uniform] or
    [`loguniform`][fastadapt.tune.loguniform]."""

    def __init__(self, low: float, high: float, *, log: bool = False):
        low = _checks.real("low", low)
        high = _checks.real("high", high)
        if not low < high:
            raise ValueError(f"low must be < high, got low={low!r}, high={high!r}")
        if log and low <= 0:
            raise ValueError(f"loguniform needs low > 0 (a logarithm is taken), got low={low!r}; "
                             f"use uniform(...) for ranges that include 0")
        self.low, self.high, self.log = low, high, bool(log)
        # rng.uniform(lo, hi) computes lo + (hi - lo) * u: a width that overflows to inf samples inf or NaN.
        if not math.isfinite(self._to_axis(high) - self._to_axis(low)):
            raise ValueError(f"{'loguniform' if log else 'uniform'}(low={low!r}, high={high!r}): high - low "
                             f"overflows to inf, so sampling would give non-finite values; narrow the range "
                             f"(for example rescale the hyperparameter in the trainable)")

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
    Tune's ``randint``), uniform. Build with [`randint`][fastadapt.tune.randint]."""

    def __init__(self, low: int, high: int):
        low = _checks.integer("low", low, -(2 ** 62))
        high = _checks.integer("high", high, -(2 ** 62))
        if not low < high:
            raise ValueError(f"randint needs low < high (high is excluded), got low={low!r}, high={high!r}")
        if high > 2 ** 62:
            # rng.integers draws int64; past it sampling fails (or perturbing overflows) mid-run.
            raise ValueError(f"randint(low={low!r}, high={high!r}): high must be <= 2**62 so that samples and "
                             f"PBT's perturbations stay int64")
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
    batch sizes, in order). A value that is a dict is a branch of a
    conditional space: picking it samples its domains. Build with
    [`choice`][fastadapt.tune.choice]."""

    def __init__(self, values: Sequence[Any]):
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise TypeError(f"choice needs a list of values such as [16, 32, 64], got {values!r}")
        if len(values) == 0:
            raise ValueError("choice needs at least one value, got an empty list")
        for i, value in enumerate(values):
            # A NaN is never found again (NaN != NaN), and a non-finite number sampled as a hyperparameter is
            # what the tuner refuses from every other domain.
            if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) \
                    and not math.isfinite(float(value)):
                raise ValueError(f"choice values must be finite numbers, got {value!r} at index {i}; for "
                                 f"'no limit' use None or a string")
            if isinstance(value, Mapping):
                # A branch of a conditional space: checked as a (sub)space, its dicts copied.
                values = list(values)
                values[i] = _check_subspace(value, f"choice value {i}")
            elif _contains_domain(value):
                raise TypeError(f"choice values must be plain values or dicts (branches whose domains are sampled "
                                f"when the branch is picked), got a domain in value {i} ({value!r:.60}); a "
                                f"trainable would receive it unsampled")
        self.values: Tuple[Any, ...] = tuple(values)

    @property
    def branched(self) -> bool:
        """Whether a value is a dict holding domains (a conditional space's branch)."""
        return any(isinstance(v, Mapping) and _contains_domain(v) for v in self.values)

    def sample(self, rng: np.random.Generator) -> Any:
        return self.branch_value(int(rng.integers(len(self.values))), rng)

    def branch_value(self, i: int, rng: np.random.Generator) -> Any:
        """Value ``i``: as given, or for a dict a new config with its domains sampled from ``rng``.

        Parameters
        ----------
        i
            the value's index.
        rng
            draws the branch's domains (none for a plain value).

        Returns
        -------
        Any
            the value a trainable receives.
        """
        value = self.values[i]
        if isinstance(value, Mapping):
            return _sample(value, rng, {}, f"choice value {i}")
        return value

    def index(self, value: Any) -> int:
        """The position of ``value`` in ``values``: an equal value of the same
        type first (so ``True`` does not match ``1``), else any equal value.

        Parameters
        ----------
        value
            one of the choices.

        Returns
        -------
        int
            its 0-based index.

        Raises
        ------
        ValueError
            when ``value`` is none of the choices.
        """
        for i, v in enumerate(self.values):
            if isinstance(v, Mapping):
                if _fits(v, value):
                    return i
            elif v == value and type(v) is type(value):
                return i
        for i, v in enumerate(self.values):
            if not isinstance(v, Mapping) and v == value:
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
        i = self.index(value)  # a categorical value is inside or is an error
        if isinstance(self.values[i], Mapping):
            return copy_config(value)  # (a branch's values are inside its domains, or index() failed)
        return self.values[i]

    def perturb(self, value: Any, factor: float, rng: np.random.Generator, boundary: str = "clip") -> Any:
        i = self.index(value)
        neighbours = [j for j in (i - 1, i + 1) if 0 <= j < len(self.values)]
        if not neighbours:
            return self.project(value)
        # Moving onto another branch samples that branch's domains (it has no values to keep).
        return self.branch_value(neighbours[int(rng.integers(len(neighbours)))], rng)

    def __repr__(self) -> str:
        return f"choice({list(self.values)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Categorical) and self.values == other.values

    def __hash__(self) -> int:
        # (values may be dicts, which do not hash; equal choices have equally many values)
        return hash((Categorical, len(self.values)))


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
    """One of ``values``, uniform; PBT moves to a neighbour in the list's order.

    A value that is a dict is a branch of a conditional space: when it is
    picked, its domains are sampled and the trainable receives a plain dict
    (hyperopt's tree-structured space).

    Examples
    --------
    >>> space = {"optim": fa.tune.choice([{"name": "sgd", "momentum": fa.tune.uniform(0.0, 0.99)},
    ...                                   {"name": "adam", "beta2": fa.tune.uniform(0.9, 0.999)}])}
    >>> sorted(fa.tune.sample_config(space, np.random.default_rng(0))["optim"])
    ['beta2', 'name']
    """
    return Categorical(values)


def _contains_domain(value: Any) -> bool:
    if isinstance(value, Domain):
        return True
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_contains_domain(v) for v in value)
    if isinstance(value, Mapping):
        return any(_contains_domain(v) for v in value.values())
    return False


def _fits(branch: Mapping[str, Any], value: Any, partial: bool = False) -> bool:
    """Whether ``value`` is a config of the (sub)space ``branch``: the same keys
    (``partial``: some of them), nested dicts where it nests them, constants
    equal and every domain containing its value."""
    if not isinstance(value, Mapping) or not (set(value) <= set(branch) if partial else set(value) == set(branch)):
        return False
    for name, v in value.items():
        spec = branch[name]
        if isinstance(spec, Mapping):
            if not _fits(spec, v, partial):
                return False
        elif isinstance(spec, Domain):
            if not spec.contains(v):
                return False
        elif not spec == v:
            return False
    return True


def _check_subspace(space: Mapping[Any, Any], where: str) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for name, value in space.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"space keys must be non-empty strings (hyperparameter names), got {name!r} in {where}")
        if isinstance(value, Mapping):
            out[name] = _check_subspace(value, f"{where}[{name!r}]")
        elif isinstance(value, Domain):
            out[name] = value
        else:
            if _contains_domain(value):
                raise ValueError(f"{where}[{name!r}] holds a domain inside a {type(value).__name__}; only dicts "
                                 f"nest in a space (a dict of domains is sampled into a dict of values), so "
                                 f"write it as a dict, or give the whole value as fa.tune.choice([...])")
            out[name] = value
    return out


def check_space(space: Any) -> Dict[str, Any]:
    """The space as a dict (a copy, nested dicts copied too), or
    TypeError/ValueError saying what to fix."""
    if not isinstance(space, Mapping):
        raise TypeError(f"space must be a dict of name -> domain (fa.tune.uniform, loguniform, randint, "
                        f"choice) or constant, got {type(space).__name__}")
    out = _check_subspace(space, "space")
    names: Dict[str, Tuple[str, ...]] = {}
    for path, _ in leaf_paths(out):
        name = PATH_SEPARATOR.join(path)
        if name in names:
            raise ValueError(f"space has two hyperparameters named {name!r} (a key with {PATH_SEPARATOR!r} in it "
                             f"and a nested path); rename one")
        names[name] = path
    if not any(True for _ in domain_paths(out)):
        raise ValueError("space has no domain to search; give at least one hyperparameter as "
                         "fa.tune.uniform/loguniform/randint/choice")
    return out


def leaf_paths(space: Mapping[str, Any], prefix: Tuple[str, ...] = ()) -> Iterator[Tuple[Tuple[str, ...], Any]]:
    """``(path, domain or constant)`` of every leaf of a (nested) space, depth first in key order."""
    for name, value in space.items():
        if isinstance(value, Mapping):
            yield from leaf_paths(value, prefix + (name,))
        else:
            yield prefix + (name,), value


def domain_paths(space: Mapping[str, Any]) -> Iterator[Tuple[Tuple[str, ...], Domain]]:
    """``(path, domain)`` of every domain of a (nested) space, in sampling order."""
    for path, value in leaf_paths(space):
        if isinstance(value, Domain):
            yield path, value


def domains(space: Mapping[str, Any]) -> Iterator[Tuple[str, Domain]]:
    """The (name, domain) pairs of a space, in its order (constants left out);
    a nested domain's name is its path joined with "/"."""
    for path, domain in domain_paths(space):
        yield PATH_SEPARATOR.join(path), domain


def branch_domains(space: Mapping[str, Any], prefix: Tuple[str, ...] = ()
                   ) -> Iterator[Tuple[Tuple[str, ...], Domain, Tuple[Tuple[Tuple[str, ...], int], ...]]]:
    """Every domain of a space including those inside the branches of
    conditional choices: ``(path, domain, conditions)``, the path as in a
    config (a branch's keys below its choice's path), the conditions the
    ``(choice path, branch index)`` pairs that must hold for it to be
    active (empty for an unconditional domain). Depth first in key order."""
    for path, domain in domain_paths(space):
        yield prefix + path, domain, ()
        if isinstance(domain, Categorical):
            for i, value in enumerate(domain.values):
                if isinstance(value, Mapping):
                    for sub_path, sub_domain, conditions in branch_domains(value, prefix + path):
                        yield sub_path, sub_domain, ((prefix + path, i),) + conditions


def plain_values(space: Mapping[str, Any], where: str = "space") -> Iterator[Tuple[str, Any]]:
    """``(where, value)`` of every value a config can get that no domain
    makes: constants and plain choice values, inside branches too."""
    for path, value in leaf_paths(space):
        here = _where(where, path)
        if isinstance(value, Categorical):
            for i, v in enumerate(value.values):
                if isinstance(v, Mapping):
                    yield from plain_values(v, f"{here} choice {i}")
                else:
                    yield f"{here} choice {i}", v
        elif not isinstance(value, Domain):
            yield here, value


def get_path(config: Mapping[str, Any], path: Sequence[str], default: Any = None) -> Any:
    """The value at ``path`` in a nested config (``default`` when absent)."""
    value: Any = config
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return default
        value = value[key]
    return value


def set_path(config: Dict[str, Any], path: Sequence[str], value: Any) -> None:
    """Set the value at ``path`` in a nested config whose dicts the caller owns."""
    for key in path[:-1]:
        config = config[key]
    config[path[-1]] = value


def lookup(config: Mapping[str, Any], name: str) -> Any:
    """The value of hyperparameter ``name`` ("optim/lr" for a nested one)."""
    if name in config:
        return config[name]
    return get_path(config, name.split(PATH_SEPARATOR))


def copy_config(config: Mapping[str, Any]) -> Dict[str, Any]:
    """A copy of a config in which every nested dict is new (values shared)."""
    return {k: copy_config(v) if isinstance(v, Mapping) else v for k, v in config.items()}


def _sample(space: Mapping[str, Any], rng: np.random.Generator, given: Mapping[str, Any],
            where: str) -> Dict[str, Any]:
    given = dict(given)
    config: Dict[str, Any] = {}
    for name, value in space.items():
        if isinstance(value, Mapping):
            sub = given.pop(name, {})
            if not isinstance(sub, Mapping):
                raise ValueError(f"{where}[{name!r}] = {sub!r} must be a dict: the space nests a dict there")
            config[name] = _sample(value, rng, sub, f"{where}[{name!r}]")
            continue
        partial = given.get(name)
        if isinstance(value, Categorical) and isinstance(partial, Mapping) and not any(
                isinstance(v, Mapping) and _fits(v, partial) for v in value.values):
            # Part of a conditional branch (initial_configs=[{"opt": {"name": "adam"}}]): the one branch it
            # agrees with, its other domains sampled, as if the choice had drawn that branch.
            matches = [i for i, v in enumerate(value.values) if isinstance(v, Mapping) and _fits(v, partial, partial=True)]
            if len(matches) != 1:
                raise ValueError(f"{where}[{name!r}] = {partial!r} is part of {'no' if not matches else 'more than one'}"
                                 f" branch of {value!r}; give values that pick one branch (e.g. its constant "
                                 f"'name'), each inside its domain")
            rng.integers(len(value.values))  # (the draw that picks a branch, as sample() makes it)
            config[name] = _sample(value.values[matches[0]], rng, given.pop(name), f"{where}[{name!r}]")
            continue
        drawn = value.sample(rng) if isinstance(value, Domain) else value
        config[name] = given.pop(name) if name in given else drawn
    if given:
        raise ValueError(f"{where} has keys {sorted(given)} that the space does not define "
                         f"(space keys: {', '.join(space)})")
    return config


def sample_config(space: Mapping[str, Any], rng: Union[np.random.Generator, int, None],
                  given: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """A config: ``given`` values where present (checked against their
    domains), every other domain sampled in key order (nested dicts depth
    first), constants copied.

    ``rng``: a ``np.random.Generator``, or a seed (an int, or None for a fresh
    one). Every domain draws from it even when ``given`` fixes it, so the
    configs sampled after a partial initial config do not depend on which
    keys it fixed.
    """
    if rng is None or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)):
        rng = np.random.default_rng(rng)
    elif not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a np.random.Generator or an int seed, got {type(rng).__name__} {rng!r}")
    config = _sample(space, rng, dict(given or {}), "config")
    check_config(space, config, "config")
    return config


def _where(where: str, path: Sequence[str]) -> str:
    return where + "".join(f"[{key!r}]" for key in path)


def check_config(space: Mapping[str, Any], config: Mapping[str, Any], where: str, *,
                 partial_branches: bool = False) -> None:
    """ValueError unless each value of ``config`` is inside its domain (and
    names only keys the space defines, nested dicts where it nests them).
    ``partial_branches``: a dict for a conditional choice may be part of one
    branch (an initial config's ``{"opt": {"name": "adam"}}``)."""
    def walk(sub_space: Mapping[str, Any], sub: Any, path: Tuple[str, ...]) -> None:
        if not isinstance(sub, Mapping):
            raise ValueError(f"{_where(where, path)} = {sub!r} must be a dict: the space nests a dict there")
        unknown = sorted(set(sub) - set(sub_space), key=repr)
        if unknown:
            raise ValueError(f"{_where(where, path)} has keys {unknown} that the space does not define "
                             f"(space keys: {', '.join(sub_space)})")
        for name, value in sub_space.items():
            if name not in sub:
                continue
            if isinstance(value, Mapping):
                walk(value, sub[name], path + (name,))
            elif isinstance(value, Domain) and not value.contains(sub[name]):
                if partial_branches and isinstance(value, Categorical) and isinstance(sub[name], Mapping) and sum(
                        isinstance(v, Mapping) and _fits(v, sub[name], partial=True) for v in value.values) == 1:
                    continue  # (sampling fills in the rest of that branch)
                raise ValueError(f"{_where(where, path + (name,))} = {sub[name]!r} is outside its domain {value!r}")

    walk(space, config, ())


def space_repr(space: Mapping[str, Any]) -> List[Tuple[str, str]]:
    """A comparable description of a space (for resume checks); nested
    hyperparameters are named by their "/" paths."""
    return [(PATH_SEPARATOR.join(path), repr(value)) for path, value in leaf_paths(space)]
