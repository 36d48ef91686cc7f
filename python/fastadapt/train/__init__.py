"""Training: the loop and what runs around it.

- ``trainer.py``: :class:`~fastadapt.Trainer` (``fit``, ``evaluate``,
  checkpoints, the logged norms and hyperparameters);
- ``callbacks/``: the callback protocol and the ready-made callbacks, one
  per module (``fastadapt.callbacks``);
- ``history.py``: :class:`~fastadapt.History`, what a run logged, and its
  JSON file;
- ``checkpoints.py``: checkpoint files (``.npz``, no pickle);
- ``diagnostics.py``: :func:`~fastadapt.diagnose` and the live
  :class:`~fastadapt.DiagnosisCallback`;
- ``plotting.py``: :func:`~fastadapt.plot_history` (matplotlib, optional);
- ``progress.py``: progress bars and per-epoch lines.

The controllers that drive hyperparameters from schedules or metrics are
callbacks too; they live in :mod:`fastadapt.schedules`.
"""
