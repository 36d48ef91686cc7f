"""TPE: the tree-structured Parzen estimator (Bergstra, Bardenet, Bengio,
Kégl: "Algorithms for Hyper-Parameter Optimization", NeurIPS 2011), in the
multivariate form of BOHB (Falkner, Klein, Hutter, ICML 2018) and Optuna's
``multivariate=True``; NumPy only.

The observations of one budget are sorted by loss and split into the best
``gamma`` fraction ("good") and the rest ("bad"). Each set becomes a
product-kernel density over the space's dimensions, ``l(x)`` and ``g(x)``:
every observation is the centre of a kernel (a Gaussian truncated to the
domain for reals and integers, in log space for log domains; an
Aitchison-Aitken kernel for choices), mixed with the prior (uniform) as one
more component of weight ``prior_weight``. ``n_candidates`` points drawn
from ``l`` (bandwidths widened by ``bandwidth_factor``) are scored by
``log l(x) - log g(x)``; the best is proposed.

Coordinates: every real or integer dimension is mapped to ``[0, 1]``
(``(log x - log low) / (log high - log low)`` for a log domain; an integer
``v`` of ``randint(low, high)`` to ``(v - low + 0.5) / (high - low)``, the
middle of its cell, and back by the cell a point falls in); a choice is its
index.

Conditional spaces: the domains of a choice's branch form their own group,
modelled only on the observations where that branch was active (the good
and bad ones among them), after the choice itself is proposed by the group
above. A group nobody has observed yet is sampled from its prior.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .. import _checks
from .searcher import Observation, Searcher
from .space import (Categorical, Domain, Float, Integer, branch_domains, check_config, domain_paths, get_path,
                    sample_config)

__all__ = ["TPE", "model_budget", "BANDWIDTHS"]

# How kernel bandwidths are set (see _Density): Optuna's width-based rule, or BOHB's normal reference.
BANDWIDTHS = ("range", "normal_reference")

# erfc's rational Chebyshev approximation (Numerical Recipes, 2nd ed., 6.2; fractional error < 1.2e-7):
# NumPy has no erf, and scipy is no runtime dependency.
_ERFC = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398, 1.48851587,
         -0.82215223, 0.17087277)


def _erfc(x: np.ndarray) -> np.ndarray:
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = np.zeros_like(t)
    for c in reversed(_ERFC[1:]):
        poly = (poly + c) * t
    r = t * np.exp(-z * z + _ERFC[0] + poly)
    return np.where(x >= 0, r, 2.0 - r)


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * _erfc(-x / math.sqrt(2.0))


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    top = np.max(a, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return np.squeeze(top, axis=axis) + np.log(np.sum(np.exp(a - top), axis=axis))


@dataclass
class _Dim:
    """One domain of a group: where it sits (relative to the group's root) and, for a choice with dict
    values, the group of each branch (None for a plain value)."""

    path: Tuple[str, ...]
    domain: Domain
    branches: Optional[List[Optional["_Group"]]] = None

    @property
    def categorical(self) -> bool:
        return isinstance(self.domain, Categorical)

    def encode(self, value: Any) -> float:
        d = self.domain
        if isinstance(d, Categorical):
            return float(d.index(value))
        if isinstance(d, Integer):
            return (int(value) - d.low + 0.5) / (d.high - d.low)
        assert isinstance(d, Float)
        lo, hi = d._to_axis(d.low), d._to_axis(d.high)
        return (d._to_axis(float(value)) - lo) / (hi - lo)

    def decode(self, u: float) -> Any:
        d = self.domain
        if isinstance(d, Integer):
            return int(min(max(d.low + math.floor(u * (d.high - d.low)), d.low), d.high - 1))
        assert isinstance(d, Float)
        lo, hi = d._to_axis(d.low), d._to_axis(d.high)
        return d.project(d._from_axis(lo + min(max(u, 0.0), 1.0) * (hi - lo)))


@dataclass
class _Group:
    """The domains sampled together: those of a (sub)space outside any branch below it."""

    space: Mapping[str, Any]
    dims: List[_Dim] = field(default_factory=list)


def _group(space: Mapping[str, Any]) -> _Group:
    group = _Group(space)
    for path, domain in domain_paths(space):
        branches = None
        if isinstance(domain, Categorical) and domain.branched:
            branches = [_group(v) if isinstance(v, Mapping) else None for v in domain.values]
        group.dims.append(_Dim(path, domain, branches))
    return group


def model_budget(observations: Sequence[Observation], min_points: int) -> Optional[int]:
    """The budget a model-based searcher fits on: the largest budget with at
    least ``min_points`` observations (BOHB's rule; for full-budget search the
    full budget once it has them), or None while no budget has enough.

    Parameters
    ----------
    observations
        every evaluation so far.
    min_points
        observations a budget needs.

    Returns
    -------
    int or None
        the budget.
    """
    counts: Dict[int, int] = {}
    for o in observations:
        counts[o.budget] = counts.get(o.budget, 0) + 1
    enough = [b for b, n in counts.items() if n >= min_points]
    return max(enough) if enough else None


class _Density:
    """A product-kernel mixture over a group's dimensions: one kernel per point plus the prior."""

    def __init__(self, dims: List[_Dim], points: np.ndarray, prior_weight: float, min_bandwidth: float,
                 rule: str):
        self.dims = dims
        self.points = points  # (m, d) coordinates
        m, d = points.shape
        # The prior keeps every region reachable; a set with no point is the prior alone.
        weights = np.append(np.ones(m), prior_weight if m else 1.0)
        with np.errstate(divide="ignore"):  # prior_weight=0: the prior's log weight is -inf
            self.log_weights = np.log(weights / weights.sum())
        # Scott's rule for a d-dimensional product kernel. "range" (Optuna's multivariate TPE): 0.2 of the
        # domain's width times m**(-1/(d + 4)), which never collapses onto a cluster of good points;
        # "normal_reference" (BOHB's KDE): 1.06 * sd * m**(-1/(d + 4)), the points' spread (a single point,
        # without one, takes the range rule).
        shrink = max(m, 1) ** (-1.0 / (d + 4))
        self.bandwidths = np.empty(d)
        for j, dim in enumerate(dims):
            if dim.categorical:
                k = len(dim.domain.values)  # type: ignore[attr-defined]
                # Aitchison-Aitken: the observed value keeps 1 - lam, the others share lam.
                self.bandwidths[j] = min((k - 1) / k, max(min_bandwidth, 0.5 * (k - 1) / k * shrink))
            else:
                spread = float(np.std(points[:, j])) if m >= 2 else 0.0
                h = 1.06 * spread * shrink if rule == "normal_reference" and spread > 0 else 0.2 * shrink
                self.bandwidths[j] = min(1.0, max(min_bandwidth, h))

    def sample(self, rng: np.random.Generator, n: int, factor: float) -> np.ndarray:
        m, d = self.points.shape
        which = rng.choice(m + 1, size=n, p=np.exp(self.log_weights))
        out = np.empty((n, d))
        from_prior = which == m
        for j, dim in enumerate(self.dims):
            if dim.categorical:
                k = len(dim.domain.values)  # type: ignore[attr-defined]
                lam = min((k - 1) / k, self.bandwidths[j] * factor)
                centre = self.points[np.minimum(which, m - 1), j] if m else np.zeros(n)
                keep = rng.random(n) >= lam * k / (k - 1) if k > 1 else np.ones(n, bool)
                # with probability lam * k / (k - 1) a uniform draw: the observed value keeps 1 - lam overall
                uniform = rng.integers(k, size=n).astype(float)
                col = np.where(keep, centre, uniform)
                col[from_prior] = rng.integers(k, size=int(from_prior.sum()))
            else:
                h = min(1.0, self.bandwidths[j] * factor)
                centre = self.points[np.minimum(which, m - 1), j] if m else np.zeros(n)
                col = centre + h * rng.standard_normal(n)
                for _ in range(64):  # truncation by rejection: at least ~16% of a kernel's mass is inside
                    outside = (col < 0) | (col > 1)
                    if not outside.any():
                        break
                    col[outside] = centre[outside] + h * rng.standard_normal(int(outside.sum()))
                col = np.clip(col, 0.0, 1.0)
                col[from_prior] = rng.random(int(from_prior.sum()))
            out[:, j] = col
        return out

    def log_pdf(self, x: np.ndarray) -> np.ndarray:
        m, d = self.points.shape
        n = x.shape[0]
        log_k = np.zeros((n, m))
        log_prior = np.zeros(n)
        for j, dim in enumerate(self.dims):
            if dim.categorical:
                k = len(dim.domain.values)  # type: ignore[attr-defined]
                log_prior -= math.log(k)
                if m == 0 or k == 1:
                    continue
                lam = self.bandwidths[j]
                same = x[:, j][:, None] == self.points[:, j][None, :]
                log_k += np.where(same, math.log(1 - lam), math.log(lam / (k - 1)))
            elif m:
                h = self.bandwidths[j]
                mu = self.points[:, j][None, :]
                z = (x[:, j][:, None] - mu) / h
                mass = _normal_cdf((1 - mu) / h) - _normal_cdf(-mu / h)
                log_k += -0.5 * z * z - math.log(h * math.sqrt(2 * math.pi)) - np.log(mass)
        parts = np.concatenate([log_k + self.log_weights[None, :m], (log_prior + self.log_weights[m])[:, None]],
                               axis=1)
        return _logsumexp(parts, axis=1)


class TPE(Searcher):
    """Tree-structured Parzen estimator: proposes configs likely under the
    density of the best observations and unlikely under the rest's.

    Multivariate (one joint kernel density over the dimensions, as BOHB and
    Optuna's ``multivariate=True``): log domains are modelled in log space,
    integers as continuous values rounded to their cell, choices by a
    categorical kernel, a conditional branch's domains only on observations
    where the branch was active. Budget-aware (BOHB's rule): the model is
    fitted on the observations of the largest budget with at least
    ``n_startup`` of them (full-budget search: the full budget); until one
    has, proposals are random draws from the space's priors. A diverged
    trial (loss ``inf``) counts as a bad observation. Stateless, as every
    searcher: the tuner's generator is the only randomness, so a seeded run
    is reproducible and resumes with the same proposals. Pending configs are
    not modelled.

    The defaults follow Optuna's TPE (10 startup trials, 24 candidates,
    best 10 % as good, the prior as one more kernel);
    [`BOHB`][fastadapt.tune.BOHB] uses the paper's settings (1/3 random, 64
    candidates, best 15 %, bandwidth factor 3, normal-reference bandwidths,
    dims + 1 points; a prior kernel of weight 0.1).

    Parameters
    ----------
    n_startup
        observations (on one budget) needed before the model is used; None: the number of
        dimensions + 1 (BOHB's minimum; the dimensions of every branch counted).
    random_fraction
        probability that a proposal is a random draw from the priors even once the model is
        used (0 <= p <= 1).
    n_candidates
        points drawn from the good density; the one with the best ratio is proposed.
    gamma
        fraction of a budget's observations modelled as good (at least one), 0 < gamma < 1.
    bandwidth_factor
        candidates are drawn with the kernels' bandwidths times this (>= 1 explores more;
        BOHB: 3).
    min_bandwidth
        the smallest bandwidth, in coordinates where every domain is [0, 1].
    prior_weight
        weight of the prior (uniform) kernel in each density, against 1 for each observation
        (Optuna: 1; BOHB's paper: none, ours 0.1). Far from every observation the densities are
        then both about the prior, so their ratio stays bounded.
    bandwidth
        how a continuous kernel's bandwidth is set, in unit coordinates with ``m`` points in ``d``
        dimensions: "range" (Optuna's multivariate TPE): ``0.2 * m**(-1/(d+4))``, never collapsing
        onto a cluster; "normal_reference" (BOHB's KDE): ``1.06 * sd * m**(-1/(d+4))`` with ``sd``
        the points' spread. Both at least ``min_bandwidth``. A choice's kernel keeps the observed
        value with probability ``1 - lam``, ``lam = 0.5 (k-1)/k m**(-1/(d+4))``.

    Examples
    --------
        space = {"lr": fa.tune.loguniform(1e-5, 1e-1), "layers": fa.tune.randint(1, 5)}
        result = fa.tune.Search(MyTrainable, space, num_trials=40, max_resource=9,
                                searcher=fa.tune.TPE(), seed=0).run()
        result = fa.tune.ASHA(MyTrainable, space, num_trials=60, max_resource=27,
                              searcher=fa.tune.TPE(n_startup=8), seed=0).run()
    """

    name = "tpe"

    def __init__(self, *, n_startup: Optional[int] = 10, random_fraction: float = 0.0, n_candidates: int = 24,
                 gamma: float = 0.1, bandwidth_factor: float = 1.0, min_bandwidth: float = 1e-3,
                 prior_weight: float = 1.0, bandwidth: str = "range"):
        self.n_startup = None if n_startup is None else _checks.integer("n_startup", n_startup, 1)
        self.random_fraction = _checks.real("random_fraction", random_fraction, low=0, high=1)
        self.n_candidates = _checks.integer("n_candidates", n_candidates, 1)
        self.gamma = _checks.real("gamma", gamma, low=0, high=1, low_open=True, high_open=True)
        self.bandwidth_factor = _checks.real("bandwidth_factor", bandwidth_factor, low=0, low_open=True)
        self.min_bandwidth = _checks.real("min_bandwidth", min_bandwidth, low=0, high=1, low_open=True)
        self.prior_weight = _checks.real("prior_weight", prior_weight, low=0)
        self.bandwidth = _checks.choice("bandwidth", bandwidth, BANDWIDTHS)
        if not math.isfinite(self.bandwidth_factor) or not math.isfinite(self.prior_weight):
            raise ValueError(f"bandwidth_factor and prior_weight must be finite, got "
                             f"{self.bandwidth_factor!r} and {self.prior_weight!r}")

    def settings(self) -> Dict[str, Any]:
        return {"n_startup": self.n_startup, "random_fraction": self.random_fraction,
                "n_candidates": self.n_candidates, "gamma": self.gamma, "bandwidth_factor": self.bandwidth_factor,
                "min_bandwidth": self.min_bandwidth, "prior_weight": self.prior_weight, "bandwidth": self.bandwidth}

    def min_points(self, space: Mapping[str, Any]) -> int:
        """Observations a budget needs before the model fits on it (``n_startup``, or dims + 1).

        Parameters
        ----------
        space
            the tuner's space.

        Returns
        -------
        int
            the minimum.
        """
        if self.n_startup is not None:
            return self.n_startup
        return sum(1 for _ in branch_domains(space)) + 1

    def suggest(self, space: Mapping[str, Any], rng: np.random.Generator, observations: Sequence[Observation],
                pending: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
        budget = model_budget(observations, self.min_points(space))
        if budget is None:
            return sample_config(space, rng)
        # (no draw at 0 or 1, so TPE(random_fraction=1) proposes exactly what random search samples)
        if self.random_fraction >= 1 or (self.random_fraction > 0 and rng.random() < self.random_fraction):
            return sample_config(space, rng)
        used = sorted((o for o in observations if o.budget == budget and _inside(space, o.config)),
                      key=lambda o: (o.loss, o.trial_id))
        if not used:
            return sample_config(space, rng)
        n_good = min(max(1, math.ceil(self.gamma * len(used))), len(used) - 1) if len(used) > 1 else 1
        good = [o.config for o in used[:n_good]]
        bad = [o.config for o in used[n_good:]]
        config = self._propose(_group(space), rng, good, bad)
        return config

    def _propose(self, group: _Group, rng: np.random.Generator, good: Sequence[Mapping[str, Any]],
                 bad: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
        """A config of ``group.space`` from the good and bad configs of it (observations where it was active)."""
        if not good and not bad:
            return sample_config(group.space, rng)
        dims = group.dims
        l_density = _Density(dims, self._encode(dims, good), self.prior_weight, self.min_bandwidth,
                             self.bandwidth)
        g_density = _Density(dims, self._encode(dims, bad), self.prior_weight, self.min_bandwidth,
                             self.bandwidth)
        candidates = l_density.sample(rng, self.n_candidates, self.bandwidth_factor)
        score = l_density.log_pdf(candidates) - g_density.log_pdf(candidates)
        best = candidates[int(np.argmax(score))]  # (ties: the first drawn)
        chosen: Dict[Tuple[str, ...], Any] = {}
        for j, dim in enumerate(dims):
            if not dim.categorical:
                chosen[dim.path] = dim.decode(float(best[j]))
                continue
            i = int(best[j])
            domain = dim.domain
            assert isinstance(domain, Categorical)
            branch = dim.branches[i] if dim.branches is not None else None
            if branch is None:
                chosen[dim.path] = domain.values[i]
            else:
                def active(configs: Sequence[Mapping[str, Any]]) -> List[Mapping[str, Any]]:
                    values = [get_path(c, dim.path) for c in configs]
                    return [v for v in values if domain.index(v) == i]
                chosen[dim.path] = self._propose(branch, rng, active(good), active(bad))
        return _build(group.space, chosen, ())

    @staticmethod
    def _encode(dims: List[_Dim], configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return np.array([[dim.encode(get_path(c, dim.path)) for dim in dims] for c in configs],
                        dtype=float).reshape(len(configs), len(dims))


def _inside(space: Mapping[str, Any], config: Mapping[str, Any]) -> bool:
    """Whether ``config`` fits ``space`` (a config from elsewhere, e.g. an older space, is not modelled)."""
    try:
        check_config(space, config, "config")
    except ValueError:
        return False
    return True


def _build(space: Mapping[str, Any], chosen: Mapping[Tuple[str, ...], Any], prefix: Tuple[str, ...]
           ) -> Dict[str, Any]:
    """The config of ``space`` with each domain's value taken from ``chosen`` (by path) and constants copied."""
    out: Dict[str, Any] = {}
    for name, value in space.items():
        path = prefix + (name,)
        if isinstance(value, Mapping):
            out[name] = _build(value, chosen, path)
        elif isinstance(value, Domain):
            v = chosen[path]
            out[name] = _copy(v) if isinstance(v, Mapping) else v  # (a plain dict choice value: a copy, as sampled)
        else:
            out[name] = value
    return out


def _copy(value: Mapping[str, Any]) -> Dict[str, Any]:
    return {k: _copy(v) if isinstance(v, Mapping) else v for k, v in value.items()}
