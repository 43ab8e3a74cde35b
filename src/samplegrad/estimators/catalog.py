"""Every estimator name in one catalog: the registered classes and their configured variants.

A class registers itself under its ``name`` with :func:`register`; a *variant* is a registered
class with options under a name of its own (``"score-loo"`` is ``ScoreFunction(baseline="loo")``),
declared with :func:`register_variant` in the class's module. Everything that lists estimators
reads this catalog: ``sg.expectation``'s names, ``samplegrad compare``, the lab's models and
trainers, the command line's choices and help, and the tests (``tests/test_conformance.py``
checks every name on every family it supports). The facts about an estimator live on its class
(``unbiased``, ``stateful``, ``min_num_samples``, ``required_options``, ``supports``); an
:class:`Entry` adds the options of its name.

The catalog's order is the order of registration, so of the imports in
:mod:`samplegrad.estimators`: every list of names (help texts, ``samplegrad compare``'s default
rows) follows it.

The rule of ``estimator="auto"`` lives here too, once: :func:`auto`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from samplegrad._internal.validation import check_num_samples

if TYPE_CHECKING:
    from torch.distributions import Distribution

    from samplegrad.estimators.base import Estimator


def _no_options() -> dict[str, Any]:
    """The options of a class's own name: none."""
    return {}


@dataclass(frozen=True)
class Entry:
    """One name of the catalog: an estimator class and the options its name stands for."""

    name: str
    cls: type[Estimator]
    options: Callable[..., dict[str, Any]] = _no_options
    """The constructor's keyword options, made anew for every build, so a stateful option (a
    moving average) is never shared between two estimators. Its own keyword parameters, if any,
    are the variant's (``"score-ma"``'s ``decay``)."""
    summary: str = ""
    """What a variant adds to its class (for help texts); empty for a class's own name."""

    @property
    def is_variant(self) -> bool:
        return self.name != self.cls.name

    @property
    def unbiased(self) -> bool:
        return self.cls.unbiased

    @property
    def required_options(self) -> tuple[str, ...]:
        """Constructor arguments the caller builds for its problem (RELAX's ``control``)."""
        return self.cls.required_options

    @property
    def stateful(self) -> bool:
        """Whether an estimator of this name holds state that must persist between calls (and
        so must be created once and kept, never shared between models or replicas). A class
        with required options is taken as stateful: what the caller builds (RELAX's control
        network) has parameters."""
        if self.cls.stateful or self.cls.required_options:
            return True
        return _probe(self).has_state

    @property
    def min_num_samples(self) -> int:
        """The fewest samples this name accepts (``"score-loo"``: 2)."""
        return next(n for n in range(self.cls.min_num_samples, 64) if self.accepts(n) is None)

    def accepts(self, num_samples: int) -> str | None:
        """``None`` if this name accepts ``num_samples``, else the reason (a sentence)."""
        try:
            if self.cls.required_options:
                check_num_samples(
                    num_samples,
                    minimum=self.cls.min_num_samples,
                    why=f"for estimator {self.name!r}",
                )
            else:
                _probe(self).check_num_samples(num_samples)
        except ValueError as error:
            return str(error)
        return None

    def supports(self, dist: Distribution) -> bool:
        """Whether an estimator of this name can handle ``dist``'s family (``"score-delta"``
        needs independent numeric coordinates where ``"score"`` takes any family)."""
        if self.cls.required_options:
            return self.cls.supports(dist)
        return _probe(self).handles(dist)

    def build(self, **arguments: Any) -> Estimator:
        """A new estimator of this name.

        ``arguments`` give the :attr:`required_options`, the variant's own parameters
        (``entry("score-ma").build(decay=0.99)``) and any further keyword argument of the
        class's constructor (``entry("rebar").build(temperature=0.3)``); a ``TypeError`` for
        one the constructor does not take or one the name already sets.
        """
        missing = [name for name in self.cls.required_options if name not in arguments]
        if missing:
            raise TypeError(
                f"estimator {self.name!r} needs {', '.join(missing)}, which only the caller can "
                f"build for its problem: pass an instance, e.g. sg.{self.cls.__name__}(...)"
            )
        own = inspect.signature(self.options).parameters
        variant = self.options(**{key: arguments.pop(key) for key in [*arguments] if key in own})
        return self.cls(**variant, **arguments)


@functools.cache
def _probe(entry: Entry) -> Estimator:
    """A throw-away instance, for the facts that depend on a name's options."""
    return entry.build()


CATALOG: dict[str, Entry] = {}
"""Every estimator name, in the order of registration: each class followed by its variants."""


def register(cls: type[Estimator]) -> type[Estimator]:
    """Class decorator: the estimator is known by ``cls.name`` everywhere."""
    CATALOG[cls.name] = Entry(cls.name, cls)
    return cls


def register_variant(
    name: str, cls: type[Estimator], summary: str, options: Callable[..., dict[str, Any]]
) -> None:
    """Name a configuration of a registered class (``"score-loo"``); ``summary`` says what the
    options add, for help texts; ``options()`` gives the constructor's keyword arguments, and
    its keyword parameters with defaults are the variant's own (``"score-ma"``'s ``decay``)."""
    if cls.name not in CATALOG:
        raise ValueError(f"register {cls.__name__} before its variant {name!r}")
    CATALOG[name] = Entry(name, cls, options, summary)


def entry(name: str) -> Entry:
    """The catalog entry called ``name``; ``ValueError`` listing the names for an unknown one."""
    if name not in CATALOG:
        names = ", ".join(map(repr, [*CATALOG, AUTO]))
        raise ValueError(f"unknown estimator {name!r}; estimators: {names}")
    return CATALOG[name]


def names_supporting(dist: Distribution, *, variants: bool = True) -> list[str]:
    """The catalog names whose class can handle ``dist``, in catalog order (classes only with
    ``variants=False``)."""
    return [
        name
        for name, item in CATALOG.items()
        if (variants or not item.is_variant) and item.supports(dist)
    ]


AUTO = "auto"
"""The name that lets :func:`auto` choose."""


def auto(dist: Distribution, num_samples: int, *, stateless: bool = False) -> str:
    """The catalog name ``estimator="auto"`` stands for: ``"pathwise"`` where
    ``dist.has_rsample``, else the score function with a leave-one-out baseline for
    ``num_samples >= 2`` (``"score-loo"``). With one sample a baseline must come from earlier
    calls: a moving average (``"score-ma"``) where the caller builds the estimator once and keeps
    it (a model or a trainer, which saves it in its ``state_dict``); with ``stateless=True``,
    for callers that resolve ``"auto"`` at every call and so could only hide the state
    (``sg.expectation``, ``sg.Graph``), the score function without a baseline (``"score"``)."""
    if dist.has_rsample:
        return "pathwise"
    if num_samples >= 2:
        return "score-loo"
    return "score" if stateless else "score-ma"
