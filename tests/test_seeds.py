"""``samplegrad train vae --seeds N``: replicated models, per-replica generators, files, resume.

The runs train on the tiny fake MNIST of ``test_train.py`` (48 training images after 16 are
held out for validation, 16 test images) in batches of 16: three steps an epoch.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.distributions import Beta

from samplegrad._internal.sampling import ReplicaGenerators, draw
from samplegrad.cli import main
from samplegrad.lab.models import (
    BernoulliVAE,
    CategoricalVAE,
    GaussianVAE,
    applicable_estimators,
    make_estimator,
)
from samplegrad.lab.models.replicated import ReplicatedLinear, replica, replicate
from samplegrad.lab.training.seeds import replicable
from samplegrad.lab.training.vae import (
    CHECKPOINT,
    SEEDS_CSV_COLUMNS,
    SUMMARY_KEYS,
    TrainConfig,
    TrainError,
    fit,
    load_model,
)

from fake_mnist import write_fake_mnist

PER_RUN = ("train_elbo", "valid_elbo", "test_elbo", "test_iwae")
DISARM = {"latent": "bernoulli", "estimator": "disarm", "num_samples": 2}

pytestmark = pytest.mark.usefixtures("offline", "one_thread")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_mnist(tmp_path_factory.mktemp("mnist"), 64, 16)


def config(data_dir: Path, out: Path, **options: object) -> TrainConfig:
    settings = {
        "latent": "gaussian",
        "epochs": 1,
        "batch_size": 16,
        "iwae_k": 5,
        "validation_size": 16,
        "eval_batch_size": 16,
        "data_dir": str(data_dir),
        "out": str(out),
        "progress": False,
    }
    return TrainConfig(**{**settings, **options})


def saved(out: Path) -> dict:
    return torch.load(out / CHECKPOINT, weights_only=True)


def assert_replica_is_run(replicated: Path, index: int, single: Path) -> None:
    """Replica ``index`` of the ``--seeds`` run ends as the single run: parameters, Adam's
    moments and metrics, up to the rounding of the grouped matrix products."""
    many, one = saved(replicated), saved(single)
    for name, tensor in one["model"].items():
        stacked = many["model"][name]
        value = stacked if name == "prior_logits" else stacked[index]
        torch.testing.assert_close(value, tensor, rtol=1e-4, atol=1e-5, msg=name)
    for key, state in one["optimizer"]["state"].items():
        torch.testing.assert_close(
            many["optimizer"]["state"][key]["exp_avg"][index], state["exp_avg"]
        )
    torch.testing.assert_close(many["sampling_generator"][index], one["sampling_generator"])
    metrics = json.loads((replicated / "metrics.json").read_text())
    reference = json.loads((single / "metrics.json").read_text())
    for key in PER_RUN:
        assert metrics[key][index] == pytest.approx(reference[key], abs=1e-3), key


IWAE_DREG = {"objective": "iwae", "estimator": "dreg", "num_samples": 3}


@pytest.mark.parametrize(
    "options", [{}, DISARM, IWAE_DREG], ids=["gaussian", "bernoulli-disarm", "gaussian-iwae-dreg"]
)
def test_each_replica_trains_as_a_single_run_with_its_seed(
    data_dir: Path, tmp_path: Path, options: dict
) -> None:
    fit(config(data_dir, tmp_path / "seeds", seed=5, seeds=2, epochs=2, **options))
    for index in range(2):
        single = tmp_path / f"seed{5 + index}"
        fit(config(data_dir, single, seed=5 + index, epochs=2, **options))
        assert_replica_is_run(tmp_path / "seeds", index, single)
    gaussian = options.get("latent", "gaussian") == "gaussian"
    weights = saved(tmp_path / "seeds")["model"]["mean.weight" if gaussian else "encoder.weight"]
    assert not torch.allclose(weights[0], weights[1])


def test_metrics_list_every_per_run_number_per_seed(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = fit(config(data_dir, out, seed=3, seeds=3, epochs=2, **DISARM))
    assert set(result) == set(SUMMARY_KEYS)
    assert json.loads((out / "metrics.json").read_text()) == result
    assert result["seeds"] == [3, 4, 5] and result["seed"] == 3
    for key in PER_RUN:
        assert len(result[key]) == 3 and all(math.isfinite(v) and v < 0 for v in result[key])
    assert len(set(result["test_elbo"])) == 3  # the replicas differ
    assert result["steps"] == 6 and len(result["epoch_seconds"]) == 2

    with open(out / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == list(SEEDS_CSV_COLUMNS)
    assert [(row["epoch"], row["seed"]) for row in rows] == [
        (epoch, seed) for epoch in "12" for seed in "345"
    ]
    last = {row["seed"]: float(row["train_elbo"]) for row in rows if row["epoch"] == "2"}
    assert [last[seed] for seed in "345"] == pytest.approx(result["train_elbo"])
    assert all((out / name).stat().st_size > 0 for name in ("elbo.png", "reconstructions.png"))


def test_one_seed_keeps_the_plain_files(data_dir: Path, tmp_path: Path) -> None:
    result = fit(config(data_dir, tmp_path / "run", steps=1, seed=2))
    assert result["seeds"] == [2] and isinstance(result["test_elbo"], float)
    assert "seed" not in (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]


def test_resuming_mid_epoch_matches_an_uninterrupted_run(data_dir: Path, tmp_path: Path) -> None:
    options = {"seeds": 2, "validation_size": 0, **DISARM}
    fit(config(data_dir, tmp_path / "straight", epochs=2, **options))
    fit(config(data_dir, tmp_path / "resumed", steps=5, **options))
    fit(config(data_dir, tmp_path / "resumed", epochs=2, resume=True, **options))
    first, second = saved(tmp_path / "straight"), saved(tmp_path / "resumed")
    for name, tensor in first["model"].items():
        assert torch.equal(tensor, second["model"][name]), name
    assert torch.equal(first["sampling_generator"], second["sampling_generator"])
    assert first["sampling_generator"].shape[0] == 2
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in first["state"]["history"]]
    assert strip == [
        {k: v for k, v in row.items() if k != "seconds"} for row in second["state"]["history"]
    ]


def test_resume_needs_the_same_seeds_and_format(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    fit(config(data_dir, out, steps=1, seeds=2))
    with pytest.raises(TrainError, match="seeds=2 in the checkpoint, 3 now"):
        fit(config(data_dir, out, steps=2, seeds=3, resume=True))
    payload = saved(out)
    torch.save({**payload, "format": 1}, out / CHECKPOINT)
    with pytest.raises(TrainError, match="checkpoint format 1"):
        fit(config(data_dir, out, steps=2, seeds=2, resume=True))


def test_load_model_returns_the_replicated_model(data_dir: Path, tmp_path: Path) -> None:
    fit(config(data_dir, tmp_path / "run", steps=2, seeds=2, **DISARM))
    model, loaded = load_model(tmp_path / "run" / CHECKPOINT)
    assert loaded.seeds == 2 and isinstance(model.encoder, ReplicatedLinear)
    assert torch.equal(
        replica(model, 1).encoder.weight, saved(tmp_path / "run")["model"]["encoder.weight"][1]
    )
    generators = ReplicaGenerators([torch.Generator().manual_seed(s) for s in (0, 1)])
    assert model.elbo(torch.rand(2, 4, 784).bernoulli(), 1, generators).shape == (2, 4)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"seeds": 0}, "seeds must be an int >= 1"),
        ({"seeds": True}, "seeds must be an int >= 1"),
        ({"seeds": 2, "latent": "bernoulli", "estimator": "relax"}, "'relax' keeps state"),
        ({"seeds": 2, "latent": "bernoulli", "estimator": "score-ma"}, "use one of"),
        ({"seeds": 2, "latent": "bernoulli"}, "auto with --num-samples >= 2"),
    ],
)
def test_bad_seeds_requests_are_train_errors(tmp_path: Path, options: dict, message: str) -> None:
    with pytest.raises(TrainError, match=message):
        TrainConfig(**{"latent": "gaussian", "out": str(tmp_path), **options})
    TrainConfig(latent="bernoulli", seeds=2, num_samples=2, out=str(tmp_path))  # auto: loo


def test_cli_seeds(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["train", "vae", "--latent", "gaussian", "--data-dir", str(data_dir)]
    args += ["--out", str(tmp_path / "run"), "--batch-size", "16", "--validation-size", "16"]
    args += ["--eval-batch-size", "16", "--iwae-k", "2", "--no-progress"]
    with pytest.raises(SystemExit):
        main([*args, "--seeds", "0"])
    assert "--seeds" in capsys.readouterr().err
    assert main([*args, "--seeds", "2", "--steps", "1"]) == 0
    assert "(mean of 2 seeds: " in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# The pieces: replicated layers and per-replica generators


def test_replicate_stacks_linear_layers_and_replica_takes_one_out() -> None:
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(GaussianVAE(latent_dim=4, hidden=8, data_dim=6))
    replicated = replicate(models)
    x = torch.rand(3, 5, 6)
    mean = replicated.encode(x)[0]
    for index, model in enumerate(models):
        torch.testing.assert_close(mean[index], model.encode(x[index])[0])
        plain = replica(replicated, index)
        assert isinstance(plain.decoder[0], nn.Linear)
        assert torch.equal(plain.decoder[2].bias, model.decoder[2].bias)
    z = torch.randn(2, 3, 5, 4)  # sample dimensions in front of the replica dimension
    assert replicated.decode(z).shape == (2, 3, 5, 6)
    with pytest.raises(ValueError, match="replica dimension third from last"):
        replicated.decode(torch.randn(5, 4))


def test_replicate_refuses_what_the_replicas_would_share() -> None:
    with pytest.raises(ValueError, match=r"outside nn\.Linear"):
        replicate([BernoulliVAE(learn_prior=True), BernoulliVAE(learn_prior=True)])
    other = BernoulliVAE()
    other.prior_logits.fill_(1.0)
    with pytest.raises(ValueError, match="buffer 'prior_logits' differs"):
        replicate([BernoulliVAE(), other])
    with pytest.raises(ValueError, match="at least one"):
        replicate([])


def generators() -> ReplicaGenerators:
    return ReplicaGenerators([torch.Generator().manual_seed(s) for s in (7, 8)])


@pytest.mark.parametrize("latent", ["bernoulli", "categorical"])
def test_every_replicable_estimator_draws_each_replica_as_its_own_generator(latent: str) -> None:
    """Every name ``--seeds`` accepts (from the catalog): replica ``i`` of a batched step gets
    exactly the loss of a model trained alone with generator ``i``."""
    if latent == "bernoulli":
        models = [BernoulliVAE(latent_dim=4, arch="linear") for _ in range(2)]
    else:
        models = [CategoricalVAE(num_variables=3, num_classes=4, hidden=(8,)) for _ in range(2)]
    replicated = replicate(models)
    x = torch.rand(2, 5, 784).bernoulli()
    names = [name for name in applicable_estimators(replicated) if replicable(name)]
    assert "gumbel-rao" in names and "score-ma" not in names
    for name in names:
        estimator = make_estimator(name, replicated)
        together = replicated.loss(x, estimator, 4, generators()).elbo
        for index, model in enumerate(models):
            alone = model.loss(x[index], estimator, 4, torch.Generator().manual_seed(7 + index))
            torch.testing.assert_close(together[index], alone.elbo, msg=name)


def test_replica_generators_draw_iwae_bounds_per_replica() -> None:
    models = [CategoricalVAE(num_variables=3, num_classes=4, hidden=(8,)) for _ in range(2)]
    replicated = replicate(models)
    x = torch.rand(2, 5, 784).bernoulli()
    iwae = replicated.iwae_bound(x, 4, 2, generators())
    alone = models[1].iwae_bound(x[1], 4, 2, generators().generators[1])
    torch.testing.assert_close(iwae[1], alone)


def test_replica_generators_state_and_unsupported_families() -> None:
    generators = ReplicaGenerators([torch.Generator().manual_seed(s) for s in (1, 2)])
    state = generators.get_state()
    first = torch.rand(3, generator=generators.generators[0])
    generators.set_state(state)
    assert torch.equal(torch.rand(3, generator=generators.generators[0]), first)
    with pytest.raises(ValueError, match="state of 1 generators for 2 replicas"):
        generators.set_state(state[:1])
    with pytest.raises(TypeError, match="no per-replica generators"):
        draw(
            Beta(torch.ones(2, 3), torch.ones(2, 3)), torch.Size(), generators, reparameterized=True
        )
    with pytest.raises(ValueError, match="at least one generator"):
        ReplicaGenerators([])
