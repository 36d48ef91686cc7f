"""Muon (torch.optim.Muon) in plain NumPy, in docs/algorithms.md's operation order.

One step of one matrix is three parts, in the order a fused kernel can run
them atomically:

1. ``muon_direction`` (element-wise, writes nothing): the momentum buffer
   this step will store, the direction ``d`` Newton-Schulz starts from, and
   the sum of squares of ``d`` in the kernels' fixed order;
2. [`newton_schulz`][fastadapt.reference.newton_schulz] (matrix work, NumPy and its BLAS): ``d`` scaled to
   unit Frobenius norm, then ``ns_steps`` quintic iterations;
3. ``muon_commit`` (element-wise, the only writes): the momentum buffer
   recomputed bit for bit as in part 1 and stored, then the decayed
   parameter minus the adjusted step along the orthogonalized direction.

Newton-Schulz runs in the parameter's dtype (torch casts to bfloat16 first);
``ns_dtype="bfloat16"`` rounds like torch's bfloat16 path instead (needs
``ml_dtypes``). Matrices only: every other key goes to a ``companion``
optimizer (AdamW by default), as torch's documentation advises.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from ._common import ReferenceOptimizer, tensor_sum
from .adam import AdamW

# Keller Jordan's quintic coefficients and the step count (torch's defaults).
DEFAULT_NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
DEFAULT_NS_STEPS = 5
ADJUST_LR_FNS = (None, "original", "match_rms_adamw")
NS_DTYPES = (None, "bfloat16")


def adjusted_lr(lr: float, adjust_lr_fn: Optional[str], shape: Tuple[int, int]) -> float:
    """The step size of a ``rows x cols`` matrix, in float64 (torch's
    ``_adjust_lr``): ``lr * sqrt(max(1, rows / cols))`` for ``None`` and
    ``"original"`` (Keller Jordan), ``lr * 0.2 * sqrt(max(rows, cols))`` for
    ``"match_rms_adamw"`` (Moonshot: an update RMS like AdamW's)."""
    rows, cols = shape
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        ratio = math.sqrt(max(1.0, rows / cols))
    elif adjust_lr_fn == "match_rms_adamw":
        ratio = 0.2 * math.sqrt(max(rows, cols))
    else:
        raise ValueError(f"adjust_lr_fn must be None, 'original' or 'match_rms_adamw', got {adjust_lr_fn!r}")
    return lr * ratio


def muon_direction(g: np.ndarray, buf: np.ndarray, *, momentum: float, nesterov: bool) -> Tuple[np.ndarray, float]:
    """Part 1, no writes: ``(d, sumsq)``, the direction and ``tensor_sum(d**2)``.

    ``m = S(momentum) * buf + S(1 - momentum) * g`` is the buffer this step
    stores (torch's ``buf.lerp_(g, 1 - momentum)``); ``d`` is
    ``S(1 - momentum) * g + S(momentum) * m`` with Nesterov
    (``g.lerp(m, momentum)``), else ``m``."""
    T = g.dtype.type
    m = T(momentum) * buf + T(1.0 - momentum) * g
    d = T(1.0 - momentum) * g + T(momentum) * m if nesterov else m
    return d, tensor_sum(d.astype(np.float64) ** 2)


def _bfloat16():
    try:
        import ml_dtypes
    except ImportError:  # pragma: no cover - ml_dtypes is a dependency of the option only
        raise ImportError('ns_dtype="bfloat16" needs ml_dtypes (pip install ml_dtypes); '
                          "ns_dtype=None runs Newton-Schulz in the parameter's dtype") from None
    return ml_dtypes.bfloat16


def newton_schulz(d: np.ndarray, sumsq: float, *, ns_coefficients: Sequence[float], ns_steps: int, eps: float,
                  ns_dtype: Optional[str] = None) -> np.ndarray:
    """Part 2: the orthogonalized direction ``O`` (same shape and dtype as ``d``).

    ``x = d / S(max(sqrt(sumsq), eps))`` (NaN propagating; ``sumsq`` is part
    1's), transposed when ``d`` has more rows than columns (so the Gram
    matrix is the smaller one), then ``ns_steps`` times, with
    ``(a, b, c) = ns_coefficients``:

        A = x @ x.T
        B = S(b) * A + S(c) * (A @ A)
        x = S(a) * x + B @ x

    and transposed back. The products are NumPy's ``matmul`` (BLAS), in the
    dtype of ``d``.

    ``ns_dtype="bfloat16"`` is torch's arithmetic instead (its CPU bfloat16
    operations compute in float32 and round the result to bfloat16 once):
    ``x = bf16(d)``; ``n = bf16(sqrt(tensor_sum(x**2)))`` (``sumsq`` is not
    used), ``max(n, eps)`` rounded to bfloat16; ``x = bf16(x / n)``; each of
    the three lines above computed in float32 from bfloat16 operands and
    rounded to bfloat16 once; ``O`` the bfloat16 result widened back to the
    dtype of ``d`` (exactly)."""
    T = d.dtype.type
    a, b, c = ns_coefficients
    if ns_dtype is None:
        x = d / T(_clamp_min(math.sqrt(sumsq), eps))  # torch: d / d.norm().clamp(min=eps)
        if x.shape[0] > x.shape[1]:
            x = x.T
        for _ in range(ns_steps):
            gram = x @ x.T
            poly = T(b) * gram + T(c) * (gram @ gram)
            x = T(a) * x + poly @ x
    elif ns_dtype == "bfloat16":
        bf16, f32 = _bfloat16(), np.float32

        def rounded(v):  # a float32 array holding the bfloat16 values nearest to v
            return np.asarray(v, dtype=f32).astype(bf16).astype(f32)

        x = rounded(d)
        n = float(rounded(math.sqrt(tensor_sum(x.astype(np.float64) ** 2))))
        x = rounded(x / rounded(_clamp_min(n, eps)))
        if x.shape[0] > x.shape[1]:
            x = x.T
        for _ in range(ns_steps):
            gram = rounded(x @ x.T)
            poly = rounded(f32(b) * gram + f32(c) * (gram @ gram))
            x = rounded(f32(a) * x + poly @ x)
        x = x.astype(T)
    else:
        raise ValueError(f"ns_dtype must be None or 'bfloat16', got {ns_dtype!r}")
    return x.T if d.shape[0] > d.shape[1] else x


def _clamp_min(x: float, low: float) -> float:
    """``max(x, low)``, NaN propagating (torch's ``clamp(min=low)``)."""
    return x if (math.isnan(x) or x > low) else low


def muon_commit(p: np.ndarray, g: np.ndarray, buf: np.ndarray, o: np.ndarray, *, lr: float, weight_decay: float,
                momentum: float, adjusted_lr: float) -> None:
    """Part 3, the writes: ``buf = S(momentum) * buf + S(1 - momentum) * g``
    (bit for bit part 1's ``m``), then
    ``p = p * S(1 - lr * weight_decay) - S(adjusted_lr) * o``."""
    T = p.dtype.type
    buf[...] = T(momentum) * buf + T(1.0 - momentum) * g
    p[...] = p * T(1.0 - lr * weight_decay) - T(adjusted_lr) * o


def muon_rule(p, g, momentum_buffer, *, t, lr, weight_decay, momentum, nesterov, ns_coefficients, eps, ns_steps,
              adjust_lr_fn, ns_dtype=None):
    """One Muon step of one 2-D parameter, in place. ``t`` is unused (Muon
    has no bias correction); it is there as in every rule's signature. An
    empty matrix is left as it is (it has nothing to update)."""
    if p.ndim != 2:
        raise ValueError(f"Muon updates 2-D matrices only, got shape {p.shape}")
    if p.size == 0:
        return
    d, sumsq = muon_direction(g, momentum_buffer, momentum=momentum, nesterov=nesterov)
    o = newton_schulz(d, sumsq, ns_coefficients=ns_coefficients, ns_steps=ns_steps, eps=eps, ns_dtype=ns_dtype)
    muon_commit(p, g, momentum_buffer, o, lr=lr, weight_decay=weight_decay, momentum=momentum,
                adjusted_lr=adjusted_lr(lr, adjust_lr_fn, p.shape))


class Muon(ReferenceOptimizer):
    """torch.optim.Muon's rule on every 2-D key; every other key (biases,
    gains, scalars, 3-D and up) is stepped by ``companion`` in the same
    update, by default ``AdamW()`` (torch's AdamW defaults).

    The gradient pre-processing (non-finite policy, clipping, maximize) is
    Muon's and covers the whole tree, companion keys included, as one
    optimizer over the whole model would; so the companion must leave its
    own off, and it receives the pre-processed gradients. The companion
    counts the steps in which it updated a key."""

    defaults = dict(lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True, ns_coefficients=DEFAULT_NS_COEFFICIENTS,
                    eps=1e-7, ns_steps=DEFAULT_NS_STEPS, adjust_lr_fn=None, ns_dtype=None, maximize=False)

    def __init__(self, *, companion: Optional[ReferenceOptimizer] = None, max_grad_norm: Optional[float] = None,
                 nonfinite: str = "propagate", **hyper: Any):
        super().__init__(max_grad_norm=max_grad_norm, nonfinite=nonfinite, **hyper)
        if companion is None:
            companion = AdamW()
        if not isinstance(companion, ReferenceOptimizer) or isinstance(companion, Muon):
            raise TypeError(f"companion must be another reference optimizer (e.g. AdamW(...)), got {companion!r}")
        if companion.max_grad_norm is not None or companion.nonfinite != "propagate" \
                or getattr(companion, "maximize", False):
            raise ValueError("the companion's max_grad_norm, nonfinite and maximize must be left at their "
                             "defaults: set them on Muon, whose pre-processing covers every key")
        self.companion = companion
        self._companion_step = 0  # the Muon step in which the companion last stepped

    @staticmethod
    def to_companion(p: np.ndarray) -> bool:
        """Whether a key goes to the companion: it is not a matrix."""
        return np.ndim(p) != 2

    def _apply(self, path, p, g):
        if self.to_companion(p):
            c = self.companion
            if self._companion_step != self.step_count:
                c.step_count += 1
                self._companion_step = self.step_count
            c._apply(path, p, g)
            return
        buf = self._buffer(path, "momentum_buffer", p)
        muon_rule(p, g, buf, t=self.step_count, lr=self.lr, weight_decay=self.weight_decay, momentum=self.momentum,
                  nesterov=self.nesterov, ns_coefficients=self.ns_coefficients, eps=self.eps, ns_steps=self.ns_steps,
                  adjust_lr_fn=self.adjust_lr_fn, ns_dtype=self.ns_dtype)
