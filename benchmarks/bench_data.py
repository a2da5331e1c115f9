"""Data-stage throughput: decode + geometry + crop + Graham, cold and cached, against Graham's
original OpenCV preprocessing on the same images, in one run.

Passes (images/s; every timed pass is repeated ``--rounds`` times, interleaved with the others,
and the median is reported; each ratio is the median of the per-round ratios):

  cold      empty crop cache (a fresh folder each round): read + JPEG decode (at a DCT-domain
            reduction where the crop allows it) + geometry + crop + the crop's geometry + cache
            write, then Graham on batches (the crops' geometry rebuilt from what the loader
            returns with them, as the benchmark does)
  cached    the same pass from the on-disk cache (no decode, no geometry estimate), then Graham
  graham    Graham alone on the batches of cached crops already in memory (the rebuild of their
            stored geometry included)
  loader    the cached pass through FundusDataset + make_loader with worker processes (once)
  peer      Ben Graham's Kaggle 2015 code in OpenCV, per image (cv2.imread, radius from the
            middle row, resize, GaussianBlur, addWeighted, circle mask)

On original-size photographs (``--originals`` of the real ones upscaled with PIL, bicubic, to
3872x2592, the size the camera wrote, and re-encoded at JPEG quality 92 in a temporary folder):
the cold pass with draft decoding (the default) and with full decoding, and the peer. The
upscaled files are smoother than real originals; they have the size and the encoding cost.

Also: how far the fast Graham (banded, decimated blur) is from its direct definition
(``graham_direct``: two exact 1-D convolutions at every pixel), inside the mask, in 8-bit levels,
on the cached crops at 224 and 512 px; and how much draft decoding changes the cached crops against full decoding (max and mean
absolute difference in 8-bit levels, at 224 and 512 px), on the originals and on the real files.

Uses ../shared/data/fundus-real when present (or $RBF_REAL_DATA), else synthetic images.
Writes benchmarks/results/data.json and data.md (``--out``). Nothing here is asserted.

    .venv/bin/python benchmarks/bench_data.py [--n 120] [--size 512] [--batch 16] [--rounds 5]
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from robustbench_fundus.data import (FundusDataset, Geometry, Record, graham, make_loader,
                                     read_records)
from robustbench_fundus.preprocessing import RIM_FRACTION, graham_direct

cache_mod = importlib.import_module("robustbench_fundus.data.cache")
load_entry = cache_mod.load_entry

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
REAL = Path(os.environ.get("RBF_REAL_DATA", REPO.parent / "shared" / "data" / "fundus-real"))
ORIGINAL_SIZE = (3872, 2592)


def _synthetic_paths(n: int, out: Path) -> list[Path]:
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    ys, xs = np.mgrid[0:512, 0:765]
    paths = []
    for i in range(n):
        rng = np.random.default_rng(i)
        d = np.hypot(xs - 382 - rng.uniform(-20, 20), ys - 256) / 300
        img = (np.array([220, 110, 50]) * (1 - 0.4 * d[..., None] ** 2)
               + rng.normal(0, 8, (512, 765, 3))) * (d[..., None] <= 1)
        p = out / f"{i}_left.jpeg"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(p, quality=92)
        paths.append(p)
    return paths


def _make_originals(paths: list[Path], out: Path) -> list[Path]:
    """The photographs upscaled to the camera's size and re-encoded (JPEG quality 92)."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    made = []
    for p in paths:
        q = out / f"{p.stem}_3872.jpg"
        with Image.open(p) as im:
            im.convert("RGB").resize(ORIGINAL_SIZE, Image.BICUBIC).save(q, quality=92)
        made.append(q)
    return made


def _graham_batch(u8: torch.Tensor, params: torch.Tensor) -> None:
    """What the benchmark's pipeline does with a loaded batch before the model: the crops in
    [0,1], their geometry rebuilt from the stored parameters, Graham."""
    x = u8.float().div_(255)
    graham(x, Geometry.from_params(params, *x.shape[-2:]))


def _pipeline(paths, size, cache_dir, batch) -> float:
    """load_entry (cold or cached) for every path, Graham per batch; seconds."""
    t = time.perf_counter()
    crops: list[torch.Tensor] = []
    params: list[torch.Tensor] = []
    for p in paths:
        c, g, _ = load_entry(p, size, cache_dir=cache_dir)
        crops.append(c)
        params.append(g)
        if len(crops) == batch:
            _graham_batch(torch.stack(crops), torch.stack(params))
            crops, params = [], []
    if crops:
        _graham_batch(torch.stack(crops), torch.stack(params))
    return time.perf_counter() - t


def _graham_only(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    t = time.perf_counter()
    for u8, params in batches:
        _graham_batch(u8, params)
    return time.perf_counter() - t


def _loader_pass(paths, size, cache_dir, batch, workers) -> float:
    records = [Record(image_id=p.stem, path=p, label=0, subject=p.stem) for p in paths]
    ds = FundusDataset(records, size=size, cache_dir=cache_dir)
    t = time.perf_counter()
    for b in make_loader(ds, batch_size=batch, num_workers=workers):
        _graham_batch(b["image"], b["geometry"])
    return time.perf_counter() - t


def _peer_graham(paths, size) -> float:
    """Ben Graham's Kaggle 2015 preprocessing (scale radius to size/2, blur, add weighted, mask)."""
    import cv2

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


@contextlib.contextmanager
def _draft(on: bool):
    old = cache_mod.DRAFT_DECODING
    cache_mod.DRAFT_DECODING = on
    try:
        yield
    finally:
        cache_mod.DRAFT_DECODING = old


def _rounds(passes: dict, rounds: int) -> dict[str, list[float]]:
    """Run each pass once per round, the order rotating each round; seconds per pass."""
    names = list(passes)
    out: dict[str, list[float]] = {k: [] for k in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for k in order:
            out[k].append(passes[k](r))
    return out


def _summary(sec: dict[str, list[float]], n: int, ratios: dict[str, tuple[str, str]]) -> dict:
    ips = {k: n / statistics.median(v) for k, v in sec.items()}
    rat = {}
    for name, (a, b) in ratios.items():
        per = [sb / sa for sa, sb in zip(sec[a], sec[b])]   # speed of a relative to b
        rat[name] = {"median": statistics.median(per), "min": min(per), "max": max(per)}
    return {"images_per_s": ips, "seconds": sec, "ratios": rat}


def _crop_diff(paths, size, tmp: Path) -> dict:
    """Crops with draft decoding against full decoding: |difference| in 8-bit levels."""
    diffs, reductions = [], []
    for p in paths:
        data = p.read_bytes()
        with _draft(True):
            img, _, r = cache_mod.decode_for_crop(data, size)
            a = cache_mod.working_crop(img, size)
        with _draft(False):
            img, _, _ = cache_mod.decode_for_crop(data, size)
            b = cache_mod.working_crop(img, size)
        diffs.append((a.int() - b.int()).abs())
        reductions.append(r)
    d = torch.stack(diffs).float()
    return {"size": size, "n_images": len(paths), "reductions": sorted(set(reductions)),
            "max_levels": float(d.max()), "mean_levels": float(d.mean()),
            "p999_levels": float(d.flatten().kthvalue(max(1, int(d.numel() * 0.999))).values)}


def _graham_vs_direct(paths, size, cache_dir) -> dict:
    """|fast Graham - graham_direct| in 8-bit levels inside 0.9 R (outside both are grey)."""
    got = [load_entry(p, size, cache_dir=cache_dir) for p in paths]
    x = torch.stack([c for c, _, _ in got]).float().div_(255)
    g = Geometry.from_params(torch.stack([q for _, q, _ in got]), size, size)
    d = (graham(x, g) - graham_direct(x, g)).abs().mul_(255)
    inside = (g.distance() <= RIM_FRACTION).expand_as(d)
    v = d[inside]
    return {"size": size, "n_images": len(paths), "max_levels": float(v.max()),
            "mean_levels": float(v.mean()),
            "p999_levels": float(v.kthvalue(max(1, int(v.numel() * 0.999))).values),
            "outside_max_levels": float(d[~inside].max()) if (~inside).any() else 0.0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=120, help="real photographs (765x512)")
    ap.add_argument("--originals", type=int, default=24, help="original-size photographs made")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch and OpenCV threads (default: torch's default)")
    ap.add_argument("--out", default=str(HERE / "results" / "data"))
    args = ap.parse_args(argv)

    import cv2

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    cv2.setNumThreads(threads)
    tmp = Path(tempfile.mkdtemp(prefix="rbf-bench-data-"))
    load = {"start": list(os.getloadavg())}
    try:
        if (REAL / "labels.csv").is_file():
            paths = [r.path for r in read_records(REAL).records[: args.n]]
            source = f"fundus-real ({REAL.name}, 765x512 JPEG)"
        else:
            paths = _synthetic_paths(args.n, tmp / "synth")
            source = "synthetic (765x512 JPEG)"
        n = len(paths)
        for p in paths:   # warm the OS file cache: "cold" means an empty crop cache only
            p.read_bytes()
        warm = tmp / "warm"
        _pipeline(paths[:4], args.size, warm, args.batch)
        _peer_graham(paths[:4], args.size)
        cached_dir = tmp / "cached"
        _pipeline(paths, args.size, cached_dir, args.batch)   # fill the cache once
        batches = []
        for i in range(0, n, args.batch):
            got = [load_entry(p, args.size, cache_dir=cached_dir) for p in paths[i:i + args.batch]]
            batches.append((torch.stack([c for c, _, _ in got]),
                            torch.stack([g for _, g, _ in got])))
        real = _rounds({
            "cold": lambda r: _pipeline(paths, args.size, tmp / f"cold{r}", args.batch),
            "cached": lambda r: _pipeline(paths, args.size, cached_dir, args.batch),
            "graham": lambda r: _graham_only(batches),
            "peer": lambda r: _peer_graham(paths, args.size),
        }, args.rounds)
        load["after_real"] = list(os.getloadavg())
        t_loader = _loader_pass(paths, args.size, cached_dir, args.batch, args.workers)
        cache_files = list(cached_dir.rglob(f"*.{cache_mod.cache_format()}"))
        cache_mb = sum(f.stat().st_size for f in cache_files) / 2**20

        originals = _make_originals(paths[: args.originals], tmp / "originals")
        no = len(originals)
        for p in originals:
            p.read_bytes()
        orig = _rounds({
            "cold_draft": lambda r: _pipeline(originals, args.size, tmp / f"od{r}", args.batch),
            "cold_full": lambda r: _with_full(originals, args.size, tmp / f"of{r}", args.batch),
            "peer": lambda r: _peer_graham(originals, args.size),
        }, max(3, args.rounds - 2))
        load["after_originals"] = list(os.getloadavg())
        exact = [_graham_vs_direct(paths[:24], s, tmp / f"exact{s}") for s in (224, 512)]
        diffs = {"originals": [_crop_diff(originals, s, tmp) for s in (224, 512)],
                 "real": [_crop_diff(paths[:24], s, tmp) for s in (224, 512)]}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    res = {
        "schema": 3,
        "benchmark": "data",
        "source": source,
        "n_images": n,
        "n_originals": no,
        "original_size": list(ORIGINAL_SIZE),
        "size": args.size,
        "batch": args.batch,
        "rounds": args.rounds,
        "threads": threads,
        "loader_workers": args.workers,
        "cache_format": cache_mod.cache_format(),
        "cache_version": cache_mod.CACHE_VERSION,
        "real": _summary(real, n, {"cold_vs_peer": ("cold", "peer"),
                                   "cached_vs_peer": ("cached", "peer"),
                                   "graham_vs_peer": ("graham", "peer"),
                                   "cached_vs_cold": ("cached", "cold")}),
        "loader": {"images_per_s": n / t_loader, "seconds": t_loader, "workers": args.workers},
        "originals": _summary(orig, no, {"draft_vs_full": ("cold_draft", "cold_full"),
                                         "cold_draft_vs_peer": ("cold_draft", "peer"),
                                         "cold_full_vs_peer": ("cold_full", "peer")}),
        "draft_crop_difference": diffs,
        "graham_vs_direct": exact,
        "cache_mb": cache_mb,
        "load_average_1_5_15min": load,
        "env": {"torch": torch.__version__, "opencv": cv2.__version__,
                "python": platform.python_version(), "machine": platform.machine(),
                "cpu_count": os.cpu_count(), "device": "cpu"},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    md = _markdown(res)
    out.with_suffix(".md").write_text(md)
    print(md, end="")
    return 0


def _with_full(paths, size, cache_dir, batch) -> float:
    with _draft(False):
        return _pipeline(paths, size, cache_dir, batch)


def _markdown(res: dict) -> str:
    r, o = res["real"], res["originals"]
    ips, rat = r["images_per_s"], r["ratios"]
    med = lambda v: statistics.median(v)  # noqa: E731
    la = res["load_average_1_5_15min"]
    L = [f"# Data stage throughput ({res['source']}, {res['n_images']} images, {res['size']} px, "
         f"CPU, {res['threads']} threads, batch {res['batch']})", "",
         f"Median of {res['rounds']} interleaved rounds; ratios are medians of the per-round "
         f"ratios (min-max in brackets). Load average (1 min) at the start "
         f"{la['start'][0]:.1f}, after the real-photograph rounds {la['after_real'][0]:.1f}, "
         f"after the originals {la['after_originals'][0]:.1f} on {res['env']['cpu_count']} CPUs "
         f"shared with other jobs.", "",
         "| pass | images/s | seconds | vs peer |", "|---|---:|---:|---:|"]
    rows = [("cold: decode + geometry + crop + cache write + Graham", "cold", "cold_vs_peer"),
            ("cached: crop from the disk cache + Graham", "cached", "cached_vs_peer"),
            ("Graham alone (crops in memory, stored geometry rebuilt)", "graham", "graham_vs_peer"),
            ("peer: Graham's original OpenCV code, per image", "peer", None)]
    for label, k, rk in rows:
        q = rat[rk] if rk else None
        vs = f"{q['median']:.2f}x [{q['min']:.2f}-{q['max']:.2f}]" if q else "1"
        L.append(f"| {label} | {ips[k]:.1f} | {med(r['seconds'][k]):.2f} | {vs} |")
    ld = res["loader"]
    L += [f"| cached through make_loader, {ld['workers']} workers (once) | "
          f"{ld['images_per_s']:.1f} | {ld['seconds']:.2f} | |", "",
          f"Cached is {rat['cached_vs_cold']['median']:.2f}x the cold pass. Cache: "
          f"{res['cache_format']} entries (version {res['cache_version']}), "
          f"{res['cache_mb']:.1f} MiB for {res['n_images']} crops.", "",
          f"## Original-size photographs ({res['n_originals']} of them upscaled to "
          f"{res['original_size'][0]}x{res['original_size'][1]}, JPEG quality 92)", "",
          "| cold pass | images/s | seconds | vs peer |", "|---|---:|---:|---:|"]
    oi, orat = o["images_per_s"], o["ratios"]
    for label, k, rk in (("draft decoding (default)", "cold_draft", "cold_draft_vs_peer"),
                         ("full decoding", "cold_full", "cold_full_vs_peer"),
                         ("peer: Graham's original OpenCV code", "peer", None)):
        q = orat[rk] if rk else None
        vs = f"{q['median']:.2f}x [{q['min']:.2f}-{q['max']:.2f}]" if q else "1"
        L.append(f"| {label} | {oi[k]:.1f} | {med(o['seconds'][k]):.2f} | {vs} |")
    d = orat["draft_vs_full"]
    L += ["", f"Draft decoding makes the cold pass on originals {d['median']:.2f}x "
              f"[{d['min']:.2f}-{d['max']:.2f}] as fast as full decoding.", "",
          "## Crops from draft decoding against full decoding (8-bit levels)", "",
          "| photographs | working size | reduction | max | mean | 99.9th percentile |",
          "|---|---:|---|---:|---:|---:|"]
    for key, label in (("originals", "originals 3872x2592"), ("real", "real 765x512")):
        for e in res["draft_crop_difference"][key]:
            red = ", ".join(f"1/{x}" for x in e["reductions"])
            L.append(f"| {label} ({e['n_images']}) | {e['size']} | {red} | {e['max_levels']:.0f} "
                     f"| {e['mean_levels']:.3f} | {e['p999_levels']:.0f} |")
    L += ["", "## Graham (banded, decimated blur) against its direct definition (8-bit levels)", "",
          "Inside 0.9 R, on the cached crops of the real photographs; outside it both are grey "
          "0.5.", "",
          "| working size | images | max | mean | 99.9th percentile | max outside |",
          "|---:|---:|---:|---:|---:|---:|"]
    for e in res["graham_vs_direct"]:
        L.append(f"| {e['size']} | {e['n_images']} | {e['max_levels']:.3f} | "
                 f"{e['mean_levels']:.4f} | {e['p999_levels']:.3f} | "
                 f"{e['outside_max_levels']:.0f} |")
    env = res["env"]
    L += ["", f"torch {env['torch']}, OpenCV {env['opencv']}, Python {env['python']}, "
              f"{env['machine']}; absolute numbers vary with the load, the ratios are from the "
              f"same rounds on the same images.", ""]
    return "\n".join(L)


if __name__ == "__main__":
    sys.exit(main())
