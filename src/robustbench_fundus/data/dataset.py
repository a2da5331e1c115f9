"""Streaming data set and loader of working-size crops.

``FundusDataset(records, size)`` yields dicts ``image`` (uint8 ``(3,S,S)``), ``geometry`` (the
crop's fundus geometry, float32 ``(7,)``: :meth:`~robustbench_fundus.preprocessing.Geometry.params`,
stored with the cached crop), ``label`` (int), ``index`` (position in ``records``) and ``id`` (the
image id); :func:`collate` stacks ``geometry`` to ``(B,7)``, which
:meth:`Geometry.from_params <robustbench_fundus.preprocessing.Geometry.from_params>` turns back into
the mask, centre and radius the benchmark would otherwise estimate again (the same, bit for bit).
Images are read one by one (from
the on-disk crop cache when possible), never the whole set in memory. An image that fails to
decode during loading is not fatal unless ``strict``: the item is marked bad, :func:`collate`
drops it from its batch, and :class:`FundusLoader` counts and lists it (``.skipped``).
"""
from __future__ import annotations

import hashlib
import os
from typing import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import DataError, RBFError
from ..seeding import torch_generator
from .cache import CacheDir, load_entry
from .layouts import Record, RecordSet


class FundusDataset(Dataset):
    """Map-style data set of working-size crops for a list of :class:`Record`."""

    def __init__(self, records: Sequence[Record] | RecordSet, size: int = 512,
                 cache_dir: CacheDir = None, strict: bool = False, margin: float = 1.0):
        if isinstance(records, RecordSet):
            records = records.records
        self.records = list(records)
        if int(size) < 8:
            raise RBFError(f"size {size}: working size must be at least 8 pixels (e.g. 512)")
        self.size = int(size)
        self.cache_dir = cache_dir
        self.strict = strict
        self.margin = margin

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        r = self.records[index]
        try:
            img, geom, hit = load_entry(r.path, self.size, self.cache_dir, self.margin)
        except DataError as exc:
            if self.strict:
                raise
            return {"bad": True, "index": int(index), "id": r.image_id, "path": str(r.path),
                    "reason": str(exc)}
        return {"image": img, "geometry": geom, "label": int(r.label), "index": int(index),
                "id": r.image_id, "cache_hit": hit}

    @property
    def labels(self) -> list[int]:
        """All grades, without loading images (class weights, stratification)."""
        return [r.label for r in self.records]

    @property
    def ids(self) -> list[str]:
        return [r.image_id for r in self.records]

    def fingerprint(self, indices: Sequence[int] | None = None) -> str:
        """:func:`dataset_fingerprint` of the records at ``indices`` (default all), with the
        working size and crop margin: two sets with equal fingerprints give equal crops."""
        recs = self.records if indices is None else [self.records[int(i)] for i in indices]
        h = hashlib.blake2b(digest_size=8)
        h.update(f"{dataset_fingerprint(recs)}\x1f{self.size}\x1f{self.margin}".encode())
        return h.hexdigest()


def collate(items: list[dict]) -> dict:
    """Stack good items; bad ones go to ``skipped`` as (path, reason)."""
    good = [it for it in items if not it.get("bad")]
    skipped = [(it["path"], it["reason"]) for it in items if it.get("bad")]
    if good:
        images = torch.stack([it["image"] for it in good])
    else:
        images = torch.zeros(0, 3, 0, 0, dtype=torch.uint8)
    extra = {k: v for k, v in good[0].items() if k not in ("image", "label", "index", "id",
                                                            "cache_hit")} if good else {}
    out = {
        "image": images,
        "label": torch.tensor([it["label"] for it in good], dtype=torch.long),
        "index": torch.tensor([it["index"] for it in good], dtype=torch.long),
        "id": [it["id"] for it in good],
        "cache_hits": sum(bool(it.get("cache_hit")) for it in good),
        "skipped": skipped,
    }
    for k in extra:  # e.g. SyntheticDataset's lesion_mask
        vals = [it[k] for it in good]
        out[k] = torch.stack(vals) if isinstance(vals[0], torch.Tensor) else vals
    return out


class _IndexSampler(Sampler[int]):
    """Indices ``rank, rank+world, ...`` (optionally in a seeded order per epoch)."""

    def __init__(self, n: int, shard: tuple[int, int] | None, shuffle: bool, seed: int):
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, 0
        rank, world = shard if shard is not None else (0, 1)
        if world < 1 or not 0 <= rank < world:
            raise RBFError(f"shard {shard}: must be (rank, world) with 0 <= rank < world")
        self.rank, self.world = rank, world

    def __iter__(self) -> Iterator[int]:
        order = (torch.randperm(self.n, generator=torch_generator("loader", self.seed, self.epoch))
                 if self.shuffle else torch.arange(self.n))
        return iter(order[self.rank::self.world].tolist())

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))


def _worker_init(_worker_id: int) -> None:
    torch.set_num_threads(1)


class FundusLoader:
    """Iterable over collated batches; counts images skipped as unreadable.

    ``skipped``: list of (path, reason) met so far; ``n_skipped`` its length; ``cache_hits``
    and ``n_loaded`` count images served. Empty batches (every item unreadable) are not yielded.
    """

    def __init__(self, loader: DataLoader, sampler: _IndexSampler):
        self.loader = loader
        self.sampler = sampler
        self.skipped: list[tuple[str, str]] = []
        self.cache_hits = 0
        self.n_loaded = 0

    @property
    def dataset(self):
        return self.loader.dataset

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[dict]:
        for batch in self.loader:
            self.skipped.extend(batch["skipped"])
            self.cache_hits += batch["cache_hits"]
            self.n_loaded += len(batch["id"])
            if len(batch["id"]):
                yield batch


def default_workers() -> int:
    return min(4, max(0, (os.cpu_count() or 1) - 1))


def make_loader(dataset: Dataset, batch_size: int = 32, num_workers: int | None = None,
                shard: tuple[int, int] | None = None, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False) -> FundusLoader:
    """A streaming loader over ``dataset`` with ``num_workers`` worker processes.

    ``shard=(rank, world)`` keeps every ``world``-th index starting at ``rank`` (after the seeded
    shuffle when ``shuffle``), for data-parallel evaluation. Batches are dicts from :func:`collate`.
    """
    if batch_size < 1:
        raise RBFError(f"batch_size {batch_size}: must be at least 1")
    workers = default_workers() if num_workers is None else int(num_workers)
    sampler = _IndexSampler(len(dataset), shard, shuffle, seed)
    dl = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                    collate_fn=collate, drop_last=drop_last,
                    worker_init_fn=_worker_init if workers > 0 else None,
                    persistent_workers=False, prefetch_factor=2 if workers > 0 else None)
    return FundusLoader(dl, sampler)


def dataset_fingerprint(records: Sequence[Record] | RecordSet) -> str:
    """A short hash of a data set's identity: ids, labels, subjects and file byte sizes, in
    id order (independent of record order; a changed label or a re-encoded file changes it)."""
    if isinstance(records, RecordSet):
        records = records.records
    h = hashlib.blake2b(digest_size=8)
    for r in sorted(records, key=lambda r: r.image_id):
        try:
            nbytes = os.path.getsize(r.path)
        except OSError:
            nbytes = -1
        h.update(f"{r.image_id}\x1f{r.label}\x1f{r.subject or ''}\x1f{nbytes}\x1e".encode())
    return h.hexdigest()
