"""Compare gradient estimators on problems whose exact gradient and variance are known.

For a problem (:mod:`samplegrad.lab.compare.problems`) and a list of estimators, :func:`compare`
measures, per estimator and parameter, ``R`` independent gradient estimates (each from ``K``
samples) with :mod:`samplegrad.diagnostics`: their mean, bias against the exact gradient,
variance, signal-to-noise ratio, the time of one estimate, the evaluations of ``f`` it took and
the work-normalised variance, next to the exact variance where it is known (closed forms,
quadrature or enumeration). It can
sweep one of the problem's constants (Mohamed et al. 2020, Figs. 2-3: the variance as a function
of ``k``) and several ``K``. The ``samplegrad compare`` command prints the result with
:func:`format_table`, saves it with :func:`write_json` and :func:`write_csv`, and plots it with
:mod:`samplegrad.lab.plots.compare`.

How it measures:

- **Estimates.** For the toy problems the ``R`` repeats are one batched float64 call: every
  parameter is a leaf of shape ``(R,)``, the distribution has batch shape ``(R,)``, and one
  backward pass leaves ``R`` independent estimates in the leaves' gradients (batch elements
  share no samples). For ``vae-encoder`` they are ``R`` forward and backward passes. Each
  estimator draws from its own ``torch.Generator`` seeded with ``seed``, so the rows use common
  random numbers and do not depend on which other estimators are compared.
- **Statistics.** See :mod:`samplegrad.diagnostics`: the sample mean and its standard error
  ``sqrt(s^2 / R)``, the unbiased sample variance ``s^2`` and its standard error
  ``sqrt((m4 - s^4 (R - 3) / (R - 1)) / R)``, ``SNR = |mean| / s``.
- **Time.** For the toy problems, a separate single-threaded loop of single estimates
  (``R = 1``, forward and backward): the median of 5 blocks of 40 calls, per call, in
  microseconds (see :meth:`samplegrad.lab.compare.problems.BatchedProblem.measure`).
- **Evaluations.** The points ``f`` is called with for one estimate, over all its calls (``K``
  for most estimators; ``K (1 + D (K_classes - 1))`` for IndeCateR's exact sums, ``3 K`` for
  REBAR's relaxed points): the cost in evaluations, next to the time.

Exact variances are those of the estimator with ``K`` independent samples; where none is known
(biased relaxations, a moving-average baseline whose value is itself random, a real model) it is
``None``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np
import torch
from torch import Tensor, nn

from samplegrad.estimators import Estimator, catalog
from samplegrad.lab.compare import problems as compare_problems
from samplegrad.lab.compare.problems import (
    BUILT_IN,
    PROBLEM_NAMES,
    PROBLEMS,
    BatchedProblem,
    Bernoulli3D,
    BernoulliToy,
    CategoricalProduct,
    CompareError,
    GaussianCos,
    GaussianExp,
    GaussianQuadratic,
    IWAEGaussian,
    Measurement,
    Problem,
    VAEEncoder,
)
from samplegrad.lab.compare.snr import Curve, debiased_snr
from samplegrad.lab.files import write_atomic

__all__ = [
    "BUILT_IN",
    "PROBLEMS",
    "PROBLEM_NAMES",
    "BatchedProblem",
    "Bernoulli3D",
    "BernoulliToy",
    "BoundGradientSpec",
    "CategoricalProduct",
    "CompareError",
    "EstimatorSpec",
    "GaussianCos",
    "GaussianExp",
    "GaussianQuadratic",
    "IWAEGaussian",
    "Problem",
    "Result",
    "VAEEncoder",
    "compare",
    "estimator_specs",
    "format_table",
    "write_csv",
    "write_json",
]


# --------------------------------------------------------------------------- estimator specs


class PointwiseControl(nn.Module):
    """A small learned control for ``RELAX`` on the toy problems: an MLP ``1 -> 8 -> 1``
    applied to every relaxed value and summed over the ``event_dims`` trailing event
    dimensions, initialised from a fixed seed so that comparisons repeat. Untrained here:
    compare measures RELAX as it starts."""

    def __init__(self, event_dims: int = 0, seed: int = 0) -> None:
        super().__init__()
        self.event_dims = event_dims
        self.layers = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator))

    def forward(self, relaxed: Tensor) -> Tensor:
        values = self.layers(relaxed.unsqueeze(-1)).squeeze(-1)
        return values.sum(tuple(range(-self.event_dims, 0))) if self.event_dims else values


REQUIRED_OPTIONS: dict[str, Callable[[Problem], object]] = {
    "control": lambda problem: PointwiseControl(problem.event_dims).to(problem.dtype),
}
"""How compare builds, for a problem, each constructor argument an estimator class requires
(:attr:`samplegrad.Estimator.required_options`)."""


@dataclass(frozen=True)
class EstimatorSpec:
    """A name for ``samplegrad compare --estimators``: a catalog entry, built per problem."""

    entry: catalog.Entry

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def cls(self) -> type[Estimator]:
        return self.entry.cls

    @property
    def summary(self) -> str:
        return self.entry.summary

    def build(self, problem: Problem) -> Estimator:
        """A new estimator (never shared between measurements), with its required options
        built for ``problem``."""
        return self.entry.build(
            **{option: REQUIRED_OPTIONS[option](problem) for option in self.entry.required_options}
        )


@dataclass(frozen=True)
class BoundGradientSpec:
    """A gradient of ``sg.iwae_bound`` (its ``estimator`` argument), for the problems of the
    bound (:attr:`samplegrad.lab.compare.problems.Problem.bound_gradients`)."""

    name: str

    def build(self, problem: Problem) -> str:
        """The name itself: ``sg.iwae_bound`` takes it."""
        return self.name


def estimator_specs() -> dict[str, EstimatorSpec]:
    """Every name of :data:`samplegrad.estimators.catalog.CATALOG`, read at call time, so
    estimators registered later appear too."""
    return {name: EstimatorSpec(entry) for name, entry in catalog.CATALOG.items()}


# ------------------------------------------------------------------------------ measurement

CURVE_POINTS = 121
"""Points of the swept constant at which exact variance curves are evaluated."""

Row = dict[str, object]
"""One estimator x parameter x sweep value x ``K``: the columns of :data:`ROW_COLUMNS`."""

ROW_COLUMNS = (
    "estimator",
    "parameter",
    "size",
    "num_samples",
    "gradient_mean",
    "gradient_se",
    "exact_gradient",
    "bias",
    "bias_se",
    "variance",
    "variance_se",
    "exact_variance",
    "snr",
    "us_per_estimate",
    "evaluations",
    "work_normalized_variance",
)
"""The columns of a row, in order; a swept constant's column follows ``size``."""


class Result(TypedDict, total=False):
    problem: str
    formula: str
    parameters: dict[str, float]
    sweep: dict[str, object] | None
    num_samples: list[int]
    repeats: int
    seed: int
    torch: str
    rows: list[Row]
    exact_curves: list[dict[str, object]]


def compare(
    problem: str | Problem,
    estimators: Sequence[str] | None = None,
    num_samples: int | Sequence[int] | None = None,
    repeats: int | None = None,
    seed: int = 0,
    sweep: tuple[str, Sequence[float]] | None = None,
    progress: Callable[[str], None] | None = None,
    timing_calls: int | None = None,
) -> Result:
    """Measure estimators on a problem; see the module docstring for how.

    Args:
        problem: a name in :data:`PROBLEMS` or a :class:`Problem` instance.
        estimators: names from :func:`estimator_specs` (for a problem of ``sg.iwae_bound``,
            from its ``bound_gradients``); ``None`` for the problem's defaults.
        num_samples: ``K``, samples per gradient estimate, or several ``K`` to measure each;
            ``None`` for the problem's ``default_num_samples`` (2 for most).
        repeats: ``R >= 2``, independent gradient estimates per estimator; ``None`` for the
            problem's default (100 000 for the toy problems).
        seed: seeds every estimator's ``torch.Generator``.
        sweep: ``(constant, values)``: measure the problem at each value of one of its
            constants (e.g. ``("k", numpy.linspace(-3, 3, 25))``), and add exact variance
            curves on a fine grid between the smallest and largest value.
        progress: called with a short description before each measurement.
        timing_calls: calls per timed block of one estimate, for the toy problems (the
            median of five blocks counts); ``None`` for
            :data:`samplegrad.lab.compare.problems.TIMING_CALLS` (40). Fewer make the times
            noisier, not the statistics.

    Returns:
        A JSON-ready dict: the problem, its constants, the sweep, the ``K`` values, ``R``, the
        seed, the torch version, one row per estimator x parameter x sweep value x ``K`` (the
        columns of :data:`ROW_COLUMNS`, plus the swept constant), and, when swept, the exact
        curves: per estimator, parameter and ``K``, the grid ``x`` and the exact ``variance``
        (``None`` where unknown). For a problem that fits SNR slopes (``iwae-gaussian``), also
        ``snr_curves``: per estimator and parameter, the ``K`` values, the SNR at each with
        ``|E g|^2`` debiased (:func:`samplegrad.lab.compare.snr.debiased_snr`), and the
        least-squares slopes of log SNR against log K over all ``K`` and over ``K >= 16``.

    Raises:
        CompareError: unknown problem, constant or estimator, an estimator that cannot handle
            the problem's distribution or ``num_samples``, or invalid numbers.
    """
    problem = _resolve_problem(problem)
    timing_calls = compare_problems.TIMING_CALLS if timing_calls is None else timing_calls
    sample_counts = _check_num_samples(
        problem.default_num_samples if num_samples is None else num_samples
    )
    repeats = problem.default_repeats if repeats is None else repeats
    _check_repeats(repeats)
    points = _sweep_points(problem, sweep)
    specs = _resolve_estimators(problem, estimators)
    for spec in specs:
        for K in sample_counts:
            _check_runs(points[0][1], spec, K)
    rows: list[Row] = []
    for value, point in points:
        for K in sample_counts:
            for spec in specs:
                if progress is not None:
                    where = "" if sweep is None else f"{sweep[0]}={value:g}, "
                    progress(f"{problem.name}: {spec.name}, {where}K={K}")
                measurement = point.measure(spec, K, repeats, seed, timing_calls)
                rows.extend(_rows(point, spec, K, measurement, sweep, value))
    result: Result = {
        "problem": problem.name,
        "formula": problem.formula,
        "parameters": problem.constants(),
        "sweep": None if sweep is None else {"name": sweep[0], "values": [v for v, _ in points]},
        "num_samples": sample_counts,
        "repeats": repeats,
        "seed": seed,
        "torch": torch.__version__,
        "rows": rows,
    }
    if sweep is not None:
        values = [v for v, _ in points]
        result["exact_curves"] = _exact_curves(problem, sweep[0], values, specs, sample_counts)
    if problem.fits_snr_slopes:
        result["snr_curves"] = snr_curves(rows, repeats, None if sweep is None else sweep[0])
    return result


def snr_curves(rows: Sequence[Row], repeats: int, swept: str | None = None) -> list[Row]:
    """Per estimator, parameter (and sweep value), the debiased SNR against ``K`` from the
    rows' mean norms and variances, with its log-log slopes
    (:meth:`samplegrad.lab.compare.snr.Curve.as_row`; a slope is ``None`` with fewer than two
    ``K``, or an SNR of 0)."""
    values: dict[tuple[object, ...], list[Row]] = {}
    for row in rows:
        key = (row["estimator"], row["parameter"], None if swept is None else row[swept])
        values.setdefault(key, []).append(row)
    curves = []
    for (estimator, parameter, value), chosen in values.items():
        snr = [
            debiased_snr(row["gradient_mean"], row["variance"], repeats)  # type: ignore[arg-type]
            for row in chosen
        ]
        ks = [row["num_samples"] for row in chosen]
        curve = Curve(str(estimator), str(parameter), ks, snr).as_row()  # type: ignore[arg-type]
        curves.append(curve if swept is None else {swept: value, **curve})
    return curves


def _resolve_problem(problem: str | Problem) -> Problem:
    if isinstance(problem, Problem):
        return problem
    if problem == VAEEncoder.name:
        raise CompareError(
            "problem 'vae-encoder' needs a trained model: give --checkpoint (from "
            "`samplegrad train vae`), or build VAEEncoder.from_checkpoint(...)"
        )
    if problem not in BUILT_IN:
        raise CompareError(f"unknown problem {problem!r}; choose one of {', '.join(PROBLEM_NAMES)}")
    return BUILT_IN[problem]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_num_samples(num_samples: int | Sequence[int]) -> list[int]:
    counts = [num_samples] if _is_int(num_samples) else list(num_samples)  # type: ignore[arg-type]
    if not counts or not all(_is_int(K) and K >= 1 for K in counts):
        raise CompareError(f"num_samples must be ints >= 1, got {num_samples!r}")
    return list(dict.fromkeys(counts))


def _check_repeats(repeats: int) -> None:
    if not _is_int(repeats) or repeats < 2:
        raise CompareError(
            f"repeats must be an int >= 2 (a variance needs two estimates), got {repeats!r}"
        )


def _sweep_points(
    problem: Problem, sweep: tuple[str, Sequence[float]] | None
) -> list[tuple[float | None, Problem]]:
    """``(value, problem at that value)`` for each point of the sweep; one point without."""
    if sweep is None:
        return [(None, problem)]
    name, values = sweep
    values = [float(v) for v in values]
    if not values or not all(math.isfinite(v) for v in values):
        raise CompareError(f"sweep over {name!r} needs finite values, got {values!r}")
    return [(value, problem.with_constant(name, value)) for value in values]


def _resolve_estimators(
    problem: Problem, names: Sequence[str] | None
) -> list[EstimatorSpec | BoundGradientSpec]:
    """The specs for ``names``, checked against the registry and the problem's distribution
    (for a problem of ``sg.iwae_bound``, against its gradients)."""
    names = list(problem.default_estimators if names is None else names)
    if not names:
        raise CompareError("no estimators given; name at least one")
    if problem.bound_gradients:
        return _resolve_bound_gradients(problem, names)
    specs = estimator_specs()
    unknown = [n for n in names if n not in specs]
    if unknown:
        hints = [
            f"; {n!r} is a gradient of sg.iwae_bound: measure it with --problem {owner}"
            for n in unknown
            for owner, other in BUILT_IN.items()
            if n in other.bound_gradients
        ]
        raise CompareError(
            f"unknown estimator{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}; valid names: {', '.join(specs)}{''.join(hints)}"
        )
    dist = problem.example_distribution()
    unfit = [n for n in names if not specs[n].entry.supports(dist)]
    if unfit:
        fit = sorted(n for n, spec in specs.items() if spec.entry.supports(dist))
        raise CompareError(
            f"{', '.join(map(repr, unfit))} cannot handle the {type(dist).__name__} "
            f"distribution of problem {problem.name!r}; estimators that can: {', '.join(fit)}"
        )
    return [specs[n] for n in dict.fromkeys(names)]


def _resolve_bound_gradients(problem: Problem, names: list[str]) -> list[BoundGradientSpec]:
    """``names`` as gradients of ``sg.iwae_bound``; any other name is refused, with the fix."""
    other = [n for n in names if n not in problem.bound_gradients]
    if other:
        raise CompareError(
            f"problem {problem.name!r} measures the gradients of sg.iwae_bound, and "
            f"{', '.join(map(repr, other))} {'is' if len(other) == 1 else 'are'} not one of them: "
            f"name some of {', '.join(problem.bound_gradients)} (e.g. --estimators "
            f"{','.join(problem.default_estimators)}), or pick a problem of E_q[f] for the "
            "catalog's estimators"
        )
    return [BoundGradientSpec(n) for n in dict.fromkeys(names)]


def _check_runs(
    problem: Problem, spec: EstimatorSpec | BoundGradientSpec, num_samples: int
) -> None:
    """Run one throw-away estimate, turning the estimator's own argument errors into ours."""
    try:
        problem.try_estimate(spec.build(problem), num_samples)
    except ValueError as error:
        raise CompareError(
            f"estimator {spec.name!r} cannot run on problem {problem.name!r} with "
            f"num_samples={num_samples}: {error}"
        ) from error


def _rows(
    problem: Problem,
    spec: EstimatorSpec | BoundGradientSpec,
    num_samples: int,
    measurement: Measurement,
    sweep: tuple[str, Sequence[float]] | None,
    value: float | None,
) -> list[Row]:
    """A row per parameter measured, with the exact variance where known."""
    exact_variance = problem.exact_variance(spec.name, num_samples)
    rows = []
    for stats in measurement.stats:
        summary = stats.as_row()
        row: Row = {"estimator": spec.name, "parameter": stats.name, "size": stats.size}
        if sweep is not None:
            row[sweep[0]] = value
        row["num_samples"] = num_samples
        row.update({key: summary[key] for key in ROW_COLUMNS[4:] if key in summary})
        row["evaluations"] = measurement.evaluations
        row["exact_variance"] = None if exact_variance is None else exact_variance[stats.name]
        rows.append({key: row[key] for key in _columns(sweep)})
    return rows


def _columns(sweep: tuple[str, Sequence[float]] | None) -> tuple[str, ...]:
    if sweep is None:
        return ROW_COLUMNS
    return (*ROW_COLUMNS[:3], sweep[0], *ROW_COLUMNS[3:])


def _exact_curves(
    problem: Problem,
    name: str,
    values: list[float],
    specs: list[EstimatorSpec],
    sample_counts: list[int],
) -> list[dict[str, object]]:
    """Exact variances on :data:`CURVE_POINTS` points spanning the swept values."""
    if len(values) < 2:
        return []
    grid = np.linspace(min(values), max(values), CURVE_POINTS).tolist()
    points = [problem.with_constant(name, x) for x in grid]
    curves = []
    for spec in specs:
        for K in sample_counts:
            exact = [point.exact_variance(spec.name, K) for point in points]
            if all(e is None for e in exact):
                continue
            parameters = next(e for e in exact if e is not None)
            for parameter in parameters:
                curves.append(
                    {
                        "estimator": spec.name,
                        "parameter": parameter,
                        "num_samples": K,
                        "x": grid,
                        "variance": [None if e is None else e[parameter] for e in exact],
                    }
                )
    return curves


# ---------------------------------------------------------------------------------- output

MISSING = "-"
"""Shown in the table where a value is unknown (``null`` in the JSON)."""

TABLE_COLUMNS = {
    "estimator": "estimator",
    "parameter": "parameter",
    "num_samples": "K",
    "gradient_mean": "gradient mean",
    "gradient_se": "s.e.",
    "exact_gradient": "exact gradient",
    "bias": "bias",
    "variance": "variance",
    "exact_variance": "exact variance",
    "snr": "SNR",
    "us_per_estimate": "us/estimate",
    "evaluations": "f evals",
}
"""The printed columns (all of them are in the JSON and CSV files), by row key."""


def format_table(result: Result) -> str:
    """A header line naming the problem and its numbers, then aligned columns (``%.6g``);
    with a sweep, the swept constant's column follows the parameter."""
    constants = ", ".join(f"{k}={v:g}" for k, v in result["parameters"].items())
    sweep = result.get("sweep")
    counts = ",".join(map(str, result["num_samples"]))
    header = (
        f"{result['problem']}: {result['formula']}"
        + (f"; {constants}" if constants else "")
        + ("" if sweep is None else f"; {sweep['name']} swept over {len(sweep['values'])} values")
        + f"; K={counts} samples per estimate, R={result['repeats']} repeats, "
        f"seed {result['seed']}"
    )
    keys = list(TABLE_COLUMNS)
    titles = list(TABLE_COLUMNS.values())
    if sweep is not None:
        keys.insert(2, sweep["name"])
        titles.insert(2, sweep["name"])
    lines = [
        [str(row[key]) if i < 2 else _number(row[key]) for i, key in enumerate(keys)]
        for row in result["rows"]
    ]
    for line in lines:  # K is an integer
        line[keys.index("num_samples")] = line[keys.index("num_samples")].split(".")[0]
    table = [header, *_aligned(titles, lines)]
    if "snr_curves" in result:
        table += ["", *_snr_table(result["snr_curves"])]
    return "\n".join(table)


def _aligned(titles: list[str], lines: list[list[str]]) -> list[str]:
    """The titles and the lines in columns, the first two left-aligned, the others right."""
    widths = [max(len(cell) for cell in column) for column in zip(titles, *lines, strict=True)]

    def join(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(w) if i < 2 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        )

    return [join(titles), *(join(cells) for cells in lines)]


def _snr_table(curves: list[Row]) -> list[str]:
    """The SNR against ``K`` and its slopes, a line per estimator and parameter (and sweep
    value, in the order measured)."""
    counts = curves[0]["num_samples"] if curves else []
    titles = ["estimator", "parameter", *(f"K={k}" for k in counts), "slope", "slope K>=16"]
    lines = [
        [
            str(curve["estimator"]),
            str(curve["parameter"]),
            *map(_number, curve["snr"]),  # type: ignore[arg-type]
            _signed(curve["slope"]),
            _signed(curve["tail_slope"]),
        ]
        for curve in curves
    ]
    note = (
        "SNR = |E g| / sqrt(tr Cov g) against K (|E g|^2 debiased), least-squares slopes of "
        "log SNR against log K:"
    )
    return [note, *_aligned(titles, lines)]


def _signed(value: object) -> str:
    return MISSING if value is None else f"{value:+.3f}"


def _number(value: object) -> str:
    return MISSING if value is None else f"{value:.6g}"


def write_json(result: Result, directory: str | os.PathLike[str]) -> Path:
    """Write ``result`` to ``directory/compare.json`` atomically (temp file, then replace).

    Readers never see a half-written file, and a failed write leaves no temp file behind.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "compare.json"
    write_atomic(path, lambda file: file.write(json.dumps(result, indent=2) + "\n"))
    return path


def write_csv(result: Result, directory: str | os.PathLike[str]) -> Path:
    """Write the rows to ``directory/compare.csv`` atomically, one column per row key
    (:data:`ROW_COLUMNS` and the swept constant), empty cells for unknown values, and the
    problem's name and constants as leading columns so that files can be concatenated."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "compare.csv"
    rows = result["rows"]
    swept = result.get("sweep")
    constants = {
        k: v for k, v in result["parameters"].items() if swept is None or k != swept["name"]
    }
    columns = ["problem", *constants, *(rows[0] if rows else ROW_COLUMNS)]

    def write(file: io.IOBase) -> None:
        writer = csv.DictWriter(file, columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            cells = {"problem": result["problem"], **constants, **row}
            writer.writerow({k: "" if cells[k] is None else cells[k] for k in columns})

    write_atomic(path, write)
    return path
