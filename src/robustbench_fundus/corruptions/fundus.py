"""The four fundus acquisition corruptions (docs/corruptions.md), batched in torch.

All spatial parameters are fractions of the fundus radius R (from the clean image's geometry),
so a corruption looks the same at any working size. Nuisance values (halo offset and colour,
blur angle) come from the per-sample draws of the base class and are the same at every severity.
See docs/corruptions.md for the formulas, the parameter ladders and their sources.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import Corruption, fixed, per_severity

__all__ = ["LightLeakage", "MotionBlur", "UnderExposure", "OverExposure",
           "LightLeakageConfig", "MotionBlurConfig", "ExposureConfig", "motion_blur_kernels"]


def _mean_intensity(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(b,) mean of all channels over the fundus mask."""
    m = mask.to(x.dtype)[:, 0]
    return (x.sum(dim=1) * m).sum(dim=(1, 2)) / (m.sum(dim=(1, 2)) * x.shape[1]).clamp_min(1)


# ------------------------------------------------------------------------------------------------
# Light leakage
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LightLeakageConfig:
    amplitude: tuple[float, ...] = per_severity(
        (1.0, 1.5, 2.0, 2.5), "halo strength a, in units of the image's mean intensity mu")
    inner_radius: tuple[float, ...] = per_severity(
        (0.90, 0.85, 0.80, 0.75), "rho: where the halo starts, as a fraction of R")
    softness: tuple[float, ...] = per_severity(
        (0.10, 0.10, 0.10, 0.10), "tau: width of the halo's soft inner edge, fraction of R")
    max_offset: float = fixed(0.25, "halo centre offset from the disc centre: up to this x R")
    colours: tuple[tuple[float, float, float], ...] = fixed(
        ((141 / 255, 238 / 255, 238 / 255), (177 / 255, 195 / 255, 147 / 255)),
        "halo colours k (RGB in [0,1]), one drawn per image")

    def __post_init__(self):
        n = len(self.amplitude)
        if n < 1 or len(self.inner_radius) != n or len(self.softness) != n:
            raise ValueError("amplitude, inner_radius and softness need one value per severity")
        if min(self.softness) <= 0:
            raise ValueError("softness must be positive")


class LightLeakage(Corruption):
    """Stray light at the pupil margin: a coloured glow rising towards the rim of the disc.

    ``y = x + a * mu * Phi((|p - c_h| / R - rho) / tau) * k`` with ``c_h`` the halo centre
    (offset from the disc centre by up to 0.25 R in a random direction), ``mu`` the clean image's
    mean intensity over the mask, ``k`` one of Shen et al.'s two leak colours.
    """

    name = "light_leakage"
    family = "fundus"
    reference = ("Shen et al., Modeling and enhancing low-quality retinal fundus images, "
                 "IEEE TMI 2021 (light-leakage halo and leak_style colours)")
    n_draws = 3  # offset magnitude, offset direction, colour
    Config = LightLeakageConfig

    def _apply(self, x, severity, geom, draws):
        cfg = self.config
        b, _, H, W = x.shape
        dt = x.dtype
        a = self._per_severity(cfg.amplitude, severity, dt)
        rho = self._per_severity(cfg.inner_radius, severity, dt)
        tau = self._per_severity(cfg.softness, severity, dt)
        R = geom.radius.to(dt).clamp_min(1e-6)
        off = draws[:, 0] * cfg.max_offset * R
        phi = draws[:, 1] * (2 * math.pi)
        cx = geom.center[:, 0].to(dt) + off * torch.cos(phi)
        cy = geom.center[:, 1].to(dt) + off * torch.sin(phi)
        colours = torch.tensor(cfg.colours, dtype=dt, device=x.device)  # (n,3)
        k = colours[(draws[:, 2] * len(cfg.colours)).long().clamp_max(len(cfg.colours) - 1)]
        ys = torch.arange(H, device=x.device, dtype=dt).view(1, H, 1)
        xs = torch.arange(W, device=x.device, dtype=dt).view(1, 1, W)
        # Phi(z) = (1 + erf(z / sqrt 2)) / 2 with z = (d/R - rho)/tau, computed in place on one
        # (b,H,W) buffer: erf argument = |p - c_h| * s1 - s0
        s1 = (1.0 / (R * tau * math.sqrt(2.0))).view(b, 1, 1)
        s0 = (rho / (tau * math.sqrt(2.0))).view(b, 1, 1)
        e = ((xs - cx.view(b, 1, 1)) ** 2 + (ys - cy.view(b, 1, 1)) ** 2)   # (b,H,W)
        e.sqrt_().mul_(s1).sub_(s0).erf_().add_(1.0)                         # 2 * Phi(z)
        mu = _mean_intensity(x, geom.mask)
        gain = (0.5 * a * mu).view(b, 1, 1, 1) * k.view(b, 3, 1, 1)
        return torch.addcmul(x, gain, e.unsqueeze(1))


# ------------------------------------------------------------------------------------------------
# Motion blur
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MotionBlurConfig:
    radius: tuple[float, ...] = per_severity(
        (10, 15, 15, 15), "ImageNet-C kernel radius (px at a 224 px disc diameter); the line is "
        "2*radius long")
    sigma: tuple[float, ...] = per_severity(
        (3, 5, 8, 12), "sigma of the one-sided Gaussian weights along the line (px at 224)")
    reference_diameter: float = fixed(224.0, "disc diameter D=2R at which radius/sigma are given")
    angle_range: tuple[float, float] = fixed((0.0, 180.0), "direction of the line, degrees")

    def __post_init__(self):
        if len(self.radius) < 1 or len(self.radius) != len(self.sigma):
            raise ValueError("radius and sigma need one value per severity")


def _line_taps(radius_px: torch.Tensor, sigma_px: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions (b,n) along the line and normalised weights (b,n) of the one-sided Gaussian
    line kernel of ImageNet-C (``2*radius+1`` taps at unit spacing weighted exp(-t^2/2sigma^2)),
    generalised to fractional radii: ``n = ceil(2 r) + 1`` taps evenly spread over [0, 2r]
    (spacing <= 1 px), then recentred on the weights' centroid. Padded taps have weight 0."""
    L = 2.0 * radius_px.double()
    n = (torch.ceil(L) + 1).long()
    nmax = int(n.max())
    j = torch.arange(nmax, device=L.device, dtype=torch.float64).view(1, -1)
    t = j * (L / (n - 1).clamp_min(1)).view(-1, 1)
    w = torch.exp(-0.5 * (t / sigma_px.double().view(-1, 1)) ** 2)
    w = torch.where(j < n.view(-1, 1), w, torch.zeros_like(w))
    w = w / w.sum(dim=1, keepdim=True)
    t = t - (w * t).sum(dim=1, keepdim=True)  # recentre: centroid at the origin
    return t, w


def _max_extent(cfg: MotionBlurConfig, diameter: float) -> float:
    """Largest |offset| (px) of any recentred tap at any severity for a disc of this diameter."""
    s = diameter / cfg.reference_diameter
    r = torch.tensor(cfg.radius, dtype=torch.float64) * s
    sg = torch.tensor(cfg.sigma, dtype=torch.float64) * s
    t, w = _line_taps(r, sg)
    return float(torch.where(w > 0, t.abs(), torch.zeros_like(t)).max())


def motion_blur_kernels(radius_px: torch.Tensor, sigma_px: torch.Tensor, angle_deg: torch.Tensor,
                        half: int) -> torch.Tensor:
    """(b, 2*half+1, 2*half+1) convolution kernels of the recentred line at each angle.

    Each tap is splatted bilinearly at its exact (sub-pixel) position, so the kernel is
    continuous in angle, length and recentring. ``k[i, j]`` is the weight of input pixel
    ``p - (i-half, j-half)`` (rows, cols) in output pixel ``p`` (a convolution kernel); the
    blur averages ``x(p + t*u)`` over the taps t, u = (cos a, sin a) in (x, y)."""
    t, w = _line_taps(radius_px, sigma_px)                       # (b,n) float64
    a = torch.deg2rad(angle_deg.double()).view(-1, 1)
    # correlation offsets o = t*u; as convolution offsets q = -o
    qx = -(t * torch.cos(a))
    qy = -(t * torch.sin(a))
    K = 2 * half + 1
    grid = torch.arange(-half, half + 1, device=t.device, dtype=torch.float64)
    wx = (1.0 - (grid.view(1, 1, K) - qx.unsqueeze(-1)).abs()).clamp_min(0)  # (b,n,K)
    wy = (1.0 - (grid.view(1, 1, K) - qy.unsqueeze(-1)).abs()).clamp_min(0)  # (b,n,K)
    k = torch.einsum("bn,bni,bnj->bij", w, wy, wx)
    return k.float()


def _fast_size(n: int) -> int:
    """Smallest even 2-3-5-7-smooth integer >= n (fast FFT length)."""
    m = max(2, n + (n % 2))
    while True:
        r = m
        for p in (2, 3, 5, 7):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 2


class MotionBlur(Corruption):
    """Camera shake: ImageNet-C's motion blur (a one-sided Gaussian-weighted line, Wand's
    ``motion_blur``) with its levels 1-4, the kernel recentred on its centroid (so the image
    does not shift) and scaled by D/224 (D = 2R) so it blurs the same fraction of the disc at any
    working size. Applied as one batched FFT convolution with per-sample kernels (replicate
    padding at the frame, as ImageNet-C's shift does)."""

    name = "motion_blur"
    family = "fundus"
    reference = ("Hendrycks & Dietterich, ImageNet-C (ICLR 2019), motion_blur levels 1-4 as in "
                 "imagecorruptions; kernel recentred and scaled by D/224")
    n_draws = 1  # angle
    Config = MotionBlurConfig

    def _apply(self, x, severity, geom, draws):
        cfg = self.config
        b, C, H, W = x.shape
        dev = x.device
        scale = (2.0 * geom.radius.double().to(dev)) / cfg.reference_diameter
        r = self._per_severity(cfg.radius, severity, torch.float64) * scale
        sg = self._per_severity(cfg.sigma, severity, torch.float64) * scale
        lo, hi = cfg.angle_range
        ang = lo + draws[:, 0].double() * (hi - lo)
        # Padding depends only on the image size (a disc diameter up to max(H, W)), never on the
        # rest of the batch, so an image is blurred identically alone or in any batch.
        # (A user-given geometry with a disc wider than the frame may need more.)
        need = _max_extent(cfg, float(max(H, W)))
        t, w = _line_taps(r, sg)
        own = float(torch.where(w > 0, t.abs(), torch.zeros_like(t)).max())
        half = int(math.ceil(max(need, own))) + 1
        k = motion_blur_kernels(r, sg, ang, half).to(dev)        # (b,K,K)
        K = 2 * half + 1
        Sh, Sw = _fast_size(H + 2 * half), _fast_size(W + 2 * half)
        xp = x.float()
        # replicate padding: `half` on top/left, the rest (>= half) at the bottom/right
        xp = F.pad(xp, (half, Sw - W - half, half, Sh - H - half), mode="replicate")
        X = torch.fft.rfft2(xp)                                  # (b,C,Sh,Sw//2+1)
        Kf = torch.fft.rfft2(k, s=(Sh, Sw)).unsqueeze(1)         # (b,1,...)
        z = torch.fft.irfft2(X.mul_(Kf), s=(Sh, Sw))
        # output pixel r sits at padded index r + 2*half (padding + kernel origin)
        y = z[:, :, 2 * half: 2 * half + H, 2 * half: 2 * half + W]
        assert K <= Sh and K <= Sw
        return y.to(x.dtype)


# ------------------------------------------------------------------------------------------------
# Exposure
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExposureConfig:
    gain: tuple[float, ...] = per_severity(
        tuple(2.0 ** (-s / 4.4) for s in (1, 2, 3, 4)), "multiplicative gain g on linear values")

    def __post_init__(self):
        if len(self.gain) < 1 or min(self.gain) <= 0:
            raise ValueError("gain needs one positive value per severity")


class UnderExposure(Corruption):
    """Too little light: ``y = g * x`` with g = 2^(-s/4.4) (0.854 ... 0.533)."""

    name = "under_exposure"
    family = "fundus"
    reference = ("exposure ladder 2^(-s/4.4) (about 0.23 EV a step, -0.9 EV at s=4); range of "
                 "MedMNIST-C's retina brightness factors 0.9-0.5")
    Config = ExposureConfig

    def _apply(self, x, severity, geom, draws):
        g = self._per_severity(self.config.gain, severity, x.dtype)
        return x * g.view(-1, 1, 1, 1)


class OverExposure(UnderExposure):
    """Too much light: ``y = clip(g * x)`` with g = 2^(+s/4.4) (1.171 ... 1.878); saturates
    the optic disc and exudates first."""

    name = "over_exposure"
    reference = ("exposure ladder 2^(+s/4.4) (about 0.23 EV a step, +0.9 EV at s=4), the "
                 "mirror of under_exposure")

    def __init__(self, config=None, **overrides):
        if config is None and not overrides:
            config = ExposureConfig(gain=tuple(2.0 ** (s / 4.4) for s in (1, 2, 3, 4)))
        super().__init__(config, **overrides)
