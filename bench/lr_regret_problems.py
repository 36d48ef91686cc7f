"""The problems, optimizers and scoring of the LR range test's regret
benchmark (bench/test_lr_find_regret.py).

What a suggestion is for: train at it. So a suggestion is scored by its
regret, ``final loss after TRAIN_STEPS steps at the suggested lr / the best
final loss over a GRID_POINTS-point log grid of lrs``, each run from the same
initial params over the same batch order (the seed), the final loss taken on
the whole training set. A run that blows up scores ``inf``.

The sweep may see the loss through 20% multiplicative noise (``noise``),
as a real curve is noisy; the training runs that score it do not.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

import fastadapt as fa

TRAIN_STEPS = 200
GRID = np.geomspace(1e-5, 10.0, 25)       # factor 1.78 between points
SEEDS = tuple(range(6))                      # batch orders (and noise draws)
NOISES = (0.0, 0.2)
OPTIMIZERS: Dict[str, Callable[[], Any]] = {
    "sgd": lambda: fa.SGD(),
    "sgd-momentum": lambda: fa.SGD(momentum=0.9),
    "adam": lambda: fa.Adam(),
}


@dataclass(frozen=True, eq=False)
class Problem:
    name: str
    init: Callable[[], Any]                            # fresh params
    loss_and_grad: Callable[[Any, Any], Tuple[float, Any]]
    full_loss: Callable[[Any], float]                  # loss on all the training data
    batches: Callable[[int], List[Any]]                # one pass in the seed's order


def _least_squares(name: str, condition: float) -> Problem:
    problem = fa.problems.least_squares(n_samples=512, n_features=20, condition=condition, noise=0.1, seed=0)
    return Problem(name, problem.init_params, problem.loss_and_grad,
                   lambda p: problem.loss_and_grad(p, None)[0], lambda seed: problem.batches(32, seed=seed))


def _classifier(name: str, X: np.ndarray, y: np.ndarray, sizes: List[int], batch_size: int) -> Problem:
    model = fa.models.MLP(sizes, seed=0)
    return Problem(name, lambda: model.init_params(0), model.loss_and_grad, lambda p: model.loss(p, (X, y)),
                   lambda seed: fa.problems.shuffled_batches(X, y, batch_size, seed=seed))


def _blobs() -> Problem:
    # 4 overlapping Gaussian classes in 10 dimensions: not separable, so the loss has a floor
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((4, 10)) * 1.5
    y = rng.integers(0, 4, 1000)
    X = (centers[y] + rng.standard_normal((1000, 10))).astype(np.float32)
    return _classifier("mlp-blobs", X, y, [10, 32, 4], 32)


def _mnist() -> Problem:
    data = fa.datasets.load_mnist()
    return _classifier("mlp-mnist", data.X_train[:2000], data.y_train[:2000], [784, 32, 10], 64)


def problems() -> List[Problem]:
    found = [_least_squares("lsq-well", 10.0), _least_squares("lsq-ill", 1e3), _blobs()]
    try:
        found.append(_mnist())
    except FileNotFoundError:   # no MNIST here: the other three still run
        pass
    return found


def train(problem: Problem, optimizer: str, lr: float, seed: int, steps: int = TRAIN_STEPS) -> float:
    """Full-data loss after ``steps`` steps at ``lr`` (inf if the run blew up)."""
    params = problem.init()
    opt = OPTIMIZERS[optimizer]()
    opt.lr = lr
    with np.errstate(all="ignore"):
        for batch in itertools.islice(itertools.cycle(problem.batches(seed)), steps):
            loss, grads = problem.loss_and_grad(params, batch)
            if not math.isfinite(loss):
                return math.inf
            opt.update(params, grads)
        final = problem.full_loss(params)
    return final if math.isfinite(final) else math.inf


class Case:
    """One (problem, optimizer, seed): trains lazily and remembers each lr's result."""

    def __init__(self, problem: Problem, optimizer: str, seed: int):
        self.problem, self.optimizer, self.seed = problem, optimizer, seed
        self._final = functools.lru_cache(maxsize=None)(lambda lr: train(problem, optimizer, lr, seed))

    @functools.cached_property
    def best(self) -> float:
        return min(self._final(float(lr)) for lr in GRID)

    def regret(self, lr: float) -> float:
        if lr is None or not math.isfinite(lr) or lr <= 0:
            return math.inf
        return self._final(float(lr)) / self.best

    def noisy_loss_and_grad(self, noise: float) -> Callable[[Any, Any], Tuple[float, Any]]:
        """The problem's loss as the sweep sees it: times exp(noise * z - noise^2 / 2),
        a positive factor of mean 1 and spread ``noise`` (z standard normal, seeded)."""
        rng = np.random.default_rng(1000 + self.seed)
        inner = self.problem.loss_and_grad

        def loss_and_grad(params, batch):
            loss, grads = inner(params, batch)
            if noise:
                loss *= math.exp(noise * rng.standard_normal() - noise * noise / 2)
            return loss, grads

        return loss_and_grad

    def sweep(self, noise: float, **kwargs: Any) -> "fa.LRFindResult":
        params = self.problem.init()
        with np.errstate(all="ignore"):
            return fa.lr_find(OPTIMIZERS[self.optimizer](), params, self.noisy_loss_and_grad(noise),
                              self.problem.batches(self.seed), **kwargs)
