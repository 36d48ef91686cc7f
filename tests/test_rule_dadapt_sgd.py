"""DAdaptSGD: the fused fa.DAdaptSGD and fastadapt's NumPy reference against
the ``dadaptation`` package's DAdaptSGD on float64 trajectories (32 steps,
five tensors, every option, hyperparameters changed mid-run, d and its sums
compared every step); the package's first-step handling (the norm of the raw
first gradient, an all-zero first gradient); the kernel against the
reference bit for bit (every ISA path and thread count, float32 and float64,
odd sizes, a pool-sized tensor, clipping, nonfinite="zero", maximize per key,
the first step's extra pass, all-zero gradients); checkpoints; bad
hyperparameters."""

import math

import numpy as np
import pytest

import fastadapt as fa
from fastadapt.reference import dadapt_sgd as ref

import dadapt_trajectory
from rule_parity import (DTYPES, PREP, assert_bad_assignments_change_nothing,
                         float32_stays_float32_and_near_float64, pair_is_reference, propagates_nonfinite,
                         round_trip_equals_uninterrupted)

IMPLS = {"fa": fa.DAdaptSGD, "reference": ref.DAdaptSGD}
BUFFERS = {"s": "s", "x0": "x0"}
LEARNED = ("d", "numerator_weighted", "g0_norm")

# Options at construction (with the package's names), and the changes made
# before given steps; d0 only matters at the start.
OPTIONS = [dict(), dict(momentum=0.9), dict(weight_decay=0.01), dict(growth_rate=1.2), dict(d0=1e-3, lr=0.5),
           dict(momentum=0.5, weight_decay=1e-3, growth_rate=1.3, d0=1e-4, lr=2.0)]


def changes(k):
    out = {"lr": 1.0 - 0.4 * k / 32} if k >= 10 else {}
    if k == 12:
        out.update(momentum=0.8)
    if k == 18:
        out.update(weight_decay=0.05)
    if k == 24:
        out.update(growth_rate=1.05)
    return out


def pkg():
    return pytest.importorskip("dadaptation").DAdaptSGD


def make(impl, options):
    return IMPLS[impl](**options)


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
def test_second_group_takes_group_zeros_hyperparameters(impl):
    """The package reads momentum, weight decay and growth rate from group
    0 only: a second group's own values change nothing (so fastadapt has no
    per-key values for them)."""
    dadapt_trajectory.run(pkg(), make(impl, dict(weight_decay=0.01, momentum=0.9)),
                          pkg_kwargs=dict(weight_decay=0.01, momentum=0.9), changes=changes, buffers=BUFFERS,
                          learned=LEARNED, group2=("b", "e"),
                          group2_hyper=dict(weight_decay=0.5, momentum=0.1, growth_rate=1.0))


@pytest.mark.parametrize("impl", IMPLS)
def test_first_gradient_norm_is_before_weight_decay(impl):
    """g0_norm is the norm of the raw first gradient (the package's weight
    decay there is an out-of-place add whose result it drops)."""
    torch = pytest.importorskip("torch")
    p = np.arange(1.0, 6.0)
    g = np.full(5, 0.5)
    opt = pkg()([torch.nn.Parameter(torch.from_numpy(p.copy()))], weight_decay=0.1)
    opt.param_groups[0]["params"][0].grad = torch.from_numpy(g.copy())
    opt.step()
    ours = make(impl, dict(weight_decay=0.1))
    ours.update({"w": p.copy()}, {"w": g})
    assert float(ours.state["w"]["g0_norm"]) == opt.param_groups[0]["g0_norm"] == np.sqrt(5 * 0.25)


@pytest.mark.parametrize("impl", IMPLS)
def test_all_zero_first_gradient_changes_nothing(impl):
    """The package divides by the first gradient's norm and raises
    ZeroDivisionError when it is 0; fastadapt leaves everything as it was
    (s at 0, d at d0, no g0_norm) and takes its first step on the next
    nonzero gradient: from there on it is the package started then."""
    torch = pytest.importorskip("torch")
    with pytest.raises(ZeroDivisionError):
        tp = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
        opt = pkg()([tp], weight_decay=0.1)
        tp.grad = torch.zeros(3, dtype=torch.float64)
        opt.step()
    ours = make(impl, dict(weight_decay=0.1))
    p = {"w": np.ones(3)}
    ours.update(p, {"w": np.zeros(3)})
    assert np.array_equal(p["w"], np.ones(3)) and ours.step_count == 1
    st = ours.state["w"]
    assert float(st["d"]) == 1e-6 and float(st["g0_norm"]) == 0.0 and float(st["numerator_weighted"]) == 0.0
    assert np.array_equal(st["s"], np.zeros(3)) and np.array_equal(st["x0"], np.ones(3))
    # then: the package's first step
    g = np.array([0.3, -1.0, 2.0])
    tp.grad = torch.from_numpy(g.copy())
    opt.step()
    ours.update(p, {"w": g})
    np.testing.assert_allclose(p["w"], tp.detach().numpy(), rtol=1e-14)
    assert float(ours.state["w"]["d"]) == pytest.approx(opt.param_groups[0]["d"], rel=1e-14)


@pytest.mark.parametrize("impl", IMPLS)
def test_lr_zero_keeps_d(impl):
    """lr 0 (the package refuses it at construction, a schedule may reach it):
    s does not move and d stays; the package's own ``lr > 0`` check."""
    opt = make(impl, {})
    p = {"w": np.array([1.0, -2.0, 3.0])}
    for k in range(3):
        opt.update(p, {"w": np.array([0.5, 0.25, -1.0]) * (k + 1)})
    d, s = float(opt.state["w"]["d"]), opt.state["w"]["s"].copy()
    opt.lr = 0.0
    opt.update(p, {"w": np.array([1.0, 1.0, 1.0])})
    assert float(opt.state["w"]["d"]) == d and np.array_equal(opt.state["w"]["s"], s)


def test_adapted_and_lr_estimate():
    opt = fa.DAdaptSGD(lr=0.5)
    assert opt.adapted == {} and opt.lr_estimate is None
    p = {"w": np.zeros(4)}
    opt.update(p, {"w": np.zeros(4)})  # an all-zero first gradient: no g0_norm yet
    assert opt.adapted["d"] == 1e-6 and math.isnan(opt.adapted["d_lr"]) and opt.lr_estimate is None
    for k in range(4):
        opt.update(p, {"w": np.array([1.0, -2.0, 0.5, 3.0]) + p["w"]})
    st = opt.state["w"]
    d, g0 = float(st["d"]), float(st["g0_norm"])
    assert d > 1e-6 and g0 == math.sqrt(1 + 4 + 0.25 + 9)
    assert opt.adapted == {"d": d, "d_lr": d * 0.5 / g0} and opt.lr_estimate == d * 0.5 / g0


# ---- the kernel against the reference, bit for bit ---------------------------------------

KERNEL_CASES = [dict(), dict(momentum=0.9), dict(weight_decay=0.1, maximize=True),
                dict(momentum=0.5, weight_decay=0.01, growth_rate=1.05, d0=1e-3, lr=2.0)]
KERNEL_CHANGES = [dict(lr=0.5), dict(momentum=0.8), dict(weight_decay=0.2, growth_rate=1.2), dict(lr=0.0),
                  dict(lr=1.0)]


@DTYPES
@pytest.mark.parametrize("options", KERNEL_CASES, ids=ids)
def test_kernel_is_reference_bit_for_bit(options, dtype, isa, threads):
    """Random gradients (d mostly stays) and hyperparameters changed between steps."""
    pair_is_reference(fa.DAdaptSGD, ref.DAdaptSGD, options, dtype, steps=6, changes=KERNEL_CHANGES)


@DTYPES
@pytest.mark.parametrize("options", KERNEL_CASES, ids=ids)
def test_kernel_learns_d_as_the_reference(options, dtype, isa, threads):
    """Gradients towards a target, so d grows: every step bit for bit, the
    learned scalars included; all-zero gradients first (no g0_norm: the
    first step waits) and mid-run."""
    opt = dadapt_trajectory.learning_pair(fa.DAdaptSGD, ref.DAdaptSGD, options, dtype, steps=10,
                                          zero_steps=(0, 6), changes=KERNEL_CHANGES[:3])
    assert float(opt.state["big"]["d"]) > 2 * options.get("d0", 1e-6)


@DTYPES
@pytest.mark.parametrize("prep", PREP, ids=str)
def test_gradient_preprocessing_is_reference_bit_for_bit(prep, dtype, isa, threads):
    """Clipping (applied in both passes of the first step), nonfinite="zero",
    and NaN/Inf gradients propagated (d stays: a NaN d_hat is not taken)."""
    ours, p = pair_is_reference(fa.DAdaptSGD, ref.DAdaptSGD, dict(momentum=0.9, weight_decay=0.01), dtype,
                                steps=5, **prep)
    if propagates_nonfinite(prep):
        assert np.isnan(p["big"]).all() and float(ours.state["big"]["d"]) == 1e-6


@DTYPES
def test_maximize_per_key_is_reference_bit_for_bit(dtype, isa, threads):
    per_key = {"layer.odd": {"maximize": True}, "big": {"maximize": True}}
    dadapt_trajectory.learning_pair(fa.DAdaptSGD, ref.DAdaptSGD, dict(momentum=0.9), dtype, steps=6,
                                    per_key=per_key)


def test_float32_stays_float32_and_near_float64():
    float32_stays_float32_and_near_float64(ref.DAdaptSGD, dict(momentum=0.9, d0=1e-2), "s", seed=14)


@DTYPES
@pytest.mark.parametrize("cut", [1, 4])
def test_state_dict_round_trip_mid_run(dtype, cut):
    """Cut after the first step (g0_norm just set) and mid-run."""
    round_trip_equals_uninterrupted(lambda: fa.DAdaptSGD(momentum=0.9, weight_decay=0.01), dtype, steps=7,
                                    cut=cut, changes=KERNEL_CHANGES, seed=3)


# ---- bad hyperparameters -----------------------------------------------------------------

@pytest.mark.parametrize("kwargs,error,needle", [
    (dict(momentum=1.0), ValueError, r"Invalid momentum: 1.0 \(must be in \[0, 1\)\)"),
    (dict(momentum=-0.5), ValueError, "Invalid momentum"),
    (dict(d0=0.0), ValueError, r"Invalid d0: 0.0 \(must be > 0\)"),
    (dict(growth_rate=0.0), ValueError, "Invalid growth_rate.*float\\('inf'\\) for no limit"),
    (dict(growth_rate=float("nan")), ValueError, "Invalid growth_rate"),
    (dict(growth_rate="fast"), TypeError, "growth_rate must be a real number"),
    (dict(lr=-1.0), ValueError, "Invalid lr"),
    (dict(weight_decay=-0.1), ValueError, "Invalid weight_decay"),
])
def test_bad_hyperparameters_raise_clear_errors(kwargs, error, needle):
    (name, value), = kwargs.items()
    with pytest.raises(error, match=needle):
        fa.DAdaptSGD(**kwargs)
    with pytest.raises(error, match=needle):
        fa.DAdaptSGD().__setattr__(name, value)


def test_only_maximize_is_per_key_and_package_only_options_are_refused():
    with pytest.raises(TypeError, match="'momentum' is not a per-key hyperparameter of DAdaptSGD"):
        fa.DAdaptSGD(overrides={"w": {"momentum": 0.5}})
    for name in ("log_every", "fsdp_in_use"):
        with pytest.raises(TypeError, match=name):
            fa.DAdaptSGD(**{name: 0})
    assert_bad_assignments_change_nothing(fa.DAdaptSGD(), (("d0", -1.0), ("growth_rate", 0.0), ("momentum", 1.5)))


def test_growth_rate_inf_is_the_default_and_checkpoints():
    opt = fa.DAdaptSGD()
    assert opt.growth_rate == math.inf
    p = {"w": np.ones(3)}
    opt.update(p, {"w": np.ones(3)})
    again = fa.DAdaptSGD(growth_rate=2.0)
    again.load_state_dict(opt.state_dict(), params=p)
    assert again.growth_rate == math.inf
