"""TerminateOnNaN: the run stops after the epoch whose loss went non-finite."""

import math

import numpy as np
import pytest

import fastadapt as fa


def _trainer(loss_at, callbacks, nonfinite=None):
    params = {"w": np.zeros(3)}

    def loss_and_grad(p, batch):
        loss = loss_at(batch)
        return loss, {"w": np.full(3, 0.1 if math.isfinite(loss) else loss)}

    return fa.Trainer("sgd", lr=0.1, loss_and_grad=loss_and_grad, params=params, callbacks=callbacks,
                      progress=False, nonfinite=nonfinite)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_stops_after_the_epoch_with_a_bad_loss(bad):
    cb = fa.TerminateOnNaN()
    trainer = _trainer(lambda batch: bad if batch == 5 else 1.0, [cb])
    trainer.fit([0, 1, 2, 3], epochs=1)
    assert not trainer.stop_training and cb.terminated_at is None       # finite: nothing happens
    trainer = _trainer(lambda batch: bad if batch == 5 else 1.0, [cb])
    trainer.fit(lambda epoch: [epoch * 3 + i for i in range(3)], epochs=5)  # batch 5 is in epoch 1
    assert trainer.stopped_epoch == 1 and trainer.epoch == 2 and cb.terminated_at == (1, 5)


def test_a_nonfinite_epoch_loss_stops_too():
    cb = fa.TerminateOnNaN()

    class Poison(fa.Callback):
        def on_epoch_end(self, epoch, logs, trainer):
            logs["loss"] = float("nan")

    trainer = _trainer(lambda batch: 1.0, [Poison(), cb])
    trainer.fit([0, 1], epochs=3)
    assert trainer.stopped_epoch == 0 and cb.terminated_at == (0, None)
