"""Figures for docs/bench.md and docs/metrics.md: a confusion matrix, the attack success curve
and accuracy against severity, from two small models benchmarked on 60 real photographs (or on
synthetic images when ../shared/data/fundus-real is absent).

    .venv/bin/python docs/make_figures_bench.py
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "bench"))

from _bench_helpers import tiny_model  # noqa: E402

from robustbench_fundus import evaluate  # noqa: E402
from robustbench_fundus.bench import (load_entries, plot_confusion, plot_severity_curves,  # noqa: E402
                                      plot_success_curves, render)
from robustbench_fundus.data import estimate_geometry, graham, load_working, read_records  # noqa: E402

REAL = HERE.parent.parent / "shared" / "data" / "fundus-real"
SIZE = 96


def main() -> None:
    torch.set_num_threads(1)
    img = HERE / "img"
    data = str(REAL) if (REAL / "labels.csv").is_file() else None
    calib = None
    if data:
        recs = read_records(REAL).records
        x = torch.stack([load_working(r.path, SIZE) for r in recs[::75]]).float() / 255
        calib = graham(x, estimate_geometry(x))
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "r.sqlite"
        reports = []
        for seed, name in ((4, "tiny-a"), (11, "tiny-b")):
            reports.append(evaluate(tiny_model(SIZE, seed=seed, calib=calib), data, limit=60,
                                    corruptions="all", attack="pgd", steps=5, store=store,
                                    name=name))
        entries = load_entries(str(store))
        plot_confusion(reports[0].clean.confusion, img / "bench_confusion.png",
                       labels=["0", "1", "2", "3", "4"],
                       title="tiny-a, clean (rows: true grade)")
        plot_success_curves(entries, img / "bench_success_curve.png")
        plot_severity_curves(entries, img / "bench_severity.png")
        (img / "bench_leaderboard_example.md").write_text(render(entries, "md"))
    print("wrote", *(p.name for p in img.glob("bench_*")))


if __name__ == "__main__":
    main()
