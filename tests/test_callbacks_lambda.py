"""LambdaCallback: Keras's argument lists, the trainer as an extra argument,
and refusals that name the hooks."""

import numpy as np
import pytest

import fastadapt as fa
from fastadapt.models import MLP


def _fit(callback, epochs=2):
    model = MLP([4, 3, 2], seed=0)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((16, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    trainer = fa.Trainer("adam", lr=1e-2, loss_and_grad=model.loss_and_grad, params=model.params,
                         callbacks=[callback], progress=False)
    trainer.fit([(X[:8], y[:8]), (X[8:], y[8:])], epochs=epochs)
    return trainer


def test_keras_signatures_are_called_in_order():
    calls = []
    cb = fa.LambdaCallback(on_train_begin=lambda logs: calls.append(("train_begin", logs)),
                           on_epoch_begin=lambda epoch, logs: calls.append(("epoch_begin", epoch)),
                           on_batch_end=lambda batch, logs: calls.append(("batch_end", batch, "loss" in logs)),
                           on_epoch_end=lambda epoch, logs: calls.append(("epoch_end", epoch, "loss" in logs)),
                           on_train_end=lambda logs: calls.append(("train_end",)))
    _fit(cb)
    assert calls == [("train_begin", {}), ("epoch_begin", 0), ("batch_end", 0, True), ("batch_end", 1, True),
                     ("epoch_end", 0, True), ("epoch_begin", 1), ("batch_end", 2, True), ("batch_end", 3, True),
                     ("epoch_end", 1, True), ("train_end",)]


def test_one_more_argument_gets_the_trainer_and_logs_added_are_recorded():
    seen = []

    def stop_after_first(epoch, logs, trainer):
        seen.append(trainer)
        logs["custom"] = 2.0 * epoch
        trainer.stop_training = True

    trainer = _fit(fa.LambdaCallback(on_epoch_end=stop_after_first), epochs=3)
    assert seen == [trainer] and trainer.epoch == 1 and trainer.history["custom"] == [0.0]


def test_defaults_and_star_args():
    got = []
    _fit(fa.LambdaCallback(on_epoch_end=lambda epoch, logs=None, extra=None: got.append(extra is None)), epochs=1)
    _fit(fa.LambdaCallback(on_train_end=lambda *a: got.append(len(a))), epochs=1)
    assert got == [False, 2]  # defaults: the trainer fills the third; *args gets logs and the trainer


def test_refusals():
    with pytest.raises(TypeError, match="on_batch_begin, which fastadapt's trainer never calls; the hooks are "):
        fa.LambdaCallback(on_batch_begin=print)
    with pytest.raises(TypeError, match=r"on_epoch_end=...\) must be a function"):
        fa.LambdaCallback(on_epoch_end=3)
    with pytest.raises(TypeError, match=r"must take 2 arguments as in Keras \(epoch, logs\)"):
        fa.LambdaCallback(on_epoch_end=lambda: None)
