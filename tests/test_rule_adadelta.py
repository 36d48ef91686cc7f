"""Adadelta: fastadapt's reference rule against torch.optim.Adadelta (float64
to 1e-12 relative), hyperparameters changed mid-run, every option."""

import numpy as np
import pytest

from fastadapt.reference import adadelta
from torch_trajectory import run, torch_defaults

torch = pytest.importorskip("torch")


def test_defaults_are_torchs():
    assert adadelta.Adadelta.defaults == torch_defaults(torch.optim.Adadelta)


@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_matches_torch_with_hyperparameters_changed_mid_run(maximize, weight_decay):
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

    run(torch.optim.Adadelta, adadelta.Adadelta(**opts), torch_kwargs=opts, changes=changes,
        state_keys=("square_avg", "acc_delta"))


def test_defaults_trajectory_matches_torch():
    run(torch.optim.Adadelta, adadelta.Adadelta(), torch_kwargs={}, changes=lambda k: {}, steps=40,
        state_keys=("square_avg", "acc_delta"))


def test_float32_stays_float32_and_near_torch():
    opts = dict(weight_decay=0.01)
    run(torch.optim.Adadelta, adadelta.Adadelta(**opts), torch_kwargs=opts, changes=lambda k: {},
        dtype=np.float32, state_keys=("square_avg", "acc_delta"), tol=1e-4)   # float32 op order differs: a sanity check
