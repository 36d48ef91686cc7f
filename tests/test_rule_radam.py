"""RAdam: fastadapt's reference rule against torch.optim.RAdam (float64 to
1e-12 relative), both branches of the rectification, hyperparameters changed
mid-run, every option."""

import numpy as np
import pytest

from fastadapt.reference import radam
from torch_trajectory import run, torch_defaults

torch = pytest.importorskip("torch")


def test_defaults_are_torchs():
    assert radam.RAdam.defaults == torch_defaults(torch.optim.RAdam)


def test_rectification_starts_at_step_6_for_the_default_beta2():
    assert [radam.radam_rectification(0.999, t) is not None for t in range(1, 8)] == [False] * 5 + [True] * 2
    assert radam.radam_rectification(0.5, 10 ** 6) is None         # rho_inf = 3: never rectified
    r = [radam.radam_rectification(0.999, t) for t in (6, 100, 10 ** 6)]
    assert 0 < r[0] < r[1] < r[2] <= 1.0


@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_matches_torch_with_hyperparameters_changed_mid_run(decoupled, maximize, weight_decay):
    opts = dict(lr=3e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay,
                decoupled_weight_decay=decoupled, maximize=maximize)
    branches = []

    def changes(k):
        out = {"lr": 3e-2 * (1.0 - k / 40)}
        if k == 12:
            out.update(betas=(0.8, 0.6), eps=1e-3)          # rho_inf = 4: back to the un-adapted step
        if k == 18:
            out.update(weight_decay=weight_decay * 3, betas=(0.95, 0.99))
        if k == 25:
            out.update(decoupled_weight_decay=not decoupled)
        return out

    def on_step(t, opt):
        branches.append(radam.radam_rectification(opt.betas[1], t) is not None)

    run(torch.optim.RAdam, radam.RAdam(**opts), torch_kwargs=opts, changes=changes, on_step=on_step,
        state_keys=("exp_avg", "exp_avg_sq"))
    # both branches were taken, and the switch back and forth
    assert branches[:5] == [False] * 5 and all(branches[5:12]) and not any(branches[12:18]) and all(branches[18:])


def test_defaults_trajectory_matches_torch():
    run(torch.optim.RAdam, radam.RAdam(), torch_kwargs={}, changes=lambda k: {}, steps=40,
        state_keys=("exp_avg", "exp_avg_sq"))


def test_float32_stays_float32_and_near_torch():
    opts = dict(lr=1e-2, weight_decay=0.01)
    run(torch.optim.RAdam, radam.RAdam(**opts), torch_kwargs=opts, changes=lambda k: {}, dtype=np.float32,
        state_keys=("exp_avg", "exp_avg_sq"), tol=1e-4)   # float32 op order differs: a sanity check
