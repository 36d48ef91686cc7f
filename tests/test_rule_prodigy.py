"""Prodigy: the fused fa.Prodigy against fastadapt's NumPy reference bit for
bit (every ISA path and thread count, float32 and float64, odd sizes, a
pool-sized tensor, every option, clipping, non-finite policies, maximize,
overrides, a key with lr 0, the early return, the learned scalars), and both
against prodigyopt's ``Prodigy`` (float64 trajectories of 40 steps, several
tensors in several parameter groups, hyperparameters changed mid-run, every
option, d, d_max, d_numerator and k compared after every step; skipped
without prodigyopt); checkpoints; bad hyperparameters."""

import math

import numpy as np
import pytest

import fastadapt as fa
from fastadapt.reference import prodigy as ref_prodigy

from d_adam_trajectory import run
from helpers import copy_tree, same_bits, trees_same_bits
from rule_parity import (DTYPES, PREP, assert_bad_assignments_change_nothing, assert_not_options, pair_is_reference,
                         propagates_nonfinite, round_trip_equals_uninterrupted)


def learned(opt, name):
    """A learned scalar as the optimizer keeps it (every key holds the same: the first key's)."""
    return float(next(iter(opt.state.values()))[name])


IMPLS = {"fa": fa.Prodigy, "reference": ref_prodigy.Prodigy}
BUFFERS = (("exp_avg_sq", "exp_avg_sq"), ("s", "s"), ("p0", "p0"))
SCALARS = (("d", "d"), ("d_max", "d_max"), ("d_numerator", "d_numerator"), ("k", "k"))
# 1e-12 relative (measured worst 3e-14 over these runs): torch sums in its
# own order, fuses multiply-adds (addcmul) and computes sqrt as pow(x, 0.5);
# d is a ratio of sums over all tensors whose numerator cancels, so those
# last-bit differences grow a little over 40 steps.
TOL = 1e-12

OPTIONS = [dict(), dict(weight_decay=0.1), dict(weight_decay=0.1, decouple=False),
           dict(use_bias_correction=True, safeguard_warmup=True), dict(betas=(0.0, 0.99), beta3=0.9),
           dict(d_coef=0.5, growth_rate=1.02, d0=1e-4), dict(lr=0.5, eps=1e-4, betas=(0.5, 0.9))]


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
    """Before step k: a learning-rate decay from step 15, new betas, weight
    decay, eps, d_coef."""
    out = {}
    if k >= 15:
        out["lr"] = 1.0 - 0.01 * (k - 14)
    if k == 10:
        out["betas"] = (0.85, 0.995)
    if k == 20:
        out["weight_decay"] = 0.05
    if k == 25:
        out["eps"] = 1e-6
    if k == 30:
        out["d_coef"] = 0.8
    return out


def options_id(o):
    return "-".join(f"{k}={v}" for k, v in o.items()) or "defaults"


def build(impl, hyper, per_key=None):
    if impl == "reference":
        from rule_parity import patch_per_key

        return patch_per_key(IMPLS[impl](**hyper), per_key or {})
    return IMPLS[impl](overrides=per_key, **hyper)


def prodigy_cls():
    return pytest.importorskip("prodigyopt").Prodigy


def buffers_of(hyper):
    return BUFFERS + ((("exp_avg", "exp_avg"),) if hyper.get("betas", (0.9,))[0] > 0 else ())


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("options", OPTIONS, ids=options_id)
def test_prodigyopt_trajectory(impl, options):
    cls = prodigy_cls()
    per_key = {"b": {"weight_decay": 0.3, "eps": 1e-6}, "c": {"safeguard_warmup": True}}
    ours = build(impl, options, per_key)
    # steps 0 and 1 have zero gradients (prodigyopt returns early), step 22 too (it does not: s is not 0)
    worst = run(cls, ours, torch_kwargs=options, per_key=per_key, changes=changes_for(options), buffers=buffers_of(options),
                scalars=SCALARS, zero_steps=(0, 1, 22), tol=TOL)
    state = ours.state["a"]
    # coupled weight decay makes the "zero" gradients of steps 0 and 1 nonzero (key "b" decays)
    early_returns = 0 if options.get("decouple", True) is False else 2
    assert float(state["k"]) == 40 - early_returns and float(state["d"]) > options.get("d0", 1e-6)
    assert worst <= TOL


@pytest.mark.parametrize("impl", IMPLS)
def test_no_gradient_signal_changes_no_parameter(impl):
    """prodigyopt returns early while the sum of |s| is 0 (zero gradients so
    far): the parameters, d and k stay; the moments of the (zero) gradient
    are still taken (they stay 0 here)."""
    opt = build(impl, {})
    p = {"w": np.arange(1.0, 5.0)}
    for _ in range(3):
        opt.update(p, {"w": np.zeros(4)})
    assert np.array_equal(p["w"], np.arange(1.0, 5.0))
    st = opt.state["w"]
    assert float(st["k"]) == 0 and float(st["d"]) == 1e-6 and float(st["d_numerator"]) == 0.0
    assert not np.any(st["s"]) and not np.any(st["exp_avg"])
    opt.update(p, {"w": np.ones(4)})
    assert float(opt.state["w"]["k"]) == 1 and not np.array_equal(p["w"], np.arange(1.0, 5.0))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("options", [dict(), dict(betas=(0.0, 0.999), weight_decay=0.1, decouple=False),
                                     dict(weight_decay=0.1)], ids=options_id)
def test_a_group_with_lr_0_adds_nothing_to_d_and_keeps_its_moments(impl, options):
    """A group with lr 0 (prodigyopt's only other allowed lr) takes no part in
    d's estimate and updates no moment, but still takes the step with the
    largest lr (with beta1 = 0, of its gradient; with decoupled weight decay,
    the decay), exactly as prodigyopt."""
    cls = prodigy_cls()
    per_key = {"d": {"lr": 0.0}}
    ours = build(impl, options, per_key)
    run(cls, ours, torch_kwargs=options, per_key=per_key, buffers=buffers_of(options), scalars=SCALARS,
        steps=30, tol=TOL)
    assert not np.any(ours.state["d"]["s"]) and not np.any(ours.state["d"]["exp_avg_sq"])


@pytest.mark.parametrize("impl", IMPLS)
def test_unequal_learning_rates_are_refused_and_change_nothing(impl):
    """prodigyopt raises RuntimeError for a group lr that is neither the
    largest nor 0; ours a ValueError naming the key, before any change."""
    opt = build(impl, {}, {"w": {"lr": 0.5}})
    p = {"v": np.ones(3), "w": np.ones(3)}
    with pytest.raises(ValueError, match="lr of 'w' is 0.5"):
        opt.update(p, {"v": np.ones(3), "w": np.ones(3)})
    assert opt.step_count == 0 and not opt.state and np.array_equal(p["w"], np.ones(3))


def test_defaults_are_prodigyopts():
    import inspect

    theirs = inspect.signature(prodigy_cls().__init__).parameters
    for name, value in ref_prodigy.Prodigy.defaults.items():
        if name != "maximize":
            assert value == theirs[name].default, name
            assert fa.Prodigy().hyperparameters[name] == value, name
    skipped = {"self", "params", "fsdp_in_use", "slice_p"}
    assert set(theirs) - skipped == set(ref_prodigy.Prodigy.defaults) - {"maximize"}


def test_step_size_bias_correction():
    assert ref_prodigy.prodigy_step_size(2.0, 0.5, 0, (0.9, 0.999), False) == 1.0
    want = 1.0 * math.sqrt(1 - 0.999 ** 3) / (1 - 0.9 ** 3)
    assert ref_prodigy.prodigy_step_size(2.0, 0.5, 2, (0.9, 0.999), True) == want


def test_d_update_ignores_a_nan_estimate_as_prodigyopt():
    """prodigyopt's builtin max/min keep d and d_max when d_hat is NaN."""
    d, d_max, num = ref_prodigy.prodigy_update_d(d=2e-3, d_max=2e-3, d_numerator=1.0, numerator_sum=float("nan"),
                                                 denominator_sum=1.0, d0=1e-6, d_coef=1.0,
                                                 growth_rate=float("inf"), beta3=0.9)
    assert (d, d_max) == (2e-3, 2e-3) and math.isnan(num)


def test_float32_stays_float32_and_near_float64():
    from rule_parity import float32_stays_float32_and_near_float64

    float32_stays_float32_and_near_float64(ref_prodigy.Prodigy, dict(weight_decay=0.01, d0=1e-2), "exp_avg", seed=14)


# ---- the kernel against the reference, bit for bit ---------------------------------------

KERNEL_CASES = [dict(), dict(weight_decay=0.1), dict(weight_decay=0.1, decouple=False, maximize=True),
                dict(betas=(0.0, 0.99), weight_decay=0.1, decouple=False),
                dict(use_bias_correction=True, safeguard_warmup=True, growth_rate=1.5),
                dict(d_coef=2.0, beta3=0.5, eps=1e-3)]
KERNEL_CHANGES = [dict(lr=0.5), dict(eps=1e-4, weight_decay=0.05), dict(d_coef=0.7, growth_rate=2.0),
                  dict(betas=(0.8, 0.99), use_bias_correction=True)]
D0 = 1e-3


@DTYPES
@pytest.mark.parametrize("options", KERNEL_CASES, ids=options_id)
def test_kernel_is_reference_bit_for_bit(options, dtype, isa, threads):
    pair_is_reference(fa.Prodigy, ref_prodigy.Prodigy, dict(d0=D0, **options), dtype, steps=5,
                      changes=KERNEL_CHANGES)


@DTYPES
@pytest.mark.parametrize("options", KERNEL_CASES[:3], ids=options_id)
def test_d_grows_on_a_quadratic_bit_for_bit(options, dtype, isa, threads):
    """On a quadratic (g = p - target, plus noise) d grows step after step;
    params, state and the learned scalars stay the reference's bits."""
    from rule_parity import make_tree

    rng = np.random.default_rng(21)
    p = make_tree(rng, dtype)
    target = make_tree(rng, dtype)
    q = copy_tree(p)
    ours, theirs = fa.Prodigy(d0=D0, **options), ref_prodigy.Prodigy(d0=D0, **options)
    ds = []
    for step in range(8):
        noise = make_tree(rng, dtype)
        def grad(x, x_star, n):   # (0-d arithmetic gives NumPy scalars: back to arrays)
            return np.asarray((x - x_star) + dtype(0.1) * n, dtype=dtype)

        g = {"layer": {k: grad(v, target["layer"][k], noise["layer"][k]) for k, v in p["layer"].items()},
             "big": grad(p["big"], target["big"], noise["big"])}
        ours.update(p, g)
        theirs.update(q, g)
        assert trees_same_bits(p, q), step
        for key, bufs in ours.state.items():
            for name, arr in bufs.items():
                assert same_bits(arr, theirs.state[key][name]), (step, key, name)
        ds.append(ours.adapted["d"])
    assert ds[-1] > 100 * D0 and learned(ours, "k") == 8


@DTYPES
@pytest.mark.parametrize("prep", PREP, ids=str)
def test_gradient_preprocessing_is_reference_bit_for_bit(prep, dtype, isa, threads):
    """Clipping, nonfinite="zero", and NaN/Inf gradients propagated (the sums
    are then NaN: d and d_max keep their value, as prodigyopt's max/min
    ignore a NaN estimate, and d_numerator is NaN from then on)."""
    ours, p = pair_is_reference(fa.Prodigy, ref_prodigy.Prodigy, dict(d0=D0, weight_decay=0.1), dtype, **prep)
    if propagates_nonfinite(prep):
        assert math.isnan(learned(ours, "d_numerator")) and ours.adapted["d"] == D0
        assert np.isnan(p["big"]).any() and np.isfinite(p["layer"]["seven"]).all()


PER_KEY = {"layer.odd": {"weight_decay": 0.0, "eps": 1e-4}, "big": {"safeguard_warmup": True, "maximize": True},
           "layer.matrix": {"lr": 0.0}}


@DTYPES
@pytest.mark.parametrize("options", [dict(weight_decay=0.1), dict(betas=(0.0, 0.9), weight_decay=0.1, decouple=False)],
                         ids=options_id)
def test_overrides_are_reference_bit_for_bit(options, dtype, isa, threads):
    """Per-key eps, weight decay, safeguard_warmup, maximize, and a key with
    lr 0 (no share in d, no moments, still a step)."""
    ours, p = pair_is_reference(fa.Prodigy, ref_prodigy.Prodigy, dict(d0=D0, **options), dtype,
                                changes=KERNEL_CHANGES[:3], per_key=PER_KEY)
    assert not np.any(ours.state["layer.matrix"]["s"]) and np.any(ours.state["layer.odd"]["s"])


@DTYPES
def test_early_return_and_zero_tensors_are_reference_bit_for_bit(dtype, isa, threads):
    """Zero gradients for two steps (every s stays 0: prodigyopt's early
    return, nothing moves, k stays 0), then a tensor that starts at 0 and
    one whose gradient is always 0."""
    rng = np.random.default_rng(5)
    from rule_parity import BIG

    p = {"zero": np.zeros(37, dtype), "big": rng.standard_normal(BIG).astype(dtype),
         "dead": rng.standard_normal(21).astype(dtype)}
    q = copy_tree(p)
    ours, theirs = fa.Prodigy(d0=D0), ref_prodigy.Prodigy(d0=D0)
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
        lambda: fa.Prodigy(d0=D0, weight_decay=0.1, overrides=PER_KEY), dtype, steps=6, cut=3,
        changes=KERNEL_CHANGES, seed=3)
    state = straight.state_dict()["state"]["big"]
    assert state["d"].dtype == np.float64 and state["d"].shape == () and float(state["d"]) == straight.adapted["d"]
    assert float(state["k"]) == 6 and float(state["d_numerator"]) != 0.0


def test_learned_scalars_are_visible_and_the_same_for_every_key():
    opt = fa.Prodigy(d0=D0, use_bias_correction=True)
    assert opt.adapted == {} and opt.lr_estimate is None
    rng = np.random.default_rng(8)
    p = {"a": rng.standard_normal(50), "b": rng.standard_normal((3, 4))}
    for _ in range(4):   # on |p|^2 / 2, so that d grows
        opt.update(p, {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in p.items()})
    got = opt.adapted
    assert set(got) == {"d", "d_lr", "d_max"} and got["d"] > D0 and got["d_max"] >= got["d"]
    for key in p:
        assert float(opt.state[key]["d"]) == got["d"] and float(opt.state[key]["k"]) == 4
    opt.lr = 0.5
    assert opt.adapted["d_lr"] == got["d"] * 0.5
    assert opt.lr_estimate == got["d"] * 0.5 * math.sqrt(1 - 0.999 ** 5) / (1 - 0.9 ** 5)
    assert fa.Prodigy.lr_free


def test_unequal_learning_rates_in_the_kernel_change_nothing():
    opt = fa.Prodigy(overrides={"w": {"lr": 0.5}})
    p = {"v": np.ones(3), "w": np.ones(3)}
    with pytest.raises(ValueError, match="lr of 'w' is 0.5"):
        opt.update(p, {"v": np.ones(3), "w": np.ones(3)})
    assert opt.step_count == 0 and opt.adapted == {} and np.array_equal(p["w"], np.ones(3))
    opt.lr = 0.5          # now every key's lr is 0.5
    opt.update(p, {"v": np.ones(3), "w": np.ones(3)})
    assert opt.step_count == 1


# ---- bad hyperparameters -----------------------------------------------------------------

@pytest.mark.parametrize("name", ["betas", "beta3", "decouple", "use_bias_correction", "d0", "d_coef",
                                  "growth_rate"])
def test_global_hyperparameters_are_not_per_key(name):
    """They shape the one d: the optimizer's own, never an override's."""
    with pytest.raises(TypeError, match=f"{name!r} is not a per-key hyperparameter of Prodigy"):
        fa.Prodigy(overrides={"w": {name: fa.Prodigy().hyperparameters[name]}})


def test_a_bad_assignment_changes_nothing():
    assert_bad_assignments_change_nothing(
        fa.Prodigy(), (("lr", -1.0), ("eps", 0.0), ("d0", 0.0), ("beta3", 1.0), ("growth_rate", float("nan")),
                       ("betas", (0.9, 1.0)), ("decouple", "no")))
    assert fa.Prodigy(growth_rate=1.02, beta3=0.9).hyperparameters["growth_rate"] == 1.02
    assert_not_options(fa.Prodigy, ["slice_p", "fsdp_in_use"])
