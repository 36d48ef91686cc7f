"""Habits from Keras and torch that carry over: fit(verbose=), fa.Callback,
warnings for hook names that are not hooks and for two controllers driving
one hyperparameter, `fastadapt --version` and `python -m fastadapt`."""

import gc
import io
import subprocess
import sys
import warnings

import numpy as np
import pytest

import fastadapt as fa
from fastadapt import callbacks as cbs
from fastadapt import schedules as S


def _trainer(callbacks=(), progress=False):
    params = {"w": np.ones(3)}
    return fa.Trainer("sgd", lr=0.1, loss_and_grad=lambda p, b: (1.0, {"w": np.full(3, 0.1)}), params=params,
                      callbacks=list(callbacks), progress=progress)


class _Terminal(io.StringIO):
    def isatty(self):
        return True


# ---- fit(verbose=) ---------------------------------------------------------------

@pytest.mark.parametrize("progress", [True, False])
def test_verbose_overrides_progress(monkeypatch, progress):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    _trainer(progress=progress).fit([0, 1], epochs=2, verbose=0)
    assert err.getvalue() == ""
    _trainer(progress=progress).fit([0, 1], epochs=2, verbose=2)
    lines = err.getvalue().splitlines()
    assert [line.split(" - ")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]


def test_verbose_2_is_lines_even_on_a_terminal(monkeypatch):
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    _trainer().fit([0, 1, 2], epochs=2, verbose=2)
    assert "\r" not in term.getvalue() and term.getvalue().count("\n") == 2


def test_verbose_none_keeps_progress_and_1_and_auto_show_it(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    _trainer(progress=False).fit([0], epochs=1)
    assert err.getvalue() == ""
    _trainer(progress=False).fit([0], epochs=1, verbose=1)
    _trainer(progress=False).fit([0], epochs=1, verbose="auto")
    assert err.getvalue().count("epoch 1/1") == 2  # off a terminal, bar mode is a line per epoch


@pytest.mark.parametrize("bad", [3, -1, "loud", 1.5])
def test_bad_verbose_is_refused_before_training(bad):
    trainer = _trainer()
    with pytest.raises(ValueError, match="verbose must be 0 .* got"):
        trainer.fit([0], epochs=1, verbose=bad)
    assert trainer.step == 0


# ---- fa.Callback and hook names ------------------------------------------------------

def test_callback_at_top_level():
    assert fa.Callback is cbs.Callback and "Callback" in fa.__all__
    from fastadapt.callbacks import Callback, ModelCheckpoint  # the module keeps working, with the library
    assert ModelCheckpoint is fa.ModelCheckpoint and Callback is fa.Callback


def test_a_method_named_like_a_hook_warns_once_per_class_and_name():
    class KerasStyle(fa.Callback):
        def on_train_batch_end(self, batch, logs=None):
            pass

        def on_epoch_ned(self, epoch, logs, trainer):
            pass

        def on_plateau_found(self):  # a helper, not hook-like: no warning
            pass

    with pytest.warns(UserWarning) as record:
        _trainer([KerasStyle()])
    messages = sorted(str(w.message) for w in record)
    assert len(messages) == 2
    assert "KerasStyle.on_epoch_ned is not a hook and is never called (did you mean on_epoch_end?)" in messages[0]
    assert "KerasStyle.on_train_batch_end is not a hook" in messages[1] and "on_batch_end(step, logs, trainer)" \
        in messages[1]
    assert all("The hooks are on_train_begin, on_epoch_begin, on_batch_end, on_epoch_end, on_train_end" in m
               for m in messages)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _trainer([KerasStyle(), KerasStyle()])  # the same class again: already said


def test_an_object_with_only_foreign_hooks_is_refused_with_the_reason():
    class OnlyKeras:
        def on_batch_begin(self, batch, logs=None):
            pass

    with pytest.raises(TypeError, match=r"has none of the hooks .*OnlyKeras.on_batch_begin is not a hook.*no "
                                        r"batch-begin hook"):
        _trainer([OnlyKeras()])


# ---- controllers taking over a hyperparameter ---------------------------------------------

def test_second_controller_on_the_same_lr_warns_naming_both():
    opt = fa.Adam(lr=1e-3)
    sched = fa.Scheduler(opt, lr=S.constant(1e-3))
    with pytest.warns(UserWarning, match=r"ReduceLROnPlateau takes over 'lr' of Adam .* which Scheduler\(per="
                                         r"'step', lr=constant"):
        plateau = fa.ReduceLROnPlateau(opt)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fa.Scheduler(opt, betas0=S.constant(0.9))   # another hyperparameter: fine
        fa.ReduceLROnPlateau(fa.Adam())              # another optimizer: fine
    del sched, plateau
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fa.AdaptiveLR(opt)                           # the earlier ones are gone: nothing to take over


def test_takeover_through_the_trainer_and_a_finished_fit_lets_go():
    opt = fa.SGD(lr=0.1)
    keep = fa.Scheduler(opt, lr=S.constant(0.1))
    params = {"w": np.ones(2)}
    trainer = fa.Trainer(opt, loss_and_grad=lambda p, b: (1.0, {"w": np.ones(2)}), params=params,
                         callbacks=[fa.LearningRateScheduler(lambda e, lr: lr)], progress=False)
    with pytest.warns(UserWarning, match="LearningRateScheduler takes over 'lr' of SGD .* which Scheduler"):
        trainer.fit([0], epochs=1)
    del keep
    gc.collect()
    first = fa.ReduceLROnPlateau(monitor="loss")
    fa.Trainer(opt, loss_and_grad=trainer.loss_and_grad, params=params, callbacks=[first],
               progress=False).fit([0], epochs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")             # the first run is over: a new run's controller is fine
        fa.Trainer(opt, loss_and_grad=trainer.loss_and_grad, params=params,
                   callbacks=[fa.ReduceLROnPlateau(monitor="loss")], progress=False).fit([0], epochs=1)


# ---- the command ---------------------------------------------------------------------

def test_version_and_python_m():
    for argv in (["-m", "fastadapt", "--version"], ["-c", "from fastadapt.cli import main; main(['--version'])"]):
        out = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and out.stdout.strip() == f"fastadapt {fa.__version__}", out.stderr
    info = subprocess.run([sys.executable, "-m", "fastadapt", "info", "--json"], capture_output=True, text=True,
                          timeout=120)
    assert info.returncode == 0 and f'"{fa.__version__}"' in info.stdout
