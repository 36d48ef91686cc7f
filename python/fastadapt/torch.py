"""fastadapt's rules as a ``torch.optim.Optimizer`` for CPU tensors.

    from fastadapt.torch import FusedOptimizer
    opt = FusedOptimizer(model.parameters(), rule="adam", lr=1e-3)
    loss.backward(); opt.step(); opt.zero_grad()

The step runs fastadapt's fused C++ kernel (one call for all tensors) on
NumPy views of the parameters and gradients: ``p.detach().numpy()`` shares
the tensor's memory, so nothing is copied and the parameters change in place.

torch is not a dependency of fastadapt: ``import fastadapt`` never imports
it; this module does, and says so when it is missing.

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
per parameter index, ``param_groups`` with their hyperparameters; as with
torch it holds references (copy.deepcopy or torch.save it).
"""

from __future__ import annotations

try:
    import torch
except ImportError as _err:  # pragma: no cover - exercised in a subprocess
    raise ImportError("fastadapt.torch needs PyTorch (pip install torch); the rest of fastadapt works "
                      "without it") from _err

from typing import Any, Dict, List, Optional, Tuple

from itertools import repeat
from operator import is_not

from torch.autograd.graph import increment_version

from .optim import OPTIMIZERS, make_optimizer

__all__ = ["FusedOptimizer"]

_TORCH_ONLY = ("foreach", "fused", "capturable", "differentiable")
_contiguous = torch.Tensor.is_contiguous
_data_ptr = torch.Tensor.data_ptr


def _where(gi: int, j: int) -> str:
    return f"param_groups[{gi}]['params'][{j}]"


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

    __slots__ = ("engine", "members", "groups", "params", "ptrs", "plist", "indices", "spans")

    def __init__(self, engine, members, groups, params, ptrs):
        self.engine = engine        # the fastadapt Optimizer
        self.members = members      # [(group index, flat index, param)] in the engine's order
        self.groups = groups        # the torch group index of each engine override, in order
        self.params = params        # nested lists of NumPy views (one list per override)
        self.ptrs = ptrs            # data_ptr() of each param when its view was taken
        self.plist = [p for _, _, p in members]
        # flat indices per override, and their spans in the members' order
        self.indices = [[i for g, i, _ in members if g == gi] for gi in groups]
        bounds = [0]
        for idx in self.indices:
            bounds.append(bounds[-1] + len(idx))
        self.spans = list(zip(bounds[:-1], bounds[1:]))


class FusedOptimizer(torch.optim.Optimizer):
    """A torch optimizer that runs a fastadapt rule's fused C++ step.

    Args:
        params: an iterable of tensors or of param-group dicts, as for any
            torch optimizer (CPU, float32/float64, contiguous).
        rule: a fastadapt rule name (``fastadapt.optim.OPTIMIZERS``: "adam",
            "adamw", "sgd", "adagrad", "rmsprop", "prodigy", ...).
        **hyperparameters: the rule's hyperparameters, as
            ``fastadapt.make_optimizer(rule, ...)`` takes them (defaults: the
            rule's, which are torch.optim's for torch's rules).

    See the module docstring for params without gradients, param groups
    and the state format.
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
        self._reset_engines()
        super().__init__(params, template.hyperparameters)

    # ---- bookkeeping ---------------------------------------------------------
    def _reset_engines(self) -> None:
        self._cohorts: List[_Cohort] = []
        self._active: Optional[Tuple[int, ...]] = None   # flat indices the cohorts cover
        self._flat: Optional[List[Tuple[int, int, Any]]] = None
        self._seen: List[Dict[str, Tuple[Any, Any]]] = []  # per group: name -> (raw, validated)
        self._dirty = False

    @property
    def state(self):  # type: ignore[override]
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
        if "_cohorts" not in self.__dict__:  # unpickled: the fused optimizers rebuild from the state
            self._reset_engines()

    def add_param_group(self, param_group: Dict[str, Any]) -> None:
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
        super().add_param_group(dict(param_group, params=plist))
        self._flat = None  # the structure changed: rebuild at the next step
        self._active = None

    def _validate(self, name: str, value: Any, where: str) -> Any:
        return getattr(self._cls, name).validate(where, _plain(value))

    # ---- the step ------------------------------------------------------------
    def step(self, closure=None):  # type: ignore[override]
        """One fused step of every parameter that has a gradient; ``closure``
        (re-evaluating the loss) is called first, with grad enabled."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._step()
        return loss

    def _flat_params(self) -> List[Tuple[int, int, Any]]:
        flat = self._flat
        if flat is None or len(flat) != sum(len(g["params"]) for g in self.param_groups):
            flat = [(gi, j, p) for gi, g in enumerate(self.param_groups) for j, p in enumerate(g["params"])]
            self._flat, self._active, self._all = flat, None, tuple(range(len(flat)))
        return flat

    def _step(self) -> None:
        # The per-tensor Python work is a few C-level maps: with 1000 small
        # tensors it, not the kernel, is most of the step.
        flat = self._flat_params()
        plist = [p for _, _, p in flat]
        grads = [p.grad for p in plist]
        if all(map(is_not, grads, repeat(None))):
            active = self._all
        else:
            active = tuple(i for i, g in enumerate(grads) if g is not None)
            if not active:
                return  # as torch: nothing has a gradient, nothing changes (not a step)
            plist = [plist[i] for i in active]
            grads = [grads[i] for i in active]
        # Every gradient checked (and viewed) before anything changes.
        try:
            views = [g.numpy() for g in grads]  # raises for sparse and requires_grad gradients
            ok = all(map(_contiguous, grads))
        except (TypeError, RuntimeError):
            ok = False
        if not ok:
            views = self._checked_views(flat, active, grads)
        if active != self._active or any(list(map(_data_ptr, c.plist)) != c.ptrs for c in self._cohorts):
            self._rebuild(flat, active)
        self._apply_hyperparameters()
        cohorts = self._cohorts
        self._dirty = True
        if len(cohorts) == 1:  # members in active order, groups in order: slice
            c = cohorts[0]
            cohorts[0].engine.update(c.params, [views[a:b] for a, b in c.spans])
        else:
            by_index = dict(zip(active, views))
            for c in cohorts:
                gtree = [[by_index[i] for i in idx] for idx in c.indices]
                c.engine.update(c.params, gtree)
        # The views wrote the memory behind autograd's back: bump the version
        # counters so a graph that saved these tensors refuses to backward.
        increment_version(plist)

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
            views.append((g.detach() if g.requires_grad else g).numpy())
        return views

    def _rebuild(self, flat, active) -> None:
        """Fused optimizers for the parameters with gradients, one per step
        count, loaded with the current state (copies)."""
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
        cohorts = []
        for step, members in by_step.items():
            groups = sorted({flat[i][0] for i in members})
            pos = {gi: k for k, gi in enumerate(groups)}
            ptree: List[list] = [[] for _ in groups]
            mem, ptrs = [], []
            fa_state: Dict[str, Dict[str, Any]] = {}
            for gi in groups:
                for i in members:
                    if flat[i][0] != gi:
                        continue
                    p = flat[i][2]
                    _check_param(p, _where(gi, flat[i][1]))
                    path = f"{pos[gi]}.{len(ptree[pos[gi]])}"
                    ptree[pos[gi]].append(p.detach().numpy())
                    mem.append((gi, i, p))
                    ptrs.append(p.data_ptr())
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
                engine.load_state_dict({"algorithm": self.rule, "step": step, "skipped_steps": 0,
                                        "total_nonfinite_count": 0, "hyperparameters": engine.hyperparameters,
                                        "state": fa_state, "overrides": [v for _, v in overrides]}, ptree)
            cohorts.append(_Cohort(engine, mem, groups, ptree, ptrs))
        self._cohorts, self._active = cohorts, active
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

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """torch's load; the fused optimizers are rebuilt from the loaded state
        at the next step. float64 scalars the rule carries keep float64
        (torch would cast them to the parameter's dtype)."""
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
