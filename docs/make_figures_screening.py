"""The screening figures of docs/metrics.md from a real run: a reliability diagram and a referral
curve, clean and at severity 4 of each corruption, of a checkpoint trained by ``rbf train`` on
real photographs, benchmarked on its own validation split (the subject-grouped split that
``rbf train`` made with the same seed and fraction).

    rbf train --arch tiny_cnn --data ../shared/data/fundus-real --size 128 --epochs 8 \\
        --out /tmp/screening/model.safetensors
    .venv/bin/python docs/make_figures_screening.py --model /tmp/screening/model.safetensors \\
        --data ../shared/data/fundus-real --size 128

Writes docs/img/screening_reliability.png, docs/img/screening_referral_curve.png and the
report's JSON beside them (docs/results/screening_report.json).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from robustbench_fundus import evaluate  # noqa: E402
from robustbench_fundus.bench import DataOptions, RunOptions  # noqa: E402
from robustbench_fundus.data import read_records, split_records  # noqa: E402

DOCS = Path(__file__).resolve().parent
MIN_BIN = 8


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0, help="rbf train's --seed (the split)")
    ap.add_argument("--val-fraction", type=float, default=0.3)
    args = ap.parse_args()
    rs = read_records(args.data)
    _, val = split_records(rs.records, val_fraction=args.val_fraction, seed=args.seed)
    items = [(str(r.path), int(r.label)) for r in val]
    rep = evaluate(args.model, items, corruptions="all", severities="4", attack="none",
                   data_options=DataOptions(size=args.size), run=RunOptions(batch_size=32))
    d = json.loads(rep.to_json())
    (DOCS / "results").mkdir(exist_ok=True)
    (DOCS / "results" / "screening_report.json").write_text(json.dumps(d, indent=1))
    rows = [("clean", d["clean"])] + [(f"{c['name']} s4", c) for c in d["corruptions"]]

    fig, ax = plt.subplots(figsize=(5, 4.4), dpi=110)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    for name, r in rows:
        cal = r["calibration"]
        # bins of fewer than MIN_BIN images are left out of the line (they still count in ECE)
        pts = [(b["confidence"], b["accuracy"]) for b in cal["reliability"] if b["n"] >= MIN_BIN]
        ax.plot(*zip(*pts), marker="o", ms=3, label=f"{name} (ECE {cal['ece']:.3f})")
    ax.set_xlabel("top-class confidence (bin mean)")
    ax.set_ylabel("accuracy in the bin")
    ax.set_title(f"reliability, {len(items)} validation photographs (bins of >= {MIN_BIN})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(DOCS / "img" / "screening_reliability.png")

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), dpi=110)
    for name, r in rows:
        cur = r["referral_curve"]
        f = [p["referred"] for p in cur]
        axes[0].plot(f, [p["accuracy"] for p in cur], marker="o", ms=3, label=name)
        axes[1].plot(f, [p["sensitivity"] for p in cur], marker="o", ms=3, label=name)
    axes[0].set_ylabel("accuracy of the retained images")
    axes[1].set_ylabel("referable sensitivity, retained")
    for ax in axes:
        ax.set_xlabel("share referred to a specialist (least certain first)")
    axes[0].legend(fontsize=7)
    fig.suptitle("referral curve")
    fig.tight_layout()
    fig.savefig(DOCS / "img" / "screening_referral_curve.png")
    print(f"{len(items)} validation images; clean referable "
          f"{d['clean']['referable']['sensitivity']:.3f} sens, "
          f"{d['clean']['referable']['specificity']:.3f} spec, "
          f"AUROC {d['clean']['referable']['auroc']:.3f}")


if __name__ == "__main__":
    main()
