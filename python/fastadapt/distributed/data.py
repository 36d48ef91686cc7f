"""Splitting a data set between workers."""

from __future__ import annotations

from typing import Any, List, Optional

import numpy as np

from .._checks import integer
from ..data.batching import Batches, batches

__all__ = ["shard_batches"]


def shard_batches(*arrays: Any, num_workers: int, batch_size: int, shuffle: bool = False,
                  seed: Optional[int] = None, drop_last: bool = False) -> List[Batches]:
    """Split aligned arrays into ``num_workers`` equal contiguous blocks and
    batch each: the ``data`` argument of [`DataParallel.fit`][fastadapt.distributed.DataParallel.fit].

    Every worker gets ``n // num_workers`` samples (the last ``n %
    num_workers`` are left out), so every worker has the same number of
    batches, of the same sizes, as sync mode needs. With ``shuffle``, worker
    ``w`` shuffles its block each epoch with seed ``seed + w``.

    Parameters
    ----------
    arrays
        equally long arrays (``X, y``).
    num_workers
        how many blocks.
    batch_size
        samples per batch on each worker (a sync step consumes ``num_workers * batch_size``
        samples).
    shuffle
        shuffle each worker's block every epoch (worker ``w`` with seed ``seed + w``), as
        [`fastadapt.batches`][fastadapt.batches] does.
    seed
        the base seed of the shuffles (None: a fresh one).
    drop_last
        leave out each block's last, smaller batch, as [`fastadapt.batches`][fastadapt.batches] does.

    Examples
    --------
        data = fa.distributed.shard_batches(X, y, num_workers=2, batch_size=64, shuffle=True, seed=0)
        ps.fit(data, epochs=5)
    """
    integer("num_workers", num_workers, 1)
    if not arrays:
        raise TypeError("shard_batches needs at least one array: shard_batches(X, y, num_workers=2, batch_size=64)")
    arrays = tuple(np.asarray(a) for a in arrays)
    lengths = [len(a) if a.ndim else None for a in arrays]
    if None in lengths or len(set(lengths)) > 1:
        raise ValueError(f"shard_batches: arrays must be equally long, one row per sample; got lengths "
                         f"{lengths}")
    n = len(arrays[0])
    per_worker = n // num_workers
    if per_worker == 0:
        raise ValueError(f"shard_batches: {n} samples cannot feed num_workers={num_workers} workers; use fewer "
                         f"workers or more data")
    if seed is not None:
        integer("seed", seed, 0)
    blocks = [[a[w * per_worker:(w + 1) * per_worker] for a in arrays] for w in range(num_workers)]
    return [batches(*block, batch_size=batch_size, shuffle=shuffle, seed=None if seed is None else seed + w,
                    drop_last=drop_last) for w, block in enumerate(blocks)]
