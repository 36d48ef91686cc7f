"""fastadapt: adaptive optimizers and dynamic hyperparameter tuning for NumPy,
with fused, vectorized, multithreaded C++ kernels.

    import fastadapt as fa
    opt = fa.Adam(lr=1e-3)
    opt.update(params, grads)      # one fused C++ step, in place
"""

from . import reference
from .gradients import clip_by_global_norm, global_norm, sanitize
from .optimizers import SGD, AdaGrad, Adam, AdamW, Optimizer, RMSProp, make_optimizer
from .runtime import get_num_threads, set_num_threads, simd_info

__version__ = "0.1.0"

__all__ = [
    "Adam",
    "AdamW",
    "AdaGrad",
    "RMSProp",
    "SGD",
    "Optimizer",
    "make_optimizer",
    "global_norm",
    "clip_by_global_norm",
    "sanitize",
    "simd_info",
    "set_num_threads",
    "get_num_threads",
    "reference",
    "__version__",
]

from .runtime import _apply_environment

_apply_environment()
del _apply_environment
