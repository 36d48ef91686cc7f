"""``fa.plot_history``: one PNG that shows how a run went.

Four panels, x = epochs completed (0 = at initialization, when the trainer
recorded it): loss (training and validation, the best validation epoch
marked), validation metrics, the learning rate (and any other hyperparameter
a schedule moved), and the gradient norm (mean and max per epoch, per layer)
with the parameter norm. Findings of ``fa.diagnose`` are listed under the
panels and their epochs shaded on the loss panel.

One epoch numbering, the one people count with: the epoch of index ``i``
(``history.epoch``) is "epoch ``i + 1``" in every label and stands at
``x = i + 1``, when ``i + 1`` epochs are completed; its values (the mean
loss, the lr its steps used) belong to that epoch. The lr is the mean its
steps used, with its range within the epoch shaded when it varied.

Needs matplotlib (``pip install "fastadapt[plot]"``); it draws with the Agg
canvas directly, so it never opens a window and leaves pyplot's state alone.
"""

from __future__ import annotations

import math
import os
from typing import Any, List, Optional, Sequence, Union

import numpy as np

from ._files import save_figure
from .diagnostics import Finding, _as_history, diagnose
from .history import History

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


def _use_log(ax: Any, *series: np.ndarray) -> None:
    data = np.concatenate([s[np.isfinite(s)] for s in series]) if series else np.zeros(0)
    # A log axis only when every value is positive and they span a decade or more.
    if data.size and data.min() > 0 and data.max() / data.min() >= 10:
        from matplotlib import ticker

        ax.set_yscale("log")
        # Plain numbers (0.3, 2, 20) read faster than 3e-01; minor ticks get
        # labels at 2x and 5x when the axis spans few decades.
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        few_decades = data.max() / data.min() < 100
        ax.yaxis.set_minor_formatter(ticker.FuncFormatter(
            lambda v, _: f"{v:g}" if few_decades and round(v / 10 ** math.floor(math.log10(v))) in (2, 5) else ""))


def plot_history(history: Union[History, Any], path: PathLike, *, findings: Optional[Sequence[Finding]] = None,
                 title: Optional[str] = None, dpi: int = 120) -> str:
    """Draw ``history`` into the PNG file ``path`` and return the path.

    Args:
        history: a History, a history dict, or the path of a history JSON file.
        path: the PNG to write.
        findings: findings to list and shade; default ``fa.diagnose(history)``.
        title: figure title (default: the optimizer and final metrics).
        dpi: resolution.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ImportError('plot_history needs matplotlib: pip install "fastadapt[plot]"') from err
    h = _as_history(history)
    if len(h) == 0:
        raise ValueError("history has no epochs to plot; train at least one epoch")
    if findings is None:
        findings = diagnose(h)
    x = np.asarray(h.epoch, dtype=np.float64) + 1

    fig = Figure(figsize=(12, 8.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2)
    _loss_panel(axes[0, 0], h, x, findings)
    _metric_panel(axes[0, 1], h, x)
    _hyper_panel(axes[1, 0], h, x)
    _norm_panel(axes[1, 1], h, x)
    for ax in axes.flat:
        ax.set_xlabel("epochs completed")
        ax.grid(True, alpha=0.3)
    fig.suptitle(title or _default_title(h), fontsize=13)
    if findings:
        lines = [f"[{f.severity}] {f.code}: {f.message}" for f in findings]
        fig.text(0.01, 0.005, "\n".join(_shorten(line, 160) for line in lines), fontsize=8.5, va="bottom",
                 ha="left", color="#333333", wrap=True)
        fig.get_layout_engine().set(rect=(0, 0.022 * len(lines) + 0.01, 1, 1 - 0.022 * len(lines) - 0.01))
    else:
        fig.text(0.01, 0.005, "diagnosis: no findings", fontsize=8.5, va="bottom", ha="left", color="#2ca02c")
        fig.get_layout_engine().set(rect=(0, 0.03, 1, 0.97))
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


def _loss_panel(ax: Any, h: History, x: np.ndarray, findings: Sequence[Finding]) -> None:
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
            ax.annotate(f"best val {val[best]:.4g} (epoch {x[best]:.0f})", (x[best], val[best]),
                        textcoords="offset points", xytext=(4, 8), fontsize=8, color="#2ca02c")
    for f in findings:
        for e in f.epochs:
            if e in h.epoch:
                ax.axvspan(e + 0.5, e + 1.5, color=_COLORS.get(f.severity, "#999999"), alpha=0.08, lw=0)
    if curves:
        _use_log(ax, *curves)
        ax.legend(fontsize=8)
    ax.set_title("loss")


def _metric_panel(ax: Any, h: History, x: np.ndarray) -> None:
    names = [k for k in h.keys() if k.startswith("val_") and k != "val_loss"]
    for name in names:
        ax.plot(x, _finite(h.array(name)), "o-", ms=3, label=name.replace("_", " "))
    if names:
        ax.legend(fontsize=8)
        ax.set_title("validation metrics")
    else:
        ax.text(0.5, 0.5, "no metrics logged\n(fit(..., metrics={...}))", ha="center", va="center",
                transform=ax.transAxes, color="#777777")
        ax.set_title("metrics")


def _range_columns(h: History, name: str) -> bool:
    return f"{name}_min" in h and f"{name}_max" in h


def _hyper_panel(ax: Any, h: History, x: np.ndarray) -> None:
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
              and not k.startswith("grad_norm.") and k not in ranges]
    if others:
        twin = ax.twinx()
        for name in others:
            line, = twin.plot(x, _finite(h.array(name)), "--", lw=1.2, label=name)
            if _range_columns(h, name):
                twin.fill_between(x, _finite(h.array(f"{name}_min")), _finite(h.array(f"{name}_max")),
                                  color=line.get_color(), alpha=0.12, lw=0)
        twin.legend(fontsize=8, loc="center right")
    if "lr" in h:
        ax.legend(fontsize=8, loc="upper right")
    ax.set_title("learning rate" + (" and scheduled hyperparameters" if others else ""))


def _norm_panel(ax: Any, h: History, x: np.ndarray) -> None:
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
    if curves:
        _use_log(ax, *curves)
        ax.set_ylabel("gradient norm (before clipping)")
        ax.legend(fontsize=8, loc="upper left")
    if "param_norm" in h:
        twin = ax.twinx()
        param = _finite(h.array("param_norm"))
        initial = h.info.get("initial_param_norm")
        xs, ys = x, param
        if isinstance(initial, (int, float)) and math.isfinite(initial):
            xs, ys = np.concatenate([[0.0], x]), np.concatenate([[initial], param])
        twin.plot(xs, ys, "-", color="#7f7f7f", lw=1.5, label="param norm")
        _use_log(twin, _positive(ys))
        twin.set_ylabel("parameter norm")
        twin.legend(fontsize=8, loc="upper right")
    ax.set_title("gradient and parameter norms")
