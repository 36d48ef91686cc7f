"""NAdam: fastadapt's reference rule against torch.optim.NAdam (float64 to
1e-12 relative), hyperparameters changed mid-run, every option."""

import numpy as np
import pytest

from fastadapt.reference import nadam
from torch_trajectory import run, torch_defaults

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def float64_scalars():
    # torch keeps state["mu_product"] in the default dtype: float32 unless
    # the default is float64, and then it alone is off by ~1e-7.
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def test_defaults_are_torchs():
    assert nadam.NAdam.defaults == torch_defaults(torch.optim.NAdam)


@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_matches_torch_with_hyperparameters_changed_mid_run(decoupled, maximize, weight_decay):
    opts = dict(lr=3e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=weight_decay, momentum_decay=4e-3,
                decoupled_weight_decay=decoupled, maximize=maximize)

    def changes(k):
        out = {"lr": 3e-2 * (1.0 - k / 40)}                       # a decaying lr, every step
        if k == 10:
            out.update(betas=(0.8, 0.95), momentum_decay=0.02, eps=1e-3)
        if k == 18:
            out.update(weight_decay=weight_decay * 3, betas=(0.95, 0.999))
        if k == 25:
            out.update(decoupled_weight_decay=not decoupled, momentum_decay=0.0)
        return out

    run(torch.optim.NAdam, nadam.NAdam(**opts), torch_kwargs=opts, changes=changes,
        state_keys=("exp_avg", "exp_avg_sq"), scalar_state_keys=("mu_product",))


def test_defaults_trajectory_matches_torch():
    run(torch.optim.NAdam, nadam.NAdam(), torch_kwargs={}, changes=lambda k: {}, steps=40,
        state_keys=("exp_avg", "exp_avg_sq"), scalar_state_keys=("mu_product",))


def test_float32_stays_float32_and_near_torch():
    opts = dict(lr=1e-2, weight_decay=0.01)
    run(torch.optim.NAdam, nadam.NAdam(**opts), torch_kwargs=opts, changes=lambda k: {}, dtype=np.float32,
        state_keys=("exp_avg", "exp_avg_sq"), tol=1e-4)   # float32 op order differs: a sanity check


def test_mu_product_is_the_product_of_the_schedule():
    p, g = {"w": np.zeros(3)}, {"w": np.ones(3)}
    opt = nadam.NAdam(betas=(0.9, 0.999), momentum_decay=4e-3)
    want = 1.0
    for t in range(1, 6):
        if t == 3:
            opt.betas, opt.momentum_decay = (0.5, 0.999), 0.1
        want *= opt.betas[0] * (1.0 - 0.5 * 0.96 ** (t * opt.momentum_decay))
        opt.update(p, g)
        assert float(opt.state["w"]["mu_product"]) == want
