"""Speed on one device, in one run: VAE training loops and the estimator micro-benchmarks.

Issue 8's benchmark. On a CUDA machine it measures the GPU; without one it runs the same code on
the CPU and says so in every output. Times, per contender, one epoch of MNIST at batch 128
(469 steps for the 60 000 training images), as ``seconds per step x steps per epoch`` from
``--steps`` timed steps after ``--warmup`` untimed ones (compilation happens in the warm-up and
is reported separately), the median over ``--repeats``:

Gaussian VAE (784-400-20, one pathwise sample, Adam 1e-3):

- ``tutorial``: the classic PyTorch example loop: a ``DataLoader`` over a ``TensorDataset`` of
  the images on the host (shuffled), each batch moved to the device, binarized there,
  ``loss.item()`` read every step;
- ``hand``: a hand-written loop over device-resident tensors (a permutation indexes the
  images, ``torch.bernoulli`` binarizes, the loss is summed on the device): the reference;
- ``hand-compiled``: the hand step with its loss and Adam step compiled by ``torch.compile``
  (static shapes): what compiling buys a hand-written loop;
- ``hand-cuda-graph``: the hand step captured as one CUDA graph (static input buffer,
  ``Adam(capturable=True)``), replayed per batch; CUDA only;
- ``pyro``: Pyro's ``SVI`` with ``Trace_ELBO`` on the same network, if ``pyro-ppl`` is installed;
- ``samplegrad``: ``samplegrad.lab.training.vae.training_step`` (what ``samplegrad train vae``
runs) with
  batches from ``MNIST.batches``; ``samplegrad-compiled``: the same with ``compile=True``,
  i.e. ``--compile`` (what it compiles on the device:
  ``samplegrad.lab.training.vae.compile_plan``), and one ``samplegrad-compiled (PLAN)`` row
  per other :class:`~samplegrad.lab.training.vae.CompilePlan` of :func:`compile_plans` (loss,
  optimizer step or both; per mode), from which ``COMPILE_PLANS`` is chosen.

Bernoulli VAE (``BernoulliVAE("linear")``, 200 binary latents, DisARM with 2 samples):
``samplegrad`` and ``samplegrad-compiled``. For both models, ``samplegrad-seeds8``: 8
replicas with their own seeds in one batched step (``samplegrad train vae --seeds 8``).

The arithmetic floor: the GEMM FLOPs of a Gaussian VAE step (:func:`step_flops`, the
784-400-20 network's forward and backward products) x 469 steps, over the rate of those same
products measured in the same run (:func:`gemm_rate`); each Gaussian row gives its epoch time
over that floor.

Peak memory (CUDA only): ``torch.cuda.max_memory_allocated`` during the timed steps, against
the hand loop's. Then the estimator micro-benchmarks of ``benchmarks/overhead.py`` on the same
device (tensors created there through ``torch.set_default_device``; each block ends with a
device synchronisation).

Usage::

    python benchmarks/gpu.py [--data-dir DIR] [--out benchmarks/results] [--quick]
        [--no-compile | --no-compile-plans]

Writes ``OUT/gpu.json`` and ``OUT/gpu.md`` (``gpu_cpu.*`` when it ran on the CPU) and prints
the table; the targets of issue 8 are evaluated at the end.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

import samplegrad
from samplegrad._internal.sampling import ReplicaGenerators
from samplegrad.lab.data import MNIST, load_mnist
from samplegrad.lab.models import BernoulliVAE, GaussianVAE, make_estimator
from samplegrad.lab.models.replicated import replicate
from samplegrad.lab.training.vae import CompilePlan, compile_plan, training_step

from _machine import cpu_model, source_revision

BATCH_SIZE = 128
LEARNING_RATE = 1e-3
STEPS_PER_EPOCH = 469  # ceil(60 000 / 128)
SEED = 0
SEEDS = 8
"""Replicas of the ``--seeds`` rows."""
LAYERS = ((784, 400), (400, 20), (400, 20), (20, 400), (400, 784))
"""The Gaussian VAE's Linear layers ``(in, out)``: encoder, mean, log-variance, decoder."""


@dataclass(frozen=True)
class Settings:
    warmup: int
    steps: int
    repeats: int
    micro_blocks: int
    micro_iterations: int


FULL = Settings(warmup=15, steps=100, repeats=3, micro_blocks=10, micro_iterations=50)
QUICK = Settings(warmup=3, steps=5, repeats=1, micro_blocks=2, micro_iterations=3)


@dataclass
class Contender:
    """One training loop: ``make()`` builds a fresh model and returns ``step()``, which takes
    the next batch and trains on it (host reads as the loop would do them)."""

    model: str
    name: str
    make: Callable[[], Callable[[], None]]
    note: str = ""
    step_seconds: list[float] = field(default_factory=list)
    warmup_seconds: float = 0.0
    peak_bytes: int | None = None
    error: str = ""


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------------------------
# Gaussian VAE loops


class HandVAE(nn.Module):
    """The 784-400-20 VAE in plain PyTorch, weights copied from a ``GaussianVAE``."""

    def __init__(self, source: GaussianVAE) -> None:
        super().__init__()
        self.fc1, self.fc_mean, self.fc_log_var = (
            nn.Linear(784, 400),
            nn.Linear(400, 20),
            nn.Linear(400, 20),
        )
        self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)
        theirs = [source.encoder[0], source.mean, source.log_var, source.decoder[0]]
        theirs.append(source.decoder[2])
        mine = [self.fc1, self.fc_mean, self.fc_log_var, self.fc3, self.fc4]
        with torch.no_grad():
            for a, b in zip(mine, theirs, strict=True):
                a.weight.copy_(b.weight)
                a.bias.copy_(b.bias)

    def loss(self, x: Tensor, noise: Tensor) -> Tensor:
        h = F.relu(self.fc1(x))
        mean, log_var = self.fc_mean(h), self.fc_log_var(h)
        z = mean + torch.exp(0.5 * log_var) * noise
        logits = self.fc4(F.relu(self.fc3(z)))
        bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kl = 0.5 * (log_var.exp() + mean.pow(2) - 1 - log_var).sum()
        return (bce + kl) / x.shape[0]


def initial_model(device: torch.device) -> GaussianVAE:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        return GaussianVAE(latent_dim=20, hidden=400).to(device)


def forever(batches: Callable[[], Iterator[Tensor]]) -> Iterator[Tensor]:
    """Epoch after epoch of full batches (the last, short batch of each epoch is dropped, so
    shapes stay static for compiled and graphed steps)."""
    while True:
        for x in batches():
            if len(x) == BATCH_SIZE:
                yield x


def tutorial(images: Tensor, device: torch.device) -> Contender:
    def make() -> Callable[[], None]:
        model = HandVAE(initial_model(device)).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        loader = DataLoader(TensorDataset(images.cpu()), batch_size=BATCH_SIZE, shuffle=True)
        batches = forever(lambda: (x for (x,) in loader))
        totals = [0.0]

        def step() -> None:
            x = torch.bernoulli(next(batches).to(device))
            optimizer.zero_grad()
            noise = torch.randn(len(x), 20, device=device)
            loss = model.loss(x, noise)
            loss.backward()
            optimizer.step()
            totals[0] += loss.item()

        return step

    return Contender("gaussian", "tutorial", make, "DataLoader on the host, .item() per step")


def device_batches(images: Tensor, generator: torch.Generator) -> Iterator[Tensor]:
    order = torch.randperm(len(images), generator=generator, device=images.device)
    for start in range(0, len(images), BATCH_SIZE):
        yield torch.bernoulli(images[order[start : start + BATCH_SIZE]], generator=generator)


def hand(images: Tensor, device: torch.device, compiled: bool = False) -> Contender:
    """The hand loop; ``compiled``: its loss and Adam step compiled (static shapes)."""

    def make() -> Callable[[], None]:
        model = HandVAE(initial_model(device)).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        loss_fn, optimizer_step = model.loss, optimizer.step
        if compiled:
            loss_fn = torch.compile(loss_fn, dynamic=False)
            optimizer_step = torch.compile(optimizer_step, dynamic=False)
        generator = torch.Generator(device=device).manual_seed(SEED)
        batches = forever(lambda: device_batches(images, generator))
        total = torch.zeros((), device=device)

        def step() -> None:
            nonlocal total
            x = next(batches)
            optimizer.zero_grad(set_to_none=True)
            noise = torch.randn(len(x), 20, device=device, generator=generator)
            loss = loss_fn(x, noise)
            loss.backward()
            optimizer_step()
            total = total + loss.detach()

        return step

    if compiled:
        return Contender("gaussian", "hand-compiled", make, "the hand step, loss and Adam compiled")
    return Contender("gaussian", "hand", make, "device-resident tensors, no host reads")


def hand_cuda_graph(images: Tensor, device: torch.device) -> Contender:
    def make() -> Callable[[], None]:
        model = HandVAE(initial_model(device)).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, capturable=True)
        generator = torch.Generator(device=device).manual_seed(SEED)
        batches = forever(lambda: device_batches(images, generator))
        static_x = next(batches).clone()

        def body() -> None:
            optimizer.zero_grad(set_to_none=False)
            loss = model.loss(static_x, torch.randn(BATCH_SIZE, 20, device=device))
            loss.backward()
            optimizer.step()

        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            for _ in range(3):  # warm up on a side stream before capture
                body()
        torch.cuda.current_stream(device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            body()

        def step() -> None:
            static_x.copy_(next(batches))
            graph.replay()

        return step

    return Contender("gaussian", "hand-cuda-graph", make, "one CUDA graph per step")


def pyro_loop(images: Tensor, device: torch.device) -> Contender | str:
    try:
        import pyro
        import pyro.distributions as dist
        from pyro.infer import SVI, Trace_ELBO
        from pyro.optim import Adam
    except ImportError:
        return "pyro-ppl is not installed (pip install -e '.[bench]'): no Pyro row"

    def make() -> Callable[[], None]:
        net = HandVAE(initial_model(device)).to(device)
        pyro.clear_param_store()

        def model(x: Tensor) -> None:
            pyro.module("decoder", nn.ModuleList([net.fc3, net.fc4]))
            with pyro.plate("data", x.shape[0]):
                prior = dist.Normal(x.new_zeros(x.shape[0], 20), x.new_ones(1)).to_event(1)
                z = pyro.sample("z", prior)
                logits = net.fc4(F.relu(net.fc3(z)))
                pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x)

        def guide(x: Tensor) -> None:
            pyro.module("encoder", nn.ModuleList([net.fc1, net.fc_mean, net.fc_log_var]))
            with pyro.plate("data", x.shape[0]):
                h = F.relu(net.fc1(x))
                scale = torch.exp(0.5 * net.fc_log_var(h))
                pyro.sample("z", dist.Normal(net.fc_mean(h), scale).to_event(1))

        svi = SVI(model, guide, Adam({"lr": LEARNING_RATE}), loss=Trace_ELBO())
        generator = torch.Generator(device=device).manual_seed(SEED)
        batches = forever(lambda: device_batches(images, generator))

        def step() -> None:
            svi.step(next(batches))  # returns the loss as a float: one host read per step

        return step

    return Contender("gaussian", "pyro", make, f"pyro {pyro.__version__}, SVI + Trace_ELBO")


def seeded_model(model_name: str, seed: int, device: torch.device) -> tuple[nn.Module, object]:
    """The model (and estimator) a run with ``seed`` starts from."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if model_name == "gaussian":
            return GaussianVAE(latent_dim=20, hidden=400).to(device), None
        model = BernoulliVAE("linear").to(device)
        return model, make_estimator("disarm", model).to(device)


def default_plan(device: torch.device, model_name: str) -> CompilePlan:
    """What ``--compile`` compiles for the model's loss on ``device``."""
    return compile_plan(device, seeded_model(model_name, SEED, device)[1])


def compile_plans(device: torch.device, default: CompilePlan) -> list[CompilePlan]:
    """The plans measured besides ``--compile``'s own (``default``): each part alone and both,
    in the default mode; both with inductor's GEMM autotuning; on CUDA both as CUDA graphs
    (``reduce-overhead``, which on the CPU is the default mode)."""
    plans = [
        CompilePlan(loss=False, optimizer=True),
        CompilePlan(loss=True, optimizer=False),
        CompilePlan(loss=True, optimizer=True),
        CompilePlan(loss=True, optimizer=True, mode="max-autotune-no-cudagraphs"),
    ]
    if device.type == "cuda":
        plans.append(CompilePlan(loss=True, optimizer=True, mode="reduce-overhead"))
    return [plan for plan in plans if plan != default]


def samplegrad_loop(
    data: MNIST,
    device: torch.device,
    model_name: str,
    compiled: bool | CompilePlan,
    seeds: int = 1,
) -> Contender:
    """``samplegrad.lab.training.vae.training_step``, eager, with ``compile=True`` (``--compile``)
    or with a :class:`CompilePlan`; with ``seeds > 1``, that many replicas in one batched step
    (``samplegrad.lab.models.replicated``, one generator per replica), as
    ``samplegrad train vae --seeds`` trains them."""

    def make() -> Callable[[], None]:
        models = [seeded_model(model_name, SEED + s, device) for s in range(seeds)]
        estimator = models[0][1]
        model = models[0][0] if seeds == 1 else replicate([m for m, _ in models])
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        generators = [torch.Generator(device=device).manual_seed(SEED + s) for s in range(seeds)]
        generator = generators[0] if seeds == 1 else ReplicaGenerators(generators)
        step_fn = training_step(
            model, estimator, optimizer, num_samples=1 if model_name == "gaussian" else 2,
            generator=generator, compile=compiled, replicas=seeds,
        )  # fmt: skip
        streams = [
            forever(lambda g=g: (x for x, _ in data.batches(BATCH_SIZE, generator=g)))
            for g in generators
        ]
        total = torch.zeros((), device=device)

        def step() -> None:
            nonlocal total
            x = next(streams[0]) if seeds == 1 else torch.stack([next(s) for s in streams])
            total = total + step_fn(x).sum()

        return step

    name = (
        "samplegrad"
        + ("-compiled" if compiled else "")
        + (f" ({compiled.name})" if isinstance(compiled, CompilePlan) else "")
        + (f"-seeds{seeds}" if seeds > 1 else "")
    )
    what = "DisARM, 2 samples" if model_name == "bernoulli" else "pathwise, 1 sample"
    plan = default_plan(device, model_name) if compiled is True else compiled
    extras = (f", torch.compile of {plan.name}" if plan else "") + (
        f", {seeds} replicas" if seeds > 1 else ""
    )
    note = f"samplegrad.lab.training.vae.training_step ({what}{extras})"
    return Contender(model_name, name, make, note)


# --------------------------------------------------------------------------------------------
# Timing


def measure(contender: Contender, settings: Settings, device: torch.device) -> None:
    """Warm up (timed as ``warmup_seconds``, compilation included), then ``repeats`` blocks
    of ``steps`` steps, each ended by a device synchronisation."""
    try:
        start = time.perf_counter()
        step = contender.make()
        for _ in range(settings.warmup):
            step()
        synchronize(device)
        contender.warmup_seconds = time.perf_counter() - start
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(settings.repeats):
            start = time.perf_counter()
            for _ in range(settings.steps):
                step()
            synchronize(device)
            contender.step_seconds.append((time.perf_counter() - start) / settings.steps)
        if device.type == "cuda":
            contender.peak_bytes = torch.cuda.max_memory_allocated(device)
    except Exception as error:  # a peer or a compile path failing is a result, not a crash
        contender.error = f"{type(error).__name__}: {error}".splitlines()[0]


def gemm_shapes(batch: int = BATCH_SIZE) -> list[tuple[int, int, int]]:
    """The ``(m, k, n)`` matrix products of one Gaussian VAE step: per Linear layer the forward
    product ``(batch, in) @ (in, out)`` and the weight gradient ``(out, batch) @ (batch, in)``,
    and for every layer but the first (the images need no gradient) the input gradient
    ``(batch, out) @ (out, in)``."""
    shapes = []
    for index, (inputs, outputs) in enumerate(LAYERS):
        shapes += [(batch, inputs, outputs), (outputs, batch, inputs)]
        if index:
            shapes.append((batch, outputs, inputs))
    return shapes


def step_flops(batch: int = BATCH_SIZE) -> int:
    """The GEMM FLOPs of one Gaussian VAE step, ``2 m k n`` per product of :func:`gemm_shapes`
    (element-wise work and the optimiser step not counted: a floor)."""
    return sum(2 * m * k * n for m, k, n in gemm_shapes(batch))


def gemm_rate(settings: Settings, device: torch.device) -> float:
    """FLOP/s of the step's products (:func:`gemm_shapes`, float32 on ``device``) run back to
    back as a step runs them: the fastest of ``repeats`` blocks of ``steps`` rounds."""
    generator = torch.Generator(device=device).manual_seed(SEED)
    operands = [
        (
            torch.randn(m, k, device=device, generator=generator),
            torch.randn(k, n, device=device, generator=generator),
        )
        for m, k, n in gemm_shapes()
    ]
    outputs = [a.new_empty(a.shape[0], b.shape[1]) for a, b in operands]

    def products() -> None:
        for (a, b), out in zip(operands, outputs, strict=True):
            torch.mm(a, b, out=out)

    for _ in range(settings.warmup):
        products()
    blocks = []
    for _ in range(settings.repeats):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(settings.steps):
            products()
        synchronize(device)
        blocks.append((time.perf_counter() - start) / settings.steps)
    return step_flops() / min(blocks)


def micro_benchmarks(settings: Settings, device: torch.device) -> list[dict[str, object]]:
    """``benchmarks/overhead.py``'s estimator rows (samplegrad and hand, validation on),
    with tensors made on ``device`` and a synchronisation closing every timed block."""
    import overhead

    def synced_block(step: Callable[[], None], iterations: int) -> float:
        synchronize(device)
        start = time.perf_counter()
        for _ in range(iterations):
            step()
        synchronize(device)
        return (time.perf_counter() - start) / iterations * 1e6

    overhead.time_block = synced_block
    with torch.device(device):
        contenders = [
            c
            for c in overhead.gaussian_contenders() + overhead.bernoulli_contenders()
            if c.contender in ("hand", "samplegrad") and c.validation
        ]
        quick = overhead.Settings(
            warmup=settings.warmup, blocks=settings.micro_blocks,
            iterations=settings.micro_iterations,
        )  # fmt: skip
        overhead.run(contenders, quick)
        return overhead.results(contenders, quick)


# --------------------------------------------------------------------------------------------
# Report


def rows(contenders: list[Contender], floor_epoch: float) -> list[dict[str, object]]:
    """A row per contender; the Gaussian VAE's against the hand loop, the tutorial loop and
    the arithmetic floor, ``floor_epoch`` seconds."""
    per_step = {
        (c.model, c.name): statistics.median(c.step_seconds) for c in contenders if c.step_seconds
    }
    peak = {(c.model, c.name): c.peak_bytes for c in contenders}
    table = []
    for c in contenders:
        seconds = per_step.get((c.model, c.name))
        epoch = None if seconds is None else seconds * STEPS_PER_EPOCH
        hand_epoch = per_step.get(("gaussian", "hand"))
        tutorial_epoch = per_step.get(("gaussian", "tutorial"))
        hand_peak = peak.get(("gaussian", "hand"))
        table.append(
            {
                "model": c.model,
                "contender": c.name,
                "epoch_seconds": None if epoch is None else round(epoch, 4),
                "ms_per_step": None if seconds is None else round(seconds * 1e3, 3),
                "ratio_to_hand": (
                    None
                    if seconds is None or c.model != "gaussian" or not hand_epoch
                    else round(seconds / hand_epoch, 3)
                ),
                "ratio_to_floor": (
                    None
                    if epoch is None or c.model != "gaussian"
                    else round(epoch / floor_epoch, 2)
                ),
                "speedup_over_tutorial": (
                    None
                    if seconds is None or c.model != "gaussian" or not tutorial_epoch
                    else round(tutorial_epoch / seconds, 2)
                ),
                "warmup_seconds": round(c.warmup_seconds, 2),
                "peak_memory_mb": None if c.peak_bytes is None else round(c.peak_bytes / 2**20, 1),
                "peak_memory_ratio_to_hand": (
                    None
                    if c.peak_bytes is None or c.model != "gaussian" or not hand_peak
                    else round(c.peak_bytes / hand_peak, 3)
                ),
                "note": c.error or c.note,
            }
        )
    return table


def targets(table: list[dict[str, object]], device: torch.device) -> list[str]:
    """Issue 8's targets, each with the measured value and met / not met."""
    epoch = {(r["model"], r["contender"]): r["epoch_seconds"] for r in table}
    lines = []

    def check(text: str, value: float | None, bound: float, lower_is_better: bool = True) -> None:
        if value is None:
            lines.append(f"{text}: not measured")
            return
        met = value <= bound if lower_is_better else value >= bound
        lines.append(f"{text}: {value:.3g} (target {bound:g}): {'met' if met else 'NOT met'}")

    compiled = epoch.get(("gaussian", "samplegrad-compiled"))
    hand_epoch = epoch.get(("gaussian", "hand"))
    for model in ("gaussian", "bernoulli"):
        one, many = epoch.get((model, "samplegrad")), epoch.get((model, f"samplegrad-seeds{SEEDS}"))
        if one and many:
            check(f"{model} VAE: {SEEDS} seeds / one seed, time per epoch", many / one, 2.0)
        with_compile = epoch.get((model, "samplegrad-compiled"))
        if one and with_compile:
            check(f"{model} VAE: --compile epoch / eager epoch", with_compile / one, 1.0)
    if device.type == "cuda":
        check("Gaussian VAE epoch, compiled samplegrad, s", compiled, 0.05)
        tutorial_epoch = epoch.get(("gaussian", "tutorial"))
        graphed = epoch.get(("gaussian", "hand-cuda-graph"))
        if compiled and tutorial_epoch:
            check("speed-up over the tutorial loop", tutorial_epoch / compiled, 100, False)
        if compiled and graphed:
            check("speed-up over the hand CUDA-graphed loop", graphed / compiled, 4, False)
        memory = [r for r in table if r["contender"] == "samplegrad" and r["model"] == "gaussian"]
        if memory:
            check("peak memory, samplegrad / hand", memory[0]["peak_memory_ratio_to_hand"], 1.2)
    elif compiled and hand_epoch:
        check("CPU: compiled samplegrad epoch / hand eager epoch", compiled / hand_epoch, 0.85)
    return lines


def markdown(report: dict[str, object]) -> str:
    lines = [
        f"# One device, one run: VAE epochs and estimator micro-benchmarks ({report['device']})",
        "",
        f"Command: `{report['command']}`. {report['machine']}. {report['date']}.",
        f"Epoch = {STEPS_PER_EPOCH} steps of batch {BATCH_SIZE}: seconds per step (median of "
        f"{report['settings']['repeats']} blocks of {report['settings']['steps']} steps, after "
        f"{report['settings']['warmup']} warm-up steps) x {STEPS_PER_EPOCH}.",
        "",
        f"Arithmetic floor: {report['floor']['step_gflop']} GFLOP of matrix products per Gaussian "
        f"VAE step at {report['floor']['gemm_gflops']} GFLOP/s (the same products timed in this "
        f"run) = {report['floor']['epoch_seconds']} s per epoch; x floor = epoch / floor.",
        "",
        "| model | contender | s / epoch | ms / step | ratio to hand | x floor "
        "| speed-up over tutorial | warm-up s | peak MB | memory / hand | note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["rows"]:
        cells = [
            r["model"], r["contender"], r["epoch_seconds"], r["ms_per_step"], r["ratio_to_hand"],
            r["ratio_to_floor"], r["speedup_over_tutorial"], r["warmup_seconds"],
            r["peak_memory_mb"], r["peak_memory_ratio_to_hand"], str(r["note"]).replace("|", "/"),
        ]  # fmt: skip
        lines.append("| " + " | ".join("—" if c is None else str(c) for c in cells) + " |")
    lines += ["", "Targets:", ""] + [f"- {line}" for line in report["targets"]]
    lines += [
        "",
        "Estimator micro-benchmarks (benchmarks/overhead.py's problems, on this device):",
        "",
        "| problem | estimator | contender | µs / estimate | ratio to hand |",
        "|---|---|---|---:|---:|",
    ]
    for r in report["micro"]:
        lines.append(
            f"| {r['problem']} | {r['estimator']} | {r['contender']} | {r['us_per_estimate']} "
            f"| {r['ratio_to_hand']} |"
        )
    for note in report["notes"]:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="MNIST folder (default: $SAMPLEGRAD_DATA, ...)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--quick", action="store_true", help="a smoke test, not a measurement")
    parser.add_argument(
        "--no-compile", dest="compile", action="store_false", help="skip the compiled rows"
    )
    parser.add_argument(
        "--no-compile-plans",
        dest="plans",
        action="store_false",
        help="of the compiled rows keep only --compile's own (hand-compiled, samplegrad-compiled)",
    )
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads()))
    notes: list[str] = []
    if device.type == "cpu":
        notes.append(
            "No CUDA device: this run measured the CPU with the same code (the CUDA-graph row "
            "is skipped; peak memory is CUDA-only)."
        )
    started = time.perf_counter()
    data = load_mnist(args.data_dir, split="train", validation_size=0, device=device)
    images = data.images
    contenders = [tutorial(images, device), hand(images, device)]
    if args.compile:
        contenders.append(hand(images, device, compiled=True))
    if device.type == "cuda":
        contenders.append(hand_cuda_graph(images, device))
    peer = pyro_loop(images, device)
    if isinstance(peer, str):
        notes.append(peer)
    else:
        contenders.append(peer)
    for model_name in ("gaussian", "bernoulli"):
        variants: list[bool | CompilePlan] = [False]
        if args.compile:
            default = default_plan(device, model_name)
            variants += [True, *(compile_plans(device, default) if args.plans else [])]
        for compiled in variants:
            contenders.append(samplegrad_loop(data, device, model_name, compiled))
        contenders.append(samplegrad_loop(data, device, model_name, False, SEEDS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # compile-time chatter
        for contender in contenders:
            measure(contender, settings, device)
            result = contender.error or f"{statistics.median(contender.step_seconds) * 1e3:.2f} ms"
            print(f"{contender.model:9} {contender.name:20} {result}", flush=True)
        try:
            micro = micro_benchmarks(settings, device)
        except Exception as error:  # e.g. a CPU-only piece of overhead.py on a GPU
            micro = []
            notes.append(f"estimator micro-benchmarks failed: {type(error).__name__}: {error}")
    rate = gemm_rate(settings, device)
    floor_epoch = step_flops() * STEPS_PER_EPOCH / rate
    table = rows(contenders, floor_epoch)
    name = "gpu" if device.type == "cuda" else "gpu_cpu"
    device_text = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {cpu_model()}"
    )
    report = {
        "device": device_text,
        "command": "python benchmarks/gpu.py" + " ".join(["", *(argv or sys.argv[1:])]),
        "machine": (
            f"samplegrad {samplegrad.__version__}, torch {torch.__version__}, Python "
            f"{platform.python_version()}, {torch.get_num_threads()} CPU threads, source "
            f"{source_revision()}"
        ),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "settings": settings.__dict__,
        "floor": {
            "step_gflop": round(step_flops() / 1e9, 4),
            "gemm_gflops": round(rate / 1e9, 1),
            "epoch_seconds": round(floor_epoch, 4),
        },
        "rows": table,
        "targets": targets(table, device),
        "micro": micro,
        "notes": notes,
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (args.out / f"{name}.md").write_text(text)
    print(text)
    print(f"{report['seconds']} s in all; wrote {args.out / name}.json and .md")
    return report


if __name__ == "__main__":
    main()
