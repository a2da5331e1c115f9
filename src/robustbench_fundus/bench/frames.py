"""pandas DataFrames of a report and of a leaderboard (pandas is optional: ``pip install
pandas``; without it these raise a one-line :class:`~robustbench_fundus.errors.RBFError`).

* :func:`report_frame`: one row per condition of a :class:`~.report.BenchReport` (clean, each
  corruption and severity, each attack eps), with the figures of its section;
* :func:`leaderboard_frame`: one row per leaderboard entry, with the columns of the md, csv
  and json formats (:func:`.leaderboard.table`), in the default rank order, plus the
  comparable group of each entry.
"""
from __future__ import annotations

from typing import Any

from ..errors import RBFError

#: Columns of :func:`report_frame`, in order.
REPORT_COLUMNS = ("condition", "kind", "name", "severity", "label", "norm", "steps", "eps",
                  "eps_text", "n", "accuracy", "balanced_accuracy", "kappa", "drop",
                  "n_attacked", "n_broken", "success_rate", "robust_accuracy", "config_hash")


def _pandas():
    try:
        import pandas as pd
    except ImportError:
        raise RBFError("this needs pandas, which is not installed: pip install pandas") from None
    return pd


def report_rows(report: Any) -> list[dict]:
    """The rows of :func:`report_frame` as plain dicts (no pandas needed)."""
    d = report.to_dict()
    rows: list[dict] = []
    c = d.get("clean")
    if c:
        rows.append({"condition": "clean", "kind": "clean", "name": "clean", "n": c.get("n"),
                     "accuracy": c.get("accuracy"),
                     "balanced_accuracy": c.get("balanced_accuracy"), "kappa": c.get("kappa")})
    for r in d.get("corruptions") or []:
        rows.append({"condition": f"{r['name']} s{r['severity']}", "kind": "corruption",
                     "name": r["name"], "severity": r["severity"], "n": r.get("n"),
                     "accuracy": r.get("accuracy"),
                     "balanced_accuracy": r.get("balanced_accuracy"), "kappa": r.get("kappa"),
                     "drop": r.get("drop"), "config_hash": r.get("config_hash")})
    for r in d.get("attacks") or []:
        label = r.get("label") or r["name"]
        rows.append({"condition": f"{label} eps={r.get('eps_text')}", "kind": "attack",
                     "name": r["name"], "label": label, "norm": r.get("norm"),
                     "steps": r.get("steps"), "eps": r.get("eps"), "eps_text": r.get("eps_text"),
                     "n": r.get("n"), "n_attacked": r.get("n_attacked"),
                     "n_broken": r.get("n_broken"), "success_rate": r.get("success_rate"),
                     "robust_accuracy": r.get("robust_accuracy"),
                     "config_hash": r.get("config_hash")})
    return [{k: row.get(k) for k in REPORT_COLUMNS} for row in rows]


def report_frame(report: Any):
    """A DataFrame with one row per condition of ``report`` (:data:`REPORT_COLUMNS`;
    ``None`` where a figure does not apply: pandas shows NaN / None)."""
    pd = _pandas()
    return pd.DataFrame(report_rows(report), columns=list(REPORT_COLUMNS))


def leaderboard_frame(entries: list) -> Any:
    """A DataFrame with one row per entry (in the given order; :func:`.leaderboard.load_entries`
    returns the default rank order) and the columns of :func:`.leaderboard.table`, plus
    ``comparable_group`` (entries of one group may be ranked side by side) and ``demoted``
    (flagged constant_prediction or below_majority)."""
    pd = _pandas()
    from .leaderboard import comparable_key, table
    header, rows = table(entries)
    df = pd.DataFrame(rows, columns=header)
    df["comparable_group"] = [comparable_key(e) for e in entries]
    df["demoted"] = [bool(e.demoted) for e in entries]
    return df
