"""Bit-exact checks of a fused rule against its NumPy reference, shared by the
tests/test_rule_<rule>.py files: odd sizes, a 0-d and an empty tensor, one
tensor large enough for the thread pool; hyperparameters changed between
steps; clipping and the non-finite policies; per-key overrides (the
reference runs each group as its own optimizer, or takes them per tensor:
``patch_per_key``); a state_dict round trip; bad hyperparameters."""

import numpy as np
import pytest

from fastadapt import _core
from fastadapt.reference import _common

from helpers import copy_tree, leaves, same_bits, trees_same_bits

SHAPES = {"empty": (0,), "one": (1,), "seven": (7,), "seventeen": (17,), "odd": (4099,), "matrix": (33, 65),
          "cube": (3, 5, 7), "scalar": ()}
BIG = (_core.MIN_PARALLEL_ELEMENTS + 1234,)

DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
# Gradient preprocessing: clipping that bites and one that does not;
# non-finite gradient values (on even steps) zeroed, with and without
# clipping, or propagated.
PREP = [dict(max_grad_norm=1.0), dict(max_grad_norm=1e6), dict(nonfinite="zero", nonfinite_grads=True),
        dict(nonfinite="zero", nonfinite_grads=True, max_grad_norm=2.0),
        dict(nonfinite="propagate", nonfinite_grads=True)]


def propagates_nonfinite(prep):
    """Non-finite gradient values that reach the rule (not zeroed)."""
    return bool(prep.get("nonfinite_grads")) and prep.get("nonfinite", "propagate") == "propagate"


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
             nonfinite="propagate", nonfinite_grads=False, seed=0, each_step=None):
    """``steps`` steps of both on the same gradients (checked unmodified);
    ``each_step(ours, theirs, p, q, step)`` after each; then ``changes[i]``
    is set on both after step i; ``per_key`` ({path: {...}}) becomes fa's
    overrides. Non-finite gradient values on even steps with
    ``nonfinite="zero"`` or ``nonfinite_grads``."""
    rng = np.random.default_rng(seed)
    ours = ours_cls(max_grad_norm=max_grad_norm, nonfinite=nonfinite, overrides=per_key, **options)
    theirs = patch_per_key(ref_cls(max_grad_norm=max_grad_norm, nonfinite=nonfinite, **options), per_key or {})
    p = make_tree(rng, dtype)
    q = copy_tree(p)
    for step in range(steps):
        g = make_tree(rng, dtype, nonfinite=(nonfinite == "zero" or nonfinite_grads) and step % 2 == 0)
        g_before = copy_tree(g)
        ours.update(p, g)
        theirs.update(q, g)
        assert trees_same_bits(g, g_before), "grads were modified"
        if each_step is not None:
            each_step(ours, theirs, p, q, step)
        for name, value in (changes[step] if step < len(changes) else {}).items():
            setattr(ours, name, value)
            setattr(theirs, name, value)
    return ours, theirs, p, q


def kernel_vs_reference(fa_cls, ref_cls, options, dtype, *, steps=5, max_grad_norm=None, **kwargs):
    """Run fa_cls and ref_cls side by side (``run_pair``; ``changes[k]`` is
    applied to both after step k). Asserts the same bits after every step."""
    def same_so_far(ours, theirs, p, q, step):
        assert trees_same_bits(p, q), f"params differ after step {step + 1}"
        assert_same_state(ours, theirs)
        assert ours.step_count == theirs.step_count == step + 1
        if max_grad_norm is not None:
            assert ours.last_grad_norm == theirs.last_grad_norm

    ours, _, p, _ = run_pair(fa_cls, ref_cls, options, dtype, steps=steps, max_grad_norm=max_grad_norm,
                             each_step=same_so_far, **kwargs)
    return ours, p


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


def pair_is_reference(ours_cls, ref_cls, options, dtype, **kwargs):
    """``run_pair``, then params and state bit for bit (NaN as NaN where
    non-finite gradients propagate), and, clipping, the same norm."""
    ours, theirs, p, q = run_pair(ours_cls, ref_cls, options, dtype, **kwargs)
    assert_same(ours, theirs, p, q, nan_as_nan=propagates_nonfinite(kwargs))
    if kwargs.get("max_grad_norm") is not None:
        assert ours.last_grad_norm == theirs.last_grad_norm
    return ours, p


def zero_and_dead_tensors_are_reference(ours_cls, ref_cls, dtype, seed):
    """||p|| = 0 (a tensor at 0, one of many chunks included) and ||u|| = 0
    (zero gradients, no weight decay) for the trust-ratio rules: bit for bit."""
    big = _common.CHUNK_ELEMENTS * 9 + 5
    rng = np.random.default_rng(seed)
    p = {"zero": np.zeros(37, dtype), "bigzero": np.zeros(big, dtype), "dead": rng.standard_normal(21).astype(dtype)}
    q = {k: v.copy() for k, v in p.items()}
    ours, theirs = ours_cls(lr=0.1), ref_cls(lr=0.1)
    for _ in range(3):
        g = {"zero": rng.standard_normal(37).astype(dtype), "bigzero": rng.standard_normal(big).astype(dtype),
             "dead": np.zeros(21, dtype)}
        ours.update(p, g)
        theirs.update(q, g)
    for k in p:
        assert same_bits(p[k], q[k]), k
    assert not np.any(p["bigzero"] == 0) and same_bits(p["dead"], q["dead"])


def float32_stays_float32_and_near_float64(ref_cls, options, buffer, seed):
    """Five steps of ``ref_cls(**options)`` in float32 and float64 on the same
    gradients: params and ``buffer`` stay float32, params near float64's."""
    rng = np.random.default_rng(seed)
    p64 = {"w": rng.standard_normal((5, 7)), "b": rng.standard_normal(7)}
    p32 = {k: v.astype(np.float32) for k, v in p64.items()}
    o64, o32 = ref_cls(**options), ref_cls(**options)
    for _ in range(5):
        g = {k: rng.standard_normal(v.shape) for k, v in p64.items()}
        o64.update(p64, g)
        o32.update(p32, {k: v.astype(np.float32) for k, v in g.items()})
    for k in p64:
        assert p32[k].dtype == np.float32 and o32.state[k][buffer].dtype == np.float32
        np.testing.assert_allclose(p32[k], p64[k], rtol=1e-5, atol=1e-6)


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
