"""Bounded staleness for asynchronous data parallelism: which finished
gradient may be applied now, which must wait, which must be recomputed.

The staleness of a gradient is the number of updates applied between the
moment its worker read the parameters and the moment it is applied. The
gate keeps every gradient's staleness at or below ``max_staleness``:

- a gradient may be applied only if, once it is, every other unapplied
  gradient (still computing, or finished and waiting) is still within the
  bound; otherwise it waits for the older ones;
- at most ``max_staleness + 1`` gradients are unapplied at a time, so a
  worker is not started on parameters that could only go stale;
- if every unapplied gradient has finished and none may be applied (several
  read the same parameters and the bound leaves room for only one of
  them), the first to finish is applied and the others are recomputed.

So a fast worker runs ahead of a slow one by at most ``max_staleness``
updates, then waits (stale-synchronous parallel, Ho et al. 2013, counted in
updates). ``max_staleness=0`` is plain sequential SGD.
"""

from __future__ import annotations

from typing import Dict, List

from .._checks import integer

__all__ = ["StalenessGate"]


class StalenessGate:
    """Tracks the parameter version each unapplied gradient was computed at.

    Parameters
    ----------
    max_staleness
        the bound, an int >= 0.

    Examples
    --------
        gate = StalenessGate(1)
        gate.started(worker=0, version=0); gate.started(worker=1, version=0)
        gate.may_apply(0, version=0)    # True: worker 1's gradient would be 1 update old
        gate.applied(0)                 # the driver applied it: version is now 1
        gate.may_apply(1, version=1)    # True: staleness 1
    """

    def __init__(self, max_staleness: int):
        self.max_staleness = integer("max_staleness", max_staleness, 0)
        self._read: Dict[int, int] = {}

    def may_start(self) -> bool:
        """Whether one more gradient may be started."""
        return len(self._read) <= self.max_staleness

    def started(self, worker: int, version: int) -> None:
        """``worker`` read the parameters at ``version`` and computes a gradient."""
        if worker in self._read:
            raise ValueError(f"worker {worker} already has an unapplied gradient")
        self._read[worker] = version

    def staleness(self, worker: int, version: int) -> int:
        """How many updates old ``worker``'s gradient would be if applied at ``version``."""
        return version - self._read[worker]

    def may_apply(self, worker: int, version: int) -> bool:
        """Whether ``worker``'s gradient may be applied now, at ``version``."""
        return all(version + 1 - read <= self.max_staleness for w, read in self._read.items() if w != worker)

    def applied(self, worker: int) -> None:
        """``worker``'s gradient was applied (or dropped: its worker died)."""
        del self._read[worker]

    forget = applied

    def too_stale(self, version: int) -> List[int]:
        """Workers whose gradient would exceed the bound at ``version``."""
        return [w for w, read in self._read.items() if version - read > self.max_staleness]

    def __len__(self) -> int:
        return len(self._read)
