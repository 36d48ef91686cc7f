"""Parameter groups (issue 12, item 4): every controller moves every group of
the hyperparameter it drives, each relative to its own base, as torch's
schedulers move torch's param groups; checked side by side with
torch.optim.lr_scheduler (skipped without torch), and resumed exactly."""

import pickle
import warnings

import numpy as np
import pytest

import fastadapt as fa
from fastadapt import schedules as S

# The largest difference seen from torch in these runs (torch updates most of
# its lrs recursively, lr_k = lr_{k-1} * factor, so they drift by a few ulps
# from the closed forms used here).
TOL = 1e-12


def torch_run(lrs, make_scheduler, steps, metrics=None, optimizer="SGD", **group_extra):
    """Each torch param group's lr (and betas, for Adam) before the first step and after each step."""
    torch = pytest.importorskip("torch")
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in lrs]
    groups = [{"params": [p], "lr": lr, **{k: v[i] for k, v in group_extra.items()}}
              for i, (p, lr) in enumerate(zip(params, lrs))]
    opt = getattr(torch.optim, optimizer)(groups, lr=lrs[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # torch's deprecation notes on step(epoch) inside SequentialLR
        sched = make_scheduler(torch, opt)
        out = [[g["lr"] for g in opt.param_groups]]
        betas = [[g["betas"][0] for g in opt.param_groups]] if optimizer == "Adam" else None
        for k in range(steps):
            opt.step()
            sched.step() if metrics is None else sched.step(metrics[k])
            out.append([g["lr"] for g in opt.param_groups])
            if betas is not None:
                betas.append([g["betas"][0] for g in opt.param_groups])
    return (np.array(out), None if betas is None else np.array(betas))


def ours_run(opt, controller, steps, metrics=None):
    out = [opt.group_values("lr")]
    for k in range(steps):
        controller.step() if metrics is None else controller.step(metrics[k])
        out.append(opt.group_values("lr"))
    return np.array(out)


def two_groups(lr=1.0, override=10.0, cls=fa.SGD, **kwargs):
    return cls(lr=lr, overrides={"b": {"lr": override}}, **kwargs)


# ---- Scheduler -------------------------------------------------------------------------

def test_the_issues_example_three_exponential_steps_move_both_groups():
    opt = two_groups()
    sched = fa.Scheduler(opt, lr=S.exponential(1.0, 0.5))
    for _ in range(3):
        sched.step()
    assert opt.group_values("lr") == [0.125, 1.25]           # was [0.125, 10.0]


@pytest.mark.parametrize("name, ours, theirs", [
    ("exponential", lambda b: S.exponential(b, 0.9),
     lambda t, o: t.optim.lr_scheduler.ExponentialLR(o, gamma=0.9)),
    ("cosine", lambda b: S.cosine(b, 20),
     lambda t, o: t.optim.lr_scheduler.CosineAnnealingLR(o, T_max=20)),
    ("step", lambda b: S.step_decay(b, step_size=3, gamma=0.5),
     lambda t, o: t.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5)),
    ("polynomial", lambda b: S.polynomial(b, 12, power=2.0),
     lambda t, o: t.optim.lr_scheduler.PolynomialLR(o, total_iters=12, power=2.0)),
    ("warmup-then-exponential", lambda b: S.join([S.linear_warmup(b, 4, warmup_start=0.25 * b),
                                                   S.exponential(b, 0.8)], [4]),
     lambda t, o: t.optim.lr_scheduler.SequentialLR(o, [
         t.optim.lr_scheduler.LinearLR(o, start_factor=0.25, total_iters=4),
         t.optim.lr_scheduler.ExponentialLR(o, gamma=0.8)], milestones=[4])),
])
def test_scheduler_moves_every_group_like_torch(name, ours, theirs):
    bases = [0.3, 4.0, 0.02]
    opt = fa.SGD(lr=bases[0], overrides=[("b", {"lr": bases[1]}), ("c", {"lr": bases[2]})])
    steps = 20                                                   # up to T_max: torch's cosine rises after it
    got = ours_run(opt, fa.Scheduler(opt, lr=ours(bases[0])), steps)
    want, _ = torch_run(bases, theirs, steps)
    assert np.max(np.abs(got - want)) <= TOL * np.max(want), name
    moving = got[:, 0] > 0                                      # each group keeps its ratio to the default
    assert np.allclose(got[moving, 1] / got[moving, 0], bases[1] / bases[0], rtol=1e-12, atol=0), name


def test_relative_groups_with_a_cosine_floor_scale_the_floor():
    # torch's CosineAnnealingLR keeps one absolute eta_min for every group; here a
    # group's floor is end * base_i / base_0 (documented), so a small group is never raised.
    opt = fa.SGD(lr=1.0, overrides={"b": {"lr": 0.01}})
    sched = fa.Scheduler(opt, lr=S.cosine(1.0, 10, end=0.1))
    for _ in range(10):
        sched.step()
    assert opt.group_values("lr") == pytest.approx([0.1, 0.001], rel=1e-12)


def test_groups_same_is_torchs_one_cycle_with_one_max_lr_and_momentum():
    # torch's OneCycleLR with a scalar max_lr gives every group the same lr and beta1.
    steps = 30
    opt = fa.Adam(lr=0.5, overrides={"b": {"lr": 5.0, "betas": (0.5, 0.9)}})
    sched = fa.Scheduler(opt, groups="same", lr=S.one_cycle(0.1, steps), betas0=S.one_cycle_momentum(steps))
    lrs, b1 = [opt.group_values("lr")], [[b[0] for b in opt.group_values("betas")]]
    for _ in range(steps - 1):                              # torch's OneCycleLR refuses to step past its end
        sched.step()
        lrs.append(opt.group_values("lr"))
        b1.append([b[0] for b in opt.group_values("betas")])
    want_lr, want_b1 = torch_run([0.5, 5.0], lambda t, o: t.optim.lr_scheduler.OneCycleLR(
        o, max_lr=0.1, total_steps=steps), steps - 1, optimizer="Adam", betas=[(0.9, 0.999), (0.5, 0.9)])
    assert np.max(np.abs(np.array(lrs) - want_lr)) < 1e-15
    assert np.max(np.abs(np.array(b1) - want_b1)) < 1e-15
    assert [b[1] for b in opt.group_values("betas")] == [0.999, 0.9]    # beta2 of every group untouched


def test_scheduler_betas_element_moves_in_every_group_relative_to_its_own():
    opt = fa.Adam(betas=(0.9, 0.999), overrides={"b": {"betas": (0.45, 0.99)}, "c": {"lr": 1.0}})
    sched = fa.Scheduler(opt, betas0=S.linear(0.9, 0.8, 2))
    sched.step()
    sched.step()
    assert opt.group_values("betas") == [(0.8, 0.999), (pytest.approx(0.4), 0.99)]
    assert opt.group_values("lr") == [1e-3, 1.0]                  # lr is not driven: untouched
    assert sched.bases == {"betas0": [0.9, 0.45]}


def test_scheduler_momentum_and_weight_decay_groups():
    opt = fa.SGD(lr=0.1, momentum=0.8, weight_decay=1e-2,
                 overrides={"b": {"momentum": 0.4}, "c": {"weight_decay": 0.0}, "d": {"weight_decay": 1e-3}})
    sched = fa.Scheduler(opt, momentum=S.linear(0.8, 0.9, 1), weight_decay=S.exponential(1e-2, 0.5))
    sched.step()
    assert opt.group_values("momentum") == pytest.approx([0.9, 0.45])
    assert opt.group_values("weight_decay") == pytest.approx([5e-3, 0.0, 5e-4])   # a group at 0 stays at 0


def test_a_refused_group_value_changes_nothing():
    # the override's beta1 keeps its ratio 0.9 / 0.5 to the default's: 0.6 -> 1.08, which Adam refuses
    opt = fa.Adam(lr=0.1, betas=(0.5, 0.999), overrides={"b": {"betas": (0.9, 0.99), "lr": 1.0}})
    sched = fa.Scheduler(opt, lr=S.exponential(0.1, 0.5), betas0=S.linear(0.5, 0.6, 1))
    before = (opt.group_values("lr"), opt.group_values("betas"))
    with pytest.raises(ValueError, match=r"'betas0' gave 0.6 at step 1: Invalid beta parameter at index 0: 1.08"):
        sched.step()
    assert (opt.group_values("lr"), opt.group_values("betas")) == before and sched.count == 0   # lr put back too


def test_a_zero_default_with_a_nonzero_override_has_no_ratio():
    opt = fa.SGD(lr=0.0, overrides={"b": {"lr": 0.5}})
    with pytest.raises(ValueError, match=r"'lr' is 0.0 in the optimizer's default group, so override group 0 "
                                         r"\(lr=0.5\) has no ratio .*groups='same'"):
        fa.Scheduler(opt, lr=S.constant(0.1))
    fa.Scheduler(opt, groups="same", lr=S.constant(0.1))
    assert opt.group_values("lr") == [0.1, 0.1]
    with pytest.raises(ValueError, match=r"groups='all' must be one of 'relative', 'same'"):
        fa.Scheduler(opt, groups="all", lr=S.constant(0.1))


def _quadratic(seed=0):
    rng = np.random.default_rng(seed)
    params = {"a": rng.standard_normal(5), "b": rng.standard_normal(3)}
    target = {"a": rng.standard_normal(5), "b": rng.standard_normal(3)}
    return params, lambda p: {k: p[k] - target[k] for k in p}


@pytest.mark.parametrize("split", [0, 5, 11])
def test_scheduler_resume_keeps_the_group_bases(split):
    def build(lr=0.1):
        opt = fa.Adam(lr=lr, overrides={"b": {"lr": 1.0, "betas": (0.8, 0.99)}})
        return opt, fa.Scheduler(opt, lr=S.cosine(0.1, 20, warmup_steps=3), betas0=S.linear(0.9, 0.85, 20))

    def train(opt, sched, params, grads, steps):
        for _ in range(steps):
            opt.update(params, grads(params))
            sched.step()

    params, grads = _quadratic()
    opt, sched = build()
    train(opt, sched, params, grads, 20)

    params2, _ = _quadratic()
    opt2, sched2 = build()
    train(opt2, sched2, params2, grads, split)
    state = pickle.loads(pickle.dumps((opt2.state_dict(), sched2.state_dict(), params2)))
    opt3, sched3 = build(lr=0.5)                       # other bases at construction: the saved ones must win
    opt3.load_state_dict(state[0])
    sched3.load_state_dict(state[1])
    params3 = state[2]
    train(opt3, sched3, params3, grads, 20 - split)
    assert all(np.array_equal(params3[k], params[k]) for k in params)
    assert opt3.group_values("lr") == opt.group_values("lr") and opt3.group_values("betas") == opt.group_values("betas")
    assert sched3.state_dict() == sched.state_dict()


def test_scheduler_loaded_before_binding_uses_the_saved_bases():
    opt = fa.SGD(lr=1.0, overrides={"b": {"lr": 10.0}})
    sched = fa.Scheduler(opt, per="epoch", lr=S.exponential(1.0, 0.5))
    sched.step()
    state = pickle.loads(pickle.dumps(sched.state_dict()))
    assert state == {"count": 1, "bases": {"lr": [1.0, 10.0]}}
    resumed_opt = fa.SGD(lr=1.0, overrides={"b": {"lr": 10.0}})
    resumed_opt.set_group_values("lr", [0.5, 5.0])     # e.g. an optimizer loaded from a checkpoint
    late = fa.Scheduler(per="epoch", lr=S.exponential(1.0, 0.5))
    late.load_state_dict(state)
    late.on_train_begin(type("T", (), {"optimizer": resumed_opt})())
    late.step()
    assert resumed_opt.group_values("lr") == [0.25, 2.5]
    old_format = fa.Scheduler(fa.SGD(lr=1.0), lr=S.exponential(1.0, 0.5))
    old_format.load_state_dict({"count": 2})           # checkpoints from before the bases still load
    assert old_format.optimizer.lr == 0.25


@pytest.mark.parametrize("state, error, message", [
    ({"count": 1, "bases": {"lr": [1.0]}}, ValueError,
     r"state_dict\['bases'\]\['lr'\] has 1 values, the optimizer has 2 lr groups"),
    ({"count": 1, "bases": {"momentum": [1.0, 2.0]}}, ValueError, r"bases'\] is for \['momentum'\]"),
    ({"count": 1, "bases": {"lr": "1.0"}}, TypeError, r"must be a list of one base per group"),
    ({"count": 1, "bases": {"lr": [1.0, float("nan")]}}, ValueError, r"\['lr'\]\[1\]=nan must be finite"),
    ({"count": 1, "bases": {"lr": [0.0, 1.0]}}, ValueError, r"has no ratio"),
])
def test_scheduler_bad_bases_change_nothing(state, error, message):
    opt = two_groups()
    sched = fa.Scheduler(opt, lr=S.exponential(1.0, 0.5))
    before = sched.state_dict(), opt.group_values("lr")
    with pytest.raises(error, match=message):
        sched.load_state_dict(state)
    assert (sched.state_dict(), opt.group_values("lr")) == before


# ---- ReduceLROnPlateau and AdaptiveLR ------------------------------------------------------

METRICS = [5.0, 4.0, 4.2, 4.1, 3.9, 3.95, 3.95, 3.9, 3.0, 3.1, 3.2, 3.3, 3.3, 2.0, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6,
           2.6, 2.7, 2.8, 2.9, 3.0]


@pytest.mark.parametrize("min_lr", [0.0, [0.05, 0.3]])
def test_plateau_cuts_every_group_like_torch(min_lr):
    # patience p here is torch's p - 1 (Keras's count, see ReduceLROnPlateau)
    opt = two_groups(lr=1.0, override=4.0)
    ours = fa.ReduceLROnPlateau(opt, factor=0.5, patience=2, threshold=0.01, cooldown=1, min_lr=min_lr)
    got = ours_run(opt, ours, len(METRICS), METRICS)
    want, _ = torch_run([1.0, 4.0], lambda t, o: t.optim.lr_scheduler.ReduceLROnPlateau(
        o, factor=0.5, patience=1, threshold=0.01, cooldown=1, min_lr=min_lr), len(METRICS), METRICS)
    assert np.array_equal(got, want)
    assert ours.num_reductions > 2 and got[-1, 1] / got[-1, 0] != 4.0 or min_lr == 0.0


def test_adaptive_lr_plateau_part_moves_every_group_like_torch():
    opt = two_groups(lr=1.0, override=0.1)
    ours = fa.AdaptiveLR(opt, warmup_epochs=0, patience=3, factor=0.5, stop_patience=1000)
    got = ours_run(opt, ours, len(METRICS), METRICS)
    want, _ = torch_run([1.0, 0.1], lambda t, o: t.optim.lr_scheduler.ReduceLROnPlateau(
        o, factor=0.5, patience=2, threshold=0.0), len(METRICS), METRICS)
    assert np.array_equal(got, want) and ours.num_reductions >= 3


def test_adaptive_lr_warms_every_group_up_like_torchs_linear_lr():
    # The article's warmup init * (e + 1) / w is torch's LinearLR(start_factor=1/w, total_iters=w-1).
    w = 5
    opt = two_groups(lr=0.2, override=3.0)
    ours = fa.AdaptiveLR(opt, warmup_epochs=w, patience=100)
    got = ours_run(opt, ours, w + 2, [1.0] * (w + 2))
    want, _ = torch_run([0.2, 3.0], lambda t, o: t.optim.lr_scheduler.LinearLR(
        o, start_factor=1 / w, total_iters=w - 1), w + 2)
    assert np.max(np.abs(got - want)) <= 1e-15 * 3.0
    assert ours.init_lrs == [0.2, 3.0] and got[w - 1].tolist() == pytest.approx([0.2, 3.0], rel=1e-15)


def test_adaptive_lr_init_lr_replaces_only_the_default_groups_target():
    opt = two_groups(lr=1.0, override=3.0)
    ours = fa.AdaptiveLR(opt, warmup_epochs=2, init_lr=0.5)
    assert opt.group_values("lr") == [0.25, 1.5]
    ours.step(1.0)
    assert opt.group_values("lr") == [0.5, 3.0] and ours.init_lr == 0.5 and ours.current_lr == 0.5


@pytest.mark.parametrize("make", [
    lambda opt: fa.ReduceLROnPlateau(opt, factor=0.5, patience=2, cooldown=1, threshold=0.01, min_lr=[0.05, 0.1]),
    lambda opt: fa.AdaptiveLR(opt, warmup_epochs=3, patience=2, factor=0.5, cooldown=1, stop_patience=50),
], ids=["ReduceLROnPlateau", "AdaptiveLR"])
@pytest.mark.parametrize("split", [1, 4, 9, 15])
@pytest.mark.parametrize("late", [False, True], ids=["bound", "late-bound"])
def test_lr_controllers_resume_every_group_exactly(make, split, late):
    def run(opt, controller, metrics):
        out = []
        for m in metrics:
            controller.step(m)
            out.append(opt.group_values("lr"))
        return out

    opt = two_groups(lr=1.0, override=2.0, cls=fa.Adam)
    controller = make(opt)
    uninterrupted = run(opt, controller, METRICS)

    opt_a = two_groups(lr=1.0, override=2.0, cls=fa.Adam)
    first = make(opt_a)
    head = run(opt_a, first, METRICS[:split])
    saved_opt, saved_ctl = pickle.loads(pickle.dumps((opt_a.state_dict(), first.state_dict())))
    opt_b = two_groups(lr=1.0, override=2.0, cls=fa.Adam)  # a fresh process: the override back at its base
    opt_b.load_state_dict(saved_opt)
    second = make(None if late else opt_b)
    second.load_state_dict(saved_ctl)
    if late:
        second.on_train_begin(type("T", (), {"optimizer": opt_b})())
    tail = run(opt_b, second, METRICS[split:])
    assert head + tail == uninterrupted
    assert second.state_dict() == controller.state_dict()


def test_plateau_min_lr_per_group_is_checked():
    with pytest.raises(ValueError, match=r"min_lr has 3 values, the optimizer has 2 lr groups"):
        fa.ReduceLROnPlateau(two_groups(), min_lr=[0.0, 0.1, 0.2])
    with pytest.raises(ValueError, match=r"min_lr\[1\]=-0.1 must be >= 0"):
        fa.ReduceLROnPlateau(two_groups(), min_lr=[0.0, -0.1])
    with pytest.raises(ValueError, match=r"min_lr=\[\] must be a number or one number per lr group"):
        fa.AdaptiveLR(two_groups(), min_lr=[])
    plateau = fa.ReduceLROnPlateau(two_groups(), factor=0.5)
    with pytest.raises(ValueError, match=r"state_dict\['lrs'\] has 1 values, the optimizer has 2 lr groups"):
        plateau.load_state_dict({**plateau.state_dict(), "lrs": [0.1]})
    with pytest.raises(ValueError, match=r"state_dict\['lrs'\]\[1\]=-1.0 must be >= 0"):
        plateau.load_state_dict({**plateau.state_dict(), "lrs": [0.1, -1.0]})
    assert plateau.optimizer.group_values("lr") == [1.0, 10.0]
    adaptive = fa.AdaptiveLR(two_groups(), warmup_epochs=0)
    with pytest.raises(ValueError, match=r"state_dict\['current_lr'\] has 3 values"):
        adaptive.load_state_dict({**adaptive.state_dict(), "current_lr": [0.1, 0.2, 0.3]})
    assert adaptive.current_lrs == [1.0, 10.0]
