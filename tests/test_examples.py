"""Every tutorial script under examples/ runs in its short mode (``--smoke``), so none rots.

The scripts run in this process (``runpy``), so torch is imported and MNIST decoded once for
all of them, under pytest's warnings-as-errors. They use MNIST where ``$SAMPLEGRAD_DATA`` points
at it (as in CI) and otherwise scikit-learn's bundled 8 x 8 digits, which they announce.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(path for path in EXAMPLES.glob("*.py") if not path.name.startswith("_"))

# What each script prints when it has run to its end.
LAST_WORDS = {
    "bayesian_layers.py": "test accuracy",
    "discrete_vae.py": "gumbel, analytic KL",
    "keras_vae.py": "test ELBO",
    "measuring.py": "score-loo/weight",
    "policy_gradients.py": "CartPole step 1",
}

pytestmark = pytest.mark.usefixtures("one_thread")


def run_example(path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.setattr(sys, "argv", [str(path), *args])
    runpy.run_path(str(path), run_name="__main__")


def test_every_example_is_known() -> None:
    assert [path.name for path in SCRIPTS] == sorted(LAST_WORDS)


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda path: path.stem)
def test_example_runs(
    path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_example(path, monkeypatch, "--smoke")
    assert LAST_WORDS[path.name] in capsys.readouterr().out


@pytest.mark.usefixtures("offline")
def test_example_says_when_it_falls_back_to_the_digits(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_example(EXAMPLES / "keras_vae.py", monkeypatch, "--smoke")
    out = capsys.readouterr().out
    assert "MNIST not found" in out
    assert "Using scikit-learn's 8 x 8 digits instead (not MNIST)" in out
    assert "test ELBO" in out
