"""Ray, imported only when distributed training is used, and the session a
DataParallel started (so it shuts down only what it started)."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

from .._install import install_hint

INSTALL_HINT = f"fastadapt.distributed needs Ray: {install_hint('ray')}"

# The Ray session a RaySession started (its node id) and how many open
# RaySessions use it: it is shut down when the last of them closes, not
# under the feet of a DataParallel that joined it later.
_started: Dict[str, Any] = {"node": None, "users": 0}


def import_ray(hint: str = INSTALL_HINT) -> Any:
    """The ``ray`` module, or an ImportError that says (``hint``) how to
    install it. The one import check for every user of Ray."""
    try:
        import ray
    except ImportError as e:
        raise ImportError(hint) from e
    if not _is_ray(ray):
        raise _not_ray_error(ray, hint)
    return ray


def _is_ray(module: Any) -> bool:
    """Whether an imported ``ray`` is Ray: a folder named ``ray`` in the
    current directory (Ray's own temp folder is one) imports as an empty
    namespace package, which has no ``__file__`` and none of Ray's API."""
    return getattr(module, "__file__", None) is not None and hasattr(module, "is_initialized")


def _not_ray_error(module: Any, hint: str) -> ImportError:
    import sys

    sys.modules.pop("ray", None)  # not cached: once Ray is installed (or the folder gone) the import works
    where = ", ".join(getattr(module, "__path__", []) or []) or repr(module)
    return ImportError(f"{hint}. (`import ray` found {where}, a folder named 'ray' and not the Ray package; "
                       f"install Ray, or run from another directory)")


def _node(ray: Any) -> Optional[str]:
    """Which Ray session this process is connected to (a node id is new at
    every start), or None when there is none."""
    if not ray.is_initialized():
        return None
    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:  # pragma: no cover - a Ray without it: treat every session as the same
        return "unknown"


class RaySession:
    """Connects to Ray: the running session if there is one, else a new one
    (a local Ray when ``address`` is None, or the cluster at ``address``).
    ``close`` shuts down only a session a RaySession started, and only
    once no open RaySession uses it any more."""

    def __init__(self, address: Optional[str], init_options: Optional[Mapping[str, Any]]):
        if address is not None and not isinstance(address, str):
            raise TypeError(f"address must be None (a local Ray started on demand) or a Ray address string such "
                            f"as 'auto' or 'ray://head:10001', got {type(address).__name__}")
        if init_options is not None and not isinstance(init_options, Mapping):
            raise TypeError(f"ray_init must be a dict of ray.init keyword arguments, got "
                            f"{type(init_options).__name__}")
        self.ray = import_ray()
        self.started = False
        self._shares = False
        if self.ray.is_initialized():
            self.node = _node(self.ray)
            if _started["users"] and _started["node"] == self.node:
                _started["users"] += 1      # another RaySession started it: keep it up for this one too
                self._shares = True
            return
        options = {"include_dashboard": False}
        options.update(init_options or {})
        self.ray.init(address=address, **options)
        self.started = self._shares = True
        self.node = _node(self.ray)
        _started.update(node=self.node, users=1)

    def alive(self) -> bool:
        """Whether the Ray session this object connected to is still the one running."""
        return self.ray.is_initialized() and _node(self.ray) == self.node

    def close(self) -> None:
        shares, self._shares, self.started = self._shares, False, False
        if not shares or _started["node"] != self.node:
            return
        _started["users"] -= 1
        if _started["users"] == 0:
            _started["node"] = None
            if self.alive():
                self.ray.shutdown()
