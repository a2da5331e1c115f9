"""The leaderboard's columns as data: what each shows, how it reads, how it sorts.

A :class:`Column` is one column of the html report, the compact terminal table and the latex
table: a stable ``key`` (the name of the same figure in md/csv/json where there is one), the
``group`` it sits under, a human ``header``, a ``short`` header for the compact tables, a
``tip`` (the definition and its denominator, the html ``title``), a getter of the value a sort
uses, a formatter of what is shown, and the sort direction of its first click
(``higher_is_better``; None for text, sorted A-Z).

:func:`column_specs` lists every column for a set of comparable entries, group by group:
``model`` (with the flags), ``clean``, ``corruptions, severity 4``, one group per attack
configuration (robust accuracy and success rate per eps, eps at 50% success, area under the
success curve), ``screening`` (referable-DR sensitivity and specificity, from
``entry.screening`` when the store has them), ``saliency``. A new view adds its figures by appending specs
(:func:`screening_columns` is the template). :func:`headline_columns` is the compact subset.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from .conditions import eps_key, format_eps
from .leaderboard import LeaderboardEntry, headline_eps

#: The column the report and the compact tables are sorted by (see leaderboard.rank_key).
DEFAULT_SORT = "mean_sev4_kappa"


def fmt_num(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


@dataclass(frozen=True)
class Column:
    key: str
    group: str
    header: str
    short: str
    tip: str
    get: Callable[[LeaderboardEntry], Any]
    text: Callable[[LeaderboardEntry], str] | None = None
    higher_is_better: bool | None = True
    headline: bool = False
    #: whether the column has something to show for an entry (default: a value)
    present: Callable[[LeaderboardEntry], bool] | None = None

    def value(self, e: LeaderboardEntry) -> Any:
        """The value a sort uses (None: missing, sorted last)."""
        v = self.get(e)
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    def show(self, e: LeaderboardEntry) -> str:
        """What the cell shows."""
        if self.text is not None:
            return self.text(e)
        return fmt_num(self.value(e))

    @property
    def numeric(self) -> bool:
        return self.higher_is_better is not None

    def has_values(self, entries: list[LeaderboardEntry]) -> bool:
        if self.present is not None:
            return any(self.present(e) for e in entries)
        return any(self.value(e) not in (None, "") for e in entries)


def _size(e: LeaderboardEntry) -> str:
    return "x".join(str(v) for v in e.input_size) if e.input_size else "-"


def attack_title(e: LeaderboardEntry | None, label: str) -> str:
    """How people name an attack configuration: ``PGD-10 L-inf``, ``PGD-20 L2``, ``FGSM L-inf``;
    a label carrying a config hash keeps it (``PGD-10 L-inf ~8e21c4``)."""
    info = (e.attack_info.get(label) if e is not None else None) or {}
    name = str(info.get("name") or label.split("_")[0])
    name = name.split(":")[-1]
    steps = info.get("steps")
    norm = {"linf": "L-inf", "l2": "L2"}.get(str(info.get("norm") or "linf").lower(),
                                            str(info.get("norm")))
    text = name.upper() + (f"-{steps}" if steps and name.lower() not in ("fgsm",) else "")
    text += f" {norm}"
    if "~" in label:
        text += " ~" + label.split("~", 1)[1]
    return text


def _atk(e: LeaderboardEntry, label: str, ep: float, i: int) -> Any:
    for k, v in e.attacks.get(label, {}).items():
        if eps_key(k) == eps_key(ep):
            return v[i]
    return None


def _eps50(e: LeaderboardEntry) -> str:
    """eps at 50% success; ``>8/255`` when the sweep (up to 8/255) stays below 50%, ``<=0.5/255``
    when the smallest eps already reaches it (the interpolated value from eps 0 is no
    measurement)."""
    rows = e.attacks.get(e.headline_attack or "") or {}
    norm = e._norm(e.headline_attack)
    if e.eps_at_50 is None:
        return f">{format_eps(max(rows), norm)}" if rows else "-"
    measured = sorted((ep, v[0]) for ep, v in rows.items() if v[0] is not None)
    if measured and measured[0][1] >= 0.5:
        return f"<={format_eps(measured[0][0], norm)}"
    return format_eps(e.eps_at_50, norm)


def _flags_text(e: LeaderboardEntry) -> str:
    return ",".join(e.all_flags) or "-"


def model_columns() -> list[Column]:
    g = "model"
    return [
        Column("model", g, "model", "model", "The model's name on the leaderboard (--name, else "
               "the checkpoint's file name). Flags are listed in the flags column; entries "
               "flagged constant_prediction or below_majority are ranked below the others.",
               lambda e: e.model, lambda e: e.model, None, headline=True),
        Column("arch", g, "architecture", "arch", "The architecture the checkpoint names.",
               lambda e: e.arch or "", lambda e: e.arch or "-", None),
        Column("input_size", g, "input (px)", "input", "The model's input size in pixels "
               "(height x width): images are resized to it after preprocessing.",
               lambda e: (e.input_size[0] * e.input_size[1]) if e.input_size else None,
               _size, True),
        Column("n", g, "images", "n", "Number of evaluated images (the denominator of clean "
               "and corrupted accuracy and of robust accuracy).", lambda e: e.n,
               lambda e: fmt_num(e.n), True, headline=True),
        Column("seed", g, "seed", "seed", "Seed of the corruption and attack draws (per image).",
               lambda e: e.seed, lambda e: str(e.seed), True),
    ]


def clean_columns() -> list[Column]:
    g = "clean"
    return [
        Column("clean_accuracy", g, "accuracy", "acc", "Clean accuracy: share of the images "
               "whose predicted grade equals the true grade. Denominator: all n images.",
               lambda e: e.accuracy, higher_is_better=True, headline=True),
        Column("balanced_accuracy", g, "balanced accuracy", "bal acc", "Mean over the grades "
               "present of the recall (share of that grade's images graded correctly). "
               "Denominator: each grade's images. A constant predictor scores 1/(grades "
               "present).", lambda e: e.balanced_accuracy),
        Column("kappa", g, "quadratic kappa", "kappa", "Quadratic weighted Cohen's kappa between "
               "predicted and true grades on clean images: 1 perfect, 0 chance level (a "
               "constant predictor scores 0). Over all n images.", lambda e: e.kappa,
               headline=True),
    ]


def corruption_columns(entries: list[LeaderboardEntry]) -> list[Column]:
    g = "corruptions, severity 4"
    cors = sorted({c for e in entries for c in e.drop4})
    cols = [
        Column("mean_sev4_kappa", g, "mean kappa", "sev4 kappa", "The default sort. Mean over "
               "the corruptions of the quadratic kappa on images corrupted at severity 4 (the "
               "strongest fundus severity): 1 perfect, 0 chance level, so a constant predictor "
               "cannot win it. Each kappa over all n corrupted images.",
               lambda e: e.mean_kappa4),
        Column("mean_sev4_drop", g, "mean accuracy drop", "sev4 drop", "Mean over the "
               "corruptions of (clean accuracy - accuracy at severity 4). Lower is better; a "
               "model that ignores its input drops 0. Each accuracy over all n images.",
               lambda e: e.mean_drop4, higher_is_better=False, headline=True),
    ]
    for c in cors:
        cols.append(Column(f"sev4_drop_{c}", g, f"{c.replace('_', ' ')} drop", f"{c} drop",
                           f"Clean accuracy minus accuracy on the images corrupted by {c} at "
                           "severity 4. Lower is better. Over all n images.",
                           lambda e, c=c: e.drop4.get(c), higher_is_better=False))
    return cols


def attack_columns(entries: list[LeaderboardEntry]) -> list[Column]:
    """Per attack configuration (the headline attack first): robust accuracy and success rate
    at each eps, then, for the headline attack, eps at 50% success and the area under the
    success curve."""
    labels = sorted({lab for e in entries for lab in e.attacks})
    heads = {e.headline_attack for e in entries if e.headline_attack}
    labels.sort(key=lambda lab: (lab not in heads, lab))
    cols: list[Column] = []
    for lab in labels:
        ref = next(e for e in entries if lab in e.attacks)
        norm = ref._norm(lab)
        title = attack_title(ref, lab)
        eps = sorted({float(k) for k in {eps_key(ep) for e in entries
                                          for ep in e.attacks.get(lab, {})}})
        mid = headline_eps(entries, lab)
        g = f"{title}: robust accuracy"
        for ep in eps:
            et = format_eps(ep, norm)
            is_head = lab in heads and mid is not None and eps_key(ep) == eps_key(mid)
            cols.append(Column(
                f"{lab}_robust_acc@{et}", g, f"@{et}", "rob acc",
                f"Robust accuracy of {title} ({lab}) at eps {et}: share of all n images still "
                "graded correctly after the attack (an image wrong on clean input counts as "
                "wrong). Denominator: n.",
                lambda e, lab=lab, ep=ep: _atk(e, lab, ep, 1), headline=is_head))
        g = f"{title}: success rate"
        for ep in eps:
            et = format_eps(ep, norm)
            cols.append(Column(
                f"{lab}@{et}", g, f"@{et}", "success",
                f"Attack success rate of {title} ({lab}) at eps {et}: share of the images "
                "graded correctly on clean input that the attack turns wrong. Denominator: the "
                "images right on clean input. Lower is better; it says nothing on its own (a "
                "model right on few images has few to lose).",
                lambda e, lab=lab, ep=ep: _atk(e, lab, ep, 0), higher_is_better=False))
        if lab in heads:
            g = f"{title}: sweep"
            unit = "/255" if norm == "linf" else " (L2 norm)"
            cols.append(Column(
                "eps_at_50_success", g, "eps at 50% success", "eps@50%",
                f"Smallest eps at which {title} breaks half of the images right on clean input "
                f"(linear interpolation of the success curve; in{unit}). Higher is better; "
                "'>8/255' when the success rate stays below 50% up to the largest eps (8/255).",
                lambda e, lab=lab: e.eps_at_50 if e.headline_attack == lab else None,
                lambda e, lab=lab: _eps50(e) if e.headline_attack == lab else "-",
                headline=True, present=lambda e, lab=lab: e.headline_attack == lab))
            cols.append(Column(
                "auc_success", g, "area under success curve", "auc",
                f"Area under the success-rate curve of {title} from (0, 0) to the largest eps, "
                "divided by that eps (0: never broken, 1: broken at once). Lower is better.",
                lambda e, lab=lab: e.auc_success if e.headline_attack == lab else None,
                higher_is_better=False))
    return cols


def _screen(e: LeaderboardEntry, key: str) -> Any:
    s = getattr(e, "screening", None) or {}
    for k in (key, f"referable_{key}"):
        if k in s:
            return s[k]
    return None


def _screen_value(v: Any) -> float | None:
    if isinstance(v, dict):
        v = next((v[k] for k in ("value", "estimate", "point") if k in v), None)
    return None if v is None else float(v)


def _screen_text(v: Any) -> str:
    x = _screen_value(v)
    if x is None:
        return "-"
    if isinstance(v, dict) and v.get("low") is not None and v.get("high") is not None:
        return f"{x:.3f} ({float(v['low']):.2f}-{float(v['high']):.2f})"
    return f"{x:.3f}"


def screening_columns(entries: list[LeaderboardEntry]) -> list[Column]:
    """Referable-DR sensitivity and specificity, when entries carry them in ``e.screening``
    (``sensitivity`` / ``specificity``, or ``referable_*``; a number, or a dict with ``value``
    and its Wilson interval ``low``, ``high``). Empty when no entry has them."""
    g = "screening"
    cols = [
        Column("referable_sensitivity", g, "referable sensitivity", "sens",
               "Share of the referable eyes (grade 2 or more) that the model refers "
               "(95% Wilson interval). Denominator: the referable eyes.",
               lambda e: _screen_value(_screen(e, "sensitivity")),
               lambda e: _screen_text(_screen(e, "sensitivity"))),
        Column("referable_specificity", g, "referable specificity", "spec",
               "Share of the non-referable eyes (grade 0-1) that the model does not refer "
               "(95% Wilson interval). Denominator: the non-referable eyes.",
               lambda e: _screen_value(_screen(e, "specificity")),
               lambda e: _screen_text(_screen(e, "specificity"))),
    ]
    return [c for c in cols if c.has_values(entries)]


def saliency_columns(entries: list[LeaderboardEntry]) -> list[Column]:
    g = "saliency"
    cols = [
        Column("saliency_lesion_share", g, "lesion share", "lesion",
               "Share of the positive integrated-gradients attribution inside the lesion masks "
               "(synthetic data, images with lesions). Chance is the lesion area. Denominator: "
               "the scored images with lesions.",
               lambda e: e.saliency_columns.get("saliency_lesion_share")),
        Column("saliency_disc_share", g, "disc share", "disc",
               "Share of the positive attribution inside the fundus disc. Denominator: the "
               "scored images.", lambda e: e.saliency_columns.get("saliency_disc_share")),
        Column("saliency_deletion_auc", g, "deletion AUC", "deletion",
               "Area under the deletion curve (the true grade's probability as the most "
               "attributed pixels are removed first). Lower is more faithful.",
               lambda e: e.saliency_columns.get("saliency_deletion_auc"),
               higher_is_better=False),
        Column("saliency_n", g, "images scored", "sal n", "Images the saliency was scored on.",
               lambda e: e.saliency_columns.get("saliency_n"),
               lambda e: fmt_num(e.saliency_columns.get("saliency_n"))),
    ]
    return [c for c in cols if c.has_values(entries)]


def flag_columns() -> list[Column]:
    return [Column("flags", "model", "flags", "flags", "What a reader must know about the "
                   "numbers (hover a flag for its message): constant_prediction and "
                   "below_majority rank an entry below the others; small_sample, "
                   "missing_grades; the attack's sanity flags (masked_gradients, ...).",
                   lambda e: _flags_text(e) if e.all_flags else "", _flags_text, None,
                   headline=True)]


def column_specs(entries: list[LeaderboardEntry]) -> list[Column]:
    """Every column for ``entries`` (one comparable group), group by group; groups and columns
    without a value in any entry are left out (the model columns always stay)."""
    cols = model_columns()
    cols = cols[:1] + flag_columns() + cols[1:]
    for part in (clean_columns(), corruption_columns(entries), attack_columns(entries),
                 screening_columns(entries), saliency_columns(entries)):
        cols += [c for c in part if c.has_values(entries)]
    return cols


def headline_columns(entries: list[LeaderboardEntry]) -> list[Column]:
    """The compact subset: model, n, clean accuracy, kappa, mean severity-4 drop, the headline
    attack's robust accuracy at its middle eps and eps at 50% success, the lesion share when
    present, flags."""
    out = [c for c in column_specs(entries) if c.headline and c.key != "flags"]
    # the screening figures (with their intervals) stay in the html report and --columns all:
    # in 100 columns they would squeeze the flags, which must stay readable
    extra = [c for c in saliency_columns(entries) if c.key == "saliency_lesion_share"]
    return out + extra + flag_columns()
