"""Run one of our Schedule-Free optimizers (the NumPy reference or fa's
class) and the schedulefree package's on the same random trajectory:
several tensors, hyperparameters changed mid-run, eval()/train() switches at
given steps; parameters, ``z`` (and ``exp_avg_sq``) and the group scalars
the package keeps (lr_max, weight_sum, scheduled_lr) compared after every
step and every switch."""

import inspect
import itertools

import numpy as np
import pytest

from torch_trajectory import SHAPES, gradient, max_rel_err

# The package keeps these per parameter group; we carry them per key.
GROUP_SCALARS = ("lr_max", "weight_sum", "scheduled_lr")
OPTIONS = [dict(zip(("weight_decay", "warmup_steps", "r", "weight_lr_power"), v))
           for v in itertools.product([0.0, 0.05], [0, 7], [0.0, 1.5], [2.0, 0.0])]


def package():
    pytest.importorskip("torch")
    return pytest.importorskip("schedulefree")


def run_vs_package(pkg_cls, ours, *, kwargs, changes=lambda k: {}, steps=36, dtype=np.float64, seed=0,
                   state_keys=("z",), maximize=False, switch_at=(), foreach=False, tol=1e-13):
    """``changes(k)`` gives the hyperparameters set on both before step k
    (0-based); after step k + 1 in ``switch_at`` both go to eval mode
    (twice), are compared, and go back to train mode (twice). ``maximize``:
    ours ascends, the package (which has no such option) gets -g. Returns
    the largest relative error seen."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    params = {name: rng.standard_normal(shape).astype(dtype) for name, shape in SHAPES.items()}
    start = {name: p.copy() for name, p in params.items()}
    tparams = {name: torch.nn.Parameter(torch.from_numpy(p.copy())) for name, p in params.items()}
    opt = pkg_cls(list(tparams.values()), foreach=foreach, **kwargs)
    opt.train()  # the package starts in eval mode; ours in train mode
    worst = 0.0

    def compare(when, with_state=True):
        nonlocal worst
        for name, tp in tparams.items():
            errs = [max_rel_err(params[name], tp.detach().numpy())]
            assert params[name].dtype == dtype
            if with_state:
                tstate = opt.state[tp]
                for key in state_keys:
                    errs.append(max_rel_err(ours.state[name][key], tstate[key].numpy()))
                    assert ours.state[name][key].dtype == dtype
                for key in GROUP_SCALARS:
                    got = ours.state[name][key]
                    # the same float64 expressions in the same order: equal, not close
                    assert got.dtype == np.float64 and got.shape == ()
                    assert float(got) == opt.param_groups[0][key], (when, name, key)
            err = max(errs)
            assert err <= tol, f"{when}, tensor {name!r}: relative error {err:.3g} > {tol:g}"
            worst = max(worst, err)

    for k in range(steps):
        for name, value in changes(k).items():
            setattr(ours, name, value)
            opt.param_groups[0][name] = value
        grads = {name: gradient(rng, p, dtype) for name, p in params.items()}
        for name, tp in tparams.items():
            tp.grad = torch.from_numpy(-grads[name] if maximize else grads[name].copy())
        opt.step()
        ours.update(params, grads)
        compare(f"step {k + 1}")
        if k + 1 in switch_at:
            for _ in range(2):   # a second eval() changes nothing, in both
                opt.eval()
                ours.eval(params)
                compare(f"eval after step {k + 1}", with_state=False)
            for _ in range(2):
                opt.train()
                ours.train(params)
                compare(f"train after step {k + 1}", with_state=False)
    # the trajectory went somewhere: a wrong rule could not pass by moving nothing
    moved = min(max_rel_err(params[n], start[n]) for n in params)
    assert moved > 1e-4, moved
    return worst


def eval_and_train_as_the_package(pkg_cls, ours, b, kwargs):
    """Before the first step eval/train move nothing (there is no z yet); a
    second eval() or train() changes nothing; update() in eval mode raises
    (the package: any Exception; ours: RuntimeError) and changes nothing;
    eval writes x, the point y = (1 - b) z + b x mixes with z, and train
    writes y back (both to rounding). ``b``: beta1 or momentum."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    p = {"w": rng.standard_normal(9)}
    tp = torch.nn.Parameter(torch.from_numpy(p["w"].copy()))
    theirs = pkg_cls([tp], **kwargs)
    before = p["w"].copy()
    theirs.eval()
    ours.eval(p)
    assert np.array_equal(p["w"], before) and np.array_equal(tp.detach().numpy(), before)
    g = rng.standard_normal(9)
    tp.grad = torch.from_numpy(g.copy())
    with pytest.raises(Exception, match="train mode"):
        theirs.step()
    with pytest.raises(RuntimeError, match="eval mode"):
        ours.update(p, {"w": g})
    assert np.array_equal(p["w"], before) and ours.step_count == 0 and not ours.state
    theirs.train()
    ours.train(p)
    for _ in range(3):
        g = rng.standard_normal(9)
        tp.grad = torch.from_numpy(g.copy())
        theirs.step()
        ours.update(p, {"w": g})
    y = p["w"].copy()
    z = ours.state["w"]["z"].copy()
    assert max_rel_err(z, y) > 1e-3          # the points differ, so eval has something to do
    ours.eval(p)
    theirs.eval()
    assert max_rel_err(p["w"], tp.detach().numpy()) < 1e-14
    assert max_rel_err((1.0 - b) * z + b * p["w"], y) < 1e-13
    x = p["w"].copy()
    ours.eval(p)
    assert np.array_equal(p["w"], x)
    with pytest.raises(RuntimeError, match="eval mode"):
        ours.update(p, {"w": g})
    assert np.array_equal(p["w"], x) and ours.step_count == 3
    ours.train(p)
    ours.train(p)
    assert max_rel_err(p["w"], y) < 1e-13


def package_changes(lr, more):
    """Before step k: a decaying lr every step (from ``lr``); the other
    hyperparameters moved mid-run (warmup_steps lengthened while still
    warming up, so the schedule jumps), and ``more`` ({step: {hyper:
    value}}): the rule's own."""
    def changes(k):
        out = {"lr": lr * (1.0 - k / 60)}
        if k == 4:
            out.update(warmup_steps=12)
        if k == 17:
            out.update(weight_decay=0.1, r=0.5)
        if k == 24:
            out.update(weight_lr_power=1.0)
        out.update(more.get(k, {}))
        return out
    return changes


def defaults_are_the_packages(pkg_cls, ref_cls, fa_cls):
    """The reference's defaults are ``pkg_cls``'s (foreach aside; plus
    maximize, False) and fa_cls's are the reference's."""
    params = inspect.signature(pkg_cls).parameters
    theirs = {k: p.default for k, p in params.items() if k not in ("params", "foreach")}
    assert {k: v for k, v in ref_cls.defaults.items() if k != "maximize"} == theirs
    assert ref_cls.defaults["maximize"] is False
    assert {k: v for k, v in fa_cls().hyperparameters.items() if k in ref_cls.defaults} == ref_cls.defaults


def zero_lr_start_matches_package(pkg_cls, impl, lr, state_keys):
    """lr 0 for the first steps: every weight is 0 and the package's
    ZeroDivisionError branch sets the averaging weight to 0; then ``lr``."""
    kwargs = dict(lr=0.0, warmup_steps=3)
    run_vs_package(pkg_cls, impl(**kwargs), kwargs=kwargs, state_keys=state_keys,
                   changes=lambda k: {"lr": 0.0 if k < 4 else lr}, switch_at=(2, 10))


def float32_stays_float32_and_near_package(pkg_cls, impl, lr, state_keys):
    kwargs = dict(lr=lr, weight_decay=0.01, warmup_steps=4)
    run_vs_package(pkg_cls, impl(**kwargs), kwargs=kwargs, dtype=np.float32, state_keys=state_keys,
                   switch_at=(10,), tol=1e-4)   # float32 op order differs: a sanity check
