"""Drawing samples with an optional ``torch.Generator``.

``torch.distributions`` samples from the global random state only. samplegrad takes a
``generator`` argument everywhere, so the common families draw their noise directly from it
(the same formulas ``torch.distributions`` uses), and every other family is sampled inside
``torch.random.fork_rng`` from a seed taken from the generator: the same generator state gives
the same samples, and the global random state is left untouched.
"""

from __future__ import annotations

import math

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


def draw(
    dist: Distribution,
    sample_shape: torch.Size,
    generator: torch.Generator | None,
    *,
    reparameterized: bool,
) -> Tensor:
    """``dist.rsample(sample_shape)`` or ``dist.sample(sample_shape)``, from ``generator``.

    With ``reparameterized=False`` the result carries no gradient.
    """
    if generator is None:
        return dist.rsample(sample_shape) if reparameterized else dist.sample(sample_shape)
    if reparameterized:
        return _rsample(dist, sample_shape, generator)
    with torch.no_grad():
        return _sample(dist, sample_shape, generator)


def _rsample(dist: Distribution, sample_shape: torch.Size, generator: torch.Generator) -> Tensor:
    if isinstance(dist, Independent):
        return _rsample(dist.base_dist, sample_shape, generator)
    if type(dist) is Normal:
        noise = standard_normal(dist._extended_shape(sample_shape), dist.loc, generator)
        return dist.loc + dist.scale * noise
    return _draw_forked(dist, sample_shape, generator, reparameterized=True)


def _sample(dist: Distribution, sample_shape: torch.Size, generator: torch.Generator) -> Tensor:
    if isinstance(dist, Independent):
        return _sample(dist.base_dist, sample_shape, generator)
    if type(dist) is Normal:
        return _rsample(dist, sample_shape, generator)
    if type(dist) is Bernoulli:
        probs = dist.probs.expand(dist._extended_shape(sample_shape))
        return torch.bernoulli(probs, generator=generator)
    if type(dist) is Categorical:
        return categorical_indices(dist.probs, sample_shape, generator)
    if type(dist) is OneHotCategorical:
        probs = dist.probs
        indices = categorical_indices(probs, sample_shape, generator)
        return torch.nn.functional.one_hot(indices, probs.shape[-1]).to(probs.dtype)
    return _draw_forked(dist, sample_shape, generator, reparameterized=False)


def categorical_indices(
    probs: Tensor, sample_shape: tuple[int, ...], generator: torch.Generator | None
) -> Tensor:
    """Category indices of shape ``(*sample_shape, *probs.shape[:-1])``, as ``Categorical``."""
    num_categories = probs.shape[-1]
    probs_2d = probs.reshape(-1, num_categories)
    indices = torch.multinomial(probs_2d, math.prod(sample_shape), True, generator=generator).T
    return indices.reshape(*sample_shape, *probs.shape[:-1])


def standard_normal(shape: torch.Size, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """N(0, 1) noise of ``shape`` on ``like``'s device and dtype."""
    return torch.randn(shape, generator=generator, dtype=like.dtype, device=like.device)


def open_uniform(shape: torch.Size, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Uniform noise on the *open* interval (0, 1), so ``log(u)`` and ``log1p(-u)`` are finite.

    Low-precision dtypes (float16, bfloat16) have too few values near 0 and 1, so the noise is
    drawn in float32 and cast by the caller after it has been transformed.
    """
    dtype = like.dtype if torch.finfo(like.dtype).bits >= 32 else torch.float32
    u = torch.rand(shape, generator=generator, dtype=dtype, device=like.device)
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
