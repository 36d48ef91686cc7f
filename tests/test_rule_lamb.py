"""LAMB: the fused fa.LAMB against fastadapt's NumPy reference bit for bit
(every ISA path and thread count, float32 and float64, odd sizes, a pool-sized
tensor, clipping, nonfinite="zero", maximize, overrides, zero and NaN norms),
and both against optax's ``lamb`` on float64 trajectories (25 steps,
hyperparameters changed mid-run, optax's mask as a per-key weight decay); the
trust ratio's rule for zero and NaN norms against optax's
``scale_by_trust_ratio``; checkpoints; bad hyperparameters."""

import math

import numpy as np
import pytest

import fastadapt as fa
from fastadapt.reference import _common
from fastadapt.reference import lamb as ref_lamb
from fastadapt.reference._trust import sumsq, trust_ratio

from optax_trajectory import (build, jax_float64, make_problem, optax_trajectory, rel_close, run_trajectory,
                              zero_and_dead_tensors_follow_optax)
from rule_parity import (DTYPES, PREP, assert_bad_assignments_change_nothing, float32_stays_float32_and_near_float64,
                         pair_is_reference, propagates_nonfinite, round_trip_equals_uninterrupted,
                         zero_and_dead_tensors_are_reference)

STEPS = 25
IMPLS = {"fa": fa.LAMB, "reference": ref_lamb.LAMB}

# Before step k: an lr schedule, new betas, eps, weight decay.
CHANGES = {k: {"lr": 0.02 * (1.0 - 0.5 * k / STEPS)} for k in range(1, STEPS)}
CHANGES[6] = dict(CHANGES[6], betas=(0.8, 0.99))
CHANGES[12] = dict(CHANGES[12], eps=1e-3)
CHANGES[18] = dict(CHANGES[18], weight_decay=0.05)

OPTIONS = [dict(), dict(weight_decay=0.01), dict(eps_root=1e-8, eps=0.0), dict(betas=(0.5, 0.9), eps=1e-2)]


def hyper_of(options):
    return {**dict(lr=0.02, betas=(0.9, 0.999), eps=1e-6, eps_root=0.0, weight_decay=0.0), **options}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "defaults")
def test_optax_lamb(impl, options):
    optax = pytest.importorskip("optax")
    params, noise = make_problem(10, STEPS)
    hyper = hyper_of(options)
    ref = IMPLS[impl](**hyper)
    ours = run_trajectory(ref, params, noise, CHANGES)
    theirs, bufs = optax_trajectory(optax.lamb, hyper, params, noise, CHANGES, fields=("mu", "nu"))
    for k in params:
        assert not np.allclose(ours[k], params[k]), k
        assert rel_close(ours[k], theirs[k]), k
        assert rel_close(ref.state[k]["mu"], bufs["mu"][k]), k
        assert rel_close(ref.state[k]["nu"], bufs["nu"][k]), k
    assert ref.step_count == STEPS


def test_defaults_are_optax_lambs():
    optax = pytest.importorskip("optax")
    import inspect

    theirs = inspect.signature(optax.lamb).parameters
    for ours in (fa.LAMB().hyperparameters, ref_lamb.LAMB.defaults):
        assert ours["betas"] == (theirs["b1"].default, theirs["b2"].default)
        for name in ("eps", "eps_root", "weight_decay"):
            assert ours[name] == theirs[name].default, name
        assert ours["lr"] == 1e-3 and theirs["learning_rate"].default is inspect.Parameter.empty


@pytest.mark.parametrize("impl", IMPLS)
def test_optax_mask_is_a_per_key_weight_decay_of_zero(impl):
    """optax.lamb's ``mask`` only gates the weight decay term: masking a key
    out is fastadapt's ``overrides={key: {"weight_decay": 0.0}}`` (the trust
    ratio still applies to it)."""
    optax = pytest.importorskip("optax")
    params, noise = make_problem(11, STEPS)
    hyper = hyper_of(dict(weight_decay=0.1))
    mask = {k: k not in ("b", "s") for k in params}
    off = {"weight_decay": 0.0}
    ours = run_trajectory(build(IMPLS[impl], hyper, per_key={"b": off, "s": off}), params, noise, CHANGES)
    theirs, _ = optax_trajectory(optax.lamb, hyper, params, noise, CHANGES, static=dict(mask=mask))
    unmasked = run_trajectory(IMPLS[impl](**hyper), params, noise, CHANGES)
    for k in params:
        assert rel_close(ours[k], theirs[k]), k
    assert not np.allclose(ours["b"], unmasked["b"])


@pytest.mark.parametrize("impl", IMPLS)
def test_zero_parameters_and_zero_updates_get_a_trust_ratio_of_one(impl):
    """A tensor that starts at 0 (||p|| = 0) and one whose gradient is always
    0 (||u|| = 0, so it never moves), as in optax."""
    optax = pytest.importorskip("optax")
    hyper = hyper_of({})
    zero_and_dead_tensors_follow_optax(IMPLS[impl](**hyper), optax.lamb, hyper, seed=12)
    # Step 1 on the zero tensor: ratio 1, so p = -lr * m1 / (sqrt(v1) + eps) = -lr * g / (|g| + eps).
    p, g = {"zero": np.zeros(3)}, {"zero": np.array([2.0, -0.5, 0.0])}
    IMPLS[impl](lr=0.1).update(p, g)
    np.testing.assert_allclose(p["zero"], -0.1 * g["zero"] / (np.abs(g["zero"]) + 1e-6), rtol=1e-15)


CASES = {"regular": (np.array([3.0, -4.0]), np.array([0.5, 1.0])),
         "zero p": (np.zeros(3), np.array([1.0, 2.0, 3.0])),
         "zero u": (np.array([1.0, 2.0]), np.zeros(2)),
         "both zero": (np.zeros(2), np.zeros(2)),
         "nan p": (np.array([np.nan, 1.0]), np.array([1.0, 1.0])),
         "nan u": (np.array([1.0, 1.0]), np.array([1.0, np.nan])),
         "inf p": (np.array([np.inf, 1.0]), np.array([1.0, 1.0])),
         "empty": (np.zeros(0), np.zeros(0))}


@pytest.mark.parametrize("coef,eps", [(1.0, 0.0), (0.001, 0.0), (0.02, 1e-3)])
@pytest.mark.parametrize("case", list(CASES))
def test_trust_ratio_is_optax_scale_by_trust_ratio(case, coef, eps):
    optax = pytest.importorskip("optax")
    p, u = CASES[case]
    ratio = trust_ratio(sumsq(p), sumsq(u), coef, eps)
    with jax_float64():
        import jax.numpy as jnp

        tx = optax.scale_by_trust_ratio(trust_coefficient=coef, eps=eps)
        theirs, _ = tx.update(jnp.asarray(u), tx.init(jnp.asarray(p)), jnp.asarray(p))
        theirs = np.asarray(theirs)
    with np.errstate(all="ignore"):
        ours = u * ratio
    np.testing.assert_allclose(ours, theirs, rtol=1e-15, equal_nan=True)
    if case in ("zero p", "zero u", "both zero", "empty"):
        assert ratio == 1.0
    if case.startswith("nan"):
        assert math.isnan(ratio)
    if case == "regular":
        assert ratio == coef * 5.0 / (math.sqrt(1.25) + eps)


def test_norms_use_the_kernels_summation_order():
    """The norms are sqrt of ``tensor_sum`` of float64 squares (16 lanes per
    chunk of 16384, chunks in order), not NumPy's pairwise sum; for a float32
    tensor each element is squared exactly in float64."""
    rng = np.random.default_rng(13)
    x = rng.standard_normal(_common.CHUNK_ELEMENTS * 2 + 37).astype(np.float32)
    assert sumsq(x) == _common.tensor_sum(x.astype(np.float64) ** 2)
    assert abs(sumsq(x) - math.fsum(float(v) ** 2 for v in x)) <= 1e-12 * sumsq(x)
    assert trust_ratio(sumsq(x), sumsq(2 * x)) == math.sqrt(sumsq(x)) / math.sqrt(sumsq(2 * x))


def test_float32_stays_float32_and_near_float64():
    float32_stays_float32_and_near_float64(ref_lamb.LAMB, dict(lr=0.01, weight_decay=0.01), "mu", seed=14)


# ---- the kernel against the reference, bit for bit ---------------------------------------

KERNEL_CASES = [dict(), dict(weight_decay=0.1), dict(eps_root=1e-3, maximize=True),
                dict(weight_decay=0.1, eps=0.0, maximize=True)]
KERNEL_CHANGES = [dict(lr=3e-3), dict(betas=(0.8, 0.95)), dict(weight_decay=0.2, eps=1e-3)]


@DTYPES
@pytest.mark.parametrize("options", KERNEL_CASES, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "plain")
def test_kernel_is_reference_bit_for_bit(options, dtype, isa, threads):
    pair_is_reference(fa.LAMB, ref_lamb.LAMB, dict(lr=1e-2, **options), dtype, steps=4, changes=KERNEL_CHANGES)


@DTYPES
@pytest.mark.parametrize("prep", PREP, ids=str)
def test_gradient_preprocessing_is_reference_bit_for_bit(prep, dtype, isa, threads):
    """Clipping, nonfinite="zero", and NaN/Inf gradients propagated (a NaN
    norm makes the tensor's ratio NaN)."""
    _, p = pair_is_reference(fa.LAMB, ref_lamb.LAMB, dict(lr=1e-2, weight_decay=0.1), dtype, **prep)
    if propagates_nonfinite(prep):
        assert np.isnan(p["big"]).all() and np.isfinite(p["layer"]["seven"]).all()


PER_KEY = {"layer.odd": {"weight_decay": 0.0, "lr": 0.1}, "big": {"betas": (0.5, 0.9), "eps_root": 1e-4},
           "layer.matrix": {"maximize": True, "eps": 0.0}}


@DTYPES
def test_overrides_are_reference_bit_for_bit(dtype, isa, threads):
    pair_is_reference(fa.LAMB, ref_lamb.LAMB, dict(lr=1e-2, weight_decay=0.1), dtype, changes=KERNEL_CHANGES,
                      per_key=PER_KEY)


@DTYPES
def test_zero_and_dead_tensors_in_the_kernel(dtype, isa, threads):
    """||p|| = 0 (a tensor at 0, the pool-sized one included) and ||u|| = 0
    (zero gradients and no weight decay): ratio 1, bit for bit."""
    zero_and_dead_tensors_are_reference(fa.LAMB, ref_lamb.LAMB, dtype, seed=15)


@DTYPES
def test_state_dict_round_trip_mid_run(dtype):
    round_trip_equals_uninterrupted(lambda: fa.LAMB(lr=1e-2, weight_decay=0.1, overrides=PER_KEY), dtype,
                                    steps=6, cut=3, seed=3)


# ---- bad hyperparameters -----------------------------------------------------------------

@pytest.mark.parametrize("kwargs,error,match", [
    (dict(lr=-1e-3), ValueError, "Invalid lr"),
    (dict(lr=None), TypeError, "lr must be a real number"),
    (dict(betas=(1.0, 0.999)), ValueError, "beta parameter at index 0"),
    (dict(betas=[0.9]), TypeError, "betas must be a pair"),
    (dict(eps=-1e-6), ValueError, "Invalid eps"),
    (dict(eps_root=float("inf")), ValueError, "Invalid eps_root"),
    (dict(weight_decay=-0.1), ValueError, "Invalid weight_decay"),
    (dict(maximize=1), TypeError, "maximize must be True or False"),
    (dict(overrides={"b": {"momentum": 0.9}}), TypeError, "'momentum' is not a per-key hyperparameter of LAMB"),
    (dict(overrides={"b": {"eps_root": -1.0}}), ValueError, r"Invalid overrides\[.b.\]\[.eps_root.\]"),
])
def test_bad_hyperparameters_raise_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        fa.LAMB(**kwargs)


def test_a_bad_assignment_changes_nothing():
    assert_bad_assignments_change_nothing(
        fa.LAMB(lr=1e-3), (("lr", -1.0), ("eps_root", -1.0), ("weight_decay", "x"), ("betas", (0.9, 1.0))))
    with pytest.raises(TypeError):
        fa.LAMB(mask={"w": False})   # optax's mask: overrides={key: {"weight_decay": 0.0}} here
