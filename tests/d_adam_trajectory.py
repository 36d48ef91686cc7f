"""Run a fastadapt optimizer (the reference or fa) and a D-adaptation package
optimizer (prodigyopt.Prodigy, dadaptation.DAdaptAdam) side by side on the
same random float64 trajectory: several tensors in several parameter groups
(fastadapt's per-key overrides), hyperparameters changed mid-run, and after
every step the parameters, the state buffers and the learned scalars (d, ...)
compared."""

import numpy as np
import pytest

from torch_trajectory import gradient, max_rel_err

SHAPES = {"a": (7,), "b": (3, 5), "c": (1,), "d": (33, 17), "z": (4, 3)}


def run(torch_cls, ours, *, torch_kwargs, per_key=None, changes=lambda k: {}, steps=40, seed=0, buffers=(),
        scalars=(), tol=1e-10, zero_steps=(), zero_start=("z",), grad_of=None, on_step=None):
    """``ours``: built with ``per_key`` already applied (fa's ``overrides`` or
    the reference patched with ``patch_per_key``). ``per_key`` ({name:
    {hyper: value}}) gives each named tensor its own torch param group.
    ``changes(k)`` ({hyper: value}) is set before step k (0-based) on ours and
    on every torch group that does not override that hyperparameter.
    ``zero_steps``: steps whose gradients are all zero. ``zero_start``:
    tensors that start at 0. ``buffers`` and ``scalars`` map our state names
    to the package's (a scalar's package name is a param_group key).
    Returns the largest relative error seen."""
    torch = pytest.importorskip("torch")
    per_key = per_key or {}
    rng = np.random.default_rng(seed)
    params = {name: rng.standard_normal(shape) for name, shape in SHAPES.items()}
    for name in zero_start:
        params[name][...] = 0.0
    start = {name: p.copy() for name, p in params.items()}
    tparams = {name: torch.nn.Parameter(torch.from_numpy(p.copy())) for name, p in params.items()}
    groups = [{"params": [tp for name, tp in tparams.items() if name not in per_key]}]
    groups += [{"params": [tparams[name]], **hyper} for name, hyper in per_key.items()]
    opt = torch_cls(groups, **torch_kwargs)
    worst = 0.0
    for k in range(steps):
        for hyper, value in changes(k).items():
            setattr(ours, hyper, value)
            for owner, group in zip([None, *per_key], opt.param_groups):
                if owner is None or hyper not in per_key[owner]:
                    group[hyper] = value
        grads = {name: (np.zeros_like(p) if k in zero_steps else
                        (grad_of(rng, name, p) if grad_of else gradient(rng, p, np.float64)))
                 for name, p in params.items()}
        for name, tp in tparams.items():
            tp.grad = torch.from_numpy(grads[name].copy())
        opt.step()
        ours.update(params, grads)
        if on_step is not None:
            on_step(k + 1, ours, opt)
        group0 = opt.param_groups[0]
        for name, tp in tparams.items():
            errs = [max_rel_err(params[name], tp.detach().numpy())]
            tstate = opt.state[tp]
            st = ours.state[name]
            for mine, theirs in buffers:
                want = tstate[theirs].numpy()    # prodigyopt keeps s and p0 flat, p0 as a 0-d 0 for a zero tensor
                want = want.reshape(st[mine].shape) if want.size == st[mine].size else np.broadcast_to(want, st[mine].shape)
                errs.append(max_rel_err(st[mine], want))
            for mine, theirs in scalars:
                errs.append(max_rel_err(float(st[mine]), float(group0[theirs])))
            err = max(errs)
            assert err <= tol, f"step {k + 1}, tensor {name!r}: relative error {err:.3g} > {tol:g}"
            worst = max(worst, err)
    # the trajectory went somewhere: a wrong rule could not pass by moving nothing
    moved = min(max_rel_err(params[n], start[n]) if np.any(start[n]) else np.max(np.abs(params[n]))
                for n in params if n not in per_key)
    assert moved > 1e-6, moved
    return worst


# 1e-12 relative (measured worst 3e-14 over these runs): torch sums in its
# own order, fuses multiply-adds (addcmul) and computes sqrt as pow(x, 0.5);
# d is a ratio of sums over all tensors whose numerator cancels, so those
# last-bit differences grow a little over 40 steps.
TOL = 1e-12


def changes_for(options, changes):
    """``changes`` (k -> {hyper: value}); beta1 stays 0 where it starts at 0
    (prodigyopt keeps no exp_avg then, and cannot turn it on later)."""
    b1 = 0.0 if options.get("betas", (0.9,))[0] == 0 else 0.85

    def with_b1(k):
        out = changes(k)
        if "betas" in out:
            out["betas"] = (b1, out["betas"][1])
        return out
    return with_b1


def package_trajectory(package_cls, ours, options, per_key, *, decouple_default, **kwargs):
    """``run`` for 40 steps to ``TOL``, with zero gradients at steps 0 and 1
    (the package returns early) and at step 22 (it does not: s is not 0);
    ``kwargs``: run's changes, buffers and scalars."""
    worst = run(package_cls, ours, torch_kwargs=options, per_key=per_key, zero_steps=(0, 1, 22), tol=TOL, **kwargs)
    state = ours.state["a"]
    # coupled weight decay makes the "zero" gradients of steps 0 and 1 nonzero (key "b" decays)
    early_returns = 0 if options.get("decouple", decouple_default) is False else 2
    assert float(state["k"]) == 40 - early_returns and float(state["d"]) > options.get("d0", 1e-6)
    assert worst <= TOL


def lr_0_group_matches_package(package_cls, ours, options, per_key, **kwargs):
    """30 steps to ``TOL`` with key "d" in a group of lr 0 (``per_key``): its
    s and exp_avg_sq stay 0 (no share in d, no moments)."""
    run(package_cls, ours, torch_kwargs=options, per_key=per_key, steps=30, tol=TOL, **kwargs)
    assert not np.any(ours.state["d"]["s"]) and not np.any(ours.state["d"]["exp_avg_sq"])
