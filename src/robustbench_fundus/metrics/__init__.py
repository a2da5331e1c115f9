"""Metrics as plain functions, named as scikit-learn names them, computed from a confusion matrix.

Every figure the benchmark reports is derived from a confusion matrix (or from integer attack
counts) that is stored beside it, so any figure can be recomputed later and counts from batches or
processes are simply summed. All functions accept label/prediction arrays or tensors; the
``*_from_confusion`` forms take a (K,K) matrix with rows = true class, columns = predicted class.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..grades import NUM_GRADES as NUM_CLASSES

__all__ = [
    "confusion_matrix", "accuracy_score", "balanced_accuracy_score", "cohen_kappa_quadratic",
    "per_class_recall", "accuracy_from_confusion", "balanced_accuracy_from_confusion",
    "quadratic_kappa_from_confusion", "recall_from_confusion", "ClassificationMetrics",
    "classification_metrics", "eps_at_success", "area_under_success_curve", "NUM_CLASSES",
]


def _arr(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a).astype(np.int64).ravel()


def confusion_matrix(y_true, y_pred, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """(K,K) int64 counts, rows = true class, columns = predicted class (scikit-learn's layout)."""
    t, p = _arr(y_true), _arr(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.shape[0]} vs {p.shape[0]}")
    if t.size and (t.min() < 0 or t.max() >= num_classes or p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    return np.bincount(t * num_classes + p, minlength=num_classes ** 2).reshape(
        num_classes, num_classes).astype(np.int64)


def accuracy_from_confusion(cm) -> float:
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.sum()
    return float(np.trace(cm) / n) if n else float("nan")


def recall_from_confusion(cm) -> np.ndarray:
    """Per-class recall; NaN for a class absent from y_true."""
    cm = np.asarray(cm, dtype=np.float64)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.where(support > 0, support, 1), np.nan)


def balanced_accuracy_from_confusion(cm) -> float:
    """Mean recall over the classes present in y_true (scikit-learn's balanced_accuracy_score)."""
    r = recall_from_confusion(cm)
    r = r[~np.isnan(r)]
    return float(r.mean()) if r.size else float("nan")


def quadratic_kappa_from_confusion(cm) -> float:
    """Cohen's kappa with quadratic weights over the fixed grade scale 0..K-1.

    Equals scikit-learn's ``cohen_kappa_score(y, p, weights="quadratic", labels=range(K))``: the
    weight is the squared grade distance, whichever grades happen to occur (scikit-learn without
    ``labels`` re-indexes the grades present, which changes the distances). NaN when the expected
    disagreement is zero (one grade everywhere), as scikit-learn.
    """
    cm = np.asarray(cm, dtype=np.float64)
    k = cm.shape[0]
    n = cm.sum()
    if n == 0:
        return float("nan")
    idx = np.arange(k)
    w = (idx[:, None] - idx[None, :]) ** 2 / float((k - 1) ** 2)
    expected = np.outer(cm.sum(axis=1), cm.sum(axis=0)) / n
    denom = (w * expected).sum()
    if denom == 0:
        return float("nan")
    return float(1.0 - (w * cm).sum() / denom)


def accuracy_score(y_true, y_pred) -> float:
    return accuracy_from_confusion(confusion_matrix(y_true, y_pred))


def balanced_accuracy_score(y_true, y_pred) -> float:
    return balanced_accuracy_from_confusion(confusion_matrix(y_true, y_pred))


def cohen_kappa_quadratic(y_true, y_pred) -> float:
    return quadratic_kappa_from_confusion(confusion_matrix(y_true, y_pred))


def per_class_recall(y_true, y_pred) -> np.ndarray:
    return recall_from_confusion(confusion_matrix(y_true, y_pred))


@dataclass
class ClassificationMetrics:
    """Metrics of one condition, with the confusion matrix they are computed from."""

    accuracy: float
    balanced_accuracy: float
    kappa: float
    n: int
    confusion: list[list[int]] = field(default_factory=list)
    per_class_recall: list[float] = field(default_factory=list)

    @classmethod
    def from_confusion(cls, cm) -> "ClassificationMetrics":
        cm = np.asarray(cm, dtype=np.int64)
        return cls(
            accuracy=accuracy_from_confusion(cm),
            balanced_accuracy=balanced_accuracy_from_confusion(cm),
            kappa=quadratic_kappa_from_confusion(cm),
            n=int(cm.sum()),
            confusion=cm.tolist(),
            per_class_recall=[float(v) for v in recall_from_confusion(cm)],
        )

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "balanced_accuracy": self.balanced_accuracy,
                "kappa": self.kappa, "n": self.n, "confusion": self.confusion,
                "per_class_recall": self.per_class_recall}


def classification_metrics(y_true, y_pred, num_classes: int = NUM_CLASSES) -> ClassificationMetrics:
    return ClassificationMetrics.from_confusion(confusion_matrix(y_true, y_pred, num_classes))


def eps_at_success(eps: Sequence[float], success: Sequence[float], level: float = 0.5) -> float | None:
    """Smallest eps at which the success rate reaches ``level``, linearly interpolated between the
    two measured eps that bracket it (success at eps=0 is taken as 0). ``None`` when never reached.
    """
    pts = sorted(zip((float(e) for e in eps), (float(s) for s in success)))
    prev_e, prev_s = 0.0, 0.0
    for e, s in pts:
        if s >= level:
            if s == prev_s or e == prev_e:
                return e
            return prev_e + (level - prev_s) * (e - prev_e) / (s - prev_s)
        prev_e, prev_s = e, s
    return None


def area_under_success_curve(eps: Sequence[float], success: Sequence[float],
                             eps_max: float | None = None) -> float:
    """Normalised area under success rate against eps, by the trapezoid rule from (0, 0) to the
    largest eps (or ``eps_max``), divided by that range: 0 = never fooled, 1 = fooled at once.

    With ``eps_max`` inside the measured range the curve is cut there, the success rate at
    ``eps_max`` linearly interpolated between the two measured eps that bracket it; beyond the
    largest measured eps the last measured rate is carried on flat."""
    pts = sorted(zip((float(e) for e in eps), (float(s) for s in success)))
    if not pts:
        return float("nan")
    xs = np.array([0.0] + [p[0] for p in pts])
    ys = np.array([0.0] + [p[1] for p in pts])
    top = float(eps_max) if eps_max is not None else float(xs[-1])
    if top <= 0:
        return float("nan")
    y_top = float(np.interp(top, xs, ys))  # flat beyond the last point (np.interp's rule)
    keep = xs < top
    xs = np.append(xs[keep], top)
    ys = np.append(ys[keep], y_top)
    return float(np.trapezoid(ys, xs) / top)
