"""A PNG of learning curves per workload (matplotlib, the ``plot`` extra).

Left: the validation metric against optimizer steps, for tuned Adam (black),
the other points of its grid (thin grey), and each optimizer at its
defaults; the target (tuned Adam's best) is the dashed line, and the band
under (accuracy) or over (loss) it is "within target". Right: the mean
training loss between evaluations (log scale). With several seeds each
curve is the mean over them. Drawn with the Agg canvas: no window, no
pyplot state.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any, Dict, List, Sequence, Tuple

import numpy as np

from .._files import save_figure
from .._install import install_hint

if TYPE_CHECKING:  # report.py imports this module (CompareResult.plot)
    from .report import CompareResult, Run, WorkloadReport

__all__ = ["plot_workload"]

# Tableau's colours without black and grey, which mean tuned Adam and its grid here.
_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
           "#aec7e8", "#ffbb78", "#98df8a"]
_STYLES = ["-", "--", "-.", ":"]


def _mean_curve(runs: Sequence["Run"], key: str) -> Tuple[np.ndarray, np.ndarray]:
    """Steps and the mean over ``runs`` of ``key`` at each step (NaN where a run had stopped)."""
    steps = sorted({s for r in runs for s in r.steps})
    index = {s: i for i, s in enumerate(steps)}
    values = np.full((len(runs), len(steps)), np.nan)
    for k, r in enumerate(runs):
        for s, v in zip(r.steps, getattr(r, key)):
            values[k, index[s]] = v
    with np.errstate(invalid="ignore"):
        mean = values.mean(axis=0)  # NaN if any seed has none: a curve stops where its first seed stopped
    return np.array(steps, dtype=float), mean


def _plain_log_ticks(ax: Any) -> None:
    """Plain numbers (0.03, not 3x10^-2) on a log y axis, with labelled minor
    ticks where it spans few decades: every one under a decade, 2x, 3x and 5x
    under two."""
    from matplotlib import ticker

    low, high = ax.get_ylim()
    keep = range(1, 10) if high / low < 10 else (2, 3, 5) if high / low < 100 else ()
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(ticker.FuncFormatter(
        lambda v, _: f"{v:g}" if v > 0 and round(v / 10 ** math.floor(math.log10(v))) in keep else ""))


def plot_workload(result: "CompareResult", report: "WorkloadReport", path: str) -> str:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(f"compare plots need matplotlib: {install_hint('plot')}") from err
    runs = [r for r in result.runs if r.workload == report.name]
    accuracy = report.metric == "accuracy"
    scale = 100.0 if accuracy else 1.0
    figure = Figure(figsize=(12.5, 5.2), layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)

    curves: List[Tuple[str, Dict[str, Any], List["Run"]]] = []
    for lr in result.config["grid"]:
        if lr == report.tuned_lr:
            continue
        grid_runs = [r for r in runs if r.tuning and r.lr == lr]
        curves.append(("", dict(color="#b0b0b0", lw=0.8, zorder=1), grid_runs))
    if len(result.config["grid"]) > 1:  # one legend entry for the whole grid
        curves[0] = (f"{result.config['tuned']}, other grid lrs", curves[0][1], curves[0][2])
    tuned = [r for r in runs if r.tuning and r.lr == report.tuned_lr]
    tuned_label = f"{result.config['tuned']} tuned (lr {report.tuned_lr:.3g}, {len(result.config['grid'])} runs)" \
        if report.tuned_lr is not None else f"{result.config['tuned']} tuned (every grid run diverged)"
    curves.append((tuned_label, dict(color="black", lw=2.4, zorder=4), tuned))
    for i, row in enumerate(r for r in report.rows if not r.tuned):
        own = [r for r in runs if not r.tuning and r.optimizer == row.optimizer]
        marker = "  ← best at defaults" if row.optimizer == report.best_default else ""
        lr = f"lr {row.lr:.3g}" if row.lr is not None else "no lr"
        diverged = sum(r.diverged_at is not None for r in own)
        died = (f", diverged{'' if len(own) == 1 else f' in {diverged}/{len(own)} seeds'}" if diverged else "")
        label = f"{row.optimizer} ({'lr-free, ' if row.lr_free else ''}defaults, {lr}{died}){marker}"
        curves.append((label, dict(color=_COLORS[i % len(_COLORS)], lw=1.7, ls=_STYLES[(i // len(_COLORS)) % 4],
                                   zorder=3), own))

    shown: List[float] = []
    for label, style, group in curves:
        if not group:
            continue
        steps, metric = _mean_curve(group, "metric")
        left.plot(steps, metric * scale, label=label or None, **style)
        shown.extend(v for v in metric[1:] * scale if math.isfinite(v))
        steps, loss = _mean_curve(group, "train_loss")
        positive = np.where(loss > 0, loss, np.nan)
        right.plot(steps[1:], positive[1:], label=label or None, **style)

    target = report.target
    if math.isfinite(target):
        tol_acc, tol_loss = result.config["accuracy_tolerance"], result.config["loss_tolerance"]
        edge = target - tol_acc if accuracy else target + tol_loss * abs(target)
        shown_target = f"{target * 100:.2f}%" if accuracy else f"{target:.4g}"
        left.axhline(target * scale, color="black", ls="--", lw=1.0, zorder=2,
                     label=f"target: tuned {result.config['tuned']}'s best, {shown_target}")
        left.axhspan(min(target, edge) * scale, max(target, edge) * scale, color="#2ca02c", alpha=0.15, lw=0,
                     label=("within target: " + (f"≥ target − {tol_acc * 100:g} point(s)" if accuracy
                                                 else f"≤ target + {tol_loss * 100:g}%")))
        shown.extend([target * scale, edge * scale])
    if shown:
        values = np.array(shown)
        if accuracy:
            # The interesting range: from a little under the tenth percentile of the evaluations after step 0.
            low = max(0.0, float(np.percentile(values, 10)) - 2.0)
            # Headroom over the best curve, past 100% too: a target of 100% must not sit on the frame.
            left.set_ylim(low, min(102.0, float(values.max()) + 0.5 + 0.05 * (values.max() - low)))
        elif values.min() > 0:
            left.set_yscale("log")
            low, high = float(values.min()), float(np.percentile(values, 90))
            left.set_ylim(low / 1.15, max(high, target * 1.2 if math.isfinite(target) else high) * 1.15)
    left.set_xlabel("optimizer steps")
    left.set_ylabel("validation accuracy (%)" if accuracy else "validation loss")
    left.set_title(f"validation {'accuracy (higher is better)' if accuracy else 'loss (lower is better)'}",
                   fontsize=10)
    left.grid(alpha=0.3)
    right.set_yscale("log")
    right.set_xlabel("optimizer steps")
    right.set_ylabel("training loss (mean between evaluations)")
    right.set_title("training loss", fontsize=10)
    right.grid(alpha=0.3, which="both")
    for ax in (left, right):
        if ax.get_yscale() == "log":
            _plain_log_ticks(ax)
    handles, labels = left.get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right center", fontsize=8, frameon=False)

    seeds = len(result.config["seeds"])
    goal = (f"best at defaults: {report.best_default} — goal {'met' if report.goal_met else 'missed'}"
            if report.best_default else "no optimizer at its defaults finished")
    figure.suptitle(f"{report.name}: {report.description}\n{report.steps} steps, "
                    f"{'full batch' if report.batch_size is None else f'batch {report.batch_size}'}, "
                    f"{report.train_samples} train / {report.val_samples} validation samples, "
                    f"{seeds} seed{'s' if seeds > 1 else ''}{' (mean)' if seeds > 1 else ''}; {goal}", fontsize=10)
    save_figure(figure, path, dpi=100)
    return os.fspath(path)
