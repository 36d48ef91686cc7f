"""The package type-checks: mypy over fastadapt (its code against its own
annotations and against the hand-kept stub of the extension, _core.pyi),
and over a small user script that relies on the public types (update, eval
and train give back the type of the params they were given). A second
script holds mistakes mypy must report, so the check is known to bite.

One mypy run (cold, a few seconds to a minute; the cache lives in pytest's
cache folder, so reruns take seconds). Skipped where mypy is not installed
(the test extra brings it: pip install ".[test]" from a checkout).
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import fastadapt

pytest.importorskip("mypy.api")

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"

GOOD = textwrap.dedent('''
    from typing import Dict, List, Optional

    import numpy as np
    import numpy.typing as npt
    from typing_extensions import assert_type

    import fastadapt as fa

    Params = Dict[str, npt.NDArray[np.float64]]

    params: Params = {"w": np.zeros(3), "b": np.zeros(1)}
    grads: Params = {"w": np.ones(3), "b": np.ones(1)}

    opt = fa.Adam(lr=1e-3)
    assert_type(opt.update(params, grads), Params)
    named: fa.Optimizer = fa.make_optimizer("sgd", lr=0.1)
    assert_type(named.update(params, grads), Params)

    sf = fa.ScheduleFreeAdamW()
    assert_type(sf.update(params, grads), Params)
    assert_type(sf.eval(params), Params)
    assert_type(sf.train(params), Params)

    Nested = Dict[str, Dict[str, npt.NDArray[np.float64]]]
    nested: Nested = {"layer": {"w": np.zeros((2, 2))}}
    assert_type(opt.update(nested, nested), Nested)

    steps: int = opt.step_count
    norm: Optional[float] = opt.last_grad_norm
    estimate: Optional[float] = opt.lr_estimate
    learned: Dict[str, float] = opt.adapted
    lrs: List[float] = opt.group_values("lr")
    sd = opt.state_dict()
    opt.load_state_dict(sd, params=params)
    clipped: float = fa.clip_by_global_norm(grads, 1.0)
''')

# Each line must be reported (the line number and mypy's error code).
BAD = textwrap.dedent('''
    from typing import Dict

    import numpy as np
    import numpy.typing as npt

    import fastadapt as fa

    params: Dict[str, npt.NDArray[np.float64]] = {"w": np.zeros(3)}
    opt = fa.Adam()
    as_text: str = opt.update(params, params)
    as_list: list = fa.ScheduleFreeSGD().eval(params)
    count: str = opt.step_count
    opt.update(params)
''')
BAD_EXPECTED = {
    11: "assignment",  # update returns the params' type, not Any
    12: "arg-type",    # so does eval (mypy takes P from the target, list, then refuses the dict)
    13: "assignment",  # step_count is an int
    14: "call-arg",    # update needs grads
}


@pytest.fixture(scope="module")
def mypy_report(request, tmp_path_factory):
    """mypy's output over the package and the two scripts (one run)."""
    scripts = tmp_path_factory.mktemp("typed_user")
    (scripts / "typed_user_good.py").write_text(GOOD)
    (scripts / "typed_user_bad.py").write_text(BAD)
    cache = request.config.cache.mkdir("mypy") if getattr(request.config, "cache", None) else scripts / "cache"
    # The package as imported: a checkout's python/ goes on MYPYPATH (with the
    # scripts, as modules); an installed copy mypy finds where it is installed
    # (MYPYPATH must not name site-packages: mypy would check all of it).
    root = Path(fastadapt.__file__).resolve().parent.parent
    installed = root.name in ("site-packages", "dist-packages")
    search = [str(scripts)] + ([] if installed else [str(root)])
    env = dict(os.environ, MYPYPATH=os.pathsep.join(search))
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(PYPROJECT), "--cache-dir", str(cache),
         "--show-error-codes", "--no-color-output", "--no-error-summary",
         "-p", "fastadapt", "-m", "typed_user_good", "-m", "typed_user_bad"],
        cwd=scripts, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode not in (0, 1):  # 2: mypy itself failed (a bad config, a crash)
        pytest.fail(f"mypy failed to run (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    return errors


def test_package_type_checks(mypy_report):
    own = [e for e in mypy_report if "typed_user_" not in e]
    assert not own, "mypy finds type errors in fastadapt:\n" + "\n".join(own)


def test_typed_user_script_checks(mypy_report):
    good = [e for e in mypy_report if "typed_user_good.py" in e]
    assert not good, "a correctly typed user script fails to type-check:\n" + "\n".join(good)


def test_mistakes_are_reported(mypy_report):
    bad = [e for e in mypy_report if "typed_user_bad.py" in e]
    found = {}
    for e in bad:
        line = int(e.split("typed_user_bad.py:", 1)[1].split(":", 1)[0])
        found.setdefault(line, []).append(e)
    for line, code in BAD_EXPECTED.items():
        assert any(f"[{code}]" in e for e in found.get(line, [])), \
            f"mypy did not report line {line} of the bad script as [{code}]; it reported:\n" + "\n".join(bad)
    assert set(found) == set(BAD_EXPECTED), "unexpected reports:\n" + "\n".join(bad)
