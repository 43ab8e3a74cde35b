"""One run per output folder: an exclusive lock held for the life of the run.

Two runs writing into one folder would interleave their checkpoints and metrics and both
report success, leaving the files of whichever wrote last. :func:`exclusive_folder` creates the
folder (only once the run has passed its checks, so a refused request leaves nothing behind)
and locks the file ``.samplegrad-lock`` in it with the operating system's advisory lock
(``flock``; ``msvcrt.locking`` on Windows), which the system releases when the process ends,
however it ends. The file holds the holder's process id and command, so a second run fails at
once with a message naming the first; it is removed when the run ends. If the run fails before
it has written anything, the folder it created is removed again.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from samplegrad.lab.training.config import TrainError

LOCK = ".samplegrad-lock"
"""The lock file in a run's output folder."""


@contextlib.contextmanager
def exclusive_folder(out: Path) -> Iterator[None]:
    """While open, this process alone runs in ``out`` (created if missing); a
    :class:`TrainError` naming the holder if another run is in it."""
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK
    file = _locked(path)
    file.truncate()
    file.write(f"process {os.getpid()}: {' '.join([_program(), *sys.argv[1:]])}")
    file.flush()
    try:
        yield
    except BaseException:
        if created and [entry.name for entry in out.iterdir()] == [LOCK]:
            _release(file, path)
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    finally:
        _release(file, path)


def _program() -> str:
    """This process's program as its user typed it (``samplegrad``, also for ``python -m``)."""
    program = Path(sys.argv[0])
    return program.parent.name if program.name == "__main__.py" else program.name


def _locked(path: Path) -> IO[str]:
    """``path`` opened and locked by this process; :class:`TrainError` naming the holder. The
    lock is on the file ``path`` names when it is taken: a holder that has just removed it
    leaves a lock on a file no other run can open any more, so that is tried again."""
    while True:
        file = open(path, "a+")  # noqa: SIM115 -- held open for the life of the run
        try:
            _lock(file)
        except OSError:
            file.seek(0)
            holder = file.read().strip() or "another process"
            file.close()
            raise TrainError(
                f"{path.parent} is in use by another run ({holder}); wait for it to end, or "
                "choose another --out"
            ) from None
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(file.fileno()).st_ino:
                file.seek(0)
                return file
        file.close()


def _release(file: IO[str], path: Path) -> None:
    """Remove the lock file, then release the lock by closing it (once)."""
    if file.closed:
        return
    with contextlib.suppress(OSError):  # an open file cannot be removed on Windows
        path.unlink()
    file.close()


def _lock(file: IO[str]) -> None:
    """Lock ``file`` for this process without waiting; ``OSError`` if another holds it."""
    if sys.platform == "win32":
        import msvcrt

        msvcrt.locking(file.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
