"""The trainer and two-sequence optimizers (issue 15): Schedule-Free trains
at one point and is evaluated at another, ``opt.eval(params)`` /
``opt.train(params)`` switching the arrays in place.

What must hold: validation, metrics, EarlyStopping's best params, every
checkpoint and the params ``fit`` hands back are the evaluation point; and
none of that changes the training trajectory by a single bit, since the
training is exactly the plain loop ``opt.update(params, grads)`` over the
same batches that never evaluates. A resumed run (a checkpoint, a backup,
a second ``fit``) goes on exactly as the uninterrupted one.

Tested with a small test-only optimizer (``Lookahead``) whose switch is
visible and, like Schedule-Free's lerps, not exactly invertible in float32,
so these tests do not depend on any real two-sequence rule.
"""

import numpy as np
import pytest
from helpers import copy_tree, trees_same_bits

import fastadapt as fa
from fastadapt._tree import flatten_any
from fastadapt.callbacks import Callback
from fastadapt.models import MLP
from fastadapt.train.checkpoints import load_state

N, D, CLASSES, BATCH = 64, 6, 3, 16
STEPS = N // BATCH  # per epoch
C = 0.37


class Lookahead(fa.Adam):
    """Test only: trains at the params, is evaluated at ``params - C * exp_avg``
    (moved against Adam's running mean of the gradients). Like schedulefree's
    optimizers, eval/train switch in place, do nothing when already in that
    mode, and a step at the evaluation point is refused; the round trip
    ``p - C m + C m`` is not exact in float32, as Schedule-Free's is not."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._mode = "train"
        self._switches = []

    def _shift(self, params, sign):
        # Loaded but not stepped since, the state waits for the params to bind
        # (optim/base.py): a two-sequence rule must switch with it all the same.
        state = self.state if self._tree is not None else (self._pending_state or {})
        for path, leaf in zip(*flatten_any(params)):
            m = state.get(path, {}).get("exp_avg")
            if m is not None:
                leaf += leaf.dtype.type(sign * C) * m

    def eval(self, params):
        if self._mode != "eval":
            self._shift(params, -1.0)
            self._mode = "eval"
            self._switches.append("eval")
        return params

    def train(self, params):
        if self._mode != "train":
            self._shift(params, 1.0)
            self._mode = "train"
            self._switches.append("train")
        return params

    def update(self, params, grads):
        if self._mode != "train":
            raise RuntimeError("Lookahead was stepped at its evaluation point")
        return super().update(params, grads)


def eval_point(train_point, exp_avg):
    """What Lookahead.eval makes of ``train_point`` (the same float32 operations)."""
    out = copy_tree(train_point)
    for path, leaf in zip(*flatten_any(out)):
        leaf += leaf.dtype.type(-C) * exp_avg[path]
    return out


def train_point_of(eval_params, exp_avg):
    """What Lookahead.train makes of ``eval_params``."""
    out = copy_tree(eval_params)
    for path, leaf in zip(*flatten_any(out)):
        leaf += leaf.dtype.type(C) * exp_avg[path]
    return out


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, D)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)
    return X, y


def _feed(data):
    return fa.batches(*data, BATCH, shuffle=True, seed=3)


def plain_run(data, epochs):
    """The training without a trainer: each step's loss, training point and exp_avg after it."""
    model = MLP([D, 5, CLASSES], seed=0)
    opt = Lookahead(lr=1e-2, track_grad_norm=True)
    feed = _feed(data)
    steps = []
    for epoch in range(epochs):
        feed.set_epoch(epoch)
        for batch in feed:
            loss, grads = model.loss_and_grad(model.params, batch)
            opt.update(model.params, grads)
            steps.append((float(loss), copy_tree(model.params),
                          {k: v["exp_avg"].copy() for k, v in opt.state.items()}))
    assert not opt._switches
    return steps, opt


def after_epoch(steps, epoch):
    """(training point, exp_avg) after epoch ``epoch``'s last step."""
    _, params, m = steps[(epoch + 1) * STEPS - 1]
    return params, m


def make_trainer(callbacks=(), seed=0):
    model = MLP([D, 5, CLASSES], seed=seed)
    trainer = fa.Trainer(Lookahead(lr=1e-2), loss_and_grad=model.loss_and_grad, params=model.params,
                         loss_fn=model.loss, callbacks=list(callbacks), progress=False)
    return model, trainer


class Watch(Callback):
    """Records what a callback sees: each step's loss, the params at each
    epoch's begin and end; every third step it also evaluates and takes a
    checkpoint mid-epoch (where the params are the training point)."""

    def __init__(self, data, model):
        self.data, self.model = data, model
        self.losses, self.begin, self.end, self.mid = [], [], [], []

    def on_epoch_begin(self, epoch, trainer):
        self.begin.append(copy_tree(trainer.params))

    def on_batch_end(self, step, logs, trainer):
        self.losses.append(logs["loss"])
        if step % 3 == 1:
            self.mid.append((step, trainer.evaluate(self.data)["loss"], trainer.state_dict()))

    def on_epoch_end(self, epoch, logs, trainer):
        self.end.append(copy_tree(trainer.params))


EPOCHS = 5


def test_evaluation_checkpoints_and_early_stopping_see_the_eval_point_and_never_change_training(data, tmp_path):
    steps, plain = plain_run(data, EPOCHS)
    X, y = data
    model, trainer = make_trainer()
    watch = Watch(data, model)
    # mode="max": the "best" epoch is the first (the loss falls), so the final restore changes the params
    stopper = fa.EarlyStopping(patience=100, mode="max", restore_best=True)
    weights = fa.ModelCheckpoint(tmp_path / "w-{batch}.npz", save_weights_only=True, save_freq=3)
    full = fa.ModelCheckpoint(tmp_path / "full-{epoch}.npz", monitor="val_loss")
    trainer.callbacks += [watch, stopper, weights, full]
    metric_saw = []

    def accuracy(params, batch):
        metric_saw.append(copy_tree(params))
        return model.accuracy(params, batch)

    history = trainer.fit(_feed(data), epochs=EPOCHS, validation=(X, y), metrics={"acc": accuracy},
                          checkpoint_path=tmp_path / "last.npz")

    # The guard that gives this test its teeth: Lookahead's own round trip is not exact here,
    # so a trainer that went back with opt.train alone would have drifted.
    y_last, m_last = after_epoch(steps, EPOCHS - 1)
    assert not trees_same_bits(train_point_of(eval_point(y_last, m_last), m_last), y_last)
    assert trainer.optimizer._switches.count("eval") >= EPOCHS

    # Training: bit for bit the plain loop (losses, every epoch's training point, the optimizer state).
    assert watch.losses == [s[0] for s in steps]
    for epoch in range(1, EPOCHS):
        assert trees_same_bits(watch.begin[epoch], after_epoch(steps, epoch - 1)[0]), epoch
    final = trainer.state_dict()
    assert trees_same_bits(final["train_params"], {k: v for k, v in zip(*flatten_any(y_last))})
    assert trees_same_bits(final["optimizer"]["state"], plain.state_dict()["state"])

    # Evaluation: validation, metrics and on_epoch_end saw the eval point of each epoch.
    for epoch in range(EPOCHS):
        expected = eval_point(*after_epoch(steps, epoch))
        assert trees_same_bits(watch.end[epoch], expected), epoch
        assert trees_same_bits(metric_saw[epoch], expected), epoch
        assert history["val_loss"][epoch] == pytest.approx(model.loss(expected, (X, y)), rel=1e-6)
        saved = load_state(tmp_path / f"full-{epoch + 1}.npz")
        assert trees_same_bits(saved["params"], dict(zip(*flatten_any(expected))))
        assert trees_same_bits(saved["train_params"], dict(zip(*flatten_any(after_epoch(steps, epoch)[0]))))
    # Mid-epoch, at the training point: evaluate and state_dict give the eval point too.
    for step, loss, state in watch.mid:
        expected = eval_point(steps[step][1], steps[step][2])
        assert loss == pytest.approx(model.loss(expected, (X, y)), rel=1e-6)
        assert trees_same_bits(state["params"], dict(zip(*flatten_any(expected))))
        assert trees_same_bits(state["train_params"], dict(zip(*flatten_any(steps[step][1]))))
    assert [step for step, _, _ in watch.mid] == [1, 4, 7, 10, 13, 16, 19]
    for k in range(3, EPOCHS * STEPS + 1, 3):  # weights saved every 3 steps, mid-epoch
        saved = load_state(tmp_path / f"w-{k}.npz")["params"]
        assert trees_same_bits(saved, dict(zip(*flatten_any(eval_point(steps[k - 1][1], steps[k - 1][2]))))), k

    # EarlyStopping snapshotted the best epoch's eval point and fit handed it back.
    best = stopper.best_epoch
    assert best == int(np.argmax(history["val_loss"])) == 0
    x_best = eval_point(*after_epoch(steps, best))
    assert trees_same_bits(stopper.state_dict()["best_params"], list(flatten_any(x_best)[1]))
    assert trees_same_bits(model.params, x_best)
    last = load_state(tmp_path / "last.npz")  # written before on_train_end's restore: the last epoch's
    assert trees_same_bits(last["params"], dict(zip(*flatten_any(eval_point(y_last, m_last)))))


def test_evaluate_and_state_dict_before_any_fit_leave_the_params_alone(data):
    model, trainer = make_trainer()
    before = copy_tree(model.params)
    trainer.evaluate(data)
    state = trainer.state_dict()
    assert trees_same_bits(model.params, before)  # no state yet: both points are the params
    assert trees_same_bits(state["params"], state["train_params"])


def _drop_seconds(history):
    return {k: v for k, v in history.history.items() if k != "seconds"}


def test_fit_goes_on_exactly_after_fit_and_after_a_checkpoint_in_either_mode(data, tmp_path):
    X, y = data

    def run(trainer, epochs):
        trainer.fit(_feed(data), epochs=epochs, validation=(X, y))

    def callbacks():
        return [fa.EarlyStopping(patience=100, restore_best=False), fa.DiagnosisCallback(report=lambda f: None)]

    _, whole = make_trainer(callbacks())
    run(whole, 5)

    _, split = make_trainer(callbacks())
    run(split, 3)
    split.save_checkpoint(tmp_path / "after3.npz")  # after fit: the params are the eval point
    run(split, 2)

    _, fresh = make_trainer(callbacks(), seed=7)  # a new process: training point, another init
    fresh.load_checkpoint(tmp_path / "after3.npz")
    run(fresh, 2)
    _, used = make_trainer(callbacks(), seed=8)  # an old trainer, at its eval point after its own fit
    run(used, 1)
    used.load_checkpoint(tmp_path / "after3.npz")
    run(used, 2)

    reference = whole.state_dict()
    for other in (split, fresh, used):
        state = other.state_dict()
        assert trees_same_bits(state["params"], reference["params"])
        assert trees_same_bits(state["train_params"], reference["train_params"])
        assert trees_same_bits(state["optimizer"]["state"], reference["optimizer"]["state"])
        assert _drop_seconds(other.history) == _drop_seconds(whole.history) and other.step == whole.step
    assert not trees_same_bits(reference["params"], reference["train_params"])


def test_params_changed_at_the_eval_point_are_trained_from(data):
    # An edit between fits (or a restored best) is kept: training goes on from what opt.train makes of it.
    _, trainer = make_trainer()
    watch = Watch(data, None)
    watch.on_batch_end = lambda step, logs, trainer: None
    trainer.callbacks.append(watch)
    trainer.fit(_feed(data), epochs=2)
    trainer.params["fc1"]["w"][0, 0] = 0.5
    edited = copy_tree(trainer.params)
    m = {k: v["exp_avg"].copy() for k, v in trainer.optimizer.state.items()}
    trainer.fit(_feed(data), epochs=1)
    assert trees_same_bits(watch.begin[2], train_point_of(edited, m))


def test_an_early_stopped_run_resumes_from_its_checkpoint_as_it_would_have_gone_on(data, tmp_path):
    # EarlyStopping restores the best eval point when it decides to stop, before the epoch's
    # checkpoint: the checkpoint holds that best point and the training point it left; a run loaded
    # from it continues as the stopped trainer itself does (from opt.train of the restored best).
    X, y = data

    def callbacks():
        return [fa.EarlyStopping(monitor="loss", mode="max", patience=1, restore_best=True)]

    model, stopped = make_trainer(callbacks())
    stopped.fit(_feed(data), epochs=6, validation=(X, y), checkpoint_path=tmp_path / "c.npz")
    assert stopped.stopped_epoch == 1 and stopped.callbacks[0].best_epoch == 0
    saved = load_state(tmp_path / "c.npz")
    assert trees_same_bits(saved["params"], dict(zip(*flatten_any(model.params))))  # the best, epoch 0
    assert not trees_same_bits(saved["params"], saved["train_params"])

    _, resumed = make_trainer(callbacks(), seed=5)
    resumed.load_checkpoint(tmp_path / "c.npz")
    for trainer in (stopped, resumed):
        trainer.callbacks[0].stopped_epoch = None
        trainer.callbacks[0].patience = 100
        trainer.fit(_feed(data), epochs=2, validation=(X, y))
    a, b = stopped.state_dict(), resumed.state_dict()
    assert trees_same_bits(a["params"], b["params"]) and trees_same_bits(a["train_params"], b["train_params"])


class Crash(Callback):
    def __init__(self, at=None):
        self.at = at

    def on_epoch_end(self, epoch, logs, trainer):
        if epoch == self.at:
            raise RuntimeError("crash")


def test_backup_and_restore_resumes_exactly(data, tmp_path):
    X, y = data

    def run(backup, crash_at=None):
        _, trainer = make_trainer([Crash(crash_at), fa.EarlyStopping(patience=100, restore_best=True),
                                   *([fa.BackupAndRestore(backup)] if backup else [])], seed=0)
        trainer.fit(_feed(data), epochs=5, validation=(X, y))
        return trainer

    whole = run(None)
    with pytest.raises(RuntimeError, match="crash"):
        run(tmp_path / "b", crash_at=3)  # raised at the eval point, after the epoch-2 backup
    resumed = run(tmp_path / "b")
    assert trees_same_bits(resumed.params, whole.params)
    a, b = whole.state_dict(), resumed.state_dict()
    assert trees_same_bits(a["train_params"], b["train_params"])
    assert trees_same_bits(a["optimizer"]["state"], b["optimizer"]["state"])
    assert _drop_seconds(whole.history) == _drop_seconds(resumed.history)


def test_checkpoints_of_one_and_two_sequence_optimizers_do_not_mix(data, tmp_path):
    X, y = data
    _, two = make_trainer()
    two.fit(_feed(data), epochs=1)
    model, one = make_trainer()
    one = fa.Trainer(fa.Adam(lr=1e-2), loss_and_grad=model.loss_and_grad, params=model.params, progress=False)
    one.fit(_feed(data), epochs=1)
    assert "train_params" not in one.state_dict()
    before = copy_tree(model.params)
    with pytest.raises(ValueError, match="has 'train_params'.*Adam has one sequence"):
        one.load_state_dict(two.state_dict())
    with pytest.raises(ValueError, match="no 'train_params'.*Lookahead"):
        two.load_state_dict(one.state_dict())
    state = two.state_dict()
    state["train_params"]["fc1.w"] = state["train_params"]["fc1.w"][:, :2]
    with pytest.raises(ValueError, match=r"checkpoint train_params\['fc1.w'\]: expected float32 \(6, 5\)"):
        two.load_state_dict(state)
    assert trees_same_bits(model.params, before) and one.epoch == 1


def test_one_sequence_optimizers_go_through_the_base_class_switch(data, monkeypatch):
    # Every optimizer has eval/train (no-ops in the base class): the trainer calls them at each switch,
    # and copies nothing for an optimizer that does not override them.
    calls = []
    monkeypatch.setattr(fa.optim.Optimizer, "eval", lambda self, params: calls.append("eval") or params)
    monkeypatch.setattr(fa.optim.Optimizer, "train", lambda self, params: calls.append("train") or params)
    model = MLP([D, 5, CLASSES], seed=0)
    trainer = fa.Trainer("adam", lr=1e-2, loss_and_grad=model.loss_and_grad, params=model.params, progress=False)
    trainer.fit(_feed(data), epochs=2, validation=data)
    assert calls == ["eval", "train", "eval"]  # after epoch 1's steps, before epoch 2's, after them
    assert trainer._train_point is None and "train_params" not in trainer.state_dict()


def test_state_dict_from_another_thread_waits_for_an_epoch_boundary_and_changes_nothing(data):
    import threading

    steps, _ = plain_run(data, EPOCHS)
    model, trainer = make_trainer()
    mid_epoch, asking, done = threading.Event(), threading.Event(), threading.Event()
    snapshots, errors = [], []

    def take():  # from the middle of the first epoch on, until fit returns
        try:
            mid_epoch.wait(timeout=60)
            while True:
                asking.set()
                snapshots.append(trainer.state_dict())
                if done.is_set():
                    return
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    class Meanwhile(Callback):  # mid-epoch, while fit holds the trainer: let the other thread ask
        def on_batch_end(self, step, logs, trainer):
            if step == 1:
                mid_epoch.set()
                asking.wait(timeout=60)

    trainer.callbacks.append(Meanwhile())
    thread = threading.Thread(target=take)
    thread.start()
    try:
        trainer.fit(_feed(data), epochs=EPOCHS)
    finally:
        done.set()
        mid_epoch.set()
        thread.join()
    assert not errors, errors
    assert snapshots
    for state in snapshots:  # however the threads interleaved: epoch boundaries, both points right
        k = state["step"]
        assert k > 0 and k % STEPS == 0, k  # never mid-epoch (the first was asked for mid-epoch)
        _, y_k, m_k = steps[k - 1]
        assert trees_same_bits(state["train_params"], dict(zip(*flatten_any(y_k)))), k
        assert trees_same_bits(state["params"], dict(zip(*flatten_any(eval_point(y_k, m_k))))), k
    assert trees_same_bits(trainer.state_dict()["train_params"], dict(zip(*flatten_any(steps[-1][1]))))


def _two_sequence_rules():
    """Lookahead, and every registered optimizer whose eval/train move the params (Schedule-Free)."""
    base = fa.optim.Optimizer
    registered = sorted(name for name, cls in fa.optim.OPTIMIZERS.items()
                        if cls.eval is not base.eval or cls.train is not base.train)
    return ["lookahead"] + registered


def _make_two_sequence(name):
    return Lookahead(lr=1e-2) if name == "lookahead" else fa.make_optimizer(name)


@pytest.mark.parametrize("name", _two_sequence_rules())
def test_two_sequence_rules_train_through_the_trainer_as_in_a_plain_loop(data, name, tmp_path):
    X, y = data
    epochs = 4
    # The plain loop: steps only, then the optimizer's own eval of where it ended.
    model = MLP([D, 5, CLASSES], seed=0)
    opt = _make_two_sequence(name)
    opt.track_grad_norm = True
    feed = _feed(data)
    for epoch in range(epochs):
        feed.set_epoch(epoch)
        for batch in feed:
            opt.update(model.params, model.loss_and_grad(model.params, batch)[1])
    y_end = copy_tree(model.params)
    x_end = opt.eval(model.params)

    def trainer_for(seed):
        m = MLP([D, 5, CLASSES], seed=seed)
        return fa.Trainer(_make_two_sequence(name), loss_and_grad=m.loss_and_grad, params=m.params,
                          loss_fn=m.loss, callbacks=[fa.EarlyStopping(patience=100, restore_best=False)],
                          progress=False)

    whole = trainer_for(0)
    whole.fit(_feed(data), epochs=epochs, validation=(X, y))
    assert trees_same_bits(whole.params, x_end)  # evaluated, early-stopping-watched: still the plain run
    assert trees_same_bits(whole.state_dict()["train_params"], dict(zip(*flatten_any(y_end))))
    assert trees_same_bits(whole.state_dict()["optimizer"]["state"], opt.state_dict()["state"])

    first = trainer_for(0)
    first.fit(_feed(data), epochs=2, validation=(X, y), checkpoint_path=tmp_path / "c.npz")
    resumed = trainer_for(9)
    resumed.load_checkpoint(tmp_path / "c.npz")
    resumed.fit(_feed(data), epochs=2, validation=(X, y))
    assert trees_same_bits(resumed.params, x_end)
    assert _drop_seconds(resumed.history) == _drop_seconds(whole.history)
