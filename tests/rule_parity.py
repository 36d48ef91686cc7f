"""Bit-exact checks of a fused rule against its NumPy reference, shared by the
tests/test_rule_<rule>.py files: odd sizes, a 0-d and an empty tensor, one
tensor large enough for the thread pool; hyperparameters changed between
steps; clipping and the non-finite policies; per-key overrides (the
reference runs each group as its own optimizer); a state_dict round trip."""

import numpy as np
import pytest

from fastadapt import _core

from helpers import copy_tree, same_bits, trees_same_bits

SHAPES = {"empty": (0,), "one": (1,), "seven": (7,), "seventeen": (17,), "odd": (4099,), "matrix": (33, 65),
          "cube": (3, 5, 7), "scalar": ()}
BIG = (_core.MIN_PARALLEL_ELEMENTS + 1234,)


def make_tree(rng, dtype, nonfinite=False):
    tree = {"layer": {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()},
            "big": rng.standard_normal(BIG).astype(dtype)}
    if nonfinite:
        tree["layer"]["odd"][[3, 100, 4098]] = [np.nan, np.inf, -np.inf]
        tree["big"][[0, 20000, BIG[0] - 5]] = [np.nan, np.inf, -np.inf]
    return tree


def assert_same_state(ours, theirs, paths=None):
    """Every buffer of ``ours`` (fa) equals the reference's bit for bit.
    ``theirs``: the reference optimizer, or a function of our key path giving
    it; ``paths`` maps our key paths to the reference's (default: the same)."""
    ours_state = ours.state
    assert ours_state, "no state to compare"
    for path, bufs in ours_state.items():
        ref = theirs(path) if callable(theirs) else theirs
        ref_bufs = ref.state[paths(path) if paths else path]
        assert set(bufs) == set(ref_bufs), (path, sorted(bufs), sorted(ref_bufs))
        for name, arr in bufs.items():
            assert same_bits(arr, np.asarray(ref_bufs[name])), f"state {path}/{name} differs"


def kernel_vs_reference(fa_cls, ref_cls, options, dtype, *, changes=(), steps=5, max_grad_norm=None,
                        nonfinite="propagate", nonfinite_grads=False, seed=0):
    """Run fa_cls and ref_cls side by side; ``changes[k]`` is applied to both
    after step k. Asserts the same bits after every step."""
    rng = np.random.default_rng(seed)
    ours = fa_cls(max_grad_norm=max_grad_norm, nonfinite=nonfinite, **options)
    theirs = ref_cls(max_grad_norm=max_grad_norm, nonfinite=nonfinite, **options)
    p = make_tree(rng, dtype)
    q = copy_tree(p)
    for step in range(steps):
        g = make_tree(rng, dtype, nonfinite=nonfinite_grads and step % 2 == 0)
        g_before = copy_tree(g)
        ours.update(p, g)
        theirs.update(q, g)
        assert trees_same_bits(g, g_before), "grads were modified"
        assert trees_same_bits(p, q), f"params differ after step {step + 1}"
        assert_same_state(ours, theirs)
        assert ours.step_count == theirs.step_count == step + 1
        if max_grad_norm is not None:
            assert ours.last_grad_norm == theirs.last_grad_norm
        for k, v in (changes[step] if step < len(changes) else {}).items():
            setattr(ours, k, v)
            setattr(theirs, k, v)
    return ours, p


def overrides_vs_reference(fa_cls, ref_cls, options, override, dtype, *, changes=(), steps=5, seed=0):
    """fa_cls with ``overrides={"big": override}`` against two reference
    optimizers: one for the "layer" tensors (the default group), one for
    "big" with the override's values. ``changes`` move the default group."""
    rng = np.random.default_rng(seed)
    ours = fa_cls(overrides={"big": override}, **options)
    rest, big = ref_cls(**options), ref_cls(**{**options, **override})
    p = make_tree(rng, dtype)
    q = copy_tree(p)
    for step in range(steps):
        g = make_tree(rng, dtype)
        ours.update(p, g)
        rest.update(q["layer"], g["layer"])
        big.update({"big": q["big"]}, {"big": g["big"]})
        assert trees_same_bits(p, q), f"params differ after step {step + 1}"
        assert_same_state(ours, lambda path: big if path == "big" else rest,
                          paths=lambda path: path.split(".", 1)[-1])
        for k, v in (changes[step] if step < len(changes) else {}).items():
            setattr(ours, k, v)
            setattr(rest, k, v)
            if k not in override:
                setattr(big, k, v)
    return ours


def round_trip_equals_uninterrupted(make, dtype, *, steps=8, cut=4, changes=(), seed=0):
    """A state_dict taken after ``cut`` steps, loaded into a fresh optimizer,
    continues exactly as the uninterrupted run (hyperparameters changed
    between steps travel in the state_dict)."""
    rng = np.random.default_rng(seed)
    start = make_tree(rng, dtype)
    grads = [make_tree(rng, dtype) for _ in range(steps)]

    def apply(opt, k):
        for name, v in (changes[k] if k < len(changes) else {}).items():
            setattr(opt, name, v)

    straight, p = make(), copy_tree(start)
    for k, g in enumerate(grads):
        straight.update(p, g)
        apply(straight, k)
    first, q = make(), copy_tree(start)
    for k, g in enumerate(grads[:cut]):
        first.update(q, g)
        apply(first, k)
    resumed = make()
    resumed.load_state_dict(first.state_dict(), params=q)
    for k, g in enumerate(grads[cut:], start=cut):
        resumed.update(q, g)
        apply(resumed, k)
    assert trees_same_bits(p, q)
    assert resumed.step_count == straight.step_count == steps
    a, b = straight.state_dict(), resumed.state_dict()
    assert a["hyperparameters"] == b["hyperparameters"]
    for key, bufs in a["state"].items():
        for name, arr in bufs.items():
            assert same_bits(arr, b["state"][key][name]), (key, name)
    return straight


def assert_bad_assignments_change_nothing(opt, bad, exc=(TypeError, ValueError), match=lambda name: None):
    """``opt`` takes a step on {"w": ones(5)}; then each ``(name, value)`` of
    ``bad`` assigned to it raises ``exc`` (matching ``match(name)``) and
    leaves its hyperparameters (as read and as checkpointed), the params and
    the state as they were."""
    params = {"w": np.ones(5)}
    opt.update(params, {"w": np.ones(5)})
    before = (opt.hyperparameters, opt.state_dict()["hyperparameters"], copy_tree(params), copy_tree(opt.state))
    for name, value in bad:
        with pytest.raises(exc, match=match(name)):
            setattr(opt, name, value)
    assert opt.hyperparameters == before[0]
    assert opt.state_dict()["hyperparameters"] == before[1]
    assert trees_same_bits(params, before[2]) and trees_same_bits(opt.state, before[3])


def assert_bad_hyperparameter_refused(cls, kwargs, exc, needle):
    """One bad hyperparameter (``kwargs``: one name, one value) raises
    ``exc`` matching ``needle`` at construction, as an override, and as an
    assignment after a step, which changes nothing."""
    with pytest.raises(exc, match=needle):
        cls(**kwargs)
    with pytest.raises(exc, match=needle):
        cls(overrides={"w": kwargs})
    (name, value), = kwargs.items()
    assert_bad_assignments_change_nothing(cls(), [(name, value)], exc, match=lambda _: needle)


def assert_not_options(cls, names):
    """Each of ``names`` (another library's options) is refused by name."""
    for name in names:
        with pytest.raises(TypeError, match=name):
            cls(**{name: False})
