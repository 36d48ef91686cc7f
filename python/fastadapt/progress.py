"""Progress display for training loops.

On a terminal with tqdm installed: one bar per epoch over its batches, the
running loss beside it, the epoch's summary left behind when it ends (as
Keras prints). Without a terminal (a log file, CI) or without tqdm: one
plain line per epoch. ``progress=False``: nothing. Messages (live diagnosis)
go through the display so they do not tear a bar.
"""

from __future__ import annotations

import sys
from typing import IO, Any, Mapping, Optional

__all__ = ["make_progress", "format_logs"]

# The running loss on a bar is refreshed every this many batches: tqdm's own
# rate limit bounds redraws, but building the postfix string each batch would not be free.
_POSTFIX_EVERY = 16


def _format_number(value: Any) -> str:
    if value is None:
        return "-"
    return f"{float(value):.4g}"


def format_logs(logs: Mapping[str, Any]) -> str:
    """``loss 0.1234 - val_loss 0.2345 - val_accuracy 0.9312 - lr 0.001``."""
    shown = ["loss", "val_loss"] + sorted(k for k in logs if k.startswith("val_") and k != "val_loss") + ["lr"]
    return " - ".join(f"{k} {_format_number(logs[k])}" for k in shown if k in logs)


class _Silent:
    def __init__(self, stream: Optional[IO[str]]):
        self._stream = stream

    @property
    def stream(self) -> IO[str]:
        # None: whatever sys.stderr is when writing (it may be swapped after construction).
        return sys.stderr if self._stream is None else self._stream

    def start_epoch(self, epoch: int, last_epoch: int, num_batches: Optional[int]) -> None:
        pass

    def batch_done(self, running_loss: float) -> None:
        pass

    def end_epoch(self, epoch: int, last_epoch: int, logs: Mapping[str, Any], seconds: float) -> None:
        pass

    def write(self, message: str) -> None:
        self.stream.write(message + "\n")
        self.stream.flush()

    def close(self) -> None:
        pass


class _EpochLines(_Silent):
    def end_epoch(self, epoch: int, last_epoch: int, logs: Mapping[str, Any], seconds: float) -> None:
        self.write(f"epoch {epoch + 1}/{last_epoch + 1} - {seconds:.1f}s - {format_logs(logs)}")


class _TqdmBars(_Silent):
    def __init__(self, stream: IO[str], tqdm: Any):
        super().__init__(stream)
        self._tqdm = tqdm
        self._bar: Any = None
        self._batches = 0

    def start_epoch(self, epoch: int, last_epoch: int, num_batches: Optional[int]) -> None:
        self._bar = self._tqdm(total=num_batches, desc=f"epoch {epoch + 1}/{last_epoch + 1}", file=self.stream,
                               leave=True, dynamic_ncols=True, unit="batch")
        self._batches = 0

    def batch_done(self, running_loss: float) -> None:
        self._bar.update(1)
        self._batches += 1
        if self._batches % _POSTFIX_EVERY == 0:
            self._bar.set_postfix_str(f"loss {_format_number(running_loss)}", refresh=False)

    def end_epoch(self, epoch: int, last_epoch: int, logs: Mapping[str, Any], seconds: float) -> None:
        self._bar.set_postfix_str(format_logs(logs), refresh=False)
        self.close()

    def write(self, message: str) -> None:
        self._tqdm.write(message, file=self.stream)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def make_progress(enabled: bool, stream: Optional[IO[str]] = None) -> _Silent:
    """The display for ``enabled`` on ``stream`` (default: stderr)."""
    if not enabled:
        return _Silent(stream)
    out = sys.stderr if stream is None else stream
    is_terminal = getattr(out, "isatty", lambda: False)()
    if is_terminal:
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            return _TqdmBars(out, tqdm)
    return _EpochLines(out)
