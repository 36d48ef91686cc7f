"""The NumPy MLP: gradients against finite differences, loss and accuracy
against direct formulas, initialization, bad input."""

import numpy as np
import pytest

import fastadapt as fa
from fastadapt.models import MLP


def _batch(rng, n, d, classes):
    return rng.standard_normal((n, d)), rng.integers(0, classes, n)


def _numeric_grad(model, params, batch, eps=1e-6):
    """Central differences of the loss, one parameter element at a time."""
    out = {}
    for name, layer in params.items():
        out[name] = {}
        for key, arr in layer.items():
            g = np.zeros_like(arr)
            for idx in np.ndindex(arr.shape):
                keep = arr[idx]
                arr[idx] = keep + eps
                up = model.loss(params, batch)
                arr[idx] = keep - eps
                down = model.loss(params, batch)
                arr[idx] = keep
                g[idx] = (up - down) / (2 * eps)
            out[name][key] = g
    return out


@pytest.mark.parametrize("sizes", [[6, 5, 3], [4, 7, 5, 3], [5, 4]])
def test_gradients_match_finite_differences(sizes):
    rng = np.random.default_rng(1)
    model = MLP(sizes, seed=3, dtype=np.float64)
    for layer in model.params.values():  # nonzero biases so their gradients are exercised off zero
        layer["b"][:] = rng.standard_normal(layer["b"].shape) * 0.1
    batch = _batch(rng, 9, sizes[0], sizes[-1])
    loss, grads = model.loss_and_grad(model.params, batch)
    assert loss == pytest.approx(model.loss(model.params, batch), rel=1e-12)
    numeric = _numeric_grad(model, model.params, batch)
    for name in model.params:
        for key in ("w", "b"):
            analytic, approx = grads[name][key], numeric[name][key]
            assert analytic.shape == model.params[name][key].shape
            scale = np.abs(approx).max() + 1e-12
            assert np.abs(analytic - approx).max() / scale < 1e-6, (name, key)


def test_loss_and_accuracy_against_direct_formulas():
    rng = np.random.default_rng(0)
    model = MLP([8, 6, 4], seed=0, dtype=np.float64)
    X, y = _batch(rng, 20, 8, 4)
    p = model.params
    hidden = np.maximum(X @ p["fc1"]["w"] + p["fc1"]["b"], 0)
    logits = hidden @ p["fc2"]["w"] + p["fc2"]["b"]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = -np.mean(np.log(probs[np.arange(20), y]))
    assert model.loss(p, (X, y)) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(model.logits(p, X), logits, rtol=1e-12)
    assert model.accuracy(p, (X, y)) == pytest.approx(np.mean(np.argmax(logits, 1) == y))
    np.testing.assert_array_equal(model.predict(p, X), np.argmax(logits, 1))


def test_loss_is_finite_for_huge_logits():
    model = MLP([3, 2], seed=0, dtype=np.float32)
    model.params["fc1"]["w"][:] = 1e4
    X = np.ones((4, 3), np.float32) * 100
    loss, grads = model.loss_and_grad(model.params, (X, np.array([0, 1, 0, 1])))
    assert np.isfinite(loss)
    assert all(np.isfinite(g).all() for layer in grads.values() for g in layer.values())


def test_float32_model_keeps_dtypes_and_casts_inputs():
    model = MLP([784, 128, 10], seed=0)
    X = np.random.default_rng(0).integers(0, 256, (16, 784)).astype(np.uint8)  # raw pixels are fine
    loss, grads = model.loss_and_grad(model.params, (X / 255.0, np.arange(16) % 10))
    assert isinstance(loss, float)
    for name, layer in grads.items():
        for key, g in layer.items():
            assert g.dtype == np.float32 and g.shape == model.params[name][key].shape
            assert g.flags.c_contiguous  # the optimizer needs C-contiguous grads
    opt = fa.Adam()
    opt.update(model.params, grads)  # the gradient tree is accepted as is


def test_he_initialization_and_seeding():
    a, b, c = MLP([784, 128, 10], seed=0), MLP([784, 128, 10], seed=0), MLP([784, 128, 10], seed=1)
    w = a.params["fc1"]["w"]
    assert w.std() == pytest.approx(np.sqrt(2 / 784), rel=0.02)
    assert abs(w.mean()) < 0.002
    assert not a.params["fc1"]["b"].any()
    assert np.array_equal(w, b.params["fc1"]["w"]) and not np.array_equal(w, c.params["fc1"]["w"])
    assert a.layer_names == ["fc1", "fc2"] and a.num_classes == 10
    assert "784, 128, 10" in repr(a)


@pytest.mark.parametrize("sizes, exc, words", [
    ("784-10", TypeError, "list of ints"),
    ([784], ValueError, "at least"),
    ([784, 0, 10], ValueError, "layer_sizes[1]"),
    ([784, 2.5, 10], ValueError, "layer_sizes[1]"),
    ([784, 1], ValueError, "classes"),
])
def test_bad_layer_sizes(sizes, exc, words):
    with pytest.raises(exc, match=words.replace("[", r"\[").replace("]", r"\]")):
        MLP(sizes)


def test_bad_dtype():
    with pytest.raises(TypeError, match="float32 or float64"):
        MLP([4, 2], dtype=np.int32)


@pytest.mark.parametrize("batch, exc, words", [
    (np.zeros((3, 4)), TypeError, "pair"),
    ((np.zeros((3, 5)), np.zeros(3, int)), ValueError, r"shape \(n, 4\)"),
    ((np.zeros((3, 4)), np.zeros(3)), ValueError, "integer class labels"),
    ((np.zeros((3, 4)), np.zeros(2, int)), ValueError, r"shape \(3,\)"),
    ((np.zeros((3, 4)), np.array([0, 1, 2])), ValueError, r"\[0, 2\)"),
    ((np.zeros((0, 4)), np.zeros(0, int)), ValueError, "empty"),
    ((np.array([["a"] * 4]), np.zeros(1, int)), TypeError, "real numbers"),
])
def test_bad_batches(batch, exc, words):
    model = MLP([4, 2])
    with pytest.raises(exc, match=words):
        model.loss_and_grad(model.params, batch)
