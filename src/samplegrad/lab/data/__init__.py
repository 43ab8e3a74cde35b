"""Data sets for examples and benchmarks: MNIST from its IDX files, with named binarizations.

>>> from samplegrad.lab.data import load_mnist
>>> train = load_mnist(split="train", binarize="dynamic")  # doctest: +SKIP
>>> for x, y in train.batches(100, generator=torch.Generator().manual_seed(0)):  # doctest: +SKIP
...     ...
"""

from samplegrad.lab.data._idx import CorruptDataError, read_idx
from samplegrad.lab.data.digits import Digits, load_digits_fallback
from samplegrad.lab.data.mnist import (
    MNIST,
    MNIST_FILES,
    Binarization,
    MNISTNotFoundError,
    find_mnist,
    load_mnist,
)

__all__ = [
    "MNIST",
    "MNIST_FILES",
    "Binarization",
    "CorruptDataError",
    "Digits",
    "MNISTNotFoundError",
    "find_mnist",
    "load_digits_fallback",
    "load_mnist",
    "read_idx",
]
