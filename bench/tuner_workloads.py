"""Workloads of the tuner benchmark (bench/test_tuners.py): trainables whose
budget is epochs (or steps of a synthetic curve), each with its search space
and a known optimum or a cheap exact reference.

- ``mnist``: ``fastadapt.tune.mnist.MnistMLP`` (784-64-10 MLP, SGD) on the
  first 2000 training samples of the bundled MNIST subset; tuned lr, batch
  size, momentum, weight decay; metric: validation loss after the epochs
  trained. No known optimum.
- ``hartmann``: a multi-fidelity Hartmann-6. The value after ``b`` steps is
  ``h6(x) + |x - p4|^2 / b``: the classic Hartmann-6 (minimum -3.32237 at
  x* = (0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573)) plus a
  fidelity bias that pulls low budgets towards ``p4``, the centre of its
  fourth (local) basin, and fades as 1/b, so cheap evaluations rank configs
  with a misleading bias, as short training runs do. Exact, no noise.
- ``lstsq``: ill-conditioned least squares (500 training and 500 validation
  rows, 20 features with singular values from 1 down to 0.01, noise 0.3),
  minibatch SGD (batch 32) with tuned lr, momentum and weight decay; metric:
  half the validation MSE. Reference: the best ridge solution on the
  validation set (closed form over a lambda grid); the noise floor is 0.045.

Every trainable is resumable (``save``/``load``), so a job continues a trial
and a trial's ``cost`` is exactly the epochs it trained.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional

import numpy as np

import fastadapt as fa
from fastadapt.tune.mnist import MnistMLP

T = fa.tune


@dataclass
class Workload:
    name: str
    trainable: Any
    space: Dict[str, Any]
    max_resource: int             # R: epochs (steps) of a full-budget trial
    metric: str = "metric"
    label: str = "val loss"             # what the metric is, for the plot
    eta: int = 3
    unit: str = "epochs"
    optimum: Optional[float] = None    # a known optimum of the metric (lower bound), for the plot and table
    reference: Optional[str] = None    # what the table says about the optimum / reference
    describe: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)

    def value(self, out: Any) -> float:
        """The metric out of what ``train`` returned."""
        return float(out[self.metric]) if isinstance(out, dict) else float(out)


# ---- MNIST --------------------------------------------------------------------------------------------------
MNIST_SPACE = {"lr": T.loguniform(1e-3, 1.0), "batch_size": T.choice([16, 32, 64, 128]),
               "momentum": T.uniform(0.0, 0.99), "weight_decay": T.loguniform(1e-6, 1e-2),
               "hidden": 64, "train_samples": 2000}


def mnist(max_resource: int = 27) -> Workload:
    return Workload("mnist", MnistMLP, MNIST_SPACE, max_resource, metric="val_loss",
                    describe="MNIST MLP 784-64-10, SGD, 2000 training samples; val loss")


# ---- multi-fidelity Hartmann-6 -----------------------------------------------------------------------------
H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
H6_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                 [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]], dtype=np.float64)
H6_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                        [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
H6_MIN = -3.32237
H6_ARGMIN = np.array([0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573])
HARTMANN_SPACE = {f"x{i}": T.uniform(0.0, 1.0) for i in range(6)}


def hartmann6(x: np.ndarray) -> float:
    return float(-np.sum(H6_ALPHA * np.exp(-np.sum(H6_A * (x - H6_P) ** 2, axis=1))))


def hartmann_value(x: np.ndarray, steps: int) -> float:
    """The multi-fidelity value after ``steps`` (>= 1) steps."""
    return hartmann6(x) + float(np.sum((x - H6_P[3]) ** 2)) / steps


class Hartmann(T.Trainable):
    def __init__(self, config):
        self.x = np.array([config[f"x{i}"] for i in range(6)])
        self.steps = 0

    def train(self, budget):
        self.steps += budget
        return hartmann_value(self.x, self.steps)

    def save(self):
        return self.steps

    def load(self, state):
        self.steps = int(state)


def hartmann(max_resource: int = 27) -> Workload:
    return Workload("hartmann", Hartmann, HARTMANN_SPACE, max_resource, unit="steps", optimum=H6_MIN, label="value",
                    reference=f"optimum {H6_MIN} (Hartmann-6's minimum; at b steps the bias adds >= 0)",
                    describe="multi-fidelity Hartmann-6, h6(x) + |x - p4|^2 / b")


# ---- ill-conditioned least squares -------------------------------------------------------------------------
LSTSQ_ROWS, LSTSQ_FEATURES, LSTSQ_NOISE, LSTSQ_BATCH = 500, 20, 0.3, 32
LSTSQ_SPACE = {"lr": T.loguniform(1e-4, 3.0), "momentum": T.uniform(0.0, 0.99),
               "weight_decay": T.loguniform(1e-6, 1.0)}


@functools.lru_cache(maxsize=1)
def lstsq_data():
    """``(X, y, X_val, y_val)``, the same in every process (seed 0)."""
    rng = np.random.default_rng(0)
    singular = np.logspace(0, -2, LSTSQ_FEATURES)
    basis, _ = np.linalg.qr(rng.standard_normal((LSTSQ_FEATURES, LSTSQ_FEATURES)))
    X = rng.standard_normal((2 * LSTSQ_ROWS, LSTSQ_FEATURES)) @ (singular[:, None] * basis)
    w = rng.standard_normal(LSTSQ_FEATURES) * 3.0
    y = X @ w + LSTSQ_NOISE * rng.standard_normal(2 * LSTSQ_ROWS)
    return X[:LSTSQ_ROWS], y[:LSTSQ_ROWS], X[LSTSQ_ROWS:], y[LSTSQ_ROWS:]


def lstsq_loss(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    return 0.5 * float(np.mean((X @ w - y) ** 2))


@functools.lru_cache(maxsize=1)
def lstsq_reference() -> float:
    """The best validation loss of the ridge solutions over a lambda grid (closed form)."""
    X, y, Xv, yv = lstsq_data()
    best = math.inf
    for lam in np.concatenate([[0.0], np.logspace(-8, 2, 101)]):
        w = np.linalg.solve(X.T @ X / len(y) + lam * np.eye(X.shape[1]), X.T @ y / len(y))
        best = min(best, lstsq_loss(w, Xv, yv))
    return best


class LeastSquares(T.Trainable):
    def __init__(self, config):
        self.X, self.y, self.X_val, self.y_val = lstsq_data()
        self.params = {"w": np.zeros(LSTSQ_FEATURES)}
        self.opt = fa.SGD(lr=config["lr"], momentum=config["momentum"], weight_decay=config["weight_decay"])
        self.epochs = 0

    def train(self, budget):
        with np.errstate(all="ignore"):  # a too-large lr diverges: the tuner fails the trial on its NaN
            for _ in range(budget):
                for Xb, yb in fa.batches(self.X, self.y, LSTSQ_BATCH, shuffle=True, seed=self.epochs):
                    w = self.params["w"]
                    self.opt.update(self.params, {"w": Xb.T @ (Xb @ w - yb) / len(yb)})
                self.epochs += 1
            return lstsq_loss(self.params["w"], self.X_val, self.y_val)

    def save(self):
        return {"w": self.params["w"].copy(), "opt": self.opt.state_dict(), "epochs": self.epochs}

    def load(self, state):
        self.params = {"w": state["w"].copy()}
        self.opt.load_state_dict(state["opt"], params=self.params)
        self.epochs = state["epochs"]


def lstsq(max_resource: int = 27) -> Workload:
    return Workload("lstsq", LeastSquares, LSTSQ_SPACE, max_resource, optimum=None,
                    reference=f"best ridge solution on the validation set: {lstsq_reference():.4f}",
                    describe="ill-conditioned least squares (kappa(X) = 100), SGD batch 32; half val MSE",
                    extra={"ridge": lstsq_reference()})


WORKLOADS: Dict[str, Callable[..., Workload]] = {"mnist": mnist, "hartmann": hartmann, "lstsq": lstsq}
