"""samplegrad.lab.training.policy and ``samplegrad train policy``: the MNIST bandit's accuracy on
the real test set, the files of a run, resume, errors, and a CartPole smoke run.

The smoke runs use a tiny fake MNIST (64 training images, 16 of them held out, 16 test
images); the accuracy test needs the real files (``$SAMPLEGRAD_DATA``) and skips without them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from samplegrad.cli import main
from samplegrad.lab.data import MNISTNotFoundError, find_mnist
from samplegrad.lab.training.policy import (
    CHECKPOINT,
    CSV_COLUMNS,
    SUMMARY_KEYS,
    PolicyConfig,
    TrainError,
    fit_policy,
)

from fake_mnist import write_fake_mnist

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_mnist(tmp_path_factory.mktemp("mnist"), 64, 16)


def real_mnist() -> Path:
    try:
        return find_mnist(download=False)
    except MNISTNotFoundError:
        pytest.skip("the real MNIST files are not here: set SAMPLEGRAD_DATA to their folder")


def test_bandit_reaches_90_percent_on_the_test_images(tmp_path: Path) -> None:
    """1000 steps of 64 images x 4 guesses (leave-one-out baseline), Adam 1e-3, seed 0: the
    greedy guess is right on at least 90% of the 10 000 test images (about 93% measured, in
    about 5 s of training on one thread)."""
    data_dir = real_mnist()
    config = PolicyConfig(env="mnist-bandit", data_dir=str(data_dir), out=tmp_path, progress=False)
    metrics = fit_policy(config)
    assert metrics["steps"] == 1000
    assert metrics["env_steps"] == 1000 * 64 * 4
    assert metrics["eval_episodes"] == 10_000
    assert metrics["test_return"] >= 0.90


def bandit_command(data_dir: Path, out: Path, *options: str) -> list[str]:
    return [
        "train",
        "policy",
        "--env",
        "mnist-bandit",
        "--batch-size",
        "8",
        "--validation-size",
        "16",
        "--eval-every",
        "3",
        "--data-dir",
        str(data_dir),
        "--out",
        str(out),
        "--no-progress",
        *options,
    ]


@pytest.mark.usefixtures("offline")
def test_cli_bandit_run_writes_its_files_and_resumes_exactly(
    fake_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert main(bandit_command(fake_data, whole, "--steps", "6")) == 0
    assert "mean reward (greedy) on 16 test images" in capsys.readouterr().out
    metrics = json.loads((whole / "metrics.json").read_text())
    assert set(SUMMARY_KEYS) <= set(metrics)
    assert (metrics["env"], metrics["steps"], metrics["env_steps"]) == ("mnist-bandit", 6, 6 * 32)
    assert metrics["eval_episodes"] == 16 and 0 <= metrics["test_return"] <= 1
    lines = (whole / "metrics.csv").read_text().splitlines()
    assert lines[0] == ",".join(CSV_COLUMNS) and len(lines) == 1 + 6
    for name in (CHECKPOINT, "training.png", "confusion.png"):
        assert (whole / name).stat().st_size > 0

    assert main(bandit_command(fake_data, split, "--steps", "3")) == 0
    assert main(bandit_command(fake_data, split, "--steps", "6", "--resume")) == 0
    a = torch.load(whole / CHECKPOINT, weights_only=True)
    b = torch.load(split / CHECKPOINT, weights_only=True)
    for name, tensor in a["policy"].items():
        torch.testing.assert_close(b["policy"][name], tensor, rtol=0, atol=0)
    assert a["state"]["history"][-1]["env_steps"] == b["state"]["history"][-1]["env_steps"]


@pytest.mark.usefixtures("offline")
def test_learned_baseline_trains_a_value_network(fake_data: Path, tmp_path: Path) -> None:
    config = PolicyConfig(
        env="mnist-bandit",
        steps=2,
        batch_size=8,
        num_samples=1,
        baseline="learned",
        validation_size=16,
        data_dir=str(fake_data),
        out=tmp_path,
        progress=False,
    )
    fit_policy(config)
    saved = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert "value" in saved


@pytest.mark.usefixtures("offline")
@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--num-samples", "1"], "num_samples must be >= 2"),
        (["--steps", "1", "--resume"], "cannot resume: no checkpoint"),
        (["--validation-size", "64"], "validation_size"),
    ],
)
def test_bad_requests_are_usage_errors(
    fake_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture, options: list, message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(bandit_command(fake_data, tmp_path, *options))
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_cartpole_rejects_a_batch_size() -> None:
    with pytest.raises(TrainError, match="batch_size applies to the mnist-bandit only"):
        PolicyConfig(env="cartpole", batch_size=8)


def test_cartpole_without_gymnasium_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "gymnasium", None)  # makes `import gymnasium` fail
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "policy", "--env", "cartpole", "--out", str(tmp_path), "--no-progress"])
    assert exit_info.value.code == 2
    assert "pip install 'samplegrad[rl]'" in capsys.readouterr().err


@pytest.mark.parametrize("baseline", ["loo", "learned"])
def test_cartpole_smoke(tmp_path: Path, baseline: str) -> None:
    pytest.importorskip("gymnasium", reason="CartPole needs the rl extra: pip install '.[rl]'")
    config = PolicyConfig(
        env="cartpole",
        steps=2,
        num_samples=2,
        baseline=baseline,
        eval_episodes=2,
        eval_every=1,
        out=tmp_path,
        progress=False,
    )
    metrics = fit_policy(config)
    assert (metrics["env"], metrics["steps"], metrics["eval_episodes"]) == ("cartpole", 2, 2)
    assert 1 <= metrics["test_return"] <= 500 and metrics["env_steps"] >= 2 * 2
    assert len(metrics["test_returns"]) == 2
    for name in ("metrics.csv", "metrics.json", CHECKPOINT, "training.png", "eval_returns.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_cartpole_benchmark_smoke(tmp_path: Path) -> None:
    pytest.importorskip("gymnasium", reason="CartPole needs the rl extra: pip install '.[rl]'")
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "cartpole.py"
    command = [sys.executable, str(script), "--seeds", "0", "--env-steps", "100"]
    subprocess.run([*command, "--out", str(tmp_path)], check=True, capture_output=True, timeout=120)
    report = json.loads((tmp_path / "cartpole.json").read_text())
    assert report["env_step_budget"] == 100 and len(report["rows"]) == 1
    assert report["rows"][0]["steps"] == 1 and (tmp_path / "cartpole.md").is_file()


@pytest.mark.slow
@pytest.mark.usefixtures("offline")
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning")
def test_compiled_bandit_step_matches_eager(fake_data: Path, tmp_path: Path) -> None:
    """``--compile`` captures the bandit's surrogate and Adam step: the same steps, so the
    policy after three steps agrees with the eager run's up to rounding, which Adam's division
    by the root of tiny second moments enlarges (to 2e-5 here; each step moves a weight by up
    to lr = 1e-3, so 1e-4 still catches a wrong step)."""
    assert main(bandit_command(fake_data, tmp_path / "eager", "--steps", "3")) == 0
    compiled = bandit_command(fake_data, tmp_path / "compiled", "--steps", "3", "--compile")
    assert main(compiled) == 0
    a = torch.load(tmp_path / "eager" / CHECKPOINT, weights_only=True)
    b = torch.load(tmp_path / "compiled" / CHECKPOINT, weights_only=True)
    for name, tensor in a["policy"].items():
        torch.testing.assert_close(b["policy"][name], tensor, rtol=0, atol=1e-4)
