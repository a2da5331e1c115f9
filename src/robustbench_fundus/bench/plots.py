"""Leaderboard plots (PNG, matplotlib's Agg backend, no display needed).

* :func:`plot_success_curves`: attack success rate against eps (in /255), one curve per model
  entry, starting at (0, 0).
* :func:`plot_severity_curves`: accuracy against severity (0 = clean), one panel per corruption,
  one line per model entry.
* :func:`plot_confusion`: a confusion matrix as a heat map (for docs and reports).
"""
from __future__ import annotations

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
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def plot_severity_curves(entries: Sequence[LeaderboardEntry], out: str | Path) -> Path:
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
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


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
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def write_plots(entries: Sequence[LeaderboardEntry], out_dir: str | Path,
                stem: str = "leaderboard") -> dict[str, str]:
    """Both leaderboard plots into ``out_dir``; returns {title: file name}."""
    out_dir = Path(out_dir)
    a = plot_success_curves(entries, out_dir / f"{stem}_success_vs_eps.png")
    b = plot_severity_curves(entries, out_dir / f"{stem}_accuracy_vs_severity.png")
    return {"success rate against eps": a.name, "accuracy against severity": b.name}
