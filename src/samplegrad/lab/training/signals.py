"""SIGINT and SIGTERM during training: finish the step, write the checkpoint, stop.

While :func:`stop_on_signals` is open, the first SIGINT (Ctrl-C) or SIGTERM only sets a flag
that the loop reads after every step; a second one raises ``KeyboardInterrupt`` at once (the
checkpoint on disk is always whole: every file is written to a temporary name and renamed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm


@dataclasses.dataclass
class Stop:
    """Set by the signal handler: the signal that asked training to stop, if any."""

    signum: int | None = None


@contextlib.contextmanager
def stop_on_signals() -> Iterator[Stop]:
    """While open, SIGINT and SIGTERM set the yielded flag (a second one raises
    ``KeyboardInterrupt``); the previous handlers come back on exit. Outside the main thread,
    where handlers cannot be installed, the flag is never set."""
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: object) -> None:
        if stop.signum is not None:
            raise KeyboardInterrupt
        stop.signum = signum

    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, handler) for signum in signals}
    try:
        yield stop
    finally:
        for signum, old in previous.items():
            signal.signal(signum, signal.SIG_DFL if old is None else old)


def interrupted(signum: int, step: int, checkpoint: Path) -> dict[str, Any]:
    """Say on stderr that a signal stopped training after ``step`` and how to continue; the
    result a trainer returns instead of its metrics."""
    name = signal.Signals(signum).name
    tqdm.write(
        f"samplegrad train: {name} received; stopped after step {step} and wrote "
        f"{checkpoint}. Continue with the same options plus --resume (resume=True in Python).",
        file=sys.stderr,
    )
    return {"interrupted": name, "signal": signum, "step": step, "checkpoint": str(checkpoint)}
