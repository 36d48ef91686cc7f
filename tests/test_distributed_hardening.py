"""DataParallel hardening (issue 11): an error is reported once, by the call
where it happened; a checkpoint or optimizer state that does not fit the
params is refused before anything changes; snapshots never mix steps;
colliding key paths are refused by the shared tree check.

The Ray tests reuse tests/test_distributed.py's Ray session and helpers.
"""

import copy
import sys
import threading

import numpy as np
import pytest

import fastadapt as fa
from fastadapt._tree import flatten_any
from fastadapt.train.checkpoints import load_state, save_state
from fastadapt.distributed import CHECKPOINT_FILE, data_parallel

from helpers import copy_tree, trees_same_bits
from test_distributed import MODEL, W, _single_process, _worker_batches, local_ray, ray, ray_cluster  # noqa: F401


class _NoRay:
    """Stands in for the Ray session: a check that must come first fails the test by reaching it."""

    def __init__(self, *args, **kwargs):
        raise AssertionError("DataParallel started Ray before refusing its arguments")


@pytest.fixture
def no_ray(monkeypatch):
    monkeypatch.setattr(data_parallel, "RaySession", _NoRay)


@pytest.fixture
def hardening_ray(local_ray):
    # This module's loss functions travel to the workers by value, as
    # test_distributed's do (a worker cannot import a test module).
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield


def _trained_optimizer(params, optimizer):
    """``optimizer`` after one step on ``params`` (it then holds state for them)."""
    grads = {k: np.ones_like(v) for k, v in params.items()}
    optimizer.update(copy_tree(params), grads)
    return optimizer


# ---- without Ray -------------------------------------------------------------------------------

@pytest.mark.parametrize("trained_on, error, match", [
    ({"w": np.zeros((3, 4), np.float32), "b": np.zeros(4, np.float32)}, ValueError,
     r"\['state'\]\['w'\]\['exp_avg'\]: expected shape \(2, 4\) \(the shape of params\['w'\]\), got \(3, 4\)"),
    ({"w": np.zeros((2, 4), np.float64), "b": np.zeros(4, np.float32)}, TypeError,
     r"\['state'\]\['w'\]\['exp_avg'\]: expected float32 \(the dtype of params\['w'\]\), got float64"),
    ({"w": np.zeros((2, 4), np.float32), "b": np.zeros(4, np.float32), "extra": np.zeros(1, np.float32)},
     ValueError, r"\['state'\] has key 'extra', which the parameters do not have"),
])
def test_optimizer_state_for_other_params_is_refused_before_ray_starts(no_ray, trained_on, error, match):
    params = {"w": np.zeros((2, 4), np.float32), "b": np.zeros(4, np.float32)}
    optimizer = _trained_optimizer(trained_on, fa.Adam(lr=1e-2))
    state = optimizer.state_dict()
    with pytest.raises(error, match=match + ".*optimizer.reset\\(\\)"):
        fa.distributed.DataParallel(params, optimizer, loss_and_grad=print)
    assert trees_same_bits(optimizer.state_dict()["state"], state["state"])


@pytest.mark.parametrize("params", [
    {"a.b": np.zeros(2), "a": {"b": np.zeros(2)}},
    {1: np.zeros(2), "1": np.zeros(2)},
])
def test_colliding_key_paths_are_refused_by_the_shared_tree_check(no_ray, params):
    # Two arrays under one key path would share one server slot and one
    # optimizer state entry. The refusal is the shared tree's, word for word.
    with pytest.raises(ValueError) as shared:
        flatten_any(params)
    with pytest.raises(ValueError) as refused:
        fa.distributed.DataParallel(params, "sgd", loss_and_grad=print)
    assert str(shared.value) in str(refused.value)
    assert "['a.b'] and ['a']['b']" in str(refused.value) or "[1] and ['1']" in str(refused.value)


def test_assign_shards_names_a_repeated_key():
    with pytest.raises(ValueError, match="'b' appears twice"):
        fa.distributed.assign_shards([("a", 1), ("b", 2), ("b", 3)], 2)


# ---- on Ray -----------------------------------------------------------------------------------

def _fails_on_flagged_batches(params, batch):
    X, y, fail = batch
    if fail:
        raise ValueError("this batch is broken")
    return MODEL.loss_and_grad(params, (X, y))


def test_a_worker_error_is_reported_once_and_later_calls_succeed(hardening_ray, tmp_path):
    good = _worker_batches(steps=2)
    flagged = [[(X, y, k == 1) for k, (X, y) in enumerate(part)] for part in good]
    with fa.distributed.DataParallel(MODEL.params, fa.SGD(lr=0.1), loss_and_grad=_fails_on_flagged_batches,
                                     num_workers=W, num_shards=2) as ps:
        with pytest.raises(ValueError, match="this batch is broken"):
            ps.fit(flagged)
        # The first update went through, the second reached no shard.
        after_one = _single_process(MODEL.params, fa.SGD(lr=0.1), [part[:1] for part in good])
        assert trees_same_bits(ps.params(), after_one)
        assert trees_same_bits(ps.params(), after_one)         # and again: the error is not kept
        assert ps.optimizer_state_dict()["step"] == 1
        ps.save_checkpoint(tmp_path)
        assert trees_same_bits(load_state(tmp_path / CHECKPOINT_FILE)["params"], after_one)   # in key order
        history = ps.fit([[(X, y, False) for X, y in part] for part in good])   # the interrupted epoch, again
        assert history["steps"] == [2] and ps.step == 3
        expected = _single_process(MODEL.params, fa.SGD(lr=0.1), [[part[0], part[0], part[1]] for part in good])
        assert trees_same_bits(ps.params(), expected)


def _misfits():
    """Checkpoint edits that make it not fit MODEL's params: each returns the error it must get."""
    def optimizer_shape(sd):
        sd["optimizer"]["state"]["fc1.w"]["exp_avg"] = np.zeros((8, 6), np.float32)
        return ValueError, r"\['state'\]\['fc1.w'\]\['exp_avg'\]: expected shape \(6, 8\) .*got \(8, 6\)"

    def optimizer_dtype(sd):
        sd["optimizer"]["state"]["fc1.w"]["exp_avg"] = np.zeros((6, 8), np.float64)
        return TypeError, r"\['state'\]\['fc1.w'\]\['exp_avg'\]: expected float32 .*got float64"

    def optimizer_buffer(sd):
        del sd["optimizer"]["state"]["fc2.b"]["exp_avg_sq"]
        return ValueError, r"\['state'\]\['fc2.b'\] lacks buffer 'exp_avg_sq'"

    def optimizer_key(sd):
        sd["optimizer"]["state"]["fc3.w"] = sd["optimizer"]["state"]["fc1.w"]
        return ValueError, r"optimizer: state_dict\['state'\] has key 'fc3.w', which the parameters do not have"

    def params_shape(sd):
        sd["params"]["fc2.b"] = np.zeros(4, np.float32)
        return ValueError, r"params\['fc2.b'\] has shape \(4,\), this model's has \(3,\)"

    def progress_entry(sd):
        sd["positions"] = [1, 1]
        sd["epoch_progress"] = {"bogus": 1}
        return ValueError, "epoch_progress has unknown entry 'bogus'"

    return [optimizer_shape, optimizer_dtype, optimizer_buffer, optimizer_key, params_shape, progress_entry]


def test_a_checkpoint_that_does_not_fit_is_refused_before_anything_changes(hardening_ray, tmp_path):
    data = _worker_batches(steps=2)
    with fa.distributed.DataParallel(MODEL.params, fa.Adam(lr=1e-2), loss_and_grad=MODEL.loss_and_grad,
                                     num_workers=W, num_shards=2) as ps:
        ps.fit(data, checkpoint_dir=tmp_path)     # the checkpoint of epoch 0
        ps.fit(data)                              # epoch 1, not in the checkpoint
        path = tmp_path / CHECKPOINT_FILE
        saved = load_state(path)
        params, state = ps.params(), ps.optimizer_state_dict()
        for misfit in _misfits():
            sd = copy.deepcopy(saved)
            error, match = misfit(sd)
            save_state(path, sd)
            written = path.read_bytes()
            for load in (lambda: ps.load_checkpoint(tmp_path),
                         lambda: ps.fit(data, checkpoint_dir=tmp_path, resume=True)):
                with pytest.raises(error, match=match):
                    load()
                assert trees_same_bits(ps.params(), params), misfit.__name__
                assert trees_same_bits(ps.optimizer_state_dict()["state"], state["state"]), misfit.__name__
                assert (ps.step, ps.epoch, ps.history.epoch) == (4, 2, [0, 1]), misfit.__name__
                assert path.read_bytes() == written


def test_resume_beyond_the_data_is_refused_before_anything_changes(hardening_ray, tmp_path):
    data = _worker_batches(steps=3)
    with fa.distributed.DataParallel(MODEL.params, fa.SGD(lr=0.1), loss_and_grad=MODEL.loss_and_grad,
                                     num_workers=W, num_shards=2) as ps:
        ps.fit(data, checkpoint_dir=tmp_path)     # the checkpoint of epoch 0
        ps.fit(data)                              # epoch 1, not in the checkpoint
        sd = load_state(tmp_path / CHECKPOINT_FILE)
        sd["positions"] = [3, 3]                  # as if it had stopped after batch 3 of epoch 1
        save_state(tmp_path / CHECKPOINT_FILE, sd)
        params = ps.params()
        with pytest.raises(ValueError, match=r"stopped at batches \[3, 3\].*beyond this data's \[2, 2\]"):
            ps.fit([part[:2] for part in data], checkpoint_dir=tmp_path, resume=True)
        assert trees_same_bits(ps.params(), params) and (ps.step, ps.epoch) == (6, 2)


def test_snapshots_refuse_servers_at_different_updates(hardening_ray, tmp_path):
    data = _worker_batches(steps=1)
    with fa.distributed.DataParallel(MODEL.params, fa.SGD(lr=0.1), loss_and_grad=MODEL.loss_and_grad,
                                     num_workers=W, num_shards=2) as ps:
        ps.fit(data, checkpoint_dir=tmp_path)
        path = tmp_path / CHECKPOINT_FILE
        written = path.read_bytes()
        # An update that reached shard 0 only: the driver stopped between
        # submitting it to one server and the next (Ctrl-C), or one failed.
        grads = {p: np.ones(ps.layout.shapes[p], np.float32) for p in ps.layout.shards[0]}
        info_ref, _ = ps.servers[0].reduce_and_apply.options(num_returns=2).remote(1, 1, {"samples": 1}, grads)
        assert ray.get(info_ref)["version"] == 2
        for snapshot in (ps.params, ps.optimizer_state_dict, lambda: ps.save_checkpoint(tmp_path)):
            with pytest.raises(RuntimeError, match=r"different numbers of updates \(\[2, 1\], by shard\).*"
                                                   r"load_checkpoint"):
                snapshot()
        assert path.read_bytes() == written
        ps.load_checkpoint(tmp_path)              # the way on
        assert trees_same_bits(ps.params(), _single_process(MODEL.params, fa.SGD(lr=0.1), data))


class _Notify:
    """A remote method that sets ``event`` once the call is submitted."""

    def __init__(self, method, event):
        self.method, self.event = method, event

    def remote(self, *args, **kwargs):
        ref = self.method.remote(*args, **kwargs)
        self.event.set()
        return ref


class _SnapshotMidUpdate:
    """Server 1's handle, except that when the driver is about to submit an
    update to it (server 0 has it already), another thread calls
    ``ps.params()`` and the driver waits until that snapshot is submitted
    to both servers, or for ``wait`` seconds if it cannot be."""

    def __init__(self, handle, ps, wait):
        self.handle, self.ps, self.wait = handle, ps, wait
        self.submitted = threading.Event()
        self.thread = None
        self.result = None

    def __getattr__(self, name):
        attr = getattr(self.handle, name)
        if name == "reduce_and_apply" and self.thread is None:
            self.thread = threading.Thread(target=self._snapshot)
            self.thread.start()
            self.submitted.wait(self.wait)
        if name == "state" and threading.current_thread() is self.thread:
            return _Notify(attr, self.submitted)
        return attr

    def _snapshot(self):
        try:
            self.result = self.ps.params()
        except Exception as e:  # handed to the test
            self.result = e


def test_a_snapshot_while_fit_steps_in_another_thread_is_of_one_step(hardening_ray):
    data = _worker_batches(steps=1)
    with fa.distributed.DataParallel(MODEL.params, fa.SGD(lr=0.1), loss_and_grad=MODEL.loss_and_grad,
                                     num_workers=W, num_shards=2) as ps:
        server = ps.servers[1]
        # Were the snapshot's calls to slip in between the update's, server 0
        # would answer after the update and server 1 before it. The wait only
        # bounds how long the driver lets the other thread try.
        ps.servers[1] = spy = _SnapshotMidUpdate(server, ps, wait=2.0)
        try:
            ps.fit(data)
        finally:
            ps.servers[1] = server
        spy.thread.join()
        assert not isinstance(spy.result, Exception), spy.result
        assert trees_same_bits(spy.result, _single_process(MODEL.params, fa.SGD(lr=0.1), data))


def test_a_failed_checkpoint_write_leaves_the_previous_checkpoint(hardening_ray, tmp_path, monkeypatch):
    data = _worker_batches(steps=1)
    with fa.distributed.DataParallel(MODEL.params, fa.SGD(lr=0.1), loss_and_grad=MODEL.loss_and_grad,
                                     num_workers=W) as ps:
        ps.fit(data, checkpoint_dir=tmp_path)
        written = (tmp_path / CHECKPOINT_FILE).read_bytes()
        ps.fit(data)

        def savez_then_fail(file, **arrays):   # a full disk, half-way through the file
            file.write(b"PK\x03\x04 half a zip")
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(np, "savez", savez_then_fail)
        with pytest.raises(OSError, match="No space left"):
            ps.save_checkpoint(tmp_path)
        monkeypatch.undo()
        assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_FILE]   # no temporary file left
        assert (tmp_path / CHECKPOINT_FILE).read_bytes() == written


def _checkpoint_reader():
    """A DataParallel with only what the checkpoint check reads (no Ray)."""
    from fastadapt.distributed.sharding import ShardLayout
    params = {"w": np.ones(3), "b": np.zeros(2)}
    dp = object.__new__(data_parallel.DataParallel)
    dp.layout, dp.optimizer, dp.callbacks, dp.mode, dp.num_workers = ShardLayout.of(params, 1), fa.Adam(), [], \
        "sync", 2
    good = {"format": data_parallel.CHECKPOINT_FORMAT, "version": 1, "mode": "sync", "num_workers": 2, "step": 0,
            "epoch": 1, "fit_start_epoch": 0, "positions": [0, 0], "epoch_progress": None,
            "params": copy_tree(params), "optimizer": fa.Adam().state_dict(), "worker_restarts": [0, 0],
            "dropped_workers": [], "callbacks": [], "history": fa.History().to_dict()}
    return dp, good


@pytest.mark.parametrize("changes, words", [
    (dict(version=True), "checkpoint version True"),
    (dict(version=1.0), "checkpoint version 1.0"),
    (dict(epoch="x"), "epoch must be an integer"),
    (dict(step=-7), "step must be an integer"),
    (dict(step=10 ** 30), "step must be an integer"),
    (dict(positions=[-1, 3]), r"positions\[0\] must be an integer"),
    (dict(positions="ab"), "positions must be a list"),
    (dict(worker_restarts="xy"), "worker_restarts must be a list"),
    (dict(dropped_workers=[5]), "dropped_workers"),
    (dict(fit_start_epoch=None), "fit_start_epoch must be an integer"),
    (dict(fit_start_epoch=3), "fit_start_epoch 3 is after epoch 1"),
    (dict(mode="lockstep"), "mode must be"),
    (dict(callbacks=[5]), "callbacks must be a list"),
    (dict(history=5), "history or epoch progress is damaged"),
])
def test_checkpoint_fields_are_checked_before_anything_is_installed(tmp_path, changes, words):
    dp, sd = _checkpoint_reader()
    assert dp._read_checkpoint(_write(tmp_path / "good", sd))["epoch"] == 1
    sd.update(changes)
    with pytest.raises(ValueError, match=words):
        dp._read_checkpoint(_write(tmp_path / "bad", sd))


def _write(directory, sd):
    directory.mkdir()
    save_state(directory / CHECKPOINT_FILE, sd)
    return directory
