"""Drawing samples with an optional ``torch.Generator``.

``torch.distributions`` samples from the global random state only. samplegrad takes a
``generator`` argument everywhere, so the common families draw their noise directly from it
(the same formulas ``torch.distributions`` uses), and every other family is sampled inside
``torch.random.fork_rng`` from a seed taken from the generator: the same generator state gives
the same samples, and the global random state is left untouched.

**Sharded draws** (:func:`sharded`, for data-parallel training): inside the context, noise that
:func:`standard_normal` and :func:`open_uniform` draw from the named generator is drawn for the
*whole* batch and this process's rows are kept, so the processes together use exactly the noise
one process would draw for the whole batch (the generator advances identically everywhere).
Bernoulli samples are drawn there as ``u < p`` from the whole batch's uniforms, which on a CPU
is exactly ``torch.bernoulli``'s draw (one uniform per element, in order). Draws that cannot be
sharded that way (categorical samples, which depend on the probabilities of rows this process
does not hold, and the forked families) come instead from a generator of this process's own,
seeded from the shared one and the rows' position.

**Replicas.** Where a batch stacks ``R`` independent replicas of a model (``samplegrad train
vae --seeds R``), a :class:`ReplicaGenerators` holds one generator per replica. The replica
dimension is the *first* dimension of the distribution's parameters (its batch shape is
``(R, B, ...)``), so in a draw of ``(*sample_shape, R, B, ...)`` it follows the sample
dimensions. Each replica's slice is drawn from its own generator with the shape a lone
replica would draw, so replica ``r`` gets exactly the noise of a single run with generator
``r``. Families sampled through the global state (:func:`_draw_forked`) are not supported.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.distributions import (
    Bernoulli,
    Categorical,
    Distribution,
    Independent,
    Normal,
    OneHotCategorical,
)

_SEED_BOUND = 2**62


@dataclasses.dataclass
class _Shard:
    """Rows ``start:start + rows`` of a batch of ``total`` rows, drawn from ``generator``."""

    generator: torch.Generator
    start: int
    rows: int
    total: int
    own: torch.Generator | None = None  # for draws that cannot be sharded, made when needed


_SHARD: contextvars.ContextVar[_Shard | None] = contextvars.ContextVar("shard", default=None)


@contextlib.contextmanager
def sharded(generator: torch.Generator, start: int, rows: int, total: int) -> Iterator[None]:
    """While open, draws from ``generator`` are for rows ``start:start + rows`` of a batch of
    ``total`` (see the module docstring). The batch dimension of a draw of ``shape`` for
    parameters ``like`` is the first of ``like``'s: ``shape`` is ``(*sample_shape, *like.shape)``.
    """
    token = _SHARD.set(_Shard(generator, start, rows, total))
    try:
        yield
    finally:
        _SHARD.reset(token)


def _sharded_draw(
    make: Callable[[torch.Size], Tensor],
    shape: torch.Size,
    like: Tensor,
    generator: torch.Generator | None,
) -> Tensor:
    """``make(shape)``, or inside :func:`sharded` for its generator, this process's rows of
    ``make`` for the whole batch."""
    shard = _SHARD.get()
    if shard is None or generator is not shard.generator:
        return make(shape)
    dim = len(shape) - like.dim()
    if like.dim() == 0 or shape[dim] != shard.rows:
        raise RuntimeError(
            f"cannot shard a draw of shape {tuple(shape)} for parameters of shape "
            f"{tuple(like.shape)}: expected the batch dimension to have {shard.rows} rows"
        )
    whole = torch.Size((*shape[:dim], shard.total, *shape[dim + 1 :]))
    return make(whole).narrow(dim, shard.start, shard.rows).contiguous()


def unsharded(generator: torch.Generator | None) -> torch.Generator | None:
    """The generator for a draw that cannot be sharded: inside :func:`sharded` for
    ``generator``, this process's own (seeded on first use from ``generator``, which thus
    advances identically in every process, and from the shard's first row); else
    ``generator``."""
    shard = _SHARD.get()
    if shard is None or generator is not shard.generator:
        return generator
    if shard.own is None:
        seed = int(torch.randint(_SEED_BOUND, (), generator=generator, device=generator.device))
        own_seed = int(np.random.SeedSequence([seed, shard.start]).generate_state(1, np.uint64)[0])
        shard.own = torch.Generator(device=generator.device).manual_seed(own_seed >> 1)
    return shard.own


class ReplicaGenerators:
    """One ``torch.Generator`` per replica, all on one device (see the module docstring).

    ``get_state``/``set_state`` stack and unstack the generators' states, so a checkpoint
    stores them as one tensor, as it would a single generator's.
    """

    def __init__(self, generators: Sequence[torch.Generator]) -> None:
        self.generators = tuple(generators)
        if not self.generators or len({str(g.device) for g in self.generators}) != 1:
            raise ValueError("ReplicaGenerators needs at least one generator, all on one device")
        self.device = self.generators[0].device

    def __len__(self) -> int:
        return len(self.generators)

    def __iter__(self) -> Iterator[torch.Generator]:
        return iter(self.generators)

    def get_state(self) -> Tensor:
        return torch.stack([g.get_state() for g in self.generators])

    def set_state(self, state: Tensor) -> None:
        if len(state) != len(self.generators):
            raise ValueError(f"state of {len(state)} generators for {len(self)} replicas")
        for generator, row in zip(self.generators, state, strict=True):
            generator.set_state(row.clone())


Generator = torch.Generator | ReplicaGenerators
"""What the sampling functions accept besides ``None``."""


def _per_replica(
    generators: ReplicaGenerators, axis: int, sample: Callable[[int, torch.Generator], Tensor]
) -> Tensor:
    """``sample(r, generator_r)`` for every replica, stacked along ``axis``."""
    return torch.stack([sample(r, g) for r, g in enumerate(generators)], axis)


def _without(shape: torch.Size, axis: int) -> torch.Size:
    return torch.Size((*shape[:axis], *shape[axis + 1 :]))


def draw(
    dist: Distribution,
    sample_shape: torch.Size,
    generator: Generator | None,
    *,
    reparameterized: bool,
) -> Tensor:
    """``dist.rsample(sample_shape)`` or ``dist.sample(sample_shape)``, from ``generator``.

    With ``reparameterized=False`` the result carries no gradient. A family that torch cannot
    sample in the parameters' dtype (float16 or bfloat16 ``Gamma``, ``Beta``, ``Dirichlet``,
    ``Binomial`` on a CPU) raises a ``TypeError`` that says which dtypes to use.
    """
    try:
        if generator is None:
            return dist.rsample(sample_shape) if reparameterized else dist.sample(sample_shape)
        if reparameterized:
            return _rsample(dist, sample_shape, generator)
        with torch.no_grad():
            return _sample(dist, sample_shape, generator)
    except NotImplementedError as error:
        if "not implemented for '" not in str(error):  # torch's words for a missing dtype kernel
            raise
        raise TypeError(
            f"{type(dist).__name__} samples only in float32 and float64 on this device (torch: "
            f"{error}); build it from float32 parameters (e.g. params.float()), and cast inside "
            "f if the rest of the model is in lower precision"
        ) from error


def _rsample(dist: Distribution, sample_shape: torch.Size, generator: Generator) -> Tensor:
    if isinstance(dist, Independent):
        return _rsample(dist.base_dist, sample_shape, generator)
    if type(dist) is Normal:
        noise = standard_normal(dist._extended_shape(sample_shape), dist.loc, generator)
        return dist.loc + dist.scale * noise
    return _draw_forked(dist, sample_shape, generator, reparameterized=True)


def _sample(dist: Distribution, sample_shape: torch.Size, generator: Generator) -> Tensor:
    if isinstance(dist, Independent):
        return _sample(dist.base_dist, sample_shape, generator)
    if type(dist) is Normal:
        return _rsample(dist, sample_shape, generator)
    if type(dist) is Bernoulli:
        return bernoulli(dist.probs, tuple(sample_shape), generator)
    if type(dist) is Categorical:
        return categorical_indices(dist.probs, sample_shape, generator)
    if type(dist) is OneHotCategorical:
        probs = dist.probs
        indices = categorical_indices(probs, sample_shape, generator)
        return torch.nn.functional.one_hot(indices, probs.shape[-1]).to(probs.dtype)
    return _draw_forked(dist, sample_shape, generator, reparameterized=False)


def bernoulli(probs: Tensor, sample_shape: tuple[int, ...], generator: Generator | None) -> Tensor:
    """Bernoulli(``probs``) samples of shape ``(*sample_shape, *probs.shape)``, no gradient."""
    if isinstance(generator, ReplicaGenerators):
        return _per_replica(
            generator, len(sample_shape), lambda r, g: bernoulli(probs[r], sample_shape, g)
        )
    shape = torch.Size((*sample_shape, *probs.shape))
    shard = _SHARD.get()
    if shard is None or generator is not shard.generator:
        return torch.bernoulli(probs.detach().expand(shape), generator=generator)

    def make(size: torch.Size) -> Tensor:
        return torch.rand(size, generator=generator, dtype=probs.dtype, device=probs.device)

    # torch's CPU kernel draws one such uniform per element, in order, and compares it with p.
    return (_sharded_draw(make, shape, probs, generator) < probs.detach()).to(probs.dtype)


def categorical_indices(
    probs: Tensor, sample_shape: tuple[int, ...], generator: Generator | None
) -> Tensor:
    """Category indices of shape ``(*sample_shape, *probs.shape[:-1])``, as ``Categorical``."""
    if isinstance(generator, ReplicaGenerators):
        return _per_replica(
            generator,
            len(sample_shape),
            lambda r, g: categorical_indices(probs[r], sample_shape, g),
        )
    num_categories = probs.shape[-1]
    probs_2d = probs.reshape(-1, num_categories)
    draws = math.prod(sample_shape)
    indices = torch.multinomial(probs_2d, draws, True, generator=unsharded(generator)).T
    return indices.reshape((*sample_shape, *probs.shape[:-1]))


def standard_normal(shape: torch.Size, like: Tensor, generator: Generator | None) -> Tensor:
    """N(0, 1) noise of ``shape`` (ending in ``like.shape``) on ``like``'s device and dtype."""
    if isinstance(generator, ReplicaGenerators):
        axis = len(shape) - like.dim()
        return _per_replica(
            generator, axis, lambda r, g: standard_normal(_without(shape, axis), like[r], g)
        )

    def make(size: torch.Size) -> Tensor:
        return torch.randn(size, generator=generator, dtype=like.dtype, device=like.device)

    return _sharded_draw(make, shape, like, generator)


def open_uniform(shape: torch.Size, like: Tensor, generator: Generator | None) -> Tensor:
    """Uniform noise on the *open* interval (0, 1), so ``log(u)`` and ``log1p(-u)`` are finite.

    ``shape`` ends in ``like.shape``. Low-precision dtypes (float16, bfloat16) have too few
    values near 0 and 1, so the noise is drawn in float32 and cast by the caller after it has
    been transformed.
    """
    if isinstance(generator, ReplicaGenerators):
        axis = len(shape) - like.dim()
        return _per_replica(
            generator, axis, lambda r, g: open_uniform(_without(shape, axis), like[r], g)
        )
    dtype = like.dtype if torch.finfo(like.dtype).bits >= 32 else torch.float32

    def make(size: torch.Size) -> Tensor:
        return torch.rand(size, generator=generator, dtype=dtype, device=like.device)

    u = _sharded_draw(make, shape, like, generator)
    finfo = torch.finfo(dtype)
    return u.clamp(min=finfo.tiny, max=1.0 - finfo.eps)


def _draw_forked(
    dist: Distribution,
    sample_shape: torch.Size,
    generator: torch.Generator,
    *,
    reparameterized: bool,
) -> Tensor:
    """Any other family: sample from the global RNG, seeded from ``generator`` and restored."""
    if isinstance(generator, ReplicaGenerators):
        raise TypeError(
            f"{type(dist).__name__} is sampled through the global random state, which has no "
            "per-replica generators; replicated models support Normal, Bernoulli and "
            "(one-hot) categorical latents"
        )
    generator = unsharded(generator)
    seed = int(torch.randint(_SEED_BOUND, (), generator=generator, device=generator.device))
    device = generator.device
    fork_devices = (
        [device.index if device.index is not None else 0] if device.type == "cuda" else []
    )
    with torch.random.fork_rng(devices=fork_devices, device_type=device.type):
        if device.type == "cuda":
            torch.cuda.default_generators[fork_devices[0]].manual_seed(seed)
        else:
            torch.random.default_generator.manual_seed(seed)
        return dist.rsample(sample_shape) if reparameterized else dist.sample(sample_shape)
