"""What a learning-rate-free rule learned, in the history (issue 15): the
trainer reads ``opt.lr_estimate`` and ``opt.adapted`` after every step; the
per-batch logs hold each step's values, the history per epoch their mean
(``lr_estimate``, ``adapted/<name>``) and, from the first epoch in which
they varied, their range (``<key>_min`` / ``<key>_max``), as it does for
the lr; history.json and CSVLogger keep them; rules that learn nothing log
none of these keys.

Tested with a test-only rule whose learned values follow a known formula of
the step count, so these tests do not depend on any real LR-free rule."""

import csv
import math

import numpy as np
import pytest

import fastadapt as fa
from fastadapt.callbacks import Callback

STEPS = 4  # batches per epoch
D0 = 1e-3


class Learning(fa.SGD):
    """Test only: SGD that reports a learned ``d`` as LR-free rules report
    theirs, ``d = D0 * 2 ** (steps - frozen)`` (constant for the first
    ``frozen`` steps), and the effective step ``lr_estimate = lr * d``; with
    ``clash`` it also learns a value named ``d_max``, as Prodigy keeps one."""

    def __init__(self, frozen=0, clash=False, **kwargs):
        super().__init__(**kwargs)
        self._frozen, self._clash = frozen, clash

    def _d(self):
        return D0 * 2.0 ** max(self.step_count - self._frozen, 0)

    def _adapted(self):
        out = {"d": self._d()}
        if self._clash:
            out["d_max"] = 2 * self._d()
        return out

    def _lr_estimate(self):
        return self.lr * self._d() if self.step_count else None


def _fit(optimizer, epochs=3, callbacks=()):
    seen = []

    class Steps(Callback):
        def on_batch_end(self, step, logs, trainer):
            seen.append(dict(logs))

    def loss_and_grad(params, batch):
        w = params["w"]
        return 0.5 * float(np.sum(w * w)), {"w": w.copy()}

    trainer = fa.Trainer(optimizer, loss_and_grad=loss_and_grad, params={"w": np.ones(3)},
                         callbacks=[Steps(), *callbacks], progress=False)
    history = trainer.fit([(np.zeros(1),)] * STEPS, epochs=epochs)
    return trainer, history, [seen[e * STEPS:(e + 1) * STEPS] for e in range(epochs)]


def test_learned_values_are_logged_per_step_and_as_each_epochs_mean_and_range(tmp_path):
    csv_path = tmp_path / "log.csv"
    trainer, history, steps = _fit(Learning(lr=0.1), callbacks=[fa.CSVLogger(csv_path)])
    for e, epoch_steps in enumerate(steps):
        d = [D0 * 2.0 ** (e * STEPS + k + 1) for k in range(STEPS)]  # read after each step
        assert [s["adapted/d"] for s in epoch_steps] == d
        assert [s["lr_estimate"] for s in epoch_steps] == [0.1 * v for v in d]
        assert history["adapted/d"][e] == pytest.approx(np.mean(d), rel=1e-12)
        assert history["adapted/d_min"][e] == min(d) and history["adapted/d_max"][e] == max(d)
        assert history["lr_estimate"][e] == pytest.approx(0.1 * np.mean(d), rel=1e-12)
        assert history["lr_estimate_max"][e] == 0.1 * max(d)
    assert trainer.optimizer.lr_estimate == steps[-1][-1]["lr_estimate"]

    history.save(tmp_path / "h.json")
    back = fa.History.load(tmp_path / "h.json")
    for key in ("lr_estimate", "lr_estimate_min", "lr_estimate_max", "adapted/d", "adapted/d_min", "adapted/d_max"):
        assert back[key] == history[key]
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["adapted/d"]) for r in rows] == history["adapted/d"]
    assert [float(r["lr_estimate_min"]) for r in rows] == history["lr_estimate_min"]


def test_a_learned_value_gets_its_range_from_the_epoch_it_first_varies():
    # d is constant through the first epoch (4 steps frozen), then doubles: as for the lr, the
    # range columns start when it varies, and the earlier epoch gets its constant value there.
    _, history, _ = _fit(Learning(lr=0.1, frozen=STEPS))
    assert history["adapted/d"][0] == D0
    assert history["adapted/d_min"] == [D0, 2 * D0, 2 ** 5 * D0] and history["adapted/d_max"][0] == D0


def test_a_learned_value_named_like_a_range_column_keeps_its_own_values():
    _, history, steps = _fit(Learning(lr=0.1, clash=True), epochs=2)
    # The rule's own d_max, not the range of d within the epoch (which is not logged then).
    assert history["adapted/d_max"][1] == pytest.approx(np.mean([s["adapted/d_max"] for s in steps[1]]))
    assert "adapted/d_min" not in history and "adapted/d_max_min" in history


def test_rules_that_learn_nothing_log_no_learned_keys():
    trainer, history, steps = _fit(fa.SGD(lr=0.1), epochs=1)
    assert not [k for k in history.keys() if k.startswith(("lr_estimate", "adapted/"))]
    assert sorted(steps[0][0]) == ["grad_norm", "loss", "lr"]


def test_progress_line_shows_the_learned_step_size(capsys):
    trainer, _, _ = _fit(Learning(lr=0.1), epochs=1)
    trainer.progress = True
    trainer.fit([(np.zeros(1),)] * STEPS, epochs=1)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert " - lr 0.1 - lr_estimate " in line and math.isfinite(float(line.rsplit(" ", 1)[1]))
