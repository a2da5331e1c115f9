"""The saliency condition of a bench run (``evaluate(saliency=N)``, ``rbf bench --saliency N``).

Integrated gradients on N images spread evenly over the evaluated set, in model-input space
(after the model's preprocessing), scored by :func:`~robustbench_fundus.interpret.saliency_scores`
and combined with :func:`~robustbench_fundus.interpret.combine_saliency`. It is resumable per
part of ``part_size`` images: each part's per-sample scores are committed to the store as a
partial row, and ranks take parts in turn.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import RBFError
from .conditions import Condition
from .pipeline import BatchPipeline
from .resolve import limit_indices

#: Per-sample saliency scores kept per part (no curves: the summary needs only these).
PER_SAMPLE = ("target", "prob", "lesion_share", "lesion_area", "disc_share", "deletion_auc",
              "deletion_auc_random", "ig_delta")


def run_saliency(cond: Condition, mi, di, dd, dev: torch.device, seed: int, part_size: int,
                 st, entry: dict) -> dict | None:
    """Score saliency on ``cond.n_images`` images; returns the result row when the store is not
    used (else the row is in the store), on rank 0."""
    N = len(di.indices)
    sel = [di.indices[p] for p in limit_indices(N, cond.n_images)]
    parts = [sel[i:i + part_size] for i in range(0, len(sel), part_size)]
    todo = None
    if dd.main:
        done = st.done_chunks(entry, part_size).get(cond.key, set()) if st is not None else set()
        todo = [p for p in range(len(parts)) if p not in done]
    todo = dd.broadcast(todo)
    pipe = BatchPipeline(mi, di, dev, seed, {})
    extra = {"device": str(dev), "torch_version": torch.__version__}
    got_all: dict[int, tuple[dict, float]] = {}
    row = None
    for r in range(0, len(todo), dd.world):
        mine = todo[r + dd.rank] if r + dd.rank < len(todo) else None
        res = None
        if mine is not None:
            t0 = time.perf_counter()
            payload = _saliency_part(pipe, di, parts[mine], cond, seed)
            res = (mine, payload, time.perf_counter() - t0)
        got = {p: (pl, s) for p, pl, s in (g for g in dd.gather(res) if g is not None)}
        if dd.main:
            if st is not None:
                row = st.commit_parts(entry, cond, part_size, len(parts), got,
                                      lambda c, pls, secs: finalize_saliency(c, pls, secs,
                                                                             extra)) or row
            else:
                got_all.update(got)
    if dd.main and st is None:
        row = finalize_saliency(cond, [got_all[p][0] for p in range(len(parts))],
                                sum(v[1] for v in got_all.values()), {})
    return row


def _mask_to(m: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    m = m.float()
    if m.dim() == 3:
        m = m.unsqueeze(1)
    if tuple(m.shape[-2:]) != tuple(size):
        m = F.interpolate(m, size=size, mode="area")
    return m >= 0.5


def _saliency_part(pipe: BatchPipeline, di, idx: list[int], cond: Condition, seed: int) -> dict:
    """Per-sample saliency scores (JSON-able) of the dataset items ``idx``."""
    from ..data.dataset import collate
    from ..interpret import saliency_scores
    batch = collate([di.dataset[i] for i in idx])
    if batch.get("skipped"):
        raise RBFError(f"image {batch['skipped'][0][0]} could not be read "
                       f"({batch['skipped'][0][1]}); fix or remove it and rerun")
    img = batch["image"]
    x_raw = (img.float() / 255.0 if img.dtype == torch.uint8 else img.float()).to(pipe.device)
    geom = pipe.geometry(x_raw)                        # on the clean working crop
    x = pipe.model_input(x_raw, geom)                  # model-input space
    size = tuple(x.shape[-2:])
    fundus = _mask_to(geom.mask, size)
    lesion = batch.get("lesion_mask")                  # synthetic items: (B,1,S,S) at work size
    lesion = _mask_to(lesion, size).to(pipe.device) if isinstance(lesion, torch.Tensor) else None
    ids = [int(i) for i in batch["index"].tolist()]
    out = saliency_scores(pipe.m, x, batch["label"].to(pipe.device), lesion,
                          fundus.to(pipe.device), steps=int(cond.steps),
                          baseline=cond.baseline, seed=seed, method=cond.name, sample_ids=ids,
                          head=pipe.head)
    per = out["per_sample"]

    def _vals(a) -> list:
        return [None if not math.isfinite(float(v)) else float(v) for v in np.asarray(a).ravel()]
    return {"index": ids,
            "meta": {k: out[k] for k in ("method", "baseline", "steps", "seed", "points")
                     if k in out},
            "per_sample": {k: _vals(per[k]) for k in PER_SAMPLE if k in per}}


def finalize_saliency(cond: Condition, payloads: list[dict], seconds: float,
                      extra: dict) -> dict:
    """The result row of a saliency condition from its parts' per-sample scores (in order)."""
    from ..interpret import combine_saliency, leaderboard_columns
    parts = []
    for pl in payloads:
        per = {k: np.asarray([np.nan if v is None else v for v in vals], dtype=np.float64)
               for k, vals in pl["per_sample"].items()}
        parts.append({"n": len(pl["index"]), **pl["meta"], "per_sample": per})
    comb = combine_saliency(parts)
    summary = _clean_floats({k: v for k, v in comb.items() if k != "per_sample"})
    row = dict(extra)
    row.update(seconds=float(seconds), n=int(summary["n"]), metrics={
        "saliency": summary, "leaderboard": leaderboard_columns(summary)})
    for k in ("lesion_share", "lesion_area", "disc_share", "deletion_auc", "deletion_auc_random",
              "ig_delta"):
        row[k] = summary.get(k)
    return row


def _clean_floats(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[k] = v
    return out
