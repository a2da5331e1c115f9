"""The 19 ImageNet-C corruptions of ``imagecorruptions-imaug`` (import name ``imagecorruptions``)
behind the same :class:`Corruption` interface, for comparison beside the fundus corruptions.

Registered as ``imagenet_c/<name>`` (e.g. ``imagenet_c/motion_blur``), severities 1-5 as in the
package. They work per image on uint8 HWC NumPy arrays (slow: for comparison, not training), at
the package's own pixel scale (not scaled by the fundus radius). The output follows our
convention: ``M * clip(y)`` at 8-bit levels, severity 0 the identity.

The package is optional (``pip install "robustbench-fundus[imagenet-c]"``; it pulls numba,
llvmlite, OpenCV and scikit-image): this module never imports it at import time, the 19
corruptions are registered and listed without it (``rbf list corruptions`` shows them as not
available), and using one -- its :meth:`~ImageNetCCorruption.identity` (what the benchmark
keys its results by) or applying it -- raises a one-line :class:`RBFError` naming the extra.

Seeding: the package draws from NumPy's *global* random state (and ``glass_blur`` /
``impulse_noise`` from OS entropy unless given a seed). Each image is corrupted with the global
state seeded from (seed, corruption name, sample id) and the caller's global state restored
afterwards, and glass_blur / impulse_noise get that seed explicitly, so results are reproducible,
independent of batch composition, and the caller's random streams are untouched.
"""
from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import RBFError
from ..registry import Extra
from .base import Corruption, fixed

__all__ = ["IMAGENET_C_CORRUPTIONS", "ImageNetCConfig", "ImageNetCCorruption", "PREFIX",
           "IMAGENET_C_EXTRA"]

PREFIX = "imagenet_c/"
IMAGENET_C_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
    "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform",
    "pixelate", "jpeg_compression", "speckle_noise", "gaussian_blur", "spatter", "saturate",
)
_TAKES_SEED = {"glass_blur", "impulse_noise"}
#: The optional package behind these corruptions and the extra that installs it.
IMAGENET_C_EXTRA = Extra(module="imagecorruptions", extra="imagenet-c",
                         dist="imagecorruptions-imaug")
_NP_LOCK = threading.Lock()  # the global NumPy state is process-wide


@dataclass(frozen=True)
class ImageNetCConfig:
    corruption: str = fixed("gaussian_noise", "name in imagecorruptions")
    levels: int = fixed(5, "number of severity levels (the package's 1-5)")

    def __post_init__(self):
        if self.corruption not in IMAGENET_C_CORRUPTIONS:
            raise ValueError(f"unknown ImageNet-C corruption {self.corruption!r}")


class ImageNetCCorruption(Corruption):
    family = "imagenet-c"
    reference = ("Hendrycks & Dietterich, ImageNet-C (ICLR 2019), via imagecorruptions-imaug "
                 "(per image, NumPy)")
    Config = ImageNetCConfig
    package = "imagecorruptions-imaug"
    requires = IMAGENET_C_EXTRA

    def __init__(self, config: ImageNetCConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        self.name = PREFIX + self.config.corruption  # instance attribute, shadows the ClassVar

    @property
    def max_severity(self) -> int:
        return self.config.levels

    def params(self, severity: int) -> dict:
        return {"corruption": self.config.corruption, "severity": severity}

    def identity(self) -> dict:
        """As :meth:`Corruption.identity` (it names the package version that computes the
        images); without the package there is nothing that could produce them: a one-line
        :class:`RBFError` naming the extra, before any image is processed."""
        self.requires.require(f"corruption {self.name}")
        return super().identity()

    def _apply(self, x, severity, geom, draws):
        self.requires.require(f"corruption {self.name}")
        try:
            from imagecorruptions import corrupt
        except ImportError as exc:  # installed, but it (or numba, OpenCV, ...) fails to import
            raise self.requires.missing(f"corruption {self.name}",
                                        f"importing it failed: {exc}") from None
        b, _, H, W = x.shape
        if H < 32 or W < 32:
            raise RBFError(f"{self.name}: images must be at least 32x32 pixels, got {H}x{W}")
        arr = (x.detach().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        sev = severity.cpu().tolist()
        # One 32-bit seed per sample from the base class's per-sample draw (which is keyed by
        # (seed, name, sample id)).
        seeds = (draws[:, 0].double().cpu() * 2 ** 32).long().tolist()
        outs = []
        for i in range(b):
            kwargs = {"seed": int(seeds[i])} if self.config.corruption in _TAKES_SEED else {}
            with _NP_LOCK:
                state = np.random.get_state()
                try:
                    np.random.seed(int(seeds[i]) % (2 ** 32))
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        y = corrupt(np.ascontiguousarray(arr[i]), severity=int(sev[i]),
                                    corruption_name=self.config.corruption, **kwargs)
                finally:
                    np.random.set_state(state)
            y = np.asarray(y, dtype=np.uint8)
            if y.shape[:2] != (H, W):  # a few corruptions may round sizes; crop/pad back
                fixed_y = np.zeros((H, W, 3), dtype=y.dtype)
                hh, ww = min(H, y.shape[0]), min(W, y.shape[1])
                fixed_y[:hh, :ww] = y[:hh, :ww]
                y = fixed_y
            outs.append(torch.from_numpy(np.array(y, dtype=np.uint8, copy=True)))
        out = torch.stack(outs).permute(0, 3, 1, 2).to(device=x.device, dtype=x.dtype) / 255.0
        return out


def make_all() -> list[ImageNetCCorruption]:
    return [ImageNetCCorruption(ImageNetCConfig(corruption=n)) for n in IMAGENET_C_CORRUPTIONS]
