"""Automatic diagnosis of a training history: the seed article's
troubleshooting table (oscillating loss -> lr too high; vanishing gradients
-> activation; exploding parameters -> clipping; overfitting ->
regularization) as findings computed from the numbers a run logged.

``fa.diagnose(history)`` returns a list of [`Finding`][fastadapt.Finding], each with a
stable ``code``, a ``severity``, the epochs that show it, the evidence
(numbers), a message and advice. [`DiagnosisCallback`][fastadapt.DiagnosisCallback] runs it after
every epoch and reports each finding once, while training runs.

The rules, on per-epoch values (see ``Trainer.fit`` for what they mean);
every threshold is a field of [`Thresholds`][fastadapt.Thresholds]:

``nonfinite`` (error)
    An epoch had steps with a NaN/Inf loss or gradient, skipped steps,
    replaced gradient values, or a non-finite loss or norm.
``step_size_explosion`` (error): a learned step size ran away.
    For the step size a learning-rate-free rule learns (``lr_estimate``, its
    effective step; in a history without it, each ``adapted/<name>``, e.g.
    Prodigy's ``d``; the rule's own values are cited beside it, and a
    schedule of the multiplier ``lr`` is divided out): an epoch whose training loss
    is a rise as ``lr_too_high`` counts them (or non-finite) while the step
    size reached (its epoch max) ``step_growth`` (100) times its value when
    the loss was at its best (at initialization: the first epoch's
    smallest). Such rules grow their step size by orders of magnitude early
    on by design, while the loss falls; growing that much *after* the best
    loss, with the loss diverging, is the estimate overshooting. The advice
    names the rule's own knobs (Prodigy/D-Adaptation: ``d_coef``,
    ``growth_rate``, ``safeguard_warmup``, weight decay; DoG: ``reps_rel``,
    ``init_eta``; hypergradient descent: ``hypergrad_lr``). Replaces
    ``lr_too_high``, which it explains.
``lr_too_high`` (error): the training loss oscillates or diverges.
    An epoch's mean training loss is a *rise* when it exceeds the lowest
    loss before it (the loss at initialization included, when the trainer
    recorded it) by more than ``rise`` (25%) of that loss and by more than
    ``rise_floor`` (5%) of the starting loss: both so that the small
    wobbles of a nearly converged loss do not count. Found when there are
    ``oscillation_rises`` (2) rises, one rise of ``divergence_jump`` (the
    loss more than doubled), or the last epoch is a rise (it ends worse
    than its best: diverging). The loss at initialization is a single
    batch's, so against it only a jump counts. Mean epoch losses of
    healthy mini-batch training fall nearly monotonically, so a rise this
    large is the optimizer overshooting.
``exploding`` (error): gradient or parameter norm blow-up.
    The mean gradient norm of an epoch reaches ``blowup`` (10) times the
    median of the epochs before it, or the parameter norm reaches
    ``blowup`` times its value at the start. Healthy runs move these norms
    by small factors (the MNIST example: grad norm 0.4-1.7, param norm
    16.9 -> 22).
``vanishing_gradients`` (error)
    For ``window`` (3) consecutive epochs the smallest per-layer gradient
    norm is below ``layer_ratio`` (1e-3) of the largest (early layers learn
    nothing: saturating activations, dead ReLUs, a bad init); or the global
    gradient norm is below ``relative_grad`` (1e-6) of the parameter norm
    while the training loss makes no progress and has not converged.
``step_size_collapse`` (error): a learned step size fell and stays down.
    The learned step size (epoch mean) is at most ``step_collapse`` (1%) of
    its peak in an earlier epoch (or <= 0: a hypergradient can push the lr
    below zero) for the last ``window`` (3) epochs, while the training loss
    makes no progress as ``plateau`` measures it over them and has not
    converged. ``lr_estimate`` counts only the part the rule learned: a
    falling ``lr`` (a schedule of the multiplier) is divided out. Also
    found: an epoch mean at or below zero (the rule stepped against the
    gradient) after which the training loss never improved on that epoch's
    by ``plateau_progress``, short of converged. Replaces ``plateau``,
    which it explains.
``overfitting`` (warning): validation worsens while training improves.
    With at least ``overfit_patience`` (3) epochs after the best validation
    loss, some epoch after it has a validation loss ``overfit_rise`` (5%)
    above that best while the training loss fell by ``overfit_train_drop``
    (10%) since the best and sits clearly below the validation loss
    (``overfit_gap``: at most 90% of it). The evidence names the worst such
    epoch (an early-stopped run often ends after a partial recovery).
    Not reported with ``lr_too_high`` or ``step_size_explosion``, which
    explain a worsening validation loss better.
``plateau`` (warning): no progress.
    Over the last ``plateau_window`` (5) epochs the training loss improved
    by less than ``plateau_progress`` (1%) on the epoch before them, and it
    has not converged (it is above ``converged`` = 1% of the starting
    loss). Not reported with ``vanishing_gradients``, ``lr_too_high``,
    ``step_size_collapse`` or ``step_size_explosion``, which explain it.

Epoch values that are missing (None) are skipped; non-finite ones count only
for ``nonfinite``. The lr a finding cites is the one the epoch's steps used
(``lr``, their mean, and ``lr_min`` / ``lr_max`` when it varied within
epochs; see [`History`][fastadapt.History]).

Epoch numbering: a finding's ``epochs`` and every ``epoch`` field of its
evidence are 0-based indices, the values of ``history.epoch``; its
``message`` and ``str(finding)`` count from 1 (index 2 is "epoch 3"), as the
progress display and the plots do.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

import numpy as np

from .._files import write_text
from .callbacks.base import Callback
from .history import History

__all__ = ["CODES", "SEVERITY", "DiagnosisCallback", "DiagnosisWarning", "Finding", "Thresholds", "diagnose",
           "save_findings"]

# Stable codes, in report order (the likeliest root cause first).
SEVERITY: Dict[str, str] = {
    "nonfinite": "error",
    "step_size_explosion": "error",
    "lr_too_high": "error",
    "exploding": "error",
    "vanishing_gradients": "error",
    "step_size_collapse": "error",
    "overfitting": "warning",
    "plateau": "warning",
}
CODES: Tuple[str, ...] = tuple(SEVERITY)


class DiagnosisWarning(UserWarning):
    """Warning category of [`DiagnosisCallback`][fastadapt.DiagnosisCallback]'s default report."""


@dataclass(frozen=True)
class Thresholds:
    """The numbers behind each rule (see the module documentation)."""

    rise: float = 0.25
    rise_floor: float = 0.05
    oscillation_rises: int = 2
    divergence_jump: float = 1.0
    blowup: float = 10.0
    layer_ratio: float = 1e-3
    relative_grad: float = 1e-6
    window: int = 3
    overfit_rise: float = 0.05
    overfit_train_drop: float = 0.10
    overfit_gap: float = 0.9
    overfit_patience: int = 3
    plateau_window: int = 5
    plateau_progress: float = 0.01
    converged: float = 0.01
    step_growth: float = 100.0
    step_collapse: float = 0.01

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"Thresholds.{f.name} must be a finite number > 0, got {value!r}")
            if f.type in ("int", int) and int(value) != value:
                raise ValueError(f"Thresholds.{f.name} must be a whole number, got {value!r}")


@dataclass(frozen=True)
class Finding:
    """One diagnosis: ``code`` (one of ``CODES``), ``severity``
    (``"error"``: training is broken; ``"warning"``: it could do better), the
    ``epochs`` that show it, the ``evidence`` (plain numbers), a ``message``
    saying what was seen and the ``advice``."""

    code: str
    severity: str
    epochs: List[int]
    evidence: Dict[str, Any]
    message: str
    advice: str

    def to_dict(self) -> Dict[str, Any]:
        """Plain, JSON-ready data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Finding":
        """The finding that [`to_dict`][fastadapt.Finding.to_dict] wrote (e.g. read back from JSON).

        Parameters
        ----------
        data
            a mapping with exactly the fields ``code``, ``severity``,
            ``epochs``, ``evidence``, ``message`` and ``advice``.

        Returns
        -------
        Finding
            the finding.

        Raises
        ------
        ValueError
            when a field is missing or extra, or the code is unknown.
        """
        names = {f.name for f in fields(cls)}
        if not isinstance(data, Mapping) or set(data) != names:
            raise ValueError(f"a finding needs exactly the keys {sorted(names)}")
        if data["code"] not in SEVERITY:
            raise ValueError(f"unknown finding code {data['code']!r}; expected one of {', '.join(CODES)}")
        return cls(**{name: data[name] for name in names})

    def __str__(self) -> str:
        return f"[{self.severity}] {self.code} ({_span(self.epochs)}): {self.message} Advice: {self.advice}"


def _human(epoch: int) -> int:
    """An epoch index as people count epochs (the first is epoch 1)."""
    return int(epoch) + 1


def _span(epochs: Sequence[int]) -> str:
    """Epoch indices as text for people, counted from 1."""
    if not epochs:
        return "no epoch"
    shown = [_human(e) for e in epochs]
    if len(shown) == 1:
        return f"epoch {shown[0]}"
    if shown == list(range(shown[0], shown[-1] + 1)):
        return f"epochs {shown[0]}-{shown[-1]}"
    return "epochs " + ", ".join(map(str, shown))


def _num(x: float) -> float:
    """Evidence numbers rounded to 4 significant digits (readable JSON)."""
    return float(f"{x:.4g}")


def _make(code: str, epochs: Sequence[int], evidence: Dict[str, Any], message: str, advice: str) -> Finding:
    return Finding(code, SEVERITY[code], [int(e) for e in epochs], evidence, message, advice)


# ---- reading a history -----------------------------------------------------------

class _Series:
    """The history's columns as float arrays (missing -> NaN) and its info."""

    def __init__(self, history: History):
        self.epochs = list(history.epoch)
        self.info = history.info
        self._history = history

    def __call__(self, name: str) -> np.ndarray:
        if name not in self._history:
            return np.full(len(self.epochs), np.nan)
        return self._history.array(name)

    def raw(self, name: str) -> List[Optional[float]]:
        """The values as logged: None where missing, NaN/inf kept."""
        return self._history[name] if name in self._history else [None] * len(self.epochs)

    def lr_range(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per epoch: the mean lr the steps used, and its min and max (the
        mean where the history has no range: the lr did not vary)."""
        lr, low, high = self("lr"), self("lr_min"), self("lr_max")
        return lr, np.where(np.isfinite(low), low, lr), np.where(np.isfinite(high), high, lr)

    def adapted_keys(self) -> List[str]:
        """The values a rule learned (``adapted/<name>``), not the columns of their ranges."""
        keys = list(self._history.keys())
        ranges = {f"{k}{end}" for k in keys if f"{k}_min" in keys and f"{k}_max" in keys for end in ("_min", "_max")}
        return [k for k in keys if k.startswith("adapted/") and k not in ranges]

    def adapted_or_estimate(self) -> List[str]:
        """``lr_estimate`` (when a learning-rate-free rule logged it) and the learned values."""
        return (["lr_estimate"] if "lr_estimate" in self._history else []) + self.adapted_keys()

    def step_size_keys(self) -> List[str]:
        """What to judge as the learned step size: ``lr_estimate`` (every
        learning-rate-free rule's effective step), else (a history without
        it) each learned value. Not the learned values beside it, which need
        not be step sizes (DoG's G sums squared gradients, Schedule-Free's
        averaging weight falls as 1/t by design)."""
        return ["lr_estimate"] if "lr_estimate" in self._history else self.adapted_keys()

    def learned_range(self, name: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per epoch: a learned value's mean over the steps, and its min and max
        (the mean where the history has no range)."""
        level, low, high = self(name), self(f"{name}_min"), self(f"{name}_max")
        return level, np.where(np.isnan(low), level, low), np.where(np.isnan(high), level, high)

    def layer_names(self) -> List[str]:
        return [k for k in self._history.keys() if k.startswith("grad_norm.")]

    def info_number(self, name: str) -> Optional[float]:
        value = self.info.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        return None

    def reference_loss(self, loss: np.ndarray) -> Optional[float]:
        """The loss training started from: recorded at initialization, else the first finite epoch."""
        initial = self.info_number("initial_loss")
        if initial is not None:
            return initial
        finite = loss[np.isfinite(loss)]
        return float(finite[0]) if finite.size else None


def _as_history(history: Any) -> History:
    if isinstance(history, History):
        return history
    if isinstance(history, (str, os.PathLike)):
        return History.load(history)
    if isinstance(history, Mapping):
        return History.from_dict(history)
    raise TypeError(f"diagnose needs a History, a dict of per-epoch lists, or the path of a history JSON file; got "
                    f"{type(history).__name__}")


# ---- the rules ---------------------------------------------------------------------

def _nonfinite(s: _Series, t: Thresholds) -> Optional[Finding]:
    counters = ("nonfinite_steps", "skipped_steps", "nonfinite_grads")
    values = ("loss", "val_loss", "grad_norm", "param_norm")
    bad_values: Dict[str, List[Any]] = {v: [] for v in values}
    epochs, totals = [], {c: 0 for c in counters}
    columns = {name: s.raw(name) for name in counters + values}
    for i, epoch in enumerate(s.epochs):
        hit = False
        for c in counters:
            count = columns[c][i]
            if count is not None and math.isfinite(count) and count > 0:
                totals[c] += int(count)
                hit = True
        for v in values:
            x = columns[v][i]
            if x is not None and not math.isfinite(x):
                bad_values[v].append(epoch)
                hit = True
        if hit:
            epochs.append(epoch)
    if not epochs:
        return None
    seen = [f"{n} {c.replace('_', ' ')}" for c, n in totals.items() if n] + \
           [f"non-finite {v} in {_span(e)}" for v, e in bad_values.items() if e]
    evidence: Dict[str, Any] = dict(totals)
    evidence.update({f"nonfinite_{v}_epochs": e for v, e in bad_values.items() if e})
    return _make("nonfinite", epochs, evidence,
                 f"NaN/Inf appeared: {'; '.join(seen)}.",
                 "Lower the learning rate and clip gradients (max_grad_norm=1.0); keep nonfinite='skip' (or "
                 "'zero') so one bad batch cannot poison the parameters; check the data for NaN/Inf and compute "
                 "the loss stably (log-sum-exp softmax, no log(0)).")


def _lr_too_high(s: _Series, t: Thresholds) -> Optional[Finding]:
    loss = s("loss")
    ok = np.isfinite(loss)
    reference = s.reference_loss(loss)
    if reference is None or ok.sum() < 1:
        return None
    labels: List[Optional[int]] = [e for e, good in zip(s.epochs, ok) if good]
    rows: List[Optional[int]] = [int(i) for i in np.flatnonzero(ok)]
    values = [float(x) for x in loss[ok]]
    initial = s.info_number("initial_loss")
    if initial is not None:
        labels.insert(0, None)  # the loss at initialization, before any step
        rows.insert(0, None)
        values.insert(0, initial)
    lr, lr_low, lr_high = s.lr_range()
    floor = t.rise_floor * abs(reference)
    rises: List[Dict[str, Any]] = []
    jumped = False
    best, best_label = values[0], labels[0]
    for label, row, value in zip(labels[1:], rows[1:], values[1:]):
        excess = value - best
        # The loss at initialization is one batch's: noisy, so against it only a jump counts.
        needed = t.divergence_jump if best_label is None and initial is not None else t.rise
        if excess > needed * abs(best) and excess > floor:
            relative = excess / max(abs(best), floor, 1e-300)
            jumped = jumped or relative >= t.divergence_jump
            rise = {"epoch": label, "loss": _num(value), "best_before": _num(best), "best_epoch": best_label,
                    "rise": _num(relative)}
            if row is not None and math.isfinite(lr[row]):
                # The lr this epoch's steps used: its mean, and its range when it moved within the epoch.
                rise["lr"] = _num(lr[row])
                if lr_low[row] != lr_high[row]:
                    rise["lr_min"], rise["lr_max"] = _num(lr_low[row]), _num(lr_high[row])
            rises.append(rise)
        if value < best:
            best, best_label = value, label
    if not rises:
        return None
    ends_high = rises[-1]["epoch"] == labels[-1]
    if len(rises) < t.oscillation_rises and not jumped and not ends_high:
        return None
    kind = "diverging" if (jumped or ends_high) else "oscillating"
    worst = max(rises, key=lambda r: r["rise"])
    start = f"the {worst['best_before']:.4g} at initialization" if worst["best_epoch"] is None else \
        f"its best of {worst['best_before']:.4g} (epoch {_human(worst['best_epoch'])})"
    times = f" It rose above its best so far {len(rises)} times." if len(rises) > 1 else ""
    used = ""
    if "lr" in worst:
        used = f" at lr {worst['lr']:.4g}" if "lr_min" not in worst else \
            f" at lr {worst['lr_min']:.4g}-{worst['lr_max']:.4g} (mean {worst['lr']:.4g})"
    lr_seen = lr_high[np.isfinite(lr_high)]
    evidence = {"kind": kind, "rises": rises, "reference_loss": _num(reference), "best_loss": _num(min(values)),
                "final_loss": _num(values[-1])}
    if lr_seen.size:
        evidence["max_lr"] = _num(float(lr_seen.max()))  # the highest lr any step used
    fix = ("Lower the learning rate 3-10x (fa.lr_find suggests one), or warm it up "
           "(fa.AdaptiveLR / a warmup schedule); keep gradient clipping on.")
    if "lr_estimate" in s.adapted_or_estimate():
        # A learning-rate-free rule: its lr is a multiplier of the step it
        # learns, so the step it took and its own knobs are what to report.
        learned, _, learned_high = s.learned_range("lr_estimate")
        row = rows[labels.index(worst["epoch"])] if worst["epoch"] in labels else None
        if row is not None and math.isfinite(learned_high[row]):
            used += f" (learned step size up to {learned_high[row]:.4g})"
            evidence["learned_step_size"] = _num(float(learned_high[row]))
        fix = _step_size_advice(s, exploded=True)
    return _make("lr_too_high", [r["epoch"] for r in rises], evidence,
                 f"The training loss is {kind}: epoch {_human(worst['epoch'])} averaged {worst['loss']:.4g}"
                 f"{used}, {_how_far_above(worst['loss'], worst['best_before'])} {start}.{times}", fix)


def _how_far_above(value: float, best: float) -> str:
    # The ratio a reader can check (value / best); "rise" in the evidence is
    # measured against a floor when the best is near zero, so it is not that ratio.
    if best > 0 and math.isfinite(value):
        return f"{value / best:.3g}x"
    return f"{value - best:.4g} above"


def _exploding(s: _Series, t: Thresholds) -> Optional[Finding]:
    grad = s("grad_norm")
    param = s("param_norm")
    epochs: Set[Any] = set()
    evidence: Dict[str, Any] = {}
    seen: List[str] = []
    grad_hits: List[Dict[str, Any]] = []
    for i in range(1, len(grad)):
        earlier = grad[:i][np.isfinite(grad[:i])]
        if earlier.size and math.isfinite(grad[i]):
            base = float(np.median(earlier))
            if base > 0 and grad[i] >= t.blowup * base:
                grad_hits.append({"epoch": s.epochs[i], "grad_norm": _num(grad[i]), "median_before": _num(base)})
    if grad_hits:
        worst = max(grad_hits, key=lambda h: h["grad_norm"] / h["median_before"])
        evidence["grad_norm"] = grad_hits
        epochs.update(h["epoch"] for h in grad_hits)
        seen.append(f"the gradient norm reached {worst['grad_norm']:.4g}, "
                    f"{worst['grad_norm'] / worst['median_before']:.3g}x its median before "
                    f"(epoch {_human(worst['epoch'])})")
    start = s.info_number("initial_param_norm")
    first = 0 if start is not None else 1
    if start is None:
        finite = param[np.isfinite(param)]
        start = float(finite[0]) if finite.size else None
    if start is not None and start > 0:
        param_hits = [{"epoch": s.epochs[i], "param_norm": _num(param[i])} for i in range(first, len(param))
                      if math.isfinite(param[i]) and param[i] >= t.blowup * start]
        if param_hits:
            worst_p = max(h["param_norm"] for h in param_hits)
            evidence["param_norm"] = param_hits
            evidence["param_norm_start"] = _num(start)
            epochs.update(h["epoch"] for h in param_hits)
            seen.append(f"the parameter norm grew from {start:.4g} to {worst_p:.4g} ({worst_p / start:.3g}x)")
    if not epochs:
        return None
    recorded = s.info.get("optimizer")
    optimizer: Mapping[str, Any] = recorded if isinstance(recorded, Mapping) else {}
    clip = optimizer.get("max_grad_norm")
    if clip:
        advice = (f"Gradient clipping is already on (max_grad_norm={clip}), and adaptive steps are bounded by the "
                  f"learning rate, not the gradient: lower the learning rate, add weight decay (AdamW), or clip "
                  f"tighter.")
    else:
        advice = ("Clip gradients by their global norm (max_grad_norm=1.0, or fa.clip_by_global_norm); lower "
                  "the learning rate or add weight decay if the parameters keep growing.")
    evidence["blowup_factor"] = t.blowup
    return _make("exploding", sorted(epochs), evidence, f"Blow-up: {'; '.join(seen)}.", advice)


def _quantity(name: str) -> str:
    """A learned value as the rule names it: ``d`` for ``adapted/d``."""
    return name[len("adapted/"):] if name.startswith("adapted/") else name


def _times(factor: float) -> str:
    """A factor for people: 8,333x rather than 8.33e+03x."""
    return f"{factor:,.0f}x" if 1000 <= factor < 1e15 else f"{factor:.3g}x"


def _setting(value: Any) -> str:
    if value in ("inf", "-inf", "nan"):  # (how a history's JSON keeps non-finite floats)
        return str(value)
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value)


def _step_size_advice(s: _Series, exploded: bool) -> str:
    """What to change, in the rule's own hyperparameters (read from the
    configuration the run recorded), for a step size that exploded or collapsed."""
    recorded = s.info.get("optimizer")
    config: Mapping[str, Any] = recorded if isinstance(recorded, Mapping) else {}

    def now(name: str) -> str:
        return f" (now {_setting(config[name])})"

    def number(name: str, default: float) -> float:
        value = config.get(name)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default

    clip_off = not config.get("max_grad_norm")
    tips: List[str] = []
    if "d0" in config or "d_coef" in config:  # Prodigy, D-Adaptation: d estimates the distance to the solution
        if exploded:
            if "d_coef" in config:
                tips.append(f"lower d_coef{now('d_coef')}, e.g. to {number('d_coef', 1.0) / 4:g}: it scales the "
                            f"estimate d directly")
            if "growth_rate" in config:
                tips.append(f"cap how fast d may grow per step with growth_rate{now('growth_rate')}, e.g. 1.02")
            if "safeguard_warmup" in config and not config.get("safeguard_warmup"):
                tips.append("set safeguard_warmup=True when the lr is warmed up (a small warmup lr in the "
                            "estimate's denominator inflates d)")
            if "weight_decay" in config:
                tips.append(f"add or raise weight decay{now('weight_decay')}, e.g. 0.01, so the weights (and the "
                            f"distance d measures) cannot run off")
        else:
            if "d_coef" in config:
                tips.append(f"raise d_coef{now('d_coef')}, e.g. to {number('d_coef', 1.0) * 4:g}")
            if "d0" in config:
                tips.append(f"raise d0{now('d0')}, the first estimate, so the first steps move the weights")
            if config.get("safeguard_warmup"):
                tips.append("turn safeguard_warmup off after the warmup (it slows d's growth)")
            if "weight_decay" in config and number("weight_decay", 0.0) > 0:
                tips.append(f"lower weight_decay{now('weight_decay')}: it pulls the weights back toward the start, "
                            f"shrinking the distance d measures")
    elif "reps_rel" in config or "init_eta" in config:  # DoG / LDoG: eta = distance travelled / sqrt(sum |g|^2)
        reps = number("reps_rel", 0.0)
        if exploded:
            tips.append(f"lower reps_rel{now('reps_rel') if 'reps_rel' in config else ''} 100x"
                        f"{f', to {reps / 100:g}' if reps > 0 else ''}, or pass a smaller init_eta"
                        f"{now('init_eta') if 'init_eta' in config else ''}: the first step sets the distance eta "
                        f"grows from")
            if "weight_decay" in config:
                tips.append(f"add weight decay{now('weight_decay')} so the weights cannot run away from the start")
        else:
            tips.append(f"raise reps_rel{now('reps_rel') if 'reps_rel' in config else ''} 100x"
                        f"{f', to {reps * 100:g}' if reps > 0 else ''}, or pass a larger init_eta"
                        f"{now('init_eta') if 'init_eta' in config else ''}: with a first step too small the "
                        f"weights never move away from the start, and eta shrinks as the gradients add up")
            if "weight_decay" in config and number("weight_decay", 0.0) > 0:
                tips.append(f"lower weight_decay{now('weight_decay')}")
    elif "hypergrad_lr" in config:  # hypergradient descent: the lr follows the dot of successive gradients
        rate = number("hypergrad_lr", 0.0)
        smaller = f", e.g. to {rate / 30:.2g}" if rate > 0 else ""
        if exploded:
            tips.append(f"lower hypergrad_lr{now('hypergrad_lr')} 10-100x{smaller}: successive gradients kept "
                        f"agreeing and drove the lr up past stability")
            if "lr" in config:
                tips.append(f"or start from a smaller lr{now('lr')}")
        else:
            tips.append(f"lower hypergrad_lr{now('hypergrad_lr')} 10-100x{smaller}: noisy successive gradients "
                        f"(pointing against each other) drove the lr down")
            tips.append("or use larger batches, so successive gradients are less noisy")
    else:
        if exploded:
            tips.append(f"lower the rule's multiplier lr{now('lr') if 'lr' in config else ''} or the "
                        f"hyperparameter that sets how fast its step size may grow")
        else:
            tips.append(f"raise the rule's multiplier lr{now('lr') if 'lr' in config else ''} or its initial "
                        f"step size estimate")
    if exploded and clip_off:
        tips.append("clip gradients (max_grad_norm=1.0)")
    text = "; ".join(tips)
    return text[0].upper() + text[1:] + "."


def _lr_ratio(lr: np.ndarray, i: int, j: Optional[int]) -> float:
    """How much the multiplier ``lr`` (a schedule's) moved from epoch row j
    to row i; 1 where it is not known."""
    if j is None or not (math.isfinite(lr[i]) and math.isfinite(lr[j]) and lr[i] > 0 and lr[j] > 0):
        return 1.0
    return float(lr[i] / lr[j])


def _learned_at(s: _Series, i: int, j: Optional[int], judged: str) -> Dict[str, List[Any]]:
    """The rule's own learned values (mean per epoch) at epoch rows j and i,
    by the rule's names, but the one judged: the context of a step size finding."""
    out: Dict[str, List[Any]] = {}
    for key in s.adapted_keys():
        if key == judged:
            continue
        values = s(key)
        pair = [values[j] if j is not None else math.nan, values[i]]
        out[_quantity(key)] = [_num(v) if math.isfinite(v) else (None if math.isnan(v) else str(v)) for v in pair]
    return out


def _learned_text(learned: Mapping[str, List[Any]], most: int = 3) -> str:
    shown = [f"{name} {_value(b)}" if a is None else f"{name} {_value(a)} -> {_value(b)}"
             for name, (a, b) in list(learned.items())[:most]]
    return f" (the rule's {', '.join(shown)})" if shown else ""


def _value(v: Any) -> str:
    return "?" if v is None else (v if isinstance(v, str) else f"{v:.3g}")


def _step_size_explosion(s: _Series, t: Thresholds) -> Optional[Finding]:
    loss = s("loss")
    logged = [v is not None for v in s.raw("loss")]
    reference = s.reference_loss(loss)
    if reference is None:
        return None
    initial = s.info_number("initial_loss")
    floor = t.rise_floor * abs(reference)
    lr = s("lr")
    for name in s.step_size_keys():
        level, low, high = s.learned_range(name)
        first = next((i for i in range(len(low)) if math.isfinite(low[i]) and low[i] > 0), None)
        start = low[first] if first is not None else None
        if start is None or first != 0:
            # No positive value in the first epoch (a hypergradient lr already flung negative): the step
            # the rule started from is its configured lr (hypergradient descent starts there).
            configured = s.info.get("optimizer", {}).get("lr") if isinstance(s.info.get("optimizer"), Mapping) \
                else None
            if isinstance(configured, (int, float)) and not isinstance(configured, bool) and configured > 0:
                start, first = float(configured), None
        best: Optional[float] = initial
        best_row: Optional[int] = None
        hits: List[Dict[str, Any]] = []
        for i, value in enumerate(loss):
            if not logged[i]:
                continue
            if best is not None and (best_row is not None or start is not None):
                needed = t.divergence_jump if best_row is None else t.rise
                excess = value - best
                diverged = not math.isfinite(value) or (excess > needed * abs(best) and excess > floor)
                at_best = level[best_row] if best_row is not None else start
                assert at_best is not None  # (start is set when best_row is not: the test above)
                if diverged and math.isfinite(at_best) and at_best > 0 and not math.isnan(high[i]):
                    growth = high[i] / at_best
                    if name == "lr_estimate":  # a schedule's part of the growth (a warmup of lr) is not the rule's
                        growth /= _lr_ratio(lr, i, best_row if best_row is not None else first)
                    if growth >= t.step_growth:
                        hits.append({"epoch": s.epochs[i], "loss": _num(value) if math.isfinite(value) else str(value),
                                     "best_loss": _num(best),
                                     "best_epoch": None if best_row is None else s.epochs[best_row],
                                     "step_size": _num(high[i]) if math.isfinite(high[i]) else str(high[i]),
                                     "step_size_at_best": _num(at_best),
                                     "growth": _num(growth) if math.isfinite(growth) else str(growth),
                                     "learned": _learned_at(s, i, best_row if best_row is not None else first,
                                                            name)})
            if math.isfinite(value) and (best is None or value < best):
                best, best_row = value, i
        if not hits:
            continue
        worst = max(hits, key=lambda h: float(h["growth"]))
        quantity = _quantity(name)
        since = "at initialization" if worst["best_epoch"] is None else f"in epoch {_human(worst['best_epoch'])}"
        return _make("step_size_explosion", [h["epoch"] for h in hits],
                     {"quantity": quantity, "hits": hits, "growth_threshold": t.step_growth},
                     f"The learned step size {quantity} grew {_times(float(worst['growth']))}, from "
                     f"{worst['step_size_at_best']:.3g} when the training loss was at its best ({worst['best_loss']:.4g}, "
                     f"{since}) to {float(worst['step_size']):.3g} in epoch {_human(worst['epoch'])}, and the loss "
                     f"diverged there ({float(worst['loss']):.4g}){_learned_text(worst['learned'])}: the step size "
                     f"estimate overshot.",
                     _step_size_advice(s, exploded=True))
    return None


def _step_size_collapse(s: _Series, t: Thresholds) -> Optional[Finding]:
    window = int(t.window)
    loss = s("loss")
    stalled = _no_progress(loss, s.reference_loss(loss), t, window)
    lr = s("lr")
    for name in s.step_size_keys():
        level, low, high = s.learned_range(name)
        peak, peak_row = -math.inf, None
        collapsed, ratios = [], []
        for i, value in enumerate(level):
            ratio = math.nan
            if peak_row is not None and peak > 0 and not math.isnan(value):
                ratio = value / peak
                if name == "lr_estimate":
                    ratio /= _lr_ratio(lr, i, peak_row)  # the schedule's part of the fall is not the rule's
            collapsed.append(bool(ratio <= t.step_collapse))  # NaN: False; a value <= 0: True
            ratios.append(ratio)
            if math.isfinite(high[i]) and high[i] > peak:
                peak, peak_row = float(high[i]), i
        covered = _windows(collapsed, window)
        if not (stalled and covered and collapsed[-1]):
            below = _below_zero(s, t, name, level, high)
            if below is not None:
                return below
            continue
        start = covered[0]
        for i in reversed(covered):  # the run of collapsed epochs that reaches the end
            if i == 0 or not collapsed[i - 1]:
                start = i
                break
        run = list(range(start, len(level)))
        before = max(range(start), key=lambda i: high[i] if math.isfinite(high[i]) else -math.inf)
        quantity, final = _quantity(name), float(level[-1])
        good = np.flatnonzero(np.isfinite(loss))
        loss_before, best_after = float(loss[good[-window - 1]]), float(np.nanmin(loss[good[-window:]]))
        fallen = "at or below zero" if final <= 0 else f"{_times(1 / ratios[-1])} below it"
        learned = _learned_at(s, len(level) - 1, before, name)
        return _make("step_size_collapse", [s.epochs[i] for i in run],
                     {"quantity": quantity, "peak": _num(high[before]), "peak_epoch": s.epochs[before],
                      "final": _num(final), "ratios": [_num(ratios[i]) for i in run],
                      "loss_before": _num(loss_before), "best_in_window": _num(best_after),
                      "collapse_threshold": t.step_collapse, "learned": learned},
                     f"The learned step size {quantity} fell from its peak of {high[before]:.3g} (epoch "
                     f"{_human(s.epochs[before])}) to {final:.3g} ({fallen}) and stayed down for {len(run)} epochs, "
                     f"while the training loss stopped improving ({loss_before:.4g} -> best {best_after:.4g})"
                     f"{_learned_text(learned)}: training stalled because the rule's steps became too small to "
                     f"move the weights.",
                     _step_size_advice(s, exploded=False))
    return None


def _below_zero(s: _Series, t: Thresholds, name: str, level: np.ndarray, high: np.ndarray) -> Optional[Finding]:
    """A step size whose epoch mean went to or below zero (a hypergradient
    drives the lr there: the rule then steps against the gradient), after
    which the training loss never improved on that epoch's (by
    ``plateau_progress``) and has not converged."""
    loss = s("loss")
    rows = [i for i, v in enumerate(level) if math.isfinite(v) and v <= 0]
    if not rows or not math.isfinite(loss[rows[0]]):
        return None
    first = rows[0]
    later = [i for i in range(first + 1, len(loss)) if math.isfinite(loss[i])]
    reference = s.reference_loss(loss)
    if not later or reference is None:
        return None
    loss_before = float(loss[first])
    best_after = float(min(loss[i] for i in later))
    final = float(loss[later[-1]])
    if loss_before - best_after >= t.plateau_progress * abs(loss_before) or abs(final) <= t.converged * abs(reference):
        return None  # it still made progress, or had converged
    finite_high = [i for i in range(first) if math.isfinite(high[i])]
    peak_row = max(finite_high, key=lambda i: high[i]) if finite_high else None
    quantity, lowest = _quantity(name), float(min(level[i] for i in rows))
    learned = _learned_at(s, rows[-1], peak_row, name)
    peak = "" if peak_row is None else f"; its peak {high[peak_row]:.3g} in epoch {_human(s.epochs[peak_row])}"
    return _make("step_size_collapse", [s.epochs[i] for i in rows],
                 {"quantity": quantity, "kind": "at_or_below_zero", "lowest": _num(lowest),
                  "peak": None if peak_row is None else _num(high[peak_row]),
                  "peak_epoch": None if peak_row is None else s.epochs[peak_row],
                  "loss_then": _num(loss_before), "best_after": _num(best_after), "final_loss": _num(final),
                  "learned": learned},
                 f"The learned step size {quantity} went to or below zero in {_span([s.epochs[i] for i in rows])} "
                 f"(down to {lowest:.3g}{peak}){_learned_text(learned)}: the rule stepped against the gradient, "
                 f"and the training loss has not improved since ({loss_before:.4g} in epoch "
                 f"{_human(s.epochs[first])} -> best {best_after:.4g}, last {final:.4g}).",
                 _step_size_advice(s, exploded=False))


def _windows(flags: Sequence[bool], length: int) -> List[int]:
    """Indices covered by runs of at least ``length`` consecutive True flags."""
    covered: List[int] = []
    run = 0
    for i, flag in enumerate(flags):
        run = run + 1 if flag else 0
        if run == length:
            covered.extend(range(i - length + 1, i + 1))
        elif run > length:
            covered.append(i)
    return covered


def _no_progress(loss: np.ndarray, reference: Optional[float], t: Thresholds, window: int) -> bool:
    """The training loss did not improve over the last ``window`` epochs and is not converged."""
    finite = loss[np.isfinite(loss)]
    if finite.size < window + 1 or reference is None:
        return False
    before, recent = finite[-window - 1], finite[-window:]
    stuck = before - recent.min() < t.plateau_progress * abs(before)
    converged = abs(finite[-1]) <= t.converged * abs(reference)
    return bool(stuck and not converged)


def _vanishing(s: _Series, t: Thresholds) -> Optional[Finding]:
    window = int(t.window)
    layers = s.layer_names()
    if len(layers) >= 2:
        table = np.vstack([s(name) for name in layers])
        ratios = []
        for col in table.T:
            good = col[np.isfinite(col)]
            ratios.append(float(good.min() / good.max()) if good.size >= 2 and good.max() > 0 else math.nan)
        covered = _windows([math.isfinite(r) and r < t.layer_ratio for r in ratios], window)
        if covered:
            weakest = [layers[int(np.nanargmin(table[:, i]))][len("grad_norm."):] for i in covered]
            layer = max(set(weakest), key=weakest.count)
            worst = min(ratios[i] for i in covered)
            return _make("vanishing_gradients", [s.epochs[i] for i in covered],
                         {"layer": layer, "min_layer_ratio": _num(worst),
                          "layer_ratios": [_num(ratios[i]) for i in covered], "threshold": t.layer_ratio},
                         f"Layer {layer!r} gets " + ("no gradient at all (its units are dead)" if worst == 0 else
                                                     f"a gradient {worst:.3g} times the largest layer's") +
                         f" in {_span([s.epochs[i] for i in covered])}: it has stopped learning.",
                         "Use ReLU-family activations (or LeakyReLU/GELU if ReLUs have died: a zero gradient "
                         "after a large step means dead units, so also lower the learning rate), He/Xavier "
                         "initialization, normalization layers or residual connections.")
    grad, param, loss = s("grad_norm"), s("param_norm"), s("loss")
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = grad / param
    tiny = [bool(math.isfinite(r) and r < t.relative_grad) for r in relative]
    covered = _windows(tiny, window)
    if covered and tiny[-1] and _no_progress(loss, s.reference_loss(loss), t, window):
        return _make("vanishing_gradients", [s.epochs[i] for i in covered],
                     {"relative_grad_norm": [_num(relative[i]) for i in covered], "threshold": t.relative_grad},
                     f"The gradient norm is {relative[-1]:.3g} of the parameter norm and the loss no longer "
                     f"improves: the gradients have vanished.",
                     "Use ReLU-family activations instead of saturating ones (sigmoid/tanh), He initialization, "
                     "normalization layers or residual connections; check that the loss depends on the params.")
    return None


def _overfitting(s: _Series, t: Thresholds) -> Optional[Finding]:
    loss, val = s("loss"), s("val_loss")
    both = np.isfinite(loss) & np.isfinite(val)
    idx = np.flatnonzero(both)
    if idx.size < t.overfit_patience + 1:
        return None
    best = int(idx[np.argmin(val[idx])])
    after = [int(i) for i in idx if i > best]
    if len(after) < t.overfit_patience:
        return None
    # Judged at the worst validation epoch since the best, not only the last: a
    # run stopped early often ends after validation partly recovered.
    scale_val, scale_train = abs(val[best]) or 1.0, abs(loss[best]) or 1.0
    showing = [i for i in after if (val[i] - val[best]) / scale_val >= t.overfit_rise
               and (loss[best] - loss[i]) / scale_train >= t.overfit_train_drop
               and loss[i] <= t.overfit_gap * val[i]]
    if not showing:
        return None
    worst = max(showing, key=lambda i: val[i])
    val_rise = (val[worst] - val[best]) / scale_val
    train_drop = (loss[best] - loss[worst]) / scale_train
    return _make("overfitting", [s.epochs[i] for i in after],
                 {"best_epoch": s.epochs[best], "best_val_loss": _num(val[best]), "worst_epoch": s.epochs[worst],
                  "worst_val_loss": _num(val[worst]), "val_rise": _num(val_rise),
                  "train_loss_at_best": _num(loss[best]), "train_loss_at_worst": _num(loss[worst]),
                  "train_drop": _num(train_drop)},
                 f"Since epoch {_human(s.epochs[best])} the validation loss rose {100 * val_rise:.0f}% "
                 f"({val[best]:.4g} -> {val[worst]:.4g} at epoch {_human(s.epochs[worst])}) while the training "
                 f"loss fell "
                 f"{100 * train_drop:.0f}% ({loss[best]:.4g} -> {loss[worst]:.4g}).",
                 "Stop at the best validation epoch (fa.EarlyStopping(restore_best=True)); regularize: weight "
                 "decay (AdamW), dropout, data augmentation, a smaller model, or more training data.")


def _plateau(s: _Series, t: Thresholds) -> Optional[Finding]:
    window = int(t.plateau_window)
    loss = s("loss")
    if not _no_progress(loss, s.reference_loss(loss), t, window):
        return None
    good = np.flatnonzero(np.isfinite(loss))
    before, recent = good[-window - 1], good[-window:]
    lr_all, low_all, high_all = s.lr_range()
    lr, low, high = lr_all[recent], low_all[recent], high_all[recent]
    lr_finite = lr[np.isfinite(lr)]
    # Moved between the window's epochs, or within one of them (a per-step schedule).
    lr_moved = bool((lr_finite.size > 1 and lr_finite.max() > lr_finite.min()) or np.any(low < high))
    evidence: Dict[str, Any] = {"loss_before": _num(loss[before]), "best_in_window": _num(loss[recent].min()),
                "progress": _num((loss[before] - loss[recent].min()) / abs(loss[before])),
                "window": window}
    if lr_finite.size:
        evidence["lr"] = [_num(x) for x in lr_finite]
    if lr_moved:
        advice = ("The learning rate already moved in this window; if the loss is still high the model may lack "
                  "capacity or the lr may now be too small: try a restart (cosine with restarts) or a "
                  "one-cycle schedule.")
    else:
        advice = ("Schedule the learning rate: cut it on plateaus (fa.ReduceLROnPlateau, fa.AdaptiveLR) or use "
                  "a cosine / one-cycle schedule; if the loss is still high, the lr may be too small "
                  "(fa.lr_find).")
    return _make("plateau", [s.epochs[i] for i in recent], evidence,
                 f"The training loss improved by only {100 * evidence['progress']:.2g}% over the last {window} "
                 f"epochs ({loss[before]:.4g} -> best {loss[recent].min():.4g}).", advice)


def diagnose(history: Union[History, Mapping[str, Any], str, "os.PathLike[str]"],
             thresholds: Optional[Thresholds] = None) -> List[Finding]:
    """Findings for a training history, most likely root cause first.

    Parameters
    ----------
    history
        a [`History`][fastadapt.History] (``trainer.history``, ``History.load``), the path of a
        history JSON file, or a dict (``History.to_dict()`` or Keras's ``model.fit(...).history``).
    thresholds
        the rules' numbers ([`Thresholds`][fastadapt.Thresholds]); see the module documentation for each rule.

    Returns
    -------
    List[Finding]
        A list of [`Finding`][fastadapt.Finding] in the order of ``CODES``; empty for a healthy run.
    """
    t = Thresholds() if thresholds is None else thresholds
    if not isinstance(t, Thresholds):
        raise TypeError(f"thresholds must be a fastadapt.Thresholds, got {type(t).__name__}")
    s = _Series(_as_history(history))
    found: Dict[str, Finding] = {}
    rules = (("nonfinite", _nonfinite), ("step_size_explosion", _step_size_explosion), ("lr_too_high", _lr_too_high),
             ("exploding", _exploding), ("vanishing_gradients", _vanishing), ("step_size_collapse", _step_size_collapse),
             ("overfitting", _overfitting), ("plateau", _plateau))
    # A finding left out where another explains it better.
    explained_by = {"lr_too_high": ("step_size_explosion",),
                    "overfitting": ("lr_too_high", "step_size_explosion"),
                    "plateau": ("lr_too_high", "vanishing_gradients", "step_size_collapse", "step_size_explosion")}
    for code, rule in rules:
        if any(other in found for other in explained_by.get(code, ())):
            continue
        finding = rule(s, t)
        if finding is not None:
            found[code] = finding
    return list(found.values())


def save_findings(findings: Sequence[Finding], path: Union[str, "os.PathLike[str]"]) -> None:
    """Write findings as a JSON list of their dicts (atomically: on any error
    the file that was there before stays)."""
    items = list(findings) if isinstance(findings, (list, tuple)) else None
    if items is None:
        raise TypeError(f"findings must be a list of fastadapt Findings (what fa.diagnose returns), got "
                        f"{type(findings).__name__}")
    for i, finding in enumerate(items):
        if not isinstance(finding, Finding):
            raise TypeError(f"findings[{i}] must be a fastadapt Finding (what fa.diagnose returns), got "
                            f"{type(finding).__name__} {finding!r:.60}")
    write_text(path, json.dumps([finding.to_dict() for finding in items], indent=1, allow_nan=False) + "\n")


class DiagnosisCallback(Callback):
    """Runs [`diagnose`][fastadapt.diagnose] on ``trainer.history`` after every epoch and
    reports each finding code once per run.

    ``findings`` lists what was reported, in order; the reported codes are its
    state (a resumed run does not repeat them).

    Parameters
    ----------
    thresholds
        passed to [`diagnose`][fastadapt.diagnose].
    report
        ``finding -> None``; default: ``warnings.warn`` with ``DiagnosisWarning``. Pass e.g.
        ``trainer.log``-based printing to show findings under the progress bar.
    """

    def __init__(self, thresholds: Optional[Thresholds] = None, report: Optional[Callable[[Finding], Any]] = None):
        if thresholds is not None and not isinstance(thresholds, Thresholds):
            raise TypeError(f"thresholds must be a fastadapt.Thresholds or None, got {type(thresholds).__name__}")
        if report is not None and not callable(report):
            raise TypeError(f"report must be a function finding -> None, got {type(report).__name__}")
        self.thresholds = thresholds
        self.report = report
        self.findings: List[Finding] = []
        self.reported: List[str] = []

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any], trainer: Any) -> None:
        for finding in diagnose(trainer.history, self.thresholds):
            if finding.code in self.reported:
                continue
            self.reported.append(finding.code)
            self.findings.append(finding)
            if self.report is None:
                warnings.warn(f"epoch {_human(epoch)}: {finding}", DiagnosisWarning, stacklevel=2)
            else:
                self.report(finding)

    def state_dict(self) -> Dict[str, Any]:
        """``{"reported": [codes]}``: the finding codes reported so far, so a
        resumed run does not report them again."""
        return {"reported": list(self.reported)}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore what [`state_dict`][fastadapt.DiagnosisCallback.state_dict] returned.

        Raises
        ------
        ValueError
            when the state is not ``{"reported": [...]}`` or lists an unknown code.
        """
        if not isinstance(state_dict, Mapping) or set(state_dict) != {"reported"}:
            raise ValueError("DiagnosisCallback state must be {'reported': [codes]}; pass what state_dict() returned")
        codes = state_dict["reported"]
        if not isinstance(codes, (list, tuple)) or any(c not in SEVERITY for c in codes):
            raise ValueError(f"DiagnosisCallback state 'reported' must list finding codes ({', '.join(CODES)}), "
                             f"got {codes!r}")
        self.reported = list(codes)
