"""Result rows from summed counts, and report sections from result rows.

:func:`finalize_row` turns the summed integer counts of one condition into the typed columns of
its ``results`` row (rates are derived only after summing, so sharded and resumed runs are
exact); :func:`build_report` turns the rows of a run's conditions back into the report's
sections.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..grades import NUM_GRADES
from ..metrics import ClassificationMetrics
from .conditions import ATTACK_SANITY, REFERRAL_COUNTS, Condition
from .screening import Layout, sparse
from .report import AttackResult, CleanResult, CorruptionResult, ReferralFlipResult


def finalize_row(cond: Condition, counts: Sequence[int], seconds: float, extra: dict) -> dict:
    """Store columns of one condition from its summed counts."""
    row = dict(extra)
    row["seconds"] = float(seconds)
    if cond.config is not None:
        row["config"] = cond.config
        row["config_hash"] = cond.config_hash
    k = cond.n_labels
    if cond.kind == "referral":
        vals = [int(v) for v in counts[:len(REFERRAL_COUNTS)]]
        c = dict(zip(REFERRAL_COUNTS, vals))
        row.update(n=c["n_referable"] + c["n_nonreferable"], label=cond.label,
                   n_attacked=c["n_referable_attacked"] + c["n_nonreferable_attacked"],
                   n_broken=c["n_missed"] + c["n_over_referred"],
                   metrics={"referral_flip": c, "threshold": cond.threshold})
        return row
    off = 0
    if cond.kind == "attack":
        n, na, nb = (int(v) for v in counts[:3])
        a = AttackResult.from_counts(cond.name, cond.eps, n, na, nb)
        san = [int(v) for v in counts[3:3 + len(ATTACK_SANITY)]]
        san += [0] * (len(ATTACK_SANITY) - len(san))
        row.update(n=n, n_attacked=na, n_broken=nb, label=cond.label,
                   success_rate=None if math.isnan(a.success_rate) else a.success_rate,
                   robust_accuracy=None if math.isnan(a.robust_accuracy) else a.robust_accuracy)
        off = 3 + len(ATTACK_SANITY)
        metrics: dict = {"sanity": dict(zip(ATTACK_SANITY, san))}
    else:
        metrics = {}
    cm = np.asarray(counts[off:off + k * k], dtype=np.int64).reshape(k, k)
    m = ClassificationMetrics.from_confusion(cm)
    five = k == NUM_GRADES        # a referral decision has no five-grade metrics
    row.update(accuracy=_none(m.accuracy) if five else None,
               balanced_accuracy=_none(m.balanced_accuracy) if five else None,
               kappa=_none(m.kappa) if five else None, confusion=cm.tolist())
    if cond.kind != "attack":
        row["n"] = m.n
    # the screening counts, kept compactly so every figure can be recomputed from the row
    seg = counts[off + k * k:off + k * k + Layout(k).size]
    metrics["screening"] = {"n_labels": k, "counts": sparse(seg)}
    row["metrics"] = metrics
    return row


def _none(v: float) -> float | None:
    return None if v is None or math.isnan(v) else float(v)


def _nan(v: Any) -> float:
    return float("nan") if v is None else float(v)


def _fig_seed(seed: int, key: str) -> int:
    from ..seeding import derive_seed
    return derive_seed(int(seed), "bootstrap", key) % (2 ** 31)


def build_report(rows: dict[str, dict], conditions: list[Condition], threshold: int = 2,
                 seed: int = 0) -> tuple[CleanResult | None, list[CorruptionResult],
                                         list[AttackResult], list[ReferralFlipResult]]:
    """Report sections from store rows keyed by condition key, with each row's screening
    figures at the referral threshold ``threshold`` (bootstrap seeded from ``seed`` and the
    condition key)."""
    from .screening import figures
    clean = None
    if "clean" in rows:
        r = rows["clean"]
        clean = CleanResult.from_confusion(r["confusion"], r.get("seconds") or 0.0)
        clean.screening = figures(r, threshold, _fig_seed(seed, "clean")) or None
        if len(r["confusion"]) != NUM_GRADES:  # a referral decision: no five-grade metrics
            clean.accuracy = clean.balanced_accuracy = clean.kappa = float("nan")
            clean.per_class_recall = []
    cors, atks, flips = [], [], []
    for c in conditions:
        r = rows.get(c.key)
        if r is None or c.kind in ("clean", "saliency"):
            continue
        fig = figures(r, threshold, _fig_seed(seed, c.key)) or None
        if c.kind == "corruption":
            acc = _nan(r["accuracy"])
            drop = clean.accuracy - acc if clean is not None else float("nan")
            cors.append(CorruptionResult(c.name, c.severity, acc, _nan(r["balanced_accuracy"]),
                                         _nan(r["kappa"]), drop, int(r["n"]), r["confusion"],
                                         r.get("seconds") or 0.0, c.config_hash,
                                         c.config_dict, fig))
        elif c.kind == "referral":
            f = (r.get("metrics") or {}).get("referral_flip") or {}
            flips.append(ReferralFlipResult(
                c.name, c.eps, int(c.threshold), *(int(f.get(k, 0)) for k in REFERRAL_COUNTS),
                label=c.label, norm=str(c.norm), steps=c.steps, config_hash=c.config_hash,
                seconds=r.get("seconds") or 0.0))
        else:
            a = AttackResult.from_counts(
                c.name, c.eps, int(r["n"]), int(r["n_attacked"]), int(r["n_broken"]), c.steps,
                c.norm, r.get("seconds") or 0.0, label=c.label, config_hash=c.config_hash,
                config=c.config_dict)
            a.screening, a.confusion = fig, r.get("confusion")
            atks.append(a)
    return clean, cors, atks, flips
