"""Distributed data parallel (DDP) plumbing for `torchrun --nproc-per-node N -m counterfeit train …`.

Without torchrun's environment (WORLD_SIZE unset) everything here is a no-op: one process, rank 0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Process:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files and shows progress; the others only compute."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device_name: str) -> Process:
    """Join the process group when launched by torchrun; pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    if device_name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but no CUDA GPU is available: use --device cpu.")
    if world_size == 1:
        return Process(device=torch.device("cuda" if use_cuda else "cpu"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    # NCCL is the fast path between GPUs; gloo is what works on CPUs (and what the tests use).
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    device = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    return Process(rank=dist.get_rank(), world_size=world_size, device=device)


def wrap(model: nn.Module, process: Process) -> nn.Module:
    if not process.distributed:
        return model
    device_ids = [process.device.index] if process.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def barrier(process: Process) -> None:
    if process.distributed:
        dist.barrier()


def teardown(process: Process) -> None:
    if process.distributed and dist.is_initialized():
        dist.destroy_process_group()
