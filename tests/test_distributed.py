"""``torchrun`` with two CPU processes trains the same VAE as one process with the same options.

Each run (the Gaussian VAE; the Bernoulli VAE with DisARM and with the estimators that hold
state: ``score-ma``'s moving average, REBAR's temperature and ``eta``, RELAX's control
network) trains on a tiny fake MNIST, 48 training images in global batches of 16, for two
epochs (six steps), all in one ``torchrun`` launch: the two processes must end with identical
model and estimator parameters and buffers, rank 0's checkpoint must hold the single-process
run's to float rounding (the processes draw the single process's data order, binarization and
noise and keep their rows, and the estimator's state follows the global batch; see
:mod:`samplegrad.lab.training.vae`), and only rank 0 may write files (``tests/ddp_worker.py``
makes any other write fail). Without processes: the sharded noise draws and the checks of the
global batch.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import Tensor

from samplegrad._internal.sampling import (
    bernoulli,
    open_uniform,
    sharded,
    standard_normal,
    unsharded,
)
from samplegrad.cli import main as cli_main
from samplegrad.lab.training import distributed as distributed
from samplegrad.lab.training import vae as train
from samplegrad.lab.training.vae import CHECKPOINT, TrainConfig, TrainError, VAETrainer

from fake_mnist import write_fake_mnist

pytestmark = pytest.mark.usefixtures("offline")

BERNOULLI = ["--latent", "bernoulli", "--arch", "linear", "--estimator"]
RUNS = {
    "gaussian": ["--latent", "gaussian"],
    **{name: [*BERNOULLI, name] for name in ("disarm", "rebar", "relax")},
    "score-ma": [*BERNOULLI, "score-ma", "--seed", "1"],  # seed 0: see TOLERANCE
}
FILES = {"metrics.csv", "metrics.json", CHECKPOINT, "reconstructions.png", "prior_samples.png"}
FILES |= {"elbo.png"}
TESTS = Path(__file__).parent
TOLERANCE = 2e-5
"""Of the parameters (model and estimator), after six Adam steps with lr 1e-3, and relative to
the moving average of ``score-ma`` (near 260 nats: measured one float32 rounding, 3e-5 = 1e-7
of it). The gradients agree to float rounding, but Adam divides each by its running RMS, so a
coordinate whose gradients are near Adam's eps (1e-8) turns rounding into a visible part of its
step: measured here, 7e-6 for one of the Gaussian VAE's 313 600 first-layer weights, 2e-7 at
most otherwise. The score function's first step (``score-ma``'s baseline starts at 0) has
encoder gradients up to 180 here, rounded to 1e-5, and Adam's first step is ``lr * sign(g)``:
with ``--seed 0`` one of the 156 800 encoder weights, whose first gradient is -2e-6, ends 1e-3
away (the other parameters within 2e-7); seeds 1 to 4 end within 3e-6 everywhere, so the
``score-ma`` run takes seed 1. A sharding or seeding mistake moves parameters by a good part
of lr * steps (6e-3); not averaging the moving average or the estimator's gradients moves the
estimator's state by 4e-2 (``score-ma``), 7e-5 (``rebar``) and 9e-3 (``relax``), measured."""


def command(data_dir: Path, out: Path, options: list[str]) -> list[str]:
    return [
        "train", "vae", *options, "--num-samples", "2", "--epochs", "2", "--batch-size", "16",
        "--validation-size", "16", "--eval-batch-size", "16", "--iwae-k", "5",
        "--data-dir", str(data_dir), "--out", str(out), "--no-progress",
    ]  # fmt: skip


def state(path: Path) -> dict[str, torch.Tensor]:
    """The model's and the estimator's parameters and buffers in a checkpoint or a dump of
    ``tests/ddp_worker.py``, by ``model.NAME`` and ``estimator.NAME``."""
    payload = torch.load(path, weights_only=True)
    parts = {"model": payload["model"], "estimator": payload["estimator"] or {}}
    return {f"{part}.{key}": value for part, held in parts.items() for key, value in held.items()}


def train_elbos(out: Path) -> list[float]:
    with open(out / "metrics.csv", newline="") as file:
        return [float(row["train_elbo"]) for row in csv.DictReader(file)]


@pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available in this torch build",
)
def test_two_processes_train_as_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = write_fake_mnist(tmp_path / "mnist", 64, 16)
    dump = tmp_path / "dump"
    dump.mkdir()
    runs = [command(data_dir, tmp_path / name, options) for name, options in RUNS.items()]
    source = str(TESTS.parent / "src")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, (source, os.environ.get("PYTHONPATH")))),
        "OMP_NUM_THREADS": "1",
    }
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    process = subprocess.run(
        [*launch, "--standalone", str(TESTS / "ddp_worker.py"), str(dump), json.dumps(runs)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert process.returncode == 0, process.stderr[-4000:]
    assert process.stdout.count("test ELBO") == len(RUNS)  # printed by rank 0 only

    monkeypatch.setattr(VAETrainer, "plot", lambda *args: None)  # the lone runs: numbers only

    for name, options in RUNS.items():
        out, single = tmp_path / name, tmp_path / f"{name}-single"
        assert set(os.listdir(out)) == FILES
        ranks = [state(dump / f"{name}.rank{rank}.pt") for rank in (0, 1)]
        written = state(out / CHECKPOINT)
        assert cli_main(command(data_dir, single, options)) == 0
        alone = state(single / CHECKPOINT)
        assert written.keys() == alone.keys() == ranks[0].keys() == ranks[1].keys()
        for key, tensor in written.items():
            assert torch.equal(ranks[0][key], ranks[1][key]), f"{name}: ranks differ in {key}"
            assert torch.equal(tensor, ranks[0][key]), key
            scale = max(1.0, alone[key].abs().max().item())
            difference = (tensor - alone[key]).abs().max().item() / scale
            assert difference < TOLERANCE, f"{name}.{key}: {difference:.2e} from one process"
        assert train_elbos(out) == pytest.approx(train_elbos(single), rel=1e-5)
        metrics = [json.loads((folder / "metrics.json").read_text()) for folder in (out, single)]
        assert metrics[0]["test_elbo"] == pytest.approx(metrics[1]["test_elbo"], rel=1e-4)


def bernoulli_draw(shape: torch.Size, probs: Tensor, generator: torch.Generator) -> Tensor:
    return bernoulli(probs, tuple(shape[: -probs.dim()]), generator)


@pytest.mark.parametrize("draw", [standard_normal, open_uniform, bernoulli_draw])
def test_sharded_draws_are_the_rows_of_the_whole_draw(draw: Callable[..., torch.Tensor]) -> None:
    """Two shards of a batch of 5 (rows 0:2 and 2:5) together draw what one process draws, and
    leave the generator where one process leaves it."""
    like = torch.linspace(0.05, 0.95, 15).reshape(5, 3)  # Bernoulli's probabilities
    shape = torch.Size((2, 5, 3))  # 2 samples of a (5, 3) batch
    whole_generator = torch.Generator().manual_seed(7)
    whole = draw(shape, like, whole_generator)
    parts = []
    for start, stop in ((0, 2), (2, 5)):
        generator = torch.Generator().manual_seed(7)
        with sharded(generator, start, stop - start, 5):
            parts.append(draw(torch.Size((2, stop - start, 3)), like[start:stop], generator))
        assert torch.equal(generator.get_state(), whole_generator.get_state())
    assert torch.equal(torch.cat(parts, dim=1), whole)


def test_unshardable_draws_use_a_generator_per_shard() -> None:
    generator = torch.Generator().manual_seed(7)
    own = []
    for start in (0, 2):
        with sharded(generator, start, 2, 4):
            own.append(unsharded(generator))
            assert unsharded(generator) is own[-1]  # one per step
            assert unsharded(torch.Generator()) is not own[-1]  # other generators unchanged
    assert torch.rand(3, generator=own[0]).tolist() != torch.rand(3, generator=own[1]).tolist()
    assert unsharded(generator) is generator  # outside the context


def test_the_global_batch_must_split_over_the_processes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(distributed, "world_size", lambda: 4)
    config = TrainConfig(latent="gaussian", batch_size=18, out=str(tmp_path))
    with pytest.raises(TrainError, match="must be a multiple of 4"):
        train._check_processes(config, 48)
    config.batch_size = 20
    with pytest.raises(TrainError, match="has 2 of the 42 training images, fewer than the 4"):
        train._check_processes(config, 42)
    train._check_processes(config, 44)  # a last batch of 4: one image each
