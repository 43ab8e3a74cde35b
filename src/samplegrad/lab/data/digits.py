"""scikit-learn's bundled 8 x 8 digits: an offline stand-in for MNIST in demos, announced as such.

The 1797 images ship inside scikit-learn, so they need no download. They are *not* MNIST:
64 pixels with 17 grey levels (0..16) instead of 784 with 256, and far fewer images, so a
likelihood on them says nothing about published MNIST numbers; whoever uses them must say so.

Splits, in file order so every run and machine sees the same ones: ``"test"`` is the last
:data:`TEST_SIZE` (297) images; of the first 1500, ``"valid"`` is the last
``validation_size`` and ``"train"`` the rest. The binarizations are MNIST's
(:class:`~samplegrad.lab.data.Binarization`), applied to the grey levels scaled to ``[0, 1]``.

>>> train = load_digits_fallback(split="train")  # doctest: +SKIP
>>> model = GaussianVAE(data_dim=64)  # doctest: +SKIP
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from samplegrad.lab.data.mnist import MNIST, Binarization, check_split_arguments, training_rows

__all__ = ["TEST_SIZE", "Digits", "load_digits_fallback"]

TEST_SIZE = 297
_MAX_GREY = 16.0  # the digits' grey levels are the integers 0..16


class Digits(MNIST):
    """The 8 x 8 digits with :class:`~samplegrad.lab.data.MNIST`'s interface (``images``,
    ``labels``, ``binarization``, ``split``, ``batches``, ``binarize``), so code written for
    MNIST trains on them unchanged once its model has ``data_dim=64``.

    Attributes:
        image_shape: ``(8, 8)``, the side lengths to reshape a row of :attr:`images` to.
    """

    image_shape = (8, 8)

    def __repr__(self) -> str:
        return (
            f"Digits(split={self.split!r}, n={len(self)}, binarization="
            f"{self.binarization.value!r}, device={self.images.device}, dtype={self.images.dtype})"
        )


@functools.cache
def _read() -> tuple[Tensor, Tensor]:
    """All 1797 images as float64 ``(N, 64)`` grey levels 0..16 and int64 labels, read once."""
    from sklearn.datasets import load_digits  # imported on use: slow, and only demos need it

    bunch = load_digits()
    return torch.from_numpy(bunch.data), torch.from_numpy(bunch.target).to(torch.int64)


def load_digits_fallback(
    *,
    split: str = "train",
    validation_size: int = 0,
    binarize: Binarization | str = Binarization.DYNAMIC,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Digits:
    """One split of scikit-learn's 8 x 8 digits, in place of
    :func:`~samplegrad.lab.data.load_mnist`.

    Args:
        split: ``"train"`` (the first ``1500 - validation_size`` images), ``"valid"`` (the
            ``validation_size`` after them) or ``"test"`` (the last :data:`TEST_SIZE`).
        validation_size: images of the first 1500 held out as the validation split.
        binarize: ``"dynamic"`` (default), ``"threshold"`` or ``"none"``, as for MNIST. The
            stored images stay grey levels in ``[0, 1]``; batches are binarized as drawn.
        device, dtype: where and in which floating dtype the images live.

    The result's images are ``(N, 64)``, so a model needs ``data_dim=64``.
    """
    binarization = check_split_arguments(split, validation_size, binarize, dtype)

    images, labels = _read()
    n = len(labels) - TEST_SIZE
    rows = slice(n, len(labels)) if split == "test" else training_rows(split, n, validation_size)
    return Digits(
        images[rows].to(device=device, dtype=dtype, copy=True).div_(_MAX_GREY),
        labels[rows].to(device=device, copy=True),
        binarization=binarization,
        split=split,
    )
