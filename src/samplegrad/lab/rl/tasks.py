"""The two policy-gradient tasks as :class:`samplegrad.lab.training.policy.PolicyTrainer` drives
them.

A task owns its environment, its policy and (for ``baseline="learned"``) its value network,
and answers five requests: load its data, the surrogate of one optimiser step, a validation
score during training, the final evaluation, and its plots. Every random draw of step ``k``
comes from generators seeded by ``(seed, stream, k)``, so a step does not depend on the steps
before it except through the parameters: an interrupted and resumed run repeats an
uninterrupted one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from samplegrad.lab.rl import bandit, cartpole
from samplegrad.lab.rl.networks import ValueBaseline, mlp
from samplegrad.lab.rl.reinforce import BaselineKind, bandit_surrogate, episodes_surrogate
from samplegrad.lab.training.data import load_splits
from samplegrad.lab.training.seeds import stream_generator, stream_seed

# Random streams, combined with the seed (and the step) into independent generator seeds.
INIT, CONTEXTS, SAMPLING = range(3)
VALIDATION_SEED, TEST_SEED = 2_000_000_000, 1_000_000_000
"""CartPole's validation and final evaluations start episodes from seeds ``VALIDATION_SEED +
i`` and ``TEST_SEED + i``, ``i < eval_episodes``: fixed, and apart from the training seeds'
(drawn from the run's seed) in practice, so every run is judged on the same start states."""


class Task(Protocol):
    policy: nn.Module
    value: ValueBaseline | None

    def load_data(self) -> None:
        """Read the task's data, if it has any (``ValueError`` for a size it cannot give)."""

    def surrogate(self, step: int) -> tuple[Tensor, float | Tensor, int]:
        """The surrogate of optimiser step ``step`` (1-based), the mean training return of
        its samples (a float, or a 0-d tensor still on the device: the loop reads it with the
        others at the next validation, not one step at a time), and the environment steps it
        took."""

    def validate(self) -> float:
        """The score of the current policy on held-out data, during training."""

    def evaluate(self) -> dict[str, Any]:
        """The final evaluation: ``test_return``, ``eval_episodes`` and task-specific keys."""

    def plot(self, evaluation: dict[str, Any], out: Path) -> list[Path]:
        """The task's own figures beside the training curve, from :meth:`evaluate`'s result."""


def init_networks(
    seed: int, sizes: list[int], value_sizes: tuple[int, int, float] | None
) -> tuple[nn.Module, ValueBaseline | None]:
    """The policy ``mlp(sizes)`` and the optional value network, initialised from ``seed``
    without touching the global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed(seed, INIT))
        policy = mlp(sizes)
        value = None if value_sizes is None else ValueBaseline(*value_sizes)
    return policy, value


class BanditTask:
    """The MNIST contextual bandit: ``batch_size`` training images a step, ``num_samples``
    guesses each; validation on the held-out training images, evaluation on the test set
    (the first ``eval_episodes`` images: each image is a one-step episode)."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.device = torch.device(config.device)
        value = (bandit.OBSERVATION_SIZE, config.hidden, 1.0)
        self.policy, self.value = init_networks(
            config.seed,
            [bandit.OBSERVATION_SIZE, config.hidden, bandit.NUM_ACTIONS],
            value if config.baseline == BaselineKind.LEARNED else None,
        )
        self._surrogate = torch.compile(bandit_surrogate) if config.compile else bandit_surrogate

    def load_data(self) -> None:
        """The training images (contexts), the held-out ones and the test images: grey levels;
        ``ValueError`` if the test set has fewer images than ``eval_episodes`` asks for."""
        self.train, self.valid, self.test = load_splits(self.config, "none")
        if (self.config.eval_episodes or 0) > len(self.test):
            raise ValueError(
                f"eval_episodes must be <= {len(self.test)}, the test images of "
                f"{self.config.data_dir or 'the MNIST folder'} (one episode each), got "
                f"{self.config.eval_episodes}"
            )

    def surrogate(self, step: int) -> tuple[Tensor, float | Tensor, int]:
        config = self.config
        x, y = bandit.contexts(
            self.train,
            config.batch_size,
            stream_generator(config.seed, CONTEXTS, step, self.device),
        )
        loss, reward = self._surrogate(
            self.policy,
            self.value,
            BaselineKind(config.baseline),
            x,
            y,
            config.num_samples,
            stream_generator(config.seed, SAMPLING, step, self.device),
        )
        return loss, reward, len(x) * config.num_samples

    def validate(self) -> float:
        return bandit.evaluate_bandit(self.policy, self.valid).greedy_reward

    def evaluate(self) -> dict[str, Any]:
        result = bandit.evaluate_bandit(self.policy, self.test, limit=self.config.eval_episodes)
        accuracy = result.confusion.diag() / result.confusion.sum(1).clamp(min=1)
        return {
            "test_return": result.greedy_reward,
            "eval_episodes": result.images,
            "eval_policy": "greedy",
            "eval_expected_reward": result.expected_reward,
            "eval_per_digit": [round(value, 4) for value in accuracy.tolist()],
            "confusion": result.confusion.tolist(),
        }

    def plot(self, evaluation: dict[str, Any], out: Path) -> list[Path]:
        from samplegrad.lab.plots import rl as plots

        return [plots.plot_confusion(np.array(evaluation["confusion"]), out / "confusion.png")]


class CartPoleTask:
    """CartPole-v1: ``num_samples`` episodes a step, from seeds drawn from the run's seed;
    validation and evaluation on ``eval_episodes`` greedy episodes from fixed seeds."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.device = torch.device(config.device)
        self.envs = cartpole.CartPoleBatch(config.num_samples)
        value = (cartpole.OBSERVATION_SIZE + 1, config.hidden, 100.0)  # + the time feature
        self.policy, self.value = init_networks(
            config.seed,
            [cartpole.OBSERVATION_SIZE, config.hidden, cartpole.NUM_ACTIONS],
            value if config.baseline == BaselineKind.LEARNED else None,
        )
        if config.compile:  # the rollout steps the environment on the host: compile the networks
            for network in (self.policy, self.value):
                if network is not None:
                    network.compile()

    def load_data(self) -> None:
        """Nothing to read: the episodes are played."""

    def surrogate(self, step: int) -> tuple[Tensor, float | Tensor, int]:
        config = self.config
        seeds = np.random.SeedSequence([config.seed, CONTEXTS, step]).generate_state(
            config.num_samples
        )
        loss, returns, env_steps = episodes_surrogate(
            self.policy,
            self.value,
            BaselineKind(config.baseline),
            self.envs,
            [int(seed) for seed in seeds],
            stream_generator(config.seed, SAMPLING, step, self.device),
            self.device,
        )
        return loss, float(returns.mean()), env_steps

    def _greedy(self, first_seed: int) -> np.ndarray:
        seeds = [first_seed + i for i in range(self.config.eval_episodes)]
        return cartpole.greedy_returns(self.policy, seeds, self.device)

    def validate(self) -> float:
        return float(self._greedy(VALIDATION_SEED).mean())

    def evaluate(self) -> dict[str, Any]:
        returns = self._greedy(TEST_SEED)
        return {
            "test_return": float(returns.mean()),
            "eval_episodes": len(returns),
            "eval_policy": "greedy",
            "test_returns": returns.tolist(),
            "eval_seeds": f"{TEST_SEED}..{TEST_SEED + len(returns) - 1}",
        }

    def plot(self, evaluation: dict[str, Any], out: Path) -> list[Path]:
        from samplegrad.lab.plots import rl as plots

        returns = np.array(evaluation["test_returns"])
        return [plots.plot_eval_returns(returns, out / "eval_returns.png")]
