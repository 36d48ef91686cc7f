"""Ray, imported only when distributed training is used, and the session a
DataParallel started (so it shuts down only what it started)."""

from __future__ import annotations

from typing import Any, Mapping, Optional

INSTALL_HINT = 'fastadapt.distributed needs Ray: pip install "fastadapt[ray]" (or pip install "ray>=2.9")'


def import_ray() -> Any:
    """The ``ray`` module, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return ray


class RaySession:
    """Connects to Ray: the running session if there is one, else a new one
    (a local Ray when ``address`` is None, or the cluster at ``address``).
    :meth:`close` shuts down only a session this object started."""

    def __init__(self, address: Optional[str], init_options: Optional[Mapping[str, Any]]):
        if address is not None and not isinstance(address, str):
            raise TypeError(f"address must be None (a local Ray started on demand) or a Ray address string such "
                            f"as 'auto' or 'ray://head:10001', got {type(address).__name__}")
        if init_options is not None and not isinstance(init_options, Mapping):
            raise TypeError(f"ray_init must be a dict of ray.init keyword arguments, got "
                            f"{type(init_options).__name__}")
        self.ray = import_ray()
        self.started = False
        if self.ray.is_initialized():
            return
        options = {"include_dashboard": False}
        options.update(init_options or {})
        self.ray.init(address=address, **options)
        self.started = True

    def close(self) -> None:
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()
        self.started = False
