"""CartPole-v1 from Gymnasium, ``S`` episodes at a time, and its greedy evaluation.

Gymnasium is an optional extra (``pip install 'samplegrad[rl]'``, or ``make cartpole``); it is
imported when a :class:`CartPoleBatch` is made, so the rest of samplegrad works without it.
CartPole-v1 ends an episode when the pole falls past 12 degrees or the cart leaves the track
(termination) or after 500 steps (truncation), with reward 1 per step: returns lie in 1..500.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

ENV_ID = "CartPole-v1"
OBSERVATION_SIZE = 4
NUM_ACTIONS = 2
INSTALL_HINT = "pip install 'samplegrad[rl]' (or `make cartpole`, which installs it)"


class GymnasiumMissingError(ImportError):
    """Gymnasium, needed for CartPole, is not installed: the message says how to install it."""


def _gymnasium():
    try:
        import gymnasium
    except ImportError:
        raise GymnasiumMissingError(
            f"--env cartpole needs Gymnasium, which is not installed: {INSTALL_HINT}"
        ) from None
    return gymnasium


class CartPoleBatch:
    """``num_envs`` CartPole-v1 environments stepped in lockstep, one episode each per
    :meth:`reset` (an :class:`samplegrad.lab.rl.reinforce.EpisodeBatch`).

    Episodes that have ended are not stepped again: their rewards are 0 and their last
    observation stays, so the arrays keep their shape ``(num_envs, ...)`` until the last ends.
    """

    def __init__(self, num_envs: int) -> None:
        gymnasium = _gymnasium()
        self.envs = [gymnasium.make(ENV_ID) for _ in range(num_envs)]
        self.num_envs = num_envs
        self.max_steps: int = self.envs[0].spec.max_episode_steps
        self._observations = np.zeros((num_envs, OBSERVATION_SIZE), dtype=np.float32)

    def reset(self, seeds: list[int]) -> np.ndarray:
        if len(seeds) != self.num_envs:
            raise ValueError(f"seeds must hold {self.num_envs} seeds, got {len(seeds)}")
        for i, (env, seed) in enumerate(zip(self.envs, seeds, strict=True)):
            self._observations[i] = env.reset(seed=int(seed))[0]
        return self._observations.copy()

    def step(
        self, actions: np.ndarray, alive: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rewards = np.zeros(self.num_envs)
        alive = alive.copy()
        for i in np.flatnonzero(alive):
            observation, reward, terminated, truncated, _ = self.envs[i].step(int(actions[i]))
            self._observations[i] = observation
            rewards[i] = reward
            alive[i] = not (terminated or truncated)
        return self._observations.copy(), rewards, alive

    def close(self) -> None:
        for env in self.envs:
            env.close()


@torch.no_grad()
def greedy_returns(policy: nn.Module, seeds: list[int], device: torch.device) -> np.ndarray:
    """The returns of greedy episodes (``a_t = argmax pi(. | s_t)``), one per seed.

    The same seeds give the same start states, so evaluations of different policies, or of
    one policy during training, are comparable.
    """
    envs = CartPoleBatch(len(seeds))
    try:
        observations = envs.reset(seeds)
        alive = np.ones(len(seeds), dtype=bool)
        returns = np.zeros(len(seeds))
        while alive.any():
            state = torch.as_tensor(observations, dtype=torch.float32, device=device)
            actions = policy(state).argmax(-1).cpu().numpy()
            observations, rewards, alive = envs.step(actions, alive)
            returns += rewards
    finally:
        envs.close()
    return returns
