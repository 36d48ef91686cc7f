"""fastadapt: adaptive optimizers and dynamic hyperparameter tuning for NumPy,
with fused, vectorized, multithreaded C++ kernels.

    import fastadapt as fa
    opt = fa.Adam(lr=1e-3)
    opt.update(params, grads)      # one fused C++ step, in place
"""

from . import datasets, distributed, models, problems, reference, schedules, tune
from . import callbacks  # noqa: F401  fa.callbacks.<Name>, as keras.callbacks (outside __all__, as before)
from .data.batching import Batches, batches
from .gradients import clip_by_global_norm, global_norm, sanitize
from .optim import DoG, LDoG  # noqa: F401
from .optim import (LAMB, LARS, SGD, AdaGrad, Adadelta, Adafactor, Adagrad, Adam, Adamax, AdamW, Lion, Muon,
                    NAdam, Optimizer, RAdam, RMSProp, RMSprop, make_optimizer)
from .optim import DAdaptAdaGrad, DAdaptSGD
from .optim import HypergradientAdam, HypergradientSGD
from .optim import ScheduleFreeAdamW, ScheduleFreeSGD
from .optim import DAdaptAdam, Prodigy
from .runtime import get_num_threads, set_num_threads, simd_info
from .schedules.adaptive_lr import AdaptiveLR
from .schedules.early_stopping import EarlyStopping
from .schedules.lr_finder import LRFindResult, lr_find
from .schedules.reduce_lr_on_plateau import ReduceLROnPlateau
from .schedules.scheduler import Scheduler
from .train.callbacks import (BackupAndRestore, Callback, CSVLogger, LambdaCallback, LearningRateScheduler,
                              ModelCheckpoint, TerminateOnNaN)
from .train.diagnostics import DiagnosisCallback, Finding, Thresholds, diagnose
from .train.history import History
from .train.plotting import plot_history
from .train.trainer import Trainer
from . import compare  # a callable package: fa.compare(...) runs fa.compare.compare(...)
from .compare import CompareResult, Workload
from ._version import __version__


__all__ = [
    "Adam",
    "AdamW",
    "Adagrad",
    "RMSprop",
    "AdaGrad",  # aliases of Adagrad and RMSprop (the earlier spellings)
    "RMSProp",
    "SGD",
    "NAdam",
    "RAdam",
    "Adamax",
    "Adadelta",
    "Adafactor",
    "Lion",
    "LAMB",
    "LARS",
    "Muon",
    "DoG",
    "LDoG",
    "HypergradientSGD",
    "HypergradientAdam",
    "DAdaptSGD",
    "DAdaptAdaGrad",
    "ScheduleFreeAdamW",
    "ScheduleFreeSGD",
    "Prodigy",
    "DAdaptAdam",
    "Optimizer",
    "make_optimizer",
    "global_norm",
    "clip_by_global_norm",
    "sanitize",
    "simd_info",
    "set_num_threads",
    "get_num_threads",
    "reference",
    "tune",
    "schedules",
    "problems",
    "Scheduler",
    "ReduceLROnPlateau",
    "EarlyStopping",
    "AdaptiveLR",
    "lr_find",
    "LRFindResult",
    "Trainer",
    "History",
    "Callback",
    "ModelCheckpoint",
    "CSVLogger",
    "LambdaCallback",
    "TerminateOnNaN",
    "BackupAndRestore",
    "LearningRateScheduler",
    "batches",
    "Batches",
    "diagnose",
    "Finding",
    "Thresholds",
    "DiagnosisCallback",
    "plot_history",
    "models",
    "datasets",
    "distributed",
    "compare",
    "Workload",
    "CompareResult",
    "__version__",
]

from .runtime import _apply_environment

_apply_environment()
del _apply_environment
