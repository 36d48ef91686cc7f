"""Writing files safely: every file the library writes goes through here.

A file is written to a fresh temporary file in the target's directory,
created exclusively (``mkstemp``: ``O_CREAT | O_EXCL``, so a planted symlink
or another writer's temporary file is never followed or shared), flushed
and ``fsync``-ed, then renamed over the target with ``os.replace``. A reader
sees the old file or the new one, never a mix; two writers on one path each
leave a complete file (the last rename wins); on any error, KeyboardInterrupt
included, the temporary file is removed and the target is untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import IO, Any, Iterator, Optional, Union

__all__ = ["atomic_write", "write_text", "save_figure", "check_writable_dir", "check_writable_file"]

PathLike = Union[str, "os.PathLike[str]"]

# mkstemp creates 0600 files; a finished file gets the mode open() would give.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb", *, encoding: Optional[str] = None,
                 newline: Optional[str] = None) -> Iterator[IO[Any]]:
    """``with atomic_write(path, "w") as f: f.write(...)``: ``path`` is replaced
    by the complete new file when the block exits normally, and left as it was
    when it raises."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, mode, encoding=encoding if "b" not in mode else None,
                       newline=newline if "b" not in mode else None) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def _fsync_dir(directory: str) -> None:
    """Make the rename durable (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text(path: PathLike, text: str) -> None:
    """Atomically replace ``path`` with ``text`` (UTF-8)."""
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)


def save_figure(figure: Any, path: PathLike, **kwargs: Any) -> None:
    """``figure.savefig`` through ``atomic_write``; the format comes from
    the file name's suffix (png when it has none)."""
    target = os.fspath(path)
    fmt = kwargs.pop("format", None) or (os.path.splitext(target)[1][1:].lower() or "png")
    with atomic_write(target, "wb") as f:
        figure.savefig(f, format=fmt, **kwargs)


def check_writable_dir(path: PathLike, what: str) -> str:
    """Create directory ``path`` if needed and check that files can be made in
    it, before any work starts; ValueError naming ``what`` and the path."""
    target = os.fspath(path)
    if os.path.exists(target) and not os.path.isdir(target):
        raise ValueError(f"{what} {target!r} exists and is not a directory; pass a directory path")
    try:
        os.makedirs(target, exist_ok=True)
    except OSError as e:
        raise ValueError(f"{what} {target!r} cannot be written: {e.strerror or e}") from None
    _probe(target, what, target)
    return target


def _probe(directory: str, what: str, target: str) -> None:
    """Create and remove an empty temporary file in ``directory``."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".fastadapt-probe.", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ValueError(f"{what} {target!r} cannot be written: {e.strerror or e}") from None


def check_writable_file(path: PathLike, what: str) -> str:
    """Check, before any work starts, that ``atomic_write`` can create
    ``path``: its directory exists and takes new files, and ``path`` is not a
    directory. ValueError naming ``what`` and the path; nothing is created."""
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    if os.path.isdir(target):
        raise ValueError(f"{what} {target!r} is a directory; pass a file path")
    if not os.path.isdir(directory):
        raise ValueError(f"{what} {target!r}: the directory {directory!r} does not exist; create it first")
    _probe(directory, what, target)
    return target
