"""What fa.HypergradientSGD and fa.HypergradientAdam share: alpha, the
learned learning rate, is a tensor scalar of the C++ rule ("lr", with
"lr_base", the lr hyperparameter it started from; cpp/rules/hypergradient.hpp
moves it after pass 0), one value per group held by each member tensor."""

from __future__ import annotations

from typing import Any, Dict, List, Optional


class HypergradientMixin:
    # alpha is the step size the rule sets itself: a schedule assigning lr
    # would restart it every time, so callers run these rules without one.
    lr_free = True
    # (from the Optimizer it is mixed into)
    _state: Dict[str, List[Any]]
    _group_members: List[List[int]]

    def _initial_tensor_scalars(self, hp: Dict[str, Any]) -> Dict[str, float]:
        return {"lr": hp["lr"], "lr_base": hp["lr"]}

    def _alpha(self) -> Optional[float]:
        """The default group's alpha after the last step (the first tensor's
        when every key is overridden); None before the first step."""
        values = self._state.get("lr")
        if not values:
            return None
        members = self._group_members[0] if self._group_members and self._group_members[0] else range(len(values))
        for i in members:
            if values[i] is not None:
                return float(values[i])
        return None

    def _adapted(self) -> Dict[str, float]:
        alpha = self._alpha()
        return {} if alpha is None else {"lr": alpha}

    def _lr_estimate(self) -> Optional[float]:
        return self._alpha()
