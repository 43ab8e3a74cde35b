"""The VAE sampling layer: ``z = mean + exp(log_var / 2) * eps``, ``eps ~ N(0, I)``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from samplegrad._internal.sampling import standard_normal


def check_layer_num_samples(num_samples: int | None) -> int | None:
    """A layer's ``num_samples``: ``None`` (one sample, no new dimension) or an int >= 1."""
    if num_samples is not None and (
        isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1
    ):
        raise ValueError(f"num_samples must be None or an int >= 1, got {num_samples!r}")
    return num_samples


def sample_shape_of(num_samples: int | None) -> tuple[int, ...]:
    """The leading sample dimensions a layer adds: none, or ``(num_samples,)``."""
    return () if num_samples is None else (num_samples,)


class Sampling(nn.Module):
    """The Keras VAE "sampling layer", pathwise: ``Sampling()(mean, log_var) -> z``.

    The reparameterization trick (Kingma & Welling 2014): ``z`` is a differentiable function of
    ``mean`` and ``log_var`` and of noise that has no parameters, so gradients reach the encoder.

    Args:
        num_samples: ``None`` returns one sample of ``mean``'s shape; an ``int`` ``S`` returns
            ``S`` samples stacked in a new leading dimension, shape ``(S, *mean.shape)``.
    """

    def __init__(self, num_samples: int | None = None) -> None:
        super().__init__()
        self.num_samples = check_layer_num_samples(num_samples)

    def forward(
        self, mean: Tensor, log_var: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        if mean.shape != log_var.shape:
            raise ValueError(
                f"mean and log_var must have the same shape, got {tuple(mean.shape)} and "
                f"{tuple(log_var.shape)}; the encoder should output both per latent dimension"
            )
        shape = torch.Size((*sample_shape_of(self.num_samples), *mean.shape))
        noise = standard_normal(shape, mean, generator)
        return mean + torch.exp(0.5 * log_var) * noise

    def extra_repr(self) -> str:
        return f"num_samples={self.num_samples}"
