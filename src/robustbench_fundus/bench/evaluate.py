"""``evaluate()``: clean, corrupted and attacked performance of one model in one pass.

Flow per batch (DESIGN.md section 2)::

    uint8 working crop -> x_raw = image / 255 -> geom = estimate_geometry(x_raw)  (once)
      clean:        model(pre(x_raw))
      corruption c: model(pre(c(x_raw, s, seed, sample_ids, geom)))   all severities of c batched
      attack:       attack(model, pre(x_raw), y, eps list, seed, sample_ids)  (model-input space)

``pre`` is the preprocessing the model declares (``model.preprocessing == "graham"`` ->
:func:`~robustbench_fundus.data.graham`, with the clean image's geometry), then a resize to the
model's input size when the working size differs. Normalisation happens inside the model.

**Loop order.** The data set is cut into fixed *chunks* of ``chunk_size`` consecutive samples
(of the evaluated index list). Within a chunk the loop is batch-outer: each image is decoded
(or read from the crop cache, or rendered) once and goes through every pending condition while
in memory; at the end of the chunk the integer counts of every condition (confusion matrices,
attack counts) are committed to the store in one transaction. When the last chunk of a condition
is in, its ``results`` row is written. So images are decoded once per run, memory holds one batch
plus a few integer vectors whatever the data-set size, and a killed run loses at most the chunk
in progress; a rerun skips finished conditions and finished (condition, chunk) pairs. Since
counts are integers summed per chunk, interrupted, resumed, sharded and one-shot runs give the
same numbers.

**Sharding.** Under ``torchrun`` (``WORLD_SIZE > 1``) rank r evaluates samples r, r+world, ...
of every chunk; per-chunk counts are summed with ``all_reduce`` and rank 0 alone writes the
store. Attacks and corruptions are deterministic per sample (seeded by sample id), so the
numbers equal a one-process run's.

**Tensor input.** ``data=(x, y)`` is taken as model input already: no preprocessing is applied,
and corruptions (when requested) are applied to ``x`` directly, with geometry estimated from
``x`` -- meaningful only when ``x`` is a raw working-size photograph and the model expects no
preprocessing; pass a folder or a dataset to get the full raw-photo flow.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import __version__
from ..errors import RBFError
from ..metrics import ClassificationMetrics
from .conditions import (ATTACK_SANITY, CLEAN, DEFAULT_EPS, NUM_CLASSES, Condition,
                         attack_condition, corruption_condition, parse_eps, parse_severities,
                         resolve_corruptions, saliency_condition)
from .report import (AttackResult, BenchReport, CleanResult, CorruptionResult, Flag,
                     attack_sanity_flags)

DEFAULT_CHUNK = 256
DEFAULT_SYNTH_N = 64
DEFAULT_SYNTH_SEED = 20240601  # held out from the demo model's training stream (seed 0)
DEFAULT_SALIENCY_STEPS = 32


# ------------------------------------------------------------------------------------------------
# model
# ------------------------------------------------------------------------------------------------
@dataclass
class ModelInfo:
    module: nn.Module
    sha256: str
    name: str
    arch: str | None
    input_size: tuple[int, int] | None
    preprocessing: str
    meta: dict = field(default_factory=dict)


def model_sha256(model: nn.Module) -> str:
    """sha256 of a model's identity: its weights (``weights_sha256`` of the state_dict, which
    includes a FundusClassifier's mean/std) and its feeding config (input size, preprocessing).
    Independent of device and of the file format the model came from."""
    from ..models import weights_sha256
    h = hashlib.sha256(weights_sha256(model.state_dict()).encode())
    cfg = model.config() if hasattr(model, "config") else {"class": type(model).__name__}
    h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    return h.hexdigest()


def resolve_model(model: Any, arch: str | None = None, device: str | torch.device = "cpu",
                  name: str | None = None, trust_checkpoint: bool = False) -> ModelInfo:
    meta: dict[str, Any] = {}
    if isinstance(model, (str, os.PathLike)):
        from ..models import file_sha256, load_model
        path = Path(model)
        module = load_model(path, arch=arch, device=device, trust_checkpoint=trust_checkpoint)
        meta["checkpoint"] = str(path)
        meta["file_sha256"] = file_sha256(path)
        default_name = path.stem
    elif isinstance(model, nn.Module):
        module = model.to(device)
        default_name = getattr(model, "arch", None) or type(model).__name__
    else:
        raise RBFError(f"model: expected a checkpoint path or an nn.Module, got "
                       f"{type(model).__name__}")
    module.eval()
    size = getattr(module, "input_size", None)
    size = (int(size[0]), int(size[1])) if size is not None else None
    pre = str(getattr(module, "preprocessing", "none") or "none")
    if pre not in ("graham", "none"):
        raise RBFError(f"model declares preprocessing {pre!r}; the benchmark knows 'graham' "
                       "and 'none'")
    for k in ("recipe", "data_fingerprint", "epochs"):
        if k in getattr(module, "meta", {}):
            meta[k] = module.meta[k]
    return ModelInfo(module, model_sha256(module), name or default_name,
                     getattr(module, "arch", None), size, pre, meta)


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------
class _TensorItems(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i: int) -> dict:
        return {"image": self.x[i], "label": int(self.y[i]), "index": int(i), "id": str(i)}


@dataclass
class DataInfo:
    dataset: Any                  # map-style, items: dict(image, label, index, id)
    indices: list[int]            # dataset indices evaluated (after --limit)
    fingerprint: str
    name: str
    tensor_input: bool = False
    meta: dict = field(default_factory=dict)


def _limit_indices(n: int, limit: int | None) -> list[int]:
    """All indices, or ``limit`` of them spread evenly over the set (deterministic: a prefix of
    a sorted set would take only the first subjects/grades)."""
    if limit is None or limit >= n:
        return list(range(n))
    if limit < 1:
        raise RBFError(f"--limit {limit}: must be at least 1")
    return [int(i * n // limit) for i in range(limit)]


def _h(*parts: Any) -> str:
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        h.update(repr(p).encode())
        h.update(b"\x1f")
    return h.hexdigest()


def resolve_data(data: Any, size: int, limit: int | None = None, cache_dir: Any = None,
                 synthetic_n: int = DEFAULT_SYNTH_N) -> DataInfo:
    """A folder, a dataset object, ``(x, y)`` tensors, ``"synthetic[:N]"`` or None (synthetic)."""
    if data is None or (isinstance(data, str) and data.startswith("synthetic")):
        from ..data.synth import SyntheticDataset
        n = synthetic_n
        if isinstance(data, str) and ":" in data:
            try:
                n = int(data.split(":", 1)[1])
            except ValueError:
                raise RBFError(f"--data {data}: write synthetic:N with N an integer") from None
        ds = SyntheticDataset(n, size, seed=DEFAULT_SYNTH_SEED)
        idx = _limit_indices(len(ds), limit)
        fp = _h("synthetic", DEFAULT_SYNTH_SEED, n, size, tuple(idx))
        return DataInfo(ds, idx, fp, f"synthetic:{n}@{size}px",
                        meta={"kind": "synthetic", "seed": DEFAULT_SYNTH_SEED, "n_total": n,
                              "size": size})
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        x, y = data
        x = x.detach().cpu()
        y = torch.as_tensor(y).detach().cpu().long().reshape(-1)
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[0] != y.shape[0]:
            raise RBFError(f"data: expected x (N,3,H,W) and y (N,), got {tuple(x.shape)} and "
                           f"{tuple(y.shape)}")
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        x = x.float()
        if x.numel() and (float(x.min()) < 0 or float(x.max()) > 1):
            raise RBFError("data: x must be in [0,1] (model-input space, before normalisation)")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= NUM_CLASSES):
            raise RBFError(f"data: labels must be grades 0..{NUM_CLASSES - 1}")
        ds = _TensorItems(x, y)
        idx = _limit_indices(len(ds), limit)
        hx = hashlib.blake2b(digest_size=8)
        hx.update(x[idx].contiguous().numpy().tobytes())
        hx.update(y[idx].numpy().tobytes())
        return DataInfo(ds, idx, "tensors-" + hx.hexdigest(), f"tensors:{len(idx)}",
                        tensor_input=True, meta={"kind": "tensors", "shape": list(x.shape)})
    if isinstance(data, (str, os.PathLike)):
        from ..data import FundusDataset, dataset_fingerprint, read_records
        root = Path(data)
        if not root.exists():
            raise RBFError(f"--data {root}: no such folder")
        rs = read_records(root)
        records = rs.records
        if not records:
            raise RBFError(f"--data {root}: no labelled images found")
        ds = FundusDataset(records, size, cache_dir=cache_dir)
        idx = _limit_indices(len(ds), limit)
        fp = _h("folder", dataset_fingerprint([records[i] for i in idx]), size)
        return DataInfo(ds, idx, fp, f"{root.name}:{len(idx)}@{size}px",
                        meta={"kind": "folder", "root": str(root), "layout": rs.layout,
                              "n_total": len(records), "size": size,
                              "unreadable": len(getattr(rs, "unreadable", []) or [])})
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        idx = _limit_indices(len(data), limit)
        fp = getattr(data, "fingerprint", None)
        if callable(fp):
            fp = fp()
        if fp is None:
            recs = getattr(data, "records", None)
            if recs is not None:
                from ..data import dataset_fingerprint
                fp = _h("records", dataset_fingerprint([recs[i] for i in idx]),
                        getattr(data, "size", None))
            elif type(data).__name__ == "SyntheticDataset":
                fp = _h("synthetic", data.seed, data.n, data.size, getattr(data, "start", 0),
                        tuple(idx), tuple(data.labels))
            else:  # an unknown dataset: its class, its size, and the labels it holds
                labels = getattr(data, "labels", None)
                if labels is None:
                    labels = [int(data[i]["label"]) for i in idx]
                fp = _h(type(data).__qualname__, len(data), tuple(idx), tuple(
                    int(v) for v in labels))
        name = f"{type(data).__name__}:{len(idx)}"
        return DataInfo(data, idx, str(fp), name, meta={"kind": "dataset",
                                                        "class": type(data).__name__})
    raise RBFError(f"data: expected a folder, a dataset or (x, y) tensors, got "
                   f"{type(data).__name__}")


# ------------------------------------------------------------------------------------------------
# distributed
# ------------------------------------------------------------------------------------------------
class _Dist:
    def __init__(self, device: torch.device):
        import torch.distributed as dist
        self.dist = dist
        world = int(os.environ.get("WORLD_SIZE", "1"))
        self.initialised_here = False
        if world > 1 and not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend)
            self.initialised_here = True
        self.on = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        self.rank = dist.get_rank() if self.on else 0
        self.world = dist.get_world_size() if self.on else 1
        self.device = device if (self.on and dist.get_backend() == "nccl") else torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def broadcast(self, obj: Any) -> Any:
        if not self.on:
            return obj
        box = [obj]
        self.dist.broadcast_object_list(box, src=0)
        return box[0]

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        if self.on:
            t = t.to(self.device)
            self.dist.all_reduce(t, op=self.dist.ReduceOp.SUM)
            t = t.cpu()
        return t

    def max_(self, t: torch.Tensor) -> torch.Tensor:
        if self.on:
            t = t.to(self.device)
            self.dist.all_reduce(t, op=self.dist.ReduceOp.MAX)
            t = t.cpu()
        return t

    def gather(self, obj: Any) -> list:
        """Every rank's ``obj``, in rank order (on every rank)."""
        if not self.on:
            return [obj]
        out = [None] * self.world
        self.dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        if self.initialised_here:
            self.dist.destroy_process_group()


# ------------------------------------------------------------------------------------------------
# attack adapter
# ------------------------------------------------------------------------------------------------
def _attack_counts(res: Any, y: torch.Tensor, clean_correct: torch.Tensor, n_eps: int
                   ) -> list[tuple[int, int]]:
    """Per eps (n_attacked, n_broken) from an attack's sweep result.

    Understands the attack stage's SweepResult: integer counts (``n_attacked`` and
    ``n_broken``/``n_success`` per eps), or per-sample flags (``success`` (E,B) bool with
    ``clean_correct`` (B,)), or adversarial predictions (``pred``/``adv_pred`` (E,B))."""
    def _get(*names):
        for nm in names:
            v = getattr(res, nm, None) if not isinstance(res, dict) else res.get(nm)
            if v is not None:
                return v
        return None

    counts = getattr(res, "counts", None)
    if counts is not None and hasattr(counts, "n_success") and hasattr(counts, "n_attacked"):
        return [(int(counts.n_attacked), int(counts.n_success[e])) for e in range(n_eps)]
    cc = _get("clean_correct")
    cc = clean_correct if cc is None else torch.as_tensor(cc).bool().cpu().reshape(-1)
    succ = _get("success", "successes", "is_adv")
    if succ is not None:
        s = torch.as_tensor(succ).bool().cpu().reshape(n_eps, -1)
        return [(int(cc.sum()), int((s[e] & cc).sum())) for e in range(n_eps)]
    pred = _get("adv_pred", "pred", "preds", "predictions")
    if pred is not None:
        p = torch.as_tensor(pred).cpu().reshape(n_eps, -1)
        yy = y.cpu()
        return [(int(cc.sum()), int(((p[e] != yy) & cc).sum())) for e in range(n_eps)]
    na = _get("n_attacked")
    nb = _get("n_broken", "n_success", "n_successes")
    if na is not None and nb is not None:
        na_l = torch.as_tensor(na).reshape(-1).tolist()
        nb_l = torch.as_tensor(nb).reshape(-1).tolist()
        if len(na_l) == 1:
            na_l = na_l * n_eps
        return [(int(na_l[e]), int(nb_l[e])) for e in range(n_eps)]
    raise RBFError(f"attack returned {type(res).__name__}, which the benchmark cannot read "
                   "(needs per-eps success flags or counts)")


def _attack_sanity(res: Any, n_eps: int) -> list[list[int]]:
    """Per eps the sanity counters (:data:`ATTACK_SANITY`) of an attack's sweep result: the
    scalar counters of its ``counts`` (the same for every eps of the sweep), then its per-eps
    ``n_unverified`` and ``n_projected``. Zeros for an attack that does not report them."""
    counts = getattr(res, "counts", None)
    out = []
    for e in range(n_eps):
        row = []
        for k in ATTACK_SANITY:
            v = getattr(counts, k, 0) if counts is not None else 0
            if isinstance(v, (list, tuple)):
                v = v[e] if e < len(v) else 0
            try:
                row.append(int(v))
            except (TypeError, ValueError):
                row.append(0)
        out.append(row)
    return out


def _attack_name(atk: Any) -> str:
    return str(getattr(atk, "name", None) or type(atk).__name__).lower()


def _get_attack(name: Any, steps: int):
    if not isinstance(name, str):
        return name  # an attack object given directly
    from .. import attacks as A
    try:
        return A.get_attack(name, steps=steps)
    except TypeError:
        return A.get_attack(name)


def _call_attack(atk, model, x, y, eps: list[float], seed: int, ids: torch.Tensor):
    try:
        return atk(model, x, y, eps, seed=seed, sample_ids=ids, keep_adv=False)
    except TypeError as exc:
        if "unexpected keyword" not in str(exc):
            raise
        try:
            return atk(model, x, y, eps, seed=seed, sample_ids=ids)
        except TypeError as exc2:
            if "unexpected keyword" not in str(exc2):
                raise
            return atk(model, x, y, eps)


# ------------------------------------------------------------------------------------------------
# the batch pipeline
# ------------------------------------------------------------------------------------------------
class _Pipeline:
    """Runs the pending conditions of one batch and returns their integer counts."""

    def __init__(self, mi: ModelInfo, di: DataInfo, device: torch.device, seed: int,
                 attack_name: str | None, steps: int):
        self.m = mi.module
        self.mi, self.di = mi, di
        self.device = device
        self.seed = int(seed)
        self.graham = mi.preprocessing == "graham" and not di.tensor_input
        self.size = mi.input_size
        self.attack_name = attack_name
        self.steps = steps
        self._atk = None
        self._corr: dict[str, Any] = {}

    def corruption(self, name: str):
        if name not in self._corr:
            from ..corruptions import get_corruption
            self._corr[name] = get_corruption(name)
        return self._corr[name]

    def attack(self):
        if self._atk is None:
            self._atk = _get_attack(self.attack_name, self.steps)
        return self._atk

    def pre(self, x: torch.Tensor, geom) -> torch.Tensor:
        if self.graham:
            from ..data.graham import graham
            x = graham(x, geom)
        if self.size is not None and tuple(x.shape[-2:]) != tuple(self.size):
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False,
                              antialias=True).clamp_(0, 1)
        return x

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
        logits = self.m(x)
        bad = not bool(torch.isfinite(logits).all())
        return logits.argmax(dim=1), bad

    def run(self, batch: dict, pending: list[Condition]) -> dict[Condition, tuple[list[int], float]]:
        out: dict[Condition, tuple[list[int], float]] = {}
        img = batch["image"]
        y = batch["label"].to(self.device)
        ids = batch["index"].cpu()
        x_raw = (img.float() / 255.0 if img.dtype == torch.uint8 else img.float()).to(self.device)
        t0 = time.perf_counter()
        kinds = {c.kind for c in pending}
        need_geom = self.graham or "corruption" in kinds
        geom = None
        if need_geom:
            from ..data.geometry import estimate_geometry
            geom = estimate_geometry(x_raw)
        x_clean = self.pre(x_raw, geom)
        shared = time.perf_counter() - t0

        # clean (also the reference for attacks)
        t0 = time.perf_counter()
        pred, bad = self.predict(x_clean)
        clean_correct = (pred == y).cpu()
        t_clean = time.perf_counter() - t0 + shared
        if CLEAN in pending:
            out[CLEAN] = (_cm(y, pred) + [int(bad)], t_clean)

        # corruptions: all severities of one corruption in one batched call
        by_name: dict[str, list[Condition]] = {}
        for c in pending:
            if c.kind == "corruption":
                by_name.setdefault(c.name, []).append(c)
        B = x_raw.shape[0]
        for name, conds in by_name.items():
            t0 = time.perf_counter()
            corr = self.corruption(name)
            sev = torch.tensor([c.severity for c in conds]).repeat_interleave(B)
            rep = torch.arange(B).repeat(len(conds))
            xs = x_raw[rep.to(self.device)]
            g = geom[rep.to(geom.mask.device)] if geom is not None else None
            xc = corr(xs, sev, seed=self.seed, sample_ids=ids[rep], geom=g)
            pc, badc = self._predict_groups(self.pre(xc, g), len(conds), B)
            dt = (time.perf_counter() - t0) / len(conds) + shared
            for k, c in enumerate(conds):
                out[c] = (_cm(y, pc[k]) + [int(badc[k])], dt)

        # attack sweep over the pending eps, on the preprocessed clean input
        atk_conds = sorted((c for c in pending if c.kind == "attack"), key=lambda c: c.eps)
        if atk_conds:
            t0 = time.perf_counter()
            eps = [c.eps for c in atk_conds]
            with torch.enable_grad():
                res = _call_attack(self.attack(), self.m, x_clean, y, eps, self.seed, ids)
            counts = _attack_counts(res, y, clean_correct, len(eps))
            sanity = _attack_sanity(res, len(eps))
            dt = (time.perf_counter() - t0) / len(eps) + shared + t_clean / len(eps)
            for c, (na, nb), san in zip(atk_conds, counts, sanity):
                out[c] = ([B, na, nb, *san, int(bad)], dt)
        return out

    def _predict_groups(self, x: torch.Tensor, groups: int, B: int):
        pred, bad = [], []
        for k in range(groups):
            p, b = self.predict(x[k * B:(k + 1) * B])
            pred.append(p)
            bad.append(b)
        return pred, bad


def _cm(y: torch.Tensor, pred: torch.Tensor) -> list[int]:
    k = NUM_CLASSES
    p = pred.clamp(0, k - 1)
    return torch.bincount((y * k + p).cpu(), minlength=k * k).tolist()


# ------------------------------------------------------------------------------------------------
# results from counts
# ------------------------------------------------------------------------------------------------
def _finalize(cond: Condition, counts: Sequence[int], seconds: float, extra: dict) -> dict:
    """Store columns of one condition from its summed counts."""
    row = dict(extra)
    row["seconds"] = float(seconds)
    if cond.kind == "attack":
        n, na, nb = (int(v) for v in counts[:3])
        a = AttackResult.from_counts(cond.name, cond.eps, n, na, nb)
        san = [int(v) for v in counts[3:3 + len(ATTACK_SANITY)]]
        san += [0] * (len(ATTACK_SANITY) - len(san))
        row.update(n=n, n_attacked=na, n_broken=nb,
                   success_rate=None if math.isnan(a.success_rate) else a.success_rate,
                   robust_accuracy=None if math.isnan(a.robust_accuracy) else a.robust_accuracy,
                   metrics={"sanity": dict(zip(ATTACK_SANITY, san))})
    else:
        cm = np.asarray(counts[:NUM_CLASSES * NUM_CLASSES], dtype=np.int64).reshape(
            NUM_CLASSES, NUM_CLASSES)
        m = ClassificationMetrics.from_confusion(cm)
        row.update(n=m.n, accuracy=_none(m.accuracy), balanced_accuracy=_none(m.balanced_accuracy),
                   kappa=_none(m.kappa), confusion=cm.tolist())
    return row


def _none(v: float) -> float | None:
    return None if v is None or math.isnan(v) else float(v)


def _nan(v: Any) -> float:
    return float("nan") if v is None else float(v)


def build_report(rows: dict[str, dict], conditions: list[Condition]) -> tuple[
        CleanResult | None, list[CorruptionResult], list[AttackResult]]:
    """Report sections from store rows keyed by condition key."""
    clean = None
    if "clean" in rows:
        r = rows["clean"]
        clean = CleanResult.from_confusion(r["confusion"], r.get("seconds") or 0.0)
    cors, atks = [], []
    for c in conditions:
        r = rows.get(c.key)
        if r is None or c.kind == "clean":
            continue
        if c.kind == "corruption":
            acc = _nan(r["accuracy"])
            drop = clean.accuracy - acc if clean is not None else float("nan")
            cors.append(CorruptionResult(c.name, c.severity, acc, _nan(r["balanced_accuracy"]),
                                         _nan(r["kappa"]), drop, int(r["n"]), r["confusion"],
                                         r.get("seconds") or 0.0))
        else:
            atks.append(AttackResult.from_counts(c.name, c.eps, int(r["n"]), int(r["n_attacked"]),
                                                 int(r["n_broken"]), c.steps, c.norm,
                                                 r.get("seconds") or 0.0))
    return clean, cors, atks


def sanity_flags(rows: dict[str, dict], conditions: list[Condition]) -> list[Flag]:
    """The attack stage's sanity flags (masked gradients, probability outputs, randomised
    model, huge eps not broken, ...) of every attack among ``conditions`` (their rows in
    ``rows``, keyed by condition key), reduced over its eps conditions."""
    by: dict[str, list[tuple[float, dict]]] = {}
    for c in conditions:
        r = rows.get(c.key)
        if c.kind != "attack" or r is None:
            continue
        san = dict((r.get("metrics") or {}).get("sanity") or {})
        san.update(n=r.get("n"), n_attacked=r.get("n_attacked"), n_broken=r.get("n_broken"))
        by.setdefault(c.name, []).append((float(c.eps), san))
    return [f for name in sorted(by) for f in attack_sanity_flags(name, by[name])]


def make_flags(clean: CleanResult | None, cors: list[CorruptionResult],
               atks: list[AttackResult], di: DataInfo, mi: ModelInfo) -> list[Flag]:
    flags: list[Flag] = []
    if clean is not None:
        cm = np.asarray(clean.confusion)
        if clean.n < 100:
            flags.append(Flag("small_sample", f"only {clean.n} images: figures have wide "
                              "confidence intervals (about +-{:.0%} on accuracy)".format(
                                  1.96 * math.sqrt(0.25 / max(clean.n, 1)))))
        present = int((cm.sum(axis=1) > 0).sum())
        if present < NUM_CLASSES:
            flags.append(Flag("missing_grades", f"only {present} of {NUM_CLASSES} grades occur; "
                              "balanced accuracy and kappa cover the grades present"))
        predicted = int((cm.sum(axis=0) > 0).sum())
        if clean.n and predicted == 1:
            flags.append(Flag("constant_prediction", "the model predicts a single grade for "
                              "every image"))
        if clean.n:
            majority = cm.sum(axis=1).max() / clean.n
            if clean.accuracy <= majority and predicted > 1:
                flags.append(Flag("below_majority", f"clean accuracy {clean.accuracy:.3f} is not "
                                  f"above always predicting the commonest grade ({majority:.3f})"))
    for c in cors:
        # A gain is worth a flag only beyond sampling noise: two standard errors of the clean
        # accuracy (a few images on a small set would otherwise flag at random).
        p = clean.accuracy if clean.n else 0.0
        noise = 2.0 * math.sqrt(max(p * (1 - p), 1e-12) / c.n) if c.n else 1.0
        if c.drop < -max(0.02, noise):
            flags.append(Flag("corruption_helps", f"{c.name} at severity {c.severity} raises "
                              f"accuracy by {-c.drop:.3f} (beyond two standard errors, "
                              f"{noise:.3f})", f"corruption/{c.name}/{c.severity}"))
    by: dict[str, list[AttackResult]] = {}
    for a in atks:
        by.setdefault(a.name, []).append(a)
    for name, rows in by.items():
        rows.sort(key=lambda r: r.eps)
        if rows and rows[0].n_attacked == 0:
            flags.append(Flag("nothing_to_attack", f"{name}: no image is right on clean input, so "
                              "success rates are undefined"))
        sr = [r.success_rate for r in rows if not math.isnan(r.success_rate)]
        if any(b < a - 1e-12 for a, b in zip(sr, sr[1:])):
            flags.append(Flag("non_monotonic_attack", f"{name}: success rate falls as eps grows"))
        if rows and not math.isnan(rows[-1].success_rate) and rows[-1].success_rate < 0.5 and \
                rows[-1].eps < 8 / 255 - 1e-9:
            flags.append(Flag("weak_attack_range", f"{name}: success stays below 50% up to "
                              f"eps {rows[-1].eps_255}; add larger eps"))
    if di.meta.get("kind") == "synthetic":
        flags.append(Flag("synthetic_data", "evaluated on synthetic fundus images, not real "
                          "photographs"))
    if di.tensor_input and cors:
        flags.append(Flag("corruptions_on_model_input", "data given as (x, y) tensors: "
                          "corruptions were applied to x directly, without preprocessing"))
    if mi.preprocessing == "graham" and di.tensor_input:
        flags.append(Flag("preprocessing_skipped", "data given as (x, y) tensors is taken as "
                          "model input: Graham preprocessing was not applied"))
    return flags


# ------------------------------------------------------------------------------------------------
# evaluate
# ------------------------------------------------------------------------------------------------
def build_conditions(corruptions: Any, severities: Any, attack: str | None, eps: Any,
                     steps: int) -> list[Condition]:
    conds = [CLEAN]
    names = resolve_corruptions(corruptions)
    sevs = parse_severities(severities, max_severity=10)
    if names:
        from ..corruptions import get_corruption
        for n in names:
            mx = get_corruption(n).max_severity
            for s in sevs:
                if s <= mx:
                    conds.append(corruption_condition(n, s))
    if attack is not None and not (isinstance(attack, str) and attack.lower() == "none"):
        if int(steps) < 1:
            raise RBFError(f"--steps {steps}: must be at least 1")
        aname = attack.lower() if isinstance(attack, str) else _attack_name(attack)
        for e in parse_eps(eps):
            conds.append(attack_condition(aname, e, int(steps)))
    return conds


def evaluate(model: Any, data: Any = None, corruptions: Any = "all",
             severities: Any = (1, 2, 3, 4), attack: str | None = "pgd",
             eps: Any = DEFAULT_EPS, steps: int = 10, seed: int = 0,
             device: str | torch.device | None = None, limit: int | None = None,
             store: Any = None, *, name: str | None = None, arch: str | None = None,
             batch_size: int = 32, num_workers: int = 0, chunk_size: int = DEFAULT_CHUNK,
             size: int | None = None, cache_dir: Any = None, progress: bool = False,
             trust_checkpoint: bool = False, synthetic_n: int = DEFAULT_SYNTH_N,
             saliency: int = 0, saliency_steps: int = DEFAULT_SALIENCY_STEPS,
             log: Callable[[str], None] | None = None) -> BenchReport:
    """Benchmark ``model`` on ``data``: clean, corrupted and attacked. Returns a
    :class:`~robustbench_fundus.bench.BenchReport`.

    ``model``: a checkpoint path (any format :func:`~robustbench_fundus.models.load_model`
    reads; ``arch`` when it cannot tell) or an ``nn.Module`` taking [0,1] input (a
    :class:`~robustbench_fundus.models.FundusClassifier` declares its input size and
    preprocessing). ``data``: a folder of labelled photographs, a dataset object (items
    ``dict(image=uint8 (3,S,S), label, index, id)``), ``(x, y)`` tensors already in [0,1]
    model-input space, ``"synthetic:N"``, or None (synthetic images). ``corruptions``: ``"all"``
    (the four fundus corruptions), ``"imagenet-c"``, ``"none"``/None, or names (a list or a
    comma-separated string). ``severities``: ``"1-4"``, ``[2, 4]``. ``attack``: ``"pgd"``,
    ``"fgsm"``, ``"autoattack"`` or None; ``eps``: [0,1] values or ``"2/255"`` strings.
    ``limit``: evaluate ``limit`` images spread evenly over the set. ``store``: a
    :class:`~robustbench_fundus.bench.ResultStore` or a path: finished conditions are read from
    it and not recomputed; new ones are written as they complete.
    ``saliency=N``: also score integrated-gradients saliency (``saliency_steps`` steps; baseline
    grey for a Graham model, else black) on N images spread evenly over the evaluated set, in
    model-input space: lesion share (synthetic data, whose lesion masks are known), disc share
    and deletion-curve area (:func:`~robustbench_fundus.interpret.saliency_scores`); the summary
    is ``report.saliency`` and a ``saliency/...`` row of the store (resumable per part of
    ``batch_size`` images), shown as ``saliency_*`` leaderboard columns.
    """
    from .store import ResultStore

    t_start = time.perf_counter()
    dev = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda" and "LOCAL_RANK" in os.environ and dev.index is None:
        dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    if batch_size < 1 or chunk_size < 1:
        raise RBFError("batch_size and chunk_size must be at least 1")
    if int(saliency) < 0:
        raise RBFError(f"--saliency {saliency}: give a number of images (0: no saliency)")
    if int(saliency) and int(saliency_steps) < 1:
        raise RBFError(f"--saliency-steps {saliency_steps}: must be at least 1")
    dd = _Dist(dev)
    say = log if (log is not None and dd.main) else (lambda s: None)
    try:
        mi = resolve_model(model, arch=arch, device=dev, name=name,
                           trust_checkpoint=trust_checkpoint)
        work = size or (max(mi.input_size) if mi.input_size else 224)
        if data is None and limit is not None:
            synthetic_n = int(limit)  # render only the images evaluated
        di = resolve_data(data, work, limit=limit, cache_dir=cache_dir, synthetic_n=synthetic_n)
        conds = build_conditions(corruptions, severities, attack, eps, steps)
        sal_cond = None
        if int(saliency):
            sal_cond = saliency_condition(min(int(saliency), len(di.indices)),
                                          int(saliency_steps),
                                          "grey" if mi.preprocessing == "graham" else "black")
        entry = {"model_sha256": mi.sha256, "dataset_fingerprint": di.fingerprint,
                 "seed": int(seed), "library_version": __version__}
        st = None
        if store is not None and dd.main:
            st = store if isinstance(store, ResultStore) else ResultStore(store)
            st.add_model(mi.sha256, mi.name, mi.arch, {**mi.meta, "input_size": mi.input_size,
                                                       "preprocessing": mi.preprocessing})
            st.add_dataset(di.fingerprint, di.name, len(di.indices), di.meta)

        N = len(di.indices)
        n_chunks = max(1, math.ceil(N / chunk_size))
        # the plan: which conditions each chunk still needs (rank 0 decides, all follow)
        plan = None
        if dd.main:
            done = st.done_conditions(entry) if st else set()
            chunks_done = st.done_chunks(entry, chunk_size) if st else {}
            pending = [c for c in conds if c.key not in done]
            plan = []
            for ci in range(n_chunks):
                todo = [k for k, c in enumerate(conds) if c in pending and
                        ci not in chunks_done.get(c.key, set())]
                if todo:
                    plan.append((ci, todo))
            n_done = len(conds) - len(pending)
            if n_done:
                say(f"rbf bench: {n_done} of {len(conds)} conditions already in the store")
            if sal_cond is not None and sal_cond.key in done:
                say(f"rbf bench: {sal_cond.key} already in the store")
                sal_cond_todo = False
            else:
                sal_cond_todo = sal_cond is not None
        else:
            sal_cond_todo = None
        plan, sal_cond_todo = dd.broadcast((plan, sal_cond_todo))

        totals: dict[Condition, list] = {}
        timing = {"data_s": 0.0, "compute_s": 0.0}
        n_loaded = 0
        if plan:
            n_loaded = _run_plan(plan, conds, mi, di, dd, dev, seed, attack, steps, batch_size,
                                 num_workers, chunk_size, n_chunks, st, entry, totals, timing,
                                 progress)
        sal_row = None
        if sal_cond_todo:
            t0 = time.perf_counter()
            say(f"rbf bench: saliency ({sal_cond.name}, {sal_cond.steps} steps, baseline "
                f"{sal_cond.baseline}) on {sal_cond.n_images} images")
            sal_row = _run_saliency(sal_cond, mi, di, dd, dev, seed, batch_size, st, entry)
            timing["saliency_s"] = time.perf_counter() - t0
        # rows of all requested conditions
        rows: dict[str, dict] = {}
        if dd.main:
            if st is not None:
                for r in st.results(**entry):
                    rows[r["condition"]] = r
            else:
                for c, (vec, secs) in totals.items():
                    rows[c.key] = _finalize(c, vec, secs, {})
                if sal_row is not None:
                    rows[sal_cond.key] = sal_row
        rows = dd.broadcast(rows)
        clean, cors, atks = build_report(rows, conds)
        sal_summary = None
        if sal_cond is not None and sal_cond.key in rows:
            r = rows[sal_cond.key]
            sal_summary = {**(r.get("metrics") or {}).get("saliency", {}),
                           "seconds": round(float(r.get("seconds") or 0.0), 4)}
        flags = make_flags(clean, cors, atks, di, mi)
        flags += sanity_flags(rows, conds)
        if sal_summary is not None and di.meta.get("kind") != "synthetic" and \
                sal_summary.get("n_lesion", 0) == 0:
            flags.append(Flag("no_lesion_masks", "saliency: the data carry no lesion masks, so "
                              "lesion_share is undefined (use synthetic data for it)",
                              sal_cond.key))
        if di.meta.get("unreadable"):
            flags.append(Flag("unreadable_images", f"{di.meta['unreadable']} images in the folder "
                              "could not be read and were left out"))
        prov = {
            "library_version": __version__,
            "model_sha256": mi.sha256,
            "model_file_sha256": mi.meta.get("file_sha256"),
            "dataset_fingerprint": di.fingerprint,
            "seed": int(seed),
            "device": str(dev),
            "torch_version": torch.__version__,
            "python_version": platform.python_version(),
            "world_size": dd.world,
            "batch_size": batch_size,
            "chunk_size": chunk_size,
            "store": str(st.path) if st is not None else (str(store) if store else None),
            "conditions_computed": len({k for _, t in (plan or []) for k in t}),
            "conditions_from_store": len(conds) - len({conds[k] for _, t in (plan or [])
                                                       for k in t}),
            "timings": {"total_s": round(time.perf_counter() - t_start, 3),
                        "data_s": round(timing["data_s"], 3),
                        "compute_s": round(timing["compute_s"], 3),
                        "saliency_s": round(timing.get("saliency_s", 0.0), 3),
                        "images_evaluated": n_loaded,
                        "per_condition_s": {c.key: round(float(rows[c.key].get("seconds") or 0), 4)
                                            for c in conds if c.key in rows}},
        }
        report = BenchReport(
            clean, cors, atks, flags, prov,
            model={"name": mi.name, "arch": mi.arch, "sha256": mi.sha256,
                   "input_size": list(mi.input_size) if mi.input_size else None,
                   "preprocessing": mi.preprocessing, **{k: v for k, v in mi.meta.items()}},
            dataset={"name": di.name, "fingerprint": di.fingerprint, "n": N, **di.meta},
            saliency=sal_summary)
        if st is not None and not isinstance(store, ResultStore):
            st.close()
        return report
    finally:
        dd.close()


def _run_plan(plan, conds, mi, di, dd, dev, seed, attack, steps, batch_size, num_workers,
              chunk_size, n_chunks, st, entry, totals, timing, progress) -> int:
    """Evaluate the chunks of ``plan`` [(chunk, [condition indices])]; returns images loaded."""
    from ..data.dataset import collate
    pipe = _Pipeline(mi, di, dev, seed, attack, steps)
    # batches of this rank's share of each planned chunk; a batch never crosses a chunk
    batches, batch_chunk = [], []
    N = len(di.indices)
    for ci, _ in plan:
        mine = di.indices[ci * chunk_size:min(N, (ci + 1) * chunk_size)][dd.rank::dd.world]
        for b in range(0, len(mine), batch_size):
            batches.append(mine[b:b + batch_size])
            batch_chunk.append(ci)
    loader = torch.utils.data.DataLoader(
        di.dataset, batch_sampler=batches, collate_fn=collate, num_workers=num_workers,
        persistent_workers=False)
    bars = _Bars(progress and dd.main, plan, conds, chunk_size, N)
    it = iter(loader)
    pos = 0
    n_loaded = 0
    try:
        for ci, todo in plan:
            pending = [conds[k] for k in todo]
            acc: dict[Condition, list] = {c: [[0] * (c.n_counts + 1), 0.0] for c in pending}
            while pos < len(batches) and batch_chunk[pos] == ci:
                t0 = time.perf_counter()
                batch = next(it)
                timing["data_s"] += time.perf_counter() - t0
                pos += 1
                if batch.get("skipped"):
                    raise RBFError(f"image {batch['skipped'][0][0]} could not be read "
                                   f"({batch['skipped'][0][1]}); fix or remove it and rerun")
                n_loaded += len(batch["id"])
                t0 = time.perf_counter()
                res = pipe.run(batch, pending)
                timing["compute_s"] += time.perf_counter() - t0
                for c, (vec, secs) in res.items():
                    a = acc[c]
                    a[0] = [u + v for u, v in zip(a[0], vec)]
                    a[1] += secs
                bars.update(pending, len(batch["id"]) * dd.world)
            # reduce over ranks: counts summed, seconds max
            flat = torch.tensor([v for c in pending for v in acc[c][0]], dtype=torch.long)
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
                    st.commit_chunk(entry, chunk_size, n_chunks, ci,
                                    {c: v for c, v in chunk_counts.items() if c not in bad},
                                    lambda c, tot, s: _finalize(c, tot, s, {
                                        "device": str(dev), "torch_version": torch.__version__}))
                where = f"; results written so far are kept in {st.path}" if st else ""
                raise RBFError(f"the model returned NaN/inf logits on condition {bad[0].key} "
                               f"(chunk {ci}){where}")
            if dd.main:
                if st is not None:
                    st.commit_chunk(entry, chunk_size, n_chunks, ci, chunk_counts,
                                    lambda c, tot, s: _finalize(c, tot, s, {
                                        "device": str(dev), "torch_version": torch.__version__}))
                else:
                    for c, (vec, s) in chunk_counts.items():
                        t = totals.setdefault(c, [[0] * len(vec), 0.0])
                        t[0] = [u + v for u, v in zip(t[0], vec)]
                        t[1] += s
    finally:
        bars.close()
    return n_loaded


# ------------------------------------------------------------------------------------------------
# saliency
# ------------------------------------------------------------------------------------------------
#: Per-sample saliency scores kept per part (no curves: the summary needs only these).
_SAL_PER_SAMPLE = ("target", "prob", "lesion_share", "lesion_area", "disc_share", "deletion_auc",
                   "deletion_auc_random", "ig_delta")


def _run_saliency(cond: Condition, mi: ModelInfo, di: DataInfo, dd: _Dist, dev: torch.device,
                  seed: int, part_size: int, st, entry: dict) -> dict | None:
    """Score saliency on ``cond.n_images`` images spread evenly over the evaluated set, in parts
    of ``part_size`` images (the unit of resumption: each part's per-sample scores are committed
    to the store as it completes; ranks take parts in turn). Returns the result row when the
    store is not used (else the row is in the store), on rank 0."""
    N = len(di.indices)
    sel = [di.indices[p] for p in _limit_indices(N, cond.n_images)]
    parts = [sel[i:i + part_size] for i in range(0, len(sel), part_size)]
    todo = None
    if dd.main:
        done = st.done_chunks(entry, part_size).get(cond.key, set()) if st is not None else set()
        todo = [p for p in range(len(parts)) if p not in done]
    todo = dd.broadcast(todo)
    pipe = _Pipeline(mi, di, dev, seed, None, 0)
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
                                      lambda c, pls, secs: _finalize_saliency(c, pls, secs, {
                                          "device": str(dev),
                                          "torch_version": torch.__version__})) or row
            else:
                got_all.update(got)
    if dd.main and st is None:
        row = _finalize_saliency(cond, [got_all[p][0] for p in range(len(parts))],
                                 sum(v[1] for v in got_all.values()), {})
    return row


def _mask_to(m: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    m = m.float()
    if m.dim() == 3:
        m = m.unsqueeze(1)
    if tuple(m.shape[-2:]) != tuple(size):
        m = F.interpolate(m, size=size, mode="area")
    return m >= 0.5


def _saliency_part(pipe: "_Pipeline", di: DataInfo, idx: list[int], cond: Condition,
                   seed: int) -> dict:
    """Per-sample saliency scores (JSON-able) of the dataset items ``idx``."""
    from ..data.dataset import collate
    from ..data.geometry import estimate_geometry
    from ..interpret import saliency_scores
    batch = collate([di.dataset[i] for i in idx])
    if batch.get("skipped"):
        raise RBFError(f"image {batch['skipped'][0][0]} could not be read "
                       f"({batch['skipped'][0][1]}); fix or remove it and rerun")
    img = batch["image"]
    x_raw = (img.float() / 255.0 if img.dtype == torch.uint8 else img.float()).to(pipe.device)
    geom = estimate_geometry(x_raw)                    # on the clean working crop
    x = pipe.pre(x_raw, geom)                          # model-input space (Graham, resize)
    size = tuple(x.shape[-2:])
    fundus = _mask_to(geom.mask, size)
    lesion = batch.get("lesion_mask")                  # synthetic items: (B,1,S,S) at work size
    lesion = _mask_to(lesion, size).to(pipe.device) if isinstance(lesion, torch.Tensor) else None
    ids = [int(i) for i in batch["index"].tolist()]
    out = saliency_scores(pipe.m, x, batch["label"].to(pipe.device), lesion,
                          fundus.to(pipe.device), steps=int(cond.steps),
                          baseline=cond.baseline, seed=seed, method=cond.name, sample_ids=ids)
    per = out["per_sample"]

    def _vals(a) -> list:
        return [None if not math.isfinite(float(v)) else float(v) for v in np.asarray(a).ravel()]
    return {"index": ids,
            "meta": {k: out[k] for k in ("method", "baseline", "steps", "seed", "points")
                     if k in out},
            "per_sample": {k: _vals(per[k]) for k in _SAL_PER_SAMPLE if k in per}}


def _finalize_saliency(cond: Condition, payloads: list[dict], seconds: float,
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


class _Bars:
    """One progress bar per stage (clean, each corruption, attack), counting images."""

    def __init__(self, on: bool, plan, conds, chunk_size: int, N: int):
        self.bars: dict[str, Any] = {}
        if not on:
            return
        from tqdm import tqdm
        totals: dict[str, int] = {}
        for ci, todo in plan:
            n = min(N, (ci + 1) * chunk_size) - ci * chunk_size
            for st in {self._stage(conds[k]) for k in todo}:
                totals[st] = totals.get(st, 0) + n
        for i, (st, tot) in enumerate(totals.items()):
            self.bars[st] = tqdm(total=tot, desc=f"{st:<16}", unit="img", position=i,
                                 leave=True, dynamic_ncols=True)

    @staticmethod
    def _stage(c: Condition) -> str:
        return c.name if c.kind != "clean" else "clean"

    def update(self, pending: list[Condition], n: int) -> None:
        for st in {self._stage(c) for c in pending}:
            if st in self.bars:
                self.bars[st].update(n)

    def close(self) -> None:
        for b in self.bars.values():
            b.close()
