"""LAMB: fastadapt's NumPy reference against optax's ``lamb`` on float64
trajectories (several tensors, 25 steps, hyperparameters changed mid-run,
optax's mask as a per-key weight decay), and the trust ratio's rule for zero
and NaN norms against optax's ``scale_by_trust_ratio``."""

import math

import numpy as np
import pytest

from fastadapt.reference import _common
from fastadapt.reference import lamb as ref_lamb
from fastadapt.reference._trust import sumsq, trust_ratio

from optax_trajectory import build, jax_float64, make_problem, optax_trajectory, run_trajectory, rel_close

STEPS = 25

# Before step k: an lr schedule, new betas, eps, weight decay.
CHANGES = {k: {"lr": 0.02 * (1.0 - 0.5 * k / STEPS)} for k in range(1, STEPS)}
CHANGES[6] = dict(CHANGES[6], betas=(0.8, 0.99))
CHANGES[12] = dict(CHANGES[12], eps=1e-3)
CHANGES[18] = dict(CHANGES[18], weight_decay=0.05)

OPTIONS = [dict(), dict(weight_decay=0.01), dict(eps_root=1e-8, eps=0.0), dict(betas=(0.5, 0.9), eps=1e-2)]


def hyper_of(options):
    return {**dict(lr=0.02, betas=(0.9, 0.999), eps=1e-6, eps_root=0.0, weight_decay=0.0), **options}


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "defaults")
def test_reference_is_optax_lamb(options):
    optax = pytest.importorskip("optax")
    params, noise = make_problem(10, STEPS)
    hyper = hyper_of(options)
    ref = ref_lamb.LAMB(**hyper)
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
    ours = ref_lamb.LAMB.defaults
    assert ours["betas"] == (theirs["b1"].default, theirs["b2"].default)
    for name in ("eps", "eps_root", "weight_decay"):
        assert ours[name] == theirs[name].default, name
    assert ours["lr"] == 1e-3 and theirs["learning_rate"].default is inspect.Parameter.empty


def test_optax_mask_is_a_per_key_weight_decay_of_zero():
    """optax.lamb's ``mask`` only gates the weight decay term: masking a key
    out is fastadapt's ``overrides={key: {"weight_decay": 0.0}}`` (the trust
    ratio still applies to it)."""
    optax = pytest.importorskip("optax")
    params, noise = make_problem(11, STEPS)
    hyper = hyper_of(dict(weight_decay=0.1))
    mask = {k: k not in ("b", "s") for k in params}
    off = {"weight_decay": 0.0}
    ours = run_trajectory(build(ref_lamb.LAMB, hyper, {"b": off, "s": off}), params, noise, CHANGES)
    theirs, _ = optax_trajectory(optax.lamb, hyper, params, noise, CHANGES, static=dict(mask=mask))
    unmasked = run_trajectory(ref_lamb.LAMB(**hyper), params, noise, CHANGES)
    for k in params:
        assert rel_close(ours[k], theirs[k]), k
    assert not np.allclose(ours["b"], unmasked["b"])


def test_zero_parameters_and_zero_updates_get_a_trust_ratio_of_one():
    """A tensor that starts at 0 (||p|| = 0) and one whose gradient is always
    0 (||u|| = 0, so it never moves), as in optax."""
    optax = pytest.importorskip("optax")
    rng = np.random.default_rng(12)
    params = {"zero": np.zeros(9), "dead": rng.standard_normal(5), "live": rng.standard_normal(7)}
    # grads_of gives 0.5 p + noise: cancel it for "dead" (its p never changes).
    noise = [{"zero": rng.standard_normal(9), "dead": -0.5 * params["dead"], "live": rng.standard_normal(7)}
             for _ in range(6)]
    hyper = hyper_of({})
    ours = run_trajectory(ref_lamb.LAMB(**hyper), params, noise)
    theirs, _ = optax_trajectory(optax.lamb, hyper, params, noise)
    assert ours["dead"].tobytes() == params["dead"].tobytes()
    for k in params:
        assert rel_close(ours[k], theirs[k]), k
    # Step 1 on the zero tensor: ratio 1, so p = -lr * m1 / (sqrt(v1) + eps) = -lr * g / (|g| + eps).
    p, g = {"zero": np.zeros(3)}, {"zero": np.array([2.0, -0.5, 0.0])}
    ref_lamb.LAMB(lr=0.1).update(p, g)
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
    rng = np.random.default_rng(14)
    p64 = {"w": rng.standard_normal((5, 7)), "b": rng.standard_normal(7)}
    p32 = {k: v.astype(np.float32) for k, v in p64.items()}
    o64, o32 = ref_lamb.LAMB(lr=0.01, weight_decay=0.01), ref_lamb.LAMB(lr=0.01, weight_decay=0.01)
    for _ in range(5):
        g = {k: rng.standard_normal(v.shape) for k, v in p64.items()}
        o64.update(p64, g)
        o32.update(p32, {k: v.astype(np.float32) for k, v in g.items()})
    for k in p64:
        assert p32[k].dtype == np.float32 and o32.state[k]["mu"].dtype == np.float32
        np.testing.assert_allclose(p32[k], p64[k], rtol=1e-5, atol=1e-6)
