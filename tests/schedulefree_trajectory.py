"""Run one of our Schedule-Free optimizers (the NumPy reference or fa's
class) and the schedulefree package's on the same random trajectory:
several tensors, hyperparameters changed mid-run, eval()/train() switches at
given steps; parameters, ``z`` (and ``exp_avg_sq``) and the group scalars
the package keeps (lr_max, weight_sum, scheduled_lr) compared after every
step and every switch."""

import numpy as np
import pytest

from torch_trajectory import SHAPES, gradient, max_rel_err

# The package keeps these per parameter group; we carry them per key.
GROUP_SCALARS = ("lr_max", "weight_sum", "scheduled_lr")


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
