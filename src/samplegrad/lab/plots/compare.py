"""Figures of a ``samplegrad compare`` result, written as PNG files.

Figures are built with :class:`matplotlib.figure.Figure` directly and saved through the Agg
renderer, as in :mod:`samplegrad.lab.plots.vae`: no display, no global ``matplotlib.pyplot`` state.
Every figure keeps one colour and one marker per estimator, so an estimator looks the same in
all plots of a result. The title states the problem, its formula, the constants held fixed,
``K`` (samples per gradient estimate) and ``R`` (independent estimates behind every number).

How to read each plot:

- :func:`plot_variance_sweep` (``variance_vs_<constant>.png``): one panel per parameter, the
  swept constant of the problem on the x axis and the variance of one gradient estimate on a
  log y axis, in the style of Mohamed et al. (2020), Fig. 2. **Dots** are measured variances,
  their **bars** span ±2 standard errors of the measured variance (a bar running into the
  bottom edge means the interval reaches zero or below the plotted range). **Solid lines** are
  the exact variances; an estimator without a line has no known exact variance.
- :func:`plot_variance_vs_samples` (``variance_vs_samples.png``): the same dots and bars
  against ``K`` on a log2 x axis; **dashed lines** join the exact variances at the measured
  ``K``. An unbiased estimator averaging ``K`` independent samples falls on a line of slope
  -1. Dots of different estimators are spread slightly sideways around each ``K`` so they do
  not hide one another.
- :func:`plot_snr` (``snr.png``): one panel per parameter, a **bar** per estimator of the
  signal-to-noise ratio ``|mean| / std`` of one gradient estimate (log x axis, larger is
  better). A hatched bar running to the right edge, marked "∞ (variance 0)", is an estimator
  with zero variance.
- :func:`plot_snr_vs_samples` (``snr_vs_samples.png``, for results with ``snr_curves``, the
  ``iwae-gaussian`` problem): the signal-to-noise ratio of each parameter group's gradient
  against ``K`` on log-log axes, a panel per group, a line per estimator, its least-squares
  slope in the legend (Rainforth et al. 2018, Fig. 2: -1/2 is an SNR falling like
  ``1/sqrt(K)``).
- :func:`plot_work_normalized_variance` (``work_normalized_variance.png``): bars of the
  variance times the microseconds one estimate takes (log x axis, smaller is better): the
  variance per unit of compute, which ranks estimators fairly when their costs differ.

A variance of zero (DisARM on a linear cost, exact enumeration) has no place on a log axis: in
the variance plots it is drawn as a hollow triangle on the bottom edge, and the legend names the
estimators concerned; in the bar plots it is a "0" at the left edge, without a bar (and its SNR
an "∞"). A variance at the level of float64 rounding counts as zero (:func:`rounding_zeros`):
the delta method on a quadratic cost measures about ``1e-31`` instead of 0, and drawn as it is,
it would stretch the log axis over 30 decades and flatten every other curve.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from samplegrad.lab.plots._figure import new_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "plot_result",
    "plot_snr",
    "plot_snr_curves",
    "plot_snr_vs_samples",
    "plot_variance_sweep",
    "plot_variance_vs_samples",
    "plot_work_normalized_variance",
    "rounding_zeros",
]

_STYLES: dict[str, tuple[str, str]] = {
    "pathwise": ("#1f77b4", "o"),
    "score": ("#ff7f0e", "s"),
    "score-loo": ("#d62728", "^"),
    "score-ma": ("#e377c2", "v"),
    "score-delta": ("#8c564b", "D"),
    "measure-valued": ("#2ca02c", "P"),
    "measure-valued-uncoupled": ("#bcbd22", "X"),
    "arm": ("#9467bd", "<"),
    "disarm": ("#17becf", ">"),
    "rebar": ("#7f7f7f", "h"),
    "relax": ("#393b79", "p"),
    "gumbel": ("#8c6d31", "*"),
    "gumbel-hard": ("#7b4173", "H"),
    "straight-through": ("#637939", "8"),
    "enumerate": ("#000000", "d"),
    "stl": ("#31a354", "s"),
    "dreg": ("#e6550d", "D"),
    "vimco": ("#756bb1", "^"),
}
"""Colour and marker of every estimator ``samplegrad compare`` knows, fixed across results."""

_FALLBACK_COLOURS = ("#1b9e77", "#e7298a", "#b15928", "#66a61e", "#6a3d9a", "#a6cee3")
_FALLBACK_MARKERS = ("o", "s", "^", "D", "v", "P", "X")

_PANEL_COLUMNS = 3
_MAX_WIDTH = 14.0  # inches; 1400 px at the 100 dpi the figures are saved with
_MIN_WIDTH = 7.0  # room for the title
_PAD = 10**0.3  # a third of a decade of room around the data on log axes
_DODGE = 0.05  # octaves between neighbouring estimators' dots in the K plot
_ROUNDING = 1e-12
"""A standard deviation below this fraction of a panel's gradient scale is the float64 rounding
of a zero variance: machine epsilon (2.2e-16) times the operations behind one estimate stays
far below it, and no estimator of these problems has a real standard deviation near it."""


# --------------------------------------------------------------------------- rounding zeros


def rounding_zeros(result: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``result`` in which every variance at the level of float64 rounding is 0.

    Per parameter, the *scale* is the largest ``|gradient mean| + std`` (or ``|exact gradient|``)
    of its rows; a measured or exact variance at most ``(1e-12 * scale)^2`` becomes exactly
    zero, with its standard error, its work-normalised variance 0 and its SNR ``None`` (the
    result's "infinite"). Zero-variance estimators then plot as zeros (bottom-edge triangles,
    "0" and "∞" bars) instead of stretching the log axes by their roundoff.
    """
    scale: dict[str, float] = {}
    for row in result["rows"]:
        spread = math.sqrt(max(row["variance"], 0.0)) + abs(row["gradient_mean"])
        exact = abs(row.get("exact_gradient") or 0.0)
        scale[row["parameter"]] = max(scale.get(row["parameter"], 0.0), spread, exact)

    def negligible(variance: float | None, parameter: str) -> bool:
        return variance is not None and variance <= (_ROUNDING * scale.get(parameter, 0.0)) ** 2

    rows = []
    for row in result["rows"]:
        row = dict(row)
        if row["variance"] != 0 and negligible(row["variance"], row["parameter"]):
            row.update(variance=0.0, variance_se=0.0, snr=None)
            if row.get("work_normalized_variance") is not None:
                row["work_normalized_variance"] = 0.0
        if negligible(row.get("exact_variance"), row["parameter"]):
            row["exact_variance"] = 0.0
        rows.append(row)
    curves = [
        {
            **curve,
            "variance": [
                0.0 if negligible(v, curve["parameter"]) else v for v in curve["variance"]
            ],
        }
        for curve in result.get("exact_curves", [])
    ]
    return {**result, "rows": rows, "exact_curves": curves}


# --------------------------------------------------------------------------- selection


def _styles(result: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Colour and marker per estimator of ``result``: the fixed ones, then a cycle for the
    others in sorted order (the same for every plot of one result)."""
    names = {row["estimator"] for row in result["rows"]}
    styles = {name: _STYLES[name] for name in names if name in _STYLES}
    for i, name in enumerate(sorted(names - _STYLES.keys())):
        styles[name] = (
            _FALLBACK_COLOURS[i % len(_FALLBACK_COLOURS)],
            _FALLBACK_MARKERS[i % len(_FALLBACK_MARKERS)],
        )
    return styles


def _first_seen(rows: Iterable[Mapping[str, Any]], key: str) -> list[Any]:
    return list(dict.fromkeys(row[key] for row in rows))


def _select_samples(
    result: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], num_samples: int | None
) -> tuple[int, list[Mapping[str, Any]]]:
    """``K`` (default: the first measured) and the rows measured with it."""
    if not result["rows"]:
        raise ValueError(f"the result for problem {result['problem']!r} has no rows to plot")
    k = result["num_samples"][0] if num_samples is None else num_samples
    chosen = [row for row in rows if row["num_samples"] == k]
    if not chosen:
        measured = ", ".join(str(n) for n in _first_seen(result["rows"], "num_samples"))
        raise ValueError(f"no rows with num_samples={k} in the result; measured K: {measured}")
    return k, chosen


def _select_sweep(
    result: Mapping[str, Any], sweep_value: float | None
) -> tuple[float | None, list[Mapping[str, Any]]]:
    """The sweep value (default: the first) and the rows at it; all rows when not swept."""
    sweep = result.get("sweep")
    if sweep is None:
        if sweep_value is not None:
            raise ValueError(f"sweep_value={sweep_value} given, but the result has no sweep")
        return None, list(result["rows"])
    name = sweep["name"]
    value = sweep["values"][0] if sweep_value is None else sweep_value
    chosen = [row for row in result["rows"] if math.isclose(row[name], value, abs_tol=1e-12)]
    if not chosen:
        values = ", ".join(f"{v:g}" for v in sweep["values"])
        raise ValueError(f"no rows with {name}={value:g} in the result; swept values: {values}")
    return value, chosen


def _fixed_constants(result: Mapping[str, Any], sweep_value: float | None = None) -> str:
    """``"mu = 1, sigma = 1"``: the constants, the swept one at ``sweep_value`` or left out."""
    sweep = result.get("sweep")
    swept = None if sweep is None else sweep["name"]
    parts = [f"{name} = {value:g}" for name, value in result["parameters"].items() if name != swept]
    if swept is not None and sweep_value is not None:
        parts.append(f"{swept} = {sweep_value:g}")
    return ", ".join(parts)


def _counts(k: int | None, repeats: int) -> str:
    samples = "" if k is None else f"K = {k} (samples per estimate), "
    return f"{samples}R = {repeats:,} estimates per point"


def _figure(
    result: Mapping[str, Any],
    details: Sequence[str],
    count: int,
    panel_size: tuple[float, float],
    extra_width: float,
    legend: tuple[float, float] = (0.0, 0.0),
) -> tuple[Figure, list[Axes]]:
    """A figure titled with the problem, its formula and ``details``, and ``count`` panels,
    :data:`_PANEL_COLUMNS` to a row (spare grid cells hidden).

    ``extra_width`` is added for labels and a legend, ``legend`` is the (width, height) in
    inches of a legend right of the panels: the title, left-aligned, stays clear of it, and
    the figure is at least as tall.
    """
    rows, columns = -(-count // _PANEL_COLUMNS), min(count, _PANEL_COLUMNS)
    width = min(_MAX_WIDTH, max(_MIN_WIDTH, columns * panel_size[0] + extra_width))
    height = max(rows * panel_size[1] + 0.9, legend[1])
    figure = new_figure(width, height)
    characters = int((width - legend[0]) * 12.5)  # at the title's 9 points
    head = f"{result['problem']}: {result['formula']}"
    tail = "; ".join(details)
    if len(tail) > characters:
        tail = "\n".join(details)
    lines = [*textwrap.wrap(head, characters)]
    for line in tail.splitlines():
        lines += textwrap.wrap(line, characters)
    figure.suptitle("\n".join(lines), x=0.01, ha="left", fontsize=9)
    grid = list(figure.subplots(rows, columns, squeeze=False).flat)
    for axes in grid[count:]:
        axes.set_visible(False)
    return figure, grid[:count]


def _as_float(values: Iterable[float | None]) -> np.ndarray:
    """``None`` (unknown) as NaN."""
    return np.array([math.nan if v is None else v for v in values], dtype=float)


# --------------------------------------------------------------------------- variance plots


@dataclass(frozen=True)
class _Series:
    """One estimator's measured variances, and its exact ones (NaN where unknown)."""

    estimator: str
    x: np.ndarray
    variance: np.ndarray
    variance_se: np.ndarray
    exact_x: np.ndarray
    exact: np.ndarray


def _log_limits(series: Sequence[_Series]) -> tuple[float, float]:
    """y limits that show every positive variance, exact value and upper error bar."""
    centres = [v for s in series for v in (*s.variance, *s.exact) if v > 0]
    tops = [
        *centres,
        *(v + 2 * se for s in series for v, se in zip(s.variance, s.variance_se, strict=True)),
    ]
    if not centres:
        return 0.1, 10.0  # only zero variances: any decade, they sit on the bottom edge
    low, high = min(centres), max(v for v in tops if math.isfinite(v))
    if high / low < 10:
        middle = math.sqrt(low * high)
        low, high = min(low, middle / math.sqrt(10)), max(high, middle * math.sqrt(10))
    return low / _PAD, high * _PAD


def _on_bottom_edge(axes: Axes, x: np.ndarray, where: np.ndarray, **style: Any) -> None:
    """Draw ``x[where]`` on the bottom edge of ``axes`` (zero on a log axis)."""
    y = np.where(where, 0.0, math.nan)
    axes.plot(x, y, transform=axes.get_xaxis_transform(), clip_on=False, zorder=4, **style)


def _variance_panel(
    axes: Axes,
    series: Sequence[_Series],
    styles: Mapping[str, tuple[str, str]],
    exact_style: str,
) -> set[str]:
    """Dots, ±2 SE bars and exact lines on a log y axis; returns the estimators with a
    measured variance of zero."""
    from matplotlib.colors import to_rgba

    axes.set_yscale("log")
    bottom, top = _log_limits(series)
    axes.set_ylim(bottom, top)
    zero: set[str] = set()
    for s in series:
        colour, marker = styles[s.estimator]
        exact_zero = s.exact == 0
        axes.plot(
            s.exact_x,
            np.where(s.exact > 0, s.exact, math.nan),
            color=colour,
            linestyle=exact_style,
            linewidth=1.4,
            zorder=2,
        )
        if exact_zero.any():
            _on_bottom_edge(
                axes, s.exact_x, exact_zero, color=colour, linestyle=exact_style, linewidth=2.5
            )
        positive = s.variance > 0
        variance = np.where(positive, s.variance, math.nan)
        lower = variance - np.maximum(variance - 2 * s.variance_se, bottom)
        axes.errorbar(
            s.x,
            variance,
            yerr=np.stack([lower, 2 * s.variance_se]),
            color=colour,
            marker=marker,
            markersize=5,
            linestyle="none",
            ecolor=to_rgba(colour, 0.6),
            elinewidth=0.8,
            capsize=2,
            zorder=3,
        )
        if (s.variance == 0).any():
            zero.add(s.estimator)
            _on_bottom_edge(
                axes,
                s.x,
                s.variance == 0,
                color=colour,
                marker="v",
                markersize=8,
                markerfacecolor="white",
                markeredgewidth=1.5,
                linestyle="none",
            )
    axes.grid(alpha=0.3, which="major")
    return zero


def _variance_legend(
    figure: Figure,
    estimators: Sequence[str],
    styles: Mapping[str, tuple[str, str]],
    exact_style: str,
    zero: Iterable[str],
) -> None:
    """Estimators by colour, then the key to dots, lines and zero marks; right of the panels."""
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color=styles[name][0], marker=styles[name][1], linestyle="-", label=name)
        for name in estimators
    ]
    handles.append(Line2D([], [], linestyle="none", label=""))
    handles.append(
        Line2D([], [], color="0.3", marker="o", linestyle="none", label="measured, bar: ±2 SE")
    )
    handles.append(Line2D([], [], color="0.3", linestyle=exact_style, label="exact"))
    zero = set(zero)
    if zero:
        ordered = [name for name in estimators if name in zero]
        names = "\n".join(textwrap.wrap(", ".join(ordered), 24))
        label = f"variance 0, or float\nrounding of 0\n(bottom edge):\n{names}"
        handles.append(
            Line2D(
                [],
                [],
                color="0.3",
                marker="v",
                markerfacecolor="white",
                markersize=8,
                linestyle="none",
                label=label,
            )
        )
    figure.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)


def _plot_variances(
    result: Mapping[str, Any],
    path: Path,
    series: Mapping[str, list[_Series]],
    exact_style: str,
    xlabel: str,
    details: Sequence[str],
    format_x: Callable[[Axes], None],
) -> Path:
    """One log-variance panel per parameter and a shared legend."""
    styles = _styles(result)
    estimators = _first_seen(result["rows"], "estimator")
    legend = (2.3, 0.18 * (len(estimators) + 10))  # estimators, key and zero note
    figure, grid = _figure(result, details, len(series), (3.9, 3.1), 2.3, legend)
    zero: set[str] = set()
    for axes, (parameter, panel) in zip(grid, series.items(), strict=True):
        zero |= _variance_panel(axes, panel, styles, exact_style)
        format_x(axes)
        axes.set_title(f"gradient w.r.t. {parameter}", fontsize=9)
        axes.set_xlabel(xlabel)
        axes.set_ylabel("variance of one estimate")
    _variance_legend(figure, estimators, styles, exact_style, zero)
    figure.savefig(path, dpi=100)
    return path


def plot_variance_sweep(
    result: Mapping[str, Any], path: Path, num_samples: int | None = None
) -> Path:
    """Variance against the swept constant, one panel per parameter, at ``K = num_samples``
    (default: the first ``K`` measured); dots are measured, solid lines exact.

    Raises:
        ValueError: the result has no sweep, no rows, or none with ``num_samples``.
    """
    sweep = result.get("sweep")
    if sweep is None:
        raise ValueError(f"the result for problem {result['problem']!r} has no sweep to plot")
    result = rounding_zeros(result)
    name = sweep["name"]
    k, rows = _select_samples(result, result["rows"], num_samples)
    curves = [c for c in result.get("exact_curves", []) if c["num_samples"] == k]
    series: dict[str, list[_Series]] = {}
    for parameter in _first_seen(rows, "parameter"):
        series[parameter] = []
        for estimator in _first_seen(rows, "estimator"):
            own = [r for r in rows if r["parameter"] == parameter and r["estimator"] == estimator]
            if not own:
                continue
            own.sort(key=lambda row: row[name])
            curve = next(
                (c for c in curves if c["estimator"] == estimator and c["parameter"] == parameter),
                {"x": [], "variance": []},
            )
            series[parameter].append(
                _Series(
                    estimator,
                    _as_float(r[name] for r in own),
                    _as_float(r["variance"] for r in own),
                    _as_float(r["variance_se"] for r in own),
                    _as_float(curve["x"]),
                    _as_float(curve["variance"]),
                )
            )
    details = [f"fixed {_fixed_constants(result)}", _counts(k, result["repeats"])]
    return _plot_variances(result, path, series, "-", name, details, lambda axes: None)


def plot_variance_vs_samples(
    result: Mapping[str, Any], path: Path, sweep_value: float | None = None
) -> Path:
    """Variance against ``K`` (log2 axis), one panel per parameter, at ``sweep_value`` of the
    swept constant (default: the first); dots are measured, dashed lines exact.

    Raises:
        ValueError: no rows, or none at ``sweep_value``.
    """
    result = rounding_zeros(result)
    value, rows = _select_sweep(result, sweep_value)
    if not rows:
        raise ValueError(f"the result for problem {result['problem']!r} has no rows to plot")
    estimators = _first_seen(rows, "estimator")
    series: dict[str, list[_Series]] = {}
    for parameter in _first_seen(rows, "parameter"):
        series[parameter] = []
        for i, estimator in enumerate(estimators):
            own = [r for r in rows if r["parameter"] == parameter and r["estimator"] == estimator]
            if not own:
                continue
            own.sort(key=lambda row: row["num_samples"])
            x = _as_float(r["num_samples"] for r in own) * 2 ** (
                _DODGE * (i - (len(estimators) - 1) / 2)
            )
            series[parameter].append(
                _Series(
                    estimator,
                    x,
                    _as_float(r["variance"] for r in own),
                    _as_float(r["variance_se"] for r in own),
                    x,
                    _as_float(r["exact_variance"] for r in own),
                )
            )
    ks = sorted({row["num_samples"] for row in rows})
    spread = 2 ** (_DODGE * len(estimators) / 2 + 0.3)

    def format_x(axes: Axes) -> None:
        from matplotlib.ticker import NullLocator

        axes.set_xscale("log", base=2)
        axes.set_xlim(ks[0] / spread, ks[-1] * spread)
        axes.set_xticks(ks, [str(k) for k in ks])
        axes.xaxis.set_minor_locator(NullLocator())

    details = [_fixed_constants(result, value), _counts(None, result["repeats"])]
    xlabel = "K, samples per estimate"
    return _plot_variances(result, path, series, "--", xlabel, details, format_x)


# --------------------------------------------------------------------------- bar plots


def _bar_panel(
    axes: Axes,
    values: Sequence[float | None],
    colours: Sequence[str],
    limits: tuple[float, float],
) -> None:
    """Horizontal bars on a log x axis from the left edge; ``inf`` to the right edge, hatched
    and marked "∞ (variance 0)"; ``0`` as a "0" at the left edge; ``None`` (no row) empty."""
    left, right = limits
    axes.set_xscale("log")
    axes.set_xlim(left, right)
    for y, (value, colour) in enumerate(zip(values, colours, strict=True)):
        if value is None:
            continue
        if value == 0:
            axes.text(left, y, " 0", va="center", ha="left", fontsize=8)
        elif math.isinf(value):
            axes.barh(
                y,
                right - left,
                left=left,
                color=colour,
                alpha=0.35,
                hatch="//",
                edgecolor=colour,
                height=0.7,
            )
            axes.text(right, y, "∞ (variance 0) ", va="center", ha="right", fontsize=8)
        else:
            axes.barh(y, value - left, left=left, color=colour, height=0.7)
            axes.text(value, y, f" {value:.3g}", va="center", ha="left", fontsize=8)
    axes.grid(alpha=0.3, axis="x", which="major")


def _plot_bars(
    result: Mapping[str, Any],
    path: Path,
    value: Callable[[Mapping[str, Any]], float],
    xlabel: str,
    num_samples: int | None,
    sweep_value: float | None,
) -> Path:
    """One panel of horizontal bars per parameter, an estimator per bar, shared limits."""
    result = rounding_zeros(result)
    swept, rows = _select_sweep(result, sweep_value)
    k, rows = _select_samples(result, rows, num_samples)
    styles = _styles(result)
    estimators = _first_seen(rows, "estimator")
    parameters = _first_seen(rows, "parameter")
    table = {(r["parameter"], r["estimator"]): value(r) for r in rows}
    finite = [v for v in table.values() if 0 < v < math.inf]
    low, high = (min(finite), max(finite)) if finite else (1.0, 1.0)
    limits = (low / 10**0.5, high * 10**1.2)  # a decade on the right for the value labels
    details = [_fixed_constants(result, swept), _counts(k, result["repeats"])]
    size = (4.0, 0.32 * len(estimators) + 1.0)
    figure, grid = _figure(result, details, len(parameters), size, 1.4)
    colours = [styles[name][0] for name in estimators]
    for axes, parameter in zip(grid, parameters, strict=True):
        _bar_panel(axes, [table.get((parameter, e)) for e in estimators], colours, limits)
        axes.set_yticks(range(len(estimators)), estimators, fontsize=8)
        axes.set_ylim(len(estimators) - 0.5, -0.5)  # the first estimator on top
        axes.set_title(f"gradient w.r.t. {parameter}", fontsize=9)
        # Wrapped to the panel (about 12 characters an inch at 9 points): a label wider than
        # its panel runs past the figure's right edge, which constrained layout does not fix.
        axes.set_xlabel("\n".join(textwrap.wrap(xlabel, int(size[0] * 10))), fontsize=9)
    figure.savefig(path, dpi=100)
    return path


def _snr(row: Mapping[str, Any]) -> float:
    """``None`` is an infinite SNR (zero variance)."""
    return math.inf if row["snr"] is None else row["snr"]


def plot_snr(
    result: Mapping[str, Any],
    path: Path,
    num_samples: int | None = None,
    sweep_value: float | None = None,
) -> Path:
    """Bars of ``|mean| / std`` per estimator, a panel per parameter, at ``K = num_samples``
    and ``sweep_value`` (defaults: the first of each); an infinite SNR is marked "∞".

    Raises:
        ValueError: no rows with ``num_samples`` or at ``sweep_value``.
    """
    xlabel = "SNR = |mean| / std of one estimate (larger is better)"
    return _plot_bars(result, path, _snr, xlabel, num_samples, sweep_value)


def plot_work_normalized_variance(
    result: Mapping[str, Any],
    path: Path,
    num_samples: int | None = None,
    sweep_value: float | None = None,
) -> Path:
    """Bars of variance x microseconds per estimate, a panel per parameter, at
    ``K = num_samples`` and ``sweep_value`` (defaults: the first of each); zero is marked "0".

    Raises:
        ValueError: no rows with ``num_samples`` or at ``sweep_value``.
    """
    xlabel = "variance × µs per estimate (smaller is better)"

    def work(row: Mapping[str, Any]) -> float:
        return row["work_normalized_variance"]

    return _plot_bars(result, path, work, xlabel, num_samples, sweep_value)


# --------------------------------------------------------------------------- SNR against K


def plot_snr_curves(
    parts: Mapping[str, Sequence[Mapping[str, Any]]], path: Path, title: str = ""
) -> Path:
    """SNR against ``K`` on log-log axes: a row of panels per part (its name the row's title),
    a panel per parameter group, a line per estimator labelled with its slopes over all ``K``
    and over ``K >= 16``. Each curve is a mapping with ``estimator``, ``parameter``,
    ``num_samples``, ``snr`` (``None`` is not drawn), ``slope`` and ``tail_slope``."""
    groups = {name: _first_seen(curves, "parameter") for name, curves in parts.items()}
    columns = max(len(g) for g in groups.values())
    figure = new_figure(4.6 * columns, 3.6 * len(parts) + (0.4 if title else 0.0))
    if title:
        figure.suptitle("\n".join(textwrap.wrap(title, int(4.6 * columns * 12.5))), fontsize=9)
    grid = figure.subplots(len(parts), columns, squeeze=False)
    for row, (name, curves) in zip(grid, parts.items(), strict=True):
        styles = _styles({"rows": curves})
        for axes, group in zip(row, groups[name], strict=False):
            for curve in (c for c in curves if c["parameter"] == group):
                colour, marker = styles[curve["estimator"]]
                axes.loglog(
                    curve["num_samples"],
                    _as_float(curve["snr"]),
                    color=colour,
                    marker=marker,
                    label=f"{curve['estimator']} (slope {_slope(curve['slope'])}, "
                    f"K>=16: {_slope(curve['tail_slope'])})",
                )
            axes.set_xlabel("importance samples K")
            axes.set_ylabel("gradient SNR")
            axes.set_title(f"{name}: {group}", fontsize=9)
            axes.legend(fontsize=7)
        for axes in row[len(groups[name]) :]:
            axes.set_visible(False)
    figure.savefig(path, dpi=100)
    return path


def _slope(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


def plot_snr_vs_samples(result: Mapping[str, Any], path: Path) -> Path:
    """:func:`plot_snr_curves` of a result's ``snr_curves``, titled with the problem."""
    title = (
        f"{result['problem']}: {result['formula']}; {_fixed_constants(result)}; "
        f"{_counts(None, result['repeats'])}; SNR = |E g| / sqrt(tr Cov g), |E g|^2 debiased"
    )
    return plot_snr_curves({result["problem"]: result["snr_curves"]}, path, title)


# --------------------------------------------------------------------------- all plots


def plot_result(result: Mapping[str, Any], directory: Path) -> list[Path]:
    """Every applicable figure of ``result`` into ``directory`` (created if missing).

    ``variance_vs_<constant>.png`` when a constant was swept over at least two values (the
    name with characters other than letters, digits, ``.``, ``_`` and ``-`` replaced by
    ``_``), ``variance_vs_samples.png`` when at least two ``K`` were measured,
    ``snr_vs_samples.png`` when the result has ``snr_curves``, ``snr.png``
    and ``work_normalized_variance.png``; all at the first ``K`` and the first sweep value.
    Returns the files written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    sweep = result.get("sweep")
    if sweep is not None and len(sweep["values"]) >= 2:
        name = re.sub(r"[^A-Za-z0-9._-]", "_", sweep["name"])
        paths.append(plot_variance_sweep(result, directory / f"variance_vs_{name}.png"))
    if len(result["num_samples"]) >= 2:
        paths.append(plot_variance_vs_samples(result, directory / "variance_vs_samples.png"))
    if result.get("snr_curves"):
        paths.append(plot_snr_vs_samples(result, directory / "snr_vs_samples.png"))
    paths.append(plot_snr(result, directory / "snr.png"))
    paths.append(plot_work_normalized_variance(result, directory / "work_normalized_variance.png"))
    return paths
