"""Training augmentation: flips, rotation, scale, brightness and contrast, batched in torch.

Works on the working-size crop as float in [0, 1] (B, 3, S, S), *before* any corruption and before
Graham preprocessing (so the augmented photograph is what the corruption and the preprocessing see,
as at test time). Every random value is drawn per sample from a generator keyed by
``(seed, "augment", epoch, draw)`` (:func:`robustbench_fundus.seeding.per_sample_uniform`), where
``draw`` is the sample's position in the epoch's order: no global random state is touched, a sample
gets the same augmentation whatever batch it sits in and on whatever device, and a resumed run
repeats exactly the draws of an uninterrupted one.

The geometric part is one ``affine_grid``/``grid_sample`` per batch (rotation about the image
centre, where ``crop_resize`` puts the fundus centre, isotropic scale, flips) with zero (black)
padding, so the surround stays black. The photometric part scales brightness and stretches contrast
about each image's mean inside the fundus, then re-applies the fundus mask so the black surround
stays black (the geometry estimate downstream relies on it).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..seeding import per_sample_uniform

# Pixels whose brightest channel is below this are treated as surround for the photometric part.
_SURROUND = 0.02


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the training augmentation (the reference study's flips, geometric transforms,
    brightness and contrast). Set a range to 0 (or a probability to 0) to switch a part off."""

    hflip: float = 0.5            # probability of a horizontal flip
    vflip: float = 0.5            # probability of a vertical flip
    rotation: float = 180.0       # max |angle| in degrees (fundus photographs have no "up")
    scale: tuple[float, float] = (0.9, 1.1)   # isotropic zoom range
    brightness: float = 0.2       # multiplicative factor in [1 - b, 1 + b]
    contrast: float = 0.2         # contrast factor in [1 - c, 1 + c] about the fundus mean

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scale"] = list(self.scale)
        return d

    @classmethod
    def none(cls) -> "AugmentConfig":
        return cls(hflip=0.0, vflip=0.0, rotation=0.0, scale=(1.0, 1.0), brightness=0.0,
                   contrast=0.0)


def augment_batch(x: torch.Tensor, draws: torch.Tensor | list[int], *, seed: int, epoch: int,
                  config: AugmentConfig | None = None) -> torch.Tensor:
    """Augment a batch ``x`` (B, 3, H, W) float in [0, 1]; returns the same shape, in [0, 1].

    ``draws``: one integer per sample (its position in the epoch's order), keying its random draws
    together with ``seed`` and ``epoch``.
    """
    cfg = config or AugmentConfig()
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"augment_batch expects (B, 3, H, W), got {tuple(x.shape)}")
    B = x.shape[0]
    if B == 0:
        return x
    u = per_sample_uniform(seed, f"augment/{epoch}", draws, 6, device=x.device)  # (B,6) float32
    dt = x.dtype
    x = x.float()

    # -- geometric: output pixel p samples input at A p (normalised coords, centre origin) ---------
    angle = (2.0 * u[:, 0] - 1.0) * math.radians(cfg.rotation)
    lo, hi = cfg.scale
    scale = lo + (hi - lo) * u[:, 1]
    fx = torch.where(u[:, 2] < cfg.hflip, -1.0, 1.0)
    fy = torch.where(u[:, 3] < cfg.vflip, -1.0, 1.0)
    if cfg.rotation > 0 or lo != 1.0 or hi != 1.0 or cfg.hflip > 0 or cfg.vflip > 0:
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.zeros(B, 2, 3, device=x.device, dtype=torch.float32)
        theta[:, 0, 0] = cos * fx
        theta[:, 0, 1] = -sin * fy
        theta[:, 1, 0] = sin * fx
        theta[:, 1, 1] = cos * fy
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    # -- photometric, inside the fundus only -------------------------------------------------------
    if cfg.brightness > 0 or cfg.contrast > 0:
        mask = (x.amax(dim=1, keepdim=True) > _SURROUND).to(x.dtype)
        b = (1.0 + (2.0 * u[:, 4] - 1.0) * cfg.brightness).view(B, 1, 1, 1)
        c = (1.0 + (2.0 * u[:, 5] - 1.0) * cfg.contrast).view(B, 1, 1, 1)
        area = mask.sum(dim=(2, 3), keepdim=True).clamp_min(1.0)
        mean = (x * mask).sum(dim=(2, 3), keepdim=True) / area  # per channel
        x = ((x - mean) * c + mean) * b
        x = x.clamp(0.0, 1.0) * mask
    return x.clamp(0.0, 1.0).to(dt)
