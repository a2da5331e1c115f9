"""``rbf synth --out DIR --n N --size S --seed K``: write a Kaggle-layout synthetic data set."""
from __future__ import annotations

import argparse
import time
from collections import Counter

from ..errors import RBFError


def _prior(text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 5 comma-separated weights like 0.73,0.07,0.15,0.025,0.025, got {text!r}")
    if len(vals) != 5:
        raise argparse.ArgumentTypeError(f"expected 5 weights (grades 0-4), got {len(vals)}")
    return vals


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "synth", help="write synthetic fundus photographs with DR lesions (Kaggle layout)",
        description="Render procedural colour fundus photographs (optic disc, macula, vessel "
                    "tree, grade-dependent lesions) and write them in the Kaggle EyePACS layout: "
                    "DIR/trainLabels.csv (image,level), DIR/train/<image>.jpeg and the lesion "
                    "masks DIR/masks/<image>.png. The same arguments give byte-identical files.")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--n", type=int, default=200, help="number of images (default 200)")
    p.add_argument("--size", type=int, default=512, help="image side in pixels (default 512)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--prior", type=_prior, default=None, metavar="P0,P1,P2,P3,P4",
                   help="grade prior weights (default EyePACS: 0.73,0.07,0.15,0.025,0.025)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .synth import EYEPACS_PRIOR, write_synthetic

    if args.n < 1:
        raise RBFError(f"--n must be at least 1, got {args.n}")
    import torch

    # Rendering is many small tensor ops: one intra-op thread is fastest, and far faster on a
    # busy machine (the command owns its process, so it may set this).
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    out = write_synthetic(args.out, args.n, args.size, seed=args.seed,
                          prior=args.prior if args.prior is not None else EYEPACS_PRIOR)
    dt = time.perf_counter() - t0
    with open(out / "trainLabels.csv", encoding="utf-8") as f:
        next(f)
        counts = Counter(line.rsplit(",", 1)[1].strip() for line in f if line.strip())
    per = ", ".join(f"{g}: {counts.get(str(g), 0)}" for g in range(5))
    print(f"wrote {args.n} synthetic images ({args.size} px, seed {args.seed}) to {out} "
          f"in {dt:.1f} s; grades {per}")
    return 0
