"""What tests/test_rule_prodigy.py and tests/test_rule_dadapt_adam.py check
alike for their D-adaptation rule (one d for all keys): the fused kernel
against the NumPy reference bit for bit on a quadratic and through the
packages' early return, the learned scalars as the optimizer shows them, a
checkpoint mid-run, and the refusal of unequal learning rates. The rule's
own names come in as arguments: the fa and reference classes, and the name
of its running numerator (``numerator``)."""

import math

import numpy as np
import pytest

from helpers import copy_tree, same_bits, trees_same_bits
from rule_parity import (BIG, make_tree, pair_is_reference, patch_per_key, propagates_nonfinite,
                         round_trip_equals_uninterrupted)

D0 = 1e-3


def learned(opt, name):
    """A learned scalar as the optimizer keeps it (every key holds the same: the first key's)."""
    return float(next(iter(opt.state.values()))[name])


def options_id(o):
    return "-".join(f"{k}={v}" for k, v in o.items()) or "defaults"


def build(impls, impl, hyper, per_key=None):
    """``impls[impl]`` with ``per_key`` ({key: {hyper: value}}): fa's
    overrides, or the reference patched to take them per tensor."""
    if impl == "reference":
        return patch_per_key(impls[impl](**hyper), per_key or {})
    return impls[impl](overrides=per_key, **hyper)


def assert_same_state_bits(ours, theirs, step):
    for key, bufs in ours.state.items():
        for name, arr in bufs.items():
            assert same_bits(arr, theirs.state[key][name]), (step, key, name)


def no_gradient_signal_changes_no_parameter(opt, numerator, zero_buffers=()):
    """Three steps of zero gradients (the packages' early return while the
    sum of |s| is 0): the parameters, d, ``numerator`` and k stay, and each
    of ``zero_buffers`` is still all 0; then a nonzero gradient moves p."""
    p = {"w": np.arange(1.0, 5.0)}
    for _ in range(3):
        opt.update(p, {"w": np.zeros(4)})
    assert np.array_equal(p["w"], np.arange(1.0, 5.0))
    st = opt.state["w"]
    assert float(st["k"]) == 0 and float(st["d"]) == 1e-6 and float(st[numerator]) == 0.0
    assert not any(np.any(st[name]) for name in zero_buffers)
    opt.update(p, {"w": np.ones(4)})
    assert float(opt.state["w"]["k"]) == 1 and not np.array_equal(p["w"], np.arange(1.0, 5.0))


def unequal_learning_rates_change_nothing(opt):
    """``opt`` has lr 0.5 for key "w" only (the default lr is 1.0): its step
    raises a ValueError naming "w" before any change. Returns the params."""
    p = {"v": np.ones(3), "w": np.ones(3)}
    with pytest.raises(ValueError, match="lr of 'w' is 0.5"):
        opt.update(p, {"v": np.ones(3), "w": np.ones(3)})
    assert opt.step_count == 0 and np.array_equal(p["w"], np.ones(3))
    return p


# ---- the kernel against the reference, bit for bit ---------------------------------------

def quadratic_is_reference(fa_cls, ref_cls, hyper, dtype):
    """Eight steps on a quadratic (g = p - target, plus noise), on which d
    grows; params, state and the learned scalars stay the reference's bits
    after every step. Returns fa's optimizer."""
    rng = np.random.default_rng(21)
    p = make_tree(rng, dtype)
    target = make_tree(rng, dtype)
    q = copy_tree(p)
    ours, theirs = fa_cls(**hyper), ref_cls(**hyper)

    def grad(x, x_star, noise):   # (0-d arithmetic gives NumPy scalars: back to arrays)
        return np.asarray((x - x_star) + dtype(0.1) * noise, dtype=dtype)

    for step in range(8):
        noise = make_tree(rng, dtype)
        g = {"layer": {k: grad(v, target["layer"][k], noise["layer"][k]) for k, v in p["layer"].items()},
             "big": grad(p["big"], target["big"], noise["big"])}
        ours.update(p, g)
        theirs.update(q, g)
        assert trees_same_bits(p, q), step
        assert_same_state_bits(ours, theirs, step)
    return ours


def gradient_preprocessing_is_reference(fa_cls, ref_cls, prep, dtype, numerator):
    """``pair_is_reference`` with weight decay 0.1 and ``prep``; where NaN/Inf
    gradients propagate, the sums are NaN: d keeps its value (the packages'
    max/min ignore a NaN estimate) and ``numerator`` is NaN from then on."""
    ours, p = pair_is_reference(fa_cls, ref_cls, dict(d0=D0, weight_decay=0.1), dtype, **prep)
    if propagates_nonfinite(prep):
        assert math.isnan(learned(ours, numerator)) and ours.adapted["d"] == D0
        assert np.isnan(p["big"]).any() and np.isfinite(p["layer"]["seven"]).all()


def overrides_are_reference(fa_cls, ref_cls, options, dtype, changes, per_key):
    """``per_key`` gives "layer.matrix" lr 0 (no share in d, no moments) and
    "layer.odd" its own weight decay."""
    ours, _ = pair_is_reference(fa_cls, ref_cls, dict(d0=D0, **options), dtype, changes=changes, per_key=per_key)
    assert not np.any(ours.state["layer.matrix"]["s"]) and np.any(ours.state["layer.odd"]["s"])


def early_return_and_zero_tensors_are_reference(fa_cls, ref_cls, dtype):
    """Zero gradients for two steps (every s stays 0: the packages' early
    return, nothing moves, k stays 0), then a tensor that starts at 0 and
    one whose gradient is always 0, bit for bit after every step."""
    rng = np.random.default_rng(5)
    p = {"zero": np.zeros(37, dtype), "big": rng.standard_normal(BIG).astype(dtype),
         "dead": rng.standard_normal(21).astype(dtype)}
    q = copy_tree(p)
    ours, theirs = fa_cls(d0=D0), ref_cls(d0=D0)
    for step in range(6):
        g = {k: (np.zeros_like(v) if step < 2 or k == "dead" else rng.standard_normal(v.shape).astype(dtype))
             for k, v in p.items()}
        before = copy_tree(p)
        ours.update(p, g)
        theirs.update(q, g)
        assert trees_same_bits(p, q), step
        assert_same_state_bits(ours, theirs, step)
        if step < 2:
            assert trees_same_bits(p, before) and learned(ours, "k") == 0 and ours.adapted["d"] == D0
    assert learned(ours, "k") == 4 and ours.step_count == 6
    assert np.all(p["zero"] != 0)


def state_dict_round_trip_mid_run(fa_cls, per_key, changes, dtype, numerator):
    """Cut after 3 of 6 steps: the resumed run is the uninterrupted one, and
    the checkpoint holds d, k and ``numerator`` as 0-d float64 arrays."""
    straight = round_trip_equals_uninterrupted(
        lambda: fa_cls(d0=D0, weight_decay=0.1, overrides=per_key), dtype, steps=6, cut=3, changes=changes, seed=3)
    state = straight.state_dict()["state"]["big"]
    assert state["d"].dtype == np.float64 and state["d"].shape == () and float(state["d"]) == straight.adapted["d"]
    assert float(state["k"]) == 6 and float(state[numerator]) != 0.0


def learned_scalars_after_four_steps(opt):
    """``opt`` (d0=D0) shows no learned scalars before its first step; after
    four on |p|^2 / 2 (so that d grows), ``opt.adapted`` holds d > D0 and
    every key's state the same d and k = 4; lr set to 0.5 then halves d_lr.
    Returns ``opt.adapted`` as it was before lr was set."""
    assert opt.adapted == {} and opt.lr_estimate is None
    rng = np.random.default_rng(8)
    p = {"a": rng.standard_normal(50), "b": rng.standard_normal((3, 4))}
    for _ in range(4):
        opt.update(p, {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in p.items()})
    got = opt.adapted
    assert got["d"] > D0
    for key in p:
        assert float(opt.state[key]["d"]) == got["d"] and float(opt.state[key]["k"]) == 4
    opt.lr = 0.5
    assert opt.adapted["d_lr"] == got["d"] * 0.5
    assert type(opt).lr_free
    return got


def global_hyperparameter_is_not_per_key(fa_cls, name):
    """They shape the one d: the optimizer's own, never an override's."""
    with pytest.raises(TypeError, match=f"{name!r} is not a per-key hyperparameter of {fa_cls.__name__}"):
        fa_cls(overrides={"w": {name: fa_cls().hyperparameters[name]}})
