"""The worker actor: holds its own data shard, and for a given batch
computes the loss and gradient at the parameters it is handed.

Parameters arrive as read-only views of Ray's object store (no copy); the
gradient goes back split by shard, one object per shard, so each server
reads only its part.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

import numpy as np

from ..train.trainer import _as_loss, _batch_size
from .sharding import ShardLayout

__all__ = ["GradientWorker"]


class GradientWorker:
    """One data-parallel worker. Wrapped as a Ray actor by DataParallel.

    Parameters
    ----------
    index
        the worker's place in the fixed averaging order.
    loss_and_grad
        ``(params, batch) -> (loss, grads)``.
    layout
        how the params are sharded.
    data
        this worker's batches of one epoch (a list, ``fa.batches(...)`` or any re-iterable with
        ``len()``; ``set_epoch`` is called when it has one, so shuffles are reproducible after a
        restart); it may also come later through ``set_data``.
    """

    def __init__(self, index: int, loss_and_grad: Callable[[Any, Any], Tuple[Any, Any]], layout: ShardLayout,
                 data: Any = None):
        self.index = index
        self.loss_and_grad = loss_and_grad
        self.layout = layout
        self.set_data(data)

    def set_data(self, data: Any) -> None:
        """Take this worker's data for the coming epochs."""
        self.data = data
        self._epoch: Optional[int] = None
        self._next = 0
        self._batches: Optional[Iterator[Any]] = None

    def pid(self) -> int:
        return os.getpid()

    def _batch(self, epoch: int, index: int) -> Any:
        """Batch ``index`` of epoch ``epoch``: the next one in the usual case;
        after a restart or a resume, the epoch is replayed up to it."""
        if epoch != self._epoch or index < self._next or self._batches is None:
            set_epoch = getattr(self.data, "set_epoch", None)
            if callable(set_epoch):
                set_epoch(epoch)
            self._batches = iter(self.data)
            self._epoch, self._next = epoch, 0
        try:
            while self._next < index:
                next(self._batches)
                self._next += 1
            batch = next(self._batches)
        except StopIteration:
            raise ValueError(f"worker {self.index}: its data ran out at batch {self._next} of epoch {epoch}, "
                             f"though len() promised {len(self.data)}; pass data whose len() is its batch "
                             f"count") from None
        self._next += 1
        return batch

    def compute(self, epoch: int, index: int, *param_shards: Dict[str, np.ndarray]) -> Tuple[Any, ...]:
        """Loss and gradient of batch ``index`` of epoch ``epoch`` at the
        given parameters. Returns ``(info, grads of shard 0, grads of shard 1,
        ...)``; ``info`` has ``loss``, ``samples`` and ``seconds`` (time in
        ``loss_and_grad``)."""
        batch = self._batch(epoch, index)
        flat: Dict[str, np.ndarray] = {}
        for shard in param_shards:
            flat.update(shard)
        params = self.layout.tree(flat)
        started = time.perf_counter()
        out = self.loss_and_grad(params, batch)
        seconds = time.perf_counter() - started
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError(f"loss_and_grad must return a pair (loss, grads), got {type(out).__name__}")
        loss = _as_loss(out[0], "loss_and_grad")
        grads = self.layout.check_grads(out[1], "loss_and_grad")
        info = {"loss": loss, "samples": _batch_size(batch), "seconds": seconds}
        return (info, *self.layout.split(grads))
