"""Training the Bayesian classifiers of :mod:`samplegrad.lab.models.bnn` on MNIST:
:class:`BNNTrainer`, run by the one loop (:mod:`samplegrad.lab.training.loop`).

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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from samplegrad.lab.models.bnn import BayesianClassifier, BayesianCNN, BayesianMLP, BNNLoss
from samplegrad.lab.training.calibration import (
    ECE_BINS,
    expected_calibration_error,
    predictive_entropy,
)
from samplegrad.lab.training.config import EpochConfig, TrainError, epochs_option, option
from samplegrad.lab.training.data import load_splits
from samplegrad.lab.training.files import CHECKPOINT
from samplegrad.lab.training.loop import OnStep, Trainer, compiled, train
from samplegrad.lab.training.seeds import stream_generator, stream_seed
from samplegrad.nn.bayesian import DEFAULT_INIT_SCALE, Layer, kl_divergence

__all__ = [
    "ARCHS",
    "CHECKPOINT",
    "CSV_COLUMNS",
    "SUMMARY_KEYS",
    "BNNConfig",
    "BNNTrainer",
    "TrainError",
    "build_model",
    "fit_bnn",
]

ARCHS = ("mlp", "cnn")
"""``mlp``: 784-400-400-10; ``cnn``: two 5 x 5 convolutions and 1568-128-10."""

CSV_COLUMNS = ("epoch", "step", "train_loss", "train_nll", "valid_accuracy", "valid_nll", "seconds")

SUMMARY_KEYS = (
    *("test_accuracy", "test_nll", "test_ece", "ece_bins", "eval_samples"),
    *("entropy_test", "entropy_noise", "train_loss", "train_nll", "kl_per_example"),
    *("valid_accuracy", "valid_nll", "epochs", "steps", "epoch_seconds", "num_train"),
    *("arch", "layer", "batch_size", "lr", "prior_scale", "init_scale", "seed", "device"),
    "torch",
)
"""The keys of ``metrics.json``, which :func:`fit_bnn` also returns."""

# Random streams, combined with the seed (and the epoch) into independent generator seeds.
_INIT, _DATA, _SAMPLING, _VALID, _TEST, _NOISE = range(6)


_COMPILE_HELP = (
    "compile the loss and the Adam step with torch.compile (on CUDA also a CUDA graph); the "
    "first steps take tens of seconds"
)
_ARCH_HELP = (
    "mlp: 784-400-400-10; cnn: two 5x5 convolutions (16 and 32 channels, 2x2 max pooling) and "
    "1568-128-10"
)
_LAYER_HELP = (
    "how weights are sampled: Flipout (pseudo-independent per example), local "
    "reparameterization (pre-activations per example) or naive (one draw per batch)"
)
_PRIOR_HELP = "standard deviation of every weight's N(0, S^2) prior"
_INIT_HELP = "every posterior standard deviation at initialisation"
_EVAL_HELP = "posterior draws averaged by the predictive when evaluating"


@dataclasses.dataclass(kw_only=True)
class BNNConfig(EpochConfig):
    """Everything a BNN training run depends on (these fields and those of
    :class:`~samplegrad.lab.training.config.EpochConfig`); the command line's options.

    Attributes:
        arch: ``"mlp"`` or ``"cnn"`` (:data:`ARCHS`).
        layer: how the weights are sampled: ``"flipout"``, ``"local-reparam"`` or ``"naive"``.
        prior_scale: the ``s`` of every weight's ``N(0, s^2)`` prior.
        init_scale: every posterior standard deviation at initialisation.
        eval_samples: posterior draws ``K`` averaged by the predictive when evaluating.
        compile: compile the loss (forward and backward) and the Adam step with
            ``torch.compile``; the first steps then take tens of seconds.
    """

    MUST_MATCH_ON_RESUME: ClassVar[tuple[str, ...]] = (
        *("arch", "layer", "batch_size", "prior_scale", "init_scale", "seed"),
        *("validation_size", "device"),
    )

    arch: str = option("mlp", _ARCH_HELP, choices=ARCHS)
    layer: str = option("flipout", _LAYER_HELP, choices=tuple(Layer))
    epochs: int = epochs_option(5)
    prior_scale: float = option(1.0, _PRIOR_HELP, metavar="S", positive=True)
    init_scale: float = option(DEFAULT_INIT_SCALE, _INIT_HELP, metavar="S", positive=True)
    eval_samples: int = option(10, _EVAL_HELP, metavar="K", minimum=1)
    out: str = option("bnn-out", "output folder, created if missing", metavar="DIR")
    compile: bool = option(False, _COMPILE_HELP)


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


def _training_step(
    model: BayesianClassifier,
    optimizer: torch.optim.Optimizer,
    num_train: int,
    generator: torch.Generator,
    compile: bool,
) -> Callable[[Tensor, Tensor], BNNLoss]:
    """Zero the gradients, the ELBO loss, backward, Adam; eager or, with ``compile``, the loss
    and the optimiser step compiled (:func:`samplegrad.lab.training.loop.compiled`)."""

    def elbo_loss(x: Tensor, y: Tensor) -> BNNLoss:
        return model.loss(x, y, num_train, generator)

    device = next(model.parameters()).device
    loss, optimizer_step = compiled(elbo_loss, optimizer, compile, device)

    def step(x: Tensor, y: Tensor) -> BNNLoss:
        optimizer.zero_grad(set_to_none=True)
        output = loss(x, y)
        output.loss.backward()
        optimizer_step()
        return output

    return step


@dataclasses.dataclass
class _State:
    """What a checkpoint restores besides the model and optimiser."""

    step: int = 0
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    loss_sum: float = 0.0  # sums over the batches of the epoch in progress
    nll_sum: float = 0.0
    batches: int = 0
    epoch_seconds: float = 0.0


def _nll(probs: Tensor, labels: Tensor) -> float:
    """``-mean log p(y | x)``; a probability that underflows to 0 counts as ``tiny``."""
    picked = probs.gather(1, labels[:, None]).squeeze(1)
    return float(-picked.clamp_min(torch.finfo(probs.dtype).tiny).log().mean())


def _accuracy(probs: Tensor, labels: Tensor) -> float:
    return float((probs.argmax(-1) == labels).double().mean())


class BNNTrainer(Trainer):
    """A Bayesian classifier on MNIST (module docstring): a row of ``metrics.csv`` per epoch;
    accuracy, NLL, calibration and predictive entropies in ``metrics.json``."""

    command = "bnn"
    checkpoint_format = 1
    progress_label = "loss"

    def __init__(self, config: BNNConfig) -> None:
        self.config = config

    def _generator(self, stream: int, epoch: int = 0) -> torch.Generator:
        return stream_generator(self.config.seed, stream, epoch, self.config.device)

    def build(self) -> None:
        self.model = build_model(self.config)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.lr)
        self.sampling = self._generator(_SAMPLING)
        self.state = _State()
        self._sums = torch.zeros(2, dtype=torch.float64, device=self.config.device)  # loss, NLL

    def load_data(self) -> None:
        config = self.config
        self.train, self.valid, self.test = load_splits(config, "none")
        self.num_train = len(self.train)
        self._step = _training_step(
            self.model, self.optimizer, self.num_train, self.sampling, config.compile
        )
        self.period = config.steps_per_epoch(self.num_train)
        self.total_steps = config.total_steps(self.num_train)

    def batches(self, period: int) -> Any:
        generator = self._generator(_DATA, period)
        return self.train.batches(self.config.batch_size, generator=generator)

    def step(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        loss = self._step(*batch)
        self._sums += torch.stack([loss.loss.detach(), loss.nll.detach()])  # no host sync
        self.state.batches += 1
        return loss.loss.detach()

    def end_stretch(self, started: float) -> None:
        loss_sum, nll_sum = self._sums.tolist()  # waits for the device: the time is the work's
        self._sums.zero_()
        self.state.loss_sum += loss_sum
        self.state.nll_sum += nll_sum
        self.state.epoch_seconds += time.perf_counter() - started

    @torch.no_grad()
    def _predict(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """The predictive probabilities of ``images`` (grey levels), in evaluation batches."""
        size, samples = self.config.eval_batch_size, self.config.eval_samples
        return torch.cat(
            [
                self.model.predict(images[start : start + size], samples, generator)
                for start in range(0, len(images), size)
            ]
        )

    def close_period(self, number: int, whole: bool) -> None:
        """The epoch's row; at an epoch boundary the epoch's sums start afresh."""
        state, valid = self.state, self.valid
        accuracy = nll = None
        if valid is not None:
            self.model.eval()
            probs = self._predict(valid.images, self._generator(_VALID, number))
            self.model.train()
            accuracy, nll = _accuracy(probs, valid.labels), _nll(probs, valid.labels)
        state.history.append(
            {
                "epoch": number,
                "step": state.step,
                "train_loss": state.loss_sum / state.batches,
                "train_nll": state.nll_sum / state.batches,
                "valid_accuracy": accuracy,
                "valid_nll": nll,
                "seconds": state.epoch_seconds,
            }
        )
        if whole:
            state.loss_sum, state.nll_sum, state.batches, state.epoch_seconds = 0.0, 0.0, 0, 0.0

    def metrics(self) -> tuple[tuple[str, ...], list[dict[str, Any]]]:
        return CSV_COLUMNS, self.state.history

    def saved(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "sampling_generator": self.sampling.get_state()}

    def restore(self, payload: dict[str, Any]) -> None:
        self.model.load_state_dict(payload["model"])
        self.sampling.set_state(payload["sampling_generator"])

    def summarise(self) -> dict[str, Any]:
        """The contents of ``metrics.json`` (:data:`SUMMARY_KEYS`)."""
        config, state, test = self.config, self.state, self.test
        self.model.eval()
        self.probs = self._predict(test.images, self._generator(_TEST))
        noise = torch.rand(
            len(test), 28 * 28, generator=self._generator(_NOISE), device=config.device
        )  # out-of-distribution inputs: independent uniform grey levels
        self.noise_probs = self._predict(noise, self._generator(_TEST, 1))
        last = state.history[-1] if state.history else {}
        with torch.no_grad():
            kl = float(kl_divergence(self.model))
        settings = ("arch", "layer", "batch_size", "lr", "prior_scale", "init_scale", "seed")
        return {
            "test_accuracy": _accuracy(self.probs, test.labels),
            "test_nll": _nll(self.probs, test.labels),
            "test_ece": expected_calibration_error(self.probs, test.labels, ECE_BINS),
            "ece_bins": ECE_BINS,
            "eval_samples": config.eval_samples,
            "entropy_test": float(predictive_entropy(self.probs).mean()),
            "entropy_noise": float(predictive_entropy(self.noise_probs).mean()),
            **{key: last.get(key) for key in ("train_loss", "train_nll")},
            "kl_per_example": kl / self.num_train,
            **{key: last.get(key) for key in ("valid_accuracy", "valid_nll")},
            "epochs": last.get("epoch", 0),
            "steps": state.step,
            "epoch_seconds": [row["seconds"] for row in state.history],
            "num_train": self.num_train,
            **{name: getattr(config, name) for name in settings},
            "device": config.device,
            "torch": str(torch.__version__),
        }

    def plot(self, summary: dict[str, Any]) -> None:
        # Imported here: matplotlib takes most of a second to import, which every `samplegrad`
        # command (the CLI imports this module) would otherwise pay.
        from samplegrad.lab.plots import bnn as plots

        labels, history = self.test.labels.cpu(), self.state.history
        out = Path(self.config.out)
        plots.plot_bnn_run(self.probs.cpu(), labels, self.noise_probs.cpu(), history, out)


def fit_bnn(config: BNNConfig, *, on_step: OnStep | None = None) -> dict[str, Any]:
    """Train the Bayesian classifier of ``config``; return the final metrics (also in
    ``out/metrics.json``).

    Args:
        config: the run (see :class:`BNNConfig`).
        on_step: called after every optimiser step with the step count and the batch's loss.

    Returns and raises as :func:`samplegrad.lab.training.loop.train`: the summary (the
    :data:`SUMMARY_KEYS` of ``metrics.json``), or ``{"interrupted": ...}`` after a signal.
    """
    return train(BNNTrainer(config), on_step)
