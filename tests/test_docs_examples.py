"""Every code block of the README and the docs runs as written.

Each fenced ```python block runs on its own, in a fresh interpreter, in an empty
working directory: a block is complete (its own imports and data), so a reader
can paste any one of them. A block that imports a package this environment does
not have is skipped, naming the package; CI installs every extra and sets
FASTADAPT_DOCS_REQUIRE_ALL=1, which turns that skip into a failure.

Each ```bash block is read command by command (lines joined at a trailing
backslash, then split at `&&`):
- `fastadapt ...`, `python -m fastadapt ...` and `python examples/...` run, in an
  empty directory that sees the repository's examples/;
- commands this suite cannot run inside itself are checked instead of run: a
  `pip install` names only extras pyproject.toml defines; `python -m pytest`
  names paths that exist (CI runs it); `python -m build` and `cibuildwheel` have
  their configuration (CI builds the wheel); `ray start/stop`, `git clone`, `cd`,
  `python -m venv` and `source` are setup steps whose effect the other commands
  cover;
- anything else fails, so a new kind of command gets a rule here first.
Blocks in other languages (text, json, toml, yaml, output) are not programs.

A block that needs a package it does not import itself (Ray, behind
fa.distributed or executor="ray") says so on the line above its fence, in a
comment the rendered page does not show: `<!-- requires: ray -->`.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = ([ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md"]
             + sorted((ROOT / "docs").rglob("*.md")))
RUN_LANGS = {"python", "py", "bash", "sh", "shell", "console"}
TIMEOUT_S = 600
REQUIRE_ALL = os.environ.get("FASTADAPT_DOCS_REQUIRE_ALL") == "1"

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")


_REQUIRES = re.compile(r"^\s*<!--\s*requires:\s*([\w, .-]+?)\s*-->\s*$")


def code_blocks(path: Path):
    """(first line number, language, source, declared requirements) of each fenced block in `path`."""
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.group("indent"), m.group("fence"), m.group("lang").lower()
        start = i + 1
        j = start
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        body = [ln[len(indent):] if ln.startswith(indent) else ln for ln in lines[start:j]]
        above = _REQUIRES.match(lines[i - 1]) if i > 0 else None
        requires = tuple(r.strip() for r in above.group(1).split(",")) if above else ()
        yield start + 1, lang, "\n".join(body) + "\n", requires
        i = j + 1


def _cases():
    out = []
    for path in DOC_FILES:
        if not path.exists():
            continue
        for line, lang, src, requires in code_blocks(path):
            if lang in RUN_LANGS:
                out.append(pytest.param(path, line, lang, src, requires, id=f"{path.relative_to(ROOT)}:{line}"))
    return out


CASES = _cases()


def _missing_modules(src: str, requires=()):
    names = set(requires)
    for m in re.finditer(r"^\s*(?:import\s+([\w.]+)|from\s+([\w.]+)\s+import)", src, re.M):
        top = (m.group(1) or m.group(2)).split(".")[0]
        if top != "__future__":
            names.add(top)
    return sorted(n for n in names if importlib.util.find_spec(n) is None)


def _env():
    env = dict(os.environ)
    env["MPLBACKEND"] = "Agg"
    return env


def _workdir(tmp_path: Path) -> Path:
    # the examples a page runs (`python examples/mnist.py`) are visible; outputs land in tmp
    (tmp_path / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    return tmp_path


def _run(argv, cwd, where):
    try:
        proc = subprocess.run(argv, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{where}: did not finish in {TIMEOUT_S} s: {argv}")
    if proc.returncode != 0:
        pytest.fail(f"{where}: exit {proc.returncode} from {' '.join(map(str, argv))}\n"
                    f"--- stdout (tail)\n{proc.stdout[-3000:]}\n--- stderr (tail)\n{proc.stderr[-3000:]}")


def _extras():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        tomllib = None
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    if tomllib is not None:
        return set(tomllib.loads(text)["project"]["optional-dependencies"])
    section = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    return set(re.findall(r"^([\w-]+)\s*=", section, re.M))


def _check_pip_install(words, where):
    extras = _extras()
    for w in words[2:]:
        m = re.fullmatch(r"\.?/?(?:dist/\S*\.whl|\.)?\[([\w,-]+)\]", w)
        if m:
            unknown = set(m.group(1).split(",")) - extras
            assert not unknown, f"{where}: `pip install {w}` names extras pyproject.toml lacks: {sorted(unknown)}"
        elif w.startswith("fastadapt"):
            # the package is not on an index: an install line must name a checkout or a wheel
            pytest.fail(f"{where}: `pip install {w}` cannot work (fastadapt is installed from a checkout or a wheel)")


def _shell_commands(src: str):
    joined = re.sub(r"\\\n", " ", src)
    for raw in joined.splitlines():
        line = raw.strip()
        if line.startswith("$ "):
            line = line[2:]
        if not line or line.startswith("#"):
            continue
        line = re.split(r"\s+#\s", line, 1)[0]  # a trailing comment
        for part in line.split("&&"):
            if part.strip():
                yield shlex.split(part.strip())


# pytest options (and pytest-xdist's) whose value is the next word
_PYTEST_VALUE_OPTIONS = {"-n", "--numprocesses", "--dist", "-k", "-m", "-p", "--durations", "--maxfail"}


def _check_or_run_command(words, cwd, where):
    head = words[0]
    if head in ("python", "python3") and words[1:3] == ["-m", "pip"]:
        words = ["pip"] + words[3:]
        head = "pip"
    if head == "pip":
        assert words[1] == "install", f"{where}: unexpected pip command {words}"
        _check_pip_install(words, where)
        return
    if head in ("python", "python3") and words[1:3] == ["-m", "pytest"]:
        args = words[3:]
        for i, w in enumerate(args):
            # the word after an option that takes a value (`-n auto`: pytest-xdist's worker count) is no path
            if not w.startswith("-") and not (i and args[i - 1] in _PYTEST_VALUE_OPTIONS):
                assert (ROOT / w).exists(), f"{where}: pytest path {w!r} does not exist"
        return
    if head in ("python", "python3") and words[1:3] == ["-m", "build"]:
        assert "[build-system]" in (ROOT / "pyproject.toml").read_text()
        return
    if head == "cibuildwheel":
        assert "[tool.cibuildwheel]" in (ROOT / "pyproject.toml").read_text(), f"{where}: no cibuildwheel config"
        return
    if head in ("cd", "source", ".", "git", "export", "deactivate") or (head == "ray" and words[1] in ("start", "stop")):
        return
    if head in ("python", "python3") and words[1:3] == ["-m", "venv"]:
        return
    if head == "mkdocs":
        assert (ROOT / "mkdocs.yml").exists()
        return  # tests/test_docs_site.py builds the site
    if head == "fastadapt":
        _run([sys.executable, "-m", "fastadapt", *words[1:]], cwd, where)
        return
    if head in ("python", "python3") and words[1:3] == ["-m", "fastadapt"]:
        _run([sys.executable, *words[1:]], cwd, where)
        return
    if head in ("python", "python3") and len(words) > 1 and words[1].startswith("examples/"):
        _run([sys.executable, *words[1:]], cwd, where)
        return
    pytest.fail(f"{where}: the docs runner has no rule for `{' '.join(words)}`; add one in {Path(__file__).name}")


@pytest.mark.parametrize("path,line,lang,src,requires", CASES)
def test_code_block_runs(path, line, lang, src, requires, tmp_path):
    where = f"{path.relative_to(ROOT)}:{line}"
    cwd = _workdir(tmp_path)
    missing = _missing_modules(src if lang in ("python", "py") else "", requires)
    if missing:
        msg = f"{where} needs {', '.join(missing)}, not installed here"
        if REQUIRE_ALL:
            pytest.fail(msg + " (FASTADAPT_DOCS_REQUIRE_ALL=1)")
        pytest.skip(msg)
    if lang in ("python", "py"):
        script = cwd / "block.py"
        script.write_text(src, encoding="utf-8")
        _run([sys.executable, str(script)], cwd, where)
    else:
        for words in _shell_commands(src):
            _check_or_run_command(words, cwd, where)


def test_every_doc_file_has_runnable_blocks_collected():
    # the parser must see the README's blocks; an empty collection would pass vacuously
    readme = [c for c in CASES if c.values[0].name == "README.md"]
    assert len(readme) >= 2, "README.md: expected its install/test commands and at least one Python block"
    assert any(c.values[2] == "bash" for c in readme)


def test_requires_comment_is_read(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n<!-- requires: ray, torch -->\n```python\nprint(1)\n```\n\n```python\nprint(2)\n```\n")
    blocks = list(code_blocks(page))
    assert [b[3] for b in blocks] == [("ray", "torch"), ()]
