"""Model heads: how a model's output becomes a grade (or a referral decision), and the losses
that train and attack it.

DR models in the field come in four shapes, and each is benchmarked on its own terms:

=================  ==================  ======================================  =================
head               output (B, width)   decision                                attack / train
=================  ==================  ======================================  =================
``classification`` 5 logits            grade = argmax                          cross-entropy
``regression``     1 score             grade = number of thresholds the score  a margin loss
                                       exceeds (default 0.5, 1.5, 2.5, 3.5)    (below) / MSE
``ordinal``        4 logits z_k,       grade = number of k with z_k > 0        sum of binary
                   P(grade > k)        (sigmoid(z_k) > 0.5)                    cross-entropies
``binary``         1 logit or 2        referable (grade >= ``threshold``,      binary
                   logits              default 2) when z > 0 / argmax = 1      cross-entropy
=================  ==================  ======================================  =================

Labels: the five-grade heads predict grades 0-4; the binary head predicts the referral decision
0/1, and its labels are ``grade >= threshold`` (:meth:`Head.labels`). Five-grade metrics (accuracy,
balanced accuracy, kappa) exist only for the five-grade heads.

**Regression attack loss.** The score ``s`` decides grade ``g`` while it lies in the interval
``(t_{g-1}, t_g]`` (``t_{-1} = -inf``, ``t_4 = +inf``). Its margin there is
``m_g = min(s - t_{g-1}, t_g - s)`` (positive inside). The attack ascends ``-m_y`` for the true
grade ``y``: it pushes the score across the *nearest* threshold away from the true grade, and a
sample is broken when the margin turns negative. Training minimises the squared error to the
grade (the Kaggle-winning recipe).

**The class view.** :meth:`Head.class_view` turns any head's output into ``(B, K)`` scores whose
argmax is the head's decision (K = 5 grades, or 2 for the binary head): classification logits
as they are; the regression margins ``m_0..m_4``; the ordinal prefix sums
``v_j = z_0 + ... + z_{j-1}`` (argmax = the decoded grade whenever the z_k decrease, as a
trained cumulative head's do); the binary ``[0, z]`` (or its two logits). Attacks written for
classifiers (torchattacks, AutoAttack) see the class view; success is always decided by the
head's own :meth:`Head.decode`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch
import torch.nn.functional as F

from .errors import RBFError
from .grades import NUM_GRADES

#: Head names, in the order they are listed.
HEADS = ("classification", "regression", "ordinal", "binary")
#: The referable-DR threshold: moderate non-proliferative DR or worse (grade >= 2).
REFERABLE_GRADE = 2


@dataclass(frozen=True)
class Head:
    """Base of the four heads. Frozen: a head is a value (its options are part of the model's
    identity)."""

    name: ClassVar[str] = ""
    #: Output widths the head accepts.
    widths: ClassVar[tuple[int, ...]] = ()
    #: True for heads that predict the five grades (five-grade metrics exist for them).
    five_grade: ClassVar[bool] = True

    # -- shape ----------------------------------------------------------------------------------
    @property
    def n_labels(self) -> int:
        """Labels of the decision: 5 grades, or 2 (not referable / referable)."""
        return NUM_GRADES if self.five_grade else 2

    @property
    def label_space(self) -> str:
        return "grades" if self.five_grade else "referable"

    def check(self, out: Any) -> torch.Tensor:
        """``out`` if it is a (B, width) float tensor this head reads; else a one-line error
        naming what was seen and the heads that fit."""
        return check_output(out, self)

    # -- decisions ------------------------------------------------------------------------------
    def decode(self, out: torch.Tensor) -> torch.Tensor:
        """(B,) int64 decision; -1 for rows with non-finite values (never correct)."""
        pred = self._decode(out.float())
        return torch.where(torch.isfinite(out).all(1), pred, torch.full_like(pred, -1))

    def labels(self, grades: torch.Tensor) -> torch.Tensor:
        """The labels of the decision for true grades 0-4."""
        return grades.long()

    def class_view(self, out: torch.Tensor) -> torch.Tensor:
        """(B, n_labels) scores whose argmax is the decision (see the module docstring)."""
        raise NotImplementedError

    # -- losses ---------------------------------------------------------------------------------
    def attack_loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Summed loss an attack ascends (labels ``y`` in the head's label space)."""
        raise NotImplementedError

    def train_loss(self, out: torch.Tensor, y: torch.Tensor,
                   weight: torch.Tensor | None = None) -> torch.Tensor:
        """Mean training loss; ``weight``: per-label weights (class balancing)."""
        raise NotImplementedError

    def margin(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B,) margin of the decision for label ``y``: positive while correct."""
        v = self.class_view(out.float())
        vy = v.gather(1, y[:, None]).squeeze(1)
        other = v.scatter(1, y[:, None], float("-inf")).amax(1)
        return vy - other

    # -- scores ---------------------------------------------------------------------------------
    def grade_probs(self, out: torch.Tensor) -> torch.Tensor | None:
        """(B, 5) grade probabilities where the head defines them (classification, ordinal),
        else None."""
        return None

    def referable_score(self, out: torch.Tensor, threshold: int = REFERABLE_GRADE
                        ) -> torch.Tensor:
        """(B,) a score that grows with the likelihood of referable DR (grade >= threshold):
        a probability where the head gives one, else the head's own score."""
        raise NotImplementedError

    def saliency_score(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B,) the scalar integrated gradients attribute: the true grade's logit
        (classification), the grade score (regression), the expected grade (ordinal), the
        referable logit (binary)."""
        raise NotImplementedError

    def referable_logit(self, out: torch.Tensor, threshold: int = REFERABLE_GRADE
                        ) -> torch.Tensor:
        """(B,) a real score, monotone in :meth:`referable_score`, on a logit-like scale (0 at
        the decision for heads with probabilities): what the AUROC histograms bin."""
        p = self.referable_score(out, threshold).double().clamp(1e-15, 1 - 1e-15)
        return torch.log(p / (1 - p)).float()

    def decision_probs(self, out: torch.Tensor) -> torch.Tensor | None:
        """(B, n_labels) probabilities of the decision's labels, where the head gives them
        (classification and ordinal: the grades; binary: not referable / referable);
        None for a regression score."""
        return self.grade_probs(out)

    def certainty(self, out: torch.Tensor) -> torch.Tensor:
        """(B,) in [0, 1]: how sure the decision is (the top probability; for a regression
        score the distance to the nearest threshold over half the gap between thresholds,
        capped at 1). Selective prediction refers the least certain images first."""
        p = self.decision_probs(out)
        return p.amax(1) if p is not None else torch.zeros(out.shape[0], device=out.device)

    def certainty_logit(self, out: torch.Tensor) -> torch.Tensor:
        """(B,) the logit of :meth:`certainty`, which keeps apart confidences that round to 1
        in float32 (what the referral curve bins)."""
        c = self.certainty(out).double().clamp(1e-12, 1 - 1e-12)
        return torch.log(c / (1 - c)).float()

    # -- identity -------------------------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.options()}

    def describe(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.options().items())
        return f"{self.name}" + (f" ({opts})" if opts else "")


def _jsonable(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def _weighted_mean(per: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None
                   ) -> torch.Tensor:
    if weight is None:
        return per.mean()
    w = weight.to(per.device, per.dtype)[y]
    return (per * w).sum() / w.sum().clamp_min(1e-12)


@dataclass(frozen=True)
class ClassificationHead(Head):
    """Five logits, grade = argmax, cross-entropy."""
    name: ClassVar[str] = "classification"
    widths: ClassVar[tuple[int, ...]] = (NUM_GRADES,)

    def _decode(self, out):
        return out.argmax(1)

    def class_view(self, out):
        return out

    def attack_loss(self, out, y):
        return F.cross_entropy(out.float(), y, reduction="sum")

    def train_loss(self, out, y, weight=None):
        return F.cross_entropy(out.float(), y, weight=None if weight is None else
                               weight.to(out.device, torch.float32))

    def grade_probs(self, out):
        return torch.softmax(out.float(), dim=1)

    def referable_score(self, out, threshold=REFERABLE_GRADE):
        return self.grade_probs(out)[:, int(threshold):].sum(1)

    def referable_logit(self, out, threshold=REFERABLE_GRADE):
        z = out.float()
        t = int(threshold)
        return torch.logsumexp(z[:, t:], 1) - torch.logsumexp(z[:, :t], 1)

    def certainty_logit(self, out):
        # logit of the top softmax probability, exactly: z_top - logsumexp(the others)
        z = out.float()
        top = z.argmax(1, keepdim=True)
        others = z.scatter(1, top, float("-inf"))
        return z.gather(1, top).squeeze(1) - torch.logsumexp(others, 1)

    def saliency_score(self, out, y):
        return out.gather(1, y[:, None]).squeeze(1)


@dataclass(frozen=True)
class RegressionHead(Head):
    """One score; grade = the number of thresholds it exceeds; margin loss (see module doc)."""
    name: ClassVar[str] = "regression"
    widths: ClassVar[tuple[int, ...]] = (1,)
    thresholds: tuple[float, ...] = (0.5, 1.5, 2.5, 3.5)

    def __post_init__(self) -> None:
        t = tuple(float(v) for v in self.thresholds)
        if len(t) != NUM_GRADES - 1 or any(b <= a for a, b in zip(t, t[1:])) or \
                not all(math.isfinite(v) for v in t):
            raise RBFError(f"head regression: thresholds must be {NUM_GRADES - 1} increasing "
                           f"numbers (e.g. 0.5,1.5,2.5,3.5), got {list(self.thresholds)}")
        object.__setattr__(self, "thresholds", t)

    def _t(self, out):
        return torch.tensor(self.thresholds, dtype=torch.float32, device=out.device)

    def _decode(self, out):
        return (out[:, :1] > self._t(out)).sum(1)

    def class_view(self, out):
        s = out[:, :1].float()
        t = self._t(out)
        inf = torch.full((1,), float("inf"), device=out.device)
        lo = torch.cat([-inf, t])          # t_{g-1}
        hi = torch.cat([t, inf])           # t_g
        return torch.minimum(s - lo, hi - s)

    def attack_loss(self, out, y):
        v = self.class_view(out)
        return -v.gather(1, y[:, None]).sum()

    def train_loss(self, out, y, weight=None):
        per = (out[:, 0].float() - y.float()) ** 2
        return _weighted_mean(per, y, weight)

    def referable_score(self, out, threshold=REFERABLE_GRADE):
        return out[:, 0].float()           # the grade score itself

    def referable_logit(self, out, threshold=REFERABLE_GRADE):
        # the score's distance above the threshold that decides "grade >= threshold", four
        # logit units per grade
        t = self.thresholds[int(threshold) - 1]
        return (out[:, 0].float() - t) * 4.0

    def certainty(self, out):
        s = out[:, :1].float()
        t = self._t(out)
        gaps = torch.tensor([b - a for a, b in zip(self.thresholds, self.thresholds[1:])],
                            device=out.device)
        half = float(gaps.min()) / 2 if gaps.numel() else 0.5
        return ((s - t).abs().amin(1) / half).clamp(0, 1)

    def saliency_score(self, out, y):
        return out[:, 0]


@dataclass(frozen=True)
class OrdinalHead(Head):
    """Four cumulative logits z_k for P(grade > k); grade = number of z_k > 0; sum of BCEs."""
    name: ClassVar[str] = "ordinal"
    widths: ClassVar[tuple[int, ...]] = (NUM_GRADES - 1,)

    def _decode(self, out):
        return (out > 0).sum(1)

    def _targets(self, y, out):
        k = torch.arange(NUM_GRADES - 1, device=out.device)
        return (y[:, None] > k[None]).float()

    def class_view(self, out):
        z = out.float()
        zero = torch.zeros(z.shape[0], 1, device=z.device)
        return torch.cat([zero, z.cumsum(1)], dim=1)

    def attack_loss(self, out, y):
        return F.binary_cross_entropy_with_logits(out.float(), self._targets(y, out),
                                                  reduction="sum")

    def train_loss(self, out, y, weight=None):
        per = F.binary_cross_entropy_with_logits(out.float(), self._targets(y, out),
                                                 reduction="none").sum(1)
        return _weighted_mean(per, y, weight)

    def grade_probs(self, out):
        p = torch.sigmoid(out.float())                 # P(grade > k), k = 0..3
        one = torch.ones(p.shape[0], 1, device=p.device)
        zero = torch.zeros(p.shape[0], 1, device=p.device)
        above = torch.cat([one, p], 1)                 # P(grade > k-1) = P(grade >= k)
        probs = (above - torch.cat([p, zero], 1)).clamp_min(0)
        return probs / probs.sum(1, keepdim=True).clamp_min(1e-12)

    def referable_score(self, out, threshold=REFERABLE_GRADE):
        k = int(threshold) - 1                         # P(grade > threshold - 1)
        return torch.sigmoid(out[:, k].float()) if 0 <= k < out.shape[1] else \
            torch.ones(out.shape[0], device=out.device)

    def referable_logit(self, out, threshold=REFERABLE_GRADE):
        return out[:, int(threshold) - 1].float()      # the cumulative logit itself

    def saliency_score(self, out, y):
        return torch.sigmoid(out).sum(1)               # the expected grade


@dataclass(frozen=True)
class BinaryHead(Head):
    """Referable DR (grade >= threshold) or not: one logit (z > 0) or two (argmax)."""
    name: ClassVar[str] = "binary"
    widths: ClassVar[tuple[int, ...]] = (1, 2)
    five_grade: ClassVar[bool] = False
    threshold: int = REFERABLE_GRADE

    def __post_init__(self) -> None:
        if isinstance(self.threshold, bool) or int(self.threshold) != self.threshold or \
                not 1 <= int(self.threshold) <= NUM_GRADES - 1:
            raise RBFError(f"head binary: threshold must be a grade 1-{NUM_GRADES - 1} (the "
                           f"lowest referable grade), got {self.threshold!r}")
        object.__setattr__(self, "threshold", int(self.threshold))

    def labels(self, grades):
        return (grades >= self.threshold).long()

    def _logit(self, out):
        return out[:, 0] if out.shape[1] == 1 else out[:, 1] - out[:, 0]

    def _decode(self, out):
        return (self._logit(out) > 0).long()

    def class_view(self, out):
        if out.shape[1] == 2:
            return out.float()
        return torch.cat([torch.zeros_like(out[:, :1]), out[:, :1]], 1).float()

    def attack_loss(self, out, y):
        return F.cross_entropy(self.class_view(out), y, reduction="sum")  # = BCE for 1 logit

    def train_loss(self, out, y, weight=None):
        return F.cross_entropy(self.class_view(out), y, weight=None if weight is None else
                               weight.to(out.device, torch.float32))

    def referable_score(self, out, threshold=REFERABLE_GRADE):
        return torch.sigmoid(self._logit(out).float())

    def referable_logit(self, out, threshold=REFERABLE_GRADE):
        return self._logit(out).float()

    def decision_probs(self, out):
        p = self.referable_score(out)
        return torch.stack([1 - p, p], 1)

    def saliency_score(self, out, y):
        return self._logit(out)


@dataclass(frozen=True)
class ReferralHead(Head):
    """The referral decision of any head: "grade >= threshold" (for a binary head, its own
    decision). Labels 0/1; the class view is (not referable, referable) scores whose argmax is
    the decision, and attacks on it ascend cross-entropy on that view: pushed across, a
    referable eye is missed or a healthy one over-referred. Used by the referral-flip attack."""
    name: ClassVar[str] = "referral"
    five_grade: ClassVar[bool] = False
    base: Head = None  # type: ignore[assignment]
    threshold: int = REFERABLE_GRADE

    @property
    def widths(self) -> tuple[int, ...]:  # type: ignore[override]
        return self.base.widths

    def labels(self, grades):
        return (grades >= (self.base.threshold if isinstance(self.base, BinaryHead)
                           else self.threshold)).long()

    def _decode(self, out):
        if isinstance(self.base, BinaryHead):
            return self.base._decode(out)
        return (self.base._decode(out) >= self.threshold).long()

    def class_view(self, out):
        if isinstance(self.base, BinaryHead):
            u = self.base._logit(out).float()
        elif isinstance(self.base, ClassificationHead):  # the argmax decision's own margin
            z = out.float()
            u = z[:, self.threshold:].amax(1) - z[:, :self.threshold].amax(1)
        else:
            u = self.base.referable_logit(out, self.threshold)
        return torch.stack([-u / 2, u / 2], 1)

    def attack_loss(self, out, y):
        return F.cross_entropy(self.class_view(out), y, reduction="sum")

    def referable_score(self, out, threshold=REFERABLE_GRADE):
        return torch.sigmoid(self.class_view(out)[:, 1] * 2)

    def options(self):
        return {"base": self.base.to_dict(), "threshold": self.threshold}


HEAD_TYPES: dict[str, type[Head]] = {h.name: h for h in (ClassificationHead, RegressionHead,
                                                          OrdinalHead, BinaryHead)}


def fitting_heads(width: int) -> list[str]:
    return [n for n in HEADS if width in HEAD_TYPES[n].widths]


def _widths_text() -> str:
    return ", ".join(f"{n} {' or '.join(map(str, HEAD_TYPES[n].widths))}" for n in HEADS)


def check_output(out: Any, head: Head | None = None) -> torch.Tensor:
    """``out`` if it is a (B, width) floating tensor that ``head`` reads (any width when
    ``head`` is None); else a one-line :class:`RBFError` naming what was seen and the heads
    that fit."""
    if isinstance(out, (tuple, list)):
        raise RBFError(f"the model returned a {type(out).__name__} of {len(out)} items; it must "
                       "return one (B, width) tensor of scores (wrap it to return the logits)")
    if not isinstance(out, torch.Tensor):
        raise RBFError(f"the model returned {type(out).__name__}; it must return one (B, width) "
                       "tensor of scores")
    if out.dim() != 2:
        raise RBFError(f"the model returned a tensor of shape {tuple(out.shape)}; it must be "
                       f"(B, width) with one row per image (widths: {_widths_text()})")
    if not out.is_floating_point():
        raise RBFError(f"the model returned {out.dtype} values; it must return float scores")
    w = int(out.shape[1])
    if head is not None and w not in head.widths:
        fit = fitting_heads(w)
        hint = (f"; heads that fit: {', '.join(fit)} (pass head=... / --head)" if fit else
                f"; no head fits (widths: {_widths_text()})")
        raise RBFError(f"the model outputs {w} value{'s' if w != 1 else ''} per image, the "
                       f"{head.name} head needs {' or '.join(map(str, head.widths))}{hint}")
    return out


def make_head(name: str | Head | None = None, **options: Any) -> Head:
    """A head by name with options (``thresholds`` for regression, ``threshold`` for binary);
    strings from the command line are read (``"0.5,1.5,2.5,3.5"``)."""
    if isinstance(name, Head):
        return dataclasses.replace(name, **options) if options else name
    key = (name or "classification").strip().lower()
    if key not in HEAD_TYPES:
        raise RBFError(f"head {name!r}: unknown; use one of {', '.join(HEADS)}")
    cls = HEAD_TYPES[key]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kw = {}
    for k, v in options.items():
        if k not in fields:
            known = ", ".join(fields) or "none"
            raise RBFError(f"head {key} has no option {k!r}; its options are {known}")
        kw[k] = _read_option(key, k, v, fields[k].default)
    return cls(**kw)


def _read_option(head: str, key: str, value: Any, default: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        if isinstance(default, tuple):
            return tuple(float(p) for p in value.replace(" ", "").split(",") if p)
        if isinstance(default, int):
            return int(value)
        return float(value)
    except ValueError:
        raise RBFError(f"head {head}: cannot read {key}={value!r}") from None


def resolve_head(model: Any, override: str | Head | None = None,
                 options: dict[str, Any] | None = None) -> Head:
    """The head ``model`` is read with: ``override`` (a name or a :class:`Head`) with
    ``options``; else what the model declares (``model.head``, recorded in the library's
    checkpoints); else the classification head."""
    if override is not None:
        return make_head(override, **(options or {}))
    declared = getattr(model, "head", None)
    if isinstance(declared, Head):
        return make_head(declared, **(options or {}))
    if isinstance(declared, str):
        opts = dict(getattr(model, "head_options", None) or {})
        opts.update(options or {})
        return make_head(declared, **opts)
    return make_head("classification", **(options or {}))


def head_width(head: Head) -> int:
    """The output width a model built for ``head`` has (binary: one logit)."""
    return head.widths[0]


def parse_head_options(items: Sequence[str], what: str = "--head-opt") -> dict[str, str]:
    """``["thresholds=0.5,1.5,2.5,3.5"]`` -> ``{"thresholds": "0.5,1.5,2.5,3.5"}``."""
    out = {}
    for it in items or ():
        key, sep, val = str(it).partition("=")
        if not sep or not key.strip():
            raise RBFError(f"{what} {it!r}: write KEY=VALUE, e.g. thresholds=0.5,1.5,2.5,3.5")
        out[key.strip()] = val.strip()
    return out
