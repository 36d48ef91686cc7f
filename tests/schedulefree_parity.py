"""Checks shared by the two Schedule-Free rule tests (the kernel side):
eval()/train() bit for bit against the NumPy reference, checkpoints taken in
either mode, atomic eval/train on bad params, the learned values."""

import itertools

import numpy as np
import pytest

from helpers import copy_tree, same_bits, trees_same_bits
from rule_parity import (assert_same, make_tree, pair_is_reference, propagates_nonfinite,
                         round_trip_equals_uninterrupted, run_pair)

KERNEL_OPTIONS = [dict(zip(("weight_decay", "warmup_steps", "maximize"), v))
                  for v in itertools.product([0.0, 0.1], [0, 3], [False, True])]


def options_id(o):
    return "-".join(f"{k}={v}" for k, v in o.items())


def gradient_preprocessing_is_reference(fa_cls, ref_cls, prep, dtype):
    """Clipping, nonfinite="zero", and NaN/Inf gradients propagated (they reach p)."""
    _, p = pair_is_reference(fa_cls, ref_cls, dict(lr=1e-2, weight_decay=0.1, maximize=True), dtype, **prep)
    if propagates_nonfinite(prep):
        assert np.isnan(p["big"]).any()


def overrides_are_reference(fa_cls, ref_cls, dtype, changes, per_key):
    """``per_key`` gives "layer.odd" its own lr and warmup."""
    ours, _ = pair_is_reference(fa_cls, ref_cls, dict(lr=1e-2, weight_decay=0.1), dtype, steps=5, changes=changes,
                                per_key=per_key)
    # one schedule per group: the override's lr and warmup give another lr_max
    state = ours.state
    assert state["layer.odd"]["lr_max"] != state["layer.seven"]["lr_max"]
    assert state["layer.seven"]["lr_max"] == state["layer.scalar"]["lr_max"]


def round_trip_in_train_mode(fa_cls, dtype, changes, per_key):
    """A checkpoint taken in train mode (after 4 of 8 steps) resumes as the
    uninterrupted run, and says train mode. Returns the run's state_dict."""
    straight = round_trip_equals_uninterrupted(
        lambda: fa_cls(lr=1e-2, weight_decay=0.1, warmup_steps=3, overrides=per_key), dtype, changes=changes)
    sd = straight.state_dict()
    assert sd["train_mode"] is True
    return sd


def eval_train_bit_for_bit(fa_cls, ref_cls, options, dtype, **kwargs):
    """``run_pair`` with, after every other step, eval (twice) and train
    (twice) on both: the params (x, then y again) the same bits as the
    reference's, the mode the same; the next steps continue from there."""
    nan_as_nan = propagates_nonfinite(kwargs)
    switches = []

    def each_step(ours, theirs, p, q, step):
        assert_same(ours, theirs, p, q, nan_as_nan=nan_as_nan)
        if step % 2 == 0:
            y = copy_tree(p)
            for _ in range(2):
                assert ours.eval(p) is p
                theirs.eval(q)
                assert not ours.train_mode and not theirs.train_mode
                assert_same(ours, theirs, p, q, nan_as_nan=nan_as_nan)
            switches.append(not trees_same_bits(p, y))
            for _ in range(2):
                assert ours.train(p) is p
                theirs.train(q)
                assert ours.train_mode and theirs.train_mode
                assert_same(ours, theirs, p, q, nan_as_nan=nan_as_nan)

    ours, _, p, _ = run_pair(fa_cls, ref_cls, options, dtype, each_step=each_step, **kwargs)
    assert any(switches), "eval never moved a parameter"
    return ours, p


def _steps(opt, params, grads, changes, start):
    for k, g in enumerate(grads, start=start):
        opt.update(params, g)
        for name, v in (changes[k] if k < len(changes) else {}).items():
            setattr(opt, name, v)


def checkpoint_in_eval_mode_resumes(make, dtype, *, changes=(), steps=8, cut=4, seed=0, bind_first=False):
    """A state_dict taken in eval mode (params holding x), loaded with those
    params into a fresh optimizer: it is in eval mode, refuses update(),
    its eval() changes nothing; after train() it continues bit for bit as
    the run that never stopped (which also went through eval and train at
    the cut). ``bind_first``: the fresh optimizer's train() comes after an
    eval() that binds nothing (the loaded state is pending until the first
    update either way)."""
    rng = np.random.default_rng(seed)
    start = make_tree(rng, dtype)
    grads = [make_tree(rng, dtype) for _ in range(steps)]
    straight, p = make(), copy_tree(start)
    _steps(straight, p, grads[:cut], changes, 0)
    straight.eval(p)
    sd = straight.state_dict()
    assert sd["train_mode"] is False
    x = copy_tree(p)
    straight.train(p)
    _steps(straight, p, grads[cut:], changes, cut)

    resumed, q = make(), copy_tree(x)
    resumed.load_state_dict(sd, params=q)
    assert resumed.train_mode is False
    with pytest.raises(RuntimeError, match="eval mode"):
        resumed.update(q, grads[cut])
    if bind_first:
        resumed.eval(q)
    assert trees_same_bits(q, x) and resumed.step_count == cut
    resumed.train(q)
    assert resumed.train_mode
    _steps(resumed, q, grads[cut:], changes, cut)
    assert trees_same_bits(p, q)
    a, b = straight.state_dict(), resumed.state_dict()
    assert a["train_mode"] is b["train_mode"] is True and a["hyperparameters"] == b["hyperparameters"]
    for key, bufs in a["state"].items():
        for name, arr in bufs.items():
            assert same_bits(arr, b["state"][key][name]), (key, name)
    return straight


def checkpoint_in_train_mode_loads_train_mode(make, dtype, seed=0):
    """A train-mode state_dict loaded into an optimizer in eval mode puts it
    in train mode; eval-mode one into a train-mode optimizer the reverse."""
    rng = np.random.default_rng(seed)
    p = make_tree(rng, dtype)
    a = make()
    a.update(p, make_tree(rng, dtype))
    sd_train = a.state_dict()
    a.eval(p)
    sd_eval = a.state_dict()
    assert sd_train["train_mode"] is True and sd_eval["train_mode"] is False
    b = make()
    b.eval(copy_tree(p))               # before a step: only the mode
    assert not b.train_mode
    b.load_state_dict(sd_train, params=p)
    assert b.train_mode
    b.load_state_dict(sd_eval, params=p)
    assert not b.train_mode


def bad_mode_in_state_dict_is_refused(make, dtype):
    rng = np.random.default_rng(0)
    p = make_tree(rng, dtype)
    a = make()
    a.update(p, make_tree(rng, dtype))
    a.eval(p)
    sd = a.state_dict()
    fresh = make()
    missing = {k: v for k, v in sd.items() if k != "train_mode"}
    with pytest.raises(ValueError, match="train_mode"):
        fresh.load_state_dict(missing, params=p)
    with pytest.raises(TypeError, match="train_mode"):
        fresh.load_state_dict(dict(sd, train_mode=0), params=p)
    # a state_dict that fails elsewhere does not switch the mode either
    with pytest.raises(ValueError):
        fresh.load_state_dict(dict(sd, step=-1), params=p)
    assert fresh.train_mode and fresh.step_count == 0 and not fresh.state


def eval_and_train_are_atomic(make, dtype):
    """eval()/train() with params that do not fit (a missing key, a dtype,
    a shape, a read-only last key) raise naming the key and change nothing:
    params, state and mode."""
    rng = np.random.default_rng(1)
    p = make_tree(rng, dtype)
    opt = make()
    for _ in range(3):
        opt.update(p, make_tree(rng, dtype))
    other = np.float32 if dtype == np.float64 else np.float64
    bads = []
    b = copy_tree(p)
    del b["layer"]["odd"]
    bads.append((b, ValueError, "structure"))
    b = copy_tree(p)
    b["layer"]["matrix"] = b["layer"]["matrix"].astype(other)
    bads.append((b, TypeError, "layer.matrix"))
    b = copy_tree(p)
    b["layer"]["seven"] = np.zeros(8, dtype)
    bads.append((b, ValueError, "layer.seven"))
    b = copy_tree(p)
    b["big"].flags.writeable = False
    bads.append((b, ValueError, "big"))
    for switch in ("eval", "train"):
        if switch == "train":
            opt.eval(p)
        state = copy_tree(opt.state)
        mode = opt.train_mode
        for bad, exc, needle in bads:
            before = copy_tree(bad)
            with pytest.raises(exc, match=needle):
                getattr(opt, switch)(bad)
            assert trees_same_bits(bad, before), "a failed switch wrote params"
            assert opt.train_mode == mode and trees_same_bits(opt.state, state)


def adapted_is_the_schedule(fa_cls, ref_cls, options, changes, steps=8, seed=0):
    """``opt.adapted`` / ``opt.lr_estimate`` after each step: the reference's
    scheduled lr and weight c of that step; nothing before the first."""
    rng = np.random.default_rng(seed)
    ours, theirs = fa_cls(**options), ref_cls(**options)
    assert ours.adapted == {} and ours.lr_estimate is None
    p = {"w": rng.standard_normal(5), "b": rng.standard_normal(3)}
    q = copy_tree(p)
    weights = set()
    for k in range(steps):
        g = {n: rng.standard_normal(v.shape) for n, v in p.items()}
        ours.update(p, g)
        theirs.update(q, g)
        st = theirs.state["w"]
        assert ours.adapted == {"lr": float(st["scheduled_lr"]), "weight": float(st["ckp1"])}
        assert ours.lr_estimate == float(st["scheduled_lr"])
        weights.add(float(st["ckp1"]))
        for name, v in (changes[k] if k < len(changes) else {}).items():
            setattr(ours, name, v)
            setattr(theirs, name, v)
    assert len(weights) > 2


def overflowing_weight_is_refused(fa_cls):
    """t**r overflowing float64: a ValueError naming r at that step; nothing changes."""
    opt = fa_cls(lr=1e-2, r=2000.0)
    p = {"w": np.ones(4)}
    opt.update(p, {"w": np.ones(4)})                      # 1**2000 = 1
    before = (copy_tree(p), copy_tree(opt.state), opt.state_dict()["step"])
    with pytest.raises(ValueError, match="smaller r"):
        opt.update(p, {"w": np.ones(4)})                  # 2.0**2000 overflows
    assert trees_same_bits(p, before[0]) and trees_same_bits(opt.state, before[1])
    assert opt.step_count == before[2] == 1


def eval_per_group(fa_cls, ref_cls, options, override, dtype, steps=3, seed=4):
    """fa_cls with ``overrides={"big": override}`` against two references
    (the "layer" keys with ``options``, "big" with the override): after a
    few steps, eval() writes the same bits (each group's own b)."""
    rng = np.random.default_rng(seed)
    ours = fa_cls(overrides={"big": override}, **options)
    rest, big = ref_cls(**options), ref_cls(**{**options, **override})
    p = make_tree(rng, dtype)
    q = copy_tree(p)
    for _ in range(steps):
        g = make_tree(rng, dtype)
        ours.update(p, g)
        rest.update(q["layer"], g["layer"])
        big.update({"big": q["big"]}, {"big": g["big"]})
    y = copy_tree(p)
    ours.eval(p)
    rest.eval(q["layer"])
    big.eval({"big": q["big"]})
    assert trees_same_bits(p, q) and not trees_same_bits(p, y)
