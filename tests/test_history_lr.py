"""The history logs the hyperparameters each epoch's steps used (issue 12,
item 3): with a per-step schedule, ``lr`` is the mean of the lrs the
optimizer ran with in that epoch and ``lr_min`` / ``lr_max`` their range,
not the value left standing at the epoch's end (the next epoch's first);
``fa.diagnose`` and ``fa.plot_history`` read those values."""

import numpy as np
import pytest

import fastadapt as fa
from fastadapt.callbacks import Callback

STEPS = 4  # batches per epoch


def _quadratic(seen):
    """loss 0.5 |w|^2 (gradient w), recording the lr the optimizer holds when each step is about to run."""
    def loss_and_grad(params, batch):
        seen.append(seen.optimizer.lr)
        w = params["w"]
        return 0.5 * float(np.sum(w * w)), {"w": w.copy()}
    return loss_and_grad


class _Seen(list):
    optimizer = None


def _fit(schedule, epochs=3, optimizer=None, **schedules):
    seen = _Seen()
    params = {"w": np.ones(3)}
    trainer = fa.Trainer(optimizer or fa.SGD(lr=0.1), loss_and_grad=_quadratic(seen), params=params,
                         callbacks=[fa.Scheduler(per="step", lr=schedule, **schedules)], progress=False)
    seen.optimizer = trainer.optimizer
    history = trainer.fit([(np.zeros(1),)] * STEPS, epochs=epochs)
    return history, [seen[e * STEPS:(e + 1) * STEPS] for e in range(epochs)]


def test_per_step_schedule_logs_the_mean_and_range_each_epoch_used():
    history, used = _fit(lambda k: 0.01 * (k + 1))  # step k runs with 0.01 (k + 1)
    assert used[0] == pytest.approx([0.01, 0.02, 0.03, 0.04])  # the schedule really moved per step
    for e, lrs in enumerate(used):
        assert history["lr"][e] == pytest.approx(np.mean(lrs), rel=1e-12)
        assert history["lr_min"][e] == min(lrs) and history["lr_max"][e] == max(lrs)
    # The bug this replaces: the value standing at epoch end was the next epoch's first lr.
    assert history["lr"][0] != pytest.approx(used[1][0])


def test_per_step_logs_of_batches_and_other_hyperparameters():
    lrs, momenta = [], []

    class Batches(Callback):
        def on_batch_end(self, step, logs, trainer):
            lrs.append(logs["lr"])

    seen = _Seen()
    params = {"w": np.ones(3)}
    opt = fa.SGD(lr=0.1, momentum=0.5)
    trainer = fa.Trainer(opt, loss_and_grad=_quadratic(seen), params=params, progress=False,
                         callbacks=[fa.Scheduler(per="step", momentum=lambda k: 0.5 + 0.01 * k),
                                    Batches()])
    seen.optimizer = opt
    original = trainer.loss_and_grad

    def recording(p, b):
        momenta.append(opt.momentum)
        return original(p, b)

    trainer.loss_and_grad = recording
    history = trainer.fit([(np.zeros(1),)] * STEPS, epochs=2)
    assert lrs == seen and history["lr"] == [0.1, 0.1]  # constant lr: logged as it was, no range columns
    assert "lr_min" not in history
    for e in range(2):
        window = momenta[e * STEPS:(e + 1) * STEPS]
        assert history["momentum"][e] == pytest.approx(np.mean(window), rel=1e-12)
        assert (history["momentum_min"][e], history["momentum_max"][e]) == (min(window), max(window))


def test_range_columns_start_when_the_lr_first_varies_within_an_epoch():
    # Constant 0.1 in epoch 0, then a per-step decay: epoch 0 gets min = max = its lr.
    history, used = _fit(lambda k: 0.1 if k < STEPS else 0.1 / (k - STEPS + 2), epochs=2)
    assert history["lr"][0] == 0.1 and history["lr_min"][0] == history["lr_max"][0] == 0.1
    assert history["lr"][1] == pytest.approx(np.mean(used[1]), rel=1e-12) and history["lr_max"][1] == 0.05


def test_epoch_end_change_counts_for_the_next_epoch():
    class HalveAtEpochEnd(Callback):
        def on_epoch_end(self, epoch, logs, trainer):
            trainer.optimizer.lr = trainer.optimizer.lr / 2

    seen = _Seen()
    trainer = fa.Trainer(fa.SGD(lr=0.1), loss_and_grad=_quadratic(seen), params={"w": np.ones(3)},
                         callbacks=[HalveAtEpochEnd()], progress=False)
    seen.optimizer = trainer.optimizer
    history = trainer.fit([(np.zeros(1),)] * STEPS, epochs=3)
    assert history["lr"] == [0.1, 0.05, 0.025] and "lr_min" not in history


def _diverging_schedule(k):
    # Epoch 0 descends slowly (w shrinks 10% a step); epochs 1-2 overshoot (|1 - lr| > 1), ever harder.
    return 0.1 if k < STEPS else 2.5 + 0.25 * (k - STEPS)


def test_diagnose_cites_the_lr_the_rising_epochs_used(tmp_path):
    history, used = _fit(_diverging_schedule, epochs=3)
    finding = {f.code: f for f in fa.diagnose(history)}["lr_too_high"]
    rises = {r["epoch"]: r for r in finding.evidence["rises"]}
    assert set(rises) == {1, 2}
    for e, rise in rises.items():
        assert rise["lr"] == pytest.approx(np.mean(used[e]), rel=1e-3)  # evidence rounds to 4 digits
        assert rise["lr_min"] == pytest.approx(min(used[e]), rel=1e-3)
        assert rise["lr_max"] == pytest.approx(max(used[e]), rel=1e-3)
    assert finding.evidence["max_lr"] == pytest.approx(max(used[2]), rel=1e-3)  # the highest lr any step used
    # The message names the worst epoch as people count (index 2 is epoch 3) and the lrs it used.
    worst = max(rises.values(), key=lambda r: r["rise"])
    assert f"epoch {worst['epoch'] + 1} averaged" in finding.message
    assert f"at lr {min(used[worst['epoch']]):.4g}-{max(used[worst['epoch']]):.4g}" in finding.message


def test_plateau_sees_an_lr_that_moved_within_the_window():
    # A per-step schedule that ends each epoch where it started: the mean never moves, the lr does.
    h = fa.History()
    for i in range(7):
        h.append(i, {"loss": 1.0 - 0.0001 * i, "lr": 0.01, "lr_min": 0.001, "lr_max": 0.019})
    h.info["initial_loss"] = 2.3
    (plateau,) = fa.diagnose(h)
    assert plateau.code == "plateau" and "already moved" in plateau.advice


def test_plot_draws_the_range_and_not_as_curves_of_their_own(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from fastadapt.train import plotting

    figures = []
    monkeypatch.setattr(plotting, "save_figure", lambda fig, path, dpi: figures.append(fig))
    history, used = _fit(lambda k: 0.01 * (k + 1))
    fa.plot_history(history, tmp_path / "h.png", findings=[])
    lr_axes = figures[0].axes[2]
    assert lr_axes.get_title() == "learning rate"  # lr_min / lr_max are not "scheduled hyperparameters"
    (line,) = lr_axes.get_lines()
    assert list(line.get_xdata()) == [1, 2, 3] and list(line.get_ydata()) == pytest.approx(history["lr"])
    (band,) = lr_axes.collections
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.min() == pytest.approx(min(used[0])) and ys.max() == pytest.approx(max(used[-1]))
