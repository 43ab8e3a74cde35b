"""The MNIST splits a training run trains, validates and tests on."""

from __future__ import annotations

from typing import NamedTuple

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
