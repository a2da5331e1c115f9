"""``rbf leaderboard --format html``: the leaderboard as one self-contained page.

The page needs nothing but itself: plots are inline (the group plots as base64 PNG, the
per-model charts as SVG images), the style and a small sorting script are inline, nothing is
fetched, so a copied or mailed file shows the same. It has

* one table per comparable group (:func:`.leaderboard.group_entries`: the same data set
  fingerprint, model input size and headline attack configuration), under a heading saying
  what its entries share; columns in groups (model, clean, corruptions at severity 4, each
  attack's robust accuracy and success rate per eps and its sweep figures, screening,
  saliency, flags; :func:`.columns.column_specs`), human headers with a tooltip giving each
  figure's definition and denominator; rows in the default order (flagged
  ``constant_prediction`` / ``below_majority`` last, then mean severity-4 kappa); a click on a
  header sorts by it (numbers as numbers, missing values last, flagged rows still last; the
  header shows the direction); the table scrolls inside its own box with the model column
  frozen, so the page fits a 1400 px window;
* the group's success-against-eps and accuracy-against-severity plots;
* a section per model: what it is, its flags with their messages, its clean confusion matrix,
  accuracy against severity per corruption, success against eps, its saliency summary and its
  screening figures when scored;
* the definitions of every column (the tooltips, written out).
"""
from __future__ import annotations

import html
import json
import math
from typing import Any

from .columns import DEFAULT_SORT, Column, column_specs
from .conditions import format_eps
from .leaderboard import Group, LeaderboardEntry, group_entries

_CSS = """
:root{--fg:#1c1e21;--muted:#5f6670;--line:#d8dde3;--head:#eef2f6;--bad:#fdeceb;--bad2:#f8d7d5}
*{box-sizing:border-box}
html,body{margin:0;padding:0;background:#fff;color:var(--fg)}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1320px;margin:0 auto;padding:12px 20px 40px}
h1{font-size:22px;margin:8px 0}
h2{font-size:18px;margin:28px 0 6px;padding-top:6px;border-top:2px solid var(--line)}
h3{font-size:16px;margin:20px 0 4px}
p,li{max-width:1000px}
.muted{color:var(--muted)}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px;
  overflow-wrap:anywhere}
nav ul{padding-left:18px;margin:4px 0}
.scroll{overflow-x:auto;max-width:100%;border:1px solid var(--line);border-radius:4px;
  margin:6px 0 10px}
table.lb{border-collapse:separate;border-spacing:0;font-size:13px;white-space:nowrap}
table.lb th,table.lb td{padding:3px 7px;border-bottom:1px solid var(--line);text-align:right;
  background:#fff}
table.lb thead th{background:var(--head);vertical-align:bottom;font-weight:600}
table.lb thead tr.cols th{white-space:normal;min-width:58px;max-width:120px;line-height:1.2}
table.lb thead tr.groups th{text-align:center;font-weight:600;border-left:1px solid var(--line)}
table.lb thead tr.cols th.first{border-left:1px solid var(--line)}
table.lb td.first{border-left:1px solid var(--line)}
table.lb .sticky{position:sticky;left:0;z-index:2;text-align:left;
  border-right:2px solid var(--line);max-width:260px;overflow:hidden;text-overflow:ellipsis}
table.lb thead tr.cols th.sticky{white-space:nowrap;max-width:260px}
table.lb thead .sticky{z-index:3}
table.lb tr.demoted td,table.lb tr.demoted th{background:var(--bad)}
table.lb td.text{text-align:left}
table.lb td.flags{white-space:normal;min-width:150px;max-width:300px}
table.lb thead tr.cols th.text{text-align:left}
table.lb td.na{color:#9aa0a6}
table.lb th.sortable{cursor:pointer;user-select:none}
table.lb th.sortable:hover{background:#e2e8ef}
table.lb th.sortable::after{content:" \\21C5";color:#a0a7b0;font-weight:400}
table.lb th[aria-sort=descending]::after{content:" \\25BC";color:#1c1e21}
table.lb th[aria-sort=ascending]::after{content:" \\25B2";color:#1c1e21}
.flag{display:inline-block;padding:0 5px;margin:1px 2px 1px 0;border-radius:3px;
  background:#eef1f4;border:1px solid #d3d9df;font-size:12px;cursor:help}
.flag.demote{background:var(--bad2);border-color:#e3a8a3}
.rank{color:var(--muted);display:inline-block;min-width:1.6em}
.figs{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
.figs figure{margin:0;max-width:100%}
.figs figcaption{font-size:12px;color:var(--muted)}
img{max-width:100%;height:auto}
article.model{border-top:1px solid var(--line);margin-top:18px}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:6px 0;
  max-width:1000px}
dl.meta dt{color:var(--muted)}
dl.meta dd{margin:0;overflow-wrap:anywhere}
table.small{border-collapse:collapse;font-size:12px}
table.small th,table.small td{border:1px solid var(--line);padding:2px 6px;text-align:right}
table.small caption{caption-side:top;text-align:left;font-size:12px;color:var(--muted);
  min-width:220px}
table.cm td{min-width:34px;text-align:center}
dl.defs dt{font-weight:600;margin-top:6px}
dl.defs dd{margin:0 0 0 16px;max-width:1000px}
"""

_JS = """
(function () {
  function value(cell, numeric) {
    if (!cell) return null;
    var v = cell.getAttribute('data-v');
    if (v === null || v === '') return null;
    if (!numeric) return v.toLowerCase();
    var x = parseFloat(v);
    return isNaN(x) ? null : x;
  }
  function sortBy(table, th) {
    var heads = table.querySelectorAll('th.sortable');
    var col = parseInt(th.getAttribute('data-col'), 10);
    var numeric = th.getAttribute('data-type') === 'num';
    var now = th.getAttribute('aria-sort');
    var dir = (now === 'descending') ? 'ascending' : (now === 'ascending') ? 'descending'
      : th.getAttribute('data-first');
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var d = parseInt(a.getAttribute('data-demoted'), 10) -
        parseInt(b.getAttribute('data-demoted'), 10);
      if (d) return d;
      var ra = parseInt(a.getAttribute('data-rank'), 10);
      var rb = parseInt(b.getAttribute('data-rank'), 10);
      var va = value(a.cells[col], numeric), vb = value(b.cells[col], numeric);
      if (va === null && vb === null) return ra - rb;
      if (va === null) return 1;
      if (vb === null) return -1;
      var c = va < vb ? -1 : (va > vb ? 1 : 0);
      if (dir === 'descending') c = -c;
      return c || (ra - rb);
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(heads, function (h) { h.setAttribute('aria-sort', 'none'); });
    th.setAttribute('aria-sort', dir);
  }
  Array.prototype.forEach.call(document.querySelectorAll('table.lb'), function (table) {
    Array.prototype.forEach.call(table.querySelectorAll('th.sortable'), function (th) {
      th.addEventListener('click', function () { sortBy(table, th); });
      th.addEventListener('keydown', function (ev) {
        if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); sortBy(table, th); }
      });
    });
  });
})();
"""

_ORDER_NOTE = ("Default order: entries flagged <code>constant_prediction</code> or "
               "<code>below_majority</code> (a model that predicts one grade, or is no better "
               "than always predicting the commonest grade) always rank below the others; then "
               "the <b>mean quadratic kappa at severity 4</b> over the corruptions (higher "
               "first). Kappa is 0 for a model that ignores its input whatever the grade mix, "
               "so it cannot win it the way it wins accuracy, robust accuracy or a low attack "
               "success rate on an unbalanced set. Click a header to sort by it (again to "
               "reverse); flagged entries stay last.")


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _entry_id(i: int) -> str:
    return f"entry-{i + 1}"


def _data_v(c: Column, e: LeaderboardEntry) -> str:
    v = c.value(e)
    if v is None or v == "":
        return ""
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, (int, float)):
        return repr(float(v))
    return str(v)


def _flags_html(e: LeaderboardEntry) -> str:
    if not e.all_flags:
        return ""
    out = []
    for code in e.all_flags:
        cls = "flag demote" if code in ("constant_prediction", "below_majority") else "flag"
        out.append(f'<span class="{cls}" title="{_e(e.flag_message(code))}">{_e(code)}</span>')
    return "".join(out)


def _group_table(g: Group, gi: int, ids: dict[int, str]) -> str:
    cols = column_specs(g.entries)
    # header rows: column groups (colspan), then the columns
    spans: list[tuple[str, int]] = []
    for c in cols[1:]:
        if spans and spans[-1][0] == c.group:
            spans[-1] = (c.group, spans[-1][1] + 1)
        else:
            spans.append((c.group, 1))
    top = ['<th class="sticky" scope="col"></th>'] + [
        f'<th colspan="{n}" scope="colgroup">{_e(name)}</th>' for name, n in spans]
    firsts = {i for i in range(1, len(cols)) if i == 1 or cols[i].group != cols[i - 1].group}
    heads = []
    for i, c in enumerate(cols):
        cls = ["sortable"] + (["sticky"] if i == 0 else []) + (["first"] if i in firsts else []) \
            + ([] if c.numeric else ["text"])
        first = "asc" if c.higher_is_better is None or c.higher_is_better is False else "desc"
        first = "ascending" if first == "asc" else "descending"
        sort = "descending" if c.key == DEFAULT_SORT else "none"
        heads.append(f'<th class="{" ".join(cls)}" scope="col" tabindex="0" data-col="{i}" '
                     f'data-key="{_e(c.key)}" data-type="{"num" if c.numeric else "text"}" '
                     f'data-first="{first}" aria-sort="{sort}" title="{_e(c.tip)}">'
                     f"{_e(c.header)}</th>")
    body = []
    for r, e in enumerate(g.entries):
        cells = []
        for i, c in enumerate(cols):
            dv = _data_v(c, e)
            if i == 0:
                eid = ids[id(e)]
                cells.append(f'<th class="sticky" scope="row" data-v="{_e(dv)}">'
                             f'<span class="rank">{r + 1}.</span> '
                             f'<a href="#{eid}" title="{_e(e.model)}: details">{_e(e.model)}'
                             "</a></th>")
                continue
            cls = ["first"] if i in firsts else []
            if c.key == "flags":
                cells.append(f'<td class="{" ".join(cls + ["text", "flags"])}" '
                             f'data-v="{_e(dv)}">{_flags_html(e)}</td>')
                continue
            text = c.show(e)
            if not c.numeric:
                cls.append("text")
            if dv == "":
                cls.append("na")
            cells.append(f'<td class="{" ".join(cls)}" data-v="{_e(dv)}">{_e(text)}</td>')
        body.append(f'<tr data-rank="{r}" data-demoted="{int(e.demoted)}" '
                    f'data-model="{_e(e.model)}"' + (' class="demoted"' if e.demoted else "")
                    + ">" + "".join(cells) + "</tr>")
    return (f'<div class="scroll"><table class="lb" id="table-{gi + 1}">'
            f'<thead><tr class="groups">{"".join(top)}</tr>'
            f'<tr class="cols">{"".join(heads)}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _group_figures(g: Group) -> str:
    from .plots import png_data_uri, severity_figure, success_figure
    figs = []
    if any(e.attacks for e in g.entries):
        figs.append(("Attack success rate against eps (headline attack), from (0, 0)",
                     png_data_uri(success_figure(g.entries))))
    if any(e.severity_accuracy for e in g.entries):
        figs.append(("Accuracy against severity (0 = clean), one panel per corruption",
                     png_data_uri(severity_figure(g.entries))))
    if not figs:
        return ""
    return '<div class="figs">' + "".join(
        f'<figure><img src="{uri}" alt="{_e(cap)}"><figcaption>{_e(cap)}</figcaption></figure>'
        for cap, uri in figs) + "</div>"


def _confusion_html(e: LeaderboardEntry) -> str:
    cm = e.confusion
    if not cm:
        return ""
    k = len(cm)
    labels = [str(i) for i in range(k)] if k != 2 else ["no", "yes"]
    what = "grade" if k != 2 else "referable"
    head = "".join(f"<th>{_e(lab)}</th>" for lab in labels)
    rows = []
    for i, row in enumerate(cm):
        tot = sum(row)
        cells = []
        for j, v in enumerate(row):
            share = v / tot if tot else 0.0
            bg = f"rgba(31,119,180,{0.08 + 0.8 * share:.2f})" if v else "#fff"
            fg = "#fff" if share > 0.55 else "#1c1e21"
            cells.append(f'<td style="background:{bg};color:{fg}" '
                         f'title="true {what} {labels[i]}, predicted {labels[j]}: {v} of {tot}">'
                         f"{v}</td>")
        rows.append(f"<tr><th>{_e(labels[i])}</th>{''.join(cells)}<td>{tot}</td></tr>")
    return (f'<table class="small cm"><caption>clean confusion matrix (rows: true {what}, '
            f'columns: predicted; shade: share of the row)</caption><tr><th></th>{head}'
            f'<th>n</th></tr>{"".join(rows)}</table>')


def _severity_chart(e: LeaderboardEntry) -> str:
    from .plots import svg_data_uri, svg_lines
    if not e.severity_accuracy:
        return ""
    series = []
    sevs: set[int] = set()
    for c, sev in sorted(e.severity_accuracy.items()):
        pts = ([(0.0, e.accuracy)] if e.accuracy is not None else []) + [
            (float(s), a) for s, a in sorted(sev.items()) if a is not None]
        sevs |= set(sev)
        series.append((c, pts))
    ticks = [(float(s), str(s)) for s in sorted(sevs | {0})]
    svg = svg_lines(series, title=f"{e.model}: accuracy against severity",
                    xlabel="severity (0 = clean)", ylabel="accuracy", xticks=ticks)
    cap = "accuracy against severity, one line per corruption"
    return (f'<figure><img src="{svg_data_uri(svg)}" alt="{_e(e.model)}: {cap}">'
            f"<figcaption>{_e(cap)}</figcaption></figure>")


def _success_chart(e: LeaderboardEntry) -> str:
    from .plots import svg_data_uri, svg_lines
    out = []
    for norm in ("linf", "l2"):
        labs = [lab for lab in sorted(e.attacks) if e._norm(lab) == norm]
        if not labs:
            continue
        scale = 255.0 if norm == "linf" else 1.0
        series, eps = [], set()
        for lab in labs:
            pts = [(0.0, 0.0)] + [(ep * scale, v[0]) for ep, v in sorted(e.attacks[lab].items())
                                  if v[0] is not None]
            eps |= {ep for ep in e.attacks[lab]}
            series.append((lab, pts))
        ticks = [(0.0, "0")] + [(ep * scale, format_eps(ep, norm).replace("/255", ""))
                                for ep in sorted(eps)]
        ticks = _thin(ticks)
        svg = svg_lines(series, title=f"{e.model}: attack success against eps",
                        xlabel="eps (/255)" if norm == "linf" else "eps (L2 norm)",
                        ylabel="success rate", xticks=ticks, hline=0.5)
        cap = "success rate against eps (dashed: 50%)"
        out.append(f'<figure><img src="{svg_data_uri(svg)}" alt="{_e(e.model)}: {cap}">'
                   f"<figcaption>{_e(cap)}</figcaption></figure>")
    return "".join(out)


def _thin(ticks: list[tuple[float, str]], min_gap: float = 0.06) -> list[tuple[float, str]]:
    """Tick labels far enough apart to be read (in shares of the axis)."""
    if len(ticks) < 3:
        return ticks
    lo, hi = ticks[0][0], max(t[0] for t in ticks)
    span = (hi - lo) or 1.0
    out = [ticks[0]]
    for t in ticks[1:]:
        if (t[0] - out[-1][0]) / span >= min_gap:
            out.append(t)
    return out


def _saliency_html(e: LeaderboardEntry) -> str:
    s = e.saliency
    if not s:
        return ""
    keys = [("lesion_share", "lesion share"), ("lesion_area", "lesion area (chance)"),
            ("disc_share", "disc share"), ("deletion_auc", "deletion AUC"),
            ("deletion_auc_random", "deletion AUC, random order"), ("ig_delta", "IG delta"),
            ("n", "images"), ("n_lesion", "with lesions"), ("steps", "IG steps"),
            ("baseline", "baseline"), ("method", "method")]
    rows = []
    for k, name in keys:
        if k in s and s[k] is not None:
            v = s[k]
            txt = f"{v:.4g}" if isinstance(v, float) else str(v)
            rows.append(f"<tr><th>{_e(name)}</th><td>{_e(txt)}</td></tr>")
    return ('<table class="small"><caption>saliency (integrated gradients)</caption>'
            + "".join(rows) + "</table>")


def _screening_html(e: LeaderboardEntry) -> str:
    s = getattr(e, "screening", None)
    if not s:
        return ""
    rows = []
    for k, v in s.items():
        if isinstance(v, dict):
            txt = ", ".join(f"{a} {b:.3f}" if isinstance(b, float) else f"{a} {b}"
                            for a, b in v.items())
        elif isinstance(v, float):
            txt = f"{v:.3f}" if math.isfinite(v) else "-"
        else:
            txt = json.dumps(v) if isinstance(v, (list, tuple)) else str(v)
        rows.append(f"<tr><th>{_e(k.replace('_', ' '))}</th><td class=\"text\">{_e(txt)}"
                    "</td></tr>")
    return ('<table class="small"><caption>screening (referable DR)</caption>'
            + "".join(rows) + "</table>")


def _model_section(e: LeaderboardEntry, eid: str) -> str:
    size = "x".join(str(v) for v in e.input_size) + " px" if e.input_size else "-"
    info = e.attack_info.get(e.headline_attack or "", {})
    meta = [("model sha256", f"<code>{_e(e.model_sha256)}</code>"),
            ("architecture", _e(e.arch or "-")), ("model input", _e(size)),
            ("preprocessing", _e(e.preprocessing or "-")), ("head", _e(e.head or "-")),
            ("data set", f"{_e(e.dataset)} ({_e(e.n if e.n is not None else '-')} images"
             + (f", working size {e.working_size} px" if e.working_size else "") + ")"),
            ("data set fingerprint", f"<code>{_e(e.dataset_fingerprint)}</code>"),
            ("seed", _e(e.seed)), ("library version", _e(e.library_version))]
    if e.headline_attack:
        meta.append(("headline attack", f"{_e(e.headline_attack)}: <code>"
                     f"{_e(json.dumps(info.get('config'), sort_keys=True))}</code>"))
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in meta)
    flags = ""
    if e.all_flags:
        flags = "<ul>" + "".join(
            f"<li><span class=\"flag{' demote' if c in ('constant_prediction', 'below_majority') else ''}\">"
            f"{_e(c)}</span> {_e(e.flag_message(c))}</li>" for c in e.all_flags) + "</ul>"
    parts = [_confusion_html(e), _severity_chart(e), _success_chart(e), _saliency_html(e),
             _screening_html(e)]
    return (f'<article class="model" id="{eid}"><h3>{_e(e.model)}'
            f' <span class="muted">({_e(e.dataset)}, seed {_e(e.seed)})</span></h3>'
            f'<dl class="meta">{dl}</dl>{flags}'
            f'<div class="figs">{"".join(p for p in parts if p)}</div></article>')


def _definitions(groups: list[Group]) -> str:
    seen: dict[str, tuple[str, str]] = {}
    for g in groups:
        for c in column_specs(g.entries):
            name = f"{c.group}: {c.header}" if c.group != "model" else c.header
            seen.setdefault(name, (c.key, c.tip))
    items = "".join(f"<dt>{_e(name)} <span class=\"muted mono\">{_e(key)}</span></dt>"
                    f"<dd>{_e(tip)}</dd>" for name, (key, tip) in seen.items())
    return (f'<details><summary>Definitions of the columns (the grey names are the columns of '
            f'the md, csv and json formats)</summary><dl class="defs">{items}</dl></details>')


def render_html(entries: list[LeaderboardEntry],
                title: str = "robustbench_fundus leaderboard") -> str:
    """The self-contained html report of ``entries`` (see the module's docstring)."""
    from .. import __version__
    groups = group_entries(entries)
    ordered = [e for g in groups for e in g.entries]
    ids = {id(e): _entry_id(i) for i, e in enumerate(ordered)}
    parts = [f"<h1>{_e(title)}</h1>"]
    n_flag = sum(1 for e in ordered if e.demoted)
    parts.append(f'<p class="muted">{len(ordered)} entr{"y" if len(ordered) == 1 else "ies"} '
                 f"(model, data set, seed, library version) in {len(groups)} comparable "
                 f"group{'' if len(groups) == 1 else 's'}; rendered by robustbench_fundus "
                 f"{_e(__version__)}."
                 + (f" {n_flag} flagged entr{'y' if n_flag == 1 else 'ies'} ranked last."
                    if n_flag else "") + "</p>")
    if not groups:
        parts.append("<p>No results yet: run <code>rbf bench</code> first.</p>")
    else:
        parts.append(f"<p>{_ORDER_NOTE}</p>")
        if len(groups) > 1:
            parts.append("<p>Entries are ranked side by side only when they ran on the same "
                         "images (data set fingerprint, which covers the working size), at the "
                         "same model input size and with the same headline attack "
                         "configuration; each such group has its own table.</p>")
        nav = "".join(f'<li><a href="#group-{gi + 1}">{_e(g.title)}</a> '
                      f'({len(g.entries)} entr{"y" if len(g.entries) == 1 else "ies"})</li>'
                      for gi, g in enumerate(groups))
        parts.append(f"<nav><ul>{nav}</ul></nav>")
    for gi, g in enumerate(groups):
        label = f"Group {gi + 1}: " if len(groups) > 1 else ""
        parts.append(f'<section class="group" id="group-{gi + 1}"><h2>{label}{_e(g.title)}</h2>')
        for note in g.notes:
            parts.append(f'<p class="muted">Note: {_e(note)}.</p>')
        parts.append(_group_table(g, gi, ids))
        parts.append(_group_figures(g))
        parts.append("</section>")
    if ordered:
        parts.append('<section id="models"><h2>Models</h2>')
        parts += [_model_section(e, ids[id(e)]) for e in ordered]
        parts.append("</section>")
        parts.append(f'<section id="definitions"><h2>Columns</h2>{_definitions(groups)}'
                     "</section>")
    body = "\n".join(parts)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><link rel=\"icon\" href=\"data:,\">"
            f"<style>{_CSS}</style></head>\n<body><main>\n{body}\n</main>"
            f"<script>{_JS}</script></body></html>\n")
