"""The per-tensor trust ratio that LAMB and LARS share (optax's
``scale_by_trust_ratio`` with ``min_norm=0``), from the two per-tensor sums of
squares the kernels' reduction pass produces."""

from __future__ import annotations

import numpy as np

from ._common import tensor_sum


def sumsq(x: np.ndarray) -> float:
    """Sum of squares of one tensor, each element squared in float64, in the
    kernels' per-tensor order (``tensor_sum``)."""
    return tensor_sum(x.astype(np.float64) ** 2)


def trust_ratio(p_sumsq: float, u_sumsq: float, trust_coefficient: float = 1.0, eps: float = 0.0) -> float:
    """``trust_coefficient * ||p|| / (||u|| + eps)`` in float64, and exactly 1
    when ``||p|| == 0`` or ``||u|| == 0`` (a NaN norm is not 0: the ratio is
    then NaN). Norms are ``sqrt`` of the sums, correctly rounded."""
    p_norm = np.sqrt(np.float64(p_sumsq))
    u_norm = np.sqrt(np.float64(u_sumsq))
    if p_norm == 0.0 or u_norm == 0.0:
        return 1.0
    with np.errstate(all="ignore"):
        return float(np.float64(trust_coefficient) * p_norm / (u_norm + np.float64(eps)))
