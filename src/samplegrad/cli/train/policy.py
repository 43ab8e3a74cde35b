"""Train a policy with REINFORCE (leave-one-out, learned or no baseline), with Adam.
mnist-bandit: guess each image's digit, reward 1 if right (no extra package); one random step,
one sg.expectation. cartpole: CartPole-v1 from Gymnasium (pip install 'samplegrad[rl]'), each
action a node of an sg.Graph, so causality gives the reward-to-go. Writes
into DIR: metrics.csv (one row per step: step, env_steps, train_return, valid_return, the
validation score, every --eval-every steps, seconds), checkpoint.pt (at every evaluation, and on
Ctrl-C or SIGTERM), metrics.json (env, steps, env_steps, test_return: the greedy policy's mean
reward on the test images or mean return over --eval-episodes episodes, eval_episodes, the
settings) and PNG plots.
The same --seed gives the same run on the CPU, also when it is interrupted and resumed with
--resume.
"""

from __future__ import annotations

import argparse
from typing import Any

from samplegrad.cli.train import TrainCommand
from samplegrad.lab.training.policy import PolicyConfig, fit_policy


def report(summary: dict[str, Any], args: argparse.Namespace) -> None:
    bandit = args.env == "mnist-bandit"
    what = "mean reward (greedy) on" if bandit else "mean greedy return over"
    noun = "test images" if bandit else "episodes"
    print(
        f"{what} {summary['eval_episodes']} {noun}: {summary['test_return']:.4g} after "
        f"{summary['steps']} steps ({summary['env_steps']} environment steps); "
        f"wrote {args.out}/metrics.json"
    )


HELP = "train a policy with REINFORCE: the MNIST contextual bandit or CartPole-v1"
DATA_HELP = PolicyConfig.__dataclass_fields__["data_dir"].metadata["help"]
OPTIONS = {"data_dir": {"help": f"mnist-bandit: {DATA_HELP}"}}  # only the bandit reads MNIST
COMMAND = TrainCommand("policy", HELP, __doc__, PolicyConfig, fit_policy, report, OPTIONS)
"""``samplegrad train policy`` (:func:`samplegrad.lab.training.policy.fit_policy`); the module
docstring is its description."""
