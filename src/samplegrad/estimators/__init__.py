"""Gradient estimators, one family per module; each registers itself (and its named variants)
in :mod:`samplegrad.estimators.catalog`."""

from samplegrad._internal.validation import check_num_samples
from samplegrad.estimators.base import Cost, Estimator, estimators_supporting
from samplegrad.estimators.baselines import Baseline, LeaveOneOut, MovingAverage
from samplegrad.estimators.vimco import VIMCO, log_mean_exp

# isort: off
# The order of registration, so the catalog's order (samplegrad.estimators.catalog): pathwise,
# sticking the landing, the score function, measure-valued, antithetic, relaxations,
# relaxation-based control variates, exact enumeration. Help texts and compare's default rows
# follow it.
from samplegrad.estimators.pathwise import Pathwise
from samplegrad.estimators.stl import StickingTheLanding
from samplegrad.estimators.score import ScoreFunction
from samplegrad.estimators.measure_valued import MeasureValued
from samplegrad.estimators.antithetic import ARM, DisARM
from samplegrad.estimators.relaxed import GumbelSoftmax, StraightThrough
from samplegrad.estimators.control import REBAR, RELAX
from samplegrad.estimators.enumerate import Enumerate
# isort: on

__all__ = [
    "ARM",
    "REBAR",
    "RELAX",
    "VIMCO",
    "Baseline",
    "Cost",
    "DisARM",
    "Enumerate",
    "Estimator",
    "GumbelSoftmax",
    "LeaveOneOut",
    "MeasureValued",
    "MovingAverage",
    "Pathwise",
    "ScoreFunction",
    "StickingTheLanding",
    "StraightThrough",
    "check_num_samples",
    "estimators_supporting",
    "log_mean_exp",
]
