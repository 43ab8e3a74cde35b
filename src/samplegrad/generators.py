"""Random numbers the samplegrad way: a ``torch.Generator`` for every draw, many at once.

``torch.distributions`` samples from the global random state only; samplegrad takes a
``generator`` everywhere. This module exports what applications need beyond
``sg.expectation(..., generator=...)``:

- :func:`draw`: ``dist.rsample``/``dist.sample`` from a generator (the global state untouched);
- :class:`ReplicaGenerators`: one generator per replica of a model stacked along the first
  batch dimension, so replica ``r`` draws exactly the noise a lone run with generator ``r``
  would (``samplegrad train vae --seeds N``);
- :func:`sharded`: inside the context, noise drawn from a generator for a batch is drawn for
  the whole batch and this process keeps its rows (data-parallel training that reproduces the
  single process);
- :data:`Generator`: the type the sampling functions accept besides ``None``.
"""

from samplegrad._internal.sampling import Generator, ReplicaGenerators, draw, sharded

__all__ = ["Generator", "ReplicaGenerators", "draw", "sharded"]
