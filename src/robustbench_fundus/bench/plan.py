"""Planning and resuming: which (chunk, condition) pairs a run still needs, and the chunk loop.

The evaluated images are cut into fixed *chunks* of ``chunk_size`` consecutive samples (of the
evaluated index list). Within a chunk the loop is batch-outer: each image is decoded (or read
from the crop cache, or rendered) once and goes through every pending condition while in
memory; at the end of the chunk the integer counts of every condition are committed to the
store in one transaction; when the last chunk of a condition is in, its ``results`` row is
written. A killed run loses at most the chunk in progress; a rerun skips finished conditions and
finished (condition, chunk) pairs. Since counts are integers summed per chunk, interrupted,
resumed, sharded and one-shot runs give the same numbers.

**eps added later.** An attack's eps sweep is monotone by construction: a sample broken at a
smaller eps stays broken at every larger one, with the perturbation that broke it. When a run
asks for a larger eps of an attack configuration whose smaller eps are already in the store,
those smaller eps are swept again with the new ones (deterministically: the same seeds, sample
ids and steps give the same breaks), but only the new eps are committed. So a stored eps
computed later equals what one sweep over all of them would give. An eps inserted *below* eps
already stored is computed with the eps under it; the stored larger eps are not recomputed
(rows are immutable), so they lack the extra chance the new eps would have given them; the
leaderboard's monotonicity flag shows if that matters.

**Sharding.** Under ``torchrun`` rank r evaluates samples r, r+world, ... of every chunk;
per-chunk counts are summed with ``all_reduce`` and rank 0 alone writes the store.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from ..errors import RBFError
from .conditions import Condition
from .pipeline import BatchPipeline
from .progress import Bars
from .rows import finalize_row

Plan = list[tuple[int, list[int]]]      # [(chunk index, [indices into conds])]


def make_plan(conds: list[Condition], n: int, chunk_size: int, st, entry: dict
              ) -> tuple[Plan, dict, int]:
    """The chunks still to compute and, per chunk, the conditions it needs; the smaller stored
    eps each attack configuration sweeps again (``helpers``: attack_id -> [eps]); how many of
    ``conds`` are already finished."""
    n_chunks = max(1, math.ceil(n / chunk_size))
    done = st.done_conditions(entry) if st else set()
    chunks_done = st.done_chunks(entry, chunk_size) if st else {}
    pending = [c for c in conds if c.key not in done]
    plan: Plan = []
    for ci in range(n_chunks):
        todo = [k for k, c in enumerate(conds) if c in pending and
                ci not in chunks_done.get(c.key, set())]
        if todo:
            plan.append((ci, todo))
    # every eps of each attack configuration known for this entry: requested or stored
    known: dict[tuple, set[float]] = {}
    for c in conds:
        if c.kind in ("attack", "referral"):
            known.setdefault(c.attack_id, set()).add(float(c.eps))
    if st is not None:
        for r in st.results(**entry):
            if r.get("kind") in ("attack", "referral") and r.get("config_hash"):
                aid = (r["name"], str(r["norm"]), str(r["config_hash"]))
                if r["kind"] == "referral":
                    aid += (f"ref>={(r.get('metrics') or {}).get('threshold')}",)
                if aid in known:
                    known[aid].add(float(r["eps"]))
    helpers = {aid: sorted(v) for aid, v in known.items()}
    return plan, helpers, len(conds) - len(pending)


def chunk_helpers(pending: list[Condition], helpers: dict) -> dict:
    """For one chunk: per attack configuration the known eps below its largest pending eps that
    are not pending themselves (swept again so that larger eps carry their breaks over)."""
    out: dict[tuple, list[float]] = {}
    by: dict[tuple, list[float]] = {}
    for c in pending:
        if c.kind in ("attack", "referral"):
            by.setdefault(c.attack_id, []).append(float(c.eps))
    for aid, eps in by.items():
        top = max(eps)
        extra = [e for e in helpers.get(aid, ()) if e < top and e not in eps]
        if extra:
            out[aid] = extra
    return out


def run_plan(plan: Plan, conds: list[Condition], helpers: dict, mi, di, dd, dev, seed: int,
             attacks: dict, run, n_chunks: int, st, entry: dict, totals: dict, timing: dict
             ) -> int:
    """Evaluate the chunks of ``plan``; returns the number of images loaded. ``timing``:
    seconds accumulated here (``data_s``, ``compute_s``) and its ``clock``
    (:class:`~robustbench_fundus.bench.budget.StageClock`, made here when absent)."""
    from ..data.dataset import collate
    bars = Bars(run.progress and dd.main, plan, conds, run.chunk_size, len(di.indices),
                dd.world)
    pipe = BatchPipeline(mi, di, dev, seed, attacks, progress=bars if bars.on else None,
                         clock=timing.get("clock"), amp=run.amp,
                         channels_last=run.channels_last)
    clock = timing["clock"] = pipe.clock
    chunk_size, batch_size = run.chunk_size, run.batch_size
    # batches of this rank's share of each planned chunk; a batch never crosses a chunk
    batches, batch_chunk = [], []
    N = len(di.indices)
    for ci, _ in plan:
        mine = di.indices[ci * chunk_size:min(N, (ci + 1) * chunk_size)][dd.rank::dd.world]
        for b in range(0, len(mine), batch_size):
            batches.append(mine[b:b + batch_size])
            batch_chunk.append(ci)
    loader = torch.utils.data.DataLoader(
        di.dataset, batch_sampler=batches, collate_fn=collate, num_workers=run.num_workers,
        persistent_workers=False)
    extra = {"device": str(dev), "torch_version": torch.__version__,
             "precision": precision(run)}

    def finalize(c, tot, s):
        return finalize_row(c, tot, s, extra)

    def commit(*args):
        with clock("metrics_store"):
            st.commit_chunk(*args)

    it = iter(loader)
    pos = 0
    n_loaded = 0
    try:
        for ci, todo in plan:
            pending = [conds[k] for k in todo]
            extra_eps = chunk_helpers(pending, helpers)
            acc: dict[Condition, list] = {c: [np.zeros(c.n_counts + 1, dtype=np.int64), 0.0]
                                          for c in pending}
            while pos < len(batches) and batch_chunk[pos] == ci:
                t0 = time.perf_counter()
                with clock("decode_geometry"):
                    batch = next(it)
                timing["data_s"] += time.perf_counter() - t0
                pos += 1
                if batch.get("skipped"):
                    raise RBFError(f"image {batch['skipped'][0][0]} could not be read "
                                   f"({batch['skipped'][0][1]}); fix or remove it and rerun")
                n_loaded += len(batch["id"])
                t0 = time.perf_counter()
                res = pipe.run(batch, pending, extra_eps)
                timing["compute_s"] += time.perf_counter() - t0
                for c, (vec, secs) in res.items():
                    a = acc[c]
                    a[0] += np.asarray(vec, dtype=np.int64)
                    a[1] += secs
            # reduce over ranks: counts summed, seconds max
            flat = torch.from_numpy(np.concatenate([acc[c][0] for c in pending]))
            flat = dd.sum_(flat)
            secs = dd.max_(torch.tensor([acc[c][1] for c in pending], dtype=torch.float64))
            off = 0
            chunk_counts: dict[Condition, tuple[list[int], float]] = {}
            bad = []
            for k, c in enumerate(pending):
                vec = flat[off:off + c.n_counts + 1].tolist()
                off += c.n_counts + 1
                if vec[-1]:
                    bad.append(c)
                chunk_counts[c] = (vec[:-1], float(secs[k]))
            if bad:  # keep what is sound (this chunk's other conditions), then stop
                if dd.main and st is not None:
                    commit(entry, chunk_size, n_chunks, ci,
                                    {c: v for c, v in chunk_counts.items() if c not in bad},
                                    finalize)
                where = f"; results written so far are kept in {st.path}" if st else ""
                raise RBFError(f"the model returned NaN/inf logits on condition {bad[0].key} "
                               f"(chunk {ci}){where}")
            if dd.main:
                if st is not None:
                    commit(entry, chunk_size, n_chunks, ci, chunk_counts, finalize)
                else:
                    for c, (vec, s) in chunk_counts.items():
                        t = totals.setdefault(c, [np.zeros(len(vec), dtype=np.int64), 0.0])
                        t[0] += np.asarray(vec, dtype=np.int64)
                        t[1] += s
    finally:
        bars.close()
    return n_loaded


def precision(run) -> dict:
    """How the forwards ran (``RunOptions.amp``, ``channels_last``): stored with every row."""
    return {"forward": "bf16-autocast" if run.amp == "bf16" else "float32",
            "channels_last": bool(run.channels_last)}
