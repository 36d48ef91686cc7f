"""Small built-in problems whose answers are known, for demos and the
command line (``fastadapt lr-find`` runs on one when MNIST is not there).

    problem = fa.problems.least_squares(seed=0)
    result = fa.lr_find(fa.SGD(), problem.init_params(), problem.loss_and_grad, problem.batches(64))
    result.suggestion < problem.max_stable_lr
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .._checks import integer, real

__all__ = ["LeastSquares", "least_squares"]


@dataclass(frozen=True, eq=False, repr=False)  # arrays inside: no element-wise ==, no 1000-line repr
class LeastSquares:
    """Linear regression ``f(w) = mean((X w - y)^2) / 2``.

    Its Hessian ``H = X^T X / n`` is constant, so full-batch gradient
    descent is stable exactly when ``lr < 2 / lambda_max(H)``
    ([`max_stable_lr`][fastadapt.problems.LeastSquares.max_stable_lr]): the yardstick for an LR range test.
    """

    X: np.ndarray
    y: np.ndarray

    @property
    def hessian(self) -> np.ndarray:
        """``H = X^T X / n``, the loss's constant Hessian (``n_features`` square)."""
        return self.X.T @ self.X / len(self.y)

    @property
    def max_stable_lr(self) -> float:
        """``2 / lambda_max(H)``: the largest stable full-batch SGD learning rate."""
        return 2.0 / float(np.linalg.eigvalsh(self.hessian).max())

    def __repr__(self) -> str:
        return (f"LeastSquares(n_samples={len(self.y)}, n_features={self.X.shape[1]}, dtype={self.X.dtype}, "
                f"max_stable_lr={self.max_stable_lr:.3g})")

    def init_params(self) -> Dict[str, np.ndarray]:
        """``{"w": zeros}`` in the data's dtype."""
        return {"w": np.zeros(self.X.shape[1], self.X.dtype)}

    def loss_and_grad(self, params: Dict[str, np.ndarray], batch: Optional[Tuple[np.ndarray, np.ndarray]]
                      ) -> Tuple[float, Dict[str, np.ndarray]]:
        """Loss and gradient on ``batch = (X_b, y_b)``, or on all the data for None."""
        X, y = (self.X, self.y) if batch is None else batch
        residual = X @ params["w"] - y
        return 0.5 * float(np.mean(residual * residual)), {"w": X.T @ residual / len(y)}

    def batches(self, batch_size: int, seed: int = 0) -> List[Tuple[np.ndarray, np.ndarray]]:
        """One shuffled pass over the data in mini-batches (a list: re-iterable)."""
        return shuffled_batches(self.X, self.y, batch_size, seed)


def shuffled_batches(X: np.ndarray, y: np.ndarray, batch_size: int, seed: int = 0
                     ) -> List[Tuple[np.ndarray, np.ndarray]]:
    """One pass over ``(X, y)`` in a seeded random order, split into
    ``len(y) // batch_size`` (at least 1) nearly equal batches (a list: re-iterable)."""
    integer("batch_size", batch_size, 1)
    if len(X) != len(y):
        raise ValueError(f"shuffled_batches: X has {len(X)} rows but y has {len(y)}; pass one target per row")
    if len(y) == 0:
        # An empty pass would still make one (empty) batch, whose loss is a NaN mean, not an error.
        raise ValueError("shuffled_batches: the data is empty; a pass needs at least one sample")
    order = np.random.default_rng(seed).permutation(len(y))
    return [(X[idx], y[idx]) for idx in np.array_split(order, max(1, len(order) // batch_size))]


def least_squares(n_samples: int = 1024, n_features: int = 20, condition: float = 10.0, noise: float = 0.01,
                  seed: int = 0, dtype: Any = np.float64) -> LeastSquares:
    """A regression problem whose Hessian has eigenvalues spread evenly on a
    log scale from 1 down to ``1 / condition`` (so ``max_stable_lr == 2``).

    Built as ``X = U diag(s) V^T`` with random orthonormal ``U``, ``V`` and
    ``s_i^2 / n_samples`` the chosen eigenvalues; ``y = X w* + noise``.
    """
    integer("n_samples", n_samples, 2)
    integer("n_features", n_features, 1)
    if n_features > n_samples:
        raise ValueError(f"n_features={n_features} must be <= n_samples={n_samples}")
    real("condition", condition, low=1.0)
    real("noise", noise, low=0.0)
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((n_samples, n_features)))
    v, _ = np.linalg.qr(rng.standard_normal((n_features, n_features)))
    singular = math.sqrt(n_samples) * np.geomspace(1.0, 1.0 / math.sqrt(condition), n_features)
    X = (u * singular) @ v.T
    y = X @ rng.standard_normal(n_features) + noise * rng.standard_normal(n_samples)
    return LeastSquares(X.astype(dtype), y.astype(dtype))
