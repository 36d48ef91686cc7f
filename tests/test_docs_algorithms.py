"""docs/algorithms.md, the project's own definition of every rule: it has a
section for each optimizer class and each public schedule, and the files
that cite the algorithm definitions cite that file, and no file points
outside the repository."""

import pathlib
import re

import pytest

from fastadapt import optim as optimizers, schedules

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "algorithms.md"

# Every source and doc file of the project: each citation points at the
# project's own doc, and nothing points outside the repository.
CITING = sorted(str(path.relative_to(ROOT)) for pattern in (
    "python/fastadapt/**/*.py", "python/fastadapt/*.pyi", "cpp/*.hpp", "cpp/*.cpp", "examples/*.py",
    "bench/*.py", "docs/*.md", "CMakeLists.txt", "README.md", "pyproject.toml") for path in ROOT.glob(pattern))


def _headings():
    return {m.group(1).strip() for m in re.finditer(r"^#{2,3} (.+)$", DOC.read_text(), re.MULTILINE)}


def test_the_doc_is_in_the_repository():
    assert DOC.is_file() and DOC.stat().st_size > 5000


@pytest.mark.parametrize("cls", sorted(set(optimizers.OPTIMIZERS.values()), key=lambda c: c.__name__),
                         ids=lambda c: c.__name__)
def test_every_optimizer_class_has_a_section(cls):
    # (a heading may name two classes: "DoG and LDoG")
    assert any(cls.__name__ in re.findall(r"[\w.]+", h) for h in _headings()), cls.__name__
    assert f"`fa.{cls.__name__}`" in DOC.read_text()


def test_aliases_are_named_with_their_class():
    text = DOC.read_text()
    assert "`fa.AdaGrad`" in text and "`fa.RMSProp`" in text


@pytest.mark.parametrize("name", [n for n in schedules.__all__ if n != "Schedule"])
def test_every_public_schedule_has_a_section(name):
    assert name in _headings()


def test_the_contract_sections_are_there():
    headings = _headings()
    for title in ("Notation and the exactness contract", "One optimizer step: validation and atomicity",
                  "Gradient pre-processing (every optimizer, in this order)", "The deterministic norm",
                  "Learning-rate range test (lr_find)"):
        assert title in headings


def test_the_norm_constants_match_the_code():
    from fastadapt import reference

    text = DOC.read_text()
    assert f"CHUNK_ELEMENTS = {reference.CHUNK_ELEMENTS}" in text
    assert f"{reference.NORM_LANES} float64 lanes" in text


@pytest.mark.parametrize("path", CITING)
def test_citations_point_at_the_projects_own_doc(path):
    text = (ROOT / path).read_text()
    # The names are assembled so that this file does not itself carry them.
    assert "ALGORITHMS" + ".md" not in text        # a doc the project never had
    assert "/work/" + "shared" not in text         # nothing points outside the repository
    assert "../" + "shared/" not in text
