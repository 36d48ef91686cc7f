"""BOHB: Hyperband with configs proposed by a TPE model fitted per budget
(Falkner, Klein, Hutter: "BOHB: Robust and Efficient Hyperparameter
Optimization at Scale", ICML 2018, Algorithm 2), and its asynchronous
variant on ASHA's promotion rule."""

from __future__ import annotations

from typing import Any, Dict

from .asha import ASHA
from .hyperband import Hyperband
from .tpe import TPE

__all__ = ["BOHB", "AsyncBOHB", "bohb_searcher"]

# The paper's settings (Section 4 and hpbandster's defaults): a third of the configs random, the best 15 %
# good, 64 candidates drawn with bandwidths widened 3x, bandwidths at least 1e-3, dims + 1 points per model,
# the KDE's normal-reference bandwidths. One deviation: a prior kernel of weight 0.1 (the paper's KDEs have
# none). With the few observations of a high budget (3 at budget 9 of max_resource=27: 1 good, 2 bad) the bad
# density is narrower than the good one, so without it l/g grows without bound far from every observation
# and the model proposes the region the observations say is worst (measured on metric = x: mean proposed x
# 0.63 without, 0.21 with; Hyperband's random x: 0.5).
BOHB_DEFAULTS: Dict[str, Any] = {"n_startup": None, "random_fraction": 1 / 3, "n_candidates": 64, "gamma": 0.15,
                                 "bandwidth_factor": 3.0, "min_bandwidth": 1e-3, "prior_weight": 0.1,
                                 "bandwidth": "normal_reference"}


def bohb_searcher(**overrides: Any) -> TPE:
    """The TPE that BOHB draws its configs from: the paper's settings, any of them overridden.

    Parameters
    ----------
    **overrides
        [`TPE`][fastadapt.tune.TPE] arguments to change (``random_fraction=0.2``, ...).

    Returns
    -------
    TPE
        the searcher.
    """
    unknown = sorted(set(overrides) - set(BOHB_DEFAULTS))
    if unknown:
        raise TypeError(f"BOHB got unexpected keyword arguments {unknown}; its model takes "
                        f"{', '.join(BOHB_DEFAULTS)} (see fa.tune.TPE) besides the tuner's arguments")
    return TPE(**{**BOHB_DEFAULTS, **overrides})


def _split(kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """Pop the TPE settings out of ``kwargs`` (the rest are the tuner's); refuse ``searcher=``."""
    if "searcher" in kwargs:
        raise TypeError("BOHB draws its configs from its own TPE model, so it takes no searcher=; change the "
                        "model with TPE's arguments (e.g. random_fraction=0.2, n_candidates=32), or run "
                        "fa.tune.Hyperband(..., searcher=...) for another searcher")
    return {k: kwargs.pop(k) for k in list(kwargs) if k in BOHB_DEFAULTS}


class BOHB(Hyperband):
    """BOHB (Falkner, Klein, Hutter, ICML 2018): Hyperband whose configs come
    from a TPE model instead of the prior.

    The brackets are Hyperband's exactly ([`hyperband_schedule`][fastadapt.tune.hyperband_schedule],
    integer arithmetic) and so are the rung decisions (the best ``floor(n_i / eta)`` go on). Each new
    config is proposed by a multivariate [`TPE`][fastadapt.tune.TPE] fitted on the observations of
    the largest budget that has at least ``dims + 1`` of them (random until one has), with the
    paper's settings: a third of the proposals random, the best 15 % modelled as good, 64
    candidates sampled with bandwidths widened 3x, minimum bandwidth 1e-3, normal-reference
    bandwidths; and a prior kernel of weight 0.1 in each density (the paper has none: without it,
    the few observations of a high budget make the ratio ``l/g`` largest far from all of them).

    Synchronous: a bracket's configs are proposed when it starts, from every evaluation of the
    brackets before it, so one seed gives the same result on every executor (the workers of a
    rung run in parallel). ``asynchronous=True`` returns an [`AsyncBOHB`][fastadapt.tune.AsyncBOHB]
    instead (the same model on ASHA's promotion rule: no worker waits for a rung to fill; needs
    ``num_trials``).

    Parameters
    ----------
    max_resource
        ``R``, the most units one config trains (int >= 1).
    eta
        halving rate (int >= 2).
    asynchronous
        False (default): this synchronous BOHB; True: ``AsyncBOHB(trainable, space, num_trials=...,
        max_resource=..., min_resource=..., eta=..., ...)``.

    Other Parameters
    ----------------
    **kwargs
        the model's settings, overriding the paper's: ``n_startup``, ``random_fraction``,
        ``n_candidates``, ``gamma``, ``bandwidth_factor``, ``min_bandwidth``, ``prior_weight``,
        ``bandwidth`` (see [`TPE`][fastadapt.tune.TPE]; ``n_startup=None`` is dims + 1); and the
        arguments of [`fastadapt.tune.Tuner`][fastadapt.tune.Tuner] (``seed``, ``executor``,
        ``checkpoint_dir``, ``trial_timeout``, ...); with ``asynchronous=True`` also ``num_trials``
        and ``min_resource``. ``searcher=`` is refused: BOHB's searcher is its model.

    Examples
    --------
        space = {"lr": fa.tune.loguniform(1e-5, 1e-1), "momentum": fa.tune.uniform(0.0, 0.99)}
        result = fa.tune.BOHB(MyTrainable, space, max_resource=81, eta=3, seed=0).run()
        result.plot("bohb.png")      # every config per budget, coloured by metric
        result = fa.tune.BOHB(MyTrainable, space, max_resource=81, asynchronous=True, num_trials=100,
                              seed=0, executor="sequential").run()
    """

    algorithm = "bohb"

    def __new__(cls, trainable: Any = None, space: Any = None, *args: Any, asynchronous: bool = False,
                **kwargs: Any) -> Any:
        if not isinstance(asynchronous, bool):
            raise TypeError(f"asynchronous must be True or False, got {asynchronous!r}")
        if asynchronous:
            # Not an instance of BOHB, so Python skips BOHB.__init__: the async tuner is built here.
            return AsyncBOHB(trainable, space, *args, **kwargs)
        return super().__new__(cls)

    def __init__(self, trainable: Any, space: Any, *, max_resource: int, eta: int = 3, asynchronous: bool = False,
                 **kwargs: Any):
        model = _split(kwargs)
        for name in ("num_trials", "min_resource"):
            if name in kwargs:
                raise TypeError(f"synchronous BOHB runs Hyperband's brackets, which fix the number of configs "
                                f"and budgets; {name}= belongs to asynchronous=True")
        super().__init__(trainable, space, max_resource=max_resource, eta=eta, searcher=bohb_searcher(**model),
                         **kwargs)


class AsyncBOHB(ASHA):
    """Asynchronous BOHB: ASHA's promotions (a config goes up a rung as soon
    as it is in the top ``1/eta`` of its rung) with each new config proposed
    by BOHB's TPE model (the largest budget with ``dims + 1`` observations;
    see [`BOHB`][fastadapt.tune.BOHB]). Also built by ``fa.tune.BOHB(...,
    asynchronous=True)``.

    Proposals depend on the order jobs finish, so results are reproducible
    with ``executor="sequential"``; parallel runs may differ, as with ASHA.

    Parameters
    ----------
    num_trials
        configs to start.
    max_resource
        ``R``, units at the top rung.
    min_resource
        units at rung 0.
    eta
        promotion rate (int >= 2).

    Other Parameters
    ----------------
    **kwargs
        the model's settings, overriding the paper's (as for [`BOHB`][fastadapt.tune.BOHB]; see
        [`TPE`][fastadapt.tune.TPE]), and the arguments of
        [`fastadapt.tune.Tuner`][fastadapt.tune.Tuner] (no ``searcher``).

    Examples
    --------
        result = fa.tune.AsyncBOHB(MyTrainable, space, num_trials=100, max_resource=81, seed=0,
                                   executor="sequential").run()
    """

    algorithm = "bohb_async"

    def __init__(self, trainable: Any, space: Any, *, num_trials: int, max_resource: int, min_resource: int = 1,
                 eta: int = 3, **kwargs: Any):
        model = _split(kwargs)
        super().__init__(trainable, space, num_trials=num_trials, max_resource=max_resource,
                         min_resource=min_resource, eta=eta, searcher=bohb_searcher(**model), **kwargs)

