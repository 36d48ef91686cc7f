"""What every registered rule must do, whatever its math: the same bits on
every SIMD path and thread count, a state_dict round trip mid-run that equals
the uninterrupted run, maximize as descent on the negated gradient, a place
in make_optimizer and the package face. New rules join these tests by being
registered (fastadapt.optim.OPTIMIZERS); their own test file checks the math
against the reference implementation."""

from __future__ import annotations

import numpy as np
import pytest

import fastadapt as fa
from fastadapt import _core
from fastadapt.optim import OPTIMIZERS

from helpers import copy_tree, same_bits, trees_same_bits

RULES = sorted(OPTIMIZERS)
# Odd sizes, matrices (the factored and matrix rules), and one tensor large
# enough that the step runs on the thread pool.
BIG = (_core.MIN_PARALLEL_ELEMENTS // 512 + 3, 512)


def make_params(rng, dtype, big=False):
    tree = {"w": rng.standard_normal((33, 65)), "v": rng.standard_normal((17, 4099 // 17 + 1)),
            "b": rng.standard_normal(7), "c": rng.standard_normal((3, 5))}
    if big:
        tree["big"] = rng.standard_normal(BIG)
    return {k: v.astype(dtype) for k, v in tree.items()}


def make_opt(name, **kwargs):
    return fa.make_optimizer(name, **kwargs)


def run(name, dtype, steps=3, seed=0, big=False, **kwargs):
    rng = np.random.default_rng(seed)
    params = make_params(rng, dtype, big)
    opt = make_opt(name, **kwargs)
    for _ in range(steps):
        opt.update(params, make_params(rng, dtype, big))
    return opt, params


def all_paths():
    out = []
    for isa in _core.supported_isas():
        for threads in (1, 2, 3):
            out.append((isa, threads))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("clip", [None, 0.5], ids=["noclip", "clip"])
@pytest.mark.parametrize("name", RULES)
def test_every_isa_and_thread_count_gives_the_same_bits(name, clip, dtype):
    isa_before, threads_before = _core.active_isa(), fa.get_num_threads()
    results = {}
    try:
        for isa, threads in all_paths():
            _core._set_simd(isa)
            fa.set_num_threads(threads)
            opt, params = run(name, dtype, big=True, max_grad_norm=clip)
            results[(isa, threads)] = (params, opt.state_dict())
    finally:
        _core._set_simd(isa_before)
        fa.set_num_threads(threads_before)
    (first_key, (p0, sd0)), *rest = results.items()
    for key, (p, sd) in rest:
        assert trees_same_bits(p, p0), f"{name}: params on {key} differ from {first_key}"
        for k, bufs in sd0["state"].items():
            for b, arr in bufs.items():
                assert same_bits(arr, sd["state"][k][b]), (
                    f"{name}: state {k}/{b} on {key} differs from {first_key}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", RULES)
def test_state_dict_round_trip_mid_run_equals_uninterrupted_run(name, dtype):
    rng = np.random.default_rng(3)
    start = make_params(rng, dtype)
    grads = [make_params(rng, dtype) for _ in range(6)]
    straight, p = make_opt(name), copy_tree(start)
    for g in grads:
        straight.update(p, g)
    first, q = make_opt(name), copy_tree(start)
    for g in grads[:3]:
        first.update(q, g)
    resumed = make_opt(name)
    resumed.load_state_dict(first.state_dict(), params=q)
    for g in grads[3:]:
        resumed.update(q, g)
    assert trees_same_bits(p, q)
    assert resumed.step_count == straight.step_count == 6


@pytest.mark.parametrize("name", [n for n in RULES if "maximize" in OPTIMIZERS[n]().hyperparameters])
def test_maximize_is_descent_on_the_negated_gradient(name):
    rng = np.random.default_rng(5)
    start = make_params(rng, np.float64)
    grads = [make_params(rng, np.float64) for _ in range(3)]
    up, p = make_opt(name, maximize=True), copy_tree(start)
    down, q = make_opt(name), copy_tree(start)
    for g in grads:
        up.update(p, g)
        down.update(q, {k: -v for k, v in g.items()})
    assert trees_same_bits(p, q)


@pytest.mark.parametrize("name", RULES)
def test_every_rule_is_on_the_package_face_and_by_name(name):
    cls = OPTIMIZERS[name]
    assert getattr(fa, cls.__name__) is cls
    assert type(fa.make_optimizer(name.upper())) is cls
    assert cls.__doc__ and cls.algorithm == name
    # The rule's kernel is registered, and the class states every scalar it needs.
    assert cls._kernel in _core.RULES


@pytest.mark.parametrize("name", [n for n in RULES if "lr" in OPTIMIZERS[n]().hyperparameters])
def test_learning_rate_changed_mid_run_takes_effect_next_step(name):
    # A schedule moves opt.lr between steps; the next step must use it.
    rng = np.random.default_rng(7)
    start = make_params(rng, np.float64)
    g1, g2 = make_params(rng, np.float64), make_params(rng, np.float64)
    a, p = make_opt(name), copy_tree(start)
    b, q = make_opt(name), copy_tree(start)
    a.update(p, g1)
    b.update(q, g1)
    b.lr = a.lr * 0.5
    before = copy_tree(q)
    a.update(p, g2)
    b.update(q, g2)
    assert not trees_same_bits(p, q)
    assert any(not np.array_equal(q[k], before[k]) for k in q)


# Rules that learn values inside the step (cpp RuleInfo::tensor_scalars) and
# rules that set their own step size (lr_free).
LEARNING = [n for n in RULES if OPTIMIZERS[n]._tensor_scalar_names]
LR_FREE = [n for n in RULES if OPTIMIZERS[n].lr_free]


def _learned(opt):
    names = type(opt)._tensor_scalar_names
    return {k: {n: float(bufs[n]) for n in names} for k, bufs in opt.state.items()}


@pytest.mark.parametrize("name", LEARNING)
def test_learned_scalars_commit_with_the_step_and_only_then(name):
    rng = np.random.default_rng(3)
    params = make_params(rng, np.float64)
    opt = make_opt(name, nonfinite="skip")
    names = type(opt)._tensor_scalar_names
    # A first update that fails (a grad of the wrong shape) leaves no state.
    bad_shape = make_params(rng, np.float64)
    bad_shape["b"] = np.zeros(8)
    with pytest.raises(ValueError):
        opt.update(params, bad_shape)
    assert opt.state == {}
    for _ in range(3):
        opt.update(params, make_params(rng, np.float64))
    for k, bufs in opt.state.items():
        for n in names:
            assert type(bufs[n]) is np.ndarray and bufs[n].shape == () and bufs[n].dtype == np.float64, (k, n)
    before, kept = _learned(opt), copy_tree(params)
    # A skipped step (NaN in the grads) changes no learned value and no param.
    grads = make_params(rng, np.float64)
    grads["w"][0, 0] = np.nan
    opt.update(params, grads)
    assert opt.skipped_steps == 1 and _learned(opt) == before and trees_same_bits(params, kept)
    # state_dict holds copies; the next step moves the live values only.
    sd = opt.state_dict()
    opt.update(params, make_params(rng, np.float64))
    after = _learned(opt)
    assert after != before, f"{name}: a step learned nothing"
    assert {k: {n: float(v[n]) for n in names} for k, v in sd["state"].items()} == before
    # Loading the state_dict restores the learned values exactly.
    opt.load_state_dict(sd)
    assert _learned(opt) == before


@pytest.mark.parametrize("name", LR_FREE)
def test_lr_free_rules_report_their_step_size(name):
    opt = make_opt(name)
    assert opt.lr_estimate is None and opt.adapted == {}
    rng = np.random.default_rng(4)
    params = make_params(rng, np.float64)
    for _ in range(3):
        opt.update(params, make_params(rng, np.float64))
    est, adapted = opt.lr_estimate, opt.adapted
    assert isinstance(est, float) and np.isfinite(est) and est > 0, est
    assert adapted and all(isinstance(v, float) for v in adapted.values()), adapted
