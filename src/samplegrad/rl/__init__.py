"""Policy gradients on :class:`samplegrad.Graph`: REINFORCE with reward-to-go and leave-one-out
or learned baselines, on the MNIST contextual bandit and on CartPole-v1 (Gymnasium, optional).

- :mod:`samplegrad.rl.reinforce`: the surrogates, with the math;
- :mod:`samplegrad.rl.bandit`, :mod:`samplegrad.rl.cartpole`: the environments and their
  evaluations;
- :mod:`samplegrad.rl.networks`: policy and value networks;
- :mod:`samplegrad.rl.tasks`: what :func:`samplegrad.train_policy.fit_policy` trains;
- :mod:`samplegrad.rl.plots`: the figures.
"""

from samplegrad.rl.bandit import BanditEvaluation, evaluate_bandit
from samplegrad.rl.cartpole import CartPoleBatch, GymnasiumMissingError, greedy_returns
from samplegrad.rl.networks import ValueBaseline, mlp
from samplegrad.rl.reinforce import (
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
