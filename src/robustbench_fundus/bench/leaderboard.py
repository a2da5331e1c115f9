"""The leaderboard: one row per model entry of a results store, in md, csv, json or html.

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
Numbers stay floats
in [0,1] in csv/json; md/html show them with 3-4 digits. Rows are sorted by clean balanced
accuracy, then by model name (a stable order, so identical stores give identical output).
"""
from __future__ import annotations

import csv
import html
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..metrics import area_under_success_curve, eps_at_success
from .conditions import eps_key, format_eps, format_eps_255
from .report import attack_sanity_flags
from .store import ResultStore

FORMATS = ("md", "csv", "json", "html")


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
             "auc_success": self.auc_success}
        if self.saliency is not None:
            d["saliency"] = dict(self.saliency)
            d.update(self.saliency_columns)
        if self.attack_flags:
            d["attack_flags"] = list(self.attack_flags)
        return d

    def _norm(self, label: str | None) -> str:
        return str((self.attack_info.get(label or "") or {}).get("norm") or "linf")


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
        e = LeaderboardEntry(m["name"], msha, m.get("arch"),
                             datasets.get(dfp, {}).get("name", dfp), dfp, int(seed), ver)
        clean = next((r for r in rows if r["condition"] == "clean"), None)
        if clean:
            e.n, e.accuracy = clean["n"], clean["accuracy"]
            e.balanced_accuracy, e.kappa = clean["balanced_accuracy"], clean["kappa"]
        sal_rows = []
        sanity: dict[str, list[tuple[float, dict]]] = {}
        for r in rows:
            if r["kind"] == "corruption":
                e.severity_accuracy.setdefault(r["name"], {})[int(r["severity"])] = r["accuracy"]
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
        for c, sev in sorted(e.severity_accuracy.items()):
            if 4 in sev and e.accuracy is not None and sev[4] is not None:
                e.drop4[c] = e.accuracy - sev[4]
        if e.drop4:
            e.mean_drop4 = float(np.mean(list(e.drop4.values())))
        if e.attacks:
            name = headline_attack(e)
            e.headline_attack = name
            pts = [(ep, v[0]) for ep, v in sorted(e.attacks[name].items()) if v[0] is not None]
            if pts:
                e.eps_at_50 = eps_at_success([p[0] for p in pts], [p[1] for p in pts])
                e.auc_success = area_under_success_curve([p[0] for p in pts],
                                                         [p[1] for p in pts])
        out.append(e)
    out.sort(key=lambda e: (-(e.balanced_accuracy if e.balanced_accuracy is not None else -1),
                            e.model, e.dataset, e.seed, e.library_version))
    if not isinstance(store, ResultStore):
        st.close()
    return out


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
    header.append("model_sha256")
    rows = []
    for e in entries:
        row: list[Any] = [e.model, e.arch, e.dataset, e.seed, e.n, e.accuracy,
                          e.balanced_accuracy, e.kappa, e.mean_drop4]
        row += [e.drop4.get(c) for c in cors]
        row += [_atk(e, name, ep, 0) for name, ep in atk_cols]
        row += [_atk(e, name, ep, 1) for name, ep in atk_cols]
        linf = e._norm(e.headline_attack) == "linf"
        row += [e.headline_attack, e.eps_at_50,
                None if e.eps_at_50 is None or not linf else round(e.eps_at_50 * 255, 4),
                e.auc_success]
        row += [e.saliency_columns.get(c) for c in sal_cols]
        if show_flags:
            row.append(",".join(e.attack_flags) or None)
        row.append(e.model_sha256[:12])
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


def render(entries: list[LeaderboardEntry], fmt: str = "md", plots: dict | None = None) -> str:
    if fmt not in FORMATS:
        from ..errors import RBFError
        raise RBFError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
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
    if fmt == "md":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r in rows:
            lines.append("| " + " | ".join(_fmt(v) for v in r) + " |")
        text = "\n".join(lines) + "\n"
        if plots:
            text += "\n" + "\n".join(f"![{k}]({v})" for k, v in plots.items()) + "\n"
        return text
    # html
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r) + "</tr>\n"
                   for r in rows)
    imgs = "".join(f'<figure><img src="{html.escape(v)}" alt="{html.escape(k)}">'
                   f"<figcaption>{html.escape(k)}</figcaption></figure>\n"
                   for k, v in (plots or {}).items())
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>robustbench_fundus "
            "leaderboard</title>\n<style>table{border-collapse:collapse;font:13px sans-serif}"
            "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
            "img{max-width:100%}</style></head><body>\n<h1>Leaderboard</h1>\n"
            f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody></table>\n"
            f"{imgs}</body></html>\n")
