"""samplegrad.lab.data: IDX reading, MNIST look-up, splits, binarizations, batches, broken files.

Every test but the last runs on small IDX files written into ``tmp_path``; the network is never
touched (an autouse fixture replaces the downloader with one that fails at once).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from samplegrad.lab.data import (
    MNIST,
    MNIST_FILES,
    Binarization,
    CorruptDataError,
    MNISTNotFoundError,
    find_mnist,
    load_mnist,
    read_idx,
)
from samplegrad.lab.data import mnist as mnist_module

# Read before the autouse fixture clears it for each test.
_REAL_DATA_ENV = os.environ.get("SAMPLEGRAD_DATA")
_SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"

N_TRAIN, N_TEST = 12, 5


def idx_bytes(array: np.ndarray, code: int = 0x08, *, count: int | None = None) -> bytes:
    """An IDX file holding ``array``; ``count`` overrides the declared first dimension."""
    shape = list(array.shape)
    if count is not None:
        shape[0] = count
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *shape)
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray, **kwargs: object) -> Path:
    path.write_bytes(gzip.compress(idx_bytes(array, **kwargs)))
    return path


def make_mnist(folder: Path, n_train: int = N_TRAIN, n_test: int = N_TEST) -> dict:
    """Write the four MNIST files with random grey levels into ``folder``; return the arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": (np.arange(n_test)[::-1] % 10).astype(np.uint8),
    }
    for name, array in arrays.items():
        write_idx(folder / name, array)
    return arrays


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """No network, no real environment: a fresh HOME, no cache, no $SAMPLEGRAD_DATA."""
    fetched: list[str] = []

    def no_network(url: str, timeout: float) -> bytes:
        fetched.append(url)
        raise OSError("network disabled in tests")

    monkeypatch.setattr(mnist_module, "_fetch", no_network)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("SAMPLEGRAD_DATA", raising=False)
    return fetched


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    make_mnist(tmp_path / "mnist")
    return tmp_path / "mnist"


# --- IDX ------------------------------------------------------------------------------------


def test_read_idx_gzip_and_plain(tmp_path: Path) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", array)
    (tmp_path / "a").write_bytes(idx_bytes(array))
    for path in (tmp_path / "a.gz", tmp_path / "a"):
        out = read_idx(path)
        assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
        np.testing.assert_array_equal(out, array)
        assert out.flags.writeable


def test_read_idx_big_endian_int32(tmp_path: Path) -> None:
    array = np.array([1, -2, 70000], dtype=">i4")
    out = read_idx(write_idx(tmp_path / "b.gz", array, code=0x0C))
    assert out.dtype == np.int32 and out.dtype.isnative
    np.testing.assert_array_equal(out, [1, -2, 70000])


# --- splits and loading ---------------------------------------------------------------------


def test_splits_are_deterministic_and_hold_out_the_last_images(data_dir: Path) -> None:
    arrays = make_mnist(data_dir)
    images, labels = arrays["train-images-idx3-ubyte.gz"], arrays["train-labels-idx1-ubyte.gz"]
    train = load_mnist(data_dir, split="train", validation_size=3)
    valid = load_mnist(data_dir, split="valid", validation_size=3)
    test = load_mnist(data_dir, split="test", validation_size=3)
    assert (len(train), len(valid), len(test)) == (N_TRAIN - 3, 3, N_TEST)
    for data, rows, split in ((train, slice(0, 9), "train"), (valid, slice(9, 12), "valid")):
        assert data.split == split
        assert data.images.shape == (len(data), 784) and data.images.dtype == torch.float32
        assert data.labels.dtype == torch.int64
        expected = torch.from_numpy(images[rows].reshape(-1, 784).astype(np.float32) / 255)
        torch.testing.assert_close(data.images, expected)
        assert data.labels.tolist() == labels[rows].tolist()
    assert test.labels.tolist() == arrays["t10k-labels-idx1-ubyte.gz"].tolist()
    assert float(test.images.min()) >= 0 and float(test.images.max()) <= 1


def test_load_honours_dtype_and_default_binarization(data_dir: Path) -> None:
    data = load_mnist(data_dir, validation_size=2, dtype=torch.float64, device="cpu")
    assert data.images.dtype == torch.float64 and data.images.device.type == "cpu"
    assert data.binarization is Binarization.DYNAMIC
    assert "dynamic" in repr(data)


def test_loaded_tensors_are_copies_of_the_cache(data_dir: Path) -> None:
    first = load_mnist(data_dir, validation_size=2, binarize="none")
    first.images.zero_()
    first.labels.zero_()
    again = load_mnist(data_dir, validation_size=2, binarize="none")
    assert float(again.images.sum()) > 0 and int(again.labels.sum()) > 0


@pytest.mark.parametrize(
    ("split", "validation_size"), [("valid", 0), ("train", N_TRAIN), ("valid", -1), ("train", 2.0)]
)
def test_bad_validation_size(data_dir: Path, split: str, validation_size: object) -> None:
    with pytest.raises(ValueError, match="validation_size"):
        load_mnist(data_dir, split=split, validation_size=validation_size)


def test_bad_split_binarize_and_dtype(data_dir: Path) -> None:
    with pytest.raises(ValueError, match="split must be one of 'train', 'valid', 'test'"):
        load_mnist(data_dir, split="validation")
    with pytest.raises(ValueError, match="binarize must be one of 'dynamic', 'threshold', 'none'"):
        load_mnist(data_dir, binarize="stochastic")
    with pytest.raises(ValueError, match="dtype must be a floating dtype"):
        load_mnist(data_dir, dtype=torch.uint8)


# --- binarizations --------------------------------------------------------------------------


def _one_batch(data: MNIST, generator: torch.Generator | None = None) -> torch.Tensor:
    (x, _), *rest = data.batches(len(data), shuffle=False, generator=generator)
    assert not rest
    return x


def test_dynamic_binarization(data_dir: Path) -> None:
    data = load_mnist(data_dir, validation_size=2, binarize="dynamic")
    generator = torch.Generator().manual_seed(0)
    draws = torch.stack([_one_batch(data, generator) for _ in range(400)])
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    # Each pixel's mean over 400 Bernoulli(grey) draws: standard error <= 0.025.
    assert float((draws.mean(0) - data.images).abs().max()) < 0.15
    assert abs(float(draws.mean()) - float(data.images.mean())) < 0.005
    assert not torch.equal(draws[0], draws[1])  # resampled on every draw
    # A seeded generator replays the same draws, shuffle included.
    replay = [torch.Generator().manual_seed(7) for _ in range(2)]
    epochs = [[(x, y) for x, y in data.batches(4, generator=g)] for g in replay]
    for (x1, y1), (x2, y2) in zip(*epochs, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_threshold_binarization_is_fixed(data_dir: Path) -> None:
    data = load_mnist(data_dir, validation_size=2, binarize="threshold")
    x = _one_batch(data)
    assert torch.equal(x, (data.images > 0.5).float())
    assert torch.equal(x, _one_batch(data))


def test_none_keeps_grey_levels_and_batches_are_copies(data_dir: Path) -> None:
    data = load_mnist(data_dir, validation_size=2, binarize=Binarization.NONE)
    before = data.images.clone()
    x = _one_batch(data)
    assert torch.equal(x, data.images)
    x.zero_()
    assert torch.equal(data.images, before)


# --- batches --------------------------------------------------------------------------------


def test_batches_shapes_and_drop_last(data_dir: Path) -> None:
    data = load_mnist(data_dir, validation_size=2, binarize="none")  # 10 images
    sizes = [(x.shape, y.shape) for x, y in data.batches(4)]
    assert sizes == [((4, 784), (4,)), ((4, 784), (4,)), ((2, 784), (2,))]
    assert [len(y) for _, y in data.batches(4, drop_last=True)] == [4, 4]
    assert [len(y) for _, y in data.batches(10, drop_last=True)] == [10]


def test_batches_shuffle(data_dir: Path) -> None:
    data = load_mnist(data_dir, validation_size=2, binarize="none")
    in_order = torch.cat([y for _, y in data.batches(3, shuffle=False)])
    assert torch.equal(in_order, data.labels)
    generator = torch.Generator().manual_seed(1)
    xs, ys = zip(*data.batches(3, generator=generator), strict=True)
    x, y = torch.cat(xs), torch.cat(ys)
    order = [int(torch.nonzero((data.images == row).all(1))[0]) for row in x]
    assert sorted(order) == list(range(len(data))) and order != sorted(order)
    assert torch.equal(y, data.labels[order])


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True])
def test_bad_batch_size(data_dir: Path, batch_size: object) -> None:
    data = load_mnist(data_dir, validation_size=2)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        data.batches(batch_size)


def test_mnist_rejects_mismatched_tensors() -> None:
    with pytest.raises(ValueError, match="images must be"):
        MNIST(torch.rand(3, 784), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="binarization must be one of"):
        MNIST(torch.rand(3, 784), torch.zeros(3, dtype=torch.int64), binarization="on")


# --- look-up --------------------------------------------------------------------------------


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit, env, xdg = tmp_path / "explicit", tmp_path / "env", tmp_path / "xdg"
    cache = xdg / "samplegrad" / "mnist"
    home_cache = tmp_path / "home" / ".cache" / "samplegrad" / "mnist"
    for folder in (explicit, env, cache, home_cache):
        make_mnist(folder)
    monkeypatch.setenv("SAMPLEGRAD_DATA", str(env))
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    assert find_mnist(explicit) == explicit
    assert find_mnist(str(explicit)) == explicit
    assert find_mnist() == env
    monkeypatch.delenv("SAMPLEGRAD_DATA")
    assert find_mnist() == cache
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert find_mnist() == home_cache


def test_env_var_without_files_falls_through_to_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home_cache = tmp_path / "home" / ".cache" / "samplegrad" / "mnist"
    make_mnist(home_cache)
    monkeypatch.setenv("SAMPLEGRAD_DATA", str(tmp_path / "empty"))
    assert find_mnist() == home_cache


def test_explicit_folder_is_the_only_one_searched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _offline: list[str]
) -> None:
    make_mnist(tmp_path / "env")
    monkeypatch.setenv("SAMPLEGRAD_DATA", str(tmp_path / "env"))
    partial = tmp_path / "partial"
    make_mnist(partial)
    (partial / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(MNISTNotFoundError) as info:
        find_mnist(partial)
    message = str(info.value)
    assert f"{partial}: lacks t10k-labels-idx1-ubyte.gz" in message
    assert "explicit data_dir is the only folder searched" in message
    assert not _offline


def test_missing_files_error_names_files_folders_and_fixes(
    tmp_path: Path, _offline: list[str]
) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load_mnist()
    message = str(info.value)
    for name in MNIST_FILES:
        assert name in message
    assert str(tmp_path / "home" / ".cache" / "samplegrad" / "mnist") in message
    assert "$SAMPLEGRAD_DATA: not set" in message
    assert "--data-dir DIR" in message and "data_dir=DIR" in message
    assert "SAMPLEGRAD_DATA=DIR" in message
    assert "network disabled in tests" in message  # the download was tried, and failed fast
    assert _offline  # ... through the patched fetcher


def test_download_false_does_not_touch_the_network(_offline: list[str]) -> None:
    with pytest.raises(MNISTNotFoundError, match=r"not tried \(download=False\)"):
        find_mnist(download=False)
    assert not _offline


# --- download (with a fake network) ---------------------------------------------------------


@pytest.fixture
def fake_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Serve generated files from a fake mirror; their content checksums become the expected."""
    source = tmp_path / "source"
    make_mnist(source)
    served = {name: (source / name).read_bytes() for name in MNIST_FILES}
    sums = {
        name: hashlib.sha256(gzip.decompress(body)).hexdigest() for name, body in served.items()
    }
    monkeypatch.setattr(mnist_module, "_CONTENT_SHA256", sums)
    return served


def test_download_into_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_mirror: dict[str, bytes]
) -> None:
    calls: list[str] = []

    def fetch(url: str, timeout: float) -> bytes:
        calls.append(url)
        if url.startswith(mnist_module.MIRRORS[0]):
            return b"<html>gone</html>"  # first mirror broken: fall back to the second
        return fake_mirror[url.rsplit("/", 1)[1]]

    monkeypatch.setattr(mnist_module, "_fetch", fetch)
    cache = tmp_path / "home" / ".cache" / "samplegrad" / "mnist"
    assert find_mnist() == cache
    assert sorted(os.listdir(cache)) == sorted(MNIST_FILES)  # no temporary files left
    assert len(calls) == 8
    assert len(load_mnist(split="test")) == N_TEST


def test_download_with_wrong_checksum_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_mirror: dict[str, bytes]
) -> None:
    other = gzip.compress(idx_bytes(np.zeros((3, 28, 28), dtype=np.uint8)))
    monkeypatch.setattr(mnist_module, "_fetch", lambda url, timeout: other)
    with pytest.raises(MNISTNotFoundError, match="SHA256 of the content differs"):
        find_mnist()
    assert not (tmp_path / "home" / ".cache" / "samplegrad" / "mnist").exists()


# --- broken files ---------------------------------------------------------------------------


def _assert_clear(error: pytest.ExceptionInfo, path: Path, problem: str) -> None:
    message = str(error.value)
    assert isinstance(error.value, ValueError)
    assert str(path) in message and problem in message and "delete it" in message


def test_truncated_gzip(data_dir: Path) -> None:
    path = data_dir / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CorruptDataError) as error:
        load_mnist(data_dir)
    _assert_clear(error, path, "bad gzip stream")


def test_garbled_gzip(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(b"\x1f\x8b" + bytes(range(60)))
    with pytest.raises(CorruptDataError) as error:
        read_idx(path)
    _assert_clear(error, path, "bad gzip stream")


def test_wrong_magic(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(b"\x00\x01\x08\x01" + struct.pack(">I", 2) + b"ab"))
    with pytest.raises(CorruptDataError) as error:
        read_idx(path)
    _assert_clear(error, path, "wrong magic number 0x00010801")


def test_unknown_dtype_code(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "x.gz", np.zeros(3, dtype=np.uint8), code=0x07)
    with pytest.raises(CorruptDataError) as error:
        read_idx(path)
    _assert_clear(error, path, "unknown IDX element type 0x07")


@pytest.mark.parametrize("payload", [b"", b"\x00\x00", b"\x00\x00\x08\x03\x00\x00"])
def test_header_cut_short(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(payload))
    with pytest.raises(CorruptDataError) as error:
        read_idx(path)
    _assert_clear(error, path, "header")


@pytest.mark.parametrize("count", [N_TRAIN - 1, N_TRAIN + 1])
def test_size_mismatch(data_dir: Path, count: int) -> None:
    path = data_dir / "train-images-idx3-ubyte.gz"
    write_idx(path, np.zeros((N_TRAIN, 28, 28), dtype=np.uint8), count=count)
    with pytest.raises(CorruptDataError) as error:
        load_mnist(data_dir, validation_size=2)
    _assert_clear(error, path, "size mismatch")


def test_count_mismatch(data_dir: Path) -> None:
    path = data_dir / "train-labels-idx1-ubyte.gz"
    write_idx(path, np.zeros(N_TRAIN - 1, dtype=np.uint8))
    with pytest.raises(CorruptDataError) as error:
        load_mnist(data_dir, validation_size=2)
    _assert_clear(error, path, f"count mismatch: {N_TRAIN - 1} labels but {N_TRAIN} images")


def test_wrong_image_shape_and_label_range(data_dir: Path) -> None:
    images = data_dir / "t10k-images-idx3-ubyte.gz"
    write_idx(images, np.zeros((N_TEST, 28, 27), dtype=np.uint8))
    with pytest.raises(CorruptDataError) as error:
        load_mnist(data_dir, split="test")
    _assert_clear(error, images, "expected uint8 images of shape (N, 28, 28)")
    write_idx(images, np.zeros((N_TEST, 28, 28), dtype=np.uint8))
    labels = data_dir / "t10k-labels-idx1-ubyte.gz"
    write_idx(labels, np.full(N_TEST, 10, dtype=np.uint8))
    with pytest.raises(CorruptDataError) as error:
        load_mnist(data_dir, split="test")
    _assert_clear(error, labels, "label 10 outside 0..9")


def test_checksum_mismatch(data_dir: Path) -> None:
    names = ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    sums = {name: hashlib.sha256((data_dir / name).read_bytes()).hexdigest() for name in names}
    sums[names[1]] = "0" * 64
    (data_dir / "SHA256SUMS").write_text("".join(f"{h}  {n}\n" for n, h in sums.items()))
    with pytest.raises(CorruptDataError) as error:
        load_mnist(data_dir, split="test")
    _assert_clear(error, data_dir / names[1], "SHA256 differs from the one listed")
    sums[names[1]] = hashlib.sha256((data_dir / names[1]).read_bytes()).hexdigest()
    (data_dir / "SHA256SUMS").write_text("".join(f"{h}  {n}\n" for n, h in sums.items()))
    assert len(load_mnist(data_dir, split="test")) == N_TEST


# --- the real MNIST -------------------------------------------------------------------------


def test_real_mnist() -> None:
    folder = Path(_REAL_DATA_ENV) if _REAL_DATA_ENV else _SHARED_MNIST
    if not all((folder / name).is_file() for name in MNIST_FILES):
        pytest.skip(f"the MNIST files are not in {folder}; set SAMPLEGRAD_DATA to run this test")
    splits = {s: load_mnist(folder, split=s, binarize="none") for s in ("train", "valid", "test")}
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [50000, 10000, 10000]
    for data in splits.values():
        assert data.images.shape == (len(data), 784)
        assert float(data.images.min()) == 0.0 and float(data.images.max()) == 1.0
        counts = torch.bincount(data.labels, minlength=10)
        assert len(counts) == 10 and int(counts.sum()) == len(data) and int(counts.min()) > 800
    assert splits["train"].labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert splits["test"].labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
