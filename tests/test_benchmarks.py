"""The benchmark scripts run (smoke test): a few iterations, results written where asked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
PEER_LIBRARIES = {"pyro", "storchastic"}


def test_overhead_quick_run_writes_its_results(tmp_path):
    subprocess.run(
        [sys.executable, str(BENCHMARKS / "overhead.py"), "--quick", "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    report = json.loads((tmp_path / "overhead.json").read_text())
    samplegrad_rows = [row for row in report["rows"] if row["contender"] == "samplegrad"]
    estimators = [
        ("bernoulli", "gumbel"),
        ("bernoulli", "score-loo"),
        ("bernoulli", "arm"),
        ("bernoulli", "disarm"),
        ("bernoulli", "rebar"),
        ("bernoulli", "relax"),
        ("gaussian", "pathwise"),
        ("gaussian", "score-loo"),
        ("gaussian", "measure-valued"),
    ]
    assert {(row["validation"], row["problem"], row["estimator"]) for row in samplegrad_rows} == {
        (validation, problem, estimator)
        for validation in ("on", "off")
        for problem, estimator in estimators
    }
    assert all(row["ratio_to_hand"] > 0 for row in samplegrad_rows)
    # Only a peer library's row may fail, and it says why instead of giving a time.
    for row in report["rows"]:
        if row["us_per_estimate"] is None:
            assert row["contender"] in PEER_LIBRARIES
            assert row["note"].startswith("failed: ")
        else:
            assert row["us_per_estimate"] > 0
    assert (tmp_path / "overhead.md").read_text().startswith("# samplegrad overhead")
