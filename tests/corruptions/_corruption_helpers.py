"""Small procedural fundus-like test images (fast; any size; discs cut by the frame or not)."""
from __future__ import annotations

import torch

from robustbench_fundus.seeding import torch_generator


def fundus_like(n: int, H: int, W: int | None = None, seed: int = 0, cut: bool = False,
                quantised: bool = True) -> torch.Tensor:
    """(n,3,H,W) float [0,1]: a textured orange disc on black, per-image random radius/centre.
    ``cut``: the disc is taller than the frame (cut at the top and bottom, as in fundus-real)."""
    W = W or H
    out = torch.zeros(n, 3, H, W)
    ys = torch.arange(H, dtype=torch.float32).view(H, 1)
    xs = torch.arange(W, dtype=torch.float32).view(1, W)
    for i in range(n):
        g = torch_generator("fundus_like", seed, i)
        u = torch.rand(8, generator=g)
        R = 0.56 * H if cut else (0.40 + 0.08 * float(u[0])) * min(H, W)
        R = min(R, W / 2 - 1)
        cx = (W - 1) / 2 + (float(u[1]) - 0.5) * 0.1 * (W / 2 - R)
        cy = (H - 1) / 2 + (float(u[2]) - 0.5) * 0.1 * max(H / 2 - R, 0)
        d = ((xs - cx) ** 2 + (ys - cy) ** 2).sqrt() / R
        colour = torch.tensor([0.55 + 0.3 * float(u[3]), 0.25 + 0.15 * float(u[4]),
                               0.08 + 0.1 * float(u[5])]).view(3, 1, 1)
        tex = torch.nn.functional.avg_pool2d(torch.rand(1, 3, H, W, generator=g), 5, 1, 2)[0]
        img = colour * (1.0 - 0.4 * d ** 2) + 0.25 * (tex - 0.5)
        # a bright "optic disc"
        od = ((xs - cx - 0.45 * R) ** 2 + (ys - cy) ** 2).sqrt() / (0.15 * R)
        img = img + 0.35 * (od < 1).float()
        out[i] = img.clamp(0, 1) * (d <= 1).float()
    if quantised:
        out = torch.round(out * 255) / 255
    return out
