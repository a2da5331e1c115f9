"""The process group helper shared by the bench and the training loop.

Under ``torchrun`` (``WORLD_SIZE > 1``) :func:`setup` joins (or reuses) the default process group:
NCCL when the device is CUDA, gloo otherwise. Without ``torchrun`` everything here is a no-op on a
single "rank 0", so callers never branch on whether they are distributed.
"""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


class Dist:
    """This process's place in the group, and the collectives the library uses.

    ``rank``/``world``/``local_rank``; ``main`` is rank 0; ``comm_device`` is where tensors must
    sit for a collective (the device given to :meth:`use_device` under NCCL, else the CPU). :meth:`close` destroys the
    group only if this object created it.
    """

    def __init__(self, device_type: str = "cpu"):
        world = int(os.environ.get("WORLD_SIZE", "1"))
        self.initialised_here = False
        if world > 1 and dist.is_available() and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
            self.initialised_here = True
        self.on = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        self.rank = dist.get_rank() if self.on else 0
        self.world = dist.get_world_size() if self.on else 1
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0")) if self.on else 0
        self._nccl = self.on and dist.get_backend() == "nccl"
        self._device = torch.device("cpu")

    def use_device(self, device: torch.device) -> None:
        """The device this rank computes on (NCCL collectives run there)."""
        self._device = torch.device(device)

    @property
    def comm_device(self) -> torch.device:
        return self._device if self._nccl else torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def _reduce(self, t: torch.Tensor, op) -> torch.Tensor:
        if not self.on:
            return t
        dev = t.device
        t = t.to(self.comm_device)
        dist.all_reduce(t, op=op)
        return t.to(dev)

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over ranks (returned on ``t``'s device)."""
        return self._reduce(t, dist.ReduceOp.SUM if self.on else None)

    def max_(self, t: torch.Tensor) -> torch.Tensor:
        """Element-wise maximum over ranks."""
        return self._reduce(t, dist.ReduceOp.MAX if self.on else None)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.on:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.on:
            return [obj]
        out: list = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.on:
            dist.barrier()

    def close(self) -> None:
        if self.initialised_here and dist.is_initialized():
            dist.destroy_process_group()
