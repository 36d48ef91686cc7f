"""The NumPy models of the comparison suite, each with its exact gradient
(tests/test_compare.py checks every one against finite differences).

Softmax regression and the MLPs are [`fastadapt.data.models.MLP`][fastadapt.models.MLP]
(softmax regression is an MLP without hidden layers); least squares is
[`fastadapt.data.problems.LeastSquares`][fastadapt.problems.LeastSquares]. Here are the models the
package did not have: binary logistic regression, a one-hidden-layer
autoencoder and a low-rank matrix factorization. Each takes its parameters
explicitly, ``loss_and_grad(params, batch) -> (loss, grads)``, as the
trainer's contract; a batch is a tuple of arrays sharing their first axis.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np

from .._checks import integer, real

__all__ = ["LogisticRegression", "Autoencoder", "MatrixFactorization"]

Params = Dict[str, Any]


def _softplus(z: np.ndarray) -> np.ndarray:
    # log(1 + e^z) without overflow for large |z|.
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


class LogisticRegression:
    """Binary logistic regression: ``p(y=1|x) = sigmoid(x w + b)``, mean
    log-loss. ``y`` holds 0/1 labels. Parameters start at zero (the loss is
    convex; any start reaches the same optimum)."""

    def __init__(self, n_features: int, dtype: Any = np.float64):
        self.n_features = integer("n_features", n_features, 1)
        self.dtype = np.dtype(dtype)

    def init_params(self, seed: int = 0) -> Params:
        del seed  # zero start: the seed changes only the batch order
        return {"w": np.zeros(self.n_features, self.dtype), "b": np.zeros(1, self.dtype)}

    def loss(self, params: Params, batch: Tuple[np.ndarray, np.ndarray]) -> float:
        X, y = batch
        z = X @ params["w"] + params["b"][0]
        return float(np.mean(_softplus(z) - y * z, dtype=np.float64))

    def loss_and_grad(self, params: Params, batch: Tuple[np.ndarray, np.ndarray]) -> Tuple[float, Params]:
        X, y = batch
        z = X @ params["w"] + params["b"][0]
        loss = float(np.mean(_softplus(z) - y * z, dtype=np.float64))
        # d/dz (softplus(z) - y z) = sigmoid(z) - y, written so that exp never overflows.
        e = np.exp(-np.abs(z))
        sigmoid = np.where(z >= 0, 1 / (1 + e), e / (1 + e))
        delta = ((sigmoid - y) / len(y)).astype(self.dtype)
        return loss, {"w": X.T @ delta, "b": np.array([delta.sum()], self.dtype)}

    def accuracy(self, params: Params, batch: Tuple[np.ndarray, np.ndarray]) -> float:
        X, y = batch
        return float(np.mean((X @ params["w"] + params["b"][0] > 0) == (y > 0.5)))


class Autoencoder:
    """``x -> tanh(x W1 + b1) -> h W2 + b2``, loss ``mean((out - x)^2) / 2``
    over samples and features. Weights ``N(0, 1 / fan_in)``, zero biases. A
    batch is ``(X,)`` or ``(X, X)``: the target is the input.

    tanh, not ReLU: with 32 ReLU units on MNIST, Adam at every learning rate
    from 3e-4 to 3e-2 killed enough units to stall at a loss of 0.034 within
    600 steps, while tanh reached 0.0096 (measured): a baseline stuck on a
    plateau would make a poor target."""

    def __init__(self, n_inputs: int, n_hidden: int, dtype: Any = np.float32):
        self.n_inputs = integer("n_inputs", n_inputs, 1)
        self.n_hidden = integer("n_hidden", n_hidden, 1)
        self.dtype = np.dtype(dtype)

    def init_params(self, seed: int = 0) -> Params:
        rng = np.random.default_rng(seed)
        n, h = self.n_inputs, self.n_hidden
        return {"enc": {"w": (rng.standard_normal((n, h)) * np.sqrt(1.0 / n)).astype(self.dtype),
                        "b": np.zeros(h, self.dtype)},
                "dec": {"w": (rng.standard_normal((h, n)) * np.sqrt(1.0 / h)).astype(self.dtype),
                        "b": np.zeros(n, self.dtype)}}

    def _forward(self, params: Params, X: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        h = np.tanh(X @ params["enc"]["w"] + params["enc"]["b"])
        return h, h @ params["dec"]["w"] + params["dec"]["b"]

    def loss(self, params: Params, batch: Tuple[np.ndarray, ...]) -> float:
        X = batch[0]
        residual = self._forward(params, X)[1] - X
        return 0.5 * float(np.mean(np.square(residual, dtype=np.float64)))

    def loss_and_grad(self, params: Params, batch: Tuple[np.ndarray, ...]) -> Tuple[float, Params]:
        X = batch[0]
        h, out = self._forward(params, X)
        residual = out - X
        loss = 0.5 * float(np.mean(np.square(residual, dtype=np.float64)))
        d_out = residual / residual.size
        d_h = (d_out @ params["dec"]["w"].T) * (1 - h * h)  # tanh' = 1 - tanh^2
        return loss, {"enc": {"w": X.T @ d_h, "b": d_h.sum(axis=0)},
                      "dec": {"w": h.T @ d_out, "b": d_out.sum(axis=0)}}


class MatrixFactorization:
    """Predict entry ``(i, j)`` of a matrix as ``U[i] . V[j]``; loss
    ``mean((U[i] . V[j] - value)^2) / 2 + l2 / 2 * (|U|^2 + |V|^2)`` over the
    observed entries of the batch. A batch is ``(ij, values)``: ``ij`` an
    integer array of shape ``(k, 2)``. ``mse`` is the loss without the
    penalty, the metric on held-out entries. Factors start as
    ``N(0, init_scale^2)``."""

    def __init__(self, n_rows: int, n_cols: int, rank: int, l2: float = 0.0, init_scale: float = 0.3,
                 dtype: Any = np.float64):
        self.n_rows = integer("n_rows", n_rows, 1)
        self.n_cols = integer("n_cols", n_cols, 1)
        self.rank = integer("rank", rank, 1)
        self.l2 = real("l2", l2, low=0.0)
        self.init_scale = real("init_scale", init_scale, low=0.0, low_open=True)
        self.dtype = np.dtype(dtype)

    def init_params(self, seed: int = 0) -> Params:
        rng = np.random.default_rng(seed)
        return {"U": (self.init_scale * rng.standard_normal((self.n_rows, self.rank))).astype(self.dtype),
                "V": (self.init_scale * rng.standard_normal((self.n_cols, self.rank))).astype(self.dtype)}

    def _residual(self, params: Params, batch: Tuple[np.ndarray, np.ndarray]) -> Tuple[np.ndarray, ...]:
        ij, values = batch
        rows, cols = ij[:, 0], ij[:, 1]
        u, v = params["U"][rows], params["V"][cols]
        return rows, cols, u, v, np.einsum("kr,kr->k", u, v) - values

    def mse(self, params: Params, batch: Tuple[np.ndarray, np.ndarray]) -> float:
        residual = self._residual(params, batch)[-1]
        return 0.5 * float(np.mean(np.square(residual, dtype=np.float64)))

    def loss_and_grad(self, params: Params, batch: Tuple[np.ndarray, np.ndarray]) -> Tuple[float, Params]:
        rows, cols, u, v, residual = self._residual(params, batch)
        U, V = params["U"], params["V"]
        penalty = 0.5 * self.l2 * (float(np.sum(U * U)) + float(np.sum(V * V)))
        loss = 0.5 * float(np.mean(np.square(residual, dtype=np.float64))) + penalty
        r = (residual / len(residual))[:, None]
        gU, gV = self.l2 * U, self.l2 * V
        # An entry's row (column) may repeat within a batch: add.at sums the repeats.
        np.add.at(gU, rows, r * v)
        np.add.at(gV, cols, r * u)
        return loss, {"U": gU.astype(self.dtype, copy=False), "V": gV.astype(self.dtype, copy=False)}
