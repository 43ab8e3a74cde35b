"""IDX files (LeCun's MNIST format), plain or gzip-compressed, and their checksums.

An IDX file is a big-endian header followed by the array, C order::

    bytes 0-1   zero
    byte  2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
                0x0E float64
    byte  3     number of dimensions, d
    4 * d       the size of each dimension, big-endian uint32
    ...         prod(sizes) elements, big-endian

MNIST uses ``idx3`` (images, uint8, 0x00000803) and ``idx1`` (labels, uint8, 0x00000801).
Every way a file can be broken (a truncated or corrupt gzip stream, a wrong magic number, an
unknown element type, too few or too many bytes, a checksum mismatch) raises
:class:`CorruptDataError`, naming the file and what is wrong.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from pathlib import Path

import numpy as np

__all__ = ["CorruptDataError", "read_idx", "sha256_of", "verify_sha256sums"]

_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


class CorruptDataError(ValueError):
    """A data file exists but cannot be used: truncated, corrupt, or not what it claims to be.

    The message names the file and ends with the fix (delete it and provide or download a fresh
    copy).
    """

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = Path(path)
        super().__init__(
            f"{self.path}: {problem}; the file is corrupt or truncated: delete it and provide a "
            "fresh copy (or let samplegrad download one into its cache)"
        )


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when it starts with the gzip magic number."""
    raw = path.read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise CorruptDataError(path, f"bad gzip stream ({error})") from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array stored in the IDX file at ``path`` (gzip-compressed or plain).

    Returns a writable array in native byte order with the file's shape, e.g. ``uint8`` of shape
    ``(60000, 28, 28)`` for MNIST's training images. Raises :class:`CorruptDataError` (a
    ``ValueError``) for a file that is not a whole, valid IDX file, and ``FileNotFoundError``
    for a missing one.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise CorruptDataError(path, f"only {len(data)} bytes, shorter than the IDX header")
    if data[0] != 0 or data[1] != 0:
        raise CorruptDataError(
            path, f"wrong magic number 0x{data[:4].hex()} (an IDX file starts with two zero bytes)"
        )
    code, ndim = data[2], data[3]
    if code not in _DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _DTYPES)
        raise CorruptDataError(path, f"unknown IDX element type 0x{code:02X} (known: {known})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise CorruptDataError(path, f"header for {ndim} dimensions cut short")
    shape = tuple(int(size) for size in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _DTYPES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise CorruptDataError(
            path,
            f"size mismatch: the header declares shape {shape} of {dtype.name}, "
            f"{expected} bytes in all, but the data has {len(data)} bytes",
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def sha256_of(path: str | os.PathLike) -> str:
    """The hex SHA256 of the file's bytes as stored (for a ``.gz`` file, the compressed bytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256sums(folder: str | os.PathLike, names: list[str]) -> None:
    """Check ``names`` in ``folder`` against a ``SHA256SUMS`` file there, if one exists.

    ``SHA256SUMS`` has ``sha256sum``'s format (``<hex>  <name>`` per line). A listed file whose
    checksum differs raises :class:`CorruptDataError`; names not listed are not checked.
    """
    folder = Path(folder)
    sums_file = folder / "SHA256SUMS"
    if not sums_file.is_file():
        return
    listed = {}
    for line in sums_file.read_text().splitlines():
        fields = line.split()
        if len(fields) == 2:
            listed[fields[1].lstrip("*")] = fields[0].lower()
    for name in names:
        if name in listed and sha256_of(folder / name) != listed[name]:
            raise CorruptDataError(
                folder / name, f"SHA256 differs from the one listed in {sums_file}"
            )
