"""Population Based Training (Jaderberg, Dalibard, Osindero, Czarnecki,
Donahue, Razavi, Vinyals, Green, Dunning, Simonyan, Fernando, Kavukcuoglu:
"Population Based Training of Neural Networks", 2017)."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .. import _checks
from . import schema as S
from .jobs import Outcome
from .results import COMPLETED, FAILED, PAUSED, TrialRecord
from .space import PATH_SEPARATOR, Categorical, check_boundary, copy_config, domain_paths, domains, get_path, \
    leaf_paths, set_path
from .tuner import Tuner

__all__ = ["PBT", "quantile_size"]


def quantile_size(population: int, quantile: float) -> int:
    """Members in the top (and in the bottom) quantile: ``ceil(population *
    quantile)``, at most half the population so the two never overlap.

    The product is taken on the decimal the user wrote: in floats ``10 *
    0.3`` is ``3.0000000000000004`` and its ceiling 4.
    """
    return min(math.ceil(Fraction(repr(float(quantile))) * population), population // 2)


class PBT(Tuner):
    """Population Based Training.

    A population of ``population`` members trains in steps of
    ``perturbation_interval`` units up to ``max_resource``. After each step a
    member is *ready*:

    - exploit (truncation selection): a member ranked in the bottom
      ``quantile`` copies the state (params, optimizer state: whatever the
      trainable's ``save()`` holds) and the hyperparameters of a member drawn
      uniformly from the top ``quantile``;
    - explore: each hyperparameter of the copied config is, with
      ``resample_probability``, redrawn from its prior; otherwise a
      continuous one is multiplied by a factor drawn from
      ``perturbation_factors`` (0.8 or 1.2) and a categorical one moves to a
      neighbouring value. Results are projected into the space's bounds
      (``boundary``: "clip" or "reflect"), never outside.

    Every exploit/explore is logged in ``result.lineage``. ``synchronous=True``
    (default) waits for the whole population at each step (a generation),
    then decides in member order: the same seed gives the same result on
    every executor. ``synchronous=False`` decides for each member as soon as
    it is ready, against the others' latest metrics (the paper's
    asynchronous PBT; no member waits, results depend on timing). With fewer
    workers than members, the least-trained member runs next, so members take
    turns.

    ``exploit=False`` or ``explore=False`` give the ablations of the paper's
    toy example: explore-only perturbs every ready member's own
    hyperparameters; exploit-only copies without perturbing; neither is
    plain parallel training of the initial configs.

    The trainable must be resumable (``save``/``load``) and, to receive new
    hyperparameters, define ``set_config(config)``: after a copied state is
    loaded, ``set_config`` applies the member's own (explored) config, so an
    optimizer state carrying the donor's learning rate does not undo the
    exploration.

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
    resample_probability
        chance to redraw a hyperparameter from its prior.
    perturbation_factors
        factors a continuous value is multiplied by.
    boundary
        "clip" or "reflect" into the bounds.
    mutations
        names of the hyperparameters explore may change (default: every domain in the space; a
        nested one by its path, "optim/lr").
    synchronous
        True (default): decide once the whole generation is back, in member order (reproducible
        on every executor); False: decide for each member as soon as it is ready (see above).
    exploit
        copy the state and config of a top member into a bottom one (False: the explore-only
        ablation).
    explore
        perturb or resample the copied config (False: the exploit-only ablation).

    Other Parameters
    ----------------
    trial_timeout : Optional[float]
        seconds one job (one ``perturbation_interval`` of one member) may run before the member
        fails; None (default): no limit. Honoured by every executor; see
        [`fastadapt.tune.Tuner`][fastadapt.tune.Tuner].
    **kwargs
        the other arguments of [`fastadapt.tune.Tuner`][fastadapt.tune.Tuner].

    Examples
    --------
        pbt = fa.tune.PBT(MyTrainable, space, population=8, perturbation_interval=4, max_resource=40,
                          quantile=0.25, seed=0, executor="process", mode="min")
        result = pbt.run()
        result.lineage[:3]; result.plot("pbt.png")
    """

    algorithm = "pbt"
    _asks = False  # (exploit copies members' states: a trainable class with save/load)

    def __init__(self, trainable: Any, space: Any, *, population: int, perturbation_interval: int,
                 max_resource: Optional[int] = None, quantile: float = 0.25, resample_probability: float = 0.25,
                 perturbation_factors: Sequence[float] = (0.8, 1.2), boundary: str = "clip",
                 mutations: Optional[Sequence[str]] = None, synchronous: bool = True, exploit: bool = True,
                 explore: bool = True, **kwargs: Any):
        super().__init__(trainable, space, **kwargs)
        self.population = _checks.integer("population", population, 2)
        self.perturbation_interval = _checks.integer("perturbation_interval", perturbation_interval, 1)
        self.max_resource = (10 * self.perturbation_interval if max_resource is None
                             else _checks.integer("max_resource", max_resource, 1))
        self.quantile = _checks.real("quantile", quantile, low=0, high=0.5, low_open=True)
        self.resample_probability = _checks.real("resample_probability", resample_probability, low=0, high=1)
        if isinstance(perturbation_factors, (str, bytes)) or not isinstance(perturbation_factors, Sequence) \
                or not perturbation_factors:
            raise TypeError(f"perturbation_factors must be a non-empty list of positive numbers such as "
                            f"(0.8, 1.2), got {perturbation_factors!r}")
        self.perturbation_factors = tuple(_checks.real(f"perturbation_factors[{i}]", f, low=0, low_open=True)
                                          for i, f in enumerate(perturbation_factors))
        self.boundary = check_boundary(boundary)
        searchable = [name for name, _ in domains(self.space)]
        if mutations is None:
            self.mutations = searchable
        else:
            if isinstance(mutations, str) or not isinstance(mutations, Sequence):
                raise TypeError(f"mutations must be a list of hyperparameter names, got {mutations!r}")
            unknown = [m for m in mutations if m not in searchable]
            if unknown:
                raise ValueError(f"mutations names {unknown}, which are not domains of the space "
                                 f"(domains: {', '.join(searchable)})")
            self.mutations = list(mutations)
        for name, value in (("synchronous", synchronous), ("exploit", exploit), ("explore", explore)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be True or False, got {value!r}")
        self.synchronous, self.exploit, self.explore = synchronous, exploit, explore
        me = type(self).__name__
        if not self.spec.resumable:
            raise TypeError(f"{me} continues and copies members' states, so the trainable needs save() and "
                            f"load(); {self.spec.name} has neither (a plain function cannot be used with {me})")
        if (exploit or explore) and not self.spec.configurable:
            raise TypeError(f"{me} gives members new hyperparameters through set_config(config); define it on "
                            f"{self.spec.name} (or pass exploit=False, explore=False)")
        if (exploit or explore) and self.perturbation_interval >= self.max_resource:
            raise ValueError(f"perturbation_interval={self.perturbation_interval} >= max_resource="
                             f"{self.max_resource}: the members finish before their first perturbation, so {me} "
                             f"would be a random search; pass a perturbation_interval below max_resource (e.g. "
                             f"max_resource // 4), or a larger max_resource")

    def settings(self) -> Dict[str, Any]:
        return {"population": self.population, "perturbation_interval": self.perturbation_interval,
                "max_resource": self.max_resource, "quantile": self.quantile,
                "resample_probability": self.resample_probability,
                "perturbation_factors": list(self.perturbation_factors), "boundary": self.boundary,
                "mutations": list(self.mutations), "synchronous": self.synchronous, "exploit": self.exploit,
                "explore": self.explore}

    def planned_jobs(self) -> int:
        return self.population * -(-self.max_resource // self.perturbation_interval)

    def _apply_config(self) -> bool:
        return self.spec.configurable

    def _field_specs(self) -> Dict[str, S.Spec]:
        return {**super()._field_specs(), "_generation": S.integer()}

    def _start_algorithm(self) -> None:
        self._generation = 0

    # ---- scheduling --------------------------------------------------------
    def _unfinished(self) -> List[int]:
        return [tid for tid, t in sorted(self._trials.items())
                if t.status != FAILED and t.budget < self.max_resource and tid not in self._in_flight]

    def _next_jobs(self, free: int) -> List[Tuple[int, int]]:
        while len(self._trials) < self.population:
            self._new_trial()
        if self.synchronous:
            if self._in_flight:
                return []  # the generation is not back yet
            members = self._unfinished()
        else:
            # Fewer workers than members: the least-trained member goes first (ties by id), as Ray Tune's
            # PBT shares time, so members take turns instead of the first ones training to the end alone.
            members = sorted(self._unfinished(), key=lambda tid: (self._trials[tid].budget, tid))[:free]
        return [(tid, min(self.perturbation_interval, self.max_resource - self._trials[tid].budget))
                for tid in members]

    def _on_outcome(self, trial: TrialRecord, outcome: Outcome) -> None:
        if self.synchronous:
            if self._in_flight:
                return
            self._generation += 1
            ready = [tid for tid, t in sorted(self._trials.items()) if t.status == PAUSED]
            self._complete_finished()
            ranking = self._population_ranking()
            bottom = set(self._bottom(ranking))
            for tid in ready:
                if self._trials[tid].budget < self.max_resource:
                    self._exploit_explore(tid, ranking, bottom)
        elif outcome.ok:
            self._complete_finished()
            if trial.budget < self.max_resource:
                ranking = self._population_ranking()
                self._exploit_explore(trial.trial_id, ranking, set(self._bottom(ranking)))

    def _complete_finished(self) -> None:
        for t in self._trials.values():
            if t.status == PAUSED and t.budget >= self.max_resource:
                t.status = COMPLETED

    # ---- exploit and explore -----------------------------------------------
    def _population_ranking(self) -> List[int]:
        """Members with a metric (failed ones out), best first."""
        scored = [tid for tid, t in self._trials.items() if t.status != FAILED and t.history]
        return [tid for tid, _ in self._ranking(scored)]

    def _bottom(self, ranking: List[int]) -> List[int]:
        q = quantile_size(len(ranking), self.quantile)
        return ranking[len(ranking) - q:] if q else []

    def _exploit_explore(self, member: int, ranking: List[int], bottom: set) -> None:
        trial = self._trials[member]
        donor: Optional[int] = None
        if self.exploit:
            if member not in bottom:
                return
            top = ranking[:quantile_size(len(ranking), self.quantile)]
            donor = top[int(self._decision_rng.integers(len(top)))]
        elif not self.explore:
            return
        old_config = copy_config(trial.config)
        # The donor's hyperparameters behind the state and metric being copied (in async PBT a donor may
        # already train on with newer ones).
        source = self._trials[donor].config_at(self._trials[donor].budget) if donor is not None else trial.config
        new_config = copy_config(source)
        changes: Dict[str, Dict[str, Any]] = {}
        # Compared leaf by leaf, so a nested hyperparameter's change is logged under its own "a/b" name.
        for path, _ in leaf_paths(self.space):
            before, after = get_path(old_config, path), get_path(source, path)
            if after != before:
                changes[PATH_SEPARATOR.join(path)] = {"from": before, "to": after, "how": "copied"}
        if self.explore:
            explored, how = self._explored(source)
            for path, _ in domain_paths(self.space):
                name = PATH_SEPARATOR.join(path)
                if name not in how:
                    continue
                before, after = get_path(old_config, path), get_path(explored, path)
                if after != before or name in changes:
                    changes[name] = {"from": before, "to": after,
                                     "how": how[name] if donor is None else f"copied, {how[name]}"}
            new_config = explored
        if donor is not None:
            self._put_state(member, self._states[donor])
        trial.config = new_config
        trial.config_history.append({"budget": trial.budget, "config": copy_config(new_config)})
        self._lineage.append({
            "generation": self._generation if self.synchronous else None,
            "member": member, "budget": trial.budget, "metric": trial.metric,
            "donor": donor, "donor_metric": None if donor is None else self._trials[donor].metric,
            "donor_budget": None if donor is None else self._trials[donor].budget,
            "old_config": old_config, "new_config": copy_config(new_config), "changes": changes})

    def _explored(self, config: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, str]]:
        """A perturbed copy of ``config`` and how each mutable value moved."""
        out = copy_config(config)
        how: Dict[str, str] = {}
        for path, domain in domain_paths(self.space):
            name = PATH_SEPARATOR.join(path)
            if name not in self.mutations:
                continue
            value, how[name] = self._perturbed(domain, get_path(config, path))
            set_path(out, path, value)
        return out, how

    def _perturbed(self, domain: Any, value: Any) -> Tuple[Any, str]:
        """PBT's explore of one hyperparameter: resampled from its prior, moved to a neighbouring
        choice, or multiplied by a perturbation factor; the new value and how it moved."""
        rng = self._decision_rng
        if rng.random() < self.resample_probability:
            return domain.sample(rng), "resampled"
        if isinstance(domain, Categorical):
            return domain.perturb(value, 1.0, rng, self.boundary), "neighbour"
        factor = self.perturbation_factors[int(rng.integers(len(self.perturbation_factors)))]
        return domain.perturb(value, factor, rng, self.boundary), f"x{factor:g}"
