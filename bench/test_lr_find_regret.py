"""Regret of the LR range test's suggestion: train TRAIN_STEPS steps at it and
compare the final loss with the best over a 25-point lr grid (see
lr_regret_problems.py). Prints a table per problem and optimizer for the
suggestion and the rules it replaces or sits beside (the old rule, fastai's
valley, steep and minimum / 10) and asserts the targets of issue 12:
median regret <= 1.5 and worst <= 3 for ``suggestion``.

Run: python -m pytest bench/test_lr_find_regret.py -s
"""

from collections import defaultdict

import numpy as np

import lr_regret_problems as P
from blas_threads import one_blas_thread

RULES = ("suggestion", "old", "valley", "steep", "minimum/10")


def old_rule(result):
    """The rule lr_find used before: the steepest np.gradient of the debiased
    0.98 EMA against log(lr), the first 10 and last 5 points skipped (read
    here off the same curve)."""
    s, lrs = result.smoothed_losses, result.lrs
    finite = int(np.argmax(~np.isfinite(s))) if (~np.isfinite(s)).any() else len(s)
    if finite - 5 - 10 < 2:
        return None
    slopes = np.gradient(s[:finite], np.log(lrs[:finite]))
    return float(lrs[10 + int(np.argmin(slopes[10:finite - 5]))])


def measure():
    rows = defaultdict(lambda: defaultdict(list))    # (problem, optimizer) -> rule -> regrets
    with one_blas_thread():
        for problem in P.problems():
            for optimizer in P.OPTIMIZERS:
                for seed in P.SEEDS:
                    case = P.Case(problem, optimizer, seed)
                    for noise in P.NOISES:
                        result = case.sweep(noise)
                        picks = {"suggestion": result.suggestion, "old": old_rule(result), "valley": result.valley,
                                 "steep": result.steep, "minimum/10": result.minimum}
                        for rule, lr in picks.items():
                            rows[problem.name, optimizer][rule].append(case.regret(lr))
    return rows


def format_table(rows):
    def cell(values):
        a = np.array(values)
        return f"{np.median(a):7.3g} {a.max():9.3g}"

    head = f"{'problem':10s} {'optimizer':13s} " + " ".join(f"{r + ' med/worst':>17s}" for r in RULES)
    lines = [head, "-" * len(head)]
    everything = defaultdict(list)
    for (problem, optimizer), by_rule in rows.items():
        lines.append(f"{problem:10s} {optimizer:13s} " + " ".join(f"{cell(by_rule[r]):>17s}" for r in RULES))
        for r in RULES:
            everything[r] += by_rule[r]
    lines.append("-" * len(head))
    lines.append(f"{'all':10s} {'':13s} " + " ".join(f"{cell(everything[r]):>17s}" for r in RULES))
    return "\n".join(lines), everything


def test_suggestion_regret_meets_the_targets():
    rows = measure()
    table, everything = format_table(rows)
    print(f"\nLR range test regret (final loss after {P.TRAIN_STEPS} steps at the lr / best over a "
          f"{len(P.GRID)}-point grid); seeds {P.SEEDS}, loss noise {P.NOISES}\n" + table)
    regrets = np.array(everything["suggestion"])
    assert len(regrets) >= 3 * 3 * len(P.SEEDS) * len(P.NOISES)      # at least three problems ran
    assert np.all(np.isfinite(regrets)), "a suggestion blew up in training"
    assert np.median(regrets) <= 1.5, f"median regret {np.median(regrets):.3g} > 1.5"
    assert regrets.max() <= 3.0, f"worst regret {regrets.max():.3g} > 3"
    assert all(len(everything[r]) == len(regrets) for r in RULES)  # every rule measured on every run
