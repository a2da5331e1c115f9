"""Screening figures as plain functions of mergeable integer counts.

What a DR screening programme audits, computed from counts that add exactly over batches,
chunks and processes (so sharded, resumed and one-shot runs agree to the last digit):

* referable-DR decisions from the confusion matrix: sensitivity, specificity, PPV, NPV
  (:func:`referable_table`, :func:`referable_metrics`);
* AUROC of a referable score from two histograms of the score (:func:`auroc_from_hist`);
* calibration from per-bin counts and fixed-point confidence sums: expected calibration error
  with 15 equal-width bins of top-class confidence (Guo et al. 2017) and the Brier score
  (:func:`calibration_from_counts`);
* selective prediction (the referral curve): the retained images' accuracy, sensitivity and
  specificity when the least certain share is referred (:func:`referral_curve`);
* intervals: Wilson 95% for proportions (:func:`wilson`), Newcombe's interval for a paired
  difference of proportions (:func:`paired_difference`), and a seeded bootstrap over a confusion
  matrix for kappa and balanced accuracy (:func:`bootstrap_interval`).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

Z95 = 1.959963984540054
#: Fixed-point scale of the summed confidences and squared errors (exact integer sums).
FIXED = 1_000_000_000


# -- intervals ------------------------------------------------------------------------------------
def wilson(k: int, n: int, z: float = Z95) -> tuple[float | None, float | None]:
    """Wilson score interval of the proportion k/n (None when n == 0)."""
    if n <= 0:
        return None, None
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    lo = 0.0 if k == 0 else max(0.0, c - h)      # exact at the ends (no rounding residue)
    hi = 1.0 if k == n else min(1.0, c + h)
    return lo, hi


def proportion(k: int, n: int) -> dict:
    """``{"value", "ci_low", "ci_high", "k", "n"}`` of k/n with its Wilson 95% interval."""
    lo, hi = wilson(int(k), int(n))
    return {"value": (k / n) if n else None, "ci_low": lo, "ci_high": hi, "k": int(k),
            "n": int(n)}


def paired_difference(n11: int, n10: int, n01: int, n00: int, z: float = Z95
                      ) -> tuple[float | None, float | None, float | None]:
    """p1 - p2 for paired binary outcomes and Newcombe's (1998, method 10) hybrid score
    interval. ``n10``: success under the first condition only (e.g. correct on the clean image,
    wrong on the corrupted one), ``n01`` the reverse."""
    n = n11 + n10 + n01 + n00
    if n == 0:
        return None, None, None
    p1, p2 = (n11 + n10) / n, (n11 + n01) / n
    d = p1 - p2
    l1, u1 = wilson(n11 + n10, n, z)
    l2, u2 = wilson(n11 + n01, n, z)
    a, b, c, e = n11, n10, n01, n00
    denom = (a + b) * (c + e) * (a + c) * (b + e)
    phi = 0.0
    if denom > 0:
        num = a * e - b * c
        if num > n / 2:
            num -= n / 2          # Newcombe's continuity adjustment of a positive association
        elif num > 0:
            num = 0.0
        phi = max(-1.0, min(1.0, num / math.sqrt(denom)))
    dl = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    du = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return d, max(-1.0, d - dl), min(1.0, d + du)


def bootstrap_interval(cm: np.ndarray, stat: Callable[[np.ndarray], float], *, seed: int = 0,
                       n_boot: int = 1000, level: float = 0.95
                       ) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of ``stat(confusion)``: ``n_boot`` confusion matrices
    resampled from the multinomial of the observed cells (n cases), seeded, so the interval
    depends only on the counts and the seed."""
    cm = np.asarray(cm, dtype=np.int64)
    n = int(cm.sum())
    if n == 0:
        return None, None
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, (cm / n).ravel(), size=n_boot).reshape(n_boot, *cm.shape)
    vals = np.array([stat(d) for d in draws], dtype=np.float64)
    vals = vals[np.isfinite(vals)]
    if not vals.size:
        return None, None
    a = (1 - level) / 2
    return float(np.quantile(vals, a)), float(np.quantile(vals, 1 - a))


# -- referable decisions ----------------------------------------------------------------------------
def referable_table(cm: np.ndarray, threshold: int) -> tuple[int, int, int, int]:
    """(TP, FN, FP, TN) of the referral decision "grade >= threshold" from a K x K grade
    confusion matrix (rows true, columns predicted); a 2 x 2 matrix is the decision already
    (label 1 = referable)."""
    cm = np.asarray(cm, dtype=np.int64)
    t = 1 if cm.shape[0] == 2 else int(threshold)
    tp = int(cm[t:, t:].sum())
    fn = int(cm[t:, :t].sum())
    fp = int(cm[:t, t:].sum())
    tn = int(cm[:t, :t].sum())
    return tp, fn, fp, tn


def referable_metrics(tp: int, fn: int, fp: int, tn: int) -> dict:
    """Sensitivity (referable eyes referred / referable eyes), specificity (non-referable not
    referred / non-referable), PPV (referable among referred), NPV (non-referable among not
    referred) and the accuracy of the decision, each with its Wilson 95% interval and
    denominator."""
    return {"sensitivity": proportion(tp, tp + fn), "specificity": proportion(tn, tn + fp),
            "ppv": proportion(tp, tp + fp), "npv": proportion(tn, tn + fn),
            "accuracy": proportion(tp + tn, tp + fn + fp + tn)}


# -- scores ---------------------------------------------------------------------------------------
def auroc_from_hist(pos: Sequence[int], neg: Sequence[int]) -> float | None:
    """AUROC of a score from its histograms over ascending bins for positives and negatives:
    P(score_pos > score_neg) + 0.5 P(same bin). None without positives or negatives."""
    pos = np.asarray(pos, dtype=np.float64)
    neg = np.asarray(neg, dtype=np.float64)
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos == 0 or n_neg == 0:
        return None
    below = np.concatenate([[0.0], np.cumsum(neg)[:-1]])   # negatives in lower bins
    return float((pos * (below + 0.5 * neg)).sum() / (n_pos * n_neg))


def calibration_from_counts(n_bin: Sequence[int], conf_fp: Sequence[int],
                            correct: Sequence[int], brier_fp: int, n: int) -> dict:
    """ECE = sum over bins of (bin share) x |mean confidence - accuracy| (equal-width bins of
    top-class confidence), and the Brier score (mean over images of the squared error of the
    probability vector against the one-hot label), from fixed-point sums."""
    nb = np.asarray(n_bin, dtype=np.float64)
    if n <= 0:
        return {"ece": None, "brier": None, "n": 0, "bins": len(nb)}
    conf = np.asarray(conf_fp, dtype=np.float64) / FIXED
    acc = np.asarray(correct, dtype=np.float64)
    keep = nb > 0
    gap = np.abs(conf[keep] / nb[keep] - acc[keep] / nb[keep])
    ece = float((nb[keep] / n * gap).sum())
    return {"ece": ece, "brier": float(brier_fp) / FIXED / n, "n": int(n), "bins": len(nb)}


def referral_curve(correct: np.ndarray, tp: np.ndarray, fn: np.ndarray, fp: np.ndarray,
                   tn: np.ndarray, fractions: Sequence[float]) -> list[dict]:
    """The referral (selective prediction) curve from per-certainty-bin counts (bins ascending
    in certainty): for each referred fraction f, the least certain images are referred (whole
    bins, the last one in proportion), and the retained images' accuracy, sensitivity and
    specificity are reported with the share actually retained."""
    arrays = [np.asarray(a, dtype=np.float64) for a in (correct, tp, fn, fp, tn)]
    total = arrays[1] + arrays[2] + arrays[3] + arrays[4]
    n = total.sum()
    out = []
    for f in fractions:
        if n == 0:
            out.append({"referred": float(f), "retained": None, "accuracy": None,
                        "sensitivity": None, "specificity": None})
            continue
        drop = f * n
        w = np.ones_like(total)
        cum = np.cumsum(total)
        prev = np.concatenate([[0.0], cum[:-1]])
        full = cum <= drop
        w[full] = 0.0
        part = (~full) & (prev < drop)
        w[part] = 1.0 - (drop - prev[part]) / np.maximum(total[part], 1e-12)
        c, a, b, d, e = (float((w * arr).sum()) for arr in arrays)
        kept = a + b + d + e
        out.append({"referred": float(f), "retained": kept / n if n else None,
                    "accuracy": c / kept if kept else None,
                    "sensitivity": a / (a + b) if a + b else None,
                    "specificity": e / (e + d) if e + d else None})
    return out
