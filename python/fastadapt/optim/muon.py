"""Muon (docs/algorithms.md, "Muon"): torch.optim.Muon's definition, with
Newton-Schulz in the parameter's dtype and a companion optimizer for the
keys that are not matrices. The element-wise parts are the C++ rules
"muon" (the direction) and "muon_commit" (cpp/rules/muon.hpp); the matrix
products run here, in NumPy (BLAS), between the two fused calls.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, cast

import numpy as np

from .. import _core
from .. import _hyper as hv
from .._hyper import Hyper
from .._tree import TreeDef
from .adam import AdamW
from .base import Optimizer, Overrides

ADJUST_LR_FNS = (None, "original", "match_rms_adamw")
NS_DTYPES = (None, "bfloat16")
MAX_NS_STEPS = 100  # torch refuses 100 and more ("for computational efficiency")


def _ns_coefficients(name: str, value: Any) -> Tuple[float, float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        raise TypeError(f"{name} must be three numbers (a, b, c) as a tuple or list, got "
                        f"{type(value).__name__} {value!r}")
    a, b, c = (hv.as_float(f"{name}[{i}]", v) for i, v in enumerate(value))
    return (a, b, c)


def _ns_steps(name: str, value: Any) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    steps = int(value)
    if not 0 <= steps < MAX_NS_STEPS:
        raise ValueError(f"Invalid {name}: {value} (must be in [0, {MAX_NS_STEPS}), as torch.optim.Muon requires)")
    return steps


def _adjust_lr_fn(name: str, value: Any) -> Optional[str]:
    if not (value is None or (isinstance(value, str) and value in ADJUST_LR_FNS)):
        raise ValueError(f"Invalid {name}: {value!r} (expected None, 'original' or 'match_rms_adamw')")
    return value


def _ns_dtype(name: str, value: Any) -> Optional[str]:
    if not (value is None or (isinstance(value, str) and value in NS_DTYPES)):
        raise ValueError(f"Invalid {name}: {value!r} (expected None, the parameter's dtype, or 'bfloat16')")
    if value == "bfloat16":
        _bfloat16(name)
    return value


def _bfloat16(name: str = "ns_dtype") -> Any:
    try:
        import ml_dtypes
    except ImportError:
        raise ImportError(f'{name}="bfloat16" needs the ml_dtypes package (pip install ml_dtypes); '
                          f"{name}=None runs Newton-Schulz in the parameter's dtype") from None
    return ml_dtypes.bfloat16


def _clamp_min(x: float, low: float) -> float:
    """``max(x, low)``, NaN propagating (torch's ``clamp(min=low)``)."""
    return x if (math.isnan(x) or x > low) else low


def _newton_schulz(x: np.ndarray, coefficients: Tuple[float, float, float], steps: int) -> np.ndarray:
    """The quintic iteration on ``x`` (already divided by its norm; modified),
    in the dtype of ``x``: per step ``A = x x^T``, ``B = S(b) A + S(c) A A``,
    ``x = S(a) x + B x``, on the side that makes ``A`` the smaller matrix.
    Written in place; the same bits as ``reference.muon.newton_schulz``
    (IEEE sums and products commute)."""
    T = x.dtype.type
    a, b, c = (T(v) for v in coefficients)
    tall = x.shape[0] > x.shape[1]
    y = x.T if tall else x
    for _ in range(steps):
        gram = y @ y.T
        poly = gram @ gram
        poly *= c
        gram *= b
        poly += gram
        new = poly @ y
        y *= a
        new += y
        y = new
    return np.ascontiguousarray(y.T if tall else y)


def _newton_schulz_bf16(d: np.ndarray, coefficients: Tuple[float, float, float], steps: int, eps: float,
                        key: str) -> np.ndarray:
    """torch's bfloat16 arithmetic from the unscaled direction ``d``: every
    result computed in float32 from bfloat16 operands and rounded to bfloat16
    once; the norm of the rounded ``d`` in the kernels' fixed order."""
    bf16, f32 = _bfloat16(), np.float32
    a, b, c = (f32(v) for v in coefficients)

    def rounded(v: Any) -> np.ndarray:
        return np.asarray(v, dtype=f32).astype(bf16).astype(f32)

    x = rounded(d)
    sumsq, _ = _core.global_sumsq([key], [x], False)
    x = rounded(x / rounded(_clamp_min(float(rounded(math.sqrt(sumsq))), eps)))
    tall = x.shape[0] > x.shape[1]
    y = x.T if tall else x
    for _ in range(steps):
        gram = rounded(y @ y.T)
        poly = rounded(gram * b + (gram @ gram) * c)
        y = rounded(y * a + poly @ y)
    return np.ascontiguousarray((y.T if tall else y).astype(d.dtype))


class Muon(Optimizer):
    """Muon (Keller Jordan, 2024): momentum, then the update direction
    orthogonalized by a Newton-Schulz iteration, for 2-D parameters;
    torch.optim.Muon's definition and defaults. Per matrix (docs/algorithms.md):

        m = momentum * m + (1 - momentum) * g
        d = (1 - momentum) * g + momentum * m      (nesterov; else d = m)
        O = NewtonSchulz(d / max(||d||_F, eps))    (ns_steps quintic steps, ns_coefficients)
        p = p * (1 - lr * weight_decay) - adjusted_lr * O

    with ``adjusted_lr = lr * sqrt(max(1, rows / cols))`` (``adjust_lr_fn``
    None or "original") or ``lr * 0.2 * sqrt(max(rows, cols))``
    ("match_rms_adamw": an update RMS like AdamW's).

    Keys that are not matrices (biases, gains, scalars, kernels of 3 or more
    dimensions) are stepped by ``companion`` in the same update, as torch's
    documentation advises (AdamW for them); by default ``fa.AdamW()``.

    ``lr``, ``weight_decay``, ``momentum``, ``nesterov``, ``ns_coefficients``,
    ``eps``, ``ns_steps`` and ``adjust_lr_fn`` are as in torch.optim.Muon.

    Parameters
    ----------
    lr
        learning rate (before the shape adjustment of adjust_lr_fn).
    weight_decay
        decoupled weight decay: p = p * (1 - lr * weight_decay).
    momentum
        momentum factor of the averaged momentum buffer.
    nesterov
        Nesterov momentum.
    ns_coefficients
        coefficients (a, b, c) of the quintic Newton-Schulz step.
    eps
        lower bound of the norm the direction is divided by.
    ns_steps
        Newton-Schulz steps (0 to 99).
    adjust_lr_fn
        None or 'original' (sqrt(max(1, rows/cols))) or 'match_rms_adamw' (0.2 * sqrt(max(rows,
        cols))).
    ns_dtype
        None (Newton-Schulz in the parameter's dtype, through NumPy's BLAS) or "bfloat16" (torch's
        rounding; needs ml_dtypes).
    maximize
        ascend instead of descend.
    companion
        the optimizer of the non-matrix keys (a fastadapt optimizer, not Muon), with its own
        hyperparameters and state. Muon's gradient pre-processing covers every key, so the
        companion's max_grad_norm, nonfinite and maximize stay at their defaults.
    max_grad_norm
        clip the global gradient norm first (None: off); the norm covers the companion's keys too.
    nonfinite
        "propagate", "zero", "skip" or "raise" for NaN/Inf gradients; the policy covers the
        companion's keys too.
    track_grad_norm
        compute ``last_grad_norm`` in every step (it is always computed when clipping or with
        skip/raise).
    overrides
        per-key hyperparameters, ``{"*.b": {"weight_decay": 0.0}}`` (glob on dotted key paths) or
        ``[(predicate, {...})]``; later entries win.
    state_dtype, state_bits, master_weights, stochastic_rounding, seed
        low precision, as for every rule: see [`Optimizer`][fastadapt.Optimizer] and the low-precision guide.

    Examples
    --------
        opt = fa.Muon(lr=0.02, companion=fa.AdamW(lr=3e-4, weight_decay=0.01))
        opt.update(params, grads)   # Muon on the matrices, AdamW on the rest
        opt.companion.lr = 1e-4     # the companion's own hyperparameters
    """

    algorithm = "muon"
    _kernel = "muon"
    _per_key = ("lr", "weight_decay", "momentum", "nesterov", "ns_coefficients", "eps", "ns_steps",
                "adjust_lr_fn", "ns_dtype", "maximize")
    # Set in __init__ with one dict update (as the base's attributes): the
    # companion optimizer of the other keys, the direction buffers, and the
    # companion's step still to run (step t, its count, params, grads).
    _companion: Optimizer
    _scratch: List[Optional[np.ndarray]]  # (None: not made yet)
    _companion_due: Optional[Tuple[int, int, Dict[str, np.ndarray], Dict[str, np.ndarray]]]

    lr = Hyper(hv.nonnegative, "Learning rate (before the shape adjustment of adjust_lr_fn).")
    weight_decay = Hyper(hv.nonnegative, "Decoupled weight decay: p = p * (1 - lr * weight_decay).")
    momentum = Hyper(hv.nonnegative, "Momentum factor of the averaged momentum buffer.")
    nesterov = Hyper(hv.flag, "Nesterov momentum.")
    ns_coefficients = Hyper(_ns_coefficients, "Coefficients (a, b, c) of the quintic Newton-Schulz step.")
    eps = Hyper(hv.nonnegative, "Lower bound of the norm the direction is divided by.")
    ns_steps = Hyper(_ns_steps, "Newton-Schulz steps (0 to 99).")
    adjust_lr_fn = Hyper(_adjust_lr_fn, "None or 'original' (sqrt(max(1, rows/cols))) or 'match_rms_adamw' "
                                        "(0.2 * sqrt(max(rows, cols))).")
    ns_dtype = Hyper(_ns_dtype, "None (Newton-Schulz in the parameter's dtype) or 'bfloat16' (torch's).")
    maximize = Hyper(hv.flag, "Ascend instead of descend.")

    def __init__(self, lr: float = 1e-3, weight_decay: float = 0.1, momentum: float = 0.95, nesterov: bool = True,
                 ns_coefficients: Sequence[float] = (3.4445, -4.7750, 2.0315), eps: float = 1e-7,
                 ns_steps: int = 5, adjust_lr_fn: Optional[str] = None, *, ns_dtype: Optional[str] = None,
                 maximize: bool = False, companion: Optional[Optimizer] = None,
                 max_grad_norm: Optional[float] = None, nonfinite: str = "propagate",
                 track_grad_norm: bool = False, overrides: Overrides = None, state_dtype: Optional[str] = None,
                 state_bits: Optional[int] = None, master_weights: bool = False,
                 stochastic_rounding: bool = False, seed: int = 0):
        companion = AdamW() if companion is None else companion
        self._check_companion(companion)
        super().__init__(dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                              ns_coefficients=ns_coefficients, eps=eps, ns_steps=ns_steps,
                              adjust_lr_fn=adjust_lr_fn, ns_dtype=ns_dtype, maximize=maximize),
                         max_grad_norm=max_grad_norm, nonfinite=nonfinite,
                         track_grad_norm=track_grad_norm,
                         overrides=overrides, state_dtype=state_dtype, state_bits=state_bits,
                         master_weights=master_weights, stochastic_rounding=stochastic_rounding, seed=seed)
        self.__dict__.update(_companion=companion, _stepper=_MuonStepper(self), _scratch=[], _companion_due=None)

    @property
    def companion(self) -> Optimizer:
        """The optimizer of the keys that are not 2-D (set at construction)."""
        return self._companion

    def _check_lowp(self, hp: Mapping[str, Any], where: str) -> None:
        super()._check_lowp(hp, where)
        for name in ("master_weights", "stochastic_rounding"):
            if hp.get(name):
                raise ValueError(f"{where}{name}=True: Muon runs on float32/float64 params only (its Newton-Schulz "
                                 f"iteration works in NumPy on the parameter's dtype), so there are no bfloat16 "
                                 f"params to {'keep master weights of' if name == 'master_weights' else 'round'}; "
                                 f"leave {name} off (the companion takes its own low-precision options)")

    @staticmethod
    def _check_companion(companion: Any) -> None:
        if not isinstance(companion, Optimizer) or isinstance(companion, Muon):
            raise TypeError(f"companion must be a fastadapt optimizer for the non-matrix keys, e.g. "
                            f"fa.AdamW(lr=3e-4), got {companion!r}")
        hp = companion.hyperparameters
        if hp["max_grad_norm"] is not None or hp["nonfinite"] != "propagate" or hp.get("maximize", False):
            raise ValueError(f"the companion's max_grad_norm, nonfinite and maximize must stay at their defaults "
                             f"(None, 'propagate', False): Muon's own pre-processing covers every key, the "
                             f"companion's included; set them on Muon (companion: {companion!r})")

    def _scalars_for(self, hp: Dict[str, Any], t: int) -> Dict[str, float]:
        m, lr = hp["momentum"], hp["lr"]
        return {"momentum": m, "one_minus_momentum": 1.0 - m, "eps": hp["eps"], "lr": lr,
                "decay": 1.0 - lr * hp["weight_decay"]}

    def _flags_for(self, hp: Dict[str, Any]) -> int:
        return self._flag_bits(nesterov=hp["nesterov"], match_rms_adamw=hp["adjust_lr_fn"] == "match_rms_adamw",
                               raw_direction=hp["ns_dtype"] == "bfloat16", maximize=hp["maximize"])

    # ---- the step: direction (fused), Newton-Schulz (NumPy), commit (fused) ----
    # The base class's _update drives it (settle, bind, state buffers, the
    # transaction, the raise message) through self._stepper, a _MuonStepper.

    def _settle(self) -> None:
        super()._settle()
        due = self._companion_due
        if due is None:
            return
        t, before, params, grads = due
        if self._counts[0] == t and self._companion.step_count == before:
            try:
                self._companion.update(params, grads)  # its inputs were all checked by the commit call
            except Exception:
                # An error, not an interrupt (KeyboardInterrupt is kept for the
                # next settle): reported once, never raised again by readers.
                self.__dict__["_companion_due"] = None
                raise
        self.__dict__["_companion_due"] = None  # (idempotent: a step made shows in the companion's count)

    def _scratch_for(self, leaves: list) -> List[np.ndarray]:
        """One scratch array per key (kept between steps): the direction of a
        matrix, the pre-processed gradient of a companion key."""
        cache = self._scratch
        if len(cache) != len(leaves):
            cache = [None] * len(leaves)
        for i, p in enumerate(leaves):
            s = cache[i]
            if s is None or s.shape != p.shape or s.dtype != p.dtype:
                cache[i] = np.empty(p.shape, dtype=p.dtype)
        self.__dict__["_scratch"] = cache
        return cast(List[np.ndarray], cache)  # (every entry made above)

    def _orthogonalize(self, i: int, key: str, d: np.ndarray) -> np.ndarray:
        hp = self._group_hyper(self._tensor_group[i])
        if hp["ns_dtype"] == "bfloat16":
            return _newton_schulz_bf16(d, hp["ns_coefficients"], hp["ns_steps"], hp["eps"], key)
        return _newton_schulz(d, hp["ns_coefficients"], hp["ns_steps"])

    # ---- the companion in resets and checkpoints ---------------------------------
    def reset(self) -> None:
        """Forget the structure, the state and the step count, the companion's too."""
        super().reset()
        self._companion.reset()
        self.__dict__.update(_scratch=[], _companion_due=None)

    @property
    def state(self) -> Dict[str, Dict[str, np.ndarray]]:
        """Live state arrays by key path and buffer name: Muon's for the
        matrices, the companion's for the other keys."""
        with self._busy.waiting():
            self._settle()
            return {**self._live_state(), **self._companion.state}

    def _snapshot(self, also: Any) -> Tuple[Dict[str, Any], Any]:
        # One "state" for every key, as one optimizer over the whole model
        # has; "companion" holds the rest of the companion's state_dict and
        # the keys whose state is the companion's.
        companion = self._companion
        sd, (csd, extra) = super()._snapshot(lambda: (companion.state_dict(), also()))
        cstate = csd.pop("state")
        sd["state"].update(cstate)
        sd["companion"] = dict(csd, keys=list(cstate))
        return sd, extra

    def _load_state_dict(self, state_dict: Mapping[str, Any], params: Any) -> None:
        own, csd = self._split_state_dict(state_dict)
        others = None
        if params is not None:
            tree = TreeDef.of(params)
            others = {k: p for k, p in zip(tree.paths or (), tree.flatten(params, "params", ""))
                      if np.ndim(p) != 2} or None
        before = dict(self.__dict__)
        super()._load_state_dict(own, params)
        if csd is None:
            return
        try:
            self._companion.load_state_dict(csd, others)
        except BaseException:
            self.__dict__.update(before)  # both or neither
            raise

    @staticmethod
    def _split_state_dict(sd: Any) -> Tuple[Any, Optional[Dict[str, Any]]]:
        """Muon's part and the companion's state_dict. Whatever the base
        class checks (a dict, its keys, "state" a dict) is left to it."""
        if not isinstance(sd, Mapping) or not isinstance(sd.get("state"), Mapping):
            return {k: v for k, v in sd.items() if k != "companion"} if isinstance(sd, Mapping) else sd, None
        comp = sd.get("companion")
        if not isinstance(comp, Mapping) or not isinstance(comp.get("keys"), list) \
                or not all(isinstance(k, str) and k in sd["state"] for k in comp["keys"]):
            raise ValueError("state_dict['companion'] must be the companion's part of a Muon state_dict (its "
                             "algorithm, step, hyperparameters and the 'keys' of its entries in "
                             "state_dict['state']); pass what Muon.state_dict() returned")
        keys = set(comp["keys"])
        own = {k: v for k, v in sd.items() if k != "companion"}
        own["state"] = {k: v for k, v in sd["state"].items() if k not in keys}
        csd = {k: v for k, v in comp.items() if k != "keys"}
        csd["state"] = {k: sd["state"][k] for k in comp["keys"]}
        return own, csd

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, companion={self._companion!r})"


class _MuonStepper:
    """Muon's step where the base class calls ``_core.Stepper.step``: the
    direction call ("muon") into scratch arrays with throw-away counters,
    Newton-Schulz per matrix in NumPy, then the commit call ("muon_commit"),
    which checks every array before its first write and commits the step.
    The companion's step is recorded before the commit and made by
    ``Muon._settle`` once the commit went through."""

    def __init__(self, opt: Muon):
        self.opt = opt
        self.direction = _core.Stepper("muon")
        self.commit = _core.Stepper("muon_commit")

    def slot_mask(self, flags: int, ndim: int) -> int:
        return self.direction.slot_mask(flags, ndim)

    def step(self, keys: Sequence[str], params: list, grads: list, states: list, *groups: Any,
             tensor_scalars: Any = None, **lowp: Any) -> Any:
        # (Muon learns no tensor scalars: tensor_scalars is always None)
        if lowp:  # master weights or stochastic rounding, switched on after construction
            self.opt._check_lowp(self.opt._hyper, where="")
            for _, group in self.opt._overrides:
                self.opt._check_lowp(group, where="")
        # (named one by one: a type checker cannot count a starred list)
        tensor_group, scalars, flags, policy, max_norm, track, t, counts, last_norm = groups
        opt = self.opt
        opt._check_companion(opt._companion)  # (its settings may have changed since construction)
        for key, p in zip(keys, params):
            if isinstance(p, np.ndarray) and p.dtype in (np.float16,) or (
                    isinstance(p, np.ndarray) and p.dtype.itemsize == 2 and p.dtype.name == "bfloat16"):
                raise TypeError(f"params[{key!r}]: Muon runs on float32/float64 params (its Newton-Schulz "
                                f"iteration works in NumPy on the parameter's dtype), got {p.dtype.name}; keep "
                                f"float32 params, or use a rule of one element-wise pass (Adam, Lion, ...) for "
                                f"{p.dtype.name} params")
        if not all(isinstance(p, np.ndarray) and p.dtype in (np.float32, np.float64) for p in params):
            # The commit call's checks name the bad parameter (they run before any write).
            fill = [np.empty(p.shape, p.dtype) if isinstance(p, np.ndarray) and p.ndim == 2 else None for p in params]
            self.commit.step(keys, params, grads, [states[0], fill], tensor_group, scalars, flags, policy,
                             max_norm, track, t, counts, last_norm)
            raise AssertionError("unreachable: the commit call accepted a parameter that is not a float array")
        scratch = opt._scratch_for(params)
        status, norm, nonfinite, bad = self.direction.step(
            keys, scratch, grads, states, tensor_group, scalars, flags, policy, max_norm, track, t,
            np.zeros(5, dtype=np.int64), np.zeros(1))
        if status == 2:  # nonfinite="raise": nothing written, no counter moved
            return status, norm, nonfinite, bad
        orth: List[Optional[np.ndarray]] = [None] * len(params)
        for i, p in enumerate(params):  # (a skipped step needs no Newton-Schulz: the commit skips too)
            if p.ndim == 2:
                orth[i] = opt._orthogonalize(i, keys[i], scratch[i]) if status == 0 and p.size else scratch[i]
        others = [i for i, p in enumerate(params) if p.ndim != 2]
        due = None
        if others and status == 0:
            due = (t, opt._companion.step_count, {keys[i]: params[i] for i in others},
                   {keys[i]: scratch[i] for i in others})
        opt.__dict__["_companion_due"] = due
        return self.commit.step(keys, params, grads, [states[0], orth], tensor_group, scalars, flags, policy,
                                max_norm, track, t, counts, last_norm)
