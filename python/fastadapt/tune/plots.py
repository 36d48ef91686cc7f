"""Plots of tuning results (matplotlib, the ``plot`` extra).

Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas, so
no global pyplot state or display is touched; with a path the PNG is
written and the path returned, otherwise the Figure is.

What a person reads follows the project's one numbering (see
``fa.plot_history``): the x axis is the budget a trial has completed
(``history[i]["budget"]``; with epochs as the unit, "after epoch 9" stands
at x = 9), rungs and PBT generations are numbered from 1 (``rungs[k]["rung"]``
is the 0-based index, so rung ``k + 1``; a lineage entry's ``generation`` is
already the count of generations completed). Bracket ``s`` keeps the
Hyperband paper's name: it is a parameter (the halvings), not a position.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .._files import save_figure
from .._install import install_hint
from .status import COMPLETED, FAILED, STOPPED

if TYPE_CHECKING:
    from .results import TuneResult

__all__ = ["plot_rungs", "plot_population", "plot_budgets"]

PathLike = Union[str, "os.PathLike[str]"]

# A panel's size in inches: at dpi 110 about 500 x 390 pixels, large enough
# for 8-point tick labels, small enough that a grid of six fits a screen.
PANEL_WIDTH, PANEL_HEIGHT = 4.6, 3.5
LEGEND_ROW = 1.0  # inches under the panels for the shared legend, when no grid slot is free
OFF_SCALE_Y = 0.965  # where an evaluation beyond the y axis is marked, in axes fraction


# Algorithms whose trials all aim at max_resource, with what "stopped" means for them.
FULL_BUDGET = {"search": "stopped early", "median_stopping": "stopped by the median rule"}


def _new_figure(width: float, height: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(f"tuning plots need matplotlib: {install_hint('plot')}") from err
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _finish(figure: Any, path: Optional[PathLike]) -> Any:
    if path is None:
        return figure
    save_figure(figure, path, dpi=110)  # atomic: a crash mid-write leaves the old file, not half a PNG
    return os.fspath(path)


def _budget_label(unit: Optional[str], per_member: bool = False) -> str:
    # Budget is what a trial has completed, so x = b reads "after b units" as history.png's "epochs completed".
    each = " per member" if per_member else ""
    return f"budget: units completed{each}" if unit is None else f"{unit} completed{each} (budget)"


def _unit(unit: Optional[str]) -> str:
    return "units" if unit is None else unit


def _number(value: Any) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)


@dataclass
class _YScale:
    """The y axis of a metric: log or not, its limits, and the bound past
    which an evaluation is off the scale (drawn at the edge instead)."""

    log: bool = False
    limits: Optional[Tuple[float, float]] = None
    off_above: Optional[float] = None  # mode "min": a diverged loss is worse, so larger
    off_below: Optional[float] = None  # mode "max": a diverged accuracy is worse, so smaller

    def off_scale(self, value: float) -> bool:
        return ((self.off_above is not None and value > self.off_above)
                or (self.off_below is not None and value < self.off_below))


def _y_scale(values: Sequence[Any], mode: str) -> _YScale:
    """Limits that show the trials worth comparing. One diverged trial
    (a loss of 1e14) would stretch a log axis over 14 decades and squash
    every other curve into a line; so values far out on the worse side of
    the rest (beyond the upper quartile plus max(3 IQR, one decade) on a
    positive metric's log scale) are left off the axis and marked at its
    edge. The better side is never cut: the best evaluation is always in."""
    finite = np.array([float(v) for v in values if _number(v) and math.isfinite(v)], dtype=np.float64)
    if finite.size == 0:
        return _YScale()
    positive = bool(finite.min() > 0)
    t = np.log10(finite) if positive else finite
    q1, q3 = np.percentile(t, [25, 75])
    scale = 1.0 if positive else max(abs(q1), abs(q3), float(np.ptp(t[(t >= q1) & (t <= q3)])), 1e-12)
    reach = max(3.0 * (q3 - q1), scale)
    keep = t <= q3 + reach if mode == "min" else t >= q1 - reach
    kept = finite[keep]
    low, high = float(kept.min()), float(kept.max())
    log = positive and high / low > 5  # a log axis when the kept values span more than 5x
    out = _YScale(log=log)
    if not keep.all():
        out.off_above, out.off_below = (high, None) if mode == "min" else (None, low)
    if log:
        span = math.log10(high / low)
        pad = max(0.05 * span, 0.02)
        lo, hi = math.log10(low) - pad, math.log10(high) + pad
        # room at the worse edge for the off-scale marks
        if out.off_above is not None:
            hi += 0.1 * (hi - lo)
        if out.off_below is not None:
            lo -= 0.1 * (hi - lo)
        out.limits = (10 ** lo, 10 ** hi)
    else:
        span = high - low or max(abs(high), 1e-12) * 0.1
        lo, hi = low - 0.06 * span, high + 0.06 * span
        if out.off_above is not None:
            hi += 0.1 * (hi - lo)
        if out.off_below is not None:
            lo -= 0.1 * (hi - lo)
        out.limits = (lo, hi)
    return out


def _apply_y_scale(ax: Any, scale: _YScale) -> None:
    from ..train.plotting import _plain_log_ticks

    if scale.log:
        ax.set_yscale("log")
        low, high = scale.limits  # type: ignore[misc]
        _plain_log_ticks(ax, "y", few_decades=high / low < 100)
    if scale.limits is not None:
        ax.set_ylim(*scale.limits)


def _mark_off_scale(ax: Any, xs: Sequence[float], ys: Sequence[Any], scale: _YScale, color: str) -> Tuple[int, int]:
    """Marks, at the worse edge of the axis, the evaluations it cannot show:
    off the scale (a triangle) and non-finite (an x). Returns their counts."""
    edge = ax.get_xaxis_transform()  # x in data, y in axes fraction
    y = OFF_SCALE_Y if scale.off_below is None else 1 - OFF_SCALE_Y
    marker = "^" if scale.off_below is None else "v"
    off = [x for x, v in zip(xs, ys) if _number(v) and math.isfinite(v) and scale.off_scale(v)]
    bad = [x for x, v in zip(xs, ys) if not (_number(v) and math.isfinite(v))]
    if off:
        ax.plot(off, [y] * len(off), marker, ms=7, color=color, mec="black", mew=0.6, ls="none",
                transform=edge, zorder=6, clip_on=False)
    if bad:
        ax.plot(bad, [y] * len(bad), "x", ms=7, mew=1.8, color=color, ls="none", transform=edge, zorder=6,
                clip_on=False)
    return len(off), len(bad)


def _grid(n: int) -> Tuple[int, int, int]:
    """(rows, columns, empty slots) for ``n`` panels: at most three side by
    side, so a figure of many brackets grows downwards instead of into a
    strip of slivers."""
    columns = 1 if n == 1 else 2 if n in (2, 4) else 3
    rows = math.ceil(n / columns)
    return rows, columns, rows * columns - n


def _legend_axes(figure: Any, gridspec: Any, rows: int, columns: int, empty: int) -> Any:
    """An axes for the figure's one legend, outside every panel (so it can
    never cover a curve): the last free grid slot, else a row under the grid."""
    ax = figure.add_subplot(gridspec[rows - 1, columns - 1] if empty else gridspec[rows, :])
    ax.axis("off")
    return ax


def _handle(**style: Any) -> Any:
    from matplotlib.lines import Line2D

    return Line2D([], [], **style)


def _rung_axis(ax: Any, rungs: Sequence[Dict[str, Any]]) -> None:
    """Rung numbers (from 1) on top, over the budgets they train to."""
    if not rungs:
        return
    top = ax.secondary_xaxis("top")
    top.set_xticks([r["resource"] for r in rungs], labels=[str(r["rung"] + 1) for r in rungs])
    top.xaxis.set_minor_locator(_null_locator())
    top.tick_params(labelsize=8, length=3, pad=1)
    top.set_xlabel("rung", fontsize=8, labelpad=2)


def _null_locator() -> Any:
    from matplotlib import ticker

    return ticker.NullLocator()


def _budget_ticks(ax: Any, budgets: Sequence[float], log_x: bool) -> None:
    """Ticks at the rungs' budgets, as plain numbers (1, 3, 9, 27): the
    values a person looks for, not 10^0 and 10^1."""
    from matplotlib import ticker

    if log_x:
        ax.set_xscale("log")
    if budgets:
        # every budget when they are few (the rungs), else a tick every few (a curve of 27 epochs)
        ax.xaxis.set_major_locator(ticker.FixedLocator(sorted(budgets)) if len(budgets) <= 10 else
                                   ticker.MaxNLocator(nbins=9, integer=True))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_locator(ticker.NullLocator())
        low, high = min(budgets), max(budgets)
        if log_x:
            ax.set_xlim(low / 1.35, high * 1.35)
        else:
            ax.set_xlim(0, high * 1.04)


def plot_rungs(result: "TuneResult", path: Optional[PathLike] = None, *, log_x: Optional[bool] = None,
               unit: Optional[str] = None, title: Optional[str] = None) -> Any:
    """Metric against budget for every trial, one panel per bracket (grid of
    at most three columns), one legend outside the panels. ``unit``: what
    one budget unit is ("epochs"), for the labels."""
    groups: Dict[Any, List[Any]] = {}
    for trial in result.trials:
        groups.setdefault(trial.bracket, []).append(trial)
    keys = sorted(groups, key=lambda b: -1 if b is None else -b) or [None]  # bracket s_max first, as in the paper
    rows, columns, empty = _grid(len(keys))
    width = 6.4 if columns == 1 else PANEL_WIDTH * columns
    height = PANEL_HEIGHT * rows + (0 if empty else LEGEND_ROW) + 0.5  # + the two title lines
    figure = _new_figure(width, height)
    gridspec = figure.add_gridspec(rows + (0 if empty else 1), columns,
                                   height_ratios=[PANEL_HEIGHT] * rows + ([] if empty else [LEGEND_ROW]))
    axes: List[Any] = []
    for i in range(len(keys)):
        share = axes[0] if axes else None
        axes.append(figure.add_subplot(gridspec[i // columns, i % columns], sharex=share, sharey=share))

    best = result.best_trial
    # Full-budget search (Search, MedianStopping): no rungs; "the top rung" is the full budget.
    full_budget = not result.rungs and result.algorithm in FULL_BUDGET
    if log_x is None:  # rungs grow geometrically, a full-budget curve's evaluations evenly
        log_x = not full_budget
    scale = _y_scale([h["metric"] for t in result.trials for h in t.history], result.mode)
    top_resource = result.settings.get("max_resource")
    budgets = sorted({r["resource"] for r in result.rungs}) or sorted(
        {h["budget"] for t in result.trials for h in t.history})
    # Scales before anything is drawn: a rung axis made on a linear x would keep linear ticks.
    _budget_ticks(axes[0], budgets, log_x)
    _apply_y_scale(axes[0], scale)
    counts = {"top": 0, "stopped": 0, "unfinished": 0, "failed": 0, "off": 0, "nonfinite": 0}
    for index, (ax, key) in enumerate(zip(axes, keys)):
        for trial in groups.get(key, []):
            xs = [h["budget"] for h in trial.history]
            ys = [h["metric"] for h in trial.history]
            if not xs:
                continue
            style: Dict[str, Any]
            if best is not None and trial.trial_id == best.trial_id:
                style = {"color": "tab:red", "lw": 2.2, "zorder": 4}
            elif trial.status == COMPLETED:
                style, counts["top"] = {"color": "tab:blue", "lw": 1.2, "alpha": 0.9, "zorder": 3}, counts["top"] + 1
            elif trial.status == FAILED:
                style, counts["failed"] = {"color": "black", "lw": 0.8, "ls": ":", "zorder": 2}, counts["failed"] + 1
            elif trial.status == STOPPED:
                style, counts["stopped"] = {"color": "0.6", "lw": 0.8, "alpha": 0.6, "zorder": 1}, \
                    counts["stopped"] + 1
            else:
                style, counts["unfinished"] = {"color": "0.6", "lw": 0.8, "ls": "--", "alpha": 0.6, "zorder": 1}, \
                    counts["unfinished"] + 1
            ax.plot(xs, ys, marker="o", ms=3, **style)
            if full_budget and trial.status == STOPPED and _number(ys[-1]) and math.isfinite(ys[-1]):
                # where the early-stopping rule ended it (with rungs, the rung lines show it)
                ax.plot([xs[-1]], [ys[-1]], marker="X", ms=7, color="0.45", mec="white", mew=0.5, ls="none",
                        zorder=2)
            off, bad = _mark_off_scale(ax, xs, ys, scale, style["color"])
            counts["off"] += off
            counts["nonfinite"] += bad
        if best is not None and best.bracket == key:
            ax.plot([result.best_budget], [result.best_metric], marker="*", ms=14, color="tab:red", mec="white",
                    mew=0.8, zorder=5, ls="none")
        own = sorted((r for r in result.rungs if r.get("bracket") == key), key=lambda r: r["rung"])
        for r in own:
            ax.axvline(r["resource"], color="0.85", lw=0.6, zorder=0)
        if len(keys) > 1:  # one panel: the figure's title says it all
            name = "all trials" if key is None else f"bracket s={key}"
            ax.set_title(f"{name}: {len(groups.get(key, []))} configs", fontsize=10)
        if index % columns == 0:
            ax.set_ylabel(f"{result.metric} ({'lower' if result.mode == 'min' else 'higher'} is better)")
        if index + columns >= len(keys):  # nothing under it: the bottom of its column
            ax.set_xlabel(_budget_label(unit))
        ax.grid(alpha=0.3, which="both", axis="y")
        _rung_axis(ax, own)
    _apply_y_scale(axes[0], scale)  # again: plotting autoscaled the shared y axis

    handles, labels = [], []
    if best is not None:
        reached = ("trained to the full budget" if full_budget else "reached the top rung") \
            if best.status == COMPLETED else \
            f"{best.status} after {best.budget} {_unit(unit)}"
        handles += [_handle(color="tab:red", lw=2.2, marker="o", ms=3),
                    _handle(color="tab:red", marker="*", ms=12, ls="none", mec="white")]
        labels += [f"trial {best.trial_id}, the best ({reached})",
                   f"best evaluation: {result.best_metric:.4g} after {result.best_budget} {_unit(unit)}"]
    top_label, stopped_label = "reached the top rung", "stopped early"
    if full_budget:
        top_label = f"trained to the full budget ({top_resource} {_unit(unit)})"
        stopped_label = FULL_BUDGET[result.algorithm]
    stopped_handle = _handle(color="0.6", lw=0.8, marker="o", ms=3)
    if full_budget:
        stopped_handle = _handle(color="0.6", lw=0.8, marker="X", ms=7, mfc="0.45", mec="white")
    for count, handle, label in (
            (counts["top"], _handle(color="tab:blue", lw=1.2, marker="o", ms=3), top_label),
            (counts["stopped"], stopped_handle, stopped_label),
            (counts["unfinished"], _handle(color="0.6", lw=0.8, ls="--", marker="o", ms=3), "not finished"),
            (counts["failed"], _handle(color="black", lw=0.8, ls=":", marker="o", ms=3), "failed"),
            (counts["off"], _handle(marker="^" if scale.off_below is None else "v", color="0.5", mec="black",
                                    ls="none", ms=7),
             f"off the scale, beyond {_g(scale.off_above, scale.off_below)} (diverged)"),
            (counts["nonfinite"], _handle(marker="x", color="0.3", ls="none", ms=7, mew=1.8),
             "non-finite metric (NaN or inf)")):
        if count:  # only what the panels show: no key for a color no trial has
            handles.append(handle)
            what = "evaluation" if handle.get_linestyle() in ("None", "none", "") else "trial"
            labels.append(f"{label}: {count} {what}{'s' if count > 1 else ''}")
    legend_ax = _legend_axes(figure, gridspec, rows, columns, empty)
    if handles:
        legend_ax.legend(handles, labels, loc="center", fontsize=8.5, frameon=False,
                         ncol=1 if empty else min(len(handles), 2 if columns == 1 else 3))
    figure.suptitle(title or _rungs_title(result, len(keys), top_resource, unit), fontsize=10)
    return _finish(figure, path)


def _g(*values: Optional[float]) -> str:
    value = next((v for v in values if v is not None), None)
    return "?" if value is None else f"{value:.3g}"


def _top_rung_text(result: "TuneResult", top_resource: Any, unit: Optional[str]) -> str:
    # Counted, never assumed: a short ASHA run may stop with nobody at the top rung.
    reached = result.count(COMPLETED)
    top = "the full budget" if not result.rungs and result.algorithm in FULL_BUDGET else "the top rung"
    where = f"{top} ({top_resource} {_unit(unit)})" if top_resource is not None else top
    if reached == 0:
        return f"no trial reached {where}"
    return f"{reached} reached {where}"


def _rungs_title(result: "TuneResult", panels: int, top_resource: Any, unit: Optional[str]) -> str:
    brackets = f" in {panels} brackets" if panels > 1 else ""
    first = f"{result.algorithm}: {len(result.trials)} trials{brackets}; {_top_rung_text(result, top_resource, unit)}"
    if result.best_trial is None:
        return first + "\nno trial reported a rankable metric"
    return (first + f"\nbest {result.metric} {result.best_metric:.4g}: trial {result.best_trial.trial_id} after "
                    f"{result.best_budget} {_unit(unit)}")


def _generation_ends(result: "TuneResult") -> List[int]:
    """The budget at which each synchronous PBT generation ended (generation
    ``g``, from 1, at index ``g - 1``); empty for asynchronous PBT."""
    settings = result.settings
    interval, top = settings.get("perturbation_interval"), settings.get("max_resource")
    if not settings.get("synchronous", True) or not isinstance(interval, int) or not isinstance(top, int):
        return []
    return [min(g * interval, top) for g in range(1, math.ceil(top / interval) + 1)]


def plot_population(result: "TuneResult", path: Optional[PathLike] = None, *,
                    names: Optional[Sequence[str]] = None, unit: Optional[str] = None,
                    title: Optional[str] = None) -> Any:
    """PBT: one panel per hyperparameter (value over budget, a step line per
    member, exploits marked) and one of the metric; generations numbered
    from 1 on top; the members' legend under the panels."""
    numeric = []
    for name in result.trials[0].config if result.trials else []:
        values = [t.config.get(name) for t in result.trials]
        if all(_number(v) for v in values):
            numeric.append(name)
    shown = list(names) if names is not None else [
        n for n in numeric if len({repr(e["config"].get(n)) for t in result.trials for e in t.config_history}) > 1]
    panels = len(shown) + 1
    colored = len(result.trials) <= 10  # more members than colors: a legend could not tell them apart
    metrics = [h["metric"] for t in result.trials for h in t.history]
    scale = _y_scale(metrics, result.mode)
    finite = [m for m in metrics if _number(m) and math.isfinite(m)]
    # one row each: exploit, best, off the scale, non-finite
    notes = 1 + (result.best_trial is not None) + any(scale.off_scale(m) for m in finite) + \
        (len(finite) < len(metrics))
    member_rows = math.ceil(len(result.trials) / 4) if colored else 0
    band = 0.22 * member_rows + 0.2 * notes + 0.25  # inches under the panels for the legends
    height = 2.2 * panels + band + 0.4
    figure = _new_figure(7.0, height)
    # The legends go in a band the layout leaves free under the panels (figure legends, not axes:
    # figure.axes stays the panels), so they never cover a curve.
    figure.get_layout_engine().set(rect=(0, band / height, 1, 1 - band / height))
    gridspec = figure.add_gridspec(panels, 1)
    axes: List[Any] = []
    for i in range(panels):
        axes.append(figure.add_subplot(gridspec[i, 0], sharex=axes[0] if axes else None))
    colors = [f"C{i % 10}" for i in range(len(result.trials))]
    color_of = {t.trial_id: c for t, c in zip(result.trials, colors)}
    # PB2: the schedule found is the best member's; drawn bold, over the others.
    best_id = result.best_trial.trial_id if result.algorithm == "pb2" and result.best_trial is not None else None

    def width(trial: Any) -> Dict[str, Any]:
        return {"lw": 2.6, "alpha": 1.0, "zorder": 3} if trial.trial_id == best_id else {"lw": 1.2, "alpha": 0.85}
    for ax, name in zip(axes, shown):
        positive = True
        for trial, color in zip(result.trials, colors):
            points = trial.config_history
            if not points:
                continue
            xs = [p["budget"] for p in points] + [trial.budget]
            ys = [p["config"].get(name) for p in points]
            ys.append(ys[-1])
            positive = positive and all(_number(y) and y > 0 for y in ys)
            ax.step(xs, ys, where="post", color=color, **width(trial))
        for event in result.lineage:
            if event["donor"] is not None:
                ax.plot([event["budget"]], [event["new_config"].get(name)], marker="v", ms=5,
                        color=color_of.get(event["member"], "0.3"), zorder=4)
        ax.set_ylabel(name)
        if positive and result.space.get(name, "").startswith("loguniform"):
            from ..train.plotting import _plain_log_ticks

            ax.set_yscale("log")
            _plain_log_ticks(ax, "y")
        ax.grid(alpha=0.3)
        ax.tick_params(labelbottom=False)
    metric_ax = axes[-1]
    off = bad = 0
    for trial, color in zip(result.trials, colors):
        xs = [h["budget"] for h in trial.history]
        ys = [h["metric"] for h in trial.history]
        metric_ax.plot(xs, ys, color=color, marker=".", ms=4, **width(trial))
        o, b = _mark_off_scale(metric_ax, xs, ys, scale, color)
        off, bad = off + o, bad + b
    if result.best_trial is not None:
        metric_ax.plot([result.best_budget], [result.best_metric], "*", ms=13,
                       color=color_of[result.best_trial.trial_id], mec="black", mew=0.6, zorder=5)
    _apply_y_scale(metric_ax, scale)
    metric_ax.set_ylabel(result.metric)  # its direction is in the title
    metric_ax.set_xlabel(_budget_label(unit, per_member=True))
    metric_ax.grid(alpha=0.3)
    ends = _generation_ends(result)
    if ends:
        step = max(1, math.ceil(len(ends) / 12))  # at most about 12 numbers: more would run together
        top = axes[0].secondary_xaxis("top")
        top.set_xticks([ends[g - 1] for g in range(step, len(ends) + 1, step)],
                       labels=[str(g) for g in range(step, len(ends) + 1, step)])
        top.xaxis.set_minor_locator(_null_locator())
        top.tick_params(labelsize=8, length=3, pad=1)
        top.set_xlabel("generations completed", fontsize=8, labelpad=2)
        for ax in axes:
            for end in ends:
                ax.axvline(end, color="0.9", lw=0.6, zorder=0)

    handles, labels = [], []
    if colored:
        handles += [_handle(color=c, lw=3.0 if t.trial_id == best_id else 1.5) for t, c in zip(result.trials, colors)]
        labels += [f"member {t.trial_id}" + (" (best)" if t.trial_id == best_id else "") for t in result.trials]
    handles.append(_handle(marker="v", color="0.3", ls="none", ms=6))
    labels.append("exploit: copies a better member's weights and hyperparameters (then explores)")
    if result.best_trial is not None:
        handles.append(_handle(marker="*", color="0.3", mec="black", ls="none", ms=11))
        labels.append(f"best evaluation: {result.best_metric:.4g}, member {result.best_trial.trial_id} "
                      f"after {result.best_budget} {_unit(unit)}")
    if off:
        handles.append(_handle(marker="^" if scale.off_below is None else "v", color="0.5", mec="black", ls="none",
                               ms=7))
        labels.append(f"off the scale, beyond {_g(scale.off_above, scale.off_below)} (diverged): {off} "
                      f"evaluation{'s' if off > 1 else ''}")
    if bad:
        handles.append(_handle(marker="x", color="0.3", ls="none", ms=7, mew=1.8))
        labels.append(f"non-finite metric (NaN or inf): {bad} evaluation{'s' if bad > 1 else ''}")
    # Under the panels, never over a curve: the members four to a row, then one row per note.
    members = len(colors) if colored else 0
    if members:
        figure.legend(handles[:members], labels[:members], loc="upper left", ncol=4, fontsize=8, frameon=False,
                      bbox_to_anchor=(0.01, band / height), borderaxespad=0.2)
    figure.legend(handles[members:], labels[members:], loc="lower left", ncol=1, fontsize=8, frameon=False,
                  bbox_to_anchor=(0.01, 0.0), borderaxespad=0.2)
    mode = "synchronous" if result.settings.get("synchronous", True) else "asynchronous"
    better = "lower" if result.mode == "min" else "higher"
    figure.suptitle(title or f"{result.algorithm.upper()} ({mode}), {len(result.trials)} members: hyperparameters "
                             f"and {result.metric} "
                             f"({better} is better) over {_unit(unit)} trained", fontsize=10)
    return _finish(figure, path)


def _branch_label(value: Any, index: int) -> str:
    """How a choice value reads on an axis: a conditional branch (a dict) by its first text constant."""
    if isinstance(value, dict):
        for v in value.values():
            if isinstance(v, str):
                return v
        return f"branch {index}"
    return f"{value:g}" if _number(value) else str(value)


def plot_budgets(result: "TuneResult", path: Optional[PathLike] = None, *, unit: Optional[str] = None,
                 title: Optional[str] = None) -> Any:
    """BOHB: every evaluated configuration per budget, one panel per
    hyperparameter (x: its value, on a log axis for log domains; y: the
    budget, one row per rung), coloured by metric, the best marked; the
    colour bar and notes beside and under the panels."""
    from matplotlib import cm, colors as mcolors

    from ..train.plotting import _plain_log_ticks
    from .space import lookup

    names = [n for n, r in result.space.items() if r.split("(", 1)[0] in ("uniform", "loguniform", "randint",
                                                                          "choice")]
    points = [(t, e["budget"], e["metric"], t.config_at(int(e["budget"]))) for t in result.trials
              for e in t.history]
    # A conditional choice's branches: a panel for each numeric value inside them ("optim/momentum"),
    # showing the evaluations whose config took that branch.
    log_names = {n for n in names if result.space[n].startswith("loguniform")}
    for name in list(names):
        inner: Dict[str, None] = {}
        for _, _, _, config in points:
            value = lookup(config, name)
            if isinstance(value, dict):
                inner.update((k, None) for k, v in value.items() if _number(v))
        for key in inner:
            # (the choice's repr names each branch domain: "'beta': loguniform(0.001, 1.0)")
            if re.search(r"'" + re.escape(key) + r"': loguniform\(", result.space[name]):
                log_names.add(f"{name}/{key}")
            if re.search(r"'" + re.escape(key) + r"': (uniform|loguniform|randint)\(", result.space[name]):
                names.append(f"{name}/{key}")
    metrics = [m for _, _, m, _ in points]
    finite = np.array([float(m) for m in metrics if _number(m) and math.isfinite(m)])
    scale = _y_scale(metrics, result.mode)
    if finite.size:
        low, high = float(finite.min()), float(finite.max())
        if scale.off_above is not None:
            high = scale.off_above
        if scale.off_below is not None:
            low = scale.off_below
        high = high if high > low else low + 1.0
    else:
        low, high = 0.0, 1.0
    # the better end of the colour map is the same dark-to-bright end in both modes: bright = better
    import matplotlib

    cmap = matplotlib.colormaps["viridis_r" if result.mode == "min" else "viridis"]
    norm = (mcolors.LogNorm(low, high) if scale.log and low > 0 else mcolors.Normalize(low, high))
    budgets = sorted({b for _, b, _, _ in points}) or [1]
    columns = min(3, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / columns))
    band = 0.75
    width, height = max(6.4, PANEL_WIDTH * columns + 1.0), PANEL_HEIGHT * rows + band + 0.6
    figure = _new_figure(width, height)
    figure.get_layout_engine().set(rect=(0, band / height, 1, 1 - band / height))
    gridspec = figure.add_gridspec(rows, columns)
    axes = [figure.add_subplot(gridspec[i // columns, i % columns], sharey=None) for i in range(len(names))]
    best = result.best_trial
    bad = 0
    for ax, name in zip(axes, names):
        active = [i for i, (_, _, _, config) in enumerate(points) if lookup(config, name) is not None]
        values = [lookup(points[i][3], name) for i in active]
        # A choice is categorical even when its values are numbers (batch sizes 16, 32, 64: three columns,
        # not a continuous axis); numbers in their order, other labels alphabetically.
        categorical = result.space.get(name, "").startswith("choice(") or not all(_number(v) for v in values)
        if categorical:
            by_label = {_branch_label(v, 0): v for v in values}
            labels = sorted(by_label, key=lambda k: (0, float(by_label[k]), "") if _number(by_label[k])
                            else (1, 0.0, k))
            # a categorical value spreads a little sideways (fixed by trial id) so the points do not all overlap
            xs = [labels.index(_branch_label(v, 0)) + ((points[i][0].trial_id * 0.618) % 1 - 0.5) * 0.5
                  for i, v in zip(active, values)]
        else:
            xs = [float(v) for v in values]
        # rows, slightly spread (fixed by trial id)
        ys = [points[i][1] * (1 + ((points[i][0].trial_id * 0.618) % 1 - 0.5) * 0.12) for i in active]
        panel_metrics = [metrics[i] for i in active]
        ok = [i for i, m in enumerate(panel_metrics) if _number(m) and math.isfinite(m)]
        # the better drawn last, on top of the worse
        order = sorted(ok, key=lambda i: panel_metrics[i], reverse=result.mode == "min")
        ax.scatter([xs[i] for i in order], [ys[i] for i in order],
                   c=[min(max(panel_metrics[i], low), high) for i in order],
                   cmap=cmap, norm=norm, s=22, edgecolors="0.25", linewidths=0.3, zorder=3)
        missing = [i for i in range(len(active)) if i not in set(ok)]
        if missing:
            ax.scatter([xs[i] for i in missing], [ys[i] for i in missing], marker="x", color="0.3", s=25, zorder=3)
        best_config = result.best_config
        value = lookup(best_config, name) if best_config is not None else None
        if value is not None and (not categorical or _branch_label(value, 0) in labels):
            bx = labels.index(_branch_label(value, 0)) if categorical else float(value)
            ax.plot([bx], [result.best_budget], "*", ms=14, color="red", mec="black", mew=0.7, zorder=5)
        ax.set_yscale("log")
        ax.set_yticks(budgets, labels=[str(b) for b in budgets])
        ax.yaxis.set_minor_locator(_null_locator())
        ax.set_ylim(budgets[0] / 1.35, budgets[-1] * 1.35)
        if categorical:
            ax.set_xticks(range(len(labels)), labels=labels)
            ax.set_xlim(-0.6, len(labels) - 0.4)
        elif all(isinstance(v, (int, np.integer)) for v in values):
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        elif name in log_names and values and min(values) > 0:
            ax.set_xscale("log")
            _plain_log_ticks(ax, "x")
        ax.set_xlabel(name)
        ax.set_ylabel(_budget_label(unit), fontsize=8)
        ax.grid(alpha=0.3)
        bad = max(bad, len(missing))
    if axes:
        bar = figure.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=0.9,
                              extend="max" if scale.off_above is not None else
                              "min" if scale.off_below is not None else "neither")
        if isinstance(norm, mcolors.LogNorm):
            _plain_log_ticks(bar.ax, "y", few_decades=high / low < 100)
        bar.set_label(f"{result.metric} ({'lower' if result.mode == 'min' else 'higher'} is better)")
    handles, labels_ = [], []
    if best is not None:
        handles.append(_handle(marker="*", color="red", mec="black", ls="none", ms=11))
        labels_.append(f"best evaluation: {result.best_metric:.4g}, trial {best.trial_id} after "
                       f"{result.best_budget} {_unit(unit)}")
    if bad:
        handles.append(_handle(marker="x", color="0.3", ls="none", ms=7, mew=1.8))
        labels_.append(f"non-finite metric (NaN or inf, diverged): {bad} evaluation{'s' if bad > 1 else ''}")
    if handles:
        figure.legend(handles, labels_, loc="lower left", ncol=1, fontsize=8, frameon=False,
                      bbox_to_anchor=(0.01, 0.0), borderaxespad=0.2)
    kind = "BOHB" if result.algorithm == "bohb" else "asynchronous BOHB"
    figure.suptitle(title or f"{kind}: {len(result.trials)} configurations\neach evaluation at the budget it "
                             f"reached, coloured by {result.metric}", fontsize=10)
    return _finish(figure, path)
