"""Make docs/img/synthetic_grid.png: synthetic fundus photographs by grade, with lesion masks.

Columns are grades 0-4; rows 1-3 are three different eyes (indices 0, 1, 2 of seed 2026, each
rendered at every grade with the ``grades=`` override, so a row is one eye with more and more
lesions); row 4 shows row 1's lesion mask in cyan over the image. Rendered at 512 px, shown at
200 px per panel.

    .venv/bin/python docs/make_figures_synth.py
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from robustbench_fundus.data.synth import make_synthetic  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "img" / "synthetic_grid.png"
SEED, SIZE, SHOW = 2026, 512, 200
NAMES = ["0 no DR", "1 mild", "2 moderate", "3 severe NPDR", "4 proliferative"]


def _small(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x.float()[None], size=(SHOW, SHOW), mode="bilinear", antialias=True,
                         align_corners=False)[0]


def main() -> int:
    torch.set_num_threads(1)
    rows = []
    for idx in range(3):
        b = [make_synthetic(1, SIZE, seed=SEED, start=idx, grades=[g]) for g in range(5)]
        rows.append(b)
    fig, axes = plt.subplots(4, 5, figsize=(5 * 2.1, 4 * 2.1 + 0.3), dpi=100)
    for r in range(4):
        for g in range(5):
            ax = axes[r, g]
            b = rows[min(r, 2)][g] if r < 3 else rows[0][g]
            img = _small(b.images[0]) / 255
            if r == 3:  # lesion mask overlay, cyan
                m = _small(b.lesion_masks[0].float())[0].clamp(0, 1)
                img = img * (1 - m) + torch.tensor([0.0, 1.0, 1.0]).view(3, 1, 1) * m
            ax.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            for sp in ax.spines.values():
                sp.set_visible(False)
            if r == 0:
                ax.set_title(f"grade {NAMES[g]}", fontsize=10)
            if g == 0:
                ax.set_ylabel("lesion mask (eye 1)" if r == 3 else f"eye {r + 1}", fontsize=9)
    fig.suptitle(f"Synthetic fundus photographs (robustbench_fundus.data.synth, seed {SEED}, "
                 f"{SIZE} px): each row one eye at grades 0-4", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, facecolor="white")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
