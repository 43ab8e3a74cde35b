"""The MNIST splits a training run trains, validates and tests on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import Tensor

from samplegrad.generators import Generator
from samplegrad.lab.data import MNIST, load_mnist


class Splits(NamedTuple):
    """The training images, the held-out validation images (``None`` when none are held out)
    and the test images."""

    train: MNIST
    valid: MNIST | None
    test: MNIST


def load_splits(config: object, binarize: str) -> Splits:
    """The splits of ``config`` (its ``data_dir``, ``validation_size`` and ``device``), with
    ``binarize``; ``ValueError`` for a ``validation_size`` the data cannot give."""

    def split(name: str) -> MNIST:
        return load_mnist(
            config.data_dir,
            split=name,
            validation_size=config.validation_size,
            binarize=binarize,
            device=config.device,
        )

    valid = split("valid") if config.validation_size else None
    return Splits(split("train"), valid, split("test"))


def image_batches(
    data: MNIST, batch_size: int, generator: Generator, *, shuffle: bool, drop_last: bool = False
) -> Iterator[Tensor]:
    """One epoch of the images of ``data.batches``; with
    :class:`~samplegrad.generators.ReplicaGenerators`, each replica's batch (shuffled and
    binarized by its own generator) stacked into ``(R, B, D)``.

    The replicas' iterators advance in turn, so each generator draws a batch and then the
    step's noise, in the order of a lone run.
    """
    if isinstance(generator, torch.Generator):
        for x, _ in data.batches(
            batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last
        ):
            yield x
        return
    streams = [
        data.batches(batch_size, shuffle=shuffle, generator=g, drop_last=drop_last)
        for g in generator
    ]
    for batch in zip(*streams, strict=True):
        yield torch.stack([x for x, _ in batch])
