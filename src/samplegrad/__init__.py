"""samplegrad: backpropagation through random sampling.

One call turns an expectation over any ``torch.distributions`` distribution into a surrogate
tensor whose gradient is a chosen Monte Carlo gradient estimator::

    import samplegrad as sg
    surrogate = sg.expectation(f, dist, estimator="score", num_samples=8)
    surrogate.mean().backward()
"""

from samplegrad import diagnostics, nn
from samplegrad._expectation import AutoEstimatorWarning, expectation
from samplegrad._iwae import iwae_bound
from samplegrad.estimators import (
    ARM,
    REBAR,
    RELAX,
    VIMCO,
    Baseline,
    DisARM,
    Enumerate,
    Estimator,
    GumbelSoftmax,
    LeaveOneOut,
    MeasureValued,
    MovingAverage,
    Pathwise,
    ScoreFunction,
    StraightThrough,
    estimators_supporting,
)
from samplegrad.graph import Graph

__version__ = "0.1.0"

__all__ = [
    "ARM",
    "REBAR",
    "RELAX",
    "VIMCO",
    "AutoEstimatorWarning",
    "Baseline",
    "DisARM",
    "Enumerate",
    "Estimator",
    "Graph",
    "GumbelSoftmax",
    "LeaveOneOut",
    "MeasureValued",
    "MovingAverage",
    "Pathwise",
    "ScoreFunction",
    "StraightThrough",
    "__version__",
    "diagnostics",
    "estimators_supporting",
    "expectation",
    "iwae_bound",
    "nn",
]
