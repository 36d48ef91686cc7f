"""An executor from its name: the one module that knows every executor, so
``executors`` (the base class and the local ones) and ``ray_executor`` (which
builds on that base) do not import each other."""

from __future__ import annotations

from typing import Union

from .executors import Executor, ProcessExecutor, SequentialExecutor
from .ray_executor import RayExecutor  # Ray itself is imported only when a RayExecutor starts

__all__ = ["EXECUTORS", "make_executor"]

EXECUTORS = ("sequential", "process", "ray")


def make_executor(executor: Union[str, Executor]) -> Executor:
    """An executor from its name ("sequential", "process", "ray") or as given."""
    if isinstance(executor, Executor):
        return executor
    if executor == "sequential":
        return SequentialExecutor()
    if executor == "process":
        return ProcessExecutor()
    if executor == "ray":
        return RayExecutor()
    raise ValueError(f"executor must be one of {', '.join(map(repr, EXECUTORS))} or an Executor instance "
                     f"(fa.tune.ProcessExecutor(max_workers=4), fa.tune.RayExecutor(address=...)), "
                     f"got {executor!r}")
