"""What importing samplegrad loads, checked in one fresh interpreter (docs/design.md, "Layout
and import rules").

The core (everything but ``samplegrad.lab`` and ``samplegrad.cli``) needs none of the lab's
libraries, so ``pip install samplegrad`` works without the ``lab`` extra; the lab and the CLI
import matplotlib only inside the functions that plot, so a command that draws nothing does not
pay for it. import-linter (``make lint``) checks the same rules on the source; these tests check
what really ends up in ``sys.modules``, lazy imports and third-party packages included.

Each new interpreter costs a second and a half, so one probe runs three phases in turn: every
core module is imported with the lab's libraries made unimportable (as if the extra were not
installed); then samplegrad's modules are dropped from ``sys.modules``, the libraries made
importable again, and ``samplegrad`` and ``samplegrad.cli`` imported afresh, which must load
none of them; then every lab and CLI module, which must load no matplotlib. torch itself imports
tqdm when it can (``torch.hub``'s progress bar); here torch is first imported while tqdm is
blocked, so the second phase sees any tqdm import as samplegrad's own.
"""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import pytest

import samplegrad

LAB_LIBRARIES = ["matplotlib", "sklearn", "tqdm"]

# argv[1] is a JSON list of phases, each an object: "blocked" packages are made unimportable
# (a ``None`` entry in sys.modules makes ``import`` raise ModuleNotFoundError) and the others
# importable again; with "fresh", samplegrad's modules are dropped first so that they run again;
# then each of "modules" is imported in turn. Prints, as JSON, one entry per phase: the first of
# its "modules" whose import loaded a "watched" top-level package not loaded when the phase
# began, with those packages, else null. An import that fails ends the probe with the traceback.
_PROBE = """
import importlib, json, sys
results = []
for phase in json.loads(sys.argv[1]):
    for name in [name for name, module in sys.modules.items() if module is None]:
        del sys.modules[name]
    for name in phase["blocked"]:
        sys.modules[name] = None
    if phase["fresh"]:
        for name in [name for name in sys.modules if name.partition(".")[0] == "samplegrad"]:
            del sys.modules[name]
    def loaded():
        return {name for name in phase["watched"] if sys.modules.get(name) is not None}
    before = loaded()
    for name in phase["modules"]:
        importlib.import_module(name)
        if loaded() - before:
            results.append([name, sorted(loaded() - before)])
            break
    else:
        results.append(None)
print(json.dumps(results))
"""


def _modules(package: str) -> list[str]:
    """``package`` and every module below it (``pkgutil`` imports the subpackages, here, to
    find their modules), less ``__main__`` modules, which run a command when imported."""
    below = pkgutil.walk_packages(import_module(package).__path__, package + ".")
    names = [package, *(info.name for info in below)]
    return [name for name in names if name.rpartition(".")[2] != "__main__"]


def _core_modules() -> list[str]:
    core = [
        name
        for name in _modules("samplegrad")
        if not name.startswith(("samplegrad.lab", "samplegrad.cli"))
    ]
    assert "samplegrad.estimators.catalog" in core
    return core


PHASES = {
    "core without the lab extra": {
        "modules": ["torch", "numpy", *_core_modules()],
        "watched": LAB_LIBRARIES,
        "blocked": LAB_LIBRARIES,
        "fresh": False,
    },
    "samplegrad and its command line": {
        "modules": ["samplegrad", "samplegrad.cli"],
        "watched": LAB_LIBRARIES,
        "blocked": [],
        "fresh": True,
    },
    "every lab and CLI module": {
        "modules": [*_modules("samplegrad.lab"), *_modules("samplegrad.cli")],
        "watched": ["matplotlib"],
        "blocked": [],
        "fresh": False,
    },
}


@pytest.fixture(scope="module")
def first_to_load() -> dict[str, list | None]:
    """Per phase, ``[module, [packages]]`` for the first import that loaded one of the phase's
    watched packages, else ``None``, from one fresh interpreter that finds this checkout's
    samplegrad. Fails if an import fails, e.g. on a blocked package."""
    source = str(Path(samplegrad.__file__).parents[1])
    path = os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))
    completed = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(list(PHASES.values()))],
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return dict(zip(PHASES, json.loads(completed.stdout), strict=True))


def test_core_modules_import_without_the_lab_extra(first_to_load):
    """Every core module, not only those ``samplegrad/__init__`` imports, with matplotlib,
    scikit-learn and tqdm unimportable."""
    assert first_to_load["core without the lab extra"] is None


def test_import_samplegrad_loads_no_lab_library_nor_does_the_command_line(first_to_load):
    """The command line imports its commands' modules, which import the lab's libraries only
    when a command runs."""
    assert first_to_load["samplegrad and its command line"] is None


def test_lab_and_cli_modules_load_no_matplotlib(first_to_load):
    """Plotting libraries are imported inside the functions that plot."""
    assert first_to_load["every lab and CLI module"] is None
