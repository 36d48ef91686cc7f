"""The toy problem of the PBT paper (Jaderberg et al. 2017, section 4 and
figure 2), run with fastadapt's PBT class.

Maximise the true objective Q(theta) = 1.2 - (theta0^2 + theta1^2). A member
cannot see Q's gradient: it follows gradient ascent on the surrogate
Q_hat(theta | h) = 1.2 - (h0 theta0^2 + h1 theta1^2), so its hyperparameters
h decide which coordinates it shrinks. Two members start at
theta = (0.9, 0.9) with h = (1, 0) and h = (0, 1): each alone can shrink one
coordinate only and stalls at Q = 1.2 - 0.81 = 0.39.

Four strategies, each with the same population and the same steps:

- pbt:          exploit (the worse member copies the better one's theta and h)
                and explore (perturb h) every `interval` steps;
- exploit_only: copy, never perturb;
- explore_only: perturb h, never copy;
- grid:         neither (the two starting h trained as they are).

    python examples/pbt_toy.py                 # a table, averaged over seeds
    python examples/pbt_toy.py --json          # one line: {"pbt": Q, "exploit_only": Q, ...}
    python examples/pbt_toy.py --plot toy.png  # the PBT run's h and Q over time (seed 0)

Q per strategy is the best member's final true objective, averaged over
--seeds runs (seeds 0..n-1).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Dict, Optional

import numpy as np

import fastadapt as fa

THETA_START = (0.9, 0.9)
H_START = ({"h0": 1.0, "h1": 0.0}, {"h0": 0.0, "h1": 1.0})
STRATEGIES = {"pbt": (True, True), "exploit_only": (True, False), "explore_only": (False, True),
              "grid": (False, False)}


def true_objective(theta: np.ndarray) -> float:
    return float(1.2 - np.sum(theta ** 2))


class ToyMember(fa.tune.Trainable):
    """One member: theta trained by gradient ascent on Q_hat(theta | h)."""

    def __init__(self, config):
        self.theta = np.array(THETA_START, dtype=np.float64)
        self.step_size = config["step_size"]
        self.set_config(config)

    def set_config(self, config):
        self.h = np.array([config["h0"], config["h1"]], dtype=np.float64)

    def train(self, budget):
        for _ in range(budget):
            # grad of Q_hat = -2 h theta
            self.theta = self.theta + self.step_size * (-2.0 * self.h * self.theta)
        return true_objective(self.theta)

    def save(self):
        return {"theta": self.theta.copy()}

    def load(self, state):
        self.theta = np.array(state["theta"], dtype=np.float64)


def run_strategy(strategy: str, seed: int, *, steps: int = 100, interval: int = 4, step_size: float = 0.01,
                 executor: str = "sequential") -> fa.tune.TuneResult:
    exploit, explore = STRATEGIES[strategy]
    space = {"h0": fa.tune.uniform(0.0, 1.0), "h1": fa.tune.uniform(0.0, 1.0), "step_size": step_size}
    pbt = fa.tune.PBT(ToyMember, space, population=len(H_START), perturbation_interval=interval,
                      max_resource=steps, quantile=0.5, exploit=exploit, explore=explore, metric="Q", mode="max",
                      initial_configs=list(H_START), seed=seed, executor=executor)
    return pbt.run()


def final_objective(result: fa.tune.TuneResult) -> float:
    """The best member's true objective at the end of training."""
    return max(trial.metric for trial in result.trials)


def compare(seeds: int = 20, **kwargs) -> Dict[str, float]:
    """Each strategy's final true objective (best member), averaged over seeds 0..seeds-1."""
    return {name: float(np.mean([final_objective(run_strategy(name, seed, **kwargs)) for seed in range(seeds)]))
            for name in STRATEGIES}


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line of final Q per strategy")
    parser.add_argument("--seeds", type=int, default=20, help="runs averaged per strategy (seeds 0..n-1)")
    parser.add_argument("--steps", type=int, default=100, help="gradient steps per member")
    parser.add_argument("--interval", type=int, default=4, help="steps between exploit/explore")
    parser.add_argument("--executor", default="sequential", help="sequential, process or ray")
    parser.add_argument("--plot", metavar="PNG", help="plot the PBT run of seed 0 (needs matplotlib)")
    args = parser.parse_args(argv)
    scores = compare(args.seeds, steps=args.steps, interval=args.interval, executor=args.executor)
    if args.json:
        print(json.dumps(scores))
    else:
        print(f"final true objective Q (best member, mean of {args.seeds} seeds; optimum 1.2):")
        for name, q in scores.items():
            print(f"  {name:13s} {q:.4f}")
    if args.plot:
        result = run_strategy("pbt", 0, steps=args.steps, interval=args.interval, executor=args.executor)
        # the plot counts in steps, the toy's budget unit, and names Q, the objective the members maximise
        result.plot(args.plot, unit="steps", title="PBT toy (Jaderberg et al. 2017, fig. 2), seed 0: h and Q, "
                                                   "optimum 1.2")
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
