"""fastadapt.torch.FusedOptimizer against torch.optim on a small nn.Module:
parity over 20 steps (two param groups, an lr scheduler), params without
gradients, state_dict round trips, errors, and the import boundary
(fastadapt never imports torch)."""

import copy
import io
import os
import subprocess
import sys

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

CASES = [
    ("adam", torch.optim.Adam, dict(lr=1e-2, weight_decay=0.05, amsgrad=True)),
    ("adamw", torch.optim.AdamW, dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1)),
    ("sgd", torch.optim.SGD, dict(lr=0.05, momentum=0.9, weight_decay=0.01, nesterov=True)),
    ("adagrad", torch.optim.Adagrad, dict(lr=0.05, lr_decay=0.01, initial_accumulator_value=0.1)),
    ("rmsprop", torch.optim.RMSprop, dict(lr=1e-2, momentum=0.5, centered=True, weight_decay=0.01)),
]
# the second group's own values (a per-group override on the fastadapt side)
GROUP2 = {"adam": dict(lr=3e-3, weight_decay=0.0), "adamw": dict(lr=2e-3, betas=(0.9, 0.999)),
          "sgd": dict(lr=0.02, momentum=0.5), "adagrad": dict(lr=0.02, eps=1e-8),
          "rmsprop": dict(lr=3e-3, alpha=0.9)}
STATE_KEYS = {"adam": ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"), "adamw": ("exp_avg", "exp_avg_sq"),
              "sgd": ("momentum_buffer",), "adagrad": ("sum",), "rmsprop": ("square_avg", "grad_avg",
                                                                             "momentum_buffer")}


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


def groups(net, rule):
    return [{"params": list(net.fc1.parameters()) + [net.emb]}, {"params": net.fc2.parameters(), **GROUP2[rule]}]


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


@pytest.mark.parametrize("rule,torch_cls,kw", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("skip_emb", [False, True], ids=["all-grads", "some-steps-without-grad"])
def test_parity_with_torch_optim(rule, torch_cls, kw, skip_emb):
    nets = [make_net(), make_net()]
    ref = torch_cls(groups(nets[0], rule), foreach=False, **kw)
    ours = FusedOptimizer(groups(nets[1], rule), rule=rule, **kw)
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


@pytest.mark.parametrize("rule", ["adam", "rmsprop", "nadam", "prodigy"])
def test_state_dict_round_trip_mid_run_equals_an_uninterrupted_run(rule):
    kw = {"prodigy": dict(lr=1.0)}.get(rule, dict(lr=1e-2))

    def build(net):
        g = [{"params": list(net.fc1.parameters()) + [net.emb]}, {"params": net.fc2.parameters()}]
        if rule in ("adam", "rmsprop", "nadam"):
            g[1]["lr"] = 3e-3
        opt = FusedOptimizer(g, rule=rule, **kw)
        return opt, torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)

    use_emb = lambda k: k % 4 != 2  # noqa: E731  (two cohorts at the checkpoint)
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
