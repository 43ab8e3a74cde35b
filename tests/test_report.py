"""samplegrad.lab.report.html: escaping, table formatting, PNG embedding, atomic writes, and the
page as headless chromium renders it (skipped, with the reason, where chromium is not installed)."""

from __future__ import annotations

import base64
import io
import re
import struct
import time

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import samplegrad
from samplegrad.lab.report.html import PNG_SIGNATURE, Report

import browser
from browser import browser_unavailable_reason, check_page


def figure_png(kind: str) -> bytes:
    """A small matplotlib figure as PNG bytes (Agg canvas, no pyplot state)."""
    figure = Figure(figsize=(3, 2), dpi=80)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    x = np.linspace(0, 1, 50)
    if kind == "line":
        axes.plot(x, x**2)
    elif kind == "bars":
        axes.bar(["score", "pathwise"], [3.0, 0.5])
    else:
        axes.imshow(np.random.default_rng(0).random((8, 8)), cmap="gray")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def body(report: Report) -> str:
    """The page between ``<h1>`` and the footer: what the calls added."""
    page = report.html()
    return page[page.index("</h1>") + 5 : page.index("<footer>")].strip()


def test_text_is_escaped():
    report = Report("<script>alert(1)</script> & co")
    report.heading("a < b", level=3)
    report.paragraph('"quoted" & <b>not bold</b>')
    report.note("x > y")
    report.code("samplegrad demo --out 'a&b'")
    page = report.html()
    assert "<script>" not in page
    assert "<title>&lt;script&gt;alert(1)&lt;/script&gt; &amp; co</title>" in page
    assert body(report) == (
        "<h3>a &lt; b</h3>\n"
        "<p>&quot;quoted&quot; &amp; &lt;b&gt;not bold&lt;/b&gt;</p>\n"
        '<p class="note">x &gt; y</p>\n'
        "<pre><code>samplegrad demo --out &#x27;a&amp;b&#x27;</code></pre>"
    )


def test_footer_names_versions_and_time():
    page = Report("t").html()
    footer = page[page.index("<footer>") :]
    assert f"samplegrad {samplegrad.__version__}" in footer
    assert f"torch {torch.__version__}" in footer
    assert re.search(r"Generated at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", footer)
    assert "<script" not in page.lower()


@pytest.mark.parametrize("level", [1, 7, 2.0, True])
def test_heading_level_is_checked(level):
    with pytest.raises(ValueError, match=r"level must be an int in 2\.\.6"):
        Report("t").heading("h", level=level)


def test_table_formats_numbers_and_missing_values():
    report = Report("t")
    rows = [
        {"estimator": "score", "variance": 0.000123456, "samples": 60000, "ok": True},
        {"estimator": "<pathwise>", "variance": np.float32(12345.678), "samples": None},
        {"estimator": "nan", "variance": float("nan"), "samples": np.int64(3), "extra": 2.5},
    ]
    report.table(rows, caption="Variances & co")
    html = body(report)
    assert html.startswith("<table><caption>Variances &amp; co</caption>")
    header = "<th>estimator</th><th>variance</th><th>samples</th><th>ok</th><th>extra</th>"
    assert header in html
    assert (
        '<tr><td>score</td><td class="num">0.0001235</td><td class="num">60000</td>'
        "<td>True</td><td>–</td></tr>"
    ) in html
    assert (
        '<tr><td>&lt;pathwise&gt;</td><td class="num">1.235e+04</td><td>–</td><td>–</td>'
        "<td>–</td></tr>"
    ) in html
    last = '<td class="num">nan</td><td class="num">3</td><td>–</td><td class="num">2.5</td>'
    assert last in html


def test_table_columns_select_and_order():
    report = Report("t")
    report.table([{"a": 1, "b": 2.0, "c": 3}], columns=["c", "a"])
    assert body(report) == (
        "<table><thead><tr><th>c</th><th>a</th></tr></thead><tbody>"
        '<tr><td class="num">3</td><td class="num">1</td></tr></tbody></table>'
    )


def test_image_is_embedded_as_data_uri(tmp_path):
    png = figure_png("line")
    path = tmp_path / "figure.png"
    path.write_bytes(png)
    report = Report("t")
    report.image(png, "Variance <vs> samples")
    report.image(path, "from a file", alt="alt & text")
    report.image(str(path), "from a str path")
    sources = re.findall(
        r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]*)">', body(report)
    )
    assert [alt for _, alt in sources] == [
        "Variance &lt;vs&gt; samples",
        "alt &amp; text",
        "from a str path",
    ]
    assert all(base64.b64decode(data) == png for data, _ in sources)
    assert "<figcaption>Variance &lt;vs&gt; samples</figcaption>" in body(report)


def test_image_that_is_not_png_is_refused(tmp_path):
    report = Report("t")
    with pytest.raises(ValueError, match=r"png must be a PNG image, but the bytes given"):
        report.image(b"\xff\xd8\xff\xe0 a JPEG", "jpeg")
    svg = tmp_path / "figure.svg"
    svg.write_text("<svg/>")
    with pytest.raises(ValueError, match=rf"png must be a PNG image, but {re.escape(str(svg))}"):
        report.image(svg, "svg")
    with pytest.raises(TypeError, match="png must be PNG bytes or a path"):
        report.image(np.zeros((2, 2)), "array")  # type: ignore[arg-type]
    assert body(report) == ""


def test_write_is_atomic_and_utf8(tmp_path, monkeypatch):
    report = Report("Ünïcode – report")
    report.table([{"value": None}])
    path = report.write(tmp_path / "nested" / "report")
    assert path == tmp_path / "nested" / "report" / "index.html"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in text
    assert "<title>Ünïcode – report</title>" in text and "<td>–</td>" in text
    assert [p.name for p in path.parent.iterdir()] == ["index.html"]

    # A write that fails at the last step (the rename) keeps the old page, no temporary file.
    def fail(source, destination):
        raise OSError("disk full")

    old = path.read_bytes()
    report.paragraph("new")
    monkeypatch.setattr("samplegrad.lab.files.os.replace", fail)
    with pytest.raises(OSError, match="disk full"):
        report.write(path.parent)
    assert path.read_bytes() == old
    assert [p.name for p in path.parent.iterdir()] == ["index.html"]


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    assert data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_browser_unavailable_reason_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(browser, "CHROMIUM", tmp_path / "chromium")
    reason = browser_unavailable_reason()
    assert reason is not None and reason.startswith("chromium not installed")
    assert "apt-get install chromium chromium-driver" in reason


def test_page_renders_in_headless_chromium(tmp_path):
    reason = browser_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    good = {kind: figure_png(kind) for kind in ("line", "bars", "image")}
    report = Report("Browser check")
    report.note("MNIST not found: used the scikit-learn digits fallback")
    for kind, png in good.items():
        report.image(png, f"a {kind} figure", alt=kind)
    report.table([{"estimator": "score", "variance": 1.5}])

    start = time.perf_counter()
    page = check_page(report.write(tmp_path / "good"), tmp_path / "good.png")
    assert page.title == "Browser check"
    assert page.images == 3
    assert page.broken == []
    shot = page.screenshot.read_bytes()
    assert page.screenshot == tmp_path / "good.png"
    assert len(shot) > 10_000
    width, height = png_size(shot)
    assert width >= 800 and height > 3 * 160  # the whole page, three figures tall

    # The check can fail: a PNG cut short after its header passes the report's signature
    # check but does not decode.
    report.image(good["line"][:64], "a truncated figure", alt="truncated")
    page = check_page(report.write(tmp_path / "broken"), tmp_path / "broken.png")
    assert page.images == 4
    assert page.broken == ["truncated"]
    assert time.perf_counter() - start < 15
