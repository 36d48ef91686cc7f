"""Progress of a tuning run: a bar over the planned jobs on a terminal with
tqdm, one line per finished job otherwise (a log file, CI)."""

from __future__ import annotations

import sys
from typing import IO, Any, Mapping, Optional, Sequence, Tuple

from .results import FAILED, TrialRecord
from .space import lookup

__all__ = ["TuneProgress"]


def _short(config: Mapping[str, Any], keys: Sequence[str]) -> str:
    parts = []
    for key in keys:
        value = lookup(config, key)  # a nested hyperparameter is named by its "a/b" path
        parts.append(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


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
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=total, desc=algorithm, unit="job", file=self.stream, dynamic_ncols=True)
        self.total = total

    def job_done(self, trial: TrialRecord, best: Optional[Tuple[TrialRecord, Mapping[str, Any]]]) -> None:
        """Report a recorded job; ``best``: (trial, history entry) of the best evaluation so far."""
        self.done += 1
        if not self.enabled:
            return
        best_text = "-" if best is None else f"{best[1]['metric']:.4g} (trial {best[0].trial_id})"
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix_str(f"best {best_text}", refresh=False)
            return
        of = f"/{self.total}" if self.total else ""
        if trial.status == FAILED:
            outcome = f"FAILED: {trial.error_summary}"
        else:
            outcome = f"metric {trial.metric:.4g}" if trial.metric is not None else "no metric"
        self.write(f"[{self.algorithm} {self.done}{of}] trial {trial.trial_id} budget {trial.budget}: "
                   f"{outcome} | best {best_text} | {_short(trial.config, self.keys)}")

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
