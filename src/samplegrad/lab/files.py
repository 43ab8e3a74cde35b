"""Atomic file writes: readers never see a half-written file, a crash leaves the old one."""

from __future__ import annotations

import io
import os
import secrets
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: Path, write: Callable[[io.IOBase], None], binary: bool = False) -> None:
    """Write ``path`` through ``write(file)`` into a temporary file, then rename it into place.

    The temporary file is opened exclusively under a random name beside ``path`` (so the
    rename stays on one file system), with the permissions the umask gives any new file; if
    anything fails it is removed and the error propagates.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(temporary, "xb" if binary else "x", newline=None if binary else "") as file:
            write(file)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
