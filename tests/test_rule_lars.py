"""LARS: the fused fa.LARS against fastadapt's NumPy reference bit for bit
(every ISA path and thread count, float32 and float64, odd sizes, a pool-sized
tensor, clipping, nonfinite="zero", maximize, overrides, both masks, zero
norms), and both against optax's ``lars`` on float64 trajectories (25 steps,
hyperparameters changed mid-run, Nesterov, optax's two masks as per-key
boolean hyperparameters); checkpoints; bad hyperparameters."""

import inspect

import numpy as np
import pytest

import fastadapt as fa
from fastadapt.reference import lars as ref_lars

from helpers import leaves
from optax_trajectory import (build, make_problem, optax_trajectory, rel_close, run_trajectory,
                              zero_and_dead_tensors_follow_optax)
from rule_parity import (DTYPES, PREP, assert_bad_assignments_change_nothing, float32_stays_float32_and_near_float64,
                         make_tree,
                         pair_is_reference, round_trip_equals_uninterrupted, zero_and_dead_tensors_are_reference)

STEPS = 25
IMPLS = {"fa": fa.LARS, "reference": ref_lars.LARS}

# Before step k: an lr schedule, momentum, weight decay, trust coefficient, eps.
CHANGES = {k: {"lr": 2.0 * (1.0 - 0.5 * k / STEPS)} for k in range(1, STEPS)}
CHANGES[5] = dict(CHANGES[5], momentum=0.8)
CHANGES[10] = dict(CHANGES[10], weight_decay=0.02)
CHANGES[15] = dict(CHANGES[15], trust_coefficient=0.02)
CHANGES[20] = dict(CHANGES[20], eps=0.5)

OPTIONS = [dict(), dict(weight_decay=0.01), dict(nesterov=True), dict(nesterov=True, weight_decay=0.01),
           dict(momentum=0.0), dict(trust_coefficient=0.05, eps=1e-2)]


def hyper_of(options):
    return {**dict(lr=2.0, weight_decay=0.0, trust_coefficient=0.001, eps=0.0, momentum=0.9),
            **{k: v for k, v in options.items() if k != "nesterov"}}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "defaults")
def test_optax_lars(impl, options):
    optax = pytest.importorskip("optax")
    params, noise = make_problem(20, STEPS)
    hyper = hyper_of(options)
    nesterov = options.get("nesterov", False)
    ref = IMPLS[impl](**hyper, nesterov=nesterov)
    ours = run_trajectory(ref, params, noise, CHANGES)
    theirs, bufs = optax_trajectory(optax.lars, hyper, params, noise, CHANGES, static=dict(nesterov=nesterov),
                                    fields=("trace",))
    for k in params:
        assert not np.allclose(ours[k], params[k], rtol=1e-4, atol=0), k
        assert rel_close(ours[k], theirs[k]), k
        assert rel_close(ref.state[k]["trace"], bufs["trace"][k]), k


def test_defaults_are_optax_lars():
    optax = pytest.importorskip("optax")
    theirs = inspect.signature(optax.lars).parameters
    for ours in (fa.LARS().hyperparameters, ref_lars.LARS.defaults):
        for name in ("weight_decay", "weight_decay_mask", "trust_coefficient", "eps", "trust_ratio_mask",
                     "momentum", "nesterov"):
            assert ours[name] == theirs[name].default, name
        assert ours["lr"] == 1e-3
    assert theirs["learning_rate"].default is inspect.Parameter.empty   # ours: 1e-3, as fa.SGD


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("nesterov", [False, True])
def test_masks_are_per_key_booleans(impl, nesterov):
    """optax.lars's ``weight_decay_mask`` and ``trust_ratio_mask`` trees are
    fastadapt's per-key booleans of the same names (set through overrides)."""
    optax = pytest.importorskip("optax")
    params, noise = make_problem(21, STEPS)
    hyper = hyper_of(dict(weight_decay=0.05, trust_coefficient=0.01))
    wd_off = ("b", "one")
    tr_off = ("b", "s", "t")
    per_key = {k: {"weight_decay_mask": k not in wd_off, "trust_ratio_mask": k not in tr_off} for k in params}
    static = dict(nesterov=nesterov, weight_decay_mask={k: k not in wd_off for k in params},
                  trust_ratio_mask={k: k not in tr_off for k in params})
    ours = run_trajectory(build(IMPLS[impl], dict(hyper, nesterov=nesterov), per_key), params, noise)
    theirs, _ = optax_trajectory(optax.lars, hyper, params, noise, static=static)
    unmasked = run_trajectory(IMPLS[impl](**hyper, nesterov=nesterov), params, noise)
    for k in params:
        assert rel_close(ours[k], theirs[k]), k
        assert np.array_equal(ours[k], unmasked[k]) == (k not in wd_off + tr_off), k


@pytest.mark.parametrize("impl", IMPLS)
def test_zero_parameters_get_a_trust_ratio_of_one(impl):
    """A tensor at 0 has ||p|| = 0: its ratio is 1 (a plain SGD step of lr),
    as in optax; a zero gradient (||u|| = 0) leaves p where it is."""
    optax = pytest.importorskip("optax")
    hyper = hyper_of({})
    zero_and_dead_tensors_follow_optax(IMPLS[impl](**hyper), optax.lars, hyper, seed=22)
    p, g = {"zero": np.zeros(3)}, {"zero": np.array([2.0, -0.5, 0.0])}
    opt = IMPLS[impl](lr=0.1)
    opt.update(p, g)
    np.testing.assert_array_equal(p["zero"], -0.1 * g["zero"])
    np.testing.assert_array_equal(opt.state["zero"]["trace"], -0.1 * g["zero"])


@pytest.mark.parametrize("impl", IMPLS)
def test_trace_holds_optax_sign_and_the_lr_is_inside_the_momentum(impl):
    """optax scales by -lr * ratio before the trace: with trust_ratio_mask
    off, two steps are trace1 = -lr1 g1, trace2 = -lr2 g2 + mu trace1."""
    p = {"w": np.array([1.0, -2.0, 3.0])}
    g1, g2 = np.array([0.5, 0.25, -1.0]), np.array([-0.125, 1.0, 2.0])
    opt = IMPLS[impl](lr=0.5, momentum=0.75, trust_ratio_mask=False)
    opt.update(p, {"w": g1})
    opt.lr = 0.25
    opt.update(p, {"w": g2})
    trace = -0.25 * g2 + 0.75 * (-0.5 * g1)
    np.testing.assert_array_equal(opt.state["w"]["trace"], trace)
    np.testing.assert_array_equal(p["w"], (np.array([1.0, -2.0, 3.0]) - 0.5 * g1) + trace)


def test_float32_stays_float32_and_near_float64():
    float32_stays_float32_and_near_float64(ref_lars.LARS, dict(lr=1.0, weight_decay=0.01), "trace", seed=23)


# ---- the kernel against the reference, bit for bit ---------------------------------------

KERNEL_CASES = [dict(), dict(weight_decay=0.1), dict(nesterov=True, maximize=True),
                dict(weight_decay=0.1, trust_ratio_mask=False), dict(weight_decay=0.1, weight_decay_mask=False),
                dict(momentum=0.0, eps=1e-3, trust_coefficient=0.02)]
KERNEL_CHANGES = [dict(lr=0.5), dict(momentum=0.8, trust_coefficient=0.01), dict(weight_decay=0.2, eps=1e-2)]


@DTYPES
@pytest.mark.parametrize("options", KERNEL_CASES, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "plain")
def test_kernel_is_reference_bit_for_bit(options, dtype, isa, threads):
    pair_is_reference(fa.LARS, ref_lars.LARS, dict(lr=1.0, **options), dtype, steps=4, changes=KERNEL_CHANGES)


@DTYPES
@pytest.mark.parametrize("prep", PREP, ids=str)
def test_gradient_preprocessing_is_reference_bit_for_bit(prep, dtype, isa, threads):
    """Clipping and nonfinite="zero" (which the second pass, rereading the
    gradient, applies again), and NaN/Inf gradients propagated."""
    ours, _ = pair_is_reference(fa.LARS, ref_lars.LARS, dict(lr=1.0, weight_decay=0.1, nesterov=True), dtype, **prep)
    if prep.get("nonfinite") == "zero":
        # Counted once, although the second pass reads (and zeroes) them again:
        # run_pair puts them in the gradients of steps 0 and 2.
        per_step = sum(int(np.sum(~np.isfinite(x)))
                       for x in leaves(make_tree(np.random.default_rng(0), dtype, nonfinite=True)))
        assert per_step > 0 and ours.total_nonfinite_count == 2 * per_step


PER_KEY = {"layer.odd": {"weight_decay_mask": False, "lr": 2.0},
           "big": {"trust_ratio_mask": False, "momentum": 0.5},
           "layer.matrix": {"maximize": True, "nesterov": True, "eps": 0.1},
           "layer.cube": {"trust_coefficient": 0.1, "weight_decay": 0.0}}


@DTYPES
def test_overrides_are_reference_bit_for_bit(dtype, isa, threads):
    pair_is_reference(fa.LARS, ref_lars.LARS, dict(lr=1.0, weight_decay=0.1), dtype, changes=KERNEL_CHANGES,
                      per_key=PER_KEY)


@DTYPES
def test_zero_and_dead_tensors_in_the_kernel(dtype, isa, threads):
    """||p|| = 0 (a tensor at 0, the pool-sized one included) and ||u|| = 0
    (zero gradients and no weight decay): ratio 1, bit for bit."""
    zero_and_dead_tensors_are_reference(fa.LARS, ref_lars.LARS, dtype, seed=25)


@DTYPES
def test_state_dict_round_trip_mid_run(dtype):
    round_trip_equals_uninterrupted(lambda: fa.LARS(lr=1.0, weight_decay=0.1, overrides=PER_KEY), dtype,
                                    steps=6, cut=3, seed=3)


# ---- bad hyperparameters -----------------------------------------------------------------

@pytest.mark.parametrize("kwargs,error,match", [
    (dict(lr=-1.0), ValueError, "Invalid lr"),
    (dict(weight_decay=-0.1), ValueError, "Invalid weight_decay"),
    (dict(weight_decay_mask={"w": False}), TypeError, "weight_decay_mask must be True or False"),
    (dict(trust_coefficient=-0.001), ValueError, "Invalid trust_coefficient"),
    (dict(eps=float("nan")), ValueError, "Invalid eps"),
    (dict(trust_ratio_mask=0), TypeError, "trust_ratio_mask must be True or False"),
    (dict(momentum=-0.9), ValueError, "Invalid momentum"),
    (dict(nesterov="no"), TypeError, "nesterov must be True or False"),
    (dict(overrides={"b": {"betas": (0.9, 0.99)}}), TypeError, "'betas' is not a per-key hyperparameter of LARS"),
    (dict(overrides={"b": {"trust_ratio_mask": None}}), TypeError, r"overrides\[.b.\]\[.trust_ratio_mask.\]"),
])
def test_bad_hyperparameters_raise_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        fa.LARS(**kwargs)


def test_a_bad_assignment_changes_nothing():
    assert_bad_assignments_change_nothing(
        fa.LARS(lr=0.1), (("lr", -1.0), ("trust_coefficient", "x"), ("weight_decay_mask", 1), ("momentum", -1.0)))
