"""Adamax: fastadapt's reference rule against torch.optim.Adamax (float64 to
1e-12 relative), hyperparameters changed mid-run, every option."""

import numpy as np
import pytest

from fastadapt.reference import adamax
from torch_trajectory import run, torch_defaults

torch = pytest.importorskip("torch")


def test_defaults_are_torchs():
    assert adamax.Adamax.defaults == torch_defaults(torch.optim.Adamax)


@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_matches_torch_with_hyperparameters_changed_mid_run(maximize, weight_decay):
    opts = dict(lr=3e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=weight_decay, maximize=maximize)

    def changes(k):
        out = {"lr": 3e-2 * (1.0 - k / 40)}
        if k == 10:
            out.update(betas=(0.8, 0.5), eps=1e-1)          # eps large enough to win the maximum
        if k == 18:
            out.update(weight_decay=weight_decay * 3, betas=(0.95, 0.999), eps=1e-8)
        return out

    run(torch.optim.Adamax, adamax.Adamax(**opts), torch_kwargs=opts, changes=changes,
        state_keys=("exp_avg", "exp_inf"))


def test_defaults_trajectory_matches_torch():
    run(torch.optim.Adamax, adamax.Adamax(), torch_kwargs={}, changes=lambda k: {}, steps=40,
        state_keys=("exp_avg", "exp_inf"))


def test_float32_stays_float32_and_near_torch():
    opts = dict(lr=1e-2, weight_decay=0.01)
    run(torch.optim.Adamax, adamax.Adamax(**opts), torch_kwargs=opts, changes=lambda k: {}, dtype=np.float32,
        state_keys=("exp_avg", "exp_inf"), tol=1e-4)   # float32 op order differs: a sanity check
