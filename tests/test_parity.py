"""Bit-exact parity of the fused kernels with fastadapt.reference, for every
optimizer option, both dtypes, odd sizes, every SIMD path and thread count."""

import itertools

import numpy as np
import pytest

import fastadapt as fa
from fastadapt import reference as ref

from helpers import copy_tree, same_bits

from fastadapt import _core

# Sizes 0, 1, 7, 17, 4099, multi-dimensional shapes, and one tensor of many
# chunks, large enough that the step runs on the thread pool.
SHAPES = {"empty": (0,), "one": (1,), "seven": (7,), "seventeen": (17,), "odd": (4099,),
          "matrix": (33, 65), "cube": (3, 5, 7), "scalar": (), "big": (_core.MIN_PARALLEL_ELEMENTS + 1234,)}


def make_params(rng, dtype):
    return {"layer": {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items() if k != "big"},
            "big": rng.standard_normal(SHAPES["big"]).astype(dtype)}


def make_grads(rng, dtype, nonfinite=False):
    g = make_params(rng, dtype)
    if nonfinite:
        g["layer"]["odd"][[3, 100, 4098]] = [np.nan, np.inf, -np.inf]
        g["big"][[0, 20000, _core.MIN_PARALLEL_ELEMENTS + 1000]] = [np.nan, np.inf, -np.inf]
    return g


def combos(**choices):
    keys = list(choices)
    return [dict(zip(keys, vals)) for vals in itertools.product(*choices.values())]


CASES = (
    [("Adam", c) for c in combos(weight_decay=[0.0, 0.1], amsgrad=[False, True], maximize=[False, True])]
    + [("AdamW", c) for c in combos(weight_decay=[0.0, 0.05], amsgrad=[False, True])]
    + [("AdaGrad", c) for c in combos(lr_decay=[0.0, 0.01], weight_decay=[0.0, 0.1],
                                      initial_accumulator_value=[0.0, 0.5], maximize=[False, True])]
    + [("RMSProp", c) for c in combos(momentum=[0.0, 0.9], centered=[False, True], weight_decay=[0.0, 0.1],
                                      maximize=[False, True])]
    + [("SGD", c) for c in combos(momentum=[0.0, 0.9], dampening=[0.0, 0.3], weight_decay=[0.0, 0.1],
                                  maximize=[False, True])]
    + [("SGD", dict(momentum=0.9, nesterov=True, weight_decay=wd)) for wd in (0.0, 0.1)]
)

# Hyperparameters changed between steps (a schedule would do this).
CHANGES = {
    "Adam": [dict(lr=3e-4), dict(betas=(0.8, 0.99)), dict(eps=1e-6)],
    "AdamW": [dict(lr=3e-4, weight_decay=0.2), dict(betas=(0.85, 0.995))],
    "AdaGrad": [dict(lr=5e-3), dict(eps=1e-8)],
    "RMSProp": [dict(lr=5e-3, alpha=0.9), dict(eps=1e-6)],
    "SGD": [dict(lr=0.05), dict(weight_decay=0.01)],
}


def run_pair(name, options, dtype, *, steps=4, max_grad_norm=None, nonfinite="propagate", seed=0):
    rng = np.random.default_rng(seed)
    lr = 0.1 if name == "SGD" else 1e-2
    ours = getattr(fa, name)(lr=lr, max_grad_norm=max_grad_norm, nonfinite=nonfinite, **options)
    theirs = getattr(ref, name)(lr=lr, max_grad_norm=max_grad_norm, nonfinite=nonfinite, **options)
    p = make_params(rng, dtype)
    q = copy_tree(p)
    for step in range(steps):
        g = make_grads(rng, dtype, nonfinite=(nonfinite == "zero" and step % 2 == 0))
        g_before = copy_tree(g)
        ours.update(p, g)
        theirs.update(q, g)
        assert all(same_bits(a, b) for a, b in zip(_flat(g), _flat(g_before))), "grads were modified"
        for i, change in enumerate(CHANGES[name]):
            if step == i:
                for k, v in change.items():
                    setattr(ours, k, v)
                    setattr(theirs, k, v)
    return ours, theirs, p, q


def _flat(tree):
    from helpers import leaves
    return list(leaves(tree))


def assert_same(ours, theirs, p, q):
    for (path, a), b in zip(zip(ours._paths, _flat(p)), _flat(q)):
        assert same_bits(a, b), f"param {path} differs: max abs diff {np.max(np.abs(a - b)) if a.size else 0}"
    for path, bufs in ours.state.items():
        for name, arr in bufs.items():
            assert same_bits(arr, theirs.state[path][name]), f"state {path}/{name} differs"
    assert ours.step_count == theirs.step_count


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name,options", CASES, ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items())}" for n, o in CASES])
def test_rules_match_reference_bit_for_bit(name, options, dtype, isa, threads):
    ours, theirs, p, q = run_pair(name, options, dtype)
    assert_same(ours, theirs, p, q)


PREP = [dict(max_grad_norm=1.0), dict(max_grad_norm=1e6), dict(nonfinite="zero"),
        dict(nonfinite="zero", max_grad_norm=2.0)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("prep", PREP, ids=[str(p) for p in PREP])
@pytest.mark.parametrize("name,options", [("Adam", dict(amsgrad=True, maximize=True)),
                                          ("AdamW", {}), ("AdaGrad", dict(weight_decay=0.1)),
                                          ("RMSProp", dict(momentum=0.9, centered=True)),
                                          ("SGD", dict(momentum=0.9, nesterov=True))])
def test_gradient_preprocessing_matches_reference(name, options, prep, dtype, isa, threads):
    ours, theirs, p, q = run_pair(name, options, dtype, **prep)
    assert_same(ours, theirs, p, q)
    if "max_grad_norm" in prep:
        assert ours.last_grad_norm == theirs.last_grad_norm


def test_clipping_changes_the_step_only_when_norm_exceeds_max():
    rng = np.random.default_rng(1)
    p = {"w": rng.standard_normal(100)}
    g = {"w": rng.standard_normal(100)}
    norm = float(np.sqrt(np.sum(g["w"] ** 2)))
    a, b, c = copy_tree(p), copy_tree(p), copy_tree(p)
    fa.SGD(lr=0.1).update(a, g)
    fa.SGD(lr=0.1, max_grad_norm=norm * 2).update(b, g)
    fa.SGD(lr=0.1, max_grad_norm=norm / 2).update(c, g)
    assert same_bits(a["w"], b["w"])
    assert not np.allclose(a["w"], c["w"])
    np.testing.assert_allclose(c["w"] - p["w"], (a["w"] - p["w"]) / 2, rtol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grad_norm_is_exact_and_independent_of_isa_and_threads(dtype):
    from fastadapt import _core
    rng = np.random.default_rng(2)
    arrays = [rng.standard_normal(n).astype(dtype) * 10 for n in (0, 1, 17, _core.MIN_PARALLEL_ELEMENTS + 5, 99)]
    expected = ref.global_norm(arrays)
    seen = set()
    before_isa, before_threads = _core.active_isa(), fa.get_num_threads()
    try:
        for isa_name in _core.supported_isas():
            _core._set_simd(isa_name)
            for n in (1, 2, 3):
                fa.set_num_threads(n)
                seen.add(fa.global_norm(arrays))
                opt = fa.SGD(lr=0.0, track_grad_norm=True)
                opt.update([a.copy() for a in arrays], arrays)
                seen.add(opt.last_grad_norm)
    finally:
        _core._set_simd(before_isa)
        fa.set_num_threads(before_threads)
    assert seen == {expected}
    import math
    exact = math.sqrt(math.fsum(float(x) ** 2 for a in arrays for x in a.astype(np.float64)))
    assert abs(expected - exact) <= 1e-12 * exact


def test_adam_is_torch_adam_not_the_articles_double_bias_correction():
    """One Adam step from zero state moves each weight by lr * sign(g)
    (up to eps); the seed article's double correction would not."""
    p = {"w": np.zeros(4)}
    g = {"w": np.array([1.0, -2.0, 0.5, -0.25])}
    fa.Adam(lr=0.1, eps=0.0).update(p, g)
    np.testing.assert_allclose(p["w"], -0.1 * np.sign(g["w"]), rtol=1e-12)


@pytest.mark.parametrize("beta2", [0.999, 0.3])
@pytest.mark.parametrize("step", [0, 1, 6, 999])
def test_adam_bias_correction_division_is_exact_over_the_whole_float32_range(beta2, step, isa):
    # The kernels divide sqrt(v) by the constant sqrt(1 - beta2**t) as a
    # multiplication in double (see Divisor in simd.hpp). Second moments with
    # every exponent, subnormals included, must still match NumPy's division.
    rng = np.random.default_rng(step)
    n = 200_003
    bits = rng.integers(1, 0x7F7FFFFF, size=n, dtype=np.uint32)
    v = bits.view(np.float32)
    m = rng.standard_normal(n).astype(np.float32)
    p = {"w": rng.standard_normal(n).astype(np.float32)}
    q = copy_tree(p)
    g = {"w": np.zeros(n, np.float32)}
    opts = dict(lr=1e-3, betas=(0.9, beta2), eps=0.0)
    ours, theirs = fa.Adam(**opts), ref.Adam(**opts)
    sd = ours.state_dict()
    sd.update(step=step, state={"w": {"exp_avg": m.copy(), "exp_avg_sq": v.copy()}})
    ours.load_state_dict(sd)
    theirs.step_count = step
    theirs.state = {"w": {"exp_avg": m.copy(), "exp_avg_sq": v.copy()}}
    ours.update(p, g)
    theirs.update(q, g)
    assert same_bits(p["w"], q["w"])
