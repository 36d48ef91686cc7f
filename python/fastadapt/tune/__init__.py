"""Hyperparameter tuning: Hyperband, successive halving, ASHA, Population
Based Training, PB2, TPE and BOHB, on the driver, a local process pool or Ray.

    import fastadapt as fa
    space = {"lr": fa.tune.loguniform(1e-5, 1e-1), "batch_size": fa.tune.choice([16, 32, 64]),
             "momentum": fa.tune.uniform(0.0, 0.99)}
    fa.tune.hyperband_schedule(max_resource=81, eta=3)      # the bracket table, no training
    result = fa.tune.Hyperband(MyTrainable, space, max_resource=81, eta=3, mode="min", seed=0).run()
    result.best_config; result.to_json("hb.json"); result.plot("hb.png")

A trainable is a class built from a config with ``train(budget) -> metric``
(and ``save``/``load``/``set_config`` to resume and for PBT; see
[`Trainable`][fastadapt.tune.Trainable]), or a function ``f(config, budget) -> metric``.
"""

from .asha import ASHA
from .bohb import BOHB, AsyncBOHB
from .executors import Executor, ProcessExecutor, SequentialExecutor
from .hyperband import Hyperband, SuccessiveHalving, hyperband_schedule, successive_halving_schedule
from .pb2 import PB2
from .median import MedianStopping
from .pbt import PBT
from .ray_executor import RayExecutor
from .results import TrialRecord, TuneResult
from .search import Search
from .searcher import Observation, RandomSearcher, Searcher
from .space import Categorical, Domain, Float, Integer, choice, loguniform, randint, sample_config, uniform
from .tpe import TPE
from .trainable import Trainable
from .tuner import Ask, Tuner

__all__ = [
    "uniform",
    "loguniform",
    "randint",
    "choice",
    "sample_config",
    "Domain",
    "Float",
    "Integer",
    "Categorical",
    "Trainable",
    "Tuner",
    "Ask",
    "Hyperband",
    "SuccessiveHalving",
    "ASHA",
    "BOHB",
    "AsyncBOHB",
    "PBT",
    "PB2",
    "Search",
    "MedianStopping",
    "Searcher",
    "RandomSearcher",
    "TPE",
    "Observation",
    "hyperband_schedule",
    "successive_halving_schedule",
    "Executor",
    "SequentialExecutor",
    "ProcessExecutor",
    "RayExecutor",
    "TrialRecord",
    "TuneResult",
]
