"""Training/validation data for ``rbf train``: a data-set folder (split by subject) or the
synthetic generator, the per-epoch sample order (shuffled or class-balanced, sharded for DDP) and
the loader over it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import DataError
from ..grades import NUM_GRADES
from ..seeding import derive_seed, torch_generator
from .config import TrainConfig, parse_data_spec

DEFAULT_SYNTHETIC_N = 2000


@dataclass
class TrainData:
    train: Dataset
    val: Dataset
    train_labels: torch.Tensor   # (N_train,) long
    val_labels: torch.Tensor
    fingerprint: str             # identity of the training data (stored in the checkpoint)
    description: str             # one line for logs and docs


def _labels_of(ds: Dataset) -> torch.Tensor:
    lab = getattr(ds, "labels", None)
    if lab is None:
        lab = getattr(ds, "grades", None)
    if lab is None:  # last resort: read the items
        lab = [int(ds[i]["label"]) for i in range(len(ds))]
    return torch.as_tensor(lab, dtype=torch.long).flatten()


class MemoryCached(Dataset):
    """Keeps items (without lesion masks) in memory after their first rendering, up to
    ``max_bytes`` of images: synthetic images cost about as much to render as a training step."""

    def __init__(self, base: Dataset, max_bytes: int = 2 << 30):
        self.base = base
        self.labels = _labels_of(base)
        self.max_bytes = max_bytes
        self._items: dict[int, dict[str, Any]] = {}
        self._bytes = 0

    def __len__(self) -> int:
        return len(self.base)

    @property
    def complete(self) -> bool:
        return len(self._items) == len(self.base)

    def fill(self, num_workers: int, batch_size: int = 32) -> None:
        """Render every item now with ``num_workers`` processes (as far as memory allows)."""
        from ..data import collate
        loader = DataLoader(self.base, batch_size=batch_size, num_workers=num_workers,
                            collate_fn=collate, worker_init_fn=_worker_init)
        for batch in loader:
            for j, i in enumerate(batch["index"].tolist()):
                if i in self._items:
                    continue
                img = batch["image"][j].clone()
                if self._bytes + img.numel() > self.max_bytes:
                    return
                self._items[i] = {"image": img, "label": int(batch["label"][j]), "index": i,
                                  "id": batch["id"][j]}
                self._bytes += img.numel()

    def __getitem__(self, i: int) -> dict[str, Any]:
        it = self._items.get(i)
        if it is None:
            it = dict(self.base[i])
            it.pop("lesion_mask", None)
            nb = it["image"].numel()
            if self._bytes + nb <= self.max_bytes:
                self._items[i] = it
                self._bytes += nb
        return it


def synthetic_val_seed(seed: int) -> int:
    """Seed of the held-out synthetic validation set (a different stream from training's)."""
    return derive_seed("synthetic-val", seed) % (2 ** 31)


def build_data(cfg: TrainConfig, size: int) -> TrainData:
    kind, n = parse_data_spec(cfg.data)
    if kind == "synthetic":
        from ..data import synth
        n = n or DEFAULT_SYNTHETIC_N
        n_val = max(2, int(round(n * cfg.val_fraction)))
        vseed = synthetic_val_seed(cfg.seed)
        train = MemoryCached(synth.SyntheticDataset(n, size, seed=cfg.seed))
        val = MemoryCached(synth.SyntheticDataset(n_val, size, seed=vseed))
        if cfg.num_workers > 0:  # render everything once, in parallel, before training
            train.fill(cfg.num_workers)
            val.fill(cfg.num_workers)
        fp = f"synthetic seed={cfg.seed} n={n} size={size}; val seed={vseed} n={n_val}"
        return TrainData(train, val, _labels_of(train), _labels_of(val), fp,
                         f"synthetic fundus images: {n} train (seed {cfg.seed}), {n_val} held-out "
                         f"validation (seed {vseed}), {size} px")
    from ..data import FundusDataset, dataset_fingerprint, read_records, split_records
    rs = read_records(cfg.data, labels=cfg.labels)
    if len(rs.records) < 2:
        raise DataError(f"--data {cfg.data}: found {len(rs.records)} labelled image(s); need at "
                        "least 2 to train and validate")
    tr, va = split_records(rs.records, val_fraction=cfg.val_fraction, seed=cfg.seed)
    if not tr or not va:
        raise DataError(f"--data {cfg.data}: the split left an empty side ({len(tr)} train, "
                        f"{len(va)} val); add images or change --val-fraction")
    train = FundusDataset(tr, size, cache_dir=cfg.cache_dir)
    val = FundusDataset(va, size, cache_dir=cfg.cache_dir)
    fp = (f"{dataset_fingerprint(rs.records)} ({rs.layout} at {rs.root}; train split "
          f"{dataset_fingerprint(tr)}, val_fraction={cfg.val_fraction}, split seed={cfg.seed})")
    return TrainData(train, val, _labels_of(train), _labels_of(val), fp,
                     f"{rs.root} ({rs.layout}): {len(tr)} train, {len(va)} validation images "
                     f"(split by subject, seed {cfg.seed}), {size} px")


def class_counts(labels: torch.Tensor, num_classes: int = NUM_GRADES) -> torch.Tensor:
    return torch.bincount(labels, minlength=num_classes)[:num_classes]


def class_weights(labels: torch.Tensor, num_classes: int = NUM_GRADES) -> torch.Tensor:
    """Inverse-frequency weights (mean 1 over the classes present; 0 for absent classes)."""
    counts = class_counts(labels, num_classes).double()
    w = torch.where(counts > 0, 1.0 / counts.clamp_min(1), torch.zeros_like(counts))
    present = (counts > 0).sum().clamp_min(1)
    return (w * present / w.sum().clamp_min(1e-12)).float()


def epoch_order(labels: torch.Tensor, epoch: int, seed: int, balance: str) -> torch.Tensor:
    """The epoch's sample order: a seeded permutation, or (``balance="sampler"``) N draws with
    replacement, each class equally likely."""
    n = int(labels.numel())
    g = torch_generator("train-order", seed, epoch)
    if balance == "sampler":
        w = class_weights(labels)[labels].double()
        return torch.multinomial(w, n, replacement=True, generator=g)
    return torch.randperm(n, generator=g)


def shard_order(order: torch.Tensor, rank: int, world: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, draws) of this rank: the order padded (wrapping) to a multiple of ``world`` so
    every rank runs the same number of steps; ``draws`` are positions in the padded order."""
    n = int(order.numel())
    total = -(-n // world) * world
    pos = torch.arange(total) % max(n, 1)
    padded = order[pos] if n else order
    draws = torch.arange(total)
    return padded[rank::world], draws[rank::world]


class _EpochView(Dataset):
    """A dataset seen through one epoch's (sharded) order; items gain ``draw``."""

    def __init__(self, base: Dataset, indices: torch.Tensor, draws: torch.Tensor):
        self.base, self.indices, self.draws = base, indices.tolist(), draws.tolist()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = dict(self.base[self.indices[i]])
        item.pop("lesion_mask", None)
        item["draw"] = self.draws[i]
        return item


def _collate(items: list[dict]) -> dict:
    from ..data import collate
    out = collate(items)
    draws = out.get("draw", [])
    out["draw"] = torch.as_tensor(draws, dtype=torch.long)
    return out


def _worker_init(_worker_id: int) -> None:
    torch.set_num_threads(1)


def make_epoch_loader(ds: Dataset, indices: torch.Tensor, draws: torch.Tensor, batch_size: int,
                      num_workers: int = 0) -> DataLoader:
    if isinstance(ds, MemoryCached) and ds.complete:
        num_workers = 0  # everything is in memory: worker start-up would only cost time
    view = _EpochView(ds, indices, draws)
    return DataLoader(view, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=_collate, worker_init_fn=_worker_init if num_workers else None)
