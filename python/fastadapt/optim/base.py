"""The optimizer base class: structure, parameter groups, state, the atomic
fused step, checkpoints. It knows no rule: a rule's module (optim/adam.py,
...) subclasses it with the rule's hyperparameters and how a group's values
become the kernel's scalars and flags, and the C++ rule (cpp/rules) says
which state buffers it keeps (fastadapt._core.RULES).
"""

from __future__ import annotations

import fnmatch
import warnings
from typing import (Any, Callable, ClassVar, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Type, TypeVar,
                    Union)

import numpy as np

from .. import _core
from .. import _hyper as hv
from .._hyper import Hyper
from .._interop import not_array
from .._tree import TreeDef
from . import _lowp

__all__ = ["Optimizer", "OPTIMIZERS", "Overrides"]

_POLICY = _core.POLICIES
_STRUCTURE_FIX = ("params must keep the structure it had at the first update; "
                  "call opt.reset() to start over with a new structure")
_GRADS_FIX = "grads must have exactly the structure and keys of params"
_MAX_COUNT = 2 ** 62  # step counts live in int64; t = step + 1 must fit

Pattern = Union[str, Callable[[str, np.ndarray], bool]]
Overrides = Union[Mapping[str, Mapping[str, Any]], Sequence[Tuple[Pattern, Mapping[str, Any]]], None]
# update/eval/train return the params they were given (updated in place), so
# a caller keeps its own type for them.
P = TypeVar("P")
# A step's transaction (see _settle): t, bound by this step, created (slot,
# tensor) buffers, carried (members, values), tensors given initial scalars.
_Txn = Tuple[int, bool, List[Tuple[int, int]], List[Tuple[List[int], Dict[str, float]]], List[int]]


class _StateDtype(Hyper):
    """``state_dtype``: also checked against the rule (low-precision state
    needs one element-wise pass)."""

    def __set__(self, obj: Any, value: Any) -> None:
        obj._check_lowp({"state_dtype": self.validate(self.name, value)}, where="")
        super().__set__(obj, value)


class Optimizer:
    """Base class: structure, groups, state, the step call and checkpoints.

    Subclasses declare their hyperparameters as ``Hyper`` attributes and
    say how a group's hyperparameters become kernel scalars and flags.

    Every step is atomic: the fused C++ call writes the arrays and commits
    the step count and counters before it returns, and everything the
    Python side prepared for the step (state buffers created for it, the
    first bind of the structure) is recorded in a transaction that
    ``_settle`` resolves against the committed step count. An exception
    at any point, a ``KeyboardInterrupt`` from a signal handler included,
    leaves the optimizer either exactly as before the call or exactly one
    step after it.

    The options every rule takes (each rule's docstring points here):

    - ``max_grad_norm``: clip the global gradient norm (over every key) to
      this value first; None: off.
    - ``nonfinite``: what a NaN/Inf gradient does: ``"propagate"`` (as
      torch), ``"zero"`` (it counts as 0), ``"skip"`` (the whole step is
      skipped and counted) or ``"raise"`` (FloatingPointError; nothing
      changes).
    - ``track_grad_norm``: compute ``last_grad_norm`` in every step (it is
      always computed when clipping, and with ``"skip"``/``"raise"``).
    - ``overrides``: per-key hyperparameters, ``{"*.b": {"weight_decay":
      0.0}}`` (globs on dotted key paths) or ``[(predicate, {...})]`` with
      ``predicate(key, array)``; later entries win.

    Low precision (docs/guide/low-precision.md):

    - ``state_dtype``: how new state buffers are stored: None (the params'
      compute type), ``"float32"``, ``"bfloat16"``, or ``"int8"`` (8-bit
      block-quantized; rules of one element-wise pass). Per key through
      ``overrides``.
    - ``state_bits``: the same as a bit count: 8 (``"int8"``), 16
      (``"bfloat16"``) or 32 (``"float32"``).
    - ``master_weights``: keep float32 master weights of bfloat16/float16
      params (the param is rounded from them each step).
    - ``stochastic_rounding``: round bfloat16 params stochastically, seeded by
      ``seed`` and reproducible, instead of to nearest.
    - ``seed``: the seed of the stochastic rounding.
    """

    algorithm: ClassVar[str] = ""                      # public name (make_optimizer, state_dict)
    _kernel: ClassVar[str] = ""                         # which C++ rule (cpp/rules/registry.hpp)
    _per_key: ClassVar[Tuple[str, ...]] = ()           # hyperparameters that overrides may set
    # Filled from fastadapt._core.RULES[_kernel] when the subclass is defined:
    _state_slots: ClassVar[Tuple[str, ...]] = ()       # state buffer names, in the rule's slot order
    _slot_shapes: ClassVar[Tuple[str, ...]] = ()       # "param", "rows" or "cols" per slot
    _scalar_names: ClassVar[Tuple[str, ...]] = ()      # the rule's per-group scalars, in order
    _flag_names: ClassVar[Tuple[str, ...]] = ()        # the rule's flags: bit i is _flag_names[i]
    # Scalars a rule carries from step to step, one value per group (NAdam's
    # mu_product): advanced by _carry, committed with the step, saved per key
    # as float64 0-d arrays next to the buffers (as torch keeps them per param).
    _carried: ClassVar[Tuple[str, ...]] = ()
    # Values the C++ rule learns and keeps per tensor (fastadapt._core.RULES'
    # "tensor_scalars": Prodigy's d, DoG's rbar and G): carried state per key
    # like _carried, but computed inside the step (from its reductions) and
    # written back by the kernel when the step commits. The state entries are
    # 0-d views of one (tensors, MAX_TENSOR_SCALARS) float64 array the
    # stepper reads and writes, so a step costs no Python work per tensor.
    _tensor_scalar_names: ClassVar[Tuple[str, ...]] = ()
    # A learning-rate-free rule sets its own step size (Prodigy, DoG, ...):
    # callers (fastadapt mnist, fa.compare) run it without lr schedules.
    lr_free: ClassVar[bool] = False
    # Low-precision state (state_dtype "bfloat16" / "int8") needs a rule of one
    # element-wise pass over param-shaped buffers (set from the C++ rule);
    # its second moments (_nonnegative) take the unsigned 8-bit map.
    _lowp_state: ClassVar[bool] = False
    _nonnegative: ClassVar[Tuple[str, ...]] = ()
    # Names of the state entries low precision adds: each 8-bit buffer's
    # block scales, and float32 master weights of bfloat16/float16 params.
    _absmax_names: ClassVar[Tuple[str, ...]] = ()
    _MASTER: ClassVar[str] = "master_param"

    # Instance attributes. Most are set in groups by self.__dict__.update
    # (_fresh, _binding, load_state_dict) so that each change commits whole;
    # declared here (annotations only: no class attribute) for type checkers.
    _hyper: Dict[str, Any]
    _overrides: List[Tuple[Pattern, Dict[str, Any]]]
    _busy: _core.BusyLock
    _stepper: Any  # a _core.Stepper (Muon's wraps two)
    _tree: Optional[TreeDef]
    _paths: Tuple[str, ...]
    # name -> one entry per key: a buffer, a 0-d float64 scalar, or None (not
    # created yet); Any, as most readers know which (float(...) of a scalar).
    _state: Dict[str, List[Any]]
    _slot_lists: List[List[Optional[np.ndarray]]]
    _scale_lists: List[List[Optional[np.ndarray]]]         # per slot: each 8-bit buffer's block scales
    _rounding_groups: Dict[int, bool]                      # group -> stochastic rounding
    _lowp_cache: Optional[Tuple[bool, bool]]               # (any 8-bit buffer, any master weights)
    _masters_off: List[int]                                # keys whose master weights the step in flight drops
    _group_masks: List[Tuple[int, ...]]
    _group_members: List[List[int]]
    _group_ready: List[Set[Tuple[int, int]]]
    _tensor_group: np.ndarray
    _scalars: np.ndarray
    _flags: np.ndarray
    _tensor_scalars: np.ndarray
    _param_meta: Dict[str, Tuple[Tuple[int, ...], np.dtype]]
    _pending_state: Optional[Dict[str, Dict[str, np.ndarray]]]
    _pending_step: int
    _txn: Optional[_Txn]
    _counts: np.ndarray
    _last_norm: np.ndarray

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Defining a rule's class is registering it: make_optimizer and
        # state_dict know it by its `algorithm` name.
        super().__init_subclass__(**kwargs)
        if "_kernel" in cls.__dict__:
            if cls._kernel not in _core.RULES:
                raise ImportError(f"{cls.__name__}: the C++ rule {cls._kernel!r} is not in this build of "
                                  f"fastadapt._core (it has {', '.join(_core.RULES)}); register it in "
                                  f"cpp/rules/registry.hpp and rebuild the extension")
            rule = _core.RULES[cls._kernel]
            cls._state_slots, cls._slot_shapes = tuple(rule["slots"]), tuple(rule["slot_shapes"])
            cls._scalar_names, cls._flag_names = tuple(rule["scalars"]), tuple(rule["flags"])
            cls._tensor_scalar_names = tuple(rule["tensor_scalars"])
            cls._nonnegative = tuple(rule["nonnegative_slots"])
            cls._lowp_state = tuple(rule["passes"]) == ("chunk",) and all(k == "param" for k in cls._slot_shapes)
            cls._absmax_names = tuple(f"{name}_absmax" for name in cls._state_slots) if cls._lowp_state else ()
        if cls.__dict__.get("algorithm"):
            if cls.algorithm in OPTIMIZERS:
                raise TypeError(f"two optimizers are called {cls.algorithm!r}: {OPTIMIZERS[cls.algorithm]} and {cls}")
            OPTIMIZERS[cls.algorithm] = cls

    max_grad_norm = Hyper(hv.max_grad_norm, "Clip the global gradient norm to this value (None: off).")
    nonfinite = Hyper(hv.nonfinite_policy, "What to do with NaN/Inf gradients: propagate, zero, skip, raise.")
    track_grad_norm = Hyper(hv.flag, "Compute the global gradient norm in every step (last_grad_norm); "
                                     "about 5% of a memory-bound step. Always on with clipping, skip and raise.")
    state_dtype = _StateDtype(_lowp.state_dtype, "How new state buffers are stored: None (the params' compute type), "
                                           "'float32', 'bfloat16' or 'int8' (8-bit, block-quantized).")
    master_weights = Hyper(hv.flag, "Keep float32 master weights of bfloat16/float16 params (the param is "
                                    "rounded from them each step).")
    stochastic_rounding = Hyper(hv.flag, "Round bfloat16 params stochastically (seeded, reproducible) instead of "
                                         "to nearest.")
    seed = Hyper(_lowp.seed, "Seed of the stochastic rounding.")

    def __init__(self, hyper: Dict[str, Any], *, max_grad_norm: Optional[float], nonfinite: str,
                 track_grad_norm: bool, overrides: Overrides, state_dtype: Optional[str] = None,
                 state_bits: Optional[int] = None, master_weights: bool = False,
                 stochastic_rounding: bool = False, seed: int = 0):
        self._hyper: Dict[str, Any] = {}
        # One update (or load/reset) at a time: the step count and state are
        # read before and written after the kernel runs without the GIL. A
        # C++ context manager, so no exception can leave it held (see
        # busy_lock.hpp); readers (state_dict) wait on it instead of raising.
        self._busy = _core.BusyLock(type(self).__name__)
        candidate = {name: getattr(type(self), name).validate(name, v) for name, v in hyper.items()}
        candidate["max_grad_norm"] = hv.max_grad_norm("max_grad_norm", max_grad_norm)
        candidate["nonfinite"] = hv.nonfinite_policy("nonfinite", nonfinite)
        candidate["track_grad_norm"] = hv.flag("track_grad_norm", track_grad_norm)
        candidate["state_dtype"] = _lowp.resolve(state_dtype, state_bits)
        candidate["master_weights"] = hv.flag("master_weights", master_weights)
        candidate["stochastic_rounding"] = hv.flag("stochastic_rounding", stochastic_rounding)
        candidate["seed"] = _lowp.seed("seed", seed)
        self._check_consistency(candidate, where="")
        self._check_lowp(candidate, where="")
        self._hyper = candidate
        self._overrides = self._normalize_overrides(overrides)
        self._stepper = _core.Stepper(self._kernel)
        self.__dict__.update(self._fresh())

    # ---- hyperparameters -------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        # A typo (opt.learning_rate = ...) must not be a silent no-op.
        if not name.startswith("_") and not hasattr(type(self), name) and name not in self.__dict__:
            raise AttributeError(f"{type(self).__name__} has no hyperparameter {name!r}; hyperparameters: "
                                 f"{', '.join(self._hyper)}")
        object.__setattr__(self, name, value)

    def _check_consistency(self, hp: Dict[str, Any], where: str) -> None:
        """Cross-checks between hyperparameters (subclasses extend)."""

    def _check_lowp(self, hp: Mapping[str, Any], where: str) -> None:
        if hp.get("state_dtype") in ("bfloat16", "int8") and not self._lowp_state:
            raise ValueError(f"{where}state_dtype={hp['state_dtype']!r} (state_bits="
                             f"{8 if hp['state_dtype'] == 'int8' else 16}): {type(self).__name__} keeps state that "
                             f"low precision does not cover (it needs a rule of one element-wise pass, e.g. Adam, "
                             f"SGD, RMSprop, AdaGrad, Lion); leave state_dtype and state_bits unset")

    def _check_group(self, hyper: Mapping[str, Any], group: Mapping[str, Any], where: str) -> None:
        """The cross-checks for an override group: its values over the defaults."""
        merged = dict(hyper)
        merged.update(group)
        self._check_consistency(merged, where=where)

    @property
    def hyperparameters(self) -> Dict[str, Any]:
        """The current default hyperparameters and options (a copy)."""
        return dict(self._hyper)

    # ---- parameter groups --------------------------------------------------
    # torch.optim's param_groups, in fastadapt's terms: group 0 is the default
    # hyperparameters, then one entry per override that sets the hyperparameter.
    # Schedules and controllers move every group relative to its own base, as
    # torch's LR schedulers do.
    def group_values(self, name: str) -> List[Any]:
        """The value of hyperparameter ``name`` in the default group, then in
        each ``overrides`` entry that sets it (in the order given)."""
        if name not in self._hyper:
            raise KeyError(f"{type(self).__name__} has no hyperparameter {name!r}; hyperparameters: "
                           f"{', '.join(self._hyper)}")
        return [self._hyper[name]] + [values[name] for _, values in self._overrides if name in values]

    def set_group_values(self, name: str, values: Sequence[Any]) -> None:
        """Set ``name`` in every group at once (``values`` as
        [`group_values`][fastadapt.Optimizer.group_values] orders them). All values are checked
        first: on an error nothing changes."""
        current = self.group_values(name)
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) != len(current):
            raise ValueError(f"set_group_values({name!r}, ...) needs {len(current)} values (the default, then "
                             f"each override that sets {name!r}), got {values!r}")
        descriptor = getattr(type(self), name)
        checked = [descriptor.validate(name if i == 0 else f"overrides[{i - 1}][{name!r}]", v)
                   for i, v in enumerate(values)]
        hyper = dict(self._hyper)
        hyper[name] = checked[0]
        self._check_consistency(hyper, where="")
        overrides, rest = [], iter(checked[1:])
        for pattern, group in self._overrides:
            group = dict(group, **{name: next(rest)}) if name in group else group
            self._check_group(hyper, group, where=f"overrides[{pattern!r}]: ")
            overrides.append((pattern, group))
        self.__dict__.update(_hyper=hyper, _overrides=overrides)  # one C call: all groups move together

    def _normalize_overrides(self, overrides: Overrides) -> List[Tuple[Pattern, Dict[str, Any]]]:
        if overrides is None:
            return []
        if isinstance(overrides, (str, bytes)) or not isinstance(overrides, (Mapping, list, tuple)):
            raise TypeError(f"overrides must be a dict {{pattern: {{name: value}}}} or a list of (pattern, "
                            f"{{name: value}}) pairs, got {type(overrides).__name__}")
        items = list(overrides.items()) if isinstance(overrides, Mapping) else list(overrides)
        out: List[Tuple[Pattern, Dict[str, Any]]] = []
        for entry in items:
            if not (isinstance(entry, tuple) and len(entry) == 2):
                raise TypeError(f"overrides entries must be (pattern, {{name: value}}) pairs, got {entry!r}")
            pattern, values = entry
            if not (isinstance(pattern, str) or callable(pattern)):
                raise TypeError(f"override pattern must be a glob string or a callable (path, array) -> bool, "
                                f"got {pattern!r}")
            if not isinstance(values, Mapping):
                raise TypeError(f"overrides[{pattern!r}] must be a dict of hyperparameters, got {values!r}")
            checked = {}
            per_key = self._per_key + _lowp.LOWP_PER_KEY
            for name, v in values.items():
                if name == "state_bits":  # (state_bits=8 is state_dtype="int8")
                    if "state_dtype" in values:
                        raise ValueError(f"overrides[{pattern!r}]: give state_dtype or state_bits, not both")
                    checked["state_dtype"] = _lowp.state_bits(f"overrides[{pattern!r}]['state_bits']", v)
                    continue
                if name not in per_key:
                    raise TypeError(f"overrides[{pattern!r}]: {name!r} is not a per-key hyperparameter of "
                                    f"{type(self).__name__} (expected one of {', '.join(per_key)}, state_bits)")
                checked[name] = getattr(type(self), name).validate(f"overrides[{pattern!r}][{name!r}]", v)
            self._check_group(self._hyper, checked, where=f"overrides[{pattern!r}]: ")
            self._check_lowp(checked, where=f"overrides[{pattern!r}]: ")
            out.append((pattern, checked))
        return out

    # ---- counters (committed by the C++ step; see _core.Stepper.step) -------
    # _counts: int64 [step, skipped steps, total non-finite, last non-finite,
    # have norm]; _last_norm: float64 [norm]. Replaced as a whole on load and
    # reset, so those are atomic too.
    @property
    def step_count(self) -> int:
        """Steps taken (skipped steps do not count); bias corrections use it."""
        return int(self._counts[0])

    @property
    def skipped_steps(self) -> int:
        """Steps skipped by ``nonfinite="skip"``."""
        return int(self._counts[1])

    @skipped_steps.setter
    def skipped_steps(self, value: int) -> None:
        self._counts[1] = value

    @property
    def total_nonfinite_count(self) -> int:
        """Non-finite gradient values met so far (zeroed, skipped or raised on)."""
        return int(self._counts[2])

    @total_nonfinite_count.setter
    def total_nonfinite_count(self, value: int) -> None:
        self._counts[2] = value

    @property
    def last_nonfinite_count(self) -> int:
        """Non-finite gradient values in the last step (0 with ``nonfinite="propagate"``)."""
        return int(self._counts[3])

    @last_nonfinite_count.setter
    def last_nonfinite_count(self, value: int) -> None:
        self._counts[3] = value

    @property
    def last_grad_norm(self) -> Optional[float]:
        """Global gradient norm of the last step (before clipping), or None when not computed."""
        return float(self._last_norm[0]) if self._counts[4] else None

    @last_grad_norm.setter
    def last_grad_norm(self, value: Optional[float]) -> None:
        self._last_norm[0] = 0.0 if value is None else value
        self._counts[4] = value is not None

    # ---- learned step sizes, the evaluation point ---------------------------
    @property
    def adapted(self) -> Dict[str, float]:
        """What a learning-rate-free rule has learned by the last step, by name
        (Prodigy's ``d``, DoG's ``eta``, a hypergradient rule's ``lr``, ...);
        empty for rules with a fixed step size and before the first step."""
        with self._busy.waiting():
            self._settle()
            return dict(self._adapted())

    @property
    def lr_estimate(self) -> Optional[float]:
        """The step size a learning-rate-free rule chose in its last step
        (what ``lr`` is for Adam); None for other rules and before a step."""
        with self._busy.waiting():
            self._settle()
            return self._lr_estimate()

    def _adapted(self) -> Dict[str, float]:
        return {}

    def _lr_estimate(self) -> Optional[float]:
        return None

    def eval(self, params: P) -> P:
        """Switch ``params`` in place to the point to evaluate and save, and
        return them. A no-op except for rules that keep two sequences
        (Schedule-Free: the training point and its average); the Trainer
        calls it before validation, metrics and checkpoints."""
        return params

    def train(self, params: P) -> P:
        """Switch ``params`` back to the training point after [`eval`][fastadapt.Optimizer.eval]
        (a no-op except for rules that keep two sequences); returns them."""
        return params

    # ---- structure and state ---------------------------------------------
    @staticmethod
    def _unbound() -> Dict[str, Any]:
        """Attributes of an optimizer that has not met its parameters yet."""
        return dict(_tree=None, _paths=(), _state={}, _slot_lists=[], _group_masks=[],
                    _group_members=[], _group_ready=[], _tensor_group=np.zeros(0, dtype=np.int32),
                    _scalars=np.zeros((0, _core.MAX_SCALARS)), _flags=np.zeros(0, dtype=np.uint32),
                    _tensor_scalars=np.zeros((0, _core.MAX_TENSOR_SCALARS)), _param_meta={},
                    _scale_lists=[], _rounding_groups={}, _lowp_cache=None, _masters_off=[])

    def _fresh(self) -> Dict[str, Any]:
        """Attributes of a new optimizer (applied with one dict update: atomic)."""
        return dict(self._unbound(), _pending_state=None, _pending_step=0, _txn=None,
                    _counts=np.zeros(5, dtype=np.int64), _last_norm=np.zeros(1))

    def _unbind(self) -> None:
        self.__dict__.update(self._unbound())

    def reset(self) -> None:
        """Forget the structure, the state and the step count (hyperparameters stay)."""
        with self._busy:
            self.__dict__.update(self._fresh())

    def _binding(self, params: Any, role: str = "params") -> Dict[str, Any]:
        """The bound attributes for ``params`` (structure, groups, empty state),
        computed without changing the optimizer."""
        tree = TreeDef.of(params)
        leaves = tree.flatten(params, role, _STRUCTURE_FIX)
        paths = tuple(tree.paths or ())
        if not paths:
            raise ValueError(f"{role} has no arrays: there is nothing to update (an update with no parameters "
                             f"is not a step); pass a dict of NumPy arrays")
        masks = []
        matched = [False] * len(self._overrides)
        for path, leaf in zip(paths, leaves):
            mask = []
            for i, (pattern, _) in enumerate(self._overrides):
                hit = fnmatch.fnmatchcase(path, pattern) if isinstance(pattern, str) else bool(pattern(path, leaf))
                if hit:
                    mask.append(i)
                    matched[i] = True
            masks.append(tuple(mask))
        for (pattern, _), hit in zip(self._overrides, matched):
            if not hit:
                warnings.warn(f"override {pattern!r} matched no parameter (keys: {', '.join(paths[:8])}"
                              f"{', ...' if len(paths) > 8 else ''})", UserWarning, stacklevel=4)
        group_of: Dict[Tuple[int, ...], int] = {}
        members: List[List[int]] = []
        for i, m in enumerate(masks):
            if m not in group_of:
                group_of[m] = len(group_of)
                members.append([])
            members[group_of[m]].append(i)
        state: Dict[str, List[Optional[np.ndarray]]] = {name: [None] * len(paths) for name in self._state_names()}
        return dict(_tree=tree, _paths=paths, _group_masks=list(group_of), _group_members=members,
                    _group_ready=[set() for _ in members],
                    _tensor_group=np.array([group_of[m] for m in masks], dtype=np.int32),
                    _scalars=np.zeros((len(members), _core.MAX_SCALARS)),
                    _flags=np.zeros(len(members), dtype=np.uint32), _state=state,
                    _tensor_scalars=np.zeros((len(paths), _core.MAX_TENSOR_SCALARS)),
                    _slot_lists=[state[name] for name in self._state_slots],
                    _scale_lists=[state[name] for name in self._absmax_names],
                    _rounding_groups={}, _lowp_cache=None,
                    _param_meta={p: (leaf.shape, leaf.dtype) for p, leaf in zip(paths, leaves)
                                 if isinstance(leaf, np.ndarray)})

    def _bind(self, params: Any) -> None:
        binding = self._binding(params)
        if self._pending_state is not None:
            self._check_state_against(self._pending_state, self._pending_step, binding)
            # Kept until a step commits: a failing first update unbinds.
            binding.update(self._installed(self._pending_state, binding))
        self.__dict__.update(binding)

    def _group_hyper(self, g: int) -> Dict[str, Any]:
        return self._merged_hyper(self._hyper, self._overrides, self._group_masks[g])

    @staticmethod
    def _merged_hyper(hyper: Dict[str, Any], overrides: List[Tuple[Pattern, Dict[str, Any]]],
                      mask: Sequence[int]) -> Dict[str, Any]:
        """The hyperparameters of a group: ``hyper`` with the overrides in ``mask`` applied in order."""
        if not mask:
            return hyper
        hp = dict(hyper)
        for i in mask:
            hp.update(overrides[i][1])
        return hp

    def _new_state(self, slot: int, param: np.ndarray, hp: Dict[str, Any]) -> np.ndarray:
        """A fresh state buffer (zeros, shaped as the rule's slot says)."""
        return np.zeros(self._slot_shape(slot, param.shape), dtype=param.dtype)

    def _slot_shape(self, slot: int, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        kind = self._slot_shapes[slot]
        if kind == "rows":      # one value per row: (..., R, 1)
            return tuple(shape[:-1]) + (1,)
        if kind == "cols":      # one value per column: (..., 1, C)
            return tuple(shape[:-2]) + (1,) + tuple(shape[-1:])
        return tuple(shape)

    def _state_names(self) -> Tuple[str, ...]:
        return (self._state_slots + self._carried + self._tensor_scalar_names + self._absmax_names +
                (self._MASTER,))

    def _scalar_names_carried(self) -> Tuple[str, ...]:
        """Every state entry that is a float64 scalar (shape ()), not a buffer."""
        return self._carried + self._tensor_scalar_names

    def _initial_tensor_scalars(self, hp: Dict[str, Any]) -> Dict[str, float]:
        """The tensor scalars before a tensor's first step (missing names: 0.0)."""
        return {}

    def _tensor_scalar_view(self, table: np.ndarray, i: int, j: int) -> np.ndarray:
        """Tensor i's scalar j as a 0-d float64 view of the stepper's table."""
        return table[i, j:j + 1].reshape(())

    def _carry(self, hp: Dict[str, Any], t: int, previous: Optional[Dict[str, float]]) -> Dict[str, float]:
        """The carried scalars for step t from those after step t - 1
        (``previous`` is None before the first step)."""
        return {}

    def _prepare(self, t: int, leaves: list, created: List[Tuple[int, int]],
                 carried: List[Tuple[List[int], Dict[str, float]]], fresh_scalars: List[int]) -> None:
        """Fill the per-group scalars and flags for step t and create missing
        state buffers, recording each in ``created`` (the transaction) before
        it is installed, so an interrupted prepare is undone completely. The
        carried scalars of step t go to ``carried``; _settle installs them
        when the step commits. Tensors meeting the rule's tensor scalars for
        the first time get their initial values in the table and go to
        ``fresh_scalars`` (their state entries appear when the step commits)."""
        names = self._scalar_names
        masters_off: List[int] = []
        self._masters_off = masters_off
        cache = self._lowp_cache
        have_masters = cache[1] if cache is not None else any(m is not None for m in self._state[self._MASTER])
        tensor_names = self._tensor_scalar_names
        for g, members in enumerate(self._group_members):
            hp = self._group_hyper(g)
            if self._group_masks[g]:
                self._check_consistency(hp, where="")
            if tensor_names:
                first = self._state[tensor_names[0]]
                new = [i for i in members if first[i] is None]
                if new:
                    initial = self._initial_tensor_scalars(hp)
                    row = [float(initial.get(n, 0.0)) for n in tensor_names]
                    self._tensor_scalars[new, :len(row)] = row
                    fresh_scalars.extend(new)
            if self._carried:
                held = self._state[self._carried[0]][members[0]]
                previous = None if held is None else {n: float(self._state[n][members[0]]) for n in self._carried}
                now = self._carry(hp, t, previous)
                carried.append((members, now))
                hp = dict(hp, **now)
            values = self._scalars_for(hp, t)
            self._scalars[g, :len(names)] = [values[n] for n in names]
            flags = self._flags_for(hp)
            # (slot, flags) pairs whose buffers exist for every member that
            # needs them: the check runs once per group and configuration.
            ready = self._group_ready[g]
            base_flags = flags
            for slot in range(len(self._state_slots)):
                if (slot, base_flags) in ready:
                    continue
                lst = self._slot_lists[slot]
                fresh = False
                for i in members:
                    leaf = leaves[i]
                    if lst[i] is not None or not isinstance(leaf, np.ndarray):
                        continue  # (the kernel call reports a bad param)
                    if not self._stepper.slot_mask(base_flags, leaf.ndim) >> slot & 1:
                        continue
                    buffer, absmax = self._new_stored_state(slot, leaf, hp, self._paths[i])
                    created.append((slot, i))
                    lst[i] = buffer
                    if absmax is not None:
                        self._scale_lists[slot][i] = absmax
                    fresh = True
                if fresh:
                    flags |= self._fresh_flag(slot)
                ready.add((slot, base_flags))
            if hp["master_weights"]:
                masters = self._state[self._MASTER]
                for i in members:
                    leaf = leaves[i]
                    if isinstance(leaf, np.ndarray) and _lowp.is_low(leaf.dtype) and masters[i] is None:
                        created.append((-1, i))
                        masters[i] = _lowp.widen(leaf)
            elif have_masters:
                # Switched off: the param is the weight again. Its master is not
                # read in this step and is dropped when the step commits (_settle).
                masters = self._state[self._MASTER]
                masters_off.extend(i for i in members if masters[i] is not None)
            self._rounding_groups[g] = hp["stochastic_rounding"]
            self._flags[g] = flags

    def _new_stored_state(self, slot: int, leaf: np.ndarray, hp: Dict[str, Any], key: str = ""
                          ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """A fresh state buffer in the group's storage: the rule's float32 (or
        float64) buffer, rounded to bfloat16 or quantized to 8 bits (with its
        block scales) when ``state_dtype`` asks."""
        if not _lowp.is_param_dtype(leaf.dtype):
            return self._new_state(slot, leaf, hp), None  # (the kernel call reports the bad param)
        proto = _lowp.widen(leaf) if _lowp.is_low(leaf.dtype) else leaf
        buffer = self._new_state(slot, proto, hp)
        want = _lowp.storage_dtype(hp["state_dtype"], leaf.dtype, key)
        name = self._state_slots[slot]
        return _lowp.to_storage(buffer, want, signed=name not in self._nonnegative)

    def _fresh_flag(self, slot: int) -> int:
        """Flags for the step that creates slot ``slot`` (e.g. SGD's first momentum step)."""
        return 0

    def _flag_bits(self, **on: bool) -> int:
        """The group flags with these of the rule's flags (and ``maximize``) on."""
        bits = 0
        for name, is_on in on.items():
            if is_on:
                bits |= _core.FLAG_MAXIMIZE if name == "maximize" else 1 << self._flag_names.index(name)
        return bits

    def _drop(self, created: List[Tuple[int, int]]) -> None:
        for slot, i in created:
            if slot < 0:
                self._state[self._MASTER][i] = None
                continue
            self._slot_lists[slot][i] = None
            if self._scale_lists:
                self._scale_lists[slot][i] = None
            ready = self._group_ready[self._tensor_group[i]]
            ready.difference_update({entry for entry in ready if entry[0] == slot})

    def _settle(self) -> None:
        """Resolve the last update's transaction: keep what it prepared if the
        C++ call committed step t, else undo it. Idempotent, so an exception
        in the middle (a second signal) is settled again by the next call."""
        txn = self._txn
        if txn is None:
            return
        t, bound_now, created, carried, fresh_scalars = txn
        off, self._masters_off = self._masters_off, []
        if self._counts[0] == t:
            self._pending_state = None
            if off:  # master weights switched off: the committed step rounded from the param itself
                masters = self._state[self._MASTER]
                for i in off:
                    masters[i] = None
                self._lowp_cache = None
            # (the kernel wrote the values into the table when it committed)
            table = self._tensor_scalars
            for j, name in enumerate(self._tensor_scalar_names):
                lst = self._state[name]
                for i in fresh_scalars:
                    if lst[i] is None:
                        lst[i] = self._tensor_scalar_view(table, i, j)
            # One 0-d array per group and name, shared by the group's keys (the
            # group carries one value; one array per key was most of a step on
            # 1000 small tensors). Idempotent: settling twice writes the same.
            for members, values in carried:
                for name, v in values.items():
                    arr, lst = np.array(v, dtype=np.float64), self._state[name]
                    for i in members:
                        lst[i] = arr
        elif bound_now:
            self._unbind()
        else:
            self._drop(created)
        self._txn = None

    # ---- the step ----------------------------------------------------------
    def update(self, params: P, grads: Any) -> P:
        """One optimizer step: update ``params`` in place from ``grads`` (same
        structure) and return ``params``. On any error nothing is changed; an
        interrupt (Ctrl-C) leaves the step either fully applied or not at all."""
        with self._busy:
            return self._update(params, grads)

    def _takes_grad_addresses(self) -> bool:
        """Whether ``_update_at`` works for this rule: its step is one call
        of the C++ stepper (Muon's is its own, which takes arrays)."""
        return type(self._stepper) is _core.Stepper

    def _update_at(self, params: P, owners: List[Any], addresses: List[int]) -> P:
        """``update`` with the gradients given by
        address, for ``fastadapt.torch``: ``addresses[i]`` is the start of the
        gradient of the i-th leaf of ``params`` (in flattening order), which
        the caller has checked is contiguous memory of that leaf's dtype and
        element count, owned by ``owners[i]``. Internal: nothing here can
        check what an address points at."""
        with self._busy:
            return self._update(params, owners, addresses)

    def _update(self, params: P, grads: Any, addresses: Optional[List[int]] = None) -> P:
        self._settle()
        t = int(self._counts[0]) + 1
        created: List[Tuple[int, int]] = []
        carried: List[Tuple[List[int], Dict[str, float]]] = []
        fresh_scalars: List[int] = []
        self._txn = (t, self._tree is None, created, carried, fresh_scalars)
        try:
            if self._tree is None:
                self._bind(params)
            tree, paths = self._tree, self._paths
            assert tree is not None  # (bound just above)
            leaves = tree.flatten(params, "params", _STRUCTURE_FIX)
            gleaves = grads if addresses is not None else tree.flatten(grads, "grads", _GRADS_FIX)
            self._prepare(t, leaves, created, carried, fresh_scalars)
            hp = self._hyper
            policy = hp["nonfinite"]
            max_norm = hp["max_grad_norm"]
            status, _, nonfinite, bad = self._stepper.step(
                paths, leaves, gleaves, self._slot_lists, self._tensor_group,
                self._scalars, self._flags, _POLICY[policy], -1.0 if max_norm is None else max_norm,
                hp["track_grad_norm"], t, self._counts, self._last_norm,
                tensor_scalars=self._tensor_scalars if self._tensor_scalar_names else None,
                **self._lowp_args(leaves, created), **({} if addresses is None else {"grad_addresses": addresses}))
        finally:
            self._settle()
        if status == 2:  # a raise leaves the optimizer exactly as it was
            key = paths[bad]
            raise FloatingPointError(
                f"grads{f'[{key!r}]' if key else ''} contains NaN or Inf ({nonfinite} non-finite "
                f"value(s) in this step); nothing was updated. Pass nonfinite='zero' or 'skip' "
                f"to tolerate them.")
        return params

    def _lowp_args(self, leaves: list, created: List[Tuple[int, int]]) -> Dict[str, Any]:
        """The stepper's low-precision arguments (none when nothing is low).
        Which lists hold anything is cached until buffers are created or loaded."""
        cache = self._lowp_cache
        if cache is None or created:
            cache = (bool(self._scale_lists) and any(a is not None for lst in self._scale_lists for a in lst),
                     any(m is not None for m in self._state[self._MASTER]))
            self._lowp_cache = cache
        out: Dict[str, Any] = {}
        if cache[0]:
            out["state_scales"] = self._scale_lists
        if cache[1]:
            masters = self._state[self._MASTER]
            if self._masters_off:  # (master_weights switched off for these: not read)
                masters = list(masters)
                for i in self._masters_off:
                    masters[i] = None
            out["masters"] = masters
        if any(self._rounding_groups.values()):
            groups = self._rounding_groups
            out["rounding"] = (self._hyper["seed"],
                               [groups.get(int(g), False) and isinstance(leaf, np.ndarray) and
                                _lowp.is_bfloat16(leaf.dtype) for g, leaf in zip(self._tensor_group, leaves)])
        return out

    @property
    def state(self) -> Dict[str, Dict[str, np.ndarray]]:
        """Live state arrays by key path and buffer name (mutating them changes
        the optimizer). Waits for a step running in another thread."""
        with self._busy.waiting():
            self._settle()
            return self._live_state()

    def _live_state(self) -> Dict[str, Dict[str, np.ndarray]]:
        out: Dict[str, Dict[str, np.ndarray]] = {}
        for i, path in enumerate(self._paths):
            entry = {name: lst[i] for name, lst in self._state.items() if lst[i] is not None}
            if entry:
                out[path] = entry
        return out

    # ---- checkpoints -----------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """Plain data (numbers, strings, tuples, NumPy arrays; copies) that
        [`load_state_dict`][fastadapt.Optimizer.load_state_dict] turns back into exactly this optimizer state.
        Taken between steps: a step running in another thread is waited for,
        so the snapshot never mixes buffers of two steps."""
        return self._snapshot(lambda: None)[0]

    def _snapshot(self, also: Callable[[], Any]) -> Tuple[Dict[str, Any], Any]:
        """[`state_dict`][fastadapt.Optimizer.state_dict] and ``also()`` (e.g. copies of the params) taken
        under one hold of the lock, so both belong to the same step."""
        with self._busy.waiting():
            self._settle()
            live = self._live_state() if self._tree is not None else (self._pending_state or {})
            sd = {
                "algorithm": self.algorithm,
                "step": self.step_count,
                "skipped_steps": self.skipped_steps,
                "total_nonfinite_count": self.total_nonfinite_count,
                "hyperparameters": dict(self._hyper),
                "state": {k: {n: a.copy() for n, a in v.items()} for k, v in live.items()},
            }
            if self._overrides:
                # Each override's current values (a schedule may have moved
                # them, see set_group_values), in order; the patterns are the
                # constructor's (a callable cannot be saved), as torch's
                # param_groups keep their hyperparameters but not their params.
                sd["overrides"] = [dict(values) for _, values in self._overrides]
            return sd, also()

    def load_state_dict(self, state_dict: Mapping[str, Any], params: Any = None) -> None:
        """Restore a [`state_dict`][fastadapt.Optimizer.state_dict]. Everything is checked first; on any
        error the optimizer is left exactly as it was.

        Parameters
        ----------
        state_dict
            what [`state_dict`][fastadapt.Optimizer.state_dict] returned (or a checkpoint of it).
        params
            the parameters this optimizer will update. When given, the state is checked against them
            now (keys, shapes, dtypes), so a state_dict saved for other parameters fails here rather
            than at the first update. An optimizer that has stepped always checks against the
            parameters it is bound to.
        """
        with self._busy:
            self._settle()
            self._load_state_dict(state_dict, params)

    def _load_state_dict(self, state_dict: Mapping[str, Any], params: Any) -> None:
        sd = state_dict
        if not isinstance(sd, Mapping):
            raise TypeError(f"state_dict must be a dict, got {type(sd).__name__}")
        expected = {"algorithm", "step", "skipped_steps", "total_nonfinite_count", "hyperparameters", "state"}
        if set(sd) - {"overrides"} != expected:
            missing, extra = expected - set(sd), set(sd) - expected - {"overrides"}
            raise ValueError(f"state_dict keys differ: missing {sorted(missing)}, unexpected "
                             f"{sorted(map(str, extra))}; pass what {type(self).__name__}.state_dict() returned")
        if sd["algorithm"] != self.algorithm:
            raise ValueError(f"state_dict is for {sd['algorithm']!r}, this optimizer is {self.algorithm!r}; "
                             f"load it into fa.make_optimizer({sd['algorithm']!r})")
        counts = {}
        for name in ("step", "skipped_steps", "total_nonfinite_count"):
            v = sd[name]
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"state_dict[{name!r}] must be an integer >= 0, got {type(v).__name__} {v!r}")
            if not 0 <= v <= _MAX_COUNT:
                raise ValueError(f"state_dict[{name!r}] must be an integer >= 0 and <= 2**62, got {v!r}")
            counts[name] = int(v)
        hyper_in = sd["hyperparameters"]
        if isinstance(hyper_in, Mapping) and set(hyper_in) == set(self._hyper) - set(_lowp.LOWP_HYPER):
            # a checkpoint from before low precision existed: its defaults
            hyper_in = dict(hyper_in, **_lowp.LOWP_DEFAULTS)
        if not isinstance(hyper_in, Mapping) or set(hyper_in) != set(self._hyper):
            got = sorted(map(str, hyper_in)) if isinstance(hyper_in, Mapping) else hyper_in
            raise ValueError(f"state_dict['hyperparameters'] must have exactly the keys "
                             f"{sorted(self._hyper)}, got {got}")
        hyper = {name: getattr(type(self), name).validate(f"state_dict['hyperparameters'][{name!r}]", v)
                 for name, v in hyper_in.items()}
        self._check_consistency(hyper, where="state_dict['hyperparameters']: ")
        state = sd["state"]
        if not isinstance(state, Mapping):
            raise TypeError(f"state_dict['state'] must be a dict of key -> {{buffer: array}}, got "
                            f"{type(state).__name__}")
        valid_names = set(self._state_names())
        for key, entry in state.items():
            if not isinstance(key, str):
                raise TypeError(f"state_dict['state'] keys must be key-path strings, got {type(key).__name__} "
                                f"{key!r}")
            if not isinstance(entry, Mapping):
                raise TypeError(f"state_dict['state'][{key!r}] must be a dict of buffers, got {type(entry).__name__}")
            for name, arr in entry.items():
                if name not in valid_names:
                    raise ValueError(f"state_dict['state'][{key!r}] has unknown buffer {name!r} "
                                     f"(expected one of {sorted(valid_names)})")
                if name in self._scalar_names_carried():
                    if type(arr) is not np.ndarray or arr.dtype != np.float64 or arr.shape != ():
                        raise TypeError(f"state_dict['state'][{key!r}][{name!r}] must be a float64 NumPy array "
                                        f"of shape () (a scalar the rule carries), got {arr!r}")
                elif type(arr) is not np.ndarray or not (arr.dtype in (np.float32, np.float64, np.uint8) or
                                                          _lowp.is_bfloat16(arr.dtype)):
                    raise TypeError(f"state_dict['state'][{key!r}][{name!r}] must be a float32/float64 (or "
                                    f"bfloat16, or uint8 8-bit codes) NumPy array, got {type(arr).__name__}"
                                    f"{' ' + arr.dtype.name if isinstance(arr, np.ndarray) else ''}")
        if params is not None:
            binding = self._binding(params)
            if self._tree is not None and binding["_paths"] != self._paths:
                raise ValueError(f"params differ from the parameters this optimizer is bound to (keys "
                                 f"{', '.join(self._paths[:4])}...); {_STRUCTURE_FIX}")
            self._check_params(binding, params)
        # The loaded hyperparameters decide what the state must hold (master weights).
        loaded_overrides = self._loaded_overrides(sd["overrides"], hyper) if "overrides" in sd else self._overrides
        if params is not None:
            self._check_state_against(state, counts["step"], binding, (hyper, loaded_overrides))
        new: Dict[str, Any] = {}
        if self._tree is not None:
            current = {k: getattr(self, k) for k in ("_paths", "_param_meta", "_group_members", "_group_masks")}
            self._check_state_against(state, counts["step"], current, (hyper, loaded_overrides))
            new.update(self._installed(state, current))
        else:
            new.update(_pending_state={k: {n: np.array(a, copy=True, order="C") for n, a in v.items()}
                                       for k, v in state.items()},
                       _pending_step=counts["step"])
        fresh_counts = self._counts.copy()
        fresh_counts[:3] = (counts["step"], counts["skipped_steps"], counts["total_nonfinite_count"])
        if "overrides" in sd:
            new["_overrides"] = loaded_overrides
        new.update(_hyper=hyper, _counts=fresh_counts)
        self.__dict__.update(new)  # one C call: the load commits whole

    def _loaded_overrides(self, saved: Any, hyper: Dict[str, Any]) -> List[Tuple[Pattern, Dict[str, Any]]]:
        """This optimizer's override patterns with the saved values; the saved
        entries must set the same hyperparameters, in the same order."""
        mine = self._overrides
        if not isinstance(saved, list) or len(saved) != len(mine) or not all(
                isinstance(v, Mapping) and set(v) == set(m) for v, (_, m) in zip(saved, mine)):
            got = [sorted(v) if isinstance(v, Mapping) else v for v in saved] if isinstance(saved, list) else saved
            raise ValueError(f"state_dict['overrides'] must give values for this optimizer's overrides "
                             f"{[sorted(m) for _, m in mine]}, got {got}; build the optimizer with the same "
                             f"overrides")
        out = []
        for i, (values, (pattern, _)) in enumerate(zip(saved, mine)):
            checked = {name: getattr(type(self), name).validate(f"state_dict['overrides'][{i}][{name!r}]", v)
                       for name, v in values.items()}
            self._check_group(hyper, checked, where=f"state_dict['overrides'][{i}]: ")
            out.append((pattern, checked))
        return out

    @staticmethod
    def _check_params(binding: Mapping[str, Any], params: Any) -> None:
        """Every param of a binding is a float32/float64 NumPy array."""
        meta = binding["_param_meta"]
        for path in binding["_paths"]:
            shape_dtype = meta.get(path)
            if shape_dtype is None or not _lowp.is_param_dtype(shape_dtype[1]):
                leaf = dict(zip(binding["_paths"], binding["_tree"].flatten(params, "params", "")))[path]
                got = f"{leaf.dtype} array" if isinstance(leaf, np.ndarray) else type(leaf).__name__
                hint = "" if isinstance(leaf, np.ndarray) else "; " + not_array(leaf, "params", True)
                kinds = "float32, float64, float16 or bfloat16" if isinstance(leaf, np.ndarray) else "float32 or float64"
                raise TypeError(f"params[{path!r}]: expected a {kinds} NumPy array, got {got}{hint}")

    def _check_state_against(self, state: Mapping[str, Any], step: int, binding: Mapping[str, Any],
                             settings: Optional[Tuple[Dict[str, Any], List[Tuple[Pattern, Dict[str, Any]]]]] = None
                             ) -> None:
        """Check loaded state against bound parameters (keys, shapes, dtypes),
        under ``settings`` (the loaded hyperparameters and overrides; default:
        the optimizer's own)."""
        all_paths = binding["_paths"]
        param_meta = binding["_param_meta"]
        group_members = binding["_group_members"]
        hyper, overrides = settings if settings is not None else (self._hyper, self._overrides)
        if step > 0:
            # master_weights=True keeps a float32 copy of every bfloat16/float16 param that has
            # stepped: without it the resume would start from the rounded param (not bit-exact).
            for members, mask in zip(group_members, binding["_group_masks"]):
                if not self._merged_hyper(hyper, overrides, mask)["master_weights"]:
                    continue
                for i in members:
                    key = all_paths[i]
                    meta, entry = param_meta.get(key), state.get(key, {})
                    if meta is not None and _lowp.is_low(meta[1]) and self._MASTER not in entry and any(
                            name in entry for name in self._state_slots):
                        raise ValueError(f"state_dict['state'][{key!r}] lacks {self._MASTER!r}, the float32 copy "
                                         f"master_weights=True keeps of a {np.dtype(meta[1]).name} param; pass the "
                                         f"complete state_dict")
        paths = set(all_paths)
        for key in state:
            if key not in paths:
                raise ValueError(f"state_dict['state'] has key {key!r}, which the parameters do not have; "
                                 f"load a state_dict saved for these parameters (or call opt.reset() and "
                                 f"train from scratch)")
        if step > 0:
            for key in all_paths:
                shape = param_meta.get(key, (None,))[0]
                if shape is None:
                    continue
                # The buffers every step creates, whatever the flags.
                always = self._stepper.slot_mask(0, len(shape))
                needed = ([n for s, n in enumerate(self._state_slots) if always >> s & 1] +
                          list(self._scalar_names_carried()))
                for name in needed:
                    if name not in state.get(key, {}):
                        raise ValueError(f"state_dict['state'][{key!r}] lacks buffer {name!r}, which every "
                                         f"{type(self).__name__} step creates")
        for key, entry in state.items():
            shape, dtype = param_meta.get(key, (None, None))
            for name, arr in entry.items():
                if shape is None or name in self._scalar_names_carried():
                    continue  # a scalar, or that param is not an array (the update reports it)
                where = f"state_dict['state'][{key!r}][{name!r}]"
                if name in self._absmax_names or name == self._MASTER:
                    self._check_lowp_entry(where, key, name, arr, entry, shape, dtype)
                    continue
                compute = _lowp.compute_dtype(dtype)
                if arr.dtype != compute and not (compute == np.float32 and self._lowp_state and (
                        arr.dtype == np.uint8 or _lowp.is_bfloat16(arr.dtype))):
                    whose = (f"the dtype of params[{key!r}]" if compute == dtype else
                             f"the compute dtype of params[{key!r}], {np.dtype(dtype).name}")
                    raise TypeError(f"{where}: expected {compute.name} ({whose}), got {arr.dtype.name}; the "
                                    f"state_dict belongs to other parameters")
                if arr.dtype == np.uint8 and f"{name}_absmax" not in entry:
                    raise ValueError(f"{where}: 8-bit state without its block scales "
                                     f"{name + '_absmax'!r}; pass the complete state_dict")
                expected = self._slot_shape(self._state_slots.index(name), shape)
                if arr.shape != expected:
                    what = (f"the shape of params[{key!r}]" if expected == tuple(shape) else
                            f"what the rule keeps for params[{key!r}] of shape {tuple(shape)}")
                    raise ValueError(f"{where}: expected shape {expected} ({what}), got "
                                     f"{arr.shape}; the state_dict belongs to other parameters")
        names = list(self._state_names())
        for members in group_members:
            for name in self._carried:
                values = {float(state[all_paths[i]][name]) for i in members if name in state.get(all_paths[i], {})}
                if len(values) > 1:
                    raise ValueError(f"state_dict['state'] holds different {name!r} values ({sorted(values)}) for "
                                     f"keys with the same hyperparameters; {type(self).__name__} carries one per "
                                     f"group: pass a state_dict it saved")
            for name in names:
                # Among the keys that can hold this buffer at all: a rule's
                # buffers may depend on the tensor's ndim (Adafactor factors
                # the statistics of matrices only).
                able = members if name in self._scalar_names_carried() else [
                    i for i in members if self._may_hold(name, param_meta.get(all_paths[i]))]
                have = [i for i in able if name in state.get(all_paths[i], {})]
                if have and len(have) != len(able):
                    lacking = next(all_paths[i] for i in able if i not in have)
                    raise ValueError(f"state_dict['state'][{lacking!r}] lacks buffer {name!r}, which keys with "
                                     f"the same hyperparameters have (e.g. {all_paths[have[0]]!r}); pass a "
                                     f"complete state_dict")

    def _check_lowp_entry(self, where: str, key: str, name: str, arr: np.ndarray, entry: Mapping[str, Any],
                          shape: Tuple[int, ...], dtype: Any) -> None:
        """A loaded block-scale array or master-weight copy."""
        if name == self._MASTER:
            if not _lowp.is_low(dtype):
                raise ValueError(f"{where}: master weights are kept for bfloat16/float16 params, params[{key!r}] "
                                 f"is {np.dtype(dtype).name}; the state_dict belongs to other parameters")
            want_shape, what = tuple(shape), f"the shape of params[{key!r}]"
        else:
            slot = name[:-len("_absmax")]
            if not (isinstance(entry.get(slot), np.ndarray) and entry[slot].dtype == np.uint8):
                raise ValueError(f"{where}: block scales of a buffer that is not 8-bit ({slot!r}); pass the "
                                 f"state_dict the optimizer saved")
            want_shape, what = (_lowp.blocks(int(np.prod(shape))),), f"one per {_core.QBLOCK} elements"
        if arr.dtype != np.float32:
            raise TypeError(f"{where}: expected float32, got {arr.dtype.name}; the state_dict belongs to other "
                            f"parameters")
        if arr.shape != want_shape:
            raise ValueError(f"{where}: expected shape {want_shape} ({what}), got {arr.shape}; the state_dict "
                             f"belongs to other parameters")

    def _may_hold(self, name: str, shape_dtype: Optional[Tuple[Tuple[int, ...], Any]]) -> bool:
        """Whether a parameter of this shape uses buffer ``name`` under some flags."""
        if shape_dtype is None:
            return True
        if name == self._MASTER or name in self._absmax_names:
            return False  # (optional entries: present for some keys only)
        return bool(self._stepper.slot_mask(0xFFFFFFFF, len(shape_dtype[0])) >> self._state_slots.index(name) & 1)

    def _installed(self, state: Mapping[str, Any], binding: Mapping[str, Any]) -> Dict[str, Any]:
        """New state lists holding copies of ``state`` (for one dict update)."""
        paths = binding["_paths"]
        lists = {name: [None if (a := state.get(path, {}).get(name)) is None else np.array(a, copy=True, order="C")
                        for path in paths] for name in self._state_names()}
        # Tensor scalars live in the stepper's table; the state holds views.
        table = np.zeros((len(paths), _core.MAX_TENSOR_SCALARS))
        for j, name in enumerate(self._tensor_scalar_names):
            lst = lists[name]
            for i, value in enumerate(lst):
                if value is not None:
                    table[i, j] = value
                    lst[i] = self._tensor_scalar_view(table, i, j)
        return dict(_state=lists, _slot_lists=[lists[name] for name in self._state_slots],
                    _scale_lists=[lists[name] for name in self._absmax_names], _lowp_cache=None,
                    _group_ready=[set() for _ in binding["_group_members"]], _tensor_scalars=table)

    # ---- display ---------------------------------------------------------
    def __repr__(self) -> str:
        defaults = _lowp.LOWP_DEFAULTS
        parts = [f"{k}={v!r}" for k, v in self._hyper.items() if not (k in defaults and v == defaults[k])]
        if self._overrides:
            shown = {(p if isinstance(p, str) else getattr(p, "__name__", repr(p))): v for p, v in self._overrides}
            parts.append(f"overrides={shown!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    # ---- per algorithm -------------------------------------------------------
    def _scalars_for(self, hp: Dict[str, Any], t: int) -> Dict[str, float]:
        raise NotImplementedError

    def _flags_for(self, hp: Dict[str, Any]) -> int:
        raise NotImplementedError


# Every optimizer class with an `algorithm` name, filled as rule modules are
# imported (Optimizer.__init_subclass__).
OPTIMIZERS: Dict[str, Type[Optimizer]] = {}
