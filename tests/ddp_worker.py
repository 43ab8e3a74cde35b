"""Run by ``tests/test_distributed.py`` under ``torchrun``: ``samplegrad`` command lines in one
launch, recording what each process holds and refusing any file written outside rank 0.

Usage: ``torchrun ... tests/ddp_worker.py DUMP_DIR RUNS_JSON``, ``RUNS_JSON`` a list of
argument lists for :func:`samplegrad.cli.main` (what ``python -m samplegrad`` runs). The worker
opens the process group itself, so several runs share one launch (``fit`` uses an open group);
after each run's training, every process saves its model's parameters and its estimator's
parameters and buffers (``{"model": ..., "estimator": ...}``, the estimator's empty without
one) as ``DUMP_DIR/<out folder name>.rank<R>.pt``. In processes other than rank 0, writing a metrics
file or checkpoint, or plotting, raises instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from samplegrad import cli
from samplegrad.lab.training import distributed, files, loop
from samplegrad.lab.training.vae import VAETrainer


def main(dump: Path, runs: list[list[str]]) -> int:
    dist.init_process_group(backend="gloo")
    rank = dist.get_rank()
    run = loop._run

    def run_and_dump(trainer: Any, *args: Any) -> None:
        run(trainer, *args)
        name = Path(trainer.config.out).name
        estimator = {} if trainer.estimator is None else trainer.estimator.state_dict()
        held = {"model": trainer.model.state_dict(), "estimator": estimator}
        torch.save(held, dump / f"{name}.rank{rank}.pt")

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"rank {rank} wrote a file: {args[0]}")

    loop._run = run_and_dump
    code = 0
    if rank:
        files.write_atomic = refuse
        VAETrainer.plot = refuse
    try:
        for args in runs:
            if code := cli.main(args):
                break
    except BaseException:
        dist.destroy_process_group()
        raise
    distributed.close()
    return code


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]), json.loads(sys.argv[2])))
