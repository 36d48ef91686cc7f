"""Mini-batches over in-memory arrays, reproducible per epoch.

``fa.batches(X, y, 32, shuffle=True, seed=0)`` is re-iterable: each pass is
one epoch. The order of epoch ``e`` depends only on ``(seed, e)``, so a run
resumed at epoch 3 sees exactly the batches an uninterrupted run sees there
(the trainer calls ``set_epoch``, as torch's ``DistributedSampler`` asks).
"""

from __future__ import annotations

import numbers
from typing import Any, Iterator, Optional, Tuple, Union, cast

import numpy as np

__all__ = ["Batches", "batches"]


class Batches:
    """Re-iterable mini-batches of aligned arrays (see [`batches`][fastadapt.batches])."""

    def __init__(self, arrays: Tuple[np.ndarray, ...], batch_size: int, shuffle: bool, seed: Optional[int],
                 drop_last: bool):
        self.arrays = arrays
        self.batch_size = batch_size
        self.shuffle = shuffle
        # Without a seed the run is still internally consistent (resumable
        # within the process); it just differs from one process to the next.
        # (a SeedSequence made without entropy draws an int)
        self.seed = int(cast(int, np.random.SeedSequence().entropy)) if seed is None else seed
        self.drop_last = drop_last
        self.epoch = 0

    @property
    def num_samples(self) -> int:
        """Rows in the data (the length of the first array)."""
        return len(self.arrays[0])

    def __len__(self) -> int:
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass epoch ``epoch`` (its shuffle order)."""
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        self.epoch = int(epoch)

    def order(self, epoch: int) -> np.ndarray:
        """Sample indices of epoch ``epoch``, in batch order."""
        if not self.shuffle:
            return np.arange(self.num_samples)
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)

    def __iter__(self) -> Iterator[Union[np.ndarray, Tuple[np.ndarray, ...]]]:
        epoch = self.epoch
        self.epoch += 1  # a plain for-loop over epochs gets a new order each time
        order = self.order(epoch)
        stop = len(self) * self.batch_size
        for start in range(0, min(stop, self.num_samples), self.batch_size):
            idx = order[start:start + self.batch_size]
            picked = tuple(a[idx] for a in self.arrays)
            yield picked[0] if len(picked) == 1 else picked

    def __repr__(self) -> str:
        shapes = ", ".join(str(a.shape) for a in self.arrays)
        return (f"Batches({shapes}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"drop_last={self.drop_last})")


def batches(*arrays: Any, batch_size: Optional[int] = None, shuffle: bool = False, seed: Optional[int] = None,
            drop_last: bool = False) -> Batches:
    """Mini-batches of equally long arrays: ``batches(X, y, 32, shuffle=True, seed=0)``.

    Yields ``(X_b, y_b)`` tuples (a lone array for one array). The batch size
    may be the last positional argument or ``batch_size=``. With ``shuffle``,
    the order of epoch ``e`` is a permutation drawn from ``(seed, e)``; the
    last batch is smaller unless ``drop_last``.

    Parameters
    ----------
    *arrays
        equally long arrays, samples along the first axis (``X, y``); the last positional argument
        may be the batch size.
    batch_size
        samples per batch, an int >= 1.
    shuffle
        a new order every epoch (the trainer calls ``set_epoch``).
    seed
        the seed of the shuffles, an int >= 0 (None: a fresh one).
    drop_last
        leave out the last, smaller batch.

    Returns
    -------
    Batches
        re-iterable batches: each ``for`` loop is one epoch.

    Raises
    ------
    TypeError
        without a batch size or an array, for an argument that is not an array, or a ``shuffle``
        that is not a bool.
    ValueError
        for a batch size < 1, arrays of different lengths or no samples, a bad seed, or
        ``drop_last`` with fewer samples than one batch.
    """
    items = list(arrays)
    if batch_size is None and items and isinstance(items[-1], numbers.Integral) and not isinstance(items[-1], bool):
        batch_size = int(items.pop())
    if batch_size is None:
        raise TypeError("batches needs a batch size: batches(X, y, 32) or batches(X, y, batch_size=32)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if not items:
        raise TypeError("batches needs at least one array: batches(X, y, 32)")
    checked = []
    for i, a in enumerate(items):
        arr = a if isinstance(a, np.ndarray) else np.asarray(a)
        if arr.ndim == 0 or arr.dtype.hasobject:
            raise TypeError(f"batches: argument {i} must be an array with a first (sample) axis, got "
                            f"{type(a).__name__} {a!r:.60}")
        checked.append(arr)
    lengths = {len(a) for a in checked}
    if len(lengths) != 1:
        raise ValueError(f"batches: arrays differ in length ({', '.join(str(len(a)) for a in checked)}); "
                         f"every array needs one row per sample")
    if lengths.pop() == 0:
        raise ValueError("batches: the arrays are empty; an epoch needs at least one sample")
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"shuffle must be True or False, got {shuffle!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
        raise ValueError(f"seed must be an int >= 0 or None, got {seed!r}")
    if drop_last and len(checked[0]) < batch_size:
        raise ValueError(f"batches: drop_last with {len(checked[0])} samples and batch_size {batch_size} "
                         f"leaves no batch; lower batch_size or set drop_last=False")
    return Batches(tuple(checked), int(batch_size), bool(shuffle), None if seed is None else int(seed),
                   bool(drop_last))
