"""Training the VAEs of :mod:`samplegrad.lab.models`: :class:`VAETrainer`, run by the one loop
(:mod:`samplegrad.lab.training.loop`).

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
over the seeds, the other plots replica 0. The replicas share one estimator, so one with state
or parameters of its own (the catalog's ``stateful``: ``score-ma``, ``rebar``, ``relax``, ...,
and ``auto`` where it stands for one of them) is refused (:mod:`samplegrad.lab.training.seeds`).
Evaluation memory grows ``N``-fold.

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
  pathwise, ARM/DisARM, REBAR/RELAX and Gumbel-Softmax estimators, and for the Bernoulli
  samples of the score function and straight-through estimators (``u < p`` from the whole
  batch's uniforms: on a CPU exactly ``torch.bernoulli``'s draw; with NCCL the same law, and
  possibly other samples than one GPU's ``torch.bernoulli``). Categorical samples, which
  depend on the probabilities of other processes' rows, come from a per-process generator
  seeded from the shared one and the process's rows instead: independent across processes and
  reproducible, but not the single-process draw.
- Each process's loss is the mean negative ELBO (KL term included, per image) over its rows,
  weighted by ``W * rows / batch`` (1 for equal shares); DDP averages the gradients over the
  processes, which makes them the gradient of the mean over the global batch. The model and the
  estimator are wrapped together, so the estimator's parameters (REBAR's temperature and
  ``eta``, RELAX's control network) get the global gradient too: their variance objective is a
  mean over the images of each image's squared gradient, linear in the batch like the loss, and
  the estimator passes its gradient to them through the surrogate's ``backward``, which DDP
  averages. The moving average of ``score-ma`` (``d b + (1 - d) mean cost``, affine in its
  batch's mean) is updated by each process from its rows and then replaced by the processes'
  mean weighted by their rows (:func:`samplegrad.lab.training.distributed.weighted_mean`): the
  single process's update from the global batch. So ``score-ma``, ``rebar`` and ``relax`` (and
  ``auto`` where it stands for ``score-ma``) train as in one process, their state identical in
  every process (``tests/test_distributed.py``).
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
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from samplegrad.estimators import VIMCO, Estimator, MovingAverage, catalog
from samplegrad.generators import Generator
from samplegrad.lab.data import MNIST, Binarization
from samplegrad.lab.models import (
    BernoulliVAE,
    CategoricalVAE,
    GaussianVAE,
    LossOutput,
    applicable_estimators,
    make_estimator,
)
from samplegrad.lab.models.replicated import replica, replicate
from samplegrad.lab.training import distributed as distributed
from samplegrad.lab.training.config import EpochConfig, TrainError, check_field, option
from samplegrad.lab.training.data import image_batches, load_splits
from samplegrad.lab.training.files import CHECKPOINT, read_checkpoint, trainer_of
from samplegrad.lab.training.loop import OnStep, Trainer, train
from samplegrad.lab.training.seeds import (
    check_replicable,
    generators,
    replicable,
    rows_per_seed,
    stream_seed,
)

__all__ = [
    "ARCHS",
    "CHECKPOINT",
    "COMPILE_PLANS",
    "CSV_COLUMNS",
    "SEEDS_CSV_COLUMNS",
    "SUMMARY_KEYS",
    "CompilePlan",
    "TrainConfig",
    "TrainError",
    "VAETrainer",
    "build_model",
    "compile_plan",
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
    *("train_elbo", "valid_elbo", "test_elbo", "test_iwae", "iwae_k"),
    *("epochs", "steps", "epoch_seconds"),
    *("latent", "arch", "objective", "estimator", "num_samples", "batch_size", "lr", "seed"),
    *("seeds", "binarize", "device", "torch"),
)
"""The keys of ``metrics.json``, which :func:`fit` also returns."""

OBJECTIVES = ("elbo", "iwae")
"""The training objectives: the ELBO, or the importance-weighted bound."""

GAUSSIAN_ELBO_ESTIMATORS = ("pathwise", "stl")
"""The Gaussian VAE's ELBO estimators: its sampling layer (analytic KL), or sticking the
landing with the KL inside the cost."""

BOUND_ESTIMATORS = {"gaussian": ("pathwise", "dreg", "stl"), "discrete": ("vimco",)}
"""Per latent kind, the ``sg.iwae_bound`` estimators for ``objective="iwae"``, default first."""

PER_RUN = ("train_elbo", "valid_elbo", "test_elbo", "test_iwae")
"""The numbers of ``metrics.json`` that are a list, one per seed, for ``seeds > 1``."""

CSV_COLUMNS = ("epoch", "step", "train_elbo", "valid_elbo", "seconds")
SEEDS_CSV_COLUMNS = ("epoch", "step", "seed", "train_elbo", "valid_elbo", "seconds")
"""The columns of ``metrics.csv`` for ``seeds > 1``: a row per epoch and seed."""

_IWAE_ROWS = 25_000  # decoder rows (samples x images) per IWAE chunk, to bound memory

# Random streams, combined with the seed (and the epoch) into independent generator seeds.
_INIT, _DATA, _SAMPLING, _VALID, _TEST, _PLOT = range(6)

_ARCH_HELP = (
    "architecture, per latent (the first is the default): "
    + "; ".join(f"{latent}: {', '.join(names)}" for latent, names in ARCHS.items())
    + ". gaussian 'default' is 784-400-20; '2d' has a 2-D latent and plots its latent map"
)
_ESTIMATOR_HELP = (
    "gradient estimator. --objective elbo: for the discrete latents any that applies (default: "
    "auto); for the gaussian latent pathwise (its sampling layer, analytic KL; the default) or "
    "stl (sticking the landing, the KL inside the cost). --objective iwae: for the gaussian "
    "latent pathwise (default), dreg or stl; for the discrete latents vimco"
)
_OBJECTIVE_HELP = (
    "the training objective: elbo, or iwae, the importance-weighted bound with K = "
    "--num-samples importance samples per image (Burda et al. 2016)"
)
_NUM_SAMPLES_HELP = (
    "latent samples per image and step (the bound's K for --objective iwae); even for arm and "
    "disarm. Default: the fewest the estimator takes"
)
_SEEDS_HELP = (
    "train N independent replicas with the seeds S, S+1, ..., S+N-1 together, one batched step "
    "for all; metrics.json then lists every per-run number per seed and metrics.csv has a row "
    "per epoch and seed. Not for an estimator with state of its own, which the replicas would "
    "share"
)
_BINARIZE_HELP = "how grey levels become pixels; dynamic resamples them each time an image is drawn"
_IWAE_HELP = "importance samples per test image for the IWAE bound"
_COMPILE_HELP = (
    "compile the training step with torch.compile, the parts that measured faster on the device: "
    "the Adam step; the loss and its backward too on CUDA (as CUDA graphs) and, on the CPU, for "
    "the discrete latents' estimators. The first steps take seconds to tens of seconds"
)


@dataclasses.dataclass(kw_only=True)
class TrainConfig(EpochConfig):
    """Everything a VAE training run depends on (these fields and those of
    :class:`~samplegrad.lab.training.config.EpochConfig`); the command line's options.

    Attributes:
        latent: ``"gaussian"``, ``"bernoulli"`` or ``"categorical"``.
        arch: an architecture of :data:`ARCHS` for the latent; ``None``: the first listed.
        objective: ``"elbo"`` or ``"iwae"``, the importance-weighted bound with
            ``K = num_samples`` (:meth:`samplegrad.lab.models.GaussianVAE.bound_loss`).
        estimator: for the ELBO, a :func:`samplegrad.lab.models.make_estimator` name for the
            discrete latents (``None``: ``"auto"``), and for the Gaussian latent
            ``"pathwise"`` (its sampling layer with the analytic KL; ``None``) or ``"stl"``;
            for the IWAE bound, an ``sg.iwae_bound`` estimator (:data:`BOUND_ESTIMATORS`).
        num_samples: latent samples per image and step (even for ``"arm"``/``"disarm"``); the
            bound's ``K`` for ``objective="iwae"``. ``None``: the fewest the estimator takes
            (:func:`fewest_samples`).
        seeds: independent replicas trained together, with the seeds ``seed, seed + 1, ...``
            (module docstring); 1 is a plain run.
        binarize: ``"dynamic"``, ``"threshold"`` or ``"none"``.
        iwae_k: importance samples per test image for the IWAE bound.
        compile: compile the training step with ``torch.compile`` (see
            :func:`training_step`); the first steps then take tens of seconds.
    """

    MUST_MATCH_ON_RESUME: ClassVar[tuple[str, ...]] = (
        *("latent", "arch", "objective", "estimator", "num_samples", "batch_size", "seed"),
        *("seeds", "binarize", "validation_size", "device"),
    )

    latent: str = option(help="the latent variables' family", choices=tuple(ARCHS))
    arch: str | None = option(None, _ARCH_HELP, metavar="NAME")
    objective: str = option("elbo", _OBJECTIVE_HELP, choices=OBJECTIVES)
    estimator: str | None = option(None, _ESTIMATOR_HELP, metavar="NAME")
    num_samples: int | None = option(None, _NUM_SAMPLES_HELP, metavar="K", minimum=1)
    seeds: int = option(1, _SEEDS_HELP, metavar="N", minimum=1)
    binarize: str = option("dynamic", _BINARIZE_HELP, choices=tuple(Binarization))
    iwae_k: int = option(100, _IWAE_HELP, metavar="K", minimum=1)
    compile: bool = option(False, _COMPILE_HELP)

    def __post_init__(self) -> None:
        check_field(self, "latent")
        archs = ARCHS[self.latent]
        self.arch = next(iter(archs)) if self.arch is None else self.arch
        if self.arch not in archs:
            raise TrainError(
                f"arch {self.arch!r} is not one for the {self.latent} latent; choose from "
                + ", ".join(archs)
            )
        check_field(self, "objective")
        self.estimator = _default_estimator(self.latent, self.objective, self.estimator)
        fewest = fewest_samples(self.objective, self.estimator)
        self.num_samples = fewest if self.num_samples is None else self.num_samples
        super().__post_init__()
        if self.objective == "iwae" and self.num_samples < fewest:  # the ELBO's: by the model
            raise TrainError(
                f"num_samples must be >= {fewest} for --objective iwae with {self.estimator}, "
                f"got {self.num_samples}"
            )
        _check_replicable(self)

    def seed_list(self) -> list[int]:
        """The replicas' seeds, ``seed, seed + 1, ..., seed + seeds - 1``."""
        return list(range(self.seed, self.seed + self.seeds))


def fewest_samples(objective: str, estimator: str) -> int:
    """The fewest latent samples per image that ``estimator`` takes for ``objective``: the
    default of ``num_samples`` (2 for ARM and DisARM's pairs, for VIMCO's leave-one-out)."""
    if objective == "iwae":
        return VIMCO.min_num_samples if estimator == "vimco" else 1
    if estimator not in catalog.CATALOG:  # "auto", or a name build_model refuses
        return 1
    return catalog.entry(estimator).min_num_samples


def _default_estimator(latent: str, objective: str, estimator: str | None) -> str:
    """``estimator`` with ``None`` resolved; :class:`TrainError` for one that the objective
    and latent do not take (the discrete latents' ELBO names are checked by the model)."""
    kind = "gaussian" if latent == "gaussian" else "discrete"
    allowed = BOUND_ESTIMATORS[kind] if objective == "iwae" else GAUSSIAN_ELBO_ESTIMATORS
    if kind == "discrete" and objective == "elbo":
        return catalog.AUTO if estimator is None else estimator
    if estimator is None:
        return allowed[0]
    if estimator not in allowed:
        why = {
            ("gaussian", "elbo"): "the Gaussian VAE is trained pathwise, by its sampling layer or "
            "with stl (the others are for --latent bernoulli and categorical)",
            ("gaussian", "iwae"): "the bound of a reparameterizable latent is trained pathwise",
            ("discrete", "iwae"): "the bound of a discrete latent takes the multi-sample score "
            "function",
        }[kind, objective]
        raise TrainError(
            f"estimator {estimator!r} does not apply to --objective {objective} with the "
            f"{latent} latent: {why}; choose from {', '.join(allowed)}"
        )
    return estimator


def _check_replicable(config: TrainConfig) -> None:
    """For ``seeds > 1``: :class:`TrainError` unless the estimator (``"auto"`` resolved by
    :func:`samplegrad.estimators.catalog.auto` for the latent) keeps no state the replicas
    would share. A name that does not apply is left to :func:`build_model` to refuse."""
    if config.seeds == 1 or config.latent == "gaussian" or config.objective == "iwae":
        return  # the Gaussian latent's and the bound's estimators keep no state
    with torch.random.fork_rng(devices=[]):
        model = ARCHS[config.latent][config.arch]()
    prior, names = model.prior(), applicable_estimators(model)
    if config.estimator not in names:
        return
    resolved = config.estimator
    if resolved == catalog.AUTO:
        resolved = catalog.auto(prior, config.num_samples)
    instead = [name for name in names if replicable(name)]
    fewest = [n for n in range(1, 9) if replicable(catalog.auto(prior, n))]  # auto's choice
    if fewest:
        instead.append(f"auto with --num-samples >= {fewest[0]}")
    check_replicable(config.estimator, resolved, config.seeds, instead)


def build_model(config: TrainConfig) -> tuple[nn.Module, Estimator | None]:
    """The model and estimator of ``config`` on its device, initialised from its seed.

    For ``seeds > 1``, the :func:`~samplegrad.lab.models.replicated.replicate`-d models of the
    seeds (replica ``i`` initialised as a run with ``seed + i``) and one shared, stateless
    estimator. The estimator is ``None`` for the Gaussian latent. Raises :class:`TrainError`
    for an estimator that does not apply (naming those that do) or that refuses
    ``num_samples``. The global random state is left alone.
    """
    built = [_build_one(config, seed) for seed in config.seed_list()]
    if config.seeds == 1:
        return built[0]
    return replicate([model for model, _ in built]), built[0][1]


def _build_one(config: TrainConfig, seed: int) -> tuple[nn.Module, Estimator | None]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed(seed, _INIT))
        model = ARCHS[config.latent][config.arch]()
        estimator = _estimator(config, model)
    model.to(config.device)
    if estimator is not None:
        estimator.to(config.device)
    return model, estimator


def _estimator(config: TrainConfig, model: nn.Module) -> Estimator | None:
    """The ``sg.expectation`` estimator of ``config`` for ``model``'s ELBO: ``None`` where the
    model needs none (the Gaussian VAE's sampling layer, and the IWAE bound, whose estimator is
    a name for ``sg.iwae_bound``); :class:`TrainError` if it does not apply or does not take
    ``num_samples``."""
    if config.objective == "iwae" or (config.latent, config.estimator) == ("gaussian", "pathwise"):
        return None
    try:
        if config.latent == "gaussian":
            estimator = catalog.entry(config.estimator).build()
        else:
            estimator = make_estimator(config.estimator, model, num_samples=config.num_samples)
        estimator.check_num_samples(config.num_samples)
    except (TypeError, ValueError) as error:
        raise TrainError(str(error)) from None
    return estimator


def load_model(checkpoint: str | os.PathLike[str]) -> tuple[nn.Module, TrainConfig]:
    """The trained model of a :func:`fit` checkpoint (``OUT/checkpoint.pt``), on the CPU.

    Returns the model and the run's :class:`TrainConfig` (its ``device`` set to ``"cpu"``);
    for a ``seeds > 1`` run the replicated model (:func:`samplegrad.lab.models.replicated.replica`
    takes replica ``i`` out). Raises :class:`TrainError` naming the file if it is missing or
    not a checkpoint.
    """
    path = Path(checkpoint)
    remedy = "train one with `samplegrad train vae --out DIR` and give DIR/checkpoint.pt"
    payload = read_checkpoint(path, "", remedy)
    trainer = trainer_of(payload)
    if trainer not in (None, VAETrainer.command):
        raise TrainError(
            f"{path} is a checkpoint of `samplegrad train {trainer}`, not of a VAE; {remedy}"
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


def _loss(
    model: nn.Module,
    estimator: Estimator | None,
    x: Tensor,
    num_samples: int,
    generator: Generator,
    bound: str | None = None,
) -> LossOutput:
    """The training loss: with ``bound`` (an ``sg.iwae_bound`` estimator) the negative IWAE
    bound; else the negative ELBO, by the Gaussian VAE's sampling layer (no estimator) or by
    ``estimator`` with the KL inside the cost."""
    if bound is not None:
        return model.bound_loss(x, bound, num_samples, generator)
    if estimator is None:
        return model.loss(x, num_samples, generator)
    return model.monte_carlo_loss(x, estimator, num_samples, generator)


class _Objective(nn.Module):
    """The model and its estimator as one module whose ``forward`` is the training loss: the
    module that ``DistributedDataParallel`` wraps, so that the gradients of both are averaged
    over the processes. ``bound`` names the ``sg.iwae_bound`` estimator of the IWAE
    objective (``None``: the ELBO)."""

    def __init__(
        self, model: nn.Module, estimator: Estimator | None, bound: str | None = None
    ) -> None:
        super().__init__()
        self.model = model
        self.estimator = estimator
        self.bound = bound

    def forward(self, x: Tensor, num_samples: int, generator: torch.Generator) -> LossOutput:
        return _loss(self.model, self.estimator, x, num_samples, generator, self.bound)


@dataclasses.dataclass(frozen=True)
class CompilePlan:
    """What :func:`training_step` hands to ``torch.compile``, and in which mode.

    Attributes:
        loss: compile the loss (its forward and, through AOTAutograd, its backward; the noise
            draws from the step's ``torch.Generator`` stay eager, between the graphs).
        optimizer: compile ``optimizer.step`` (inductor fuses Adam's per-parameter
            arithmetic into a few kernels).
        mode: ``torch.compile``'s mode: ``"default"``, ``"reduce-overhead"`` (CUDA graphs),
            ``"max-autotune-no-cudagraphs"``, ...
    """

    loss: bool
    optimizer: bool
    mode: str = "default"

    @property
    def name(self) -> str:
        """E.g. ``"loss+optimizer, default"``."""
        parts = [part for part, on in (("loss", self.loss), ("optimizer", self.optimizer)) if on]
        return f"{'+'.join(parts) or 'nothing'}, {self.mode}"


COMPILE_PLANS: dict[tuple[str, bool], CompilePlan] = {
    ("cpu", False): CompilePlan(loss=False, optimizer=True),
    ("cpu", True): CompilePlan(loss=True, optimizer=True),
    ("cuda", False): CompilePlan(loss=True, optimizer=True, mode="reduce-overhead"),
    ("cuda", True): CompilePlan(loss=True, optimizer=True, mode="reduce-overhead"),
}
"""Per device type and whether the loss runs an estimator (a discrete VAE's), what
``compile=True`` (``--compile``) compiles: the parts that measured faster than eager in
``benchmarks/gpu.py`` (its rows per plan). On the CPU the Adam step gains everywhere; the
Gaussian VAE's loss does not (its time is in matrix products, the same library calls
compiled or not, and its graph splits at the noise draw), while an estimator's element-wise
arithmetic (DisARM's) gains from fusion. On CUDA the loss and the step are captured as CUDA
graphs, which removes the per-kernel launch cost."""


def compile_plan(device: torch.device, estimator: Estimator | None) -> CompilePlan:
    """What ``compile=True`` compiles for a loss with ``estimator`` (``None``: the Gaussian
    VAE's sampling layer or the IWAE bound) on ``device``: :data:`COMPILE_PLANS`, and both
    parts in the default mode on a device type it does not list."""
    default = CompilePlan(loss=True, optimizer=True)
    return COMPILE_PLANS.get((device.type, estimator is not None), default)


def _compile_step(
    loss: Callable[[Tensor], LossOutput], optimizer: torch.optim.Optimizer, plan: CompilePlan
) -> tuple[Callable[[Tensor], LossOutput], Callable[[], Any]]:
    """``loss`` and ``optimizer.step``, each compiled as ``plan`` says. Shapes are static
    (``dynamic=False``): an epoch's short last batch gets a graph of its own instead of turning
    every later step into a graph for any batch size."""

    def compiled(function: Callable[..., Any]) -> Callable[..., Any]:
        return torch.compile(function, mode=plan.mode, dynamic=False)

    return (
        compiled(loss) if plan.loss else loss,
        compiled(optimizer.step) if plan.optimizer else optimizer.step,
    )


def training_step(
    model: nn.Module,
    estimator: Estimator | None,
    optimizer: torch.optim.Optimizer,
    *,
    num_samples: int,
    generator: torch.Generator,
    compile: bool | CompilePlan = False,
    objective: nn.Module | None = None,
    replicas: int = 1,
) -> Callable[[Tensor], Tensor]:
    """One optimiser step of a VAE on a batch ``x``, as a function: zero the gradients, the
    loss (``model.loss`` with ``estimator`` for a discrete VAE), backward, ``optimizer.step``;
    it returns the per-image ELBO estimates of this process's rows, detached, and reads
    nothing back to the host, so a loop of steps runs ahead of an asynchronous device.

    With ``compile=True`` the parts that gain on the model's device are compiled
    (:data:`COMPILE_PLANS`); a :class:`CompilePlan` chooses them explicitly. The first calls
    compile (seconds to tens of seconds).

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

    def objective_loss(x: Tensor) -> LossOutput:
        return objective(x, num_samples, generator)

    loss, optimizer_step = objective_loss, optimizer.step
    if compile:
        device = next(model.parameters()).device
        plan = compile_plan(device, estimator) if compile is True else compile
        loss, optimizer_step = _compile_step(objective_loss, optimizer, plan)

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


def _bound_estimator(config: TrainConfig) -> str | None:
    """The ``sg.iwae_bound`` estimator of an IWAE run, ``None`` for the ELBO."""
    return config.estimator if config.objective == "iwae" else None


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


# --------------------------------------------------------------------------------------------
# The trainer


@dataclasses.dataclass
class _State:
    """What a checkpoint restores besides the modules: counters, history, the open epoch."""

    step: int = 0
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    epoch_elbo_sum: list[float] = dataclasses.field(default_factory=list)  # per replica, over
    epoch_images: int = 0  # the images of the epoch in progress
    epoch_seconds: float = 0.0


def _per_replica_sum(values: Tensor) -> Tensor:
    """The per-image ``values`` ``(B,)`` or ``(R, B)`` summed per replica, ``(R,)``, in float64."""
    return values.sum(-1).double().reshape(-1)


class VAETrainer(Trainer):
    """A VAE on MNIST (module docstring): a row of ``metrics.csv`` per epoch, the test ELBO and
    IWAE bound in ``metrics.json``."""

    command = "vae"
    checkpoint_format = 2  # 2: per-replica lists in the state and history
    progress_label = "elbo"
    many_processes = True

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    def _generators(self, stream: int, epoch: int = 0) -> Generator:
        """The generator of ``stream`` (and ``epoch``), one per replica for ``seeds > 1``."""
        return generators(self.config.seed_list(), stream, epoch, self.config.device)

    def build(self) -> None:
        config = self.config
        self.device = torch.device(config.device)
        self.model, self.estimator = build_model(config)
        parameters = list(self.model.parameters())
        if self.estimator is not None:
            parameters += list(self.estimator.parameters())
        self.optimizer = torch.optim.Adam(parameters, lr=config.lr)
        self.sampling = self._generators(_SAMPLING)
        self.state = _State(epoch_elbo_sum=[0.0] * config.seeds)
        self._step = training_step(
            self.model,
            self.estimator,
            self.optimizer,
            num_samples=config.num_samples,
            generator=self.sampling,
            compile=config.compile,
            objective=distributed.data_parallel(
                _Objective(self.model, self.estimator, _bound_estimator(config)), self.device
            ),
            replicas=config.seeds,
        )
        self._elbo_sum = torch.zeros(config.seeds, dtype=torch.float64, device=self.device)
        estimator_modules = [] if self.estimator is None else self.estimator.modules()
        self._moving_averages = [m for m in estimator_modules if isinstance(m, MovingAverage)]

    def load_data(self) -> None:
        config = self.config
        self.train, self.valid, self.test = load_splits(config, config.binarize)
        _check_processes(config, len(self.train))
        self.period = config.steps_per_epoch(len(self.train))
        self.total_steps = config.total_steps(len(self.train))

    def batches(self, period: int) -> Iterator[Tensor]:
        # Skipping the batches already trained on draws them again: the epoch's generator ends
        # in the same state as in an uninterrupted run.
        generator = self._generators(_DATA, period)
        return image_batches(self.train, self.config.batch_size, generator, shuffle=True)

    def step(self, x: Tensor) -> Tensor:
        elbo = self._step(x)
        # Under torchrun each process updated the moving averages from its rows: their mean
        # weighted by the rows is the one process's update from the global batch.
        averages = [baseline.average for baseline in self._moving_averages]
        distributed.weighted_mean(averages, elbo.shape[-1] / x.shape[-2])
        self._elbo_sum += _per_replica_sum(elbo)  # on the device: no host synchronisation
        self.state.epoch_images += x.shape[-2]  # the global batch: every process counts it
        return elbo

    def end_stretch(self, started: float) -> None:
        # One read of the device (the time is then the work's) and one reduction per stretch.
        sums = distributed.all_reduce(self._elbo_sum.tolist(), self.device)
        self._elbo_sum.zero_()
        state = self.state
        state.epoch_elbo_sum = [a + b for a, b in zip(state.epoch_elbo_sum, sums, strict=True)]
        state.epoch_seconds += time.perf_counter() - started

    def close_period(self, number: int, whole: bool) -> None:
        """The epoch's row; at an epoch boundary the epoch's sums start afresh (after a final
        partial epoch they stay, for the loop to reopen it)."""
        state = self.state
        self.model.eval()
        valid = self._validation_elbo(number) if distributed.is_main() else None
        self.model.train()
        train_elbo = [total / state.epoch_images for total in state.epoch_elbo_sum]
        state.history.append(
            {
                "epoch": number,
                "step": state.step,
                "train_elbo": train_elbo,
                "valid_elbo": valid,
                "seconds": state.epoch_seconds,
            }
        )
        if whole:
            state.epoch_elbo_sum = [0.0] * self.config.seeds
            state.epoch_images, state.epoch_seconds = 0, 0.0

    def metrics(self) -> tuple[tuple[str, ...], list[dict[str, Any]]]:
        """A row per epoch, or for ``seeds > 1`` a row per epoch and seed."""
        config = self.config
        rows = rows_per_seed(self.state.history, config.seed_list(), PER_RUN[:2])
        return (CSV_COLUMNS if config.seeds == 1 else SEEDS_CSV_COLUMNS), rows

    def saved(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "estimator": None if self.estimator is None else self.estimator.state_dict(),
            "sampling_generator": self.sampling.get_state(),
        }

    def restore(self, payload: dict[str, Any]) -> None:
        self.model.load_state_dict(payload["model"])
        if self.estimator is not None:
            self.estimator.load_state_dict(payload["estimator"])
        self.sampling.set_state(payload["sampling_generator"])

    # Evaluation

    def _mean_over(
        self, data: MNIST, generator: Generator, bound: Callable[[Tensor], Tensor]
    ) -> list[float]:
        """Per replica, the mean over ``data`` of the per-image ``bound(x)``, in a fixed order."""
        total = torch.zeros((), dtype=torch.float64)
        for x in image_batches(data, self.config.eval_batch_size, generator, shuffle=False):
            total = total + _per_replica_sum(bound(x)).cpu()
        return (total / len(data)).tolist()

    def _validation_elbo(self, epoch: int) -> list[float] | None:
        if self.valid is None:
            return None
        generator = self._generators(_VALID, epoch)

        def elbo(x: Tensor) -> Tensor:
            return self.model.elbo(x, 1, generator)

        with torch.no_grad():
            return self._mean_over(self.valid, generator, elbo)

    def _test_bounds(self) -> tuple[list[float], list[float]]:
        """Per replica, the test ELBO (one sample per image) and IWAE bound (``iwae_k``
        samples), in nats per image.

        Both see the same binarized batches: each batch is drawn once and evaluated twice. The
        IWAE chunks are those of a single run (so replica ``i`` draws as one), ``R`` times the
        rows.
        """
        config, model = self.config, self.model
        generator = self._generators(_TEST)
        chunk = max(1, min(config.iwae_k, _IWAE_ROWS // config.eval_batch_size))
        elbo = iwae = torch.zeros((), dtype=torch.float64)
        with torch.no_grad():
            for x in image_batches(self.test, config.eval_batch_size, generator, shuffle=False):
                elbo = elbo + _per_replica_sum(model.elbo(x, 1, generator)).cpu()
                bound = model.iwae_bound(x, config.iwae_k, chunk, generator)
                iwae = iwae + _per_replica_sum(bound).cpu()
        return (elbo / len(self.test)).tolist(), (iwae / len(self.test)).tolist()

    def summarise(self) -> dict[str, Any]:
        """The contents of ``metrics.json`` (:data:`SUMMARY_KEYS`)."""
        config, state = self.config, self.state
        self.model.eval()
        test_elbo, test_iwae = self._test_bounds()
        last = state.history[-1] if state.history else {"epoch": 0}
        per_run = {
            "train_elbo": last.get("train_elbo"),
            "valid_elbo": last.get("valid_elbo"),
            "test_elbo": test_elbo,
            "test_iwae": test_iwae,
        }
        settings = (
            *("latent", "arch", "objective", "estimator", "num_samples", "batch_size", "lr"),
            "seed",
        )
        return {
            **(per_run if config.seeds > 1 else _first(per_run, PER_RUN)),
            "iwae_k": config.iwae_k,
            "epochs": last["epoch"],
            "steps": state.step,
            "epoch_seconds": [row["seconds"] for row in state.history],
            **{name: getattr(config, name) for name in settings},
            "seeds": config.seed_list(),
            "binarize": config.binarize,
            "device": config.device,
            "torch": str(torch.__version__),
        }

    def plot(self, summary: dict[str, Any]) -> None:
        # Imported here: matplotlib takes most of a second to import, which every `samplegrad`
        # command (the CLI imports this module) would otherwise pay.
        from samplegrad.lab.plots import vae as plots

        config = self.config
        generator = generators([config.seed], _PLOT, 0, config.device)
        model = self.model if config.seeds == 1 else replica(self.model, 0)
        plots.plot_run(model, self.test, self.state.history, Path(config.out), generator)


def _first(values: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """``values``' per-replica lists under ``keys`` as the one replica's numbers (one seed)."""
    return {key: None if values[key] is None else values[key][0] for key in keys}


def fit(config: TrainConfig, *, on_step: OnStep | None = None) -> dict[str, Any]:
    """Train the VAE of ``config``; return the final metrics (also in ``out/metrics.json``).

    Under ``torchrun``, every process calls it and they train together (module docstring,
    "Many processes"); it joins the process group unless one is open, and leaves what it joined.

    Args:
        config: the run (see :class:`TrainConfig`).
        on_step: called after every optimiser step with the step count and the batch's mean
            ELBO estimate (for logging, early stopping by a signal, or tests).

    Returns and raises as :func:`samplegrad.lab.training.loop.train`: the summary (the
    :data:`SUMMARY_KEYS` of ``metrics.json``), or ``{"interrupted": ...}`` after a signal.
    """
    return train(VAETrainer(config), on_step)
