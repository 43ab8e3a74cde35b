"""The files of a training run: ``metrics.csv``, ``metrics.json`` and ``checkpoint.pt``.

Every file is written atomically (:func:`samplegrad.lab.files.write_atomic`): a reader, or a
run resumed after a crash, never sees half of one. A checkpoint holds a format number, the
config of the run that wrote it and the torch version beside what the trainer saves;
:func:`read_for_resume` checks the number and the config before anything is restored, on
every resume.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from samplegrad.lab.files import write_atomic
from samplegrad.lab.training.config import RunConfig, TrainError

CHECKPOINT = "checkpoint.pt"


def write_csv(path: Path, columns: Iterable[str], rows: list[dict[str, Any]]) -> None:
    """``rows`` as a CSV file with ``columns`` (``None`` written as an empty cell)."""
    columns = tuple(columns)

    def write(file: io.IOBase) -> None:
        writer = csv.DictWriter(file, columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: "" if row[key] is None else row[key] for key in columns})

    write_atomic(path, write)


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, lambda file: file.write(json.dumps(data, indent=2) + "\n"))


def save_checkpoint(config: RunConfig, checkpoint_format: int, saved: dict[str, Any]) -> Path:
    """``config.out/checkpoint.pt``: ``saved`` (the trainer's modules, optimiser, state) with
    the format number, the config and the torch version."""
    path = Path(config.out) / CHECKPOINT
    payload = {
        "format": checkpoint_format,
        "config": dataclasses.asdict(config),
        **saved,
        "torch": str(torch.__version__),
    }
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


def refuse_to_overwrite(config: RunConfig) -> None:
    """:class:`TrainError` when a fresh run (not ``resume``) would overwrite a checkpoint."""
    checkpoint = Path(config.out) / CHECKPOINT
    if not config.resume and checkpoint.exists():
        raise TrainError(
            f"{checkpoint} exists: pass --resume (resume=True) to continue that run, or "
            "choose another --out (or delete the folder) to start afresh"
        )


def read_for_resume(config: RunConfig, checkpoint_format: int) -> dict[str, Any]:
    """The checkpoint in ``config.out`` that ``config`` continues; :class:`TrainError` if it is
    missing, unreadable, of another format or of a run that differs in a field of
    ``config.MUST_MATCH_ON_RESUME``."""
    path = Path(config.out) / CHECKPOINT
    payload = read_checkpoint(
        path,
        "cannot resume: ",
        "run without --resume (resume=False) to start training, or point --out at the folder "
        "of the run to continue",
    )
    if payload.get("format") != checkpoint_format:
        raise TrainError(
            f"cannot resume from {path}: it was written by another version of samplegrad "
            f"(checkpoint format {payload.get('format')!r}, this one reads "
            f"{checkpoint_format}); start a new run with another --out"
        )
    # A field newer than the checkpoint is missing from it: that run had the field's default.
    saved = {**_defaults(config), **payload.get("config", {})}
    differences = [
        f"{name}={saved.get(name)!r} in the checkpoint, {getattr(config, name)!r} now"
        for name in config.MUST_MATCH_ON_RESUME
        if saved.get(name) != getattr(config, name)
    ]
    if differences:
        raise TrainError(
            f"cannot resume from {path}: its run differs in "
            + "; ".join(differences)
            + ". Give the same options as the run that wrote it, or choose another --out"
        )
    return payload


def _defaults(config: RunConfig) -> dict[str, Any]:
    """The default of every field of ``config``'s class that has one."""
    return {
        field.name: field.default
        for field in dataclasses.fields(config)
        if field.default is not dataclasses.MISSING
    }
