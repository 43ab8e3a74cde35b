"""VAEs with discrete latents, trained with any of samplegrad's estimators.

With ``q(z | x)`` a product of Bernoulli or one-hot categorical variables, the negative ELBO
per image is one expectation::

    -ELBO(x) = E_{z ~ q(z | x)}[ f(z) ],   f(z) = -log p(x | z) - log p(z) + log q(z | x),

which :func:`samplegrad.expectation` turns into a surrogate for the chosen estimator. ``f``
closes over the encoder's logits *with* their gradient, so the gradient of the surrogate is
``E[f grad log q] + E[grad f]``, and the part of ``E[grad f]`` that flows through ``log q``
is ``E[grad log q(z)] = 0``: the score-function family (the estimator handles
``f grad log q``), the antithetic estimators and the control variates stay unbiased, and the
pathwise-type relaxations get the pathwise derivative of ``log q`` too. No analytic KL is
split off, so the same ``f`` serves every estimator (the "KL-free" form).

**Relaxed samples.** ``"gumbel"``, ``"rebar"`` and ``"relax"`` evaluate ``f`` (or the control)
at relaxed values in ``[0, 1]`` or on the simplex, so ``log p(z)`` and ``log q(z)`` are
computed with formulas *linear* in ``z`` that agree with the log-mass at discrete ``z``::

    Bernoulli:    log q(z) = sum_d z_d log theta_d + (1 - z_d) log (1 - theta_d)
    categorical:  log q(z) = sum_n sum_k z_nk log_softmax(logits_n)_k

(Maddison et al. 2017 use the Concrete density instead; the linear form keeps ``f`` the same
function for the discrete and the relaxed estimators.)

Models:

- :class:`BernoulliVAE`: the DisARM benchmarks (Dong, Mnih & Tucker 2020, "DisARM: an
  antithetic gradient estimator for binary latent variables", NeurIPS; following Yin & Zhou
  2019 and Tucker et al. 2017): 200 binary latents, a ``"linear"`` or ``"nonlinear"``
  (two hidden layers of 200 LeakyReLU units) encoder and decoder, prior ``Bernoulli(0.5)`` or a
  learnable prior logit per latent; with ``data_mean``, the input and initialisation of the
  paper's code (:class:`Centred`).
- :class:`CategoricalVAE`: the Gumbel-Softmax benchmark (Jang, Gu & Poole 2017, "Categorical
  reparameterization with Gumbel-Softmax", ICLR): 30 ten-way categorical latents, encoder
  784-512-256 (ReLU), decoder 300-256-512-784, uniform prior.
"""

from __future__ import annotations

import itertools
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent, OneHotCategorical
from torch.nn import functional as F

import samplegrad as sg
from samplegrad.estimators import Cost, Estimator, check_num_samples
from samplegrad.generators import Generator, draw
from samplegrad.lab.models._common import (
    VAE,
    LossOutput,
    bernoulli_log_likelihood,
    check_images,
)


def mlp(sizes: list[int], activation: type[nn.Module]) -> nn.Sequential:
    """Linear layers ``sizes[0] -> ... -> sizes[-1]`` with ``activation`` between them."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        if i:
            layers.append(activation())
        layers.append(nn.Linear(fan_in, fan_out))
    return nn.Sequential(*layers)


class Centred(nn.Module):
    """``x - mean``: the encoder's input centred by the training images' mean grey levels.

    With ``DisARM``'s ``--demean_input`` (Dong, Mnih & Tucker 2020, code in
    google-research/disarm, ``binary/networks.py``) the encoder sees ``x - mean`` and the
    decoder ``2 z - 1`` (:class:`Signed`).
    """

    def __init__(self, mean: Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        return x - self.mean


class Signed(nn.Module):
    """``2 z - 1``: binary latents as ``-1, +1`` at the decoder's input (see :class:`Centred`)."""

    def forward(self, z: Tensor) -> Tensor:
        return 2 * z - 1


def logit_of_mean(mean: Tensor, clip: float = 1e-3) -> Tensor:
    """``log(m / (1 - m))`` of ``mean`` clipped to ``[clip, 1 - clip]``: the decoder's output
    bias that starts every pixel at its mean (DisARM's ``--initialize_with_bias``, clip 0.001)."""
    clipped = mean.clamp(clip, 1 - clip)
    return torch.log(clipped) - torch.log1p(-clipped)


class DiscreteVAE(VAE):
    """The shared loss and bounds; subclasses fix the latent family (see the module doc).

    Subclasses set :attr:`latent_shape` and the buffer or parameter ``prior_logits`` of that
    shape, and implement :meth:`distribution` and :meth:`log_mass`.
    """

    latent_family: ClassVar[str]
    """``"bernoulli"`` or ``"categorical"``."""

    prior_logits: Tensor

    def __init__(
        self, encoder: nn.Module, decoder: nn.Module, latent_shape: tuple[int, ...], data_dim: int
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.latent_shape = latent_shape
        self.data_dim = data_dim

    def distribution(self, logits: Tensor) -> Distribution:
        """The latent distribution with these logits (``Independent`` over the latent)."""
        raise NotImplementedError

    @staticmethod
    def log_mass(z: Tensor, logits: Tensor) -> Tensor:
        """``log`` of the mass of ``z`` (discrete or relaxed), linear in ``z``, summed."""
        raise NotImplementedError

    @property
    def support_size(self) -> int:
        """Number of latent configurations (for exact enumeration)."""
        raise NotImplementedError

    def prior(self) -> Distribution:
        """``p(z)``."""
        return self.distribution(self.prior_logits)

    def encode(self, x: Tensor) -> Tensor:
        """The logits of ``q(z | x)``, ``(B, *latent_shape)`` (``(R, B, ...)`` if replicated)."""
        logits = self.encoder(check_images(x, self.data_dim))
        return logits.unflatten(-1, self.latent_shape)

    def posterior(self, x: Tensor) -> Distribution:
        """``q(z | x)``, batch shape ``(B,)``."""
        return self.distribution(self.encode(x))

    def decode(self, z: Tensor) -> Tensor:
        """Bernoulli logits of the pixels, ``(..., data_dim)``, for latents ``(..., *latent)``."""
        return self.decoder(z.flatten(-len(self.latent_shape)))

    def negative_log_weight(self, x: Tensor, q_logits: Tensor) -> Cost:
        """``f(z) = -log p(x | z) - log p(z) + log q(z | x)``, ``(S, B, *latent) -> (S, B)``."""

        def f(z: Tensor) -> Tensor:
            log_likelihood = bernoulli_log_likelihood(self.decode(z), x)
            log_prior = self.log_mass(z, self.prior_logits)
            return -log_likelihood - log_prior + self.log_mass(z, q_logits)

        return f

    def loss(
        self,
        x: Tensor,
        estimator: Estimator,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> LossOutput:
        """The negative ELBO's surrogate ``sg.expectation(f, q, estimator, num_samples)``.

        Args:
            x: ``(B, data_dim)`` binarized images.
            estimator: an :class:`samplegrad.Estimator` instance (see
                :func:`samplegrad.lab.models.make_estimator`); keep it across steps, since some
                carry state, and give its parameters (REBAR, RELAX) to the optimizer too.
            num_samples: samples per image (even for ``ARM`` and ``DisARM``).
            generator: a ``torch.Generator`` for reproducible samples.
        """
        if not isinstance(estimator, Estimator):
            raise TypeError(
                f"estimator must be an sg.Estimator instance, got {type(estimator).__name__}; "
                "build one by name with samplegrad.lab.models.make_estimator(name, model)"
            )
        return self.monte_carlo_loss(x, estimator, num_samples, generator)

    def logit_gradients(
        self,
        x: Tensor,
        estimator: Estimator,
        *,
        num_samples: int = 1,
        generator: Generator | None = None,
    ) -> Tensor:
        """Each image's estimate of the gradient of its negative ELBO w.r.t. its encoder
        logits, ``(B, *latent_shape)`` (``(R, B, ...)`` if replicated): what :meth:`loss`
        back-propagates into the encoder, times ``B``, with the same draws for the same
        ``generator``. Repeating an image ``M`` times in ``x`` gives ``M`` independent
        estimates in one call (their variance: the estimator's, at these parameters)."""
        logits = self.encode(x).detach().requires_grad_()
        q, f = self.distribution(logits), self.negative_log_weight(x, logits)
        surrogate = sg.expectation(f, q, estimator, num_samples, generator)
        (gradient,) = torch.autograd.grad(surrogate.sum(), logits)
        return gradient

    def elbo(
        self, x: Tensor, num_samples: int = 1, generator: torch.Generator | None = None
    ) -> Tensor:
        """The ELBO estimate per image, ``(B,)``, in nats: ``-mean_s f(z_s)``, ``z_s ~ q``."""
        with torch.no_grad():
            logits = self.encode(x)
            shape = torch.Size((check_num_samples(num_samples),))
            z = draw(self.distribution(logits), shape, generator, reparameterized=False)
            return -self.negative_log_weight(x, logits)(z).mean(0)

    def importance_weights(self, x: Tensor) -> tuple[Distribution, Cost]:
        """``q(z | x)`` and ``log w(z) = -f(z)`` for :meth:`iwae_bound`."""
        logits = self.encode(x)
        f = self.negative_log_weight(x, logits)
        return self.distribution(logits), lambda z: -f(z)


class BernoulliVAE(DiscreteVAE):
    """Binary latents (Dong et al. 2020): ``q(z | x) = prod_d Bernoulli(sigmoid(l_d(x)))``.

    Args:
        arch: ``"linear"`` (``data_dim -> latent_dim`` logits, ``latent_dim -> data_dim``) or
            ``"nonlinear"`` (two hidden layers of ``hidden`` LeakyReLU units each way).
        latent_dim: number of binary latents (200 in the paper).
        hidden: units per hidden layer of the nonlinear architecture.
        data_dim: pixels per image.
        learn_prior: learn one prior logit per latent (an ``nn.Parameter``, starting at 0)
            instead of the fixed ``Bernoulli(0.5)``.
        data_mean: the training images' mean grey levels ``(data_dim,)``, for the DisARM
            code's protocol (``--demean_input --initialize_with_bias``): the encoder's input
            centred by it (:class:`Centred`), the decoder's input ``2 z - 1``
            (:class:`Signed`) and its output bias starting at :func:`logit_of_mean`.
            ``None``: plain inputs, PyTorch's default initialisation.
    """

    latent_family = "bernoulli"

    def __init__(
        self,
        arch: Literal["linear", "nonlinear"] = "linear",
        latent_dim: int = 200,
        hidden: int = 200,
        data_dim: int = 784,
        learn_prior: bool = False,
        data_mean: Tensor | None = None,
    ) -> None:
        if arch == "linear":
            encoder, decoder = nn.Linear(data_dim, latent_dim), nn.Linear(latent_dim, data_dim)
        elif arch == "nonlinear":
            encoder = mlp([data_dim, hidden, hidden, latent_dim], nn.LeakyReLU)
            decoder = mlp([latent_dim, hidden, hidden, data_dim], nn.LeakyReLU)
        else:
            raise ValueError(f"arch must be 'linear' or 'nonlinear', got {arch!r}")
        if data_mean is not None:
            if data_mean.shape != (data_dim,):
                raise ValueError(
                    f"data_mean must be the mean image, shape ({data_dim},), got "
                    f"{tuple(data_mean.shape)}; e.g. load_mnist(...).images.mean(0)"
                )
            output = decoder if isinstance(decoder, nn.Linear) else decoder[-1]
            with torch.no_grad():
                output.bias.copy_(logit_of_mean(data_mean))
            encoder = nn.Sequential(Centred(data_mean), encoder)
            decoder = nn.Sequential(Signed(), decoder)
        super().__init__(encoder, decoder, (latent_dim,), data_dim)
        self.arch = arch
        prior_logits = torch.zeros(latent_dim)
        if learn_prior:
            self.prior_logits = nn.Parameter(prior_logits)
        else:
            self.register_buffer("prior_logits", prior_logits)

    def distribution(self, logits: Tensor) -> Distribution:
        return Independent(Bernoulli(logits=logits), 1)

    @staticmethod
    def log_mass(z: Tensor, logits: Tensor) -> Tensor:
        """``sum_d z_d log sigmoid(l_d) + (1 - z_d) log sigmoid(-l_d)``."""
        return (z * F.logsigmoid(logits) + (1 - z) * F.logsigmoid(-logits)).sum(-1)

    @property
    def support_size(self) -> int:
        return 2 ** self.latent_shape[0]


class CategoricalVAE(DiscreteVAE):
    """``num_variables`` one-hot categorical latents (Jang et al. 2017), uniform prior.

    Args:
        num_variables: number of categorical latents (30 in the paper).
        num_classes: categories of each (10 in the paper).
        hidden: ReLU layer sizes of the encoder; the decoder mirrors them.
        data_dim: pixels per image.
    """

    latent_family = "categorical"

    def __init__(
        self,
        num_variables: int = 30,
        num_classes: int = 10,
        hidden: tuple[int, ...] = (512, 256),
        data_dim: int = 784,
    ) -> None:
        latent = num_variables * num_classes
        encoder = mlp([data_dim, *hidden, latent], nn.ReLU)
        decoder = mlp([latent, *reversed(hidden), data_dim], nn.ReLU)
        super().__init__(encoder, decoder, (num_variables, num_classes), data_dim)
        self.register_buffer("prior_logits", torch.zeros(num_variables, num_classes))

    def distribution(self, logits: Tensor) -> Distribution:
        return Independent(OneHotCategorical(logits=logits), 1)

    @staticmethod
    def log_mass(z: Tensor, logits: Tensor) -> Tensor:
        """``sum_n sum_k z_nk log_softmax(logits_n)_k``."""
        return (z * logits.log_softmax(-1)).sum((-2, -1))

    @property
    def support_size(self) -> int:
        num_variables, num_classes = self.latent_shape
        return num_classes**num_variables
