"""Where jobs run: in the driver ("sequential"), in a pool of local worker
processes ("process", the default) or on Ray ("ray", see ``ray_executor``;
``executor_choice`` turns a name into one).

Every executor takes jobs with [`Executor.submit`][fastadapt.tune.Executor.submit] (queued beyond its
capacity) and hands back one ``Outcome`` at a time
from [`Executor.next_outcome`][fastadapt.tune.Executor.next_outcome], in completion order. Every executor
honours a job's ``timeout`` (the tuner's ``trial_timeout``): a job that runs
past it comes back as a ``timeout`` outcome and the run goes on. Tuners that are
synchronous decide only once a whole rung or generation is back, so the
order does not change their results.

The process pool is fastadapt's own rather than ``concurrent.futures``: each
worker has its own pipe, so when one dies (a segfault, the OOM killer,
``os._exit``) the pool knows which job it held, fails or retries just that
one and starts a replacement; ``ProcessPoolExecutor`` breaks as a whole and
cannot say which job was the culprit.
"""

from __future__ import annotations

import collections
import copy
import multiprocessing
import os
import pickle
import signal
import threading
import time
import traceback
from contextlib import contextmanager
from multiprocessing.connection import wait as wait_for_ready
from typing import Any, Deque, Iterator, List, Optional, Tuple

from .. import _checks
from .jobs import DIED, ERROR, Job, Outcome, run_job, time_limit, timed_out

__all__ = ["Executor", "SequentialExecutor", "ProcessExecutor", "available_cpus"]


# Thread-count variables of the BLAS/OpenMP runtimes NumPy may load, and fastadapt's own.
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                     "FASTADAPT_NUM_THREADS")

_READY = "ready"
_STARTUP_FIX = ("a worker process exited while starting, before running any job ({exit}). The process executor "
                "starts workers with '{method}', which re-imports your main script: a script that runs a tuner "
                "must do so under `if __name__ == \"__main__\":`. Its traceback is on stderr above. Or pass "
                "executor='sequential'.")
_IMPORTABLE_FIX = ("trials run in other processes, so the trainable must be importable: a class or function "
                   "defined at the top level of a module (not a lambda, not inside a function, not in an "
                   "interactive __main__); or pass executor='sequential'")


def available_cpus() -> int:
    """CPUs this process may run on (its affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class Executor:
    """Runs jobs. Use as a context manager, or call
    [`start`][fastadapt.tune.Executor.start]/[`close`][fastadapt.tune.Executor.close]."""

    name = "executor"

    @property
    def capacity(self) -> int:
        """Jobs that run at the same time (valid after [`start`][fastadapt.tune.Executor.start])."""
        raise NotImplementedError

    def start(self) -> None:
        """Acquire workers. Called by the tuner at the start of ``run()``."""

    def submit(self, job: Job) -> None:
        """Queue ``job``; it runs when a worker is free, and its outcome comes
        back from [`next_outcome`][fastadapt.tune.Executor.next_outcome]. Never blocks: jobs beyond
        [`capacity`][fastadapt.tune.Executor.capacity] wait in the executor's queue.

        Parameters
        ----------
        job
            what to train: the trial, its config and state, the budget and the
            timeout (built by the tuner).
        """
        raise NotImplementedError

    def next_outcome(self) -> Outcome:
        """The next finished job, waiting as long as it takes; RuntimeError
        when nothing is submitted (a tuner bug, never a hang). A job running
        past its ``timeout`` (seconds, None: no limit) must be stopped and
        reported as a ``timeout`` outcome (see ``jobs.timed_out``)."""
        raise NotImplementedError

    def close(self, abort: bool = False) -> None:
        """Release workers; ``abort`` stops running jobs instead of waiting."""

    def __enter__(self) -> "Executor":
        self.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close(abort=exc_type is not None)


class SequentialExecutor(Executor):
    """Runs each job in the driver process when its outcome is asked for.

    The job's state is deep-copied first, so a trainable that keeps and
    mutates the arrays it loads cannot change the tuner's copy, exactly as
    when the job crosses a process boundary.

    With a time limit (the tuner's ``trial_timeout``), the job runs in a
    daemon thread of this process and the driver waits for it at most that
    long. Python cannot kill a thread: a job past its limit is reported as
    timed out and its thread is *abandoned* (it may keep running, and
    using CPU, in the background until ``train`` returns; whatever it
    produces is discarded, and it only holds its own copies of the config
    and state). Use ``executor="process"`` to have hung trials killed.
    """

    name = "sequential"

    def __init__(self) -> None:
        self._queue: Deque[Job] = collections.deque()

    @property
    def capacity(self) -> int:
        return 1

    def start(self) -> None:
        self._queue.clear()

    def submit(self, job: Job) -> None:
        self._queue.append(job)

    def next_outcome(self) -> Outcome:
        if not self._queue:
            raise RuntimeError("next_outcome() called with no job submitted")
        job = self._queue.popleft()
        isolated = Job(**{**job.__dict__, "state": copy.deepcopy(job.state), "config": copy.deepcopy(job.config)})
        limit = time_limit(job, None)
        if limit is None:
            return run_job(isolated)
        outcomes: List[Outcome] = []
        thread = threading.Thread(target=lambda: outcomes.append(run_job(isolated)), daemon=True,
                                  name=f"fastadapt-tune-trial-{job.trial_id}")
        thread.start()
        thread.join(limit[0])
        if thread.is_alive():
            return timed_out(job, limit, "the sequential executor cannot kill it, so its thread was abandoned "
                                         "(it may run on in the background; executor='process' kills hung trials)")
        if not outcomes:  # run_job returns for everything but a BaseException such as GeneratorExit
            return Outcome(job.trial_id, ERROR, error=f"trial {job.trial_id} ended without an outcome")
        return outcomes[0]

    def close(self, abort: bool = False) -> None:
        self._queue.clear()


@contextmanager
def _thread_environment(threads: int) -> Iterator[None]:
    """Set the thread-count variables a new process inherits (unless the user
    set them): ``workers x threads`` should not exceed the CPUs."""
    saved = {k: os.environ.get(k) for k in _THREAD_VARIABLES}
    for key in _THREAD_VARIABLES:
        os.environ.setdefault(key, str(threads))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _worker_main(conn: Any, threads: int) -> None:
    """A worker's loop: receive a pickled job, run it, send the outcome."""
    # The driver handles Ctrl-C and stops the workers; a worker interrupted mid-send would corrupt its pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from ..runtime import set_num_threads

    set_num_threads(threads)
    conn.send(_READY)  # tells the driver that startup worked: a death before this is a startup failure
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        trial_id, payload = message
        try:
            job = pickle.loads(payload)
        except Exception as err:  # the trainable's module cannot be imported here
            conn.send(Outcome(trial_id, ERROR, error=f"could not unpickle the job in a worker process: "
                                                      f"{type(err).__name__}: {err}; {_IMPORTABLE_FIX}"))
            continue
        try:
            outcome = run_job(job)
        except KeyboardInterrupt:  # raised by the trainable itself (SIGINT is ignored here): it fails alone
            outcome = Outcome(trial_id, ERROR, error=traceback.format_exc())
        try:
            conn.send(outcome)
        except Exception as err:  # the state or metric extras cannot be pickled
            conn.send(Outcome(trial_id, ERROR, seconds=outcome.seconds,
                              error=f"the trial's result could not be sent back (save() must return picklable "
                                    f"data): {type(err).__name__}: {err}"))


class _Worker:
    def __init__(self, process: Any, conn: Any):
        self.process = process
        self.conn = conn
        self.ready = False
        self.job: Optional[Job] = None
        self.started_at = 0.0


def _describe_exit(code: Optional[int]) -> str:
    if code is None:
        return "exit code unknown"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class ProcessExecutor(Executor):
    """A pool of local worker processes, started with ``start_method``
    ("spawn" by default: safe with threads in the driver, the same on every
    OS; "forkserver" starts faster on Linux).

    A worker that dies is noticed at once (its process sentinel), its job is
    reported as ``died`` and a new worker takes its place.

    Parameters
    ----------
    max_workers
        processes (default: the CPUs this process may use).
    start_method
        a ``multiprocessing`` start method.
    threads_per_worker
        threads each worker's NumPy/BLAS and fastadapt kernels use (default: CPUs // workers, at
        least 1), so the pool does not oversubscribe the machine.
    task_timeout
        seconds a job may run before its worker is killed and the job reported as timed out (None:
        no limit). The tuner's ``trial_timeout`` is honoured the same way; the smaller applies.
    """

    name = "process"

    def __init__(self, max_workers: Optional[int] = None, *, start_method: str = "spawn",
                 threads_per_worker: Optional[int] = None, task_timeout: Optional[float] = None):
        self.max_workers = available_cpus() if max_workers is None else _checks.integer("max_workers", max_workers, 1)
        if start_method not in multiprocessing.get_all_start_methods():
            raise ValueError(f"start_method must be one of {multiprocessing.get_all_start_methods()}, "
                             f"got {start_method!r}")
        self.start_method = start_method
        self.threads_per_worker = (max(1, available_cpus() // self.max_workers) if threads_per_worker is None
                                   else _checks.integer("threads_per_worker", threads_per_worker, 1))
        self.task_timeout = None if task_timeout is None else _checks.real("task_timeout", task_timeout, low=0,
                                                                            low_open=True)
        self._context = multiprocessing.get_context(start_method)
        self._workers: List[_Worker] = []
        self._queue: Deque[Tuple[Job, bytes]] = collections.deque()
        self._outcomes: Deque[Outcome] = collections.deque()

    @property
    def capacity(self) -> int:
        return self.max_workers

    def start(self) -> None:
        self._queue.clear()
        self._outcomes.clear()

    def _payload(self, job: Job) -> bytes:
        # Pickled in the driver, so a trainable that cannot travel is a TypeError here, not a failed trial.
        try:
            return pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, AttributeError, TypeError) as err:
            raise TypeError(f"cannot send trial {job.trial_id} to a worker process ({type(err).__name__}: {err}); "
                            f"{_IMPORTABLE_FIX}") from err

    def submit(self, job: Job) -> None:
        self._queue.append((job, self._payload(job)))

    def _spawn_worker(self) -> _Worker:
        parent_conn, child_conn = self._context.Pipe(duplex=True)
        # (typeshed's BaseContext lacks Process; get_context returns a subclass that has it)
        process = self._context.Process(target=_worker_main,  # type: ignore[attr-defined]
                                        args=(child_conn, self.threads_per_worker),
                                        name="fastadapt-tune-worker", daemon=True)
        with _thread_environment(self.threads_per_worker):
            process.start()
        child_conn.close()
        return _Worker(process, parent_conn)

    def _dispatch(self) -> None:
        while self._queue:
            idle = next((w for w in self._workers if w.job is None), None)
            if idle is None:
                if len(self._workers) >= self.max_workers:
                    return
                idle = self._spawn_worker()
                self._workers.append(idle)
            job, payload = self._queue.popleft()
            idle.job = job
            idle.started_at = time.monotonic()
            try:
                idle.conn.send((job.trial_id, payload))
            except (OSError, EOFError):  # the idle worker died; its sentinel is noticed by next_outcome
                pass

    def _retire(self, worker: _Worker, kill: bool) -> None:
        if kill and worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=5)
        worker.conn.close()
        self._workers.remove(worker)

    def _died(self, worker: _Worker) -> Outcome:
        job = worker.job
        assert job is not None
        self._retire(worker, kill=True)
        exit_text = _describe_exit(worker.process.exitcode)
        if not worker.ready:
            raise RuntimeError(_STARTUP_FIX.format(exit=exit_text, method=self.start_method))
        return Outcome(job.trial_id, DIED, seconds=time.monotonic() - worker.started_at,
                       error=f"the worker process running trial {job.trial_id} died ({exit_text})")

    def _collect(self, worker: _Worker) -> Optional[Outcome]:
        """The worker's message: its outcome, or None for the startup handshake."""
        try:
            message = worker.conn.recv()
        except (EOFError, OSError, pickle.UnpicklingError):
            return self._died(worker)
        if message == _READY:
            worker.ready = True
            # A job's time limit counts from here: a fresh worker's interpreter startup (seconds under "spawn"
            # on a loaded machine) is not the trial's time.
            worker.started_at = time.monotonic()
            return None
        worker.job = None
        return message

    def next_outcome(self) -> Outcome:
        while not self._outcomes:
            self._dispatch()
            busy = [w for w in self._workers if w.job is not None]
            if not busy:
                raise RuntimeError("next_outcome() called with no job submitted")
            # Workers still starting have no deadline yet (see _collect).
            limits = {id(w): time_limit(w.job, self.task_timeout) for w in busy if w.job is not None and w.ready}
            deadlines = [w.started_at + limit[0] for w in busy if (limit := limits.get(id(w))) is not None]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            ready = set(wait_for_ready([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout))
            for worker in busy:
                limit = limits.get(id(worker))
                if worker.conn in ready:
                    # A finished worker's message is read before its exit is believed.
                    outcome = self._collect(worker)
                    if outcome is not None:
                        self._outcomes.append(outcome)
                elif worker.process.sentinel in ready:
                    self._outcomes.append(self._died(worker))
                elif limit is not None and time.monotonic() - worker.started_at >= limit[0]:
                    job = worker.job
                    assert job is not None
                    self._retire(worker, kill=True)
                    self._outcomes.append(timed_out(job, limit, "its worker process was killed"))
        return self._outcomes.popleft()

    def close(self, abort: bool = False) -> None:
        for worker in list(self._workers):
            if abort or worker.job is not None:
                worker.process.kill()
            else:
                try:
                    worker.conn.send(None)
                except (OSError, EOFError):
                    pass
        for worker in list(self._workers):
            worker.process.join(timeout=5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=5)
            worker.conn.close()
        self._workers.clear()
        self._queue.clear()
