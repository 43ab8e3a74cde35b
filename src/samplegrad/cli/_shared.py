"""What the commands share: the usage errors, options made from a config's fields, ``--threads``.

**Usage errors.** A user's mistake is a :class:`UsageError`, or one of the lab's errors that
mean the same (:data:`LAB_USAGE_ERRORS`: a training request that cannot be carried out, a
comparison that cannot be made, data that cannot be found or read, CartPole without
Gymnasium). :func:`samplegrad.cli.main` turns each into the command's usage line and one line
``samplegrad <command>: error: <message>``, exit status 2, never a traceback.

**Options from fields.** :func:`add_config_options` makes one option per field of a config
dataclass (``--num-samples`` for ``num_samples``), with the field's default, type and help
(its ``metadata``, see :func:`samplegrad.lab.training.config.option`): an int bound becomes
the option's type check, choices its choices, a ``True`` flag ``--no-...``. No option of a
config is written twice; :func:`config_from` makes the config back from the parsed options.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

from samplegrad.lab.compare.problems import CompareError
from samplegrad.lab.data import CorruptDataError, MNISTNotFoundError
from samplegrad.lab.rl.cartpole import GymnasiumMissingError
from samplegrad.lab.training.config import TrainError


class UsageError(Exception):
    """A request the command cannot carry out as given: the message says what to change."""


LAB_USAGE_ERRORS: tuple[type[Exception], ...] = (
    TrainError,
    CompareError,
    MNISTNotFoundError,
    CorruptDataError,
    GymnasiumMissingError,
)
"""The lab's errors that are the user's to fix: the command line treats them as
:class:`UsageError`."""


@contextlib.contextmanager
def writing(out: object) -> Iterator[None]:
    """While open, an ``OSError`` (other than missing data) is a :class:`UsageError` saying
    that ``out`` cannot be written."""
    try:
        yield
    except OSError as error:
        if isinstance(error, LAB_USAGE_ERRORS):
            raise
        raise UsageError(f"cannot write to {out}: {error}") from None


def at_least(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse ``type`` accepting integers ``>= minimum`` (and ``<= maximum``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum}, got {value}")
        return value

    return parse


def _value_type(hint: Any) -> type:
    """``int`` for ``int`` or ``int | None``; likewise ``float``, ``str``, ``bool``."""
    if isinstance(hint, types.UnionType):
        return next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return hint


def _declared_in(config_class: type, name: str) -> int:
    """How far up ``config_class``'s bases the field ``name`` was first declared (0: by the
    class itself), so that a command lists its own options before those every run has."""
    owners = [cls for cls in config_class.__mro__ if name in vars(cls).get("__annotations__", {})]
    return config_class.__mro__.index(owners[-1])


def add_config_options(
    parser: argparse.ArgumentParser,
    config_class: type,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """One option of ``parser`` per field of the dataclass ``config_class`` (module
    docstring); ``overrides`` replaces parts of a field's metadata (``{"help": ...}``) for a
    config whose fields do not carry their help, or whose help the command line completes."""
    hints = typing.get_type_hints(config_class)
    fields = sorted(
        dataclasses.fields(config_class), key=lambda f: _declared_in(config_class, f.name)
    )
    groups: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for field in fields:
        rule = {**field.metadata, **(overrides or {}).get(field.name, {})}
        target: Any = parser
        if rule.get("exclusive"):
            if rule["exclusive"] not in groups:
                groups[rule["exclusive"]] = parser.add_mutually_exclusive_group()
            target = groups[rule["exclusive"]]
        flag, help = "--" + field.name.replace("_", "-"), rule.get("help", "")
        kind = _value_type(hints[field.name])
        if kind is bool:  # a flag: --resume, or --no-progress for a default of True
            flag = "--no-" + flag[2:] if field.default else flag
            action = "store_false" if field.default else "store_true"
            target.add_argument(flag, dest=field.name, action=action, help=help)
            continue
        required = field.default is dataclasses.MISSING
        if not required and field.default is not None:
            help += " (default: %(default)s)"
        if "minimum" in rule:
            kind = at_least(rule["minimum"], rule.get("maximum"))
        target.add_argument(
            flag,
            type=kind,
            default=None if required else field.default,
            required=required,
            choices=rule.get("choices"),
            metavar=rule.get("metavar"),
            help=help,
        )


def config_from(args: argparse.Namespace, config_class: Callable[..., Any]) -> Any:
    """The config whose fields are the parsed options of :func:`add_config_options`."""
    return config_class(
        **{field.name: getattr(args, field.name) for field in dataclasses.fields(config_class)}
    )


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """``--threads N``: torch's intra-op threads for the command (:func:`torch.set_num_threads`)."""
    parser.add_argument(
        "--threads",
        type=at_least(1),
        metavar="N",
        help="CPU threads for torch's operations (default: torch's choice, about one per core). "
        "On a shared or busy machine fewer threads can be many times faster: every operation "
        "waits for its slowest thread, and threads that wait for a busy core stall each step",
    )


@contextlib.contextmanager
def threads(count: int | None) -> Iterator[None]:
    """While open, torch uses ``count`` intra-op threads (``None``: its own choice); the
    previous number comes back on exit."""
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
