"""LearningRateScheduler: Keras's schedule(epoch, lr) at each epoch's start,
every parameter group moved by its ratio, verbose, resume, bad schedules."""

import math

import numpy as np
import pytest

import fastadapt as fa


def _trainer(callbacks, optimizer=None):
    params = {"w": np.ones(3), "b": np.ones(2)}

    def loss_and_grad(p, batch):
        return 1.0, {"w": np.full(3, 0.1), "b": np.full(2, 0.1)}

    opt = optimizer or fa.SGD(lr=0.1)
    return fa.Trainer(opt, loss_and_grad=loss_and_grad, params=params, callbacks=callbacks, progress=False)


def test_keras_signature_sets_each_epochs_lr():
    calls = []

    def schedule(epoch, lr):
        calls.append((epoch, lr))
        return lr if epoch < 2 else lr * 0.5

    trainer = _trainer([fa.LearningRateScheduler(schedule)])
    history = trainer.fit([0, 1], epochs=4)
    assert calls == [(0, 0.1), (1, 0.1), (2, 0.1), (3, 0.05)]
    assert history["lr"] == [0.1, 0.1, 0.05, 0.025]      # the lr each epoch ran with


def test_epoch_only_schedule_and_every_group_moves():
    opt = fa.SGD(lr=0.1, overrides={"b": {"lr": 0.02}})
    trainer = _trainer([fa.LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1))], optimizer=opt)
    trainer.fit([0], epochs=2)
    assert opt.group_values("lr") == [0.05, pytest.approx(0.01)]  # the override keeps its 1/5 ratio


def test_verbose_says_what_it_sets(capsys):
    _trainer([fa.LearningRateScheduler(lambda e, lr: 0.2, verbose=1)]).fit([0], epochs=1)
    assert "Epoch 1: LearningRateScheduler setting learning rate to 0.2." in capsys.readouterr().err


def test_resume_keeps_the_ratios(tmp_path):
    def halve(epoch, lr):
        return lr * 0.5

    opt = fa.SGD(lr=0.1, overrides={"b": {"lr": 0.05}})
    first = _trainer([fa.LearningRateScheduler(halve)], optimizer=opt)
    first.fit([0], epochs=2, checkpoint_path=tmp_path / "run.npz")
    first.fit([0], epochs=1)
    resumed = _trainer([fa.LearningRateScheduler(halve)], optimizer=fa.SGD(lr=0.1, overrides={"b": {"lr": 0.05}}))
    resumed.load_checkpoint(tmp_path / "run.npz")
    resumed.fit([0], epochs=1)
    assert resumed.optimizer.group_values("lr") == opt.group_values("lr")


@pytest.mark.parametrize("value", [float("nan"), "0.1", None, -1.0])
def test_bad_schedule_values_name_the_epoch(value):
    trainer = _trainer([fa.LearningRateScheduler(lambda e, lr: value)])
    with pytest.raises((ValueError, TypeError), match="epoch 0|schedule\\(0, 0.1\\)"):
        trainer.fit([0], epochs=1)
    assert trainer.optimizer.lr == 0.1


def test_bad_arguments():
    with pytest.raises(TypeError, match=r"schedule=...\) must be a function"):
        fa.LearningRateScheduler(0.1)
    with pytest.raises(TypeError, match="must be a function \\(epoch, lr\\)"):
        fa.LearningRateScheduler(lambda a, b, c: 0.1)
    with pytest.raises(ValueError, match=r"verbose=2\) must be 0 or 1"):
        fa.LearningRateScheduler(lambda e: 0.1, verbose=2)
    with pytest.raises(ValueError, match="keys|key"):
        fa.LearningRateScheduler(lambda e: 0.1).load_state_dict({"lr": 1})


def test_a_typeerror_inside_the_schedule_is_not_hidden():
    def broken(epoch, lr):
        return math.exp("x")

    with pytest.raises(TypeError, match="must be real number"):
        _trainer([fa.LearningRateScheduler(broken)]).fit([0], epochs=1)
