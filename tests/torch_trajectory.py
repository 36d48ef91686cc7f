"""Run a fastadapt reference optimizer and a torch.optim optimizer side by side
on the same random trajectory (several tensors, hyperparameters changed
mid-run) and compare parameters and state buffers after every step."""

import numpy as np
import pytest

SHAPES = {"a": (7,), "b": (3, 5), "c": (1,), "d": (33, 17)}
TORCH_ONLY = ("foreach", "capturable", "differentiable", "fused")


def torch_defaults(torch_cls):
    """The defaults of a torch.optim class, less the options fastadapt does not have."""
    torch = pytest.importorskip("torch")
    opt = torch_cls([torch.nn.Parameter(torch.zeros(1))])
    return {k: v for k, v in opt.defaults.items() if k not in TORCH_ONLY}


def max_rel_err(got, want):
    """max |got - want| relative to the largest |want| of the tensor (0 for two all-zero tensors)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = np.max(np.abs(want))
    err = np.max(np.abs(got - want))
    return 0.0 if err == 0 else err / scale


def gradient(rng, p, dtype):
    """A gradient that depends on the parameter (so errors feed back), noisy,
    with some exact zeros and a scale that differs per tensor and drifts."""
    scale = 10.0 ** rng.uniform(-3, 1)
    g = (0.5 * p.astype(np.float64) + rng.standard_normal(p.shape)) * scale
    g[rng.random(p.shape) < 0.1] = 0.0
    return g.astype(dtype)


def run(torch_cls, ref_opt, *, torch_kwargs, changes, steps=30, dtype=np.float64, seed=0,
        state_keys=(), scalar_state_keys=(), tol=1e-12, on_step=None):
    """``changes(k)`` gives the hyperparameters to set before step k (0-based)
    on both sides; returns the largest relative error seen (params and state)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    params = {name: rng.standard_normal(shape).astype(dtype) for name, shape in SHAPES.items()}
    start = {name: p.copy() for name, p in params.items()}
    tparams = {name: torch.nn.Parameter(torch.from_numpy(p.copy())) for name, p in params.items()}
    opt = torch_cls(list(tparams.values()), foreach=False, **torch_kwargs)
    worst = 0.0
    for k in range(steps):
        for name, value in changes(k).items():
            setattr(ref_opt, name, value)
            opt.param_groups[0][name] = value
        grads = {name: gradient(rng, p, dtype) for name, p in params.items()}
        for name, tp in tparams.items():
            tp.grad = torch.from_numpy(grads[name].copy())
        opt.step()
        ref_opt.update(params, grads)
        if on_step is not None:
            on_step(k + 1, ref_opt)
        for name, tp in tparams.items():
            errs = [max_rel_err(params[name], tp.detach().numpy())]
            tstate = opt.state[tp]
            for key in state_keys:
                errs.append(max_rel_err(ref_opt.state[name][key], tstate[key].numpy()))
            for key in scalar_state_keys:
                errs.append(max_rel_err(float(ref_opt.state[name][key]), tstate[key].item()))
            err = max(errs)
            assert err <= tol, f"step {k + 1}, tensor {name!r}: relative error {err:.3g} > {tol:g}"
            worst = max(worst, err)
            assert params[name].dtype == dtype
            assert all(ref_opt.state[name][key].dtype == dtype for key in state_keys)
    # the trajectory went somewhere: a wrong rule could not pass by moving nothing
    moved = min(max_rel_err(params[n], start[n]) for n in params)
    assert moved > 1e-4, moved
    return worst
