"""Gradient estimators, one family per module; each registers itself (and its named variants)
in :mod:`samplegrad.estimators.catalog`."""

from samplegrad._internal.validation import check_num_samples
from samplegrad.estimators.base import Cost, Estimator, estimators_supporting
from samplegrad.estimators.baselines import Baseline, LeaveOneOut, MovingAverage
from samplegrad.estimators.vimco import VIMCO, log_mean_exp

# isort: off
# The order of registration, so the catalog's order (samplegrad.estimators.catalog): pathwise,
# sticking the landing, the score function (and IndeCateR), measure-valued, antithetic (and
# categorical DisARM), relaxations (and ReinMax, Gumbel-Rao), relaxation-based control variates,
# sampling without replacement, exact enumeration. Help texts and compare's default rows follow
# it.
from samplegrad.estimators.pathwise import Pathwise
from samplegrad.estimators.stl import StickingTheLanding
from samplegrad.estimators.score import ScoreFunction
from samplegrad.estimators.indecater import IndeCateR
from samplegrad.estimators.measure_valued import MeasureValued
from samplegrad.estimators.antithetic import ARM, DisARM
from samplegrad.estimators.categorical_disarm import CategoricalDisARM
from samplegrad.estimators.relaxed import GumbelSoftmax, StraightThrough
from samplegrad.estimators.gumbel_rao import GumbelRao
from samplegrad.estimators.reinmax import ReinMax
from samplegrad.estimators.control import REBAR, RELAX
from samplegrad.estimators.unordered_set import UnorderedSet
from samplegrad.estimators.enumerate import Enumerate
# isort: on

__all__ = [
    "ARM",
    "REBAR",
    "RELAX",
    "VIMCO",
    "Baseline",
    "CategoricalDisARM",
    "Cost",
    "DisARM",
    "Enumerate",
    "Estimator",
    "GumbelRao",
    "GumbelSoftmax",
    "IndeCateR",
    "LeaveOneOut",
    "MeasureValued",
    "MovingAverage",
    "Pathwise",
    "ReinMax",
    "ScoreFunction",
    "StickingTheLanding",
    "StraightThrough",
    "UnorderedSet",
    "check_num_samples",
    "estimators_supporting",
    "log_mean_exp",
]
