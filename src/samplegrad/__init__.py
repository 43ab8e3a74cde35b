"""samplegrad: backpropagation through random sampling.

One call turns an expectation over any ``torch.distributions`` distribution into a surrogate
tensor whose gradient is a chosen Monte Carlo gradient estimator::

    import samplegrad as sg
    surrogate = sg.expectation(f, dist, estimator="score", num_samples=8)
    surrogate.mean().backward()
"""

from samplegrad import nn
from samplegrad._expectation import AutoEstimatorWarning, expectation
from samplegrad.estimators import (
    Baseline,
    Enumerate,
    Estimator,
    GumbelSoftmax,
    LeaveOneOut,
    MovingAverage,
    Pathwise,
    ScoreFunction,
    StraightThrough,
    estimators_supporting,
)

__version__ = "0.1.0"

__all__ = [
    "AutoEstimatorWarning",
    "Baseline",
    "Enumerate",
    "Estimator",
    "GumbelSoftmax",
    "LeaveOneOut",
    "MovingAverage",
    "Pathwise",
    "ScoreFunction",
    "StraightThrough",
    "__version__",
    "estimators_supporting",
    "expectation",
    "nn",
]
