"""Gradient utilities over nested structures: the global L2 norm, clipping
by it, and replacing non-finite values. Each is one C++ call over all arrays,
chunked like the optimizer step (same norm bits for any thread count)."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from . import _core
from ._tree import flatten_any

__all__ = ["global_norm", "clip_by_global_norm", "sanitize"]


def _leaves(grads: Any):
    if isinstance(grads, np.ndarray):
        return ("",), [grads]
    paths, leaves = flatten_any(grads)
    return tuple(paths), leaves


def global_norm(grads: Any) -> float:
    """``sqrt(sum of g*g over all arrays)``, accumulated in float64 in a
    fixed order. NaN/Inf propagate. Arrays must be float32/float64 and
    C-contiguous (nothing is copied).

    Parameters
    ----------
    grads
        a gradient tree (nested dicts, lists or tuples of arrays) or one array. Arrays must be
        float32/float64 and C-contiguous: nothing is copied.

    Returns
    -------
    float
        the norm (0.0 for an empty tree).

    Raises
    ------
    TypeError
        for an array of another dtype (the message names its key).
    ValueError
        for a non-contiguous array (pass ``np.ascontiguousarray(g)``).
    """
    paths, leaves = _leaves(grads)
    sumsq, _ = _core.global_sumsq(paths, leaves, False)
    return math.sqrt(sumsq)


def clip_by_global_norm(grads: Any, max_norm: float) -> float:
    """Scale all arrays in place by ``max_norm / max(norm, max_norm)`` (no
    change when the norm is within bounds) and return the norm before
    clipping, like ``torch.nn.utils.clip_grad_norm_``.

    Parameters
    ----------
    grads
        a gradient tree (nested dicts, lists or tuples of arrays) or one array. Arrays must be
        float32/float64 and C-contiguous: nothing is copied.
    max_norm
        the largest global norm allowed, a finite number > 0.

    Returns
    -------
    float
        the global norm before clipping.

    Raises
    ------
    TypeError
        for a ``max_norm`` that is not a number, or an array of another dtype.
    ValueError
        for a ``max_norm`` that is not finite and > 0, or a non-contiguous array.
    """
    if isinstance(max_norm, (bool, np.bool_)) or not isinstance(max_norm, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"max_norm must be a real number > 0, got {type(max_norm).__name__} {max_norm!r}")
    limit = float(max_norm)
    if not (math.isfinite(limit) and limit > 0):
        raise ValueError(f"Invalid max_norm: {limit} (must be a finite number > 0)")
    paths, leaves = _leaves(grads)
    norm, _ = _core.clip_by_global_norm(paths, leaves, limit)
    return norm


def sanitize(grads: Any) -> int:
    """Replace NaN and ±Inf by 0 in place; return how many were replaced.

    Parameters
    ----------
    grads
        a gradient tree (nested dicts, lists or tuples of arrays) or one array. Arrays must be
        float32/float64 and C-contiguous: nothing is copied.

    Returns
    -------
    int
        how many values were replaced (0: the tree was finite).

    Raises
    ------
    TypeError
        for an array of another dtype (the message names its key).
    ValueError
        for a non-contiguous array (pass ``np.ascontiguousarray(g)``).
    """
    paths, leaves = _leaves(grads)
    return int(_core.sanitize(paths, leaves))
