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
from .conditions import ATTACK_SANITY, Condition
from .report import AttackResult, CleanResult, CorruptionResult


def finalize_row(cond: Condition, counts: Sequence[int], seconds: float, extra: dict) -> dict:
    """Store columns of one condition from its summed counts."""
    row = dict(extra)
    row["seconds"] = float(seconds)
    if cond.config is not None:
        row["config"] = cond.config
        row["config_hash"] = cond.config_hash
    if cond.kind == "attack":
        n, na, nb = (int(v) for v in counts[:3])
        a = AttackResult.from_counts(cond.name, cond.eps, n, na, nb)
        san = [int(v) for v in counts[3:3 + len(ATTACK_SANITY)]]
        san += [0] * (len(ATTACK_SANITY) - len(san))
        row.update(n=n, n_attacked=na, n_broken=nb, label=cond.label,
                   success_rate=None if math.isnan(a.success_rate) else a.success_rate,
                   robust_accuracy=None if math.isnan(a.robust_accuracy) else a.robust_accuracy,
                   metrics={"sanity": dict(zip(ATTACK_SANITY, san))})
    else:
        k = cond.n_labels
        cm = np.asarray(counts[:k * k], dtype=np.int64).reshape(k, k)
        m = ClassificationMetrics.from_confusion(cm)
        if k == NUM_GRADES:
            row.update(n=m.n, accuracy=_none(m.accuracy),
                       balanced_accuracy=_none(m.balanced_accuracy), kappa=_none(m.kappa),
                       confusion=cm.tolist())
        else:  # a referral decision: five-grade metrics do not exist for it
            row.update(n=m.n, accuracy=None, balanced_accuracy=None, kappa=None,
                       confusion=cm.tolist())
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
        if len(r["confusion"]) != NUM_GRADES:  # a referral decision: no five-grade metrics
            clean.accuracy = clean.balanced_accuracy = clean.kappa = float("nan")
            clean.per_class_recall = []
    cors, atks = [], []
    for c in conditions:
        r = rows.get(c.key)
        if r is None or c.kind in ("clean", "saliency"):
            continue
        if c.kind == "corruption":
            acc = _nan(r["accuracy"])
            drop = clean.accuracy - acc if clean is not None else float("nan")
            cors.append(CorruptionResult(c.name, c.severity, acc, _nan(r["balanced_accuracy"]),
                                         _nan(r["kappa"]), drop, int(r["n"]), r["confusion"],
                                         r.get("seconds") or 0.0, c.config_hash,
                                         c.config_dict))
        else:
            atks.append(AttackResult.from_counts(
                c.name, c.eps, int(r["n"]), int(r["n_attacked"]), int(r["n_broken"]), c.steps,
                c.norm, r.get("seconds") or 0.0, label=c.label, config_hash=c.config_hash,
                config=c.config_dict))
    return clean, cors, atks
