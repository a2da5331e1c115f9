"""Training augmentation with the evaluation corruptions (MedMNIST-C style): each sample gets a
corruption and a severity drawn from a range, seeded by (seed, step, sample id), so an epoch is
reproducible and independent of batch composition; samples sharing a corruption run as one
batched call."""
from __future__ import annotations

from typing import Sequence

import torch

from ..preprocessing.geometry import Geometry
from ..errors import RBFError
from ..seeding import derive_seed, per_sample_uniform

__all__ = ["RandomCorruption"]


class RandomCorruption:
    """Draw, per sample, one corruption of ``names`` (names or glob patterns) and a severity
    uniformly in ``severities=(lo, hi)`` (inclusive, clamped to each corruption's max), applied
    with probability ``p``.

    ``aug(x, seed=0, step=0, sample_ids=None, geom=None)``: ``step`` is the epoch (or global
    step); the draws and the corruptions' nuisance values depend on (seed, step, sample id)
    only. ``aug.last`` holds the (names, severities) of the last call, for logging.
    """

    def __init__(self, names: Sequence[str] | str = ("light_leakage", "motion_blur",
                                                     "under_exposure", "over_exposure"),
                 severities: tuple[int, int] | int = (1, 4), p: float = 1.0):
        from . import REGISTRY, get_corruption

        pats = [names] if isinstance(names, str) else list(names)
        resolved: list[str] = []
        for pat in pats:
            found = REGISTRY.names(pat) if any(c in pat for c in "*?[") else [pat]
            if not found:
                raise RBFError(f"RandomCorruption: no corruption matches {pat!r}; "
                               f"see `rbf list corruptions`")
            resolved += [n for n in found if n not in resolved]
        self.names = tuple(resolved)
        self.corruptions = [get_corruption(n) for n in self.names]
        lo, hi = (severities, severities) if isinstance(severities, int) else severities
        if not (0 <= lo <= hi):
            raise RBFError(f"RandomCorruption: severities must be (lo, hi) with 0 <= lo <= hi, "
                           f"got {severities!r}")
        self.severities = (int(lo), int(hi))
        if not 0.0 <= p <= 1.0:
            raise RBFError(f"RandomCorruption: p must be in [0, 1], got {p}")
        self.p = float(p)
        self.last: tuple[list[str | None], torch.Tensor] | None = None

    def __repr__(self) -> str:
        return (f"RandomCorruption(names={list(self.names)}, severities={self.severities}, "
                f"p={self.p})")

    def draw(self, sample_ids: torch.Tensor, seed: int = 0, step: int = 0
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """(which corruption (B,) long, -1 = none; severity (B,) long) for these samples."""
        u = per_sample_uniform(seed, f"RandomCorruption/{step}", sample_ids, 3).double()
        n = len(self.corruptions)
        which = (u[:, 1] * n).long().clamp_max(n - 1)
        lo, hi = self.severities
        sev = lo + (u[:, 2] * (hi - lo + 1)).long().clamp_max(hi - lo)
        maxs = torch.tensor([c.max_severity for c in self.corruptions])
        sev = torch.minimum(sev, maxs[which])
        which = torch.where(u[:, 0] < self.p, which, torch.full_like(which, -1))
        sev = torch.where(which >= 0, sev, torch.zeros_like(sev))
        return which, sev

    def __call__(self, x: torch.Tensor, *, seed: int = 0, step: int = 0,
                 sample_ids: torch.Tensor | None = None,
                 geom: Geometry | None = None) -> torch.Tensor:
        B = x.shape[0]
        ids = torch.arange(B) if sample_ids is None else torch.as_tensor(sample_ids).long().cpu()
        which, sev = self.draw(ids, seed, step)
        out = x.clone()
        nuisance_seed = derive_seed(seed, step)
        for j, corr in enumerate(self.corruptions):
            sel = ((which == j) & (sev > 0)).nonzero().flatten()
            if sel.numel() == 0:
                continue
            dsel = sel.to(x.device)
            g = None if geom is None else geom[sel.to(geom.mask.device)]
            out[dsel] = corr(x[dsel], sev[sel], seed=nuisance_seed, sample_ids=ids[sel], geom=g)
        self.last = ([self.names[w] if w >= 0 else None for w in which.tolist()], sev)
        return out
