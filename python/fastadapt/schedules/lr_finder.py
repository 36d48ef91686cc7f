"""The learning-rate range test (Smith 2015), made to suggest an lr that trains well.

Train for a few steps while the learning rate grows exponentially from tiny
to huge and record the loss (the *sweep*); then try a handful of candidate
lrs read off that curve for a short run each, from the same starting point,
and suggest the one whose loss ends lowest (the *verification*). Params and
optimizer are put back exactly as they were afterwards.

    result = fa.lr_find(opt, params, loss_and_grad, batches)
    result.suggestion; result.plot("lr_find.png")

Why verify: a rule read off the sweep alone (fastai's ``valley``, the
steepest slope, the minimum / 10) lands anywhere from 1x to 100x away from
the lr that trains best, because the sweep's loss at lr ``x`` reflects every
smaller lr before it, and a 20% noisy curve moves any slope-based point by
decades. Training each candidate for a few dozen steps measures what the
suggestion is for. bench/test_lr_find_regret.py measures the result
(docs/algorithms.md describes the rule).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from .._checks import array_leaves, integer, real
from .._install import install_hint
from .._interop import read_only

__all__ = ["lr_find", "LRFindResult"]


@dataclass(frozen=True, eq=False)  # arrays inside: no element-wise ==
class LRFindResult:
    """What [`lr_find`][fastadapt.lr_find] saw.

    Attributes
    ----------
    lrs
        the (default group's) learning rate of each sweep step.
    losses
        the loss of each sweep step's batch, computed before that step's update.
    smoothed_losses
        the debiased EMA of ``losses`` (NaN after a non-finite loss); fastai's curve, on which
        ``valley``, ``steep`` and ``minimum`` are read.
    suggestion
        the recommended lr: the verified candidate whose short run ended with the lowest loss
        (``suggestion_method == "verified"``), or, when verification is off or could not run, the lr
        at the lowest point of the median-smoothed raw loss divided by 3 (``"curve"``). None when
        the sweep has too few points.
    suggestion_index
        the sweep step whose lr is nearest the suggestion (for plots).
    suggestion_method
        ``"verified"``, ``"curve"`` or None.
    candidates
        ``{lr: score}`` of the verification (the mean loss over the second half of each run; inf for
        a run that blew up).
    group_lrs
        the suggestion for every parameter group, ordered as ``optimizer.group_values("lr")``: each
        group keeps its ratio to the default lr (pass to ``optimizer.set_group_values("lr", ...)``).
    valley
        fastai's ``valley`` (its ``SuggestionMethod.Valley``, the default of ``Learner.lr_find``):
        on the smoothed losses without the first ``skip_start`` and last ``skip_end`` points, the
        longest decreasing run found by fastai's O(n^2) scan, then the point
        ``int(d / 3) + int(d / 6)`` steps into it (``d`` its length).
    steep
        fastai's ``steep``: the lr where the forward difference of the smoothed loss against
        ``log(lr)`` is most negative (same points).
    minimum
        fastai's ``minimum``: one tenth of the lr at the lowest smoothed loss (same points);
        ``minimum_index`` is that lowest point.
    stop_reason
        ``"completed"``, ``"diverged"`` (the smoothed loss above ``diverge_factor`` times its best,
        or two raw losses in a row above it), ``"non-finite loss"``, ``"non-finite gradient"`` (the
        optimizer's ``nonfinite="raise"``) or ``"batches exhausted"``.
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
    suggestion_method: Optional[str] = None
    candidates: Dict[float, float] = field(default_factory=dict)
    group_lrs: Optional[List[float]] = None
    steep: Optional[float] = None
    steep_index: Optional[int] = None
    minimum: Optional[float] = None
    minimum_index: Optional[int] = None

    @property
    def diverged(self) -> bool:
        """True when the sweep stopped because the loss blew up."""
        return self.stop_reason in ("diverged", "non-finite loss", "non-finite gradient")

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-ready data (non-finite numbers become None)."""

        def clean(values: Any) -> List[Optional[float]]:
            return [float(v) if math.isfinite(v) else None for v in values]

        return {"lrs": clean(self.lrs), "losses": clean(self.losses), "smoothed_losses": clean(self.smoothed_losses),
                "suggestion": self.suggestion, "suggestion_index": self.suggestion_index,
                "suggestion_method": self.suggestion_method,
                "candidates": [{"lr": lr, "score": s if math.isfinite(s) else None}
                               for lr, s in sorted(self.candidates.items())],
                "group_lrs": self.group_lrs, "valley": self.valley, "valley_index": self.valley_index,
                "steep": self.steep, "steep_index": self.steep_index, "minimum": self.minimum,
                "minimum_index": self.minimum_index, "stop_reason": self.stop_reason,
                "settings": dict(self.settings)}

    def __repr__(self) -> str:
        # The arrays would bury the answer; a person asking for the result wants the lr to use.
        def g(value: Optional[float]) -> str:
            return "None" if value is None else f"{value:.3g}"

        return (f"LRFindResult(suggestion={g(self.suggestion)} ({self.suggestion_method or 'none'}), "
                f"valley={g(self.valley)}, steep={g(self.steep)}, minimum={g(self.minimum)}, "
                f"{len(self.lrs)} steps, stop_reason={self.stop_reason!r})")

    def _marks(self) -> List[Tuple[str, float]]:
        """``(name, lr)`` of each value the plot marks, the one to use first:
        ``"suggestion"`` and fastai's ``"valley"``, ``"steep"`` and
        ``"minimum"`` (those that exist)."""
        return [(name, float(lr)) for name, lr in (("suggestion", self.suggestion), ("valley", self.valley),
                                                   ("steep", self.steep), ("minimum", self.minimum))
                if lr is not None and math.isfinite(lr)]

    def plot(self, path: Optional[str] = None, *, ax: Any = None, show_raw: bool = True) -> Any:
        """Loss against lr on a log axis; the suggestion (the lr to use) and
        fastai's valley, steep and minimum/10 marked and named with their values.

        With ``path`` the figure is written there (PNG by the extension) and
        the path is returned; with ``ax`` it is drawn on that matplotlib axes;
        otherwise a new ``matplotlib.figure.Figure`` is returned. Needs the
        ``plot`` extra (matplotlib); uses no global pyplot state.
        """
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError as err:
            raise ImportError(f"LRFindResult.plot needs matplotlib: {install_hint('plot')}") from err
        fig = None
        if ax is None:
            fig = Figure(figsize=(7.5, 4.8), layout="constrained")
            FigureCanvasAgg(fig)  # Agg: no window, no pyplot state, and a renderer to place the legend with
            ax = fig.add_subplot()
        if show_raw:
            ax.plot(self.lrs, self.losses, color="0.75", linewidth=1, label="loss (each batch)")
        ax.plot(self.lrs, self.smoothed_losses, color="C0", linewidth=2, label="smoothed loss")
        styles = {"suggestion": ("o", "C3", 10), "valley": ("D", "C2", 7), "steep": ("^", "C1", 8),
                  "minimum": ("s", "C4", 7)}
        names = {"suggestion": f"use this: suggestion ({self.suggestion_method or 'no method'})",
                 "valley": "valley (fastai's default)", "steep": "steep (fastai)", "minimum": "minimum / 10 (fastai)"}
        marked = []
        finite_at = np.flatnonzero(np.isfinite(self.smoothed_losses))
        for name, lr in self._marks():
            if not finite_at.size or lr <= 0:
                continue
            # the curve's point nearest the lr (on the log axis): minimum/10 lies a decade left of its point
            index = int(finite_at[np.argmin(np.abs(np.log(self.lrs[finite_at] / lr)))])
            y = float(self.smoothed_losses[index])
            marked.append(y)
            marker, color, size = styles[name]
            if name == "suggestion":  # the one to use stands out: a line through the whole panel
                ax.axvline(lr, color=color, lw=1.2, ls="--", alpha=0.8, zorder=1)
            ax.plot([lr], [y], marker, color=color, markersize=size, mec="black", mew=0.6, ls="none", zorder=5,
                    label=f"{names[name]}: {lr:.3g}")
        ax.set_xscale("log")
        finite = self.smoothed_losses[np.isfinite(self.smoothed_losses)]
        if finite.size:  # the blow-up at the end would flatten the interesting part
            shown = np.concatenate([finite, self.losses[np.isfinite(self.losses)]]) if show_raw else finite
            low = float(min(shown.min(), *marked)) if marked else float(shown.min())
            # every marker is inside: a suggestion past the curve's start is still shown
            high = float(max(finite[0], np.median(finite), *marked))
            # at least 0.1% of the loss: a flat curve's rounding noise is not worth the whole axis
            pad = max(0.1 * (high - low), 1e-3 * abs(high)) or 1.0
            ax.set_ylim(low - pad, high + 3 * pad)
        ax.set_xlabel("learning rate (log scale)")
        ax.set_ylabel("loss")
        use = "" if self.suggestion is None else f": use lr {self.suggestion:.3g}"
        ax.set_title(f"LR range test ({len(self.lrs)} steps, {self.stop_reason}){use}")
        ax.grid(True, which="both", alpha=0.3)
        legend = ax.legend(fontsize=8.5)
        if fig is not None:
            from ..train.plotting import _place_legend

            _place_legend(legend, [ax])  # a spot clear of the curves, not "best"'s least-bad overlap
        if path is not None:
            from .._files import save_figure  # atomic: a failed save leaves the old file

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


def _fastai_window(n_points: int, skip_start: int, skip_end: int) -> Optional[Tuple[int, int]]:
    """The points fastai's rules read: ``[skip_start : n - skip_end]`` (fastai
    slices ``[num_it // 10 : -5]``); None with fewer than 2 points left."""
    stop = n_points - skip_end
    return (skip_start, stop) if stop - skip_start >= 2 else None


def fastai_valley(losses: np.ndarray) -> int:
    """fastai's ``valley`` (fastai/callback/schedule.py), index into ``losses``.

    ``lds[i]`` is the length of the longest strictly decreasing subsequence
    ending at ``i`` (an O(n^2) scan); ``max_end`` the first ``i`` reaching the
    longest, ``max_start = max_end - lds[max_end]``; the answer is
    ``max_start + int(d / 3) + int(d / 3 / 2)`` with ``d = max_end - max_start``.
    Kept exactly, including its quirks (``max_start`` is ``max_end`` minus
    the run's length, one before its first point when the run is contiguous;
    the run need not be contiguous; an index of -1 means the last point, as
    Python indexing reads it in fastai), so the number means what it means
    in fastai.
    """
    n = len(losses)
    lds = [1] * n
    max_start = max_end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    # max_start can be -1 (a run of 2 from index 0); fastai's lrs[-1] then means the last point
    return idx % n if n else 0


def fastai_steep(lrs: np.ndarray, losses: np.ndarray) -> int:
    """fastai's ``steep``: argmin of ``diff(loss) / diff(log lr)`` (the forward difference)."""
    return int(np.argmin(np.diff(losses) / np.diff(np.log(lrs))))


def _median_smooth(losses: np.ndarray, half_width: int) -> np.ndarray:
    """A centred running median of ``log(loss)`` (windows shrink at the ends).

    Why a median of the raw losses, not the EMA: the EMA lags ~1 / (1 - b)
    = 50 steps, four decades of lr in a default sweep, so its minimum sits
    far past the lr that produced it; a centred median has no lag and
    ignores single noisy batches."""
    logs = np.log(np.maximum(losses, np.finfo(float).tiny)) if np.all(losses > 0) else np.asarray(losses, float)
    n = len(logs)
    return np.array([np.median(logs[max(0, i - half_width):i + half_width + 1]) for i in range(n)])


def _curve_top(lrs: np.ndarray, losses: np.ndarray) -> int:
    """Index of the lowest point of the median-smoothed raw loss (half a
    decade wide, at least 5 points): where the sweep stopped improving."""
    per_decade = (len(lrs) - 1) / max(math.log10(lrs[-1] / lrs[0]), 1e-12)
    return int(np.argmin(_median_smooth(losses, max(2, int(round(0.25 * per_decade))))))


_MAX_STEPS = 1_000_000


def check_settings(*, start_lr: float, end_lr: float, num_steps: int, smoothing: float = 0.98,
                   diverge_factor: float = 4.0, skip_start: int = 10, skip_end: int = 5,
                   verify_steps: int = 60) -> Dict[str, Any]:
    """[`lr_find`][fastadapt.lr_find]'s sweep arguments, checked (the message names the
    argument); the command line calls it before it loads any data."""
    start = real("start_lr", start_lr, low=0.0, low_open=True)
    end = real("end_lr", end_lr, low=0.0, low_open=True)
    if end <= start:
        raise ValueError(f"end_lr={end_lr!r} must be > start_lr={start_lr!r}")
    verify = integer("verify_steps", verify_steps, 0)
    if verify == 1:
        raise ValueError("verify_steps=1 must be 0 (no verification) or >= 2")
    for name, value in (("num_steps", num_steps), ("verify_steps", verify_steps)):
        # A typo of a few digits would otherwise run for days.
        if isinstance(value, numbers.Integral) and value > _MAX_STEPS:
            raise ValueError(f"{name}={value!r} must be <= {_MAX_STEPS:,}")
    return {"start_lr": start, "end_lr": end, "num_steps": integer("num_steps", num_steps, 2),
            "smoothing": real("smoothing", smoothing, low=0.0, high=1.0, high_open=True),
            "diverge_factor": real("diverge_factor", diverge_factor, low=1.0, low_open=True),
            "skip_start": integer("skip_start", skip_start, 0), "skip_end": integer("skip_end", skip_end, 0),
            "verify_steps": verify}


# Candidates: the curve's top times 10 ** (k / 2), k = 1 .. -4 (3.2x above it
# to 100x below: the best lr for a longer run lay 0.04x .. 12x from the top on
# the benchmark's curves), then the two half-steps around the winner.
_CANDIDATE_EXPONENTS = (1, 0, -1, -2, -3, -4)
_CANDIDATE_STEP = math.sqrt(10.0)


def lr_find(optimizer: Any, params: Any, loss_and_grad: Callable[[Any, Any], Tuple[float, Any]],
            batches: Iterable[Any], *, start_lr: float = 1e-7, end_lr: float = 10.0, num_steps: int = 100,
            smoothing: float = 0.98, diverge_factor: float = 4.0, skip_start: int = 10,
            skip_end: int = 5, verify_steps: int = 60) -> LRFindResult:
    """Run the learning-rate range test and suggest a learning rate.

    Sweep (docs/algorithms.md): step ``k`` (0-based) uses
    ``lr_k = start_lr * (end_lr / start_lr) ** (k / (num_steps - 1))`` for
    the default group and ``lr_k * base_g / base_0`` for every ``overrides``
    group that sets its own lr (``base`` = ``optimizer.group_values("lr")``
    before the sweep: each group moves relative to its own base, as torch's
    schedulers move param groups), computes
    ``loss, grads = loss_and_grad(params, batch)`` on the next batch and
    updates. The loss is smoothed by a debiased EMA
    (``avg = b * avg + (1 - b) * loss``, ``smooth = avg / (1 - b ** (k + 1))``,
    ``b = smoothing``). The sweep stops early when the loss is not finite, or
    when ``smooth > diverge_factor * best smooth``, or when two raw losses
    in a row exceed that bound: the EMA lags ~50 steps, so a blow-up in
    the raw losses is caught where it happens (for a negative best the
    bound is ``best + (diverge_factor - 1) * |best|``).

    Verification: let ``top`` be the lr at the lowest point of a centred
    running median of the raw log-losses (half a decade wide). Candidates
    are ``top * 10 ** (k / 2)`` for ``k = 1, 0, -1, -2, -3, -4`` that lie
    in the swept range below the point where the sweep stopped. Each is run
    for ``verify_steps`` steps from the starting params and optimizer state
    (a re-iterable ``batches`` restarts, so all see the same batches) and
    scored by its mean loss over the second half of its run; a run whose
    loss goes non-finite or twice in a row above ``diverge_factor`` times
    its first loss scores inf and stops. The two half-steps (``10 ** 0.25``)
    around the best are then run too, and the best of all is the
    suggestion. Verification costs up to ``8 * verify_steps`` extra steps;
    ``verify_steps=0`` turns it off (the suggestion is then ``top / 3``), as
    does a one-shot iterator that runs out during it.

    Afterwards every param array holds byte for byte what it held before
    (copied back with ``np.copyto``, also when ``loss_and_grad`` raises),
    and the optimizer's state, step count, counters and hyperparameters
    (every group's lr) are restored through its ``state_dict`` (a fresh
    optimizer comes back fresh).

    Parameters
    ----------
    optimizer
        any fastadapt optimizer.
    params
        the parameter tree (arrays updated in place during the sweep).
    loss_and_grad
        ``(params, batch) -> (loss, grads)``.
    batches
        an iterable of batches, restarted when it runs out (a one-shot iterator ends the sweep
        instead). For a full-batch problem pass ``itertools.repeat(batch)``.
    start_lr
        the default group's lr at the first step of the sweep (0 < start_lr < end_lr).
    end_lr
        the default group's lr at the last step of the sweep.
    num_steps
        steps in the sweep (>= 2).
    smoothing
        the EMA factor ``b`` in [0, 1).
    diverge_factor
        the blow-up bound, a multiple of the best smoothed loss (> 1).
    skip_start
        points at the start that fastai's rules (``valley``, ``steep``, ``minimum``) ignore, as
        fastai's ``[num_it // 10 : -5]``.
    skip_end
        points at the end that those rules ignore.
    verify_steps
        steps of each verification run (0: no verification).

    Returns
    -------
    LRFindResult
        An [`LRFindResult`][fastadapt.LRFindResult].

    Examples
    --------
        result = fa.lr_find(fa.SGD(momentum=0.9), params, loss_and_grad, batches)
        opt.set_group_values("lr", result.group_lrs)
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
                              diverge_factor=diverge_factor, skip_start=skip_start, skip_end=skip_end,
                              verify_steps=verify_steps)
    start, end, n, beta = settings["start_lr"], settings["end_lr"], settings["num_steps"], settings["smoothing"]
    paths, leaves = array_leaves(params)
    for path, leaf in zip(paths, leaves):
        if not leaf.flags.writeable:  # before anything moves: the sweep could not run, nor put it back
            raise ValueError(f"params{f'[{path!r}]' if path else ''} is read-only; lr_find trains in place, "
                             f"so pass writeable arrays: {read_only(leaf)}")

    saved_params = [leaf.copy() for leaf in leaves]
    saved_state = optimizer.state_dict()
    # A state loaded for other parameters fails now, before the sweep moves
    # anything (load_state_dict checks keys, shapes and dtypes against params).
    optimizer.load_state_dict(saved_state, params=params)
    saved_last = (optimizer.last_grad_norm, optimizer.last_nonfinite_count)
    was_fresh = saved_state["step"] == 0 and not saved_state["state"]
    base_lrs = [float(v) for v in optimizer.group_values("lr")]
    # Each group keeps its ratio to the default group; a default lr of 0 has no ratio to keep.
    ratios = [b / base_lrs[0] if base_lrs[0] > 0 else 1.0 for b in base_lrs]

    def set_lr(lr: float) -> None:
        optimizer.set_group_values("lr", [lr * r for r in ratios])

    def restore() -> None:
        # The optimizer first, then the params: each part is put back even if
        # the other fails, and the first failure is raised.
        try:
            if was_fresh:  # unbind the structure the sweep's first update bound
                optimizer.reset()
            optimizer.load_state_dict(saved_state)  # every group's hyperparameters included
            optimizer.last_grad_norm, optimizer.last_nonfinite_count = saved_last
        finally:
            for leaf, saved in zip(leaves, saved_params):
                np.copyto(leaf, saved)

    candidates: Dict[float, float] = {}
    restartable = iter(batches) is not batches
    try:
        stream = _batch_stream(batches)
        lrs, losses, smoothed, reason = _sweep(set_lr, optimizer, params, loss_and_grad, stream,
                                               start, end, n, beta, settings["diverge_factor"])
        if settings["verify_steps"] and _finite_prefix(np.array(losses, float)) >= 3:
            candidates = _verify(set_lr, optimizer, params, loss_and_grad, batches, stream, restartable, restore,
                                 np.array(lrs), np.array(losses), reason, settings)
    finally:
        restore()

    lr_arr, loss_arr, smooth_arr = np.array(lrs, float), np.array(losses, float), np.array(smoothed, float)
    finite = _finite_prefix(smooth_arr)
    suggestion, method = None, None
    if candidates and any(math.isfinite(s) for s in candidates.values()):
        suggestion, method = min(candidates, key=lambda lr: (candidates[lr], -lr)), "verified"
    elif finite >= 3:
        suggestion, method = float(lr_arr[_curve_top(lr_arr[:finite], loss_arr[:finite])]) / 3.0, "curve"
    # fastai's rules, on fastai's window of the smoothed curve
    valley = steep = minimum = None
    window = _fastai_window(finite, settings["skip_start"], settings["skip_end"])
    if window is not None:
        lo, hi = window
        valley = lo + fastai_valley(smooth_arr[lo:hi])
        steep = lo + fastai_steep(lr_arr[lo:hi], smooth_arr[lo:hi])
        minimum = lo + int(np.argmin(smooth_arr[lo:hi]))
    suggestion_index = None
    if suggestion is not None and finite:
        suggestion_index = int(np.argmin(np.abs(np.log(lr_arr[:finite] / suggestion))))
    settings["optimizer"] = type(optimizer).__name__
    settings["base_group_lrs"] = base_lrs

    def at(index: Optional[int], scale: float = 1.0) -> Optional[float]:
        return None if index is None else float(lr_arr[index]) * scale

    return LRFindResult(lrs=lr_arr, losses=loss_arr, smoothed_losses=smooth_arr, suggestion=suggestion,
                        suggestion_index=suggestion_index, valley=at(valley), valley_index=valley,
                        stop_reason=reason, settings=settings, suggestion_method=method, candidates=candidates,
                        group_lrs=None if suggestion is None else [suggestion * r for r in ratios],
                        steep=at(steep), steep_index=steep, minimum=at(minimum, 0.1), minimum_index=minimum)


def _divergence_bound(best: float, factor: float) -> float:
    """``factor * best`` (docs/algorithms.md) for ``best >= 0``; for a negative
    best that product lies below it, so the bound is ``best + (factor - 1) * |best|``."""
    return best * (factor if best >= 0 else 2.0 - factor)


def _sweep(set_lr: Callable[[float], None], optimizer: Any, params: Any,
           loss_and_grad: Callable[[Any, Any], Tuple[float, Any]], stream: Iterator[Any], start: float,
           end: float, n: int, beta: float, diverge_factor: float
           ) -> Tuple[List[float], List[float], List[float], str]:
    lrs: List[float] = []
    losses: List[float] = []
    smoothed: List[float] = []
    avg, best, raw_over = 0.0, math.inf, 0
    for k in range(n):
        batch = next(stream, _END)
        if batch is _END:
            return lrs, losses, smoothed, "batches exhausted"
        lr = start * (end / start) ** (k / (n - 1))
        set_lr(lr)
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
        if k > 0:
            bound = _divergence_bound(best, diverge_factor)
            # Two raw losses in a row, not one: a single bad batch is not a blow-up.
            raw_over = raw_over + 1 if loss > bound else 0
            if smooth > bound or raw_over >= 2:
                return lrs, losses, smoothed, "diverged"
        best = min(best, smooth)
        try:
            optimizer.update(params, grads)
        except FloatingPointError:  # nonfinite="raise": nothing was updated
            return lrs, losses, smoothed, "non-finite gradient"
    return lrs, losses, smoothed, "completed"


def _verify(set_lr: Callable[[float], None], optimizer: Any, params: Any,
            loss_and_grad: Callable[[Any, Any], Tuple[float, Any]], batches: Iterable[Any],
            stream: Iterator[Any], restartable: bool, restore: Callable[[], None], lrs: np.ndarray,
            losses: np.ndarray, reason: str, settings: Dict[str, Any]) -> Dict[float, float]:
    """Score candidate lrs by short runs; ``{}`` when a one-shot stream ran out."""
    finite = _finite_prefix(losses)
    top = float(lrs[_curve_top(lrs[:finite], losses[:finite])])
    # Only lrs the sweep survived: the step that diverged (and those after) are out.
    ceiling = float(lrs[finite - 1] if reason == "completed" else lrs[max(finite - 2, 0)])
    low = settings["start_lr"]
    steps, factor = settings["verify_steps"], settings["diverge_factor"]
    scores: Dict[float, float] = {}

    def run(lr: float) -> bool:
        restore()
        set_lr(lr)
        own = _batch_stream(batches) if restartable else stream
        seen: List[float] = []
        first, over = None, 0
        for _ in range(steps):
            batch = next(own, _END)
            if batch is _END:
                return False
            loss, grads = loss_and_grad(params, batch)
            loss = float(loss)
            if first is None:
                first = loss
            over = over + 1 if loss > _divergence_bound(first, factor) else 0
            if not math.isfinite(loss) or over >= 2:
                scores[lr] = math.inf     # blew up: no need to run it out
                return True
            seen.append(loss)
            try:
                optimizer.update(params, grads)
            except FloatingPointError:
                scores[lr] = math.inf
                return True
        # The second half: past the first steps' transient, averaged against batch noise.
        scores[lr] = float(np.mean(seen[len(seen) // 2:]))
        return True

    coarse = [top * _CANDIDATE_STEP ** k for k in _CANDIDATE_EXPONENTS]
    coarse = [lr for lr in coarse if low <= lr <= ceiling] or [min(max(top, low), ceiling)]
    for lr in coarse:
        if not run(lr):
            return {}
    best = min(scores, key=lambda lr: (scores[lr], -lr))
    if math.isfinite(scores[best]):
        for lr in (best * _CANDIDATE_STEP ** 0.5, best / _CANDIDATE_STEP ** 0.5):
            if low <= lr <= ceiling and not run(lr):
                return {}
    return scores


_END = object()
