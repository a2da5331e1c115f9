"""Typed benchmark results: what :func:`~robustbench_fundus.bench.evaluate` returns.

Numbers are floats in [0,1] (never percentage strings); every classification figure keeps the
confusion matrix it came from and every attack figure its integer counts, so anything can be
recomputed. ``to_dict()`` / ``to_json()`` give plain JSON; :meth:`BenchReport.from_dict` reads
it back.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..metrics import (ClassificationMetrics, area_under_success_curve, eps_at_success)
from .conditions import format_eps, format_eps_255

#: Version of the report's JSON layout. 2: attacks carry norm, label, config and config_hash;
#: corruptions their config and config_hash; provenance the preprocessing.
SCHEMA_VERSION = 2


def _nan_to_none(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _with_screening(d: dict, scr: dict | None) -> dict:
    """A result's dict with its screening figures beside its fields: ``<metric>_ci_low`` /
    ``<metric>_ci_high`` for accuracy, balanced accuracy and kappa, and the blocks
    ``referable``, ``vision_threatening``, ``calibration``, ``referral_curve``,
    ``grade_shift`` (see :func:`robustbench_fundus.bench.screening.figures`)."""
    d.pop("screening", None)
    if not scr:
        return d
    if "accuracy" in scr:
        d["accuracy_ci_low"], d["accuracy_ci_high"] = scr["accuracy"]["ci_low"], \
            scr["accuracy"]["ci_high"]
    for m in ("kappa", "balanced_accuracy"):
        lo, hi = scr.get(f"{m}_ci", (None, None))
        d[f"{m}_ci_low"], d[f"{m}_ci_high"] = lo, hi
    for b in ("referable", "vision_threatening", "calibration", "referral_curve",
              "grade_shift"):
        if b in scr:
            d[b] = scr[b]
    return _clean_json(d)


def _screening_from_dict(d: dict) -> dict | None:
    """The screening figures of a result read back from its dict (inverse of
    :func:`_with_screening`)."""
    out: dict = {}
    if "accuracy_ci_low" in d:
        out["accuracy"] = {"ci_low": d["accuracy_ci_low"], "ci_high": d["accuracy_ci_high"]}
    for m in ("kappa", "balanced_accuracy"):
        if f"{m}_ci_low" in d:
            out[f"{m}_ci"] = (d[f"{m}_ci_low"], d[f"{m}_ci_high"])
    for b in ("referable", "vision_threatening", "calibration", "referral_curve",
              "grade_shift", "paired"):
        if b in d:
            out[b] = d[b]
    return out or None


@dataclass
class CleanResult:
    accuracy: float
    balanced_accuracy: float
    kappa: float
    n: int
    confusion: list[list[int]]
    per_class_recall: list[float] = field(default_factory=list)
    seconds: float = 0.0
    screening: dict | None = None   # see robustbench_fundus.bench.screening.figures

    @classmethod
    def from_confusion(cls, cm, seconds: float = 0.0) -> "CleanResult":
        m = ClassificationMetrics.from_confusion(np.asarray(cm, dtype=np.int64))
        return cls(m.accuracy, m.balanced_accuracy, m.kappa, m.n, m.confusion,
                   m.per_class_recall, float(seconds))

    @property
    def referable(self) -> dict | None:
        return (self.screening or {}).get("referable")

    def to_dict(self) -> dict:
        d = {k: _clean_json(v) for k, v in asdict(self).items()}
        return _with_screening(d, self.screening)


@dataclass
class CorruptionResult:
    name: str
    severity: int
    accuracy: float
    balanced_accuracy: float
    kappa: float
    drop: float                  # clean accuracy - corrupted accuracy
    n: int
    confusion: list[list[int]]
    seconds: float = 0.0
    config_hash: str | None = None   # identity of the corruption's configuration
    config: dict | None = None       # the configuration itself (per-severity parameters, ...)
    screening: dict | None = None

    @property
    def referable(self) -> dict | None:
        return (self.screening or {}).get("referable")

    def to_dict(self) -> dict:
        d = _with_screening({k: _clean_json(v) for k, v in asdict(self).items()},
                            self.screening)
        p = (self.screening or {}).get("paired")
        if p:  # the drop's paired interval (Newcombe) from the per-image 2x2 table
            from ..metrics.screening import paired_difference
            _, lo, hi = paired_difference(p["both_correct"], p["clean_only"],
                                          p["condition_only"], p["neither"])
            d.update(drop_ci_low=lo, drop_ci_high=hi, paired=p)
        return d


@dataclass
class AttackResult:
    name: str
    eps: float                   # L-inf: [0,1] pixel units; L2: the L2 norm in those units
    success_rate: float          # n_broken / n_attacked (NaN when n_attacked == 0)
    robust_accuracy: float       # (n_attacked - n_broken) / n
    n: int
    n_attacked: int              # samples right on clean input (the attack's denominator)
    n_broken: int                # of those, turned wrong at this eps
    steps: int | None = None     # the attack's step count (None: it has none)
    norm: str = "linf"           # "linf" | "l2"
    seconds: float = 0.0
    label: str | None = None     # e.g. pgd_linf_10: names the configuration in columns
    config_hash: str | None = None
    config: dict | None = None   # the whole configuration that produced the numbers
    #: the attacked predictions' figures: five-grade metrics, referable decisions, calibration
    screening: dict | None = None
    confusion: list[list[int]] | None = None     # true label x decision after the attack

    @property
    def eps_255(self) -> str | None:
        """eps in /255 (L-inf attacks only)."""
        return format_eps_255(self.eps) if self.norm == "linf" else None

    @property
    def eps_text(self) -> str:
        return format_eps(self.eps, self.norm)

    @property
    def key_label(self) -> str:
        return self.label or self.name

    @classmethod
    def from_counts(cls, name: str, eps: float, n: int, n_attacked: int, n_broken: int,
                    steps: int | None = None, norm: str = "linf", seconds: float = 0.0, *,
                    label: str | None = None, config_hash: str | None = None,
                    config: dict | None = None) -> "AttackResult":
        sr = n_broken / n_attacked if n_attacked else float("nan")
        ra = (n_attacked - n_broken) / n if n else float("nan")
        return cls(name, float(eps), float(sr), float(ra), int(n), int(n_attacked),
                   int(n_broken), None if steps is None else int(steps), str(norm).lower(),
                   float(seconds), label, config_hash, config)

    @property
    def referable(self) -> dict | None:
        return (self.screening or {}).get("referable")

    def to_dict(self) -> dict:
        from ..metrics.screening import wilson
        d = {k: _clean_json(v) for k, v in asdict(self).items()}
        d["eps_255"] = self.eps_255
        d["eps_text"] = self.eps_text
        d["success_rate_ci_low"], d["success_rate_ci_high"] = wilson(self.n_broken,
                                                                     self.n_attacked)
        d["robust_accuracy_ci_low"], d["robust_accuracy_ci_high"] = wilson(
            self.n_attacked - self.n_broken, self.n)
        scr = self.screening or {}
        if "accuracy" in scr:  # the five-grade metrics of the attacked predictions
            from ..metrics import ClassificationMetrics
            m = ClassificationMetrics.from_confusion(np.asarray(self.confusion))
            d.update(accuracy=_nan_to_none(m.accuracy),
                     balanced_accuracy=_nan_to_none(m.balanced_accuracy),
                     kappa=_nan_to_none(m.kappa))
        return _with_screening(d, self.screening)


@dataclass
class ReferralFlipResult:
    """The referral-flip attack at one eps: how many referable eyes (referred on clean input)
    the attack pushed to "not referable" (missed referrals), and how many non-referable eyes it
    pushed to "referable" (over-referrals), each with its denominator and Wilson interval."""
    name: str
    eps: float
    threshold: int
    n_referable: int
    n_referable_attacked: int
    n_missed: int
    n_nonreferable: int
    n_nonreferable_attacked: int
    n_over_referred: int
    label: str | None = None
    norm: str = "linf"
    steps: int | None = None
    config_hash: str | None = None
    seconds: float = 0.0

    @property
    def missed_referral_rate(self) -> float:
        return self.n_missed / self.n_referable_attacked if self.n_referable_attacked else \
            float("nan")

    @property
    def over_referral_rate(self) -> float:
        return self.n_over_referred / self.n_nonreferable_attacked \
            if self.n_nonreferable_attacked else float("nan")

    def to_dict(self) -> dict:
        from ..metrics.screening import wilson
        d = {k: _clean_json(v) for k, v in asdict(self).items()}
        d["eps_text"] = format_eps(self.eps, self.norm)
        for key, k, n in (("missed_referral_rate", self.n_missed, self.n_referable_attacked),
                          ("over_referral_rate", self.n_over_referred,
                           self.n_nonreferable_attacked)):
            lo, hi = wilson(k, n)
            d[key] = _nan_to_none(getattr(self, key))
            d[f"{key}_ci_low"], d[f"{key}_ci_high"] = lo, hi
        return d


@dataclass
class Flag:
    code: str
    message: str
    condition: str | None = None
    details: dict | None = None   # counts behind the flag (e.g. an attack's sanity counters)

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["details"] is None:
            del d["details"]
        return _clean_json(d)


def attack_sanity_flags(name: str, rows: list[tuple[float, dict]]) -> list[Flag]:
    """The attack stage's sanity flags for one attack from its per-eps sanity counters
    (``rows``: (eps, counters) with the names of
    :data:`~robustbench_fundus.bench.conditions.ATTACK_SANITY` plus ``n``, ``n_attacked``,
    ``n_broken``).

    Each eps condition carries the counters of the sweeps (one per batch) that computed it;
    eps computed together share them, so the scalar counters are reduced with ``max`` over eps
    (a flag is raised if any sweep's counters raise it; the counts are over all batches) and the
    per-eps ones (unverified, projected successes) are kept per eps. The flags and their
    thresholds are the attack stage's (``SweepCounts.flags``)."""
    from .conditions import ATTACK_SANITY
    rows = sorted(rows, key=lambda r: r[0])
    if not rows or not any(any(c.get(k) for k in ATTACK_SANITY) for _, c in rows):
        return []  # no sanity counters (an attack that does not report them, or an old store)
    scal = [k for k in ATTACK_SANITY if k not in ("n_unverified", "n_projected")]
    kw: dict[str, Any] = {k: max(int(c.get(k) or 0) for _, c in rows) for k in scal}
    kw.update(n=max(int(c.get("n") or 0) for _, c in rows),
              n_attacked=max(int(c.get("n_attacked") or 0) for _, c in rows),
              n_success=[int(c.get("n_broken") or 0) for _, c in rows],
              n_unverified=[int(c.get("n_unverified") or 0) for _, c in rows],
              n_projected=[int(c.get("n_projected") or 0) for _, c in rows])
    try:
        from ..attacks.base import SweepCounts
        raw = SweepCounts(eps=[e for e, _ in rows], **kw).flags()
    except Exception:  # the attack stage's counters changed: keep the essential check
        raw = []
        bad = kw["grad_zero"] + kw["grad_nonfinite"]
        if kw["grad_checked"] and (kw["grad_nonfinite"] or bad > 0.1 * kw["grad_checked"]):
            raw.append({"name": "masked_gradients",
                        "message": f"{bad} of {kw['grad_checked']} input gradients are zero or "
                                   "non-finite (gradient masking)",
                        "n_zero": kw["grad_zero"], "n_nonfinite": kw["grad_nonfinite"],
                        "n_checked": kw["grad_checked"]})
    out = []
    for f in raw:
        f = dict(f)
        code = str(f.pop("name", f.pop("code", "attack_sanity")))
        msg = str(f.pop("message", code))
        out.append(Flag(code, f"{name}: {msg}", f"attack/{name}", f))
    return out


def summary_figures(clean: CleanResult | None, corruptions: list[CorruptionResult],
                    attacks: list[AttackResult], headline_severity: int = 4) -> dict:
    """Headline figures: mean severity-4 drop (and per corruption), eps at 50% success and the
    normalised area under the success curve, per attack configuration (keyed by its label; the
    first attack is the headline)."""
    sev = [c for c in corruptions if c.severity == headline_severity]
    drops = {c.name: c.drop for c in sev}
    by_attack: dict[str, list[AttackResult]] = {}
    for a in attacks:
        by_attack.setdefault(a.key_label, []).append(a)
    per_attack = {}
    for label, rows in by_attack.items():
        rows = sorted(rows, key=lambda r: r.eps)
        ok = [r for r in rows if not math.isnan(r.success_rate)]
        e50 = eps_at_success([r.eps for r in ok], [r.success_rate for r in ok]) if ok else None
        auc = area_under_success_curve([r.eps for r in ok], [r.success_rate for r in ok]) \
            if ok else float("nan")
        linf = rows[0].norm == "linf"
        per_attack[label] = {"name": rows[0].name, "norm": rows[0].norm, "steps": rows[0].steps,
                             "config_hash": rows[0].config_hash,
                             "eps_at_50_success": e50,
                             "eps_at_50_success_255": None if e50 is None or not linf
                             else round(e50 * 255, 4),
                             # reached at the smallest eps measured: e50 is then an
                             # interpolation from success 0 at eps 0, only bounded above
                             "eps_at_50_success_below_smallest": bool(
                                 ok and e50 is not None and ok[0].success_rate >= 0.5),
                             "auc_success": _nan_to_none(auc),
                             "eps_min": rows[0].eps if rows else None,
                             "eps_max": rows[-1].eps if rows else None}
    head = next(iter(per_attack.values()), {})
    return {
        "headline_severity": headline_severity,
        "mean_severity4_drop": _nan_to_none(float(np.mean(list(drops.values())))) if drops
        else None,
        "severity4_drop": drops,
        "eps_at_50_success": head.get("eps_at_50_success"),
        "eps_at_50_success_255": head.get("eps_at_50_success_255"),
        "auc_success": head.get("auc_success"),
        "attacks": per_attack,
    }


@dataclass
class BenchReport:
    """The result of one benchmark run. ``to_dict()`` keys: schema_version, model, dataset,
    clean, corruptions, attacks, saliency, summary, flags, provenance.

    ``saliency`` (``evaluate(saliency=N)``): None, or the summary of the integrated-gradients
    scores over N images (:func:`~robustbench_fundus.interpret.saliency_scores`, no per-sample
    arrays): ``n``, ``lesion_share``, ``lesion_area``, ``disc_share``, ``deletion_auc``,
    ``deletion_auc_random``, ``ig_delta``, ``n_lesion``, ``n_disc``, ``method``, ``baseline``,
    ``steps``, ``seed``, ``points``, ``seconds``."""

    clean: CleanResult | None
    corruptions: list[CorruptionResult] = field(default_factory=list)
    attacks: list[AttackResult] = field(default_factory=list)
    flags: list[Flag] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    saliency: dict[str, Any] | None = None
    referral_flips: list[ReferralFlipResult] = field(default_factory=list)
    #: the screening card (see :func:`robustbench_fundus.bench.screening.card`)
    screening: dict[str, Any] | None = None

    @property
    def summary(self) -> dict:
        return summary_figures(self.clean, self.corruptions, self.attacks)

    def corruption(self, name: str, severity: int) -> CorruptionResult:
        for c in self.corruptions:
            if c.name == name and c.severity == severity:
                return c
        raise KeyError((name, severity))

    def attack(self, eps: float, name: str | None = None) -> AttackResult:
        """The attack row at ``eps`` (of the attack whose name or label is ``name``)."""
        for a in self.attacks:
            if abs(a.eps - eps) < 1e-9 and (name is None or name in (a.name, a.label)):
                return a
        raise KeyError(eps)

    def to_dict(self) -> dict:
        return {
            "schema_version": self.schema_version,
            "model": _clean_json(self.model),
            "dataset": _clean_json(self.dataset),
            "clean": self.clean.to_dict() if self.clean else None,
            "corruptions": [c.to_dict() for c in self.corruptions],
            "attacks": [a.to_dict() for a in self.attacks],
            "referral_flips": [r.to_dict() for r in self.referral_flips],
            "saliency": _clean_json(self.saliency) if self.saliency else None,
            "summary": _clean_json(self.summary),
            "screening": _clean_json(self.screening) if self.screening else None,
            "flags": [f.to_dict() for f in self.flags],
            "provenance": _clean_json(self.provenance),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict) -> "BenchReport":
        def f(v):
            return float("nan") if v is None else v
        clean = None
        if d.get("clean"):
            c = d["clean"]
            clean = CleanResult(f(c["accuracy"]), f(c["balanced_accuracy"]), f(c["kappa"]),
                                c["n"], c["confusion"],
                                [f(v) for v in c.get("per_class_recall", [])],
                                c.get("seconds", 0.0), _screening_from_dict(c))
        cors = [CorruptionResult(c["name"], c["severity"], f(c["accuracy"]),
                                 f(c["balanced_accuracy"]), f(c["kappa"]), f(c["drop"]), c["n"],
                                 c["confusion"], c.get("seconds", 0.0), c.get("config_hash"),
                                 c.get("config"), _screening_from_dict(c))
                for c in d.get("corruptions", [])]
        atks = [AttackResult(a["name"], a["eps"], f(a["success_rate"]), f(a["robust_accuracy"]),
                             a["n"], a["n_attacked"], a["n_broken"], a.get("steps"),
                             a.get("norm", "linf"), a.get("seconds", 0.0), a.get("label"),
                             a.get("config_hash"), a.get("config"), _screening_from_dict(a),
                             a.get("confusion"))
                for a in d.get("attacks", [])]
        flips = [ReferralFlipResult(**{k: r[k] for k in ReferralFlipResult.__dataclass_fields__
                                       if k in r}) for r in d.get("referral_flips", [])]
        flags = [Flag(**fl) for fl in d.get("flags", [])]
        return cls(clean, cors, atks, flags, d.get("provenance", {}), d.get("model", {}),
                   d.get("dataset", {}), d.get("schema_version", SCHEMA_VERSION),
                   d.get("saliency"), flips, d.get("screening"))

    # -- text -----------------------------------------------------------------------------------
    def summary_table(self) -> str:
        """Rows of condition / n / accuracy / balanced accuracy / kappa / drop / success."""
        from ..cli import format_table
        rows = []
        if self.clean:
            rows.append({"condition": "clean", "n": self.clean.n,
                         "accuracy": self.clean.accuracy,
                         "bal_acc": self.clean.balanced_accuracy, "kappa": self.clean.kappa,
                         "drop": "", "success": "", "robust_acc": ""})
        for c in self.corruptions:
            rows.append({"condition": f"{c.name} s{c.severity}", "n": c.n, "accuracy": c.accuracy,
                         "bal_acc": c.balanced_accuracy, "kappa": c.kappa, "drop": c.drop,
                         "success": "", "robust_acc": ""})
        for a in self.attacks:
            rows.append({"condition": f"{a.key_label} eps={a.eps_text}", "n": a.n, "accuracy": "",
                         "bal_acc": "", "kappa": "", "drop": "",
                         "success": f"{_pct(a.success_rate)} ({a.n_broken}/{a.n_attacked})",
                         "robust_acc": a.robust_accuracy})
        text = format_table(rows) if rows else "(no conditions)"
        s = self.summary
        lines = [text, ""]
        if s["mean_severity4_drop"] is not None:
            lines.append(f"mean severity-4 accuracy drop: {s['mean_severity4_drop']:.4f}")
        for label, a in s["attacks"].items():
            e = a["eps_at_50_success"]
            txt = "not reached" if e is None else format_eps(e, a["norm"])
            if a.get("eps_at_50_success_below_smallest"):
                txt = (f"<= {format_eps(a['eps_min'], a['norm'])} (reached at the smallest eps; "
                       f"{txt} by interpolation from eps 0)")
            auc = "" if a["auc_success"] is None else \
                f"; area under the success curve {a['auc_success']:.4f}"
            lines.append(f"{label}: eps at 50% success {txt}{auc}")
        sal = self.saliency
        if sal:
            def g(k):
                v = sal.get(k)
                return "n/a" if v is None else f"{v:.3f}"
            lines.append(f"saliency ({sal.get('method', 'ig')}, {sal.get('n')} images, "
                         f"baseline {sal.get('baseline')}): lesion share {g('lesion_share')} "
                         f"(lesion area {g('lesion_area')}), disc share {g('disc_share')}, "
                         f"deletion AUC {g('deletion_auc')} (random order "
                         f"{g('deletion_auc_random')})")
        for fl in self.flags:
            lines.append(f"flag {fl.code}: {fl.message}")
        return "\n".join(lines)


def _pct(v: float) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}%"


def _clean_json(v: Any) -> Any:
    """NaN -> None, numpy scalars -> Python, recursively (JSON without NaN)."""
    if isinstance(v, dict):
        return {str(k): _clean_json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean_json(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    return v
