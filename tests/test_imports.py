"""What importing samplegrad loads, each check in a fresh interpreter (docs/design.md, "Layout
and import rules").

The core (everything but ``samplegrad.lab`` and ``samplegrad.cli``) needs none of the lab's
libraries, so ``pip install samplegrad`` works without the ``lab`` extra; the lab and the CLI
import matplotlib only inside the functions that plot, so a command that draws nothing does not
pay for it. import-linter (``make lint``) checks the same rules on the source; these tests check
what really ends up in ``sys.modules``, lazy imports and third-party packages included.

torch itself imports tqdm when it is installed (``torch.hub``'s download progress bar), so
"``import samplegrad`` loads no tqdm" is measured against a bare ``import torch``, and the core is
also imported with the lab's libraries made unimportable, as if the extra were not installed.
"""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import samplegrad

LAB_LIBRARIES = ["matplotlib", "sklearn", "tqdm"]

# argv[1] is a JSON object: "blocked" packages are made unimportable (a ``None`` entry in
# sys.modules makes ``import`` raise ModuleNotFoundError); "baseline" modules are imported first;
# then each of "modules" in turn. Prints, as JSON, the first of "modules" whose import loaded
# a "watched" top-level package that the baseline had not, with those packages; else null.
_PROBE = """
import importlib, json, sys
probe = json.loads(sys.argv[1])
for name in probe["blocked"]:
    sys.modules[name] = None
for name in probe["baseline"]:
    importlib.import_module(name)
def loaded():
    return {name for name in probe["watched"] if sys.modules.get(name) is not None}
before = loaded()
for name in probe["modules"]:
    importlib.import_module(name)
    if loaded() - before:
        print(json.dumps([name, sorted(loaded() - before)]))
        break
else:
    print(json.dumps(None))
"""


def _modules(package: str) -> list[str]:
    """``package`` and every module below it (``pkgutil`` imports the subpackages, here, to
    find their modules), less ``__main__`` modules, which run a command when imported."""
    below = pkgutil.walk_packages(import_module(package).__path__, package + ".")
    names = [package, *(info.name for info in below)]
    return [name for name in names if name.rpartition(".")[2] != "__main__"]


def _first_to_load(
    modules: list[str],
    watched: list[str],
    blocked: list[str] | None = None,
    baseline: list[str] | None = None,
) -> list | None:
    """Import ``modules`` in order in a fresh interpreter that finds this checkout's
    samplegrad; ``[module, [packages]]`` for the first import that loads one of the ``watched``
    packages beyond what ``baseline`` loaded, else ``None``. Fails if an import fails, e.g.
    on one of the ``blocked`` packages."""
    source = str(Path(samplegrad.__file__).parents[1])
    path = os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))
    probe = {
        "modules": modules,
        "watched": watched,
        "blocked": blocked or [],
        "baseline": baseline or [],
    }
    completed = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(probe)],
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def _core_modules() -> list[str]:
    core = [
        name
        for name in _modules("samplegrad")
        if not name.startswith(("samplegrad.lab", "samplegrad.cli"))
    ]
    assert "samplegrad.estimators.catalog" in core
    return core


def test_import_samplegrad_loads_no_lab_library_nor_does_the_command_line():
    """The command line imports its commands' modules, which import the lab's libraries only
    when a command runs."""
    modules = ["samplegrad", "samplegrad.cli"]
    assert _first_to_load(modules, LAB_LIBRARIES, baseline=["torch", "numpy"]) is None


def test_core_modules_import_without_the_lab_extra():
    """Every core module, not only those ``samplegrad/__init__`` imports, with matplotlib,
    scikit-learn and tqdm unimportable."""
    assert _first_to_load(_core_modules(), LAB_LIBRARIES, blocked=LAB_LIBRARIES) is None


def test_lab_and_cli_modules_load_no_matplotlib():
    """Plotting libraries are imported inside the functions that plot (one process for both
    packages: each new interpreter costs a second and a half)."""
    modules = [*_modules("samplegrad.lab"), *_modules("samplegrad.cli")]
    assert _first_to_load(modules, ["matplotlib"]) is None
