"""Plots a person reads at a glance (issue 13, part 3): image-level checks
on the figures the project writes, drawn with matplotlib's Agg canvas.

- tune plots: a readable size, panels in a grid (not a strip of slivers),
  a log axis not stretched by one diverged trial (it is marked at the
  edge instead), one legend outside every panel, a truthful ASHA title;
- history.png: no legend over a curve's points (twin axes included);
- lr_find.png: every named value marked, in view, and named in the legend.
"""

import math

import numpy as np
import pytest

import fastadapt as fa
import tune_helpers as H
from fastadapt.train.history import History
from fastadapt.schedules.lr_finder import LRFindResult

pytest.importorskip("matplotlib")


def diverging(config, budget):
    """A metric near 0.3..1.3, except x > 0.93 (a diverged run: 1e14, finite)
    and x < 0.03 (NaN, so the trial fails)."""
    x = config["x"]
    if x > 0.93:
        return 1e14 * budget
    if x < 0.03:
        return float("nan")
    return (x - 0.3) ** 2 + 0.3 + 1.0 / (1 + budget)


SPACE = {"x": fa.tune.uniform(0.0, 1.0)}


@pytest.fixture(scope="module")
def hyperband81():
    # R = 81, eta = 3: five brackets, the case that used to be a 2310 x 418 strip
    return fa.tune.Hyperband(diverging, SPACE, max_resource=81, eta=3, seed=1, executor="sequential").run()


def _panels(figure):
    """The axes that hold data (not the legend's, not secondary rung axes)."""
    return [ax for ax in figure.axes if ax.axison and ax.get_lines() and ax.get_label() != "<colorbar>"
            and type(ax).__name__ != "SecondaryAxis"]


def _draw(figure):
    figure.canvas.draw()
    return figure.canvas.get_renderer()


def _legends(figure):
    return [ax.get_legend() for ax in figure.axes if ax.get_legend() is not None] + list(figure.legends)


def _points_inside(legend, axes, renderer):
    """Data points of ``axes``' curves (in display coordinates) inside ``legend``'s box."""
    box = legend.get_window_extent(renderer)
    inside = []
    for ax in axes:
        for line in ax.get_lines():
            if not line.get_transform().contains_branch(ax.transData):
                continue  # axvline: spans the whole panel by design
            xy = np.asarray(line.get_xydata(), dtype=float)
            xy = xy[np.isfinite(xy).all(axis=1)]
            if not len(xy):
                continue
            display = line.get_transform().transform(xy)
            for (x, y), (dx, dy) in zip(xy, display):
                if box.x0 <= dx <= box.x1 and box.y0 <= dy <= box.y1:
                    inside.append((line.get_label(), x, y))
    return inside


# ---- tune plots -------------------------------------------------------------

def test_hyperband_panels_form_a_readable_grid(hyperband81):
    figure = hyperband81.plot_rungs()
    width, height = figure.get_size_inches()
    assert 6 <= width <= 16 and 4 <= height <= 12          # fits a screen at 110 dpi: at most 1760 x 1320
    assert width / height <= 2.2                             # not a strip (the old one was 5.5 : 1)
    renderer = _draw(figure)
    panels = _panels(figure)
    assert len(panels) == 5                                  # one per bracket
    boxes = [ax.get_window_extent(renderer) for ax in panels]
    columns = {round(b.x0) for b in boxes}
    rows = {round(b.y0) for b in boxes}
    assert len(columns) <= 3 and len(rows) == 2              # 3 + 2, not 5 in a row
    for box in boxes:                                       # each panel large enough to read
        assert box.width >= 300 and box.height >= 220
    for a in boxes:                                         # and no two overlap
        assert sum(a.overlaps(b) for b in boxes) == 1


def test_a_diverged_trial_does_not_stretch_the_axis(hyperband81):
    good = [h["metric"] for t in hyperband81.trials for h in t.history
            if math.isfinite(h["metric"]) and h["metric"] < 1e6]
    assert max(h["metric"] for t in hyperband81.trials for h in t.history if math.isfinite(h["metric"])) >= 1e14
    figure = hyperband81.plot_rungs()
    _draw(figure)
    for ax in _panels(figure):
        low, high = ax.get_ylim()
        # within a few decades of the good values: the 1e14 would have made it 14
        assert high <= 100 * max(good) and low >= min(good) / 100
        assert low <= min(good) and high >= max(good)       # every good evaluation in view
    # the diverged and the NaN evaluations are marked at the top edge, and the legend says what they are
    edge_marks = [line for ax in _panels(figure) for line in ax.get_lines()
                  if not line.get_transform().contains_branch(ax.transData)
                  and line.get_marker() in ("^", "x")]
    assert {line.get_marker() for line in edge_marks} == {"^", "x"}
    labels = [t.get_text() for legend in _legends(figure) for t in legend.get_texts()]
    assert any(label.startswith("off the scale") and "diverged" in label for label in labels)
    assert any(label.startswith("non-finite metric") for label in labels)


def test_tune_legends_sit_outside_every_panel(hyperband81, tmp_path):
    pbt = fa.tune.PBT(H.Quadratic, SPACE, population=4, perturbation_interval=2, max_resource=6, seed=0,
                      executor="sequential").run()
    asha = fa.tune.ASHA(diverging, SPACE, num_trials=6, max_resource=9, eta=3, seed=2, executor="sequential").run()
    bohb = fa.tune.BOHB(diverging, SPACE, max_resource=9, eta=3, seed=2, executor="sequential").run()
    for result in (hyperband81, pbt, asha, bohb):
        figure = result.plot()
        renderer = _draw(figure)
        legends = _legends(figure)
        assert legends
        panels = [ax.get_window_extent(renderer) for ax in _panels(figure)]
        for legend in legends:
            box = legend.get_window_extent(renderer)
            assert not any(box.overlaps(p) for p in panels), result.algorithm
    assert hyperband81.plot(tmp_path / "hb.png") == str(tmp_path / "hb.png")


def test_bohb_plot_keeps_a_diverged_metric_off_the_colour_scale():
    bohb = fa.tune.BOHB(diverging, SPACE, max_resource=27, eta=3, seed=1, executor="sequential").run()
    assert any(e["metric"] > 1e13 for t in bohb.trials for e in t.history)   # a finite 1e14 (diverged)
    figure = bohb.plot()
    bar = [ax for ax in figure.axes if ax.get_label() == "<colorbar>"][0]
    low, high = bar.get_ylim()
    assert high < 10  # the colours span the trials worth comparing, 0.3..1.3, not up to 1e14
    labels = " ".join(_legend_labels(figure))
    assert "non-finite metric" in labels and "best evaluation" in labels


def _title(figure):
    return figure._suptitle.get_text()


def _legend_labels(figure):
    return [t.get_text() for legend in _legends(figure) for t in legend.get_texts()]


def test_asha_title_says_no_trial_reached_the_top_rung_when_none_did():
    # 6 configs, eta 3: two promotions to rung 2, none to rung 3 or beyond
    result = fa.tune.ASHA(diverging, SPACE, num_trials=6, max_resource=81, eta=3, seed=2,
                          executor="sequential").run()
    assert result.count("completed") == 0
    figure = result.plot()
    assert "no trial reached the top rung (81 units)" in _title(figure)
    assert "blue" not in _title(figure)
    assert not any(label.startswith("reached the top rung") for label in _legend_labels(figure))


def test_asha_title_counts_the_trials_that_reached_the_top_rung():
    result = fa.tune.ASHA(diverging, SPACE, num_trials=30, max_resource=9, eta=3, seed=0,
                          executor="sequential").run()
    reached = result.count("completed")
    assert reached >= 2
    figure = result.plot(unit="epochs")
    assert f"{reached} reached the top rung (9 epochs)" in _title(figure)
    blue = reached - (result.best_trial.status == "completed")   # the best one is drawn red instead
    assert f"reached the top rung: {blue} trial{'s' if blue > 1 else ''}" in _legend_labels(figure)


# ---- history.png ------------------------------------------------------------

def _busy_history(epochs=12):
    """A history whose curves fill the panels' corners: a constant lr (a
    line along the top of its panel), a scheduled momentum on a twin axis,
    grad norms per layer and a param norm that rises across the panel."""
    h = History()
    rng = np.random.default_rng(0)
    for e in range(epochs):
        h.append(e, {"loss": 2.0 / (e + 1), "val_loss": 2.2 / (e + 1) + 0.05 * e, "val_accuracy": 0.5 + 0.04 * e,
                     "lr": 1e-3, "momentum": 0.9 - 0.02 * e, "grad_norm": 2.0 - 0.1 * e,
                     "grad_norm_max": 3.0 - 0.1 * e, "grad_norm.fc1": 1.0 + rng.random(),
                     "grad_norm.fc2": 0.5 + rng.random(), "param_norm": 10.0 + e})
    return h


def test_history_legends_cover_no_data_point(tmp_path, monkeypatch):
    from fastadapt.train import plotting

    figures = []
    real_save = plotting.save_figure
    monkeypatch.setattr(plotting, "save_figure", lambda fig, path, dpi: (figures.append(fig),
                                                                         real_save(fig, path, dpi=dpi)))
    fa.plot_history(_busy_history(), tmp_path / "history.png")
    figure = figures[0]
    width, height = figure.get_size_inches() * figure.dpi
    assert width <= 1800 and height <= 1300
    renderer = _draw(figure)
    checked = 0
    for ax in figure.axes:
        legend = ax.get_legend()
        if legend is None:
            continue
        # the panel and its twin, which share its place
        panel = [a for a in figure.axes if a.get_position().bounds == ax.get_position().bounds]
        assert _points_inside(legend, panel, renderer) == [], ax.get_title()
        checked += 1
    assert checked == 4       # loss, metrics, lr (with momentum's twin), norms (with param norm's twin)
    # one legend per panel: the twin's curves are named in the same box, not in a second one on top
    titles = [ax.get_title() for ax in figure.axes if ax.get_legend() is not None or ax.get_title()]
    assert len([t for t in titles if t]) == 4



@pytest.mark.parametrize("best", [0, 7, 13, 14])
def test_best_validation_label_stays_inside_the_loss_panel(tmp_path, monkeypatch, best):
    # The best epoch near the right edge used to push its label past the panel.
    from fastadapt.train import plotting

    figures = []
    real_save = plotting.save_figure
    monkeypatch.setattr(plotting, "save_figure", lambda fig, path, dpi: (figures.append(fig),
                                                                         real_save(fig, path, dpi=dpi)))
    h = History()
    for e in range(15):
        h.append(e, {"loss": 1.0 / (e + 1), "val_loss": 0.5 - 0.2 * (e == best) + 0.001 * e})
    fa.plot_history(h, tmp_path / "history.png")
    figure = figures[0]
    renderer = _draw(figure)
    loss_panel = next(ax for ax in figure.axes if ax.get_title() == "loss")
    labels = [t for t in loss_panel.texts if t.get_text().startswith("best val 0.3")]
    assert len(labels) == 1
    box, panel = labels[0].get_window_extent(renderer), loss_panel.get_window_extent(renderer)
    assert panel.x0 <= box.x0 and box.x1 <= panel.x1 and panel.y0 <= box.y0 and box.y1 <= panel.y1


# ---- lr_find.png ------------------------------------------------------------

def _lr_result():
    # a sweep that blows up at the end: the suggestion lies past the lowest point
    lrs = np.geomspace(1e-5, 10, 60)
    smoothed = np.concatenate([np.linspace(2.3, 2.2, 20), np.linspace(2.2, 0.8, 25), np.geomspace(0.9, 80.0, 15)])
    losses = smoothed * (1 + 0.05 * np.random.default_rng(0).standard_normal(60))
    return LRFindResult(lrs=lrs, losses=losses, smoothed_losses=smoothed, suggestion=float(lrs[40]),
                        suggestion_index=40, valley=float(lrs[30]), valley_index=30, stop_reason="diverged",
                        suggestion_method="verified", steep=float(lrs[25]), steep_index=25,
                        minimum=float(lrs[44]) / 10, minimum_index=44)


def test_lr_find_plot_names_and_shows_every_value():
    result = _lr_result()
    figure = result.plot()
    ax = figure.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    for name, value in (("use this: suggestion (verified)", result.suggestion), ("valley", result.valley),
                        ("steep", result.steep), ("minimum / 10", result.minimum)):
        (label,) = [text for text in labels if text.startswith(name)]
        assert label.endswith(f"{value:.3g}")
    assert f"use lr {result.suggestion:.3g}" in ax.get_title()
    low, high = ax.get_ylim()
    marks = [line for line in ax.get_lines() if line.get_linestyle() == "None"]
    assert len(marks) == 4
    for line in marks:
        (x,), (y,) = line.get_xdata(), line.get_ydata()
        assert low < y < high and ax.get_xlim()[0] < x < ax.get_xlim()[1]
    xs = sorted(float(line.get_xdata()[0]) for line in marks)
    assert np.allclose(xs, sorted([result.suggestion, result.valley, result.steep, result.minimum]))
    renderer = _draw(figure)
    assert _points_inside(ax.get_legend(), [ax], renderer) == []


def test_lr_find_repr_names_the_lr_to_use():
    text = repr(_lr_result())
    assert text.startswith("LRFindResult(suggestion=") and "(verified)" in text and "array" not in text


def _learned_history(epochs=12, nonpositive=False):
    """A learning-rate-free run: Prodigy's d grows by orders of magnitude in
    the first epochs (a wide range within each), then levels off; lr_estimate
    follows it. ``nonpositive``: hypergradient descent's lr, pushed to <= 0."""
    h = _busy_history(epochs)
    d = [1e-6 * 10 ** min(e + 1, 3.5) for e in range(epochs)]
    for e in range(epochs):
        low, high = (1e-6 if e == 0 else d[e - 1]), d[e]
        mean = (low + high) / 2
        h.history.setdefault("adapted/d", []).append(mean if not (nonpositive and e >= epochs - 2) else -1e-5)
        h.history.setdefault("adapted/d_min", []).append(low)
        h.history.setdefault("adapted/d_max", []).append(high)
        h.history.setdefault("lr_estimate", []).append(mean * 0.5)
    h.info["optimizer"] = {"algorithm": "prodigy", "lr": 1.0, "d0": 1e-6, "d_coef": 1.0}
    return h


@pytest.mark.parametrize("nonpositive", [False, True])
def test_history_with_a_learned_step_size_gets_a_readable_log_panel(tmp_path, monkeypatch, nonpositive):
    from fastadapt.train import plotting

    figures = []
    real_save = plotting.save_figure
    monkeypatch.setattr(plotting, "save_figure", lambda fig, path, dpi: (figures.append(fig),
                                                                         real_save(fig, path, dpi=dpi)))
    fa.plot_history(_learned_history(nonpositive=nonpositive), tmp_path / "history.png")
    figure = figures[0]
    width, height = figure.get_size_inches() * figure.dpi
    assert width <= 1800 and height <= 1300
    renderer = _draw(figure)
    (panel,) = [ax for ax in figure.axes if ax.get_title().startswith("learned by the rule")]
    assert panel.get_title() == "learned by the rule (prodigy): mean over each epoch's steps"
    assert panel.get_yscale() == "log"
    labels = [t.get_text() for t in panel.get_legend().get_texts()]
    assert labels[:2] == ["lr_estimate: effective step size", "d"] and labels[-1] == "range within the epoch"
    low, high = panel.get_ylim()
    assert low <= 1e-6 and high >= 10 ** -2.5  # d0 and the plateau in view
    assert panel.get_xlim()[0] < 1 and panel.get_xlim()[1] > 12  # every epoch, as in the panels above
    marks = [line for line in panel.get_lines() if line.get_marker() == "v"]
    if nonpositive:  # a log axis has no room for d <= 0: its epochs are marked on the bottom edge
        assert labels[2] == "d <= 0 in 2 epoch(s): marked on the bottom edge"
        (mark,) = marks
        assert list(mark.get_xdata()) == [11, 12] and set(mark.get_ydata()) == {low}
    else:
        assert len(labels) == 3 and not marks
    # full width, below the four panels, and as readable as they are
    box = panel.get_window_extent(renderer)
    others = [ax.get_window_extent(renderer) for ax in figure.axes if ax.get_title() in ("loss", "metrics")
              or ax.get_title().startswith(("validation", "learning rate", "gradient"))]
    assert len(others) == 4 and box.width >= 1.9 * min(o.width for o in others) and box.height >= 200
    assert all(box.y1 <= o.y0 for o in others)
    # learned values are not drawn again as "scheduled hyperparameters"
    hyper = [ax for ax in figure.axes if ax.get_title().startswith("learning rate")]
    assert not [line for ax in hyper for line in ax.get_lines()
                if "d" == line.get_label() or line.get_label().startswith(("lr_estimate", "adapted/"))]
    for ax in figure.axes:
        legend = ax.get_legend()
        if legend is not None:
            same_place = [a for a in figure.axes if a.get_position().bounds == ax.get_position().bounds]
            assert _points_inside(legend, same_place, renderer) == [], ax.get_title()
