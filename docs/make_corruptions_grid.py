"""Make docs/img/corruptions_grid.png and corruptions_grid_preprocessed.png: the severity grid
of the four fundus corruptions on one real photograph of fundus-real (Rahim 2025, academic use
with attribution), falling back to a synthetic image when the folder is absent.

Usage: .venv/bin/python docs/make_corruptions_grid.py [--image PATH] [--size 192]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from robustbench_fundus.corruptions import FUNDUS_CORRUPTIONS
from robustbench_fundus.corruptions.grid import save_grid, severity_grid

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "fundus-real" / "images" / "Patient001_L.jpg"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", default=str(REAL))
    ap.add_argument("--size", type=int, default=192)
    args = ap.parse_args()
    img_path = Path(args.image)
    if img_path.is_file():
        from robustbench_fundus.data.io import load_image
        img, label = load_image(img_path), f"{img_path.name} (fundus-real, Rahim 2025)"
    else:
        from robustbench_fundus.data.synth import make_synthetic
        img, label = make_synthetic(1, 512, seed=0).images[0], "synthetic image"
    cols = [f"severity {s}" for s in range(5)]
    for pre, suffix in ((False, ""), (True, "_preprocessed")):
        grid = severity_grid(img, FUNDUS_CORRUPTIONS, size=args.size, preprocessed=pre, seed=0)
        title = label + (", after Graham preprocessing" if pre else ", raw")
        out = save_grid(grid, ROOT / "docs" / "img" / f"corruptions_grid{suffix}.png",
                        list(FUNDUS_CORRUPTIONS), cols, title=title, dpi=80)
        print("wrote", out)


if __name__ == "__main__":
    main()
