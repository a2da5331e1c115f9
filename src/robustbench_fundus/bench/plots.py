"""Leaderboard plots (PNG, matplotlib's Agg backend, no display needed).

* :func:`plot_success_curves`: attack success rate against eps (in /255), one curve per model
  entry, starting at (0, 0).
* :func:`plot_severity_curves`: accuracy against severity (0 = clean), one panel per corruption,
  one line per model entry.
* :func:`plot_confusion`: a confusion matrix as a heat map (for docs and reports).
* :func:`success_figure`, :func:`severity_figure`: the same figures as matplotlib objects, and
  :func:`png_data_uri` to inline one in a page (the html report is one self-contained file).
* :func:`svg_lines`: a small line chart as standalone SVG text (the report's per-model charts:
  light, crisp and fast for many models).
"""
from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from .leaderboard import LeaderboardEntry


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _label(e: LeaderboardEntry, entries: Sequence[LeaderboardEntry]) -> str:
    same = [x for x in entries if x.model == e.model]
    if len(same) == 1:
        return e.model
    return f"{e.model} ({e.dataset}, seed {e.seed})"


def plot_success_curves(entries: Sequence[LeaderboardEntry], out: str | Path,
                        attack: str | None = None) -> Path:
    """Success rate against eps of each entry's headline attack (or the attack labelled
    ``attack``), from (0, 0); one panel per norm (L-inf eps in /255, L2 as the plain norm)."""
    return _save(success_figure(entries, attack), out)


def _save(fig, out: str | Path) -> Path:
    """``fig`` as a PNG at ``out``, written whole or not at all (the figure is closed)."""
    from ..files import write_atomic
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    _plt().close(fig)
    return write_atomic(out, buf.getvalue(), what="plot")


def png_data_uri(fig, dpi: int | None = None) -> str:
    """``fig`` as a ``data:image/png;base64,...`` URI (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    _plt().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def success_figure(entries: Sequence[LeaderboardEntry], attack: str | None = None):
    """The figure of :func:`plot_success_curves`."""
    plt = _plt()
    curves: dict[str, list] = {}
    for e in entries:
        label = attack or e.headline_attack
        rows = e.attacks.get(label or "", {})
        norm = e._norm(label)
        scale = 255.0 if norm == "linf" else 1.0
        pts = [(ep * scale, v[0]) for ep, v in sorted(rows.items()) if v[0] is not None]
        if pts:
            curves.setdefault(norm, []).append((f"{_label(e, entries)} [{label}]", pts))
    norms = sorted(curves) or ["linf"]
    fig, axes = plt.subplots(1, len(norms), figsize=(6 * len(norms), 4), dpi=110,
                             squeeze=False)
    for ax, norm in zip(axes[0], norms):
        for name, pts in curves.get(norm, []):
            ax.plot([0.0] + [p[0] for p in pts], [0.0] + [p[1] for p in pts], marker="o",
                    label=name)
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("eps (/255)" if norm == "linf" else "eps (L2 norm)")
        ax.set_ylabel("attack success rate")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title("Attack success against eps" + ("" if len(norms) == 1 else f" ({norm})"))
        if curves.get(norm):
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no attack results", ha="center", transform=ax.transAxes)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_severity_curves(entries: Sequence[LeaderboardEntry], out: str | Path) -> Path:
    """Accuracy against severity (0 = clean), one panel per corruption, one line per entry."""
    return _save(severity_figure(entries), out)


def severity_figure(entries: Sequence[LeaderboardEntry]):
    """The figure of :func:`plot_severity_curves`."""
    plt = _plt()
    cors = sorted({c for e in entries for c in e.severity_accuracy})
    n = max(1, len(cors))
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), dpi=110,
                             squeeze=False, sharey=True)
    for i, c in enumerate(cors):
        ax = axes[i // cols][i % cols]
        for e in entries:
            sev = e.severity_accuracy.get(c)
            if not sev:
                continue
            pts = sorted((s, a) for s, a in sev.items() if a is not None)
            xs = ([0] if e.accuracy is not None else []) + [p[0] for p in pts]
            ys = ([e.accuracy] if e.accuracy is not None else []) + [p[1] for p in pts]
            ax.plot(xs, ys, marker="o", label=_label(e, entries))
        ax.set_title(c, fontsize=9)
        ax.set_xlabel("severity (0 = clean)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        if i % cols == 0:
            ax.set_ylabel("accuracy")
    for j in range(len(cors), rows * cols):
        axes[j // cols][j % cols].axis("off")
    if not cors:
        axes[0][0].text(0.5, 0.5, "no corruption results", ha="center",
                        transform=axes[0][0].transAxes)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8)
        fig.tight_layout(rect=(0, 0.08, 1, 1))
    else:
        fig.tight_layout()
    return fig


def plot_confusion(cm, out: str | Path, labels: Sequence[str] | None = None,
                   title: str = "Confusion matrix") -> Path:
    plt = _plt()
    cm = np.asarray(cm)
    k = cm.shape[0]
    labels = list(labels) if labels else [str(i) for i in range(k)]
    fig, ax = plt.subplots(figsize=(4.2, 3.8), dpi=110)
    im = ax.imshow(cm, cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black", fontsize=9)
    ax.set_xticks(range(k), labels)
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted grade")
    ax.set_ylabel("true grade")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return _save(fig, out)


def write_plots(entries: Sequence[LeaderboardEntry], out_dir: str | Path,
                stem: str = "leaderboard") -> dict[str, str]:
    """Both leaderboard plots into ``out_dir``; returns {title: file name}."""
    out_dir = Path(out_dir)
    a = plot_success_curves(entries, out_dir / f"{stem}_success_vs_eps.png")
    b = plot_severity_curves(entries, out_dir / f"{stem}_accuracy_vs_severity.png")
    return {"success rate against eps": a.name, "accuracy against severity": b.name}


#: Line colours of :func:`svg_lines` (matplotlib's tab10).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")


def svg_lines(series: Sequence[tuple[str, Sequence[tuple[float, float]]]], *, title: str,
              xlabel: str, ylabel: str, xticks: Sequence[tuple[float, str]] | None = None,
              ylim: tuple[float, float] = (0.0, 1.0), width: int = 380, height: int = 250,
              hline: float | None = None) -> str:
    """A line chart as standalone SVG: one polyline with markers per (label, points) series,
    a legend under the plot, the y range ``ylim``, optional x tick labels and a dashed
    horizontal line at ``hline``."""
    pad_l, pad_r, pad_t = 44, 12, 24
    n_leg = len(series)
    leg_rows = math.ceil(n_leg / 2) if n_leg else 0
    pad_b = 40 + 16 * leg_rows
    height = max(height, pad_t + pad_b + 120)
    pw, ph = width - pad_l - pad_r, height - pad_t - pad_b
    xs = [x for _, pts in series for x, _ in pts] + [x for x, _ in (xticks or [])]
    x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if x1 <= x0:
        x1 = x0 + 1.0
    y0, y1 = ylim

    def px(x: float) -> float:
        return pad_l + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        y = min(max(y, y0), y1)
        return pad_t + (1 - (y - y0) / (y1 - y0)) * ph

    esc = html.escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2:.1f}" y="15" text-anchor="middle" font-size="12" '
           f'font-weight="bold">{esc(title)}</text>']
    for k in range(6):
        y = y0 + (y1 - y0) * k / 5
        out.append(f'<line x1="{pad_l}" x2="{pad_l + pw}" y1="{py(y):.1f}" y2="{py(y):.1f}" '
                   'stroke="#e4e4e4"/>')
        out.append(f'<text x="{pad_l - 5}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.1f}</text>')
    for x, lab in (xticks or []):
        out.append(f'<text x="{px(x):.1f}" y="{pad_t + ph + 14}" text-anchor="middle">'
                   f'{esc(lab)}</text>')
    out.append(f'<rect x="{pad_l}" y="{pad_t}" width="{pw}" height="{ph}" fill="none" '
               'stroke="#999"/>')
    if hline is not None:
        out.append(f'<line x1="{pad_l}" x2="{pad_l + pw}" y1="{py(hline):.1f}" '
                   f'y2="{py(hline):.1f}" stroke="#888" stroke-dasharray="4 3"/>')
    out.append(f'<text x="{pad_l + pw / 2:.1f}" y="{pad_t + ph + 28}" text-anchor="middle">'
               f'{esc(xlabel)}</text>')
    out.append(f'<text transform="translate(12 {pad_t + ph / 2:.1f}) rotate(-90)" '
               f'text-anchor="middle">{esc(ylabel)}</text>')
    for i, (label, pts) in enumerate(series):
        col = PALETTE[i % len(PALETTE)]
        pts = [(x, y) for x, y in pts if y is not None and math.isfinite(y)]
        if pts:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
            out.append(f'<polyline points="{path}" fill="none" stroke="{col}" '
                       'stroke-width="1.8"/>')
            out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.6" fill="{col}"/>'
                    for x, y in pts]
        lx = pad_l + (i % 2) * (pw / 2)
        ly = pad_t + ph + 42 + 16 * (i // 2)
        out.append(f'<line x1="{lx:.1f}" x2="{lx + 14:.1f}" y1="{ly - 4}" y2="{ly - 4}" '
                   f'stroke="{col}" stroke-width="2"/>')
        out.append(f'<text x="{lx + 18:.1f}" y="{ly}">{esc(label[:28])}</text>')
    out.append("</svg>")
    return "\n".join(out)


def svg_data_uri(svg: str) -> str:
    """SVG text as a ``data:image/svg+xml;base64,...`` URI (for an ``<img>``)."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")
