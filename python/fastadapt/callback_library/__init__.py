"""Ready-made callbacks with Keras's names and arguments, one per module.

Each follows :mod:`fastadapt.callbacks` (the hooks, ``state_dict``) and is
also importable as ``fastadapt.callbacks.<Name>`` and ``fastadapt.<Name>``:

- :class:`ModelCheckpoint` saves the run (or its params) every epoch, or
  only when a monitored metric improves;
- :class:`CSVLogger` writes each epoch's logs to a CSV file;
- :class:`LambdaCallback` turns functions into a callback;
- :class:`TerminateOnNaN` stops a run whose loss became NaN or infinite;
- :class:`BackupAndRestore` resumes a crashed ``fit`` where it stopped;
- :class:`LearningRateScheduler` sets the lr each epoch from
  ``schedule(epoch, lr)``.
"""

from __future__ import annotations

from .backup_and_restore import BackupAndRestore
from .csv_logger import CSVLogger
from .lambda_callback import LambdaCallback
from .learning_rate_scheduler import LearningRateScheduler
from .model_checkpoint import ModelCheckpoint
from .terminate_on_nan import TerminateOnNaN

__all__ = ["ModelCheckpoint", "CSVLogger", "LambdaCallback", "TerminateOnNaN", "BackupAndRestore",
           "LearningRateScheduler"]
