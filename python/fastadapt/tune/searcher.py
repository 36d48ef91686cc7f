"""Searchers: what proposes the next configuration.

Every tuner draws a new trial's config from its searcher. The default,
[`RandomSearcher`][fastadapt.tune.RandomSearcher], samples the space's priors;
a model-based one ([`TPE`][fastadapt.tune.TPE]) proposes from the results so
far:

    result = fa.tune.ASHA(MyTrainable, space, num_trials=60, max_resource=27,
                          searcher=fa.tune.TPE(), seed=0).run()

A searcher holds no state of its own: ``suggest`` is a function of the space,
the observations (every evaluation recorded so far, which the tuner rebuilds
from its trials) and the tuner's seeded generator. So a checkpointed run
resumes with the same proposals, and a synchronous tuner proposes the same
configs on every executor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, List, Mapping, Sequence

import numpy as np

from .space import sample_config

__all__ = ["Observation", "Searcher", "RandomSearcher"]


@dataclass(frozen=True)
class Observation:
    """One evaluation a searcher learns from.

    Attributes
    ----------
    config
        the config the trial trained with up to this evaluation.
    budget
        units completed when the metric was measured.
    loss
        the metric signed so that lower is better (``-metric`` in mode "max"); ``inf`` when the
        trial reported a NaN or infinite metric (it diverged: the worst outcome, not a missing one).
    trial_id
        the trial it came from.
    """

    config: Dict[str, Any]
    budget: int
    loss: float
    trial_id: int


class Searcher:
    """Base class of the searchers: ``suggest`` proposes one config.

    Subclasses set ``name`` and override [`suggest`][fastadapt.tune.Searcher.suggest]
    and [`settings`][fastadapt.tune.Searcher.settings]; they must draw every random
    number from the ``rng`` they are given (never their own), and must not
    keep state between calls, so a resumed run proposes what the uninterrupted
    one would have.
    """

    name: ClassVar[str] = ""

    def settings(self) -> Dict[str, Any]:
        """The searcher's arguments, recorded in the result and checked when a run resumes.

        Returns
        -------
        dict
            argument name -> value (plain JSON values).
        """
        return {}

    def suggest(self, space: Mapping[str, Any], rng: np.random.Generator, observations: Sequence[Observation],
                pending: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
        """A config for a new trial.

        Parameters
        ----------
        space
            the tuner's (checked) space.
        rng
            the tuner's generator for configs; the only source of randomness.
        observations
            every evaluation recorded so far, in the order trials were created, then by budget.
        pending
            configs of trials started but not yet evaluated (a searcher may avoid proposing them
            again).

        Returns
        -------
        dict
            a complete config: one value inside its domain for every domain of the space,
            constants as given.
        """
        raise NotImplementedError

    def describe(self) -> str:
        """``name(arg=value, ...)``: how the searcher prints in results and progress lines.

        Returns
        -------
        str
            the description.
        """
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"{self.name}({args})"

    def __repr__(self) -> str:
        return self.describe()


class RandomSearcher(Searcher):
    """Samples each domain from its prior, independently of any result (the
    default of every tuner: Hyperband, ASHA and PBT as their papers define them)."""

    name = "random"

    def suggest(self, space: Mapping[str, Any], rng: np.random.Generator, observations: Sequence[Observation],
                pending: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
        return sample_config(space, rng)


def signed_loss(metric: Any, mode: str) -> float:
    """The metric as a loss (lower is better) for mode "min"/"max"; ``inf`` when it is missing or not finite."""
    if metric is None or not math.isfinite(metric):
        return math.inf
    return float(metric) if mode == "min" else -float(metric)


def observations_of(trials: Sequence[Any], mode: str) -> List[Observation]:
    """Every evaluation of ``trials`` (TrialRecords, in id order) as Observations."""
    out = []
    for trial in trials:
        for entry in trial.history:
            out.append(Observation(config=trial.config_at(entry["budget"]), budget=int(entry["budget"]),
                                   loss=signed_loss(entry["metric"], mode), trial_id=trial.trial_id))
    return out
