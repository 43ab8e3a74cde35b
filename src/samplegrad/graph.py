"""Stochastic computation graphs: many random nodes, costs that depend on them, one surrogate.

A model with several random steps (a sequence of actions, stacked discrete layers, hard
attention) is written as ordinary PyTorch code: each random step is a *node* drawn with
:meth:`Graph.sample`, each quantity to minimise is a *cost* added with :meth:`Graph.cost`, and
:meth:`Graph.surrogate` returns one tensor whose value is the total cost and whose gradients,
of every order, are unbiased estimates of the derivatives of the expected total cost
(Schulman et al. 2015, "Gradient estimation using stochastic computation graphs"; Foerster et
al. 2018, "DiCE: the infinitely differentiable Monte Carlo estimator")::

    g = sg.Graph()
    a = g.sample("a", Categorical(logits=l1), estimator="score")
    b = g.sample("b", Bernoulli(logits=w[a]), estimator=sg.ScoreFunction(baseline="loo"))
    g.cost(cost_fn(a, b))
    g.surrogate().backward()

**The surrogate.** With ``W_c`` the score-function nodes that cost ``c`` depends on, ``log p(w)``
the log-probability of node ``w``'s sample (detached from the sample, attached to the
distribution's parameters) and the *magic box* ``[]x = exp(x - stop_gradient(x))`` (value 1,
``d[]x = []x dx``; Foerster et al. 2018)::

    L = sum_c [](sum_{w in W_c} log p(w)) c  +  sum_w (1 - [](log p(w))) b_w

Its value is ``sum_c c``. Differentiating ``[]`` ``n`` times produces exactly the terms of the
``n``-th derivative of ``E[sum_c c]`` (the score-function terms of every order, multiplied
out with the pathwise derivatives of ``c``), so each order is unbiased. The second sum is the
baseline term of Mao et al. (2019, "A baseline for any order gradient estimation in
stochastic computation graphs"): its value is 0, its first derivative subtracts ``b_w`` from
the cost that multiplies ``grad log p(w)``, and, because ``E_w[[](log p(w))] = 1`` for every
parameter value, every derivative of it has expectation 0 whenever ``b_w`` does not depend on
``w``. The naive surrogate ``sum_c (c + stop_gradient(c) sum_{w in W_c} log p(w))`` has the
right first derivative but a biased second one (it drops the product of score terms).

**Causality** (Rao-Blackwellisation): a cost gets score terms only from the nodes it depends
on, which removes the noise of the others (Schulman et al. 2015, Sec. 5; in reinforcement
learning this is "reward-to-go"). Dependencies are found *automatically*: every sample is
returned as a :class:`GraphTensor`, a ``torch.Tensor`` subclass that records the nodes it was
computed from, and every torch operation on it (arithmetic, indexing ``w[a]``,
``torch.distributions``, ``nn`` layers) passes the record on to its result; a node's sample
depends on the node and on whatever its distribution was computed from. A value that leaves
torch (``.item()``, ``.numpy()``, an environment) loses its record: declare the dependencies
of such costs, ``g.cost(reward, depends_on=["a0", "a1"])``, or ``depends_on="all"``.

**Shapes: which elements.** Within a batch, causality goes further: cost element ``i`` gets
the score terms of node element ``i`` only, where the cost keeps the node's elements apart.
The record says where: for each node, which of the tensor's dimensions run along which of the
node's, element by element (a *dimension map*, :mod:`samplegrad._internal.alignment`).
Element-wise arithmetic, reductions over other dimensions, transposes, reshapes, indexing
``w[a]``, matrix products over event dimensions and linear layers keep the map; an operation
that mixes elements along a dimension (a sum or a matrix product across the batch,
``torch.roll``, ``gather``, a permuting index, or any operation without a rule) drops it, and
the cost element then gets the score terms of every element of the node along that dimension:
unbiased, with more variance, never a silently wrong gradient. A node's dimensions that a cost
does not keep enter with the log-probability summed over them; a node with fewer dimensions is
broadcast. Declared dependencies (``depends_on``) are taken element by element along the
dimensions the cost shares with the node, aligned from the left. With several *joint samples*
``S`` (``num_samples`` on the first node, or ``Graph(num_samples=S)`` when dimension 0 already
holds ``S`` copies, such as ``S`` environments) dimension 0 of every node and cost is the sample
dimension, the surrogate averages over it, and leave-one-out baselines use it (from the costs
that keep the joint samples apart).

**Estimators per node**: ``"score"`` / :class:`sg.ScoreFunction` with any baseline (``None``,
``"loo"``, :class:`sg.MovingAverage`, or a learned callable / module trained by the same
surrogate to minimise ``(R_w - b_w)^2``, where ``R_w`` is the total cost that depends on
``w``), ``"pathwise"`` (``rsample``: the gradient flows through the sample),
``"gumbel"`` / ``"straight-through"`` (biased relaxations: the sample is the relaxed one,
one-hot for a ``Categorical``), and ``"auto"``. Estimators that evaluate a cost function at
several points (ARM, DisARM, REBAR, RELAX, measure-valued, enumeration, the delta-method
control variate) need the cost as a function and belong to :func:`sg.expectation`.

No global state: a graph holds its nodes and costs, so two graphs can be built at once, in
two threads. ``torch.compile`` cannot trace the recording subclass yet: compile the networks
inside the graph (``torch.compile(policy)``), not the function that builds the graph.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeGuard

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Distribution

from samplegrad._expectation import announce, resolve
from samplegrad._internal import alignment
from samplegrad._internal import validation as _validation
from samplegrad._internal.alignment import DimMap, Record
from samplegrad._internal.families import base_distribution, log_prob
from samplegrad._internal.sampling import draw
from samplegrad.estimators import catalog
from samplegrad.estimators.baselines import Baseline, LeaveOneOut, check_baseline_samples
from samplegrad.estimators.catalog import AUTO
from samplegrad.estimators.pathwise import Pathwise
from samplegrad.estimators.relaxed import DiscreteStandIn
from samplegrad.estimators.score import ScoreFunction

__all__ = ["Graph", "GraphTensor", "Node", "UntracedCostWarning", "depends_on"]

Reduction = Literal["sum", "mean", "none"]


class UntracedCostWarning(UserWarning):
    """A cost depends on no node and has no gradient: it cannot change the gradient."""


# ---------------------------------------------------------------------------- dependencies


class GraphTensor(Tensor):
    """A tensor that records which nodes of a :class:`Graph` it was computed from, and along
    which dimensions it keeps their elements apart (:mod:`samplegrad._internal.alignment`).

    Behaves as a ``torch.Tensor`` in every respect; every torch function or method applied to
    it returns tensors carrying the records of its arguments. Read the nodes with
    :func:`depends_on`.
    """

    _sg_record: Record

    @classmethod
    def __torch_function__(
        cls,
        func: Callable[..., Any],
        types: Iterable[type],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        with torch._C.DisableTorchFunctionSubclass():  # also for the rules' .shape and .dim()
            result = func(*args, **kwargs)
            if func is Tensor.__setitem__:  # x[index] = value: x depends on value and index
                _record_assignment(args[0], _recorded([args, kwargs]))
                return result
            outputs = tuple(_tensors(result))
            if not outputs:  # .dim(), .shape, .item(), len(...)
                return result
            call = alignment.Call(alignment.operation_name(func), tuple(args), kwargs, outputs)
            records = alignment.result_maps(call, _recorded([args, kwargs]))
            return _tagged(result, iter(records))


def _recorded(value: object) -> list[tuple[Tensor, Record]]:
    """The graph tensors inside ``value`` (nested sequences, dicts) with their records."""
    if isinstance(value, GraphTensor):
        return [(value, value._sg_record)]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return [found for item in value for found in _recorded(item)]
    return []


def _tensors(value: object) -> list[Tensor]:
    """The tensors of an operation's result, in order (a tensor, or a tuple or list of them)."""
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, list | tuple):
        return [tensor for item in value for tensor in _tensors(item)]
    return []


def _tagged(value: Any, records: Iterator[Record]) -> Any:
    """``value`` with each of its tensors (in :func:`_tensors`' order) turned into a
    :class:`GraphTensor` holding the next of ``records`` (left plain when that is empty)."""
    if isinstance(value, Tensor):
        return _with_record(value, next(records))
    if isinstance(value, tuple):  # also torch.return_types (values, indices) pairs
        items = [_tagged(v, records) for v in value]
        return tuple(items) if type(value) is tuple else type(value)(items)
    if isinstance(value, list):
        return [_tagged(v, records) for v in value]
    return value


def _with_record(value: Tensor, record: Record) -> Tensor:
    if not record:
        return _plain(value)
    tagged = value if isinstance(value, GraphTensor) else value.as_subclass(GraphTensor)
    tagged._sg_record = record
    return tagged


def _record_assignment(target: Tensor, inputs: list[tuple[Tensor, Record]]) -> None:
    """After ``target[index] = value``: ``target`` depends on every node of ``value`` and
    ``index``, densely (which elements moved where is not tracked). A plain tensor cannot
    take a record, and a cost computed from it would silently lose the score terms of those
    nodes: refused."""
    records = [alignment.nodes_of(record) for tensor, record in inputs if tensor is not target]
    assigned = frozenset().union(*records)
    if not assigned:
        return
    if not isinstance(target, GraphTensor):
        names = sorted(node.name for node in assigned)
        raise ValueError(
            f"a value computed from nodes {names} was written into a plain tensor, which "
            "cannot record the dependence, so costs computed from it would get no score terms "
            "for them; make the tensor from a sample (e.g. torch.zeros_like(sample)) or "
            "build it with torch.stack, torch.cat or torch.where"
        )
    kept = {m: nodes - assigned for m, nodes in target._sg_record.items() if nodes - assigned}
    target._sg_record = {**kept, **alignment.dense_record(assigned, target.dim())}


def depends_on(value: Tensor) -> frozenset[str]:
    """The names of the nodes ``value`` was computed from (empty for a plain tensor)."""
    return frozenset(node.name for node in _maps(value))


def _maps(value: object) -> dict[Node, DimMap]:
    """Each node ``value`` was computed from, with its dimension map."""
    return alignment.by_node(value._sg_record) if isinstance(value, GraphTensor) else {}


def _record(maps: dict[Node, DimMap]) -> Record:
    """Each node's map, grouped by map."""
    record: Record = {}
    for node, node_map in maps.items():
        record[node_map] = record.get(node_map, frozenset()) | {node}
    return record


def _plain(value: Tensor) -> Tensor:
    return value.as_subclass(Tensor) if isinstance(value, GraphTensor) else value


# ----------------------------------------------------------------------------------- nodes


@dataclass(eq=False)
class Node:
    """One random step of a graph.

    Attributes:
        name: unique within the graph.
        distribution: the distribution it was drawn from.
        value: the sample as the user got it (relaxed for ``gumbel``/``straight-through``).
        estimator: the estimator instance.
        log_prob: ``log p`` of the sample (``None`` for pathwise and relaxed nodes), zero
            where ``mask`` is ``False``.
        mask: ``None`` or where the node is active.
        graph: the graph it belongs to.
    """

    name: str
    distribution: Distribution
    value: Tensor
    estimator: ScoreFunction | Pathwise | DiscreteStandIn
    log_prob: Tensor | None
    mask: Tensor | None
    graph: Graph = field(repr=False)


@dataclass(eq=False)
class _Cost:
    value: Tensor
    maps: dict[Node, DimMap]
    """The nodes the cost depends on, each with its dimension map."""


# ----------------------------------------------------------------------------------- graph


class Graph:
    """A stochastic computation graph built by sampling nodes and adding costs (see the
    module docstring for the surrogate, causality and shapes).

    Args:
        num_samples: ``S`` when dimension 0 of every node's distribution already holds ``S``
            independent joint samples (``S`` environments, ``S`` copies of an input); ``None``
            to let the first node's ``num_samples`` set it, or for a single joint sample.
    """

    def __init__(self, num_samples: int | None = None) -> None:
        if num_samples is not None:
            _validation.check_num_samples(num_samples)
        self._num_samples = num_samples
        self._draws_samples = False
        self._nodes: dict[str, Node] = {}
        self._costs: list[_Cost] = []

    @property
    def num_samples(self) -> int | None:
        """``S``, the joint samples in dimension 0, or ``None``."""
        return self._num_samples

    @property
    def nodes(self) -> Mapping[str, Node]:
        """The nodes by name, in the order they were sampled."""
        return dict(self._nodes)

    def sample(
        self,
        name: str,
        dist: Distribution,
        estimator: str | ScoreFunction | Pathwise | DiscreteStandIn = AUTO,
        num_samples: int | None = None,
        generator: torch.Generator | None = None,
        mask: Tensor | None = None,
    ) -> GraphTensor:
        """Draw node ``name`` from ``dist``; returns the sample as a :class:`GraphTensor`.

        Args:
            name: a name not used yet in this graph.
            dist: any ``torch.distributions.Distribution``; its parameters may be computed
                from earlier samples.
            estimator: ``"score"``, ``"pathwise"``, ``"gumbel"``, ``"straight-through"``,
                ``"auto"``, or an instance of ``sg.ScoreFunction`` (any baseline),
                ``sg.Pathwise``, ``sg.GumbelSoftmax`` or ``sg.StraightThrough``.
            num_samples: on the first node, draw ``S`` joint samples for the whole graph
                (dimension 0); on later nodes ``None`` or the same ``S``.
            generator: a ``torch.Generator`` for reproducible samples.
            mask: a boolean tensor broadcastable to the node's shape (from the left, like
                costs): ``False`` marks inactive elements (an episode that has ended), which
                get no score term and no place in a leave-one-out baseline. Their costs
                should be 0.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if name in self._nodes:
            raise ValueError(f"a node named {name!r} exists already in this graph; rename it")
        dist = _validation.check_distribution(dist)
        recorded = [(t, _maps(t)) for t in _parameters(dist) if isinstance(t, GraphTensor)]
        parents = frozenset(node for _, maps in recorded for node in maps)
        self._check_own(parents, f"the distribution of node {name!r}")
        sample_shape = self._sample_shape(name, num_samples, parents)
        generator = _validation.check_generator(generator, dist)
        _validation.check_finite_parameters(dist)
        chosen = self._estimator(estimator, dist)
        _validation.check_finite_state(chosen)
        with _validation.explained_failures(dist):
            value, log_prob = _draw(chosen, dist, sample_shape, generator)
        if mask is not None and log_prob is not None:
            mask = _aligned(mask.to(torch.bool), log_prob, f"mask of node {name!r}")
            log_prob = torch.where(mask, log_prob, torch.zeros((), dtype=log_prob.dtype))
        node = Node(name, dist, value, chosen, log_prob, mask, self)
        self._nodes[name] = node
        maps = _sample_maps(node, len(sample_shape), recorded)
        node.value = _with_record(_plain(value), _record(maps))  # type: ignore[assignment]
        return node.value  # type: ignore[return-value]

    def cost(self, value: Tensor, depends_on: Iterable[str] | str | None = None) -> None:
        """Add a cost to minimise (a reward ``r`` is the cost ``-r``).

        Args:
            value: a tensor of costs; with joint samples, dimension 0 is the sample dimension.
            depends_on: ``None`` to take the nodes ``value`` was computed from (recorded by
                :class:`GraphTensor`); node names to declare them (for a value computed
                outside torch); ``"all"`` for every node sampled so far.
        """
        if not isinstance(value, Tensor) or not value.is_floating_point():
            raise ValueError(
                f"value must be a floating-point tensor of costs, got "
                f"{getattr(value, 'dtype', type(value).__name__)}; e.g. torch.as_tensor(r, "
                "dtype=torch.float32)"
            )
        if depends_on is None:
            maps = _maps(value)
            self._check_own(frozenset(maps), "the cost")
        else:
            if depends_on == "all":
                names = list(self._nodes)
            else:
                names = [depends_on] if isinstance(depends_on, str) else list(depends_on)
            unknown = [n for n in names if n not in self._nodes]
            if unknown:
                raise ValueError(
                    f"depends_on names unknown nodes {unknown}; nodes so far: "
                    f"{', '.join(self._nodes) or 'none'}"
                )
            maps = {self._nodes[n]: _declared_map(self._nodes[n], value) for n in names}
        samples = self._num_samples
        if samples is not None and (value.dim() == 0 or value.shape[0] not in (1, samples)):
            raise ValueError(
                f"value must have the {self._num_samples} joint samples in dimension 0, got "
                f"shape {tuple(value.shape)}"
            )
        if not maps and not value.requires_grad:
            warnings.warn(
                "this cost depends on no node and has no gradient, so it cannot change the "
                "gradient; if it was computed outside torch (numpy, an environment), declare "
                "its nodes with depends_on=[...]",
                UntracedCostWarning,
                stacklevel=2,
            )
        self._costs.append(_Cost(_plain(value), maps))

    def surrogate(self, reduction: Reduction = "sum") -> Tensor:
        """The surrogate ``L`` (module docstring): value = the costs' total, averaged over the
        joint samples; ``.backward()`` (or ``torch.autograd.grad`` with ``create_graph=True``
        for higher orders) gives the gradient estimates.

        Args:
            reduction: ``"sum"`` (a scalar: every cost element summed), ``"mean"`` (that sum
                divided by the number of elements in the costs' common batch shape, e.g. the
                mean over a batch of episodes) or ``"none"`` (element-wise totals in that
                common shape, aligned from the left).

        The costs are grouped by shape and each group is one matrix product (membership of
        nodes in costs times the stacked log-probabilities), so a graph with thousands of
        nodes and costs (an episode of a few hundred steps) costs a handful of tensor
        operations, not a Python loop over pairs.
        """
        if reduction not in ("sum", "mean", "none"):
            raise ValueError(f"reduction must be 'sum', 'mean' or 'none', got {reduction!r}")
        if not self._costs:
            raise ValueError("the graph has no cost; add one with g.cost(value)")
        terms = [_cost_terms(costs) for costs in _by_shape(self._costs, _cost_shape)]
        with_baselines = [
            node
            for node in self._nodes.values()
            if node.log_prob is not None and getattr(node.estimator, "baseline", None) is not None
        ]
        terms += [
            _baseline_terms(nodes, self._costs)
            for nodes in _by_shape(with_baselines, _log_prob_shape)
        ]
        if self._num_samples is not None:
            terms = [term.mean(0) if term.dim() > 0 else term for term in terms]
        ndim = max(term.dim() for term in terms)
        padded = [term.reshape((*term.shape, *([1] * (ndim - term.dim())))) for term in terms]
        total = padded[0]
        for term in padded[1:]:
            total = total + term
        if reduction == "none":
            return total
        if reduction == "sum":
            return total.sum()
        return total.sum() / math.prod(_common_shape(self._costs, self._num_samples is not None))

    # ------------------------------------------------------------------------- internals

    def _check_own(self, nodes: frozenset[Node], what: str) -> None:
        foreign = [node.name for node in nodes if node.graph is not self]
        if foreign:
            raise ValueError(
                f"{what} was computed from nodes {foreign} of another graph; build each "
                "model in one graph"
            )

    def _sample_shape(
        self, name: str, num_samples: int | None, parents: frozenset[Node]
    ) -> torch.Size:
        if num_samples is not None:
            _validation.check_num_samples(num_samples)
            if self._nodes and num_samples != self._num_samples:
                raise ValueError(
                    f"num_samples of node {name!r} is {num_samples}, but the graph has "
                    f"{self._num_samples}; give num_samples on the first node only"
                )
            if not self._nodes:
                if self._num_samples is not None:
                    raise ValueError(
                        "this graph was built with num_samples (dimension 0 already holds the "
                        "joint samples); do not give num_samples to its nodes"
                    )
                self._num_samples, self._draws_samples = num_samples, True
        if self._draws_samples and not parents:
            return torch.Size((self._num_samples,))
        return torch.Size()

    def _estimator(
        self, estimator: object, dist: Distribution
    ) -> ScoreFunction | Pathwise | DiscreteStandIn:
        if estimator == AUTO:  # a graph lives one step: it keeps no history to average over
            choice = catalog.auto(dist, self._num_samples or 1, stateless=True)
            described = _AUTO_CHOICES.get(choice, choice)
            return announce(described, dist, catalog.CATALOG[choice].build())
        chosen = resolve(estimator, None, dist, 1)  # type: ignore[arg-type]
        if not _one_cost_per_sample(chosen):
            names = [
                name
                for name, entry in catalog.CATALOG.items()
                if not entry.is_variant
                and not entry.required_options
                and _one_cost_per_sample(entry.build())
            ]
            raise TypeError(
                f"estimator {getattr(chosen, 'name', chosen)!r} evaluates the cost at several "
                "points per sample, which a graph's costs (tensors) cannot do; choose one of "
                f"{', '.join(map(repr, names))} (or sg.ScoreFunction with any baseline), or use "
                "sg.expectation(f, dist, ...) for a single random step"
            )
        if not type(chosen).supports(dist):
            from samplegrad.estimators.base import unsupported_message

            raise TypeError(unsupported_message(chosen.name, dist))
        if isinstance(chosen, ScoreFunction) and chosen.baseline is not None:
            check_baseline_samples(chosen.baseline, self._num_samples or 1)
        return chosen


def _one_cost_per_sample(
    estimator: object,
) -> TypeGuard[ScoreFunction | Pathwise | DiscreteStandIn]:
    """Whether a graph can use ``estimator``: it evaluates the cost once per sample, at the
    sample or at a differentiable stand-in for it (a graph's costs are tensors, not functions)."""
    if isinstance(estimator, ScoreFunction):
        return estimator.control_variate is None
    return isinstance(estimator, Pathwise | DiscreteStandIn)


_AUTO_CHOICES = {
    "score-loo": "score function with a leave-one-out baseline over the joint samples",
    "score": (
        "score function (no baseline: one joint sample; a leave-one-out baseline needs "
        "num_samples >= 2 joint samples)"
    ),
}
"""How the warning of ``"auto"`` names a choice where a graph's words differ from the name."""


def _parameters(dist: Distribution) -> list[Tensor]:
    """Every tensor attribute of ``dist`` (and of the distributions it wraps)."""
    found: list[Tensor] = []
    stack = [dist]
    while stack:
        current = stack.pop()
        for value in vars(current).values():
            if isinstance(value, Tensor):
                found.append(value)
            elif isinstance(value, Distribution):
                stack.append(value)
    return found


def _draw(
    estimator: ScoreFunction | Pathwise | DiscreteStandIn,
    dist: Distribution,
    sample_shape: torch.Size,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor | None]:
    """The node's sample and its log-probability (``None`` without a score term)."""
    if isinstance(estimator, Pathwise):
        return draw(dist, sample_shape, generator, reparameterized=True), None
    if isinstance(estimator, DiscreteStandIn):
        base = base_distribution(dist)
        binary = isinstance(base, Bernoulli)
        return estimator.stand_in(base, binary, tuple(sample_shape), generator), None
    value = draw(dist, sample_shape, generator, reparameterized=False)
    return value, _plain(log_prob(dist, value))


def _aligned(value: Tensor, like: Tensor, what: str) -> Tensor:
    """``value`` summed over the trailing dimensions ``like`` lacks and padded with trailing
    singleton dimensions, so that it broadcasts to ``like`` aligned from the left."""
    value = _plain(value)
    extra = value.dim() - like.dim()
    if extra > 0:
        value = value.sum(tuple(range(like.dim(), value.dim())))
    elif extra < 0:
        value = value.reshape((*value.shape, *([1] * -extra)))
    for size, target in zip(value.shape, like.shape, strict=True):
        if size not in (1, target) and target != 1:
            raise ValueError(
                f"{what} has shape {tuple(value.shape)}, which does not match the shape "
                f"{tuple(like.shape)} it meets (dimensions align from the left: dimension 0 is "
                "the joint samples or the batch); reshape or sum it first"
            )
    return value


def _magic_box(log_prob: Tensor) -> Tensor:
    """``exp(x - stop_gradient(x))``: value 1, every derivative that of ``exp(x)``."""
    return torch.exp(log_prob - log_prob.detach())


def _by_shape(items: Sequence[Any], shape_of: Callable[[Any], torch.Size]) -> list[list[Any]]:
    """``items`` grouped by shape, in order of first appearance."""
    groups: dict[torch.Size, list[Any]] = {}
    for item in items:
        groups.setdefault(shape_of(item), []).append(item)
    return list(groups.values())


def _cost_shape(cost: _Cost) -> torch.Size:
    return cost.value.shape


def _log_prob_shape(node: Node) -> torch.Size:
    assert node.log_prob is not None
    return node.log_prob.shape


def _membership(rows: Sequence[Iterable[Any]], columns: Sequence[Any], like: Tensor) -> Tensor:
    """``M[i, j] = 1`` where ``columns[j]`` is in ``rows[i]``, in ``like``'s dtype and device."""
    index = {column: j for j, column in enumerate(columns)}
    matrix = torch.zeros(len(rows), len(columns), dtype=like.dtype, device=like.device)
    pairs = [
        (i, j)
        for i, items in enumerate(rows)
        for item in items
        if (j := index.get(item)) is not None
    ]
    if pairs:
        matrix[tuple(torch.tensor(pairs, device=like.device).T)] = 1.0
    return matrix


def _cost_terms(costs: list[_Cost]) -> Tensor:
    """``sum_c [](sum_{w in W_c} log p(w)) c`` for costs of one shape: each node's
    log-probabilities enter each cost element as its dimension map says (:func:`_on_cost`)."""
    values = torch.stack([cost.value for cost in costs])
    like = values[0]
    columns = list(
        dict.fromkeys(
            pair for cost in costs for pair in cost.maps.items() if pair[0].log_prob is not None
        )
    )
    if not columns:
        return values.sum(0)
    log_probs = torch.stack(
        [
            _on_cost(node.log_prob, node_map, like.shape).expand_as(like)
            for node, node_map in columns
        ]  # type: ignore[arg-type]
    )
    membership = _membership([cost.maps.items() for cost in costs], columns, log_probs)
    totals = torch.tensordot(membership, log_probs, dims=1)  # (costs, *shape)
    return (_magic_box(totals) * values).sum(0)


def _baseline_terms(nodes: list[Node], costs: list[_Cost]) -> Tensor:
    """``sum_w (1 - [](log p(w))) b_w`` for nodes whose log-probabilities share one shape,
    plus the zero-valued training terms of learned baselines. ``b_w`` is computed from ``R_w``,
    the costs that depend on ``w`` moved onto ``w``'s elements (:func:`_on_node`); a
    leave-one-out baseline over the joint samples takes only the costs that keep the joint
    samples apart (a cost mixing them depends on ``w``'s own sample through the others)."""
    log_probs = torch.stack([node.log_prob for node in nodes])  # type: ignore[misc]
    like = log_probs[0]
    rows: dict[tuple[int, DimMap], Tensor] = {}  # (cost, map) -> the cost on the nodes
    keys: list[list[tuple[int, DimMap]]] = [[] for _ in nodes]  # per node, its rows
    for node, node_keys in zip(nodes, keys, strict=True):
        across_samples = isinstance(node.estimator.baseline, LeaveOneOut)  # type: ignore[union-attr]
        for i, cost in enumerate(costs):
            node_map = cost.maps.get(node)
            if node_map is None or (across_samples and 0 not in node_map):
                continue
            if (i, node_map) not in rows:
                rows[i, node_map] = _on_node(cost.value.detach(), node_map, like.shape)
            node_keys.append((i, node_map))
    if rows:
        values = torch.stack([row.expand_as(like) for row in rows.values()])
        membership = _membership(keys, list(rows), values)  # (nodes, rows)
        downstream = torch.tensordot(membership, values, dims=1)  # R_w: (nodes, *shape)
    else:
        downstream = torch.zeros_like(log_probs)
    total = torch.zeros_like(like)
    for node, node_log_prob, cost in zip(nodes, log_probs, downstream, strict=True):
        baseline = _baseline_values(node.estimator.baseline, cost, node.mask)  # type: ignore[union-attr]
        total = total + (1 - _magic_box(node_log_prob)) * baseline.detach()
        if baseline.requires_grad:  # a learned baseline: minimise (R_w - b_w)^2
            squared_error = (cost - baseline) ** 2
            if node.mask is not None:
                squared_error = torch.where(node.mask, squared_error, 0.0)
            total = total + (squared_error - squared_error.detach())
    return total


def _on_cost(log_prob: Tensor, node_map: DimMap, shape: torch.Size) -> Tensor:
    """A node's log-probabilities as they enter a cost of ``shape``: summed over the node
    dimensions the cost's map does not keep, the others placed at the cost dimensions that
    keep them, size 1 elsewhere (so it broadcasts to the cost)."""
    kept = [(j, d) for j, d in enumerate(node_map) if d is not None]
    summed_over = tuple(d for d in range(log_prob.dim()) if d not in {d for _, d in kept})
    reduced = log_prob.sum(summed_over) if summed_over else log_prob  # kept dims, node order
    order = sorted(d for _, d in kept)
    placed = reduced.permute([order.index(d) for _, d in kept])  # kept dims, cost order
    target = [1] * len(shape)
    for (j, _), size in zip(kept, placed.shape, strict=True):
        target[j] = size
    return placed.reshape(target)


def _on_node(cost: Tensor, node_map: DimMap, shape: torch.Size) -> Tensor:
    """A cost moved onto a node's elements (``shape``): summed over the cost dimensions its map
    does not keep, the others placed at the node dimensions they keep, size 1 elsewhere."""
    kept = [(j, d) for j, d in enumerate(node_map) if d is not None]
    summed_over = tuple(j for j in range(cost.dim()) if j not in {j for j, _ in kept})
    reduced = cost.sum(summed_over) if summed_over else cost  # kept dims, cost order
    by_node = sorted(range(len(kept)), key=lambda k: kept[k][1])
    placed = reduced.permute(by_node)  # kept dims, node order
    target = [1] * len(shape)
    for k, size in zip(by_node, placed.shape, strict=True):
        target[kept[k][1]] = size
    return placed.reshape(target)


def _sample_maps(
    node: Node, sample_ndim: int, recorded: list[tuple[Tensor, dict[Node, DimMap]]]
) -> dict[Node, DimMap]:
    """The dimension maps of a node's sample: element by element with itself along its
    sample and batch dimensions; with each parent, along the batch dimensions in which the
    distribution's parameter tensors keep the parent's elements apart (all of them must)."""
    value, batch_shape = node.value, node.distribution.batch_shape
    batch = len(batch_shape)
    candidates: dict[Node, list[DimMap]] = {}
    for tensor, record in recorded:
        aligned = tensor.dim() >= batch and tensor.shape[:batch] == batch_shape
        for parent, parent_map in record.items():
            kept = parent_map[:batch] if aligned else (None,) * batch
            rest = (None,) * (value.dim() - sample_ndim - batch)
            candidates.setdefault(parent, []).append(((None,) * sample_ndim) + kept + rest)
    maps = {parent: alignment.agreed(found) for parent, found in candidates.items()}
    own = sample_ndim + batch
    maps[node] = (*range(own), *(None,) * (value.dim() - own))
    return maps


def _declared_map(node: Node, value: Tensor) -> DimMap:
    """A declared dependency (``depends_on``) is element-wise along the dimensions the cost
    shares with the node's log-probabilities, aligned from the left (docstring, "Shapes")."""
    like = node.log_prob if node.log_prob is not None else node.value
    declared = _left_aligned(tuple(value.shape), tuple(like.shape))
    if declared is None:
        raise ValueError(
            f"a cost of shape {tuple(value.shape)} does not match the shape "
            f"{tuple(like.shape)} of node {node.name!r} it depends on (dimensions align from "
            "the left: dimension 0 is the joint samples or the batch); reshape or sum it first"
        )
    return declared


@functools.cache
def _left_aligned(shape: tuple[int, ...], node_shape: tuple[int, ...]) -> DimMap | None:
    """The map of a cost of ``shape`` aligned from the left with a node of ``node_shape``
    (sizes equal, or 1 on either side), or ``None`` where the sizes do not match."""
    pairs = list(zip(shape, node_shape, strict=False))
    if any(size not in (1, target) and target != 1 for size, target in pairs):
        return None
    return tuple(
        j if j < len(pairs) and pairs[j][0] == pairs[j][1] else None for j in range(len(shape))
    )


def _baseline_values(baseline: Baseline, downstream: Tensor, mask: Tensor | None) -> Tensor:
    """The baseline of each element of a node, from its downstream costs ``(S, ...)``; a
    leave-one-out baseline averages over the other *active* joint samples."""
    if isinstance(baseline, LeaveOneOut) and mask is not None:
        active = mask.to(downstream.dtype).expand_as(downstream)
        others = (downstream * active).sum(0, keepdim=True) - downstream * active
        count = active.sum(0, keepdim=True) - active
        return torch.where(count > 0, others / count.clamp_min(1), 0.0)
    return baseline(downstream)


def _common_shape(costs: list[_Cost], has_samples: bool) -> tuple[int, ...]:
    """The costs' shapes broadcast from the left, without the sample dimension."""
    ndim = max(cost.value.dim() for cost in costs)
    shapes = [(*cost.value.shape, *([1] * (ndim - cost.value.dim()))) for cost in costs]
    common = tuple(max(sizes) for sizes in zip(*shapes, strict=True))
    return common[1:] if has_samples else common
