"""What every training command shares: argument checks, seeds, files, checkpoints, signals.

Used by :mod:`samplegrad.lab.training.vae` (VAEs) and :mod:`samplegrad.lab.training.policy` (policy
gradients);
each keeps its own loop, state and metrics, and takes from here only what is the same for both.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from samplegrad.lab.files import write_atomic

POSTFIX_EVERY = 50
"""Steps between updates of a progress bar's running number: each reads one value back from
the device, which would otherwise stall an asynchronous device every step."""


class TrainError(ValueError):
    """A training request that cannot be carried out: the message says what to change."""


def check_int(name: str, value: object, minimum: int) -> None:
    """:class:`TrainError` naming ``name`` unless ``value`` is an int ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise TrainError(f"{name} must be an int >= {minimum}, got {value!r}")


def check_device(device: str) -> torch.device:
    """``device`` parsed; :class:`TrainError` for a malformed one or CUDA without CUDA."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise TrainError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise TrainError(
            f"device {device!r} requested but CUDA is not available (torch {torch.__version__}, "
            f"built {'with' if torch.version.cuda else 'without'} CUDA); use --device cpu"
        )
    if parsed.type not in ("cpu", "cuda"):
        raise TrainError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return parsed


def stream_seed(seed: int, stream: int, index: int = 0) -> int:
    """An independent 63-bit seed for ``(seed, stream, index)`` (NumPy's SeedSequence hash)."""
    return int(np.random.SeedSequence([seed, stream, index]).generate_state(1, np.uint64)[0] >> 1)


def stream_generator(
    seed: int, stream: int, index: int, device: torch.device | str
) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with :func:`stream_seed`."""
    return torch.Generator(device=device).manual_seed(stream_seed(seed, stream, index))


def compile_for(function: Callable[..., Any], device: torch.device | str) -> Callable[..., Any]:
    """``torch.compile(function)`` for a training step on ``device``: on CUDA with
    ``mode="reduce-overhead"``, which also captures the compiled code as CUDA graphs."""
    mode = "reduce-overhead" if torch.device(device).type == "cuda" else None
    return torch.compile(function, mode=mode)


def write_csv(path: Path, columns: Iterable[str], history: list[dict[str, Any]]) -> None:
    """``history`` as a CSV file with ``columns`` (``None`` written as an empty cell)."""
    columns = tuple(columns)

    def write(file: io.IOBase) -> None:
        writer = csv.DictWriter(file, columns)
        writer.writeheader()
        for row in history:
            writer.writerow({key: "" if row[key] is None else row[key] for key in columns})

    write_atomic(path, write)


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, lambda file: file.write(json.dumps(data, indent=2) + "\n"))


def save_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """``payload`` saved with :func:`torch.save` into ``path``, atomically."""
    write_atomic(path, lambda file: torch.save(payload, file), binary=True)
    return path


def read_checkpoint(path: Path, prefix: str, remedy: str) -> dict[str, Any]:
    """The payload saved at ``path``; :class:`TrainError` (``prefix``, then what is wrong and
    ``remedy`` when it is missing) if it is missing or unreadable."""
    if not path.is_file():
        raise TrainError(f"{prefix}no checkpoint at {path}; {remedy}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file
        raise TrainError(f"{prefix}{path} is not a readable checkpoint ({error})") from None


def check_compatible(
    config: object, saved: dict[str, Any], path: Path, names: Iterable[str]
) -> None:
    """:class:`TrainError` listing the fields ``names`` in which ``config`` differs from the
    ``saved`` config of the checkpoint at ``path``."""
    differences = [
        f"{name}={saved.get(name)!r} in the checkpoint, {getattr(config, name)!r} now"
        for name in names
        if saved.get(name) != getattr(config, name)
    ]
    if differences:
        raise TrainError(
            f"cannot resume from {path}: its run differs in "
            + "; ".join(differences)
            + ". Give the same options as the run that wrote it, or choose another --out"
        )


def refuse_to_overwrite(checkpoint: Path, resume: bool) -> None:
    """:class:`TrainError` when a fresh run (not ``resume``) would overwrite ``checkpoint``."""
    if not resume and checkpoint.exists():
        raise TrainError(
            f"{checkpoint} exists: pass --resume (resume=True) to continue that run, or "
            "choose another --out (or delete the folder) to start afresh"
        )


def show_progress(requested: bool) -> bool:
    """Whether to draw a progress bar: when ``requested`` and stderr is a terminal."""
    return requested and sys.stderr.isatty()


@dataclasses.dataclass
class Stop:
    """Set by the signal handler: the signal that asked training to stop, if any."""

    signum: int | None = None


@contextlib.contextmanager
def stop_on_signals() -> Iterator[Stop]:
    """While open, SIGINT and SIGTERM set the yielded flag (a second one raises
    ``KeyboardInterrupt``); the previous handlers come back on exit. Outside the main thread,
    where handlers cannot be installed, the flag is never set."""
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: object) -> None:
        if stop.signum is not None:
            raise KeyboardInterrupt
        stop.signum = signum

    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, handler) for signum in signals}
    try:
        yield stop
    finally:
        for signum, old in previous.items():
            signal.signal(signum, signal.SIG_DFL if old is None else old)


def interrupted(signum: int, step: int, checkpoint: Path) -> dict[str, Any]:
    """Say on stderr that a signal stopped training after ``step`` and how to continue; the
    result a trainer returns instead of its metrics."""
    name = signal.Signals(signum).name
    tqdm.write(
        f"samplegrad train: {name} received; stopped after step {step} and wrote "
        f"{checkpoint}. Continue with the same options plus --resume (resume=True in Python).",
        file=sys.stderr,
    )
    return {"interrupted": name, "signal": signum, "step": step, "checkpoint": str(checkpoint)}


def reopen_partial_epoch(history: list[dict[str, Any]], step: int, per_epoch: int) -> None:
    """Drop the row of a final partial epoch (a finished ``steps`` run) that training is about
    to continue: its sums are still open, and the epoch gets one row when it ends."""
    if history and history[-1]["step"] == step and step % per_epoch:
        history.pop()
