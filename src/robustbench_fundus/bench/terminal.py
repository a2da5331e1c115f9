"""What ``rbf bench`` and ``rbf leaderboard`` print: compact, at most 100 characters a line.

* :func:`leaderboard_text`: the headline columns (:func:`.columns.headline_columns`), one
  markdown table per comparable group under a line saying what its entries share, then a key
  from each short header to its full column name (as md/csv/json and ``--columns all`` name
  it) and every flag with its message. The model name is the last column (as ``ls -l`` puts
  the file name last): every other column stays aligned and no name is cut unless a line
  would pass the width.
* :func:`bench_summary`: the end of ``rbf bench``: what ran, the per-condition table, the
  headline figures and flags, the store's compact leaderboard, the store path, the plots and
  the command that renders the full leaderboard.
"""
from __future__ import annotations

import shlex
import textwrap
from pathlib import Path
from typing import Any, Sequence

from .leaderboard import LeaderboardEntry, group_entries

WIDTH = 100

_SOURCE = {"model": "declared by the model", "default": "library default: the model declares "
           "none", "caller": "given by --preprocessing"}


def wrap(text: str, width: int = WIDTH, indent: str = "    ") -> list[str]:
    """``text`` as lines of at most ``width`` characters (continuations indented); a line
    that fits is kept as it is (tables keep their spacing)."""
    out = []
    for line in text.splitlines() or [""]:
        if len(line) <= width:
            out.append(line)
            continue
        lead = line[:len(line) - len(line.lstrip())]
        out += textwrap.wrap(line, width, initial_indent="", subsequent_indent=lead + indent,
                             break_long_words=True, break_on_hyphens=False) or [""]
    return out


def command_lines(argv: Sequence[str], width: int = WIDTH, indent: str = "    ") -> list[str]:
    """A shell command (words already quoted as needed) as lines of at most ``width``
    characters, continued with `` \\``."""
    words = [str(a) for a in argv]
    lines, cur = [], ""
    for w in words:
        cand = f"{cur} {w}" if cur else w
        if cur and len(cand) + 2 > width:
            lines.append(cur + " \\")
            cur = indent + w
        else:
            cur = cand
    lines.append(cur)
    return lines


def _clip(text: str, w: int) -> str:
    return text if len(text) <= w else text[:max(1, w - 3)] + "..."


def clip_list(text: str, w: int) -> str:
    """A comma-separated list cut to ``w`` characters at whole items, the rest counted:
    ``constant_prediction,+3``; a first item longer than ``w`` is cut with ``...``."""
    if len(text) <= w:
        return text
    items = text.split(",")
    best = None
    for i in range(1, len(items)):
        cand = ",".join(items[:i]) + f",+{len(items) - i}"
        if len(cand) <= w:
            best = cand
    return best if best is not None else _clip(text, w)


def pipe_table(header: list[str], rows: list[list[str]], width: int = WIDTH,
               clippable: Sequence[int] = (), right: Sequence[int] = (),
               lists: Sequence[int] = ()) -> str:
    """A markdown table with aligned columns and the last column (a name) unpadded, at most
    ``width`` characters a line: the ``clippable`` columns are narrowed first (not below their
    header), then the last column's cells are cut with ``...``. The ``right`` columns (numbers)
    are right-aligned (``---:`` in markdown); the ``lists`` columns (comma-separated) are cut
    at whole items (:func:`clip_list`)."""
    k = len(header)
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i])
              for i in range(k)]

    def line_len(ws: list[int], last: int) -> int:
        return 2 + sum(ws[:-1]) + 3 * (k - 1) + last + 2

    last = max([len(header[-1])] + [len(r[-1]) for r in rows])
    while line_len(widths, last) > width:
        cand = [i for i in clippable if i < k - 1 and widths[i] > max(len(header[i]), 4)]
        if not cand:
            break
        i = max(cand, key=lambda j: widths[j])
        widths[i] -= 1
    room = width - (line_len(widths, 0))
    last_w = max(len(header[-1]), room)

    def cells(r: list[str], pad_last: bool) -> str:
        cut = [clip_list(r[i], widths[i]) if i in lists else _clip(r[i], widths[i])
               for i in range(k - 1)]
        body = [cut[i].rjust(widths[i]) if i in right else cut[i].ljust(widths[i])
                for i in range(k - 1)]
        tail = _clip(r[-1], last_w)
        return "| " + " | ".join(body + [tail]) + (" |" if pad_last else "")

    rule = ["-" * (w + 1) + (":" if i in right else "-") for i, w in enumerate(widths[:-1])]
    lines = [cells(header, True), "|" + "|".join(rule) + "|" + "-" * (len(header[-1]) + 2) + "|"]
    lines += [cells(r, False) for r in rows]
    return "\n".join(lines)


def _flag_lines(entries: list[LeaderboardEntry], width: int) -> list[str]:
    out = []
    for e in entries:
        if not e.all_flags:
            continue
        msgs = [f"{c} ({e.flag_message(c)})" if e.flag_message(c) else c for c in e.all_flags]
        out += wrap(f"  {e.model}: " + "; ".join(msgs), width)
    return out


def leaderboard_text(entries: list[LeaderboardEntry], width: int = WIDTH) -> str:
    """The compact leaderboard of ``entries``: one table per comparable group, in rank order
    (see :func:`.leaderboard.rank_key`), then the key of the short headers and the flags."""
    from .columns import headline_columns

    groups = group_entries(entries)
    if not groups:
        return "(no entries)\n"
    lines: list[str] = []
    key: dict[str, str] = {}
    for gi, g in enumerate(groups):
        cols = headline_columns(g.entries)
        cols = [c for c in cols if c.key != "model"] + [c for c in cols if c.key == "model"]
        head = ["#"] + [c.short for c in cols]
        rows = [[str(i + 1)] + [c.show(e).replace("|", "\\|") for c in cols]
                for i, e in enumerate(g.entries)]
        clip = [i + 1 for i, c in enumerate(cols) if c.key == "flags"]
        right = [0] + [i + 1 for i, c in enumerate(cols) if c.numeric]
        prefix = f"group {gi + 1} of {len(groups)}: " if len(groups) > 1 else ""
        lines += wrap(prefix + g.title, width)
        for note in g.notes:
            lines += wrap("note: " + note, width)
        lines.append(pipe_table(head, rows, width, clippable=clip, right=right, lists=clip))
        lines.append("")
        for c in cols:
            if c.short != c.key and c.key != "model":
                key.setdefault(c.short, c.key)
    if key:
        lines += wrap("columns: " + "; ".join(f"{s} = {k}" for s, k in key.items())
                      + " (as md, csv and json name them)", width)
    lines += wrap("order: within a group, entries flagged constant_prediction or "
                  "below_majority last, then by mean severity-4 kappa (mean_sev4_kappa), "
                  "higher first", width)
    flagged = _flag_lines([e for g in groups for e in g.entries], width)
    if flagged:
        lines.append("flags:")
        lines += flagged
    return "\n".join(lines) + "\n"


def _fmt_store(store: Path) -> str:
    """The store path as a command takes it: relative to the current folder when shorter."""
    absolute = Path(store).resolve()
    try:
        rel = absolute.relative_to(Path.cwd().resolve())
        return str(rel) if len(str(rel)) < len(str(absolute)) else str(absolute)
    except ValueError:
        return str(absolute)


def bench_summary(report: Any, store: Path | None = None,
                  entries: list[LeaderboardEntry] | None = None,
                  plots: dict[str, str] | None = None, width: int = WIDTH) -> str:
    """The end of ``rbf bench``: what ran, the per-condition table (report.summary_table), the
    headline figures and flags, then (with a store) its compact leaderboard, the store path, the
    plots beside it and the commands that render the full leaderboard."""
    lines: list[str] = []
    lines += wrap(f"model {report.model['name']} ({report.model['sha256'][:12]}), data "
                  f"{report.dataset['name']}, seed {report.provenance['seed']}, device "
                  f"{report.provenance['device']}", width)
    pre = report.provenance.get("preprocessing")
    if pre:
        size = pre.get("input_size")
        lines += wrap(f"preprocessing {pre['enhancement']} "
                      f"({_SOURCE.get(pre.get('source'), '')})"
                      + (f", model input {size[0]}x{size[1]}" if size else ""), width)
    lines += wrap(report.summary_table(), width)
    t = report.provenance["timings"]
    sal = f"; saliency {t['saliency_s']:.1f} s" if t.get("saliency_s") else ""
    lines += wrap(f"time {t['total_s']:.1f} s ({report.provenance['conditions_computed']} "
                  f"conditions computed, {report.provenance['conditions_from_store']} from the "
                  f"store{sal})", width)
    if t.get("shares") and report.provenance["conditions_computed"]:
        from .budget import STAGE_LABELS
        parts = [f"{STAGE_LABELS.get(k, k)} {v:.0%}" for k, v in t["shares"].items()
                 if v >= 0.005]
        lines += wrap(f"time budget: {', '.join(parts)}; pipeline efficiency "
                      f"{t['pipeline_efficiency']:.2f} (model forward + attacks / total)", width)
    if store is None:
        return "\n".join(lines) + "\n"
    entries = entries or []
    n_groups = len(group_entries(entries))
    lines.append("")
    lines += wrap(f"leaderboard of the store ({len(entries)} "
                  f"entr{'y' if len(entries) == 1 else 'ies'}"
                  + (f" in {n_groups} comparable groups" if n_groups > 1 else "") + "):", width)
    lines.append("")
    lines += leaderboard_text(entries, width).rstrip("\n").splitlines()
    lines.append("")
    lines += wrap(f"store: {Path(store).resolve()}", width)
    if plots:
        lines += wrap("plots (beside the store): " + ", ".join(plots.values()), width)
    s = shlex.quote(_fmt_store(store))
    lines.append("the full leaderboard, as a report with plots:")
    lines += ["  " + ln for ln in command_lines(
        ["rbf", "leaderboard", "--store", s, "--format", "html", "--out", "leaderboard.html"],
        width - 2)]
    lines.append("every column, or another format:")
    lines += ["  " + ln for ln in command_lines(
        ["rbf", "leaderboard", "--store", s, "--columns", "all"], width - 2)]
    lines += ["  " + ln for ln in command_lines(
        ["rbf", "leaderboard", "--store", s, "--format", "md|csv|json|latex"], width - 2)]
    return "\n".join(lines) + "\n"
