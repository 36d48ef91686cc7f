"""The Gaussian process behind [`PB2`][fastadapt.tune.PB2]'s explore step, in
NumPy only.

Points are ``(t, h)``: a time ``t`` (in perturbation intervals) and
hyperparameters ``h`` scaled to ``[0, 1]^d``. The kernel is the
time-varying squared exponential of Bogunovic, Scarlett and Cevher
("Time-Varying Gaussian Process Bandit Optimization", AISTATS 2016), as
PB2 uses it::

    k((t, h), (t', h')) = s2 * (1 - eps) ** (|t - t'| / 2) * exp(-|h - h'|^2 / (2 l^2))

``eps`` is how fast old observations are forgotten. Observations carry
Gaussian noise of variance ``s2 * r``. ``l``, ``eps`` and ``r`` are fitted
by maximising the log marginal likelihood (a grid, then gradient ascent in
log space); ``s2`` has a closed-form optimum given the others (it is
"profiled out"), so the search is over three numbers only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

__all__ = ["TimeVaryingGP", "ucb_beta", "maximize"]

# Search boxes of the fitted parameters (h lives in [0, 1]^d; y is standardised).
LENGTHSCALE = (0.03, 5.0)
EPSILON = (1e-4, 0.5)
NOISE_RATIO = (1e-4, 10.0)
# A coarse grid (80 fits) finds the basin; gradient ascent polishes (see TimeVaryingGP._ascend).
_GRID = (np.geomspace(0.05, 2.0, 5), np.array([1e-3, 0.02, 0.1, 0.4]), np.geomspace(1e-3, 1.0, 4))
_JITTER = 1e-9


def _cholesky(a: np.ndarray) -> np.ndarray:
    """Cholesky factor, with growing jitter for matrices at the edge of
    positive definiteness (duplicated points with tiny noise)."""
    jitter = 0.0
    scale = float(np.mean(np.diag(a))) if len(a) else 1.0
    for _ in range(8):
        try:
            return np.linalg.cholesky(a + jitter * scale * np.eye(len(a)) if jitter else a)
        except np.linalg.LinAlgError:
            jitter = 1e-10 if jitter == 0.0 else jitter * 100
    raise np.linalg.LinAlgError("kernel matrix is not positive definite even with jitter")


def _solve(chol: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``A^-1 b`` from ``A``'s Cholesky factor (NumPy has no triangular solve; solve is exact enough
    and the matrices are small)."""
    return np.linalg.solve(chol.T, np.linalg.solve(chol, b))


@dataclass
class _Data:
    t: np.ndarray           # (n,)
    h: np.ndarray           # (n, d)
    y: np.ndarray           # (n,) standardised
    dt: np.ndarray          # (n, n) |t - t'|
    d2: np.ndarray          # (n, n) |h - h'|^2


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum(np.sum(a ** 2, 1)[:, None] + np.sum(b ** 2, 1)[None, :] - 2 * a @ b.T, 0.0)


def _correlation(dt: np.ndarray, d2: np.ndarray, lengthscale: float, eps: float) -> np.ndarray:
    return (1.0 - eps) ** (dt / 2.0) * np.exp(-d2 / (2.0 * lengthscale ** 2))


def log_marginal_likelihood(data: _Data, lengthscale: float, eps: float, ratio: float,
                            gradient: bool = False) -> Tuple[float, Optional[np.ndarray]]:
    """The profiled log marginal likelihood (``s2`` at its optimum) and, when
    asked, its gradient in ``(log l, log eps, log r)``."""
    n = len(data.y)
    c = _correlation(data.dt, data.d2, lengthscale, eps)
    a = c + (ratio + _JITTER) * np.eye(n)
    try:
        chol = _cholesky(a)
    except np.linalg.LinAlgError:
        return -math.inf, None
    half = np.linalg.solve(chol, data.y)  # L^-1 y: y' A^-1 y is its squared norm
    quad = max(float(half @ half), 1e-300)
    s2 = quad / n
    value = -0.5 * n * math.log(s2) - float(np.sum(np.log(np.diag(chol)))) - 0.5 * n * (1 + math.log(2 * math.pi))
    if not gradient:
        return value, None
    alpha = np.linalg.solve(chol.T, half)
    inverse = _solve(chol, np.eye(n))
    # dL/dtheta = 1/2 (alpha' dA alpha / s2 - tr(A^-1 dA)) for each parameter theta of A
    derivatives = (c * data.d2 / lengthscale ** 2,                              # d/dlog l
                   c * (-data.dt / 2.0) * eps / (1.0 - eps),                    # d/dlog eps
                   ratio * np.eye(n))                                           # d/dlog r
    grad = np.array([0.5 * (alpha @ da @ alpha / s2 - float(np.sum(inverse * da))) for da in derivatives])
    return value, grad


class TimeVaryingGP:
    """A GP over ``(t, h)`` with the time-varying squared-exponential kernel,
    its parameters fitted to the data by marginal likelihood.

    Parameters
    ----------
    t
        times of the observations, shape ``(n,)``.
    h
        hyperparameters scaled to ``[0, 1]``, shape ``(n, d)``.
    y
        observed values, shape ``(n,)`` (standardised inside).
    params
        ``(lengthscale, eps, noise_ratio)`` to use as given instead of fitting them.

    Examples
    --------
    >>> import numpy as np
    >>> from fastadapt.tune.gp import TimeVaryingGP
    >>> rng = np.random.default_rng(0)
    >>> h = rng.random((30, 1)); t = np.repeat(np.arange(10.0), 3)
    >>> gp = TimeVaryingGP(t, h, np.sin(6 * h[:, 0]))
    >>> mean, std = gp.predict(np.full(1, 9.0), np.array([[0.25]]))
    >>> bool(abs(mean[0] - np.sin(1.5)) < 0.1)
    True
    """

    def __init__(self, t: np.ndarray, h: np.ndarray, y: np.ndarray,
                 params: Optional[Tuple[float, float, float]] = None):
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        h = np.asarray(h, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        if h.ndim != 2 or len(h) != len(t) or len(y) != len(t):
            raise ValueError(f"t (n,), h (n, d) and y (n,) must agree: got shapes {t.shape}, {h.shape}, {y.shape}")
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(h)) and np.all(np.isfinite(y))):
            raise ValueError("t, h and y must be finite")
        self.dim = h.shape[1]
        self.n = len(y)
        self.y_mean = float(np.mean(y)) if self.n else 0.0
        spread = float(np.std(y)) if self.n > 1 else 0.0
        self.y_std = spread if spread > 0 else 1.0
        self.data = _Data(t, h, (y - self.y_mean) / self.y_std, np.abs(t[:, None] - t[None, :]), _sq_dist(h, h))
        if params is None:
            params = self._fit() if self.n >= 2 else (0.3, 0.05, 0.1)
        self.lengthscale, self.eps, self.noise_ratio = (float(p) for p in params)
        self._factor()

    # ---- fitting -------------------------------------------------------------
    def _fit(self) -> Tuple[float, float, float]:
        best, best_value = (0.3, 0.05, 0.1), -math.inf
        for lengthscale in _GRID[0]:
            for eps in _GRID[1]:
                for ratio in _GRID[2]:
                    value, _ = log_marginal_likelihood(self.data, lengthscale, eps, ratio)
                    if value > best_value:
                        best, best_value = (lengthscale, eps, ratio), value
        return self._ascend(best, best_value)

    def _ascend(self, start: Tuple[float, float, float], value: float, steps: int = 25) -> Tuple[float, float, float]:
        """Projected gradient ascent in log space from the grid's best, with
        step halving: the grid lands near the optimum, this polishes it."""
        low = np.log([LENGTHSCALE[0], EPSILON[0], NOISE_RATIO[0]])
        high = np.log([LENGTHSCALE[1], EPSILON[1], NOISE_RATIO[1]])
        theta = np.clip(np.log(start), low, high)
        step = 0.5
        for _ in range(steps):
            lengthscale, eps, ratio = (float(v) for v in np.exp(theta))
            value, grad = log_marginal_likelihood(self.data, lengthscale, eps, ratio, gradient=True)
            if grad is None or not np.all(np.isfinite(grad)):
                break
            norm = float(np.linalg.norm(grad))
            if norm < 1e-6:
                break
            while step > 1e-4:
                candidate = np.clip(theta + step * grad / norm, low, high)
                l_new, eps_new, ratio_new = (float(v) for v in np.exp(candidate))
                new_value, _ = log_marginal_likelihood(self.data, l_new, eps_new, ratio_new)
                if new_value > value:
                    theta = candidate
                    step *= 1.5
                    break
                step /= 2
            else:
                break
        return tuple(float(v) for v in np.exp(theta))  # type: ignore[return-value]

    def log_marginal_likelihood(self) -> float:
        """The profiled log marginal likelihood at the fitted parameters (of the standardised y)."""
        return log_marginal_likelihood(self.data, self.lengthscale, self.eps, self.noise_ratio)[0]

    def _factor(self) -> None:
        d = self.data
        a = _correlation(d.dt, d.d2, self.lengthscale, self.eps) + (self.noise_ratio + _JITTER) * np.eye(self.n)
        self._chol = _cholesky(a) if self.n else np.zeros((0, 0))
        self._alpha = _solve(self._chol, d.y) if self.n else np.zeros(0)
        self.signal = max(float(d.y @ self._alpha) / self.n, 1e-12) if self.n else 1.0  # s2, profiled

    # ---- prediction ------------------------------------------------------------
    def predict(self, t: np.ndarray, h: np.ndarray, *, pending_t: Optional[np.ndarray] = None,
                pending_h: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of the latent function at
        ``(t, h)`` (shapes ``(m,)``, ``(m, d)``), in the units of ``y``.

        ``pending_*``: points being evaluated whose values are not known yet.
        As in GP-BUCB (Desautels, Krause, Burdick 2014) they enter with their
        own posterior mean as the value: the mean is unchanged, the variance
        shrinks near them, so a batch spreads out.
        """
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        h = np.asarray(h, dtype=np.float64).reshape(len(t), self.dim)
        d = self.data
        cross = _correlation(np.abs(t[:, None] - d.t[None, :]), _sq_dist(h, d.h), self.lengthscale, self.eps)
        mean = cross @ self._alpha if self.n else np.zeros(len(t))
        if pending_t is not None and len(pending_t):
            pt = np.asarray(pending_t, dtype=np.float64).reshape(-1)
            ph = np.asarray(pending_h, dtype=np.float64).reshape(len(pt), self.dim)
            all_t, all_h = np.concatenate([d.t, pt]), np.concatenate([d.h, ph])
            a = _correlation(np.abs(all_t[:, None] - all_t[None, :]), _sq_dist(all_h, all_h), self.lengthscale,
                             self.eps) + (self.noise_ratio + _JITTER) * np.eye(len(all_t))
            chol = _cholesky(a)
            cross_all = _correlation(np.abs(t[:, None] - all_t[None, :]), _sq_dist(h, all_h), self.lengthscale,
                                     self.eps)
        else:
            chol, cross_all = self._chol, cross
        if len(chol):
            v = np.linalg.solve(chol, cross_all.T)
            var = np.maximum(1.0 - np.sum(v ** 2, 0), 0.0)
        else:
            var = np.ones(len(t))
        return self.y_mean + self.y_std * mean, self.y_std * np.sqrt(self.signal * var)


def ucb_beta(observations: int) -> float:
    """``beta = 0.2 + max(0, log(0.4 n))`` for ``n`` observations: the
    exploration weight's practical schedule in the PB2 authors' experiments
    (UCB is ``mean + sqrt(beta) * std``); it grows like ``log n`` as the
    theory asks, with small constants."""
    return 0.2 + max(0.0, math.log(0.4 * max(observations, 1)))


def maximize(acquisition, dim: int, rng: np.random.Generator, *, candidates: int = 500,
             starts: Optional[np.ndarray] = None, refine: int = 5, steps: int = 30) -> np.ndarray:
    """The best point of ``acquisition`` (a vectorised ``(m, d) -> (m,)``
    function) over ``[0, 1]^dim``: ``candidates`` uniform random points plus
    ``starts``, then a local random search (Gaussian steps, shrinking) from
    the ``refine`` best of them. Every draw comes from ``rng``."""
    points = rng.random((candidates, dim))
    if starts is not None and len(starts):
        points = np.concatenate([points, np.clip(np.asarray(starts, dtype=np.float64), 0.0, 1.0)])
    values = acquisition(points)
    order = np.argsort(-values, kind="stable")[:refine]
    best_x, best_v = points[order], values[order]
    sigma = 0.1
    for _ in range(steps):
        proposal = np.clip(best_x + sigma * rng.standard_normal(best_x.shape), 0.0, 1.0)
        proposed = acquisition(proposal)
        better = proposed > best_v
        best_x[better], best_v[better] = proposal[better], proposed[better]
        sigma = max(sigma * 0.85, 0.005)
    return best_x[int(np.argmax(best_v))].copy()
