"""Trainer.fit: what it logs, the callback protocol, stopping, non-finite
steps, resume from checkpoints (bit-identical), progress output, History
JSON, batches, checkpoint files and bad input."""

import io
import json
import math

import numpy as np
import pytest
from helpers import trees_same_bits

import fastadapt as fa
from fastadapt.callbacks import Callback
from fastadapt.train.checkpoints import load_state, save_state
from fastadapt.models import MLP

N, D, CLASSES = 64, 6, 3


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, D)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)
    return X, y


def _trainer(callbacks=(), optimizer="adam", seed=0, **kw):
    model = MLP([D, 5, CLASSES], seed=seed)
    kw.setdefault("lr", 1e-2 if isinstance(optimizer, str) else None)
    trainer = fa.Trainer(optimizer, loss_and_grad=model.loss_and_grad, params=model.params, loss_fn=model.loss,
                         callbacks=list(callbacks), progress=False, **kw)
    return model, trainer


class Recorder(Callback):
    """Logs every hook call."""

    def __init__(self):
        self.calls = []

    def on_train_begin(self, trainer):
        self.calls.append(("train_begin",))

    def on_epoch_begin(self, epoch, trainer):
        self.calls.append(("epoch_begin", epoch))

    def on_batch_end(self, step, logs, trainer):
        self.calls.append(("batch_end", step, sorted(logs)))

    def on_epoch_end(self, epoch, logs, trainer):
        self.calls.append(("epoch_end", epoch, len(trainer.history)))

    def on_train_end(self, trainer):
        self.calls.append(("train_end",))


class HalveLREvery(Callback):
    """A stateful callback of our own: halves the lr every `every` epochs."""

    def __init__(self, every=2):
        self.every = every
        self.count = 0

    def on_epoch_end(self, epoch, logs, trainer):
        self.count += 1
        if self.count % self.every == 0:
            trainer.optimizer.lr = trainer.optimizer.lr / 2
        logs["halvings"] = self.count // self.every  # a key added for the history

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state_dict):
        self.count = state_dict["count"]


def test_fit_logs_every_documented_value(data):
    X, y = data
    model, trainer = _trainer(max_grad_norm=0.5)
    norms = []

    class GradNorms(Callback):
        def on_batch_end(self, step, logs, trainer):
            norms.append(logs["grad_norm"])

    trainer.callbacks.append(GradNorms())
    history = trainer.fit(fa.batches(X, y, 16, shuffle=True, seed=0), epochs=3, validation=(X, y),
                          metrics={"accuracy": model.accuracy})
    assert history is trainer.history and history.epoch == [0, 1, 2]
    expected = {"loss", "val_loss", "val_accuracy", "lr", "grad_norm", "grad_norm_max", "grad_norm.fc1",
                "grad_norm.fc2", "param_norm", "nonfinite_steps", "skipped_steps", "nonfinite_grads", "steps",
                "seconds"}
    assert set(history.keys()) == expected
    assert history["steps"] == [4, 4, 4] and trainer.step == 12 and trainer.epoch == 3
    assert history["lr"] == [1e-2] * 3
    assert history["param_norm"][-1] == fa.global_norm(model.params)
    assert history["val_loss"][-1] == pytest.approx(model.loss(model.params, (X, y)))
    assert history["val_accuracy"][-1] == pytest.approx(model.accuracy(model.params, (X, y)))
    # The grad norm is the optimizer's own (before clipping), averaged over the epoch's steps.
    assert history["grad_norm"][0] == pytest.approx(np.mean(norms[:4]))
    assert history["grad_norm_max"][2] == max(norms[8:])
    assert max(norms) > 0.5  # clipping was active, and the logged norm is the unclipped one
    assert history["nonfinite_steps"] == [0, 0, 0] and history["skipped_steps"] == [0, 0, 0]
    assert history.info["initial_loss"] > history["loss"][-1]
    assert history.info["optimizer"]["algorithm"] == "adam" and history.info["optimizer"]["max_grad_norm"] == 0.5
    assert trainer.optimizer.track_grad_norm


def test_loss_is_the_batch_size_weighted_mean(data):
    X, y = data
    model, trainer = _trainer(lr=0.0)  # lr 0: params never move, so every batch loss is known
    batches = [(X[:40], y[:40]), (X[40:], y[40:])]
    history = trainer.fit(batches, epochs=1)
    expected = (model.loss(model.params, batches[0]) * 40 + model.loss(model.params, batches[1]) * 24) / 64
    assert history["loss"][0] == pytest.approx(expected, rel=1e-6)
    assert trainer.evaluate(batches)["loss"] == pytest.approx(model.loss(model.params, (X, y)), rel=1e-6)


def test_callback_protocol_order_and_indices(data):
    X, y = data
    rec = Recorder()
    _, trainer = _trainer([rec])
    trainer.fit([(X[:32], y[:32]), (X[32:], y[32:])], epochs=2)
    trainer.fit([(X, y)], epochs=1)  # a second fit continues the epoch and step numbering
    keys = ["grad_norm", "loss", "lr"]  # the per-batch logs
    assert rec.calls == [
        ("train_begin",),
        ("epoch_begin", 0), ("batch_end", 0, keys), ("batch_end", 1, keys), ("epoch_end", 0, 1),
        ("epoch_begin", 1), ("batch_end", 2, keys), ("batch_end", 3, keys), ("epoch_end", 1, 2),
        ("train_end",),
        ("train_begin",), ("epoch_begin", 2), ("batch_end", 4, keys), ("epoch_end", 2, 3), ("train_end",),
    ]


@pytest.mark.parametrize("hook", ["on_batch_end", "on_epoch_end"])
def test_stop_training_ends_after_the_current_epoch(data, hook):
    X, y = data
    rec = Recorder()

    class StopAtEpoch1(Callback):
        def on_batch_end(self, step, logs, trainer):
            if hook == "on_batch_end" and step == 5:
                trainer.stop_training = True

        def on_epoch_end(self, epoch, logs, trainer):
            if hook == "on_epoch_end" and epoch == 1:
                trainer.stop_training = True

    _, trainer = _trainer([StopAtEpoch1(), rec])
    history = trainer.fit(fa.batches(X, y, 16), epochs=10)
    assert history.epoch == [0, 1] and trainer.stopped_epoch == 1 and trainer.step == 8
    assert rec.calls[-1] == ("train_end",)
    trainer.fit(fa.batches(X, y, 16), epochs=1)  # a new fit starts with stop_training cleared
    assert trainer.epoch == 3 and trainer.stopped_epoch is None


def test_keys_added_by_callbacks_and_moved_hyperparameters_are_recorded(data):
    X, y = data

    class MomentumRamp(Callback):
        def on_epoch_end(self, epoch, logs, trainer):
            if epoch == 1:
                trainer.optimizer.betas = (0.8, 0.999)

    _, trainer = _trainer([MomentumRamp(), HalveLREvery(2)])
    history = trainer.fit([(X, y)], epochs=4)
    assert history["halvings"] == [0, 1, 1, 2]
    assert history["lr"] == [1e-2, 1e-2, 5e-3, 5e-3]  # as it stood during each epoch
    # betas0 first moved after epoch 1: the earlier epochs get the value it had.
    assert history["betas0"] == [0.9, 0.9, 0.8, 0.8]
    assert "betas1" not in history and "eps" not in history  # unchanged hyperparameters stay out


def _nan_at_step(model, bad_step):
    count = {"step": 0}

    def loss_and_grad(params, batch):
        loss, grads = model.loss_and_grad(params, batch)
        if count["step"] == bad_step:
            grads["fc1"]["w"][0, 0] = np.nan
        count["step"] += 1
        return loss, grads

    return loss_and_grad


def test_nonfinite_gradients_are_skipped_counted_and_diagnosed(data):
    X, y = data
    model = MLP([D, 5, CLASSES], seed=0)
    trainer = fa.Trainer("adam", lr=1e-2, loss_and_grad=_nan_at_step(model, 5), params=model.params,
                         progress=False)
    history = trainer.fit(fa.batches(X, y, 16), epochs=2)
    assert history["skipped_steps"] == [0, 1] and history["nonfinite_steps"] == [0, 1]
    assert history["nonfinite_grads"] == [0, 1]
    assert all(math.isfinite(v) for v in history["loss"] + history["grad_norm"])
    assert np.isfinite(fa.global_norm(model.params))
    assert [f.code for f in fa.diagnose(history)] == ["nonfinite"]


def test_nonfinite_policy_of_an_optimizer_instance_is_respected(data):
    X, y = data
    model = MLP([D, 5, CLASSES], seed=0)
    trainer = fa.Trainer(fa.Adam(lr=1e-2, nonfinite="raise"), loss_and_grad=_nan_at_step(model, 1),
                         params=model.params, progress=False)
    with pytest.raises(FloatingPointError, match="fc1.w"):
        trainer.fit(fa.batches(X, y, 16), epochs=1)


def _resumable_callbacks():
    return [HalveLREvery(2), fa.AdaptiveLR(warmup_epochs=2, patience=1, factor=0.5, monitor="val_loss"),
            fa.EarlyStopping(patience=50, restore_best=True), fa.DiagnosisCallback(report=lambda f: None)]


def test_resume_from_checkpoint_is_bit_identical(data, tmp_path):
    X, y = data
    feed = fa.batches(X, y, 8, shuffle=True, seed=3)

    model_a, whole = _trainer(_resumable_callbacks(), max_grad_norm=1.0)
    whole.fit(feed, epochs=6, validation=(X, y), metrics={"accuracy": model_a.accuracy},
              checkpoint_path=tmp_path / "whole.npz")

    model_b, first = _trainer(_resumable_callbacks(), max_grad_norm=1.0)
    first.fit(fa.batches(X, y, 8, shuffle=True, seed=3), epochs=3, validation=(X, y),
              metrics={"accuracy": model_b.accuracy}, checkpoint_path=tmp_path / "ckpt.npz")

    # A new process would build everything again, from another init even.
    model_c, resumed = _trainer(_resumable_callbacks(), seed=99, max_grad_norm=1.0)
    params_before = model_c.params
    resumed.load_checkpoint(tmp_path / "ckpt.npz")
    assert resumed.epoch == 3 and resumed.step == first.step and resumed.params is params_before
    resumed.fit(fa.batches(X, y, 8, shuffle=True, seed=3), epochs=3, validation=(X, y),
                metrics={"accuracy": model_c.accuracy})

    assert trees_same_bits(model_c.params, model_a.params)
    assert resumed.optimizer.step_count == whole.optimizer.step_count == 48
    drop = lambda h: {k: v for k, v in h.history.items() if k != "seconds"}  # noqa: E731
    assert drop(resumed.history) == drop(whole.history) and resumed.history.epoch == whole.history.epoch
    assert resumed.history["lr"] == whole.history["lr"] and len(set(whole.history["lr"])) >= 2
    # The per-epoch checkpoint of the uninterrupted run holds the same params as the resumed run's end.
    final = load_state(tmp_path / "whole.npz")
    assert all(np.array_equal(final["params"][k], v) for k, v in resumed.state_dict()["params"].items())


def test_load_checkpoint_checks_first_and_changes_nothing_on_error(data, tmp_path):
    X, y = data
    _, trainer = _trainer([HalveLREvery()])
    trainer.fit([(X, y)], epochs=2)
    trainer.save_checkpoint(tmp_path / "c.npz")

    other_model = MLP([D, 7, CLASSES], seed=0)
    other = fa.Trainer("adam", loss_and_grad=other_model.loss_and_grad, params=other_model.params,
                       callbacks=[HalveLREvery()], progress=False)
    with pytest.raises(ValueError, match=r"params\['fc1.w'\]: expected float32 \(6, 7\), got float32 \(6, 5\)"):
        other.load_checkpoint(tmp_path / "c.npz")
    model_d, wrong_callbacks = _trainer([Recorder()])
    before = {k: v.copy() for k, v in model_d.params["fc1"].items()}
    with pytest.raises(ValueError, match=r"callbacks \['HalveLREvery'\] do not match this trainer's \['Recorder'\]"):
        wrong_callbacks.load_checkpoint(tmp_path / "c.npz")
    assert all(np.array_equal(before[k], model_d.params["fc1"][k]) for k in before)
    assert wrong_callbacks.epoch == 0 and len(wrong_callbacks.history) == 0
    with pytest.raises(ValueError, match="not a trainer checkpoint"):
        trainer.load_state_dict({"epoch": 1})


def test_failed_callback_load_rolls_back_optimizer_and_callbacks(data):
    X, y = data
    _, trainer = _trainer([HalveLREvery(), fa.DiagnosisCallback(report=lambda f: None)])
    trainer.fit([(X, y)], epochs=2)
    state = trainer.state_dict()
    state["callbacks"][1]["state"] = {"reported": ["no_such_code"]}
    _, fresh = _trainer([HalveLREvery(), fa.DiagnosisCallback(report=lambda f: None)])
    with pytest.raises(ValueError, match="finding codes"):
        fresh.load_state_dict(state)
    assert fresh.callbacks[0].count == 0 and fresh.optimizer.step_count == 0 and fresh.epoch == 0


def test_checkpoint_files_round_trip_exactly_without_pickle(tmp_path):
    state = {"a": np.arange(5, dtype=np.float32), "t": (0.9, 0.999), "nested": [{"x": None, "y": True}],
             "f": 0.1 + 0.2, "nan": float("nan"), "inf": -math.inf, "i": np.int64(7), "s": "adam"}
    save_state(tmp_path / "s.npz", state)
    back = load_state(tmp_path / "s.npz")
    assert back["a"].dtype == np.float32 and np.array_equal(back["a"], state["a"])
    assert back["t"] == (0.9, 0.999) and isinstance(back["t"], tuple)
    assert back["f"] == 0.1 + 0.2 and math.isnan(back["nan"]) and back["inf"] == -math.inf
    assert back["nested"] == [{"x": None, "y": True}] and back["i"] == 7 and back["s"] == "adam"
    with np.load(tmp_path / "s.npz", allow_pickle=False) as archive:  # plain arrays only
        assert "__state__" in archive.files
    with pytest.raises(TypeError, match=r"state\['k'\]: dict keys must be strings"):
        save_state(tmp_path / "bad.npz", {"k": {1: 2}})
    with pytest.raises(TypeError, match="cannot save set"):
        save_state(tmp_path / "bad.npz", {"k": {1, 2}})
    with pytest.raises(TypeError, match="object arrays"):
        save_state(tmp_path / "bad.npz", {"k": np.array([None])})


def test_checkpoint_files_keep_bfloat16_arrays(tmp_path):
    """.npy writes ml_dtypes.bfloat16 as raw 2-byte voids; a checkpoint gives it back as bfloat16."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    a = np.array([0.5, -3.0, np.inf, 1e-3], np.float32).astype(ml_dtypes.bfloat16)
    save_state(tmp_path / "b.npz", {"a": a, "pair": (a[:2], 1)})
    back = load_state(tmp_path / "b.npz")
    assert back["a"].dtype == ml_dtypes.bfloat16 and back["pair"][0].dtype == ml_dtypes.bfloat16
    assert np.array_equal(back["a"].view(np.uint16), a.view(np.uint16))
    with pytest.raises(ValueError, match="reserved"):
        save_state(tmp_path / "r.npz", {"k": {"__ndarray__": "a0", "__dtype__": "bfloat16"}})
    with pytest.raises(TypeError, match="cannot be saved"):
        save_state(tmp_path / "v.npz", {"k": np.zeros(2, "V4")})
    # A hand-edited document: an unknown dtype name, or bits that are not uint16, is refused.
    with np.load(tmp_path / "b.npz", allow_pickle=False) as archive:
        members = {k: archive[k] for k in archive.files}
    for doc, bits in (('{"a": {"__ndarray__": "a0", "__dtype__": "float8"}}', members["a0"]),
                      ('{"a": {"__ndarray__": "a0", "__dtype__": "bfloat16"}}', members["a0"].astype(np.int32))):
        np.savez(tmp_path / "e.npz", __state__=np.array(doc), a0=bits)
        with pytest.raises(ValueError, match="not a valid fastadapt checkpoint"):
            load_state(tmp_path / "e.npz")


def test_resume_with_bfloat16_params_and_state_is_bit_identical(tmp_path):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 8)).astype(np.float32)
    y = X @ rng.standard_normal(8).astype(np.float32)

    def loss_and_grad(p, batch):
        xb, yb = batch
        r = xb @ p["w"].astype(np.float32) + p["b"] - yb
        return 0.5 * float(np.mean(r * r)), {"w": (xb.T @ r / len(yb)).astype(ml_dtypes.bfloat16),
                                             "b": np.float32(np.mean(r)).reshape(1)}

    def trainer():
        params = {"w": np.zeros(8, ml_dtypes.bfloat16), "b": np.zeros(1, np.float32)}
        opt = fa.Adam(lr=1e-2, state_dtype="bfloat16", master_weights=True, overrides={"b": {"state_bits": 8}})
        return fa.Trainer(opt, loss_and_grad=loss_and_grad, params=params, progress=False)

    whole = trainer()
    whole.fit(fa.batches(X, y, 16, shuffle=True, seed=1), epochs=4)
    first = trainer()
    first.fit(fa.batches(X, y, 16, shuffle=True, seed=1), epochs=2, checkpoint_path=tmp_path / "c.npz")
    resumed = trainer()
    resumed.load_checkpoint(tmp_path / "c.npz")
    resumed.fit(fa.batches(X, y, 16, shuffle=True, seed=1), epochs=2)
    assert resumed.params["w"].dtype == ml_dtypes.bfloat16
    assert trees_same_bits(resumed.params, whole.params)
    for key, entries in whole.optimizer.state.items():
        for name, value in entries.items():
            assert np.array_equal(np.asarray(resumed.optimizer.state[key][name]).view(np.uint8),
                                  np.asarray(value).view(np.uint8)), (key, name)


def test_progress_one_line_per_epoch_when_not_a_terminal(data, capsys):
    X, y = data
    model, trainer = _trainer()
    trainer.progress = True
    trainer.fit([(X, y)], epochs=2, validation=(X, y), metrics={"accuracy": model.accuracy})
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2 - ") and lines[1].startswith("epoch 2/2 - ")
    assert " loss " in lines[1] and "val_loss" in lines[1] and "val_accuracy" in lines[1] and "lr 0.01" in lines[1]


def test_progress_false_is_silent(data, capsys):
    X, y = data
    _, trainer = _trainer()
    trainer.fit([(X, y)], epochs=2)
    assert capsys.readouterr() == ("", "")


def test_progress_bar_on_a_terminal(data, monkeypatch):
    pytest.importorskip("tqdm")
    X, y = data

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    monkeypatch.setattr("sys.stderr", screen)
    _, trainer = _trainer()
    trainer.progress = True
    trainer.fit(fa.batches(X, y, 16), epochs=2)
    trainer.log("a message")
    text = screen.getvalue()
    assert "epoch 1/2" in text and "epoch 2/2" in text and "4/4" in text and "a message" in text


def test_history_json_round_trip(tmp_path):
    h = fa.History()
    h.append(0, {"loss": 2.0, "val_loss": float("nan")})
    h.append(1, {"loss": float("inf"), "lr": 1e-3})
    h.info["test_accuracy"] = 0.93
    h.info["config"] = {"betas": (0.9, 0.999), "n": np.int64(3)}
    h.save(tmp_path / "h.json")
    raw = json.loads((tmp_path / "h.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-strict {c}"))
    assert raw["test_accuracy"] == 0.93 and raw["history"]["lr"] == [None, 0.001]
    assert raw["history"]["val_loss"] == ["nan", None] and raw["history"]["loss"] == [2.0, "inf"]
    back = fa.History.load(tmp_path / "h.json")
    assert back.epoch == [0, 1] and back["lr"] == [None, 1e-3] and back["loss"][1] == math.inf
    assert math.isnan(back["val_loss"][0]) and back.info["config"] == {"betas": [0.9, 0.999], "n": 3}
    assert back.last("loss") == math.inf and back.rows()[0]["loss"] == 2.0
    keras = fa.History.from_dict({"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]})
    assert keras.epoch == [0, 1] and keras["val_loss"] == [1.1, 0.7]
    h.info["epoch"] = 3
    with pytest.raises(ValueError, match="reserved"):
        h.to_dict()
    with pytest.raises(KeyError, match="has no 'acc'"):
        back["acc"]
    with pytest.raises(ValueError, match="equally long lists"):
        fa.History.from_dict({"loss": [1.0], "val_loss": [1.0, 2.0]})
    with pytest.raises(TypeError, match="real numbers or None"):
        fa.History().append(0, {"loss": "low"})


def test_batches_reproducible_per_epoch():
    X, y = np.arange(10.0)[:, None], np.arange(10)
    feed = fa.batches(X, y, 4, shuffle=True, seed=1)
    assert len(feed) == 3 and len(fa.batches(X, y, batch_size=4, drop_last=True)) == 2
    first = [b[1].tolist() for b in feed]
    second = [b[1].tolist() for b in feed]  # a plain loop moves on to the next epoch's order
    feed.set_epoch(0)
    assert [b[1].tolist() for b in feed] == first != second
    assert sorted(sum(first, [])) == list(range(10)) and [len(b) for b in first] == [4, 4, 2]
    assert [b[1].tolist() for b in fa.batches(X, y, 4, shuffle=True, seed=1)] == first
    lone = list(fa.batches(np.arange(5), 2))
    assert [b.tolist() for b in lone] == [[0, 1], [2, 3], [4]]


@pytest.mark.parametrize("args, kwargs, exc, words", [
    ((np.zeros(3), np.zeros(3)), {}, TypeError, "needs a batch size"),
    ((np.zeros(3), np.zeros(4), 2), {}, ValueError, "differ in length"),
    ((np.zeros(3), 0), {}, ValueError, "batch_size must be an int >= 1"),
    ((np.zeros(0), 2), {}, ValueError, "empty"),
    ((3.0, 2), {}, TypeError, "argument 0"),
    ((np.zeros(3), 2), {"seed": -1}, ValueError, "seed"),
    ((np.zeros(3), 2), {"shuffle": "yes"}, TypeError, "shuffle"),
    ((np.zeros(3), 4), {"drop_last": True}, ValueError, "leaves no batch"),
])
def test_batches_bad_input(args, kwargs, exc, words):
    with pytest.raises(exc, match=words):
        fa.batches(*args, **kwargs)


def test_fit_accepts_a_function_of_the_epoch(data):
    X, y = data
    seen = []

    def epoch_batches(epoch):
        seen.append(epoch)
        return [(X, y)]

    _, trainer = _trainer()
    trainer.fit(epoch_batches, epochs=3)
    assert seen == [0, 1, 2]


def test_bad_trainer_arguments(data):
    X, y = data
    model = MLP([D, 5, CLASSES])
    ok = dict(loss_and_grad=model.loss_and_grad, params=model.params)
    with pytest.raises(TypeError, match="set lr on the instance"):
        fa.Trainer(fa.Adam(), lr=1e-3, **ok)
    with pytest.raises(ValueError, match="unknown optimizer 'adamm'"):
        fa.Trainer("adamm", **ok)
    given = fa.Adam()
    with pytest.raises(TypeError, match="loss_and_grad must be a function"):
        fa.Trainer(given, loss_and_grad=None, params=model.params)
    assert not given.track_grad_norm  # a refused call leaves the optimizer as it was
    with pytest.raises(TypeError, match=r"params\['fc1.w'\] must be a float32, float64, float16 or bfloat16 NumPy array, got list"):
        fa.Trainer("adam", loss_and_grad=model.loss_and_grad, params={"fc1": {"w": [[1.0, 2.0]]}})
    with pytest.raises(TypeError, match=r"wrap a single one: callbacks=\[cb\]"):
        fa.Trainer("adam", callbacks=Recorder(), **ok)
    with pytest.raises(TypeError, match="has none of the hooks"):
        fa.Trainer("adam", callbacks=[object()], **ok)
    trainer = fa.Trainer("adam", progress=False, **ok)
    with pytest.raises(TypeError, match="one-shot iterator"):
        trainer.fit(((X, y) for _ in range(2)), epochs=2)
    with pytest.raises(ValueError, match="data has no batches"):
        trainer.fit([], epochs=1)
    assert trainer.epoch == 0 and not trainer.history.epoch  # refused before the first epoch
    with pytest.raises(ValueError, match="epoch 0 had no batches"):
        trainer.fit(lambda epoch: iter(()), epochs=1)
    with pytest.raises(ValueError, match="epochs must be an int >= 0"):
        trainer.fit([(X, y)], epochs=-1)
    with pytest.raises(TypeError, match="metrics must be a dict"):
        trainer.fit([(X, y)], metrics=[model.accuracy])
    with pytest.raises(ValueError, match="other than 'loss'"):
        trainer.fit([(X, y)], metrics={"loss": model.accuracy})
    with pytest.raises(ValueError, match="validation is an empty list"):
        trainer.fit([(X, y)], validation=[])
    bad = fa.Trainer("adam", loss_and_grad=lambda p, b: 1.0, params=model.params, progress=False)
    with pytest.raises(TypeError, match="must return a pair"):
        bad.fit([(X, y)])
    bad = fa.Trainer("adam", loss_and_grad=lambda p, b: ("x", p), params=model.params, progress=False)
    with pytest.raises(TypeError, match="real scalar loss"):
        bad.fit([(X, y)])


@pytest.mark.parametrize("name", sorted(fa.optim.OPTIMIZERS))
def test_every_registered_rule_trains_by_name_and_resumes(data, name, tmp_path):
    # A rule with a hyperparameter that is not a plain number (Adafactor's eps=(None, 1e-3), Muon's
    # ns_dtype=None) must not break the per-epoch hyperparameter log; a checkpoint must round-trip.
    X, y = data
    lr = fa.make_optimizer(name).lr

    def callbacks():
        return [fa.Scheduler(per="epoch", lr=fa.schedules.linear(lr, lr / 2, 2))]

    _, trainer = _trainer(callbacks(), optimizer=name, lr=None)
    path = str(tmp_path / "ckpt.npz")
    history = trainer.fit(fa.batches(X, y, 16, shuffle=True, seed=0), epochs=2, validation=(X, y),
                          checkpoint_path=path)
    assert history.epoch == [0, 1] and all(math.isfinite(v) for v in history["loss"] + history["val_loss"])
    assert trainer.optimizer.algorithm == name and history["lr"] == [pytest.approx(lr), pytest.approx(0.75 * lr)]
    again = _trainer(callbacks(), optimizer=name, lr=None)[1]
    again.load_checkpoint(path)
    assert trees_same_bits(again.optimizer.state_dict()["state"], trainer.optimizer.state_dict()["state"])


# ---- what a Keras user meets -------------------------------------------------------------------------------
def _lsq_trainer(callbacks=(), lr=0.05):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 6)).astype(np.float32)
    y = X @ rng.standard_normal(6).astype(np.float32)

    def loss_and_grad(p, batch):
        xb, yb = batch
        r = xb @ p["w"] - yb
        return 0.5 * float(np.mean(r * r)), {"w": (xb.T @ r / len(yb)).astype(np.float32)}

    trainer = fa.Trainer(fa.SGD(lr=lr), loss_and_grad=loss_and_grad, params={"w": np.zeros(6, np.float32)},
                         callbacks=list(callbacks), progress=False)
    return trainer, fa.batches(X[:96], y[:96], 16, shuffle=True, seed=0), (X[96:], y[96:]), (X, y)


class _RaiseOnce(fa.Callback):
    def __init__(self, at, error):
        self.at, self.error = at, error

    def on_epoch_end(self, epoch, logs, trainer):
        if epoch == self.at:
            self.at = None
            raise self.error


@pytest.mark.parametrize("error", [KeyboardInterrupt(), RuntimeError("boom")])
def test_an_epoch_whose_callback_raised_is_counted_once(error):
    trainer, data, val, _ = _lsq_trainer([_RaiseOnce(1, error)])
    with pytest.raises(type(error)):
        trainer.fit(data, epochs=4, validation=val)
    assert trainer.epoch == 2 and trainer.history.epoch == [0, 1]   # epoch 1 trained and is recorded
    trainer.fit(data, epochs=2, validation=val)
    assert trainer.history.epoch == [0, 1, 2, 3] and trainer.epoch == 4


def test_early_stopping_reused_in_a_second_fit_watches_it_afresh():
    stopper = fa.EarlyStopping(patience=1)
    trainer, data, val, _ = _lsq_trainer([stopper], lr=0.5)   # diverges: stops after two epochs
    trainer.fit(data, epochs=20, validation=val)
    first = len(trainer.history.epoch)
    assert stopper.stopped_epoch is not None and first < 20
    trainer.fit(data, epochs=3, validation=val)              # a fresh watch (Keras resets too)
    # before: the old stop ended the new fit after one epoch and restored the old best params
    assert len(trainer.history.epoch) >= first + 2 and stopper.best_epoch >= first


def test_mode_auto_maximizes_an_accuracy_and_a_missing_monitor_warns():
    assert fa.EarlyStopping(monitor="val_accuracy")._improves.mode == "max"
    assert fa.EarlyStopping()._improves.mode == "min"
    assert fa.AdaptiveLR(monitor="val_acc")._plateau.improves.mode == "max"
    assert fa.ReduceLROnPlateau(monitor="val_accuracy")._plateau.improves.mode == "max"
    trainer, data, _, _ = _lsq_trainer([fa.EarlyStopping(patience=1)])
    with pytest.warns(RuntimeWarning, match=r"EarlyStopping monitors 'val_loss', which this epoch's logs lack "
                                            r"\(pass validation= to fit\)"):
        trainer.fit(data, epochs=3)
    assert trainer.history.epoch == [0, 1, 2]            # it trained on


def test_keras_habits_get_clear_errors_before_any_training():
    trainer, data, val, (X, y) = _lsq_trainer()
    for wrong, match in (((X, y), r"a pair of arrays \(120, 6\) and \(120,\), which would be two batches"),
                         (X, r"one array .*iterated row by row")):
        with pytest.raises(TypeError, match=match):
            trainer.fit(wrong, epochs=1)
    with pytest.raises(TypeError, match="epochs must be an int >= 0, got str '3'"):
        trainer.fit(data, epochs="3")

    class KerasStyle(fa.Callback):
        def on_epoch_end(self, epoch, logs=None):
            pass

    keras, data, _, _ = _lsq_trainer([KerasStyle()])
    with pytest.raises(TypeError, match=r"callbacks\[0\] \(KerasStyle\)\.on_epoch_end\(epoch, logs=None\) cannot be "
                                        r"called as on_epoch_end\(epoch, logs, trainer\)"):
        keras.fit(data, epochs=1)
    assert keras.step == 0
    with pytest.warns(UserWarning, match=r"fit\(metrics=\.\.\.\) are computed on validation="):
        trainer.fit(data, epochs=1, metrics={"mse": lambda p, b: 0.0})
