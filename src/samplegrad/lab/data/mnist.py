"""MNIST from the four standard IDX ``.gz`` files: look-up, splits and named binarizations.

Files. ``train-images-idx3-ubyte.gz`` (60000 x 28 x 28 uint8), ``train-labels-idx1-ubyte.gz``,
``t10k-images-idx3-ubyte.gz`` (10000 x 28 x 28) and ``t10k-labels-idx1-ubyte.gz``, in one
folder; the format is described in :mod:`samplegrad.lab.data._idx`.

Splits. ``"test"`` is the 10000 ``t10k`` images. The validation set is held out from the 60000
training images: ``"valid"`` is the *last* ``validation_size`` of them and ``"train"`` the first
``60000 - validation_size``, in file order, so every run and machine sees the same split (with
the default ``validation_size=10000``: 50000 / 10000 / 10000, the split of most VAE papers).

Binarization. Published likelihoods on "binarized MNIST" are not comparable across
binarizations, so the choice is named in the API (:class:`Binarization`):

- ``"dynamic"`` (the default): each time an image is drawn, every pixel is resampled as
  ``b ~ Bernoulli(grey level)``. The model sees a fresh binary image every epoch, which
  regularises, and its likelihood is that of the stochastic binarization (the convention of
  e.g. Burda et al. 2016, IWAE, and Dong et al. 2020, DisARM). Test log-likelihoods on
  dynamically and on statically binarized MNIST differ by several nats, so a number is only
  comparable with numbers on the same binarization.
- ``"threshold"``: ``grey > 0.5``, fixed; deterministic, but a different data set. (The fixed
  *sampled* binarization of Salakhutdinov & Murray 2008 / Larochelle & Murray 2011 is a third.)
- ``"none"``: the grey levels in ``[0, 1]``, for Gaussian or continuous-Bernoulli likelihoods.
"""

from __future__ import annotations

import enum
import functools
import gzip
import hashlib
import logging
import os
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

from samplegrad.lab.data._idx import CorruptDataError, read_idx, verify_sha256sums
from samplegrad.lab.files import write_atomic

__all__ = [
    "MNIST",
    "MNIST_FILES",
    "Binarization",
    "MNISTNotFoundError",
    "find_mnist",
    "load_mnist",
]

_log = logging.getLogger(__name__)

MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
ENV_VAR = "SAMPLEGRAD_DATA"
# Mirrors of the original files (yann.lecun.com itself now often refuses scripted downloads).
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
DOWNLOAD_TIMEOUT_S = 10.0
# SHA256 of the *uncompressed* IDX content (whose MD5s are the published ones), so a mirror's
# gzip of the same data passes whatever its compression settings; computed from the copies in
# shared/data/mnist (whose SHA256SUMS lists the .gz bytes of those copies instead).
_CONTENT_SHA256 = {
    "train-images-idx3-ubyte.gz": (
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
    ),
    "train-labels-idx1-ubyte.gz": (
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
    ),
    "t10k-images-idx3-ubyte.gz": (
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
    ),
}
_SPLITS = ("train", "valid", "test")


class Binarization(enum.StrEnum):
    """How grey levels become pixels; see the module docstring for why it must be named."""

    DYNAMIC = "dynamic"  # b ~ Bernoulli(grey), resampled each time an image is drawn
    THRESHOLD = "threshold"  # grey > 0.5, fixed
    NONE = "none"  # grey levels in [0, 1]


def _check_binarization(value: object, name: str) -> Binarization:
    try:
        return Binarization(value)
    except ValueError:
        choices = ", ".join(repr(b.value) for b in Binarization)
        raise ValueError(
            f"{name} must be one of {choices}, got {value!r}; use 'dynamic' for likelihoods "
            "comparable with published binarized-MNIST numbers"
        ) from None


class MNISTNotFoundError(FileNotFoundError):
    """The four MNIST files are in none of the folders searched (and could not be downloaded)."""


def _cache_dir() -> Path:
    """``$XDG_CACHE_HOME/samplegrad/mnist``, or ``~/.cache/samplegrad/mnist``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "samplegrad" / "mnist"


def _missing(folder: Path) -> list[str]:
    return [name for name in MNIST_FILES if not (folder / name).is_file()]


def _fetch(url: str, timeout: float) -> bytes:
    """The body at ``url``; raises ``OSError`` (``URLError``, timeout) without a network."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def _download(folder: Path, names: list[str]) -> None:
    """Download ``names`` into ``folder``, each verified and written atomically.

    Raises ``OSError`` naming every URL tried and why it failed.
    """
    for name in names:
        failures = []
        for mirror in MIRRORS:
            url = mirror + name
            try:
                payload = _fetch(url, DOWNLOAD_TIMEOUT_S)
                content = gzip.decompress(payload)
            except (OSError, EOFError, zlib.error) as error:
                failures.append(f"{url}: {error}")
                continue
            if hashlib.sha256(content).hexdigest() != _CONTENT_SHA256[name]:
                failures.append(f"{url}: SHA256 of the content differs from MNIST's")
                continue
            folder.mkdir(parents=True, exist_ok=True)
            write_atomic(
                folder / name, lambda file, payload=payload: file.write(payload), binary=True
            )
            _log.info("downloaded %s into %s", url, folder)
            break
        else:
            raise OSError("; ".join(failures))


def find_mnist(data_dir: str | os.PathLike | None = None, *, download: bool = True) -> Path:
    """The folder holding the four MNIST IDX files (:data:`MNIST_FILES`).

    Look-up order:

    1. ``data_dir`` when given; it is then the only folder searched (an explicit folder that
       lacks a file is a mistake to report, not to paper over with another copy);
    2. ``$SAMPLEGRAD_DATA``;
    3. the per-user cache, ``$XDG_CACHE_HOME/samplegrad/mnist`` or ``~/.cache/samplegrad/mnist``;
    4. with ``download=True``, a download of the missing files from :data:`MIRRORS` into that
       cache (timeout :data:`DOWNLOAD_TIMEOUT_S` per try; each file checked against MNIST's
       SHA256 and written atomically, so an interrupted download leaves no partial file).

    Raises :class:`MNISTNotFoundError` (a ``FileNotFoundError``) naming the files, the folders
    searched and how to provide them.
    """
    searched: list[tuple[Path, str]] = []
    if data_dir is not None:
        searched.append((Path(data_dir).expanduser(), "data_dir"))
    else:
        if os.environ.get(ENV_VAR):
            searched.append((Path(os.environ[ENV_VAR]).expanduser(), f"${ENV_VAR}"))
        searched.append((_cache_dir(), "per-user cache"))
    for folder, _ in searched:
        if not _missing(folder):
            return folder

    download_note = "not tried (an explicit data_dir is the only folder searched)"
    if data_dir is None:
        cache = _cache_dir()
        if not download:
            download_note = "not tried (download=False)"
        else:
            try:
                _download(cache, _missing(cache))
            except OSError as error:
                download_note = f"failed ({error})"
            else:
                return cache

    lines = [f"MNIST not found: need the four IDX files {', '.join(MNIST_FILES)} in one folder."]
    lines.append("Searched:")
    if data_dir is None and not os.environ.get(ENV_VAR):
        lines.append(f"  ${ENV_VAR}: not set")
    for folder, origin in searched:
        state = "no such folder" if not folder.is_dir() else "lacks " + ", ".join(_missing(folder))
        lines.append(f"  {origin}: {folder}: {state}")
    lines.append(f"Download into the per-user cache: {download_note}.")
    lines.append(
        "Provide the files with --data-dir DIR on the command line (data_dir=DIR in Python), "
        f"or set {ENV_VAR}=DIR; copies are at {MIRRORS[0]}."
    )
    raise MNISTNotFoundError("\n".join(lines))


@functools.lru_cache(maxsize=4)
def _decode(images_path: Path, labels_path: Path, stamp: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Images as uint8 ``(N, 784)`` and labels as int64 ``(N,)``, decoded once per file version
    (``stamp``: sizes, modification times, inodes), after checking them against a
    ``SHA256SUMS`` file beside them. Callers must copy before handing the tensors out."""
    del stamp  # part of the cache key only
    verify_sha256sums(images_path.parent, [images_path.name, labels_path.name])
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != "uint8" or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise CorruptDataError(
            images_path,
            f"expected uint8 images of shape (N, 28, 28), got {images.dtype} {images.shape}",
        )
    if labels.dtype != "uint8" or labels.ndim != 1:
        raise CorruptDataError(
            labels_path, f"expected uint8 labels of shape (N,), got {labels.dtype} {labels.shape}"
        )
    if len(images) != len(labels):
        raise CorruptDataError(
            labels_path,
            f"count mismatch: {len(labels)} labels but {len(images)} images in {images_path}",
        )
    if labels.size and labels.max() > 9:
        raise CorruptDataError(labels_path, f"label {labels.max()} outside 0..9")
    return (
        torch.from_numpy(images.reshape(len(images), 28 * 28)),
        torch.from_numpy(labels.astype("int64")),
    )


class MNIST:
    """MNIST images and labels held in memory, with the binarization applied per batch.

    Attributes:
        images: grey levels in ``[0, 1]``, shape ``(N, 784)`` (rows of the 28 x 28 image).
        labels: ``int64`` digits, shape ``(N,)``.
        binarization: the :class:`Binarization` that :meth:`batches` and :meth:`binarize` apply.
        split: ``"train"``, ``"valid"`` or ``"test"`` (free text for other data).
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        *,
        binarization: Binarization | str = Binarization.DYNAMIC,
        split: str = "train",
    ) -> None:
        if images.ndim != 2 or labels.shape != images.shape[:1]:
            raise ValueError(
                f"images must be (N, D) and labels (N,), got {tuple(images.shape)} and "
                f"{tuple(labels.shape)}"
            )
        self.images = images
        self.labels = labels
        self.binarization = _check_binarization(binarization, "binarization")
        self.split = split

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return (
            f"MNIST(split={self.split!r}, n={len(self)}, binarization="
            f"{self.binarization.value!r}, device={self.images.device}, dtype={self.images.dtype})"
        )

    def binarize(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``x`` (grey levels) under :attr:`binarization`; ``dynamic`` draws with ``generator``
        (the global one when ``None``), a fresh draw on every call."""
        if self.binarization is Binarization.DYNAMIC:
            return torch.bernoulli(x, generator=generator)
        if self.binarization is Binarization.THRESHOLD:
            return (x > 0.5).to(x.dtype)
        return x

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """One epoch of ``(x, y)`` batches: ``x`` ``(B, 784)`` binarized, ``y`` ``(B,)``.

        ``generator`` (on the data's device) drives both the shuffle and the dynamic
        binarization, so a seeded generator gives the same epoch again; each epoch, and each
        call, draws anew. ``drop_last`` drops a final batch shorter than ``batch_size``.
        Batches are copies: changing one leaves the data set alone.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        device = self.images.device
        if generator is not None and (generator.device.type, generator.device.index or 0) != (
            device.type,
            device.index or 0,
        ):
            raise ValueError(
                f"generator is on {generator.device} but the data is on {device}; create it "
                f"with torch.Generator(device={str(device)!r}).manual_seed(seed)"
            )
        return self._iterate(batch_size, shuffle, generator, drop_last)

    def _iterate(
        self,
        batch_size: int,
        shuffle: bool,
        generator: torch.Generator | None,
        drop_last: bool,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        n = len(self)
        device = self.images.device
        if shuffle:
            order = torch.randperm(n, generator=generator, device=device)
        else:
            order = torch.arange(n, device=device)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            index = order[start : start + batch_size]
            yield self.binarize(self.images[index], generator), self.labels[index]


def check_split_arguments(
    split: str, validation_size: int, binarize: Binarization | str, dtype: torch.dtype
) -> Binarization:
    """Check a loader's arguments (``ValueError`` naming the one that is wrong); returns the
    binarization."""
    if split not in _SPLITS:
        raise ValueError(f"split must be one of 'train', 'valid', 'test', got {split!r}")
    binarization = _check_binarization(binarize, "binarize")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype such as torch.float32, got {dtype}")
    if isinstance(validation_size, bool) or not isinstance(validation_size, int):
        raise ValueError(f"validation_size must be an int, got {validation_size!r}")
    return binarization


def training_rows(split: str, n: int, validation_size: int) -> slice:
    """The rows of split ``"train"`` (the first ``n - validation_size``) or ``"valid"`` (the
    last ``validation_size``) among ``n`` training images; ``ValueError`` for a size that
    leaves a split empty (an empty training split, or ``"valid"`` with size 0)."""
    if not 0 <= validation_size < n or (split == "valid" and validation_size == 0):
        raise ValueError(
            f"validation_size must be in 1..{n - 1} for split='valid' and 0..{n - 1} for "
            f"split='train' ({n} training images), got {validation_size}"
        )
    return slice(0, n - validation_size) if split == "train" else slice(n - validation_size, n)


def load_mnist(
    data_dir: str | os.PathLike | None = None,
    *,
    split: str = "train",
    validation_size: int = 10_000,
    binarize: Binarization | str = Binarization.DYNAMIC,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    download: bool = True,
) -> MNIST:
    """One split of MNIST as an :class:`MNIST` on ``device``.

    Args:
        data_dir: the folder with the four files; ``None`` searches as :func:`find_mnist` does.
        split: ``"train"`` (the first ``60000 - validation_size`` training images),
            ``"valid"`` (the last ``validation_size``) or ``"test"`` (the 10000 t10k images).
        validation_size: training images held out as the validation split.
        binarize: ``"dynamic"`` (default), ``"threshold"`` or ``"none"``; see the module
            docstring. The stored images stay grey levels; batches are binarized as drawn.
        device, dtype: where and in which floating dtype the images live.
        download: whether :func:`find_mnist` may download into the per-user cache.

    The files are decoded once per process (and again only if they change); a ``SHA256SUMS``
    file beside them is checked. A broken file raises :class:`CorruptDataError`.
    """
    binarization = check_split_arguments(split, validation_size, binarize, dtype)

    folder = find_mnist(data_dir, download=download)
    prefix = "t10k" if split == "test" else "train"
    paths = [folder / f"{prefix}-images-idx3-ubyte.gz", folder / f"{prefix}-labels-idx1-ubyte.gz"]
    stats = [path.stat() for path in paths]
    stamp = tuple(value for s in stats for value in (s.st_size, s.st_mtime_ns, s.st_ino))
    images, labels = _decode(paths[0], paths[1], stamp)

    n = len(labels)
    rows = slice(0, n) if split == "test" else training_rows(split, n, validation_size)
    return MNIST(
        images[rows].to(device=device, dtype=dtype).div_(255),
        labels[rows].to(device=device, copy=True),
        binarization=binarization,
        split=split,
    )
