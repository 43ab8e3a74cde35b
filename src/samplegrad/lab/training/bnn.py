"""Training loop for the Bayesian classifiers of :mod:`samplegrad.lab.models.bnn` on MNIST.

>>> from samplegrad.lab.training.bnn import BNNConfig, fit_bnn
>>> metrics = fit_bnn(BNNConfig(layer="flipout", epochs=3, out="runs/bnn"))  # doctest: +SKIP
>>> metrics["test_accuracy"], metrics["test_ece"]  # doctest: +SKIP

The ``samplegrad train bnn`` command is a thin layer over :func:`fit_bnn`.

**Objective.** Adam on the negative ELBO per training example, ``mean NLL + KL / N_train``,
with one weight draw per step (:meth:`samplegrad.lab.models.bnn.BayesianClassifier.loss`):
``N_train`` is the number of training images (``60000 - validation_size``), so the KL counts
once per pass over the data. Images are grey levels in ``[0, 1]``.

**Evaluation.** The predictive is the mean of the softmax over ``eval_samples`` (``K``)
posterior draws. On the test set: accuracy of its argmax, negative log-likelihood
``-log p(y | x)`` in nats per image, and the expected calibration error with 15 equal-width
confidence bins (:mod:`samplegrad.lab.training.calibration`); the mean predictive entropy of the
test images and of as many uniform-noise images (out of distribution: a good posterior is less sure
of them).

**What a run writes into** ``config.out``: ``metrics.csv`` (one row per epoch:
:data:`CSV_COLUMNS`; the training loss and NLL are means over the epoch's batches, validation
with ``K`` draws, ``seconds`` is the epoch's training time), ``checkpoint.pt`` (atomically, at
every epoch end and on SIGINT/SIGTERM, which stop after the current step; ``resume`` continues
it, and on the CPU reaches the same parameters as an uninterrupted run), ``metrics.json``
(:data:`SUMMARY_KEYS`) and the plots of :mod:`samplegrad.lab.plots.bnn`. ``steps`` trains for a
number of optimiser steps instead of ``epochs``, as :mod:`samplegrad.lab.training.vae` does.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from samplegrad.lab.data import MNIST, load_mnist
from samplegrad.lab.models.bnn import BayesianClassifier, BayesianCNN, BayesianMLP, BNNLoss
from samplegrad.lab.training.calibration import (
    ECE_BINS,
    expected_calibration_error,
    predictive_entropy,
)
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
from samplegrad.nn.bayesian import DEFAULT_INIT_SCALE, Layer, kl_divergence

__all__ = ["ARCHS", "CSV_COLUMNS", "SUMMARY_KEYS", "BNNConfig", "TrainError", "fit_bnn"]

ARCHS = ("mlp", "cnn")
"""``mlp``: 784-400-400-10; ``cnn``: two 5 x 5 convolutions and 1568-128-10."""

CSV_COLUMNS = (
    "epoch",
    "step",
    "train_loss",
    "train_nll",
    "valid_accuracy",
    "valid_nll",
    "seconds",
)

SUMMARY_KEYS = (
    "test_accuracy",
    "test_nll",
    "test_ece",
    "ece_bins",
    "eval_samples",
    "entropy_test",
    "entropy_noise",
    "train_loss",
    "train_nll",
    "kl_per_example",
    "valid_accuracy",
    "valid_nll",
    "epochs",
    "steps",
    "epoch_seconds",
    "num_train",
    "arch",
    "layer",
    "batch_size",
    "lr",
    "prior_scale",
    "init_scale",
    "seed",
    "device",
    "torch",
)
"""The keys of ``metrics.json``, which :func:`fit_bnn` also returns."""

MUST_MATCH_ON_RESUME = (
    "arch",
    "layer",
    "batch_size",
    "prior_scale",
    "init_scale",
    "seed",
    "validation_size",
    "device",
)
"""Config fields a resumed run must share with its checkpoint (the model, the objective and
what fixes the data order and the random streams)."""

CHECKPOINT = "checkpoint.pt"
_CHECKPOINT_FORMAT = 1

# Random streams, combined with the seed (and the epoch) into independent generator seeds.
_INIT, _DATA, _SAMPLING, _VALID, _TEST, _NOISE = range(6)


@dataclasses.dataclass
class BNNConfig:
    """Everything a BNN training run depends on; the command line's options, one for one.

    Attributes:
        arch: ``"mlp"`` or ``"cnn"`` (:data:`ARCHS`).
        layer: how the weights are sampled: ``"flipout"``, ``"local-reparam"`` or ``"naive"``.
        epochs: passes over the training split; ignored when ``steps`` is set.
        steps: optimiser steps to train for, instead of ``epochs``.
        batch_size, lr: of the Adam steps.
        prior_scale: the ``s`` of every weight's ``N(0, s^2)`` prior.
        init_scale: every posterior standard deviation at initialisation.
        eval_samples: posterior draws ``K`` averaged by the predictive when evaluating.
        seed: seeds every random stream (initialisation, data order, weight noise, evaluation).
        data_dir: the folder with the MNIST files; ``None`` searches as
            :func:`samplegrad.lab.data.find_mnist` does.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        out: the output folder, created if missing.
        resume: continue from ``out/checkpoint.pt`` instead of starting afresh.
        validation_size: training images held out for validation (0: none, train on 60 000).
        eval_batch_size: images per batch when evaluating.
        progress: show a progress bar (only on a terminal).
        compile: compile the loss (forward and backward) and the Adam step with
            ``torch.compile``; the first steps then take tens of seconds.
    """

    arch: str = "mlp"
    layer: str = "flipout"
    epochs: int = 5
    steps: int | None = None
    batch_size: int = 128
    lr: float = 1e-3
    prior_scale: float = 1.0
    init_scale: float = DEFAULT_INIT_SCALE
    eval_samples: int = 10
    seed: int = 0
    data_dir: str | None = None
    device: str = "cpu"
    out: str = "bnn-out"
    resume: bool = False
    validation_size: int = 10_000
    eval_batch_size: int = 1000
    progress: bool = True
    compile: bool = False

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise TrainError(f"arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        try:
            self.layer = Layer(self.layer).value
        except ValueError:
            choices = ", ".join(layer.value for layer in Layer)
            raise TrainError(f"layer must be one of {choices}, got {self.layer!r}") from None
        for name in ("epochs", "batch_size", "eval_samples", "eval_batch_size"):
            check_int(name, getattr(self, name), minimum=1)
        if self.steps is not None:
            check_int("steps", self.steps, minimum=1)
        check_int("validation_size", self.validation_size, minimum=0)
        check_int("seed", self.seed, minimum=0)
        for name in ("lr", "prior_scale", "init_scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TrainError(f"{name} must be a finite number > 0, got {value!r}")
            if not (math.isfinite(value) and value > 0):
                raise TrainError(f"{name} must be a finite number > 0, got {value!r}")
        self.device = str(check_device(self.device))
        self.out = os.fspath(self.out)
        self.data_dir = None if self.data_dir is None else os.fspath(self.data_dir)


def _generator(config: BNNConfig, stream: int, epoch: int = 0) -> torch.Generator:
    return stream_generator(config.seed, stream, epoch, config.device)


def build_model(config: BNNConfig) -> BayesianClassifier:
    """The model of ``config`` on its device, initialised from its seed (the global random
    state is left alone)."""
    options = {"prior_scale": config.prior_scale, "init_scale": config.init_scale}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed(config.seed, _INIT))
        if config.arch == "mlp":
            model: BayesianClassifier = BayesianMLP(config.layer, **options)
        else:
            model = BayesianCNN(config.layer, **options)
    return model.to(config.device)


@dataclasses.dataclass
class _State:
    """What a checkpoint restores besides the model and optimiser."""

    step: int = 0
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    loss_sum: float = 0.0  # sums over the batches of the epoch in progress
    nll_sum: float = 0.0
    batches: int = 0
    epoch_seconds: float = 0.0


@dataclasses.dataclass
class _Run:
    config: BNNConfig
    model: BayesianClassifier
    optimizer: torch.optim.Optimizer
    sampling: torch.Generator
    num_train: int
    state: _State
    step: Callable[[Tensor, Tensor], BNNLoss] = dataclasses.field(init=False)
    """One optimiser step on ``(x, y)``; returns the (detached) loss terms."""

    def __post_init__(self) -> None:
        self.step = _training_step(self)


def _training_step(run: _Run) -> Callable[[Tensor, Tensor], BNNLoss]:
    """Zero the gradients, the ELBO loss, backward, Adam; eager or, with ``config.compile``,
    the loss and the optimiser step compiled (as
    :func:`samplegrad.lab.training.vae.training_step`)."""
    model, optimizer = run.model, run.optimizer

    def loss(x: Tensor, y: Tensor) -> BNNLoss:
        return model.loss(x, y, run.num_train, run.sampling)

    optimizer_step = optimizer.step
    if run.config.compile:
        device = run.config.device
        loss, optimizer_step = compile_for(loss, device), compile_for(optimizer.step, device)

    def step(x: Tensor, y: Tensor) -> BNNLoss:
        optimizer.zero_grad(set_to_none=True)
        output = loss(x, y)
        output.loss.backward()
        optimizer_step()
        return output

    return step


def _save(run: _Run) -> Path:
    payload = {
        "format": _CHECKPOINT_FORMAT,
        "config": dataclasses.asdict(run.config),
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "sampling_generator": run.sampling.get_state(),
        "state": dataclasses.asdict(run.state),
        "torch": str(torch.__version__),
    }
    return save_checkpoint(Path(run.config.out) / CHECKPOINT, payload)


def _start(config: BNNConfig, num_train: int) -> _Run:
    """A fresh run, or the one restored from the checkpoint when ``config.resume``."""
    path = Path(config.out) / CHECKPOINT
    refuse_to_overwrite(path, config.resume)
    model = build_model(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    run = _Run(config, model, optimizer, _generator(config, _SAMPLING), num_train, _State())
    if config.resume:
        payload = read_checkpoint(
            path,
            "cannot resume: ",
            "run without --resume (resume=False) to start training, or point --out at the "
            "folder of the run to continue",
        )
        check_compatible(config, payload.get("config", {}), path, MUST_MATCH_ON_RESUME)
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        run.sampling.set_state(payload["sampling_generator"])
        run.state = _State(**payload["state"])
        for group in optimizer.param_groups:
            group["lr"] = config.lr
    return run


# --------------------------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def _predict(run: _Run, images: Tensor, generator: torch.Generator) -> Tensor:
    """The predictive probabilities of ``images`` (grey levels), in evaluation batches."""
    size = run.config.eval_batch_size
    return torch.cat(
        [
            run.model.predict(images[start : start + size], run.config.eval_samples, generator)
            for start in range(0, len(images), size)
        ]
    )


def _nll(probs: Tensor, labels: Tensor) -> float:
    """``-mean log p(y | x)``; a probability that underflows to 0 counts as ``tiny``."""
    picked = probs.gather(1, labels[:, None]).squeeze(1)
    return float(-picked.clamp_min(torch.finfo(probs.dtype).tiny).log().mean())


def _accuracy(probs: Tensor, labels: Tensor) -> float:
    return float((probs.argmax(-1) == labels).double().mean())


def _noise_images(config: BNNConfig, count: int) -> Tensor:
    """``count`` images of independent uniform grey levels: out-of-distribution inputs."""
    generator = _generator(config, _NOISE)
    return torch.rand(count, 28 * 28, generator=generator, device=config.device)


# --------------------------------------------------------------------------------------------
# The loop


def _train_steps(
    run: _Run,
    train: MNIST,
    total: int,
    stop: Stop,
    bar: tqdm,
    on_step: Callable[[int, float], None] | None,
) -> None:
    """Train through the rest of the current epoch, or until ``total`` steps or a signal."""
    config, state = run.config, run.state
    per_epoch = math.ceil(len(train) / config.batch_size)
    epoch, done = divmod(state.step, per_epoch)
    batches = train.batches(config.batch_size, generator=_generator(config, _DATA, epoch))
    # Skipping the batches already trained on draws them again: the epoch's generator ends
    # in the same state as in an uninterrupted run.
    sums = torch.zeros(2, dtype=torch.float64, device=config.device)  # loss, NLL
    last = time.perf_counter()
    try:
        for x, y in islice(batches, done, None):
            loss = run.step(x, y)
            state.step += 1
            sums += torch.stack([loss.loss.detach(), loss.nll.detach()])  # no host sync
            state.batches += 1
            bar.update(1)
            if bar.disable is False and state.step % POSTFIX_EVERY == 0:
                bar.set_postfix(nll=f"{loss.nll.item():.3f}", refresh=False)
            if on_step is not None:
                on_step(state.step, loss.loss.item())
            if state.step >= total or stop.signum is not None:
                return
    finally:
        loss_sum, nll_sum = sums.tolist()  # waits for the device: the time is the work's
        state.loss_sum += loss_sum
        state.nll_sum += nll_sum
        state.epoch_seconds += time.perf_counter() - last


def _close_epoch(run: _Run, valid: MNIST | None, per_epoch: int) -> None:
    """Append the epoch's row; at an epoch boundary, reset the epoch's sums (after a final
    partial epoch they stay open, for :func:`samplegrad.lab.training.runs.reopen_partial_epoch`)."""
    state = run.state
    epoch = math.ceil(state.step / per_epoch)
    accuracy = nll = None
    if valid is not None:
        run.model.eval()
        probs = _predict(run, valid.images, _generator(run.config, _VALID, epoch))
        run.model.train()
        accuracy, nll = _accuracy(probs, valid.labels), _nll(probs, valid.labels)
    state.history.append(
        {
            "epoch": epoch,
            "step": state.step,
            "train_loss": state.loss_sum / state.batches,
            "train_nll": state.nll_sum / state.batches,
            "valid_accuracy": accuracy,
            "valid_nll": nll,
            "seconds": state.epoch_seconds,
        }
    )
    if state.step % per_epoch == 0:
        state.loss_sum, state.nll_sum, state.batches, state.epoch_seconds = 0.0, 0.0, 0, 0.0


def _loop(
    run: _Run,
    train: MNIST,
    valid: MNIST | None,
    stop: Stop,
    on_step: Callable[[int, float], None] | None,
) -> None:
    """Epoch after epoch until the last step or a signal; metrics and checkpoint per epoch."""
    config, state = run.config, run.state
    per_epoch = math.ceil(len(train) / config.batch_size)
    total = config.steps if config.steps is not None else config.epochs * per_epoch
    if state.step < total:
        reopen_partial_epoch(state.history, state.step, per_epoch)
    show = show_progress(config.progress)
    with tqdm(total=total, initial=min(state.step, total), disable=not show, unit="step") as bar:
        while state.step < total and stop.signum is None:
            _train_steps(run, train, total, stop, bar, on_step)
            if state.step % per_epoch == 0 or state.step >= total:
                _close_epoch(run, valid, per_epoch)
                write_csv(Path(config.out) / "metrics.csv", CSV_COLUMNS, state.history)
            _save(run)


def _load_splits(config: BNNConfig) -> tuple[MNIST, MNIST | None, MNIST]:
    def split(name: str) -> MNIST:
        return load_mnist(
            config.data_dir,
            split=name,
            validation_size=config.validation_size,
            binarize="none",
            device=config.device,
        )

    valid = split("valid") if config.validation_size else None
    return split("train"), valid, split("test")


def _summary(run: _Run, test: MNIST, probs: Tensor, noise_probs: Tensor) -> dict[str, Any]:
    """The contents of ``metrics.json`` (:data:`SUMMARY_KEYS`)."""
    config, state = run.config, run.state
    last = state.history[-1] if state.history else {}
    with torch.no_grad():
        kl = float(kl_divergence(run.model))
    return {
        "test_accuracy": _accuracy(probs, test.labels),
        "test_nll": _nll(probs, test.labels),
        "test_ece": expected_calibration_error(probs, test.labels, ECE_BINS),
        "ece_bins": ECE_BINS,
        "eval_samples": config.eval_samples,
        "entropy_test": float(predictive_entropy(probs).mean()),
        "entropy_noise": float(predictive_entropy(noise_probs).mean()),
        "train_loss": last.get("train_loss"),
        "train_nll": last.get("train_nll"),
        "kl_per_example": kl / run.num_train,
        "valid_accuracy": last.get("valid_accuracy"),
        "valid_nll": last.get("valid_nll"),
        "epochs": last.get("epoch", 0),
        "steps": state.step,
        "epoch_seconds": [row["seconds"] for row in state.history],
        "num_train": run.num_train,
        "arch": config.arch,
        "layer": config.layer,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "prior_scale": config.prior_scale,
        "init_scale": config.init_scale,
        "seed": config.seed,
        "device": config.device,
        "torch": str(torch.__version__),
    }


def fit_bnn(
    config: BNNConfig, *, on_step: Callable[[int, float], None] | None = None
) -> dict[str, Any]:
    """Train the Bayesian classifier of ``config``; return the final metrics (also in
    ``out/metrics.json``).

    Args:
        config: the run (see :class:`BNNConfig`).
        on_step: called after every optimiser step with the step count and the batch's loss.

    Returns:
        The :data:`SUMMARY_KEYS` of ``metrics.json``; if SIGINT or SIGTERM stopped training,
        instead ``{"interrupted": "SIGINT", "signal": 2, "step": ..., "checkpoint": ...}``.

    Raises:
        TrainError: an invalid or incompatible request (the message says what to change);
        samplegrad.lab.data.MNISTNotFoundError, CorruptDataError: the data cannot be read;
        OSError: ``out`` cannot be written.
    """
    train, valid, test = _load_splits(config)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    run = _start(config, len(train))
    with stop_on_signals() as stop:
        _loop(run, train, valid, stop, on_step)
    if stop.signum is not None:
        return interrupted(stop.signum, run.state.step, out / CHECKPOINT)
    run.model.eval()
    probs = _predict(run, test.images, _generator(config, _TEST))
    noise_probs = _predict(run, _noise_images(config, len(test)), _generator(config, _TEST, 1))
    summary = _summary(run, test, probs, noise_probs)
    write_json(out / "metrics.json", summary)
    # Imported here: matplotlib takes most of a second to import, which every `samplegrad`
    # command (the CLI imports this module) would otherwise pay.
    from samplegrad.lab.plots import bnn as bnn_plots

    bnn_plots.plot_bnn_run(
        probs.cpu(), test.labels.cpu(), noise_probs.cpu(), run.state.history, out
    )
    return summary
