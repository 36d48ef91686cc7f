"""Progress display for training loops.

On a terminal with tqdm installed: one bar per epoch over its batches, sized
to the terminal's width, with the running loss beside it; when the epoch
ends the bar stays and the epoch's metrics follow in full on the lines below
it, wrapped at the terminal's width between metrics (as Keras prints the bar,
then the metrics). Without a terminal (a log file, CI) or without tqdm: one
complete plain line per epoch, however long. ``progress=False``: nothing.
Messages (live diagnosis) go through the display so they do not tear a bar.

``terminal_width`` and ``wrap_parts`` are shared with the other
displays (``tune``, ``lr-find``, ``bench``).
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any, List, Mapping, Optional, Sequence

__all__ = ["make_progress", "StepBar", "format_logs", "metric_parts", "terminal_width", "bar_options", "wrap_parts"]

# The running loss on a bar (and the bar's width, which follows a resized
# terminal) is refreshed every this many batches: tqdm's own rate limit bounds
# redraws, but building the postfix string each batch would not be free.
_POSTFIX_EVERY = 16

# Continuation lines of a wrapped metrics line start with this, so that an
# epoch's metrics read as one block under its bar.
INDENT = "  "


def terminal_width(stream: Any) -> int:
    """Columns a line on ``stream`` may use without the terminal wrapping it.

    The terminal's own size first (it follows resizes), then ``$COLUMNS``
    (a pseudo-terminal nobody sized reports 0 columns), else 80. One column
    less than the terminal has: a line that fills the last column leaves some
    terminals' cursor on the next line, and a bar's carriage-return redraw
    would then start a new line each time instead of overwriting itself."""
    columns = 0
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError and a ValueError
        columns = 0
    if columns <= 0:
        try:
            columns = int(os.environ.get("COLUMNS", ""))
        except ValueError:
            columns = 0
    if columns <= 0:
        columns = 80
    return max(columns - 1, 20)


def bar_options(stream: Any) -> dict:
    """tqdm's size options for a one-bar display on ``stream``: the width of
    ``terminal_width``, and a height. tqdm reads the height from the
    kernel alone; an unsized pseudo-terminal reports 0 rows, from which tqdm
    concludes no bar fits and draws none."""
    rows = 0
    try:
        rows = os.get_terminal_size(stream.fileno()).lines
    except (AttributeError, OSError, ValueError):
        rows = 0
    return {"ncols": terminal_width(stream), "nrows": rows if rows > 1 else 24}


def wrap_parts(parts: Sequence[str], width: int, sep: str = " - ", indent: str = INDENT) -> List[str]:
    """``parts`` joined by ``sep`` into lines of at most ``width`` columns,
    broken only between parts (a metric is never cut: one wider than the line
    gets a line of its own, and the terminal wraps it). Lines after the first
    start with ``indent``."""
    lines: List[str] = []
    line = ""
    for part in parts:
        if not line:
            line = (indent if lines else "") + part
        elif len(line) + len(sep) + len(part) <= width:
            line += sep + part
        else:
            lines.append(line)
            line = indent + part
    if line:
        lines.append(line)
    return lines


def _format_number(value: Any) -> str:
    if value is None:
        return "-"
    return f"{float(value):.4g}"


def metric_parts(logs: Mapping[str, Any]) -> List[str]:
    """``["loss 0.1234", "val_loss 0.2345", "val_accuracy 0.9312", "lr 0.001"]``:
    what a person reads of an epoch (the rest is in the History)."""
    shown = ["loss", "val_loss"] + sorted(k for k in logs if k.startswith("val_") and k != "val_loss") + \
        ["lr", "lr_estimate"]  # (lr_estimate: what a learning-rate-free rule learned, when it learns one)
    return [f"{k} {_format_number(logs[k])}" for k in shown if k in logs]


def format_logs(logs: Mapping[str, Any]) -> str:
    """``loss 0.1234 - val_loss 0.2345 - val_accuracy 0.9312 - lr 0.001``."""
    return " - ".join(metric_parts(logs))


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
    # Off a terminal nothing cuts or wraps a line: one complete line per epoch (grep-able logs).
    def end_epoch(self, epoch: int, last_epoch: int, logs: Mapping[str, Any], seconds: float) -> None:
        self.write(f"epoch {epoch + 1}/{last_epoch + 1} - {seconds:.1f}s - {format_logs(logs)}")


class _TqdmBars(_Silent):
    def __init__(self, stream: IO[str], tqdm: Any):
        super().__init__(stream)
        self._tqdm = tqdm
        self._bar: Any = None
        self._batches = 0

    def start_epoch(self, epoch: int, last_epoch: int, num_batches: Optional[int]) -> None:
        # ncols: tqdm shrinks the bar itself to fit, and trims the line if even that is not enough. Its
        # own dynamic_ncols reads only the kernel's size (0 on an unsized pseudo-terminal, so no limit);
        # terminal_width also honours $COLUMNS there, and batch_done follows a resize.
        self._bar = self._tqdm(total=num_batches, desc=f"epoch {epoch + 1}/{last_epoch + 1}", file=self.stream,
                               leave=True, unit="batch", **bar_options(self.stream))
        self._batches = 0

    def batch_done(self, running_loss: float) -> None:
        self._bar.update(1)
        self._batches += 1
        if self._batches % _POSTFIX_EVERY == 0:
            self._bar.ncols = terminal_width(self.stream)
            # Only the running loss on the live bar: the full metrics come below it when the epoch ends.
            self._bar.set_postfix_str(f"loss {_format_number(running_loss)}", refresh=False)

    def end_epoch(self, epoch: int, last_epoch: int, logs: Mapping[str, Any], seconds: float) -> None:
        if "loss" in logs:
            self._bar.set_postfix_str(f"loss {_format_number(logs['loss'])}", refresh=False)
        self.close()  # leaves the finished bar on its line
        width = terminal_width(self.stream)
        for line in wrap_parts(metric_parts(logs), width - len(INDENT)):
            self.stream.write(INDENT + line + "\n")
        self.stream.flush()

    def write(self, message: str) -> None:
        self._tqdm.write(message, file=self.stream)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class StepBar:
    """A bar over the steps of one long call (``lr-find``'s sweep and checks)
    on a terminal with tqdm, sized as the epoch bars; off a terminal or
    without tqdm it shows nothing (the command prints its result when done)."""

    def __init__(self, desc: str, total: Optional[int], unit: str = "step", stream: Optional[IO[str]] = None):
        self.stream = sys.stderr if stream is None else stream
        self._bar: Any = None
        if getattr(self.stream, "isatty", lambda: False)():
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, leave=True,
                             **bar_options(self.stream))

    @property
    def active(self) -> bool:
        """Whether a bar is shown (a terminal with tqdm)."""
        return self._bar is not None

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def set_status(self, text: str) -> None:
        """Short text beside the bar (tqdm trims it to the width, it is only a status)."""
        if self._bar is not None:
            self._bar.ncols = terminal_width(self.stream)  # follows a resized terminal
            self._bar.set_postfix_str(text)

    def write(self, message: str) -> None:
        """A message above the bar (on stderr as is when there is none)."""
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            self.stream.write(message + "\n")
            self.stream.flush()

    def write_parts(self, parts: Sequence[str], sep: str = ", ") -> None:
        """A finished item's line above the bar, wrapped between ``parts`` at the terminal's width."""
        if self._bar is not None:
            self._bar.write("\n".join(wrap_parts(parts, terminal_width(self.stream), sep=sep, indent="    ")),
                            file=self.stream)

    def close(self, finished_early: bool = False) -> None:
        """``finished_early``: the total was an upper bound; the bar ends at the steps taken (100%)."""
        if self._bar is not None:
            if finished_early and self._bar.total is not None and self._bar.n < self._bar.total:
                self._bar.total = self._bar.n
                self._bar.refresh()
            self._bar.close()
            self._bar = None


def make_progress(enabled: bool, stream: Optional[IO[str]] = None, *, lines: bool = False) -> _Silent:
    """The display for ``enabled`` on ``stream`` (default: stderr): a bar per
    epoch on a terminal, else (or with ``lines=True``, Keras's verbose=2) one
    complete line per epoch."""
    if not enabled:
        return _Silent(stream)
    out = sys.stderr if stream is None else stream
    if lines:
        return _EpochLines(out)
    is_terminal = getattr(out, "isatty", lambda: False)()
    if is_terminal:
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            return _TqdmBars(out, tqdm)
    return _EpochLines(out)
