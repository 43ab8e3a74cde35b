"""The documentation site's sources are complete: every public name has a reference entry and
every example is rendered by a page. (``make docs`` builds the site with ``--strict``, which
fails on broken links and references; this test needs no mkdocs.)"""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest

import samplegrad
import samplegrad.nn
from samplegrad.estimators import catalog

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# `::: samplegrad.expectation`: a mkdocstrings entry (the name's full page of reference).
_ENTRY = re.compile(r"^::: (?P<name>[\w.]+)\s*$", re.MULTILINE)
# `--8<-- "examples/keras_vae.py:model"`: a page including (part of) a script.
_ESTIMATORS = "<!-- samplegrad-estimators -->"
_INCLUDE = re.compile(r'--8<-- "(?P<path>examples/[\w.]+\.py)(?::\w+)?"')


def _entries() -> set[str]:
    pages = [page.read_text() for page in (DOCS / "reference").glob("*.md")]
    entries = {match["name"] for page in pages for match in _ENTRY.finditer(page)}
    if any(_ESTIMATORS in page for page in pages):  # docs/hooks.py expands it from the catalog
        entries |= {f"samplegrad.{entry.cls.__name__}" for entry in catalog.CATALOG.values()}
    return entries


@pytest.mark.parametrize(
    ("package", "names"),
    [("samplegrad", samplegrad.__all__), ("samplegrad.nn", samplegrad.nn.__all__)],
)
def test_every_public_name_is_in_the_reference(package: str, names: list[str]) -> None:
    entries = _entries()
    missing = [name for name in names if f"{package}.{name}" not in entries]
    assert not missing, f"add '::: {package}.NAME' to a page of docs/reference for: {missing}"


def test_every_public_module_has_a_reference_page() -> None:
    modules = [
        n for n in samplegrad.__all__ if isinstance(getattr(samplegrad, n), types.ModuleType)
    ]
    assert modules, "samplegrad.__all__ lists the modules nn, diagnostics and generators"
    for name in modules:
        assert (DOCS / "reference" / f"{name}.md").is_file(), f"docs/reference/{name}.md"


def test_every_example_is_rendered_by_a_page() -> None:
    included = {
        match["path"]
        for page in DOCS.rglob("*.md")
        for match in _INCLUDE.finditer(page.read_text())
    }
    scripts = {
        f"examples/{path.name}"
        for path in (ROOT / "examples").glob("*.py")
        if not path.name.startswith("_")
    }
    assert scripts, "examples/ holds the tutorials' scripts"
    assert scripts <= included, f"no page includes {sorted(scripts - included)}"
