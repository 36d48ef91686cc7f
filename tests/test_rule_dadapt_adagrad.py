"""DAdaptAdaGrad: the fused fa.DAdaptAdaGrad and fastadapt's NumPy reference
against the ``dadaptation`` package's DAdaptAdaGrad on float64 trajectories
(32 steps, five tensors, every option, hyperparameters changed mid-run, a
second group with its own eps and weight decay, all-zero gradients first and
mid-run; d and its three running sums compared every step); the kernel
against the reference bit for bit (every ISA path and thread count, float32
and float64, odd sizes, a pool-sized tensor, clipping, nonfinite="zero",
per-key eps / weight decay / maximize, the held-back first steps);
checkpoints; bad hyperparameters."""

import numpy as np
import pytest

import fastadapt as fa
from fastadapt.reference import dadapt_adagrad as ref

import dadapt_trajectory
from rule_parity import (DTYPES, PREP, assert_bad_assignments_change_nothing, float32_stays_float32_and_near_float64,
                         pair_is_reference, patch_per_key, propagates_nonfinite, round_trip_equals_uninterrupted)

IMPLS = {"fa": fa.DAdaptAdaGrad, "reference": ref.DAdaptAdaGrad}
BUFFERS = {"alphak": "alphak", "sk": "sk", "x0": "x0"}
LEARNED = ("d", "gsq_weighted", "sksq_weighted", "skl1")

OPTIONS = [dict(), dict(momentum=0.9), dict(weight_decay=0.01), dict(eps=1e-3), dict(growth_rate=1.1),
           dict(d0=1e-3, lr=0.5), dict(momentum=0.5, weight_decay=1e-3, eps=1e-8, growth_rate=1.3, d0=1e-4, lr=2.0)]


def changes(k):
    out = {"lr": 1.0 - 0.4 * k / 32} if k >= 10 else {}
    if k == 12:
        out.update(momentum=0.8)
    if k == 16:
        out.update(eps=1e-4)
    if k == 18:
        out.update(weight_decay=0.05)
    if k == 24:
        out.update(growth_rate=1.05)
    return out


def pkg():
    return pytest.importorskip("dadaptation").DAdaptAdaGrad


def make(impl, options, per_key=None):
    if impl == "reference":
        return patch_per_key(ref.DAdaptAdaGrad(**options), per_key or {})
    return IMPLS[impl](overrides=per_key, **options)


def ids(o):
    return "-".join(f"{k}={v}" for k, v in o.items()) or "defaults"


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("options", OPTIONS, ids=ids)
def test_package_trajectory(impl, options):
    worst = dadapt_trajectory.run(pkg(), make(impl, options), pkg_kwargs=options, changes=changes,
                                  buffers=BUFFERS, learned=LEARNED)
    assert worst <= 1e-10


@pytest.mark.parametrize("impl", IMPLS)
def test_package_trajectory_without_changes(impl):
    dadapt_trajectory.run(pkg(), make(impl, {}), pkg_kwargs={}, changes=lambda k: {}, buffers=BUFFERS,
                          learned=LEARNED, steps=40)


@pytest.mark.parametrize("impl", IMPLS)
def test_maximize_is_the_package_on_the_negated_gradient(impl):
    """The package has no maximize; fastadapt's negates the gradient first."""
    dadapt_trajectory.run(pkg(), make(impl, dict(maximize=True, momentum=0.9)), pkg_kwargs=dict(momentum=0.9),
                          changes=changes, buffers=BUFFERS, learned=LEARNED, negate=True)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_all_zero_gradients_first_and_mid_run(impl, momentum):
    """All-zero gradients on the first two steps: the package returns early
    (sum |sk| is 0: nothing moves, d and the sums stay); and once mid-run,
    where sk stays but p is set again from it."""
    options = dict(momentum=momentum, weight_decay=0.0)
    dadapt_trajectory.run(pkg(), make(impl, options), pkg_kwargs=options, changes=lambda k: {},
                          buffers=BUFFERS, learned=LEARNED, zero_steps=(0, 1, 9))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("own", [dict(eps=1e-2), dict(weight_decay=0.1), dict(eps=1e-3, weight_decay=0.02)],
                         ids=ids)
def test_second_group_with_its_own_eps_and_weight_decay(impl, own):
    """eps and weight_decay are the package's per-group values (fastadapt's
    per-key overrides); lr, momentum and growth_rate are group 0's."""
    per_key = {"b": own, "e": own}
    group2_hyper = dict(own, lr=0.25, momentum=0.1, growth_rate=1.0)
    dadapt_trajectory.run(pkg(), make(impl, dict(momentum=0.9, weight_decay=0.01), per_key),
                          pkg_kwargs=dict(momentum=0.9, weight_decay=0.01), changes=changes, buffers=BUFFERS,
                          learned=LEARNED, group2=("b", "e"), group2_hyper=group2_hyper)


@pytest.mark.parametrize("impl", IMPLS)
def test_alphak_starts_at_the_packages_constant(impl):
    """alphak starts at 1e-6 whatever eps and d0 are (the package's fill value)."""
    opt = make(impl, dict(eps=0.5, d0=0.25))
    p = {"w": np.ones(4)}
    opt.update(p, {"w": np.zeros(4)})
    assert np.array_equal(opt.state["w"]["alphak"], np.full(4, 1e-6))
    assert np.array_equal(p["w"], np.ones(4)) and float(opt.state["w"]["d"]) == 0.25


@pytest.mark.parametrize("impl", IMPLS)
def test_lr_zero_keeps_d(impl):
    """lr 0 (the package refuses it at construction, a schedule may reach it):
    sk does not move, the totals do, d stays (the package's ``lr > 0`` check)."""
    opt = make(impl, {})
    p = {"w": np.array([1.0, -2.0, 3.0])}
    for k in range(3):
        opt.update(p, {"w": np.array([0.5, 0.25, -1.0]) * (k + 1)})
    d, sk = float(opt.state["w"]["d"]), opt.state["w"]["sk"].copy()
    opt.lr = 0.0
    opt.update(p, {"w": np.array([1.0, 1.0, 1.0])})
    assert float(opt.state["w"]["d"]) == d and np.array_equal(opt.state["w"]["sk"], sk)


def test_adapted_and_lr_estimate():
    opt = fa.DAdaptAdaGrad(lr=0.5, d0=1e-3)
    assert opt.adapted == {} and opt.lr_estimate is None
    p = {"w": np.zeros(4)}
    for k in range(4):
        opt.update(p, {"w": np.array([1.0, -2.0, 0.5, 3.0]) + p["w"]})
    d = float(opt.state["w"]["d"])
    assert opt.adapted == {"d": d, "d_lr": d * 0.5} and opt.lr_estimate == d * 0.5


# ---- the kernel against the reference, bit for bit ---------------------------------------

KERNEL_CASES = [dict(), dict(momentum=0.9), dict(weight_decay=0.1, maximize=True, eps=1e-3),
                dict(momentum=0.5, weight_decay=0.01, growth_rate=1.05, d0=1e-3, lr=2.0)]
KERNEL_CHANGES = [dict(lr=0.5), dict(momentum=0.0), dict(weight_decay=0.2, growth_rate=1.2, eps=1e-2),
                  dict(lr=0.0, momentum=0.8), dict(lr=1.0)]
PER_KEY = {"layer.odd": {"weight_decay": 0.0, "eps": 1e-2}, "big": {"eps": 1e-8, "maximize": True},
           "layer.matrix": {"weight_decay": 0.3}}


@DTYPES
@pytest.mark.parametrize("options", KERNEL_CASES, ids=ids)
def test_kernel_is_reference_bit_for_bit(options, dtype, isa, threads):
    """Random gradients and hyperparameters changed between steps."""
    pair_is_reference(fa.DAdaptAdaGrad, ref.DAdaptAdaGrad, options, dtype, steps=6, changes=KERNEL_CHANGES)


@DTYPES
@pytest.mark.parametrize("options", KERNEL_CASES, ids=ids)
def test_kernel_learns_d_as_the_reference(options, dtype, isa, threads):
    """Gradients towards a target, so d grows: every step bit for bit, the
    learned scalars included; all-zero gradients first (skl1 stays 0: the
    second pass holds p back) and mid-run (one pass, p set again)."""
    opt = dadapt_trajectory.learning_pair(fa.DAdaptAdaGrad, ref.DAdaptAdaGrad, options, dtype, steps=14,
                                          zero_steps=(0, 1, 6), changes=KERNEL_CHANGES[:3])
    assert float(opt.state["big"]["d"]) > 1.1 * options.get("d0", 1e-6)


@DTYPES
@pytest.mark.parametrize("prep", PREP, ids=str)
def test_gradient_preprocessing_is_reference_bit_for_bit(prep, dtype, isa, threads):
    """Clipping, nonfinite="zero", and NaN/Inf gradients propagated (d stays:
    a NaN d_hat is not taken)."""
    ours, p = pair_is_reference(fa.DAdaptAdaGrad, ref.DAdaptAdaGrad, dict(momentum=0.9, weight_decay=0.01), dtype,
                                steps=5, **prep)
    if propagates_nonfinite(prep):  # NaN only where the gradient was; the totals NaN, d kept
        nan = np.isnan(p["big"])
        assert nan.any() and not nan.all() and np.isnan(ours.state["big"]["skl1"])
        assert float(ours.state["big"]["d"]) == 1e-6


@DTYPES
def test_overrides_are_reference_bit_for_bit(dtype, isa, threads):
    """Per-key eps, weight decay and maximize (the package's per-group values)."""
    dadapt_trajectory.learning_pair(fa.DAdaptAdaGrad, ref.DAdaptAdaGrad, dict(momentum=0.9, weight_decay=0.01),
                                    dtype, steps=6, per_key=PER_KEY, changes=KERNEL_CHANGES)


def test_float32_stays_float32_and_near_float64():
    float32_stays_float32_and_near_float64(ref.DAdaptAdaGrad, dict(momentum=0.9, d0=1e-2), "sk", seed=14)


@DTYPES
@pytest.mark.parametrize("cut", [1, 4])
def test_state_dict_round_trip_mid_run(dtype, cut):
    round_trip_equals_uninterrupted(lambda: fa.DAdaptAdaGrad(momentum=0.9, weight_decay=0.01, overrides=PER_KEY),
                                    dtype, steps=7, cut=cut, changes=KERNEL_CHANGES, seed=3)


# ---- bad hyperparameters -----------------------------------------------------------------

@pytest.mark.parametrize("kwargs,error,needle", [
    (dict(momentum=1.0), ValueError, r"Invalid momentum: 1.0 \(must be in \[0, 1\)\)"),
    (dict(eps=0.0), ValueError, r"Invalid eps: 0.0 \(must be > 0\)"),
    (dict(d0=-1e-6), ValueError, r"Invalid d0"),
    (dict(growth_rate=float("-inf")), ValueError, "Invalid growth_rate.*float\\('inf'\\) for no limit"),
    (dict(growth_rate=None), TypeError, "growth_rate must be a real number"),
    (dict(lr=float("inf")), ValueError, "Invalid lr"),
])
def test_bad_hyperparameters_raise_clear_errors(kwargs, error, needle):
    (name, value), = kwargs.items()
    with pytest.raises(error, match=needle):
        fa.DAdaptAdaGrad(**kwargs)
    with pytest.raises(error, match=needle):
        fa.DAdaptAdaGrad().__setattr__(name, value)
    if name == "eps":
        with pytest.raises(error, match=needle.replace("Invalid eps", r"Invalid overrides\[.w.\]\[.eps.\]")):
            fa.DAdaptAdaGrad(overrides={"w": kwargs})


def test_per_key_values_and_package_only_options():
    with pytest.raises(TypeError, match="'momentum' is not a per-key hyperparameter of DAdaptAdaGrad"):
        fa.DAdaptAdaGrad(overrides={"w": {"momentum": 0.5}})
    with pytest.raises(TypeError, match="log_every"):
        fa.DAdaptAdaGrad(log_every=0)
    assert_bad_assignments_change_nothing(fa.DAdaptAdaGrad(), (("eps", -1.0), ("growth_rate", 0.0), ("d0", 0)))
