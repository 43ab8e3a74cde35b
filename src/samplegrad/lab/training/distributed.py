"""Data-parallel training under ``torchrun``: the process group, ranks, shards and reductions.

``torchrun --nproc-per-node N -m samplegrad train vae ...`` starts ``N`` processes and sets
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in each one's environment; :func:`process_group`
sees them and joins the group (gloo on the CPU, NCCL on GPUs, one GPU per process:
``cuda:LOCAL_RANK``). Without them every function here answers as the only process of a
group of one, so a trainer runs unchanged outside ``torchrun``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

from samplegrad.generators import sharded

_TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (its environment names a rank)."""
    return all(name in os.environ for name in _TORCHRUN_VARIABLES)


def launched_processes() -> int:
    """The number of processes ``torchrun`` started (1 outside ``torchrun``)."""
    return int(os.environ["WORLD_SIZE"]) if launched() else 1


def active() -> bool:
    """Whether a process group of more than one process is open."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank: in the open group, else the one ``torchrun`` gave, else 0."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0")) if launched() else 0


def world_size() -> int:
    """The number of processes in the open group (1 without one)."""
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Whether this process writes the files (rank 0)."""
    return rank() == 0


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """Under ``torchrun`` and with no group open yet, join one for ``device``'s type (gloo on
    the CPU; NCCL on CUDA, after selecting ``cuda:LOCAL_RANK``) and leave it on exit;
    otherwise do nothing (also when the caller opened a group itself)."""
    if not launched() or (dist.is_available() and dist.is_initialized()):
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield
    except BaseException:  # the others may never get here: leave without waiting for them
        dist.destroy_process_group()
        raise
    close()


def close() -> None:
    """Leave the open group once every process has reached this point: a process that tore
    its connections down while another still received the last collective from it would
    abort (gloo calls ``std::terminate``)."""
    dist.barrier()
    dist.destroy_process_group()


def shard(total: int) -> slice:
    """This process's contiguous rows of a batch of ``total``: rank ``r`` of ``W`` takes rows
    ``total * r // W`` to ``total * (r + 1) // W`` (equal shares when ``W`` divides
    ``total``, else shares one row apart)."""
    r, w = rank() if active() else 0, world_size()
    return slice(total * r // w, total * (r + 1) // w)


def all_reduce(values: Sequence[float], device: torch.device, op: str = "sum") -> list[float]:
    """``values`` summed (``op="sum"``) or maximised (``"max"``) over the processes,
    element-wise, in float64; ``values`` themselves without a group."""
    if not active():
        return [float(value) for value in values]
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return tensor.tolist()


def weighted_mean(tensors: Sequence[Tensor], weight: float) -> None:
    """Each of ``tensors`` replaced, in place, by the sum over the processes of ``weight *
    tensor``, in float64 and one all-reduce; with ``weight`` this process's share of the
    global batch (the shares sum to 1), the mean weighted by the shares. Nothing without a
    group.

    A statistic that is an affine function of its batch's mean, with the same coefficients in
    every process (a moving average of the mean cost, ``d b + (1 - d) mean``), thus becomes
    the value one process computes from the whole batch."""
    if not active() or not tensors:
        return
    flat = torch.cat([tensor.detach().reshape(-1).double() for tensor in tensors]) * weight
    dist.all_reduce(flat)
    for tensor, mean in zip(tensors, flat.split([t.numel() for t in tensors]), strict=True):
        tensor.copy_(mean.view_as(tensor))


def broadcast(value: object) -> object:
    """Rank 0's ``value`` in every process (any picklable object)."""
    if not active():
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def data_parallel(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` wrapped in :class:`~torch.nn.parallel.DistributedDataParallel` in a group
    (which averages its parameters' gradients over the processes in ``backward`` and copies
    rank 0's buffers to the others before each forward); ``module`` itself without one."""
    if not active():
        return module
    device_ids = [torch.cuda.current_device()] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)


def sharded_noise(
    generator: torch.Generator, rows: slice, total: int
) -> contextlib.AbstractContextManager[None]:
    """In a group, :func:`samplegrad.generators.sharded` for this process's ``rows`` of a batch
    of ``total``: the processes together draw the noise one process would; without a group,
    nothing (a single process draws as it always has)."""
    if not active():
        return contextlib.nullcontext()
    return sharded(generator, rows.start, rows.stop - rows.start, total)
