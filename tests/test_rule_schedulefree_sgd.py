"""Schedule-Free SGD: the NumPy reference against the schedulefree
package's SGDScheduleFree (float64 to 1e-12 relative, skipped without it)
on random trajectories with every option, hyperparameters changed mid-run
and eval()/train() switches; eval/train semantics as the package's."""

import inspect
import itertools

import numpy as np
import pytest

from fastadapt.reference import schedulefree_sgd as ref

from schedulefree_trajectory import eval_and_train_as_the_package, package, run_vs_package

STATE = ("z",)
OPTIONS = [dict(zip(("weight_decay", "warmup_steps", "r", "weight_lr_power"), v))
           for v in itertools.product([0.0, 0.05], [0, 7], [0.0, 1.5], [2.0, 0.0])]


def package_changes(k):
    """A decaying lr every step; the other hyperparameters moved mid-run
    (warmup_steps lengthened while still warming up, so the schedule jumps)."""
    out = {"lr": 0.2 * (1.0 - k / 60)}
    if k == 4:
        out.update(warmup_steps=12)
    if k == 10:
        out.update(momentum=0.5)
    if k == 17:
        out.update(weight_decay=0.1, r=0.5)
    if k == 24:
        out.update(weight_lr_power=1.0, momentum=0.95)
    return out


def test_defaults_are_the_packages():
    sf = package()
    params = inspect.signature(sf.SGDScheduleFree).parameters
    theirs = {k: p.default for k, p in params.items() if k not in ("params", "foreach")}
    assert {k: v for k, v in ref.ScheduleFreeSGD.defaults.items() if k != "maximize"} == theirs
    assert ref.ScheduleFreeSGD.defaults["maximize"] is False


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("maximize", [False, True])
def test_reference_matches_package_with_hyperparameters_changed_mid_run(options, maximize):
    sf = package()
    kwargs = dict(lr=0.2, momentum=0.9, **options)
    run_vs_package(sf.SGDScheduleFree, ref.ScheduleFreeSGD(maximize=maximize, **kwargs), kwargs=kwargs,
                   changes=package_changes, maximize=maximize, state_keys=STATE, switch_at=(3, 15, 36))


@pytest.mark.parametrize("foreach", [False, True])
def test_reference_defaults_trajectory_matches_package(foreach):
    sf = package()
    # lr 1.0 (the default) on these gradients diverges; the rest is default
    run_vs_package(sf.SGDScheduleFree, ref.ScheduleFreeSGD(lr=0.05), kwargs=dict(lr=0.05), steps=40,
                   foreach=foreach, state_keys=STATE, switch_at=(1, 20, 40))


def test_reference_zero_lr_start_matches_package():
    """lr 0 for the first steps: every weight is 0 and the package's
    ZeroDivisionError branch sets the averaging weight to 0; then lr > 0."""
    sf = package()
    kwargs = dict(lr=0.0, warmup_steps=3)
    run_vs_package(sf.SGDScheduleFree, ref.ScheduleFreeSGD(**kwargs), kwargs=kwargs, state_keys=STATE,
                   changes=lambda k: {"lr": 0.0 if k < 4 else 0.1}, switch_at=(2, 10))


def test_reference_float32_stays_float32_and_near_package():
    sf = package()
    kwargs = dict(lr=0.1, weight_decay=0.01, warmup_steps=4)
    run_vs_package(sf.SGDScheduleFree, ref.ScheduleFreeSGD(**kwargs), kwargs=kwargs, dtype=np.float32,
                   state_keys=STATE, switch_at=(10,), tol=1e-4)   # float32 op order differs: a sanity check


def test_reference_eval_and_train_as_the_package():
    sf = package()
    eval_and_train_as_the_package(sf.SGDScheduleFree, ref.ScheduleFreeSGD(lr=0.1), 0.9, dict(lr=0.1))
