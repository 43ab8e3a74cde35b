"""One training epoch of the Gaussian VAE: samplegrad against a hand-written PyTorch loop and Pyro.

What is measured: the wall time of one epoch of training on binarized MNIST, everything a
training loop does included (drawing the batch, dynamic binarization, forward, backward, the
Adam step, reading the loss), with the data already in memory as one tensor (no DataLoader).

The problem: the 50,000 training images of ``load_mnist(split="train")`` (the last 10,000 of the
60,000 held out for validation), batches of 128 (391 steps, the last one 80 images), dynamic
binarization drawn per batch, a 784-400-20 ReLU Gaussian VAE (encoder 784 -> 400 -> (mean,
log_var) of 20 dimensions, decoder 20 -> 400 -> 784 Bernoulli logits), one latent sample per
image, Adam with learning rate 1e-3.

Contenders:

* ``samplegrad``: ``samplegrad.lab.models.GaussianVAE(latent_dim=20, hidden=400)``, its
  ``.loss(x, generator=...)`` (analytic KL plus the Monte Carlo Bernoulli likelihood through
  ``sg.nn.Sampling``), ``torch.optim.Adam``, batches from ``MNIST.batches(128, generator=...)``;
* ``hand``: the same network written in plain PyTorch (``nn.Linear`` layers, the
  reparameterization ``mean + exp(log_var / 2) * eps`` inline,
  ``binary_cross_entropy_with_logits`` summed over pixels plus the analytic KL, averaged over the
  batch as samplegrad's loss is), batches by indexing the in-memory tensor with a permutation and
  ``torch.bernoulli``: the reference of every ratio;
* ``pyro``: Pyro's ``SVI`` with ``Trace_ELBO``, the same encoder and decoder registered with
  ``pyro.module``, ``pyro.plate`` over the batch, ``Normal(...).to_event(1)`` latents,
  ``Bernoulli(logits=...).to_event(1)`` observations and ``pyro.optim.Adam``, one ``SVI.step`` per
  batch, batches drawn as ``hand``'s are (skipped with a note if ``pyro-ppl`` is not installed).
  ``Trace_ELBO`` estimates the KL by Monte Carlo and sums the loss over the batch (Adam is
  invariant to that scale); its reported loss is divided by the batch size.

Every contender starts every epoch from the same initial weights (one ``GaussianVAE``'s,
copied) and a fresh Adam, and draws the same data: the shuffle and the binarization come from a
generator seeded alike, and ``samplegrad`` and ``hand`` take their latent noise from a second
generator seeded alike, so these two compute the same numbers up to rounding and train the same
model. The mean training loss of the epoch (negative ELBO per image, in nats) is reported as that
check; Pyro's noise comes from the global RNG, and its loss has the Monte Carlo KL.

Timing: ``torch.set_num_threads`` set to the number of CPU cores (recorded), a short warm-up
per contender, then whole epochs, interleaved (repeat 1 of every contender, then repeat 2, ...;
the order rotates each repeat) so that drift and other processes' load affect every contender
alike. Reported: seconds per epoch (``time.perf_counter``), the median and the fastest over the
repeats, each with its ratio to ``hand`` (target: samplegrad within 1.05x), and the median time
of one step (one loop iteration: batch, forward, backward, optimizer step) over all timed steps.
On a shared machine other processes only ever slow an epoch down, so the fastest is the steadier
number.

Usage::

    python benchmarks/vae_epoch.py [--data-dir DIR] [--repeats 7] [--out benchmarks/results]
    python benchmarks/vae_epoch.py --quick --out /tmp/vae_epoch   # smoke test, ~20 steps each
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import samplegrad as sg
from samplegrad.lab.data import MNIST, load_mnist
from samplegrad.lab.models import GaussianVAE

from _machine import cpu_model, source_revision

SEED = 0
DATA_SEED = 1
NOISE_SEED = 2
BATCH_SIZE = 128
LATENT = 20
HIDDEN = 400
LEARNING_RATE = 1e-3
VALIDATION_SIZE = 10_000

HAND = "hand"

Batches = Callable[[], Iterator[Tensor]]
"""A fresh epoch of binarized batches ``(B, 784)``."""


@dataclass(frozen=True)
class Settings:
    warmup_steps: int
    repeats: int
    max_steps: int | None
    """Steps per timed "epoch"; ``None``: the whole epoch."""


QUICK = Settings(warmup_steps=3, repeats=2, max_steps=20)


@dataclass
class Contender:
    """One way of training; ``epoch(max_steps)`` trains a fresh model for one epoch."""

    name: str
    epoch: Callable[[int | None], tuple[list[float], float, int]]
    """Returns the per-step wall times (s), the mean training loss and the number of steps."""
    note: str = ""
    epoch_s: list[float] = field(default_factory=list)
    step_s: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    steps: int = 0


# --------------------------------------------------------------------------------------------
# The hand-written VAE (plain PyTorch): the reference.


class HandVAE(nn.Module):
    """784-400-20 Gaussian VAE, the tutorial's layers; weights copied from a ``GaussianVAE``."""

    def __init__(self, source: GaussianVAE) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, HIDDEN)
        self.fc_mean = nn.Linear(HIDDEN, LATENT)
        self.fc_log_var = nn.Linear(HIDDEN, LATENT)
        self.fc3 = nn.Linear(LATENT, HIDDEN)
        self.fc4 = nn.Linear(HIDDEN, 784)
        pairs = [
            (self.fc1, source.encoder[0]),
            (self.fc_mean, source.mean),
            (self.fc_log_var, source.log_var),
            (self.fc3, source.decoder[0]),
            (self.fc4, source.decoder[2]),
        ]
        with torch.no_grad():
            for mine, theirs in pairs:
                mine.weight.copy_(theirs.weight)
                mine.bias.copy_(theirs.bias)

    def loss(self, x: Tensor, generator: torch.Generator) -> Tensor:
        h = F.relu(self.fc1(x))
        mean, log_var = self.fc_mean(h), self.fc_log_var(h)
        z = mean + torch.exp(0.5 * log_var) * torch.randn(mean.shape, generator=generator)
        logits = self.fc4(F.relu(self.fc3(z)))
        bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kl = 0.5 * (log_var.exp() + mean.pow(2) - 1 - log_var).sum()
        return (bce + kl) / x.shape[0]


def tensor_batches(images: Tensor, generator: torch.Generator) -> Iterator[Tensor]:
    """One epoch: a permutation, then each batch indexed from it and binarized."""
    order = torch.randperm(len(images), generator=generator)
    for start in range(0, len(images), BATCH_SIZE):
        yield torch.bernoulli(images[order[start : start + BATCH_SIZE]], generator=generator)


# --------------------------------------------------------------------------------------------
# Contenders


def train_loop(
    batches: Iterator[Tensor], step: Callable[[Tensor], float], max_steps: int | None
) -> tuple[list[float], float, int]:
    """Run ``step`` on each batch; per-iteration wall times (batch included) and mean loss."""
    times: list[float] = []
    total, count = 0.0, 0
    last = time.perf_counter()
    for x in batches:
        total += step(x)
        count += 1
        now = time.perf_counter()
        times.append(now - last)
        last = now
        if max_steps is not None and count >= max_steps:
            break
    return times, total / max(count, 1), count


def samplegrad_contender(data: MNIST, initial: GaussianVAE) -> Contender:
    def epoch(max_steps: int | None) -> tuple[list[float], float, int]:
        model = GaussianVAE(latent_dim=LATENT, hidden=HIDDEN)
        model.load_state_dict(initial.state_dict())
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        data_generator = torch.Generator().manual_seed(DATA_SEED)
        noise = torch.Generator().manual_seed(NOISE_SEED)

        def step(x: Tensor) -> float:
            optimizer.zero_grad()
            loss = model.loss(x, generator=noise).loss
            loss.backward()
            optimizer.step()
            return loss.item()

        batches = (x for x, _ in data.batches(BATCH_SIZE, generator=data_generator))
        return train_loop(batches, step, max_steps)

    return Contender(
        "samplegrad", epoch, "GaussianVAE.loss + torch.optim.Adam; batches from MNIST.batches"
    )


def hand_contender(images: Tensor, initial: GaussianVAE) -> Contender:
    def epoch(max_steps: int | None) -> tuple[list[float], float, int]:
        model = HandVAE(initial)
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        data_generator = torch.Generator().manual_seed(DATA_SEED)
        noise = torch.Generator().manual_seed(NOISE_SEED)

        def step(x: Tensor) -> float:
            optimizer.zero_grad()
            loss = model.loss(x, noise)
            loss.backward()
            optimizer.step()
            return loss.item()

        return train_loop(tensor_batches(images, data_generator), step, max_steps)

    return Contender(
        HAND,
        epoch,
        "plain PyTorch, reparameterization inline; in-memory tensor indexed by a permutation",
    )


def pyro_contender(images: Tensor, initial: GaussianVAE) -> tuple[Contender | None, str]:
    try:
        import pyro
        import pyro.distributions as dist
        from pyro.infer import SVI, Trace_ELBO
        from pyro.optim import Adam
    except ImportError:
        return None, "pyro-ppl is not installed (pip install -e '.[bench]'), so no Pyro row"

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc_mean, self.fc_log_var = (
                nn.Linear(784, HIDDEN),
                nn.Linear(HIDDEN, LATENT),
                nn.Linear(HIDDEN, LATENT),
            )

        def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
            h = F.relu(self.fc1(x))
            return self.fc_mean(h), torch.exp(0.5 * self.fc_log_var(h))

    class Decoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc3, self.fc4 = nn.Linear(LATENT, HIDDEN), nn.Linear(HIDDEN, 784)

        def forward(self, z: Tensor) -> Tensor:
            return self.fc4(F.relu(self.fc3(z)))

    def epoch(max_steps: int | None) -> tuple[list[float], float, int]:
        hand = HandVAE(initial)  # the same initial weights, in the same layer names
        encoder, decoder = Encoder(), Decoder()
        encoder.load_state_dict(
            {k: v for k, v in hand.state_dict().items() if not k.startswith(("fc3", "fc4"))}
        )
        decoder.load_state_dict(
            {k: v for k, v in hand.state_dict().items() if k.startswith(("fc3", "fc4"))}
        )
        pyro.clear_param_store()

        def model(x: Tensor) -> None:
            pyro.module("decoder", decoder)
            with pyro.plate("data", x.shape[0]):
                z = pyro.sample(
                    "z",
                    dist.Normal(x.new_zeros(x.shape[0], LATENT), x.new_ones(1)).to_event(1),
                )
                pyro.sample("x", dist.Bernoulli(logits=decoder(z)).to_event(1), obs=x)

        def guide(x: Tensor) -> None:
            pyro.module("encoder", encoder)
            with pyro.plate("data", x.shape[0]):
                loc, scale = encoder(x)
                pyro.sample("z", dist.Normal(loc, scale).to_event(1))

        svi = SVI(model, guide, Adam({"lr": LEARNING_RATE}), loss=Trace_ELBO())
        data_generator = torch.Generator().manual_seed(DATA_SEED)

        def step(x: Tensor) -> float:
            return svi.step(x) / x.shape[0]

        return train_loop(tensor_batches(images, data_generator), step, max_steps)

    note = (
        f"pyro {pyro.__version__}: SVI + Trace_ELBO (Monte Carlo KL), pyro.optim.Adam; "
        "batches as hand's"
    )
    return Contender("pyro", epoch, note), f"pyro-ppl {pyro.__version__}"


# --------------------------------------------------------------------------------------------
# Timing and reporting


def run(contenders: list[Contender], settings: Settings, log: Callable[[str], None]) -> None:
    for contender in contenders:
        contender.epoch(settings.warmup_steps)
    for repeat in range(settings.repeats):
        shift = repeat % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            start = time.perf_counter()
            step_s, loss, steps = contender.epoch(settings.max_steps)
            elapsed = time.perf_counter() - start
            contender.epoch_s.append(elapsed)
            contender.step_s.extend(step_s)
            contender.losses.append(loss)
            contender.steps = steps
            log(
                f"repeat {repeat + 1}/{settings.repeats} {contender.name}: {elapsed:.2f} s, "
                f"{steps} steps, mean loss {loss:.2f}"
            )


def results(contenders: list[Contender]) -> list[dict[str, object]]:
    hand = next(c for c in contenders if c.name == HAND)
    hand_median, hand_best = statistics.median(hand.epoch_s), min(hand.epoch_s)
    hand_step = statistics.median(hand.step_s)
    rows = []
    for c in contenders:
        median, best = statistics.median(c.epoch_s), min(c.epoch_s)
        rows.append(
            {
                "contender": c.name,
                "s_per_epoch": round(median, 4),
                "ratio_to_hand": round(median / hand_median, 3),
                "best_s_per_epoch": round(best, 4),
                "best_ratio_to_hand": round(best / hand_best, 3),
                "epoch_s": [round(t, 4) for t in c.epoch_s],
                "ms_per_step_median": round(statistics.median(c.step_s) * 1e3, 3),
                "step_ratio_to_hand": round(statistics.median(c.step_s) / hand_step, 3),
                "steps_per_epoch": c.steps,
                "mean_train_loss": [round(v, 4) for v in c.losses],
                "note": c.note,
            }
        )
    return rows


def markdown(report: dict[str, object], rows: list[dict[str, object]]) -> str:
    machine = report["machine"]
    assert isinstance(machine, dict)
    lines = [
        "# samplegrad VAE epoch: Gaussian VAE on binarized MNIST, one training epoch",
        "",
        f"Command: `{report['command']}`",
        "",
        f"samplegrad {machine['samplegrad']}, torch {machine['torch']}, "
        f"Python {machine['python']}, {machine['cpu']} ({machine['cores']} cores), "
        f"{machine['threads']} threads, {machine['platform']}; {report['date']}.",
        f"{report['settings']}. s / epoch: wall time, median over the repeats; best: the "
        "fastest epoch; ms / step: median over every timed step (batch, forward, backward, "
        "Adam), and its ratio to hand's, the number least affected by other processes. "
        "Loss: the epoch's mean training loss (negative ELBO, nats per image), per repeat.",
        "",
        "| contender | s / epoch | ratio to hand | best s | best ratio | ms / step "
        "| step ratio | steps | mean train loss | note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        losses = ", ".join(f"{v:.2f}" for v in r["mean_train_loss"])  # type: ignore[union-attr]
        lines.append(
            f"| {r['contender']} | {r['s_per_epoch']:.3f} | {r['ratio_to_hand']:.3f}x | "
            f"{r['best_s_per_epoch']:.3f} | {r['best_ratio_to_hand']:.3f}x | "
            f"{r['ms_per_step_median']:.2f} | {r['step_ratio_to_hand']:.3f}x | "
            f"{r['steps_per_epoch']} | {losses} | "
            f"{str(r['note']).replace('|', '/')} |"
        )
    for note in report["notes"]:  # type: ignore[union-attr]
        lines += ["", note]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder with the four MNIST IDX files (default: $SAMPLEGRAD_DATA, then the cache)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("benchmarks/results"),
        help="folder for vae_epoch.json and vae_epoch.md",
    )
    parser.add_argument("--repeats", type=int, default=7, help="timed epochs per contender")
    parser.add_argument(
        "--warmup-steps", type=int, default=20, help="untimed steps per contender first"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: the number of cores)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="20 steps per contender, twice: a smoke test, not a measurement",
    )
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else Settings(args.warmup_steps, args.repeats, None)

    cores = os.cpu_count() or 1
    torch.set_num_threads(args.threads or cores)
    torch.manual_seed(SEED)
    data = load_mnist(
        args.data_dir, split="train", validation_size=VALIDATION_SIZE, binarize="dynamic"
    )
    initial = GaussianVAE(latent_dim=LATENT, hidden=HIDDEN)
    contenders = [hand_contender(data.images, initial), samplegrad_contender(data, initial)]
    pyro_row, pyro_note = pyro_contender(data.images, initial)
    if pyro_row is not None:
        contenders.append(pyro_row)

    run(contenders, settings, lambda line: print(line, file=sys.stderr, flush=True))
    rows = results(contenders)

    command = "python benchmarks/vae_epoch.py" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:])
    )
    steps = settings.max_steps or -(-len(data) // BATCH_SIZE)
    by_name = {c.name: c for c in contenders}
    gap = max(
        abs(a - b) for a, b in zip(by_name["samplegrad"].losses, by_name[HAND].losses, strict=True)
    )
    notes = [
        f"Pyro: {pyro_note}." if pyro_row is not None else f"Note: {pyro_note}.",
        f"Problem: {len(data)} training images ({VALIDATION_SIZE} held out), batch "
        f"{BATCH_SIZE} ({steps} steps), dynamic binarization per batch, 784-{HIDDEN}-{LATENT} "
        f"ReLU Gaussian VAE, one latent sample, Adam lr {LEARNING_RATE}. Every epoch starts "
        "from the same initial weights and draws the same shuffle and binarization; "
        "samplegrad and hand also draw the same latent noise, so their losses agree up to "
        f"rounding (here: at most {gap:.2g} nats apart). Ratios compare with hand (target: "
        "samplegrad within 1.05x).",
        "torch.distributions argument validation and Pyro's validation at their defaults.",
    ]
    length = "the whole epoch" if settings.max_steps is None else f"{settings.max_steps} steps"
    report: dict[str, object] = {
        "command": command,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "torch": torch.__version__,
            "samplegrad": f"{sg.__version__} ({source_revision()})",
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu": cpu_model(),
            "cores": cores,
            "threads": torch.get_num_threads(),
        },
        "settings": (
            f"warm-up {settings.warmup_steps} steps, {settings.repeats} interleaved repeats per "
            f"contender of {length}"
        ),
        "seeds": {"init": SEED, "data": DATA_SEED, "noise": NOISE_SEED},
        "notes": notes,
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "vae_epoch.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report, rows)
    (args.out / "vae_epoch.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
