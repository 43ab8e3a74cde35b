"""Many seeds in one process: the cost of ``samplegrad train vae --seeds N`` per training step.

What is measured: the wall time per optimiser step of ``samplegrad.lab.training.vae.fit`` (drawing
and binarizing every replica's batch, one forward and backward pass through the replicated model,
the Adam step, reading the ELBOs), for ``N = 1, 2, 4, 8`` seeds, against ``N = 1`` (the plain
single-seed path: no replication at all). Steps are timed from ``fit``'s ``on_step`` callback:
the first ``warmup`` steps are skipped, and ms / step is the time of the next ``steps`` divided
by their number. The evaluation and plots after training are not timed.

Problems (MNIST, dynamic binarization, batch 128, Adam 1e-3, validation off):

* ``gaussian``: the 784-400-20 Gaussian VAE, pathwise, one latent sample per image;
* ``bernoulli-disarm``: the linear Bernoulli VAE (200 binary latents) with DisARM, two samples
  (one antithetic pair) per image.

Reported per problem and thread count: ms / step for each ``N``, ``N`` seeds' time over one
seed's (the issue's GPU target: at most 2x for 8 seeds), and the per-seed cost against ``N``
separate runs (``time(N) / (N time(1))``; below 1 means the batched run is cheaper than running
the seeds one after the other). ``repeats`` interleaved repeats (every ``N`` once, then again),
reporting the fastest: on a shared machine other processes only slow a run down.

Usage::

    python benchmarks/seeds.py [--data-dir DIR] [--threads 1 2] [--out benchmarks/results]
    python benchmarks/seeds.py --quick --out /tmp/seeds   # smoke test
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

import samplegrad as sg
from samplegrad.lab.training.vae import TrainConfig, fit

from _machine import cpu_model, source_revision

PROBLEMS = {
    "gaussian": {"latent": "gaussian"},
    "bernoulli-disarm": {"latent": "bernoulli", "estimator": "disarm", "num_samples": 2},
}
SEEDS = (1, 2, 4, 8)


def ms_per_step(problem: str, seeds: int, args: argparse.Namespace, scratch: Path) -> float:
    """One ``fit`` of ``warmup + steps`` steps; the mean time of the last ``steps``, in ms."""
    stamps: list[float] = []
    config = TrainConfig(
        **PROBLEMS[problem],
        seeds=seeds,
        steps=args.warmup + args.steps,
        batch_size=128,
        validation_size=0,
        iwae_k=1,
        data_dir=None if args.data_dir is None else str(args.data_dir),
        out=tempfile.mkdtemp(dir=scratch),
        progress=False,
    )
    fit(config, on_step=lambda step, elbo: stamps.append(time.perf_counter()))
    return 1e3 * (stamps[-1] - stamps[args.warmup - 1]) / args.steps


def measure(args: argparse.Namespace, threads: int, scratch: Path) -> list[dict[str, object]]:
    torch.set_num_threads(threads)
    times: dict[tuple[str, int], list[float]] = {}
    for repeat in range(args.repeats):
        for problem in PROBLEMS:
            for seeds in SEEDS:
                ms = ms_per_step(problem, seeds, args, scratch)
                times.setdefault((problem, seeds), []).append(ms)
                print(
                    f"threads {threads} repeat {repeat + 1}: {problem} seeds {seeds}: "
                    f"{ms:.2f} ms/step",
                    file=sys.stderr,
                    flush=True,
                )
    rows = []
    for problem in PROBLEMS:
        one = min(times[(problem, 1)])
        for seeds in SEEDS:
            best = min(times[(problem, seeds)])
            rows.append(
                {
                    "problem": problem,
                    "threads": threads,
                    "seeds": seeds,
                    "ms_per_step": round(best, 3),
                    "ratio_to_one_seed": round(best / one, 3),
                    "per_seed_vs_separate_runs": round(best / (seeds * one), 3),
                    "all_ms_per_step": [round(t, 3) for t in times[(problem, seeds)]],
                }
            )
    return rows


def markdown(report: dict[str, object]) -> str:
    machine = report["machine"]
    assert isinstance(machine, dict)
    lines = [
        "# samplegrad train vae --seeds N: time per training step",
        "",
        f"Command: `{report['command']}`",
        "",
        f"samplegrad {machine['samplegrad']}, torch {machine['torch']}, "
        f"Python {machine['python']}, {machine['cpu']} ({machine['cores']} cores), "
        f"{machine['platform']}; {report['date']}.",
        f"{report['settings']}",
        "",
        "| problem | threads | seeds | ms / step | vs 1 seed | per seed vs separate runs |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:  # type: ignore[union-attr]
        lines.append(
            f"| {r['problem']} | {r['threads']} | {r['seeds']} | {r['ms_per_step']:.2f} | "
            f"{r['ratio_to_one_seed']:.2f}x | {r['per_seed_vs_separate_runs']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="the MNIST IDX files")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=100, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a smoke test: 5 steps, once")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.warmup, args.repeats = 5, 2, 1

    with tempfile.TemporaryDirectory() as scratch:
        rows = [row for t in args.threads for row in measure(args, t, Path(scratch))]
    command = "python benchmarks/seeds.py" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:])
    )
    report: dict[str, object] = {
        "command": command,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "torch": torch.__version__,
            "samplegrad": f"{sg.__version__} ({source_revision()})",
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu": cpu_model(),
            "cores": os.cpu_count() or 1,
        },
        "settings": (
            f"MNIST, batch 128, {args.warmup} warm-up steps then {args.steps} timed steps per "
            f"run, {args.repeats} interleaved repeats, the fastest reported. seeds 1 is the plain "
            "single-seed path; 'vs 1 seed': time(N) / time(1) (GPU target for 8 seeds: <= 2x); "
            "'per seed vs separate runs': time(N) / (N time(1)), below 1x is cheaper than "
            "training the seeds one after the other."
        ),
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "seeds.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    (args.out / "seeds.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
