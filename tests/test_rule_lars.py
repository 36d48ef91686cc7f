"""LARS: fastadapt's NumPy reference against optax's ``lars`` on float64
trajectories (several tensors, 25 steps, hyperparameters changed mid-run,
Nesterov, optax's two masks as per-key boolean hyperparameters)."""

import inspect

import numpy as np
import pytest

from fastadapt.reference import lars as ref_lars

from optax_trajectory import build, make_problem, optax_trajectory, run_trajectory, rel_close

STEPS = 25

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


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "defaults")
def test_reference_is_optax_lars(options):
    optax = pytest.importorskip("optax")
    params, noise = make_problem(20, STEPS)
    hyper = hyper_of(options)
    nesterov = options.get("nesterov", False)
    ref = ref_lars.LARS(**hyper, nesterov=nesterov)
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
    ours = ref_lars.LARS.defaults
    for name in ("weight_decay", "weight_decay_mask", "trust_coefficient", "eps", "trust_ratio_mask", "momentum",
                 "nesterov"):
        assert ours[name] == theirs[name].default, name
    assert theirs["learning_rate"].default is inspect.Parameter.empty   # ours: 1e-3, as fa.SGD


@pytest.mark.parametrize("nesterov", [False, True])
def test_masks_are_per_key_booleans(nesterov):
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
    ours = run_trajectory(build(ref_lars.LARS, dict(hyper, nesterov=nesterov), per_key), params, noise)
    theirs, _ = optax_trajectory(optax.lars, hyper, params, noise, static=static)
    unmasked = run_trajectory(ref_lars.LARS(**hyper, nesterov=nesterov), params, noise)
    for k in params:
        assert rel_close(ours[k], theirs[k]), k
        assert np.array_equal(ours[k], unmasked[k]) == (k not in wd_off + tr_off), k


def test_zero_parameters_get_a_trust_ratio_of_one():
    """A tensor at 0 has ||p|| = 0: its ratio is 1 (a plain SGD step of lr),
    as in optax; a zero gradient (||u|| = 0) leaves p where it is."""
    optax = pytest.importorskip("optax")
    rng = np.random.default_rng(22)
    params = {"zero": np.zeros(9), "dead": rng.standard_normal(5), "live": rng.standard_normal(7)}
    noise = [{"zero": rng.standard_normal(9), "dead": -0.5 * params["dead"], "live": rng.standard_normal(7)}
             for _ in range(6)]
    hyper = hyper_of({})
    ours = run_trajectory(ref_lars.LARS(**hyper), params, noise)
    theirs, _ = optax_trajectory(optax.lars, hyper, params, noise)
    assert ours["dead"].tobytes() == params["dead"].tobytes()
    for k in params:
        assert rel_close(ours[k], theirs[k]), k
    p, g = {"zero": np.zeros(3)}, {"zero": np.array([2.0, -0.5, 0.0])}
    opt = ref_lars.LARS(lr=0.1)
    opt.update(p, g)
    np.testing.assert_array_equal(p["zero"], -0.1 * g["zero"])
    np.testing.assert_array_equal(opt.state["zero"]["trace"], -0.1 * g["zero"])


def test_trace_holds_optax_sign_and_the_lr_is_inside_the_momentum():
    """optax scales by -lr * ratio before the trace: with trust_ratio_mask
    off, two steps are trace1 = -lr1 g1, trace2 = -lr2 g2 + mu trace1."""
    p = {"w": np.array([1.0, -2.0, 3.0])}
    g1, g2 = np.array([0.5, 0.25, -1.0]), np.array([-0.125, 1.0, 2.0])
    opt = ref_lars.LARS(lr=0.5, momentum=0.75, trust_ratio_mask=False)
    opt.update(p, {"w": g1})
    opt.lr = 0.25
    opt.update(p, {"w": g2})
    trace = -0.25 * g2 + 0.75 * (-0.5 * g1)
    np.testing.assert_array_equal(opt.state["w"]["trace"], trace)
    np.testing.assert_array_equal(p["w"], (np.array([1.0, -2.0, 3.0]) - 0.5 * g1) + trace)


def test_float32_stays_float32_and_near_float64():
    rng = np.random.default_rng(23)
    p64 = {"w": rng.standard_normal((5, 7)), "b": rng.standard_normal(7)}
    p32 = {k: v.astype(np.float32) for k, v in p64.items()}
    o64, o32 = ref_lars.LARS(lr=1.0, weight_decay=0.01), ref_lars.LARS(lr=1.0, weight_decay=0.01)
    for _ in range(5):
        g = {k: rng.standard_normal(v.shape) for k, v in p64.items()}
        o64.update(p64, g)
        o32.update(p32, {k: v.astype(np.float32) for k, v in g.items()})
    for k in p64:
        assert p32[k].dtype == np.float32 and o32.state[k]["trace"].dtype == np.float32
        np.testing.assert_allclose(p32[k], p64[k], rtol=1e-5, atol=1e-6)
