"""Policy-gradient training: REINFORCE on the MNIST contextual bandit or on CartPole-v1.

>>> from samplegrad.lab.training.policy import PolicyConfig, fit_policy
>>> metrics = fit_policy(PolicyConfig(env="mnist-bandit", out="runs/bandit"))  # doctest: +SKIP
>>> metrics["eval_return"]  # doctest: +SKIP

The ``samplegrad train policy`` command is a thin layer over :func:`fit_policy`. The gradient is
REINFORCE with reward-to-go built on :class:`samplegrad.Graph` (see
:mod:`samplegrad.lab.rl.reinforce` for the math), with a leave-one-out, learned or no baseline.

**Tasks.** ``mnist-bandit``: each step draws ``batch_size`` training images and
``num_samples`` guesses of each one's digit from the policy (784-``hidden``-10), reward 1 for a
right guess; the score is the greedy guess's accuracy. ``cartpole``: each step plays
``num_samples`` CartPole-v1 episodes with the policy (4-``hidden``-2); the score is the mean
return of greedy episodes from fixed seeds (Gymnasium, the ``rl`` extra).

**What a run writes into** ``config.out``:

- ``metrics.csv``: one row per optimiser step (``step, env_steps, train_return, eval_return,
  seconds``): the mean reward (bandit) or return (CartPole) of the step's samples, and every
  ``eval_every`` steps the validation score (greedy; the bandit's held-out training images,
  CartPole's validation seeds), else empty; ``seconds`` is the training time so far.
- ``checkpoint.pt``: at every validation, at the end and on SIGINT/SIGTERM (which finish the
  current step and stop); ``config.resume`` continues from it.
- ``metrics.json``: the :data:`SUMMARY_KEYS` and the task's own (the bandit's per-digit
  accuracy and confusion matrix, CartPole's evaluation returns).
- ``training.png`` and ``confusion.png`` (bandit) or ``eval_returns.png`` (CartPole), last.

**Length.** Training runs for ``steps`` optimiser steps, or less: it stops once
``env_steps`` environment steps (bandit: guesses) have been taken, or a validation score
reaches ``target_return``. The final evaluation (``eval_return``) uses data no validation
saw: the 10 000 test images, or CartPole episodes from other fixed seeds.

**Reproducibility.** Step ``k`` draws its images or episode seeds and its actions from
generators seeded by ``(seed, stream, k)`` (:mod:`samplegrad.lab.rl.tasks`), so on the CPU the same
seed gives the same run, also when it is interrupted and resumed.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from samplegrad.lab.rl.reinforce import BaselineKind
from samplegrad.lab.rl.tasks import BanditTask, CartPoleTask, Task
from samplegrad.lab.training.runs import (
    POSTFIX_EVERY,
    Stop,
    TrainError,
    check_compatible,
    check_device,
    check_int,
    interrupted,
    read_checkpoint,
    refuse_to_overwrite,
    save_checkpoint,
    show_progress,
    stop_on_signals,
    write_csv,
    write_json,
)

__all__ = ["ENVS", "SUMMARY_KEYS", "PolicyConfig", "TrainError", "fit_policy"]

ENVS = ("mnist-bandit", "cartpole")

DEFAULTS: dict[str, dict[str, Any]] = {
    "mnist-bandit": {
        "steps": 1000,
        "num_samples": 4,
        "batch_size": 64,
        "hidden": 128,
        "lr": 1e-3,
        "eval_episodes": 10_000,
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
    "env",
    "steps",
    "env_steps",
    "eval_return",
    "eval_episodes",
    "eval_policy",
    "train_return",
    "seconds",
    "baseline",
    "num_samples",
    "batch_size",
    "hidden",
    "lr",
    "seed",
    "device",
    "torch",
)
"""The keys of ``metrics.json`` that every task writes (each adds its own)."""

CSV_COLUMNS = ("step", "env_steps", "train_return", "eval_return", "seconds")

MUST_MATCH_ON_RESUME = ("env", "num_samples", "batch_size", "hidden", "baseline", "seed", "device")
"""Config fields a resumed run must share with its checkpoint: the networks and what fixes the
random streams. The others (lengths, ``lr``, evaluation and output settings) may change."""

CHECKPOINT = "checkpoint.pt"
_CHECKPOINT_FORMAT = 1


@dataclasses.dataclass
class PolicyConfig:
    """Everything a policy-gradient run depends on; the command line's options, one for one.

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
        seed: seeds the networks, the data or episodes, and the actions.
        data_dir: the MNIST folder (bandit); ``None`` searches as ``load_mnist`` does.
        validation_size: training images held out for validation (bandit).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        out: the output folder, created if missing.
        resume: continue from ``out/checkpoint.pt``.
        eval_episodes: evaluation episodes: greedy CartPole episodes, or test images (each
            a one-step episode; at most 10 000) for the bandit.
        eval_every: optimiser steps between validations (and checkpoints).
        target_return: stop once a validation score reaches this.
        progress: show a progress bar (only on a terminal).
        compile: ``torch.compile`` the step: for the bandit the whole surrogate and the Adam
            step; for CartPole, whose rollout steps the environment on the host, the policy
            and value networks and the Adam step.
    """

    env: str
    steps: int | None = None
    env_steps: int | None = None
    num_samples: int | None = None
    batch_size: int | None = None
    hidden: int | None = None
    lr: float | None = None
    baseline: str = "loo"
    seed: int = 0
    data_dir: str | None = None
    validation_size: int = 10_000
    device: str = "cpu"
    out: str = "policy-out"
    resume: bool = False
    eval_episodes: int | None = None
    eval_every: int | None = None
    target_return: float | None = None
    progress: bool = True
    compile: bool = False

    def __post_init__(self) -> None:
        if self.env not in ENVS:
            raise TrainError(f"env must be one of {', '.join(ENVS)}, got {self.env!r}")
        if self.env == "cartpole" and self.batch_size is not None:
            raise TrainError(
                "batch_size applies to the mnist-bandit only: a cartpole step plays "
                "--num-samples episodes; drop --batch-size"
            )
        for name, default in DEFAULTS[self.env].items():
            if getattr(self, name) is None:
                setattr(self, name, default)
        for name in ("steps", "num_samples", "hidden", "eval_episodes", "eval_every"):
            check_int(name, getattr(self, name), minimum=1)
        if self.env == "mnist-bandit":
            check_int("batch_size", self.batch_size, minimum=1)
            check_int("validation_size", self.validation_size, minimum=1)
        if self.env_steps is not None:
            check_int("env_steps", self.env_steps, minimum=1)
        check_int("seed", self.seed, minimum=0)
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            raise TrainError(f"lr must be a finite number > 0, got {self.lr!r}")
        try:
            self.baseline = BaselineKind(self.baseline).value
        except ValueError:
            choices = ", ".join(kind.value for kind in BaselineKind)
            raise TrainError(f"baseline must be one of {choices}, got {self.baseline!r}") from None
        if self.baseline == BaselineKind.LOO and self.num_samples < 2:
            raise TrainError(
                f"baseline 'loo' averages over the other samples, so num_samples must be >= 2, "
                f"got {self.num_samples}; raise --num-samples or choose --baseline learned/none"
            )
        if self.target_return is not None and not math.isfinite(self.target_return):
            raise TrainError(f"target_return must be a finite number, got {self.target_return!r}")
        self.device = str(check_device(self.device))
        self.out = os.fspath(self.out)
        self.data_dir = None if self.data_dir is None else os.fspath(self.data_dir)


@dataclasses.dataclass
class _State:
    """What a checkpoint restores besides the networks and the optimiser."""

    step: int = 0
    env_steps: int = 0
    seconds: float = 0.0
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Run:
    config: PolicyConfig
    task: Task
    optimizer: torch.optim.Optimizer
    state: _State
    optimizer_step: Callable[[], object] = dataclasses.field(init=False)
    """``optimizer.step``, compiled with ``config.compile``."""

    def __post_init__(self) -> None:
        step = self.optimizer.step
        self.optimizer_step = torch.compile(step) if self.config.compile else step

    def modules(self) -> dict[str, torch.nn.Module]:
        value = {} if self.task.value is None else {"value": self.task.value}
        return {"policy": self.task.policy, **value}


def _make_task(config: PolicyConfig) -> Task:
    return BanditTask(config) if config.env == "mnist-bandit" else CartPoleTask(config)


def _start(config: PolicyConfig) -> _Run:
    """A fresh run, or the one restored from the checkpoint when ``config.resume``."""
    checkpoint = Path(config.out) / CHECKPOINT
    refuse_to_overwrite(checkpoint, config.resume)
    task = _make_task(config)
    modules = [module for module in (task.policy, task.value) if module is not None]
    parameters = [
        parameter for module in modules for parameter in module.to(config.device).parameters()
    ]
    run = _Run(config, task, torch.optim.Adam(parameters, lr=config.lr), _State())
    if config.resume:
        payload = read_checkpoint(
            checkpoint,
            "cannot resume: ",
            "run without --resume (resume=False) to start training, or point --out at the "
            "folder of the run to continue",
        )
        check_compatible(config, payload.get("config", {}), checkpoint, MUST_MATCH_ON_RESUME)
        for name, module in run.modules().items():
            module.load_state_dict(payload[name])
        run.optimizer.load_state_dict(payload["optimizer"])
        for group in run.optimizer.param_groups:
            group["lr"] = config.lr
        run.state = _State(**payload["state"])
    return run


def _save(run: _Run) -> Path:
    payload = {
        "format": _CHECKPOINT_FORMAT,
        "config": dataclasses.asdict(run.config),
        **{name: module.state_dict() for name, module in run.modules().items()},
        "optimizer": run.optimizer.state_dict(),
        "state": dataclasses.asdict(run.state),
        "torch": str(torch.__version__),
    }
    return save_checkpoint(Path(run.config.out) / CHECKPOINT, payload)


def _done(run: _Run) -> bool:
    """Whether the run has reached its step or environment-step budget or its target."""
    config, state = run.config, run.state
    if state.step >= config.steps:
        return True
    if config.env_steps is not None and state.env_steps >= config.env_steps:
        return True
    if config.target_return is None:
        return False
    last = next(
        (row["eval_return"] for row in reversed(state.history) if row["eval_return"] is not None),
        None,
    )
    return last is not None and last >= config.target_return


def _loop(run: _Run, stop: Stop) -> None:
    """Optimiser steps until :func:`_done` or a signal; validation, metrics.csv and the
    checkpoint every ``eval_every`` steps and after the last."""
    config, state, task = run.config, run.state, run.task
    out = Path(config.out)
    show = show_progress(config.progress)
    with tqdm(total=config.steps, initial=min(state.step, config.steps), disable=not show) as bar:
        while not _done(run) and stop.signum is None:
            start = time.perf_counter()
            run.optimizer.zero_grad(set_to_none=True)
            loss, train_return, env_steps = task.surrogate(state.step + 1)
            loss.backward()
            run.optimizer_step()
            state.step += 1
            state.env_steps += env_steps
            state.seconds += time.perf_counter() - start
            row = {
                "step": state.step,
                "env_steps": state.env_steps,
                "train_return": train_return,
                "eval_return": None,
                "seconds": state.seconds,
            }
            state.history.append(row)
            bar.update(1)
            if bar.disable is False and state.step % POSTFIX_EVERY == 0:
                bar.set_postfix(train_return=f"{float(train_return):.3g}", refresh=False)
            if state.step % config.eval_every == 0 or _done(run) or stop.signum is not None:
                _read_returns(state.history)
                task.policy.eval()
                row["eval_return"] = task.validate()
                task.policy.train()
                write_csv(out / "metrics.csv", CSV_COLUMNS, state.history)
                _save(run)


def _read_returns(history: list[dict[str, Any]]) -> None:
    """Turn the training returns still on the device into floats, with one read for all."""
    pending = [row for row in history if isinstance(row["train_return"], Tensor)]
    if pending:
        values = torch.stack([row["train_return"] for row in pending]).tolist()
        for row, value in zip(pending, values, strict=True):
            row["train_return"] = value


def _summary(run: _Run, evaluation: dict[str, Any]) -> dict[str, Any]:
    config, state = run.config, run.state
    recent = state.history[-config.eval_every :]
    return {
        "env": config.env,
        "steps": state.step,
        "env_steps": state.env_steps,
        "eval_return": evaluation.pop("eval_return"),
        "eval_episodes": evaluation.pop("eval_episodes"),
        "eval_policy": evaluation.pop("eval_policy"),
        "train_return": sum(row["train_return"] for row in recent) / max(1, len(recent)),
        "seconds": state.seconds,
        "baseline": config.baseline,
        "num_samples": config.num_samples,
        "batch_size": config.batch_size,
        "hidden": config.hidden,
        "lr": config.lr,
        "seed": config.seed,
        "device": config.device,
        "torch": str(torch.__version__),
        **evaluation,
    }


def fit_policy(config: PolicyConfig) -> dict[str, Any]:
    """Train the policy of ``config``; return the final metrics (also in ``out/metrics.json``).

    Returns:
        The :data:`SUMMARY_KEYS` and the task's own keys; if SIGINT or SIGTERM stopped
        training, instead ``{"interrupted": "SIGINT", "signal": 2, "step": ..., ...}``.

    Raises:
        TrainError: an invalid or incompatible request (the message says what to change);
        samplegrad.lab.rl.cartpole.GymnasiumMissingError: CartPole without Gymnasium installed;
        samplegrad.lab.data.MNISTNotFoundError, CorruptDataError: the bandit's data cannot be read;
        OSError: ``out`` cannot be written.
    """
    Path(config.out).mkdir(parents=True, exist_ok=True)
    run = _start(config)
    with stop_on_signals() as stop:
        _loop(run, stop)
    if stop.signum is not None:
        return interrupted(stop.signum, run.state.step, Path(config.out) / CHECKPOINT)
    run.task.policy.eval()
    evaluation = run.task.evaluate()
    summary = _summary(run, dict(evaluation))
    write_json(Path(config.out) / "metrics.json", summary)
    _plot(run, evaluation)
    return summary


def _plot(run: _Run, evaluation: dict[str, Any]) -> list[Path]:
    # Imported here: matplotlib takes most of a second to import (see samplegrad.lab.training.vae).
    from samplegrad.lab.plots import rl as plots

    out = Path(run.config.out)
    ylabel = "reward (fraction right)" if run.config.env == "mnist-bandit" else "return"
    curve = plots.plot_training_curve(run.state.history, ylabel, out / "training.png")
    return [curve, *run.task.plot(evaluation, out)]
