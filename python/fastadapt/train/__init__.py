"""Training: the loop and what runs around it.

- ``trainer.py``: [`Trainer`][fastadapt.Trainer] (``fit``, ``evaluate``,
  checkpoints, the logged norms and hyperparameters);
- ``callbacks/``: the callback protocol and the ready-made callbacks, one
  per module (``fastadapt.callbacks``);
- ``history.py``: [`History`][fastadapt.History], what a run logged, and its
  JSON file;
- ``checkpoints.py``: checkpoint files (``.npz``, no pickle);
- ``diagnostics.py``: [`diagnose`][fastadapt.diagnose] and the live
  [`DiagnosisCallback`][fastadapt.DiagnosisCallback];
- ``plotting.py``: [`plot_history`][fastadapt.plot_history] (matplotlib, optional);
- ``progress.py``: progress bars and per-epoch lines.

The controllers that drive hyperparameters from schedules or metrics are
callbacks too; they live in ``fastadapt.schedules``.
"""
