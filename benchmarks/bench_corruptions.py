"""Throughput of our four fundus corruptions beside imagecorruptions-imaug, same run, same CPU.

Ours: batched torch, batch 32 at 512x512. Peer: imagecorruptions' motion_blur, brightness and
contrast, one uint8 HWC image at a time (its API). Both at severity 4 (the headline level).
Writes benchmarks/results/corruptions.json and .md with images/s and the ratios

    motion_blur (ours) / motion_blur (peer)        target >= 2
    light_leakage, under/over_exposure (ours) / brightness (peer)   target >= 10

Usage: .venv/bin/python benchmarks/bench_corruptions.py [--threads 2] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
SIZE, BATCH, SEVERITY = 512, 32, 4


def fundus_batch(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Synthetic fundus photographs (the project's generator when present, else a smooth
    orange disc with texture and vessels-like streaks), float [0,1] at 8-bit levels."""
    try:
        from robustbench_fundus.data.synth import make_synthetic
        return make_synthetic(n, size, seed=seed).images.float() / 255.0
    except Exception:
        g = torch.Generator().manual_seed(seed)
        yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        c = (size - 1) / 2
        d = ((xx - c) ** 2 + (yy - c) ** 2).sqrt() / (size / 2)
        base = torch.tensor([0.75, 0.38, 0.15]).view(1, 3, 1, 1) * (1 - 0.35 * d ** 2)
        tex = torch.nn.functional.avg_pool2d(torch.rand(n, 3, size, size, generator=g), 9, 1, 4)
        vessels = (torch.sin(xx / 7.0 + yy / 23.0) > 0.97).float() * 0.2
        x = (base + 0.15 * (tex - 0.5) - vessels).clamp(0, 1) * (d <= 1)
        return torch.round(x * 255) / 255


def time_call(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peer-images", type=int, default=8)
    ap.add_argument("--out", default=str(HERE / "results" / "corruptions"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from imagecorruptions import corrupt
    import imagecorruptions

    from robustbench_fundus.corruptions import FUNDUS_CORRUPTIONS, get_corruption
    from robustbench_fundus.data.geometry import estimate_geometry

    x = fundus_batch(BATCH, SIZE)
    geom = estimate_geometry(x)
    ids = torch.arange(BATCH)
    ours = {}
    for name in FUNDUS_CORRUPTIONS:
        c = get_corruption(name)
        # geometry is given (computed once per clean image, as the evaluation pipeline does);
        # the time with geometry estimated inside the call is reported too
        t = time_call(lambda: c(x, SEVERITY, sample_ids=ids, geom=geom), args.repeats)
        t_geo = time_call(lambda: c(x, SEVERITY, sample_ids=ids), args.repeats)
        ours[name] = {"images_per_s": BATCH / t, "ms_per_image": 1000 * t / BATCH,
                      "images_per_s_with_geometry": BATCH / t_geo}
        print(f"ours {name:15s} {BATCH / t:8.1f} img/s  ({BATCH / t_geo:.1f} with geometry)")

    imgs = (x[: args.peer_images] * 255).round().byte().permute(0, 2, 3, 1).numpy()
    peer = {}
    for name in ("motion_blur", "brightness", "contrast"):
        def run():
            state = np.random.get_state()
            np.random.seed(0)
            for im in imgs:
                corrupt(im, severity=SEVERITY, corruption_name=name)
            np.random.set_state(state)
        t = time_call(run, args.repeats)
        n = len(imgs)
        peer[name] = {"images_per_s": n / t, "ms_per_image": 1000 * t / n}
        print(f"peer {name:15s} {n / t:8.1f} img/s")

    ratios = {
        "motion_blur / peer motion_blur": ours["motion_blur"]["images_per_s"] / peer["motion_blur"]["images_per_s"],
        "light_leakage / peer brightness": ours["light_leakage"]["images_per_s"] / peer["brightness"]["images_per_s"],
        "under_exposure / peer brightness": ours["under_exposure"]["images_per_s"] / peer["brightness"]["images_per_s"],
        "over_exposure / peer brightness": ours["over_exposure"]["images_per_s"] / peer["brightness"]["images_per_s"],
        "under_exposure / peer contrast": ours["under_exposure"]["images_per_s"] / peer["contrast"]["images_per_s"],
    }
    targets = {"motion_blur / peer motion_blur": 2.0, "light_leakage / peer brightness": 10.0,
               "under_exposure / peer brightness": 10.0, "over_exposure / peer brightness": 10.0}
    result = {
        "schema": 1, "size": SIZE, "batch": BATCH, "severity": SEVERITY,
        "threads": args.threads, "torch": torch.__version__,
        "imagecorruptions": getattr(imagecorruptions, "__version__", "imagecorruptions-imaug"),
        "machine": platform.processor() or platform.machine(), "device": "cpu",
        "ours": ours, "peer": peer, "ratios": ratios, "targets": targets,
        "met": {k: ratios[k] >= v for k, v in targets.items()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Corruption throughput ({SIZE}x{SIZE}, severity {SEVERITY}, {args.threads} CPU threads)",
             "", "| ours (batch 32) | images/s | ms/image | images/s incl. geometry |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['images_per_s']:.1f} | {v['ms_per_image']:.2f} | "
              f"{v['images_per_s_with_geometry']:.1f} |" for k, v in ours.items()]
    lines += ["", "| imagecorruptions-imaug (per image) | images/s | ms/image |", "|---|---|---|"]
    lines += [f"| {k} | {v['images_per_s']:.1f} | {v['ms_per_image']:.2f} |" for k, v in peer.items()]
    lines += ["", "| ratio (same run) | value | target | met |", "|---|---|---|---|"]
    lines += [f"| {k} | {v:.1f}x | {('>= %gx' % targets[k]) if k in targets else ''} | "
              f"{('yes' if v >= targets[k] else 'NO') if k in targets else ''} |"
              for k, v in ratios.items()]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
