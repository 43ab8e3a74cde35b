"""Policy gradients on :class:`samplegrad.Graph`: REINFORCE with reward-to-go and leave-one-out
or learned baselines, on the MNIST contextual bandit and on CartPole-v1 (Gymnasium, optional).

- :mod:`samplegrad.lab.rl.reinforce`: the surrogates, with the math;
- :mod:`samplegrad.lab.rl.bandit`, :mod:`samplegrad.lab.rl.cartpole`: the environments and their
  evaluations;
- :mod:`samplegrad.lab.rl.networks`: policy and value networks;
- :mod:`samplegrad.lab.rl.tasks`: what :func:`samplegrad.lab.training.policy.fit_policy` trains;
- :mod:`samplegrad.lab.plots.rl`: the figures.
"""

from samplegrad.lab.rl.bandit import BanditEvaluation, evaluate_bandit
from samplegrad.lab.rl.cartpole import CartPoleBatch, GymnasiumMissingError, greedy_returns
from samplegrad.lab.rl.networks import ValueBaseline, mlp
from samplegrad.lab.rl.reinforce import (
    BaselineKind,
    EpisodeBatch,
    bandit_surrogate,
    episodes_surrogate,
    score_estimator,
)

__all__ = [
    "BanditEvaluation",
    "BaselineKind",
    "CartPoleBatch",
    "EpisodeBatch",
    "GymnasiumMissingError",
    "ValueBaseline",
    "bandit_surrogate",
    "episodes_surrogate",
    "evaluate_bandit",
    "greedy_returns",
    "mlp",
    "score_estimator",
]
