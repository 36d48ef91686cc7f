"""ModelCheckpoint: save the run every epoch (or every N steps), or only when
a monitored metric improves (Keras's ``keras.callbacks.ModelCheckpoint``)."""

from __future__ import annotations

import contextlib
import math
import os
import string
from typing import Any, Dict, Mapping, Optional, Union

from ..._checks import integer, monitor_mode
from ..._tree import flatten_any
from ..checkpoints import save_state
from ._common import check_state_keys, path_arg, say, verbose_arg
from .base import Callback

__all__ = ["ModelCheckpoint"]

PARAMS_FORMAT = "fastadapt.params"  # what save_weights_only writes (load with fastadapt.train.checkpoints.load_state)
PARAMS_VERSION = 1


class ModelCheckpoint(Callback):
    """Save the training state to ``filepath`` after every epoch, or only when
    ``monitor`` improves (``save_best_only=True``).

    What is saved: with a [`fastadapt.Trainer`][fastadapt.Trainer], the trainer's
    checkpoint (``trainer.save_checkpoint``: params, optimizer state, every
    callback's state, history; resume with ``trainer.load_checkpoint``); with
    ``save_weights_only=True``, the params alone as
    ``{"format": "fastadapt.params", "version": 1, "params": {key path: array}}``
    (read with ``fastadapt.train.checkpoints.load_state``). Both hold the
    params to evaluate: with a two-sequence optimizer (Schedule-Free) its
    evaluation point (``Trainer.eval_params``), the trainer's checkpoint
    also the training point to resume from. With a DataParallel the
    formatted ``filepath`` is the directory its ``save_checkpoint`` writes
    ``checkpoint.npz`` into. Every file is replaced atomically.

    ``filepath`` may hold ``str.format`` fields, filled as Keras fills them:
    ``{epoch}`` is 1-based (the first epoch saves ``model-01.npz`` for
    ``"model-{epoch:02d}.npz"``), ``{batch}`` the 1-based step with an int
    ``save_freq``, and any key of the epoch's logs (``{val_loss:.4f}``).
    With a Trainer, an epoch's save is written once the epoch is complete
    (after every callback's ``on_epoch_end``), so resuming from it continues
    the run exactly; a save every N steps is mid-epoch, and resuming from it
    starts that epoch again from the saved params.
    Without fields, ``save_best_only=False`` keeps the last state and
    ``True`` the best. Missing directories are created.

    The best value travels in ``state_dict``, so a resumed run does not
    overwrite the best file with a worse one. A NaN metric never improves.

    Parameters
    ----------
    filepath
        where to save (see above).
    monitor
        the log key compared with ``save_best_only``.
    verbose
        1 prints a line when it saves.
    save_best_only
        save only when ``monitor`` improves on the best so far.
    save_weights_only
        save the params only, not the whole run.
    mode
        ``"min"``, ``"max"`` or ``"auto"`` (Keras's rule: ``max`` when the name holds ``acc`` or
        ``auc`` or starts with ``fmeasure``).
    save_freq
        ``"epoch"`` or an int N: save after every N optimizer steps (then ``monitor`` is read from
        the step's logs, which hold ``loss``, ``lr`` and ``grad_norm``).
    initial_value_threshold
        with ``save_best_only``, a value the metric must beat before the first save.
    """

    def __init__(self, filepath: Any, monitor: str = "val_loss", verbose: int = 0, save_best_only: bool = False,
                 save_weights_only: bool = False, mode: str = "auto", save_freq: Union[str, int] = "epoch",
                 initial_value_threshold: Optional[float] = None):
        self.filepath = path_arg("ModelCheckpoint", "filepath", filepath)
        try:  # a malformed pattern fails here, not after the first epoch's work
            fields = [f for _, f, _, _ in string.Formatter().parse(self.filepath) if f is not None]
        except ValueError as e:
            raise ValueError(f"ModelCheckpoint(filepath={self.filepath!r}) is not a valid format string: {e}; "
                             f"write a literal brace as {{{{ or }}}}") from None
        if any(not f or not f.isidentifier() for f in fields):
            raise ValueError(f"ModelCheckpoint(filepath={self.filepath!r}): fields must be names such as {{epoch}} "
                             f"or {{val_loss:.4f}}, got {fields}")
        self._fields = fields
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"ModelCheckpoint(monitor={monitor!r}) must be a log key such as 'val_loss'")
        self.monitor = monitor
        self.verbose = verbose_arg("ModelCheckpoint", verbose)
        for name, value in (("save_best_only", save_best_only), ("save_weights_only", save_weights_only)):
            if not isinstance(value, bool):
                raise TypeError(f"ModelCheckpoint({name}={value!r}) must be True or False")
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"ModelCheckpoint(mode={mode!r}) must be 'auto', 'min' or 'max'")
        self.mode = monitor_mode(mode, monitor)
        if save_freq != "epoch":
            if isinstance(save_freq, str):
                raise ValueError(f"ModelCheckpoint(save_freq={save_freq!r}) must be 'epoch' or an int >= 1 (steps)")
            save_freq = integer("save_freq", save_freq, 1)
        self.save_freq = save_freq
        if initial_value_threshold is None:
            self.best = math.inf if self.mode == "min" else -math.inf
        else:
            if isinstance(initial_value_threshold, bool) or not isinstance(initial_value_threshold, (int, float)):
                raise TypeError(f"ModelCheckpoint(initial_value_threshold={initial_value_threshold!r}) must be a "
                                f"number or None")
            self.best = float(initial_value_threshold)
        self.last_saved: Optional[str] = None  # the path of the latest save
        self._pending = False                   # this epoch's save waits for the Trainer's epoch boundary
        self._pending_path: Optional[str] = None
        self._steps_since_save = 0

    # ---- hooks --------------------------------------------------------------------
    def on_train_begin(self, trainer: Any) -> None:
        # A directory named without fields is checked (and created) before any
        # work, as Trainer checks checkpoint_path; one with fields when it is known.
        directory = os.path.dirname(self.filepath)
        if directory and "{" not in directory:
            from ..._files import check_writable_dir

            check_writable_dir(directory, "ModelCheckpoint filepath's directory")
        if not self.save_weights_only and not callable(getattr(trainer, "save_checkpoint", None)):
            raise TypeError(f"ModelCheckpoint needs a trainer with save_checkpoint (fa.Trainer, DataParallel), got "
                            f"{type(trainer).__name__}; or pass save_weights_only=True")

    def on_batch_end(self, step: int, logs: Mapping[str, Any], trainer: Any) -> None:
        freq = self.save_freq
        if isinstance(freq, str):  # ("epoch": __init__ allows no other string)
            return
        self._steps_since_save += 1
        if self._steps_since_save >= freq:
            self._steps_since_save = 0
            self._maybe_save(trainer, dict(logs), epoch=getattr(trainer, "epoch", 0), batch=step + 1)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any], trainer: Any) -> None:
        if self.save_freq != "epoch":
            return
        from ..trainer import Trainer  # here: the trainer imports callbacks.base, which loads this package

        # A Trainer finishes the epoch after its callbacks (the callbacks after
        # this one, the epoch counter): it calls _on_epoch_saved at that
        # boundary, and a checkpoint written there resumes exactly. Other
        # trainers (DataParallel counts the epoch before its callbacks) get it now.
        self._pending = isinstance(trainer, Trainer)
        self._maybe_save(trainer, dict(logs), epoch=epoch, batch=None)

    def _on_epoch_saved(self, epoch: int, trainer: Any) -> None:
        if self._pending_path is not None:
            path, self._pending_path = self._pending_path, None
            self._write(trainer, path)

    # ---- saving -------------------------------------------------------------------
    def _improved(self, value: float) -> bool:
        return value < self.best if self.mode == "min" else value > self.best

    def _maybe_save(self, trainer: Any, logs: Dict[str, Any], epoch: int, batch: Optional[int]) -> None:
        where = f"Epoch {epoch + 1}" + (f", step {batch}" if batch is not None else "")
        if self.save_best_only:
            if self.monitor not in logs:
                raise KeyError(f"ModelCheckpoint monitors {self.monitor!r}, which the logs lack (logged: "
                               f"{', '.join(map(repr, sorted(logs))) or 'nothing'}); pass monitor= one of those")
            value = logs[self.monitor]
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise TypeError(f"ModelCheckpoint: logs[{self.monitor!r}]={value!r} is not a number") from None
            if not self._improved(value):
                if self.verbose:
                    say(trainer, f"{where}: {self.monitor} did not improve from {self.best:.5g}")
                return
            previous, self.best = self.best, value
            path = self._save(trainer, logs, epoch, batch)
            if self.verbose:
                say(trainer, f"{where}: {self.monitor} improved from {previous:.5g} to {value:.5g}, "
                             f"saving to {path}")
        else:
            path = self._save(trainer, logs, epoch, batch)
            if self.verbose:
                say(trainer, f"{where}: saving to {path}")

    def _format(self, logs: Mapping[str, Any], epoch: int, batch: Optional[int]) -> str:
        values = {k: v for k, v in logs.items() if isinstance(k, str)}
        values["epoch"] = epoch + 1  # Keras numbers the files from 1
        if batch is not None:
            values["batch"] = batch
        missing = [f for f in self._fields if f not in values]
        if missing:
            raise KeyError(f"ModelCheckpoint(filepath={self.filepath!r}) names {missing}, which the logs lack "
                           f"(logged: {', '.join(sorted(values))})")
        try:
            return self.filepath.format(**values)
        except (ValueError, TypeError) as e:  # e.g. {val_loss:d} for a float
            raise ValueError(f"ModelCheckpoint(filepath={self.filepath!r}) cannot be filled from the logs: "
                             f"{e}") from None

    def _save(self, trainer: Any, logs: Mapping[str, Any], epoch: int, batch: Optional[int]) -> str:
        path = self._format(logs, epoch, batch)
        if self._pending:
            self._pending, self._pending_path = False, path
        else:
            self._write(trainer, path)
        return path

    def _write(self, trainer: Any, path: str) -> None:
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        if self.save_weights_only:
            # The point to evaluate (Schedule-Free's average), also when a
            # save every N steps falls mid-epoch, at the training point.
            at_eval = getattr(trainer, "eval_params", None)
            with at_eval() if callable(at_eval) else contextlib.nullcontext(
                    trainer.params() if callable(getattr(trainer, "params", None)) else trainer.params) as params:
                paths, leaves = flatten_any(params)
                save_state(path, {"format": PARAMS_FORMAT, "version": PARAMS_VERSION,
                                  "params": {p: leaf.copy() for p, leaf in zip(paths, leaves)}})
        else:
            trainer.save_checkpoint(path)  # through save_state: atomic
        self.last_saved = path

    # ---- state --------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """``{"best": ..., "steps_since_save": ...}``: the best monitored value so far
        (so a resumed run does not overwrite the best file with a worse one) and the
        steps counted towards the next save with an integer ``save_freq``."""
        return {"best": self.best, "steps_since_save": self._steps_since_save}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore what [`state_dict`][fastadapt.ModelCheckpoint.state_dict] returned.

        Raises
        ------
        ValueError
            when a key is missing or extra, ``best`` is not a number (or is NaN),
            or ``steps_since_save`` is not an int >= 0.
        """
        check_state_keys("ModelCheckpoint", state_dict, ("best", "steps_since_save"))
        best, steps = state_dict["best"], state_dict["steps_since_save"]
        if isinstance(best, bool) or not isinstance(best, (int, float)) or math.isnan(best):
            raise ValueError(f"ModelCheckpoint state_dict['best']={best!r} must be a number or +-inf")
        steps = integer("ModelCheckpoint state_dict['steps_since_save']", steps, 0)
        self.best, self._steps_since_save = float(best), steps

    def __repr__(self) -> str:
        return (f"ModelCheckpoint({self.filepath!r}, monitor={self.monitor!r}, mode={self.mode!r}, "
                f"save_best_only={self.save_best_only}, save_freq={self.save_freq!r})")
