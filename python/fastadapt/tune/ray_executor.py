"""Jobs as Ray tasks, on a local Ray started on demand or on a cluster.

    fa.tune.Hyperband(MyTrainable, space, max_resource=81, executor="ray").run()
    fa.tune.Hyperband(..., executor=fa.tune.RayExecutor(address="ray://head:10001", cpus_per_trial=2)).run()

Ray is imported only here, when a Ray executor starts (``pip install
"ray>=2.9"``, or ``pip install ".[ray]"`` from a checkout). If Ray is already initialized in this process, that
connection is used and left as it was; otherwise ``ray.init(address=...)``
starts a local Ray (``address=None``) or joins a cluster, and ``close()``
shuts down only what it started.

Jobs are stateless tasks (see ``jobs``), so Ray's own task retries are off
(``max_retries=0``): the tuner retries a job whose worker died itself, the
same way on every executor.
"""

from __future__ import annotations

import collections
import os
import sys
import time
from typing import Any, Deque, Dict, Optional, Tuple

from .. import _checks
from .._install import install_hint
from .executors import Executor
from .jobs import DIED, ERROR, Job, Outcome, run_job, time_limit, timed_out

__all__ = ["RayExecutor", "import_ray"]


_IMPORT_HINT = ("\nRay workers could not import the trainable's module. A local Ray started by the tuner gets the "
                "driver's sys.path; a cluster needs the code shipped: RayExecutor(address=..., init_kwargs="
                "{'runtime_env': {'py_modules': [my_module]}}) or {'working_dir': '.'}.")


_INSTALL_HINT = f'executor="ray" needs Ray: {install_hint("ray")}'


def import_ray() -> Any:
    """The ``ray`` module, or an ImportError naming the install (the shared check)."""
    from ..distributed._ray import import_ray as import_checked

    return import_checked(_INSTALL_HINT)


class RayExecutor(Executor):
    """Run jobs as Ray tasks.

    Parameters
    ----------
    address
        a cluster to join (``"auto"``, ``"ray://host:10001"``); None starts a local Ray when none is
        running in this process.
    num_cpus
        CPUs of a local Ray this executor starts (default: all).
    cpus_per_trial
        CPUs each task reserves (also its thread count).
    max_concurrent
        jobs in flight at once (default: the cluster's CPUs // cpus_per_trial). Asynchronous tuners
        decide each next job when one finishes, so flooding Ray's queue would only delay them.
    task_timeout
        seconds before a job is cancelled (its worker killed) and reported as timed out (None: no
        limit). The tuner's ``trial_timeout`` is honoured the same way; the smaller applies.
    init_kwargs
        more keyword arguments for ``ray.init``.
    """

    name = "ray"

    def __init__(self, address: Optional[str] = None, *, num_cpus: Optional[int] = None, cpus_per_trial: int = 1,
                 max_concurrent: Optional[int] = None, task_timeout: Optional[float] = None,
                 init_kwargs: Optional[Dict[str, Any]] = None):
        if address is not None and not isinstance(address, str):
            raise TypeError(f"address must be a Ray address string such as 'auto' or 'ray://host:10001', "
                            f"got {address!r}")
        self.address = address
        self.num_cpus = None if num_cpus is None else _checks.integer("num_cpus", num_cpus, 1)
        self.cpus_per_trial = _checks.integer("cpus_per_trial", cpus_per_trial, 1)
        self.max_concurrent = None if max_concurrent is None else _checks.integer("max_concurrent",
                                                                                  max_concurrent, 1)
        self.task_timeout = None if task_timeout is None else _checks.real("task_timeout", task_timeout, low=0,
                                                                            low_open=True)
        self.init_kwargs = dict(init_kwargs or {})
        self._ray: Any = None
        self._started_ray = False
        self._remote: Any = None
        self._capacity = 0
        self._queue: Deque[Job] = collections.deque()
        self._running: Dict[Any, Tuple[Job, float]] = {}  # task ref -> (its job, when it was dispatched)

    @property
    def capacity(self) -> int:
        return self._capacity

    def start(self) -> None:
        ray = self._ray = import_ray()
        if not ray.is_initialized():
            kwargs = {"include_dashboard": False, **self.init_kwargs}
            if self.num_cpus is not None:
                kwargs["num_cpus"] = self.num_cpus
            if self.address is None and "runtime_env" not in kwargs:
                # Local workers do not inherit the driver's sys.path; without it a trainable defined in the
                # user's script directory (or a test module) could not be unpickled by reference.
                paths = [p for p in sys.path if p and os.path.isdir(p)]
                kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}}
            ray.init(address=self.address, **kwargs)
            self._started_ray = True
        self._remote = ray.remote(num_cpus=self.cpus_per_trial, max_retries=0)(run_job)
        cluster_cpus = int(ray.cluster_resources().get("CPU", 1))
        self._capacity = self.max_concurrent or max(1, cluster_cpus // self.cpus_per_trial)
        self._queue.clear()
        self._running.clear()

    def submit(self, job: Job) -> None:
        """Queue ``job`` as a Ray task; it is dispatched when fewer than
        [`capacity`][fastadapt.tune.Executor.capacity] tasks are in flight.

        Parameters
        ----------
        job
            what to train (built by the tuner).

        Raises
        ------
        RuntimeError
            before [`start`][fastadapt.tune.Executor.start] (use the executor through a tuner or a
            ``with`` block).
        """
        if self._remote is None:
            raise RuntimeError("RayExecutor.submit() before start(); use it through a tuner or a with-block")
        self._queue.append(job)

    def _dispatch(self) -> None:
        while self._queue and len(self._running) < self._capacity:
            job = self._queue.popleft()
            ref = self._remote.remote(job, self.cpus_per_trial)
            self._running[ref] = (job, time.monotonic())

    def _timed_out(self) -> Optional[Outcome]:
        now = time.monotonic()
        for ref, (job, started) in list(self._running.items()):
            limit = time_limit(job, self.task_timeout)
            if limit is not None and now - started >= limit[0]:
                del self._running[ref]
                self._ray.cancel(ref, force=True)
                return timed_out(job, limit, "its Ray task was cancelled (force=True: its worker was killed)")
        return None

    def next_outcome(self) -> Outcome:
        ray = self._ray
        self._dispatch()
        if not self._running:
            raise RuntimeError("next_outcome() called with no job submitted")
        while True:
            deadlines = [started + limit[0] for job, started in self._running.values()
                         if (limit := time_limit(job, self.task_timeout)) is not None]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            ready, _ = ray.wait(list(self._running), num_returns=1, timeout=timeout)
            if ready:
                break
            expired = self._timed_out()
            if expired is not None:
                return expired
        ref = ready[0]
        job, started = self._running.pop(ref)
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as err:  # run_job catches the trainable's errors; this is Ray's own
            text = str(err)
            if "ModuleNotFoundError" in text or "No module named" in text:
                text += _IMPORT_HINT
            return Outcome(job.trial_id, ERROR, seconds=time.monotonic() - started, error=text)
        except ray.exceptions.RayError as err:  # WorkerCrashedError, node failure, lost object, ...
            return Outcome(job.trial_id, DIED, seconds=time.monotonic() - started,
                           error=f"the Ray worker running trial {job.trial_id} died ({type(err).__name__}: {err})")

    def close(self, abort: bool = False) -> None:
        if self._ray is not None:
            for ref in list(self._running):
                try:
                    self._ray.cancel(ref, force=True)
                except Exception:  # already finished or its worker is gone: nothing left to stop
                    pass
            if self._started_ray:
                self._ray.shutdown()
        self._started_ray = False
        self._running.clear()
        self._queue.clear()
        self._remote = None
