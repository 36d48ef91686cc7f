"""``fa.plot_history``: one PNG that shows how a run went.

Four panels, x = epochs completed (0 = at initialization, when the trainer
recorded it): loss (training and validation, the best validation epoch
marked), validation metrics, the learning rate (and any other hyperparameter
a schedule moved), and the gradient norm (mean and max per epoch, per layer)
with the parameter norm. A run of a learning-rate-free rule gets a fifth,
full-width panel below them: what it learned (``lr_estimate``, its effective
step size, and each ``adapted/<name>``, labelled with the rule's own name
for it: Prodigy's ``d``, DoG's ``eta``), on a log axis, with the range
within each epoch.
Findings of ``fa.diagnose`` are listed under the panels and their epochs
shaded on the loss panel.

One epoch numbering, the one people count with: the epoch of index ``i``
(``history.epoch``) is "epoch ``i + 1``" in every label and stands at
``x = i + 1``, when ``i + 1`` epochs are completed; its values (the mean
loss, the lr its steps used) belong to that epoch. The lr is the mean its
steps used, with its range within the epoch shaded when it varied.

Needs matplotlib (``pip install matplotlib``, or ``pip install ".[plot]"`` from a checkout); it draws with the Agg
canvas directly, so it never opens a window and leaves pyplot's state alone.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Tuple, Union, cast

import numpy as np

from .._files import save_figure
from .._install import install_hint
from .diagnostics import Finding, _as_history, diagnose
from .history import History

if TYPE_CHECKING:
    from matplotlib.layout_engine import ConstrainedLayoutEngine

__all__ = ["plot_history"]

PathLike = Union[str, "os.PathLike[str]"]

# Keys that are bookkeeping, not curves worth a panel.
_NOT_HYPERPARAMETERS = {"loss", "grad_norm", "grad_norm_max", "param_norm", "nonfinite_steps", "skipped_steps",
                        "nonfinite_grads", "steps", "seconds"}
_COLORS = {"error": "#d62728", "warning": "#ff7f0e"}


def _finite(values: np.ndarray) -> np.ndarray:
    out = values.astype(np.float64, copy=True)
    out[~np.isfinite(out)] = np.nan
    return out


def _positive(values: np.ndarray) -> np.ndarray:
    out = _finite(values)
    out[out <= 0] = np.nan
    return out


def _plain_log_ticks(ax: Any, axis: str = "y", few_decades: bool = False) -> None:
    """Plain numbers (0.3, 2, 20) on a log axis: they read faster than 3e-01
    or 2x10^0; minor ticks get labels at 2x, 3x and 5x when it spans few decades."""
    from matplotlib import ticker

    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(ticker.FuncFormatter(
        lambda v, _: f"{v:g}" if few_decades and v > 0 and round(v / 10 ** math.floor(math.log10(v))) in (2, 3, 5)
        else ""))


def _data_points(ax: Any, data_axes: Sequence[Any]) -> np.ndarray:
    """Where the curves of ``data_axes`` run, in ``ax``'s axes fraction:
    every line's points and points sampled along its segments (a legend
    must not sit on a line between two markers either), and the outlines
    of filled bands. Lines drawn in axes coordinates across the whole panel
    (axvline: a marked epoch) are left out: no spot would be free of them."""
    to_frac = ax.transAxes.inverted()
    chunks = []
    for a in data_axes:
        paths = [(line.get_xydata(), line.get_transform()) for line in a.get_lines()
                 if line.get_visible() and line.get_transform().contains_branch(a.transData)]
        for coll in a.collections:
            if coll.get_visible() and coll.get_transform().contains_branch(a.transData):
                paths += [(path.vertices, coll.get_transform()) for path in coll.get_paths()]
        for xy, transform in paths:
            xy = np.asarray(xy, dtype=np.float64)
            if xy.ndim != 2 or len(xy) == 0:
                continue
            with np.errstate(all="ignore"):
                frac = to_frac.transform(transform.transform(xy))
            frac = frac[np.isfinite(frac).all(axis=1)]
            if len(frac) > 1:  # sample each segment every 1% of the axes
                steps = np.maximum(1, np.ceil(np.hypot(*np.diff(frac, axis=0).T) / 0.01)).astype(int)
                frac = np.concatenate([p + np.outer(np.arange(k) / k, q - p)
                                       for p, q, k in zip(frac[:-1], frac[1:], steps)] + [frac[-1:]])
            chunks.append(frac)
    return np.concatenate(chunks) if chunks else np.zeros((0, 2))


def _covered(box: Any, points: np.ndarray, obstacles: Sequence[Any]) -> int:
    inside = ((points[:, 0] >= box.x0) & (points[:, 0] <= box.x1) & (points[:, 1] >= box.y0)
              & (points[:, 1] <= box.y1))
    return int(inside.sum()) + sum(box.overlaps(o) for o in obstacles)


_LEGEND_SPOTS = ("upper right", "upper left", "lower left", "lower right", "center right", "center left",
                 "upper center", "lower center")


def _place_legend(legend: Any, data_axes: Sequence[Any], *, drawn: bool = False) -> bool:
    """Move ``legend`` (inside its axes) to a spot that covers no data point
    and no text of ``data_axes``; when there is none, make headroom (raise the
    top of every y axis) until an upper spot is free. matplotlib's ``"best"``
    only sees the legend's own axes, not a twin's curves, and settles for
    the least overlap. Returns whether a free spot was found. ``drawn``:
    the figure was drawn since its last change (sizes are final)."""
    ax = legend.axes
    figure = ax.figure
    if not drawn:
        figure.canvas.draw()  # the layout, so that sizes in axes fraction are final
    renderer = figure.canvas.get_renderer()
    to_frac = ax.transAxes.inverted()
    for attempt in range(4):
        points = _data_points(ax, data_axes)
        obstacles = [t.get_window_extent(renderer).transformed(to_frac) for a in data_axes for t in a.texts
                     if t.get_visible() and t.get_text()]
        spots = _LEGEND_SPOTS if attempt == 0 else _LEGEND_SPOTS[:2] + ("upper center",)
        for spot in spots:
            _set_loc(legend, spot)
            if not _covered(legend.get_window_extent(renderer).transformed(to_frac), points, obstacles):
                return True
        _set_loc(legend, "upper right")
        height = legend.get_window_extent(renderer).transformed(to_frac).height + 0.03
        for a in data_axes:
            _raise_top(a, min(height, 0.6))
        figure.canvas.draw()
    return False


def _set_loc(legend: Any, spot: str) -> None:
    if hasattr(legend, "set_loc"):
        legend.set_loc(spot)
    else:  # matplotlib < 3.8
        legend._loc = type(legend).codes[spot]


def _raise_top(ax: Any, fraction: float) -> None:
    """Raise the y axis' top so the current range fills the lower ``1 - fraction``."""
    bottom, top = ax.get_ylim()
    if ax.get_yscale() == "log" and bottom > 0 and top > 0:
        low, high = math.log10(bottom), math.log10(top)
        ax.set_ylim(bottom, 10 ** (low + (high - low) / (1 - fraction)))
    else:
        ax.set_ylim(bottom, bottom + (top - bottom) / (1 - fraction))


def _use_log(ax: Any, *series: np.ndarray) -> None:
    data = np.concatenate([s[np.isfinite(s)] for s in series]) if series else np.zeros(0)
    # A log axis only when every value is positive and they span a decade or more.
    if data.size and data.min() > 0 and data.max() / data.min() >= 10:
        ax.set_yscale("log")
        _plain_log_ticks(ax, "y", few_decades=bool(data.max() / data.min() < 100))


def plot_history(history: Union[History, Any], path: PathLike, *, findings: Optional[Sequence[Finding]] = None,
                 title: Optional[str] = None, dpi: int = 120) -> str:
    """Draw ``history`` into the PNG file ``path`` and return the path.

    Parameters
    ----------
    history
        a History, a history dict, or the path of a history JSON file.
    path
        the PNG to write.
    findings
        findings to list and shade; default ``fa.diagnose(history)``.
    title
        figure title (default: the optimizer and final metrics).
    dpi
        resolution.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ImportError(f"plot_history needs matplotlib: {install_hint('plot')}") from err
    h = _as_history(history)
    if len(h) == 0:
        raise ValueError("history has no epochs to plot; train at least one epoch")
    if findings is None:
        findings = diagnose(h)
    x = np.asarray(h.epoch, dtype=np.float64) + 1

    learned = _learned_keys(h)
    if learned:
        fig = Figure(figsize=(12, 10.5), layout="constrained")
        FigureCanvasAgg(fig)
        mosaic = fig.subplot_mosaic([["loss", "metrics"], ["hyper", "norms"], ["learned", "learned"]],
                                    height_ratios=[1, 1, 0.85])
        panels = [mosaic[name] for name in ("loss", "metrics", "hyper", "norms", "learned")]
    else:
        fig = Figure(figsize=(12, 8.5), layout="constrained")
        FigureCanvasAgg(fig)
        panels = list(fig.subplots(2, 2).flat)
    # Each panel returns its legend and the axes whose curves it must not cover.
    legends = [_loss_panel(panels[0], h, x, findings), _metric_panel(panels[1], h, x),
               _hyper_panel(panels[2], h, x), _norm_panel(panels[3], h, x)]
    if learned:
        legends.append(_learned_panel(panels[4], h, x, learned))
    for ax in panels:
        ax.set_xlabel("epochs completed")
        ax.grid(True, alpha=0.3)
    fig.suptitle(title or _default_title(h), fontsize=13)
    # (the figure was made with layout="constrained": its engine takes a rect)
    engine = cast("ConstrainedLayoutEngine", fig.get_layout_engine())
    if findings:
        lines = [f"[{f.severity}] {f.code}: {f.message}" for f in findings]
        fig.text(0.01, 0.005, "\n".join(_shorten(line, 160) for line in lines), fontsize=8.5, va="bottom",
                 ha="left", color="#333333", wrap=True)
        engine.set(rect=(0, 0.022 * len(lines) + 0.01, 1, 1 - 0.022 * len(lines) - 0.01))
    else:
        fig.text(0.01, 0.005, "diagnosis: no findings", fontsize=8.5, va="bottom", ha="left", color="#2ca02c")
        engine.set(rect=(0, 0.03, 1, 0.97))
    fig.canvas.draw()  # once: the layout, so legend sizes are final; a legend that moves inside its panel
    for placed in legends:  # changes no other panel
        if placed is not None:
            _place_legend(*placed, drawn=True)
    out = os.fspath(path)
    save_figure(fig, out, dpi=dpi)  # atomic: a failed save leaves the old file
    return out


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _default_title(h: History) -> str:
    optimizer = h.info.get("optimizer")
    parts: List[str] = []
    if isinstance(optimizer, dict) and optimizer.get("algorithm"):
        parts.append(f"{optimizer['algorithm']} (lr {optimizer.get('lr', '?'):.3g})"
                     if isinstance(optimizer.get("lr"), (int, float)) else str(optimizer["algorithm"]))
    parts.append(f"{len(h)} epochs")
    for key in sorted(h.info):
        value = h.info[key]
        if key.startswith("test_") and isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(f"{key.replace('_', ' ')} {value:.4g}")
    return "training history: " + ", ".join(parts)


Placed = Optional[Tuple[Any, List[Any]]]  # (legend, the axes whose data it must not cover)


def _loss_panel(ax: Any, h: History, x: np.ndarray, findings: Sequence[Finding]) -> Placed:
    curves = []
    initial = h.info.get("initial_loss")
    if "loss" in h:
        train = _finite(h.array("loss"))
        xs, ys = x, train
        if isinstance(initial, (int, float)) and math.isfinite(initial):
            xs, ys = np.concatenate([[0.0], x]), np.concatenate([[initial], train])
        ax.plot(xs, ys, "o-", ms=3, color="#1f77b4", label="train loss")
        curves.append(ys)
    if "val_loss" in h:
        val = _finite(h.array("val_loss"))
        ax.plot(x, val, "s-", ms=3, color="#2ca02c", label="validation loss")
        curves.append(val)
        if np.isfinite(val).any():
            best = int(np.nanargmin(val))
            ax.axvline(x[best], color="#2ca02c", ls=":", lw=1)
            # Label and marker from the same x: "epoch 10" stands at 10 epochs completed.
            # Below the minimum (no validation point is lower), and in the
            # right half of the panel to the left of its line, so that it
            # never crosses the curve or runs past the panel's edge.
            right = len(x) > 1 and x[best] > (x[0] + x[-1]) / 2
            ax.annotate(f"best val {val[best]:.4g} (epoch {x[best]:.0f})", (x[best], val[best]),
                        textcoords="offset points", xytext=(-4 if right else 4, -6), fontsize=8, color="#2ca02c",
                        ha="right" if right else "left", va="top")
    for f in findings:
        for e in f.epochs:
            if e in h.epoch:
                ax.axvspan(e + 0.5, e + 1.5, color=_COLORS.get(f.severity, "#999999"), alpha=0.08, lw=0)
    ax.set_title("loss")
    if curves:
        _use_log(ax, *curves)
        return ax.legend(fontsize=8), [ax]
    return None


def _metric_panel(ax: Any, h: History, x: np.ndarray) -> Placed:
    names = [k for k in h.keys() if k.startswith("val_") and k != "val_loss"]
    for name in names:
        ax.plot(x, _finite(h.array(name)), "o-", ms=3, label=name.replace("_", " "))
    if names:
        ax.set_title("validation metrics")
        return ax.legend(fontsize=8), [ax]
    ax.text(0.5, 0.5, "no metrics logged\n(fit(..., metrics={...}))", ha="center", va="center",
            transform=ax.transAxes, color="#777777")
    ax.set_title("metrics")
    return None


def _range_columns(h: History, name: str) -> bool:
    return f"{name}_min" in h and f"{name}_max" in h


def _is_learned(name: str) -> bool:
    return name == "lr_estimate" or name.startswith("adapted/")


def _learned_keys(h: History) -> List[str]:
    """What a learning-rate-free rule learned, as a run logged it (``lr_estimate``, ``adapted/<name>``),
    without the ``_min`` / ``_max`` columns of their ranges."""
    ranges = {f"{k}{end}" for k in h.keys() if _range_columns(h, k) for end in ("_min", "_max")}
    adapted = [k for k in h.keys() if k.startswith("adapted/") and k not in ranges]
    return (["lr_estimate"] if "lr_estimate" in h else []) + adapted


def _algorithm(h: History) -> Optional[str]:
    optimizer = h.info.get("optimizer")
    if isinstance(optimizer, dict) and isinstance(optimizer.get("algorithm"), str) and optimizer["algorithm"]:
        return optimizer["algorithm"]
    return None


def _learned_panel(ax: Any, h: History, x: np.ndarray, keys: Sequence[str]) -> Placed:
    """What a learning-rate-free rule learned (its step size first), one line per quantity
    under the rule's own name for it, the range within each epoch shaded;
    log axis (they move by orders of magnitude). A value <= 0, which a log
    axis cannot show (a hypergradient can push the lr below zero), is
    marked on the panel's bottom edge."""
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    shown, below = [], []
    banded = False
    for key in keys:
        raw = _finite(h.array(key))
        values = _positive(raw)
        name = "lr_estimate: effective step size" if key == "lr_estimate" else key[len("adapted/"):]
        line, = ax.plot(x, values, "o-" if key == "lr_estimate" else "s--", ms=3, lw=1.4, label=name)
        shown.append(values)
        if np.any(raw <= 0):
            below.append((key, raw <= 0, line.get_color()))
        if _range_columns(h, key):
            band_low, band_high = _positive(h.array(f"{key}_min")), _positive(h.array(f"{key}_max"))
            ax.fill_between(x, band_low, band_high, color=line.get_color(), alpha=0.15, lw=0)
            banded = True
            shown += [band_low, band_high]
    # The x axis of the panels above (epochs completed, whole numbers), also where values are missing.
    pad = 0.05 * (x.max() - x.min()) if len(x) > 1 else 0.5
    ax.set_xlim(x.min() - pad, x.max() + pad)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    algorithm = _algorithm(h)
    # Not all of it is a step size (DoG's G sums squared gradients, Schedule-Free's weight averages).
    ax.set_title(f"learned by the rule{f' ({algorithm})' if algorithm else ''}: mean over each epoch's steps")
    ax.set_ylabel("value (log scale)")
    positive = np.concatenate([v[np.isfinite(v)] for v in shown]) if shown else np.zeros(0)
    if positive.size:
        # Limits from the positive values alone (NaN and values <= 0 must not drive a log axis), a
        # little headroom on both sides; the values <= 0 sit on the bottom edge.
        low, high = float(positive.min()), float(positive.max())
        if low == high:
            low, high = low / 3, high * 3
        pad = (high / low) ** 0.06
        ax.set_yscale("log")
        ax.set_ylim(low / pad, high * pad)
        _plain_log_ticks(ax, "y", few_decades=high / low < 100)
        for key, mask, color in below:
            ax.plot(x[mask], np.full(int(mask.sum()), low / pad), "v", ms=7, color=color, clip_on=False,
                    label=f"{_quantity(key)} <= 0 in {int(mask.sum())} epoch(s): marked on the bottom edge")
    else:
        ax.text(0.5, 0.5, "no positive value to draw on a log axis", ha="center", va="center",
                transform=ax.transAxes, color="#777777")
    handles, labels = ax.get_legend_handles_labels()
    if banded:  # one entry for the shading of every line (each in its line's colour)
        handles.append(Patch(color="#777777", alpha=0.25, lw=0))
        labels.append("range within the epoch")
    return ax.legend(handles, labels, fontsize=8), [ax]


def _quantity(key: str) -> str:
    return key[len("adapted/"):] if key.startswith("adapted/") else key


def _hyper_panel(ax: Any, h: History, x: np.ndarray) -> Placed:
    if "lr" in h:
        lr = _positive(h.array("lr"))
        ax.plot(x, lr, "o-", ms=3, color="#9467bd", label="lr (mean over the epoch's steps)")
        shown = [lr]
        if _range_columns(h, "lr"):
            low, high = _positive(h.array("lr_min")), _positive(h.array("lr_max"))
            ax.fill_between(x, low, high, color="#9467bd", alpha=0.18, lw=0, label="lr range within the epoch")
            shown += [low, high]
        _use_log(ax, *shown)
        ax.set_ylabel("learning rate")
    # <name>_min / <name>_max are a hyperparameter's range, drawn with it, not curves of their own.
    ranges = {f"{k}{end}" for k in h.keys() if _range_columns(h, k) for end in ("_min", "_max")}
    others = [k for k in h.keys() if k not in _NOT_HYPERPARAMETERS and k != "lr" and not k.startswith("val_")
              and not k.startswith("grad_norm.") and k not in ranges and not _is_learned(k)]
    ax.set_title("learning rate" + (" and scheduled hyperparameters" if others else ""))
    if not others:
        return (ax.legend(fontsize=8), [ax]) if "lr" in h else None
    twin = ax.twinx()
    for name in others:
        line, = twin.plot(x, _finite(h.array(name)), "--", lw=1.2, label=name)
        if _range_columns(h, name):
            twin.fill_between(x, _finite(h.array(f"{name}_min")), _finite(h.array(f"{name}_max")),
                              color=line.get_color(), alpha=0.12, lw=0)
    # One legend for both axes, on the twin (drawn last, so no curve runs over it).
    (handles, labels), (twin_handles, twin_labels) = ax.get_legend_handles_labels(), twin.get_legend_handles_labels()
    handles, labels = handles + twin_handles, labels + twin_labels
    return twin.legend(handles, labels, fontsize=8), [ax, twin]


def _norm_panel(ax: Any, h: History, x: np.ndarray) -> Placed:
    curves = []
    if "grad_norm" in h:
        mean = _positive(h.array("grad_norm"))
        ax.plot(x, mean, "o-", ms=3, color="#d62728", label="grad norm (mean)")
        curves.append(mean)
    if "grad_norm_max" in h:
        peak = _positive(h.array("grad_norm_max"))
        ax.plot(x, peak, "-", lw=0.8, color="#d62728", alpha=0.5, label="grad norm (max)")
        curves.append(peak)
    for name in [k for k in h.keys() if k.startswith("grad_norm.")]:
        raw = h.array(name)
        layer = _positive(raw)
        zeros = int(np.sum(raw == 0))
        # A log axis cannot show an exactly zero gradient (dead units), so the legend says it.
        note = f"; exactly 0 in {zeros} epoch(s)" if zeros else ""
        ax.plot(x, layer, ":", lw=1.2, label=f"{name[len('grad_norm.'):]} (last batch{note})")
        curves.append(layer)
    ax.set_title("gradient and parameter norms")
    if curves:
        _use_log(ax, *curves)
        ax.set_ylabel("gradient norm (before clipping)")
    if "param_norm" not in h:
        return (ax.legend(fontsize=8), [ax]) if curves else None
    twin = ax.twinx()
    param = _finite(h.array("param_norm"))
    initial = h.info.get("initial_param_norm")
    xs, ys = x, param
    if isinstance(initial, (int, float)) and math.isfinite(initial):
        xs, ys = np.concatenate([[0.0], x]), np.concatenate([[initial], param])
    twin.plot(xs, ys, "-", color="#7f7f7f", lw=1.5, label="param norm")
    _use_log(twin, _positive(ys))
    twin.set_ylabel("parameter norm")
    # One legend for both axes, on the twin (drawn last, so no curve runs over it).
    (handles, labels), (twin_handles, twin_labels) = ax.get_legend_handles_labels(), twin.get_legend_handles_labels()
    handles, labels = handles + twin_handles, labels + twin_labels
    return twin.legend(handles, labels, fontsize=8), [ax, twin]
