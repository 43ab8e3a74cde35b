"""The README's estimator table ("## Estimators") against the catalog: every name has a row,
and its "unbiased" column says what the class declares."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from samplegrad.estimators import catalog

README = Path(__file__).resolve().parents[1] / "README.md"


def estimator_table() -> dict[str, str]:
    """Each name in the first column of the ``| name | class | for | unbiased |`` table, with
    its row's "unbiased" cell (a row may name several, ``"arm"`` / ``"disarm"``)."""
    section = README.read_text(encoding="utf-8").split("\n## Estimators\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert header == ["name", "class", "for", "unbiased"]
    table = {}
    for row in rows[2:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        for name in re.findall(r'`"([^"`]+)"`', cells[0]):
            table[name] = cells[3]
    return table


def test_the_table_lists_every_catalog_name_and_no_other() -> None:
    assert set(estimator_table()) == {*catalog.CATALOG, catalog.AUTO}


@pytest.mark.parametrize("name", list(catalog.CATALOG))
def test_the_unbiased_column_follows_the_class(name: str) -> None:
    """ "yes..." or "exact" for an unbiased estimator, "no..." for a biased one."""
    cell = estimator_table()[name]
    assert cell.startswith(("yes", "exact", "no")), cell
    assert cell.startswith(("yes", "exact")) == catalog.CATALOG[name].unbiased, cell
