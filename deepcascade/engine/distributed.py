"""A tiny distributed helper: ``torchrun`` launches, nccl on GPU, gloo on CPU, single process needs nothing.

Gradients are averaged with explicit all-reduces after each backward instead of wrapping networks in
DistributedDataParallel: the WGAN-GP gradient penalty needs double backward through the critic, which
DDP's reducer does not support, and an explicit all-reduce keeps every stage's code plain.
"""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def init_from_env(device_type: str) -> bool:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1). Returns True when distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return True


def local_rank() -> int:
    """This process's rank on its own node (torchrun's LOCAL_RANK); 0 when not launched by torchrun."""
    return int(os.environ.get("LOCAL_RANK", "0")) if world_size() > 1 else 0


def _collective_device() -> torch.device:
    """Where small collective tensors live: the current GPU under nccl, the CPU under gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def from_rank0(value):
    """``value`` as rank 0 has it, on every rank (a small picklable object)."""
    if world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def failing_ranks(failed: bool) -> list[int]:
    """The ranks whose ``failed`` is true (a collective: every rank calls it and gets the same list)."""
    if world_size() == 1:
        return [0] if failed else []
    t = torch.zeros(world_size(), device=_collective_device())
    t[rank()] = float(failed)
    dist.all_reduce(t)
    return [r for r, v in enumerate(t.tolist()) if v]


def host() -> str:
    return socket.gethostname()


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def broadcast_module(module: torch.nn.Module) -> None:
    """Make every rank start from rank 0's parameters and buffers."""
    if world_size() > 1:
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def all_reduce_grads(params) -> None:
    """Average gradients over ranks (called between backward and the optimizer step)."""
    n = world_size()
    if n == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= n
    offset = 0
    for g in grads:
        g.copy_(flat[offset: offset + g.numel()].view_as(g))
        offset += g.numel()


def sync_buffers(module: torch.nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) so that ranks stay identical."""
    n = world_size()
    if n == 1:
        return
    for b in module.buffers():
        if b.is_floating_point():
            dist.all_reduce(b.data)
            b.data /= n
        else:
            dist.broadcast(b.data, src=0)


def all_reduce_means(values: dict[str, float], device) -> dict[str, float]:
    """Average logged scalars over ranks (same keys on every rank)."""
    if world_size() == 1 or not values:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(values, (t / world_size()).tolist()))


def any_true(flags: list[bool], device) -> list[bool]:
    """Element-wise OR of boolean flags over ranks (e.g. 'a loss is NaN', 'a stop signal arrived')."""
    if world_size() == 1:
        return list(flags)
    t = torch.tensor([float(f) for f in flags], dtype=torch.float32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]
