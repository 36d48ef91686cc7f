"""fastadapt's rules as a ``torch.optim.Optimizer`` for CPU tensors.

    from fastadapt.torch import FusedOptimizer
    opt = FusedOptimizer(model.parameters(), rule="adam", lr=1e-3)
    loss.backward(); opt.step(); opt.zero_grad()

The step runs fastadapt's fused C++ kernel (one call for all tensors) on
NumPy views of the parameters and gradients: ``p.detach().numpy()`` shares
the tensor's memory, so nothing is copied and the parameters change in place.

torch is not a dependency of fastadapt: ``import fastadapt`` never imports
it; this module does, and says so when it is missing.

Views kept from step to step. The parameters' NumPy views (and the fused
optimizers bound to them) are made once and reused while every parameter
keeps its memory (``data_ptr()``, checked each step; ``p.data = ...``
rebuilds them). The gradients' views are reused while the gradients are
the same tensors at the same addresses as in the last steps (gradients
kept by ``zero_grad(set_to_none=False)``, or set once); gradients that are
new tensors every step (``zero_grad()``'s default, then ``backward()``)
are checked each step (dense, contiguous, not a lazily negated view, the
parameter's dtype and size) and the kernel reads them at their addresses
(``Optimizer._update_at``; a gradient that fails a check is read through a
view or a copy of its values, or refused with an error that names it); no
reference to them outlives the step.

Params without a gradient. torch skips a parameter whose ``.grad`` is None
(no update, no weight decay, its state and its step count stay). A fused
fastadapt optimizer binds to a fixed set of arrays with ONE step count, so
the step partitions the parameters that have gradients by their step count
(a "cohort") and runs one fused call per cohort. When every parameter has a
gradient in every step (the usual case) that is one cohort and one call, and
the fused optimizers are reused from step to step. When the set of
parameters with gradients changes, the fused optimizers are rebuilt from the
saved state (a copy of the state of the parameters that step: correct, but
slower for that step). Consequences: ``max_grad_norm`` clips, and
``nonfinite`` counts and skips, per cohort (the global norm is over the
parameters of one cohort); with several cohorts a ``nonfinite="raise"``
error can leave earlier cohorts stepped.

Learning-rate-free rules (Prodigy, D-Adaptation, DoG, hypergradient,
Schedule-Free) learn from all their tensors together (one ``d``, one
schedule), which cohorts would split: for them every parameter that has
stepped must have a gradient in every step (a clear ValueError, before any
change, says which does not). LDoG, whose step sizes are per tensor, is not
affected.

Hyperparameters. The rule's per-key hyperparameters (``Optimizer._per_key``:
Adam's lr, betas, eps, weight_decay, amsgrad, maximize) may differ between
param groups: each group becomes a fastadapt override for its tensors. The
others (``max_grad_norm``, ``nonfinite``, ``track_grad_norm`` and rule-wide
ones such as Prodigy's ``d0``) must be equal in every group. Values set
through ``param_groups[i][name]`` (by hand or by a torch.optim.lr_scheduler)
are checked and applied at the next step; keys the rule does not have
(``initial_lr``, a name) are ignored, as torch ignores them.

State. ``opt.state[p]`` holds torch tensors that are views of the fused
optimizer's buffers (``exp_avg``, ``exp_avg_sq``, ... as fastadapt and torch
name them) and ``step`` (a float32 tensor, as torch.optim.Adam keeps it);
values a rule carries as float64 scalars (NAdam's ``mu_product``, Prodigy's
``d``) are float64 0-d tensors. ``state_dict()`` is torch's format: state
per parameter index, ``param_groups`` with their hyperparameters (and, for
Schedule-Free, ``train_mode``, as the schedulefree package keeps it); as
with torch it holds references (copy.deepcopy or torch.save it).
"""

from __future__ import annotations

try:
    import torch
except ImportError as _err:  # pragma: no cover - exercised in a subprocess
    raise ImportError("fastadapt.torch needs PyTorch (pip install torch); the rest of fastadapt works "
                      "without it") from _err

import weakref
from itertools import chain, repeat
from operator import attrgetter, is_, is_not
from typing import Any, Callable, Dict, List, Optional, Tuple

from torch.autograd.graph import increment_version

from . import _core
from .optim import OPTIMIZERS, make_optimizer

__all__ = ["FusedOptimizer"]

_TORCH_ONLY = ("foreach", "fused", "capturable", "differentiable")
_GRAD, _REQUIRES_GRAD = attrgetter("grad"), attrgetter("requires_grad")
_SAMPLE = 8   # gradients looked at to tell whether they persist between steps
# lr-free rules whose learned values are per tensor: cohorts do not split them
_PER_TENSOR_LR_FREE = ("ldog",)
# what pickling (copy.deepcopy, torch.save of the optimizer) keeps besides torch's fields
_CONFIG = ("rule", "_cls", "_names", "_per_key", "_wide", "_scalar_names", "_state_names", "_coupled",
           "_two_points", "_by_address")
_contiguous = torch.Tensor.is_contiguous
_data_ptr = torch.Tensor.data_ptr
_numel = torch.Tensor.numel
_is_neg = torch.Tensor.is_neg
_DTYPE = attrgetter("dtype")


def _where(gi: int, j: int) -> str:
    return f"param_groups[{gi}]['params'][{j}]"


# The low-precision options and the values that leave them off (see FusedOptimizer.__init__).
_LOWP_OPTIONS: Dict[str, Tuple[Any, ...]] = {"state_dtype": (None, "float32"), "state_bits": (None, 32),
                                             "master_weights": (False,), "stochastic_rounding": (False,)}


def _refuse_lowp(name: str, value: Any, shown: str) -> None:
    """Low-precision state and params are for the NumPy optimizers: the adapter's state is torch tensors of
    the params' dtype (state_dict, state[p]), and its params are float32/float64."""
    if name in _LOWP_OPTIONS and value not in _LOWP_OPTIONS[name]:
        raise ValueError(f"{shown}: FusedOptimizer keeps its state as torch tensors of the params' "
                         f"dtype; low-precision state and params are for fastadapt's NumPy optimizers "
                         f"(fa.Adam({name}=...)); drop it")


def _check_param(p: Any, where: str) -> None:
    if not isinstance(p, torch.Tensor):
        raise TypeError(f"{where}: expected a torch.Tensor, got {type(p).__name__}")
    if p.device.type != "cpu":
        raise TypeError(f"{where} is on {p.device}: FusedOptimizer runs fastadapt's CPU kernels on CPU "
                        f"tensors; use torch.optim's fused optimizers for {p.device.type} tensors")
    if p.layout != torch.strided:
        raise TypeError(f"{where} is a {p.layout} tensor: FusedOptimizer updates dense (strided) tensors")
    if p.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{where} is {p.dtype}: FusedOptimizer updates float32 and float64 tensors; "
                        f"convert the model (model.float() or model.double())")
    if not p.is_contiguous():
        raise ValueError(f"{where} is not contiguous (strides {p.stride()} for shape {tuple(p.shape)}): the "
                         f"fused step updates the tensor's memory in place as one block; make it contiguous "
                         f"before building the optimizer (p.data = p.data.contiguous())")


def _plain(v: Any) -> Any:
    """A one-element tensor (torch allows lr as a Tensor) as a Python number."""
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        return v.item()
    return v


class _Cohort:
    """One fused fastadapt optimizer over parameters that share a step count."""

    __slots__ = ("engine", "members", "groups", "params", "indices", "spans")

    def __init__(self, engine, members, groups, params):
        self.engine = engine        # the fastadapt Optimizer
        self.members = members      # [(group index, flat index, param)] in the engine's order
        self.groups = groups        # the torch group index of each engine override, in order
        self.params = params        # nested lists of NumPy views (one list per override)
        # flat indices per override, and their spans in the members' order
        self.indices = [[i for g, i, _ in members if g == gi] for gi in groups]
        bounds = [0]
        for idx in self.indices:
            bounds.append(bounds[-1] + len(idx))
        self.spans = list(zip(bounds[:-1], bounds[1:]))


class _Grads:
    """The gradients of one step: which parameters have one, and their views."""

    __slots__ = ("grads", "active", "params", "tensors", "ptrs", "views", "tree", "pptrs", "direct")

    def __init__(self, grads, active, params, tensors, ptrs, views):
        self.grads = grads          # p.grad of every parameter (None where it has none), flat order
        self.active = active        # flat indices of the parameters with a gradient
        self.params = params        # those parameters
        self.tensors = tensors      # their gradients
        self.ptrs = ptrs            # the gradients' data_ptr(), checked (None: views made by _checked_views)
        self.views = views          # the gradients' NumPy views (None until made, after the params' views)
        self.direct = ptrs is not None  # their memory holds their values, checked: readable by address
        self.pptrs = None           # the params' data_ptr() when the gradients were checked
        self.tree = None            # the single cohort's gradient tree, once made


class FusedOptimizer(torch.optim.Optimizer):
    """A ``torch.optim.Optimizer`` that runs a fastadapt rule's fused C++ step
    on CPU tensors.

    Each ``step()`` updates every parameter that has a gradient with one
    call of fastadapt's C++ kernel, working in place on NumPy views of the
    tensors' memory. Param groups, ``zero_grad``, closures, lr schedulers,
    ``state_dict``/``load_state_dict`` and step hooks behave as for a
    ``torch.optim`` optimizer.

    Parameters
    ----------
    params : iterable
        Tensors, or dicts of param groups (``{"params": [...], "lr": ...}``),
        as for any torch optimizer. The tensors must be on the CPU, dense,
        float32 or float64 and contiguous.
    rule : str, default "adam"
        A fastadapt rule name (``fastadapt.optim.OPTIMIZERS``): "adam",
        "adamw", "sgd", "rmsprop", "adagrad", "nadam", "radam", "adamax",
        "adadelta", "lion", "lamb", "prodigy", "dadapt-adam", "dog",
        "schedulefree-adamw", ...
    **hyperparameters
        The rule's hyperparameters, as ``fastadapt.make_optimizer(rule, ...)``
        takes them (unset ones: the rule's defaults, which for torch's rules
        are torch's). A param group may set its own value of any per-key
        hyperparameter (Adam: lr, betas, eps, weight_decay, amsgrad,
        maximize); the rule-wide ones (``max_grad_norm``, ``nonfinite``,
        Prodigy's ``d0``, ...) are set here only.

    Attributes
    ----------
    rule : str
        The fastadapt rule's name.

    Raises
    ------
    TypeError
        For an unknown hyperparameter, a torch-only option (``foreach``,
        ``fused``, ``capturable``, ``differentiable``), or a tensor that is
        not on the CPU, not dense, or not float32/float64.
    ValueError
        For an unknown rule, an invalid value, a non-contiguous tensor, or a
        rule-wide hyperparameter set in one param group.

    Notes
    -----
    - A parameter whose ``.grad`` is None is skipped, as torch does (no
      update, its state and step count stay). Parameters with different
      step counts are stepped by one fused call each, so ``max_grad_norm``
      and ``nonfinite`` act per such set.
    - The learning-rate-free rules (Prodigy, D-Adaptation, DoG,
      hypergradient, Schedule-Free) learn one step size from all their
      tensors: for them a parameter that has stepped must have a gradient
      in every step (a ValueError says which does not). LDoG's step sizes
      are per tensor, and it skips as torch does.
    - Values set in ``param_groups`` (by hand or by a
      ``torch.optim.lr_scheduler``) are checked and used from the next step.
    - ``state[p]`` holds views of the fused buffers under torch's names
      (``exp_avg``, ``exp_avg_sq``, ``momentum_buffer``, ...) and ``step``
      as a float32 tensor; scalars a rule carries (NAdam's ``mu_product``,
      Prodigy's ``d``) are float64 0-d tensors.
    - The parameters' NumPy views are made once and reused while each
      parameter keeps its memory (``data_ptr()``, checked every step); the
      gradients' views are reused while the gradients are the same tensors
      from step to step (``zero_grad(set_to_none=False)``). New gradient
      tensors are checked (dense, contiguous, the parameter's dtype and
      size) and read by the kernel at their address, with no view made.

    Examples
    --------
    >>> import torch
    >>> from fastadapt.torch import FusedOptimizer
    >>> model = torch.nn.Linear(4, 1)
    >>> opt = FusedOptimizer(model.parameters(), rule="adam", lr=1e-2)
    >>> loss = model(torch.randn(8, 4)).pow(2).mean()
    >>> loss.backward()
    >>> opt.step()
    >>> opt.zero_grad()
    """

    def __init__(self, params: Any, rule: str = "adam", **hyperparameters: Any):
        if not isinstance(rule, str):
            raise TypeError(f"rule must be a fastadapt rule name (a string, e.g. 'adam'), got "
                            f"{type(rule).__name__}")
        cls = OPTIMIZERS.get(rule.lower())
        if cls is None:
            raise ValueError(f"unknown rule {rule!r}; expected one of {', '.join(sorted(OPTIMIZERS))}")
        # (every registered rule's constructor has defaults for all its arguments; the base class's, which
        # is all that OPTIMIZERS' type promises, has none)
        names = cls().hyperparameters  # type: ignore[call-arg]
        for name, value in hyperparameters.items():
            _refuse_lowp(name, value, f"{name}={value!r}")
        hyperparameters = {k: v for k, v in hyperparameters.items() if k != "state_bits"}
        for name in hyperparameters:
            if name in _TORCH_ONLY:
                raise TypeError(f"FusedOptimizer has no {name!r} option: its step is always one fused C++ "
                                f"call on CPU; drop {name}=...")
            if name not in names:
                raise TypeError(f"rule {rule!r} has no hyperparameter {name!r}; it has {', '.join(names)}")
        template = make_optimizer(rule, **hyperparameters)  # checks the values (TypeError/ValueError)
        self.rule = cls.algorithm
        self._cls = cls
        self._names = tuple(names)  # the rule's (self.defaults also gets torch's "differentiable")
        self._per_key = tuple(cls._per_key)
        self._wide = tuple(n for n in names if n not in cls._per_key)
        self._scalar_names = tuple(cls._carried) + tuple(cls._tensor_scalar_names)
        self._state_names = tuple(cls._state_slots) + self._scalar_names
        # learned values shared by all tensors: one cohort only (see the module docstring)
        self._coupled = bool(cls.lr_free) and cls.algorithm not in _PER_TENSOR_LR_FREE
        # two points (Schedule-Free): eval()/train() switch them, param groups carry "train_mode"
        self._two_points = isinstance(getattr(cls, "train_mode", None), property)
        # the rule's step is one C++ call that can read the gradients by address
        self._by_address = template._takes_grad_addresses()
        self._reset_engines()
        super().__init__(params, template.hyperparameters)

    # ---- bookkeeping ---------------------------------------------------------
    def _reset_engines(self) -> None:
        self._cohorts: List[_Cohort] = []
        self._active: Optional[Tuple[int, ...]] = None   # flat indices the cohorts cover
        self._pptrs: Optional[List[int]] = None          # their params' data_ptr() when viewed
        self._pviews: List[Any] = []                     # their params' NumPy views, in that order
        self._pmeta: Optional[Tuple[List[int], list, List[int]]] = None  # params' (data_ptr, dtype, numel)
        self._flat: Optional[List[Tuple[int, int, Any]]] = None
        self._plist: List[Any] = []
        self._seen: List[Dict[str, Tuple[Any, Any]]] = []  # per group: name -> (raw, validated)
        self._drop_grads()
        self._dirty = False

    def _drop_grads(self) -> None:
        """Forget the gradients' views (and any reference to the gradients)."""
        self._grads: Optional[_Grads] = None     # views reused while the gradients persist
        self._gweak: Optional[Tuple[Tuple[int, ...], list]] = None  # the last step's gradients, weakly

    @property
    def state(self):  # type: ignore[override]
        """The per-parameter state, as ``torch.optim.Optimizer.state``.

        Returns
        -------
        collections.defaultdict
            ``{param: {"step": float32 tensor, buffer name: tensor, ...}}``:
            the buffers are views of the fused kernel's (writing them changes
            the optimizer); scalars a rule carries are float64 0-d tensors.
            Parameters that have not stepped have no entry.
        """
        # The fused optimizers own the buffers; the torch state is refreshed
        # from them when read after a step (O(params), never inside a step).
        d = self.__dict__
        if d.get("_dirty"):
            d["_dirty"] = False
            self._sync_state()
        return d["state"]

    @state.setter
    def state(self, value) -> None:
        self.__dict__["state"] = value

    def __setstate__(self, state: Dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_by_address", False)  # (pickled by an older version: views, as it did)
        if "_cohorts" not in self.__dict__:  # unpickled: the fused optimizers rebuild from the state
            self._reset_engines()

    def __getstate__(self) -> Dict[str, Any]:
        # torch's (defaults, the synced state, param_groups) and the rule; the
        # NumPy views and fused optimizers are rebuilt after unpickling
        out = dict(super().__getstate__())
        out.update({name: self.__dict__[name] for name in _CONFIG})
        return out

    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        """Add a param group (as ``torch.optim.Optimizer.add_param_group``).

        Parameters
        ----------
        param_group : dict
            ``{"params": tensors, name: value, ...}``: the tensors and the
            group's own values of per-key hyperparameters (the others come
            from the constructor).

        Raises
        ------
        TypeError, ValueError
            For a tensor the step cannot update (see ``FusedOptimizer``),
            an invalid value, or a rule-wide hyperparameter that differs from
            the constructor's.
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"a param group must be a dict, got {type(param_group).__name__}")
        gi = len(self.param_groups)
        params = param_group.get("params")
        plist = [params] if isinstance(params, torch.Tensor) else (list(params) if params is not None else [])
        for j, p in enumerate(plist):
            _check_param(p, _where(gi, j))
        for name, v in param_group.items():
            if name not in self._names:
                continue
            checked = self._validate(name, v, f"param_groups[{gi}][{name!r}]")
            if name in self._wide and checked != self.defaults[name]:
                raise ValueError(f"param_groups[{gi}][{name!r}] = {v!r}: {name!r} applies to all tensors at "
                                 f"once in rule {self.rule!r} (it is not per group); set it in "
                                 f"FusedOptimizer(..., {name}=...)")
        group = dict(param_group, params=plist)
        if self._two_points:  # as schedulefree: each group says whether its params hold y
            group.setdefault("train_mode", self._train_mode())
        super().add_param_group(group)
        self._flat = None  # the structure changed: rebuild at the next step
        self._active = None
        self._drop_grads()

    def _validate(self, name: str, value: Any, where: str) -> Any:
        checked = getattr(self._cls, name).validate(where, _plain(value))
        _refuse_lowp(name, checked, f"{where} = {value!r}")
        return checked

    def _train_mode(self) -> bool:
        groups = self.__dict__.get("param_groups") or [{}]
        return bool(groups[0].get("train_mode", True))

    # ---- the step ------------------------------------------------------------
    def step(self, closure: Optional[Callable[[], Any]] = None) -> Any:  # type: ignore[override]
        """One fused step of every parameter that has a gradient.

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model and returns the loss (as for
            ``torch.optim.LBFGS``); called first, with grad enabled, and its
            gradients are the ones used.

        Returns
        -------
        object
            The closure's loss, or None without a closure.

        Raises
        ------
        RuntimeError
            For a Schedule-Free rule in eval mode (call ``train()`` first).
        TypeError, ValueError
            For a sparse or non-contiguous gradient, an invalid value set in
            ``param_groups``, or (learning-rate-free rules) a parameter that
            has stepped but has no gradient. Nothing is changed then.
        FloatingPointError
            With ``nonfinite="raise"``, for a NaN or Inf gradient.
        """
        if self._two_points and not self._train_mode():
            raise RuntimeError(f"FusedOptimizer(rule={self.rule!r}).step() in eval mode: the parameters hold "
                               f"the averaged point x; call optimizer.train() first (and optimizer.eval() "
                               f"again to evaluate); nothing was updated")
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._step()
        return loss

    def _flat_params(self) -> List[Tuple[int, int, Any]]:
        flat = self._flat
        # Every tensor compared by identity, not just counted: a parameter
        # swapped into a group in place (group["params"][0] = new) must be
        # stepped, as torch's optimizers do, with fresh state of its own. The
        # check is one C-level pass (~20 us for 1000 tensors).
        current = list(chain.from_iterable(g["params"] for g in self.param_groups))
        if flat is None or len(current) != len(self._plist) or not all(map(is_, current, self._plist)):
            flat = [(gi, j, p) for gi, g in enumerate(self.param_groups) for j, p in enumerate(g["params"])]
            self._flat, self._active, self._all = flat, None, tuple(range(len(flat)))
            self._plist = [p for _, _, p in flat]
            self._drop_grads()
        return flat

    def _step(self) -> None:
        # The per-tensor Python work is a few C-level maps over cached lists:
        # with 1000 small tensors it, not the kernel, is most of the step.
        flat = self._flat_params()
        grads = [p.grad for p in self._plist]
        gs = self._grads
        if gs is not None and all(map(is_, grads, gs.grads)) and list(map(_data_ptr, gs.tensors)) == gs.ptrs:
            pptrs = list(map(_data_ptr, gs.params))
        else:
            gs = self._view_grads(flat, grads)
            if gs is None:
                return  # as torch: nothing has a gradient, nothing changes (not a step)
            pptrs = gs.pptrs
        active, params = gs.active, gs.params
        if (active is not self._active and active != self._active) or pptrs != self._pptrs:
            self._rebuild(flat, active)
            gs.tree = None
        self._apply_hyperparameters()
        cohorts = self._cohorts
        self._dirty = True
        if gs.direct and self._by_address and gs is not self._grads:
            # New gradients, checked, go to the kernel by address: no NumPy
            # view made per gradient per step (the tensors stay alive for the
            # call). Kept ones (self._grads) are viewed once and the views
            # reused, which measured ~5% faster than addresses.
            if len(cohorts) == 1:  # members in active order, groups in order
                cohorts[0].engine._update_at(cohorts[0].params, gs.tensors, gs.ptrs)
            else:
                by_index = dict(zip(active, zip(gs.ptrs, gs.tensors)))
                for c in cohorts:
                    order = [by_index[i] for idx in c.indices for i in idx]
                    c.engine._update_at(c.params, [t for _, t in order], [a for a, _ in order])
        else:
            views = gs.views
            if views is None:
                # Read-only arrays at the checked gradients' addresses, each with
                # its parameter's dtype and shape, each keeping its tensor alive.
                views = gs.views = _core._views_at(self._pviews, gs.ptrs, gs.tensors)
            if len(cohorts) == 1:  # members in active order, groups in order: slices
                c = cohorts[0]
                if gs.tree is None:
                    gs.tree = [views[a:b] for a, b in c.spans]
                c.engine.update(c.params, gs.tree)
            else:
                by_index = dict(zip(active, views))
                for c in cohorts:
                    c.engine.update(c.params, [[by_index[i] for i in idx] for idx in c.indices])
        # The views wrote the memory behind autograd's back: bump the version
        # counters so a graph that saved these tensors refuses to backward.
        increment_version(params)

    def _view_grads(self, flat, grads) -> Optional[_Grads]:
        """The gradients' views, checked, or None when no parameter has one.
        Kept for the next step when the gradients are the same tensors as in
        the last step (so keeping them holds no memory the model does not)."""
        if all(map(is_not, grads, repeat(None))):
            active, params, tensors = self._all, self._plist, grads
        else:
            active = tuple(i for i, g in enumerate(grads) if g is not None)
            if not active:
                self._drop_grads()
                return None
            params = [self._plist[i] for i in active]
            tensors = [grads[i] for i in active]
        # Every gradient checked before anything changes, with C-level maps:
        # dense (data_ptr raises for sparse), contiguous, the parameter's dtype
        # and element count (torch checks them when .grad is assigned, but not
        # after p.data = ...), and no lazy negation. Checked gradients are read
        # by address; views of them (made from the addresses, shaped like the
        # parameters') only for kept gradients and rules without _update_at
        # (Tensor.numpy() per gradient was most of the adapter's time with new
        # gradients every step).
        # The params' dtypes and sizes are looked up again when their memory
        # changes (the same test that rebuilds their views).
        pptrs = list(map(_data_ptr, params))
        meta = self._pmeta
        if meta is None or meta[0] != pptrs:
            meta = self._pmeta = (pptrs, list(map(_DTYPE, params)), list(map(_numel, params)))
        try:
            ptrs = list(map(_data_ptr, tensors))
            ok = (all(map(_contiguous, tensors)) and not any(map(_is_neg, tensors))
                  and list(map(_DTYPE, tensors)) == meta[1] and list(map(_numel, tensors)) == meta[2])
        except (TypeError, RuntimeError):
            ok = False
        if ok:
            gs = _Grads(grads, active, params, tensors, ptrs, None)
        else:
            gs = _Grads(grads, active, params, tensors, None, self._checked_views(flat, active, tensors))
        gs.pptrs = pptrs
        # Gradients that persist from step to step (zero_grad(set_to_none=False),
        # or set once) are worth keeping views of: the model keeps them alive
        # anyway. A few of them, weakly referenced, tell (the next step checks
        # every one); new gradients every step leave no reference behind.
        last = self._gweak
        sample = tensors[:_SAMPLE]
        if last is not None and last[0] == active and all(map(is_, [w() for w in last[1]], sample)):
            if gs.ptrs is None:
                gs.ptrs = list(map(_data_ptr, tensors))
            self._grads, self._gweak = gs, None
        else:
            self._grads, self._gweak = None, (active, list(map(weakref.ref, sample)))
        return gs

    def _checked_views(self, flat, active, grads) -> list:
        """The gradients' views, or the error that names the first bad one."""
        views = []
        for i, g in zip(active, grads):
            gi, j, _ = flat[i]
            if g.layout != torch.strided:
                raise TypeError(f"{_where(gi, j)} has a {g.layout} gradient: FusedOptimizer needs dense "
                                f"gradients (use torch.optim.SparseAdam, or sparse=False in the embedding)")
            if not g.is_contiguous():
                raise ValueError(f"{_where(gi, j)}.grad is not contiguous (strides {g.stride()}); the fused "
                                 f"step reads it as one block: assign p.grad = p.grad.contiguous()")
            g = g.detach() if g.requires_grad else g
            if g.is_neg():  # a lazily negated view (its memory holds -g): the values, copied (only read)
                g = g.resolve_neg()
            views.append(g.numpy())
        return views

    def _check_coupled(self, flat, active, state, by_step) -> None:
        """A learning-rate-free rule learns from all its tensors at once: one
        cohort, with every parameter that has stepped in it."""
        stepped = [i for i, (_, _, p) in enumerate(flat) if (state.get(p) or {}).get("step") is not None
                   and int(_plain(state[p]["step"])) > 0]
        missing = sorted(set(stepped) - set(active))
        if missing:
            gi, j, _ = flat[missing[0]]
            raise ValueError(f"{_where(gi, j)} has no gradient in this step, but rule {self.rule!r} learns its "
                             f"step size from all its tensors at once, so every parameter it has stepped needs "
                             f"a gradient in every step ({len(missing)} have none); nothing was updated. Give "
                             f"those parameters a zero gradient (p.grad = torch.zeros_like(p)), or leave them "
                             f"out of this optimizer")
        if len(by_step) > 1:
            low = min(by_step)
            gi, j, _ = flat[by_step[low][0]]
            raise ValueError(f"{_where(gi, j)} has stepped {low} times and other parameters "
                             f"{max(by_step)} times, but rule {self.rule!r} learns its step size from all its "
                             f"tensors at once and steps them together; nothing was updated. Give every "
                             f"parameter a gradient from the first step (a zero one where it has none), or put "
                             f"the late ones in a separate optimizer")

    def _rebuild(self, flat, active) -> None:
        """Fused optimizers for the parameters ``active`` (flat indices), one
        per step count, loaded with the current state (copies)."""
        state = self.state  # synced from the current fused optimizers
        by_step: Dict[int, List[int]] = {}
        for i in active:
            st = state.get(flat[i][2])
            step = int(_plain(st["step"])) if st and "step" in st else 0
            if st and "step" not in st and any(n in st for n in self._state_names):
                gi, j, _ = flat[i]
                raise ValueError(f"the state of {_where(gi, j)} has buffers but no 'step'; load a state_dict "
                                 f"saved by FusedOptimizer or torch.optim for rule {self.rule!r}")
            by_step.setdefault(step, []).append(i)
        if self._coupled:
            self._check_coupled(flat, active, state, by_step)
        cohorts = []
        ptrs = {}
        pviews = {}
        for step, members in by_step.items():
            groups = sorted({flat[i][0] for i in members})
            pos = {gi: k for k, gi in enumerate(groups)}
            ptree: List[list] = [[] for _ in groups]
            mem = []
            fa_state: Dict[str, Dict[str, Any]] = {}
            for gi in groups:
                for i in members:
                    if flat[i][0] != gi:
                        continue
                    p = flat[i][2]
                    _check_param(p, _where(gi, flat[i][1]))
                    path = f"{pos[gi]}.{len(ptree[pos[gi]])}"
                    pviews[i] = p.detach().numpy()
                    ptree[pos[gi]].append(pviews[i])
                    mem.append((gi, i, p))
                    ptrs[i] = p.data_ptr()
                    entry = {}
                    for name, v in (state.get(p) or {}).items():
                        if name == "step" or v is None:
                            continue
                        if name not in self._state_names:
                            raise ValueError(f"the state of {_where(gi, flat[i][1])} has {name!r}, which rule "
                                             f"{self.rule!r} does not keep (it keeps "
                                             f"{', '.join(self._state_names)}); load a state_dict saved for "
                                             f"this rule")
                        arr = v.detach().cpu().numpy()
                        if name in self._scalar_names:
                            arr = arr.astype("float64").reshape(())
                        entry[name] = arr
                    if entry:
                        fa_state[path] = entry
            wide = {n: self._validate(n, self.param_groups[groups[0]][n], f"param_groups[{groups[0]}][{n!r}]")
                    for n in self._wide}
            overrides = [(f"{k}.*", self._group_values(gi)) for k, gi in enumerate(groups)]
            engine = make_optimizer(self.rule, **wide, overrides=overrides)
            if step:
                sd = {"algorithm": self.rule, "step": step, "skipped_steps": 0, "total_nonfinite_count": 0,
                      "hyperparameters": engine.hyperparameters, "state": fa_state,
                      "overrides": [v for _, v in overrides]}
                if self._two_points:
                    sd["train_mode"] = self._train_mode()
                engine.load_state_dict(sd, ptree)
            cohorts.append(_Cohort(engine, mem, groups, ptree))
        self._cohorts, self._active = cohorts, active
        if self._grads is not None:
            self._grads.tree = None   # (laid out for the old cohorts)
        self._pptrs = [ptrs[i] for i in active]
        self._pviews = [pviews[i] for i in active]  # (the gradient views' dtypes and shapes)
        self._seen = [{} for _ in self.param_groups]

    def _group_values(self, gi: int) -> Dict[str, Any]:
        g = self.param_groups[gi]
        return {n: self._validate(n, g[n], f"param_groups[{gi}][{n!r}]") for n in self._per_key}

    def _apply_hyperparameters(self) -> None:
        """Bring the fused optimizers to the param groups' current values (a
        scheduler or the user may have set them since the last step)."""
        groups = self.param_groups
        if len(self._seen) != len(groups):
            self._seen = [{} for _ in groups]
        changed: Dict[str, List[Any]] = {}
        for gi, g in enumerate(groups):
            seen = self._seen[gi]
            for name in self._names:
                raw = g[name]
                old = seen.get(name)
                if old is not None and old[0] is raw:
                    continue
                value = self._validate(name, raw, f"param_groups[{gi}][{name!r}]")
                if old is None or old[1] != value:
                    changed.setdefault(name, [None] * len(groups))[gi] = value
                seen[name] = (raw, value)
        for name in changed:
            values = [self._seen[gi][name][1] for gi in range(len(groups))]
            if name in self._wide:
                if any(v != values[0] for v in values):
                    raise ValueError(f"param_groups[*][{name!r}] differ ({values}): {name!r} applies to all "
                                     f"tensors at once in rule {self.rule!r}; give every group the same value")
                for c in self._cohorts:
                    if getattr(c.engine, name) != values[0]:
                        setattr(c.engine, name, values[0])
            else:
                for c in self._cohorts:
                    current = c.engine.group_values(name)
                    want = current[:1] + [values[gi] for gi in c.groups]
                    if want != current:
                        c.engine.set_group_values(name, want)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients (as ``torch.optim.Optimizer.zero_grad``).

        Parameters
        ----------
        set_to_none : bool, default True
            Set every ``.grad`` to None (the next ``backward()`` makes new
            gradient tensors) instead of filling them with zeros. With
            ``False`` the gradient tensors persist, and the step reuses
            their NumPy views, checking only that they are the same tensors
            at the same addresses; new gradient tensors are each checked
            (layout, dtype, size) and read at their address (at 1000 tensors
            of 100 elements, measured warm on one thread: 0.55 ms per step
            with kept gradients, 0.82 ms with new ones).
        """
        if set_to_none:
            self._drop_grads()  # hold no reference to the gradients being dropped
            super().zero_grad(set_to_none=True)
            return
        # torch's own zero_grad zeroes tensor by tensor unless the optimizer
        # was built with foreach/fused (0.87 ms at 1000 tensors); one foreach
        # call over the gradients, found with C-level maps, takes 0.28 ms.
        # A gradient that is part of a graph (requires_grad) needs torch's
        # per-tensor detach first: then torch's path does it all.
        self._flat_params()
        grads = list(map(_GRAD, self._plist))
        if not all(map(is_not, grads, repeat(None))):
            grads = [g for g in grads if g is not None]
        if any(map(_REQUIRES_GRAD, grads)):
            super().zero_grad(set_to_none=False)
        elif grads:
            torch._foreach_zero_(grads)  # (CPU tensors only: the adapter refuses others)

    # ---- two points: Schedule-Free -------------------------------------------
    def eval(self) -> None:
        """Switch the parameters to the point to evaluate (Schedule-Free).

        For the Schedule-Free rules the parameters hold the training point
        y; ``eval()`` writes the averaged point x into the tensors
        themselves, in place, as the schedulefree package's optimizers do.
        Call it before validation, inference or saving the model, and
        ``train()`` before the next step. A second call changes nothing;
        parameters that have not stepped stay as they are. For every other
        rule it does nothing (so a training loop may call it regardless).
        """
        self._switch(to_train=False)

    def train(self) -> None:
        """Switch the parameters back to the training point after ``eval()``.

        Writes y back into the tensors (Schedule-Free rules; a no-op for the
        others and in train mode). A FusedOptimizer starts in train mode, so
        a schedulefree-style ``optimizer.train()`` before the first step is
        harmless.
        """
        self._switch(to_train=True)

    @property
    def train_mode(self) -> bool:
        """True while the parameters hold the training point (always, except
        for a Schedule-Free rule between ``eval()`` and ``train()``)."""
        return self._train_mode()

    def _switch(self, to_train: bool) -> None:
        if not self._two_points or self._train_mode() == to_train:
            return
        flat = self._flat_params()
        state = self.state
        have = tuple(i for i, (_, _, p) in enumerate(flat) if (state.get(p) or {}).get("z") is not None)
        if have:
            params = [flat[i][2] for i in have]
            if have != self._active or list(map(_data_ptr, params)) != self._pptrs:
                self._rebuild(flat, have)
            for c in self._cohorts:
                c.engine.eval(c.params) if not to_train else c.engine.train(c.params)
            increment_version(params)
        for g in self.param_groups:
            g["train_mode"] = to_train

    # ---- what a learning-rate-free rule learned ------------------------------
    @property
    def adapted(self) -> Dict[str, float]:
        """What a learning-rate-free rule has learned by the last step.

        Returns
        -------
        dict
            By name, as ``fastadapt.Optimizer.adapted``: Prodigy's and
            D-Adaptation's ``d`` (and their other scalars), DoG's ``eta``,
            a hypergradient rule's ``lr``, Schedule-Free's scheduled ``lr``
            and averaging ``weight``; empty for rules with a fixed step size,
            before the first step, and after ``load_state_dict()`` until
            the next step (as ``fastadapt.Optimizer``).
        """
        cohorts = self._cohorts
        if len(cohorts) == 1:
            return cohorts[0].engine.adapted
        # several step counts (only rules whose learned values are per tensor: LDoG)
        parts = [(len(c.members), c.engine.adapted) for c in cohorts]
        parts = [(n, a) for n, a in parts if a]
        if not parts:
            return {}
        out: Dict[str, float] = {}
        total = sum(n for n, _ in parts)
        for name in parts[0][1]:
            vals = [(n, a[name]) for n, a in parts]
            if name.endswith("_min"):
                out[name] = min(v for _, v in vals)
            elif name.endswith("_max"):
                out[name] = max(v for _, v in vals)
            else:   # a mean over tensors: weigh each cohort's by its tensors
                out[name] = sum(n * v for n, v in vals) / total
        return out

    @property
    def lr_estimate(self) -> Optional[float]:
        """The step size a learning-rate-free rule chose in its last step.

        Returns
        -------
        float or None
            What ``lr`` is for Adam (Prodigy: ``d * lr``; DoG: ``eta``;
            Schedule-Free: the warmed-up lr), as
            ``fastadapt.Optimizer.lr_estimate``; None for other rules, and
            when ``adapted`` is empty.
        """
        cohorts = self._cohorts
        if len(cohorts) == 1:
            return cohorts[0].engine.lr_estimate
        estimates = [(len(c.members), c.engine.lr_estimate) for c in cohorts]
        estimates = [(n, e) for n, e in estimates if e is not None]
        if not estimates:
            return None
        return sum(n * e for n, e in estimates) / sum(n for n, _ in estimates)

    # ---- state ---------------------------------------------------------------
    def _sync_state(self) -> None:
        """opt.state[p] from the fused optimizers: views of their buffers."""
        st = self.__dict__["state"]
        for c in self._cohorts:
            live = c.engine.state
            step = torch.tensor(float(c.engine.step_count), dtype=torch.float32)
            pos = {gi: k for k, gi in enumerate(c.groups)}
            counts = [0] * len(c.groups)
            for gi, _, p in c.members:
                k = pos[gi]
                entry = live.get(f"{k}.{counts[k]}", {})
                counts[k] += 1
                if c.engine.step_count == 0 and not entry:
                    continue
                st[p] = {"step": step.clone(), **{n: torch.from_numpy(a) for n, a in entry.items()}}

    def state_dict(self) -> Dict[str, Any]:
        """The optimizer's state in torch's format.

        Returns
        -------
        dict
            ``{"state": {index: {"step": ..., buffer name: tensor, ...}},
            "param_groups": [...]}``, as ``torch.optim.Optimizer.state_dict``:
            the buffers under fastadapt's (and, for torch's rules, torch's)
            names, float64 0-d tensors for the scalars a rule carries, and
            for Schedule-Free ``train_mode`` in each group. Like torch's it
            holds references to the live buffers: ``torch.save`` it or
            ``copy.deepcopy`` it to keep a snapshot.
        """
        return super().state_dict()

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Load a state saved by ``state_dict()``, or by the ``torch.optim``
        optimizer of the same rule (Adam, AdamW, RMSprop, Adagrad, NAdam,
        RAdam, Adamax, Adadelta: the same state names; not SGD, whose
        state has no step count, which the next step refuses).

        The fused optimizers are rebuilt from the loaded state at the next
        step. Scalars the rule carries keep float64 (torch would cast them
        to the parameter's dtype). Hyperparameters a torch checkpoint's
        param groups lack (``max_grad_norm``, ...) take the constructor's
        values.

        Parameters
        ----------
        state_dict : dict
            What ``state_dict()`` returned (possibly through ``torch.save``
            and ``torch.load``).
        """
        scalars = {k: {n: v.detach().clone().to(torch.float64) for n, v in entry.items()
                       if n in self._scalar_names and isinstance(v, torch.Tensor)}
                   for k, entry in state_dict.get("state", {}).items()}
        super().load_state_dict(state_dict)
        self._reset_engines()
        params = [p for g in self.param_groups for p in g["params"]]
        st = self.__dict__["state"]
        for k, entry in scalars.items():
            if entry and params[k] in st:
                st[params[k]].update(entry)
        for g in self.param_groups:  # a torch.optim checkpoint lacks fastadapt's own keys: the constructor's
            for name in self._names:
                g.setdefault(name, self.defaults[name])
        if self._two_points:
            mode = self._train_mode()
            for g in self.param_groups:
                g.setdefault("train_mode", mode)
