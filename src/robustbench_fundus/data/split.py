"""Stratified, subject-grouped train/validation split.

Every subject (or, without subjects, every image) is one group and goes wholly to one side, so
the two eyes of a person never straddle the split. Groups are placed greedily, largest first, on
the side whose per-grade shortfall they fill best (the shortfall of each grade measured as a
fraction of that grade's total, so rare grades count as much as common ones). The order among
groups of equal size comes from a hash of ``(seed, group key)``: the split depends only on the
seed and the set of records, not on their order.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from ..errors import RBFError
from ..seeding import derive_seed
from .layouts import GRADES, Record


def split_records(records: Sequence[Record], val_fraction: float = 0.3,
                  seed: int = 0) -> tuple[list[Record], list[Record]]:
    """Split into (train, val), stratified by grade and grouped by subject.

    Both lists keep the input order. ``val_fraction`` in (0, 1).
    """
    if not 0.0 < float(val_fraction) < 1.0:
        raise RBFError(f"val_fraction {val_fraction}: must be between 0 and 1 (e.g. 0.3)")
    if not records:
        return [], []
    n_grades = max(max(GRADES), max(r.label for r in records)) + 1
    groups: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(n_grades))
    for r in records:
        groups[r.group][r.label] += 1
    keys = sorted(groups, key=lambda k: (-groups[k].sum(), derive_seed("split", seed, k)))
    total = np.zeros(n_grades)
    for k in keys:
        total += groups[k]
    weight = 1.0 / np.maximum(total, 1.0)
    target_val = total * val_fraction
    target_train = total - target_val
    val = np.zeros(n_grades)
    train = np.zeros(n_grades)
    to_val: set[str] = set()
    for k in keys:
        g = groups[k]
        dv = (target_val - val) * weight
        dt = (target_train - train) * weight
        gw = g * weight
        cost_val = ((dv - gw) ** 2).sum() + (dt ** 2).sum()
        cost_train = (dv ** 2).sum() + ((dt - gw) ** 2).sum()
        if cost_val < cost_train - 1e-12:
            val += g
            to_val.add(k)
        else:
            train += g
    tr = [r for r in records if r.group not in to_val]
    va = [r for r in records if r.group in to_val]
    return tr, va


def subject_overlap(train: Sequence[Record], val: Sequence[Record]) -> int:
    """Number of groups (subjects, or images without subject) on both sides."""
    return len({r.group for r in train} & {r.group for r in val})
