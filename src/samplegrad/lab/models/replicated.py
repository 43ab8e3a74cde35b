"""Replicated models: ``R`` independent copies of a network trained in one batched pass.

:func:`replicate` turns ``R`` models of the same architecture (e.g. initialised from ``R``
seeds) into one whose every :class:`torch.nn.Linear` becomes a :class:`ReplicatedLinear` with
the stacked weights ``(R, out, in)``. It acts on inputs with a replica dimension,
``(..., R, B, in) -> (..., R, B, out)``, as one grouped matrix product (``torch.baddbmm``):
replica ``r``'s rows only ever meet replica ``r``'s weights. The rest of the model (the
activations, :class:`samplegrad.nn.Sampling`, the estimators, the log-likelihoods) broadcasts
over leading dimensions, so it is unchanged: the latent distribution simply gets the batch
shape ``(R, B, ...)``, and a model's ``loss(x)`` with ``x`` of shape ``(R, B, D)`` returns
per-image ELBOs ``(R, B)``.

**Independent gradients.** A VAE's ``loss`` is the mean over all ``R * B`` images; ``R``
times it is ``sum_r mean_b loss_rb``, and replica ``r``'s parameters receive the gradient of
its own term only, exactly its gradient in a lone run. Adam acts element-wise, so one Adam over
the stacked parameters is ``R`` independent Adams.

**What replicates.** Parameters are only allowed inside ``nn.Linear`` layers (anything else
would be shared, coupling the replicas); buffers must be equal in all replicas and stay shared
(e.g. a fixed prior's logits). :func:`replica` takes one replica back out as a plain model.

**Why grouped products, not ``torch.func.vmap``.** Stacking the modules' states and calling
``functional_call`` under ``vmap`` would replicate any module, but randomness inside ``vmap``
comes from the global random state (``randomness="different"``) and cannot follow an explicit
``torch.Generator`` per replica, while samplegrad's sampling layers and estimators draw their
noise inside the model from the generator they are given. With grouped products nothing but
the Linear layers changes, the noise is drawn per replica by
:class:`samplegrad.generators.ReplicaGenerators` (so replica ``r`` reproduces a lone run with
its seed), and each layer is one ``baddbmm`` for all the replicas.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["ReplicatedLinear", "replica", "replicate"]


class ReplicatedLinear(nn.Module):
    """``R`` linear layers applied replica by replica: ``y[..., r, b] = W_r x[..., r, b] + c_r``.

    Args:
        layers: the ``R`` ``nn.Linear`` layers (same sizes) whose weights are stacked.

    Attributes:
        weight: ``(R, out_features, in_features)``; bias: ``(R, out_features)`` or ``None``.
    """

    def __init__(self, layers: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.in_features, self.out_features = layers[0].in_features, layers[0].out_features
        with torch.no_grad():
            self.weight = nn.Parameter(torch.stack([layer.weight for layer in layers]))
            biases = [layer.bias for layer in layers]
            bias = None if biases[0] is None else nn.Parameter(torch.stack(biases))
        self.bias = bias

    def forward(self, x: Tensor) -> Tensor:
        """``(..., R, B, in) -> (..., R, B, out)``: one batched product over the replicas."""
        replicas = self.weight.shape[0]
        if x.dim() < 3 or x.shape[-3] != replicas:
            raise ValueError(
                f"a replicated layer takes inputs (..., {replicas}, batch, {self.in_features}) "
                f"with the replica dimension third from last, got {tuple(x.shape)}"
            )
        grouped = x.movedim(-3, 0)  # (R, ..., B, in)
        rows = grouped.reshape(replicas, -1, self.in_features)
        weight_t = self.weight.transpose(1, 2)
        if self.bias is None:
            out = torch.bmm(rows, weight_t)
        else:
            out = torch.baddbmm(self.bias.unsqueeze(1), rows, weight_t)
        return out.reshape(*grouped.shape[:-1], self.out_features).movedim(0, -3)

    def extra_repr(self) -> str:
        return (
            f"replicas={self.weight.shape[0]}, in_features={self.in_features}, "
            f"out_features={self.out_features}, bias={self.bias is not None}"
        )


def replicate(models: Sequence[nn.Module]) -> nn.Module:
    """One model holding ``models`` (same architecture) as replicas (module docstring).

    The result is a copy of ``models[0]`` with its ``nn.Linear`` layers replaced; its state
    dict has the plain model's keys, each Linear tensor with a leading replica dimension.

    Raises:
        ValueError: no models, different architectures, a parameter outside an ``nn.Linear``,
            or buffers that differ between the replicas.
    """
    if not models:
        raise ValueError("replicate needs at least one model")
    names = [name for name, module in models[0].named_modules() if isinstance(module, nn.Linear)]
    result = copy.deepcopy(models[0])
    for name in names:
        layers = [model.get_submodule(name) for model in models]
        if not all(isinstance(layer, nn.Linear) for layer in layers):
            raise ValueError(f"the models differ at {name!r}: replicate needs one architecture")
        result.set_submodule(name, ReplicatedLinear(layers))
    stacked = {
        id(p) for m in result.modules() if isinstance(m, ReplicatedLinear) for p in m.parameters()
    }
    outside = [name for name, p in result.named_parameters() if id(p) not in stacked]
    if outside:
        raise ValueError(
            f"parameters outside nn.Linear layers would be shared by the replicas: {outside}"
        )
    for name, buffer in models[0].named_buffers():
        if not all(torch.equal(buffer, model.get_buffer(name)) for model in models[1:]):
            raise ValueError(f"buffer {name!r} differs between the replicas; it would be shared")
    return result


def replica(model: nn.Module, index: int) -> nn.Module:
    """Replica ``index`` of a :func:`replicate`-d model as a plain model (a copy)."""
    result = copy.deepcopy(model)
    for name, module in model.named_modules():
        if isinstance(module, ReplicatedLinear):
            linear = nn.Linear(
                module.in_features,
                module.out_features,
                bias=module.bias is not None,
                device=module.weight.device,
                dtype=module.weight.dtype,
            )
            with torch.no_grad():
                linear.weight.copy_(module.weight[index])
                if module.bias is not None:
                    linear.bias.copy_(module.bias[index])
            result.set_submodule(name, linear)
    return result
