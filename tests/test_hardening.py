"""Issue 11's defects in the optimizer, tree, checkpoint and trainer layers,
one regression test each: key-path collisions, dict subclasses and masked
arrays, hyperparameters that used to slip through, checkpoint files that
used to crash or clobber, validation at load instead of at the first step."""

from __future__ import annotations

import collections
import io
import json
import os
import threading
import zipfile

import numpy as np
import pytest

import fastadapt as fa
from fastadapt.train.checkpoints import load_state, save_state


def _params():
    return {"w": np.arange(6, dtype=np.float64).reshape(2, 3), "b": np.zeros(3)}


def _grads():
    return {"w": np.ones((2, 3)), "b": np.ones(3)}


# ---- 4. key-path collisions ----------------------------------------------------

COLLIDING = {
    "dotted-vs-nested": (lambda: {"a.b": np.zeros(2), "a": {"b": np.ones(2)}}, "['a.b']", "['a']['b']", "'a.b'"),
    "int-vs-str": (lambda: {1: np.zeros(2), "1": np.ones(2)}, "[1]", "['1']", "'1'"),
    "list-index-vs-key": (lambda: {"l": [np.zeros(2)], "l.0": np.ones(2)}, "['l'][0]", "['l.0']", "'l.0'"),
}


@pytest.mark.parametrize("case", sorted(COLLIDING))
def test_colliding_key_paths_are_refused_by_the_optimizer(case):
    make, first, second, path = COLLIDING[case]
    params, grads = make(), make()
    opt = fa.SGD(lr=0.1)
    with pytest.raises(ValueError) as info:
        opt.update(params, grads)
    msg = str(info.value)
    assert first in msg and second in msg and path in msg
    assert opt.step_count == 0 and opt.state_dict()["state"] == {}


def test_colliding_key_paths_are_refused_everywhere_paths_are_keys():
    params = {"a.b": np.zeros(2), "a": {"b": np.ones(2)}}
    # overrides (bound at the first update), checkpoints of trainers, lr_find, trees in general
    with pytest.raises(ValueError, match="both have the key path 'a.b'"):
        fa.Adam(overrides={"a.b": {"lr": 0.5}}).update(params, {"a.b": np.ones(2), "a": {"b": np.ones(2)}})
    with pytest.raises(ValueError, match="both have the key path 'a.b'"):
        fa.Trainer("sgd", lr=0.1, loss_and_grad=lambda p, b: (0.0, p), params=params, progress=False)
    with pytest.raises(ValueError, match="both have the key path 'a.b'"):
        fa._tree.flatten_any(params)
    assert np.array_equal(params["a.b"], np.zeros(2)) and np.array_equal(params["a"]["b"], np.ones(2))


# ---- 6. dict subclasses, masked arrays, matrices -------------------------------

def test_defaultdict_grads_are_read_by_their_own_keys():
    params = {"w": np.zeros(3)}
    grads = collections.defaultdict(lambda: np.zeros(3))
    grads["ww"] = np.ones(3)  # misspelled
    opt = fa.SGD(lr=0.1)
    with pytest.raises(ValueError, match="missing key 'w'"):
        opt.update(params, grads)
    assert set(grads) == {"ww"}, "the caller's dict gained a key"
    assert opt.step_count == 0 and np.array_equal(params["w"], np.zeros(3))
    # A defaultdict with the right keys works, and is not changed.
    good = collections.defaultdict(lambda: np.zeros(3), w=np.ones(3))
    opt.update(params, good)
    assert np.allclose(params["w"], -0.1) and set(good) == {"w"}


def test_ordered_and_other_dict_subclasses_still_work():
    params = collections.OrderedDict(w=np.zeros(3))
    fa.Adam(lr=0.1).update(params, collections.OrderedDict(w=np.ones(3)))
    assert np.allclose(params["w"], -0.1)


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("role", ["params", "grads"])
def test_masked_arrays_and_matrices_are_refused(role):
    for wrap, words in ((lambda a: np.ma.masked_array(a, mask=[[0, 1, 0], [0, 0, 0]]), "mask"),
                        (np.asmatrix, "np.matrix")):
        params, grads = _params(), _grads()
        target = params if role == "params" else grads
        target["w"] = wrap(target["w"])
        before = {k: np.asarray(v).copy() for k, v in params.items()}
        opt = fa.Adam(lr=0.1)
        with pytest.raises(TypeError, match=rf"{role}\['w'\].*{words}"):
            opt.update(params, grads)
        assert all(np.array_equal(np.asarray(params[k]), before[k]) for k in params)
        assert opt.step_count == 0


# ---- hyperparameters ---------------------------------------------------------

@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(nonfinite=np.array(["skip"])), TypeError, "nonfinite must be a string"),
    (dict(nonfinite=b"skip"), TypeError, "nonfinite must be a string"),
    (dict(betas={0.999, 0.9}), TypeError, "betas must be a pair"),
    (dict(betas={"a": 0.9, "b": 0.999}), TypeError, "betas must be a pair"),
    (dict(lr=10 ** 400), ValueError, "Invalid lr"),
    (dict(eps=-10 ** 400), ValueError, "Invalid eps"),
])
def test_hyperparameters_that_used_to_slip_through(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        fa.Adam(**kwargs)
    opt = fa.Adam()
    name, value = next(iter(kwargs.items()))
    with pytest.raises(exc, match=words):
        setattr(opt, name, value)
    assert opt.hyperparameters == fa.Adam().hyperparameters


def test_schedule_and_controller_arguments_overflowing_float_are_value_errors():
    with pytest.raises(ValueError, match="must be a finite float"):
        fa.ReduceLROnPlateau(factor=10 ** 400)


@pytest.mark.parametrize("field", ["step", "skipped_steps", "total_nonfinite_count"])
def test_load_state_dict_refuses_counts_beyond_int64(field):
    opt, params = fa.Adam(lr=0.1), _params()
    opt.update(params, _grads())
    sd = opt.state_dict()
    before = opt.state_dict()
    sd[field] = 10 ** 400
    with pytest.raises(ValueError, match=rf"state_dict\['{field}'\]"):
        opt.load_state_dict(sd)
    assert opt.state_dict()["step"] == before["step"] == 1


def test_update_with_no_parameters_is_not_a_step():
    opt = fa.SGD(lr=0.1)
    for empty in ({}, [], {"a": {}}):
        with pytest.raises(ValueError, match="no arrays"):
            opt.update(empty, empty)
    assert opt.step_count == 0


# ---- 7. validation at load, where the params are known --------------------------

def test_load_state_dict_with_params_checks_before_anything_changes():
    trained = fa.Adam(lr=0.1)
    trained.update(_params(), _grads())
    sd = trained.state_dict()
    fresh = fa.Adam(lr=0.5)
    other = {"w": np.zeros((3, 2)), "b": np.zeros(3)}
    with pytest.raises(ValueError, match=r"state_dict\['state'\]\['w'\]\['exp_avg'\]: expected shape \(3, 2\)"):
        fresh.load_state_dict(sd, params=other)
    with pytest.raises(ValueError, match="has key 'b'"):
        fresh.load_state_dict(sd, params={"w": np.zeros((2, 3))})
    with pytest.raises(TypeError, match=r"expected float32 \(the dtype of params\['w'\]\)"):
        fresh.load_state_dict(sd, params={"w": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32)})
    with pytest.raises(TypeError, match=r"params\['w'\]: expected a float32 or float64 NumPy array"):
        fresh.load_state_dict(sd, params={"w": [[0.0] * 3] * 2, "b": np.zeros(3)})
    assert fresh.lr == 0.5 and fresh.step_count == 0 and fresh.state_dict()["state"] == {}
    fresh.load_state_dict(sd, params=_params())
    assert fresh.step_count == 1 and fresh.lr == 0.1


def _trainer(params, callbacks=()):
    def loss_and_grad(p, batch):
        return float(sum(np.sum(v * v) for v in p.values())), {k: 2 * v for k, v in p.items()}
    return fa.Trainer("adam", lr=0.1, loss_and_grad=loss_and_grad, params=params, progress=False,
                      callbacks=list(callbacks))


def test_fresh_trainer_refuses_a_checkpoint_of_other_params_before_changing_anything(tmp_path):
    saved = _trainer(_params())
    saved.fit([None], epochs=2)
    path = tmp_path / "run.npz"
    saved.save_checkpoint(path)
    # Same keys and param shapes, but the optimizer state belongs to another model.
    sd = load_state(path)
    sd["optimizer"]["state"]["w"]["exp_avg"] = np.zeros((3, 2))
    save_state(path, sd)
    params = _params()
    before = {k: v.copy() for k, v in params.items()}
    fresh = _trainer(params)
    with pytest.raises(ValueError, match="exp_avg"):
        fresh.load_checkpoint(path)
    assert fresh.epoch == 0 and fresh.step == 0 and not fresh.history.epoch
    assert all(np.array_equal(params[k], before[k]) for k in params)
    assert fresh.optimizer.step_count == 0 and fresh.optimizer.state_dict()["state"] == {}
    fresh.fit([None], epochs=1)  # and it trains as if nothing had happened


@pytest.mark.parametrize("version", [1.0, True, "1", None])
def test_trainer_checkpoint_version_must_be_the_integer_1(version):
    trainer = _trainer(_params())
    sd = trainer.state_dict()
    sd["version"] = version
    with pytest.raises(ValueError, match="checkpoint version"):
        trainer.load_state_dict(sd)


def test_fit_into_a_missing_directory_fails_before_the_first_epoch(tmp_path):
    params = _params()
    before = {k: v.copy() for k, v in params.items()}
    trainer = _trainer(params)
    with pytest.raises(ValueError, match="does not exist"):
        trainer.fit([None], epochs=2, checkpoint_path=tmp_path / "missing" / "run.npz")
    with pytest.raises(ValueError, match="is a directory"):
        trainer.fit([None], epochs=2, checkpoint_path=tmp_path)
    assert trainer.epoch == 0 and all(np.array_equal(params[k], before[k]) for k in params)


def test_empty_dataset_is_a_clear_error_before_training():
    trainer = _trainer(_params())
    with pytest.raises(ValueError, match="data has no batches"):
        trainer.fit([], epochs=1)
    assert trainer.epoch == 0


# ---- 3. checkpoint writers and readers --------------------------------------------

def test_save_state_never_follows_a_planted_symlink(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "run.npz"
    os.symlink(victim, str(target) + ".partial")  # the old fixed temporary name
    save_state(target, {"x": np.arange(3)})
    assert victim.read_text() == "precious"
    assert np.array_equal(load_state(target)["x"], np.arange(3))


def test_concurrent_writers_on_one_path_leave_a_readable_checkpoint(tmp_path):
    target = tmp_path / "run.npz"
    errors = []

    def write(i):
        try:
            for _ in range(5):
                save_state(target, {"writer": i, "x": np.full(20_000, i, dtype=np.float64)})
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    state = load_state(target)
    assert np.all(state["x"] == state["writer"])
    assert sorted(os.listdir(tmp_path)) == ["run.npz"], "temporary files left behind"


def test_failed_save_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "run.npz"
    save_state(target, {"x": 1})

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(KeyboardInterrupt):
        save_state(target, {"x": 2})
    monkeypatch.undo()
    assert load_state(target) == {"x": 1}
    assert os.listdir(tmp_path) == ["run.npz"]


def _npy(array, allow_pickle=False):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def _bad_files(tmp_path):
    good = tmp_path / "good.npz"
    save_state(good, {"a": np.ones(2), "b": [1, 2]})
    raw = good.read_bytes()
    files = {}
    files["empty"] = b""
    np.save(tmp_path / "plain.npy", np.zeros(3))
    files["npy"] = (tmp_path / "plain.npy").read_bytes()
    files["truncated"] = raw[: len(raw) // 2]
    files["corrupt-header"] = b"XXXX" + raw[4:]
    # Archives whose members are damaged in ways np.load reports with other
    # exception types (raw bytes instead of .npy, corrupt deflate data, an
    # unknown compression method, an object array that would need pickle).
    with zipfile.ZipFile(tmp_path / "raw.npz", "w") as z:
        z.writestr("__state__.npy", _npy(np.array('{"x": {"__ndarray__": "a0"}}')))
        z.writestr("a0.npy", b"not an array")
    files["raw-member"] = (tmp_path / "raw.npz").read_bytes()
    buffer = io.BytesIO()
    np.savez_compressed(buffer, __state__=np.array('{"x": 1}'))
    deflated = bytearray(buffer.getvalue())
    deflated[60] ^= 0xFF
    deflated[70] ^= 0xFF
    files["corrupt-deflate"] = bytes(deflated)
    method = bytearray(raw)
    method[8] = 99
    central = method.rfind(b"PK\x01\x02")
    method[central + 10] = 99
    files["unknown-compression"] = bytes(method)
    with zipfile.ZipFile(tmp_path / "obj.npz", "w") as z:
        z.writestr("__state__.npy", _npy(np.array('{"x": 1}')))
        z.writestr("a0.npy", _npy(np.array([{"x": 1}], dtype=object), allow_pickle=True))
    files["object-member"] = (tmp_path / "obj.npz").read_bytes()
    for name, document in (("deep", "[" * 100_000 + "]" * 100_000),
                           ("dangling", json.dumps({"x": {"__ndarray__": "a9"}})),
                           ("not-json", "{nope")):
        np.savez(tmp_path / f"{name}.npz", __state__=np.array(document))
        files[name] = (tmp_path / f"{name}.npz").read_bytes()
    return files


def test_every_bad_checkpoint_file_is_one_value_error_naming_it(tmp_path):
    for name, data in _bad_files(tmp_path).items():
        path = tmp_path / f"bad-{name}.npz"
        path.write_bytes(data)
        with pytest.raises(ValueError) as info:
            load_state(path)
        assert str(path) in str(info.value), name
        if name == "object-member":
            assert "object array" in str(info.value)


def test_bad_checkpoint_file_changes_nothing_in_a_trainer(tmp_path):
    params = _params()
    trainer = _trainer(params)
    trainer.fit([None], epochs=1)
    before = ({k: v.copy() for k, v in params.items()}, trainer.optimizer.state_dict(), trainer.epoch)
    for name, data in _bad_files(tmp_path).items():
        path = tmp_path / f"bad-{name}.npz"
        path.write_bytes(data)
        with pytest.raises(ValueError):
            trainer.load_checkpoint(path)
    assert all(np.array_equal(params[k], before[0][k]) for k in params)
    assert trainer.optimizer.state_dict()["step"] == before[1]["step"] and trainer.epoch == before[2]


def test_lr_find_checks_a_loaded_state_against_params_before_the_sweep():
    trained = fa.Adam(lr=0.1)
    trained.update({"w": np.zeros(4)}, {"w": np.ones(4)})
    opt = fa.Adam()
    opt.load_state_dict(trained.state_dict())  # pending: not checked against any params yet
    params = {"w": np.zeros(5)}
    calls = []

    def loss_and_grad(p, batch):
        calls.append(1)
        return float(np.sum(p["w"] ** 2)), {"w": 2 * p["w"]}

    with pytest.raises(ValueError, match=r"expected shape \(5,\)"):
        fa.lr_find(opt, params, loss_and_grad, [None], num_steps=5)
    assert not calls and np.array_equal(params["w"], np.zeros(5))


class _Counter(fa.callbacks.Callback):
    def __init__(self, fail_load=False):
        self.n, self.fail_load = 0, fail_load

    def on_epoch_end(self, epoch, logs, trainer):
        self.n += 1

    def state_dict(self):
        return {"n": self.n}

    def load_state_dict(self, state):
        if self.fail_load:
            raise KeyboardInterrupt  # an interrupt in the middle of the load
        self.n = state["n"]


def test_trainer_load_that_fails_half_way_changes_nothing():
    saved = _trainer(_params(), [_Counter()])
    saved.fit([None], epochs=3)
    sd = saved.state_dict()
    # Read-only params: refused before anything changes.
    params = _params()
    for v in params.values():
        v.setflags(write=False)
    fresh = _trainer(params, [_Counter()])
    with pytest.raises(ValueError, match=r"params\['w'\] is read-only"):
        fresh.load_state_dict(sd)
    assert fresh.optimizer.step_count == 0 and fresh.callbacks[0].n == 0 and fresh.epoch == 0
    # A callback whose load is interrupted: the optimizer and params loaded before it are rolled back.
    params = _params()
    before = {k: v.copy() for k, v in params.items()}
    fresh = _trainer(params, [_Counter(fail_load=True)])
    with pytest.raises(KeyboardInterrupt):
        fresh.load_state_dict(sd)
    assert fresh.optimizer.step_count == 0 and fresh.optimizer.state_dict()["state"] == {}
    assert all(np.array_equal(params[k], before[k]) for k in params) and fresh.epoch == 0


@pytest.mark.parametrize("change, words", [
    (lambda sd: sd.pop("optimizer"), "checkpoint\\['optimizer'\\]"),
    (lambda sd: sd.update(history=5), "checkpoint\\['history'\\]"),
    (lambda sd: sd.update(epoch=10 ** 30), "checkpoint\\['epoch'\\]"),
])
def test_trainer_checkpoint_fields_are_checked(change, words):
    trainer = _trainer(_params())
    trainer.fit([None], epochs=1)
    sd = trainer.state_dict()
    change(sd)
    with pytest.raises(ValueError, match=words):
        trainer.load_state_dict(sd)
    assert trainer.epoch == 1 and trainer.optimizer.step_count == 1


def test_trainer_snapshot_from_another_thread_is_an_epoch_boundary():
    params = {"w": np.zeros(200_000)}
    trainer = _trainer(params, [_Counter()])
    batches = [None] * 20
    worker = threading.Thread(target=trainer.fit, args=(batches,), kwargs={"epochs": 8})
    worker.start()
    snapshots = []
    while worker.is_alive() or not snapshots:
        snapshots.append(trainer.state_dict())
    worker.join()
    for sd in snapshots:
        assert sd["step"] == sd["optimizer"]["step"] == 20 * sd["epoch"]
        assert sd["callbacks"][0]["state"]["n"] == sd["epoch"] == len(sd["history"]["epoch"])


def test_lr_find_with_read_only_params_changes_nothing():
    opt = fa.SGD(lr=0.05, overrides={"b": {"lr": 0.5}})
    params = {"w": np.zeros(3), "b": np.zeros(3)}
    params["w"].setflags(write=False)

    def loss_and_grad(p, batch):
        return float(sum(np.sum(v ** 2) for v in p.values())), {k: 2 * v + 1 for k, v in p.items()}

    with pytest.raises(ValueError, match=r"params\['w'\] is read-only"):
        fa.lr_find(opt, params, loss_and_grad, [None], num_steps=5)
    assert opt.group_values("lr") == [0.05, 0.5] and opt.step_count == 0


@pytest.mark.parametrize("name", ["num_steps", "verify_steps"])
def test_lr_find_refuses_sweeps_of_absurd_length(name):
    with pytest.raises(ValueError, match=rf"{name}=10+ must be <= 1,000,000"):
        fa.lr_find(fa.SGD(lr=0.1), {"w": np.zeros(2)}, lambda p, b: (0.0, p), [None], **{name: 10 ** 20})
