"""DoG and LDoG: the fused fa.DoG / fa.LDoG against fastadapt's NumPy
reference bit for bit (every ISA path and thread count, float32 and float64,
odd sizes, a pool-sized tensor, clipping, the non-finite policies, maximize,
overrides, G = 0), and both against the authors' package (``dog-optimizer``:
``dog.DoG``, ``dog.LDoG``) on float64 trajectories of 40 steps (several
tensors, 1-D and 2-D, odd sizes; hyperparameters changed mid-run; every
option; parameter groups), comparing the parameters, the starting point and
the learned scalars (rbar, G, eta) after every step; what a G of 0 does (the
package asserts); checkpoints; the reported step sizes; bad hyperparameters."""

import math

import numpy as np
import pytest

import fastadapt as fa
from fastadapt.reference import dog as ref_dog

from rule_parity import (DTYPES, PREP, assert_bad_hyperparameter_refused, pair_is_reference, patch_per_key,
                         propagates_nonfinite, round_trip_equals_uninterrupted)
from torch_trajectory import max_rel_err

STEPS = 40
# float64 on both sides; the package's norms are torch's (a norm of per-tensor
# norms for DoG) and its sums are torch's order, ours the kernels' fixed order:
# they differ in the last bits, which the trajectory carries along (measured:
# at most 6e-14 over these runs). 1e-10 leaves room for that and nothing else.
TOL = 1e-10
SHAPES = {"a": (7,), "b": (3, 5), "c": (1,), "d": (33, 17), "e": (129,)}
RULES = {"dog": ("DoG", ref_dog.DoG), "ldog": ("LDoG", ref_dog.LDoG)}
FA = {"dog": fa.DoG, "ldog": fa.LDoG}
IMPLS = ("fa", "reference")
PACKAGE_DEFAULTS = dict(lr=1.0, reps_rel=1e-6, eps=1e-8, init_eta=None, weight_decay=0.0)


def gradient(rng, p, target, scale):
    """A noisy gradient of a quadratic pulling ``p`` to ``target``, with some
    exact zeros: its direction persists, so DoG's distance (and step size)
    grows by orders of magnitude over the run, and errors feed back. The
    scale differs per tensor and jitters per step."""
    g = (p - target + 0.3 * rng.standard_normal(p.shape)) * (scale * 10.0 ** rng.uniform(-0.3, 0.3))
    g[rng.random(p.shape) < 0.1] = 0.0
    return g


def changes(k):
    """Hyperparameters set on both sides before step k (0-based): an lr
    schedule from step 5, a weight decay from step 15, and values that matter
    on the first step only (reps_rel, eps, init_eta) changed later, which must
    change nothing."""
    out = {}
    if k >= 5:
        out["lr"] = 1.0 - 0.6 * (k - 5) / STEPS
    if k == 15:
        out["weight_decay"] = 0.05
    if k == 20:
        out.update(reps_rel=0.5, eps=1.0)
    if k == 25:
        out["init_eta"] = 3.0
    return out


def torch_optimizer(rule, tparams, hyper, groups):
    """The package's optimizer: the tensors of ``groups`` ({names: values})
    in param groups of their own, the rest in the first. A group's own
    init_eta comes with reps_rel = 0, as the package's constructor sets it
    for its defaults (a group dict does not get that: see docs, DoG)."""
    dog = pytest.importorskip("dog")
    cls = getattr(dog, RULES[rule][0])
    grouped = set().union(*groups) if groups else set()
    param_groups = [{"params": [t for n, t in tparams.items() if n not in grouped]}]
    for names, values in groups.items():
        extra = {"reps_rel": 0.0} if values.get("init_eta") is not None else {}
        param_groups.append({"params": [tparams[n] for n in sorted(names)], **values, **extra})
    return cls(param_groups, **hyper)


def run_against_package(impl, rule, hyper, *, per_key=None, maximize=False, steps=STEPS, seed=0, change=changes):
    """``steps`` steps of ours (``impl``: fa's class or the reference) and the
    package on the same gradients, compared after each step. ``per_key``
    {name: {hyper: value}} puts the tensors with the same values in a
    parameter group of their own (the package; fa: one override entry) /
    gives them those values (the reference). ``maximize``: ours ascends, the
    package gets the negated gradients. Returns ours."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("dog")
    per_key = per_key or {}
    rng = np.random.default_rng(seed)
    params = {n: rng.standard_normal(s) for n, s in SHAPES.items()}
    target = {n: rng.standard_normal(s) for n, s in SHAPES.items()}
    scale = {n: 10.0 ** rng.uniform(-1, 1) for n in SHAPES}
    start = {n: p.copy() for n, p in params.items()}
    tparams = {n: torch.nn.Parameter(torch.from_numpy(p.copy())) for n, p in params.items()}
    # one package group per distinct override (the reference groups tensors by their values)
    groups = {}
    for n, v in per_key.items():
        groups.setdefault(frozenset(v.items()), set()).add(n)
    groups = {frozenset(names): dict(v) for v, names in groups.items()}
    opt = torch_optimizer(rule, tparams, hyper, groups)
    if impl == "fa":
        # (single-letter keys: one glob per group)
        overrides = {"[" + "".join(sorted(names)) + "]": values for names, values in groups.items()}
        ref = FA[rule](maximize=maximize, overrides=overrides or None, **hyper)
    else:
        ref = patch_per_key(RULES[rule][1](maximize=maximize, **hyper), per_key)
    group_of = {id(t): g for g in opt.param_groups for t in g["params"]}
    index_in_group = {id(t): i for g in opt.param_groups for i, t in enumerate(g["params"])}
    for k in range(steps):
        for name, value in change(k).items():
            setattr(ref, name, value)
            for g in opt.param_groups:
                if not any(name in per_key.get(n, {}) for n, t in tparams.items() if group_of[id(t)] is g):
                    g[name] = value
        grads = {n: gradient(rng, p, target[n], scale[n]) for n, p in params.items()}
        for n, t in tparams.items():
            t.grad = torch.from_numpy(-grads[n] if maximize else grads[n].copy())
        opt.step()
        ref.update(params, grads)
        for n, t in tparams.items():
            g = group_of[id(t)]
            i = index_in_group[id(t)]
            st = ref.state[n]
            theirs = {"rbar": g["rbar"], "G": g["G"], "eta": g["eta"][i]}
            if rule == "ldog":
                theirs["rbar"], theirs["G"] = g["rbar"][i], g["G"][i]
            # the displacement from the start, which is far smaller than p
            # early on (and x0 is the same bits on both sides)
            errs = {"param": max_rel_err(params[n] - start[n], t.detach().numpy() - start[n])}
            errs.update({s: max_rel_err(float(st[s]), float(v)) for s, v in theirs.items()})
            for s, e in errs.items():
                assert e <= TOL, f"step {k + 1}, tensor {n!r}, {s}: relative error {e:.3g} > {TOL:g}"
            assert np.array_equal(st["init_buffer"], g["init_buffer"][i].numpy()), n
            assert all(st[s].dtype == np.float64 and st[s].shape == () for s in ref_dog.CARRIED)
        if impl == "fa":
            assert_reports(ref, opt, rule, tparams[ref._paths[0]])
        if k == 1:
            early = {n: float(ref.state[n]["rbar"]) for n in SHAPES}
    # DoG's distance took over: every block's rbar grew far past its value
    # after two steps (after one, with init_eta, it is 0)
    for n in SHAPES:
        assert float(ref.state[n]["rbar"]) > 30 * early[n] > 0, n
    return ref


OPTIONS = [dict(), dict(weight_decay=1e-2), dict(init_eta=1e-3), dict(reps_rel=1e-4, eps=0.0),
           dict(lr=0.5, reps_rel=1e-3, eps=1e-4)]


def ids(options):
    return "-".join(f"{k}={v}" for k, v in options.items()) or "defaults"


def assert_reports(opt, package, rule, first_tensor):
    """fa's learned step sizes (``adapted``, ``lr_estimate``): DoG's are the
    rbar, G, eta of the group of its first key (``first_tensor`` in the
    package); LDoG's the mean, smallest and largest eta over the tensors."""
    rep = opt.adapted
    if rule == "dog":
        group = next(g for g in package.param_groups if any(t is first_tensor for t in g["params"]))
        want = {"eta": float(group["eta"][0]), "rbar": float(group["rbar"]), "G": float(group["G"])}
        assert set(rep) == set(want)
        for k, v in want.items():
            assert max_rel_err(rep[k], v) <= TOL, k
        assert rep["eta"] == float(opt.state[opt._paths[0]]["eta"])
    else:
        etas = [float(opt.state[k]["eta"]) for k in opt._paths]
        assert rep == {"eta": float(np.mean(etas)), "eta_min": min(etas), "eta_max": max(etas)}
        theirs = [float(e) for g in package.param_groups for e in g["eta"]]
        assert max_rel_err(rep["eta_max"], max(theirs)) <= TOL and max_rel_err(rep["eta_min"], min(theirs)) <= TOL
    assert opt.lr_estimate == rep["eta"]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("options", OPTIONS, ids=ids)
def test_ours_is_the_package(impl, rule, options):
    run_against_package(impl, rule, options)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("rule", RULES)
def test_maximize_is_the_package_on_negated_gradients(impl, rule):
    run_against_package(impl, rule, dict(weight_decay=1e-2), maximize=True, seed=1)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("rule", RULES)
def test_parameter_groups_are_the_packages(impl, rule):
    """Two override groups besides the default: each is a package param
    group (DoG: its own rbar, G, eta over its tensors)."""
    per_key = {"d": {"lr": 0.7, "weight_decay": 0.1, "reps_rel": 1e-3}, "a": {"init_eta": 1e-2, "eps": 1e-4},
               "c": {"init_eta": 1e-2, "eps": 1e-4}}
    ref = run_against_package(impl, rule, {}, per_key=per_key, seed=2)
    if rule == "dog":
        # a group's tensors share their scalars; the groups' differ
        for s in ref_dog.CARRIED:
            assert ref.state["a"][s] == ref.state["c"][s]
            assert ref.state["b"][s] == ref.state["e"][s] != ref.state["a"][s] != ref.state["d"][s]
    else:
        assert len({float(ref.state[n]["eta"]) for n in SHAPES}) == len(SHAPES)


def test_defaults_are_the_packages():
    dog = pytest.importorskip("dog")
    import inspect

    for rule, (name, cls) in RULES.items():
        theirs = {k: v.default for k, v in inspect.signature(getattr(dog, name).__init__).parameters.items()
                  if k not in ("self", "params")}
        assert theirs == PACKAGE_DEFAULTS
        assert {k: v for k, v in cls.defaults.items() if k != "maximize"} == PACKAGE_DEFAULTS


@pytest.mark.parametrize("rule", RULES)
def test_first_step_is_the_packages_formula(rule):
    """Step 1 by hand: rbar = reps_rel * (1 + ||x0||), G = ||g||^2 + eps,
    eta = lr * rbar / sqrt(G) (over the group for DoG, per tensor for LDoG);
    init_eta replaces eta and makes rbar 0."""
    rng = np.random.default_rng(3)
    x = {"w": rng.standard_normal((4, 6)), "b": rng.standard_normal(5)}
    g = {"w": rng.standard_normal((4, 6)), "b": rng.standard_normal(5)}
    for init_eta in (None, 0.25):
        p = {k: v.copy() for k, v in x.items()}
        opt = RULES[rule][1](lr=0.5, reps_rel=1e-2, eps=1e-3, init_eta=init_eta)
        opt.update(p, g)
        blocks = [list(x)] if rule == "dog" else [[k] for k in x]
        for block in blocks:
            xn = math.sqrt(sum(float(np.sum(x[k] ** 2)) for k in block))
            G = sum(float(np.sum(g[k] ** 2)) for k in block) + 1e-3
            rbar = 0.0 if init_eta else 1e-2 * (1 + xn)
            eta = init_eta or 0.5 * rbar / math.sqrt(G)
            for k in block:
                st = opt.state[k]
                assert np.array_equal(st["init_buffer"], x[k])
                np.testing.assert_allclose([float(st["rbar"]), float(st["G"]), float(st["eta"])], [rbar, G, eta],
                                           rtol=1e-14)
                np.testing.assert_allclose(p[k], x[k] - eta * g[k], rtol=1e-14)


@pytest.mark.parametrize("rule", RULES)
def test_g_of_zero_gives_eta_zero_where_the_package_asserts(rule):
    """eps = 0 and a first gradient of exact zeros: the package's assertion
    G > 0 fails; here eta = 0, nothing moves, and the next (non-zero)
    gradient continues exactly as the package's first step on it (G was 0,
    rbar and x0 are the start's)."""
    torch = pytest.importorskip("torch")
    dog = pytest.importorskip("dog")
    rng = np.random.default_rng(4)
    x = {"w": rng.standard_normal((4, 6)), "b": rng.standard_normal(5)}
    zero = {k: np.zeros_like(v) for k, v in x.items()}
    t = [torch.nn.Parameter(torch.from_numpy(x[k].copy())) for k in x]
    opt = getattr(dog, RULES[rule][0])(t, eps=0.0)
    for tp in t:
        tp.grad = torch.zeros_like(tp)
    with pytest.raises(AssertionError):
        opt.step()

    p = {k: v.copy() for k, v in x.items()}
    ours = RULES[rule][1](eps=0.0)
    ours.update(p, zero)
    for k in x:
        assert np.array_equal(p[k], x[k]) and np.isfinite(p[k]).all()
        assert float(ours.state[k]["eta"]) == 0.0 and float(ours.state[k]["G"]) == 0.0
    t = [torch.nn.Parameter(torch.from_numpy(x[k].copy())) for k in x]
    opt = getattr(dog, RULES[rule][0])(t, eps=0.0)
    for _ in range(5):
        g = {k: rng.standard_normal(v.shape) for k, v in x.items()}
        for tp, k in zip(t, x):
            tp.grad = torch.from_numpy(g[k].copy())
        opt.step()
        ours.update(p, g)
        for tp, k in zip(t, x):
            assert max_rel_err(p[k], tp.detach().numpy()) <= TOL, k
    assert ours.step_count == 6


def test_ldog_tensor_with_only_zero_gradients_stays_while_the_others_follow_the_package():
    """LDoG with eps = 0: a tensor whose gradient is always 0 keeps G = 0 and
    eta = 0 and never moves (the package would assert); the other tensors are
    independent of it, so they follow the package run without it."""
    torch = pytest.importorskip("torch")
    dog = pytest.importorskip("dog")
    rng = np.random.default_rng(5)
    x = {"dead": rng.standard_normal(9), "w": rng.standard_normal((4, 6))}
    p = {k: v.copy() for k, v in x.items()}
    ours = ref_dog.LDoG(eps=0.0, reps_rel=1e-2)
    tw = torch.nn.Parameter(torch.from_numpy(x["w"].copy()))
    opt = dog.LDoG([tw], eps=0.0, reps_rel=1e-2)
    for _ in range(8):
        g = rng.standard_normal((4, 6))
        tw.grad = torch.from_numpy(g.copy())
        opt.step()
        ours.update(p, {"dead": np.zeros(9), "w": g})
        assert max_rel_err(p["w"], tw.detach().numpy()) <= TOL
    assert np.array_equal(p["dead"], x["dead"]) and float(ours.state["dead"]["eta"]) == 0.0
    assert not np.allclose(p["w"], x["w"])


def test_dog_group_sums_run_over_the_group_in_key_order():
    """DoG's two sums are one running total over the group's tensors
    (``global_sum``), not a sum of per-tensor sums: one chunk of a 40000
    element tensor and a small one, checked against the kernels' order."""
    from fastadapt.reference import _common

    rng = np.random.default_rng(6)
    x = {"a": rng.standard_normal(40000), "b": rng.standard_normal(37)}
    g = {k: rng.standard_normal(v.shape) for k, v in x.items()}
    p = {k: v.copy() for k, v in x.items()}
    opt = ref_dog.DoG(reps_rel=0.1)
    opt.update(p, g)
    G = _common.global_sum([g["a"] ** 2, g["b"] ** 2]) + 1e-8
    rbar = 0.1 * (1.0 + math.sqrt(_common.global_sum([x["a"] ** 2, x["b"] ** 2])))
    assert float(opt.state["a"]["G"]) == G and float(opt.state["b"]["rbar"]) == rbar
    assert float(opt.state["a"]["eta"]) == rbar / math.sqrt(G)



# ---- the kernel against the reference, bit for bit ---------------------------------------

# reps_rel 1e-2 (over the default 1e-6) so that the few steps move the
# parameters visibly; the first-step-only values (reps_rel, eps, init_eta)
# change too, which must change nothing.
# (lr not a power of 2, so that the order of lr * rbar / sqrt(G) shows)
KERNEL_CASES = [dict(), dict(weight_decay=0.1), dict(init_eta=1e-2, maximize=True), dict(eps=0.0, lr=0.7),
                dict(weight_decay=0.1, init_eta=0.1, reps_rel=0.0)]
KERNEL_CHANGES = [dict(lr=0.3), dict(weight_decay=0.2, eps=1e-3, reps_rel=1e-3), dict(init_eta=0.5, lr=1.7)]


def kernel_options(options):
    return {"reps_rel": 1e-2, **options}


@pytest.mark.parametrize("rule", RULES)
@DTYPES
@pytest.mark.parametrize("options", KERNEL_CASES, ids=ids)
def test_kernel_is_reference_bit_for_bit(rule, options, dtype, isa, threads):
    _, p = pair_is_reference(FA[rule], RULES[rule][1], kernel_options(options), dtype, steps=4,
                             changes=KERNEL_CHANGES)
    assert np.isfinite(p["big"]).all()


@pytest.mark.parametrize("rule", RULES)
@DTYPES
@pytest.mark.parametrize("prep", PREP, ids=str)
def test_gradient_preprocessing_is_reference_bit_for_bit(rule, prep, dtype, isa, threads):
    """Clipping, nonfinite="zero", and NaN/Inf gradients propagated: they make
    G NaN, so eta and the parameters NaN, for the group (DoG: every tensor)
    or the tensor (LDoG)."""
    _, p = pair_is_reference(FA[rule], RULES[rule][1], kernel_options(dict(weight_decay=0.1)), dtype, **prep)
    if propagates_nonfinite(prep):
        assert np.isnan(p["big"]).all()
        seven = p["layer"]["seven"]
        assert np.isnan(seven).all() if rule == "dog" else np.isfinite(seven).all()


@pytest.mark.parametrize("rule", RULES)
def test_skipped_steps_are_not_first_steps(rule, isa):
    """nonfinite="skip" on the first step: nothing is kept (no init_buffer),
    and the next step is the first, bit for bit as the reference."""
    ours, p = pair_is_reference(FA[rule], RULES[rule][1], kernel_options({}), np.float64, steps=4,
                                nonfinite="skip", nonfinite_grads=True)
    assert ours.step_count == 2 and ours.skipped_steps == 2


PER_KEY = {"layer.odd": {"weight_decay": 0.0, "lr": 0.1}, "big": {"reps_rel": 1e-3, "init_eta": 0.05},
           "layer.matrix": {"maximize": True, "eps": 0.0}}


@pytest.mark.parametrize("rule", RULES)
@DTYPES
def test_overrides_are_reference_bit_for_bit(rule, dtype, isa, threads):
    ours, _ = pair_is_reference(FA[rule], RULES[rule][1], kernel_options(dict(weight_decay=0.1)), dtype,
                                changes=KERNEL_CHANGES, per_key=PER_KEY)
    st = ours.state
    if rule == "dog":  # four groups: the default one, and one per override
        assert st["layer.seven"]["eta"] == st["layer.cube"]["eta"] == st["layer.empty"]["eta"]
        assert len({float(st[k]["eta"]) for k in ("layer.seven", "layer.odd", "big", "layer.matrix")}) == 4


@pytest.mark.parametrize("rule", RULES)
@DTYPES
def test_g_of_zero_in_the_kernel(rule, dtype, isa, threads):
    """eps = 0 and a tensor (one of many chunks) whose gradient is always 0, in
    a group of its own: eta = 0, it stays where it is, bit for bit as the
    reference; the others move."""
    rng = np.random.default_rng(7)
    big = 9 * 16384 + 5
    p = {"dead": rng.standard_normal(big).astype(dtype), "live": rng.standard_normal(37).astype(dtype)}
    q = {k: v.copy() for k, v in p.items()}
    start = {k: v.copy() for k, v in p.items()}
    ours = FA[rule](eps=0.0, reps_rel=1e-2, overrides={"dead": {"lr": 0.9}})
    theirs = patch_per_key(RULES[rule][1](eps=0.0, reps_rel=1e-2), {"dead": {"lr": 0.9}})
    for _ in range(3):
        g = {"dead": np.zeros(big, dtype), "live": rng.standard_normal(37).astype(dtype)}
        ours.update(p, g)
        theirs.update(q, g)
    for k in p:
        assert p[k].tobytes() == q[k].tobytes(), k
        for s in ref_dog.CARRIED:
            assert ours.state[k][s].tobytes() == theirs.state[k][s].tobytes(), (k, s)
    assert np.array_equal(p["dead"], start["dead"]) and float(ours.state["dead"]["eta"]) == 0.0
    assert float(ours.state["dead"]["G"]) == 0.0 and not np.array_equal(p["live"], start["live"])


@pytest.mark.parametrize("rule", RULES)
@DTYPES
@pytest.mark.parametrize("cut", [1, 3])
def test_state_dict_round_trip_mid_run(rule, dtype, cut):
    """A checkpoint after the first step (x0 and the carried rbar, G, eta in
    it) or later continues exactly as the uninterrupted run."""
    straight = round_trip_equals_uninterrupted(
        lambda: FA[rule](reps_rel=1e-2, weight_decay=0.1, overrides=PER_KEY), dtype, steps=6, cut=cut, seed=3,
        changes=KERNEL_CHANGES)
    sd = straight.state_dict()["state"]["layer.seven"]
    assert set(sd) == {"init_buffer", *ref_dog.CARRIED}
    assert all(sd[s].dtype == np.float64 and sd[s].shape == () for s in ref_dog.CARRIED)


def test_float32_carries_float64_scalars_and_stays_near_float64():
    """The parameters and x0 stay float32; rbar, G and eta are float64; five
    steps stay near the float64 run."""
    rng = np.random.default_rng(8)
    p64 = {"w": rng.standard_normal((5, 7)), "b": rng.standard_normal(7)}
    p32 = {k: v.astype(np.float32) for k, v in p64.items()}
    o64, o32 = fa.DoG(reps_rel=1e-2), fa.DoG(reps_rel=1e-2)
    for _ in range(5):
        g = {k: rng.standard_normal(v.shape) for k, v in p64.items()}
        o64.update(p64, g)
        o32.update(p32, {k: v.astype(np.float32) for k, v in g.items()})
    for k in p64:
        assert p32[k].dtype == o32.state[k]["init_buffer"].dtype == np.float32
        assert o32.state[k]["eta"].dtype == np.float64
        np.testing.assert_allclose(p32[k], p64[k], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(o32.adapted["eta"], o64.adapted["eta"], rtol=1e-5)


def test_nothing_to_report_before_the_first_step():
    for cls in FA.values():
        opt = cls()
        assert opt.adapted == {} and opt.lr_estimate is None


# ---- bad hyperparameters -----------------------------------------------------------------

@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("kwargs,error,match", [
    (dict(lr=-1.0), ValueError, r"lr.*must be >= 0"),
    (dict(lr=None), TypeError, r"lr.* must be a real number"),
    (dict(reps_rel=0.0), ValueError, r"Invalid reps_rel: 0.0 \(must be > 0 unless init_eta is set"),
    (dict(reps_rel=-1e-6), ValueError, r"reps_rel.*must be >= 0"),
    (dict(eps=-1e-8), ValueError, r"eps.*must be >= 0"),
    (dict(eps=float("nan")), ValueError, r"eps.*must be finite"),
    (dict(init_eta=0.0), ValueError, r"init_eta.*must be > 0"),
    (dict(init_eta="0.1"), TypeError, r"init_eta.* must be a real number"),
    (dict(weight_decay=-0.1), ValueError, r"weight_decay.*must be >= 0"),
    (dict(maximize=1), TypeError, r"maximize.* must be True or False"),
])
def test_bad_hyperparameters_are_refused(rule, kwargs, error, match):
    """At construction, as an override, and as an assignment after a step
    (which changes nothing)."""
    assert_bad_hyperparameter_refused(FA[rule], kwargs, error, match)


def test_init_eta_allows_reps_rel_zero_and_the_package_options_only():
    opt = fa.DoG(init_eta=0.1, reps_rel=0.0)
    with pytest.raises(ValueError, match="unless init_eta"):
        opt.init_eta = None   # reps_rel 0 is then refused, and nothing changes
    assert opt.init_eta == 0.1
    with pytest.raises(ValueError, match="unless init_eta"):
        fa.LDoG(init_eta=0.1, overrides={"w": {"init_eta": None, "reps_rel": 0.0}})
    with pytest.raises(TypeError, match="momentum"):
        fa.DoG(momentum=0.9)
