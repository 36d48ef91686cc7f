"""fastadapt.torch.FusedOptimizer against torch.optim on a small nn.Module:
parity over 20 steps (two param groups, an lr scheduler), params without
gradients, state_dict round trips, errors, and the import boundary
(fastadapt never imports torch)."""

import copy
import pickle
import weakref
import io
import os
import subprocess
import sys

import numpy as np
import pytest

import fastadapt

# The fastadapt this test process imported (the installed package in CI, a
# checkout's python/ in development): the subprocesses must import the same one.
PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(fastadapt.__file__)))


def _run(code):
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)


def test_importing_fastadapt_does_not_import_torch():
    r = _run("import sys, fastadapt; print('torch' in sys.modules)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_fastadapt_torch_without_torch_says_what_is_missing():
    # sys.modules["torch"] = None makes `import torch` fail as if not installed
    r = _run("import sys; sys.modules['torch'] = None\nimport fastadapt.torch")
    assert r.returncode != 0
    assert "ImportError: fastadapt.torch needs PyTorch" in r.stderr


torch = pytest.importorskip("torch")
from fastadapt.torch import FusedOptimizer  # noqa: E402

# (id, rule, torch class, options): the second group's own values are GROUP2[id]
CASES = [
    ("adam", "adam", torch.optim.Adam, dict(lr=1e-2, weight_decay=0.05, amsgrad=True)),
    ("adamw", "adamw", torch.optim.AdamW, dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1)),
    ("sgd-nesterov", "sgd", torch.optim.SGD, dict(lr=0.05, momentum=0.9, weight_decay=0.01, nesterov=True)),
    ("sgd-momentum", "sgd", torch.optim.SGD, dict(lr=0.05, momentum=0.8, dampening=0.1)),
    ("adagrad", "adagrad", torch.optim.Adagrad, dict(lr=0.05, lr_decay=0.01, initial_accumulator_value=0.1)),
    ("rmsprop", "rmsprop", torch.optim.RMSprop, dict(lr=1e-2, momentum=0.5, centered=True, weight_decay=0.01)),
    ("nadam", "nadam", torch.optim.NAdam, dict(lr=1e-2, weight_decay=0.01, momentum_decay=3e-3)),
    ("radam", "radam", torch.optim.RAdam, dict(lr=1e-2, weight_decay=0.05, decoupled_weight_decay=True)),
    ("adamax", "adamax", torch.optim.Adamax, dict(lr=2e-2, weight_decay=0.01)),
    ("adadelta", "adadelta", torch.optim.Adadelta, dict(lr=1.0, rho=0.8, weight_decay=0.01)),
]
GROUP2 = {"adam": dict(lr=3e-3, weight_decay=0.0), "adamw": dict(lr=2e-3, betas=(0.9, 0.999)),
          "sgd-nesterov": dict(lr=0.02, momentum=0.5), "sgd-momentum": dict(lr=0.02, dampening=0.0),
          "adagrad": dict(lr=0.02, eps=1e-8), "rmsprop": dict(lr=3e-3, alpha=0.9),
          "nadam": dict(lr=3e-3, momentum_decay=5e-3), "radam": dict(lr=3e-3, weight_decay=0.0),
          "adamax": dict(lr=5e-3, betas=(0.8, 0.99)), "adadelta": dict(lr=0.5, rho=0.95)}
STATE_KEYS = {"adam": ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"), "adamw": ("exp_avg", "exp_avg_sq"),
              "sgd": ("momentum_buffer",), "adagrad": ("sum",),
              "rmsprop": ("square_avg", "grad_avg", "momentum_buffer"),
              "nadam": ("exp_avg", "exp_avg_sq", "mu_product"), "radam": ("exp_avg", "exp_avg_sq"),
              "adamax": ("exp_avg", "exp_inf"), "adadelta": ("square_avg", "acc_delta")}


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(6, 9)
        self.fc2 = torch.nn.Linear(9, 4)
        self.emb = torch.nn.Parameter(torch.randn(5))  # used only in some steps

    def forward(self, x, use_emb=True):
        y = self.fc2(torch.tanh(self.fc1(x)))
        return y + self.emb[:4].sum() if use_emb else y


def make_net(dtype=torch.float64):
    torch.manual_seed(0)
    return Net().to(dtype)


def data(k, dtype=torch.float64):
    g = torch.Generator().manual_seed(100 + k)
    return torch.randn(12, 6, generator=g, dtype=dtype), torch.randn(12, 4, generator=g, dtype=dtype)


def groups(net, case, group2=None):
    return [{"params": list(net.fc1.parameters()) + [net.emb]},
            {"params": net.fc2.parameters(), **(GROUP2[case] if group2 is None else group2)}]


def train(net, opt, sched, steps, start=0, use_emb=lambda k: True):
    for k in range(start, start + steps):
        x, y = data(k, next(net.parameters()).dtype)
        opt.zero_grad()
        ((net(x, use_emb(k)) - y) ** 2).mean().backward()
        opt.step()
        sched.step()


def rel(a, b):
    scale = b.abs().max().item()
    err = (a - b).abs().max().item()
    return 0.0 if err == 0 else err / scale


@pytest.fixture
def float64_scalars():
    """torch keeps some scalar state (NAdam's mu_product) in the default dtype:
    float32 unless the default is float64, and then it alone is ~1e-9 off."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


@pytest.mark.parametrize("case,rule,torch_cls,kw", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("skip_emb", [False, True], ids=["all-grads", "some-steps-without-grad"])
def test_parity_with_torch_optim(case, rule, torch_cls, kw, skip_emb, float64_scalars):
    nets = [make_net(), make_net()]
    ref = torch_cls(groups(nets[0], case), foreach=False, **kw)
    ours = FusedOptimizer(groups(nets[1], case), rule=rule, **kw)
    start = [p.detach().clone() for p in nets[1].parameters()]
    use_emb = (lambda k: k % 3 != 1) if skip_emb else (lambda k: True)
    for net, opt in zip(nets, (ref, ours)):
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=6, gamma=0.5)
        train(net, opt, sched, 20, use_emb=use_emb)
    assert ours.param_groups[0]["lr"] == ref.param_groups[0]["lr"] == kw["lr"] * 0.125
    for (name, p), q, p0 in zip(nets[1].named_parameters(), nets[0].parameters(), start):
        assert rel(p.detach(), q.detach()) <= 1e-12, name
        assert rel(p.detach(), p0) > 1e-3, name  # it moved: a rule that did nothing could not pass
        mine, theirs = ours.state[p], ref.state[q]
        if "step" in theirs:
            assert mine["step"].item() == theirs["step"].item(), name
        for key in STATE_KEYS[rule]:
            if theirs.get(key) is not None:
                assert rel(mine[key], theirs[key]) <= 1e-12, (name, key)
    if skip_emb:  # the embedding missed 7 of 20 steps (k = 1, 4, ..., 19): its own count, as torch's
        assert ours.state[nets[1].emb]["step"].item() == 13


def test_lr_set_through_param_groups_is_used_at_the_next_step():
    net = make_net()
    opt = FusedOptimizer(net.parameters(), rule="sgd", lr=0.1)
    p = net.fc1.bias
    for lr in (0.1, 0.0, 0.05):
        opt.param_groups[0]["lr"] = lr
        opt.zero_grad()
        x, y = data(0)
        ((net(x) - y) ** 2).mean().backward()
        before, g = p.detach().clone(), p.grad.clone()
        opt.step()
        assert torch.equal(p.detach(), before - lr * g)


@pytest.mark.parametrize("rule", ["adam", "rmsprop", "nadam", "prodigy", "schedulefree-adamw"])
def test_state_dict_round_trip_mid_run_equals_an_uninterrupted_run(rule):
    kw = {"prodigy": dict(lr=1.0), "schedulefree-adamw": dict(lr=1e-2, warmup_steps=4)}.get(rule, dict(lr=1e-2))

    def build(net):
        g = [{"params": list(net.fc1.parameters()) + [net.emb]}, {"params": net.fc2.parameters()}]
        if rule in ("adam", "rmsprop", "nadam"):
            g[1]["lr"] = 3e-3
        opt = FusedOptimizer(g, rule=rule, **kw)
        return opt, torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)

    # two cohorts at the checkpoint; the learning-rate-free rules need every gradient in every step
    use_emb = (lambda k: True) if rule in ("prodigy", "schedulefree-adamw") else (lambda k: k % 4 != 2)
    whole = make_net()
    opt_whole, sched_whole = build(whole)
    train(whole, opt_whole, sched_whole, 20, use_emb=use_emb)

    half = make_net()
    opt, sched = build(half)
    train(half, opt, sched, 11, use_emb=use_emb)
    buf = io.BytesIO()
    torch.save({"model": half.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=False)
    resumed = make_net()
    resumed.load_state_dict(ckpt["model"])
    opt2, sched2 = build(resumed)
    opt2.load_state_dict(ckpt["opt"])
    sched2.load_state_dict(ckpt["sched"])
    train(resumed, opt2, sched2, 9, start=11, use_emb=use_emb)
    for (name, a), b in zip(whole.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), name
    sd_a, sd_b = opt_whole.state_dict(), opt2.state_dict()
    assert sd_a["param_groups"] == sd_b["param_groups"]
    for k, entry in sd_a["state"].items():
        assert set(entry) == set(sd_b["state"][k])
        for n, v in entry.items():
            assert torch.equal(v, sd_b["state"][k][n]), (k, n)
            assert v.dtype == sd_b["state"][k][n].dtype


def test_state_is_a_view_of_the_fused_buffers_in_torch_format():
    net = make_net(torch.float32)
    opt = FusedOptimizer(net.parameters(), rule="adam", lr=1e-2)
    train(net, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0), 2)
    sd = opt.state_dict()
    assert sorted(sd["state"]) == list(range(5))
    entry = sd["state"][0]
    assert entry["step"].dtype == torch.float32 and entry["step"].item() == 2
    assert entry["exp_avg"].dtype == torch.float32 and entry["exp_avg"].shape == next(net.parameters()).shape
    # a torch.optim.Adam checkpoint of the same state continues the same way
    net2 = copy.deepcopy(net)
    ref = torch.optim.Adam(net2.parameters(), lr=1e-2, foreach=False)
    ref.load_state_dict(copy.deepcopy(sd))
    for n, o in ((net, opt), (net2, ref)):
        x, y = data(7, torch.float32)
        o.zero_grad()
        ((n(x) - y) ** 2).mean().backward()
        o.step()
    for a, b in zip(net.parameters(), net2.parameters()):
        assert rel(a.detach(), b.detach()) <= 1e-6


def test_the_step_bumps_autograd_versions_and_skips_params_without_grad():
    net = make_net()
    opt = FusedOptimizer(net.parameters(), rule="adam")
    x, y = data(0)
    ((net(x, use_emb=False) - y) ** 2).mean().backward()
    versions = [p._version for p in net.parameters()]
    emb = net.emb.detach().clone()
    opt.step()
    assert [p._version for p in net.parameters()] == [v + (p is not net.emb) for v, p in
                                                      zip(versions, net.parameters())]
    assert torch.equal(net.emb.detach(), emb) and net.emb not in opt.state


def test_closure_is_called_with_grad_enabled():
    net = make_net()
    opt = FusedOptimizer(net.parameters(), rule="sgd", lr=0.1)
    x, y = data(0)

    def closure():
        opt.zero_grad()
        loss = ((net(x) - y) ** 2).mean()
        loss.backward()
        return loss

    with torch.no_grad():
        loss = opt.step(closure)
    assert loss.item() > 0 and net.fc1.weight.grad is not None


def test_bad_params_and_options_are_refused_clearly():
    with pytest.raises(TypeError, match=r"param_groups\[0\]\['params'\]\[0\] is on meta"):
        FusedOptimizer([torch.nn.Parameter(torch.zeros(3, device="meta"))])
    with pytest.raises(TypeError, match="float32 and float64"):
        FusedOptimizer([torch.nn.Parameter(torch.zeros(3, dtype=torch.float16))])
    nc = torch.nn.Parameter(torch.zeros(4, 3).t())
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]\[0\] is not contiguous"):
        FusedOptimizer([nc])
    with pytest.raises(TypeError, match="no 'fused' option"):
        FusedOptimizer([torch.nn.Parameter(torch.zeros(3))], fused=True)
    with pytest.raises(TypeError, match="rule 'adam' has no hyperparameter 'momentum'"):
        FusedOptimizer([torch.nn.Parameter(torch.zeros(3))], momentum=0.9)
    with pytest.raises(ValueError, match="unknown rule 'adamm'"):
        FusedOptimizer([torch.nn.Parameter(torch.zeros(3))], rule="adamm")
    with pytest.raises(ValueError, match=r"Invalid .*lr.*-1"):
        FusedOptimizer([torch.nn.Parameter(torch.zeros(3))], lr=-1.0)
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['max_grad_norm'\].*not per group"):
        FusedOptimizer([{"params": [torch.nn.Parameter(torch.zeros(3))]},
                        {"params": [torch.nn.Parameter(torch.zeros(3))], "max_grad_norm": 1.0}])


@pytest.mark.parametrize("option", [{"state_bits": 8}, {"state_dtype": "int8"}, {"state_dtype": "bfloat16"},
                                    {"master_weights": True}, {"stochastic_rounding": True}])
def test_low_precision_options_are_refused_up_front(option):
    """Low-precision state is for the NumPy optimizers: the adapter's state is torch tensors of the params'
    dtype, which its state_dict and state[p] hand out. Refused at construction and in a param group."""
    (name, value), = option.items()
    with pytest.raises(ValueError, match=rf"{name}={value!r}.*fastadapt's NumPy optimizers"):
        FusedOptimizer([torch.nn.Parameter(torch.zeros(3))], **option)
    net = torch.nn.Linear(3, 2)
    opt = FusedOptimizer(net.parameters(), state_bits=32, state_dtype=None)   # the values that leave it off
    net(torch.ones(1, 3)).sum().backward()
    before = [p.detach().clone() for p in net.parameters()]
    if name == "state_bits":
        return  # (not a param-group entry: state_dtype is)
    opt.param_groups[0][name] = value
    with pytest.raises(ValueError, match=rf"param_groups\[0\]\['{name}'\] = {value!r}"):
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters())) and not opt.state


def test_bad_gradients_and_group_values_change_nothing():
    emb = torch.nn.Embedding(10, 3, sparse=True).double()
    w = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = FusedOptimizer([w, emb.weight], rule="adam", lr=0.1)
    (emb(torch.tensor([1, 2])).sum() + w.sum()).backward()
    before = [w.detach().clone(), emb.weight.detach().clone()]
    with pytest.raises(TypeError, match=r"param_groups\[0\]\['params'\]\[1\] has a torch.sparse_coo gradient"):
        opt.step()
    emb.weight.grad = None
    w.grad = torch.ones(3, 2, dtype=torch.float64).t()[0]  # a strided (non-contiguous) view
    with pytest.raises(ValueError, match=r"\['params'\]\[0\]\.grad is not contiguous"):
        opt.step()
    w.grad = torch.ones(3, dtype=torch.float64)
    opt.param_groups[0]["lr"] = -0.5
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['lr'\]"):
        opt.step()
    assert torch.equal(w.detach(), before[0]) and torch.equal(emb.weight.detach(), before[1])
    assert len(opt.state) == 0
    opt.param_groups[0]["lr"] = 0.1
    opt.step()
    assert not torch.equal(w.detach(), before[0])


def test_hyperparameters_set_mid_run_match_torch():
    """lr, betas, eps and weight_decay set by hand in param_groups between
    steps (per group) take effect at the next step, as in torch.optim.Adam."""
    changes = {4: (0, dict(lr=3e-3)), 7: (1, dict(betas=(0.8, 0.99), eps=1e-6)),
               11: (0, dict(weight_decay=0.0)), 14: (1, dict(lr=1e-1, weight_decay=0.2))}
    nets = [make_net(), make_net()]
    opts = [torch.optim.Adam(groups(nets[0], "adam"), lr=1e-2, weight_decay=0.05, foreach=False),
            FusedOptimizer(groups(nets[1], "adam"), rule="adam", lr=1e-2, weight_decay=0.05)]
    for k in range(18):
        for net, opt in zip(nets, opts):
            if k in changes:
                gi, values = changes[k]
                opt.param_groups[gi].update(values)
            x, y = data(k)
            opt.zero_grad()
            ((net(x) - y) ** 2).mean().backward()
            opt.step()
        for p, q in zip(nets[1].parameters(), nets[0].parameters()):
            assert rel(p.detach(), q.detach()) <= 1e-12, k
    assert opts[1].param_groups[1]["betas"] == (0.8, 0.99)


def test_closure_steps_with_its_gradients_as_torch():
    nets = [make_net(), make_net()]
    opts = [torch.optim.SGD(nets[0].parameters(), lr=0.1, momentum=0.9),
            FusedOptimizer(nets[1].parameters(), rule="sgd", lr=0.1, momentum=0.9)]
    for k in range(4):
        x, y = data(k)
        for net, opt in zip(nets, opts):
            def closure():
                opt.zero_grad()
                loss = ((net(x) - y) ** 2).mean()
                loss.backward()
                return loss
            with torch.no_grad():
                loss = opt.step(closure)
            assert loss.requires_grad and loss.item() > 0
    for p, q in zip(nets[1].parameters(), nets[0].parameters()):
        assert rel(p.detach(), q.detach()) <= 1e-12


# ---- learning-rate-free rules against their packages ----------------------------------

def _package(rule):
    """The reference package's optimizer class for ``rule`` (skipped without it)."""
    module, name = {"prodigy": ("prodigyopt", "Prodigy"), "dadapt-adam": ("dadaptation", "DAdaptAdam"),
                    "dadapt-sgd": ("dadaptation", "DAdaptSGD"), "dadapt-adagrad": ("dadaptation", "DAdaptAdaGrad"),
                    "dog": ("dog", "DoG"), "ldog": ("dog", "LDoG"),
                    "schedulefree-adamw": ("schedulefree", "AdamWScheduleFree"),
                    "schedulefree-sgd": ("schedulefree", "SGDScheduleFree")}[rule]
    return getattr(pytest.importorskip(module), name)


# (rule, options for both, the second group's own values, the lr set in every group from step 6)
LR_FREE = [
    ("prodigy", dict(lr=1.0, d0=1e-4, weight_decay=0.01), dict(weight_decay=0.1), 0.7),
    ("dadapt-adam", dict(lr=1.0, d0=1e-4), dict(weight_decay=0.05), 0.7),
    ("dadapt-sgd", dict(lr=1.0, d0=1e-4, momentum=0.9), {}, 0.7),
    ("dadapt-adagrad", dict(lr=1.0, d0=1e-4, eps=1e-6), dict(weight_decay=0.01), 0.7),
    ("dog", dict(reps_rel=1e-4), dict(weight_decay=1e-3), 0.5),
    ("ldog", dict(reps_rel=1e-4), dict(weight_decay=1e-3), 0.5),
    ("schedulefree-adamw", dict(lr=2e-2, warmup_steps=4, weight_decay=0.01), dict(weight_decay=0.0), 1e-2),
    ("schedulefree-sgd", dict(lr=0.1, warmup_steps=4), dict(weight_decay=0.01), 0.05),
]


def _learned_by_package(rule, opt):
    """What our ``adapted`` reports, from the package's param groups."""
    g = opt.param_groups[0]
    if rule in ("dog", "ldog"):
        etas = [float(e) for grp in opt.param_groups for e in grp["eta"]] if rule == "ldog" else [float(g["eta"][0])]
        return {"eta": sum(etas) / len(etas)}
    if rule.startswith("schedulefree"):
        return {"lr": g["scheduled_lr"]}
    return {"d": float(g["d"])}


@pytest.mark.parametrize("rule,kw,group2,later_lr", LR_FREE, ids=[c[0] for c in LR_FREE])
def test_lr_free_rules_match_their_packages(rule, kw, group2, later_lr):
    """12 float64 steps of a small model in two param groups, the lr set
    through param_groups from step 6; the parameters and what the rule
    learned (opt.adapted, opt.lr_estimate) after every step, and for
    Schedule-Free the evaluation point after eval() and the way back."""
    pkg_cls = _package(rule)
    nets = [make_net(), make_net()]
    theirs = pkg_cls(groups(nets[0], rule, group2), **kw)
    ours = FusedOptimizer(groups(nets[1], rule, group2), rule=rule, **kw)
    two_points = rule.startswith("schedulefree")
    if two_points:
        theirs.train()   # the package starts in eval mode
        ours.train()     # ours in train mode: a no-op, so schedulefree code runs as is
    assert ours.adapted == {} and ours.lr_estimate is None
    start = [p.detach().clone() for p in nets[1].parameters()]
    for k in range(12):
        for net, opt in zip(nets, (theirs, ours)):
            if k == 6:
                for g in opt.param_groups:
                    g["lr"] = later_lr
            x, y = data(k)
            opt.zero_grad()
            ((net(x) - y) ** 2).mean().backward()
            opt.step()
        for p, q in zip(nets[1].parameters(), nets[0].parameters()):
            assert rel(p.detach(), q.detach()) <= 1e-10, (k, rule)
        for name, want in _learned_by_package(rule, theirs).items():
            assert ours.adapted[name] == pytest.approx(want, rel=1e-10), (k, name)
        if rule == "prodigy":
            assert ours.lr_estimate == pytest.approx(float(theirs.param_groups[0]["d"]) * theirs.param_groups[0]["lr"],
                                                     rel=1e-10)
        if two_points and k in (5, 11):
            for _ in range(2):   # a second eval() (train()) changes nothing
                for opt in (theirs, ours):
                    opt.eval()
                for p, q in zip(nets[1].parameters(), nets[0].parameters()):
                    assert rel(p.detach(), q.detach()) <= 1e-10, ("eval", k)
            assert not ours.train_mode and ours.state_dict()["param_groups"][0]["train_mode"] is False
            for _ in range(2):
                for opt in (theirs, ours):
                    opt.train()
                for p, q in zip(nets[1].parameters(), nets[0].parameters()):
                    assert rel(p.detach(), q.detach()) <= 1e-10, ("train", k)
            assert ours.train_mode
    assert ours.lr_estimate is not None and ours.lr_estimate > 0
    assert min(rel(p.detach(), p0) for p, p0 in zip(nets[1].parameters(), start)) > 1e-6  # it moved


def test_schedulefree_eval_writes_the_tensors_and_step_refuses_in_eval_mode():
    net = make_net()
    opt = FusedOptimizer(net.parameters(), rule="schedulefree-adamw", lr=1e-2)
    before = [p.detach().clone() for p in net.parameters()]
    opt.eval()   # nothing has stepped: only the mode changes (as schedulefree)
    assert all(torch.equal(p.detach(), b) for p, b in zip(net.parameters(), before))
    x, y = data(0)
    ((net(x) - y) ** 2).mean().backward()
    with pytest.raises(RuntimeError, match=r"eval mode.*optimizer.train\(\)"):
        opt.step()
    assert all(torch.equal(p.detach(), b) for p, b in zip(net.parameters(), before)) and not opt.state
    opt.train()
    for k in range(3):
        x, y = data(k)
        opt.zero_grad()
        ((net(x) - y) ** 2).mean().backward()
        opt.step()
    y_point = [p.detach().clone() for p in net.parameters()]
    versions = [p._version for p in net.parameters()]
    opt.eval()
    # x = (y - (1 - b1) z) / b1, in the tensors themselves; autograd sees the write
    b1 = 0.9
    for p, yp in zip(net.parameters(), y_point):
        z = opt.state[p]["z"]
        assert rel(p.detach(), (yp - (1 - b1) * z) / b1) <= 1e-12
    assert all(p._version > v for p, v in zip(net.parameters(), versions))
    with pytest.raises(RuntimeError, match="eval mode"):
        opt.step()
    opt.train()
    for p, yp in zip(net.parameters(), y_point):
        assert rel(p.detach(), yp) <= 1e-12


def test_schedulefree_state_dict_in_eval_mode_resumes_in_eval_mode():
    net = make_net()
    opt = FusedOptimizer(net.parameters(), rule="schedulefree-sgd", lr=0.1)
    train(net, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0), 4)
    opt.eval()
    ckpt = copy.deepcopy({"model": net.state_dict(), "opt": opt.state_dict()})
    assert ckpt["opt"]["param_groups"][0]["train_mode"] is False
    net2 = make_net()
    net2.load_state_dict(ckpt["model"])
    opt2 = FusedOptimizer(net2.parameters(), rule="schedulefree-sgd", lr=0.1)
    opt2.load_state_dict(ckpt["opt"])
    assert not opt2.train_mode
    opt.train()
    opt2.train()   # writes y back from the loaded z
    for p, q in zip(net.parameters(), net2.parameters()):
        assert rel(q.detach(), p.detach()) <= 1e-12
    train(net, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0), 2, start=4)
    train(net2, opt2, torch.optim.lr_scheduler.LambdaLR(opt2, lambda k: 1.0), 2, start=4)
    for p, q in zip(net.parameters(), net2.parameters()):
        assert rel(q.detach(), p.detach()) <= 1e-12


@pytest.mark.parametrize("rule", ["prodigy", "dog", "schedulefree-adamw"])
def test_lr_free_rules_refuse_a_parameter_without_gradient_after_it_stepped(rule):
    net = make_net()
    opt = FusedOptimizer(net.parameters(), rule=rule)
    train(net, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0), 2)
    before = [p.detach().clone() for p in net.parameters()]
    steps = opt.state[net.fc1.weight]["step"].item()
    opt.zero_grad()
    x, y = data(5)
    ((net(x, use_emb=False) - y) ** 2).mean().backward()
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]\[0\] has no gradient.*"
                                         r"learns its step size from all its tensors"):
        opt.step()
    assert all(torch.equal(p.detach(), b) for p, b in zip(net.parameters(), before))
    assert opt.state[net.fc1.weight]["step"].item() == steps
    net.emb.grad = torch.zeros_like(net.emb)   # the fix the message gives
    opt.step()
    assert opt.state[net.emb]["step"].item() == steps + 1


def test_lr_free_rules_refuse_a_parameter_that_joins_late():
    net = make_net()
    opt = FusedOptimizer(net.parameters(), rule="dadapt-adam")
    train(net, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0), 2, use_emb=lambda k: False)
    assert net.emb not in opt.state
    with pytest.raises(ValueError, match=r"\['params'\]\[0\] has stepped 0 times and other parameters 2 times"):
        train(net, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0), 1, start=2)


def test_ldog_steps_parameters_without_gradient_apart():
    """LDoG's step sizes are per tensor: skipped parameters are fine."""
    net = make_net()
    opt = FusedOptimizer(net.parameters(), rule="ldog")
    train(net, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0), 6, use_emb=lambda k: k % 3 != 1)
    assert opt.state[net.emb]["step"].item() == 4 and opt.state[net.fc1.weight]["step"].item() == 6
    etas = [float(opt.state[p]["eta"]) for p in net.parameters()]
    got = opt.adapted
    assert got["eta"] == pytest.approx(sum(etas) / len(etas), rel=1e-12)
    assert got["eta_min"] == min(etas) and got["eta_max"] == max(etas)


# ---- the views kept between steps ------------------------------------------------------

def test_persistent_gradients_reuse_their_views_and_stay_exact():
    """zero_grad(set_to_none=False): the same gradient tensors every step,
    filled in place by backward; the step keeps their views and still
    reads each step's values (as torch.optim.Adam)."""
    nets = [make_net(), make_net()]
    opts = [torch.optim.Adam(nets[0].parameters(), lr=1e-2, foreach=False),
            FusedOptimizer(nets[1].parameters(), rule="adam", lr=1e-2)]
    for k in range(6):
        for net, opt in zip(nets, opts):
            x, y = data(k)
            opt.zero_grad(set_to_none=False)
            ((net(x) - y) ** 2).mean().backward()
            opt.step()
    assert opts[1]._grads is not None   # the kept views were used
    # a gradient given new memory (same tensor object) and a new gradient tensor are seen
    for net in nets:
        net.fc1.bias.grad.data = torch.full_like(net.fc1.bias, 0.5)
        net.fc2.bias.grad = torch.full_like(net.fc2.bias, -0.25)
    for opt in opts:
        opt.step()
    for p, q in zip(nets[1].parameters(), nets[0].parameters()):
        assert rel(p.detach(), q.detach()) <= 1e-12


def test_new_gradients_every_step_are_not_kept_alive():
    net = make_net()
    opt = FusedOptimizer(net.parameters(), rule="adam")
    for k in range(3):
        net.zero_grad()   # the module's zero_grad: set_to_none, not through the optimizer
        x, y = data(k)
        ((net(x) - y) ** 2).mean().backward()
        opt.step()
        old = weakref.ref(net.fc1.weight.grad)
        net.zero_grad()
        assert old() is None, k   # the step held no reference to it
    # kept (persistent) gradients are dropped by the optimizer's zero_grad()
    for k in range(3):
        opt.zero_grad(set_to_none=False)
        ((net(x) - y) ** 2).mean().backward()
        opt.step()
    old = weakref.ref(net.fc1.weight.grad)
    opt.zero_grad()
    assert old() is None


def test_unusual_gradients_are_read_as_their_values():
    """Gradients the step reads at their addresses (new tensors every step):
    a lazily negated view (its memory holds -g), a gradient that is part of a
    graph (backward(create_graph=True)), a slice at an offset into a larger
    buffer; each step equals torch.optim.Adam's, and no view outlives it."""
    torch.manual_seed(3)
    base = [torch.randn(5, 4, dtype=torch.float64) for _ in range(3)]
    ours = [torch.nn.Parameter(b.clone()) for b in base]
    ref = [torch.nn.Parameter(b.clone()) for b in base]
    opts = [FusedOptimizer(ours, rule="adam", lr=0.1), torch.optim.Adam(ref, lr=0.1, foreach=False)]
    for k in range(4):
        g = torch.randn(3, 5, 4, dtype=torch.float64)
        big = torch.randn(100, dtype=torch.float64)
        big[7:27] = g[2].reshape(-1)
        ours[0].grad = torch._neg_view(-g[0])  # (is_neg(); values g[0])
        assert ours[0].grad.is_neg()
        ours[1].grad = g[1].clone().requires_grad_()
        ours[2].grad = big[7:27].view(5, 4)
        for q, gq in zip(ref, g):
            q.grad = gq.clone()
        for opt in opts:
            opt.step()
        for p, q in zip(ours, ref):
            assert rel(p.detach(), q.detach()) <= 1e-12, k
        old = weakref.ref(big)
        del big
        for p in ours:
            p.grad = None
        assert old() is None, k   # the step kept no view of the buffer


def test_gradients_by_address_step_as_their_views():
    """The kernel reads checked gradients by address (FusedOptimizer's
    default): bit-equal to the same optimizer reading NumPy views of them,
    with two param groups, new gradients every step, and parameters that
    skip steps (cohorts of different step counts)."""
    torch.manual_seed(5)
    base = [torch.randn(n, dtype=torch.float32) for n in (7, 300, 1, 40, 0, 9)]
    sets = [[torch.nn.Parameter(b.clone()) for b in base] for _ in range(2)]
    opts = [FusedOptimizer([{"params": ps[:3]}, {"params": ps[3:], "lr": 0.03}], rule="adamw", lr=0.1)
            for ps in sets]
    opts[1]._by_address = False
    assert opts[0]._by_address
    for k in range(6):
        grads = [torch.randn(b.shape) for b in base]
        for ps in sets:
            for j, (p, g) in enumerate(zip(ps, grads)):
                p.grad = None if (k + j) % 4 == 0 else g.clone()
        for opt in opts:
            opt.step()
        for p, q in zip(*sets):
            assert torch.equal(p.detach(), q.detach()), k
    assert len(opts[0]._cohorts) > 1   # (steps skipped: several step counts were stepped)


def test_a_kept_negated_gradient_is_read_as_its_values():
    """A lazily negated gradient kept from step to step is read through its
    copy every step, never at its address (which holds -g)."""
    torch.manual_seed(6)
    base = torch.randn(10, dtype=torch.float64)
    ours, ref = torch.nn.Parameter(base.clone()), torch.nn.Parameter(base.clone())
    g = torch.randn(10, dtype=torch.float64)
    ours.grad, ref.grad = torch._neg_view(-g), g.clone()
    opts = [FusedOptimizer([ours], rule="adam", lr=0.1), torch.optim.Adam([ref], lr=0.1, foreach=False)]
    for k in range(4):
        for opt in opts:
            opt.step()
        assert rel(ours.detach(), ref.detach()) <= 1e-12, k


def test_some_gradients_kept_and_some_new_stay_exact():
    """More tensors than the step samples to tell kept gradients from new
    ones: the first ten keep theirs (zeroed in place), the last two get new
    ones every step; every step reads the current values, as torch."""
    def make():
        torch.manual_seed(1)
        return [torch.nn.Parameter(torch.randn(3, dtype=torch.float64)) for _ in range(12)]
    sets = [make(), make()]
    opts = [torch.optim.SGD(sets[0], lr=0.1, momentum=0.9), FusedOptimizer(sets[1], rule="sgd", lr=0.1, momentum=0.9)]
    for k in range(6):
        g = torch.Generator().manual_seed(k)
        target = torch.randn(12, 3, generator=g, dtype=torch.float64)
        for params, opt in zip(sets, opts):
            for i, p in enumerate(params):
                if i >= 10:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.zero_()
            sum(((p - t) ** 2).sum() * (i + 1) for i, (p, t) in enumerate(zip(params, target))).backward()
            opt.step()
        for p, q in zip(sets[1], sets[0]):
            assert rel(p.detach(), q.detach()) <= 1e-12, k


def test_parameter_given_new_memory_is_rebound():
    nets = [make_net(), make_net()]
    opts = [torch.optim.SGD(nets[0].parameters(), lr=0.1, momentum=0.9),
            FusedOptimizer(nets[1].parameters(), rule="sgd", lr=0.1, momentum=0.9)]
    for k in range(4):
        for net, opt in zip(nets, opts):
            if k == 2:
                net.fc1.weight.data = net.fc1.weight.data.clone()   # new memory, same Parameter
            x, y = data(k)
            opt.zero_grad()
            ((net(x) - y) ** 2).mean().backward()
            opt.step()
    for p, q in zip(nets[1].parameters(), nets[0].parameters()):
        assert rel(p.detach(), q.detach()) <= 1e-12


def test_deepcopy_and_pickle_of_the_optimizer():
    net = make_net()
    opt = FusedOptimizer(net.parameters(), rule="adam", lr=1e-2)
    train(net, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0), 3)
    for twin in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        assert twin.rule == "adam"
        params = twin.param_groups[0]["params"]
        for p, q in zip(params, net.parameters()):
            p.grad = q.grad.clone()
        twin.step()
        assert twin.state[params[0]]["step"].item() == 4


@pytest.mark.parametrize("case,rule,torch_cls,kw", [c for c in CASES if c[1] != "sgd"],
                         ids=[c[0] for c in CASES if c[1] != "sgd"])
def test_a_torch_optim_checkpoint_loads_and_continues_as_torch(case, rule, torch_cls, kw, float64_scalars):
    """torch.optim's state_dict (the same names, step as a tensor) loads
    into FusedOptimizer of the same rule, which then steps as torch would.
    (torch.optim.SGD keeps no step count: its checkpoints are refused.)"""
    nets = [make_net(), make_net()]
    ref = torch_cls(groups(nets[0], case), foreach=False, **kw)
    train(nets[0], ref, torch.optim.lr_scheduler.LambdaLR(ref, lambda k: 1.0), 3)
    nets[1].load_state_dict(nets[0].state_dict())
    ours = FusedOptimizer(groups(nets[1], case), rule=rule, **kw)
    ours.load_state_dict(copy.deepcopy(ref.state_dict()))
    for net, opt in zip(nets, (ref, ours)):
        train(net, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0), 3, start=3)
    for p, q in zip(nets[1].parameters(), nets[0].parameters()):
        assert rel(p.detach(), q.detach()) <= 1e-12
    assert ours.state[nets[1].fc1.weight]["step"].item() == 6


def test_a_torch_sgd_checkpoint_without_step_is_refused():
    net = make_net()
    ref = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    train(net, ref, torch.optim.lr_scheduler.LambdaLR(ref, lambda k: 1.0), 2)
    ours = FusedOptimizer(net.parameters(), rule="sgd", lr=0.1, momentum=0.9)
    ours.load_state_dict(ref.state_dict())
    with pytest.raises(ValueError, match="has buffers but no 'step'"):
        train(net, ours, torch.optim.lr_scheduler.LambdaLR(ours, lambda k: 1.0), 1)


@pytest.mark.parametrize("rule", sorted(fastadapt.optim.OPTIMIZERS))
def test_every_rule_steps_as_fastadapt_does_on_numpy(rule):
    """Four steps through the adapter equal fastadapt's own optimizer on
    NumPy copies of the same parameters and gradients, bit for bit (the
    same kernel; the adapter adds views, groups and state, not arithmetic)."""
    net = make_net()
    if rule == "muon":   # matrices only
        params = [net.fc1.weight, net.fc2.weight]
    else:
        params = list(net.parameters())
    arrays = [p.detach().numpy().copy() for p in params]
    start = [a.copy() for a in arrays]
    ours = FusedOptimizer(params, rule=rule)
    theirs = fastadapt.make_optimizer(rule)
    for k in range(4):
        x, y = data(k)
        ours.zero_grad()
        ((net(x) - y) ** 2).mean().backward()
        grads = [p.grad.numpy().copy() for p in params]
        ours.step()
        theirs.update(arrays, grads)
        for p, a in zip(params, arrays):
            assert np.array_equal(p.detach().numpy(), a), (rule, k)
    assert all(not np.array_equal(a, a0) for a, a0 in zip(arrays, start))  # every tensor moved
    assert ours.adapted == theirs.adapted and ours.lr_estimate == theirs.lr_estimate


SCHEDULERS = {
    "OneCycleLR": lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=5e-2, total_steps=16),   # lr and betas
    "CosineAnnealingWarmRestarts": lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=5),
    "SequentialLR": lambda o: torch.optim.lr_scheduler.SequentialLR(
        o, [torch.optim.lr_scheduler.LinearLR(o, start_factor=0.1, total_iters=4),
            torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=12)], milestones=[4]),
}


@pytest.mark.parametrize("name", [*SCHEDULERS, "ReduceLROnPlateau"])
def test_lr_schedulers_drive_it_as_torch(name):
    nets = [make_net(), make_net()]
    opts = [torch.optim.AdamW(groups(nets[0], "adamw"), lr=1e-2, foreach=False),
            FusedOptimizer(groups(nets[1], "adamw"), rule="adamw", lr=1e-2)]
    if name == "ReduceLROnPlateau":
        scheds = [torch.optim.lr_scheduler.ReduceLROnPlateau(o, factor=0.5, patience=0) for o in opts]
    else:
        scheds = [SCHEDULERS[name](o) for o in opts]
    for k in range(16):
        for net, opt, sched in zip(nets, opts, scheds):
            x, y = data(k)
            opt.zero_grad()
            loss = ((net(x) - y) ** 2).mean()
            loss.backward()
            opt.step()
            sched.step(loss.item()) if name == "ReduceLROnPlateau" else sched.step()
    assert opts[1].param_groups[0]["lr"] == opts[0].param_groups[0]["lr"] != 1e-2
    for p, q in zip(nets[1].parameters(), nets[0].parameters()):
        assert rel(p.detach(), q.detach()) <= 1e-12


def test_a_parameter_swapped_into_a_group_in_place_is_stepped_as_torch_does():
    # Same number of tensors, one replaced: the adapter must notice (a count
    # alone would not) and step the new tensor with fresh state, as torch.
    torch.manual_seed(0)
    ours = [torch.randn(4, 3), torch.randn(5)]
    theirs = [t.clone() for t in ours]
    opt = FusedOptimizer(ours, rule="adam", lr=1e-2)
    ref = torch.optim.Adam(theirs, lr=1e-2)
    new = torch.randn(4, 3)
    for step in range(6):
        if step == 3:
            opt.param_groups[0]["params"][0] = new
            ref.param_groups[0]["params"][0] = new_ref = new.clone()
            ours[0], theirs[0] = new, new_ref
        g = [torch.randn_like(t) for t in ours]
        for p, q, gi in zip(ours, theirs, g):
            p.grad, q.grad = gi.clone(), gi.clone()
        opt.step()
        ref.step()
        for p, q in zip(ours, theirs):
            torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    assert opt.state[new]["step"] == ref.state[new_ref]["step"] == 3


def test_zero_grad_keeping_tensors_zeroes_them_in_place_as_torch_does():
    ps = [torch.nn.Parameter(torch.randn(3, dtype=dt)) for dt in (torch.float32, torch.float64, torch.float32)]
    opt = FusedOptimizer(ps, rule="sgd", lr=0.1)
    ps[0].grad, ps[2].grad = torch.randn(3), torch.randn(3)  # ps[1] has none
    kept = [ps[0].grad, ps[2].grad]
    opt.zero_grad(set_to_none=False)
    assert ps[1].grad is None
    assert ps[0].grad is kept[0] and ps[2].grad is kept[1]
    assert all(torch.count_nonzero(g) == 0 for g in kept)
    # a gradient inside a graph (create_graph=True) is detached first, as torch does
    x = torch.nn.Parameter(torch.tensor([2.0]))
    opt2 = FusedOptimizer([x], rule="sgd", lr=0.1)
    with pytest.warns(UserWarning, match="create_graph=True"):  # torch's reference-cycle notice
        (x ** 3).sum().backward(create_graph=True)
    assert x.grad.requires_grad
    opt2.zero_grad(set_to_none=False)
    assert not x.grad.requires_grad and x.grad.item() == 0.0
    opt.zero_grad()
    assert all(p.grad is None for p in ps)
