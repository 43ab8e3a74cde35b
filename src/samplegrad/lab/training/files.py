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
import errno
import io
import json
from collections.abc import Callable, Iterable
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

    _write(path, write)


def write_json(path: Path, data: dict[str, Any]) -> None:
    _write(path, lambda file: file.write(json.dumps(data, indent=2) + "\n"))


def _write(path: Path, write: Callable[[io.IOBase], Any], binary: bool = False) -> None:
    """:func:`~samplegrad.lab.files.write_atomic`, with a full disk a :class:`TrainError` that
    says the file on disk is still the previous one (the atomic write left it alone)."""
    try:
        write_atomic(path, write, binary=binary)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise TrainError(
            f"no space left on the device of {path.parent} ({error.strerror}) while writing "
            f"{path.name}; the previous {path.name} is intact: free some space and continue "
            "with --resume"
        ) from None


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
    _write(path, lambda file: torch.save(payload, file), binary=True)
    return path


def read_checkpoint(path: Path, prefix: str, remedy: str) -> dict[str, Any]:
    """The payload saved at ``path``; :class:`TrainError` (``prefix``, then what is wrong and
    ``remedy`` when it is missing) if it is missing or unreadable."""
    if not path.is_file():
        raise TrainError(f"{prefix}no checkpoint at {path}; {remedy}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch raises many types for a damaged or foreign file
        payload = None  # (its message advises a load that could run code from the file)
    if not isinstance(payload, dict):
        raise TrainError(
            f"{prefix}{path} is not a samplegrad checkpoint: it is damaged, or another program "
            f"wrote it; {remedy}"
        )
    return payload


def trainer_of(payload: dict[str, Any]) -> str | None:
    """The command (``"vae"``, ``"bnn"``, ``"policy"``) whose run wrote a checkpoint: saved in
    it since checkpoints name it, else told by a field only that command's config has."""
    if "trainer" in payload:
        return payload["trainer"]
    config = payload.get("config", {})
    return next((name for name, field in _OWN_FIELDS.items() if field in config), None)


_OWN_FIELDS = {"vae": "latent", "bnn": "layer", "policy": "env"}
"""A config field each command's runs alone have, for checkpoints older than the ``trainer``
key."""


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
