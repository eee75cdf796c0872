"""PyTorch's own distributed engine (``torchrun``): process group set-up and helpers."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from mast.common.devices import resolve_device


@dataclass(frozen=True)
class World:
    """Where this process stands: ``rank`` of ``size`` processes, on ``device``."""

    rank: int
    size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str = "auto") -> World:
    """Joins the process group when launched by ``torchrun`` (``WORLD_SIZE > 1``):
    nccl on CUDA, gloo on CPU; one GPU per local rank.

    Raises:
        ValueError: one line, for a ``train.device`` that is unknown or absent here.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = resolve_device(device, "train.device")
    if chosen.type == "cuda" and chosen.index is None:
        chosen = torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    if size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
    return World(rank, size, chosen)


def all_finite(value: torch.Tensor, world: World) -> bool:
    """True when ``value`` is finite on every process (all skip a bad step together)."""
    flag = torch.isfinite(value.detach()).all().float().reshape(1)
    if world.size > 1:
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() > 0)


def total(value: int, world: World) -> int:
    """``value`` summed over every process."""
    if world.size == 1:
        return value
    summed = torch.tensor([value], dtype=torch.long, device=world.device)  # nccl reduces device tensors only
    dist.all_reduce(summed)
    return int(summed.item())


def share_buffers(module: torch.nn.Module, world: World) -> None:
    """Copies rank 0's buffers (BatchNorm running statistics) to every rank:
    DDP keeps parameters in step, but each rank updates its buffers locally."""
    if world.size > 1:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
