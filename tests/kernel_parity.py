"""Kernel-against-reference runs shared by the rule tests of Lion, LAMB and
LARS: the fused fa.<Rule> and its fastadapt.reference twin on the same
gradients, compared bit for bit (params and state), with per-key
hyperparameters (fa's ``overrides``; the reference gets them per tensor)."""

import numpy as np

from fastadapt import _core

from helpers import copy_tree, leaves, same_bits

# Sizes 0, 1, 7, 17, 4099, multi-dimensional shapes, a 0-d scalar, and one
# tensor of many chunks, large enough that the step runs on the thread pool.
SHAPES = {"empty": (0,), "one": (1,), "seven": (7,), "seventeen": (17,), "odd": (4099,), "matrix": (33, 65),
          "cube": (3, 5, 7), "scalar": ()}
BIG = (_core.MIN_PARALLEL_ELEMENTS + 1234,)


def make_tree(rng, dtype):
    return {"layer": {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()},
            "big": rng.standard_normal(BIG).astype(dtype)}


def make_grads(rng, dtype, nonfinite=False):
    g = make_tree(rng, dtype)
    if nonfinite:
        g["layer"]["odd"][[3, 100, 4098]] = [np.nan, np.inf, -np.inf]
        g["big"][[0, 20000, BIG[0] - 7]] = [np.nan, np.inf, -np.inf]
    return g


def patch_per_key(opt, per_key):
    """Give a reference optimizer per-tensor hyperparameters: ``per_key[path]``
    holds for that tensor's rule call (fa's overrides, resolved). The
    reference negates every gradient for ``maximize`` before the rule calls,
    so a per-key ``maximize`` that differs negates this one back."""
    apply = opt._apply

    def _apply(path, p, g):
        mine = per_key.get(path, {})
        if "maximize" in mine and bool(mine["maximize"]) != bool(getattr(opt, "maximize", False)):
            g = -g
        saved = {n: getattr(opt, n) for n in mine}
        for n, v in mine.items():
            setattr(opt, n, v)
        try:
            apply(path, p, g)
        finally:
            for n, v in saved.items():
                setattr(opt, n, v)

    opt._apply = _apply
    return opt


def run_pair(ours_cls, ref_cls, options, dtype, *, steps=4, changes=(), per_key=None, max_grad_norm=None,
             nonfinite="propagate", nonfinite_grads=False, seed=0):
    """``steps`` steps of both; ``changes[i]`` is set on both after step i;
    ``per_key`` ({path: {...}}) becomes fa's overrides. Non-finite gradient
    values on even steps with ``nonfinite="zero"`` or ``nonfinite_grads``."""
    rng = np.random.default_rng(seed)
    ours = ours_cls(max_grad_norm=max_grad_norm, nonfinite=nonfinite, overrides=per_key, **options)
    theirs = patch_per_key(ref_cls(max_grad_norm=max_grad_norm, nonfinite=nonfinite, **options), per_key or {})
    p = make_tree(rng, dtype)
    q = copy_tree(p)
    for step in range(steps):
        g = make_grads(rng, dtype, nonfinite=(nonfinite == "zero" or nonfinite_grads) and step % 2 == 0)
        g_before = copy_tree(g)
        ours.update(p, g)
        theirs.update(q, g)
        assert all(same_bits(a, b) for a, b in zip(leaves(g), leaves(g_before))), "grads were modified"
        for name, value in (changes[step] if step < len(changes) else {}).items():
            setattr(ours, name, value)
            setattr(theirs, name, value)
    return ours, theirs, p, q


def same_bits_nan_as_nan(a, b):
    """NaN where the other is NaN (any sign or payload: where two NaN operands
    meet, IEEE leaves open which one comes out, and compilers may swap the
    operands of + and *), every other value bit for bit."""
    a, b = np.asarray(a), np.asarray(b)
    nan = np.isnan(a)
    return (a.dtype == b.dtype and a.shape == b.shape and np.array_equal(nan, np.isnan(b))
            and a[~nan].tobytes() == b[~nan].tobytes())


def assert_same(ours, theirs, p, q, nan_as_nan=False):
    same = same_bits_nan_as_nan if nan_as_nan else same_bits
    for (path, a), b in zip(zip(ours._paths, leaves(p)), leaves(q)):
        assert same(a, b), f"param {path} differs: max abs diff {np.max(np.abs(a - b)) if a.size else 0}"
    for path, bufs in ours.state.items():
        for name, arr in bufs.items():
            assert same(arr, theirs.state[path][name]), f"state {path}/{name} differs"
    assert ours.step_count == theirs.step_count


def round_trip_equals_straight_run(make, dtype, steps=6, split=3, seed=3):
    """A state_dict taken mid-trajectory and loaded into a fresh optimizer
    continues exactly as the uninterrupted run (params and state, bit for bit)."""
    rng = np.random.default_rng(seed)
    start = make_tree(rng, dtype)
    grads = [make_tree(rng, dtype) for _ in range(steps)]
    straight, p = make(), copy_tree(start)
    for g in grads:
        straight.update(p, g)
    first, q = make(), copy_tree(start)
    for g in grads[:split]:
        first.update(q, g)
    resumed = make()
    resumed.load_state_dict(first.state_dict(), params=q)
    for g in grads[split:]:
        resumed.update(q, g)
    for a, b in zip(leaves(p), leaves(q)):
        assert same_bits(a, b)
    for path, bufs in straight.state.items():
        for name, arr in bufs.items():
            assert same_bits(arr, resumed.state[path][name]), f"state {path}/{name} differs"
    assert resumed.step_count == straight.step_count == steps
