"""Plots of tuning results (matplotlib, the ``plot`` extra).

Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas, so
no global pyplot state or display is touched; with a path the PNG is
written and the path returned, otherwise the Figure is.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Union

from .._files import save_figure
from .results import COMPLETED, FAILED

if TYPE_CHECKING:
    from .results import TuneResult

__all__ = ["plot_rungs", "plot_population"]

PathLike = Union[str, "os.PathLike[str]"]


def _new_figure(width: float, height: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError("tuning plots need matplotlib: pip install \"fastadapt[plot]\" (or pip install "
                          "matplotlib)") from err
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _log_scale_if_wide(ax: Any, values: Sequence[Any]) -> None:
    """Log y when all values are positive and span more than 5x: the losses
    of diverged configs would otherwise flatten the range that matters."""
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) / min(finite) > 5:
        ax.set_yscale("log")


def _finish(figure: Any, path: Optional[PathLike]) -> Any:
    if path is None:
        return figure
    save_figure(figure, path, dpi=110)  # atomic: a crash mid-write leaves the old file, not half a PNG
    return os.fspath(path)


def plot_rungs(result: "TuneResult", path: Optional[PathLike] = None, *, log_x: bool = True) -> Any:
    """Metric against budget for every trial, one panel per bracket."""
    groups: Dict[Any, List[Any]] = {}
    for trial in result.trials:
        groups.setdefault(trial.bracket, []).append(trial)
    keys = sorted(groups, key=lambda b: -1 if b is None else -b)  # bracket s_max first, as in the paper
    figure = _new_figure(max(4.2 * len(keys), 5.5), 3.8)
    axes = figure.subplots(1, len(keys), squeeze=False, sharex=True, sharey=True)[0]
    best = result.best_trial
    resources = sorted({r["resource"] for r in result.rungs})
    for ax, key in zip(axes, keys):
        for trial in groups[key]:
            xs = [h["budget"] for h in trial.history]
            ys = [h["metric"] for h in trial.history]
            if not xs:
                continue
            if best is not None and trial.trial_id == best.trial_id:
                style = {"color": "tab:red", "lw": 2.2, "zorder": 4, "label": f"best (trial {trial.trial_id})"}
            elif trial.status == COMPLETED:
                style = {"color": "tab:blue", "lw": 1.2, "alpha": 0.9, "zorder": 3}
            elif trial.status == FAILED:
                style = {"color": "black", "lw": 0.8, "ls": ":", "zorder": 2}
            else:
                style = {"color": "0.6", "lw": 0.8, "alpha": 0.6, "zorder": 1}
            ax.plot(xs, ys, marker="o", ms=3, **style)
        if best is not None and best.bracket == key:
            ax.plot([result.best_budget], [result.best_metric], marker="*", ms=13, color="tab:red", zorder=5,
                    ls="none", label="best evaluation")
        for r in resources:
            ax.axvline(r, color="0.85", lw=0.6, zorder=0)
        title = "all trials" if key is None else f"bracket s={key}"
        ax.set_title(f"{title} ({len(groups[key])} configs)", fontsize=10)
        ax.set_xlabel("budget (resource units)")
        if log_x:
            ax.set_xscale("log")
        ax.grid(alpha=0.3, which="both", axis="y")
    axes[0].set_ylabel(f"{result.metric} ({result.mode})")
    _log_scale_if_wide(axes[0], [h["metric"] for t in result.trials for h in t.history])
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8)
    figure.suptitle(f"{result.algorithm}: grey = stopped early, blue = reached the top rung", fontsize=10)
    return _finish(figure, path)


def plot_population(result: "TuneResult", path: Optional[PathLike] = None, *,
                    names: Optional[Sequence[str]] = None) -> Any:
    """PBT: one panel per hyperparameter (value over budget, a step line per
    member, exploits marked) and one of the metric."""
    numeric = []
    for name in result.trials[0].config if result.trials else []:
        values = [t.config.get(name) for t in result.trials]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            numeric.append(name)
    shown = list(names) if names is not None else [
        n for n in numeric if len({repr(e["config"].get(n)) for t in result.trials for e in t.config_history}) > 1]
    panels = len(shown) + 1
    figure = _new_figure(6.4, 2.3 * panels)
    axes = figure.subplots(panels, 1, squeeze=False, sharex=True)[:, 0]
    colors = [f"C{i % 10}" for i in range(len(result.trials))]
    for ax, name in zip(axes, shown):
        positive = True
        for trial, color in zip(result.trials, colors):
            points = trial.config_history
            xs = [p["budget"] for p in points] + [trial.budget]
            ys = [p["config"].get(name) for p in points]
            ys.append(ys[-1])
            positive = positive and all(isinstance(y, (int, float)) and y > 0 for y in ys)
            ax.step(xs, ys, where="post", color=color, lw=1.2, alpha=0.85)
        for event in result.lineage:
            if event["donor"] is not None:
                ax.plot([event["budget"]], [event["new_config"].get(name)], marker="v", ms=5,
                        color=colors[event["member"] % len(colors)], zorder=4)
        ax.set_ylabel(name)
        if positive and result.space.get(name, "").startswith("loguniform"):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    metric_ax = axes[-1]
    for trial, color in zip(result.trials, colors):
        xs = [h["budget"] for h in trial.history]
        ys = [h["metric"] for h in trial.history]
        metric_ax.plot(xs, ys, color=color, lw=1.2, marker=".", ms=3, label=f"member {trial.trial_id}")
    _log_scale_if_wide(metric_ax, [h["metric"] for t in result.trials for h in t.history])
    metric_ax.set_ylabel(result.metric)
    metric_ax.set_xlabel("budget (resource units per member)")
    metric_ax.grid(alpha=0.3)
    if len(result.trials) <= 10:
        metric_ax.legend(fontsize=7, ncol=2)
    figure.suptitle("PBT population over time (triangles: exploit, member copies a better one)", fontsize=10)
    return _finish(figure, path)
