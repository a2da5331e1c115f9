"""The screening view of a condition: mergeable integer counts per batch, figures from them.

For clean input, every corruption x severity and every attack eps, beside the confusion matrix
of the decisions, a batch adds these integer counts (layout :class:`Layout`, all summed
elementwise over batches, chunks and ranks, so sharded and resumed runs agree exactly):

* ``hist``: for each referral threshold t (grades 1-4; a binary head's own one), histograms
  of the head's referable score on a logit-like scale (:meth:`Head.referable_logit`, 0 at the
  decision, ``HIST_BINS`` equal bins over +-``HIST_RANGE``, clamped), one for the eyes with
  grade >= t and one for the others: AUROC at any threshold chosen when the report is made;
* ``calib``: per bin of top-class confidence (``CAL_BINS`` equal-width bins), the images, the
  sum of their confidences and the correct ones, and the summed Brier score, confidences and
  squared errors in fixed point (:data:`~robustbench_fundus.metrics.screening.FIXED`):
  expected calibration error and Brier score;
* ``select``: per bin of the decision's certainty (``SEL_BINS`` bins of its logit,
  :meth:`Head.certainty_logit`, over ``SEL_RANGE``), the confusion matrix of the images in it:
  the referral curve (selective prediction) at any threshold;
* ``paired``: the images (correct on clean, correct here) 2x2 table: the paired interval of an
  accuracy drop;
* ``shift``: the summed absolute grade shift against the clean decision, and the images moved
  toward healthy (under-graded) and toward disease (over-graded).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..grades import NUM_GRADES
from ..metrics.screening import FIXED

HIST_BINS = 1024
HIST_RANGE = 20.0
CAL_BINS = 15
SEL_BINS = 1000
#: The referral curve bins the logit of the decision's certainty over this range.
SEL_RANGE = (-4.0, 20.0)
#: Shares of the least certain images referred in the referral curve.
REFERRAL_FRACTIONS = tuple(round(0.05 * k, 2) for k in range(11))


@dataclass(frozen=True)
class Layout:
    """Where each part sits in a condition's screening counts (after its confusion matrix)."""
    n_labels: int

    @property
    def thresholds(self) -> tuple[int, ...]:
        """Referral thresholds with their own score histograms: grades 1-4, or the binary
        decision (1)."""
        return tuple(range(1, NUM_GRADES)) if self.n_labels == NUM_GRADES else (1,)

    @property
    def parts(self) -> dict[str, int]:
        k = self.n_labels
        return {"hist": 2 * HIST_BINS * len(self.thresholds), "calib": 3 * CAL_BINS + 1,
                "select": SEL_BINS * k * k, "paired": 4, "shift": 3}

    @property
    def size(self) -> int:
        return sum(self.parts.values())

    def split(self, vec) -> dict[str, np.ndarray]:
        v = np.asarray(vec, dtype=np.int64)
        out, off = {}, 0
        for name, n in self.parts.items():
            out[name] = v[off:off + n]
            off += n
        return out


def batch_counts(head, grades: torch.Tensor, out: torch.Tensor, pred: torch.Tensor,
                 clean_pred: torch.Tensor) -> list[int]:
    """The screening counts of one batch of one condition (see the module docstring):
    ``out`` the model's outputs at the condition's inputs, ``pred`` its decisions,
    ``clean_pred`` the decisions on the clean images."""
    k = head.n_labels
    lay = Layout(k)
    y = head.labels(grades)
    dev = out.device
    parts: list[torch.Tensor] = []
    # score histograms per referral threshold
    out = out.float()
    for t in lay.thresholds:
        u = head.referable_logit(out, t) if k == NUM_GRADES else head.referable_logit(out)
        u = torch.nan_to_num(u.float(), nan=0.0, posinf=HIST_RANGE, neginf=-HIST_RANGE)
        b = ((u + HIST_RANGE) / (2 * HIST_RANGE) * HIST_BINS).floor().long().clamp(
            0, HIST_BINS - 1)
        pos = (grades >= t) if k == NUM_GRADES else (y == 1)
        parts.append(torch.bincount(b[pos], minlength=HIST_BINS))
        parts.append(torch.bincount(b[~pos], minlength=HIST_BINS))
    # calibration of the decision's probabilities
    probs = head.decision_probs(out)
    if probs is not None and torch.isfinite(probs).all():
        conf, top = probs.max(1)
        cb = (conf * CAL_BINS).floor().long().clamp(0, CAL_BINS - 1)
        correct = (top == y).long()
        conf_fp = (conf.double() * FIXED).round().long()
        onehot = torch.nn.functional.one_hot(y, probs.shape[1]).double()
        brier = (((probs.double() - onehot) ** 2).sum(1) * FIXED).round().long()
        parts += [torch.bincount(cb, minlength=CAL_BINS),
                  torch.zeros(CAL_BINS, dtype=torch.long, device=dev).scatter_add_(0, cb, conf_fp),
                  torch.bincount(cb, weights=correct.double(), minlength=CAL_BINS).long(),
                  brier.sum().view(1)]
    else:
        parts.append(torch.zeros(3 * CAL_BINS + 1, dtype=torch.long, device=dev))
    # the decisions' confusion matrix per bin of certainty
    lo, hi = SEL_RANGE
    cert = torch.nan_to_num(head.certainty_logit(out).float(), nan=lo, posinf=hi, neginf=lo)
    sb = ((cert - lo) / (hi - lo) * SEL_BINS).floor().long().clamp(0, SEL_BINS - 1)
    ok = (pred >= 0) & (pred < k)
    idx = (sb * k * k + y * k + pred.clamp(0, k - 1))[ok]
    parts.append(torch.bincount(idx, minlength=SEL_BINS * k * k))
    # paired with the clean decisions, and the grade shift
    cc, cr = clean_pred == y, pred == y
    parts.append(torch.stack([(cc & cr).sum(), (cc & ~cr).sum(), (~cc & cr).sum(),
                              (~cc & ~cr).sum()]))
    d = (pred - clean_pred)[ok & (clean_pred >= 0)] if k == NUM_GRADES else \
        torch.zeros(0, dtype=torch.long, device=dev)
    parts.append(torch.stack([d.abs().sum(), (d < 0).sum(), (d > 0).sum()]) if d.numel() else
                 torch.zeros(3, dtype=torch.long, device=dev))
    return torch.cat([p.long().reshape(-1) for p in parts]).cpu().tolist()


def sparse(vec) -> list[list[int]]:
    """[[index, value], ...] of the non-zero entries (rows keep the raw counts compactly)."""
    v = np.asarray(vec, dtype=np.int64)
    nz = np.nonzero(v)[0]
    return [[int(i), int(v[i])] for i in nz]


def dense(pairs, size: int) -> np.ndarray:
    v = np.zeros(int(size), dtype=np.int64)
    for i, c in pairs or ():
        v[int(i)] = int(c)
    return v


def _nan_none(v):
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v


# -- figures --------------------------------------------------------------------------------------
#: The screening line: sensitivity and specificity a programme requires (the IDx-DR pivotal
#: trial's pre-specified endpoints for more-than-mild DR).
SCREENING_LINE = {"sensitivity": 0.85, "specificity": 0.825}
VISION_THREATENING = 3
BOOTSTRAP = 1000


def _flat(prefix_metrics: dict) -> dict:
    """{"sensitivity": {value, ci_low, ci_high, n, k}, ...} -> flat keys ``sensitivity``,
    ``sensitivity_ci_low``, ``sensitivity_ci_high``, ``sensitivity_n`` (the denominator)."""
    out = {}
    for name, p in prefix_metrics.items():
        out[name] = p["value"]
        out[f"{name}_ci_low"] = p["ci_low"]
        out[f"{name}_ci_high"] = p["ci_high"]
        out[f"{name}_n"] = p["n"]
    return out


def _kappa_many(cms: np.ndarray) -> np.ndarray:
    """Quadratic-weighted kappa of each (K, K) matrix of a stack (NaN where undefined)."""
    cms = cms.astype(np.float64)
    k = cms.shape[-1]
    n = cms.sum((1, 2))
    i, j = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    w = (i - j) ** 2 / (k - 1) ** 2
    row, col = cms.sum(2), cms.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        exp = row[:, :, None] * col[:, None, :] / n[:, None, None]
        num = (w * cms).sum((1, 2))
        den = (w * exp).sum((1, 2))
        return np.where(den > 0, 1 - num / den, np.nan)


def _balanced_many(cms: np.ndarray) -> np.ndarray:
    """Mean recall over the classes present of each matrix of a stack."""
    cms = cms.astype(np.float64)
    tot = cms.sum(2)
    diag = np.einsum("bii->bi", cms)
    with np.errstate(invalid="ignore", divide="ignore"):
        rec = np.where(tot > 0, diag / tot, np.nan)
    return np.nanmean(rec, axis=1)


def _boot(cm: np.ndarray, fn, seed: int) -> tuple[float | None, float | None]:
    n = int(cm.sum())
    if n == 0:
        return None, None
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, (cm / n).ravel(), size=BOOTSTRAP).reshape(BOOTSTRAP, *cm.shape)
    vals = fn(draws)
    vals = vals[np.isfinite(vals)]
    if not vals.size:
        return None, None
    return float(np.quantile(vals, 0.025)), float(np.quantile(vals, 0.975))


def figures(row: dict, threshold: int, seed: int) -> dict:
    """Every screening figure of one stored row (clean, corruption or attack eps), at the
    referral threshold ``threshold``; ``seed`` seeds the bootstrap (from the run's seed and the
    condition key, so the intervals depend only on the stored counts)."""
    from ..metrics.screening import (auroc_from_hist, calibration_from_counts, proportion,
                                     referable_metrics, referable_table, referral_curve)
    scr = (row.get("metrics") or {}).get("screening")
    cm = np.asarray(row.get("confusion") or [], dtype=np.int64)
    if scr is None or cm.size == 0:
        return {}
    k = int(scr["n_labels"])
    lay = Layout(k)
    parts = lay.split(dense(scr["counts"], lay.size))
    n = int(cm.sum())
    out: dict = {}
    five = k == NUM_GRADES
    if five:
        out["accuracy"] = proportion(int(np.trace(cm)), n)
        out["kappa_ci"] = _boot(cm, _kappa_many, seed)
        out["balanced_accuracy_ci"] = _boot(cm, _balanced_many, seed + 1)
    ops = [("referable", int(threshold))]
    if five and int(threshold) != VISION_THREATENING:
        ops.append(("vision_threatening", VISION_THREATENING))
    hist = parts["hist"].reshape(len(lay.thresholds), 2, HIST_BINS)
    for name, t in ops:
        tp, fn, fp, tn = referable_table(cm, t)
        m = referable_metrics(tp, fn, fp, tn)
        h = hist[lay.thresholds.index(t) if five else 0]
        block = {"threshold": t if five else None, **_flat(m), "auroc": auroc_from_hist(h[0], h[1])}
        out[name] = block
    c = parts["calib"]
    out["calibration"] = calibration_from_counts(c[:CAL_BINS], c[CAL_BINS:2 * CAL_BINS],
                                                 c[2 * CAL_BINS:3 * CAL_BINS], int(c[-1]),
                                                 int(c[:CAL_BINS].sum()))
    out["calibration"]["reliability"] = [
        {"bin": b, "n": int(c[b]), "confidence": float(c[CAL_BINS + b]) / FIXED / c[b]
         if c[b] else None, "accuracy": float(c[2 * CAL_BINS + b]) / c[b] if c[b] else None}
        for b in range(CAL_BINS)]
    sel = parts["select"].reshape(SEL_BINS, k, k)
    t = int(threshold) if five else 1
    correct = np.einsum("bii->b", sel)
    tp = sel[:, t:, t:].sum((1, 2))
    fn = sel[:, t:, :t].sum((1, 2))
    fp = sel[:, :t, t:].sum((1, 2))
    tn = sel[:, :t, :t].sum((1, 2))
    out["referral_curve"] = referral_curve(correct, tp, fn, fp, tn, REFERRAL_FRACTIONS)
    p = parts["paired"]
    out["paired"] = {"both_correct": int(p[0]), "clean_only": int(p[1]),
                     "condition_only": int(p[2]), "neither": int(p[3])}
    s = parts["shift"]
    if five:
        out["grade_shift"] = {"mean_abs": float(s[0]) / n if n else None,
                              "n_under_graded": int(s[1]), "n_over_graded": int(s[2]), "n": n}
    return out


def line_crossed(fig: dict, line: dict | None = None) -> bool:
    """Whether the referable sensitivity or specificity falls below the screening line."""
    line = line or SCREENING_LINE
    r = fig.get("referable") or {}
    return any(r.get(k) is not None and r[k] < v for k, v in line.items())


def _decision(block: dict | None) -> dict | None:
    if not block:
        return None
    keys = ("sensitivity", "sensitivity_ci_low", "sensitivity_ci_high", "sensitivity_n",
            "specificity", "specificity_ci_low", "specificity_ci_high", "specificity_n")
    return {k: block.get(k) for k in keys}


def card(clean, corruptions, attacks, threshold: int, line: dict | None = None) -> dict:
    """The screening card of a run: referable sensitivity and specificity on clean images, at
    the worst corruption and severity (the lowest sensitivity, then specificity), and at the
    smallest eps of each attack that takes either below the screening ``line`` (default
    :data:`SCREENING_LINE`), with the conditions that cross the line."""
    line = dict(line or SCREENING_LINE)
    out: dict = {"threshold": int(threshold), "line": line,
                 "clean": _decision(clean.referable) if clean is not None else None}
    worst, key = None, None
    for c in corruptions:
        r = c.referable or {}
        if r.get("sensitivity") is None:
            continue
        k = (r["sensitivity"], r.get("specificity") if r.get("specificity") is not None else 1)
        if key is None or k < key:
            worst, key = c, k
    out["worst_corruption"] = None if worst is None else {
        "name": worst.name, "severity": worst.severity, **_decision(worst.referable)}
    breaking = {}
    for a in sorted(attacks, key=lambda a: a.eps):
        lab = a.key_label
        if lab in breaking:
            continue
        if line_crossed({"referable": a.referable or {}}, line):
            breaking[lab] = {"eps": a.eps, "eps_text": a.eps_text, **_decision(a.referable)}
    for a in attacks:
        breaking.setdefault(a.key_label, None)
    out["breaking_eps"] = breaking
    crossed = []
    if clean is not None and line_crossed({"referable": clean.referable or {}}, line):
        crossed.append("clean")
    crossed += [f"{c.name} s{c.severity}" for c in corruptions
                if line_crossed({"referable": c.referable or {}}, line)]
    crossed += [f"{a.key_label} eps={a.eps_text}" for a in attacks
                if line_crossed({"referable": a.referable or {}}, line)]
    out["crossed"] = crossed
    return out
