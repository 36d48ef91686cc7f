"""Plain NumPy implementations of every fastadapt kernel, in exactly the
operation order of docs/algorithms.md: the oracle of the parity tests (bit
for bit) and the "seed implementation" baseline of the benchmarks.

One module per rule (its ``*_rule`` function and its dict-API class); each
rule updates its arrays in place. Scalars are computed in float64 and
rounded to the array dtype once (``T(x)``), as the kernels do.
"""

from ._common import (CHUNK_ELEMENTS, NORM_LANES, ReferenceOptimizer, clip_scale, global_norm, global_sum,
                      global_sumsq, tensor_sum)
from .adadelta import Adadelta, adadelta_rule
from .adafactor import Adafactor, adafactor_rule
from .adagrad import AdaGrad, adagrad_rule
from .adam import Adam, AdamW, adam_rule
from .adamax import Adamax, adamax_rule
from .dadapt_adagrad import DAdaptAdaGrad
from .dadapt_sgd import DAdaptSGD, dadapt_sgd_rule
from .dog import DoG, LDoG, dog_rule
from .hd_adam import HypergradientAdam, hd_adam_pass0
from .hd_sgd import HypergradientSGD, hd_sgd_pass0
from .lamb import LAMB, lamb_rule
from .lars import LARS, lars_rule
from .lion import Lion, exact_sign, lion_rule
from .muon import Muon, muon_rule, newton_schulz
from .nadam import NAdam, nadam_rule
from .radam import RAdam, radam_rule
from .rmsprop import RMSProp, rmsprop_rule
from .sgd import SGD, sgd_rule
from ._schedulefree import lerp, schedulefree_schedule
from .schedulefree_adamw import ScheduleFreeAdamW, schedulefree_adamw_rule
from .schedulefree_sgd import ScheduleFreeSGD, schedulefree_sgd_rule
from .prodigy import Prodigy
from .dadapt_adam import DAdaptAdam
from .lowp import (QBLOCK, LowPrecision, dequantize, dynamic_map, lowbias32, quantize, round_bf16,
                   round_bf16_stochastic, rounding_key)

__all__ = ["QBLOCK", "LowPrecision", "dequantize", "dynamic_map", "lowbias32", "quantize", "round_bf16",
           "round_bf16_stochastic", "rounding_key",
           "CHUNK_ELEMENTS", "NORM_LANES", "global_sumsq", "global_norm", "global_sum", "tensor_sum", "clip_scale",
           "adam_rule", "adagrad_rule", "rmsprop_rule", "sgd_rule", "ReferenceOptimizer",
           "Adam", "AdamW", "AdaGrad", "RMSProp", "SGD",
           "nadam_rule", "radam_rule", "adamax_rule", "adadelta_rule", "NAdam", "RAdam", "Adamax", "Adadelta",
           "adafactor_rule", "Adafactor", "lion_rule", "exact_sign", "Lion", "lamb_rule", "LAMB", "lars_rule",
           "LARS", "muon_rule", "newton_schulz", "Muon"]
__all__ += ["dog_rule", "DoG", "LDoG"]
__all__ += ["hd_sgd_pass0", "HypergradientSGD", "hd_adam_pass0", "HypergradientAdam"]
__all__ += ["DAdaptSGD", "dadapt_sgd_rule", "DAdaptAdaGrad"]
__all__ += ["schedulefree_schedule", "lerp", "schedulefree_adamw_rule", "ScheduleFreeAdamW", "schedulefree_sgd_rule",
            "ScheduleFreeSGD"]
__all__ += ["Prodigy", "DAdaptAdam"]
