"""Dimension maps: which elements of a random node a tensor computed from it depends on.

:class:`samplegrad.Graph` gives each cost element the score terms of the node elements it
depends on, and only those (Rao-Blackwellisation within the batch). A record of *which nodes* a
tensor comes from does not say which elements: ``torch.roll(b, 1, 0)`` depends on ``b``, but its
element ``i`` on ``b``'s element ``i - 1``, and pairing it with ``b``'s element ``i`` gives a
gradient of the wrong expectation. A *dimension map* says it. For a tensor ``t`` with ``n``
dimensions and one node, ``m = (m_0, ..., m_{n-1})`` where ``m_j`` is the node dimension along
which ``t``'s dimension ``j`` runs element by element, or ``None``: ``t[i_0, ..., i_{n-1}]``
depends only on node elements whose index along node dimension ``m_j`` is ``i_j`` (for every
``j`` with ``m_j`` not ``None``), and along every node dimension absent from ``m`` on any element.
``None`` claims nothing, so it is always safe; a map of ``None`` only is *dense*.

:func:`result_maps` computes the maps of an operation's results from its inputs'. A result
dimension keeps an input dimension only where the operation provably keeps elements in place
along it, by a rule for what the operation does (:data:`_RULES`):

- element-wise operations (torch's ``pointwise`` operator tag, conversions, dropout), with
  broadcasting: a dimension of size 1 broadcast to more is not kept;
- reductions and scans over other dimensions (a scan or sort along a dimension mixes it);
- transposes, permutations, reshapes that keep a dimension (an equal prefix or suffix of the
  shapes), ``squeeze``, ``unsqueeze``, expansions, repeats, concatenation, stacking, splitting;
- matrix products and linear layers over other dimensions; ``one_hot`` and ``embedding``;
- ``gather``, ``index_select`` and indexing with whole slices, integers, ``None``, ``...`` and
  one block of integer index tensors (an index tensor's elements choose the result's).

A kept dimension must also keep its size: a slice, a roll or a split that moves elements
changes it or is not kept. Every other operation, and every one without a rule here (a roll, a
flip, a product across the batch, a convolution), maps its results densely: the cost then gets
the score terms of every element of the node, an unbiased estimate with more variance instead
of a wrong one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

DimMap = tuple[int | None, ...]
"""Per dimension of a tensor, the node dimension it runs along element by element, or None."""

Record = dict[DimMap, frozenset[Any]]
"""What a tensor records: the nodes it was computed from, grouped by their dimension maps
(many nodes share a few maps, so operations work on the groups)."""

Link = tuple[int | None, ...]
"""Per dimension of a result, the input dimension whose elements it keeps in place, or None."""

UNRELATED = "unrelated"
"""A result that does not depend on an input's values at all (``broadcast_tensors``' other
outputs, ``expand_as``'s template)."""

Links = dict[int, Link | str]
"""For one result, ``id(input tensor) -> Link`` or :data:`UNRELATED`; inputs not named are
linked densely."""


@dataclass(frozen=True)
class Call:
    """One torch operation: its name (normalised by :func:`operation_name`), arguments and
    tensor results."""

    name: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    outputs: tuple[Tensor, ...]

    def argument(self, position: int, keyword: str, default: Any = None) -> Any:
        """The argument at ``position`` (0 is the tensor the operation is called on) or
        called ``keyword``."""
        if keyword in self.kwargs:
            return self.kwargs[keyword]
        return self.args[position] if len(self.args) > position else default

    @property
    def source(self) -> Tensor:
        return self.args[0]


def result_maps(call: Call, inputs: Sequence[tuple[Tensor, Record]]) -> list[Record]:
    """The records of each of ``call.outputs``, from ``inputs``: every recorded input tensor
    of the call with its record."""
    rule = _RULES.get(call.name) or (_pointwise if _is_pointwise(call.name) else _dense)
    try:
        links = rule(call)
        if len(links) != len(call.outputs):
            raise ValueError(f"{call.name}: {len(links)} links for {len(call.outputs)} results")
    except Exception:  # arguments the rule does not understand: claim nothing, which is safe
        links = _dense(call)
    return [
        _output_record(output, output_links, inputs)
        for output, output_links in zip(call.outputs, links, strict=True)
    ]


def _output_record(output: Tensor, links: Links, inputs: Sequence[tuple[Tensor, Record]]) -> Record:
    """One result's record: each input's maps carried through its link, and a node found in
    several inputs given the map they agree on."""
    record: Record = {}
    for tensor, groups in inputs:
        link = links.get(id(tensor), (None,) * output.dim())
        if link == UNRELATED:
            continue
        link = _sized(link, tensor.shape, output.shape)  # type: ignore[arg-type]
        carried: Record = {}
        for node_map, nodes in groups.items():
            known = len(node_map) == tensor.dim()  # else reshaped in place: claim nothing
            candidate = _once_each(
                tuple(None if a is None or not known else node_map[a] for a in link)
            )
            carried[candidate] = carried.get(candidate, frozenset()) | nodes
        record = _combined(record, carried) if record else carried
    return record


def _combined(first: Record, second: Record) -> Record:
    """The record of a result of two inputs with these records: a node in both gets the map
    both agree on (set operations on the groups, not a loop over the nodes)."""
    in_first, in_second = frozenset().union(*first.values()), frozenset().union(*second.values())
    record: Record = {}

    def add(node_map: DimMap, nodes: frozenset[Hashable]) -> None:
        if nodes:
            record[node_map] = record.get(node_map, frozenset()) | nodes

    for first_map, first_nodes in first.items():
        add(first_map, first_nodes - in_second)
        for second_map, second_nodes in second.items():
            add(agreed([first_map, second_map]), first_nodes & second_nodes)
    for second_map, second_nodes in second.items():
        add(second_map, second_nodes - in_first)
    return record


def nodes_of(record: Record) -> frozenset[Hashable]:
    """Every node in ``record``."""
    return frozenset().union(*record.values())


def by_node(record: Record) -> dict[Hashable, DimMap]:
    """``record`` as each node's map."""
    return {node: node_map for node_map, nodes in record.items() for node in nodes}


def dense_record(nodes: Iterable[Hashable], ndim: int) -> Record:
    """Every one of ``nodes`` with the map that claims nothing, for a tensor of ``ndim``."""
    nodes = frozenset(nodes)
    return {(None,) * ndim: nodes} if nodes else {}


def _sized(link: Link, shape: torch.Size, output_shape: torch.Size) -> Link:
    """``link`` without the dimensions that change size (a slice, a split, a broadcast)."""
    return tuple(
        None if a is None or not 0 <= a < len(shape) or shape[a] != size else a
        for a, size in zip(link, output_shape, strict=True)
    )


def agreed(candidates: Sequence[DimMap]) -> DimMap:
    """The map on which every input agrees (a dimension where two inputs differ depends on
    both, so on several node elements), a node dimension appearing once at most."""
    common = tuple(
        values[0] if all(value == values[0] for value in values) else None
        for values in zip(*candidates, strict=True)
    )
    return _once_each(common)


def _once_each(node_map: DimMap) -> DimMap:
    """``node_map`` without a node dimension kept at two places (an element there would
    depend on two indices along it): both places map to ``None``."""
    kept = [d for d in node_map if d is not None]
    if len(kept) == len(set(kept)):
        return node_map
    return tuple(None if d is not None and kept.count(d) > 1 else d for d in node_map)


def _links(*pairs: tuple[Tensor, Link]) -> Links:
    """The links of one result to its inputs; an input in several roles (``x @ x``) keeps
    only the dimensions all its roles keep in place."""
    links: dict[int, list[Link]] = {}
    for tensor, link in pairs:
        links.setdefault(id(tensor), []).append(link)
    return {key: agreed(found) for key, found in links.items()}


# ------------------------------------------------------------------------------- names


_DUNDER_NAMES = {
    "truediv": "div",
    "floordiv": "floor_divide",
    "mod": "remainder",
    "and": "bitwise_and",
    "or": "bitwise_or",
    "xor": "bitwise_xor",
    "invert": "bitwise_not",
    "rmatmul": "rmatmul",
}


def operation_name(func: Callable[..., Any]) -> str:
    """The name the rules know ``func`` by: ``Tensor.__radd__`` and ``Tensor.add_`` are
    ``"add"``, the property ``Tensor.T`` is ``"T"``."""
    name = getattr(func, "__name__", "")
    if name == "__get__":  # a property such as Tensor.T: its name is the descriptor's
        return getattr(getattr(func, "__self__", None), "__name__", "")
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
        if name in _DUNDER_NAMES:
            return _DUNDER_NAMES[name]
        if name[:1] in ("r", "i") and not _is_pointwise(name) and name[1:]:
            name = name[1:]  # reflected (radd) and in-place (iadd) forms
        return _DUNDER_NAMES.get(name, name)
    return name.removesuffix("_") if name.endswith("_") and not name.endswith("__") else name


@functools.cache
def _is_pointwise(name: str) -> bool:
    """Whether torch's operator ``aten.<name>`` carries the ``pointwise`` tag."""
    packet = getattr(torch.ops.aten, name, None)
    if packet is None or not hasattr(packet, "overloads"):
        return False
    return any(torch.Tag.pointwise in getattr(packet, o).tags for o in packet.overloads())


# ------------------------------------------------------------------------------- rules


def _dims(dims: object, ndim: int) -> list[int]:
    """``dims`` (an int or a sequence) as non-negative dimensions of an ``ndim``-d tensor."""
    if isinstance(dims, int):
        dims = [dims]
    return [d % ndim if ndim else 0 for d in dims]  # type: ignore[union-attr]


def _identity(tensor: Tensor, *, without: Sequence[int] = ()) -> Link:
    return tuple(None if a in without else a for a in range(tensor.dim()))


def _right_aligned(ndim: int, output_ndim: int) -> Link:
    """Broadcasting: output dimension ``j`` holds the input's dimension ``j - offset``."""
    offset = output_ndim - ndim
    return tuple(j - offset if j >= offset else None for j in range(output_ndim))


def _broadcast_shape(shapes: Sequence[torch.Size]) -> tuple[int, ...]:
    """The shape ``shapes`` broadcast to (they are compatible: the operation ran)."""
    ndim = max(map(len, shapes), default=0)
    result = [1] * ndim
    for shape in shapes:
        for j, size in enumerate(shape, ndim - len(shape)):
            if size != 1:
                result[j] = size
    return tuple(result)


def _tensors(values: Sequence[Any]) -> list[Tensor]:
    return [value for value in values if isinstance(value, Tensor)]


def _dense(call: Call) -> list[Links]:
    return [{} for _ in call.outputs]


def _each_output(call: Call, links: Links) -> list[Links]:
    return [links for _ in call.outputs]


def _pointwise(call: Call) -> list[Links]:
    """Element-wise with broadcasting, for every tensor argument; dense unless the result has
    the broadcast shape (``torch.where(condition)`` returns indices)."""
    tensors = _tensors([*call.args, *call.kwargs.values()])
    shape = _broadcast_shape([t.shape for t in tensors])
    if any(tuple(output.shape) != shape for output in call.outputs):
        return _dense(call)
    return [
        {id(t): _right_aligned(t.dim(), output.dim()) for t in tensors} for output in call.outputs
    ]


def _same_shape(call: Call) -> list[Links]:
    """Conversions and copies of the tensor called on; a tensor argument gives only a dtype or
    device (``type_as``, ``to(other)``)."""
    links: Links = {id(t): UNRELATED for t in _tensors(call.args[1:])}
    links[id(call.source)] = _identity(call.source)
    return _each_output(call, links)


def _loss(call: Call) -> list[Links]:
    """A loss of ``torch.nn.functional``: element-wise with ``reduction="none"``."""
    if call.kwargs.get("reduction", "mean") == "none":
        return _pointwise(call)
    return _dense(call)


def _reduction(dim_position: int, default: object = None) -> Callable[[Call], list[Links]]:
    """Reduces its tensor over ``dim`` (all dimensions if ``None``), keeping the others."""

    def rule(call: Call) -> list[Links]:
        source = call.source
        if call.name in ("max", "min") and isinstance(call.argument(1, "other"), Tensor):
            return _pointwise(call)  # the element-wise maximum of two tensors
        dim = call.kwargs.get("dim", call.kwargs.get("axis"))
        if dim is None and len(call.args) > dim_position:
            dim = call.args[dim_position]
        dim = default if dim is None else dim
        if dim is None or isinstance(dim, bool) or dim in ((), []):  # std(x, unbiased)
            return _dense(call)
        reduced = _dims(dim, source.dim())
        links = []
        for output in call.outputs:
            if output.dim() == source.dim():  # keepdim
                link: Link = _identity(source, without=reduced)
            else:
                link = tuple(a for a in range(source.dim()) if a not in reduced)
            links.append({id(source): link} if len(link) == output.dim() else {})
        return links

    return rule


def _along(dim_position: int, keyword: str = "dim", default: object = None) -> Callable:
    """Keeps its tensor's shape but mixes the elements along ``dim`` (a scan, a softmax, a
    sort, a roll, a flip); every dimension if it has none."""

    def rule(call: Call) -> list[Links]:
        dims = call.argument(dim_position, keyword, default)
        if call.name == "flip" and len(call.args) > 2:  # Tensor.flip(*dims)
            dims = call.args[1:]
        if dims is None:
            return _dense(call)
        mixed = _dims(dims, call.source.dim())
        return _each_output(call, {id(call.source): _identity(call.source, without=mixed)})

    return rule


def _permutation(call: Call) -> list[Links]:
    """``transpose``, ``t``, ``T``, ``mT``, ``permute``, ``movedim``: output dimension ``j``
    holds input dimension ``order[j]``."""
    source, n = call.source, call.source.dim()
    order = list(range(n))
    if call.name in ("T", "H"):
        order.reverse()
    elif call.name == "permute":
        order = _dims(call.args[1:] if len(call.args) > 2 else call.argument(1, "dims"), n)
    elif call.name in ("movedim", "moveaxis"):
        moved = _dims(call.argument(1, "source"), n)
        placed = dict(zip(_dims(call.argument(2, "destination"), n), moved, strict=True))
        rest = iter(d for d in range(n) if d not in moved)
        order = [placed[j] if j in placed else next(rest) for j in range(n)]
    elif n >= 2:  # transpose, swapaxes, swapdims (two dimensions), t, mT, mH (the last two)
        pair = (call.argument(1, "dim0"), call.argument(2, "dim1"))
        first, second = _dims(pair if call.name.startswith(("transpose", "swap")) else (-2, -1), n)
        order[first], order[second] = order[second], order[first]
    return _each_output(call, {id(source): tuple(order)})


def _reshape(call: Call) -> list[Links]:
    """Reshapes keep an equal prefix and an equal suffix of the two shapes (row-major order
    keeps an index along a leading or trailing dimension whose size both shapes share)."""
    source = call.source
    links = []
    for output in call.outputs:
        before, after = source.shape, output.shape
        link: list[int | None] = [None] * len(after)
        prefix = 0
        while prefix < min(len(before), len(after)) and before[prefix] == after[prefix]:
            link[prefix] = prefix
            prefix += 1
        suffix = 1
        while suffix <= min(len(before), len(after)) - prefix and before[-suffix] == after[-suffix]:
            link[len(after) - suffix] = len(before) - suffix
            suffix += 1
        unrelated = {id(t): UNRELATED for t in _tensors(call.args[1:])}  # view_as's template
        links.append({**unrelated, id(source): tuple(link)})
    return links


def _squeeze(call: Call) -> list[Links]:
    source = call.source
    dims = call.argument(1, "dim")
    candidates = range(source.dim()) if dims is None else _dims(dims, source.dim())
    removed = {d for d in candidates if source.shape[d] == 1}
    return _each_output(
        call, {id(source): tuple(a for a in range(source.dim()) if a not in removed)}
    )


def _unsqueeze(call: Call) -> list[Links]:
    source = call.source
    (dim,) = _dims(call.argument(1, "dim"), source.dim() + 1)
    link = [*range(source.dim())]
    link.insert(dim, None)  # type: ignore[arg-type]
    return _each_output(call, {id(source): tuple(link)})


def _broadcast_source(call: Call) -> list[Links]:
    """``expand``, ``expand_as``, ``broadcast_to``, ``repeat``, ``tile``: right-aligned (a
    repeated or expanded dimension changes size, so is not kept)."""
    unrelated = {id(t): UNRELATED for t in _tensors(call.args[1:])}
    return [
        {**unrelated, id(call.source): _right_aligned(call.source.dim(), output.dim())}
        for output in call.outputs
    ]


def _broadcast_tensors(call: Call) -> list[Links]:
    """Output ``k`` is input ``k``, broadcast; it does not depend on the others."""
    tensors = _tensors(call.args)
    return [
        {
            **{id(t): UNRELATED for t in tensors},
            id(tensor): _right_aligned(tensor.dim(), output.dim()),
        }
        for tensor, output in zip(tensors, call.outputs, strict=True)
    ]


def _pieces(call: Call) -> list[Links]:
    """``split``, ``chunk``, ``tensor_split``, ``narrow``: every piece keeps the layout, and the
    split dimension keeps its place only where it keeps its size (the first and only piece)."""
    return [{id(call.source): _identity(call.source)} for _ in call.outputs]


def _select(call: Call) -> list[Links]:
    """``select(dim, index)``, ``unbind(dim)``: the dimension is removed."""
    source = call.source
    (dim,) = _dims(call.argument(1, "dim", 0), source.dim())
    link = tuple(a for a in range(source.dim()) if a != dim)
    return _each_output(call, {id(source): link})


def _concatenate(call: Call) -> list[Links]:
    """``cat``: each input in place (the concatenated dimension keeps its size only for an input
    that is all of it); ``stack``: a new dimension in front of ``dim``."""
    tensors = _tensors(call.argument(0, "tensors"))
    (output,) = call.outputs
    if call.name == "stack":
        (new,) = _dims(call.argument(1, "dim", 0), output.dim())
        link = tuple(None if j == new else j - (j > new) for j in range(output.dim()))
        return [{id(t): link for t in tensors}]
    return [{id(t): _identity(t) for t in tensors if t.dim() == output.dim()}]


def _gather(call: Call) -> list[Links]:
    """``gather(dim, index)``: the output has the index's shape; the source is kept in place
    except along ``dim``."""
    source, index = call.source, call.argument(2, "index")
    (dim,) = _dims(call.argument(1, "dim"), source.dim())
    return _each_output(
        call, _links((source, _identity(source, without=[dim])), (index, _identity(index)))
    )


def _index_select(call: Call) -> list[Links]:
    source, index = call.source, call.argument(2, "index")
    (dim,) = _dims(call.argument(1, "dim"), source.dim())
    index_link = tuple(0 if j == dim else None for j in range(source.dim()))
    return _each_output(
        call, _links((source, _identity(source, without=[dim])), (index, index_link))
    )


def _matmul(call: Call) -> list[Links]:
    """``a @ b``: the contracted dimensions go; batch dimensions broadcast from the right;
    ``a``'s rows and ``b``'s columns stay in place."""
    a, b = call.args[0], call.args[1]
    if call.name == "rmatmul":
        a, b = b, a
    (output,) = call.outputs
    dense: Link = (None,) * output.dim()
    if a.dim() >= 2 and b.dim() >= 2:  # (..., n, k) @ (..., k, p) = (..., n, p)
        batch = output.dim() - 2
        rows = (*_right_aligned(a.dim() - 2, batch), a.dim() - 2, None)
        columns = (*_right_aligned(b.dim() - 2, batch), None, b.dim() - 1)
        return [_links((a, rows), (b, columns))]
    if a.dim() >= 2:  # (..., n, k) @ (k,) = (..., n)
        return [_links((a, tuple(range(a.dim() - 1))), (b, dense))]
    if b.dim() >= 2:  # (k,) @ (..., k, p) = (..., p)
        return [_links((a, dense), (b, (*range(b.dim() - 2), b.dim() - 1)))]
    return _dense(call)


def _linear(call: Call) -> list[Links]:
    """``linear(x, weight, bias)``: ``x``'s last dimension is contracted, the others stay."""
    source = call.source
    return [{id(source): _identity(source, without=[source.dim() - 1])}]


def _outer(call: Call) -> list[Links]:
    a, b = call.args[0], call.args[1]
    return [_links((a, (0, None)), (b, (None, 0)))]


def _one_hot(call: Call) -> list[Links]:
    """``one_hot(x)``, ``embedding(x, weight)``: a new last dimension for each element of ``x``
    (the weight's rows are chosen by ``x``: linked densely)."""
    source = call.source
    return [{id(source): (*_identity(source), None)}]


def _getitem(call: Call) -> list[Links]:
    """``x[index]`` with slices, integers, ``None``, ``...`` and one block of adjacent integer
    index tensors (whose broadcast shape takes the block's place, and whose elements choose
    the result's); boolean masks, lists and index tensors apart are dense."""
    source, index = call.args
    (output,) = call.outputs
    items = list(index) if isinstance(index, tuple) else [index]
    if Ellipsis in items:
        at = items.index(Ellipsis)
        explicit = sum(item is not None for item in items if item is not Ellipsis)
        items[at : at + 1] = [slice(None)] * (source.dim() - explicit)
    tensors = [k for k, item in enumerate(items) if isinstance(item, Tensor)]
    known = all(
        item is None
        or isinstance(item, slice)
        or (isinstance(item, int) and not isinstance(item, bool) and not tensors)
        or (isinstance(item, Tensor) and item.dtype != torch.bool)
        for item in items
    )
    if not known or (tensors and tensors != list(range(tensors[0], tensors[-1] + 1))):
        return _dense(call)
    block = _broadcast_shape([items[k].shape for k in tensors])
    pairs: list[tuple[Tensor, Link]] = []
    source_link: list[int | None] = []
    consumed = 0  # dimensions of the source indexed so far
    for k, item in enumerate(items):
        if item is None:
            source_link.append(None)
        elif isinstance(item, slice):
            source_link.append(consumed)
        elif tensors and k == tensors[0]:
            for tensor in (items[t] for t in tensors):
                before = (None,) * len(source_link)
                pairs.append((tensor, (*before, *_right_aligned(tensor.dim(), len(block)))))
            source_link.extend([None] * len(block))
        consumed += item is not None
    source_link.extend(range(consumed, source.dim()))
    if len(source_link) != output.dim():
        return _dense(call)
    padded = [(tensor, (*link, *(None,) * (output.dim() - len(link)))) for tensor, link in pairs]
    return [_links(*padded, (source, tuple(source_link)))]


_RULE_TABLE: list[tuple[str, Callable[[Call], list[Links]]]] = [
    (
        "float double half bfloat16 long int short bool byte char to type type_as cpu cuda "
        "detach contiguous requires_grad clone dropout alpha_dropout feature_alpha_dropout",
        _same_shape,
    ),
    ("floor_divide", _pointwise),
    (
        "binary_cross_entropy binary_cross_entropy_with_logits mse_loss l1_loss huber_loss "
        "smooth_l1_loss soft_margin_loss poisson_nll_loss",
        _loss,
    ),
    (
        "sum nansum mean nanmean prod amax amin logsumexp all any argmax argmin count_nonzero "
        "std var std_mean var_mean median nanmedian aminmax max min",
        _reduction(1),
    ),
    ("norm", _reduction(2)),
    ("mode", _reduction(1, default=-1)),
    ("kthvalue", _reduction(2, default=-1)),
    ("softmax log_softmax softmin cumsum cumprod cummax cummin logcumsumexp", _along(1)),
    ("sort argsort", _along(1, default=-1)),
    ("msort", _along(1, default=0)),
    ("topk diff", _along(2, default=-1)),
    ("normalize", _along(2, default=1)),
    ("flip", _along(1, "dims")),
    ("roll", _along(2, "dims")),
    ("transpose swapaxes swapdims t T H mT mH permute movedim moveaxis", _permutation),
    ("view reshape view_as reshape_as flatten unflatten", _reshape),
    ("squeeze", _squeeze),
    ("unsqueeze", _unsqueeze),
    ("expand expand_as broadcast_to repeat tile", _broadcast_source),
    ("broadcast_tensors", _broadcast_tensors),
    ("split chunk tensor_split split_with_sizes narrow", _pieces),
    ("select unbind", _select),
    ("cat concat concatenate stack", _concatenate),
    ("gather", _gather),
    ("index_select", _index_select),
    ("matmul rmatmul mm bmm", _matmul),
    ("linear", _linear),
    ("outer ger", _outer),
    ("one_hot embedding", _one_hot),
    ("getitem", _getitem),
]

_RULES = {name: rule for names, rule in _RULE_TABLE for name in names.split()}
"""The rule of each operation by :func:`operation_name`; the others are element-wise if torch
tags them so, and dense otherwise."""
