"""One entry of the leaderboard (``leaderboard.py``): a model trained with one estimator for
several seeds, with its ELBO curve, its gradient variance at checkpoints, its test bound and
its time per step.

The seeds of a stateless estimator train together as replicas (one batched step for all,
:func:`samplegrad.lab.models.replicated.replicate`, as ``samplegrad train vae --seeds`` does);
a stateful one (the catalog's ``stateful``: REBAR and RELAX learn their control) trains seed
after seed in the same process. Either way seed ``s`` draws its initialisation, data order,
binarization and latent noise from the same streams (:mod:`samplegrad.lab.training.seeds`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from samplegrad.estimators import catalog
from samplegrad.generators import Generator, ReplicaGenerators
from samplegrad.lab.data import MNIST, load_mnist
from samplegrad.lab.models import BernoulliVAE, CategoricalVAE, DiscreteVAE, make_estimator
from samplegrad.lab.models.replicated import replicate
from samplegrad.lab.training.data import image_batches
from samplegrad.lab.training.seeds import generators, stream_generator, stream_seed
from samplegrad.lab.training.vae import training_step

MODELS = ("bernoulli-linear", "bernoulli-nonlinear", "categorical")

ESTIMATORS = {
    "bernoulli": (
        *("score-loo", "arm", "disarm", "rebar", "relax", "indecater"),
        *("gumbel", "straight-through", "reinmax", "gumbel-rao"),
    ),
    "categorical": (
        *("score-loo", "rebar", "relax", "gumbel", "straight-through", "reinmax"),
        *("gumbel-rao", "indecater", "categorical-disarm", "unordered-set"),
    ),
}
"""Per latent family, the estimators of the leaderboard, in the order of its table."""

CATEGORICAL_SHAPE = (20, 10)
"""The categorical VAE's latent: 20 variables of 10 categories (encoder 784-512-256, ReLU)."""

ONE_SAMPLE = {"rebar", "relax", "indecater"}
"""Estimators given one sample per image (their cost is more than one evaluation of ``f``);
the others get two: a leave-one-out pair, an antithetic pair, two relaxed samples, a set of
two drawn without replacement."""


VALIDATION_SIZE = 10_000  # the DisARM code trains on the first 50 000 training images
IWAE_K = 100
IWAE_BATCH = 250  # test images per IWAE call
DECODER_ROWS = 60_000  # decoder rows (images x evaluations) per variance call and replica

# Random streams of a seed (independent of those of `samplegrad train vae`).
_INIT, _DATA, _SAMPLING, _VARIANCE, _ELBO, _FIXED = range(100, 106)


def family(model: str) -> str:
    return "categorical" if model == "categorical" else "bernoulli"


def num_samples(estimator: str) -> int:
    return 1 if estimator in ONE_SAMPLE else 2


def evaluations(model: str, estimator: str) -> int:
    """Evaluations of the decoder per image and step: ``D K`` for IndeCateR (``1 + D (K-1)``
    distinct points), three for REBAR (the sample and two relaxed points), the samples
    otherwise (RELAX: one, plus its control network at two relaxed points)."""
    if estimator == "indecater":
        variables, classes = CATEGORICAL_SHAPE if model == "categorical" else (200, 2)
        return variables * classes
    return 3 if estimator == "rebar" else num_samples(estimator)


def build_model(model: str, data_mean: Tensor, seed: int) -> DiscreteVAE:
    """The model of ``seed`` (initialised from its stream; the global random state kept)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed(seed, _INIT))
        if model == "categorical":
            return CategoricalVAE(*CATEGORICAL_SHAPE)
        return BernoulliVAE(model.removeprefix("bernoulli-"), data_mean=data_mean)


@dataclasses.dataclass(frozen=True)
class Job:
    """One leaderboard entry: ``model`` trained with ``estimator`` for each of ``seeds``."""

    model: str
    estimator: str
    seeds: tuple[int, ...]
    steps: int
    checkpoints: tuple[int, ...]
    data_dir: str | None
    threads: int
    batch_size: int = 50
    lr: float = 1e-4
    test_images: int = 1000
    variance_images: int = 50
    variance_copies: int = 20
    last_stretch: float = 0.1
    curve_points: int = 100


@dataclasses.dataclass
class _Record:
    """What a group of replicas (or a single seed) measured; lists are per replica."""

    curve_steps: list[int] = dataclasses.field(default_factory=list)
    curve: list[list[float]] = dataclasses.field(default_factory=list)  # (points, R)
    variance: list[list[float]] = dataclasses.field(default_factory=list)  # (checkpoints, R)
    step_seconds: float = 0.0


def _batches(data: MNIST, batch_size: int, seeds: list[int]) -> Iterator[Tensor]:
    """Training batches ``(R, B, D)`` (also for one seed), epoch after epoch: each seed's
    shuffle and dynamic binarization (from its epoch's generator), the last short batch of an
    epoch dropped."""
    for epoch in itertools.count():
        generator = ReplicaGenerators([stream_generator(s, _DATA, epoch, "cpu") for s in seeds])
        yield from image_batches(data, batch_size, generator, shuffle=True, drop_last=True)


def _fixed_images(data: MNIST, count: int) -> Tensor:
    """The first ``count`` images of ``data``, binarized once (the same for every entry)."""
    return data.binarize(data.images[:count], torch.Generator().manual_seed(stream_seed(0, _FIXED)))


def _replicated(x: Tensor, replicas: int) -> Tensor:
    return x.expand(replicas, *x.shape)


def gradient_variance(
    model: DiscreteVAE, estimator: Any, job: Job, x: Tensor, generator: Generator
) -> list[float]:
    """Per replica, the per-element variance of the logit gradient over ``variance_copies``
    independent estimates on the fixed batch ``x`` ``(R, B, D)``, averaged over the batch's
    images and latents. The copies are drawn in one call where the decoder rows allow it
    (:data:`DECODER_ROWS`; IndeCateR needs a few)."""
    replicas, images = x.shape[0], x.shape[1]
    per_call = max(1, DECODER_ROWS // (images * evaluations(job.model, job.estimator)))
    chunks = []
    for start in range(0, job.variance_copies, per_call):
        copies = min(per_call, job.variance_copies - start)
        repeated = x.repeat(1, copies, 1)  # (R, copies * B, D), copy-major
        gradient = model.logit_gradients(
            repeated, estimator, num_samples=num_samples(job.estimator), generator=generator
        )
        chunks.append(gradient.reshape(replicas, copies, images, -1))
    estimates = torch.cat(chunks, dim=1).double()
    return estimates.var(dim=1).mean((1, 2)).tolist()


def _test_bound(model: DiscreteVAE, x: Tensor, seeds: list[int]) -> list[float]:
    """Per replica, the mean ``IWAE_K``-sample bound over the fixed test images ``x``."""
    generator = generators(seeds, _ELBO, 1, "cpu")
    total = torch.zeros(len(seeds), dtype=torch.float64)
    chunk = max(1, DECODER_ROWS // (IWAE_BATCH * len(seeds)))
    with torch.no_grad():
        for start in range(0, x.shape[-2], IWAE_BATCH):
            batch = x[:, start : start + IWAE_BATCH]
            total += model.iwae_bound(batch, IWAE_K, chunk, generator).double().sum(-1)
    return (total / x.shape[-2]).tolist()


def _train(
    job: Job, seeds: list[int], train: MNIST, test_x: Tensor, variance_x: Tensor
) -> tuple[_Record, list[float], list[float]]:
    """Train the replicas of ``seeds`` together; their record, train ELBO (the mean over the
    last stretch of steps of the one-sample ELBO of each batch, before its step) and test
    bound."""
    data_mean = train.images.mean(0)
    models = [build_model(job.model, data_mean, seed) for seed in seeds]
    model = replicate(models) if len(seeds) > 1 else models[0]
    replicas = len(seeds)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed(seeds[0], _INIT, 1))
        estimator = make_estimator(job.estimator, models[0], num_samples=num_samples(job.estimator))
    parameters = [*model.parameters(), *estimator.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=job.lr)
    step = training_step(
        model,
        estimator,
        optimizer,
        num_samples=num_samples(job.estimator),
        generator=generators(seeds, _SAMPLING, 0, "cpu"),
        replicas=replicas,
    )
    record = _Record()
    elbo_generator = generators(seeds, _ELBO, 0, "cpu")
    variance_generator = generators(seeds, _VARIANCE, 0, "cpu")
    variance_x = _replicated(variance_x, replicas)
    stride = max(1, job.steps // job.curve_points)
    stretch_start = job.steps - max(1, math.ceil(job.last_stretch * job.steps))
    stretch: list[Tensor] = []
    batches = _batches(train, job.batch_size, seeds)
    for done in range(job.steps + 1):
        if done in job.checkpoints:
            record.variance.append(
                gradient_variance(model, estimator, job, variance_x, variance_generator)
            )
        if done == job.steps:
            break
        x = next(batches)
        if done % stride == 0 or done >= stretch_start:
            with torch.no_grad():
                elbo = model.elbo(x, 1, elbo_generator).mean(-1).reshape(replicas)
            if done >= stretch_start:
                stretch.append(elbo)
            if done % stride == 0:
                record.curve_steps.append(done)
                record.curve.append(elbo.tolist())
        started = time.perf_counter()
        step(x)
        record.step_seconds += time.perf_counter() - started
    train_elbo = torch.stack(stretch).mean(0).tolist()
    model.eval()
    return record, train_elbo, _test_bound(model, _replicated(test_x, replicas), seeds)


def run(job: Job) -> dict[str, Any]:
    """Train and measure ``job``; a JSON-ready record (lists per seed, in ``job.seeds`` order)."""
    torch.set_num_threads(job.threads)
    train = load_mnist(job.data_dir, split="train", validation_size=VALIDATION_SIZE)
    test = load_mnist(job.data_dir, split="test")
    test_x = _fixed_images(test, min(job.test_images, len(test)))
    variance_x = _fixed_images(train, job.variance_images)
    batched = not catalog.entry(job.estimator).stateful
    groups = [list(job.seeds)] if batched else [[seed] for seed in job.seeds]
    started = time.perf_counter()
    records, train_elbo, test_iwae = [], [], []
    for seeds in groups:
        record, elbo, bound = _train(job, seeds, train, test_x, variance_x)
        records.append(record)
        train_elbo += elbo
        test_iwae += bound
    step_seconds = sum(record.step_seconds for record in records)
    return {
        "model": job.model,
        "estimator": job.estimator,
        "seeds": list(job.seeds),
        "batched": batched,
        "num_samples": num_samples(job.estimator),
        "evaluations": evaluations(job.model, job.estimator),
        "steps": job.steps,
        "train_elbo": train_elbo,
        "test_iwae": test_iwae,
        "checkpoints": list(job.checkpoints),
        "variance": [  # (checkpoints, seeds)
            [v for record in records for v in record.variance[i]]
            for i in range(len(job.checkpoints))
        ],
        "curve_steps": records[0].curve_steps,
        "curve": [  # (points, seeds)
            [v for record in records for v in record.curve[i]]
            for i in range(len(records[0].curve_steps))
        ],
        "seconds_per_step": step_seconds / job.steps,
        "seconds_per_step_per_seed": step_seconds / job.steps / len(job.seeds),
        "wall_seconds": time.perf_counter() - started,
    }
