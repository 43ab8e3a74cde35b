"""The Bayesian classifiers, calibration metrics, ``fit_bnn`` and ``samplegrad train bnn``.

Training runs use a tiny fake MNIST (64 training images, 16 of them held out, 16 test
images, batches of 16: three steps an epoch), except the accuracy test on the real MNIST,
which is skipped (saying so) where the files are not found.
"""

from __future__ import annotations

import csv
import json
import math
import signal
from pathlib import Path

import pytest
import torch

from samplegrad.cli import main
from samplegrad.lab.data import MNISTNotFoundError, find_mnist
from samplegrad.lab.models.bnn import BayesianCNN, BayesianMLP
from samplegrad.lab.training.bnn import CHECKPOINT, CSV_COLUMNS, SUMMARY_KEYS, BNNConfig, fit_bnn
from samplegrad.lab.training.calibration import (
    expected_calibration_error,
    predictive_entropy,
    reliability,
)

from fake_mnist import write_fake_mnist

N_TRAIN, N_TEST, BATCH = 64, 16, 16
STEPS_PER_EPOCH = (N_TRAIN - 16) // BATCH
PLOTS = ("calibration.png", "entropy.png", "curves.png")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_mnist(tmp_path_factory.mktemp("mnist"), N_TRAIN, N_TEST)


def config(data_dir: Path, out: Path, **options: object) -> BNNConfig:
    settings = {
        "epochs": 1,
        "batch_size": BATCH,
        "validation_size": 16,
        "eval_batch_size": 16,
        "eval_samples": 2,
        "data_dir": str(data_dir),
        "out": str(out),
        "progress": False,
    }
    return BNNConfig(**{**settings, **options})


def saved(out: Path) -> dict:
    return torch.load(out / CHECKPOINT, weights_only=True)


def assert_same_run(a: Path, b: Path) -> None:
    first, second = saved(a), saved(b)
    for name, tensor in first["model"].items():
        assert torch.equal(tensor, second["model"][name]), name
    assert torch.equal(first["sampling_generator"], second["sampling_generator"])
    assert first["state"]["step"] == second["state"]["step"]


# --------------------------------------------------------------------------------------------
# Models and metrics


@pytest.mark.parametrize("model_class", [BayesianMLP, BayesianCNN])
@pytest.mark.parametrize("layer", ["flipout", "local-reparam", "naive"])
def test_models_loss_and_predictive(model_class: type, layer: str) -> None:
    model = model_class(layer)
    x, y = torch.rand(8, 784), torch.arange(8)
    generator = torch.Generator().manual_seed(0)
    loss = model.loss(x, y, num_train=1000, generator=generator)
    loss.loss.backward()
    torch.testing.assert_close(loss.loss.detach(), loss.nll + loss.kl / 1000)
    assert all(p.grad is not None for p in model.parameters())
    probs = model.predict(x, 3, generator)
    assert probs.shape == (8, 10)
    torch.testing.assert_close(probs.sum(-1), torch.ones(8))


def test_model_input_errors() -> None:
    model = BayesianMLP()
    with pytest.raises(ValueError, match=r"x must be a \(batch, 784\) tensor"):
        model(torch.zeros(2, 28, 28))
    with pytest.raises(ValueError, match="num_train must be an int >= 1"):
        model.loss(torch.zeros(2, 784), torch.zeros(2, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="layer must be one of"):
        BayesianMLP("bayes")


def test_ece_against_a_hand_computation() -> None:
    """15 bins of width 1/15: confidence 0.95 (right) falls in bin 14, gap 0.05; 0.9 (wrong)
    in bin 13, gap 0.9; 0.55 right and 0.55 wrong (the label's probability is 0.45) in bin 8,
    accuracy 1/2, gap 0.05. ECE = (0.05 + 0.9 + 2 * 0.05) / 4 = 0.2625."""
    probs = torch.tensor([[0.95, 0.05], [0.9, 0.1], [0.55, 0.45], [0.45, 0.55]])
    labels = torch.tensor([0, 1, 0, 0])
    assert expected_calibration_error(probs, labels) == pytest.approx(0.2625)
    table = reliability(probs, labels)
    assert table.counts.tolist() == [0] * 8 + [2] + [0] * 4 + [1, 1]
    assert expected_calibration_error(torch.eye(3), torch.arange(3)) == 0.0
    entropy = predictive_entropy(torch.tensor([[0.5, 0.5], [1.0, 0.0]]))
    torch.testing.assert_close(entropy, torch.tensor([math.log(2), 0.0]))
    with pytest.raises(ValueError, match="probs must be"):
        reliability(torch.zeros(3), labels)


# --------------------------------------------------------------------------------------------
# Training (offline: the fake MNIST only)


@pytest.mark.usefixtures("offline")
@pytest.mark.parametrize(("arch", "layer"), [("mlp", "flipout"), ("cnn", "local-reparam")])
def test_run_writes_metrics_checkpoint_and_plots(
    data_dir: Path, tmp_path: Path, arch: str, layer: str
) -> None:
    out = tmp_path / "run"
    result = fit_bnn(config(data_dir, out, arch=arch, layer=layer))
    assert set(result) == set(SUMMARY_KEYS)
    assert json.loads((out / "metrics.json").read_text()) == result
    assert 0 <= result["test_accuracy"] <= 1 and result["test_nll"] > 0
    assert 0 <= result["test_ece"] <= 1 and result["ece_bins"] == 15
    assert result["num_train"] == N_TRAIN - 16 and result["steps"] == STEPS_PER_EPOCH
    assert len(result["epoch_seconds"]) == 1 and result["kl_per_example"] > 0
    with open(out / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == list(CSV_COLUMNS) and len(rows) == 1
    assert all(math.isfinite(float(rows[0][key])) for key in CSV_COLUMNS)
    assert all((out / name).stat().st_size > 0 for name in PLOTS)


@pytest.mark.usefixtures("offline")
def test_resume_mid_epoch_after_a_signal_matches_an_uninterrupted_run(
    data_dir: Path, tmp_path: Path
) -> None:
    fit_bnn(config(data_dir, tmp_path / "straight", epochs=2))

    def interrupt(step: int, loss: float) -> None:
        assert math.isfinite(loss)
        if step == STEPS_PER_EPOCH + 1:
            signal.raise_signal(signal.SIGTERM)

    out = tmp_path / "resumed"
    stopped = fit_bnn(config(data_dir, out, epochs=2), on_step=interrupt)
    assert stopped["interrupted"] == "SIGTERM" and saved(out)["state"]["step"] == 4
    assert not (out / "metrics.json").exists()
    result = fit_bnn(config(data_dir, out, epochs=2, resume=True))
    assert_same_run(tmp_path / "straight", out)
    assert result["epochs"] == 2 and len(result["epoch_seconds"]) == 2


@pytest.mark.usefixtures("offline")
def test_steps_then_resume_and_config_errors(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    fit_bnn(config(data_dir, out, steps=2))
    with pytest.raises(ValueError, match="pass --resume"):
        fit_bnn(config(data_dir, out, steps=2))
    with pytest.raises(ValueError, match="layer='flipout' in the checkpoint, 'naive' now"):
        fit_bnn(config(data_dir, out, steps=4, resume=True, layer="naive"))
    fit_bnn(config(data_dir, out, steps=4, resume=True))
    fit_bnn(config(data_dir, tmp_path / "straight", steps=4))
    assert_same_run(out, tmp_path / "straight")
    with pytest.raises(ValueError, match="prior_scale must be a finite number > 0"):
        BNNConfig(prior_scale=-1.0)
    with pytest.raises(ValueError, match="layer must be one of flipout, local-reparam, naive"):
        BNNConfig(layer="dropout")


def cli_args(data_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "bnn",
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
        "--eval-samples",
        "2",
        "--no-progress",
        *extra,
    ]


@pytest.mark.usefixtures("offline")
def test_command_line(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    assert main(cli_args(data_dir, out, "--layer", "naive", "--steps", "2")) == 0
    assert "test accuracy" in capsys.readouterr().out
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["layer"] == "naive" and summary["steps"] == 2
    assert {"test_accuracy", "test_nll", "test_ece", "epoch_seconds"} <= set(summary)

    with pytest.raises(SystemExit) as exit_info:
        main(cli_args(tmp_path / "nowhere", tmp_path / "other"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte.gz" in err and "Traceback" not in err


def test_help_documents_the_kl_scaling(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["train", "bnn", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "KL(q || p) / N_train" in text and "15 equal-width" in text


# --------------------------------------------------------------------------------------------
# Accuracy on the real MNIST


def real_mnist() -> Path | None:
    """The real MNIST's folder ($SAMPLEGRAD_DATA or the per-user cache), looked up before any
    test's ``offline`` fixture hides them; ``None`` if absent (no download is tried)."""
    try:
        return find_mnist(download=False)
    except MNISTNotFoundError:
        return None


REAL_MNIST = real_mnist()


@pytest.mark.skipif(
    REAL_MNIST is None,
    reason="the real MNIST files are not found: set SAMPLEGRAD_DATA to their folder",
)
def test_flipout_mlp_learns_mnist(tmp_path: Path) -> None:
    """A short budget: 300 steps of batch 128 (0.64 epoch) reach >= 90 % test accuracy
    (about 95 % measured; the 97 % target at 2-3 epochs is benchmarks/bnn_accuracy.py)."""
    result = fit_bnn(
        BNNConfig(
            steps=300,
            validation_size=0,
            eval_samples=2,
            data_dir=str(REAL_MNIST),
            out=str(tmp_path / "run"),
            progress=False,
        )
    )
    assert result["test_accuracy"] >= 0.90


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning")
def test_compiled_training_step_matches_eager(data_dir: Path, tmp_path: Path) -> None:
    """``compile=True`` trains the same steps: the parameters agree with the eager run's to
    float32 rounding after two steps (inductor fuses and reorders the arithmetic)."""
    fit_bnn(config(data_dir, tmp_path / "eager", steps=2))
    fit_bnn(config(data_dir, tmp_path / "compiled", steps=2, compile=True))
    eager, compiled = saved(tmp_path / "eager")["model"], saved(tmp_path / "compiled")["model"]
    for name, value in eager.items():
        assert torch.allclose(value, compiled[name], atol=1e-5), name
