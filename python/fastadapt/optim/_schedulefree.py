"""What the two Schedule-Free optimizers share (docs/algorithms.md,
"Schedule-Free AdamW and SGD"): the float64 schedule carried from step to
step, ``z`` starting as a copy of the parameter, the train/eval mode and the
switch of the parameter arrays between the training point ``y`` and the
averaged point ``x``. The rules themselves are
optim/schedulefree_adamw.py and optim/schedulefree_sgd.py."""

from __future__ import annotations

import math
import numbers
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from .. import _hyper as hv
from .._interop import not_array, read_only
from .base import P, Optimizer

_STRUCTURE_FIX = ("params must keep the structure it had at the first update; "
                  "call opt.reset() to start over with a new structure")


def warmup_steps_value(name: str, value: Any) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an integer >= 0 (steps of linear warmup), got {type(value).__name__} "
                        f"{value!r}")
    if value < 0:
        raise ValueError(f"Invalid {name}: {value} (must be an integer >= 0; 0 turns warmup off)")
    return int(value)


def open_unit(name: str, value: Any) -> float:
    """In (0, 1): eval() divides by it (y = (1 - b) z + b x gives x only for b > 0)."""
    v = hv.as_float(name, value)
    if not 0.0 < v < 1.0:
        raise ValueError(f"Invalid {name}: {v} (must be in (0, 1) exclusive: eval() recovers the averaged point "
                         f"x from y = (1 - b) z + b x, which needs b > 0)")
    return v


def schedulefree_betas(name: str, value: Any) -> Tuple[float, float]:
    b1, b2 = hv.betas(name, value)
    if b1 == 0.0:
        raise ValueError(f"Invalid beta parameter at index 0: {b1} (Schedule-Free needs beta1 in (0, 1): eval() "
                         f"recovers the averaged point x from y = (1 - beta1) z + beta1 x)")
    return (b1, b2)


def lerp(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
    """The kernels' lerp in the array dtype (torch.lerp's two forms: from
    ``a`` when ``|w| < 0.5``, else from ``b``); ``w``, ``1 - w`` float64,
    rounded once."""
    T = a.dtype.type
    d = b - a
    if abs(w) < 0.5:
        return a + T(w) * d
    return b - d * T(1.0 - w)


class ScheduleFree(Optimizer):
    """The shared machinery; a subclass names the rule, its hyperparameters,
    which of them is ``b`` (``_beta``) and its kernel scalars."""

    _carried = ("lr_max", "weight_sum", "scheduled_lr", "ckp1")
    # Schedule-free: it needs an lr but no schedule on it (its warmup and the
    # averaging replace one), and its defaults are meant to be used as they
    # are: callers (fastadapt mnist, fa.compare) run it without lr schedules.
    lr_free = True
    # Set by _fresh and the loads (as the base's attributes are): whether
    # params hold y (a 0-d bool array, replaced whole on load), and a load
    # that _settle still has to finish (the _counts it replaced, the mode).
    _train_mode: np.ndarray
    _load_txn: Optional[Tuple[np.ndarray, bool]]

    # ---- the schedule (float64, per group, before the step) --------------
    def _carry(self, hp: Dict[str, Any], t: int, previous: Optional[Dict[str, float]]) -> Dict[str, float]:
        lr_max = -1.0 if previous is None else previous["lr_max"]
        weight_sum = 0.0 if previous is None else previous["weight_sum"]
        warmup = hp["warmup_steps"]
        sched = t / warmup if t - 1 < warmup else 1.0
        scheduled_lr = hp["lr"] * sched
        lr_max = max(scheduled_lr, lr_max)
        try:
            weight = (float(t) ** hp["r"]) * (lr_max ** hp["weight_lr_power"])
        except OverflowError:
            weight = math.inf
        weight_sum = weight_sum + weight
        if not math.isfinite(weight_sum):
            raise ValueError(f"the averaging weight t**r * lr_max**weight_lr_power overflows float64 at step {t} "
                             f"(r={hp['r']}, weight_lr_power={hp['weight_lr_power']}, lr_max={lr_max}); use a "
                             f"smaller r; nothing was updated")
        ckp1 = weight / weight_sum if weight_sum != 0.0 else 0.0
        return {"lr_max": lr_max, "weight_sum": weight_sum, "scheduled_lr": scheduled_lr, "ckp1": ckp1}

    def _new_state(self, slot: int, param: np.ndarray, hp: Dict[str, Any]) -> np.ndarray:
        if self._state_slots[slot] == "z":
            return np.array(param, copy=True, order="C")   # z starts at the first point
        return super()._new_state(slot, param, hp)

    def _beta(self, hp: Mapping[str, Any]) -> float:
        raise NotImplementedError

    # ---- learned values ----------------------------------------------------
    def _default_member(self) -> Optional[int]:
        """A key of the default group (of group 0 when every key is overridden)."""
        if not self._group_members:
            return None
        g = next((g for g, mask in enumerate(self._group_masks) if not mask), 0)
        return self._group_members[g][0]

    def _carried_now(self) -> Optional[Dict[str, float]]:
        i = self._default_member()
        if i is None or self._state["ckp1"][i] is None:
            return None
        return {name: float(self._state[name][i]) for name in self._carried}

    def _adapted(self) -> Dict[str, float]:
        """The last step's scheduled lr (warmup included) and the weight c
        of its z in the average x (the default group); {} before a step.
        (The public ``opt.adapted`` calls it under the lock, settled.)"""
        now = self._carried_now()
        return {} if now is None else {"lr": now["scheduled_lr"], "weight": now["ckp1"]}

    def _lr_estimate(self) -> Optional[float]:
        """The step size of z in the last step (the scheduled lr)."""
        return self._adapted().get("lr")

    # ---- train / eval mode -------------------------------------------------
    def _fresh(self) -> Dict[str, Any]:
        # A 0-d array, so that eval()/train() write it in the same C call as
        # the parameters (see _switch). Fresh optimizers are in train mode.
        return dict(super()._fresh(), _train_mode=np.array(True), _load_txn=None)

    @property
    def train_mode(self) -> bool:
        """True while ``params`` hold the training point y (after
        [`train`][fastadapt.Optimizer.train], and from the start), False while they hold the
        averaged point x (after [`eval`][fastadapt.Optimizer.eval])."""
        with self._busy.waiting():
            self._settle()
            return bool(self._train_mode)

    def eval(self, params: P) -> P:
        """Write the averaged point x into ``params`` (in place), go to eval
        mode and return ``params``: for validation, checkpoints to deploy,
        inference. A second call changes nothing; [`update`][fastadapt.Optimizer.update] refuses to
        run until [`train`][fastadapt.Optimizer.train]. Atomic: on an error nothing is changed."""
        with self._busy:
            self._settle()
            self._switch(params, to_train=False)
        return params

    def train(self, params: P) -> P:
        """Write the training point y back into ``params`` (in place), go to
        train mode and return ``params``. A call in train mode changes
        nothing. Atomic."""
        with self._busy:
            self._settle()
            self._switch(params, to_train=True)
        return params

    def _switch(self, params: Any, to_train: bool) -> None:
        targets = self._targets(params)
        if bool(self._train_mode) == to_train:
            return
        dests: List[np.ndarray] = []
        values: List[np.ndarray] = []
        with np.errstate(all="ignore"):
            for leaf, z, hp in targets:
                b = self._beta(hp)
                w = 1.0 - b if to_train else 1.0 - 1.0 / b
                dests.append(leaf)
                values.append(lerp(leaf, z, w))
        # Every new value exists before the first write; the writes and the
        # mode switch are one C call (no Python bytecode, so no signal
        # handler, runs between them): all of it happens or none.
        dests.append(self._train_mode)
        values.append(np.array(to_train))
        list(map(np.copyto, dests, values))

    def _targets(self, params: Any) -> List[Tuple[np.ndarray, np.ndarray, Dict[str, Any]]]:
        """(param, z, its group's hyperparameters) for every key that has a
        z, after checking ``params`` against the bound structure (or, before
        the first step, the loaded state); nothing is changed."""
        if self._tree is not None:
            paths, tree, masks, groups = self._paths, self._tree, self._group_masks, self._tensor_group
            meta = self._param_meta
            zs = self._state["z"]
        elif self._pending_state is not None:
            # A loaded state_dict not yet bound: check params against it as
            # the first update will, without binding.
            binding = self._binding(params)
            self._check_params(binding, params)
            self._check_state_against(self._pending_state, self._pending_step, binding)
            paths, tree, masks, groups = binding["_paths"], binding["_tree"], binding["_group_masks"], \
                binding["_tensor_group"]
            meta = binding["_param_meta"]
            zs = [self._pending_state.get(p, {}).get("z") for p in paths]
        else:
            return []  # nothing has a z yet: only the mode switches (as schedulefree)
        leaves = tree.flatten(params, "params", _STRUCTURE_FIX)
        out: List[Tuple[np.ndarray, np.ndarray, Dict[str, Any]]] = []
        for i, (path, leaf) in enumerate(zip(paths, leaves)):
            where = f"params[{path!r}]" if path else "params"
            want = meta.get(path)
            if not isinstance(leaf, np.ndarray) or want is None or leaf.dtype != want[1]:
                got = f"{leaf.dtype} array" if isinstance(leaf, np.ndarray) else type(leaf).__name__
                need = np.dtype(want[1]).name if want is not None else "float32 or float64"
                hint = "" if isinstance(leaf, np.ndarray) else "; " + not_array(leaf, "params", True)
                raise TypeError(f"{where}: expected a {need} NumPy array (the parameter this optimizer "
                                f"updates), got {got}{hint}")
            if leaf.shape != want[0]:
                raise ValueError(f"{where}: expected shape {want[0]}, got {leaf.shape}; {_STRUCTURE_FIX}")
            if not leaf.flags.writeable:
                raise ValueError(f"{where} is read-only; eval()/train() write the parameters in place: pass "
                                 f"writeable arrays: {read_only(leaf)}")
            z = zs[i]
            if z is not None:
                hp = dict(self._hyper)
                for j in masks[groups[i]]:
                    hp.update(self._overrides[j][1])
                out.append((leaf, z, hp))
        return out

    def _update(self, params: P, grads: Any, addresses: Optional[List[int]] = None) -> P:
        self._settle()
        if not self._train_mode:
            raise RuntimeError(f"{type(self).__name__}.update() in eval mode: params hold the averaged point x; "
                               f"call opt.train(params) first (and opt.eval(params) again to evaluate); nothing "
                               f"was updated")
        return super()._update(params, grads, addresses)

    # ---- checkpoints: the mode travels with the state --------------------
    def _snapshot(self, also: Any) -> Tuple[Dict[str, Any], Any]:
        mode: List[bool] = []

        def with_mode() -> Any:
            mode.append(bool(self._train_mode))   # under the same hold of the lock
            return also()

        sd, extra = super()._snapshot(with_mode)
        sd["train_mode"] = mode[0]
        return sd, extra

    def _load_state_dict(self, state_dict: Mapping[str, Any], params: Any) -> None:
        if isinstance(state_dict, Mapping):
            if "train_mode" not in state_dict:
                raise ValueError(f"state_dict lacks 'train_mode' (whether params held y or the averaged x when "
                                 f"it was taken); pass what {type(self).__name__}.state_dict() returned")
            mode = state_dict["train_mode"]
            if not isinstance(mode, (bool, np.bool_)):
                raise TypeError(f"state_dict['train_mode'] must be True or False, got {type(mode).__name__} "
                                f"{mode!r}")
            state_dict = {k: v for k, v in state_dict.items() if k != "train_mode"}
            # The base commits the load as one dict update, which replaces
            # _counts; _settle sets the mode once it sees that happened, so an
            # interrupt between the two is completed by the next call.
            self._load_txn = (self._counts, bool(mode))
        try:
            super()._load_state_dict(state_dict, params)
        finally:
            self._settle()

    def _settle(self) -> None:
        super()._settle()
        txn = self.__dict__.get("_load_txn")
        if txn is not None:
            before, mode = txn
            if self._counts is not before:
                np.copyto(self._train_mode, mode)
            self._load_txn = None
