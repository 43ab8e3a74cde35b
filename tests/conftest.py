"""Shared fixtures: fresh 'auto' warnings, validation on, seeded generators, offline data, one
thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch.distributions import Distribution

from samplegrad import _expectation
from samplegrad.lab.data import mnist as mnist_module


@pytest.fixture(autouse=True)
def _fresh_auto_warnings():
    """Each test sees the one-time 'auto' warnings afresh."""
    _expectation._announced.clear()
    yield


@pytest.fixture(autouse=True)
def _validation_on():
    """Run each test with value validation on, and restore it afterwards: the first
    ``torch.compile`` in a process turns torch.distributions' validation off process-wide
    (``torch._dynamo`` calls ``Distribution.set_default_validate_args(False)``)."""
    Distribution.set_default_validate_args(True)
    yield
    Distribution.set_default_validate_args(True)


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(20261127)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No network and no real data: a fresh HOME, no $SAMPLEGRAD_DATA."""

    def no_network(url: str, timeout: float) -> bytes:
        raise OSError("network disabled in tests")

    monkeypatch.setattr(mnist_module, "_fetch", no_network)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("SAMPLEGRAD_DATA", raising=False)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread for a module: small networks and batched estimates gain little from
    a second thread, and on a busy two-core machine waiting for it costs several times the
    work; the previous setting comes back afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
