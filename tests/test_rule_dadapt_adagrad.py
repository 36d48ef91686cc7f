"""DAdaptAdaGrad: fastadapt's NumPy reference (and the fused fa.DAdaptAdaGrad)
against the ``dadaptation`` package's DAdaptAdaGrad on float64 trajectories
(32 steps, five tensors, every option, hyperparameters changed mid-run, a
second group with its own eps and weight decay, all-zero gradients first and
mid-run; d and its three running sums compared every step)."""

import numpy as np
import pytest

from fastadapt.reference import dadapt_adagrad as ref

import dadapt_trajectory
from rule_parity import patch_per_key

IMPLS = {"reference": ref.DAdaptAdaGrad}
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


def test_alphak_starts_at_the_packages_constant():
    """alphak starts at 1e-6 whatever eps and d0 are (the package's fill value)."""
    opt = ref.DAdaptAdaGrad(eps=0.5, d0=0.25)
    p = {"w": np.ones(4)}
    opt.update(p, {"w": np.zeros(4)})
    assert np.array_equal(opt.state["w"]["alphak"], np.full(4, 1e-6))
    assert np.array_equal(p["w"], np.ones(4)) and float(opt.state["w"]["d"]) == 0.25
