"""The learning-rate range test (Smith 2015, as fastai and Lightning run it).

Train for a few steps while the learning rate grows exponentially from tiny
to huge, watch the (smoothed) loss, and suggest the lr where it falls
fastest. Params and optimizer are put back exactly as they were afterwards.

    result = fa.lr_find(opt, params, loss_and_grad, batches)
    result.suggestion; result.plot("lr_find.png")
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from ._checks import array_leaves, integer, real

__all__ = ["lr_find", "LRFindResult"]


@dataclass(frozen=True, eq=False)  # arrays inside: no element-wise ==
class LRFindResult:
    """What :func:`lr_find` saw.

    Attributes:
        lrs: the learning rate of each step taken.
        losses: the loss of each step's batch, computed before that step's update.
        smoothed_losses: the debiased EMA of ``losses`` (NaN after a non-finite loss).
        suggestion: the lr where the smoothed loss falls fastest against
            ``log(lr)`` (first ``skip_start`` and last ``skip_end`` points
            ignored); None when too few points are left.
        valley: the lr halfway (in steps) between the first and last point of
            the longest strictly decreasing subsequence of the smoothed loss
            (fastai's "valley"); None if it has fewer than 2 points. On a
            curve that falls all the way this lands in the flat start, far
            below ``suggestion``.
        stop_reason: ``"completed"``, ``"diverged"`` (smoothed loss above
            ``diverge_factor`` times its best), ``"non-finite loss"``,
            ``"non-finite gradient"`` (the optimizer's ``nonfinite="raise"``)
            or ``"batches exhausted"``.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed_losses: np.ndarray
    suggestion: Optional[float]
    suggestion_index: Optional[int]
    valley: Optional[float]
    valley_index: Optional[int]
    stop_reason: str
    settings: Dict[str, Any] = field(default_factory=dict)

    @property
    def diverged(self) -> bool:
        """True when the sweep stopped because the loss blew up."""
        return self.stop_reason in ("diverged", "non-finite loss", "non-finite gradient")

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-ready data (non-finite numbers become None)."""

        def clean(values: np.ndarray) -> List[Optional[float]]:
            return [float(v) if math.isfinite(v) else None for v in values]

        return {"lrs": clean(self.lrs), "losses": clean(self.losses), "smoothed_losses": clean(self.smoothed_losses),
                "suggestion": self.suggestion, "suggestion_index": self.suggestion_index, "valley": self.valley,
                "valley_index": self.valley_index, "stop_reason": self.stop_reason, "settings": dict(self.settings)}

    def plot(self, path: Optional[str] = None, *, ax: Any = None, show_raw: bool = True) -> Any:
        """Loss against lr on a log axis, the suggestion (and valley) marked.

        With ``path`` the figure is written there (PNG by the extension) and
        the path is returned; with ``ax`` it is drawn on that matplotlib axes;
        otherwise a new ``matplotlib.figure.Figure`` is returned. Needs the
        ``plot`` extra (matplotlib); uses no global pyplot state.
        """
        try:
            from matplotlib.figure import Figure
        except ImportError as err:
            raise ImportError("LRFindResult.plot needs matplotlib: pip install 'fastadapt[plot]' "
                              "(or pip install matplotlib)") from err
        fig = None
        if ax is None:
            fig = Figure(figsize=(7, 4.5), layout="constrained")
            ax = fig.add_subplot()
        if show_raw:
            ax.plot(self.lrs, self.losses, color="0.75", linewidth=1, label="loss")
        ax.plot(self.lrs, self.smoothed_losses, color="C0", linewidth=2, label="smoothed loss")
        for name, lr, index, color in (("suggestion", self.suggestion, self.suggestion_index, "C3"),
                                       ("valley", self.valley, self.valley_index, "C2")):
            if lr is not None:
                ax.plot([lr], [self.smoothed_losses[index]], "o", color=color, markersize=8,
                        label=f"{name}: {lr:.3g}")
        ax.set_xscale("log")
        finite = self.smoothed_losses[np.isfinite(self.smoothed_losses)]
        if finite.size:  # the blow-up at the end would flatten the interesting part
            shown = np.concatenate([finite, self.losses[np.isfinite(self.losses)]]) if show_raw else finite
            low, high = float(shown.min()), float(max(finite[0], np.median(finite)))
            # at least 0.1% of the loss: a flat curve's rounding noise is not worth the whole axis
            pad = max(0.1 * (high - low), 1e-3 * abs(high)) or 1.0
            ax.set_ylim(low - pad, high + 3 * pad)
        ax.set_xlabel("learning rate (log scale)")
        ax.set_ylabel("loss")
        ax.set_title(f"LR range test ({len(self.lrs)} steps, {self.stop_reason})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="best")
        if path is not None:
            from ._files import save_figure  # atomic: a failed save leaves the old file

            save_figure(fig or ax.figure, path, dpi=120)
            return path
        return fig if fig is not None else ax


def _batch_stream(batches: Iterable[Any]) -> Iterator[Any]:
    """The batches, started over when they run out (a one-shot iterator
    cannot start over and simply ends)."""
    if iter(batches) is batches:
        yield from batches
        return
    while True:
        produced = False
        for batch in batches:
            produced = True
            yield batch
        if not produced:
            return


def _finite_prefix(values: np.ndarray) -> int:
    """How many values come before the first non-finite one (a sweep ends at it)."""
    bad = ~np.isfinite(values)
    return int(np.argmax(bad)) if bad.any() else len(values)


def _steepest_descent(lrs: np.ndarray, smoothed: np.ndarray, skip_start: int, skip_end: int) -> Optional[int]:
    """Index of the most negative slope of the smoothed loss against log(lr),
    within the finite points after ``skip_start`` and before the last ``skip_end``."""
    finite = _finite_prefix(smoothed)
    stop = finite - skip_end
    if stop - skip_start < 2 or finite < 3:
        return None
    slopes = np.gradient(smoothed[:finite], np.log(lrs[:finite]))
    return skip_start + int(np.argmin(slopes[skip_start:stop]))


def _valley(smoothed: np.ndarray) -> Optional[int]:
    """Middle of the longest strictly decreasing subsequence of the finite
    smoothed losses (patience sorting on the negated values, O(n log n))."""
    values = [-float(v) for v in smoothed[:_finite_prefix(smoothed)]]
    tails: List[float] = []          # smallest tail value of an increasing run of each length
    tail_index: List[int] = []
    previous = [-1] * len(values)
    for i, v in enumerate(values):
        length = bisect.bisect_left(tails, v)
        if length == len(tails):
            tails.append(v)
            tail_index.append(i)
        else:
            tails[length] = v
            tail_index[length] = i
        previous[i] = tail_index[length - 1] if length else -1
    if len(tails) < 2:
        return None
    last = tail_index[-1]
    first = last
    while previous[first] != -1:
        first = previous[first]
    return first + (last - first) // 2


def check_settings(*, start_lr: float, end_lr: float, num_steps: int, smoothing: float = 0.98,
                   diverge_factor: float = 4.0, skip_start: int = 10, skip_end: int = 5) -> Dict[str, Any]:
    """:func:`lr_find`'s sweep arguments, checked (the message names the
    argument); the command line calls it before it loads any data."""
    start = real("start_lr", start_lr, low=0.0, low_open=True)
    end = real("end_lr", end_lr, low=0.0, low_open=True)
    if end <= start:
        raise ValueError(f"end_lr={end_lr!r} must be > start_lr={start_lr!r}")
    return {"start_lr": start, "end_lr": end, "num_steps": integer("num_steps", num_steps, 2),
            "smoothing": real("smoothing", smoothing, low=0.0, high=1.0, high_open=True),
            "diverge_factor": real("diverge_factor", diverge_factor, low=1.0, low_open=True),
            "skip_start": integer("skip_start", skip_start, 0), "skip_end": integer("skip_end", skip_end, 0)}


def lr_find(optimizer: Any, params: Any, loss_and_grad: Callable[[Any, Any], Tuple[float, Any]],
            batches: Iterable[Any], *, start_lr: float = 1e-7, end_lr: float = 10.0, num_steps: int = 100,
            smoothing: float = 0.98, diverge_factor: float = 4.0, skip_start: int = 10,
            skip_end: int = 5) -> LRFindResult:
    """Run the learning-rate range test and suggest a learning rate.

    Rule (ALGORITHMS.md): step ``k`` (0-based) uses
    ``lr_k = start_lr * (end_lr / start_lr) ** (k / (num_steps - 1))``,
    computes ``loss, grads = loss_and_grad(params, batch)`` on the next
    batch and updates. The loss is smoothed by a debiased EMA
    (``avg = b * avg + (1 - b) * loss``, ``smooth = avg / (1 - b ** (k + 1))``,
    ``b = smoothing``); the sweep stops early when
    ``smooth > diverge_factor * best smooth`` or the loss is not finite
    (for a negative best: ``smooth > best + (diverge_factor - 1) * |best|``).

    Afterwards every param array holds byte for byte what it held before
    (copied back with ``np.copyto``, also when ``loss_and_grad`` raises),
    and the optimizer's state, step count, counters and hyperparameters are
    restored through its ``state_dict`` (a fresh optimizer comes back
    fresh). Only the default lr is swept; per-key overrides keep theirs.

    Args:
        optimizer: any fastadapt optimizer.
        params: the parameter tree (arrays updated in place during the sweep).
        loss_and_grad: ``(params, batch) -> (loss, grads)``.
        batches: an iterable of batches, restarted when it runs out (a
            one-shot iterator ends the sweep instead). For a full-batch
            problem pass ``itertools.repeat(batch)``.
        start_lr, end_lr: the sweep's range (0 < start_lr < end_lr).
        num_steps: steps in the sweep (>= 2).
        smoothing: the EMA factor ``b`` in [0, 1).
        diverge_factor: > 1; stop when the smoothed loss exceeds this many times its best.
        skip_start, skip_end: points at either end the suggestion ignores.

    Returns:
        An :class:`LRFindResult`.

    Example::

        result = fa.lr_find(fa.SGD(momentum=0.9), params, loss_and_grad, batches)
        opt.lr = result.suggestion
        result.plot("lr_find.png")
    """
    if not hasattr(optimizer, "lr") or not hasattr(optimizer, "state_dict"):
        raise TypeError(f"lr_find needs a fastadapt optimizer, got {type(optimizer).__name__}")
    if not callable(loss_and_grad):
        raise TypeError(f"loss_and_grad must be a callable (params, batch) -> (loss, grads), got "
                        f"{type(loss_and_grad).__name__}")
    try:
        iter(batches)
    except TypeError:
        raise TypeError(f"batches must be an iterable of batches, got {type(batches).__name__}; for one "
                        f"full batch pass itertools.repeat(batch)") from None
    settings = check_settings(start_lr=start_lr, end_lr=end_lr, num_steps=num_steps, smoothing=smoothing,
                              diverge_factor=diverge_factor, skip_start=skip_start, skip_end=skip_end)
    start, end, n, beta = settings["start_lr"], settings["end_lr"], settings["num_steps"], settings["smoothing"]
    _, leaves = array_leaves(params)

    saved_params = [leaf.copy() for leaf in leaves]
    saved_state = optimizer.state_dict()
    # A state loaded for other parameters fails now, before the sweep moves
    # anything (load_state_dict checks keys, shapes and dtypes against params).
    optimizer.load_state_dict(saved_state, params=params)
    saved_last = (optimizer.last_grad_norm, optimizer.last_nonfinite_count)
    was_fresh = saved_state["step"] == 0 and not saved_state["state"]
    try:
        lrs, losses, smoothed, reason = _sweep(optimizer, params, loss_and_grad, _batch_stream(batches),
                                               start, end, n, beta, settings["diverge_factor"])
    finally:
        for leaf, saved in zip(leaves, saved_params):
            np.copyto(leaf, saved)
        if was_fresh:  # unbind the structure the sweep's first update bound
            optimizer.reset()
        optimizer.load_state_dict(saved_state)
        optimizer.last_grad_norm, optimizer.last_nonfinite_count = saved_last

    lr_arr, loss_arr, smooth_arr = np.array(lrs), np.array(losses), np.array(smoothed)
    best = _steepest_descent(lr_arr, smooth_arr, settings["skip_start"], settings["skip_end"])
    valley = _valley(smooth_arr)
    settings["optimizer"] = type(optimizer).__name__
    return LRFindResult(lrs=lr_arr, losses=loss_arr, smoothed_losses=smooth_arr,
                        suggestion=None if best is None else float(lr_arr[best]), suggestion_index=best,
                        valley=None if valley is None else float(lr_arr[valley]), valley_index=valley,
                        stop_reason=reason, settings=settings)


def _divergence_bound(best: float, factor: float) -> float:
    """``factor * best`` (ALGORITHMS.md) for ``best >= 0``; for a negative
    best that product lies below it, so the bound is ``best + (factor - 1) * |best|``."""
    return best * (factor if best >= 0 else 2.0 - factor)


def _sweep(optimizer: Any, params: Any, loss_and_grad: Callable[[Any, Any], Tuple[float, Any]],
           stream: Iterator[Any], start: float, end: float, n: int, beta: float,
           diverge_factor: float) -> Tuple[List[float], List[float], List[float], str]:
    lrs: List[float] = []
    losses: List[float] = []
    smoothed: List[float] = []
    avg, best = 0.0, math.inf
    for k in range(n):
        batch = next(stream, _END)
        if batch is _END:
            return lrs, losses, smoothed, "batches exhausted"
        lr = start * (end / start) ** (k / (n - 1))
        optimizer.lr = lr
        loss, grads = loss_and_grad(params, batch)
        loss = float(loss)
        lrs.append(lr)
        losses.append(loss)
        if not math.isfinite(loss):
            smoothed.append(math.nan)
            return lrs, losses, smoothed, "non-finite loss"
        avg = beta * avg + (1.0 - beta) * loss
        smooth = avg / (1.0 - beta ** (k + 1))
        smoothed.append(smooth)
        if k > 0 and smooth > _divergence_bound(best, diverge_factor):
            return lrs, losses, smoothed, "diverged"
        best = min(best, smooth)
        try:
            optimizer.update(params, grads)
        except FloatingPointError:  # nonfinite="raise": nothing was updated
            return lrs, losses, smoothed, "non-finite gradient"
    return lrs, losses, smoothed, "completed"


_END = object()
