"""Seeded random generators that never touch global random state.

Random draws are keyed by (global seed, a name such as the corruption's, a sample id), hashed to a
64-bit seed, so one sample gets the same draws whatever batch it sits in and on whatever device.
"""
from __future__ import annotations

import hashlib
from typing import Iterable, Sequence

import numpy as np
import torch


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from any parts (ints, strings); independent of Python's hash salt."""
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        h.update(repr(p).encode("utf-8"))
        h.update(b"\x1f")
    return int.from_bytes(h.digest(), "little") & ((1 << 63) - 1)


def torch_generator(*parts: object) -> torch.Generator:
    """A CPU torch.Generator seeded from ``parts``."""
    g = torch.Generator(device="cpu")
    g.manual_seed(derive_seed(*parts))
    return g


def numpy_generator(*parts: object) -> np.random.Generator:
    return np.random.default_rng(derive_seed(*parts))


def per_sample_uniform(seed: int, name: str, sample_ids: Sequence[int] | torch.Tensor, n: int,
                       device: torch.device | str | None = None) -> torch.Tensor:
    """``(B, n)`` uniform [0,1) draws, row i depending only on (seed, name, sample_ids[i]).

    Draws are made on the CPU in float64 and moved to ``device`` so CPU and GPU agree exactly.
    """
    ids: Iterable[int] = sample_ids.tolist() if isinstance(sample_ids, torch.Tensor) else sample_ids
    rows = [torch.rand(n, generator=torch_generator(seed, name, int(i)), dtype=torch.float64)
            for i in ids]
    out = torch.stack(rows) if rows else torch.zeros(0, n, dtype=torch.float64)
    return out.to(device=device, dtype=torch.float32) if device is not None else out.float()
