"""Which optimizer needs no tuning? ``fa.compare`` trains a suite of
workloads with each optimizer at its defaults, next to Adam with its
learning rate tuned by grid search on validation, and reports how close
each comes to tuned Adam, how fast, and what the tuning cost.

    result = fa.compare(["digits-softmax", "diabetes-linear"], ["adam", "lion"], quick=True)
    # fa.compare(...) is fa.compare.compare(...): see help(fa.compare.compare) for the arguments
    print(result.table()); result.save("compare-out")

- ``workloads.py``: [`Workload`][fastadapt.compare.Workload] and the built-in suite (real data shipped
  with packages, synthetic problems);
- ``models.py``: the suite's NumPy models that the package lacked (logistic
  regression, an autoencoder, a matrix factorization), exact gradients;
- ``running.py``: one run, and [`compare`][fastadapt.compare.compare] over the suite with progress;
- ``report.py``: rows, targets, the goal, the table, JSON and CSV;
- ``plot.py``: a PNG of learning curves per workload.
"""

import sys
import types
from typing import Any

from .report import CompareResult, Run, Row, WorkloadReport, within
from .running import compare, lr_free_optimizers, lr_grid, train_run
from .workloads import SUITE, Workload, WorkloadUnavailable, get_workload

__all__ = ["compare", "Workload", "CompareResult", "Run", "Row", "WorkloadReport", "SUITE", "get_workload",
           "WorkloadUnavailable", "lr_free_optimizers", "lr_grid", "train_run", "within"]


class _CallableModule(types.ModuleType):
    """``fa.compare(...)`` is [`compare`][fastadapt.compare.compare], and ``fa.compare.Workload``,
    ``import fastadapt.compare.workloads`` keep working: the package itself is
    callable (a function of that name in ``fastadapt`` would hide the package)."""

    def __call__(self, *args: Any, **kwargs: Any) -> CompareResult:
        return compare(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
