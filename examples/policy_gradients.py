"""Policy gradients are the score function: the MNIST bandit and CartPole with ``sg.Graph``.

REINFORCE (Williams 1992) is the score-function estimator applied to actions: the gradient of
the expected reward is ``E[sum_t grad log pi(a_t | s_t) * G_t]``. In a graph, each action is a
node sampled with ``"score"``, each reward ``r_t`` a cost ``-r_t``, and the graph gives every
cost score terms only from the actions it depends on: the reward-to-go ``G_t`` comes out of the
dependencies, with no code of its own.

    python examples/policy_gradients.py --data-dir DIR   # bandit about 90 %, CartPole 475+
    python examples/policy_gradients.py --smoke          # a few steps of each, seconds
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _data import load_images
from torch import nn
from torch.distributions import Categorical

import samplegrad as sg


# --8<-- [start:bandit]
def bandit_step(policy: nn.Module, images, labels, num_guesses: int = 4) -> torch.Tensor:
    """See an image, guess its digit, reward 1 if right: one random step, one node."""
    graph = sg.Graph()
    guess = graph.sample(
        "guess",
        Categorical(logits=policy(images)),
        sg.ScoreFunction(baseline="loo"),  # leave-one-out over the 4 guesses of each image
        num_samples=num_guesses,
    )  # (4, B), a GraphTensor: it remembers that it came from node "guess"
    graph.cost(-(guess == labels).float())  # reward 1 if right; depends on "guess", found
    return graph.surrogate(reduction="mean")  # value: minus the mean reward


# --8<-- [end:bandit]


# --8<-- [start:cartpole]
def cartpole_step(policy: nn.Module, envs: list, seed: int) -> tuple[torch.Tensor, float]:
    """One batch of len(envs) CartPole episodes, stepped in lockstep, as one graph."""
    graph = sg.Graph(num_samples=len(envs))  # dimension 0: the episodes, S joint samples
    observations = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    alive = np.ones(len(envs), dtype=bool)
    total, names = 0.0, []
    while alive.any():
        names.append(f"a{len(names)}")
        action = graph.sample(
            names[-1],
            Categorical(logits=policy(torch.tensor(observations))),  # a copy: numpy changes
            sg.ScoreFunction(baseline="loo"),
            mask=torch.tensor(alive),  # finished episodes take no part
        )
        rewards = np.zeros(len(envs), dtype=np.float32)
        for i in np.flatnonzero(alive):  # the environment is outside torch: numpy actions
            observations[i], rewards[i], done, truncated, _ = envs[i].step(int(action[i]))
            alive[i] = not (done or truncated)
        # r_t left torch, so declare what it depends on: a_0 .. a_t (causality)
        graph.cost(-torch.as_tensor(rewards), depends_on=list(names))
        total += rewards.sum()
    return graph.surrogate(reduction="sum"), total / len(envs)  # value: minus the mean return


# --8<-- [end:cartpole]


def train_bandit(data_dir: str | None, steps: int, smoke: bool) -> None:
    torch.manual_seed(0)
    train, test = load_images(data_dir, smoke=smoke, binarize="none")
    pixels = train.images.shape[1]
    policy = nn.Sequential(nn.Linear(pixels, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3)
    step = 0
    while step < steps:
        for images, labels in train.batches(64):
            loss = bandit_step(policy, images, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step == steps:
                break
    with torch.no_grad():
        accuracy = (policy(test.images).argmax(-1) == test.labels).float().mean().item()
    print(f"bandit, {steps} steps: greedy accuracy on the test images {accuracy:.1%}")


def train_cartpole(steps: int, episodes: int) -> None:
    try:
        import gymnasium
    except ImportError:
        print("CartPole skipped: it needs Gymnasium (pip install 'samplegrad[rl]')")
        return
    torch.manual_seed(0)
    envs = [gymnasium.make("CartPole-v1") for _ in range(episodes)]
    policy = nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 2))
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)
    for step in range(steps):
        loss, mean_return = cartpole_step(policy, envs, seed=step * episodes)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 0 or step == steps - 1:
            print(f"CartPole step {step}: mean return of {episodes} episodes {mean_return:.1f}")
    for env in envs:
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder with the four MNIST .gz files")
    parser.add_argument("--smoke", action="store_true", help="a few steps: checks that it runs")
    args = parser.parse_args()
    train_bandit(args.data_dir, steps=20 if args.smoke else 1000, smoke=args.smoke)
    train_cartpole(steps=2 if args.smoke else 50, episodes=4 if args.smoke else 16)


if __name__ == "__main__":
    main()
