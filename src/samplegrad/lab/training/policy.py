"""Policy-gradient training: REINFORCE on the MNIST contextual bandit or on CartPole-v1, as
:class:`PolicyTrainer`, run by the one loop (:mod:`samplegrad.lab.training.loop`).

>>> from samplegrad.lab.training.policy import PolicyConfig, fit_policy
>>> metrics = fit_policy(PolicyConfig(env="mnist-bandit", out="runs/bandit"))  # doctest: +SKIP
>>> metrics["test_return"]  # doctest: +SKIP

The ``samplegrad train policy`` command is a thin layer over :func:`fit_policy`. The gradient is
REINFORCE with reward-to-go built on :class:`samplegrad.Graph` (see
:mod:`samplegrad.lab.rl.reinforce` for the math), with a leave-one-out, learned or no baseline.

**Tasks.** ``mnist-bandit``: each step draws ``batch_size`` training images and
``num_samples`` guesses of each one's digit from the policy (784-``hidden``-10), reward 1 for a
right guess; the score is the greedy guess's accuracy. ``cartpole``: each step plays
``num_samples`` CartPole-v1 episodes with the policy (4-``hidden``-2); the score is the mean
return of greedy episodes from fixed seeds (Gymnasium, the ``rl`` extra).

**What a run writes into** ``config.out``:

- ``metrics.csv``: one row per optimiser step (``step, env_steps, train_return, valid_return,
  seconds``): the mean reward (bandit) or return (CartPole) of the step's samples, and every
  ``eval_every`` steps the validation score ``valid_return`` (greedy; the bandit's held-out
  training images, CartPole's validation seeds), else empty; ``seconds`` is the training time
  so far.
- ``checkpoint.pt``: at every validation, at the end and on SIGINT/SIGTERM (which finish the
  current step and stop); ``config.resume`` continues from it.
- ``metrics.json``: the :data:`SUMMARY_KEYS` and the task's own (the bandit's per-digit
  accuracy and confusion matrix, CartPole's evaluation returns).
- ``training.png`` and ``confusion.png`` (bandit) or ``eval_returns.png`` (CartPole), last.

**Length.** Training runs for ``steps`` optimiser steps, or less: it stops once
``env_steps`` environment steps (bandit: guesses) have been taken, or a validation score
reaches ``target_return``. The final evaluation (``test_return`` in ``metrics.json``) uses data
no validation saw: the 10 000 test images, or CartPole episodes from other fixed seeds.

**Reproducibility.** Step ``k`` draws its images or episode seeds and its actions from
generators seeded by ``(seed, stream, k)`` (:mod:`samplegrad.lab.rl.tasks`), so on the CPU the same
seed gives the same run, also when it is interrupted and resumed.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from samplegrad.lab.rl.reinforce import BaselineKind
from samplegrad.lab.rl.tasks import BanditTask, CartPoleTask, Task
from samplegrad.lab.training.config import (
    HELD_OUT_SIZES,
    MNIST_TEST_IMAGES,
    MNIST_TRAINING_IMAGES,
    RunConfig,
    TrainError,
    check_field,
    check_int,
    option,
)
from samplegrad.lab.training.files import CHECKPOINT
from samplegrad.lab.training.loop import OnStep, Trainer, train

__all__ = [
    "CHECKPOINT",
    "CSV_COLUMNS",
    "DEFAULTS",
    "ENVS",
    "SUMMARY_KEYS",
    "PolicyConfig",
    "PolicyTrainer",
    "TrainError",
    "fit_policy",
]

ENVS = ("mnist-bandit", "cartpole")

DEFAULTS: dict[str, dict[str, Any]] = {
    "mnist-bandit": {
        "steps": 1000,
        "num_samples": 4,
        "batch_size": 64,
        "hidden": 128,
        "lr": 1e-3,
        "eval_episodes": None,  # every test image
        "eval_every": 100,
    },
    "cartpole": {
        "steps": 400,
        "num_samples": 16,
        "batch_size": None,
        "hidden": 64,
        "lr": 1e-2,
        "eval_episodes": 20,
        "eval_every": 10,
    },
}
"""Per environment, the settings a ``None`` in :class:`PolicyConfig` stands for."""

SUMMARY_KEYS = (
    *("env", "steps", "env_steps", "test_return", "eval_episodes", "eval_policy"),
    *("train_return", "seconds", "baseline", "num_samples", "batch_size", "hidden", "lr"),
    *("seed", "device", "torch"),
)
"""The keys of ``metrics.json`` that every task writes (each adds its own)."""

CSV_COLUMNS = ("step", "env_steps", "train_return", "valid_return", "seconds")


def _per_env(name: str) -> str:
    """The help text's note of the environments' defaults for ``name``."""
    bandit, cartpole = DEFAULTS["mnist-bandit"][name], DEFAULTS["cartpole"][name]
    return f"default: {bandit} for mnist-bandit, {cartpole} for cartpole"


_HELP = {
    "steps": f"optimiser steps, at most ({_per_env('steps')})",
    "env_steps": "stop once N environment steps (bandit: guesses) have been taken",
    "baseline": "score-function baseline: leave-one-out over the samples, a learned value "
    "network, or none",
    "num_samples": "guesses per image, or episodes per step; >= 2 for loo "
    f"({_per_env('num_samples')})",
    "batch_size": "images per step, mnist-bandit only "
    f"(default: {DEFAULTS['mnist-bandit']['batch_size']})",
    "hidden": f"hidden units ({_per_env('hidden')})",
    "lr": f"Adam learning rate ({_per_env('lr')})",
    "validation_size": "mnist-bandit: training images held out for validation",
    "eval_episodes": "greedy evaluation episodes (cartpole, fixed seeds) or test images "
    "(mnist-bandit, each a one-step episode) (default: every test image for mnist-bandit, "
    f"{DEFAULTS['cartpole']['eval_episodes']} for cartpole)",
    "eval_every": f"steps between validations and checkpoints ({_per_env('eval_every')})",
    "target_return": "stop once a validation score reaches R (e.g. 475 for cartpole)",
    "compile": "torch.compile the step: for mnist-bandit the whole surrogate and the Adam step; "
    "for cartpole (whose rollout steps the environment on the host) the networks and Adam",
}
"""The command line's help for :class:`PolicyConfig`'s fields."""


@dataclasses.dataclass(kw_only=True)
class PolicyConfig(RunConfig):
    """Everything a policy-gradient run depends on; the command line's options, one for one
    (with :class:`~samplegrad.lab.training.config.RunConfig`'s ``seed``, ``data_dir`` (the
    bandit's MNIST), ``device``, ``out``, ``resume`` and ``progress``).

    ``None`` stands for the environment's default (:data:`DEFAULTS`).

    Attributes:
        env: ``"mnist-bandit"`` or ``"cartpole"``.
        steps: optimiser steps to train for (at most).
        env_steps: stop once this many environment steps (bandit: guesses) have been taken.
        num_samples: guesses per image (bandit) or episodes per step (CartPole); at least 2
            for the leave-one-out baseline.
        batch_size: images per step (bandit only).
        hidden: units of the policy's (and value network's) hidden layer.
        lr: Adam's learning rate (policy and value network).
        baseline: ``"loo"``, ``"learned"`` or ``"none"``.
        validation_size: training images held out for validation (bandit).
        eval_episodes: evaluation episodes: greedy CartPole episodes, or test images (each
            a one-step episode; at most 10 000; ``None``: all of them) for the bandit.
        eval_every: optimiser steps between validations (and checkpoints).
        target_return: stop once a validation score reaches this.
        compile: ``torch.compile`` the step: for the bandit the whole surrogate and the Adam
            step; for CartPole, whose rollout steps the environment on the host, the policy
            and value networks and the Adam step.
    """

    MUST_MATCH_ON_RESUME: ClassVar[tuple[str, ...]] = (
        *("env", "num_samples", "batch_size", "hidden", "baseline", "seed", "device"),
    )

    env: str = option(help="the task", choices=ENVS)
    steps: int | None = option(None, _HELP["steps"], metavar="N", minimum=1)
    env_steps: int | None = option(None, _HELP["env_steps"], metavar="N", minimum=1)
    baseline: str = option("loo", _HELP["baseline"], choices=tuple(BaselineKind))
    num_samples: int | None = option(None, _HELP["num_samples"], metavar="K", minimum=1)
    batch_size: int | None = option(None, _HELP["batch_size"], metavar="B", minimum=1)
    hidden: int | None = option(None, _HELP["hidden"], metavar="H", minimum=1)
    lr: float | None = option(None, _HELP["lr"], metavar="LR", positive=True)
    validation_size: int = option(10_000, _HELP["validation_size"], metavar="N", **HELD_OUT_SIZES)
    out: str = option("policy-out", "output folder, created if missing", metavar="DIR")
    eval_episodes: int | None = option(None, _HELP["eval_episodes"], metavar="N", minimum=1)
    eval_every: int | None = option(None, _HELP["eval_every"], metavar="N", minimum=1)
    target_return: float | None = option(None, _HELP["target_return"], metavar="R", finite=True)
    compile: bool = option(False, _HELP["compile"])

    def __post_init__(self) -> None:
        check_field(self, "env")
        if self.env == "cartpole" and self.batch_size is not None:
            raise TrainError(
                "batch_size applies to the mnist-bandit only: a cartpole step plays "
                "--num-samples episodes; drop --batch-size"
            )
        for name, default in DEFAULTS[self.env].items():
            if getattr(self, name) is None:
                setattr(self, name, default)
        super().__post_init__()
        if self.env == "mnist-bandit":
            check_int("validation_size", self.validation_size, 1, MNIST_TRAINING_IMAGES - 1)
            if (self.eval_episodes or 0) > MNIST_TEST_IMAGES:  # a test image is an episode
                raise TrainError(
                    f"eval_episodes must be <= {MNIST_TEST_IMAGES} for mnist-bandit, one "
                    f"episode per test image, got {self.eval_episodes}"
                )
        if self.baseline == BaselineKind.LOO and self.num_samples < 2:
            raise TrainError(
                f"baseline 'loo' averages over the other samples, so num_samples must be >= 2, "
                f"got {self.num_samples}; raise --num-samples or choose --baseline learned/none"
            )


@dataclasses.dataclass
class _State:
    """What a checkpoint restores besides the networks and the optimiser."""

    step: int = 0
    env_steps: int = 0
    seconds: float = 0.0
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def _read_returns(history: list[dict[str, Any]]) -> None:
    """Turn the training returns still on the device into floats, with one read for all."""
    pending = [row for row in history if isinstance(row["train_return"], Tensor)]
    if pending:
        values = torch.stack([row["train_return"] for row in pending]).tolist()
        for row, value in zip(pending, values, strict=True):
            row["train_return"] = value


class PolicyTrainer(Trainer):
    """A policy trained with REINFORCE (module docstring): a row of ``metrics.csv`` per step,
    a validation every ``eval_every`` steps (a period), the final evaluation in
    ``metrics.json``."""

    command = "policy"
    checkpoint_format = 2  # 2: validation scores as valid_return
    progress_label = "train_return"
    rows_per_step = True

    def __init__(self, config: PolicyConfig) -> None:
        self.config = config

    def build(self) -> None:
        config = self.config
        self.task: Task = (
            BanditTask(config) if config.env == "mnist-bandit" else CartPoleTask(config)
        )
        modules = self._modules().values()
        parameters = [p for module in modules for p in module.to(config.device).parameters()]
        self.optimizer = torch.optim.Adam(parameters, lr=config.lr)
        step = self.optimizer.step
        self._optimizer_step = torch.compile(step) if config.compile else step
        self.state = _State()

    def _modules(self) -> dict[str, torch.nn.Module]:
        value = {} if self.task.value is None else {"value": self.task.value}
        return {"policy": self.task.policy, **value}

    def load_data(self) -> None:
        self.task.load_data()
        self.period, self.total_steps = self.config.eval_every, self.config.steps

    def finished(self) -> bool:
        """Whether the run has reached its step or environment-step budget or its target."""
        config, state = self.config, self.state
        if state.step >= config.steps:
            return True
        if config.env_steps is not None and state.env_steps >= config.env_steps:
            return True
        if config.target_return is None:
            return False
        scores = [row["valid_return"] for row in state.history if row["valid_return"] is not None]
        return bool(scores) and scores[-1] >= config.target_return

    def batches(self, period: int) -> range:
        """The steps (1-based) of the period: step ``k`` draws from generators of ``k``."""
        return range(period * self.period + 1, (period + 1) * self.period + 1)

    def step(self, k: int) -> Tensor | float:
        state = self.state
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        loss, train_return, env_steps = self.task.surrogate(k)
        loss.backward()
        self._optimizer_step()
        state.env_steps += env_steps
        state.seconds += time.perf_counter() - start
        state.history.append(
            {
                "step": k,
                "env_steps": state.env_steps,
                "train_return": train_return,
                "valid_return": None,
                "seconds": state.seconds,
            }
        )
        return train_return

    def end_stretch(self, started: float) -> None:
        """Nothing to fold: each step keeps its own row and time."""

    def close_period(self, number: int, whole: bool) -> None:
        """The validation score, in the row of the period's last step."""
        _read_returns(self.state.history)
        self.task.policy.eval()
        self.state.history[-1]["valid_return"] = self.task.validate()
        self.task.policy.train()

    def metrics(self) -> tuple[tuple[str, ...], list[dict[str, Any]]]:
        return CSV_COLUMNS, self.state.history

    def saved(self) -> dict[str, Any]:
        return {name: module.state_dict() for name, module in self._modules().items()}

    def restore(self, payload: dict[str, Any]) -> None:
        for name, module in self._modules().items():
            module.load_state_dict(payload[name])

    def summarise(self) -> dict[str, Any]:
        """:data:`SUMMARY_KEYS` and the task's own keys (from its final evaluation)."""
        config, state = self.config, self.state
        self.task.policy.eval()
        evaluation = dict(self.task.evaluate())
        recent = state.history[-config.eval_every :]
        settings = ("baseline", "num_samples", "batch_size", "hidden", "lr", "seed", "device")
        return {
            "env": config.env,
            "steps": state.step,
            "env_steps": state.env_steps,
            **{key: evaluation.pop(key) for key in ("test_return", "eval_episodes")},
            "eval_policy": evaluation.pop("eval_policy"),
            "train_return": sum(row["train_return"] for row in recent) / max(1, len(recent)),
            "seconds": state.seconds,
            **{name: getattr(config, name) for name in settings},
            "torch": str(torch.__version__),
            **evaluation,
        }

    def plot(self, summary: dict[str, Any]) -> None:
        # Imported here: matplotlib takes most of a second to import (see the vae trainer).
        from samplegrad.lab.plots import rl as plots

        out = Path(self.config.out)
        ylabel = "reward (fraction right)" if self.config.env == "mnist-bandit" else "return"
        plots.plot_training_curve(self.state.history, ylabel, out / "training.png")
        self.task.plot(summary, out)


def fit_policy(config: PolicyConfig, *, on_step: OnStep | None = None) -> dict[str, Any]:
    """Train the policy of ``config``; return the final metrics (also in ``out/metrics.json``).

    Args:
        config: the run (see :class:`PolicyConfig`).
        on_step: called after every optimiser step with the step count and the step's mean
            training return.

    Returns and raises as :func:`samplegrad.lab.training.loop.train`: the summary (the
    :data:`SUMMARY_KEYS` of ``metrics.json`` and the task's own keys), or
    ``{"interrupted": ...}`` after a signal; also
    :class:`samplegrad.lab.rl.cartpole.GymnasiumMissingError` for CartPole without Gymnasium.
    """
    return train(PolicyTrainer(config), on_step)
