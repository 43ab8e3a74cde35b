"""Bayesian layers: a factorized Gaussian posterior over the weights, sampled in ``forward``.

Every layer keeps a posterior ``q(W) = prod_ij N(W_ij; mu_ij, sigma_ij^2)`` with
``sigma = softplus(rho)`` (so any real ``rho`` is a valid scale), the same for the bias, and a
prior ``p(W) = prod_ij N(W_ij; 0, s^2)`` with ``s = prior_scale`` (1 by default). The forward
pass returns a tensor only; :meth:`BayesianLayer.kl` is ``KL(q || p)`` in closed form,

    KL = sum_ij [ log(s / sigma_ij) + (sigma_ij^2 + mu_ij^2) / (2 s^2) - 1/2 ],

and :func:`kl_divergence` sums it over every Bayesian layer of a model. Training maximises the
ELBO ``E_q[log p(D | W)] - KL(q || p)``; per training example, with a mini-batch estimate of the
likelihood, that is ``mean NLL + KL / N_train`` (Blundell et al. 2015, "Weight uncertainty in
neural networks").

How the weights are sampled is what differs, and it decides the variance of the gradient:

- **naive** (:class:`BayesLinear`, :class:`BayesConv2d`): one ``W = mu + sigma * eps`` per
  forward call, shared by the whole mini-batch. The examples' gradients are then correlated
  through the one ``eps``, and the variance of the gradient does not fall with the batch size.
- **Flipout** (:class:`FlipoutLinear`, :class:`FlipoutConv2d`; Wen et al. 2018, "Flipout:
  efficient pseudo-independent weight perturbations on mini-batches", eq. 3-4): one shared
  perturbation ``dW = sigma * eps`` (and ``db``), decorrelated per example ``n`` by random
  signs ``r_in[n]`` (per input feature or channel) and ``r_out[n]`` (per output feature or
  channel), each +-1 with probability 1/2:

      y_n = mu x_n + b_mu + r_out[n] * (dW (x_n * r_in[n]) + db),

  i.e. example ``n`` sees ``W_n = mu + dW * (r_out[n] r_in[n]^T)``, ``b_n = b_mu + db *
  r_out[n]``. Only the zero-mean part is flipped, and since ``dW`` is symmetric, each ``W_n``
  is an exact posterior sample; different examples' perturbations are pseudo-independent, so
  the variance falls roughly as ``1 / batch``. It costs a second matrix product (convolution).
- **local reparameterization** (:class:`LocalReparamLinear`, :class:`LocalReparamConv2d`;
  Kingma, Salimans & Welling 2015, "Variational dropout and the local reparameterization
  trick"): the pre-activations of a Gaussian weight are Gaussian, so they are sampled
  directly, independently per example (and, for convolutions, per output position):

      y ~ N(x mu^T + b_mu,  x^2 (sigma^2)^T + sigma_b^2),   y = mean + sqrt(var) * zeta.

  For a linear layer this is exactly the distribution of ``x W_n^T + b_n`` with independent
  ``W_n ~ q`` per example. For a convolution the marginal of each output is exact, but the
  outputs of one example are treated as independent where a sampled kernel would correlate
  them (as in Kingma et al. and Molchanov et al. 2017).

**Noise.** ``forward(x, generator=None, *, noise=None)`` draws its noise from ``generator``
(the global random state when ``None``) on the layer's device and dtype, in the order of the
fields of the layer's noise tuple; :meth:`BayesianLayer.sample_noise` draws the same noise
explicitly (with leading ``sample_shape`` dimensions for many independent draws, e.g. for
``torch.func.vmap``), and ``forward(x, noise=noise)`` uses given noise: the same noise gives
the same output.

**Initialisation.** The posterior means are initialised like ``nn.Linear`` / ``nn.Conv2d``
(Kaiming-uniform weights, bias uniform in ``+-1/sqrt(fan_in)``), and every posterior scale is
``init_scale`` (default ``1e-3``: ``rho = softplus^-1(1e-3)``), so a new layer starts close to
its deterministic counterpart and the data decide how much uncertainty to add.
"""

from __future__ import annotations

import copy
import enum
import math
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from samplegrad._internal.sampling import standard_normal

DEFAULT_INIT_SCALE = 1e-3


class Layer(enum.StrEnum):
    """How a Bayesian layer samples its weights (see the module docstring)."""

    FLIPOUT = "flipout"
    LOCAL_REPARAM = "local-reparam"
    NAIVE = "naive"


class WeightNoise(NamedTuple):
    """Noise of the naive layers: ``eps`` of the weight and of the bias (``None`` without)."""

    weight: Tensor
    bias: Tensor | None


class FlipoutNoise(NamedTuple):
    """Noise of the Flipout layers: the shared ``eps`` of the weight and bias, and the +-1
    signs per example of the inputs (``r_in``) and outputs (``r_out``)."""

    weight: Tensor
    bias: Tensor | None
    sign_in: Tensor
    sign_out: Tensor


class OutputNoise(NamedTuple):
    """Noise of the local-reparameterization layers: ``zeta``, one per output value."""

    output: Tensor


Noise = WeightNoise | FlipoutNoise | OutputNoise


def _check_scale(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number > 0, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0 (a standard deviation), got {value}")
    return float(value)


def _check_size(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def _inverse_softplus(y: float) -> float:
    """``rho`` with ``softplus(rho) = y``, for ``y > 0``: ``y + log(1 - exp(-y))``."""
    return y + math.log(-math.expm1(-y))


def _rademacher(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Independent signs, +-1 with probability 1/2 each, on ``like``'s device and dtype."""
    bits = torch.randint(0, 2, shape, generator=generator, device=like.device, dtype=like.dtype)
    return bits * 2 - 1


class BayesianLayer(nn.Module):
    """The posterior, prior, KL and noise handling shared by the Bayesian layers.

    Subclasses fix the operation (:meth:`_op`, linear or convolution, and the shape of its
    signs) and the sampling (naive, Flipout, local reparameterization).

    Attributes:
        weight_mu, weight_rho: posterior mean and pre-softplus scale of the weight, the shape
            of the deterministic layer's ``weight``.
        bias_mu, bias_rho: the same for the bias, or ``None`` with ``bias=False``.
        prior_scale: the prior's standard deviation ``s`` of ``N(0, s^2)``.
        init_scale: the posterior standard deviation set by :meth:`reset_parameters`.
    """

    layer: Layer

    def __init__(
        self,
        weight_shape: tuple[int, ...],
        bias: bool,
        *,
        prior_scale: float,
        init_scale: float,
        device: torch.device | str | None,
        dtype: torch.dtype | None,
    ) -> None:
        super().__init__()
        self.prior_scale = _check_scale("prior_scale", prior_scale)
        self.init_scale = _check_scale("init_scale", init_scale)
        factory = {"device": device, "dtype": dtype}
        self.weight_mu = nn.Parameter(torch.empty(weight_shape, **factory))
        self.weight_rho = nn.Parameter(torch.empty(weight_shape, **factory))
        if bias:
            self.bias_mu = nn.Parameter(torch.empty(weight_shape[0], **factory))
            self.bias_rho = nn.Parameter(torch.empty(weight_shape[0], **factory))
        else:
            self.register_parameter("bias_mu", None)
            self.register_parameter("bias_rho", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Means as ``nn.Linear`` / ``nn.Conv2d`` initialise them; scales ``init_scale``."""
        nn.init.kaiming_uniform_(self.weight_mu, a=math.sqrt(5))
        nn.init.constant_(self.weight_rho, _inverse_softplus(self.init_scale))
        if self.bias_mu is not None:
            bound = 1 / math.sqrt(self.weight_mu[0].numel())  # 1 / sqrt(fan_in)
            nn.init.uniform_(self.bias_mu, -bound, bound)
            nn.init.constant_(self.bias_rho, _inverse_softplus(self.init_scale))

    @property
    def weight_sigma(self) -> Tensor:
        """The posterior standard deviations of the weight, ``softplus(weight_rho)``."""
        return F.softplus(self.weight_rho)

    @property
    def bias_sigma(self) -> Tensor | None:
        """The posterior standard deviations of the bias, or ``None``."""
        return None if self.bias_rho is None else F.softplus(self.bias_rho)

    def kl(self) -> Tensor:
        """``KL(q || p)`` of the weight and bias, a scalar (closed form, module docstring)."""
        total = _gaussian_kl(self.weight_mu, self.weight_sigma, self.prior_scale)
        if self.bias_mu is not None:
            total = total + _gaussian_kl(self.bias_mu, self.bias_sigma, self.prior_scale)
        return total

    # The operation --------------------------------------------------------------------------

    def _op(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        raise NotImplementedError

    def _check_input(self, x: Tensor) -> None:
        raise NotImplementedError

    def _channels(self) -> tuple[int, int]:
        """The numbers of input and output features (channels)."""
        raise NotImplementedError

    def _sign_shape(self, x: Tensor, channels: int) -> tuple[int, ...]:
        """Shape of per-example signs over ``channels`` features, broadcasting against ``x``
        (linear: one per feature) or against the output (convolution: one per channel)."""
        raise NotImplementedError

    def _output_shape(self, x: Tensor) -> torch.Size:
        meta = torch.empty_like(self.weight_mu, device="meta")
        return self._op(torch.empty_like(x, device="meta"), meta, None).shape

    # Sampling -------------------------------------------------------------------------------

    noise_type: type[Noise]

    def _noise_shapes(self, x: Tensor) -> tuple[tuple[int, ...] | None, ...]:
        """The shape of each field of the noise for input ``x`` (``None``: no such field)."""
        raise NotImplementedError

    def sample_noise(
        self,
        x: Tensor,
        sample_shape: tuple[int, ...] = (),
        generator: torch.Generator | None = None,
    ) -> Noise:
        """The noise ``forward(x, generator)`` would draw, field after field, with
        ``sample_shape`` leading dimensions for independent draws (for ``torch.func.vmap``
        over them). Sign fields are +-1 with probability 1/2, the others standard normal."""
        self._check_input(x)
        like = self.weight_mu
        fields = []
        for name, shape in zip(self.noise_type._fields, self._noise_shapes(x), strict=True):
            if shape is None:
                fields.append(None)
                continue
            full = (*sample_shape, *shape)
            if name.startswith("sign"):
                fields.append(_rademacher(full, like, generator))
            else:
                fields.append(standard_normal(torch.Size(full), like, generator))
        return self.noise_type(*fields)

    def _forward(self, x: Tensor, noise: Noise) -> Tensor:
        raise NotImplementedError

    def _shared_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
        """The shapes of the weight and of the bias (``None`` without one)."""
        bias = None if self.bias_mu is None else tuple(self.bias_mu.shape)
        return tuple(self.weight_mu.shape), bias

    def forward(
        self, x: Tensor, generator: torch.Generator | None = None, *, noise: Noise | None = None
    ) -> Tensor:
        """One sample of the layer's output for the input ``x``.

        Args:
            x: the input, shaped as for the deterministic layer.
            generator: draws the noise; ``None`` uses the global random state.
            noise: given noise instead (from :meth:`sample_noise` with no ``sample_shape``).
        """
        if noise is None:
            noise = self.sample_noise(x, (), generator)
        else:
            self._check_input(x)
            self._check_noise(x, noise)
        return self._forward(x, noise)

    def _check_noise(self, x: Tensor, noise: Noise) -> None:
        if type(noise) is not self.noise_type:
            raise TypeError(
                f"noise must be a {self.noise_type.__name__} for {type(self).__name__}, got "
                f"{type(noise).__name__}; draw it with layer.sample_noise(x)"
            )
        for name, want, got in zip(noise._fields, self._noise_shapes(x), noise, strict=True):
            shape = None if got is None else tuple(got.shape)
            if shape != want:
                raise ValueError(
                    f"noise.{name} has shape {shape}, expected {want} for an input of shape "
                    f"{tuple(x.shape)}; draw it with layer.sample_noise(x)"
                )

    def extra_repr(self) -> str:
        return f"prior_scale={self.prior_scale:g}, init_scale={self.init_scale:g}"


def _gaussian_kl(mu: Tensor, sigma: Tensor, prior_scale: float) -> Tensor:
    """``sum KL(N(mu, sigma^2) || N(0, prior_scale^2))`` over all entries."""
    ratio = (sigma / prior_scale).pow(2) + (mu / prior_scale).pow(2)
    return (0.5 * ratio - torch.log(sigma / prior_scale) - 0.5).sum()


# --------------------------------------------------------------------------------------------
# Sampling schemes


class _Naive(BayesianLayer):
    layer = Layer.NAIVE
    noise_type = WeightNoise

    def _noise_shapes(self, x: Tensor) -> tuple[tuple[int, ...] | None, ...]:
        return self._shared_shapes()

    def _forward(self, x: Tensor, noise: WeightNoise) -> Tensor:
        weight = self.weight_mu + self.weight_sigma * noise.weight
        bias = None if self.bias_mu is None else self.bias_mu + self.bias_sigma * noise.bias
        return self._op(x, weight, bias)


class _Flipout(BayesianLayer):
    layer = Layer.FLIPOUT
    noise_type = FlipoutNoise

    def _noise_shapes(self, x: Tensor) -> tuple[tuple[int, ...] | None, ...]:
        in_channels, out_channels = self._channels()
        sign_in, sign_out = self._sign_shape(x, in_channels), self._sign_shape(x, out_channels)
        return (*self._shared_shapes(), sign_in, sign_out)

    def _forward(self, x: Tensor, noise: FlipoutNoise) -> Tensor:
        mean = self._op(x, self.weight_mu, self.bias_mu)
        delta_w = self.weight_sigma * noise.weight
        delta_b = None if self.bias_mu is None else self.bias_sigma * noise.bias
        return mean + self._op(x * noise.sign_in, delta_w, delta_b) * noise.sign_out


class _LocalReparam(BayesianLayer):
    layer = Layer.LOCAL_REPARAM
    noise_type = OutputNoise

    def _noise_shapes(self, x: Tensor) -> tuple[tuple[int, ...] | None, ...]:
        return (tuple(self._output_shape(x)),)

    def _forward(self, x: Tensor, noise: OutputNoise) -> Tensor:
        mean = self._op(x, self.weight_mu, self.bias_mu)
        bias_var = None if self.bias_mu is None else self.bias_sigma.pow(2)
        var = self._op(x.pow(2), self.weight_sigma.pow(2), bias_var)
        # An input of zeros (and no bias) has variance 0, whose sqrt has no finite gradient.
        return mean + var.clamp_min(torch.finfo(var.dtype).tiny).sqrt() * noise.output


# --------------------------------------------------------------------------------------------
# Operations


class _Linear(BayesianLayer):
    """``y = x W^T + b`` on inputs ``(*, in_features)``, like ``nn.Linear``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        prior_scale: float = 1.0,
        init_scale: float = DEFAULT_INIT_SCALE,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.in_features = _check_size("in_features", in_features)
        self.out_features = _check_size("out_features", out_features)
        super().__init__(
            (out_features, in_features),
            bias,
            prior_scale=prior_scale,
            init_scale=init_scale,
            device=device,
            dtype=dtype,
        )

    def _op(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return F.linear(x, weight, bias)

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.dim() < 1 or x.shape[-1] != self.in_features:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"{type(self).__name__} expects an input of shape (*, {self.in_features}), got "
                f"{shape}; flatten images with x.flatten(1)"
            )

    def _channels(self) -> tuple[int, int]:
        return self.in_features, self.out_features

    def _sign_shape(self, x: Tensor, channels: int) -> tuple[int, ...]:
        return (*x.shape[:-1], channels)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias_mu is not None}, {super().extra_repr()}"
        )


class _Conv2d(BayesianLayer):
    """A 2-D convolution on inputs ``(N, C_in, H, W)`` or ``(C_in, H, W)``, like
    ``nn.Conv2d`` (zero padding)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: str | int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        *,
        prior_scale: float = 1.0,
        init_scale: float = DEFAULT_INIT_SCALE,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.in_channels = _check_size("in_channels", in_channels)
        self.out_channels = _check_size("out_channels", out_channels)
        self.groups = _check_size("groups", groups)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"in_channels ({in_channels}) and out_channels ({out_channels}) must both be "
                f"divisible by groups ({groups})"
            )
        pair = nn.modules.utils._pair
        self.kernel_size = pair(kernel_size)
        self.stride, self.dilation = pair(stride), pair(dilation)
        self.padding = padding if isinstance(padding, str) else pair(padding)
        super().__init__(
            (out_channels, in_channels // groups, *self.kernel_size),
            bias,
            prior_scale=prior_scale,
            init_scale=init_scale,
            device=device,
            dtype=dtype,
        )

    def _op(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.dim() not in (3, 4) or x.shape[-3] != self.in_channels:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"{type(self).__name__} expects an input of shape (N, {self.in_channels}, H, W) "
                f"or ({self.in_channels}, H, W), got {shape}"
            )

    def _channels(self) -> tuple[int, int]:
        return self.in_channels, self.out_channels

    def _sign_shape(self, x: Tensor, channels: int) -> tuple[int, ...]:
        return (*x.shape[:-3], channels, 1, 1)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
            f"groups={self.groups}, bias={self.bias_mu is not None}, {super().extra_repr()}"
        )


class BayesLinear(_Naive, _Linear):
    """A linear layer with one weight sample per forward call, shared by the batch (naive;
    for comparison: its gradient variance does not fall with the batch size).

    Args: as ``nn.Linear`` (``in_features, out_features, bias=True``), and keyword-only
    ``prior_scale`` (``s`` of the ``N(0, s^2)`` prior), ``init_scale`` (initial posterior
    standard deviation), ``device``, ``dtype``. The math is in the module docstring.
    """


class BayesConv2d(_Naive, _Conv2d):
    """A 2-D convolution with one kernel sample per forward call (naive; see
    :class:`BayesLinear`). Args as ``nn.Conv2d`` plus ``prior_scale`` and ``init_scale``."""


class FlipoutLinear(_Flipout, _Linear):
    """A linear layer with Flipout (Wen et al. 2018): per example,
    ``y_n = mu x_n + b_mu + r_out[n] * ((sigma * eps) (x_n * r_in[n]) + sigma_b * eps_b)``.

    Args: as :class:`BayesLinear`.
    """


class FlipoutConv2d(_Flipout, _Conv2d):
    """A 2-D convolution with Flipout: signs per example and input or output channel,
    ``y_n = conv(x_n, mu) + r_out[n] * conv(x_n * r_in[n], sigma * eps)`` (plus the bias).

    Args: as ``nn.Conv2d`` plus ``prior_scale`` and ``init_scale``.
    """


class LocalReparamLinear(_LocalReparam, _Linear):
    """A linear layer with the local reparameterization trick (Kingma et al. 2015): per
    example ``y ~ N(x mu^T + b_mu, x^2 (sigma^2)^T + sigma_b^2)``.

    Args: as :class:`BayesLinear`.
    """


class LocalReparamConv2d(_LocalReparam, _Conv2d):
    """A 2-D convolution with the local reparameterization trick: each output value
    ``~ N(conv(x, mu) + b_mu, conv(x^2, sigma^2) + sigma_b^2)``, independently.

    Args: as ``nn.Conv2d`` plus ``prior_scale`` and ``init_scale``.
    """


LAYER_CLASSES: dict[Layer, dict[type[nn.Module], type[BayesianLayer]]] = {
    Layer.FLIPOUT: {nn.Linear: FlipoutLinear, nn.Conv2d: FlipoutConv2d},
    Layer.LOCAL_REPARAM: {nn.Linear: LocalReparamLinear, nn.Conv2d: LocalReparamConv2d},
    Layer.NAIVE: {nn.Linear: BayesLinear, nn.Conv2d: BayesConv2d},
}
"""Per sampling scheme, the Bayesian class of each deterministic layer type."""


def check_layer(layer: object) -> Layer:
    """``layer`` as a :class:`Layer`, or a ``ValueError`` naming the choices."""
    try:
        return Layer(layer)
    except ValueError:
        choices = ", ".join(repr(value.value) for value in Layer)
        raise ValueError(f"layer must be one of {choices}, got {layer!r}") from None


def bayesian_layer(
    deterministic: nn.Linear | nn.Conv2d,
    layer: Layer | str = Layer.FLIPOUT,
    *,
    prior_scale: float = 1.0,
    init_scale: float = DEFAULT_INIT_SCALE,
) -> BayesianLayer:
    """The Bayesian version of one ``nn.Linear`` or ``nn.Conv2d``: its weight and bias become
    the posterior means, its device and dtype are kept, every scale is ``init_scale``."""
    classes = LAYER_CLASSES[check_layer(layer)]
    if type(deterministic) not in classes:
        raise TypeError(f"can convert nn.Linear and nn.Conv2d, got {type(deterministic).__name__}")
    weight = deterministic.weight
    factory = {
        "bias": deterministic.bias is not None,
        "prior_scale": prior_scale,
        "init_scale": init_scale,
        "device": weight.device,
        "dtype": weight.dtype,
    }
    if isinstance(deterministic, nn.Linear):
        new = classes[nn.Linear](deterministic.in_features, deterministic.out_features, **factory)
    else:
        if deterministic.padding_mode != "zeros":
            raise ValueError(
                f"can convert nn.Conv2d with padding_mode='zeros' only, got "
                f"{deterministic.padding_mode!r}; pad the input with F.pad before the layer"
            )
        new = classes[nn.Conv2d](
            deterministic.in_channels,
            deterministic.out_channels,
            deterministic.kernel_size,
            deterministic.stride,
            deterministic.padding,
            deterministic.dilation,
            deterministic.groups,
            **factory,
        )
    with torch.no_grad():
        new.weight_mu.copy_(weight)
        if new.bias_mu is not None:
            new.bias_mu.copy_(deterministic.bias)
    return new


def to_bayesian(
    module: nn.Module,
    layer: Layer | str = Layer.FLIPOUT,
    *,
    prior_scale: float = 1.0,
    init_scale: float = DEFAULT_INIT_SCALE,
) -> nn.Module:
    """A copy of ``module`` with every ``nn.Linear`` and ``nn.Conv2d`` made Bayesian.

    Each layer's weight and bias become its posterior means (so the copy starts as a
    perturbation of the trained or initialised network), with posterior scale ``init_scale``
    and a ``N(0, prior_scale^2)`` prior; the original is left alone. Only layers of exactly
    those types are converted (not subclasses such as the projection inside
    ``nn.MultiheadAttention``, whose weight its parent reads directly).

    Args:
        module: the deterministic network (or a single ``nn.Linear`` / ``nn.Conv2d``).
        layer: ``"flipout"`` (default), ``"local-reparam"`` or ``"naive"``.
        prior_scale, init_scale: as for the layers.

    Raises:
        TypeError: ``module`` is not an ``nn.Module``.
        ValueError: it has no ``nn.Linear`` or ``nn.Conv2d``, or an argument is invalid.

    Example::

        net = nn.Sequential(nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 10))
        bnn = sg.nn.to_bayesian(net, "flipout")
        loss = F.cross_entropy(bnn(x), y) + sg.nn.kl_divergence(bnn) / num_train
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
    layer = check_layer(layer)
    _check_scale("prior_scale", prior_scale)
    _check_scale("init_scale", init_scale)
    options = {"prior_scale": prior_scale, "init_scale": init_scale}
    if type(module) in (nn.Linear, nn.Conv2d):
        return bayesian_layer(module, layer, **options)
    converted = copy.deepcopy(module)
    targets = [
        (name, child)
        for name, child in converted.named_modules()
        if type(child) in (nn.Linear, nn.Conv2d)
    ]
    if not targets:
        raise ValueError(
            f"module ({type(module).__name__}) has no nn.Linear or nn.Conv2d layer to make "
            "Bayesian; build the layers of sg.nn (FlipoutLinear, ...) directly instead"
        )
    for name, child in targets:
        converted.set_submodule(name, bayesian_layer(child, layer, **options))
    return converted


def kl_divergence(module: nn.Module) -> Tensor:
    """``KL(q || p)`` summed over every :class:`BayesianLayer` in ``module`` (a scalar).

    Raises ``ValueError`` if ``module`` has none (a deterministic network has no KL term:
    adding 0 silently would hide the mistake).
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
    terms = [child.kl() for child in module.modules() if isinstance(child, BayesianLayer)]
    if not terms:
        raise ValueError(
            f"module ({type(module).__name__}) has no Bayesian layer; make it Bayesian with "
            "sg.nn.to_bayesian(module) or build it from sg.nn.FlipoutLinear and friends"
        )
    return torch.stack(terms).sum()
