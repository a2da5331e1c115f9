"""The leaderboard: one row per model entry of a results store, as a compact terminal table
(``text``), md, csv, json, latex or a self-contained html report.

An *entry* is (model, data set, seed, library version): the unit a ``rbf bench`` run fills.
Columns: model name, data set, n, clean accuracy, balanced accuracy, kappa, mean severity-4
drop and the severity-4 drop of each corruption, then per attack *configuration* (name, norm
and the hash of its whole config: results of different configs are never merged) its success
rate and robust accuracy at each eps, named by the attack's label, which says norm and steps:
``pgd_linf_10@2/255`` (success rate), ``pgd_linf_10_robust_acc@2/255``; two configurations
that share a label (same name, norm and steps, other options) get their hash added:
``pgd_linf_10~8e21c4@2/255``. L-inf eps are shown in /255, L2 eps as the plain norm. Then
the headline attack, its eps at 50% success and the area under its success curve; when any entry was
benchmarked with ``--saliency N``, the ``saliency_*`` columns of
:func:`~robustbench_fundus.interpret.leaderboard_columns` (empty for entries without them); when
any entry's attack raised a sanity flag (masked gradients, ...), an ``attack_flags`` column.
Every entry also carries the flags that its clean confusion matrix raises
(``constant_prediction``, ``below_majority``, ``small_sample``, ``missing_grades``: the same
rules and messages as the bench's, :func:`entry_flags`), in a ``flags`` column.
Numbers stay floats in [0,1] in csv/json; md/html show them with 3-4 digits.

**Order.** Entries are ranked within *comparable groups* (:func:`comparable_key`: the same data
set fingerprint, which covers the images and the working size, the same model input size and
the same headline attack configuration); groups come in the order of their data set name. Inside
a group an entry flagged ``constant_prediction`` or ``below_majority`` always ranks below every
entry without; then the default sort is the **mean quadratic kappa at severity 4** (over the
corruptions run at severity 4; higher first; entries without it last), then clean kappa, then
the model name (a stable order, so identical stores give identical output). Kappa is chosen
because a model that ignores its input scores 0 on it, whatever the grade mix: accuracy, robust
accuracy and the attack success rate all reward a constant predictor on an unbalanced set.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..metrics import area_under_success_curve, eps_at_success
from .conditions import eps_key, format_eps, format_eps_255
from .report import CleanResult, Flag, attack_sanity_flags
from .store import ResultStore

#: Output formats of :func:`render`: ``text`` is the compact terminal table (the headline
#: columns, one table per comparable group, at most 100 characters a line).
FORMATS = ("text", "md", "csv", "json", "html", "latex")

#: The flags :func:`entry_flags` recomputes from an entry's clean confusion matrix.
ENTRY_FLAG_CODES = ("small_sample", "missing_grades", "constant_prediction", "below_majority")
#: Flags that rank an entry below every entry of its group without them.
DEMOTING_FLAGS = ("constant_prediction", "below_majority")


@dataclass
class LeaderboardEntry:
    model: str
    model_sha256: str
    arch: str | None
    dataset: str
    dataset_fingerprint: str
    seed: int
    library_version: str
    n: int | None = None
    accuracy: float | None = None
    balanced_accuracy: float | None = None
    kappa: float | None = None
    drop4: dict[str, float | None] = field(default_factory=dict)
    mean_drop4: float | None = None
    # corruption -> severity -> accuracy (for the plot)
    severity_accuracy: dict[str, dict[int, float | None]] = field(default_factory=dict)
    # attack column label -> eps -> (success_rate, robust_accuracy, n_attacked, n_broken)
    attacks: dict[str, dict[float, tuple]] = field(default_factory=dict)
    # attack column label -> {name, norm, steps, config_hash, config, label}
    attack_info: dict[str, dict[str, Any]] = field(default_factory=dict)
    eps_at_50: float | None = None
    auc_success: float | None = None
    headline_attack: str | None = None
    # saliency summary (None: not benchmarked with --saliency) and its leaderboard columns
    saliency: dict[str, Any] | None = None
    saliency_columns: dict[str, Any] = field(default_factory=dict)
    # codes of the attack sanity flags raised (masked_gradients, ...)
    attack_flags: list[str] = field(default_factory=list)
    # flags from the clean confusion matrix (entry_flags): codes and their messages
    flags: list[str] = field(default_factory=list)
    flag_messages: dict[str, str] = field(default_factory=dict)
    attack_flag_messages: dict[str, str] = field(default_factory=dict)
    # the clean confusion matrix (rows: true label), quadratic kappa and balanced accuracy per
    # corruption and severity, their severity-4 means
    confusion: list[list[int]] | None = None
    severity_kappa: dict[str, dict[int, float | None]] = field(default_factory=dict)
    severity_balanced_accuracy: dict[str, dict[int, float | None]] = field(default_factory=dict)
    mean_kappa4: float | None = None
    # what the entry ran on: the model's input size (h, w), the working size of the data set,
    # the head's kind, the preprocessing's enhancement, the data set's meta
    input_size: tuple[int, int] | None = None
    working_size: int | None = None
    head: str | None = None
    preprocessing: str | None = None
    dataset_meta: dict[str, Any] = field(default_factory=dict)
    # the screening view (referable-DR sensitivity, specificity, ...) when the store has it
    screening: dict[str, Any] | None = None

    @property
    def all_flags(self) -> list[str]:
        """The entry's flag codes, those that rank it last first, then the attack's sanity
        flags, then the others (small sample, missing grades)."""
        codes = list(self.flags) + [f for f in self.attack_flags if f not in self.flags]
        order = {c: (0 if c in DEMOTING_FLAGS else 1 if c in self.attack_flags else 2, i)
                 for i, c in enumerate(codes)}
        return sorted(codes, key=order.__getitem__)

    def flag_message(self, code: str) -> str:
        return self.flag_messages.get(code) or self.attack_flag_messages.get(code) or ""

    @property
    def demoted(self) -> bool:
        """Flagged constant_prediction or below_majority: ranked below the others."""
        return any(f in DEMOTING_FLAGS for f in self.flags)

    def to_dict(self) -> dict:
        d = {"model": self.model, "model_sha256": self.model_sha256, "arch": self.arch,
             "dataset": self.dataset, "dataset_fingerprint": self.dataset_fingerprint,
             "seed": self.seed, "library_version": self.library_version, "n": self.n,
             "accuracy": self.accuracy, "balanced_accuracy": self.balanced_accuracy,
             "kappa": self.kappa, "mean_severity4_drop": self.mean_drop4,
             "severity4_drop": dict(self.drop4),
             "severity_accuracy": {c: {str(s): a for s, a in v.items()}
                                   for c, v in self.severity_accuracy.items()},
             "attacks": {lab: [{"eps": e, "eps_text": format_eps(e, self._norm(lab)),
                                "eps_255": format_eps_255(e) if self._norm(lab) == "linf"
                                else None, "success_rate": v[0],
                                "robust_accuracy": v[1], "n_attacked": v[2], "n_broken": v[3]}
                               for e, v in sorted(rows.items())]
                         for lab, rows in self.attacks.items()},
             "attack_configs": {lab: dict(info) for lab, info in self.attack_info.items()},
             "headline_attack": self.headline_attack,
             "eps_at_50_success": self.eps_at_50,
             "eps_at_50_success_255": None if self.eps_at_50 is None or
             self._norm(self.headline_attack) != "linf" else round(self.eps_at_50 * 255, 4),
             "auc_success": self.auc_success,
             "mean_severity4_kappa": self.mean_kappa4,
             "confusion": self.confusion,
             "input_size": list(self.input_size) if self.input_size else None,
             "working_size": self.working_size,
             "flags": [{"code": c, "message": self.flag_messages.get(c, "")}
                       for c in self.flags],
             "comparable_group": comparable_key(self)}
        if self.screening is not None:
            d["screening"] = dict(self.screening)
        if self.saliency is not None:
            d["saliency"] = dict(self.saliency)
            d.update(self.saliency_columns)
        if self.attack_flags:
            d["attack_flags"] = list(self.attack_flags)
        return d

    def _norm(self, label: str | None) -> str:
        return str((self.attack_info.get(label or "") or {}).get("norm") or "linf")


def _clean_screening(row: dict, seed: int) -> dict | None:
    """Referable-DR figures (grade >= 2) of a stored clean row, from its mergeable counts:
    sensitivity and specificity with their Wilson intervals, and AUROC. None for a row stored
    without screening counts."""
    from .screening import figures
    try:
        ref = figures(row, 2, seed).get("referable")
    except (KeyError, ValueError, TypeError):  # counts of an older layout: no screening view
        return None
    if not ref:
        return None
    out: dict[str, Any] = {"threshold": 2, "auroc": ref.get("auroc")}
    for m in ("sensitivity", "specificity"):
        if ref.get(m) is not None:
            out[m] = {"value": ref[m], "low": ref.get(f"{m}_ci_low"),
                      "high": ref.get(f"{m}_ci_high"), "n": ref.get(f"{m}_n")}
    return out


def load_entries(store: ResultStore | str) -> list[LeaderboardEntry]:
    from ..interpret.scores import leaderboard_columns
    st = store if isinstance(store, ResultStore) else ResultStore(store, readonly=True)
    models = {m["sha256"]: m for m in st.models()}
    datasets = st.datasets()
    groups: dict[tuple, list[dict]] = {}
    all_rows = st.results()
    for r in all_rows:
        k = (r["model_sha256"], r["dataset_fingerprint"], r["seed"], r["library_version"])
        groups.setdefault(k, []).append(r)
    labels = attack_labels(all_rows)
    out = []
    for (msha, dfp, seed, ver), rows in groups.items():
        m = models.get(msha, {"name": msha[:12], "arch": None})
        ds = datasets.get(dfp, {})
        e = LeaderboardEntry(m["name"], msha, m.get("arch"), ds.get("name", dfp), dfp,
                             int(seed), ver)
        _describe(e, m.get("meta") or {}, ds)
        clean = next((r for r in rows if r["condition"] == "clean"), None)
        if clean:
            e.n, e.accuracy = clean["n"], clean["accuracy"]
            e.balanced_accuracy, e.kappa = clean["balanced_accuracy"], clean["kappa"]
            if clean.get("confusion"):
                e.confusion = [[int(v) for v in row] for row in clean["confusion"]]
                for f in entry_flags(e.confusion):
                    e.flags.append(f.code)
                    e.flag_messages[f.code] = f.message
            e.screening = _clean_screening(clean, int(seed))
        sal_rows = []
        sanity: dict[str, list[tuple[float, dict]]] = {}
        for r in rows:
            if r["kind"] == "corruption":
                sv = int(r["severity"])
                e.severity_accuracy.setdefault(r["name"], {})[sv] = r["accuracy"]
                e.severity_kappa.setdefault(r["name"], {})[sv] = _finite(r.get("kappa"))
                e.severity_balanced_accuracy.setdefault(r["name"], {})[sv] = _finite(
                    r.get("balanced_accuracy"))
            elif r["kind"] == "attack":
                lab = labels[_attack_id(r)]
                e.attacks.setdefault(lab, {})[float(r["eps"])] = (
                    r["success_rate"], r["robust_accuracy"], r["n_attacked"], r["n_broken"])
                e.attack_info.setdefault(lab, {
                    "name": r["name"], "norm": r.get("norm") or "linf", "steps": r.get("steps"),
                    "label": r.get("label"), "config_hash": r.get("config_hash"),
                    "config": json.loads(r["config"]) if r.get("config") else None})
                san = dict((r.get("metrics") or {}).get("sanity") or {})
                san.update(n=r["n"], n_attacked=r["n_attacked"], n_broken=r["n_broken"])
                sanity.setdefault(lab, []).append((float(r["eps"]), san))
            elif r["kind"] == "saliency" and (r.get("metrics") or {}).get("saliency"):
                sal_rows.append(r)
        if sal_rows:  # several runs (other N or steps): the most images, then the most steps
            best = max(sal_rows, key=lambda r: (r["n"], r.get("steps") or 0, r["condition"]))
            e.saliency = best["metrics"]["saliency"]
            e.saliency_columns = leaderboard_columns(e.saliency)
        for name in sorted(sanity):
            for f in attack_sanity_flags(name, sanity[name]):
                if f.code not in e.attack_flags:
                    e.attack_flags.append(f.code)
                    e.attack_flag_messages[f.code] = f.message
        for c, sev in sorted(e.severity_accuracy.items()):
            if 4 in sev and e.accuracy is not None and sev[4] is not None:
                e.drop4[c] = e.accuracy - sev[4]
        if e.drop4:
            e.mean_drop4 = float(np.mean(list(e.drop4.values())))
        k4 = [sev[4] for sev in e.severity_kappa.values() if sev.get(4) is not None]
        if k4:
            e.mean_kappa4 = float(np.mean(k4))
        if e.attacks:
            name = headline_attack(e)
            e.headline_attack = name
            pts = [(ep, v[0]) for ep, v in sorted(e.attacks[name].items()) if v[0] is not None]
            if pts:
                e.eps_at_50 = eps_at_success([p[0] for p in pts], [p[1] for p in pts])
                e.auc_success = area_under_success_curve([p[0] for p in pts],
                                                         [p[1] for p in pts])
        out.append(e)
    out = rank_entries(out)
    if not isinstance(store, ResultStore):
        st.close()
    return out


def _finite(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _describe(e: LeaderboardEntry, mmeta: dict, ds: dict) -> None:
    """What an entry ran on, from the store's model and data set meta."""
    size = mmeta.get("input_size")
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(size):
        e.input_size = (int(size[0]), int(size[1]))
    pre = mmeta.get("preprocessing")
    if isinstance(pre, dict):
        e.preprocessing = pre.get("enhancement")
    head = mmeta.get("head")
    if isinstance(head, dict):
        e.head = head.get("name")
    dmeta = dict(ds.get("meta") or {})
    e.dataset_meta = dmeta
    if dmeta.get("size"):
        e.working_size = int(dmeta["size"])
    elif dmeta.get("kind") == "tensors" and len(dmeta.get("shape") or []) == 4:
        e.working_size = int(dmeta["shape"][-1])


def entry_flags(confusion: Any) -> list[Flag]:
    """The flags an entry's clean confusion matrix raises (:data:`ENTRY_FLAG_CODES`), by the
    same rules and with the same messages as the bench's (:func:`.flags.make_flags`): a small
    sample, grades missing from the set, a model that predicts one grade for every image, a
    clean accuracy not above always predicting the commonest grade."""
    from types import SimpleNamespace

    from .flags import make_flags
    cm = np.asarray(confusion, dtype=np.int64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.sum() == 0:
        return []
    clean = CleanResult.from_confusion(cm)
    # the data and model inputs of make_flags only raise flags that are not about the counts
    di = SimpleNamespace(meta={}, tensor_input=False)
    mi = SimpleNamespace(preprocessing=SimpleNamespace(enhancement="none", source="model"))
    return [f for f in make_flags(clean, [], [], di, mi) if f.code in ENTRY_FLAG_CODES]


def comparable_key(e: LeaderboardEntry) -> str:
    """Entries with the same key are ranked in one table: the same data set fingerprint (the
    images, their labels and the working size), the same model input size and the same
    headline attack configuration (its column label, which carries the config hash when two
    configurations share a name)."""
    size = "x".join(str(v) for v in e.input_size) if e.input_size else "-"
    return f"{e.dataset_fingerprint}|{size}|{e.headline_attack or '-'}"


def rank_key(e: LeaderboardEntry) -> tuple:
    """The default order inside a comparable group: unflagged entries first, then the mean
    severity-4 kappa (higher first, missing last), clean kappa (likewise), the model name."""
    def desc(v):
        return (1, 0.0) if v is None or (isinstance(v, float) and math.isnan(v)) else (0, -v)
    return (int(e.demoted), desc(e.mean_kappa4), desc(e.kappa), e.model, e.dataset, e.seed,
            e.library_version, e.model_sha256)


@dataclass
class Group:
    """Entries that can be ranked side by side (:func:`comparable_key`), in rank order."""
    key: str
    entries: list[LeaderboardEntry]

    @property
    def title(self) -> str:
        """What the entries share: data set, images, working size, model input, attack."""
        e = self.entries[0]
        parts = [e.dataset, f"{e.n} images" if e.n is not None else None,
                 f"working size {e.working_size} px" if e.working_size else None,
                 "model input " + "x".join(str(v) for v in e.input_size) + " px"
                 if e.input_size else None,
                 f"attack {e.headline_attack}" + (
                     f" (config {e.attack_info[e.headline_attack].get('config_hash')})"
                     if e.attack_info.get(e.headline_attack, {}).get("config_hash") else "")
                 if e.headline_attack else "no attack"]
        return ", ".join(p for p in parts if p)

    @property
    def notes(self) -> list[str]:
        """What differs inside the group although it stays comparable."""
        out = []
        for what, get in (("seeds", lambda e: e.seed), ("library versions",
                                                        lambda e: e.library_version)):
            vals = sorted({get(e) for e in self.entries}, key=str)
            if len(vals) > 1:
                out.append(f"{what} differ: {', '.join(str(v) for v in vals)}")
        cors = {tuple(sorted(e.drop4)) for e in self.entries}
        if len(cors) > 1:
            out.append("the entries were run on different sets of corruptions: the severity-4 "
                       "means cover different corruptions")
        return out


def group_entries(entries: list[LeaderboardEntry]) -> list[Group]:
    """The comparable groups of ``entries`` (each in rank order), ordered by data set name,
    then input size, then attack label."""
    by: dict[str, list[LeaderboardEntry]] = {}
    for e in entries:
        by.setdefault(comparable_key(e), []).append(e)
    groups = [Group(k, sorted(v, key=rank_key)) for k, v in by.items()]
    groups.sort(key=lambda g: (g.entries[0].dataset, g.entries[0].input_size or (0, 0),
                               g.entries[0].headline_attack or "", g.key))
    return groups


def rank_entries(entries: list[LeaderboardEntry]) -> list[LeaderboardEntry]:
    """``entries`` in the leaderboard's default order: group after group, rank order inside."""
    return [e for g in group_entries(entries) for e in g.entries]


def headline_eps(entries: list[LeaderboardEntry], label: str | None) -> float | None:
    """The eps of attack ``label`` whose robust accuracy the compact tables show: the middle
    eps (upper middle for an even count) of those every entry that ran the attack has (all eps
    when they share none); None without the attack. For the default L-inf sweep (0.5, 1, 2,
    2.5, 4, 8 /255) it is 2.5/255."""
    sets = [{eps_key(ep) for ep in e.attacks[label]} for e in entries
            if label and label in e.attacks]
    if not sets:
        return None
    common = set.intersection(*sets) or set.union(*sets)
    eps = sorted(float(k) for k in common)
    return eps[len(eps) // 2]


def _attack_id(r: dict) -> tuple[str, str, str]:
    return (r["name"], str(r.get("norm") or "linf"), str(r.get("config_hash")))


def attack_labels(rows: list[dict]) -> dict[tuple[str, str, str], str]:
    """A column label for every attack configuration among ``rows``: the attack's own label
    (``pgd_linf_10``), with the config hash added (``pgd_linf_10~8e21c4``) where two
    configurations share a label, so no two configurations ever share a column."""
    by: dict[str, set[tuple]] = {}
    for r in rows:
        if r.get("kind") != "attack":
            continue
        base = r.get("label") or f"{r['name']}_{r.get('norm') or 'linf'}"
        by.setdefault(base, set()).add(_attack_id(r))
    out = {}
    for base, ids in by.items():
        for aid in ids:
            out[aid] = base if len(ids) == 1 else f"{base}~{aid[2][:6]}"
    return out


def headline_attack(e: LeaderboardEntry) -> str:
    """The attack an entry's headline figures use: L-inf PGD (the most steps, when several
    configurations were run), else the first label in sorted order."""
    pgd = [lab for lab, info in e.attack_info.items() if info.get("name") == "pgd"]
    if pgd:
        return max(pgd, key=lambda lab: (e.attack_info[lab].get("steps") or 0, lab))
    return sorted(e.attacks)[0]


def _columns(entries: list[LeaderboardEntry]) -> tuple[list[str], list[tuple[str, float]]]:
    cors = sorted({c for e in entries for c in e.drop4})
    atk = sorted({(lab, eps_key(ep)) for e in entries for lab, rows in e.attacks.items()
                  for ep in rows})
    atk_cols = [(lab, float(k)) for lab, k in atk]
    return cors, atk_cols


def _norm_of(entries: list[LeaderboardEntry], label: str) -> str:
    for e in entries:
        if label in e.attack_info:
            return str(e.attack_info[label].get("norm") or "linf")
    return "linf"


def table(entries: list[LeaderboardEntry]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows (raw values: floats in [0,1], None for missing)."""
    cors, atk_cols = _columns(entries)
    header = ["model", "arch", "dataset", "seed", "n", "clean_accuracy", "balanced_accuracy",
              "kappa", "mean_sev4_drop"] + [f"sev4_drop_{c}" for c in cors]
    header += ["mean_sev4_kappa"]
    for lab, ep in atk_cols:
        header.append(f"{lab}@{format_eps(ep, _norm_of(entries, lab))}")
    for lab, ep in atk_cols:
        header.append(f"{lab}_robust_acc@{format_eps(ep, _norm_of(entries, lab))}")
    header += ["headline_attack", "eps_at_50_success", "eps_at_50_success_255", "auc_success"]
    sal_cols = _saliency_columns(entries)
    header += sal_cols
    show_flags = any(e.attack_flags for e in entries)
    if show_flags:
        header.append("attack_flags")
    header += ["flags", "input_size", "model_sha256"]
    rows = []
    for e in entries:
        row: list[Any] = [e.model, e.arch, e.dataset, e.seed, e.n, e.accuracy,
                          e.balanced_accuracy, e.kappa, e.mean_drop4]
        row += [e.drop4.get(c) for c in cors]
        row += [e.mean_kappa4]
        row += [_atk(e, name, ep, 0) for name, ep in atk_cols]
        row += [_atk(e, name, ep, 1) for name, ep in atk_cols]
        linf = e._norm(e.headline_attack) == "linf"
        row += [e.headline_attack, e.eps_at_50,
                None if e.eps_at_50 is None or not linf else round(e.eps_at_50 * 255, 4),
                e.auc_success]
        row += [e.saliency_columns.get(c) for c in sal_cols]
        if show_flags:
            row.append(",".join(e.attack_flags) or None)
        row += [",".join(e.flags) or None,
                "x".join(str(v) for v in e.input_size) if e.input_size else None,
                e.model_sha256[:12]]
        rows.append(row)
    return header, rows


def _saliency_columns(entries: list[LeaderboardEntry]) -> list[str]:
    """The ``saliency_*`` columns, in leaderboard_columns' order, when any entry has them."""
    cols: list[str] = []
    for e in entries:
        for c in e.saliency_columns:
            if c not in cols:
                cols.append(c)
    return cols


def _atk(e: LeaderboardEntry, name: str, ep: float, i: int):
    for k, v in e.attacks.get(name, {}).items():
        if eps_key(k) == eps_key(ep):
            return v[i]
    return None


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def render(entries: list[LeaderboardEntry], fmt: str = "md", plots: dict | None = None,
           columns: str = "headline", width: int = 100) -> str:
    """The leaderboard of ``entries`` in ``fmt`` (:data:`FORMATS`). md, csv and json have every
    column (:func:`table`); ``text`` and ``latex`` the headline columns, one table per
    comparable group (``columns="all"``: every column, as md / a full booktabs table); html is
    the self-contained report (:mod:`.html`). ``plots``: {title: file name} of PNGs written
    beside the output, linked from md (the html report embeds its own)."""
    if fmt not in FORMATS:
        from ..errors import RBFError
        raise RBFError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    if columns not in ("headline", "all"):
        from ..errors import RBFError
        raise RBFError(f"--columns {columns}: choose headline or all")
    if fmt == "text":
        if columns == "all":
            return render(entries, "md")
        from .terminal import leaderboard_text
        return leaderboard_text(entries, width=width)
    if fmt == "latex":
        from .latex import leaderboard_latex
        return leaderboard_latex(entries, columns=columns)
    if fmt == "html":
        from .html import render_html
        return render_html(entries)
    header, rows = table(entries)
    if fmt == "json":
        return json.dumps({"columns": header, "entries": [e.to_dict() for e in entries],
                           "plots": plots or {}}, indent=2, allow_nan=False,
                          default=lambda o: None)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        for r in rows:
            w.writerow(["" if v is None else (repr(v) if isinstance(v, float) else v)
                        for v in r])
        return buf.getvalue()
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(v) for v in r) + " |")
    text = "\n".join(lines) + "\n"
    if plots:
        text += "\n" + "\n".join(f"![{k}]({v})" for k, v in plots.items()) + "\n"
    return text
