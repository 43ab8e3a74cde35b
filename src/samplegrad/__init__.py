"""samplegrad: backpropagation through random sampling.

One call turns an expectation over any ``torch.distributions`` distribution into a surrogate
tensor whose gradient is a chosen Monte Carlo gradient estimator::

    import samplegrad as sg
    surrogate = sg.expectation(f, dist, estimator="score", num_samples=8)
    surrogate.mean().backward()
"""

from samplegrad import diagnostics, generators, nn
from samplegrad._expectation import AutoEstimatorWarning, expectation
from samplegrad._iwae import iwae_bound
from samplegrad.estimators import (
    ARM,
    REBAR,
    RELAX,
    VIMCO,
    Baseline,
    CategoricalDisARM,
    DisARM,
    Enumerate,
    Estimator,
    GumbelRao,
    GumbelSoftmax,
    IndeCateR,
    LeaveOneOut,
    MeasureValued,
    MovingAverage,
    Pathwise,
    ReinMax,
    ScoreFunction,
    StickingTheLanding,
    StraightThrough,
    UnorderedSet,
    estimators_supporting,
)
from samplegrad.graph import Graph

__version__ = "0.1.0"

__all__ = [  # noqa: RUF022 (grouped by topic, not sorted)
    # The entry points: one random step, a multi-sample bound, many random steps.
    "expectation",
    "iwae_bound",
    "Graph",
    "AutoEstimatorWarning",
    # The estimators (every name: samplegrad.estimators.catalog), their base and baselines.
    "Estimator",
    "estimators_supporting",
    "Pathwise",
    "StickingTheLanding",
    "ScoreFunction",
    "Baseline",
    "LeaveOneOut",
    "MovingAverage",
    "IndeCateR",
    "UnorderedSet",
    "ARM",
    "DisARM",
    "CategoricalDisARM",
    "REBAR",
    "RELAX",
    "GumbelSoftmax",
    "StraightThrough",
    "ReinMax",
    "GumbelRao",
    "MeasureValued",
    "Enumerate",
    "VIMCO",
    # Layers, measurement, random numbers.
    "nn",
    "diagnostics",
    "generators",
    "__version__",
]
