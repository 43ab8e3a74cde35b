"""The benchmark scripts run (smoke test): a few iterations, results written where asked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fake_mnist import write_fake_mnist

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
        ("bernoulli", "straight-through"),
        ("bernoulli", "gumbel-hard"),
        ("bernoulli", "reinmax"),
        ("gaussian", "pathwise"),
        ("gaussian", "score-loo"),
        ("gaussian", "measure-valued"),
        ("gaussian", "stl"),
        ("gaussian", "score-ma"),
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


def test_gpu_benchmark_runs_on_the_cpu_and_says_so(tmp_path):
    """``benchmarks/gpu.py`` without a CUDA device: the same loops on the CPU, named as such
    (compiled rows skipped here: compilation takes tens of seconds)."""
    data = write_fake_mnist(tmp_path / "mnist", n_train=512, n_test=16)
    subprocess.run(
        [sys.executable, str(BENCHMARKS / "gpu.py"), "--quick", "--no-compile",
         "--data-dir", str(data), "--out", str(tmp_path)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    report = json.loads((tmp_path / "gpu_cpu.json").read_text())
    assert report["device"].startswith("CPU")
    assert any("No CUDA device" in note for note in report["notes"])
    rows = {(row["model"], row["contender"]): row for row in report["rows"]}
    for key in (("gaussian", "tutorial"), ("gaussian", "hand"), ("gaussian", "samplegrad"),
                ("bernoulli", "samplegrad"), ("gaussian", "samplegrad-seeds8"),
                ("bernoulli", "samplegrad-seeds8")):  # fmt: skip
        assert rows[key]["epoch_seconds"] > 0, rows[key]
    assert rows[("gaussian", "hand")]["ratio_to_hand"] == 1.0
    # The arithmetic floor: the step's GEMM FLOPs (784-400-20, batch 128) at the measured rate.
    assert report["floor"]["step_gflop"] == 0.4198 and report["floor"]["gemm_gflops"] > 0
    assert rows[("gaussian", "hand")]["ratio_to_floor"] > 0
    assert rows[("bernoulli", "samplegrad")]["ratio_to_floor"] is None
    assert {row["contender"] for row in report["micro"]} == {"hand", "samplegrad"}
    assert (tmp_path / "gpu_cpu.md").read_text().startswith("# One device, one run")


def test_leaderboard_short_run_writes_its_table_and_plots(tmp_path):
    """A few steps of two estimators (one batched, one seed after seed) on the fake MNIST."""
    data = write_fake_mnist(tmp_path / "mnist", n_train=10_100, n_test=8)
    subprocess.run(
        [sys.executable, str(BENCHMARKS / "leaderboard.py"), "--steps", "4", "--seeds", "2",
         "--models", "bernoulli-linear", "--estimators", "disarm", "relax",
         "--checkpoints", "3", "--test-images", "8", "--variance-copies", "3",
         "--workers", "1", "--data-dir", str(data), "--out", str(tmp_path)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    report = json.loads((tmp_path / "leaderboard.json").read_text())
    assert report["steps"] == 4 and "--steps 4" in report["command"]
    rows = {row["estimator"]: row for row in report["rows"]}
    assert rows["disarm"]["batched"] and not rows["relax"]["batched"]
    for row in rows.values():
        assert row["checkpoints"] == [0, 2, 4]
        assert len(row["test_iwae"]) == len(row["train_elbo"]) == 2
        assert all(len(values) == 2 and min(values) > 0 for values in row["variance"])
        assert row["seconds_per_step"] > 0
    table = (tmp_path / "leaderboard.md").read_text()
    assert "**4 steps**" in table and "| disarm | 2 | 2, batched |" in table
    assert "one after another" in table and "## Deviations" in table
    assert (tmp_path / "leaderboard_bernoulli-linear.png").stat().st_size > 0
