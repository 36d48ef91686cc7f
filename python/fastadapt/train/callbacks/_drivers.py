"""Who drives which hyperparameter: the registry every controller binds through
(the Scheduler, the plateau controllers, AdaptiveLR, LearningRateScheduler).

Two controllers on one optimizer's lr each overwrite the other's value
(a Scheduler's next step undoes a plateau cut), and nothing fails: the run
just trains with an lr nobody chose. So binding records, per optimizer
and hyperparameter, the controller that drives it, and a second live
controller taking one over warns, naming both. Weak on both sides: the
registry keeps neither an optimizer nor a controller alive, and a
controller that was dropped (or rebound elsewhere) no longer counts, nor
does a trainer callback whose fit has ended (it acts again, and claims
again, only in the next fit's on_train_begin), so reusing an optimizer
for a new run with new callbacks does not warn.
"""

from __future__ import annotations

import sys
import threading
import warnings
import weakref
from types import FrameType
from typing import Any, Dict, List, Optional, Tuple

__all__ = ["claim", "release"]

_drivers: "weakref.WeakKeyDictionary[Any, Dict[str, List[weakref.ref]]]" = weakref.WeakKeyDictionary()
_drivers_lock = threading.Lock()


def _describe(controller: Any) -> str:
    return repr(controller) if type(controller).__repr__ is not object.__repr__ else type(controller).__name__


def claim(controller: Any, optimizer: Any, names: List[str]) -> None:
    """Record that ``controller`` drives ``names`` of ``optimizer``; warn for
    each one that other live controllers bound to it already drive."""
    taken: List[Tuple[str, List[Any]]] = []
    with _drivers_lock:
        try:
            drivers = _drivers.setdefault(optimizer, {})
        except TypeError:  # an optimizer-like object that cannot be weakly referenced: not tracked
            return
        for name in names:
            live = [c for c in (ref() for ref in drivers.get(name, ()))
                    if c is not None and getattr(c, "optimizer", None) is optimizer]  # dropped or rebound: gone
            others = [c for c in live if c is not controller]
            if others:
                taken.append((name, others))
            drivers[name] = [weakref.ref(c) for c in others] + [weakref.ref(controller)]
    for name, others in taken:
        warnings.warn(f"{type(controller).__name__} takes over {name!r} of {type(optimizer).__name__} "
                      f"(id {id(optimizer):#x}), which {' and '.join(map(_describe, others))} already "
                      f"drive{'s' if len(others) == 1 else ''}: each overwrites the other's value whenever it "
                      f"acts, so the run gets a {name} none of them chose. Let one controller own {name!r} (a "
                      f"schedule with warmup and decay in one Scheduler, or ReduceLROnPlateau alone)",
                      UserWarning, stacklevel=_outside_stacklevel())


def release(controller: Any, optimizer: Any) -> None:
    """``controller`` no longer drives anything of ``optimizer`` (its fit ended)."""
    with _drivers_lock:
        try:
            drivers = _drivers.get(optimizer)
        except TypeError:
            return
        if not drivers:
            return
        for name, refs in drivers.items():
            drivers[name] = [ref for ref in refs if ref() is not controller]


def _outside_stacklevel() -> int:
    """The stacklevel of the first caller outside fastadapt (the user's
    ``Scheduler(opt, ...)`` or ``trainer.fit(...)``), from the warning's caller."""
    frame: Optional[FrameType] = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("fastadapt."):
        frame, level = frame.f_back, level + 1
    return level
