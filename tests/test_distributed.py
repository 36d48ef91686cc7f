"""fastadapt.distributed: sharding, the staleness gate and the parameter
server without Ray; DataParallel on a local Ray (sync equals single-process
training, async convergence within the staleness bound, a worker killed
mid-step, checkpoint -> kill everything -> resume).

"Single-process training on the concatenated batch" here: at step k, one
optimizer over all params takes the gradient of the mean loss over the
concatenation of the workers' k-th batches (equal sizes), i.e. the average
of the workers' batch-mean gradients. DataParallel computes that average as
``(g_0 + g_1) / 2`` in worker order, so it is bit-identical to a single
process that averages the same per-worker gradients the same way, and
equal to the concatenated-batch gradient up to the rounding of the sum.
"""

import math
import os
import subprocess
import sys

import numpy as np
import pytest

import fastadapt as fa
from fastadapt.distributed import StalenessGate, assign_shards, shard_batches
from fastadapt.distributed.server import OptimizerSpec, ParameterServer

from helpers import copy_tree, leaves, same_bits

try:
    import ray
except ImportError:  # the tests that need Ray skip; the others still run
    ray = None

W = 2  # workers in the Ray tests: the CI machine has 2 cores


# ---- without Ray ---------------------------------------------------------------------------

def test_assign_shards_balances_bytes_and_keeps_key_order():
    sizes = [("a", 10), ("b", 70), ("c", 30), ("d", 30), ("e", 5), ("f", 40)]
    shards = assign_shards(sizes, 3)
    assert shards == assign_shards(list(sizes), 3)
    assert sorted(k for s in shards for k in s) == sorted(k for k, _ in sizes)
    order = [k for k, _ in sizes]
    for shard in shards:
        assert shard == sorted(shard, key=order.index)
    loads = [sum(dict(sizes)[k] for k in shard) for shard in shards]
    assert max(loads) <= 70  # the largest array alone is the best possible
    assert assign_shards([("big", 1000), ("x", 1), ("y", 1)], 3) == [["big"], ["x"], ["y"]]


@pytest.mark.parametrize("num_shards, error", [(0, ValueError), (4, ValueError), (True, TypeError), (1.5, TypeError)])
def test_assign_shards_rejects_bad_counts(num_shards, error):
    with pytest.raises(error, match="num_shards"):
        assign_shards([("a", 1), ("b", 2), ("c", 3)], num_shards)


def test_staleness_gate_bounds_every_unapplied_gradient():
    gate = StalenessGate(1)
    gate.started(0, version=0)
    gate.started(1, version=0)
    assert not gate.may_start()              # max_staleness + 1 gradients in flight
    assert gate.may_apply(0, version=0)      # worker 1's gradient would be 1 update old: allowed
    gate.applied(0)
    gate.started(0, version=1)
    assert not gate.may_apply(0, version=1)  # would make worker 1's gradient 2 updates old
    assert gate.may_apply(1, version=1) and gate.staleness(1, version=1) == 1
    gate.applied(1)
    assert gate.too_stale(version=3) == [0] and gate.too_stale(version=2) == []
    with pytest.raises(ValueError, match="already has"):
        gate.started(0, version=2)
    with pytest.raises(ValueError, match="max_staleness"):
        StalenessGate(-1)


def test_shard_batches_gives_every_worker_equal_batches():
    X = np.arange(21, dtype=np.float64).reshape(21, 1)
    y = np.arange(21)
    data = shard_batches(X, y, num_workers=2, batch_size=4, shuffle=True, seed=3)
    assert [len(d) for d in data] == [3, 3]
    blocks = [np.concatenate([b[1] for b in d]) for d in data]
    assert sorted(blocks[0]) == list(range(10)) and sorted(blocks[1]) == list(range(10, 20))
    with pytest.raises(ValueError, match="num_workers"):
        shard_batches(X, y, num_workers=30, batch_size=4)


def test_shard_batches_rejects_misaligned_arrays():
    # 12 labels for 10 samples: each worker's block alone looks fine (5 and 5)
    with pytest.raises(ValueError, match=r"equally long.*\[10, 12\]"):
        shard_batches(np.zeros((10, 2)), np.zeros(12), num_workers=2, batch_size=2)


def _tiny_params(dtype=np.float32):
    rng = np.random.default_rng(0)
    return {"w": rng.standard_normal((3, 4)).astype(dtype), "b": np.zeros(4, dtype)}


def test_server_applies_each_update_once_and_in_order():
    params = _tiny_params()
    server = ParameterServer(0, params, OptimizerSpec.of(fa.SGD(lr=0.5)), list(params))
    grads = [{k: np.full_like(v, 1.0) for k, v in params.items()}, {k: np.full_like(v, 3.0) for k, v in params.items()}]
    infos = [{"samples": 4}, {"samples": 4}]
    info, after = server.reduce_and_apply(0, 2, *infos, *grads)
    assert info["version"] == 1 and info["step"] == 1
    np.testing.assert_array_equal(after["b"], np.full(4, -1.0, np.float32))   # lr * (1 + 3) / 2
    replay, again = server.reduce_and_apply(0, 2, *infos, *grads)              # a repeated call
    assert replay["replayed"] and server.version == 1
    np.testing.assert_array_equal(again["b"], np.full(4, -1.0, np.float32))
    with pytest.raises(RuntimeError, match="in order"):
        server.reduce_and_apply(5, 2, *infos, *grads)
    with pytest.raises(RuntimeError, match="without reduce"):
        server.apply(1)
    np.testing.assert_array_equal(params["b"], np.zeros(4, np.float32))        # the caller's arrays stay as they were


def test_server_weights_unequal_batches_by_size():
    params = _tiny_params(np.float64)
    server = ParameterServer(0, params, OptimizerSpec.of(fa.SGD(lr=1.0)), list(params))
    grads = [{k: np.full_like(v, 1.0) for k, v in params.items()}, {k: np.full_like(v, 4.0) for k, v in params.items()}]
    _, after = server.reduce_and_apply(0, 2, {"samples": 3}, {"samples": 1}, *grads)
    np.testing.assert_array_equal(after["b"], np.full(4, -1.75))


def test_import_needs_no_ray_and_the_error_says_how_to_install():
    code = ("import sys; sys.modules['ray'] = None\n"
            "import numpy as np, fastadapt as fa\n"
            "try:\n"
            "    fa.distributed.DataParallel({'w': np.zeros(2)}, 'sgd', loss_and_grad=print)\n"
            "except ImportError as e:\n"
            "    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert 'pip install "ray>=2.9" (from a fastadapt checkout: pip install ".[ray]")' in out


def test_bad_arguments_are_refused_before_ray_starts():
    DP = fa.distributed.DataParallel
    params = _tiny_params()
    with pytest.raises(ValueError, match="mode='bogus' must be 'sync' or 'async'"):
        DP(params, "sgd", loss_and_grad=print, mode="bogus")
    with pytest.raises(ValueError, match="num_workers=0 must be >= 1"):
        DP(params, "sgd", loss_and_grad=print, num_workers=0)
    with pytest.raises(ValueError, match="max_staleness applies to mode='async'"):
        DP(params, "sgd", loss_and_grad=print, max_staleness=1)
    with pytest.raises(TypeError, match="loss_and_grad must be a function"):
        DP(params, "sgd", loss_and_grad=None)
    with pytest.raises(TypeError, match=r"params\['w'\] must be a float32 or float64"):
        DP({"w": np.zeros(3, np.int64)}, "sgd", loss_and_grad=print)
    with pytest.raises(ValueError, match="num_shards=3 exceeds the 2 parameter arrays"):
        DP(params, "sgd", loss_and_grad=print, num_shards=3)


# ---- on Ray -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray for the module (2 CPUs: the workers' share of this machine)."""
    pytest.importorskip("ray")
    # The test module's helpers (loss functions, the worker killer) travel by
    # value: the workers cannot import a test module by name.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    if not ray.is_initialized():
        ray.init(num_cpus=W, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def local_ray(ray_cluster):
    """Ray is running (a test that shuts it down leaves it for the next to restart)."""
    if not ray.is_initialized():
        ray.init(num_cpus=W, include_dashboard=False, log_to_driver=False)
    yield


MODEL = fa.models.MLP([6, 8, 3], seed=0)
MODELS = {np.float32: MODEL, np.float64: fa.models.MLP([6, 8, 3], seed=0, dtype=np.float64)}


def _worker_batches(steps, batch=4, seed=1):
    """data[w][k]: worker w's k-th batch, (X, y), equal sizes."""
    rng = np.random.default_rng(seed)
    return [[(rng.standard_normal((batch, 6)), rng.integers(0, 3, batch)) for _ in range(steps)] for _ in range(W)]


def _single_process(params, optimizer, data, epochs=1, concatenate=False, on_step=None, model=MODEL):
    """The reference: one optimizer over all params, one step per k."""
    params = copy_tree(params)
    step = 0
    for _ in range(epochs):
        for k in range(len(data[0])):
            if concatenate:
                batch = tuple(np.concatenate([data[w][k][i] for w in range(W)]) for i in range(2))
                grads = model.loss_and_grad(params, batch)[1]
            else:
                g0, g1 = (model.loss_and_grad(params, data[w][k])[1] for w in range(W))
                grads = {layer: {n: (g0[layer][n] + g1[layer][n]) / 2 for n in g0[layer]} for layer in g0}
            optimizer.update(params, grads)
            step += 1
            if on_step:
                on_step(step, optimizer)
    return params


class HalveLrAtStep(fa.callbacks.Callback):
    """What a schedule does: change a hyperparameter between steps."""

    def __init__(self, at):
        self.at = at

    def on_batch_end(self, step, logs, trainer):
        if step + 1 == self.at:
            trainer.optimizer.lr = trainer.optimizer.lr / 2


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-6), (np.float64, 1e-13)])
def test_sync_equals_single_process_training(local_ray, dtype, rtol):
    data = _worker_batches(steps=6)
    model = MODELS[dtype]
    params = model.params

    def make_optimizer():  # clipping active in most steps: the global norm must be global
        return fa.AdamW(lr=1e-2, max_grad_norm=0.5, overrides={"*.b": {"weight_decay": 0.0}})

    def halve(step, opt):
        if step == 2:
            opt.lr = opt.lr / 2

    with fa.distributed.DataParallel(params, make_optimizer(), loss_and_grad=model.loss_and_grad, num_workers=W,
                                     num_shards=2, callbacks=[HalveLrAtStep(2)]) as ps:
        history = ps.fit(data, epochs=2)
        got = ps.params()
        state = ps.optimizer_state_dict()
    averaged = _single_process(params, make_optimizer(), data, epochs=2, on_step=halve, model=model)
    concatenated = _single_process(params, make_optimizer(), data, epochs=2, concatenate=True, on_step=halve,
                                   model=model)
    for a, b, c in zip(leaves(got), leaves(averaged), leaves(concatenated)):
        assert same_bits(a, b)
        # within rtol of the array's scale (elementwise relative error is
        # meaningless for entries near zero, such as biases)
        assert np.max(np.abs(a - c)) <= rtol * np.max(np.abs(c))
    assert ps.step == 12 and state["step"] == 12 and history["steps"] == [6, 6]
    # the lrs the updates used: epoch 0 ran 2 steps at 1e-2, then 4 at 5e-3
    assert history["lr"] == pytest.approx([(2 * 1e-2 + 4 * 5e-3) / 6, 5e-3], rel=1e-12)
    assert history["lr_min"] == [5e-3, 5e-3] and history["lr_max"] == [1e-2, 5e-3]
    assert len(history["loss"]) == 2
    assert all(h > 0.5 for h in history["grad_norm_max"])  # clipping did bite
    reference = make_optimizer()
    reference.load_state_dict(state)                      # the merged state is the single-process format
    assert reference.step_count == 12


def _nan_loss_and_grad(params, batch):
    """MODEL's gradient, with NaN in one array of one shard when the batch asks for it."""
    X, y, poison = batch
    # parameters arrive as read-only views of the object store, not copies
    assert not any(arr.flags.writeable for layer in params.values() for arr in layer.values())
    loss, grads = MODEL.loss_and_grad(params, (X, y))
    if poison:
        grads["fc2"]["b"][0] = np.nan
    return loss, grads


@pytest.mark.parametrize("policy", ["skip", "raise"])
def test_nonfinite_policy_acts_on_all_shards(local_ray, policy):
    data = [[(X, y, k == 1 and w == 1) for k, (X, y) in enumerate(part)] for w, part in enumerate(_worker_batches(3))]
    with fa.distributed.DataParallel(MODEL.params, fa.SGD(lr=0.1, nonfinite=policy),
                                     loss_and_grad=_nan_loss_and_grad, num_workers=W, num_shards=2) as ps:
        if policy == "raise":
            with pytest.raises(FloatingPointError, match=r"grads\['fc2.b'\] contains NaN"):
                ps.fit(data, epochs=1)
            assert ps.step == 1      # the first step went through, the second changed no shard
            ps.fit([part[:1] for part in data], epochs=1)   # the servers are still in step
            assert ps.step == 2
            return
        history = ps.fit(data, epochs=1)
        got = ps.params()
    expected = copy_tree(MODEL.params)
    reference = fa.SGD(lr=0.1)
    for k in (0, 2):  # step 1 skipped on every shard, including the one without NaN
        _, g0 = MODEL.loss_and_grad(expected, data[0][k][:2])
        _, g1 = MODEL.loss_and_grad(expected, data[1][k][:2])
        reference.update(expected, {a: {n: (g0[a][n] + g1[a][n]) / 2 for n in g0[a]} for a in g0})
    assert all(same_bits(a, b) for a, b in zip(leaves(got), leaves(expected)))
    assert history["skipped_steps"] == [1] and history["nonfinite_grads"] == [1]


class DieOnce:
    """loss_and_grad that kills its worker process (os._exit, no clean-up) in
    the middle of its ``at``-th call, once per marker file: a crash mid-step."""

    def __init__(self, marker, at):
        self.marker, self.at, self.calls = marker, at, 0

    def __call__(self, params, batch):
        self.calls += 1
        if self.calls == self.at:
            try:
                os.remove(self.marker)   # only one process wins the removal, and dies
            except FileNotFoundError:
                pass
            else:
                os._exit(1)
        return MODEL.loss_and_grad(params, batch)


def test_sync_worker_killed_mid_step_loses_and_repeats_nothing(local_ray, tmp_path):
    data = _worker_batches(steps=5)
    marker = tmp_path / "die"
    marker.touch()
    with fa.distributed.DataParallel(MODEL.params, fa.Adam(lr=1e-2), loss_and_grad=DieOnce(str(marker), at=3),
                                     num_workers=W, num_shards=2) as ps:
        history = ps.fit(data, epochs=1)
        got = ps.params()
    assert not marker.exists()                      # a worker did die
    assert history["worker_restarts"] == [1] and sum(ps.worker_restarts) == 1
    assert ps.step == 5 and history["steps"] == [5]
    expected = _single_process(MODEL.params, fa.Adam(lr=1e-2), data)
    assert all(same_bits(a, b) for a, b in zip(leaves(got), leaves(expected)))


def test_worker_past_its_restarts_is_dropped_and_training_goes_on(local_ray, tmp_path):
    data = _worker_batches(steps=4)
    marker = tmp_path / "die"
    marker.touch()
    with fa.distributed.DataParallel(MODEL.params, fa.SGD(lr=0.1), loss_and_grad=DieOnce(str(marker), at=3),
                                     num_workers=W, max_worker_restarts=0) as ps:
        history = ps.fit(data, epochs=1)
        got = ps.params()
    assert len(ps.dropped_workers) == 1 and ps.step == 4 and history["steps"] == [4]
    survivor = 1 - ps.dropped_workers[0]
    expected = _single_process(MODEL.params, fa.SGD(lr=0.1), [part[:2] for part in data])  # both workers
    reference = fa.SGD(lr=0.1)
    for k in (2, 3):                                                                      # the survivor alone
        reference.update(expected, MODEL.loss_and_grad(expected, data[survivor][k])[1])
    assert all(same_bits(a, b) for a, b in zip(leaves(got), leaves(expected)))


class KillWorker(fa.callbacks.Callback):
    def __init__(self, worker, at):
        self.worker, self.at = worker, at

    def on_batch_end(self, step, logs, trainer):
        if step == self.at:
            ray.kill(trainer.workers[self.worker])


def _least_squares_loss_and_grad(params, batch):
    """Least squares with a per-batch delay (slow workers on demand)."""
    X, y, delay = batch
    if delay:
        import time
        time.sleep(delay)
    residual = X @ params["w"] - y
    return 0.5 * float(np.mean(residual * residual)), {"w": X.T @ residual / len(y)}


def _least_squares_data(problem, batch_size, delays):
    parts = shard_batches(problem.X, problem.y, num_workers=len(delays), batch_size=batch_size)
    return [[(X, y, delay) for X, y in part] for part, delay in zip(parts, delays)]


@pytest.mark.parametrize("max_staleness", [0, 2])
def test_async_converges_within_the_staleness_bound(local_ray, max_staleness):
    problem = fa.problems.least_squares(n_samples=256, n_features=6, seed=0)
    # worker 1 is slow: worker 0 runs ahead as far as the bound lets it
    data = _least_squares_data(problem, batch_size=16, delays=[0.0, 0.05])
    start = problem.init_params()
    loss_before = problem.loss_and_grad(start, None)[0]
    with fa.distributed.DataParallel(start, fa.SGD(lr=0.3), loss_and_grad=_least_squares_loss_and_grad,
                                     num_workers=W, mode="async", max_staleness=max_staleness,
                                     callbacks=[KillWorker(worker=0, at=5)]) as ps:
        history = ps.fit(data, epochs=3)
        got = ps.params()
    assert problem.loss_and_grad(got, None)[0] < 0.05 * loss_before
    assert max(history["staleness_max"]) <= max_staleness
    # every batch applied exactly once, despite the killed worker
    assert ps.step == 3 * 16 and history["steps"] == [16, 16, 16]
    assert history["worker_restarts"][0] == 1
    if max_staleness == 0:     # one gradient at a time: sequential SGD, the workers taking turns
        expected = copy_tree(start)
        reference = fa.SGD(lr=0.3)
        for _ in range(3):
            for k in range(8):
                for w in range(W):
                    reference.update(expected, _least_squares_loss_and_grad(expected, data[w][k])[1])
        assert same_bits(got["w"], expected["w"])
    else:
        assert max(history["staleness_max"]) == max_staleness   # the fast worker did run ahead


class SimulatedCrash(Exception):
    pass


class CrashAtStep(fa.callbacks.Callback):
    def __init__(self, at):
        self.at = at

    def on_batch_end(self, step, logs, trainer):
        if step == self.at:
            raise SimulatedCrash(f"crash after step {step}")


def test_checkpoint_kill_everything_resume_equals_uninterrupted(local_ray, tmp_path):
    data = _worker_batches(steps=4)
    make_optimizer = lambda: fa.Adam(lr=1e-2, max_grad_norm=1.0)  # noqa: E731
    ps = fa.distributed.DataParallel(MODEL.params, make_optimizer(), loss_and_grad=MODEL.loss_and_grad,
                                     num_workers=W, num_shards=2, callbacks=[CrashAtStep(6)])
    with pytest.raises(SimulatedCrash):
        ps.fit(data, epochs=3, checkpoint_dir=tmp_path, checkpoint_every=3)   # saves after steps 3 and 4 and 6
    ray.shutdown()                                                             # everything is gone
    assert (tmp_path / fa.distributed.CHECKPOINT_FILE).exists()

    resumed = fa.distributed.DataParallel(MODEL.params, make_optimizer(), loss_and_grad=MODEL.loss_and_grad,
                                          num_workers=W, num_shards=2, callbacks=[CrashAtStep(-1)],
                                          ray_init={"num_cpus": W, "log_to_driver": False})
    assert resumed.started_ray                                                # a local Ray started on demand
    history = resumed.fit(data, epochs=3, checkpoint_dir=tmp_path, resume=True)
    got = resumed.params()
    resumed.shutdown()
    assert not ray.is_initialized()                                           # and shut down again
    expected = _single_process(MODEL.params, make_optimizer(), data, epochs=3)
    assert all(same_bits(a, b) for a, b in zip(leaves(got), leaves(expected)))
    assert resumed.step == 12 and history.epoch == [0, 1, 2] and history["steps"] == [4, 4, 4]
    assert all(math.isfinite(v) for v in history["loss"])


class TightenClipping(fa.callbacks.Callback):
    """Turns clipping on after the second step (as a schedule of max_grad_norm would)."""

    def on_batch_end(self, step, logs, trainer):
        if step == 1:
            trainer.optimizer.max_grad_norm = 0.05


def test_resume_keeps_the_clipping_set_during_training(local_ray, tmp_path):
    data = _worker_batches(steps=3)
    ps = fa.distributed.DataParallel(MODEL.params, fa.Adam(lr=1e-2), loss_and_grad=MODEL.loss_and_grad,
                                     num_workers=W, num_shards=2, callbacks=[TightenClipping(), CrashAtStep(4)])
    with pytest.raises(SimulatedCrash):
        ps.fit(data, epochs=2, checkpoint_dir=tmp_path)        # the checkpoint of epoch 0 has max_grad_norm=0.05
    ps.shutdown()
    with fa.distributed.DataParallel(MODEL.params, fa.Adam(lr=1e-2), loss_and_grad=MODEL.loss_and_grad,
                                     num_workers=W, num_shards=2,
                                     callbacks=[TightenClipping(), CrashAtStep(-1)]) as resumed:
        history = resumed.fit(data, epochs=2, checkpoint_dir=tmp_path, resume=True)
        got = resumed.params()

    def tighten(step, opt):
        if step == 2:
            opt.max_grad_norm = 0.05

    expected = _single_process(MODEL.params, fa.Adam(lr=1e-2), data, epochs=2, on_step=tighten)
    assert history["grad_norm_max"][1] > 0.05                  # clipping did bite after the resume
    assert all(same_bits(a, b) for a, b in zip(leaves(got), leaves(expected)))


def test_shutdown_leaves_a_shared_ray_to_those_still_using_it(local_ray):
    data = [_worker_batches(steps=1)[0]]
    ray.shutdown()                          # no Ray running: the first DataParallel starts one
    first = fa.distributed.DataParallel(MODEL.params, "sgd", loss_and_grad=MODEL.loss_and_grad, num_workers=1,
                                        ray_init={"num_cpus": W, "log_to_driver": False})
    second = fa.distributed.DataParallel(MODEL.params, "sgd", loss_and_grad=MODEL.loss_and_grad, num_workers=1)
    assert first.started_ray and not second.started_ray
    first.shutdown()                        # the Ray it started is still in use by `second`
    assert ray.is_initialized()
    second.fit(data)
    assert second.step == 1
    second.shutdown()                       # the last user: Ray goes
    assert not ray.is_initialized()

    third = fa.distributed.DataParallel(MODEL.params, "sgd", loss_and_grad=MODEL.loss_and_grad, num_workers=1,
                                        ray_init={"num_cpus": W, "log_to_driver": False})
    ray.shutdown()                          # someone else ends its Ray: a clear error, no new empty Ray
    with pytest.raises(RuntimeError, match="Ray session this DataParallel runs in was shut down"):
        third.fit(data)
    third.shutdown()
    assert not ray.is_initialized()


def test_a_mid_epoch_checkpoint_resumes_only_in_its_mode(local_ray, tmp_path):
    """Async workers stop at different batches; sync mode would restart them
    all at the first one's position, applying batches twice or never."""
    data = _worker_batches(steps=3)
    with fa.distributed.DataParallel(MODEL.params, "sgd", loss_and_grad=MODEL.loss_and_grad, num_workers=W,
                                     mode="async", callbacks=[CrashAtStep(2)]) as ps:
        with pytest.raises(SimulatedCrash):
            ps.fit(data, checkpoint_dir=tmp_path, checkpoint_every=1)   # saved after 2 of 6 updates
    with fa.distributed.DataParallel(MODEL.params, "sgd", loss_and_grad=MODEL.loss_and_grad, num_workers=W,
                                     callbacks=[CrashAtStep(-1)]) as ps:
        with pytest.raises(ValueError, match="stopped mid-epoch in mode='async'.*mode='async'"):
            ps.load_checkpoint(tmp_path)


def _wrong_grads(params, batch):
    return 0.0, {layer: {name: np.zeros(3) for name in arrays} for layer, arrays in params.items()}


def _needs_the_test_helpers(params, batch):
    return 0.0, copy_tree(params)   # `helpers` is importable here, not in a worker


def test_bad_data_and_checkpoints_get_clear_errors(local_ray, tmp_path):
    data = _worker_batches(steps=2)
    with fa.distributed.DataParallel(MODEL.params, "sgd", loss_and_grad=_wrong_grads, num_workers=W) as ps:
        with pytest.raises(TypeError, match=r"grads\['fc1.w'\] from loss_and_grad: expected a float32 array of "
                                            r"shape \(6, 8\) \(the param's\), got float64 \(3,\)"):
            ps.fit(data)
    with fa.distributed.DataParallel(MODEL.params, "sgd", loss_and_grad=MODEL.loss_and_grad, num_workers=W) as ps:
        with pytest.raises(ValueError, match="data has 1 entries for 2 workers"):
            ps.fit(data[:1])
        with pytest.raises(ValueError, match="same number of batches"):
            ps.fit([data[0], data[1][:1]])
        with pytest.raises(TypeError, match=r"data\[0\] must be re-iterable"):
            ps.fit([iter(data[0]), data[1]])
        with pytest.raises(FileNotFoundError, match="no checkpoint"):
            ps.load_checkpoint(tmp_path)
        with pytest.raises(TypeError, match="resume must be True or False, got 'no'"):
            ps.fit(data, checkpoint_dir=tmp_path, resume="no")
        assert "DataParallel(SGD(" in repr(ps)
    with pytest.raises(RuntimeError, match="shut down"):
        ps.params()
    with fa.distributed.DataParallel(MODEL.params, "sgd", loss_and_grad=_needs_the_test_helpers, num_workers=W,
                                     max_worker_restarts=0) as ps:
        with pytest.raises(RuntimeError, match="every worker died.*No module named 'helpers'"):
            ps.fit(data)
        # reported once; what can still work does, and a new fit says why it cannot
        assert all(same_bits(a, b) for a, b in zip(leaves(ps.params()), leaves(MODEL.params)))
        with pytest.raises(RuntimeError, match="every worker was dropped.*build a new DataParallel"):
            ps.fit(data)
    with fa.distributed.DataParallel(MODEL.params, "sgd", loss_and_grad=MODEL.loss_and_grad, num_workers=W,
                                     worker_options={"num_cpus": 64}, start_timeout=1) as ps:
        with pytest.raises(RuntimeError, match=r"2 of 2 workers did not start within start_timeout=1.0 s.*"
                                               r"Lower worker_options\['num_cpus'\]"):
            ps.fit(data)


def test_training_continues_from_the_optimizers_state(local_ray):
    """An optimizer that already stepped in one process hands its state (and
    step count, hence Adam's bias corrections) to the shards."""
    data = _worker_batches(steps=2)
    warm = copy_tree(MODEL.params)
    optimizer = fa.Adam(lr=1e-2)
    optimizer.update(warm, MODEL.loss_and_grad(warm, data[0][0])[1])
    expected_optimizer = fa.Adam(lr=1e-2)
    expected_optimizer.load_state_dict(optimizer.state_dict())
    expected = _single_process(warm, expected_optimizer, data)
    with fa.distributed.DataParallel(warm, optimizer, loss_and_grad=MODEL.loss_and_grad, num_workers=W,
                                     num_shards=2) as ps:
        ps.fit(data)
        got = ps.params()
        assert ps.optimizer_state_dict()["step"] == 3
    assert all(same_bits(a, b) for a, b in zip(leaves(got), leaves(expected)))


HEAD = """
import sys, ray
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()          # until the test closes our stdin
"""

CLIENT = """
import sys, numpy as np, ray, fastadapt as fa
model = fa.models.MLP([4, 3], seed=0)
batch = (np.ones((2, 4)), np.array([0, 2]))
ps = fa.distributed.DataParallel(model.params, "sgd", loss_and_grad=model.loss_and_grad, num_workers=1,
                                 address=sys.argv[1])
ps.fit([[batch]], epochs=2)
connected = ps.started_ray
ps.shutdown()
print(connected, ps.step, ray.is_initialized())
"""


def test_runs_on_an_existing_cluster_by_address():
    pytest.importorskip("ray")
    head = subprocess.Popen([sys.executable, "-c", HEAD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        address = head.stdout.readline().strip()
        out = subprocess.run([sys.executable, "-c", CLIENT, address], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        # it connected (and so disconnects at shutdown), trained, and left the cluster running
        assert out.stdout.split() == ["True", "2", "False"]
        assert head.poll() is None
    finally:
        head.communicate("", timeout=60)
