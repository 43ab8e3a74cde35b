"""Gradient estimators, one family per module; each registers itself under its name."""

from samplegrad.estimators.antithetic import ARM, DisARM
from samplegrad.estimators.base import REGISTRY, Estimator, estimators_supporting
from samplegrad.estimators.baselines import Baseline, LeaveOneOut, MovingAverage
from samplegrad.estimators.control import REBAR, RELAX
from samplegrad.estimators.enumerate import Enumerate
from samplegrad.estimators.measure_valued import MeasureValued
from samplegrad.estimators.pathwise import Pathwise
from samplegrad.estimators.relaxed import GumbelSoftmax, StraightThrough
from samplegrad.estimators.score import ScoreFunction
from samplegrad.estimators.vimco import VIMCO

__all__ = [
    "ARM",
    "REBAR",
    "REGISTRY",
    "RELAX",
    "VIMCO",
    "Baseline",
    "DisARM",
    "Enumerate",
    "Estimator",
    "GumbelSoftmax",
    "LeaveOneOut",
    "MeasureValued",
    "MovingAverage",
    "Pathwise",
    "ScoreFunction",
    "StraightThrough",
    "estimators_supporting",
]
