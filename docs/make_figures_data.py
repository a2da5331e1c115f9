"""Make docs/img/graham.png: a real photograph before and after Graham preprocessing.

Reads ../shared/data/fundus-real (or $RBF_REAL_DATA); the figure is derived and small (panels
256 px high). Photograph: Rahim S. S., Retinal Fundus Image Dataset for Diabetic Retinopathy
Detection, 2025, github.com/SRahimDR/DR-image-dataset (academic use with attribution).

    .venv/bin/python docs/make_figures_data.py [IMAGE_NAME]
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from robustbench_fundus.data import (crop_resize, estimate_geometry, graham, load_image,  # noqa: E402
                                     read_records)

REPO = Path(__file__).resolve().parents[1]
REAL = Path(os.environ.get("RBF_REAL_DATA", REPO.parent / "shared" / "data" / "fundus-real"))
OUT = REPO / "docs" / "img" / "graham.png"


def main(argv: list[str]) -> int:
    rs = read_records(REAL)
    want = argv[0] if argv else None
    rec = next(r for r in rs.records if (want is None and r.label == 2) or r.image_id == want)
    img = load_image(rec.path)[None].float() / 255
    geom = estimate_geometry(img)
    crop = crop_resize(img, geom, 256)
    enhanced = graham(crop, estimate_geometry(crop))
    small = torch.nn.functional.interpolate(img, size=(256, round(256 * img.shape[3] / img.shape[2])),
                                            mode="bilinear", antialias=True, align_corners=False)
    fig, axes = plt.subplots(1, 3, figsize=(10.2, 3.0), dpi=100,
                             gridspec_kw={"width_ratios": [small.shape[3] / 256, 1, 1]})
    cx, cy = geom.center[0].tolist()
    s = 256 / img.shape[2]
    r = geom.radius.item() * s
    axes[0].imshow(small[0].permute(1, 2, 0).clamp(0, 1).numpy())
    axes[0].add_patch(plt.Circle(((cx + 0.5) * s - 0.5, (cy + 0.5) * s - 0.5), r, fill=False,
                                 color="cyan", lw=1, ls="--"))
    axes[0].set_title(f"photograph (grade {rec.label}), estimated disc", fontsize=9)
    axes[1].imshow(crop[0].permute(1, 2, 0).numpy())
    axes[1].set_title("working-size crop (radius = S/2)", fontsize=9)
    axes[2].imshow(enhanced[0].permute(1, 2, 0).numpy())
    axes[2].set_title("Graham: 4(x - blur) + 0.5, grey outside 0.9R", fontsize=9)
    for a in axes:
        a.set_axis_off()
    fig.text(0.5, 0.01, f"{rec.image_id}, fundus-real (Rahim 2025, "
             "github.com/SRahimDR/DR-image-dataset; academic use with attribution)",
             ha="center", fontsize=7, color="0.3")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT)
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
