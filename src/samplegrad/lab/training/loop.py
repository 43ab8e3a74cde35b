"""The one training loop: every ``samplegrad train`` command is a :class:`Trainer` run by
:func:`train`.

A trainer (:mod:`~samplegrad.lab.training.vae`, :mod:`~samplegrad.lab.training.bnn`,
:mod:`~samplegrad.lab.training.policy`) says what its run is: how to build its models, load its
data, take one optimiser step, close a period (an epoch, or the steps between two
validations) with a metrics row, save and restore its state, summarise and plot. The loop owns
the rest, the same for all of them:

1. **Checks before any data is loaded.** The config checks itself when it is made
   (:class:`~samplegrad.lab.training.config.RunConfig`); :meth:`Trainer.build` makes the models
   and the estimator, which refuses a ``num_samples`` it cannot take; a fresh run refuses to
   overwrite a checkpoint, and a resumed one reads its checkpoint and checks the format number
   and the config (:func:`~samplegrad.lab.training.files.read_for_resume`). Only then is the
   output folder made and locked for the run (:mod:`~samplegrad.lab.training.lock`: a second
   run into it stops with a message naming the first) and the data read; a size the data
   cannot give (``validation_size`` of a small folder) is a
   :class:`~samplegrad.lab.training.config.TrainError` too. A resumed run that has nothing
   left to train says so and evaluates its checkpoint again.
2. **Steps.** Step ``k`` of a period of ``P`` steps is the ``k % P``-th input of
   :meth:`Trainer.batches`: a resumed run skips (and so draws again) the inputs already trained
   on, and ends where an uninterrupted run does. The progress bar shows the step's number every
   :data:`POSTFIX_EVERY` steps (each read waits for the device); ``on_step(step, value)`` is
   called after every step.
3. **Files.** At the end of a period, and when the run ends, the trainer closes the period and
   rank 0 rewrites ``metrics.csv``; after every stretch of steps it saves ``checkpoint.pt``
   (atomically, :mod:`~samplegrad.lab.training.files`); after the last step it writes
   ``metrics.json`` and then the plots, so a plotting failure loses nothing else.
4. **Signals.** SIGINT and SIGTERM finish the step, write the checkpoint and stop
   (:mod:`~samplegrad.lab.training.signals`); :func:`train` then returns
   ``{"interrupted": ..., ...}`` instead of the summary.
5. **Processes.** Under ``torchrun``, for a trainer that supports it (``many_processes``), the
   loop joins the process group (:mod:`~samplegrad.lab.training.distributed`), every process
   stops after the same step, and rank 0 alone writes; the others get rank 0's summary.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import math
import sys
import time
from collections.abc import Callable, Iterable
from itertools import islice
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor
from tqdm.auto import tqdm

from samplegrad.lab.data import CorruptDataError
from samplegrad.lab.training import distributed
from samplegrad.lab.training.config import RunConfig, TrainError
from samplegrad.lab.training.files import (
    CHECKPOINT,
    read_for_resume,
    refuse_to_overwrite,
    save_checkpoint,
    write_csv,
    write_json,
)
from samplegrad.lab.training.lock import exclusive_folder
from samplegrad.lab.training.signals import Stop, interrupted, stop_on_signals

POSTFIX_EVERY = 50
"""Steps between updates of the progress bar's number: each reads one value back from the
device, which would otherwise stall an asynchronous device every step."""

OnStep = Callable[[int, float], None]
"""``on_step(step, value)``: called after every optimiser step with the step count and the
step's number (the trainer's :attr:`Trainer.progress_label`)."""


class Trainer(abc.ABC):
    """One kind of training run, as :func:`train` drives it.

    :meth:`build` sets :attr:`optimizer` and :attr:`state` (a dataclass with at least ``step``,
    the optimiser steps taken, and ``history``, the metrics rows: what the checkpoint restores
    besides the modules); :meth:`load_data` sets :attr:`period` and :attr:`total_steps`.
    """

    command: ClassVar[str]
    """The command that runs it, ``samplegrad train <command>``: saved in its checkpoints, so
    a checkpoint given to another command is named for what it is."""
    checkpoint_format: ClassVar[int]
    """Written into every checkpoint and checked on every resume: raise it when what
    :meth:`saved` or the state hold changes meaning."""
    progress_label: ClassVar[str]
    """The name of the number a step returns, beside the progress bar."""
    rows_per_step: ClassVar[bool] = False
    """Whether the metrics rows are per step (closing a period only fills in its validation,
    so a signal closes the period too) rather than per period (a signal leaves the period open
    in the checkpoint, and a period a ``steps`` budget ended early is reopened on resume)."""
    many_processes: ClassVar[bool] = False
    """Whether the trainer runs under ``torchrun`` (its :meth:`step` shares the work)."""

    config: RunConfig
    state: Any
    optimizer: torch.optim.Optimizer
    period: int
    """Steps in a period: an epoch, or the steps between two validations."""
    total_steps: int
    """Steps the run takes at most (the progress bar's length)."""

    @abc.abstractmethod
    def build(self) -> None:
        """The models, estimator, optimiser and a fresh state, before any data is read;
        :class:`TrainError` for a request they refuse."""

    @abc.abstractmethod
    def load_data(self) -> None:
        """Read the data (``ValueError`` for a size it cannot give); set :attr:`period` and
        :attr:`total_steps`."""

    def finished(self) -> bool:
        """Whether training is over (by default: after :attr:`total_steps`)."""
        return self.state.step >= self.total_steps

    @abc.abstractmethod
    def batches(self, period: int) -> Iterable[Any]:
        """The inputs of the steps of period ``period`` (0-based), in order."""

    @abc.abstractmethod
    def step(self, batch: Any) -> Tensor | float:
        """One optimiser step; returns its number (a tensor is shown by its mean, and read
        from the device only when shown)."""

    @abc.abstractmethod
    def end_stretch(self, started: float) -> None:
        """After a stretch of steps that began at ``time.perf_counter()`` ``started``: fold
        what the steps summed on the device into the state (one read of the device)."""

    @abc.abstractmethod
    def close_period(self, number: int, whole: bool) -> None:
        """Record period ``number`` (1-based) in the history; ``whole`` is false for the last,
        partial period of a run that ended mid-period."""

    @abc.abstractmethod
    def metrics(self) -> tuple[tuple[str, ...], list[dict[str, Any]]]:
        """The columns and rows of ``metrics.csv``."""

    @abc.abstractmethod
    def saved(self) -> dict[str, Any]:
        """What the checkpoint holds besides the optimiser, the state and the config."""

    @abc.abstractmethod
    def restore(self, payload: dict[str, Any]) -> None:
        """Load :meth:`saved`'s part of a checkpoint."""

    @abc.abstractmethod
    def summarise(self) -> dict[str, Any]:
        """The final evaluation: the contents of ``metrics.json``."""

    @abc.abstractmethod
    def plot(self, summary: dict[str, Any]) -> None:
        """Write the figures into the output folder (matplotlib is imported here)."""


def train(trainer: Trainer, on_step: OnStep | None = None) -> dict[str, Any]:
    """Run ``trainer`` to its end (module docstring); return its summary, also written to
    ``out/metrics.json``, or if a signal stopped it
    ``{"interrupted": "SIGINT", "signal": 2, "step": ..., "checkpoint": ...}``.

    Raises:
        TrainError: an invalid or incompatible request (the message says what to change);
        samplegrad.lab.data.MNISTNotFoundError, CorruptDataError: the data cannot be read;
        OSError: the output folder cannot be written.
    """
    config = trainer.config
    if distributed.launched_processes() > 1 and not trainer.many_processes:
        raise TrainError(
            f"{type(trainer).__name__} trains in one process; run it without torchrun "
            "(torchrun is for `samplegrad train vae`)"
        )
    out = Path(config.out)
    with distributed.process_group(torch.device(config.device)):
        trainer.build()
        # The output folder is made and locked by the process that writes once the request
        # has passed its checks: a second run into the same folder stops here, naming the
        # first, and a folder made for a run that fails before writing is removed again.
        with exclusive_folder(out) if distributed.is_main() else contextlib.nullcontext():
            refuse_to_overwrite(config)
            payload = read_for_resume(config, trainer.checkpoint_format) if config.resume else None
            _load_data(trainer)
            if payload is not None:
                _restore(trainer, payload)
                if trainer.finished() and distributed.is_main():
                    print(
                        f"note: the checkpoint in {out} is at step {trainer.state.step} and "
                        f"this run ends at step {trainer.total_steps}: nothing left to train; "
                        "evaluating the checkpoint again",
                        file=sys.stderr,
                    )
            with stop_on_signals() as stop:
                _run(trainer, stop, on_step)
            if stop.signum is not None:
                return interrupted(stop.signum, trainer.state.step, out / CHECKPOINT)
            summary = None
            if distributed.is_main():
                summary = trainer.summarise()
                write_json(out / "metrics.json", summary)
                trainer.plot(summary)
        return distributed.broadcast(summary)


def _load_data(trainer: Trainer) -> None:
    """:meth:`Trainer.load_data`, a size the data cannot give turned into a TrainError."""
    try:
        trainer.load_data()
    except (TrainError, CorruptDataError):
        raise
    except ValueError as error:  # e.g. a validation_size the data cannot give
        raise TrainError(str(error)) from None


def _restore(trainer: Trainer, payload: dict[str, Any]) -> None:
    """Continue the checkpointed run: its optimiser (at the config's ``lr``), state and
    modules; a partial period that a ``steps`` budget closed is reopened if training goes on."""
    trainer.optimizer.load_state_dict(payload["optimizer"])
    for group in trainer.optimizer.param_groups:
        group["lr"] = trainer.config.lr
    trainer.state = type(trainer.state)(**payload["state"])
    trainer.restore(payload)
    history, step = trainer.state.history, trainer.state.step
    partial = history and history[-1]["step"] == step and step % trainer.period
    if not trainer.rows_per_step and partial and not trainer.finished():
        history.pop()  # its sums are still open; the period gets one row when it ends


def _save(trainer: Trainer) -> None:
    saved = {
        "trainer": trainer.command,
        **trainer.saved(),
        "optimizer": trainer.optimizer.state_dict(),
        "state": dataclasses.asdict(trainer.state),
    }
    save_checkpoint(trainer.config, trainer.checkpoint_format, saved)


def _show_progress(requested: bool) -> bool:
    """Whether to draw a progress bar: when ``requested`` and stderr is a terminal."""
    return requested and sys.stderr.isatty()


def _number(value: Tensor | float) -> float:
    return float(value.mean()) if isinstance(value, Tensor) else float(value)


def _run(trainer: Trainer, stop: Stop, on_step: OnStep | None) -> None:
    """Stretches of steps, each to the end of its period, the end of training or a signal;
    then the period's row, ``metrics.csv`` and the checkpoint."""
    state, config = trainer.state, trainer.config
    main, device = distributed.is_main(), torch.device(config.device)
    together = distributed.world_size() > 1
    show = _show_progress(config.progress) and main
    total = trainer.total_steps
    with tqdm(total=total, initial=min(state.step, total), disable=not show, unit="step") as bar:
        while not trainer.finished() and stop.signum is None:
            started = time.perf_counter()
            period, done = divmod(state.step, trainer.period)
            for batch in islice(trainer.batches(period), done, None):
                value = trainer.step(batch)
                state.step += 1
                bar.update(1)
                if not bar.disable and state.step % POSTFIX_EVERY == 0:
                    label = {trainer.progress_label: f"{_number(value):.4g}"}
                    bar.set_postfix(label, refresh=False)
                if on_step is not None:
                    on_step(state.step, _number(value))
                if together:  # every process stops after the same step
                    (signum,) = distributed.all_reduce([stop.signum or 0], device, op="max")
                    stop.signum = int(signum) or None
                if trainer.finished() or stop.signum is not None:
                    break
            trainer.end_stretch(started)
            whole = state.step % trainer.period == 0
            signalled = stop.signum is not None and trainer.rows_per_step
            if whole or trainer.finished() or signalled:
                trainer.close_period(math.ceil(state.step / trainer.period), whole)
                if main:
                    write_csv(Path(config.out) / "metrics.csv", *trainer.metrics())
            if main:
                _save(trainer)


def compiled(
    loss: Callable[..., Any], optimizer: torch.optim.Optimizer, compile: bool, device: torch.device
) -> tuple[Callable[..., Any], Callable[[], Any]]:
    """A trainer's ``loss`` and ``optimizer.step``, each compiled by ``torch.compile`` when
    ``compile`` (inductor: fused element-wise kernels and a fused Adam; on CUDA with
    ``mode="reduce-overhead"``, which also captures them as CUDA graphs); else as they are."""
    if not compile:
        return loss, optimizer.step
    mode = "reduce-overhead" if device.type == "cuda" else None
    return torch.compile(loss, mode=mode), torch.compile(optimizer.step, mode=mode)
