"""DAdaptAdam: the fused fa.DAdaptAdam against fastadapt's NumPy reference
bit for bit (every ISA path and thread count, float32 and float64, odd sizes,
a pool-sized tensor, every option, clipping, non-finite policies, maximize,
overrides with layer_scale and a key with lr 0, the early return, the learned
scalars), and both against the dadaptation package's ``DAdaptAdam`` (float64
trajectories of 40 steps, several tensors in several parameter groups,
layer_scale per key, hyperparameters changed mid-run, every option, d,
numerator_weighted and k compared after every step; skipped without
dadaptation); checkpoints; bad hyperparameters."""

import math

import numpy as np
import pytest

import fastadapt as fa
from fastadapt.reference import dadapt_adam as ref_dadapt

from d_adam_trajectory import run
from helpers import copy_tree, same_bits, trees_same_bits
from rule_parity import (BIG, DTYPES, PREP, assert_bad_assignments_change_nothing, assert_not_options, make_tree,
                         pair_is_reference, propagates_nonfinite, round_trip_equals_uninterrupted)


def learned(opt, name):
    """A learned scalar as the optimizer keeps it (every key holds the same: the first key's)."""
    return float(next(iter(opt.state.values()))[name])


IMPLS = {"fa": fa.DAdaptAdam, "reference": ref_dadapt.DAdaptAdam}
BUFFERS = (("exp_avg", "exp_avg"), ("exp_avg_sq", "exp_avg_sq"), ("s", "s"))
SCALARS = (("d", "d"), ("numerator_weighted", "numerator_weighted"), ("k", "k"))
# 1e-12 relative (measured worst 3e-14 over these runs): torch sums in its
# own order, fuses multiply-adds (addcmul) and computes sqrt as pow(x, 0.5);
# d is a ratio of sums over all tensors whose numerator cancels, so those
# last-bit differences grow a little over 40 steps.
TOL = 1e-12

OPTIONS = [dict(), dict(weight_decay=0.1), dict(weight_decay=0.1, decouple=True),
           dict(use_bias_correction=True), dict(betas=(0.0, 0.99), eps=1e-4),
           dict(growth_rate=1.05, d0=1e-4), dict(lr=0.5, betas=(0.5, 0.9))]


def changes_for(options):
    """The changes below; beta1 stays 0 where it starts at 0 (prodigyopt keeps
    no exp_avg then, and cannot turn it on later)."""
    b1 = 0.0 if options.get("betas", (0.9,))[0] == 0 else 0.85

    def with_b1(k):
        out = changes(k)
        if "betas" in out:
            out["betas"] = (b1, out["betas"][1])
        return out
    return with_b1


def changes(k):
    """Before step k: a learning-rate decay from step 15, new betas, weight decay, eps."""
    out = {}
    if k >= 15:
        out["lr"] = 1.0 - 0.01 * (k - 14)
    if k == 10:
        out["betas"] = (0.85, 0.995)
    if k == 20:
        out["weight_decay"] = 0.05
    if k == 25:
        out["eps"] = 1e-6
    return out


def options_id(o):
    return "-".join(f"{k}={v}" for k, v in o.items()) or "defaults"


def build(impl, hyper, per_key=None):
    if impl == "reference":
        from rule_parity import patch_per_key

        return patch_per_key(IMPLS[impl](**hyper), per_key or {})
    return IMPLS[impl](overrides=per_key, **hyper)


def dadapt_cls():
    return pytest.importorskip("dadaptation").DAdaptAdam


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("options", OPTIONS, ids=options_id)
def test_dadaptation_trajectory(impl, options):
    cls = dadapt_cls()
    per_key = {"b": {"weight_decay": 0.3, "eps": 1e-6}, "c": {"layer_scale": 2.0}, "d": {"layer_scale": 0.5}}
    ours = build(impl, options, per_key)
    # steps 0 and 1 have zero gradients (the package returns early), step 22 too (it does not: s is not 0)
    worst = run(cls, ours, torch_kwargs=options, per_key=per_key, changes=changes_for(options), buffers=BUFFERS,
                scalars=SCALARS, zero_steps=(0, 1, 22), tol=TOL)
    state = ours.state["a"]
    # coupled weight decay makes the "zero" gradients of steps 0 and 1 nonzero (key "b" decays)
    early_returns = 0 if options.get("decouple", False) is False else 2
    assert float(state["k"]) == 40 - early_returns and float(state["d"]) > options.get("d0", 1e-6)
    assert worst <= TOL


@pytest.mark.parametrize("impl", IMPLS)
def test_no_gradient_signal_changes_no_parameter(impl):
    """The package returns early while the sum of |s| is 0: parameters, d,
    numerator_weighted and k stay."""
    opt = build(impl, {})
    p = {"w": np.arange(1.0, 5.0)}
    for _ in range(3):
        opt.update(p, {"w": np.zeros(4)})
    assert np.array_equal(p["w"], np.arange(1.0, 5.0))
    st = opt.state["w"]
    assert float(st["k"]) == 0 and float(st["d"]) == 1e-6 and float(st["numerator_weighted"]) == 0.0
    opt.update(p, {"w": np.ones(4)})
    assert float(opt.state["w"]["k"]) == 1 and not np.array_equal(p["w"], np.arange(1.0, 5.0))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("options", [dict(), dict(weight_decay=0.1, decouple=True)], ids=options_id)
def test_a_group_with_lr_0_adds_nothing_to_d_and_keeps_its_moments(impl, options):
    """A group with lr 0 takes no part in d's estimate and updates no moment,
    but still takes the step (its stale exp_avg; decoupled weight decay with
    the largest lr), as in the package."""
    cls = dadapt_cls()
    per_key = {"d": {"lr": 0.0}}
    ours = build(impl, options, per_key)
    run(cls, ours, torch_kwargs=options, per_key=per_key, buffers=BUFFERS, scalars=SCALARS, steps=30, tol=TOL)
    assert not np.any(ours.state["d"]["s"]) and not np.any(ours.state["d"]["exp_avg_sq"])


@pytest.mark.parametrize("impl", IMPLS)
def test_unequal_learning_rates_are_refused_and_change_nothing(impl):
    opt = build(impl, {}, {"w": {"lr": 0.5}})
    p = {"v": np.ones(3), "w": np.ones(3)}
    with pytest.raises(ValueError, match="lr of 'w' is 0.5"):
        opt.update(p, {"v": np.ones(3), "w": np.ones(3)})
    assert opt.step_count == 0 and not opt.state and np.array_equal(p["w"], np.ones(3))


def test_defaults_are_dadaptations():
    import inspect

    theirs = inspect.signature(dadapt_cls().__init__).parameters
    for name, value in ref_dadapt.DAdaptAdam.defaults.items():
        assert fa.DAdaptAdam().hyperparameters[name] == value, name
        if name in theirs:
            assert value == theirs[name].default, name
    # log_every only prints; fsdp_in_use is for sharded training; layer_scale
    # is a param-group key there (default 1.0), a per-key hyperparameter here
    skipped = {"self", "params", "log_every", "fsdp_in_use"}
    assert set(theirs) - skipped == set(ref_dadapt.DAdaptAdam.defaults) - {"maximize", "layer_scale"}
    assert ref_dadapt.DAdaptAdam.defaults["layer_scale"] == 1.0


def test_d_update_ignores_a_nan_estimate_as_dadaptation():
    d, num = ref_dadapt.dadapt_adam_update_d(d=1e-3, numerator_weighted=0.0, numerator_sum=float("nan"),
                                             denominator_sum=1.0, growth_rate=float("inf"), beta2=0.999)
    assert d == 1e-3 and math.isnan(num)
    assert ref_dadapt.dadapt_adam_update_d(d=1e-3, numerator_weighted=1.0, numerator_sum=1.0, denominator_sum=0.0,
                                           growth_rate=2.0, beta2=0.999) is None


def test_float32_stays_float32_and_near_float64():
    from rule_parity import float32_stays_float32_and_near_float64

    float32_stays_float32_and_near_float64(ref_dadapt.DAdaptAdam, dict(weight_decay=0.01, d0=1e-2), "exp_avg", seed=14)


# ---- the kernel against the reference, bit for bit ---------------------------------------

KERNEL_CASES = [dict(), dict(weight_decay=0.1), dict(weight_decay=0.1, decouple=True, maximize=True),
                dict(use_bias_correction=True, growth_rate=1.5, betas=(0.0, 0.9)),
                dict(layer_scale=2.0, eps=1e-3)]
KERNEL_CHANGES = [dict(lr=0.5), dict(eps=1e-4, weight_decay=0.05), dict(growth_rate=2.0, layer_scale=0.5),
                  dict(betas=(0.8, 0.99), use_bias_correction=True)]
D0 = 1e-3


def quadratic_grad(x, x_star, noise, dtype):
    """g = (x - x_star) + 0.1 * noise as an array of dtype (0-d arithmetic gives NumPy scalars)."""
    return np.asarray((x - x_star) + dtype(0.1) * noise, dtype=dtype)


@DTYPES
@pytest.mark.parametrize("options", KERNEL_CASES, ids=options_id)
def test_kernel_is_reference_bit_for_bit(options, dtype, isa, threads):
    pair_is_reference(fa.DAdaptAdam, ref_dadapt.DAdaptAdam, dict(d0=D0, **options), dtype, steps=5,
                      changes=KERNEL_CHANGES)


@DTYPES
@pytest.mark.parametrize("options", KERNEL_CASES[:3], ids=options_id)
def test_d_grows_on_a_quadratic_bit_for_bit(options, dtype, isa, threads):
    """On a quadratic (g = p - target, plus noise) d grows; params, state and
    the learned scalars stay the reference's bits."""
    rng = np.random.default_rng(21)
    p, target = make_tree(rng, dtype), make_tree(rng, dtype)
    q = copy_tree(p)
    ours, theirs = fa.DAdaptAdam(d0=D0, **options), ref_dadapt.DAdaptAdam(d0=D0, **options)
    for step in range(8):
        noise = make_tree(rng, dtype)
        g = {"layer": {k: quadratic_grad(v, target["layer"][k], noise["layer"][k], dtype) for k, v in p["layer"].items()},
             "big": quadratic_grad(p["big"], target["big"], noise["big"], dtype)}
        ours.update(p, g)
        theirs.update(q, g)
        assert trees_same_bits(p, q), step
        for key, bufs in ours.state.items():
            for name, arr in bufs.items():
                assert same_bits(arr, theirs.state[key][name]), (step, key, name)
    assert ours.adapted["d"] > 10 * D0 and learned(ours, "k") == 8


@DTYPES
@pytest.mark.parametrize("prep", PREP, ids=str)
def test_gradient_preprocessing_is_reference_bit_for_bit(prep, dtype, isa, threads):
    """Clipping, nonfinite="zero", and NaN/Inf gradients propagated (a NaN
    sum leaves d as it was: the package's max/min ignore a NaN estimate)."""
    ours, p = pair_is_reference(fa.DAdaptAdam, ref_dadapt.DAdaptAdam, dict(d0=D0, weight_decay=0.1), dtype, **prep)
    if propagates_nonfinite(prep):
        assert math.isnan(learned(ours, "numerator_weighted")) and ours.adapted["d"] == D0
        assert np.isnan(p["big"]).any() and np.isfinite(p["layer"]["seven"]).all()


PER_KEY = {"layer.odd": {"weight_decay": 0.0, "eps": 1e-4}, "big": {"layer_scale": 3.0, "maximize": True},
           "layer.matrix": {"lr": 0.0}}


@DTYPES
@pytest.mark.parametrize("options", [dict(weight_decay=0.1), dict(weight_decay=0.1, decouple=True)], ids=options_id)
def test_overrides_are_reference_bit_for_bit(options, dtype, isa, threads):
    """Per-key eps, weight decay, layer_scale, maximize, and a key with lr 0."""
    ours, _ = pair_is_reference(fa.DAdaptAdam, ref_dadapt.DAdaptAdam, dict(d0=D0, **options), dtype,
                                changes=KERNEL_CHANGES[:3], per_key=PER_KEY)
    assert not np.any(ours.state["layer.matrix"]["s"]) and np.any(ours.state["layer.odd"]["s"])


@DTYPES
def test_early_return_and_zero_tensors_are_reference_bit_for_bit(dtype, isa, threads):
    """Zero gradients for two steps (the package's early return: nothing
    moves, k stays 0), then a tensor that starts at 0 and a dead one."""
    rng = np.random.default_rng(5)
    p = {"zero": np.zeros(37, dtype), "big": rng.standard_normal(BIG).astype(dtype),
         "dead": rng.standard_normal(21).astype(dtype)}
    q = copy_tree(p)
    ours, theirs = fa.DAdaptAdam(d0=D0), ref_dadapt.DAdaptAdam(d0=D0)
    for step in range(6):
        g = {k: (np.zeros_like(v) if step < 2 or k == "dead" else rng.standard_normal(v.shape).astype(dtype))
             for k, v in p.items()}
        before = copy_tree(p)
        ours.update(p, g)
        theirs.update(q, g)
        assert trees_same_bits(p, q), step
        for key, bufs in ours.state.items():
            for name, arr in bufs.items():
                assert same_bits(arr, theirs.state[key][name]), (step, key, name)
        if step < 2:
            assert trees_same_bits(p, before) and learned(ours, "k") == 0 and ours.adapted["d"] == D0
    assert learned(ours, "k") == 4 and ours.step_count == 6
    assert np.all(p["zero"] != 0)


@DTYPES
def test_state_dict_round_trip_mid_run(dtype):
    straight = round_trip_equals_uninterrupted(
        lambda: fa.DAdaptAdam(d0=D0, weight_decay=0.1, overrides=PER_KEY), dtype, steps=6, cut=3,
        changes=KERNEL_CHANGES, seed=3)
    state = straight.state_dict()["state"]["big"]
    assert state["d"].dtype == np.float64 and state["d"].shape == () and float(state["d"]) == straight.adapted["d"]
    assert float(state["k"]) == 6 and float(state["numerator_weighted"]) != 0.0


def test_learned_scalars_are_visible_and_the_same_for_every_key():
    opt = fa.DAdaptAdam(d0=D0)
    assert opt.adapted == {} and opt.lr_estimate is None
    rng = np.random.default_rng(8)
    p = {"a": rng.standard_normal(50), "b": rng.standard_normal((3, 4))}
    for _ in range(4):   # on |p|^2 / 2, so that d grows
        opt.update(p, {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in p.items()})
    got = opt.adapted
    assert set(got) == {"d", "d_lr"} and got["d"] > D0
    for key in p:
        assert float(opt.state[key]["d"]) == got["d"] and float(opt.state[key]["k"]) == 4
    opt.lr = 0.5
    assert opt.adapted["d_lr"] == got["d"] * 0.5 == opt.lr_estimate
    assert fa.DAdaptAdam.lr_free


def test_unequal_learning_rates_in_the_kernel_change_nothing():
    opt = fa.DAdaptAdam(overrides={"w": {"lr": 0.5}})
    p = {"v": np.ones(3), "w": np.ones(3)}
    with pytest.raises(ValueError, match="lr of 'w' is 0.5"):
        opt.update(p, {"v": np.ones(3), "w": np.ones(3)})
    assert opt.step_count == 0 and opt.adapted == {} and np.array_equal(p["w"], np.ones(3))


# ---- bad hyperparameters -----------------------------------------------------------------

@pytest.mark.parametrize("name", ["betas", "decouple", "use_bias_correction", "d0", "growth_rate"])
def test_global_hyperparameters_are_not_per_key(name):
    with pytest.raises(TypeError, match=f"{name!r} is not a per-key hyperparameter of DAdaptAdam"):
        fa.DAdaptAdam(overrides={"w": {name: fa.DAdaptAdam().hyperparameters[name]}})


def test_a_bad_assignment_changes_nothing():
    assert_bad_assignments_change_nothing(
        fa.DAdaptAdam(), (("lr", -1.0), ("eps", 0.0), ("d0", 0.0), ("layer_scale", -1.0), ("growth_rate", 0.0),
                          ("betas", (0.9, 1.0)), ("decouple", "no")))
    assert_not_options(fa.DAdaptAdam, ["log_every", "fsdp_in_use"])
