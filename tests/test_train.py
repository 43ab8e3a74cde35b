"""samplegrad.lab.training.vae and ``samplegrad train vae``: runs per latent, files, resume,
signals, errors.

Every run trains on a tiny fake MNIST written into ``tmp_path`` (64 training images, of which
16 are held out for validation, and 16 test images), in batches of 16: three steps an epoch.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from samplegrad.cli import main
from samplegrad.cli.train import vae as cli_vae
from samplegrad.lab.training import vae as train_module
from samplegrad.lab.training.vae import (
    CHECKPOINT,
    CSV_COLUMNS,
    SUMMARY_KEYS,
    TrainConfig,
    TrainError,
    fit,
)

from fake_mnist import write_fake_mnist

N_TRAIN, N_TEST, BATCH = 64, 16, 16
STEPS_PER_EPOCH = (N_TRAIN - 16) // BATCH
PLOTS = ("reconstructions.png", "prior_samples.png", "elbo.png")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The four MNIST files with random grey levels and cycling labels."""
    return write_fake_mnist(tmp_path_factory.mktemp("mnist"), N_TRAIN, N_TEST)


pytestmark = pytest.mark.usefixtures("offline", "one_thread")


def config(data_dir: Path, out: Path, **options: object) -> TrainConfig:
    """A tiny run: batches of 16, 16 validation images, IWAE with k = 5, no progress bar."""
    settings = {
        "latent": "gaussian",
        "epochs": 1,
        "batch_size": BATCH,
        "iwae_k": 5,
        "validation_size": 16,
        "eval_batch_size": 16,
        "data_dir": str(data_dir),
        "out": str(out),
        "progress": False,
    }
    return TrainConfig(**{**settings, **options})


def read_csv(out: Path) -> list[dict[str, str]]:
    with open(out / "metrics.csv", newline="") as file:
        return list(csv.DictReader(file))


def saved(out: Path) -> dict:
    return torch.load(out / CHECKPOINT, weights_only=True)


def assert_same_run(a: Path, b: Path) -> None:
    """Both checkpoints hold equal parameters, optimiser moments, generator and history."""
    first, second = saved(a), saved(b)
    for key in ("model", "estimator"):
        assert (first[key] is None) == (second[key] is None)
        for name, tensor in (first[key] or {}).items():
            assert torch.equal(tensor, second[key][name]), f"{key}.{name}"
    for index, state in first["optimizer"]["state"].items():
        for name, tensor in state.items():
            assert torch.equal(tensor, second["optimizer"]["state"][index][name])
    assert torch.equal(first["sampling_generator"], second["sampling_generator"])
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in first["state"]["history"]]
    assert strip == [
        {k: v for k, v in row.items() if k != "seconds"} for row in second["state"]["history"]
    ]


@pytest.mark.parametrize(
    ("latent", "arch", "estimator", "num_samples"),
    [
        ("gaussian", "default", None, 1),
        ("gaussian", "2d", "pathwise", 2),
        ("bernoulli", "linear", "disarm", 2),
        ("bernoulli", "linear", "score-loo", 2),
        ("categorical", "default", "gumbel", 1),
        ("gaussian", "default", "stl", 2),
    ],
)
def test_run_writes_metrics_checkpoint_and_plots(
    data_dir: Path, tmp_path: Path, latent: str, arch: str, estimator: str | None, num_samples: int
) -> None:
    out = tmp_path / "run"
    cfg = config(data_dir, out, latent=latent, arch=arch, estimator=estimator)
    cfg.num_samples = num_samples
    result = fit(cfg)

    assert set(result) == set(SUMMARY_KEYS)
    assert json.loads((out / "metrics.json").read_text()) == result
    for key in ("train_elbo", "valid_elbo", "test_elbo", "test_iwae"):
        assert math.isfinite(result[key]) and result[key] < 0, key
    assert result["test_iwae"] >= result["test_elbo"] - 50  # k = 5: close to, mostly above
    expected = {"latent": latent, "arch": arch, "iwae_k": 5, "steps": STEPS_PER_EPOCH}
    assert {key: result[key] for key in expected} == expected
    assert result["estimator"] == (estimator or ("pathwise" if latent == "gaussian" else "auto"))
    assert result["torch"] == torch.__version__ and len(result["epoch_seconds"]) == 1

    rows = read_csv(out)
    assert list(rows[0]) == list(CSV_COLUMNS) and len(rows) == 1
    assert rows[0]["epoch"] == "1" and rows[0]["step"] == str(STEPS_PER_EPOCH)
    assert all(math.isfinite(float(rows[0][key])) for key in CSV_COLUMNS)
    assert saved(out)["state"]["step"] == STEPS_PER_EPOCH
    plots = (*PLOTS, "latent_map.png") if arch == "2d" else PLOTS
    assert all((out / name).stat().st_size > 0 for name in plots)
    assert (out / "latent_map.png").exists() == (arch == "2d")


def test_steps_write_a_row_per_epoch_and_for_the_partial_one(
    data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = fit(config(data_dir, out, steps=6, validation_size=0))  # 64 images: 4 steps/epoch
    rows = read_csv(out)
    assert [(row["epoch"], row["step"]) for row in rows] == [("1", "4"), ("2", "6")]
    assert all(row["valid_elbo"] == "" for row in rows)  # no validation split
    assert result["steps"] == 6 and result["epochs"] == 2 and result["valid_elbo"] is None

    fit(config(data_dir, out, steps=8, validation_size=0, resume=True))  # finish epoch 2
    fit(config(data_dir, tmp_path / "straight", steps=8, validation_size=0))
    assert_same_run(out, tmp_path / "straight")
    assert [(row["epoch"], row["step"]) for row in read_csv(out)] == [("1", "4"), ("2", "8")]


def test_resume_at_an_epoch_boundary_matches_an_uninterrupted_run(
    data_dir: Path, tmp_path: Path
) -> None:
    fit(config(data_dir, tmp_path / "straight", epochs=2))
    fit(config(data_dir, tmp_path / "resumed", epochs=1))
    result = fit(config(data_dir, tmp_path / "resumed", epochs=2, resume=True))
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")
    assert result["steps"] == 2 * STEPS_PER_EPOCH
    assert len(read_csv(tmp_path / "resumed")) == 2


@pytest.mark.parametrize(
    ("latent", "estimator"),
    [("gaussian", "dreg"), ("gaussian", "pathwise"), ("bernoulli", "vimco")],
)
def test_iwae_objective_trains_and_resumes_exactly(
    data_dir: Path, tmp_path: Path, latent: str, estimator: str
) -> None:
    options = {"latent": latent, "objective": "iwae", "estimator": estimator, "num_samples": 3}
    result = fit(config(data_dir, tmp_path / "straight", epochs=2, **options))
    assert (result["objective"], result["estimator"]) == ("iwae", estimator)
    assert math.isfinite(result["train_elbo"]) and result["test_iwae"] >= result["test_elbo"] - 50
    fit(config(data_dir, tmp_path / "resumed", epochs=1, **options))
    fit(config(data_dir, tmp_path / "resumed", epochs=2, resume=True, **options))
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")
    with pytest.raises(TrainError, match="objective='iwae' in the checkpoint, 'elbo' now"):
        fit(config(data_dir, tmp_path / "resumed", epochs=3, resume=True, latent=latent))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"latent": "gaussian", "estimator": "dreg"}, "--objective elbo.*pathwise, stl"),
        ({"latent": "bernoulli", "objective": "iwae", "estimator": "disarm"}, "choose from vimco"),
        ({"latent": "gaussian", "objective": "iwae", "estimator": "vimco"}, "pathwise, dreg, stl"),
    ],
)
def test_an_estimator_the_objective_does_not_take_is_refused(
    data_dir: Path, tmp_path: Path, options: dict, message: str
) -> None:
    with pytest.raises(TrainError, match=message):
        config(data_dir, tmp_path / "run", **options)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_epoch_checkpoints_and_resuming_is_exact(
    data_dir: Path, tmp_path: Path, signum: int
) -> None:
    """The signal arrives during step 4 (the middle of epoch 2); RELAX's control is trained
    too, so its parameters and its optimiser state must come back as well."""
    options = {"latent": "bernoulli", "estimator": "relax", "num_samples": 2, "epochs": 2}
    fit(config(data_dir, tmp_path / "straight", **options))

    def interrupt(step: int, elbo: float) -> None:
        assert math.isfinite(elbo)
        if step == STEPS_PER_EPOCH + 1:
            signal.raise_signal(signum)

    before = signal.getsignal(signum)
    out = tmp_path / "resumed"
    stopped = fit(config(data_dir, out, **options), on_step=interrupt)
    assert signal.getsignal(signum) is before
    assert stopped["interrupted"] == signal.Signals(signum).name
    assert stopped["step"] == saved(out)["state"]["step"] == STEPS_PER_EPOCH + 1
    assert not (out / "metrics.json").exists()

    fit(config(data_dir, out, resume=True, **options))
    assert_same_run(tmp_path / "straight", out)


def test_cli_reports_an_interruption_and_how_to_resume(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def interrupt(step: int, elbo: float) -> None:
        signal.raise_signal(signal.SIGINT)

    command = dataclasses.replace(
        cli_vae.COMMAND, fit=lambda cfg: train_module.fit(cfg, on_step=interrupt)
    )
    monkeypatch.setattr(cli_vae, "COMMAND", command)
    out = tmp_path / "run"
    args = ["train", "vae", "--latent", "gaussian", "--data-dir", str(data_dir), "--out", str(out)]
    assert main([*args, "--batch-size", "16", "--validation-size", "16"]) == 128 + signal.SIGINT
    assert "--resume" in capsys.readouterr().err
    assert saved(out)["state"]["step"] == 1


def cli_args(data_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "vae",
        "--data-dir",
        str(data_dir),
        "--out",
        str(out),
        "--batch-size",
        "16",
        "--validation-size",
        "16",
        "--eval-batch-size",
        "16",
        "--iwae-k",
        "5",
        *extra,
    ]


def cli_error(args: list[str], capsys: pytest.CaptureFixture) -> str:
    """The message of a usage error (exit status 2), which must not be a traceback."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "usage:" in err
    return err


def test_missing_data_is_a_usage_error_naming_the_files(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    err = cli_error(
        cli_args(tmp_path / "nowhere", tmp_path / "run", "--latent", "gaussian"), capsys
    )
    assert "train-images-idx3-ubyte.gz" in err and "SAMPLEGRAD_DATA" in err


@pytest.mark.parametrize(
    ("latent", "estimator", "message"),
    [
        ("gaussian", "disarm", "trained pathwise"),
        ("categorical", "disarm", "estimators that do: "),
        ("bernoulli", "nonsense", "unknown estimator 'nonsense'"),
    ],
)
def test_an_estimator_that_does_not_apply_is_a_usage_error(
    data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    latent: str,
    estimator: str,
    message: str,
) -> None:
    args = cli_args(data_dir, tmp_path / "run", "--latent", latent, "--estimator", estimator)
    assert message in cli_error(args, capsys)


def test_bad_arch_and_cuda_without_cuda_are_usage_errors(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = cli_args(data_dir, tmp_path / "run", "--latent", "bernoulli")
    assert "choose from linear, nonlinear" in cli_error([*args, "--arch", "2d"], capsys)
    if not torch.cuda.is_available():
        assert "CUDA is not available" in cli_error([*args, "--device", "cuda"], capsys)


def test_resume_needs_a_matching_checkpoint(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    args = cli_args(data_dir, out, "--latent", "gaussian", "--no-progress")
    assert "no checkpoint at" in cli_error([*args, "--steps", "1", "--resume"], capsys)
    assert main([*args, "--steps", "1"]) == 0
    capsys.readouterr()
    assert "pass --resume" in cli_error([*args, "--steps", "1"], capsys)
    err = cli_error([*args, "--steps", "2", "--resume", "--arch", "2d"], capsys)
    assert "arch='default' in the checkpoint, '2d' now" in err
    assert main([*args, "--steps", "2", "--resume"]) == 0
    assert saved(out)["state"]["step"] == 2


def test_train_error_is_a_value_error() -> None:
    with pytest.raises(TrainError, match="latent must be one of"):
        TrainConfig(latent="poisson")
    assert issubclass(TrainError, ValueError)


def test_command_line_smoke(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = cli_args(data_dir, out, "--latent", "bernoulli", "--estimator", "disarm")
    env = {**os.environ, "HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    process = subprocess.run(
        [sys.executable, "-m", "samplegrad", *args, "--num-samples", "2", "--steps", "3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert process.returncode == 0, process.stderr
    assert "test ELBO" in process.stdout and "Traceback" not in process.stderr
    assert json.loads((out / "metrics.json").read_text())["steps"] == 3


def test_ctrl_c_on_the_command_line_checkpoints_and_exits_cleanly(
    data_dir: Path, tmp_path: Path
) -> None:
    """SIGINT from outside, once the first epoch's checkpoint exists (the handlers are in)."""
    out = tmp_path / "run"
    args = cli_args(data_dir, out, "--latent", "gaussian", "--epochs", "100000")
    env = {**os.environ, "HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "samplegrad", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not (out / CHECKPOINT).exists() and process.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint within 60 s"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGINT, err
    assert "SIGINT received" in err and "--resume" in err and "Traceback" not in err
    assert saved(out)["state"]["step"] >= STEPS_PER_EPOCH


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning")
def test_compiled_training_step_matches_eager(data_dir: Path, tmp_path: Path) -> None:
    """``compile=True`` runs the same steps: after two steps the parameters agree with the
    eager run's to float32 rounding (inductor fuses and reorders the arithmetic)."""
    eager = fit(config(data_dir, tmp_path / "eager", steps=2))
    compiled = fit(config(data_dir, tmp_path / "compiled", steps=2, compile=True))
    assert compiled["steps"] == eager["steps"] == 2
    for name, value in saved(tmp_path / "eager")["model"].items():
        other = saved(tmp_path / "compiled")["model"][name]
        assert torch.allclose(value, other, atol=1e-5), name
