"""Adadelta: the fused kernel against fastadapt's NumPy reference bit for
bit (every ISA path and thread count, both dtypes, every option, clipping,
non-finite policies, overrides, a state_dict round trip), and the reference
and fa.Adadelta against torch.optim.Adadelta (float64 to 1e-12 relative,
skipped without torch) with hyperparameters changed mid-run."""

import itertools

import numpy as np
import pytest

import fastadapt as fa
from fastadapt.reference import adadelta

from rule_parity import (DTYPES, PREP, assert_bad_hyperparameter_refused, assert_not_options,
                         kernel_vs_reference, overrides_vs_reference, round_trip_equals_uninterrupted)
from torch_trajectory import run, torch_defaults

OPTIONS = [dict(zip(("weight_decay", "maximize"), v)) for v in itertools.product([0.0, 0.1], [False, True])]
# rho at both ends of torch's [0, 1]: 1 freezes both averages, 0 keeps only the last step
CHANGES = [dict(lr=0.5), dict(rho=0.5, eps=1e-3), dict(rho=1.0), dict(rho=0.0, weight_decay=0.05),
           dict(rho=0.95, eps=1e-6)]


# ---- the kernel against the reference, bit for bit --------------------------------------

@DTYPES
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_kernel_matches_reference_bit_for_bit(options, dtype, isa, threads):
    kernel_vs_reference(fa.Adadelta, adadelta.Adadelta, dict(options), dtype, changes=CHANGES, steps=6)


@DTYPES
@pytest.mark.parametrize("prep", PREP, ids=str)
def test_gradient_preprocessing_matches_reference(prep, dtype, isa, threads):
    kernel_vs_reference(fa.Adadelta, adadelta.Adadelta, dict(weight_decay=0.1, maximize=True), dtype, **prep)


@DTYPES
def test_overrides_match_a_reference_per_group(dtype, threads):
    override = dict(lr=0.1, rho=0.5, weight_decay=0.2, eps=1e-4)
    overrides_vs_reference(fa.Adadelta, adadelta.Adadelta, dict(weight_decay=0.01), override, dtype,
                           changes=CHANGES)


@DTYPES
def test_state_dict_round_trip_mid_run_equals_uninterrupted_run(dtype):
    round_trip_equals_uninterrupted(
        lambda: fa.Adadelta(weight_decay=0.1, overrides={"big": {"rho": 0.8}}), dtype, changes=CHANGES)


# ---- against torch.optim.Adadelta ------------------------------------------------------

def test_defaults_are_torchs():
    torch = pytest.importorskip("torch")
    assert adadelta.Adadelta.defaults == torch_defaults(torch.optim.Adadelta)
    assert {k: v for k, v in fa.Adadelta().hyperparameters.items()
            if k in adadelta.Adadelta.defaults} == adadelta.Adadelta.defaults


@pytest.mark.parametrize("impl", [adadelta.Adadelta, fa.Adadelta], ids=["reference", "fastadapt"])
@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_matches_torch_with_hyperparameters_changed_mid_run(impl, maximize, weight_decay):
    torch = pytest.importorskip("torch")
    opts = dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=weight_decay, maximize=maximize)

    def changes(k):
        out = {"lr": 1.0 - k / 40}
        if k == 10:
            out.update(rho=0.5, eps=1e-3)
        if k == 15:
            out.update(rho=1.0)                     # the largest rho torch allows: both averages frozen
        if k == 18:
            out.update(weight_decay=weight_decay * 3, rho=0.0, eps=1e-6)
        if k == 22:
            out.update(rho=0.95)
        return out

    run(torch.optim.Adadelta, impl(**opts), torch_kwargs=opts, changes=changes,
        state_keys=("square_avg", "acc_delta"))


@pytest.mark.parametrize("impl", [adadelta.Adadelta, fa.Adadelta], ids=["reference", "fastadapt"])
def test_defaults_trajectory_matches_torch(impl):
    torch = pytest.importorskip("torch")
    run(torch.optim.Adadelta, impl(), torch_kwargs={}, changes=lambda k: {}, steps=40,
        state_keys=("square_avg", "acc_delta"))


def test_float32_stays_float32_and_near_torch():
    torch = pytest.importorskip("torch")
    opts = dict(weight_decay=0.01)
    run(torch.optim.Adadelta, adadelta.Adadelta(**opts), torch_kwargs=opts, changes=lambda k: {},
        dtype=np.float32, state_keys=("square_avg", "acc_delta"), tol=1e-4)   # float32 op order differs


# ---- bad input ----------------------------------------------------------------------------

BAD = [(dict(lr=-1.0), ValueError, "lr"), (dict(rho=1.5), ValueError, "rho"), (dict(rho=-0.1), ValueError, "rho"),
       (dict(rho="0.9"), TypeError, "rho"), (dict(eps=-1e-6), ValueError, "eps"),
       (dict(weight_decay=-0.1), ValueError, "weight_decay"), (dict(maximize=1.0), TypeError, "maximize")]


@pytest.mark.parametrize("kwargs,exc,needle", BAD, ids=[str(b[0]) for b in BAD])
def test_bad_hyperparameters_raise_clearly_and_change_nothing(kwargs, exc, needle):
    assert_bad_hyperparameter_refused(fa.Adadelta, kwargs, exc, needle)


def test_torch_only_options_are_not_ours():
    assert_not_options(fa.Adadelta, ("foreach", "capturable", "differentiable", "betas"))
