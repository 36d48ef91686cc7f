"""DAdaptSGD: fastadapt's NumPy reference (and the fused fa.DAdaptSGD) against
the ``dadaptation`` package's DAdaptSGD on float64 trajectories (32 steps,
five tensors, every option, hyperparameters changed mid-run, d and its sums
compared every step); the package's first-step handling (the norm of the raw
first gradient, an all-zero first gradient)."""

import numpy as np
import pytest

from fastadapt.reference import dadapt_sgd as ref

import dadapt_trajectory

IMPLS = {"reference": ref.DAdaptSGD}
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


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "defaults")
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


def test_first_gradient_norm_is_before_weight_decay():
    """g0_norm is the norm of the raw first gradient (the package's weight
    decay there is an out-of-place add whose result it drops)."""
    torch = pytest.importorskip("torch")
    p = np.arange(1.0, 6.0)
    g = np.full(5, 0.5)
    opt = pkg()([torch.nn.Parameter(torch.from_numpy(p.copy()))], weight_decay=0.1)
    opt.param_groups[0]["params"][0].grad = torch.from_numpy(g.copy())
    opt.step()
    ours = ref.DAdaptSGD(weight_decay=0.1)
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
