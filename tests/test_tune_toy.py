"""The PBT paper's toy problem (examples/pbt_toy.py): PBT beats exploit-only,
explore-only and grid search with the same population and steps."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "pbt_toy.py")


@pytest.fixture(scope="module")
def toy():
    spec = importlib.util.spec_from_file_location("pbt_toy", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pbt_beats_every_ablation_with_the_same_compute(toy):
    scores = toy.compare(seeds=10)
    assert set(scores) == {"pbt", "exploit_only", "explore_only", "grid"}
    others = {k: v for k, v in scores.items() if k != "pbt"}
    assert scores["pbt"] > max(others.values()) + 0.05, scores
    # Without exploration h keeps a zero coordinate: one theta coordinate never moves from 0.9.
    assert scores["grid"] < 1.2 - 0.81 and scores["exploit_only"] < 1.2 - 0.81
    runs = {name: toy.run_strategy(name, 0) for name in scores}
    assert len({r.total_cost for r in runs.values()}) == 1      # the same compute for every strategy
    assert runs["pbt"].lineage and all(e["donor"] is not None for e in runs["pbt"].lineage)
    for event in runs["pbt"].lineage:
        assert all(0.0 <= event["new_config"][h] <= 1.0 for h in ("h0", "h1"))


def test_the_example_prints_one_json_line():
    run = subprocess.run([sys.executable, EXAMPLE, "--json", "--seeds", "2"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 1
    scores = json.loads(lines[0])
    assert list(scores) == ["pbt", "exploit_only", "explore_only", "grid"]
    assert all(isinstance(v, float) and -0.5 < v <= 1.2 for v in scores.values())
