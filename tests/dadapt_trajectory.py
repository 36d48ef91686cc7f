"""Run a fastadapt D-Adaptation optimizer (the NumPy reference or the fused
class) and the ``dadaptation`` package's torch optimizer side by side on the
same random trajectory (several tensors, odd sizes, hyperparameters changed
mid-run, optionally a second parameter group) and compare parameters, state
buffers and the learned scalars (kept per group by the package, per key by
fastadapt) after every step."""

import numpy as np
import pytest

from torch_trajectory import max_rel_err

SHAPES = {"a": (7,), "b": (3, 5), "c": (1,), "d": (33, 17), "e": (1000,)}


def gradient(rng, p, target):
    """A noisy gradient of ``|p - target|^2 / 2`` (so that d has something to
    find: pure noise leaves D-Adaptation's lower bound near d0), with some
    exact zeros and a scale that changes every step."""
    scale = 10.0 ** rng.uniform(-0.5, 0.5)
    g = (p - target + 0.3 * rng.standard_normal(p.shape)) * scale
    g[rng.random(p.shape) < 0.1] = 0.0
    return g


def rel_err(got, want):
    """|got - want| / |want| for scalars (0 when both are 0)."""
    got, want = float(got), float(want)
    return 0.0 if got == want else abs(got - want) / max(abs(want), 1e-300)


def learned_of(opt, key):
    """The learned scalars fastadapt keeps per key (0-d float64 arrays)."""
    return {n: float(v) for n, v in opt.state[key].items() if np.ndim(v) == 0}


def run(pkg_cls, ours, *, pkg_kwargs, changes, buffers, learned, steps=32, seed=0, group2=(), group2_hyper=None,
        tol=1e-10, zero_steps=(), negate=False):
    """``changes(k)`` gives the hyperparameters set on both sides before step
    k (0-based), on the package's every group except for names in
    ``group2_hyper``, which the tensors ``group2`` keep in their own group.
    ``buffers`` maps fastadapt's state names to the package's (a tuple of
    names compared per tensor); ``learned`` are the package's group scalars
    compared against fastadapt's tensor scalars. Gradients are zero at the
    steps in ``zero_steps``; ``negate``: the package gets -g (fastadapt's
    maximize). Returns the largest relative error seen."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    params = {name: rng.standard_normal(shape) for name, shape in SHAPES.items()}
    start = {name: p.copy() for name, p in params.items()}
    target = {name: 3.0 * rng.standard_normal(shape) for name, shape in SHAPES.items()}
    tparams = {name: torch.nn.Parameter(torch.from_numpy(p.copy())) for name, p in params.items()}
    groups = [{"params": [tparams[n] for n in SHAPES if n not in group2]}]
    if group2:
        groups.append({"params": [tparams[n] for n in group2], **(group2_hyper or {})})
    opt = pkg_cls(groups, **pkg_kwargs)
    worst = 0.0
    for k in range(steps):
        for name, value in changes(k).items():
            setattr(ours, name, value)
            for i, group in enumerate(opt.param_groups):
                if not (i == 1 and group2_hyper and name in group2_hyper):
                    group[name] = value
        grads = {name: gradient(rng, p, target[name]) for name, p in params.items()}
        if k in zero_steps:
            grads = {name: np.zeros_like(g) for name, g in grads.items()}
        for name, tp in tparams.items():
            tp.grad = torch.from_numpy(-grads[name] if negate else grads[name].copy())
        opt.step()
        ours.update(params, grads)
        for name, tp in tparams.items():
            errs = [max_rel_err(params[name], tp.detach().numpy())]
            for mine, theirs in buffers.items():
                if mine in ours.state.get(name, {}) or theirs in opt.state[tp]:
                    errs.append(max_rel_err(ours.state[name][mine], opt.state[tp][theirs].numpy()))
            err = max(errs)
            assert err <= tol, f"step {k + 1}, tensor {name!r}: relative error {err:.3g} > {tol:g}"
            worst = max(worst, err)
        mine = learned_of(ours, "a")
        for n in learned:
            err = rel_err(mine[n], opt.param_groups[0][n])
            assert err <= tol, f"step {k + 1}, {n}: {mine[n]!r} vs the package's {opt.param_groups[0][n]!r}"
            worst = max(worst, err)
        for name in SHAPES:  # one value for every key
            assert {n: learned_of(ours, name)[n] for n in learned} == {n: mine[n] for n in learned}, name
    # the trajectory went somewhere and d grew: a rule that moves nothing cannot pass
    moved = min(max_rel_err(params[n], start[n]) for n in params)
    assert moved > 1e-6, moved
    assert learned_of(ours, "a")["d"] > 2 * pkg_kwargs.get("d0", 1e-6)
    return worst


def learning_pair(fa_cls, ref_cls, options, dtype, *, steps=8, zero_steps=(), per_key=None, changes=(), seed=0,
                  **prep):
    """The fused class against the NumPy reference bit for bit after every
    step, on gradients of ``|p - target|^2 / 2`` plus noise (so that d is
    learned, not left at d0) over rule_parity's tree (odd sizes, a 0-d and an
    empty tensor, a pool-sized one); all-zero gradients at ``zero_steps``;
    ``changes[k]`` set on both after step k; ``prep``: max_grad_norm /
    nonfinite. Returns the fused optimizer."""
    from helpers import copy_tree, trees_same_bits
    from rule_parity import assert_same_state, make_tree, patch_per_key

    rng = np.random.default_rng(seed)
    ours = fa_cls(overrides=per_key, **prep, **options)
    theirs = patch_per_key(ref_cls(**prep, **options), per_key or {})
    p = make_tree(rng, dtype)
    q = copy_tree(p)
    target = make_tree(rng, dtype)

    def grad(x, t, zero):
        if isinstance(x, dict):
            return {name: grad(v, t[name], zero) for name, v in x.items()}
        g = np.asarray((x - t + dtype(0.3) * rng.standard_normal(x.shape).astype(dtype)), dtype=dtype)
        return np.zeros_like(g) if zero else g

    for k in range(steps):
        g = grad(p, target, k in zero_steps)
        ours.update(p, g)
        theirs.update(q, g)
        assert trees_same_bits(p, q), f"params differ after step {k + 1}"
        assert_same_state(ours, theirs)
        for name, value in (changes[k] if k < len(changes) else {}).items():
            setattr(ours, name, value)
            setattr(theirs, name, value)
    return ours
