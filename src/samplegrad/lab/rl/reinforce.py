"""REINFORCE surrogates built on :class:`samplegrad.Graph`: one for the contextual bandit, one
for batches of episodes.

**REINFORCE** (Williams 1992). For a policy ``pi_theta(a | s)`` and an episode
``tau = (s_0, a_0, r_0, ..., s_{T-1}, a_{T-1}, r_{T-1})``, the gradient of the expected return
``J = E_tau[sum_t r_t]`` is ``E_tau[sum_t grad log pi(a_t | s_t) * sum_t' r_t']``: the score
function of the actions (the environment's dynamics do not depend on ``theta``).

**Reward-to-go** (causality). ``r_t'`` cannot depend on an action taken after it, so its
products with the scores of ``a_t``, ``t > t'``, have mean zero and can be dropped:
``grad J = E[sum_t grad log pi(a_t | s_t) * G_t]`` with ``G_t = sum_{t' >= t} r_t'``. In the
graph this needs no code of its own: the cost ``-r_t'`` is declared as depending on the actions
``a_0 .. a_t'``, and each cost gets score terms only from the nodes it depends on (Schulman et
al. 2015, "Gradient estimation using stochastic computation graphs", Sec. 4).

**Baselines.** Any ``b_t`` that does not depend on ``a_t`` (and later actions) leaves the
gradient unbiased: ``E[grad log pi(a_t | s_t) * (G_t - b_t)] = E[grad log pi(a_t | s_t) G_t]``.

- ``"loo"``: with ``S`` episodes (or ``S`` actions per image) drawn at once, the mean of the
  *other* ``S - 1`` samples' ``G_t`` (Kool et al. 2019, "Buy 4 REINFORCE samples, get a baseline
  for free!"); independent of sample ``s`` by construction, so unbiased. Finished episodes are
  masked out of it.
- ``"learned"``: a value network ``b(s_t)`` (:class:`ValueBaseline`) trained by the same
  surrogate to minimise ``(G_t - b(s_t))^2``.
- ``"none"``: plain REINFORCE.

Costs are minimised, so a reward ``r`` enters the graph as the cost ``-r``: the surrogate's
value is minus the mean return.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Categorical

import samplegrad as sg
from samplegrad.lab.rl.networks import ValueBaseline


class BaselineKind(enum.StrEnum):
    """The score-function baseline of a policy-gradient run."""

    LOO = "loo"
    LEARNED = "learned"
    NONE = "none"


def score_estimator(
    kind: BaselineKind, value: ValueBaseline | None, inputs: Callable[[], Tensor]
) -> sg.ScoreFunction:
    """The score-function estimator with the baseline ``kind``; a learned baseline evaluates
    ``value`` on ``inputs()`` when the surrogate is built."""
    if kind is BaselineKind.LOO:
        return sg.ScoreFunction(baseline="loo")
    if kind is BaselineKind.NONE:
        return sg.ScoreFunction()
    if value is None:
        raise ValueError("baseline 'learned' needs a value network; pass value=ValueBaseline(...)")
    return sg.ScoreFunction(baseline=lambda: value(inputs()))


def bandit_surrogate(
    policy: nn.Module,
    value: ValueBaseline | None,
    baseline: BaselineKind,
    images: Tensor,
    labels: Tensor,
    num_samples: int,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """The contextual bandit's surrogate: ``num_samples`` guesses per image, reward 1 if right.

    One random step, so one ``sg.expectation`` (no graph needed): the cost of a guess is minus
    its reward. Returns the surrogate (value: minus the mean reward; ``.backward()`` gives the
    estimate of the gradient of minus the expected reward) and the mean reward of the guesses
    (detached). Free of Python-level state, so ``torch.compile`` captures it whole.
    """
    estimator = score_estimator(baseline, value, lambda: images)
    guesses = Categorical(logits=policy(images), validate_args=False)

    def cost(guess: Tensor) -> Tensor:
        return -(guess == labels).to(images.dtype)

    surrogate = sg.expectation(cost, guesses, estimator, num_samples, generator)
    return surrogate.mean(), -surrogate.detach().mean()


class EpisodeBatch(Protocol):
    """What :func:`episodes_surrogate` needs of ``S`` environments stepped in lockstep
    (:class:`samplegrad.lab.rl.cartpole.CartPoleBatch` is one)."""

    num_envs: int
    max_steps: int

    def reset(self, seeds: list[int]) -> np.ndarray:
        """Start one episode per seed; the observations, ``(S, observation_size)``."""

    def step(
        self, actions: np.ndarray, alive: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Step the ``alive`` episodes; observations, rewards (0 where not alive), alive after."""


def episodes_surrogate(
    policy: nn.Module,
    value: ValueBaseline | None,
    baseline: BaselineKind,
    envs: EpisodeBatch,
    seeds: list[int],
    generator: torch.Generator,
    device: torch.device,
) -> tuple[Tensor, np.ndarray, int]:
    """REINFORCE with reward-to-go over ``envs.num_envs`` episodes, one per seed.

    The graph holds ``S = len(seeds)`` joint samples: at step ``t`` the node ``a{t}`` draws
    every episode's action from ``pi(. | s_t)``, masked where the episode has ended, and the
    cost ``-r_t`` depends on ``a_0 .. a_t``. A learned baseline sees ``(s_t, t / max_steps)``:
    the time left matters because episodes are truncated.

    Returns the surrogate (``reduction="sum"``: value minus the mean return), the returns of
    the ``S`` episodes and the number of environment steps taken.
    """
    graph = sg.Graph(num_samples=envs.num_envs)
    observations = envs.reset(seeds)
    alive = np.ones(envs.num_envs, dtype=bool)
    returns = np.zeros(envs.num_envs)
    names: list[str] = []
    env_steps = 0
    for t in range(envs.max_steps):
        state = torch.as_tensor(observations, dtype=torch.float32, device=device)
        mask = torch.as_tensor(alive, device=device)
        names.append(f"a{t}")
        estimator = score_estimator(
            baseline, value, lambda state=state, t=t: _with_time(state, t / envs.max_steps)
        )
        action = graph.sample(
            names[-1],
            Categorical(logits=policy(state)),
            estimator,
            generator=generator,
            mask=mask,
        )
        env_steps += int(alive.sum())
        observations, rewards, alive_after = envs.step(torch.as_tensor(action).cpu().numpy(), alive)
        returns += rewards
        cost = -torch.as_tensor(rewards, dtype=torch.float32, device=device)
        graph.cost(cost, depends_on=list(names))
        alive = alive_after
        if not alive.any():
            break
    return graph.surrogate(reduction="sum"), returns, env_steps


def _with_time(state: Tensor, fraction: float) -> Tensor:
    """``state`` with the elapsed fraction of the time limit appended as a last feature."""
    return torch.cat([state, state.new_full((*state.shape[:-1], 1), fraction)], -1)
