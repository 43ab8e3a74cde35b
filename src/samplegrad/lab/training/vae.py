"""Training loop for the VAEs of :mod:`samplegrad.lab.models`: progress, metrics, checkpoints,
plots.

>>> from samplegrad.lab.training.vae import TrainConfig, fit
>>> metrics = fit(TrainConfig(latent="bernoulli", estimator="disarm", num_samples=2,
...                           epochs=5, out="runs/disarm"))  # doctest: +SKIP
>>> metrics["test_elbo"]  # doctest: +SKIP

The ``samplegrad train vae`` command is a thin layer over :func:`fit`.

**What a run writes into** ``config.out``:

- ``metrics.csv``: one row per epoch (``epoch, step, train_elbo, valid_elbo, seconds``),
  rewritten atomically from the run's history at the end of each epoch, so an interrupted and
  resumed run has each epoch once (also when a ``steps`` run that ended mid-epoch is
  continued: the partial row gives way to the whole epoch's). ``train_elbo`` is the mean of
  the per-image ELBO estimates of the epoch's training batches (taken while the parameters
  changed, as every training curve is); ``valid_elbo`` is the single-sample ELBO on the
  validation split after the epoch; ``seconds`` is the wall time of the epoch's training
  steps (batching included, validation excluded).
- ``checkpoint.pt``: at the end of every epoch and when SIGINT or SIGTERM arrives (see
  below); ``config.resume`` continues from it.
- ``metrics.json``: after the last step, the final numbers (module constant
  :data:`SUMMARY_KEYS`): test ELBO and IWAE bound in nats per image, the config and the
  torch version.
- plots (:mod:`samplegrad.lab.plots.vae`), written last, so a plotting failure loses nothing else.

**Epochs and steps.** An epoch is one pass over the training split in batches of
``batch_size`` (the last one may be shorter). With ``steps`` set, training stops after that
many optimiser steps instead, which may be mid-epoch: metrics rows are still written at every
epoch boundary, and one more row for the final partial epoch.

**Reproducibility.** Every random stream comes from a ``torch.Generator`` seeded from
``(seed, stream, epoch)``: the model's initialisation, each epoch's shuffle and dynamic
binarization, the training samples (one generator for the whole run, saved in the
checkpoint), and the evaluation and plotting draws. The data order thus depends only on
``(seed, epoch)``, and on the CPU an interrupted run resumed from its checkpoint, at an epoch
boundary or mid-epoch, ends with the same parameters as an uninterrupted run.

**Many seeds in one process.** With ``seeds=N`` (``--seeds N``), ``N`` independent replicas
with the seeds ``seed, seed + 1, ..., seed + N - 1`` train together: the models are stacked by
:func:`samplegrad.lab.models.replicated.replicate` (every Linear layer a grouped product over the
replicas, so each step is one forward and backward pass for all of them), and every random
stream is a :class:`samplegrad.generators.ReplicaGenerators` of the ``N`` generators that the
single runs would use. Replica ``i`` therefore sees the initialisation, data order,
binarization and sampling noise of a run with ``seed + i`` and, up to the rounding of the
grouped products, ends with its parameters and metrics. ``metrics.json`` lists the ``seeds``
(``[seed]`` for one); the other files change only for ``N > 1``: every per-run number of
``metrics.json`` (``train_elbo``, ``valid_elbo``, ``test_elbo``, ``test_iwae``) becomes a list
of ``N`` values, in the order of its ``seeds``; ``metrics.csv`` has one row per epoch and seed
with a ``seed`` column (:data:`SEEDS_CSV_COLUMNS`); the checkpoint holds the stacked
parameters and the ``N`` generator states; ``elbo.png`` shows the mean and the min-max band
over the seeds, the other plots replica 0. Estimators with state or parameters of their own
(``score-ma``, ``rebar``, ``relax``, ``enumerate``, ``auto`` with one sample) would be shared
by the replicas, so they are refused (:data:`REPLICABLE_ESTIMATORS`). Evaluation memory grows
``N``-fold.

**Interruption.** During :func:`fit`, SIGINT (Ctrl-C) and SIGTERM finish the current step,
write the checkpoint and stop; :func:`fit` then returns ``{"interrupted": ..., ...}`` instead
of the final metrics. A second signal aborts at once (the checkpoint on disk is always whole:
every file is written to a temporary name and renamed). The previous handlers are restored
when :func:`fit` returns.

**Many processes.** Under ``torchrun --nproc-per-node W -m samplegrad train vae ...`` (or any
script calling :func:`fit` under ``torchrun``), the W processes train one model with
``DistributedDataParallel`` (:mod:`samplegrad.lab.training.distributed`: gloo on the CPU, NCCL
with one GPU per process). The aim is that W processes compute *the same run* as one process
with the same options, to float rounding: then every number in this library (the quality
tables, resumed runs, the seeds) means the same with or without ``torchrun``, and a test can
check the distributed plumbing exactly instead of statistically. Hence:

- ``batch_size`` is the *global* batch (a multiple of W). Every process draws the same
  permutation and the same dynamic binarization of each global batch (the same data generator)
  and keeps its contiguous share of the rows, ``batch_size / W`` (the last batch of an epoch
  may split one row apart; it must have at least W images).
- The latent noise is drawn as one process would draw it for the whole global batch, each
  process keeping its rows (:func:`samplegrad.generators.sharded`); the sampling generator thus
  advances identically everywhere. That holds for the Gaussian, uniform and Gumbel noise of the
  pathwise, ARM/DisARM, REBAR/RELAX and Gumbel-Softmax estimators. Noise that depends on the
  probabilities of other processes' rows (the Bernoulli and categorical samples of the score
  function and straight-through estimators) comes from a per-process generator seeded from the
  shared one and the process's rows instead: independent across processes and reproducible,
  but not the single-process draw.
- Each process's loss is the mean negative ELBO (KL term included, per image) over its rows,
  weighted by ``W * rows / batch`` (1 for equal shares); DDP averages the gradients over the
  processes, which makes them the gradient of the mean over the global batch. The model and the
  estimator are wrapped together, so the estimator's parameters (REBAR's temperature and
  ``eta``, RELAX's control network) are averaged too, and its buffers (the moving average of
  ``score-ma``, updated from rank 0's rows) are copied from rank 0 before every step.
- The training ELBO sums and image counts are summed over the processes after every step, so
  the metrics rows are those of the global batches; a signal in any process stops all of them
  after the same step. Rank 0 alone evaluates (validation and test, on the whole splits, with
  the single-process generators) and writes ``metrics.csv``, ``checkpoint.pt`` (of the
  unwrapped modules: interchangeable with single-process checkpoints), ``metrics.json`` and the
  plots; :func:`fit` returns rank 0's summary in every process. ``resume`` loads the checkpoint
  in every process.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from samplegrad.estimators import Estimator
from samplegrad.generators import Generator, ReplicaGenerators
from samplegrad.lab.data import MNIST, Binarization, load_mnist
from samplegrad.lab.models import (
    BernoulliVAE,
    CategoricalVAE,
    GaussianVAE,
    LossOutput,
    make_estimator,
)
from samplegrad.lab.models.replicated import replica, replicate
from samplegrad.lab.training import distributed as distributed
from samplegrad.lab.training.runs import (
    POSTFIX_EVERY,
    Stop,
    TrainError,
    check_compatible,
    check_device,
    check_int,
    compile_for,
    interrupted,
    read_checkpoint,
    refuse_to_overwrite,
    reopen_partial_epoch,
    save_checkpoint,
    show_progress,
    stop_on_signals,
    stream_generator,
    stream_seed,
    write_csv,
    write_json,
)

__all__ = [
    "ARCHS",
    "REPLICABLE_ESTIMATORS",
    "SUMMARY_KEYS",
    "TrainConfig",
    "TrainError",
    "build_model",
    "fit",
    "load_model",
    "training_step",
]

ARCHS: dict[str, dict[str, Callable[[], nn.Module]]] = {
    "gaussian": {
        "default": lambda: GaussianVAE(latent_dim=20, hidden=400),  # 784-400-20
        "2d": lambda: GaussianVAE(latent_dim=2, hidden=400),  # a plottable latent space
    },
    "bernoulli": {
        "linear": lambda: BernoulliVAE("linear"),
        "nonlinear": lambda: BernoulliVAE("nonlinear"),
    },
    "categorical": {"default": lambda: CategoricalVAE()},
}
"""Per latent, the architectures by name; the first is the default."""

SUMMARY_KEYS = (
    "train_elbo",
    "valid_elbo",
    "test_elbo",
    "test_iwae",
    "iwae_k",
    "epochs",
    "steps",
    "epoch_seconds",
    "latent",
    "arch",
    "estimator",
    "num_samples",
    "batch_size",
    "lr",
    "seed",
    "seeds",
    "binarize",
    "device",
    "torch",
)
"""The keys of ``metrics.json``, which :func:`fit` also returns."""

CSV_COLUMNS = ("epoch", "step", "train_elbo", "valid_elbo", "seconds")
SEEDS_CSV_COLUMNS = ("epoch", "step", "seed", "train_elbo", "valid_elbo", "seconds")
"""The columns of ``metrics.csv`` for ``seeds > 1``: a row per epoch and seed."""

REPLICABLE_ESTIMATORS = (
    "pathwise",
    "score",
    "score-loo",
    "arm",
    "disarm",
    "gumbel",
    "straight-through",
)
"""The estimators ``seeds > 1`` accepts: those without state or parameters of their own, which
the replicas would otherwise share (``auto`` is ``score-loo`` for two or more samples)."""

MUST_MATCH_ON_RESUME = (
    "latent",
    "arch",
    "estimator",
    "num_samples",
    "batch_size",
    "seed",
    "seeds",
    "binarize",
    "validation_size",
    "device",
)
"""Config fields a resumed run must share with its checkpoint: the model, the estimator, and
what fixes the data order and the random streams. The others (``epochs``, ``steps``, ``lr``,
evaluation and output settings) may change between the two."""

CHECKPOINT = "checkpoint.pt"
_CHECKPOINT_FORMAT = 2  # 2: per-replica lists in the state and history
_IWAE_ROWS = 25_000  # decoder rows (samples x images) per IWAE chunk, to bound memory

# Random streams, combined with the seed (and the epoch) into independent generator seeds.
_INIT, _DATA, _SAMPLING, _VALID, _TEST, _PLOT = range(6)


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run depends on; the command line's options, one for one.

    Attributes:
        latent: ``"gaussian"``, ``"bernoulli"`` or ``"categorical"``.
        arch: an architecture of :data:`ARCHS` for the latent; ``None``: the first listed.
        estimator: a :func:`samplegrad.lab.models.make_estimator` name for the discrete latents
            (``None``: ``"auto"``); the Gaussian VAE is trained pathwise by its sampling
            layer, so only ``None`` or ``"pathwise"``.
        num_samples: latent samples per image and step (even for ``"arm"``/``"disarm"``).
        epochs: passes over the training split; ignored when ``steps`` is set.
        steps: optimiser steps to train for, instead of ``epochs``.
        batch_size, lr: of the Adam steps (over the model's and the estimator's parameters).
        seed: seeds every random stream (see the module docstring).
        seeds: independent replicas trained together, with the seeds ``seed, seed + 1, ...``
            (module docstring); 1 is a plain run.
        data_dir: the folder with the MNIST files; ``None`` searches as
            :func:`samplegrad.lab.data.find_mnist` does.
        binarize: ``"dynamic"``, ``"threshold"`` or ``"none"``.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        out: the output folder, created if missing.
        resume: continue from ``out/checkpoint.pt`` instead of starting afresh.
        iwae_k: importance samples per test image for the IWAE bound.
        validation_size: training images held out for the validation ELBO (0: none).
        eval_batch_size: images per batch when evaluating.
        progress: show a progress bar (only on a terminal).
        compile: compile the training step with ``torch.compile`` (see
            :func:`training_step`); the first steps then take tens of seconds.
    """

    latent: str
    arch: str | None = None
    estimator: str | None = None
    num_samples: int = 1
    epochs: int = 10
    steps: int | None = None
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    seeds: int = 1
    data_dir: str | None = None
    binarize: str = "dynamic"
    device: str = "cpu"
    out: str = "train-out"
    resume: bool = False
    iwae_k: int = 100
    validation_size: int = 10_000
    eval_batch_size: int = 1000
    progress: bool = True
    compile: bool = False

    def __post_init__(self) -> None:
        if self.latent not in ARCHS:
            raise TrainError(f"latent must be one of {', '.join(ARCHS)}, got {self.latent!r}")
        archs = ARCHS[self.latent]
        self.arch = next(iter(archs)) if self.arch is None else self.arch
        if self.arch not in archs:
            raise TrainError(
                f"arch {self.arch!r} is not one for the {self.latent} latent; choose from "
                + ", ".join(archs)
            )
        self.estimator = _default_estimator(self.latent, self.estimator)
        for name in ("num_samples", "epochs", "batch_size", "iwae_k", "eval_batch_size"):
            check_int(name, getattr(self, name), minimum=1)
        if self.steps is not None:
            check_int("steps", self.steps, minimum=1)
        check_int("validation_size", self.validation_size, minimum=0)
        check_int("seed", self.seed, minimum=0)
        check_int("seeds", self.seeds, minimum=1)
        resolved = "score-loo" if self.estimator == "auto" and self.num_samples > 1 else None
        if self.seeds > 1 and (resolved or self.estimator) not in REPLICABLE_ESTIMATORS:
            raise TrainError(
                f"estimator {self.estimator!r} keeps state or parameters that the {self.seeds} "
                "replicas of --seeds would share; with --seeds > 1 use one of "
                + ", ".join(REPLICABLE_ESTIMATORS)
                + " (auto with --num-samples >= 2), or train the seeds one run at a time"
            )
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            raise TrainError(f"lr must be a finite number > 0, got {self.lr!r}")
        try:
            self.binarize = Binarization(self.binarize).value
        except ValueError:
            choices = ", ".join(b.value for b in Binarization)
            raise TrainError(f"binarize must be one of {choices}, got {self.binarize!r}") from None
        self.device = str(check_device(self.device))
        self.out = os.fspath(self.out)
        self.data_dir = None if self.data_dir is None else os.fspath(self.data_dir)

    def seed_list(self) -> list[int]:
        """The replicas' seeds, ``seed, seed + 1, ..., seed + seeds - 1``."""
        return list(range(self.seed, self.seed + self.seeds))

    def steps_per_epoch(self, num_train: int) -> int:
        """Optimiser steps in one pass over ``num_train`` images."""
        return math.ceil(num_train / self.batch_size)


def _default_estimator(latent: str, estimator: str | None) -> str:
    """``estimator`` with ``None`` resolved; the Gaussian VAE accepts only ``"pathwise"``."""
    if latent != "gaussian":
        return "auto" if estimator is None else estimator
    if estimator not in (None, "pathwise"):
        raise TrainError(
            f"estimator {estimator!r} does not apply to the gaussian latent: the Gaussian VAE "
            "is trained pathwise by its sampling layer, so give 'pathwise' or no estimator "
            "(the other estimators are for --latent bernoulli and categorical)"
        )
    return "pathwise"


def _generator(
    config: TrainConfig, stream: int, epoch: int = 0, seed: int | None = None
) -> torch.Generator:
    """The generator of ``stream`` (and ``epoch``) for ``seed`` (default: ``config.seed``)."""
    return stream_generator(config.seed if seed is None else seed, stream, epoch, config.device)


def _generators(config: TrainConfig, stream: int, epoch: int = 0) -> Generator:
    """:func:`_generator`, or for ``seeds > 1`` the replicas' generators of the stream."""
    if config.seeds == 1:
        return _generator(config, stream, epoch)
    return ReplicaGenerators([_generator(config, stream, epoch, s) for s in config.seed_list()])


def _images(
    data: MNIST, batch_size: int, generator: Generator, *, shuffle: bool
) -> Iterator[Tensor]:
    """The images of ``data.batches``; with :class:`ReplicaGenerators`, each replica's batch
    (shuffled and binarized by its own generator) stacked into ``(R, B, D)``.

    The replicas' iterators advance in turn, so each generator draws a batch and then the
    step's noise, in the order of a lone run.
    """
    if isinstance(generator, torch.Generator):
        for x, _ in data.batches(batch_size, shuffle=shuffle, generator=generator):
            yield x
        return
    streams = [data.batches(batch_size, shuffle=shuffle, generator=g) for g in generator]
    for batch in zip(*streams, strict=True):
        yield torch.stack([x for x, _ in batch])


def build_model(config: TrainConfig) -> tuple[nn.Module, Estimator | None]:
    """The model and estimator of ``config`` on its device, initialised from its seed.

    For ``seeds > 1``, the :func:`~samplegrad.lab.models.replicated.replicate`-d models of the
    seeds (replica ``i`` initialised as a run with ``seed + i``) and one shared, stateless
    estimator. The estimator is ``None`` for the Gaussian latent. Raises :class:`TrainError`
    for an estimator that does not apply, naming those that do. The global random state is
    left alone.
    """
    built = [_build_one(config, seed) for seed in config.seed_list()]
    if config.seeds == 1:
        return built[0]
    return replicate([model for model, _ in built]), built[0][1]


def _build_one(config: TrainConfig, seed: int) -> tuple[nn.Module, Estimator | None]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed(seed, _INIT))
        model = ARCHS[config.latent][config.arch]()
        estimator = None if config.latent == "gaussian" else _estimator(config, model)
    model.to(config.device)
    if estimator is not None:
        estimator.to(config.device)
    return model, estimator


def load_model(checkpoint: str | os.PathLike[str]) -> tuple[nn.Module, TrainConfig]:
    """The trained model of a :func:`fit` checkpoint (``OUT/checkpoint.pt``), on the CPU.

    Returns the model and the run's :class:`TrainConfig` (its ``device`` set to ``"cpu"``);
    for a ``seeds > 1`` run the replicated model (:func:`samplegrad.lab.models.replicated.replica`
    takes replica ``i`` out). Raises :class:`TrainError` naming the file if it is missing or
    not a checkpoint.
    """
    path = Path(checkpoint)
    payload = read_checkpoint(
        path,
        "",
        "train one with `samplegrad train vae --out DIR` and give DIR/checkpoint.pt",
    )
    try:
        saved = {**payload["config"], "device": "cpu", "resume": False}
        config = TrainConfig(**saved)
        model, _ = build_model(config)
        model.load_state_dict(payload["model"])
    except TrainError:
        raise
    except (KeyError, TypeError, RuntimeError) as error:  # a foreign or mismatched file
        raise TrainError(f"{path} is not a samplegrad training checkpoint ({error})") from None
    return model, config


def _estimator(config: TrainConfig, model: nn.Module) -> Estimator:
    try:
        return make_estimator(config.estimator, model, num_samples=config.num_samples)
    except (TypeError, ValueError) as error:
        raise TrainError(str(error)) from None


def _loss(
    model: nn.Module,
    estimator: Estimator | None,
    x: Tensor,
    num_samples: int,
    generator: Generator,
) -> LossOutput:
    """``model.loss`` for either kind of model: the Gaussian VAE takes no estimator."""
    if estimator is None:
        return model.loss(x, num_samples, generator)
    return model.loss(x, estimator, num_samples, generator)


class _Objective(nn.Module):
    """The model and its estimator as one module whose ``forward`` is the training loss: the
    module that ``DistributedDataParallel`` wraps, so that the gradients of both are averaged
    over the processes."""

    def __init__(self, model: nn.Module, estimator: Estimator | None) -> None:
        super().__init__()
        self.model = model
        self.estimator = estimator

    def forward(self, x: Tensor, num_samples: int, generator: torch.Generator) -> LossOutput:
        return _loss(self.model, self.estimator, x, num_samples, generator)


def training_step(
    model: nn.Module,
    estimator: Estimator | None,
    optimizer: torch.optim.Optimizer,
    *,
    num_samples: int,
    generator: torch.Generator,
    compile: bool = False,
    objective: nn.Module | None = None,
    replicas: int = 1,
) -> Callable[[Tensor], Tensor]:
    """One optimiser step of a VAE on a batch ``x``, as a function: zero the gradients, the
    loss (``model.loss`` with ``estimator`` for a discrete VAE), backward, ``optimizer.step``;
    it returns the per-image ELBO estimates of this process's rows, detached, and reads
    nothing back to the host, so a loop of steps runs ahead of an asynchronous device.

    With ``compile=True`` the loss (forward and, through AOTAutograd, backward) and the
    optimiser step are each compiled by ``torch.compile`` (inductor: fused element-wise kernels
    and a fused Adam; on CUDA, ``mode="reduce-overhead"`` also captures CUDA graphs). The first
    calls compile (tens of seconds).

    Under ``torchrun`` (module docstring, "Many processes") ``x`` is the global batch: each
    process trains on its rows, with ``objective`` the model and estimator wrapped in
    ``DistributedDataParallel``, and its loss weighted so that the averaged gradient is that of
    the global mean.

    For ``replicas`` stacked models (:func:`samplegrad.lab.models.replicated.replicate`, batches
    ``(R, B, D)``) the loss is the mean over all ``R * B`` images: ``R`` times it is the sum of
    the replicas' own losses, so each replica gets exactly its own gradient.
    """
    objective = _Objective(model, estimator) if objective is None else objective
    world = distributed.world_size()

    def loss(x: Tensor) -> LossOutput:
        return objective(x, num_samples, generator)

    optimizer_step = optimizer.step
    if compile:
        device = next(model.parameters()).device
        loss, optimizer_step = compile_for(loss, device), compile_for(optimizer.step, device)

    def step(x: Tensor) -> Tensor:
        rows = distributed.shard(len(x))  # all of x in a single process
        optimizer.zero_grad(set_to_none=True)
        with distributed.sharded_noise(generator, rows, len(x)):
            output = loss(x[rows])
        # The weight (1 in a single process) makes DDP's average the global mean's gradient.
        (output.loss * (replicas * world * len(output.elbo) / len(x))).backward()
        optimizer_step()
        return output.elbo

    return step


# --------------------------------------------------------------------------------------------
# Files


@dataclasses.dataclass
class _State:
    """What a checkpoint restores besides the modules: counters, history, the open epoch."""

    step: int = 0
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    epoch_elbo_sum: list[float] = dataclasses.field(default_factory=list)  # per replica, over
    epoch_images: int = 0  # the images of the epoch in progress
    epoch_seconds: float = 0.0


@dataclasses.dataclass
class _Run:
    """The live objects of one training run."""

    config: TrainConfig
    model: nn.Module
    estimator: Estimator | None
    objective: nn.Module  # _Objective, in DistributedDataParallel under torchrun
    optimizer: torch.optim.Optimizer
    sampling: Generator
    state: _State
    step: Callable[[Tensor], Tensor] = dataclasses.field(init=False)
    """One optimiser step on a batch; returns the per-image ELBO estimates (detached)."""

    def __post_init__(self) -> None:
        self.step = training_step(
            self.model,
            self.estimator,
            self.optimizer,
            num_samples=self.config.num_samples,
            generator=self.sampling,
            compile=self.config.compile,
            objective=self.objective,
            replicas=self.config.seeds,
        )


def _save_checkpoint(run: _Run) -> Path:
    path = Path(run.config.out) / CHECKPOINT
    payload = {
        "format": _CHECKPOINT_FORMAT,
        "config": dataclasses.asdict(run.config),
        "model": run.model.state_dict(),
        "estimator": None if run.estimator is None else run.estimator.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "sampling_generator": run.sampling.get_state(),
        "state": dataclasses.asdict(run.state),
        "torch": str(torch.__version__),
    }
    return save_checkpoint(path, payload)


def _load_checkpoint(run: _Run) -> None:
    """Restore ``run`` from its checkpoint; :class:`TrainError` if missing or incompatible."""
    path = Path(run.config.out) / CHECKPOINT
    payload = read_checkpoint(
        path,
        "cannot resume: ",
        "run without --resume (resume=False) to start training, or point --out at the folder "
        "of the run to continue",
    )
    if payload.get("format") != _CHECKPOINT_FORMAT:
        raise TrainError(
            f"cannot resume from {path}: it was written by another version of samplegrad "
            f"(checkpoint format {payload.get('format')!r}, this one reads "
            f"{_CHECKPOINT_FORMAT}); start a new run with another --out"
        )
    check_compatible(run.config, payload.get("config", {}), path, MUST_MATCH_ON_RESUME)
    run.model.load_state_dict(payload["model"])
    if run.estimator is not None:
        run.estimator.load_state_dict(payload["estimator"])
    run.optimizer.load_state_dict(payload["optimizer"])
    run.sampling.set_state(payload["sampling_generator"])
    run.state = _State(**payload["state"])


# --------------------------------------------------------------------------------------------
# Evaluation


def _per_replica_sum(values: Tensor) -> Tensor:
    """The per-image ``values`` ``(B,)`` or ``(R, B)`` summed per replica, ``(R,)``, in float64."""
    return values.sum(-1).double().reshape(-1)


def _mean_over(
    data: MNIST, batch_size: int, generator: Generator, bound: Callable[[Tensor], Tensor]
) -> list[float]:
    """Per replica, the mean over ``data`` of the per-image ``bound(x)``, in a fixed order."""
    total = torch.zeros((), dtype=torch.float64)
    for x in _images(data, batch_size, generator, shuffle=False):
        total = total + _per_replica_sum(bound(x)).cpu()
    return (total / len(data)).tolist()


def _validation_elbo(run: _Run, valid: MNIST | None, epoch: int) -> list[float] | None:
    if valid is None:
        return None
    generator = _generators(run.config, _VALID, epoch)
    with torch.no_grad():
        return _mean_over(
            valid, run.config.eval_batch_size, generator, lambda x: run.model.elbo(x, 1, generator)
        )


def _test_bounds(run: _Run, test: MNIST) -> tuple[list[float], list[float]]:
    """Per replica, the test ELBO (one sample per image) and IWAE bound (``iwae_k`` samples),
    in nats per image.

    Both see the same binarized batches: each batch is drawn once and evaluated twice. The
    IWAE chunks are those of a single run (so replica ``i`` draws as one), ``R`` times the rows.
    """
    config = run.config
    generator = _generators(config, _TEST)
    chunk = max(1, min(config.iwae_k, _IWAE_ROWS // config.eval_batch_size))
    elbo = iwae = torch.zeros((), dtype=torch.float64)
    with torch.no_grad():
        for x in _images(test, config.eval_batch_size, generator, shuffle=False):
            elbo = elbo + _per_replica_sum(run.model.elbo(x, 1, generator)).cpu()
            bound = run.model.iwae_bound(x, config.iwae_k, chunk, generator)
            iwae = iwae + _per_replica_sum(bound).cpu()
    return (elbo / len(test)).tolist(), (iwae / len(test)).tolist()


# --------------------------------------------------------------------------------------------
# The loop


def _train_steps(
    run: _Run,
    train: MNIST,
    total_steps: int,
    stop: Stop,
    bar: tqdm,
    on_step: Callable[[int, float], None] | None,
) -> None:
    """Train through the rest of the current epoch, or until ``total_steps`` or a signal."""
    config, state = run.config, run.state
    per_epoch = config.steps_per_epoch(len(train))
    epoch, done = divmod(state.step, per_epoch)
    batches = _images(train, config.batch_size, _generators(config, _DATA, epoch), shuffle=True)
    device, world = torch.device(config.device), distributed.world_size()
    # Skipping the batches already trained on draws them again: the epoch's generator ends
    # in the same state as in an uninterrupted run.
    elbo_sum = torch.zeros(config.seeds, dtype=torch.float64, device=config.device)
    last = time.perf_counter()
    try:
        for x in islice(batches, done, None):
            elbo = run.step(x)
            state.step += 1
            elbo_sum += _per_replica_sum(elbo)  # on the device: no host synchronisation
            state.epoch_images += x.shape[-2]  # the global batch: every process counts it
            bar.update(1)
            if bar.disable is False and state.step % POSTFIX_EVERY == 0:
                bar.set_postfix(elbo=f"{elbo.mean().item():.2f}", refresh=False)
            if on_step is not None:
                on_step(state.step, elbo.mean().item())
            if world > 1:  # every process stops after the same step
                (signum,) = distributed.all_reduce([stop.signum or 0], device, op="max")
                stop.signum = int(signum) or None
            if state.step >= total_steps or stop.signum is not None:
                return
    finally:
        # One read of the device (the time is then the work's) and one reduction per call.
        sums = distributed.all_reduce(elbo_sum.tolist(), device)
        state.epoch_elbo_sum = [a + b for a, b in zip(state.epoch_elbo_sum, sums, strict=True)]
        state.epoch_seconds += time.perf_counter() - last


def _close_epoch(run: _Run, valid: MNIST | None, per_epoch: int) -> None:
    """Append the epoch's row to the history; at an epoch boundary, reset the epoch's sums
    (after a final partial epoch they stay, for
    :func:`samplegrad.lab.training.runs.reopen_partial_epoch`)."""
    state = run.state
    epoch = math.ceil(state.step / per_epoch)
    state.history.append(
        {
            "epoch": epoch,
            "step": state.step,
            "train_elbo": [total / state.epoch_images for total in state.epoch_elbo_sum],
            "valid_elbo": _validation_elbo(run, valid, epoch),
            "seconds": state.epoch_seconds,
        }
    )
    if state.step % per_epoch == 0:
        state.epoch_elbo_sum = [0.0] * run.config.seeds
        state.epoch_images, state.epoch_seconds = 0, 0.0


def _csv(config: TrainConfig, history: list[dict[str, Any]]) -> None:
    """``metrics.csv``: a row per epoch, or for ``seeds > 1`` a row per epoch and seed."""
    rows = [
        {
            **row,
            "seed": seed,
            "train_elbo": row["train_elbo"][i],
            "valid_elbo": None if row["valid_elbo"] is None else row["valid_elbo"][i],
        }
        for row in history
        for i, seed in enumerate(config.seed_list())
    ]
    columns = CSV_COLUMNS if config.seeds == 1 else SEEDS_CSV_COLUMNS
    write_csv(Path(config.out) / "metrics.csv", columns, rows)


def _loop(
    run: _Run,
    train: MNIST,
    valid: MNIST | None,
    stop: Stop,
    on_step: Callable[[int, float], None] | None,
) -> None:
    """Epoch after epoch until the last step or a signal; metrics and checkpoint per epoch."""
    config, state = run.config, run.state
    per_epoch = config.steps_per_epoch(len(train))
    total = config.steps if config.steps is not None else config.epochs * per_epoch
    main = distributed.is_main()
    show = show_progress(config.progress) and main
    if state.step < total:
        reopen_partial_epoch(state.history, state.step, per_epoch)
    with tqdm(total=total, initial=min(state.step, total), disable=not show, unit="step") as bar:
        while state.step < total and stop.signum is None:
            _train_steps(run, train, total, stop, bar, on_step)
            if state.step % per_epoch == 0 or state.step >= total:
                run.model.eval()
                _close_epoch(run, valid if main else None, per_epoch)
                run.model.train()
                if main:
                    _csv(config, state.history)
            if main:
                _save_checkpoint(run)


def _load_splits(config: TrainConfig) -> tuple[MNIST, MNIST | None, MNIST]:
    def split(name: str) -> MNIST:
        return load_mnist(
            config.data_dir,
            split=name,
            validation_size=config.validation_size,
            binarize=config.binarize,
            device=config.device,
        )

    valid = split("valid") if config.validation_size else None
    return split("train"), valid, split("test")


def _start(config: TrainConfig) -> _Run:
    """A fresh run, or the one restored from the checkpoint when ``config.resume``."""
    refuse_to_overwrite(Path(config.out) / CHECKPOINT, config.resume)
    model, estimator = build_model(config)
    parameters = list(model.parameters())
    if estimator is not None:
        parameters += list(estimator.parameters())
    run = _Run(
        config,
        model,
        estimator,
        distributed.data_parallel(_Objective(model, estimator), torch.device(config.device)),
        torch.optim.Adam(parameters, lr=config.lr),
        _generators(config, _SAMPLING),
        _State(epoch_elbo_sum=[0.0] * config.seeds),
    )
    if config.resume:
        _load_checkpoint(run)
        for group in run.optimizer.param_groups:
            group["lr"] = config.lr
    return run


def _summary(run: _Run, test: MNIST) -> dict[str, Any]:
    """The contents of ``metrics.json`` (:data:`SUMMARY_KEYS`), evaluating on ``test``."""
    config, state = run.config, run.state
    run.model.eval()
    test_elbo, test_iwae = _test_bounds(run, test)
    last = state.history[-1] if state.history else {"epoch": 0}
    per_run = {
        "train_elbo": last.get("train_elbo"),
        "valid_elbo": last.get("valid_elbo"),
        "test_elbo": test_elbo,
        "test_iwae": test_iwae,
    }
    if config.seeds == 1:
        per_run = {key: None if value is None else value[0] for key, value in per_run.items()}
    return {
        **per_run,
        "iwae_k": config.iwae_k,
        "epochs": last["epoch"],
        "steps": state.step,
        "epoch_seconds": [row["seconds"] for row in state.history],
        "latent": config.latent,
        "arch": config.arch,
        "estimator": config.estimator,
        "num_samples": config.num_samples,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "seed": config.seed,
        "seeds": config.seed_list(),
        "binarize": config.binarize,
        "device": config.device,
        "torch": str(torch.__version__),
    }


def fit(config: TrainConfig, *, on_step: Callable[[int, float], None] | None = None) -> dict:
    """Train the VAE of ``config``; return the final metrics (also in ``out/metrics.json``).

    Under ``torchrun``, every process calls it and they train together (module docstring,
    "Many processes"); it joins the process group unless one is open, and leaves what it joined.

    Args:
        config: the run (see :class:`TrainConfig`).
        on_step: called after every optimiser step with the step count and the batch's mean
            ELBO estimate (for logging, early stopping by a signal, or tests).

    Returns:
        The :data:`SUMMARY_KEYS` of ``metrics.json``; if SIGINT or SIGTERM stopped training,
        instead ``{"interrupted": "SIGINT", "signal": 2, "step": ..., "checkpoint": ...}``.

    Raises:
        TrainError: an invalid or incompatible request (the message says what to change);
        samplegrad.lab.data.MNISTNotFoundError, CorruptDataError: the data cannot be read;
        OSError: ``out`` cannot be written.
    """
    with distributed.process_group(torch.device(config.device)):
        train, valid, test = _load_splits(config)
        _check_processes(config, len(train))
        Path(config.out).mkdir(parents=True, exist_ok=True)
        run = _start(config)
        with stop_on_signals() as stop:
            _loop(run, train, valid, stop, on_step)
        if stop.signum is not None:
            return interrupted(stop.signum, run.state.step, Path(config.out) / CHECKPOINT)
        summary = None
        if distributed.is_main():
            summary = _summary(run, test)
            write_json(Path(config.out) / "metrics.json", summary)
            _plot(run, test)
        return distributed.broadcast(summary)


def _check_processes(config: TrainConfig, num_train: int) -> None:
    """Under ``torchrun``: :class:`TrainError` unless the global batch (and the last one of an
    epoch) can be shared by the processes and each has a GPU of its own."""
    world = distributed.world_size()
    if world == 1:
        return
    if config.seeds > 1:
        raise TrainError(
            f"--seeds {config.seeds} with torchrun is not supported: run the replicas in one "
            "process, or one seed per torchrun job"
        )
    if config.batch_size % world:
        raise TrainError(
            f"batch_size {config.batch_size} is the global batch, shared by the {world} "
            f"processes, so it must be a multiple of {world}"
        )
    last = num_train % config.batch_size
    if 0 < last < world:
        raise TrainError(
            f"the last batch of each epoch has {last} of the {num_train} training images, fewer "
            f"than the {world} processes; choose another batch_size or validation_size"
        )
    if torch.device(config.device).index is not None:
        raise TrainError(
            f"under torchrun give device 'cuda', not {config.device!r}: each process uses the "
            "GPU cuda:LOCAL_RANK"
        )


def _plot(run: _Run, test: MNIST) -> None:
    # Imported here: matplotlib takes most of a second to import, which every `samplegrad`
    # command (the CLI imports this module) would otherwise pay.
    from samplegrad.lab.plots import vae as plots

    out, generator = Path(run.config.out), _generator(run.config, _PLOT)
    model = run.model if run.config.seeds == 1 else replica(run.model, 0)
    plots.plot_run(model, test, run.state.history, out, generator)
