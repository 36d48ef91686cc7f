"""Shared by tests/test_rule_hd_sgd.py and tests/test_rule_hd_adam.py: one
stochastic problem (several tensors, odd sizes; gradients that depend on the
parameters, so that errors feed back), run by a fastadapt hypergradient
optimizer (reference or fused) and by an independent float64 implementation
step by step, comparing parameters and the adapted learning rate.

The independent side is a plain function ``other(grad_fn, theta0, hyper_at,
steps)`` returning per step ``(theta, alpha)``: the paper's algorithm
written out in the test file, or torch.optim with the hypergradient rule
wrapped around it."""

import numpy as np
import pytest

from torch_trajectory import run as torch_run

SHAPES = {"a": (7,), "b": (3, 5), "c": (1,), "d": (33, 17), "e": (101,)}


def problem(seed, steps):
    """Start values and ``grad_fn(t, theta)`` (t from 1): the gradient of
    ``f_t(theta) = sum(0.25 * theta**2 + noise_t * theta) * scale_t``, with
    some gradient entries exactly 0 and a scale that differs per tensor and
    step (the hypergradient sees steps that agree and steps that do not)."""
    rng = np.random.default_rng(seed)
    theta0 = {k: rng.standard_normal(s) for k, s in SHAPES.items()}
    noise = [{k: rng.standard_normal(s) for k, s in SHAPES.items()} for _ in range(steps)]
    scale = [{k: 10.0 ** rng.uniform(-1.0, 0.3) for k in SHAPES} for _ in range(steps)]
    holes = [{k: rng.random(s) < 0.1 for k, s in SHAPES.items()} for _ in range(steps)]

    def grad_fn(t, theta):
        out = {}
        for k, th in theta.items():
            g = (0.5 * th + noise[t - 1][k]) * scale[t - 1][k]
            g[holes[t - 1][k]] = 0.0
            out[k] = g
        return out

    return theta0, grad_fn


def every_impl_and_case(impls, cases):
    """The parametrization of a trajectory test: every implementation
    (``impl``, a key of ``impls``) on every case (``case``, of ``cases``)."""
    def parametrize(test):
        return pytest.mark.parametrize("impl", impls)(pytest.mark.parametrize("case", cases)(test))
    return parametrize


def schedule(start, more):
    """``(start, hyper_at)``: ``hyper_at(t)`` gives the hyperparameters
    before step t: ``start``, hypergrad_lr doubled from step 10, weight decay
    raised by 0.05 from 15, the rule's own changes ``more(t, hp)`` (in
    place), and lr assigned (alpha restarts) at 30."""

    def hyper_at(t):
        hp = dict(start)
        if t >= 10:
            hp["hypergrad_lr"] = start["hypergrad_lr"] * 2
        if t >= 15:
            hp["weight_decay"] = start["weight_decay"] + 0.05
        more(t, hp)
        if t >= 30:
            hp["lr"] = start["lr"] * 0.7
        return hp

    return start, hyper_at


def flat(tree):
    return np.concatenate([np.asarray(tree[k], np.float64).reshape(-1) for k in SHAPES])


def unflat(vec):
    out, at = {}, 0
    for k, s in SHAPES.items():
        n = int(np.prod(s))
        out[k] = vec[at:at + n].reshape(s).copy()
        at += n
    return out


def run_ours(opt, grad_fn, theta0, hyper_at, steps):
    """``opt`` (fa or reference) on the problem; ``hyper_at(t)`` is set on it
    before step t. Returns per step ``(theta, alpha)``."""
    params = {k: v.copy() for k, v in theta0.items()}
    out = []
    for t in range(1, steps + 1):
        for name, value in hyper_at(t).items():
            setattr(opt, name, value)
        opt.update(params, grad_fn(t, params))
        out.append(({k: v.copy() for k, v in params.items()}, adapted_lr(opt)))
    return out


def adapted_lr(opt):
    """The adapted alpha after the last step: fa's ``adapted["lr"]``, or the
    reference's (both keep it per tensor as ``state[key]["lr"]``)."""
    if hasattr(opt, "adapted"):
        return float(opt.adapted["lr"])
    return float(opt.adapted_lr)


def max_rel_err(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    err = np.max(np.abs(got - want))
    return 0.0 if err == 0 else err / np.max(np.abs(want))


def assert_same_trajectory(ours, theirs, theta0, alpha0, *, tol=1e-10, min_alpha_change=0.05):
    """Parameters (per tensor, relative to its largest entry) and alpha
    (relative) within ``tol`` after every step; and the run exercised what
    it tests: the parameters moved, and alpha moved by at least
    ``min_alpha_change`` (relative to alpha0) unless that is None."""
    assert len(ours) == len(theirs)
    worst = 0.0
    for t, ((p, a), (q, b)) in enumerate(zip(ours, theirs), start=1):
        for k in SHAPES:
            err = max_rel_err(p[k], q[k])
            assert err <= tol, f"step {t}, tensor {k!r}: relative error {err:.3g}"
            worst = max(worst, err)
        err = abs(a - b) / abs(b) if b != 0 else abs(a)
        assert err <= tol, f"step {t}: alpha {a!r} vs {b!r}"
    assert min(max_rel_err(ours[-1][0][k], theta0[k]) for k in SHAPES) > 1e-3
    if min_alpha_change is not None:
        moved = max(abs(a - alpha0) for _, a in ours) / alpha0
        assert moved >= min_alpha_change, f"alpha moved by {moved:.3g} of alpha0 only"
    return worst


def torch_with_hypergradient(torch_cls, torch_kwargs, grad_fn, theta0, hyper_at, steps):
    """torch.optim's own update (``torch_cls``, float64, one param group)
    with the hypergradient rule wrapped around it, independently of the
    fastadapt code: before step t, ``alpha_t = alpha_{t-1} + beta * g_t .
    d_{t-1}``, where ``d_{t-1} = -(theta_{t-1} - theta_{t-2}) / alpha_{t-1}``
    is the direction torch actually stepped along at step t-1 (0 before the
    first step), and torch's ``lr`` is set to alpha_t. Assigning ``lr``
    through ``hyper_at`` restarts alpha from it. Returns per step
    ``(theta, alpha)``."""
    import torch

    names = list(SHAPES)
    tparams = [torch.nn.Parameter(torch.from_numpy(theta0[k].copy())) for k in names]
    opt = torch_cls(tparams, foreach=False, **torch_kwargs)
    alpha = beta = None
    lr_set = None
    d_prev = np.zeros_like(flat(theta0))
    out = []
    for t in range(1, steps + 1):
        hyper = hyper_at(t)
        beta = hyper.get("hypergrad_lr", beta)
        if "lr" in hyper and hyper["lr"] != lr_set:
            alpha = lr_set = hyper["lr"]
        for name, value in hyper.items():
            if name != "hypergrad_lr" and name != "lr":
                opt.param_groups[0][name] = value
        theta_prev = flat({k: p.detach().numpy() for k, p in zip(names, tparams)})
        grads = grad_fn(t, {k: p.detach().numpy().copy() for k, p in zip(names, tparams)})
        g = flat(grads)
        g = g + opt.param_groups[0]["weight_decay"] * theta_prev  # the L2 gradient the rule sees
        alpha = alpha + beta * float(np.dot(g, d_prev))
        opt.param_groups[0]["lr"] = alpha
        for k, p in zip(names, tparams):
            p.grad = torch.from_numpy(grads[k].copy())
        opt.step()
        theta = flat({k: p.detach().numpy() for k, p in zip(names, tparams)})
        d_prev = -(theta - theta_prev) / alpha
        out.append((unflat(theta), alpha))
    return out


def same_trajectory_as(other, opt_cls, start, hyper_at, seed, steps):
    """``opt_cls(**start)`` and ``other(grad_fn, theta0, hyper_at, steps)``
    on ``problem(seed, steps)``, ``hyper_at(t)`` set before step t: the same
    parameters and alpha after every step."""
    theta0, grad_fn = problem(seed, steps)
    ours = run_ours(opt_cls(**start), grad_fn, theta0, hyper_at, steps)
    theirs = other(grad_fn, theta0, hyper_at, steps)
    assert_same_trajectory(ours, theirs, theta0, start["lr"])


def hypergrad_lr_zero_is_torch(torch_cls, opt_cls, start, state_keys, more_changes=None):
    """``opt_cls`` with hypergrad_lr 0 (else ``start``) against
    ``torch_cls`` to 1e-12, both changed before step 5 (lr halved), 12
    (weight decay up by 0.01), 20 (lr doubled) and as ``more_changes`` says
    ({step: {hyper: value}}): alpha stays lr (assigned mid-run as torch's
    group lr), and the steps and ``state_keys`` are torch's."""
    hp = dict(start)
    del hp["hypergrad_lr"]
    changes = {5: dict(lr=hp["lr"] * 0.5), 12: dict(weight_decay=0.01 + hp["weight_decay"]),
               20: dict(lr=hp["lr"] * 2)}
    for k, more in (more_changes or {}).items():
        changes[k] = {**changes.get(k, {}), **more}
    seen = []
    torch_run(torch_cls, opt_cls(hypergrad_lr=0.0, **hp), torch_kwargs=hp, changes=lambda k: changes.get(k, {}),
              state_keys=state_keys, tol=1e-12, on_step=lambda t, o: seen.append(adapted_lr(o)))
    assert seen == [hp["lr"]] * 5 + [hp["lr"] * 0.5] * 15 + [hp["lr"] * 2] * 10
