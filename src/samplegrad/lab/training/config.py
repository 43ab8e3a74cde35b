"""What a training run is configured by: fields that describe themselves, and the fields every
run shares.

A trainer's config is a dataclass whose fields are made with :func:`option`. Each carries its
command-line help (``samplegrad train ...`` builds its options from the fields, so no option is
written twice) and the rule its value follows (an int bound, a positive or a finite number, a
set of choices), which :func:`check_fields` applies when a config is made. :class:`RunConfig`
holds the fields every run has (seed, data, device, output folder, resume, progress bar) and
checks them, and names the fields a resumed run must repeat
(:attr:`RunConfig.MUST_MATCH_ON_RESUME`); :class:`EpochConfig` adds those of a run in epochs
over MNIST. Every check here is made before any data is read.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, ClassVar

import torch

__all__ = [
    "HELD_OUT_SIZES",
    "MNIST_TEST_IMAGES",
    "MNIST_TRAINING_IMAGES",
    "EpochConfig",
    "RunConfig",
    "TrainError",
    "check_device",
    "check_field",
    "check_fields",
    "check_int",
    "check_output_folder",
    "epochs_option",
    "option",
]


MNIST_TRAINING_IMAGES = 60_000
"""The training images of the MNIST files, of which ``validation_size`` are held out: the bound
a config checks before any data is read (a smaller folder, such as the tests' fake MNIST, is
checked when it is loaded)."""


MNIST_TEST_IMAGES = 10_000
"""The test images of the MNIST files: the most a test set can have."""


HELD_OUT_SIZES: dict[str, Any] = {"minimum": 0, "maximum": MNIST_TRAINING_IMAGES - 1}
"""The rule of a ``validation_size`` field (:func:`option`): at least one training image left."""


class TrainError(ValueError):
    """A training request that cannot be carried out: the message says what to change."""


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    metavar: str | None = None,
    minimum: int | None = None,
    maximum: int | None = None,
    positive: bool = False,
    finite: bool = False,
    choices: tuple[str, ...] | None = None,
    exclusive: str | None = None,
) -> Any:
    """A config field (``dataclasses.field``) with its help text and its rule in ``metadata``.

    Args:
        default: the value when the option is not given; none makes the option required.
        help: the command line's help text (``(default: ...)`` is added where there is one).
        metavar: the value's name in the help (``N``, ``DIR``).
        minimum: the value is an int ``>= minimum``.
        maximum: and ``<= maximum``.
        positive: the value is a finite number ``> 0``.
        finite: the value is a finite number.
        choices: the value is one of these strings.
        exclusive: options with the same name here exclude each other on the command line
            (``--epochs`` or ``--steps``).
    """
    rules = {
        "minimum": minimum,
        "maximum": maximum,
        "positive": positive or None,
        "finite": finite or None,
        "choices": choices,
    }
    metadata = {
        "help": help,
        "metavar": metavar,
        "exclusive": exclusive,
        **{name: rule for name, rule in rules.items() if rule is not None},
    }
    return dataclasses.field(default=default, metadata=metadata)


def check_int(name: str, value: object, minimum: int, maximum: int | None = None) -> None:
    """:class:`TrainError` naming ``name`` unless ``value`` is an int ``>= minimum`` (and
    ``<= maximum``)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        bounds = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise TrainError(f"{name} must be an int {bounds}, got {value!r}")
    if maximum is not None and value > maximum:
        raise TrainError(f"{name} must be an int in {minimum}..{maximum}, got {value!r}")


def _check_number(name: str, value: object, positive: bool) -> None:
    """:class:`TrainError` unless ``value`` is a finite number (``> 0`` if ``positive``)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not (number and math.isfinite(value) and (value > 0 or not positive)):
        what = "a finite number > 0" if positive else "a finite number"
        raise TrainError(f"{name} must be {what}, got {value!r}")


def check_fields(config: Any) -> None:
    """Apply every field's rule (:func:`option`) to its value: :func:`check_field` for each."""
    for field in dataclasses.fields(config):
        check_field(config, field.name)


def check_field(config: Any, name: str) -> None:
    """Apply the rule of ``config``'s field ``name`` to its value; :class:`TrainError` naming
    the field if it breaks it. A field left at a default of ``None`` is not set and not
    checked; a choice is stored as a plain ``str`` (an enum member becomes its value)."""
    field = next(field for field in dataclasses.fields(config) if field.name == name)
    value, rule = getattr(config, name), field.metadata
    if value is None and field.default is None:
        return
    if "choices" in rule:
        if value not in rule["choices"]:
            raise TrainError(f"{name} must be one of {', '.join(rule['choices'])}, got {value!r}")
        setattr(config, name, str(value))
    if "minimum" in rule:
        check_int(name, value, rule["minimum"], rule.get("maximum"))
    if rule.get("positive") or rule.get("finite"):
        _check_number(name, value, rule.get("positive", False))


def check_output_folder(path: str, name: str) -> None:
    """:class:`TrainError` naming the option ``name`` unless ``path`` is a folder for a
    command's files or can be made one: not a file, below a folder this process may write."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise TrainError(
            f"{name} {path!r} is a file, not a folder: give a folder for the files (it is "
            "created if missing)"
        )
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise TrainError(f"{name} {path!r} cannot be made: {existing!r} is a file")
    if not os.access(existing, os.W_OK):
        raise TrainError(f"{name} {path!r}: the folder {existing!r} is not writable")


def check_device(device: str) -> torch.device:
    """``device`` parsed; :class:`TrainError` for a malformed one or CUDA without CUDA."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise TrainError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise TrainError(
            f"device {device!r} requested but CUDA is not available (torch {torch.__version__}, "
            f"built {'with' if torch.version.cuda else 'without'} CUDA); use --device cpu"
        )
    if parsed.type not in ("cpu", "cuda"):
        raise TrainError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return parsed


_STEPS_HELP = (
    "train for N optimiser steps instead of whole epochs; a metrics row is written at every "
    "epoch boundary and for the final, partial epoch"
)
_VALIDATION_HELP = "training images held out for validation; 0 for none (train on all 60000)"
_SEED_HELP = "seeds every random stream: the same seed gives the same run on the CPU"
_DATA_HELP = (
    "folder with the four MNIST .gz files (default: $SAMPLEGRAD_DATA, then the per-user cache, "
    "then a download)"
)


@dataclasses.dataclass(kw_only=True)
class RunConfig:
    """The fields of every training run; a trainer's config adds its own (and may give these
    other defaults by declaring them again).

    Attributes:
        seed: seeds every random stream of the run (see the trainer's module docstring).
        data_dir: the folder with the MNIST files; ``None`` searches as
            :func:`samplegrad.lab.data.find_mnist` does.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        out: the output folder, created if missing.
        resume: continue from ``out/checkpoint.pt`` instead of starting afresh.
        progress: show a progress bar (only on a terminal).
    """

    MUST_MATCH_ON_RESUME: ClassVar[tuple[str, ...]] = ()
    """Fields a resumed run must share with its checkpoint: what fixes the model and the random
    streams. The others (the length of the run, ``lr``, evaluation and output settings) may
    change between the two."""

    seed: int = option(0, _SEED_HELP, metavar="S", minimum=0)
    data_dir: str | None = option(None, _DATA_HELP, metavar="DIR")
    device: str = option("cpu", "cpu, cuda or cuda:N", metavar="DEVICE")
    out: str = option("train-out", "output folder, created if missing", metavar="DIR")
    resume: bool = option(False, "continue the run whose checkpoint.pt is in --out")
    progress: bool = option(True, "no progress bar (it is shown only on a terminal anyway)")

    def __post_init__(self) -> None:
        check_fields(self)
        self.device = str(check_device(self.device))
        self.out = os.fspath(self.out)
        check_output_folder(self.out, "out")
        self.data_dir = None if self.data_dir is None else os.fspath(self.data_dir)


def epochs_option(default: int) -> Any:
    """The ``epochs`` field with this default (it excludes ``steps`` on the command line)."""
    return option(
        default, "passes over the training split", metavar="N", minimum=1, exclusive="length"
    )


@dataclasses.dataclass(kw_only=True)
class EpochConfig(RunConfig):
    """The fields of a run that passes over MNIST's training split in epochs of Adam steps and
    evaluates in batches (the VAEs, the Bayesian classifiers).

    Attributes:
        epochs: passes over the training split; ignored when ``steps`` is set.
        steps: optimiser steps to train for, instead of ``epochs``.
        batch_size, lr: of the Adam steps.
        validation_size: training images held out for validation (0: none).
        eval_batch_size: images per batch when evaluating.
    """

    epochs: int = epochs_option(10)
    steps: int | None = option(None, _STEPS_HELP, metavar="N", minimum=1, exclusive="length")
    batch_size: int = option(128, "images per step", metavar="B", minimum=1)
    lr: float = option(1e-3, "Adam learning rate", metavar="LR", positive=True)
    validation_size: int = option(10_000, _VALIDATION_HELP, metavar="N", **HELD_OUT_SIZES)
    eval_batch_size: int = option(1000, "images per batch when evaluating", metavar="B", minimum=1)

    def steps_per_epoch(self, num_train: int) -> int:
        """Optimiser steps in one pass over ``num_train`` images."""
        return math.ceil(num_train / self.batch_size)

    def total_steps(self, num_train: int) -> int:
        """The run's optimiser steps: ``steps``, or ``epochs`` passes over ``num_train``."""
        return self.steps or self.epochs * self.steps_per_epoch(num_train)
