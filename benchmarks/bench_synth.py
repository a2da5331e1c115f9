"""Synthetic-generator throughput (images/s) at 224 and 512 px, 1 and 2 torch threads.

Renders with make_synthetic (tensors only, no files) and with write_synthetic (adds JPEG and PNG
encoding). The peer is the cost of just writing the same images with PIL (JPEG q95 + PNG), in the
same run, so the ratio says how much rendering adds over plain file output.
Writes benchmarks/results/synth.json and synth.md.

    .venv/bin/python benchmarks/bench_synth.py [--n 40]
"""
from __future__ import annotations

import argparse
import io
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from robustbench_fundus.data.synth import make_synthetic, write_synthetic

HERE = Path(__file__).resolve().parent


def _rate(fn, n: int) -> float:
    t = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t)


def _load() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError):
        return None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40)
    args = ap.parse_args()
    n = args.n
    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for size in (224, 512):
            make_synthetic(2, size, seed=99)  # warm up
            c0 = time.process_time()
            render = _rate(lambda: make_synthetic(n, size, seed=1), n)
            render_cpu = n / (time.process_time() - c0)  # ~ the rate on an idle machine
            b = make_synthetic(n, size, seed=1)

            def encode_only():
                for i in range(n):
                    arr = b.images[i].permute(1, 2, 0).contiguous().numpy()
                    Image.fromarray(arr).save(io.BytesIO(), "JPEG", quality=95, subsampling=0)
                    m = b.lesion_masks[i, 0].numpy().astype("uint8") * 255
                    Image.fromarray(m).save(io.BytesIO(), "PNG")

            peer = _rate(encode_only, n)
            with tempfile.TemporaryDirectory() as d:
                write = _rate(lambda: write_synthetic(Path(d) / "s", n, size, seed=1), n)
            rows.append(dict(threads=threads, size=size, n=n, render_img_s=round(render, 1),
                             render_cpu_time_img_s=round(render_cpu, 1),
                             write_img_s=round(write, 1), peer_encode_only_img_s=round(peer, 1),
                             write_over_encode_ratio=round(write / peer, 3)))
            print(rows[-1], flush=True)
    res = dict(benchmark="synth", torch=torch.__version__, platform=platform.platform(),
               load_avg_1min=_load(), rows=rows)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "synth.json").write_text(json.dumps(res, indent=2) + "\n")
    lines = ["# Synthetic generator throughput", "",
             "| threads | size | render img/s | render img/s of CPU time | write img/s | "
             "PIL encode only img/s |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['threads']} | {r['size']} | {r['render_img_s']} | "
              f"{r['render_cpu_time_img_s']} | {r['write_img_s']} | "
              f"{r['peer_encode_only_img_s']} |" for r in rows]
    (HERE / "results" / "synth.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
