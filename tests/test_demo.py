"""``samplegrad demo`` end to end in smoke mode, its report in a headless browser, and the
offline fallback to scikit-learn's digits when MNIST cannot be found."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from samplegrad.cli import main
from samplegrad.lab.compare import problems as compare_problems
from samplegrad.lab.report import demo
from samplegrad.lab.report.html import Report

from browser import browser_unavailable_reason, check_page
from fake_mnist import write_fake_mnist

pytestmark = pytest.mark.usefixtures("offline", "one_thread")


@pytest.fixture(autouse=True)
def _short_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    """One timed block per estimate: these tests check the report, not the times."""
    monkeypatch.setattr(compare_problems, "TIMING_BLOCKS", 1)


def test_smoke_demo_writes_a_report_that_a_browser_renders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_fake_mnist(tmp_path / "mnist", n_train=256, n_test=64)
    out = tmp_path / "report"
    status = main(["demo", "--smoke", "--out", str(out), "--data-dir", str(data), "--no-progress"])
    assert status == 0
    printed = capsys.readouterr().out
    assert f"report: {(out / 'index.html').resolve()}" in printed

    page = (out / "index.html").read_text(encoding="utf-8")
    for heading in (
        "1. Gaussian: pathwise, score function, measure-valued",
        "2. Bernoulli: REINFORCE, leave-one-out, ARM, DisARM, RELAX",
        "3. The price of a relaxation: bias",
        "4. A real model: the Gaussian VAE",
        "Estimators on the encoder&#x27;s gradient",
    ):
        assert heading in page
    assert "Smoke mode" in page and "MNIST was not found" not in page
    images = re.findall(r'<img [^>]*src="data:image/png;base64,', page)
    assert len(images) == 11  # 3 k sweeps, K, phi sweep, SNR, ELBO, recon., samples, 2 encoder
    for part in ("gaussian/gaussian-cos", "bernoulli/sweep", "bias", "vae/encoder"):
        assert (out / part / "compare.json").is_file() and (out / part / "compare.csv").is_file()

    reason = browser_unavailable_reason()
    if reason is not None:
        pytest.skip(f"the report was written; its browser check needs: {reason}")
    check = check_page(out / "index.html", tmp_path / "screenshot.png")
    assert check.images == 11 and check.broken == []
    assert check.title.startswith("Which gradient estimator?")
    assert (tmp_path / "screenshot.png").stat().st_size > 10_000


def test_without_mnist_the_vae_part_uses_the_digits_and_says_so(tmp_path: Path) -> None:
    report = Report("fallback")
    config = demo.DemoConfig(out=str(tmp_path), smoke=True, progress=False)
    demo._vae_part(report, config, tmp_path / "vae", lambda what: None)
    page = report.html()
    assert "MNIST was not found" in page and "scikit-learn&#x27;s bundled 8 x 8 digits" in page
    assert "encoder 64-400-20" in page
    assert (tmp_path / "vae" / "reconstructions.png").stat().st_size > 1000
