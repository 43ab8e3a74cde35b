"""What every benchmark records about the machine and the source it measured."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path


def source_revision() -> str:
    """The git commit of the measured source, with ``-dirty`` if ``src/`` has local changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "status", "--porcelain", "src"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{commit}-dirty" if commit and changes else commit or "unknown"


def cpu_model() -> str:
    """The processor's model name, from ``/proc/cpuinfo`` where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(threads: int) -> dict[str, object]:
    """The processor, the torch threads a benchmark ran with, and the Python version."""
    return {"cpu": cpu_model(), "threads": threads, "python": platform.python_version()}
