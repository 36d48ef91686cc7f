"""Deterministic fake trainables for the tuner tests.

They live in an importable module (not in a test file's local scope) because
the process and Ray executors unpickle them in other processes by module
path, exactly as a user's trainables are.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Dict, List

import fastadapt as fa

# Jobs run by the sequential executor (in this process), for counting re-runs.
CALLS: List[Dict[str, Any]] = []


class Quadratic(fa.tune.Trainable):
    """Metric ``(x - 0.3)^2 + 1 / (1 + trained)``: better with budget, best
    near x = 0.3. Resumable: the state is the units trained so far."""

    def __init__(self, config):
        self.config = dict(config)
        self.trained = 0

    def train(self, budget):
        CALLS.append({"x": self.config["x"], "from": self.trained, "budget": budget})
        self.trained += budget
        return (self.config["x"] - 0.3) ** 2 + 1.0 / (1 + self.trained)

    def save(self):
        return {"trained": self.trained}

    def load(self, state):
        self.trained = state["trained"]

    def set_config(self, config):
        self.config = dict(config)


class Overfits(Quadratic):
    """Quadratic plus ``|trained - 3| / 10``: every config is at its best after 3 units."""

    def train(self, budget):
        super().train(budget)
        return (self.config["x"] - 0.3) ** 2 + abs(self.trained - 3) / 10


def quadratic_function(config, budget):
    """The same metric as a plain function (trains from scratch each call)."""
    return (config["x"] - 0.3) ** 2 + 1.0 / (1 + budget)


def nan_above_half(config, budget):
    """A diverging trial: NaN metric for x above 0.5."""
    return float("nan") if config["x"] > 0.5 else config["x"]


def keyboard_interrupt_above_half(config, budget):
    """A trainable that raises KeyboardInterrupt itself for x above 0.5 (not a Ctrl-C of the driver)."""
    if config["x"] > 0.5:
        raise KeyboardInterrupt
    return config["x"]


class ConstantMetric(fa.tune.Trainable):
    """Metric ``x`` whatever the budget: successive-halving decisions are
    then exactly "the smallest x go on"."""

    def __init__(self, config):
        self.x = config["x"]
        self.trained = 0

    def train(self, budget):
        self.trained += budget
        return self.x

    def save(self):
        return {"trained": self.trained}

    def load(self, state):
        self.trained = state["trained"]


class Accumulator(fa.tune.Trainable):
    """PBT fake: ``score += rate * budget`` each step (mode "max"), so ranks
    follow rates and a copied score is visible in the next metric. Reports
    the rate actually in effect, to check ``set_config`` after ``load``."""

    def __init__(self, config):
        self.score = 0.0
        self.rate = config["rate"]
        self.loaded_rate = None

    def train(self, budget):
        self.score += self.rate * budget
        return {"metric": self.score, "rate_in_effect": self.rate}

    def save(self):
        # The state carries the rate like an optimizer state_dict carries lr.
        return {"score": self.score, "rate": self.rate}

    def load(self, state):
        self.score = state["score"]
        self.rate = state["rate"]

    def set_config(self, config):
        self.rate = config["rate"]


class RaisesAboveThreshold(Quadratic):
    """Quadratic whose train raises for x above config["fail_above"]."""

    def train(self, budget):
        if self.config["x"] > self.config["fail_above"]:
            raise ValueError(f"boom at x={self.config['x']:.3f}")
        return super().train(budget)


class DiesOnce(Quadratic):
    """Kills its worker process (os._exit) the first time a config with
    ``die`` set trains, marked by creating the file ``marker``."""

    def train(self, budget):
        if self.config.get("die") and not os.path.exists(self.config["marker"]):
            open(self.config["marker"], "w").close()
            os._exit(17)
        return super().train(budget)


class Misbehaves(Quadratic):
    """For x above 0.5, kills its worker (``config["how"] == "die"``) or
    sleeps for an hour (``"hang"``); a plain Quadratic otherwise."""

    def train(self, budget):
        if self.config["x"] > 0.5:
            if self.config["how"] == "die":
                os._exit(9)
            time.sleep(3600)
        return super().train(budget)


class NoSetConfig:
    """Resumable but without set_config: PBT must refuse it."""

    def __init__(self, config):
        self.trained = 0

    def train(self, budget):
        self.trained += budget
        return 0.0

    def save(self):
        return self.trained

    def load(self, state):
        self.trained = state


class ExitsTheDriver(Quadratic):
    """Quadratic that appends each finished job to the file named by
    ``FASTADAPT_TUNE_TEST_LOG`` and, when ``FASTADAPT_TUNE_TEST_EXIT_AT`` is
    the number of jobs logged so far, ends its whole process with
    ``os._exit`` (with the sequential executor: the driver, mid-run)."""

    def train(self, budget):
        log = os.environ["FASTADAPT_TUNE_TEST_LOG"]
        done = 0
        if os.path.exists(log):
            with open(log) as f:
                done = len(f.readlines())
        if str(done) == os.environ.get("FASTADAPT_TUNE_TEST_EXIT_AT"):
            os._exit(3)
        metric = super().train(budget)
        with open(log, "a") as f:
            f.write(f"{self.config['x']!r} {self.trained - budget} {budget}\n")
        return metric


class UnpicklableState(Quadratic):
    """Quadratic whose save() holds a lock for x above 0.5: that state cannot
    be pickled (nor sent to the driver, nor written to a checkpoint)."""

    def save(self):
        state = super().save()
        if self.config["x"] > 0.5:
            state["lock"] = threading.Lock()
        return state


def infinite_above_half(config, budget):
    """A diverging trial: -inf for x above 0.5 (the best possible value under
    mode "min" if it were ranked), +inf when config["sign"] is +1."""
    if config["x"] > 0.5:
        return config.get("sign", -1) * float("inf")
    return config["x"]


class NestedConfig(Quadratic):
    """Quadratic on config["optim"]["x"]; fails loudly when a value in its
    nested config is not a plain number (a Domain handed over unsampled)."""

    def __init__(self, config):
        for key, value in config["optim"].items():
            if not isinstance(value, (int, float)):
                raise TypeError(f"config['optim'][{key!r}] is a {type(value).__name__}, not a number")
        super().__init__({"x": config["optim"]["x"]})
        self.config = config

    def train(self, budget):
        self.trained += budget
        return (self.config["optim"]["x"] - 0.3) ** 2 + 1.0 / (1 + self.trained)


class Interrupt(Exception):
    """Raised by :func:`interrupt_after`: stands for a driver crash."""


def interrupt_after(n):
    """An ``on_result`` callback that stops the driver after ``n`` results."""
    seen = []

    def on_result(trial):
        seen.append(trial.trial_id)
        if len(seen) == n:
            raise Interrupt(f"driver stopped after {n} results")

    return on_result


def mixed_objective(config, budget):
    """A 4-d loss over a log, a linear, an int and a choice dimension, best at lr = 10**-2.5, x = 0.3,
    n = 6, act = "relu" (0 there); budget-free, so full-budget search with one unit is cheap."""
    import math
    return ((math.log10(config["lr"]) + 2.5) ** 2 + 4 * (config["x"] - 0.3) ** 2 + (config["n"] - 6) ** 2 / 10
            + (0.0 if config["act"] == "relu" else 0.5))


def conditional_objective(config, budget):
    """A loss over a conditional space: sgd is best at momentum 0.8 (loss 0.3 there), adam at
    beta = 0.1 and k = 2 (loss 0 there); a little better with budget."""
    import math
    optim = config["optim"]
    if optim["name"] == "sgd":
        loss = (optim["momentum"] - 0.8) ** 2 + 0.3
    else:
        loss = (math.log10(optim["beta"]) + 1) ** 2 + abs(optim["k"] - 2) / 10
    return loss + 1.0 / (1 + budget)


class ConditionalPBT(Quadratic):
    """A resumable trainable over the conditional space of conditional_objective (for PBT)."""

    def train(self, budget):
        self.trained += budget
        return conditional_objective(self.config, self.trained)
