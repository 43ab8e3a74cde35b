"""A small self-contained HTML report: headings, paragraphs, notes, tables, PNG figures, code.

The page needs no network, no JavaScript and no files beside it: the stylesheet is inline and
every image is embedded as a base64 ``data:`` URI, so ``index.html`` can be mailed or archived
on its own. Every piece of text is HTML-escaped.

>>> report = Report("Gradient estimators")
>>> report.paragraph("Score function vs pathwise on a Gaussian.")
>>> report.table([{"estimator": "score", "variance": 0.123456}])
>>> path = report.write("out/report")  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import datetime
import html
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

import samplegrad
from samplegrad.lab.files import write_atomic

__all__ = ["PNG_SIGNATURE", "Report"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MISSING = "–"  # an en dash, for None and for a column a row lacks

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
       sans-serif; line-height: 1.5; color: #1f2328; background: #fff; margin: 0; }
main { max-width: 1000px; margin: 0 auto; padding: 1.5rem 1.25rem 3rem; }
h1 { font-size: 1.9rem; margin: 0.5rem 0 1rem; }
h2 { font-size: 1.4rem; margin-top: 2.2rem; border-bottom: 1px solid #d0d7de;
     padding-bottom: 0.25rem; }
h3, h4, h5, h6 { margin-top: 1.6rem; }
p { margin: 0.75rem 0; }
.note { background: #fff8c5; border: 1px solid #d4a72c; border-left-width: 5px;
        border-radius: 4px; padding: 0.6rem 0.9rem; margin: 1rem 0; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.92rem; }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: 0.35rem; }
th, td { border: 1px solid #d0d7de; padding: 0.3rem 0.65rem; }
th { background: #f0f3f6; text-align: left; }
tbody tr:nth-child(even) { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1.25rem 0; }
img { max-width: 100%; height: auto; display: block; }
figcaption { font-size: 0.9rem; color: #59636e; margin-top: 0.35rem; }
pre { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 4px; padding: 0.7rem 0.9rem;
      overflow-x: auto; font-size: 0.88rem; }
footer { margin-top: 3rem; border-top: 1px solid #d0d7de; padding-top: 0.6rem;
         font-size: 0.82rem; color: #59636e; }
"""


def _format_cell(value: object) -> tuple[str, bool]:
    """``(text, is_number)``: integers as they are, other reals with ``%.4g``, ``None`` as a
    dash; booleans and everything else through ``str``."""
    if value is None:
        return _MISSING, False
    if isinstance(value, bool):
        return str(value), False
    if isinstance(value, numbers.Integral):
        return str(int(value)), True
    if isinstance(value, numbers.Real):
        return f"{float(value):.4g}", True
    return str(value), False


def _png_bytes(png: str | os.PathLike | bytes) -> bytes:
    """The bytes of ``png`` (the PNG itself, or a path to one), checked to start as a PNG."""
    if isinstance(png, bytes | bytearray | memoryview):
        data, origin = bytes(png), "the bytes given"
    elif isinstance(png, str | os.PathLike):
        data, origin = Path(png).read_bytes(), os.fspath(png)
    else:
        raise TypeError(f"png must be PNG bytes or a path to a PNG file, got {type(png).__name__}")
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError(
            f"png must be a PNG image, but {origin} does not start with the PNG signature "
            f"(first bytes {data[:8]!r}); save figures with format='png'"
        )
    return data


class Report:
    """An HTML page built section by section, in the order of the calls.

    Args:
        title: the page's ``<title>`` and its ``<h1>``.
    """

    def __init__(self, title: str) -> None:
        self.title = title
        self._sections: list[str] = []

    def heading(self, text: str, level: int = 2) -> None:
        """A section heading ``<h2>`` (default) to ``<h6>``; ``<h1>`` is the title's."""
        if isinstance(level, bool) or not isinstance(level, int) or not 2 <= level <= 6:
            raise ValueError(f"level must be an int in 2..6 (1 is the title), got {level!r}")
        self._sections.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def paragraph(self, text: str) -> None:
        """A paragraph of plain text."""
        self._sections.append(f"<p>{html.escape(text)}</p>")

    def note(self, text: str) -> None:
        """A highlighted box, for what a reader must not miss (e.g. a fallback data set)."""
        self._sections.append(f'<p class="note">{html.escape(text)}</p>')

    def table(
        self,
        rows: Sequence[Mapping[str, object]],
        columns: Sequence[str] | None = None,
        caption: str = "",
    ) -> None:
        """A table with one row per mapping.

        ``columns`` picks and orders the columns; by default every key, in order of first
        appearance. Integers are shown as they are, other numbers with ``%.4g`` and
        right-aligned; ``None`` and a key a row lacks show as a dash.
        """
        if columns is None:
            columns = list(dict.fromkeys(key for row in rows for key in row))
        parts = ["<table>"]
        if caption:
            parts.append(f"<caption>{html.escape(caption)}</caption>")
        header = "".join(f"<th>{html.escape(str(column))}</th>" for column in columns)
        parts.append(f"<thead><tr>{header}</tr></thead><tbody>")
        for row in rows:
            cells = []
            for column in columns:
                text, is_number = _format_cell(row.get(column))
                attribute = ' class="num"' if is_number else ""
                cells.append(f"<td{attribute}>{html.escape(text)}</td>")
            parts.append(f"<tr>{''.join(cells)}</tr>")
        parts.append("</tbody></table>")
        self._sections.append("".join(parts))

    def image(self, png: str | os.PathLike | bytes, caption: str, alt: str | None = None) -> None:
        """A PNG figure (bytes, or a path to the file) embedded in the page, with a caption.

        ``alt`` (the text shown when the image cannot be) defaults to the caption. Raises
        ``ValueError`` if the data does not start with the PNG signature.
        """
        data = _png_bytes(png)
        uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        alt_text = html.escape(caption if alt is None else alt)
        self._sections.append(
            f'<figure><img src="{uri}" alt="{alt_text}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def code(self, text: str) -> None:
        """A preformatted block, e.g. the command that reproduces the report."""
        self._sections.append(f"<pre><code>{html.escape(text)}</code></pre>")

    def html(self) -> str:
        """The whole page, with a footer naming the time (UTC) and the library versions."""
        generated = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        footer = html.escape(
            f"Generated at {generated} by samplegrad {samplegrad.__version__} "
            f"with torch {torch.__version__}."
        )
        title = html.escape(self.title)
        body = "\n".join(self._sections)
        return (
            "<!DOCTYPE html>\n"
            '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{title}</title>\n<style>{_STYLE}</style>\n</head>\n"
            f"<body>\n<main>\n<h1>{title}</h1>\n{body}\n"
            f"<footer>{footer}</footer>\n</main>\n</body>\n</html>\n"
        )

    def write(self, directory: str | os.PathLike) -> Path:
        """Write the page to ``directory/index.html`` (creating the folder) atomically, so a
        reader never sees half a page; returns the path."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "index.html"
        page = self.html().encode("utf-8")
        write_atomic(path, lambda file: file.write(page), binary=True)
        return path
