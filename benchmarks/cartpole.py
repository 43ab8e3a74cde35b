"""REINFORCE on CartPole-v1: environment steps and wall time to an average greedy return of 475.

Each run is ``samplegrad train policy --env cartpole``
(``samplegrad.lab.training.policy.fit_policy``;
16 episodes a step, reward-to-go, leave-one-out baseline over the 16, a 4-64-2 tanh policy,
Adam 1e-2): training validates the greedy policy every ``--eval-every`` steps on 20 episodes
from fixed validation seeds and stops once their mean return reaches 475, or when the budget
of ``--env-steps`` environment steps is spent. The result is then measured afresh on 20 greedy
episodes from other fixed seeds (``test_return``): a run *passes* when that is >= 475 within
the budget. Written to ``benchmarks/results/cartpole.{json,md}``. Needs Gymnasium (``pip
install -e '.[rl]'``, or ``make cartpole``). Usage::

    python benchmarks/cartpole.py [--seeds 0,1,2] [--env-steps 500000] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import torch

from samplegrad.lab.training.policy import PolicyConfig, fit_policy

from _machine import cpu_model, source_revision

TARGET = 475.0


def command(config: PolicyConfig) -> str:
    """The ``samplegrad train policy`` command line of ``config`` (its output folder left out)."""
    return (
        f"samplegrad train policy --env cartpole --env-steps {config.env_steps} "
        f"--steps {config.steps} --num-samples {config.num_samples} --baseline {config.baseline} "
        f"--lr {config.lr} --eval-every {config.eval_every} --target-return {config.target_return} "
        f"--seed {config.seed}"
    )


def run(seed: int, env_steps: int, eval_every: int, scratch: str) -> dict[str, object]:
    config = PolicyConfig(
        env="cartpole",
        steps=100_000,  # the environment-step budget ends training, not this
        env_steps=env_steps,
        eval_every=eval_every,
        target_return=TARGET,
        seed=seed,
        out=Path(scratch) / f"seed{seed}",
        progress=False,
    )
    metrics = fit_policy(config)
    return {
        "seed": seed,
        "command": command(config),
        "steps": metrics["steps"],
        "env_steps": metrics["env_steps"],
        "train_seconds": metrics["seconds"],
        "test_return": metrics["test_return"],
        "eval_episodes": metrics["eval_episodes"],
        "passed": metrics["test_return"] >= TARGET,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    parser.add_argument("--env-steps", type=int, default=500_000, help="budget per run")
    parser.add_argument("--eval-every", type=int, default=5, help="steps between validations")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for seed in (int(s) for s in args.seeds.split(",")):
            rows.append(run(seed, args.env_steps, args.eval_every, scratch))
            print(rows[-1], flush=True)
    machine = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "revision": source_revision(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"target": TARGET, "env_step_budget": args.env_steps, "machine": machine, "rows": rows}
    (args.out / "cartpole.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# REINFORCE on CartPole-v1: environment steps to a greedy return of 475",
        "",
        f"Budget {args.env_steps} environment steps per run; pass: the mean return of 20 greedy "
        f"episodes from fixed test seeds >= {TARGET:g}. torch {machine['torch']}, "
        f"{machine['threads']} thread(s), {machine['cpu']}, source {machine['revision']}. "
        f"Command: `python benchmarks/cartpole.py --seeds {args.seeds} --env-steps "
        f"{args.env_steps}`; each run's own command below.",
        "",
        "| seed | steps | env steps | train s | eval return (20 episodes) | passed | command |",
        "|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['steps']} | {r['env_steps']} | {r['train_seconds']:.0f} "
            f"| {r['test_return']:.1f} | {'yes' if r['passed'] else 'no'} | `{r['command']}` |"
        )
    (args.out / "cartpole.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
