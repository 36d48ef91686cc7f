"""Tuner benchmark (issue 17): anytime performance of the tuners at equal
total budget, on the workloads of bench/tuner_workloads.py.

Contenders, each run with seeds 0..9 on the sequential executor with one
BLAS thread (so the order in which budget is spent is deterministic):

- random search: ``fa.tune.Search`` (every config trained to R);
- random Hyperband: ``fa.tune.Hyperband(max_resource=R, eta=3)``, one full run;
- ASHA: ``fa.tune.ASHA(min_resource=1, max_resource=R, eta=3)``;
- fastadapt TPE: ``fa.tune.ASHA(..., searcher=fa.tune.TPE())``, TPE proposing the configs of
  asynchronous successive halving: the closest match of Optuna's TPE + pruner;
- BOHB: ``fa.tune.BOHB(max_resource=R, eta=3)`` (Hyperband's brackets, TPE per budget);
- Optuna: ``TPESampler(seed=s)`` + ``HyperbandPruner(min_resource=1, max_resource=R,
  reduction_factor=3)``, each trial reporting its metric every epoch (skipped without optuna).

Budget: units actually computed (a trial's ``cost``; for Optuna the epochs
trained), counted in the order evaluations finished (the tuners'
``on_result``). The total budget B is random Hyperband's planned cost for R
and eta (every trainable here is resumable, so that is what it computes);
every other contender runs until it has spent B (the job that crosses B
still counts, so curves stop at B). The best-so-far is the best validation
metric of any evaluation made so far (``result.best_metric``'s rule).

Targets (asserted in the full run): on every workload
1. BOHB's mean best reaches random Hyperband's final mean best within B/3;
2. BOHB's mean best at B matches or beats Optuna TPE + Hyperband pruner's:
   lower, or higher by less than one standard error of the difference of the
   two means (sqrt(s_a^2 / n + s_b^2 / n)), i.e. not distinguishable.

Runs:
    python -m pytest bench/test_tuners.py -s                  # full: 10 seeds, R = 27 (about 10-15 min)
    python -m pytest bench --benchmark-disable                # CI: 2 seeds, tiny budgets, checks the harness
    FASTADAPT_TUNERS_SCALE=small|full                         # forces either
    python bench/test_tuners.py bench/out/tuners.npz          # redraws table and figure from a run's curves
    FASTADAPT_TUNERS_WORKLOADS=hartmann,lstsq FASTADAPT_TUNERS_R=hartmann=81,lstsq=81   # explore (targets are
                                                              # stated for the default workloads and R)
    FASTADAPT_TUNERS_MD=path.md FASTADAPT_TUNERS_PNG=path.png # outputs (default: bench/out/tuners.{md,png} in
                                                              # the full run, pytest's tmp_path in the small one)
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import pytest

import fastadapt as fa
import tuner_workloads as W
from blas_threads import one_blas_thread

T = fa.tune
HERE = os.path.dirname(os.path.abspath(__file__))
# Where the full run writes its table and figure (the small run writes to pytest's tmp_path unless these are set,
# so CI never overwrites the committed full results).
OUT_DIR = os.path.join(HERE, "out")
ETA = 3

SCALES = {
    # seeds, R per workload, and Hyperband iterations (the whole bracket table run that many times; B is their
    # cost). The first full run (R = 27, one iteration: B = 357) is kept in bench/out/tuners_R27_1iteration.md.
    "full": {"seeds": 10, "R": {"mnist": 9, "hartmann": 9, "lstsq": 9}, "iterations": 5},
    "small": {"seeds": 2, "R": {"mnist": 3, "hartmann": 9, "lstsq": 9}, "iterations": 1},
}
# The scale's iterations, for the contenders that run Hyperband's table (set by measure()).
ITERATIONS = {"n": 1}


class BudgetSpent(Exception):
    """Raised by the budget log once a run has spent its budget: ends the run."""


class BudgetLog:
    """(cumulative cost, best so far) after every evaluation, in the order they finished."""

    def __init__(self, budget: int):
        self.budget = budget
        self.spent = 0
        self.best = math.inf
        self.costs: Dict[int, int] = {}
        self.points: List[tuple] = []

    def add(self, cost: int, metric: Optional[float]) -> None:
        self.spent += cost
        if metric is not None and math.isfinite(metric):
            self.best = min(self.best, float(metric))
        self.points.append((self.spent, self.best))
        if self.spent >= self.budget:
            raise BudgetSpent

    def on_result(self, trial: Any) -> None:
        """The tuners' callback: the trial's new cost since its last result, and its new metric."""
        delta = trial.cost - self.costs.get(trial.trial_id, 0)
        self.costs[trial.trial_id] = trial.cost
        fresh = trial.history and delta > 0
        self.add(delta, trial.history[-1]["metric"] if fresh else None)

    def curve(self, grid: np.ndarray) -> np.ndarray:
        """Best so far after spending each budget of ``grid`` (inf before the first evaluation)."""
        if not self.points:
            return np.full(len(grid), math.inf)
        spent = np.array([p[0] for p in self.points])
        best = np.array([p[1] for p in self.points])
        index = np.searchsorted(spent, grid, side="right") - 1
        return np.where(index >= 0, best[np.maximum(index, 0)], math.inf)


# ---- contenders -------------------------------------------------------------------------------------------------
@dataclass
class Contender:
    name: str
    what: str
    run: Callable[[W.Workload, int, BudgetLog], None]
    available: Callable[[], bool] = lambda: True


def _common(workload: W.Workload, seed: int, log: BudgetLog) -> Dict[str, Any]:
    return {"metric": workload.metric, "mode": "min", "seed": seed, "executor": "sequential",
            "on_result": log.on_result}


def _run(tuner: Any) -> None:
    with contextlib.suppress(BudgetSpent):
        tuner.run()


def run_random_search(w, seed, log):
    n = -(-log.budget // w.max_resource) + 1
    _run(T.Search(w.trainable, w.space, num_trials=n, max_resource=w.max_resource, **_common(w, seed, log)))


def run_hyperband(w, seed, log):
    _run(T.Hyperband(w.trainable, w.space, max_resource=w.max_resource, eta=ETA, iterations=ITERATIONS["n"],
                     **_common(w, seed, log)))


def run_asha(w, seed, log, **kwargs):
    _run(T.ASHA(w.trainable, w.space, num_trials=log.budget, min_resource=1, max_resource=w.max_resource, eta=ETA,
                **kwargs, **_common(w, seed, log)))


def run_tpe(w, seed, log):
    run_asha(w, seed, log, searcher=T.TPE())


def run_bohb(w, seed, log):
    _run(T.BOHB(w.trainable, w.space, max_resource=w.max_resource, eta=ETA, iterations=ITERATIONS["n"],
                **_common(w, seed, log)))


def optuna_params(trial: Any, space: Dict[str, Any]) -> Dict[str, Any]:
    """A config of a (flat) fastadapt space drawn by an Optuna trial."""
    config = {}
    for name, domain in space.items():
        if isinstance(domain, T.Float):
            config[name] = trial.suggest_float(name, domain.low, domain.high, log=domain.log)
        elif isinstance(domain, T.Integer):
            config[name] = trial.suggest_int(name, domain.low, domain.high - 1)   # fastadapt's high is excluded
        elif isinstance(domain, T.Categorical):
            config[name] = trial.suggest_categorical(name, list(domain.values))
        else:
            config[name] = domain
    return config


def run_optuna(w, seed, log):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # (the trial ended by BudgetSpent would warn)
    # A fixed study name: HyperbandPruner assigns trials to brackets by a hash of it (a random default name
    # makes the run irreproducible).
    study = optuna.create_study(
        study_name=f"{w.name}-{seed}", direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=w.max_resource, reduction_factor=ETA))

    def objective(trial):
        model = w.trainable(optuna_params(trial, w.space))
        value = math.inf
        for epoch in range(1, w.max_resource + 1):
            value = w.value(model.train(1))
            log.add(1, value)   # raises BudgetSpent (out of optimize) once the budget is spent
            if not math.isfinite(value):
                raise optuna.TrialPruned()   # diverged: pruned at its last finite report (fastadapt fails it)
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    with contextlib.suppress(BudgetSpent):
        study.optimize(objective)


def _has_optuna() -> bool:
    try:
        import optuna  # noqa: F401
    except ImportError:
        return False
    return True


CONTENDERS = [
    Contender("random search", "fa.tune.Search, every config to R", run_random_search),
    Contender("Hyperband", "fa.tune.Hyperband, random configs", run_hyperband),
    Contender("ASHA", "fa.tune.ASHA, random configs", run_asha),
    Contender("TPE", "fa.tune.ASHA(searcher=fa.tune.TPE())", run_tpe, lambda: hasattr(T, "TPE")),
    Contender("BOHB", "fa.tune.BOHB", run_bohb, lambda: hasattr(T, "BOHB")),
    Contender("Optuna TPE+HB", "optuna TPESampler + HyperbandPruner", run_optuna, _has_optuna),
]


# ---- measuring ---------------------------------------------------------------------------------------------
def hyperband_budget(w: W.Workload) -> int:
    return T.Hyperband(w.trainable, w.space, max_resource=w.max_resource, eta=ETA, iterations=ITERATIONS["n"],
                       seed=0).planned_cost()


@dataclass
class Measured:
    workload: W.Workload
    budget: int
    grid: np.ndarray
    curves: Dict[str, np.ndarray]     # contender -> (seeds, len(grid)) best so far
    spent: Dict[str, List[int]]       # contender -> units each seed's run computed (the last job may cross B)
    seconds: Dict[str, float]


def _overrides() -> Dict[str, int]:
    """FASTADAPT_TUNERS_R="hartmann=81,lstsq=81": another R for some workloads (for exploring; the
    targets are stated for the defaults)."""
    out = {}
    for item in filter(None, os.environ.get("FASTADAPT_TUNERS_R", "").split(",")):
        name, _, value = item.partition("=")
        assert name.strip() in W.WORKLOADS and value.strip().isdigit(), f"FASTADAPT_TUNERS_R: bad item {item!r}"
        out[name.strip()] = int(value)
    return out


def measure(scale: str, contenders: List[Contender], workloads: Optional[List[str]] = None) -> List[Measured]:
    settings = SCALES[scale]
    R = {**settings["R"], **_overrides()}
    ITERATIONS["n"] = int(os.environ.get("FASTADAPT_TUNERS_ITERATIONS", settings["iterations"]))
    out = []
    with one_blas_thread():
        for name in workloads or list(W.WORKLOADS):
            w = W.WORKLOADS[name](R[name])
            budget = hyperband_budget(w)
            grid = np.arange(1, budget + 1)
            curves, spent, seconds = {}, {}, {}
            for c in contenders:
                started = time.perf_counter()
                rows, spent[c.name] = [], []
                for seed in range(settings["seeds"]):
                    log = BudgetLog(budget)
                    c.run(w, seed, log)
                    rows.append(log.curve(grid))
                    spent[c.name].append(log.spent)
                curves[c.name] = np.array(rows)
                seconds[c.name] = time.perf_counter() - started
            out.append(Measured(w, budget, grid, curves, spent, seconds))
    return out


def mean_curve(curves: np.ndarray) -> np.ndarray:
    """Mean over seeds; inf until every seed has an evaluation."""
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(curves).all(axis=0), curves.mean(axis=0), math.inf)


def at(curves: np.ndarray, budget: int, fraction: float) -> np.ndarray:
    """Each seed's best so far after ``fraction`` of the budget (rounded down, at least 1 unit)."""
    return curves[:, max(int(budget * fraction), 1) - 1]


def reach_fraction(curves: np.ndarray, target: float, budget: int) -> Optional[float]:
    """The smallest budget fraction at which the mean best is <= target (None: not within the budget)."""
    hit = np.nonzero(mean_curve(curves) <= target)[0]
    return None if hit.size == 0 else (hit[0] + 1) / budget


# ---- reporting ---------------------------------------------------------------------------------------------
def _pm(values: np.ndarray) -> str:
    if not np.isfinite(values).all():
        return "-"
    return f"{values.mean():.4g} ± {values.std():.2g}"


def table(results: List[Measured], seeds: int) -> str:
    lines = [f"Best validation metric (lower is better) after spending 1/9, 1/3 and all of the budget B "
             f"(random Hyperband's, eta={ETA}); mean ± std over {seeds} seeds. 'reaches HB' is the budget "
             f"fraction at which the mean best first reaches random Hyperband's final mean best.", ""]
    for m in results:
        w = m.workload
        hb_final = float(mean_curve(m.curves["Hyperband"])[-1])
        lines.append(f"### {w.name}: {w.describe}")
        lines.append("")
        lines.append(f"R = {w.max_resource} {w.unit}, B = {m.budget} {w.unit}"
                     + (f"; {w.reference}" if w.reference else "") + f"; Hyperband's final mean best {hb_final:.4g}")
        lines.append("")
        lines.append("| contender | at B/9 | at B/3 | at B | reaches HB | seconds | what |")
        lines.append("|---|---|---|---|---|---|---|")
        for name, curves in m.curves.items():
            fraction = reach_fraction(curves, hb_final, m.budget)
            what = next(c.what for c in CONTENDERS if c.name == name)
            lines.append(f"| {name} | {_pm(at(curves, m.budget, 1 / 9))} | {_pm(at(curves, m.budget, 1 / 3))} | "
                         f"{_pm(at(curves, m.budget, 1.0))} | "
                         f"{'-' if fraction is None else f'{fraction:.2f} B'} | {m.seconds[name]:.0f} | {what} |")
        lines.append("")
    return "\n".join(lines)


COLORS = {"random search": "0.5", "Hyperband": "tab:blue", "ASHA": "tab:cyan", "TPE": "tab:green",
          "BOHB": "tab:red", "Optuna TPE+HB": "tab:purple"}


def save_curves(results: List[Measured], path: str) -> None:
    """The raw curves (and spent budgets, seconds) as .npz, so the table and figure can be redrawn."""
    arrays: Dict[str, Any] = {}
    for m in results:
        arrays[f"{m.workload.name}|R"] = np.array(m.workload.max_resource)
        arrays[f"{m.workload.name}|iterations"] = np.array(ITERATIONS["n"])
        for name, curves in m.curves.items():
            arrays[f"{m.workload.name}|{name}|curves"] = curves
            arrays[f"{m.workload.name}|{name}|spent"] = np.array(m.spent[name])
            arrays[f"{m.workload.name}|{name}|seconds"] = np.array(m.seconds[name])
    np.savez_compressed(path, **arrays)


def load_curves(path: str) -> List[Measured]:
    data = np.load(path)
    results = []
    for workload in dict.fromkeys(k.split("|")[0] for k in data.files):
        w = W.WORKLOADS[workload](int(data[f"{workload}|R"]))
        # (files written before iterations existed ran one)
        ITERATIONS["n"] = int(data[f"{workload}|iterations"]) if f"{workload}|iterations" in data.files else 1
        names = [k.split("|")[1] for k in data.files if k.startswith(workload + "|") and k.endswith("|curves")]
        budget = hyperband_budget(w)
        results.append(Measured(w, budget, np.arange(1, budget + 1),
                                {n: data[f"{workload}|{n}|curves"] for n in names},
                                {n: data[f"{workload}|{n}|spent"].tolist() for n in names},
                                {n: float(data[f"{workload}|{n}|seconds"]) for n in names}))
    return results


def plot(results: List[Measured], path: str, seeds: int) -> str:
    """Top row: the whole run (log budget axis); bottom row: its last 8/9 zoomed in, where the contenders
    separate. Mean line and 25-75th percentile band per contender."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from fastadapt.train.plotting import _plain_log_ticks   # plain numbers on log axes, as fastadapt's plots

    figure = Figure(figsize=(5.2 * len(results), 8.4), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.subplots(2, len(results), squeeze=False)
    for column, m in enumerate(results):
        w = m.workload
        # Hartmann's values go negative: draw the gap to its known optimum on a log axis instead.
        shift = w.optimum if w.optimum is not None else 0.0
        x = m.grid
        zoom_from = max(int(m.budget / 9), 1)
        lines = {}
        for name, curves in m.curves.items():
            values = curves - shift
            ok = np.isfinite(values).all(axis=0)   # from the budget at which every seed has an evaluation
            if ok.any():
                low, high = np.percentile(values[:, ok], [25, 75], axis=0)
                lines[name] = (x[ok], values[:, ok].mean(axis=0), low, high)
        hb_final = float(mean_curve(m.curves["Hyperband"])[-1]) - shift
        for row, ax in enumerate(grid[:, column]):
            for name, (xs, mean, low, high) in lines.items():
                ax.plot(xs, mean, color=COLORS.get(name), lw=2.2 if name == "BOHB" else 1.4, label=name,
                        zorder=3 if name == "BOHB" else 2)
                ax.fill_between(xs, low, high, color=COLORS.get(name), alpha=0.13, lw=0)
            ax.axhline(hb_final, color="tab:blue", ls=":", lw=1)
            for fraction, label in ((1 / 9, "B/9"), (1 / 3, "B/3")):
                ax.axvline(m.budget * fraction, color="0.55", lw=0.9, ls="--", zorder=0)
                ax.text(m.budget * fraction, 1.0, label, transform=ax.get_xaxis_transform(), ha="center",
                        va="bottom", fontsize=8, color="0.3")
            ax.set_xscale("log")
            ax.set_yscale("log")
            start = 1 if row == 0 else zoom_from
            ax.set_xlim(start, m.budget)
            # The upper y limit from the bands (75th percentiles), not the means: one seed's diverged first
            # evaluation (1e6) would stretch the axis over decades; a mean above it leaves the panel.
            seen = [high[xs >= start] for xs, _, _, high in lines.values()]
            floor = [np.concatenate([mean[xs >= start], low[xs >= start]]) for xs, mean, low, _ in lines.values()]
            upper = max(float(v.max()) for v in seen if v.size)
            lower = min(float(v.min()) for v in floor if v.size)
            ax.set_ylim(lower / 1.08, upper * 1.08)
            _plain_log_ticks(ax, "y", few_decades=upper / lower < 100)
            _plain_log_ticks(ax, "x")
            ax.grid(alpha=0.3, which="major")
            ax.grid(alpha=0.12, which="minor")
            what = f"best {w.label} so far" if w.optimum is None else f"best {w.label} − optimum ({w.optimum})"
            ax.set_ylabel(what)
            if row == 0:
                ax.set_title(f"{w.name}: R={w.max_resource}, B={m.budget} {w.unit}", fontsize=10, pad=14)
            else:
                ax.set_title(f"{w.name}, from B/9 on", fontsize=9, pad=14)
                ax.set_xlabel(f"budget spent ({w.unit}, all trials together)")
    handles, labels = grid[0, 0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=9, frameon=False)
    figure.suptitle(f"Anytime best at equal budget B (random Hyperband's): mean over {seeds} seeds, bands 25-75th "
                    f"percentile; dotted: random Hyperband's final mean", fontsize=10)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


# ---- the test ----------------------------------------------------------------------------------------------
def _scale(config: Any) -> str:
    forced = os.environ.get("FASTADAPT_TUNERS_SCALE")
    if forced:
        assert forced in SCALES, f"FASTADAPT_TUNERS_SCALE must be one of {sorted(SCALES)}, got {forced!r}"
        return forced
    return "small" if config.getoption("benchmark_disable", default=False) else "full"


def test_tuners_at_equal_budget(request, tmp_path):
    scale = _scale(request.config)
    out_dir = OUT_DIR if scale == "full" else str(tmp_path)
    out_md = os.environ.get("FASTADAPT_TUNERS_MD", os.path.join(out_dir, "tuners.md"))
    out_png = os.environ.get("FASTADAPT_TUNERS_PNG", os.path.join(out_dir, "tuners.png"))
    contenders = [c for c in CONTENDERS if c.available()]
    missing = [c.name for c in CONTENDERS if c not in contenders]
    chosen = os.environ.get("FASTADAPT_TUNERS_WORKLOADS")
    results = measure(scale, contenders, chosen.split(",") if chosen else None)
    seeds = SCALES[scale]["seeds"]
    text = table(results, seeds)
    if missing:
        text += f"\nNot run (not available here): {', '.join(missing)}\n"
    print("\n" + text)
    os.makedirs(os.path.dirname(os.path.abspath(out_md)), exist_ok=True)
    with open(out_md, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    save_curves(results, os.path.splitext(out_md)[0] + ".npz")
    plot(results, out_png, seeds)
    assert os.path.getsize(out_png) > 10_000
    print(f"table: {out_md}\nanytime curves: {out_png}")

    # The harness: every contender spent the budget and improved on its first evaluation; curves are monotone.
    for m in results:
        assert m.budget == hyperband_budget(m.workload)
        for name, curves in m.curves.items():
            assert curves.shape == (seeds, m.budget), name
            assert np.isfinite(curves[:, -1]).all(), f"{name} on {m.workload.name}: no finite evaluation"
            finite = np.where(np.isfinite(curves), curves, np.finfo(np.float64).max)   # inf before the first
            assert (np.diff(finite, axis=1) <= 0).all(), f"{name}: best so far got worse"
            if m.workload.optimum is not None:
                assert (curves[:, -1] >= m.workload.optimum - 1e-9).all(), f"{name} beat the known optimum"
            # Everyone spent the budget (Hyperband and BOHB: their planned cost, less a failed trial's
            # remaining rungs), and no run went on past the job that crossed it.
            assert all(0.9 * m.budget <= s < m.budget + m.workload.max_resource for s in m.spent[name]), \
                (name, m.spent[name])
            assert f"| {name} |" in text
        assert max(m.spent["Hyperband"]) == m.budget
    if scale != "full":
        return

    failures = []
    for m in results:
        hb_final = float(mean_curve(m.curves["Hyperband"])[-1])
        if "BOHB" in m.curves:
            fraction = reach_fraction(m.curves["BOHB"], hb_final, m.budget)
            if fraction is None or fraction > 1 / 3:
                failures.append(f"{m.workload.name}: BOHB reaches Hyperband's final mean best {hb_final:.4g} at "
                                f"{'never' if fraction is None else f'{fraction:.2f} B'}, not within B/3")
        if "BOHB" in m.curves and "Optuna TPE+HB" in m.curves:
            a, b = m.curves["BOHB"][:, -1], m.curves["Optuna TPE+HB"][:, -1]
            se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
            if a.mean() - b.mean() > se:
                failures.append(f"{m.workload.name}: BOHB's mean best at B {a.mean():.4g} is worse than Optuna "
                                f"TPE + Hyperband pruner's {b.mean():.4g} by more than one standard error ({se:.2g})")
    assert not failures, "\n".join(failures)
    if missing:   # e.g. optuna not installed: the targets against it were not checked
        pytest.skip(f"targets checked without {', '.join(missing)} (not available here)")


def test_budget_log_curve_and_reach_fraction():
    log = BudgetLog(budget=10)
    log.add(2, 5.0)
    log.add(0, None)          # a job that failed without training: no cost, no metric
    log.add(3, math.nan)      # a diverged evaluation costs its units, never becomes the best
    log.add(1, 4.0)
    with pytest.raises(BudgetSpent):
        log.add(5, 1.0)
    grid = np.arange(1, 11)
    assert log.curve(grid).tolist() == [math.inf, 5, 5, 5, 5, 4, 4, 4, 4, 4]   # the last one ended at 11 > 10
    curves = np.array([log.curve(grid), np.full(10, 3.0)])
    assert mean_curve(curves)[1] == 4.0 and mean_curve(curves)[0] == math.inf
    assert reach_fraction(curves, 4.0, 10) == 0.2 and reach_fraction(curves, 3.0, 10) is None
    assert at(curves, 10, 1 / 3).tolist() == [5.0, 3.0]


def test_every_contender_is_reproducible_and_spends_the_budget():
    w = W.hartmann(3)
    budget = hyperband_budget(w)
    for c in CONTENDERS:
        if not c.available():
            continue
        runs = []
        for _ in range(2):
            log = BudgetLog(budget)
            c.run(w, 1, log)
            runs.append(log.points)
        assert runs[0] == runs[1], c.name
        assert budget <= runs[0][-1][0] < budget + w.max_resource or c.name in ("Hyperband", "BOHB"), c.name


if __name__ == "__main__":
    import sys

    measured = load_curves(sys.argv[1])
    n = next(iter(measured[0].curves.values())).shape[0]
    print(table(measured, n))
    base = os.path.splitext(sys.argv[1])[0]
    print(plot(measured, base + ".png", n))
