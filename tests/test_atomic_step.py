"""A step commits whole or not at all, whatever interrupts it, and no
exception ever leaves an optimizer locked or a snapshot torn.

Signals are real ones: SIGINT sent to the main thread by a timer thread while
a 20M-element fused step runs, and SIGALRM from setitimer at random
microseconds around small steps. The tests assert the invariants only (never
how long anything took)."""

from __future__ import annotations

import random
import signal
import sys
import threading
import time

import numpy as np
import pytest

import fastadapt as fa

pytestmark = pytest.mark.skipif(not hasattr(signal, "pthread_kill") or not hasattr(signal, "setitimer"),
                                reason="needs POSIX signals")

BIG = 20_000_000
FACTORIES = {
    "adam": lambda: fa.Adam(lr=1e-2),
    "sgd-momentum": lambda: fa.SGD(lr=1e-2, momentum=0.9),
}


def _copy_tree(tree):
    return {k: v.copy() for k, v in tree.items()}


def _state_equal(a, b) -> bool:
    if a.keys() != b.keys():
        return False
    return all(a[k].keys() == b[k].keys() and all(np.array_equal(a[k][n], b[k][n]) for n in a[k]) for k in a)


def _interrupt_during(call, delay: float) -> bool:
    """Run call() while a timer thread sends SIGINT to this (main) thread
    after ``delay`` seconds; True when the KeyboardInterrupt was caught."""
    main = threading.main_thread().ident
    fired = threading.Event()

    def fire():
        signal.pthread_kill(main, signal.SIGINT)
        fired.set()

    timer = threading.Timer(delay, fire)
    interrupted = False
    try:
        timer.start()
        call()
        fired.wait()
        for _ in range(1000):  # give the pending handler bytecode boundaries to run at, inside the try
            pass
        time.sleep(0.001)
    except KeyboardInterrupt:
        interrupted = True
    timer.join()
    return interrupted


@pytest.fixture(scope="module")
def big_arrays():
    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal(BIG // 2, dtype=np.float32),
              "b": rng.standard_normal(BIG // 2, dtype=np.float32)}
    grads = {"w": rng.standard_normal(BIG // 2, dtype=np.float32),
             "b": rng.standard_normal(BIG // 2, dtype=np.float32)}
    return params, grads


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals go to the main thread")
@pytest.mark.parametrize("name", sorted(FACTORIES))
@pytest.mark.parametrize("warm_steps", [0, 2], ids=["first-step", "later-step"])
def test_sigint_mid_step_leaves_before_or_one_step_after(big_arrays, name, warm_steps):
    base_params, grads = big_arrays
    rng = random.Random(f"{name}-{warm_steps}")
    # How long one step takes here, so the interrupts land before, inside and after it.
    probe = FACTORIES[name]()
    scratch = _copy_tree(base_params)
    probe.update(scratch, grads)
    started = time.perf_counter()
    probe.update(scratch, grads)
    step_seconds = time.perf_counter() - started
    outcomes = set()
    for trial in range(4):
        opt = FACTORIES[name]()
        params = _copy_tree(base_params)
        for _ in range(warm_steps):
            opt.update(params, grads)
        before_params, before_sd = _copy_tree(params), opt.state_dict()

        _interrupt_during(lambda: opt.update(params, grads), rng.uniform(0.0, 1.3 * step_seconds))

        # "One step after": replayed on a fresh optimizer from the state before.
        replay = FACTORIES[name]()
        replay_params = _copy_tree(before_params)
        if warm_steps:
            replay.load_state_dict(before_sd)
        replay.update(replay_params, grads)
        after_sd = replay.state_dict()

        sd = opt.state_dict()
        if opt.step_count == warm_steps:
            outcomes.add("before")
            assert all(np.array_equal(params[k], before_params[k]) for k in params), \
                "step not counted, but the params were written"
            assert _state_equal(sd["state"], before_sd["state"])
        else:
            outcomes.add("after")
            assert opt.step_count == warm_steps + 1
            assert all(np.array_equal(params[k], replay_params[k]) for k in params)
            assert _state_equal(sd["state"], after_sd["state"]), "step counted, but its state was not kept"
        # Never locked, and the optimizer carries on exactly as the replay does.
        opt.update(params, grads)
        assert opt.step_count >= warm_steps + 1
        opt.reset()
    assert outcomes  # at least one trial ran to its check


class _Alarm(Exception):
    pass


def _raise_alarm(signum, frame):
    raise _Alarm()


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals go to the main thread")
@pytest.mark.skipif(sys.version_info < (3, 10), reason="Python 3.9 can run a signal handler between a with block's "
                    "end and its __exit__ (bpo-29988, fixed in 3.10), which leaves the busy lock held; documented "
                    "in docs/guide/speed.md")
@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_alarms_around_update_never_leave_the_lock_held_or_a_step_half_done(momentum):
    steps = 400
    # The exact trajectory: params and momentum buffer after k committed steps.
    ref, p = fa.SGD(lr=0.25, momentum=momentum), {"w": np.zeros(64)}
    g = {"w": np.linspace(-1.0, 1.0, 64)}
    expected_p, expected_buf = [p["w"].copy()], [None]
    for _ in range(steps + 3000):
        ref.update(p, g)
        expected_p.append(p["w"].copy())
        expected_buf.append(ref.state["w"]["momentum_buffer"].copy() if momentum else None)

    previous = signal.signal(signal.SIGALRM, _raise_alarm)
    rng = random.Random(1)
    opt, params = fa.SGD(lr=0.25, momentum=momentum), {"w": np.zeros(64)}
    interrupted = 0
    try:
        for i in range(3000):
            try:
                signal.setitimer(signal.ITIMER_REAL, rng.uniform(1e-6, 80e-6))
                if i % 10 == 0:
                    opt.state_dict()
                opt.update(params, g)
                signal.setitimer(signal.ITIMER_REAL, 0)
            except _Alarm:
                interrupted += 1
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            k = opt.step_count
            assert np.array_equal(params["w"], expected_p[k]), f"iteration {i}: params do not match step {k}"
            if momentum and k:
                assert np.array_equal(opt.state["w"]["momentum_buffer"], expected_buf[k])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert interrupted > 0
    opt.reset()  # "already in use by another thread" if any alarm had left the lock held
    assert opt.step_count == 0
    opt.load_state_dict(fa.SGD(lr=0.25, momentum=momentum).state_dict())


def test_state_dict_while_another_thread_steps_is_never_torn():
    n, steps = 2_000_000, 60
    b1 = 0.9
    # exp_avg after t steps of a constant gradient, computed as the kernel does (float32).
    ref, small = fa.Adam(lr=1e-3, betas=(b1, 0.999)), {"w": np.zeros(1, np.float32)}
    expected = [np.float32(0.0)]
    for _ in range(steps):
        ref.update(small, {"w": np.ones(1, np.float32)})
        expected.append(ref.state["w"]["exp_avg"][0])

    opt = fa.Adam(lr=1e-3, betas=(b1, 0.999))
    params = {"w": np.zeros(n, np.float32), "v": np.zeros(n, np.float32)}
    grads = {"w": np.ones(n, np.float32), "v": np.ones(n, np.float32)}
    opt.update(params, grads)
    errors = []

    def train():
        try:
            for _ in range(steps - 1):
                opt.update(params, grads)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    worker = threading.Thread(target=train)
    worker.start()
    snapshots = 0
    while worker.is_alive() or snapshots == 0:
        sd = opt.state_dict()
        t = sd["step"]
        for key in ("w", "v"):
            m = sd["state"][key]["exp_avg"]
            assert m.min() == m.max() == expected[t], f"snapshot at step {t} mixes buffers of different steps"
        snapshots += 1
    worker.join()
    assert not errors
    assert opt.step_count == steps


def test_reading_state_from_inside_its_own_step_is_an_error_not_a_deadlock():
    # A signal handler (or callback) on the stepping thread that reads the
    # optimizer cannot wait for the step it interrupted.
    opt = fa.SGD(lr=0.1)
    params, grads = {"w": np.zeros(3)}, {"w": np.ones(3)}
    opt.update(params, grads)
    with opt._busy:  # what update holds while it runs
        with pytest.raises(RuntimeError, match="in the middle of a call on this thread"):
            opt.state_dict()
        with pytest.raises(RuntimeError, match="already in use"):
            opt.update(params, grads)
    assert opt.state_dict()["step"] == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's")
def test_thread_start_failure_says_how_to_use_fewer_threads(tmp_path):
    import subprocess
    script = tmp_path / "threads.py"
    script.write_text(
        "import resource, numpy as np, fastadapt as fa\n"
        "from fastadapt import _core\n"
        "fa.set_num_threads(64)\n"
        "p = {'w': np.zeros(_core.MIN_PARALLEL_ELEMENTS * 8, np.float32)}\n"
        "g = {'w': np.ones_like(p['w'])}\n"
        "opt = fa.SGD(lr=0.5)\n"
        "vm = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()\n"
        "resource.setrlimit(resource.RLIMIT_AS, (vm + 64 * 2**20, resource.RLIM_INFINITY))\n"
        "try:\n"
        "    opt.update(p, g)\n"
        "except RuntimeError as e:\n"
        "    print('ERROR', e)\n"
        "print('AFTER', opt.step_count, float(p['w'].min()), float(p['w'].max()))\n"
        "resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))\n"
        "opt.update(p, g)\n"
        "print('RETRY', opt.step_count, float(p['w'][0]))\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert "could not start worker thread" in lines["ERROR"]
    assert "FASTADAPT_NUM_THREADS" in lines["ERROR"] and "set_num_threads" in lines["ERROR"]
    assert lines["AFTER"] == "0 0.0 0.0"  # the failed step changed nothing
    assert lines["RETRY"] == "1 -0.5"      # and the pool recovers once threads can start


def test_trainer_checkpoint_params_and_optimizer_state_are_of_one_step():
    n, steps = 1_000_000, 80
    params = {"w": np.zeros(n), "b": np.zeros(n)}
    grads = {"w": np.ones(n), "b": np.ones(n)}
    trainer = fa.Trainer("sgd", lr=1.0, loss_and_grad=lambda p, b: (0.0, grads), params=params, progress=False)
    opt = trainer.optimizer

    def train():
        for _ in range(steps):
            opt.update(params, grads)

    worker = threading.Thread(target=train)
    worker.start()
    snapshots = 0
    while worker.is_alive() or snapshots == 0:
        sd = trainer.state_dict()
        t = sd["optimizer"]["step"]
        for key in ("w", "b"):  # SGD, lr 1, gradient 1: every param is -t after t steps
            assert sd["params"][key].min() == sd["params"][key].max() == -t
        snapshots += 1
    worker.join()
