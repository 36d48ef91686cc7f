"""Progress of a tuning run. On a terminal with tqdm: a bar over the planned
jobs, sized to the terminal, with the best metric so far beside it, and
above it each finished job's line in full, wrapped at the terminal's width
between its fields (never inside a number or a hyperparameter). Otherwise
(a log file, CI): one complete line per finished job."""

from __future__ import annotations

import sys
from typing import IO, Any, List, Mapping, Optional, Sequence, Tuple

from ..train.progress import bar_options, terminal_width, wrap_parts
from .results import FAILED, TrialRecord
from .space import lookup

__all__ = ["TuneProgress"]


def _value_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, Mapping):  # a conditional choice's branch: its values, short
        return "{" + " ".join(f"{k}={_value_text(v)}" for k, v in value.items()) + "}"
    return str(value)


def _config_parts(config: Mapping[str, Any], keys: Sequence[str]) -> List[str]:
    parts = []
    for key in keys:
        value = lookup(config, key)  # a nested hyperparameter is named by its "a/b" path
        parts.append(f"{key}={_value_text(value)}")
    return parts


def _short(config: Mapping[str, Any], keys: Sequence[str]) -> str:
    return " ".join(_config_parts(config, keys))


class TuneProgress:
    """Reports each finished job. ``total``: jobs planned (None: unknown)."""

    def __init__(self, algorithm: str, total: Optional[int], enabled: bool, keys: Sequence[str],
                 stream: Optional[IO[str]] = None):
        self.algorithm = algorithm
        self.keys = list(keys)  # the searched hyperparameters (constants would only repeat on every line)
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self._bar: Any = None
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            try:
                # The plain (terminal) tqdm: the bar exists only on a terminal, and its width is in columns.
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=total, desc=algorithm, unit="job", file=self.stream,
                                 **bar_options(self.stream))
        self.total = total

    def job_done(self, trial: TrialRecord, best: Optional[Tuple[TrialRecord, Mapping[str, Any]]]) -> None:
        """Report a recorded job; ``best``: (trial, history entry) of the best evaluation so far."""
        self.done += 1
        if not self.enabled:
            return
        best_text = "-" if best is None else f"{best[1]['metric']:.4g} (trial {best[0].trial_id})"
        of = f"/{self.total}" if self.total else ""
        if trial.status == FAILED:
            outcome = f"FAILED: {trial.error_summary}"
        else:
            outcome = f"metric {trial.metric:.4g}" if trial.metric is not None else "no metric"
        head = f"[{self.algorithm} {self.done}{of}] trial {trial.trial_id} budget {trial.budget}:"
        if self._bar is None:
            self.write(f"{head} {outcome} | best {best_text} | {_short(trial.config, self.keys)}")
            return
        # Above the bar, the same fields, wrapped between them: an error message may break between its
        # words; a metric, the best and each hyperparameter stay whole.
        config = _config_parts(trial.config, self.keys)
        parts = ([head] + (outcome.split(" ") if trial.status == FAILED else [outcome]) + [f"| best {best_text}"]
                 + [("| " if i == 0 else "") + part for i, part in enumerate(config)])
        width = terminal_width(self.stream)
        self._bar.ncols = width  # follows a resized terminal
        self._bar.write("\n".join(wrap_parts(parts, width, sep=" ", indent="    ")), file=self.stream)
        self._bar.update(1)
        self._bar.set_postfix_str(f"best {best_text}", refresh=False)

    def write(self, message: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            self.stream.write(message + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
