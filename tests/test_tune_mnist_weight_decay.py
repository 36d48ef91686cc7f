"""MnistMLP's optional weight_decay config key (the tuner benchmark tunes it)."""

import numpy as np

from fastadapt.tune.mnist import MnistMLP

BASE = {"lr": 0.05, "batch_size": 64, "momentum": 0.9, "train_samples": 300, "hidden": 16}


def weights(trainable):
    return np.concatenate([a.ravel() for layer in trainable.params.values() for a in layer.values()])


def test_no_weight_decay_is_the_default_and_decay_shrinks_the_weights():
    default, zero, decayed = MnistMLP(BASE), MnistMLP({**BASE, "weight_decay": 0.0}), \
        MnistMLP({**BASE, "weight_decay": 0.05})
    for t in (default, zero, decayed):
        t.train(2)
    assert np.array_equal(weights(default), weights(zero))
    assert np.linalg.norm(weights(decayed)) < np.linalg.norm(weights(zero))


def test_set_config_changes_the_weight_decay_of_a_trained_model():
    a, b = MnistMLP(BASE), MnistMLP(BASE)
    a.train(1)
    b.train(1)
    b.set_config({**BASE, "weight_decay": 0.05})
    assert b.optimizer.weight_decay == 0.05
    a.train(1)
    b.train(1)
    assert np.linalg.norm(weights(b)) < np.linalg.norm(weights(a))
