"""``rbf leaderboard --format latex``: booktabs tables for a paper.

One ``table`` per comparable group (its caption says what the entries share), in the default
rank order, with the headline columns (:func:`.columns.headline_columns`; ``columns="all"``:
every column of the html report). Every text is escaped; numbers are shown with 3 decimals;
a missing value is an en dash. Needs ``\\usepackage{booktabs}`` in the document.
"""
from __future__ import annotations

from .columns import Column, column_specs, headline_columns
from .leaderboard import LeaderboardEntry, group_entries

_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
            "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
            "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
            "|": r"\textbar{}"}


def escape(text: str) -> str:
    """``text`` safe in LaTeX text mode."""
    return "".join(_ESCAPES.get(ch, ch) for ch in str(text))


def _header(c: Column) -> str:
    if c.key == "n":
        return "$n$"
    if c.key == "flags":
        return "flags"
    if c.group in ("model", "clean", "screening", "saliency"):
        return escape(c.header)
    if c.group.startswith("corruptions"):
        return escape(c.header.replace("mean ", "mean sev-4 ") if c.key.startswith("mean")
                      else f"sev-4 {c.header}")
    # attack groups: "PGD-10 L-inf: robust accuracy" + "@2/255"
    title, _, what = c.group.partition(": ")
    if what == "sweep":
        return escape(f"{title} {c.header}")
    short = "robust acc." if what == "robust accuracy" else "success"
    return escape(f"{title} {short} {c.header}")


def _cell(c: Column, e: LeaderboardEntry) -> str:
    text = c.show(e)
    if text in ("-", ""):
        return "--"
    return escape(text)


def leaderboard_latex(entries: list[LeaderboardEntry], columns: str = "headline") -> str:
    groups = group_entries(entries)
    out = ["% robustbench_fundus leaderboard; needs \\usepackage{booktabs}"]
    if not groups:
        return out[0] + "\n% (no entries)\n"
    for gi, g in enumerate(groups):
        cols = headline_columns(g.entries) if columns == "headline" else \
            column_specs(g.entries)
        align = "".join("l" if not c.numeric or c.key in ("model", "flags") else "r"
                        for c in cols)
        out += ["", "\\begin{table}[ht]", "\\centering", "\\small",
                f"\\caption{{{escape(g.title)}. Ranked by mean severity-4 quadratic kappa; "
                "entries flagged constant\\_prediction or below\\_majority last.}",
                f"\\label{{tab:rbf-leaderboard-{gi + 1}}}",
                f"\\begin{{tabular}}{{{align}}}", "\\toprule",
                " & ".join(_header(c) for c in cols) + " \\\\", "\\midrule"]
        for e in g.entries:
            out.append(" & ".join(_cell(c, e) for c in cols) + " \\\\")
        out += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(out) + "\n"
