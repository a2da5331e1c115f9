"""Data-stage throughput: decode + geometry + crop + Graham at 512 px, cold versus cached.

Measured in one run, on the same images:
  cold    empty crop cache: read + JPEG decode + estimate_geometry + crop_resize (+ atomic cache
          write), then Graham (geometry re-estimated on the crop, batched)
  cached  the same pass again: crops come from the on-disk cache (no decode), then Graham
  loader  the cached pass through FundusDataset + make_loader with worker processes
  peer    Ben Graham's original Kaggle preprocessing in OpenCV, per image (cv2.imread, radius
          from the middle row, resize, GaussianBlur, addWeighted, circle mask), as the reference
          for what the library replaces

Uses ../shared/data/fundus-real when present (or $RBF_REAL_DATA), else synthetic images.
Writes benchmarks/results/data.json and data.md.

    .venv/bin/python benchmarks/bench_data.py [--n 596] [--size 512] [--batch 16]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from robustbench_fundus.data import (FundusDataset, estimate_geometry, graham, load_working,
                                     make_loader, read_records)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
REAL = Path(os.environ.get("RBF_REAL_DATA", REPO.parent / "shared" / "data" / "fundus-real"))


def _synthetic_records(n: int, out: Path):
    try:
        from robustbench_fundus.data import write_synthetic  # type: ignore
        write_synthetic(out, n=n, size=768, seed=0)
    except ImportError:  # generator not there: plain drawn discs in the Kaggle layout
        from PIL import Image
        (out / "train").mkdir(parents=True, exist_ok=True)
        rows = ["image,level"]
        ys, xs = np.mgrid[0:512, 0:765]
        for i in range(n):
            rng = np.random.default_rng(i)
            d = np.hypot(xs - 382 - rng.uniform(-20, 20), ys - 256) / 300
            img = (np.array([220, 110, 50]) * (1 - 0.4 * d[..., None] ** 2)
                   + rng.normal(0, 8, (512, 765, 3))) * (d[..., None] <= 1)
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
                out / "train" / f"{i}_left.jpeg", quality=92)
            rows.append(f"{i}_left,{i % 5}")
        (out / "trainLabels.csv").write_text("\n".join(rows) + "\n")
    return read_records(out)


def _graham_batches(crops: list[torch.Tensor], batch: int) -> None:
    for i in range(0, len(crops), batch):
        x = torch.stack(crops[i:i + batch]).float().div_(255)
        graham(x, estimate_geometry(x))


def _pipeline(paths, size, cache_dir, batch) -> float:
    t = time.perf_counter()
    crops: list[torch.Tensor] = []
    for p in paths:
        crops.append(load_working(p, size, cache_dir=cache_dir))
        if len(crops) == batch:
            _graham_batches(crops, batch)
            crops = []
    _graham_batches(crops, batch)
    return time.perf_counter() - t


def _loader_pass(records, size, cache_dir, batch, workers) -> float:
    ds = FundusDataset(records, size=size, cache_dir=cache_dir)
    t = time.perf_counter()
    for b in make_loader(ds, batch_size=batch, num_workers=workers):
        x = b["image"].float().div_(255)
        graham(x, estimate_geometry(x))
    return time.perf_counter() - t


def _peer_graham(paths, size) -> float:
    """Ben Graham's Kaggle 2015 preprocessing (scale radius to size/2, blur, add weighted, mask)."""
    import cv2

    cv2.setNumThreads(torch.get_num_threads())
    t = time.perf_counter()
    scale = size // 2
    for p in paths:
        a = cv2.imread(str(p))
        row = a[a.shape[0] // 2, :, :].sum(1)
        r = max((row > row.mean() / 10).sum() / 2, 1)
        s = scale * 1.0 / r
        a = cv2.resize(a, (0, 0), fx=s, fy=s)
        a = cv2.addWeighted(a, 4, cv2.GaussianBlur(a, (0, 0), scale / 30), -4, 128)
        m = np.zeros(a.shape, np.uint8)
        cv2.circle(m, (a.shape[1] // 2, a.shape[0] // 2), int(scale * 0.9), (1, 1, 1), -1, 8, 0)
        a = a * m + 128 * (1 - m)
    return time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=596)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(HERE / "results" / "data"))
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="rbf-bench-data-"))
    try:
        if (REAL / "labels.csv").is_file():
            records, source = read_records(REAL).records[: args.n], f"fundus-real ({REAL.name})"
        else:
            records, source = _synthetic_records(args.n, tmp / "synth").records, "synthetic"
        paths = [r.path for r in records]
        n = len(paths)
        cache = tmp / "cache"
        # warm the OS file cache and torch's kernels so "cold" means cold crop cache only
        for p in paths:
            p.read_bytes()
        _pipeline(paths[:2], args.size, False, args.batch)
        t_cold = _pipeline(paths, args.size, cache, args.batch)
        t_cached = _pipeline(paths, args.size, cache, args.batch)
        t_loader = _loader_pass(records, args.size, cache, args.batch, args.workers)
        try:
            t_peer = _peer_graham(paths, args.size)
        except ImportError:
            t_peer = None
        cache_mb = sum(f.stat().st_size for f in cache.rglob("*.png")) / 2**20
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    res = {
        "schema": 1,
        "benchmark": "data",
        "source": source,
        "n_images": n,
        "size": args.size,
        "batch": args.batch,
        "torch_threads": torch.get_num_threads(),
        "loader_workers": args.workers,
        "images_per_s": {
            "cold": n / t_cold,
            "cached": n / t_cached,
            f"cached_loader_{args.workers}_workers": n / t_loader,
            "peer_opencv_graham_original": (n / t_peer) if t_peer else None,
        },
        "seconds": {"cold": t_cold, "cached": t_cached, "cached_loader": t_loader,
                    "peer": t_peer},
        "speedup_cached_vs_cold": t_cold / t_cached,
        "ratio_cold_vs_peer": (t_peer / t_cold) if t_peer else None,
        "ratio_cached_vs_peer": (t_peer / t_cached) if t_peer else None,
        "cache_mb": cache_mb,
        "load_average_1_5_15min_at_end": list(os.getloadavg()),
        "env": {"torch": torch.__version__, "python": platform.python_version(),
                "machine": platform.machine(), "cpu_count": os.cpu_count(), "device": "cpu"},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    ips = res["images_per_s"]
    md = [f"# Data stage throughput ({source}, {n} images, {args.size} px, CPU, "
          f"{res['torch_threads']} torch threads)", "",
          "| pass | images/s | seconds |", "|---|---:|---:|",
          f"| cold: decode + geometry + crop (+ cache write) + Graham | {ips['cold']:.1f} | {t_cold:.2f} |",
          f"| cached: crop from disk cache + Graham | {ips['cached']:.1f} | {t_cached:.2f} |",
          f"| cached through make_loader, {args.workers} workers | "
          f"{ips[f'cached_loader_{args.workers}_workers']:.1f} | {t_loader:.2f} |"]
    if t_peer:
        md.append(f"| peer: Graham's original OpenCV preprocessing, per image | "
                  f"{ips['peer_opencv_graham_original']:.1f} | {t_peer:.2f} |")
    md += ["", f"Cached is {res['speedup_cached_vs_cold']:.2f}x the cold pass; cache "
               f"{cache_mb:.1f} MiB for {n} crops."]
    if t_peer:
        md.append(f"Cold pass at {res['ratio_cold_vs_peer']:.2f}x and cached pass at "
                  f"{res['ratio_cached_vs_peer']:.2f}x the peer's speed (same run, same images).")
    md.append("")
    md.append(f"torch {torch.__version__}, Python {platform.python_version()}, "
              f"{os.cpu_count()} CPUs shared with other jobs (load average at the end "
              f"{os.getloadavg()[0]:.1f}): absolute numbers vary run to run; the ratios are "
              f"from one run on the same images.")
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
