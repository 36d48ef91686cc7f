"""Callbacks: the protocol and the ready-made ones with Keras's names and
arguments, one per module (also ``fastadapt.callbacks``, as Keras's
``keras.callbacks``, and ``fastadapt.<Name>``).

- ``base.py``: [`Callback`][fastadapt.Callback] (the hooks, ``state_dict``), ``HOOKS``,
  and the checks the trainer runs on a callback list;
- [`ModelCheckpoint`][fastadapt.ModelCheckpoint] saves the run (or its params) every epoch, or
  only when a monitored metric improves;
- [`CSVLogger`][fastadapt.CSVLogger] writes each epoch's logs to a CSV file;
- [`LambdaCallback`][fastadapt.LambdaCallback] turns functions into a callback;
- [`TerminateOnNaN`][fastadapt.TerminateOnNaN] stops a run whose loss became NaN or infinite;
- [`BackupAndRestore`][fastadapt.BackupAndRestore] resumes a crashed ``fit`` where it stopped;
- [`LearningRateScheduler`][fastadapt.LearningRateScheduler] sets the lr each epoch from
  ``schedule(epoch, lr)``;
- ``_drivers.py``: which controller drives which hyperparameter (every
  controller that sets one registers there, the ones in
  ``fastadapt.schedules`` too).

Library modules import what they need from the module that defines it
(``.callbacks.base``), not from here: this package imports every callback,
and some of them import the trainer.
"""

from __future__ import annotations

from .backup_and_restore import BackupAndRestore
from .base import HOOKS, Callback, check_callbacks, hooks
from .csv_logger import CSVLogger
from .lambda_callback import LambdaCallback
from .learning_rate_scheduler import LearningRateScheduler
from .model_checkpoint import ModelCheckpoint
from .terminate_on_nan import TerminateOnNaN

__all__ = ["Callback", "HOOKS", "hooks", "check_callbacks", "ModelCheckpoint", "CSVLogger", "LambdaCallback",
           "TerminateOnNaN", "BackupAndRestore", "LearningRateScheduler"]
