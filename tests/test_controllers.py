"""Controllers: Scheduler, ReduceLROnPlateau, EarlyStopping and AdaptiveLR
against hand-worked sequences and the seed article's scheduler, as trainer
callbacks, and resumed from checkpoints."""

import pickle

import numpy as np
import pytest

import fastadapt as fa
from fastadapt import schedules as S

from helpers import same_bits, trees_same_bits


class FakeTrainer:
    """The attributes the callback protocol lets a callback use."""

    def __init__(self, optimizer=None, params=None):
        self.optimizer = optimizer
        self.params = params
        self.history = {}
        self.stop_training = False


def fit(trainer, callbacks, epoch_logs, batches_per_epoch=0, first_epoch=0, on_batch=None):
    """Call the hooks in the protocol's order; returns the lr after each epoch."""
    lrs = []
    for cb in callbacks:
        cb.on_train_begin(trainer)
    step = first_epoch * batches_per_epoch
    for epoch, logs in enumerate(epoch_logs, start=first_epoch):
        for cb in callbacks:
            cb.on_epoch_begin(epoch, trainer)
        for _ in range(batches_per_epoch):
            if on_batch is not None:
                on_batch(trainer)
            for cb in callbacks:
                cb.on_batch_end(step, {"loss": 1.0}, trainer)
            step += 1
        for cb in callbacks:
            cb.on_epoch_end(epoch, logs, trainer)
        lrs.append(trainer.optimizer.lr if trainer.optimizer is not None else None)
        if trainer.stop_training:
            break
    for cb in callbacks:
        cb.on_train_end(trainer)
    return lrs


def checkpoint(obj):
    """A state_dict as it comes back from disk (a deep copy)."""
    return pickle.loads(pickle.dumps(obj.state_dict()))


# ---- Scheduler -------------------------------------------------------------------------

def test_scheduler_applies_step_zero_at_construction_then_advances():
    opt = fa.Adam(lr=1.0)
    lr = S.linear_warmup(1e-3, 4)
    b1 = S.linear(0.95, 0.85, 4)
    sched = fa.Scheduler(opt, lr=lr, betas0=b1)
    assert opt.lr == lr(0) and opt.betas == (b1(0), 0.999)
    for k in range(1, 7):
        applied = sched.step()
        assert opt.lr == lr(k) and opt.betas[0] == b1(k) and opt.betas[1] == 0.999
        assert applied == {"lr": lr(k), "betas0": b1(k)} and sched.count == k


@pytest.mark.parametrize("make, name, attribute", [
    (lambda: fa.SGD(momentum=0.5), "momentum", lambda o: o.momentum),
    (lambda: fa.AdamW(), "weight_decay", lambda o: o.weight_decay),
    (lambda: fa.Adam(), "betas1", lambda o: o.betas[1]),
    (lambda: fa.RMSProp(), "alpha", lambda o: o.alpha),
])
def test_scheduler_drives_any_hyperparameter(make, name, attribute):
    opt = make()
    sched = fa.Scheduler(opt, **{name: S.linear(0.9, 0.5, 4)})
    seen = [attribute(opt)] + [(sched.step(), attribute(opt))[1] for _ in range(5)]
    assert seen == pytest.approx([0.9, 0.8, 0.7, 0.6, 0.5, 0.5])


def test_scheduler_bracket_element_name():
    opt = fa.Adam()
    fa.Scheduler(opt, **{"betas[0]": S.constant(0.8)})
    assert opt.betas == (0.8, 0.999)


def test_scheduler_per_step_and_per_epoch_as_callbacks():
    opt = fa.SGD(lr=1.0)
    per_step = fa.Scheduler(None, per="step", lr=S.exponential(1.0, 0.5))
    per_epoch = fa.Scheduler(None, per="epoch", momentum=S.piecewise_constant([2], [0.0, 0.9]))
    trainer = FakeTrainer(opt)
    lrs = fit(trainer, [per_step, per_epoch], [{}] * 3, batches_per_epoch=4)
    assert lrs == [0.5 ** 4, 0.5 ** 8, 0.5 ** 12]          # one step per batch
    assert per_epoch.count == 3 and opt.momentum == 0.9 and per_step.count == 12
    assert per_step.optimizer is opt                        # bound at on_train_begin


def test_scheduler_rejects_unknown_names_and_surfaces_optimizer_errors():
    with pytest.raises(ValueError, match=r"SGD has no schedulable hyperparameter 'betas0'; valid names: lr, "
                                         r"momentum, dampening, weight_decay, max_grad_norm"):
        fa.Scheduler(fa.SGD(), betas0=S.constant(0.9))
    with pytest.raises(ValueError, match=r"has no schedulable hyperparameter 'nesterov'"):
        fa.Scheduler(fa.SGD(), nesterov=S.constant(1.0))
    with pytest.raises(ValueError, match=r"'lr' gave -1.0 at step 0: Invalid lr: -1.0 \(must be >= 0\)"):
        fa.Scheduler(fa.Adam(), lr=S.constant(-1.0))
    opt = fa.Adam()
    sched = fa.Scheduler(opt, betas0=S.linear(0.9, 1.1, 2))
    with pytest.raises(ValueError, match=r"'betas0' gave 1.0 at step 1: Invalid beta parameter at index 0"):
        sched.step()
    assert opt.betas == (0.9, 0.999) and sched.count == 0    # the optimizer refused the bad value
    del sched  # let the next scheduler own betas0 (two live ones on it would warn)
    both = fa.Scheduler(opt, lr=S.linear(0.1, 0.3, 2), betas0=S.linear(0.9, 1.1, 2))
    with pytest.raises(ValueError, match="betas0"):
        both.step()
    assert opt.lr == 0.1 and opt.betas == (0.9, 0.999)     # lr put back as well
    with pytest.raises(TypeError, match=r"Scheduler\(lr=...\) must be a schedule"):
        fa.Scheduler(fa.Adam(), lr=0.1)
    with pytest.raises(ValueError, match="at least one schedule"):
        fa.Scheduler(fa.Adam())
    with pytest.raises(ValueError, match=r"per='batch' must be one of 'step', 'epoch'"):
        fa.Scheduler(fa.Adam(), per="batch", lr=S.constant(0.1))
    with pytest.raises(ValueError, match="trainer has none"):
        fa.Scheduler(lr=S.constant(0.1)).on_train_begin(FakeTrainer())


def _quadratic_problem(seed=0):
    rng = np.random.default_rng(seed)
    params = {"a": rng.standard_normal(5), "b": {"c": rng.standard_normal((3, 2)).astype(np.float32)}}
    targets = {"a": rng.standard_normal(5), "b": {"c": rng.standard_normal((3, 2)).astype(np.float32)}}

    def grads(p):
        return {"a": p["a"] - targets["a"], "b": {"c": p["b"]["c"] - targets["b"]["c"]}}

    return params, grads


def test_scheduler_resume_equals_uninterrupted_run():
    def build(lr=1e-3):
        opt = fa.Adam(lr=lr)
        return opt, fa.Scheduler(opt, lr=S.one_cycle(0.1, 30), betas0=S.one_cycle_momentum(30))

    def train(opt, sched, params, grads, steps):
        for _ in range(steps):
            opt.update(params, grads(params))
            sched.step()

    params, grads = _quadratic_problem()
    opt, sched = build()
    train(opt, sched, params, grads, 30)

    params2, _ = _quadratic_problem()
    opt2, sched2 = build()
    train(opt2, sched2, params2, grads, 12)
    opt_state, sched_state, saved_params = pickle.loads(pickle.dumps(
        (opt2.state_dict(), sched2.state_dict(), params2)))
    opt3, sched3 = build(lr=0.5)
    opt3.load_state_dict(opt_state)
    sched3.load_state_dict(sched_state)
    assert opt3.lr == sched2.last_values["lr"]
    train(opt3, sched3, saved_params, grads, 18)
    assert trees_same_bits(saved_params, params)
    assert sched3.state_dict() == sched.state_dict() and opt3.hyperparameters == opt.hyperparameters


# ---- ReduceLROnPlateau ------------------------------------------------------------------------

def plateau_run(metrics, lr=1.0, **kwargs):
    opt = fa.SGD(lr=lr)
    plateau = fa.ReduceLROnPlateau(opt, **kwargs)
    return [plateau.step(m) for m in metrics], plateau


def test_plateau_rel_threshold_cooldown_and_min_lr():
    # Worked by hand: best*(1 - 0.1) must be beaten; a cut every 2 bad epochs,
    # then 1 cooldown epoch in which wait stays 0; never below min_lr.
    metrics = [10, 9.5, 9.2, 8.0, 8.0, 7.9, 7.5, 7.5, 7.5, 7.5, 7.5, 7.5]
    lrs, plateau = plateau_run(metrics, factor=0.5, patience=2, threshold=0.1, threshold_mode="rel",
                               cooldown=1, min_lr=0.2)
    assert lrs == [1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2, 0.2, 0.2, 0.2]
    assert plateau.num_reductions == 3 and plateau.best == 8.0


def test_plateau_abs_threshold():
    lrs, plateau = plateau_run([5, 4.6, 4.4, 4.5, 3.0], factor=0.1, patience=1, threshold=0.5,
                               threshold_mode="abs")
    assert lrs == pytest.approx([1, 0.1, 0.1, 0.01, 0.01]) and plateau.best == 3.0
    # the same losses in rel mode: nothing beats 5 * (1 - 0.5), so every epoch after the first cuts
    lrs, _ = plateau_run([5, 4.6, 4.4, 4.5, 3.0], factor=0.1, patience=1, threshold=0.5, threshold_mode="rel")
    assert lrs == pytest.approx([1, 0.1, 0.01, 0.001, 0.0001])


def test_plateau_max_mode():
    accuracies = [0.5, 0.6, 0.605, 0.61, 0.7, 0.69, 0.7]
    lrs, plateau = plateau_run(accuracies, mode="max", factor=0.5, patience=2, threshold=0.01)
    assert lrs == [1, 1, 1, 1, 1, 1, 0.5] and plateau.best == 0.7


def test_plateau_rel_threshold_with_negative_metrics():
    # The margin is relative to |best|: x < best - |best| * threshold. torch's
    # x < best * (1 - threshold) would take -9.5 as an improvement on -10
    # (best * 0.9 = -9): a loss getting worse would never be cut.
    lrs, plateau = plateau_run([-10.0, -9.5, -9.2, -11.5, -11.6, -13.0], factor=0.5, patience=2, threshold=0.1)
    assert lrs == [1, 1, 0.5, 0.5, 0.5, 0.5] and plateau.best == -13.0 and plateau.wait == 0
    # max mode (a negated error): x > best + |best| * threshold
    lrs, plateau = plateau_run([-1.0, -1.05, -1.08, -0.5, -0.48], mode="max", factor=0.5, patience=2,
                               threshold=0.1)
    assert lrs == [1, 1, 0.5, 0.5, 0.5] and plateau.best == -0.5 and plateau.wait == 1
    # best == 0: any decrease improves; an infinite metric gives no NaN margin
    lrs, plateau = plateau_run([0.0, -1e-9, float("-inf"), -5.0], factor=0.5, patience=1, threshold=0.1)
    assert lrs == [1, 1, 1, 0.5] and plateau.best == float("-inf")


def test_plateau_counts_like_keras_one_epoch_before_torch():
    # patience=2: the cut comes on the 2nd epoch without improvement (torch: the 3rd)
    lrs, _ = plateau_run([1.0, 1.0, 1.0, 1.0], factor=0.5, patience=2, threshold=0.0)
    assert lrs == [1, 1, 0.5, 0.5]
    lrs, _ = plateau_run([1.0, float("nan"), float("nan")], factor=0.5, patience=2, threshold=0.0)
    assert lrs == [1, 1, 0.5]                               # NaN never improves


def test_plateau_as_callback_reads_the_monitored_key():
    opt = fa.Adam(lr=1.0)
    plateau = fa.ReduceLROnPlateau(monitor="val_acc", mode="max", patience=1, factor=0.5)
    lrs = fit(FakeTrainer(opt), [plateau], [{"val_acc": 0.5}, {"val_acc": 0.4}, {"val_acc": 0.6}])
    assert lrs == [1, 0.5, 0.5] and plateau.last_epoch == 2
    # a monitor the logs lack: a warning (as Keras), and the epoch does not count
    quiet = fa.ReduceLROnPlateau(patience=0)
    with pytest.warns(RuntimeWarning, match=r"monitors 'val_loss', which this epoch's logs lack, so it did nothing "
                                            r"this epoch \(logged: 'loss', 'val_acc'\)"):
        lrs = fit(FakeTrainer(fa.Adam(lr=1.0)), [quiet], [{"loss": 1.0, "val_acc": 0.5}] * 3)
    assert lrs == [1, 1, 1] and quiet.last_epoch == -1
    # 'auto' (the default) reads an accuracy as higher-is-better, as Keras
    auto = fa.ReduceLROnPlateau(monitor="val_acc", patience=1, factor=0.5)
    assert fit(FakeTrainer(fa.Adam(lr=1.0)), [auto], [{"val_acc": 0.5}, {"val_acc": 0.4}, {"val_acc": 0.6}]) == \
        [1, 0.5, 0.5]


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(factor=1.0), ValueError, r"factor=1.0 must be in \[0, 1\)"),
    (dict(patience=-1), ValueError, r"patience=-1 must be >= 0"),
    (dict(patience=2.0), TypeError, r"patience=2.0 must be an integer"),
    (dict(mode="minimum"), ValueError, r"mode='minimum' must be one of 'auto', 'min', 'max'"),
    (dict(threshold_mode="relative"), ValueError, r"threshold_mode='relative' must be one of 'rel', 'abs'"),
    (dict(threshold=1.0), ValueError, r"threshold=1.0 must be in \[0, 1\)"),
    (dict(threshold=-0.1, threshold_mode="abs"), ValueError, r"threshold=-0.1 must be >= 0"),
    (dict(cooldown=-2), ValueError, r"cooldown=-2 must be >= 0"),
    (dict(min_lr=-1e-6), ValueError, r"min_lr=-1e-06 must be >= 0"),
    (dict(monitor=3), TypeError, r"monitor=3 must be a log key"),
    (dict(min_lr=float("inf")), ValueError, r"min_lr=inf must be finite"),
])
def test_plateau_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        fa.ReduceLROnPlateau(fa.SGD(), **kwargs)


def test_plateau_bad_metric_and_optimizer():
    with pytest.raises(TypeError, match=r"ReduceLROnPlateau.step\(metric\) must be a number, got str"):
        fa.ReduceLROnPlateau(fa.SGD()).step("0.5")
    with pytest.raises(TypeError, match=r"needs a fastadapt optimizer \(with .lr\), got dict"):
        fa.ReduceLROnPlateau({"lr": 1.0})
    with pytest.raises(ValueError, match="has no optimizer yet"):
        fa.ReduceLROnPlateau().step(1.0)


# ---- EarlyStopping ------------------------------------------------------------------------

def stopping_run(metrics, **kwargs):
    """Each epoch writes its index into the params, so a restore shows which epoch was best."""
    params = {"w": np.zeros(3), "layer": [np.zeros((2, 2), np.float32)]}
    arrays = [params["w"], params["layer"][0]]
    stopper = fa.EarlyStopping(params, **kwargs)
    stopped_at = None
    for epoch, m in enumerate(metrics):
        for a in arrays:
            a[...] = epoch
        if stopper.step(m):
            stopped_at = epoch
            break
    assert params["w"] is arrays[0] and params["layer"][0] is arrays[1]    # the same arrays
    return stopped_at, stopper, params


def test_early_stopping_min_delta_patience_and_restore():
    stopped_at, stopper, params = stopping_run([1.0, 0.95, 0.85, 0.9, 0.86, 0.8], min_delta=0.1, patience=2)
    assert stopped_at == 4 and stopper.stopped_epoch == 4 and stopper.should_stop
    assert stopper.best == 0.85 and stopper.best_epoch == 2
    assert np.all(params["w"] == 2) and np.all(params["layer"][0] == 2)    # epoch 2's values, in place


def test_early_stopping_max_mode_and_patience_zero():
    stopped_at, stopper, _ = stopping_run([0.1, 0.2, 0.2, 0.3], mode="max", patience=1)
    assert stopped_at == 2 and stopper.best == 0.2 and stopper.best_epoch == 1
    stopped_at, _, _ = stopping_run([1.0, 0.5, 0.6], patience=0)
    assert stopped_at == 2


def test_early_stopping_baseline():
    # improving, but never better than the baseline: stops after `patience` epochs
    stopped_at, stopper, params = stopping_run([1.0, 0.9, 0.8, 0.7], baseline=0.5, patience=3)
    assert stopped_at == 2 and stopper.best_epoch == 2 and np.all(params["w"] == 2)
    # once the baseline is beaten the ordinary count applies
    stopped_at, stopper, params = stopping_run([1.0, 0.4, 0.45, 0.46, 0.47], baseline=0.5, patience=3)
    assert stopped_at == 4 and stopper.best_epoch == 1 and np.all(params["w"] == 1)


def test_early_stopping_start_epoch():
    metrics = [0.1, 0.1, 1.0, 1.1, 1.2]
    assert stopping_run(metrics, patience=2)[0] == 2
    stopped_at, stopper, params = stopping_run(metrics, patience=2, start_epoch=2)
    assert stopped_at == 4 and stopper.best == 1.0 and np.all(params["w"] == 2)


def test_early_stopping_as_callback_restores_at_train_end():
    params = {"w": np.zeros(4)}
    stopper = fa.EarlyStopping(monitor="val_loss", patience=5)
    trainer = FakeTrainer(fa.SGD(), params)
    losses = [3.0, 1.0, 2.0, 2.5]

    def train_a_batch(tr):
        tr.params["w"] += 1.0

    fit(trainer, [stopper], [{"val_loss": x} for x in losses], batches_per_epoch=1, on_batch=train_a_batch)
    assert not trainer.stop_training                       # ended without an early stop ...
    assert np.all(params["w"] == 2.0)                      # ... and still on the best epoch's params
    trainer = FakeTrainer(fa.SGD(), {"w": np.zeros(4)})
    stopper = fa.EarlyStopping(patience=2)
    fit(trainer, [stopper], [{"val_loss": x} for x in [1.0, 2.0, 2.0, 0.5]], batches_per_epoch=1,
        on_batch=train_a_batch)
    assert trainer.stop_training and stopper.stopped_epoch == 2 and np.all(trainer.params["w"] == 1.0)


def test_early_stopping_needs_params_to_restore():
    with pytest.raises(ValueError, match=r"restore_best=True\) needs the params to snapshot"):
        fa.EarlyStopping().step(1.0)
    assert fa.EarlyStopping(restore_best=False, patience=1).step(1.0) is False
    with pytest.raises(ValueError, match="trainer has none"):
        fa.EarlyStopping().on_train_begin(FakeTrainer())
    with pytest.raises(TypeError, match=r"params\['w'\] must be a NumPy array, got list"):
        fa.EarlyStopping({"w": [1.0, 2.0]})
    with pytest.raises(ValueError, match=r"min_delta=-0.1 must be >= 0"):
        fa.EarlyStopping(restore_best=False, min_delta=-0.1)


# ---- AdaptiveLR ------------------------------------------------------------------------

class ArticleScheduler:
    """The seed article's AdaptiveLRScheduler (section 3.2), verbatim logic: the oracle."""

    def __init__(self, init_lr=0.1, patience=5, factor=0.5, warmup_epochs=10):
        self.init_lr = init_lr
        self.patience = patience
        self.factor = factor
        self.warmup_epochs = warmup_epochs
        self.best_loss = float('inf')
        self.wait = 0
        self.current_lr = init_lr

    def step(self, val_loss, epoch):
        if epoch < self.warmup_epochs:
            self.current_lr = self.init_lr * (epoch + 1) / self.warmup_epochs
            return self.current_lr
        if val_loss < self.best_loss:
            self.best_loss = val_loss
            self.wait = 0
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.current_lr *= self.factor
                self.wait = 0
        return self.current_lr


def test_adaptive_lr_hand_worked():
    # Issue 12 item 2: step(metric of epoch e) sets the lr of epoch e + 1, so the
    # lr *used in* epoch e < w is init * (e + 1) / w (was: epochs 0 and 1 both at
    # init / w, full lr only at epoch w). The metric of epoch w - 1 (the first one
    # trained at the full lr) is the first the plateau counts.
    opt = fa.SGD(lr=0.3)
    adaptive = fa.AdaptiveLR(opt, warmup_epochs=3, patience=2, factor=0.5)
    assert opt.lr == pytest.approx(0.1)                      # epoch 0's lr, before epoch 0
    metrics = [9, 9, 9, 5, 5, 6, 4, 4, 4, 4, 4, 4, 4]
    lrs = [adaptive.step(m) for m in metrics]                # lrs[e] is the lr of epoch e + 1
    assert lrs == pytest.approx([0.2, 0.3, 0.3, 0.3, 0.3, 0.15, 0.15, 0.15, 0.075, 0.075, 0.0375, 0.0375, 0.01875])
    assert [opt.lr] == lrs[-1:]
    assert adaptive.should_stop and adaptive.epochs_since_best == 6 and adaptive.stop_patience == 6


@pytest.mark.parametrize("seed", range(8))
def test_adaptive_lr_matches_the_article_on_random_losses(seed):
    rng = np.random.default_rng(seed)
    patience, warmup, factor = int(rng.integers(1, 6)), int(rng.integers(1, 12)), float(rng.uniform(0.1, 0.9))
    if seed == 0:
        warmup = 0                                            # no warmup: the plateau rule from epoch 0
    init_lr = float(rng.uniform(1e-4, 1.0))
    # rounded random walks: plateaus, ties and long runs without improvement
    losses = np.round(np.cumsum(rng.normal(-0.02, 0.2, size=120)) + 10, 1).tolist()
    if seed % 2:
        losses[rng.integers(0, 120)] = float("nan")
    # The article's step(val_loss, epoch) gives the lr *for* `epoch`, given the loss
    # seen before it: called before epoch 0 (nothing seen yet; warmup ignores it)
    # and then before epoch n with the loss of epoch n - 1.
    article = ArticleScheduler(init_lr=init_lr, patience=patience, factor=factor, warmup_epochs=warmup)
    opt = fa.Adam(lr=init_lr)
    ours = fa.AdaptiveLR(opt, warmup_epochs=warmup, patience=patience, factor=factor)
    # without warmup the article has no lr to give before a loss is seen: init_lr
    assert opt.lr == (article.step(None, 0) if warmup else init_lr)
    for epoch, loss in enumerate(losses):                    # loss: the metric of epoch `epoch`
        expected = article.step(loss, epoch + 1)             # the lr of epoch `epoch + 1`
        assert ours.step(loss) == expected and opt.lr == expected, epoch


def test_adaptive_lr_as_callback_binds_and_stops():
    opt = fa.SGD(lr=0.2)
    adaptive = fa.AdaptiveLR(warmup_epochs=2, patience=1, factor=0.5, stop_patience=2)
    trainer = FakeTrainer(opt)
    lrs = fit(trainer, [adaptive], [{"val_loss": x} for x in [5, 5, 3, 3, 3, 3, 3]])
    assert lrs == [0.2, 0.2, 0.2, 0.1, 0.05]                 # the lr after epoch e is epoch e + 1's
    assert trainer.stop_training and adaptive.should_stop and adaptive.init_lr == 0.2


def test_adaptive_lr_min_lr_and_cooldown():
    opt = fa.SGD(lr=1.0)
    adaptive = fa.AdaptiveLR(opt, warmup_epochs=0, patience=1, factor=0.5, cooldown=1, min_lr=0.3,
                             stop_patience=100)
    lrs = [adaptive.step(m) for m in [1, 1, 1, 1, 1, 1]]
    assert lrs == [1.0, 0.5, 0.5, 0.3, 0.3, 0.3] and adaptive.num_reductions == 2


# ---- resume from a checkpoint ---------------------------------------------------------------

METRICS = [5.0, 4.0, 4.2, 4.1, 3.9, 3.95, 3.95, 3.9, 3.0, 3.1, 3.2, 3.3, 3.3, 2.0, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6]


@pytest.mark.parametrize("make", [
    lambda opt: fa.ReduceLROnPlateau(opt, factor=0.5, patience=2, cooldown=1, threshold=0.01, min_lr=0.05),
    lambda opt: fa.AdaptiveLR(opt, warmup_epochs=3, patience=2, factor=0.5, cooldown=1, stop_patience=5),
], ids=["ReduceLROnPlateau", "AdaptiveLR"])
@pytest.mark.parametrize("split", [1, 3, 7, 12])
def test_lr_controllers_resume_exactly(make, split):
    def run(opt, controller, metrics):
        out = []
        for m in metrics:
            controller.step(m)
            out.append((opt.lr, getattr(controller, "should_stop", False)))
        return out

    opt = fa.Adam(lr=1.0)
    controller = make(opt)
    uninterrupted = run(opt, controller, METRICS)

    opt_a = fa.Adam(lr=1.0)
    first = make(opt_a)
    head = run(opt_a, first, METRICS[:split])
    saved_opt, saved_ctl = pickle.loads(pickle.dumps((opt_a.state_dict(), first.state_dict())))
    opt_b = fa.Adam(lr=123.0)                 # a fresh process builds everything again ...
    second = make(opt_b)
    opt_b.load_state_dict(saved_opt)          # ... then loads both checkpoints
    second.load_state_dict(saved_ctl)
    tail = run(opt_b, second, METRICS[split:])
    assert head + tail == uninterrupted
    assert second.state_dict() == controller.state_dict()


def test_lr_controllers_resume_through_callbacks_with_late_binding():
    logs = [{"val_loss": m} for m in METRICS]
    trainer = FakeTrainer(fa.Adam(lr=1.0))
    full = fit(trainer, [fa.AdaptiveLR(warmup_epochs=2, patience=2, stop_patience=100)], logs)

    trainer_a = FakeTrainer(fa.Adam(lr=1.0))
    adaptive_a = fa.AdaptiveLR(warmup_epochs=2, patience=2, stop_patience=100)
    head = fit(trainer_a, [adaptive_a], logs[:6])
    state = checkpoint(adaptive_a)
    trainer_b = FakeTrainer(fa.Adam(lr=7.0))
    adaptive_b = fa.AdaptiveLR(warmup_epochs=2, patience=2, stop_patience=100)
    adaptive_b.load_state_dict(state)          # before the optimizer is bound
    tail = fit(trainer_b, [adaptive_b], logs[6:], first_epoch=6)
    assert head + tail == full


@pytest.mark.parametrize("split", [1, 4, 5])
def test_early_stopping_resumes_exactly(split):
    metrics = [3.0, 2.0, 2.5, 1.5, 1.6, 1.55, 1.7, 1.4, 1.8, 1.9, 2.0, 2.1]

    def run(stopper, params, metrics, first_epoch):
        decisions = []
        for epoch, m in enumerate(metrics, start=first_epoch):
            params["w"][...] = epoch * 1.5
            decisions.append(stopper.step(m))
            if decisions[-1]:
                break
        return decisions

    params = {"w": np.zeros(3, np.float32)}
    full_stopper = fa.EarlyStopping(params, patience=3, min_delta=0.01)
    full = run(full_stopper, params, metrics, 0)

    params_a = {"w": np.zeros(3, np.float32)}
    stopper_a = fa.EarlyStopping(params_a, patience=3, min_delta=0.01)
    head = run(stopper_a, params_a, metrics[:split], 0)
    state, saved_params = pickle.loads(pickle.dumps((stopper_a.state_dict(), params_a)))
    stopper_b = fa.EarlyStopping(saved_params, patience=3, min_delta=0.01)
    stopper_b.load_state_dict(state)
    tail = run(stopper_b, saved_params, metrics[split:], split)
    assert head + tail == full and any(full)
    assert same_bits(saved_params["w"], params["w"])         # both restored the same best epoch
    after, before = stopper_b.state_dict(), full_stopper.state_dict()
    assert after.pop("best_params")[0].tobytes() == before.pop("best_params")[0].tobytes() and after == before


@pytest.mark.parametrize("make, state, message", [
    (lambda: fa.ReduceLROnPlateau(fa.SGD()), {"best": 1.0}, r"state_dict keys differ: missing \['cooldown_left'"),
    (lambda: fa.Scheduler(fa.SGD(), lr=S.constant(0.1)), {"count": -1}, r"state_dict\['count'\]=-1 must be >= 0"),
    (lambda: fa.AdaptiveLR(fa.SGD()), [1, 2], r"AdaptiveLR.load_state_dict needs a dict, got list"),
    (lambda: fa.EarlyStopping({"w": np.zeros(2)}),
     dict(best=1.0, best_epoch=0, wait=0, last_epoch=0, stopped_epoch=None, best_params=[np.zeros(3)]),
     r"saved best params\['w'\] is float64 \(3,\), the params are float64 \(2,\)"),
])
def test_load_state_dict_checks_first(make, state, message):
    controller = make()
    before = controller.state_dict()
    with pytest.raises((TypeError, ValueError), match=message):
        controller.load_state_dict(state)
    after = controller.state_dict()
    assert {k: v for k, v in after.items() if k != "best_params"} == \
        {k: v for k, v in before.items() if k != "best_params"}



@pytest.mark.parametrize("make, change, message", [
    (lambda: fa.AdaptiveLR(fa.SGD(lr=0.1), warmup_epochs=0), dict(current_lr=-1.0, wait=3),
     r"state_dict\['current_lr'\]=-1.0 must be >= 0"),
    (lambda: fa.AdaptiveLR(fa.SGD(lr=0.1), warmup_epochs=0), dict(init_lr=float("nan")),
     r"state_dict\['init_lr'\]=nan must be finite"),
    (lambda: fa.ReduceLROnPlateau(fa.SGD()), dict(best=float("nan")),
     r"state_dict\['best'\]=nan must be a number or \+-inf, not NaN"),
    (lambda: fa.EarlyStopping(restore_best=False), dict(best=float("nan")), r"state_dict\['best'\]=nan"),
    (lambda: fa.Scheduler(fa.Adam(), betas0=S.linear(0.9, 1.1, 2)), dict(count=2),
     r"'betas0' gave 1.1 at step 2"),
])
def test_a_refused_state_dict_changes_nothing(make, change, message):
    controller = make()
    optimizer = getattr(controller, "optimizer", None)
    before = controller.state_dict()
    hyper_before = None if optimizer is None else optimizer.hyperparameters
    with pytest.raises((TypeError, ValueError), match=message):
        controller.load_state_dict({**before, **change})
    assert controller.state_dict() == before
    assert hyper_before is None or optimizer.hyperparameters == hyper_before


def test_early_stopping_step_refused_without_params_changes_nothing():
    stopper = fa.EarlyStopping()
    with pytest.raises(ValueError, match="needs the params to snapshot"):
        stopper.step(1.0)
    assert stopper.last_epoch == -1


def test_scheduler_reports_the_values_as_the_optimizer_holds_them():
    opt = fa.Adam()
    sched = fa.Scheduler(opt, lr=lambda k: np.float32(0.1) * (k + 1), betas0=lambda k: np.float32(0.5))
    applied = sched.step()
    assert applied == {"lr": opt.lr, "betas0": opt.betas[0]}
    assert all(type(v) is float for v in applied.values()) and sched.last_values == applied


def test_adaptive_lr_bound_loads_the_state_of_an_unbound_one():
    # a checkpoint taken before the controller ever saw an optimizer has no lrs yet
    state = checkpoint(fa.AdaptiveLR(warmup_epochs=2, patience=1))
    opt = fa.SGD(lr=0.4)
    adaptive = fa.AdaptiveLR(opt, warmup_epochs=2, patience=1)
    adaptive.load_state_dict(state)
    assert adaptive.init_lr == 0.4 and opt.lr == 0.2
    assert [adaptive.step(m) for m in [3.0, 3.0, 3.0]] == [0.4, 0.4, 0.2]    # epochs 1, 2, 3


# ---- issue 12, item 2: the article's warmup, side by side ----------------------------------------

@pytest.mark.parametrize("warmup", [1, 2, 3, 10])
def test_adaptive_lr_warmup_is_the_articles_and_the_schedulers_epoch_by_epoch(warmup):
    """The lr each epoch trains at, from the article (asked before each epoch),
    AdaptiveLR (stepped after each epoch) and Scheduler(per="epoch",
    lr=linear_warmup(init, w)) (stepped after each epoch), run side by side."""
    init = 0.3
    article = ArticleScheduler(init_lr=init, patience=100, warmup_epochs=warmup)
    opt_a, opt_s = fa.SGD(lr=init), fa.SGD(lr=init)
    adaptive = fa.AdaptiveLR(warmup_epochs=warmup, patience=100)
    sched = fa.Scheduler(per="epoch", lr=S.linear_warmup(init, warmup))
    trainer_a, trainer_s = FakeTrainer(opt_a), FakeTrainer(opt_s)
    adaptive.on_train_begin(trainer_a)
    sched.on_train_begin(trainer_s)
    loss = None
    for epoch in range(warmup + 3):
        used_article = article.step(loss, epoch)
        used_adaptive, used_scheduler = opt_a.lr, opt_s.lr          # what this epoch trains at
        if epoch < warmup:
            assert used_adaptive == used_article == used_scheduler == init * (epoch + 1) / warmup, epoch
        else:   # the article keeps init * w / w (its last warmup value); linear_warmup gives init itself
            assert used_adaptive == used_article == pytest.approx(used_scheduler, rel=1e-15), epoch
        loss = 1.0                                                   # this epoch's validation loss
        adaptive.on_epoch_end(epoch, {"val_loss": loss}, trainer_a)
        sched.on_epoch_end(epoch, {"val_loss": loss}, trainer_s)
    assert opt_a.lr == pytest.approx(init, rel=1e-15)                # full lr at epoch w - 1, not w
