"""Gradient estimators, one family per module; each registers itself under its name."""

from samplegrad.estimators.base import REGISTRY, Estimator, estimators_supporting
from samplegrad.estimators.baselines import Baseline, LeaveOneOut, MovingAverage
from samplegrad.estimators.enumerate import Enumerate
from samplegrad.estimators.pathwise import Pathwise
from samplegrad.estimators.relaxed import GumbelSoftmax, StraightThrough
from samplegrad.estimators.score import ScoreFunction

__all__ = [
    "REGISTRY",
    "Baseline",
    "Enumerate",
    "Estimator",
    "GumbelSoftmax",
    "LeaveOneOut",
    "MovingAverage",
    "Pathwise",
    "ScoreFunction",
    "StraightThrough",
    "estimators_supporting",
]
