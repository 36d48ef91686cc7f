"""Population Based Bandits (Parker-Holder, Nguyen, Roberts: "Provably
Efficient Online Hyperparameter Optimization with Population-Based
Bandits", NeurIPS 2020): PBT whose explore step picks the continuous
hyperparameters by GP-UCB instead of random perturbation."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .. import _checks
from .gp import TimeVaryingGP, maximize, ucb_beta
from .pbt import PBT
from .results import FAILED
from .space import PATH_SEPARATOR, Float, Integer, copy_config, domain_paths, get_path, set_path

__all__ = ["PB2"]

# The GP is cubic in its data: beyond this many observations only the most recent are kept (the time-varying
# kernel has nearly forgotten older ones anyway).
MAX_OBSERVATIONS = 200


class _Axis:
    """One GP-explored hyperparameter: its domain and the closed interval
    (on the log scale for log domains) the GP maps to [0, 1]."""

    def __init__(self, name: str, path: Tuple[str, ...], domain: Any, low: float, high: float):
        self.name, self.path, self.domain = name, path, domain
        self.bounds = [low, high]  # as given (for the settings: exp(log(x)) may differ from x in the last bit)
        self.log = isinstance(domain, Float) and domain.log
        self.low, self.high = (math.log(low), math.log(high)) if self.log else (float(low), float(high))

    def scaled(self, value: Any) -> float:
        v = math.log(float(value)) if self.log else float(value)
        return (v - self.low) / (self.high - self.low)

    def value(self, x: float) -> Any:
        v = self.low + float(x) * (self.high - self.low)
        # project: Integer rounds, and exp(log(b)) may land one ulp outside the domain
        return self.domain.project(math.exp(v) if self.log else v, "clip")


class PB2(PBT):
    """Population Based Bandits: PBT with a GP-bandit explore step.

    Exploit is PBT's (a member in the bottom ``quantile`` copies the state
    and config of a member drawn from the top ``quantile``); explore picks the
    continuous hyperparameters (``hyperparam_bounds``) by maximising an upper
    confidence bound of a Gaussian process instead of perturbing them at
    random, as in Parker-Holder, Nguyen and Roberts (NeurIPS 2020):

    - every interval a member trained is an observation: its end time ``t``
      (in perturbation intervals), its hyperparameters ``h`` (scaled to
      ``[0, 1]``, log domains on the log scale) and the change of the metric
      over the interval (improvement positive; from the copied state's
      metric after an exploit; a diverged interval counts as the worst
      change seen). A member's first interval has no metric before it and
      is not an observation;
    - the GP has the time-varying kernel ``(1 - eps)^(|t - t'| / 2) *
      k_SE(h, h')``, so old observations count less as the landscape moves
      on; its lengthscale, ``eps`` and noise are refitted by marginal
      likelihood at every decision (from the trials' histories: the
      checkpoint holds no model);
    - the new ``h`` maximises ``mean + sqrt(beta) * std`` at the time the
      member's next interval ends. Members that will train in the same
      interval with known configs (synchronous: the ones continuing and the
      ones explored before in this generation; asynchronous: the ones in
      flight) are pending points (GP-BUCB): they shrink the variance near
      them, so a batch spreads out.

    Categorical hyperparameters and continuous ones outside
    ``hyperparam_bounds`` are explored as PBT does (``resample_probability``,
    ``perturbation_factors``, ``boundary``). Lineage entries say
    ``"how": "pb2-ucb"`` for a GP-chosen value. Every random draw comes from
    the tuner's seeded decision stream, so a synchronous run is the same on
    every executor and a resumed run equals the uninterrupted one.

    Parameters
    ----------
    population
        members (int >= 2).
    perturbation_interval
        units between ready points.
    max_resource
        units each member trains in all (default: 10 intervals).
    quantile
        fraction in the top and bottom groups (0, 0.5].
    hyperparam_bounds
        ``{name: (low, high)}``: the continuous hyperparameters the GP explores and the closed range
        it picks from (inside the domain; an Integer's values rounded). Default: every Float and
        Integer domain in ``mutations``, over its whole range.
    kappa
        the UCB weight ``sqrt(beta)``; None (default): ``beta = 0.2 + max(0, log(0.4 n))`` with
        ``n`` observations (see ``fastadapt.tune.gp.ucb_beta``).
    resample_probability, perturbation_factors, boundary
        PBT's explore for the hyperparameters the GP does not model.
    mutations
        names of the hyperparameters explore may change (default: every domain in the space).
    synchronous
        True (default): decide once the whole generation is back, in member order; False: as each
        member is ready (see [`fastadapt.tune.PBT`][fastadapt.tune.PBT]).
    exploit
        copy a top member into a bottom one (False: every ready member explores its own config).
    explore
        False: no explore at all (PBT's exploit-only ablation).

    Other Parameters
    ----------------
    **kwargs
        the other arguments of [`fastadapt.tune.Tuner`][fastadapt.tune.Tuner].

    Examples
    --------
        pb2 = fa.tune.PB2(MyTrainable, {"lr": fa.tune.loguniform(1e-4, 1e-1),
                                        "momentum": fa.tune.uniform(0.0, 0.99)},
                          population=4, perturbation_interval=2, max_resource=20, seed=0, mode="min")
        result = pb2.run()
        result.lineage[:3]; result.plot("pb2.png")   # the hyperparameter schedules found
    """

    algorithm = "pb2"

    def __init__(self, trainable: Any, space: Any, *, population: int, perturbation_interval: int,
                 max_resource: Optional[int] = None, quantile: float = 0.25,
                 hyperparam_bounds: Optional[Mapping[str, Sequence[float]]] = None, kappa: Optional[float] = None,
                 resample_probability: float = 0.25, perturbation_factors: Sequence[float] = (0.8, 1.2),
                 boundary: str = "clip", mutations: Optional[Sequence[str]] = None, synchronous: bool = True,
                 exploit: bool = True, explore: bool = True, **kwargs: Any):
        super().__init__(trainable, space, population=population, perturbation_interval=perturbation_interval,
                         max_resource=max_resource, quantile=quantile, resample_probability=resample_probability,
                         perturbation_factors=perturbation_factors, boundary=boundary, mutations=mutations,
                         synchronous=synchronous, exploit=exploit, explore=explore, **kwargs)
        self.kappa = None if kappa is None else _checks.real("kappa", kappa, low=0)
        self._axes = self._check_bounds(hyperparam_bounds)
        self._context: Tuple[int, set] = (-1, set())

    def _check_bounds(self, bounds: Optional[Mapping[str, Sequence[float]]]) -> List[_Axis]:
        continuous = {PATH_SEPARATOR.join(path): (path, domain) for path, domain in domain_paths(self.space)
                      if (isinstance(domain, Float) or (isinstance(domain, Integer) and domain.high - domain.low > 1))
                      and PATH_SEPARATOR.join(path) in self.mutations}
        if bounds is None:
            if not continuous:
                raise ValueError("PB2 explores continuous hyperparameters (uniform, loguniform, randint) by GP-UCB, "
                                 "and the space has none among the mutations; use fa.tune.PBT for a space of "
                                 "choices only")
            return [_Axis(name, path, d, d.low, d.high - 1 if isinstance(d, Integer) else d.high)
                    for name, (path, d) in continuous.items()]
        if not isinstance(bounds, Mapping) or not bounds:
            raise TypeError(f"hyperparam_bounds must be a non-empty dict of name -> (low, high), such as "
                            f"{{'lr': (1e-4, 1e-1)}}, got {bounds!r}")
        axes = []
        for name, (path, domain) in continuous.items():  # in the space's order, whatever the dict's
            if name not in bounds:
                continue
            pair = bounds[name]
            if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
                raise TypeError(f"hyperparam_bounds[{name!r}] must be a pair (low, high), got {pair!r}")
            low = _checks.real(f"hyperparam_bounds[{name!r}] low", pair[0])
            high = _checks.real(f"hyperparam_bounds[{name!r}] high", pair[1])
            top = domain.high - 1 if isinstance(domain, Integer) else domain.high
            if not (domain.low <= low < high <= top):
                raise ValueError(f"hyperparam_bounds[{name!r}] = ({low!r}, {high!r}) must satisfy "
                                 f"{domain.low!r} <= low < high <= {top!r} (inside the space's {domain!r})")
            axes.append(_Axis(name, path, domain, low, high))
        unknown = [name for name in bounds if name not in continuous]
        if unknown:
            raise ValueError(f"hyperparam_bounds names {unknown}, which are not continuous domains (uniform, "
                             f"loguniform, randint) among the mutations ({', '.join(continuous) or 'none'})")
        return axes

    def settings(self) -> Dict[str, Any]:
        return {**super().settings(), "hyperparam_bounds": {a.name: list(a.bounds) for a in self._axes},
                "kappa": self.kappa}

    # ---- explore ---------------------------------------------------------------
    def _exploit_explore(self, member: int, ranking: List[int], bottom: set) -> None:
        # _explored needs to know which member it explores for and who else will train beside it.
        self._context = (member, bottom)
        super()._exploit_explore(member, ranking, bottom)

    def _explored(self, config: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, str]]:
        member, bottom = self._context
        modelled = {axis.name for axis in self._axes}
        out = copy_config(config)
        how: Dict[str, str] = {}
        chosen = self._ucb_choice(member, bottom, config)
        for path, domain in domain_paths(self.space):
            name = PATH_SEPARATOR.join(path)
            if name not in self.mutations:
                continue
            if name in modelled:
                set_path(out, path, chosen[name])
                how[name] = "pb2-ucb"
            else:
                value, how[name] = self._perturbed(domain, get_path(config, path))
                set_path(out, path, value)
        return out, how

    def _h(self, config: Mapping[str, Any]) -> List[float]:
        return [axis.scaled(get_path(config, axis.path)) for axis in self._axes]

    def _observations(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(t, h, y)`` of every interval trained so far (see the class docstring)."""
        copied_from = {(e["member"], e["budget"]): e["donor_metric"] for e in self._lineage if e["donor"] is not None}
        sign = 1.0 if self.mode == "max" else -1.0
        rows: List[Tuple[float, List[float], float]] = []
        for tid in sorted(self._trials):
            trial = self._trials[tid]
            before_budget, before = 0, None
            for entry in trial.history:
                budget, metric = int(entry["budget"]), entry["metric"]
                start = copied_from.get((tid, before_budget), before)
                if start is not None and math.isfinite(start) and budget > before_budget:
                    change = (sign * (metric - start) * self.perturbation_interval / (budget - before_budget)
                              if metric is not None and math.isfinite(metric) else math.nan)
                    rows.append((budget / self.perturbation_interval, self._h(trial.config_at(budget)), change))
                before_budget, before = budget, metric
        if not rows:
            return np.zeros(0), np.zeros((0, len(self._axes))), np.zeros(0)
        # Most recent last, stable in member order: the cap keeps the newest.
        rows = sorted(rows, key=lambda r: r[0])[-MAX_OBSERVATIONS:]
        t = np.array([r[0] for r in rows])
        h = np.array([r[1] for r in rows], dtype=np.float64).reshape(len(rows), len(self._axes))
        y = np.array([r[2] for r in rows])
        finite = np.isfinite(y)
        if not finite.any():
            return np.zeros(0), np.zeros((0, len(self._axes))), np.zeros(0)
        # A diverged interval teaches the GP where not to go: the worst change seen.
        y[~finite] = float(np.min(y[finite]))
        # Standardised per interval: improvements shrink by orders of magnitude as training converges. With
        # the raw changes a GP (constant prior mean) takes a region not visited lately for as good as the
        # early, large improvements and keeps exploring it, and late differences between configs drown in
        # the early ones' scale. Standardised, y says by how many population spreads a config beat the
        # population in its interval, which is what the choice needs.
        slot = np.ceil(t - 1e-9)
        for value in np.unique(slot):
            group = slot == value
            y[group] -= float(np.mean(y[group]))
            spread = float(np.std(y[group]))
            if spread > 0:
                y[group] /= spread
        return t, h, y

    def _pending(self, member: int, bottom: set) -> Tuple[np.ndarray, np.ndarray]:
        """Times and scaled configs of the members training beside ``member``'s next interval."""
        points = []
        for tid in sorted(self._trials):
            trial = self._trials[tid]
            if tid == member or trial.status == FAILED:
                continue
            if self.synchronous:
                undecided = tid > member and (tid in bottom or not self.exploit)
                if trial.budget >= self.max_resource or undecided:
                    continue
                step = min(self.perturbation_interval, self.max_resource - trial.budget)
            elif tid in self._in_flight:
                step = self._in_flight[tid]  # the interval it is running
            else:
                continue
            points.append(((trial.budget + step) / self.perturbation_interval, self._h(trial.config)))
        t = np.array([p[0] for p in points], dtype=np.float64)
        h = np.array([p[1] for p in points], dtype=np.float64).reshape(len(points), len(self._axes))
        return t, h

    def _ucb_choice(self, member: int, bottom: set, config: Mapping[str, Any]) -> Dict[str, Any]:
        trial = self._trials[member]
        now = (trial.budget + min(self.perturbation_interval, self.max_resource - trial.budget)) \
            / self.perturbation_interval
        t, h, y = self._observations()
        gp = TimeVaryingGP(t, h, y)
        pending_t, pending_h = self._pending(member, bottom)
        weight = self.kappa if self.kappa is not None else math.sqrt(ucb_beta(len(y)))

        def acquisition(points: np.ndarray) -> np.ndarray:
            mean, std = gp.predict(np.full(len(points), now), points, pending_t=pending_t, pending_h=pending_h)
            return mean + weight * std

        # Local search also starts from the newest observations' configs and the copied one.
        recent = h[t >= t.max() - 1] if len(t) else np.zeros((0, len(self._axes)))
        starts = np.concatenate([recent, np.array([self._h(config)])])
        best = maximize(acquisition, len(self._axes), self._decision_rng, starts=starts)
        return {axis.name: axis.value(x) for axis, x in zip(self._axes, best)}
