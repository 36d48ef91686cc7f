"""A tiny multilayer perceptron in plain NumPy, for examples and tests.

The model is the trainer's contract made concrete: a parameter tree plus pure
functions of ``(params, batch)``. It is the seed article's MNIST network
(784-128-10, ReLU, softmax cross-entropy) without a framework:

    model = fa.models.MLP([784, 128, 10], seed=0)
    loss, grads = model.loss_and_grad(model.params, (X, y))
    model.accuracy(model.params, (X_test, y_test))
"""

from __future__ import annotations

import numbers
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

__all__ = ["MLP"]

Params = Dict[str, Dict[str, np.ndarray]]
Batch = Tuple[np.ndarray, np.ndarray]


class MLP:
    """Fully connected network: ReLU hidden layers, a linear output layer,
    softmax cross-entropy loss (mean over the batch).

    ``params`` is ``{"fc1": {"w": (in, out), "b": (out,)}, "fc2": ...}``. The
    methods take the parameters explicitly, so the same model serves a
    trainer, an LR range test or a hand-written loop on any copy of them.
    A batch is ``(X, y)``: ``X`` of shape ``(n, inputs)`` (any real dtype; it
    is cast to ``dtype``), ``y`` integer class labels of shape ``(n,)``.

    Parameters
    ----------
    layer_sizes
        ``[inputs, hidden..., classes]``, at least two positive ints.
    seed
        seed of the He-normal initialization (``w ~ N(0, 2 / fan_in)``, ``b = 0``; He et al. 2015,
        the usual choice in front of ReLU).
    dtype
        ``np.float32`` (default) or ``np.float64``.
    """

    def __init__(self, layer_sizes: Sequence[int], *, seed: int = 0, dtype: Any = np.float32):
        if isinstance(layer_sizes, (str, bytes)) or not isinstance(layer_sizes, Sequence):
            raise TypeError(f"layer_sizes must be a list of ints such as [784, 128, 10], got {layer_sizes!r}")
        if len(layer_sizes) < 2:
            raise ValueError(f"layer_sizes needs at least [inputs, classes], got {list(layer_sizes)!r}")
        for i, n in enumerate(layer_sizes):
            if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
                raise ValueError(f"layer_sizes[{i}] must be a positive int, got {n!r}")
        if layer_sizes[-1] < 2:
            raise ValueError(f"the last layer size is the number of classes and must be >= 2, got {layer_sizes[-1]}")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype.name}")
        self.layer_sizes: Tuple[int, ...] = tuple(int(n) for n in layer_sizes)
        self.seed = seed
        self.params: Params = self.init_params(seed)

    @property
    def num_classes(self) -> int:
        """Outputs of the last layer: ``layer_sizes[-1]``."""
        return self.layer_sizes[-1]

    @property
    def layer_names(self) -> List[str]:
        """The top-level keys of ``params``, in order: ``["fc1", "fc2", ...]``."""
        return [f"fc{i + 1}" for i in range(len(self.layer_sizes) - 1)]

    def init_params(self, seed: int = 0) -> Params:
        """A fresh He-normal parameter tree (does not touch ``self.params``)."""
        rng = np.random.default_rng(seed)
        params: Params = {}
        for name, n_in, n_out in zip(self.layer_names, self.layer_sizes[:-1], self.layer_sizes[1:]):
            w = rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)
            params[name] = {"w": w.astype(self.dtype), "b": np.zeros(n_out, self.dtype)}
        return params

    # ---- forward and backward ----------------------------------------------
    def _inputs(self, batch: Any) -> Batch:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise TypeError(f"batch must be a pair (X, y), got {type(batch).__name__}")
        X, y = batch
        X = self._features(X)
        y = np.asarray(y)
        if y.shape != (X.shape[0],) or y.dtype.kind not in "iu":
            raise ValueError(f"y must be integer class labels of shape ({X.shape[0]},), got "
                             f"{y.dtype.name} array of shape {y.shape}")
        if y.size and (y.min() < 0 or y.max() >= self.num_classes):
            raise ValueError(f"y must hold class labels in [0, {self.num_classes}), got values "
                             f"from {y.min()} to {y.max()}")
        return X, y

    def _features(self, X: Any) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.layer_sizes[0]:
            raise ValueError(f"X must have shape (n, {self.layer_sizes[0]}), got {X.shape}")
        if X.dtype.kind not in "uif":
            raise TypeError(f"X must hold real numbers, got dtype {X.dtype.name}")
        return X.astype(self.dtype, copy=False)

    def _forward(self, params: Params, X: np.ndarray) -> Tuple[np.ndarray, List[np.ndarray]]:
        """Logits and the input of every layer (kept for the backward pass)."""
        names = self.layer_names
        layer_inputs = []
        h = X
        for name in names[:-1]:
            layer_inputs.append(h)
            h = np.maximum(h @ params[name]["w"] + params[name]["b"], 0)
        layer_inputs.append(h)
        last = params[names[-1]]
        return h @ last["w"] + last["b"], layer_inputs

    def logits(self, params: Params, X: Any) -> np.ndarray:
        """Pre-softmax outputs, shape ``(n, classes)``."""
        return self._forward(params, self._features(X))[0]

    def predict(self, params: Params, X: Any) -> np.ndarray:
        """Predicted class labels, shape ``(n,)``."""
        return np.argmax(self.logits(params, X), axis=1)

    @staticmethod
    def _log_softmax(logits: np.ndarray) -> np.ndarray:
        # Shifting by the row maximum keeps exp() finite for any logits.
        shifted = logits - logits.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

    def loss(self, params: Params, batch: Any) -> float:
        """Mean softmax cross-entropy of the batch."""
        X, y = self._inputs(batch)
        logp = self._log_softmax(self._forward(params, X)[0])
        return float(-logp[np.arange(len(y)), y].mean(dtype=np.float64))

    def loss_and_grad(self, params: Params, batch: Any) -> Tuple[float, Params]:
        """Mean cross-entropy and its gradient, a tree like ``params`` (same dtypes)."""
        X, y = self._inputs(batch)
        n = len(y)
        if n == 0:
            raise ValueError("batch is empty; batches need at least one sample")
        logits, layer_inputs = self._forward(params, X)
        logp = self._log_softmax(logits)
        rows = np.arange(n)
        loss = float(-logp[rows, y].mean(dtype=np.float64))
        # d(mean CE)/d(logits) = (softmax - onehot) / n
        delta = np.exp(logp)
        delta[rows, y] -= 1
        delta /= n
        grads: Params = {}
        names = self.layer_names
        for i in range(len(names) - 1, -1, -1):
            h = layer_inputs[i]
            grads[names[i]] = {"w": h.T @ delta, "b": delta.sum(axis=0)}
            if i:
                # ReLU passes gradient where its input was positive, i.e. where its output is.
                delta = (delta @ params[names[i]]["w"].T) * (h > 0)
        return loss, {name: grads[name] for name in names}

    def accuracy(self, params: Params, batch: Any) -> float:
        """Fraction of samples whose predicted class is the label."""
        X, y = self._inputs(batch)
        if len(y) == 0:
            raise ValueError("batch is empty; accuracy needs at least one sample")
        return float(np.mean(np.argmax(self._forward(params, X)[0], axis=1) == y))

    def __repr__(self) -> str:
        return f"MLP({list(self.layer_sizes)!r}, seed={self.seed!r}, dtype={self.dtype.name})"
