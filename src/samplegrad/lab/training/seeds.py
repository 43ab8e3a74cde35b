"""The random streams of a run, and many seeds in one process (``--seeds``).

**Streams.** Every random stream of a run (the initialisation, each epoch's data order, the
sampling noise, the evaluation draws) comes from a ``torch.Generator`` seeded with
:func:`stream_seed` of ``(seed, stream, index)``: NumPy's ``SeedSequence`` hash, so the streams
are independent, the same on every machine, and a stream of epoch ``e`` does not depend on how
the epochs before it ran (an interrupted and resumed run draws what an uninterrupted one does).

**Many seeds.** A run of ``N`` replicas with the seeds ``seed, ..., seed + N - 1`` draws each
stream from a :class:`samplegrad.generators.ReplicaGenerators` of the generators the ``N``
single runs would use (:func:`generators`), so replica ``i`` sees the noise of the run with
``seed + i``. The replicas share one estimator, so only an estimator without state of its own
may be used (:func:`check_replicable`, from the catalog's facts); the metrics of every replica
are kept as lists, a row per seed in ``metrics.csv`` (:func:`rows_per_seed`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from samplegrad.estimators import catalog
from samplegrad.generators import Generator, ReplicaGenerators
from samplegrad.lab.training.config import TrainError


def stream_seed(seed: int, stream: int, index: int = 0) -> int:
    """An independent 63-bit seed for ``(seed, stream, index)`` (NumPy's SeedSequence hash)."""
    return int(np.random.SeedSequence([seed, stream, index]).generate_state(1, np.uint64)[0] >> 1)


def stream_generator(
    seed: int, stream: int, index: int, device: torch.device | str
) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with :func:`stream_seed`."""
    return torch.Generator(device=device).manual_seed(stream_seed(seed, stream, index))


def generators(seeds: list[int], stream: int, index: int, device: torch.device | str) -> Generator:
    """The generator of ``stream`` (and ``index``) for one seed; for several, the replicas'
    generators of that stream as one :class:`~samplegrad.generators.ReplicaGenerators`."""
    made = [stream_generator(seed, stream, index, device) for seed in seeds]
    return made[0] if len(made) == 1 else ReplicaGenerators(made)


def replicable(name: str) -> bool:
    """Whether replicas may share an estimator called ``name`` (a catalog name): it keeps no
    state or parameters of its own."""
    return name in catalog.CATALOG and not catalog.CATALOG[name].stateful


def check_replicable(requested: str, resolved: str, replicas: int, instead: Iterable[str]) -> None:
    """:class:`TrainError` if ``replicas > 1`` would share the state of the estimator
    ``requested`` (``resolved``: the catalog name it stands for, e.g. ``"auto"``'s choice); the
    message offers ``instead``."""
    if replicas > 1 and not replicable(resolved):
        called = repr(requested) + ("" if resolved == requested else f" (here {resolved!r})")
        raise TrainError(
            f"estimator {called} keeps state or parameters that the {replicas} replicas of "
            f"--seeds would share; with --seeds > 1 use one of {', '.join(instead)}, or train "
            "the seeds one run at a time"
        )


def rows_per_seed(
    rows: list[dict[str, Any]], seeds: list[int], per_run: Iterable[str]
) -> list[dict[str, Any]]:
    """``rows`` whose ``per_run`` values are lists (one per replica) as a row per seed, with a
    ``seed`` column."""
    per_run = tuple(per_run)
    return [
        {
            **row,
            "seed": seed,
            **{key: None if row[key] is None else row[key][i] for key in per_run},
        }
        for row in rows
        for i, seed in enumerate(seeds)
    ]
