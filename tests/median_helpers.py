"""Handcrafted learning curves for the median-stopping tests, importable so
the process executor can unpickle them by module path."""

from __future__ import annotations

import fastadapt as fa

# CURVES[k][i]: the metric of config k after i + 1 units.
CURVES = {
    0: [5.0, 4.0, 3.0, 2.0, 1.0, 1.0],
    1: [6.0, 5.0, 4.0, 3.0, 2.0, 2.0],
    2: [7.0, 6.0, 5.0, 4.0, 3.0, 3.0],
    3: [9.0, 9.0, 9.0, 9.0, 9.0, 9.0],   # worse than every running average from step 1 on
    4: [5.5, 5.0, 4.5, 4.4, 4.3, 4.2],   # good early, flattens out: stopped at step 5
    5: [5.8, 5.9, 6.0, 6.0, 6.0, 6.0],   # better than the median (6.0) at step 1, worse from step 2 on
}


class Curve(fa.tune.Trainable):
    """Reports CURVES[config["k"]] one unit at a time; resumable."""

    def __init__(self, config):
        self.k = config["k"]
        self.trained = 0

    def train(self, budget):
        self.trained += budget
        return CURVES[self.k][self.trained - 1]

    def save(self):
        return {"trained": self.trained}

    def load(self, state):
        self.trained = state["trained"]
