"""Fundus geometry: the mask, centre and radius of the visible fundus disc, batched in torch.

Many real photographs cut the disc at the top and bottom of the frame (as in ``fundus-real``), so
the radius comes from the disc's horizontal extent, not from the mask's area, and the vertical
centre from the rows where the disc is (nearly) at its widest. The mask is the disc's circle
intersected with the rows and columns where the photograph has content, so a disc cut by the frame
(or by the black padding of a working-size crop) is masked exactly where there is image.

Coordinates are pixel centres: pixel ``(row i, col j)`` sits at ``(x=j, y=i)``.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import torch

# A pixel is foreground when its brightest channel exceeds this fraction of the image's bright
# level (99th percentile of the brightest channel), clamped to absolute bounds. Dim, vignetted rims
# of real photographs sit well above 0.15 of the bright level; JPEG noise on the black surround
# sits well below 0.03.
_REL_THRESHOLD = 0.15
_ABS_MIN, _ABS_MAX = 0.03, 0.10
# A column/row counts as holding disc content when at least this fraction of its pixels is
# foreground (drops isolated noise and small burnt-in text).
_LINE_FRACTION = 0.02


#: Columns of :meth:`Geometry.params`: centre, radius and the content's extent (first and last
#: column and row with content), everything the mask is built from.
PARAM_NAMES = ("center_x", "center_y", "radius", "left", "right", "top", "bottom")


@dataclass
class Geometry:
    """Per-sample fundus geometry for a batch of images of one size.

    ``extent`` (B,4) int64 (left, right, top, bottom): the first and last column and row with
    content, which (with the centre and radius) define the mask; set by
    :func:`estimate_geometry` and :meth:`from_params`, ``None`` for a geometry built by hand.
    """

    mask: torch.Tensor    # (B,1,H,W) float in {0,1}
    center: torch.Tensor  # (B,2) float (x, y) in pixels
    radius: torch.Tensor  # (B,) float, pixels
    extent: torch.Tensor | None = None  # (B,4) int64 (left, right, top, bottom) or None
    # (B,H,W) distance map the mask was built from (kept for distance(); never set by hand)
    _dist: torch.Tensor | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return self.mask.shape[0]

    def __getitem__(self, idx) -> "Geometry":
        if isinstance(idx, int):
            idx = slice(idx, idx + 1)
        ext = None if self.extent is None else self.extent[idx]
        dist = None if self._dist is None else self._dist[idx]
        return Geometry(self.mask[idx], self.center[idx], self.radius[idx], ext, dist)

    def to(self, device) -> "Geometry":
        ext = None if self.extent is None else self.extent.to(device)
        dist = None if self._dist is None else self._dist.to(device)
        return Geometry(self.mask.to(device), self.center.to(device), self.radius.to(device), ext,
                        dist)

    @staticmethod
    def cat(parts: list["Geometry"]) -> "Geometry":
        ext = (torch.cat([p.extent for p in parts])
               if all(p.extent is not None for p in parts) else None)
        return Geometry(torch.cat([p.mask for p in parts]), torch.cat([p.center for p in parts]),
                        torch.cat([p.radius for p in parts]), ext)

    def distance(self) -> torch.Tensor:
        """(B,1,H,W) distance of each pixel from the fundus centre, in units of the radius."""
        H, W = self.mask.shape[-2:]
        d = self._dist
        if d is not None and d.shape == (len(self), H, W) and d.device == self.mask.device:
            return d.unsqueeze(1)
        return _distance(self.center.to(self.mask.device), self.radius.to(self.mask.device),
                         H, W).unsqueeze(1)

    def params(self) -> torch.Tensor:
        """(B,7) float32: :data:`PARAM_NAMES` per sample, enough to rebuild this geometry
        exactly with :meth:`from_params` (what the crop cache stores beside each crop)."""
        if self.extent is None:
            raise ValueError("this Geometry has no extent (it was not estimated); "
                             "use estimate_geometry")
        return torch.cat([self.center.float(), self.radius.float().view(-1, 1),
                          self.extent.float()], dim=1).cpu()

    @staticmethod
    def from_params(params: torch.Tensor, height: int, width: int,
                    device: torch.device | str | None = None) -> "Geometry":
        """The geometry of images of ``height x width`` whose :meth:`params` are ``params``
        (B,7): the same mask, centre and radius :func:`estimate_geometry` found, bit for bit."""
        p = torch.as_tensor(params, dtype=torch.float32, device=device)
        if p.dim() != 2 or p.shape[1] != len(PARAM_NAMES):
            raise ValueError(f"geometry params of shape {tuple(p.shape)}: expected (B, "
                             f"{len(PARAM_NAMES)}) ({', '.join(PARAM_NAMES)})")
        return _from_parts(p[:, :2].contiguous(), p[:, 2].contiguous(),
                           p[:, 3:].round().long(), int(height), int(width))


def valid_params(params, height: int, width: int) -> bool:
    """Whether one sample's geometry ``params`` (7 numbers, :data:`PARAM_NAMES`) can belong to
    an image of ``height x width``: finite, a radius of at least 1, the extent whole pixels
    inside the image and in order. Plain Python (it runs once per cached crop)."""
    try:
        v = [float(a) for a in params]
    except (TypeError, ValueError):
        return False
    if len(v) != len(PARAM_NAMES) or not all(math.isfinite(a) for a in v):
        return False
    radius, (left, right, top, bottom) = v[2], v[3:]
    return (all(a == int(a) for a in v[3:]) and radius >= 1
            and 0 <= left <= right < width and 0 <= top <= bottom < height)


def _from_parts(center: torch.Tensor, radius: torch.Tensor, extent: torch.Tensor, H: int,
                W: int) -> Geometry:
    """The geometry from its parameters: the mask is the disc's circle (half a pixel of slack,
    so the rim pixels the radius was measured from are inside) within the content's rows and
    columns. The one place the mask is built (:func:`estimate_geometry` and
    :meth:`Geometry.from_params`)."""
    B = center.shape[0]
    dev = center.device
    left, right, top, bottom = extent.unbind(1)
    d = _distance(center, radius, H, W)  # (B,H,W) in units of R
    ys = torch.arange(H, device=dev).view(1, H, 1)
    xs = torch.arange(W, device=dev).view(1, 1, W)
    inside_rows = (ys >= top.view(B, 1, 1)) & (ys <= bottom.view(B, 1, 1))
    inside_cols = (xs >= left.view(B, 1, 1)) & (xs <= right.view(B, 1, 1))
    circle = d <= 1.0 + 0.5 / radius.view(B, 1, 1)
    circle.logical_and_(inside_rows).logical_and_(inside_cols)
    return Geometry(mask=circle.unsqueeze(1).float(), center=center, radius=radius,
                    extent=extent, _dist=d)


def _distance(center: torch.Tensor, radius: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """(B,H,W) distance of each pixel from ``center`` (B,2), in units of ``radius`` (B,)."""
    B = center.shape[0]
    dev = center.device
    ys = torch.arange(H, device=dev, dtype=torch.float32).view(1, H, 1)
    xs = torch.arange(W, device=dev, dtype=torch.float32).view(1, 1, W)
    cx = center[:, 0].view(B, 1, 1).float()
    cy = center[:, 1].view(B, 1, 1).float()
    r = radius.view(B, 1, 1).float().clamp_min(1e-6)
    d = (xs - cx) ** 2 + (ys - cy) ** 2
    return d.sqrt_().div_(r)


def _threshold(bright: torch.Tensor) -> torch.Tensor:
    return (bright * _REL_THRESHOLD).clamp(_ABS_MIN, _ABS_MAX)


@functools.lru_cache(maxsize=None)
def _clamp_limits() -> tuple[float, float]:
    """(lo, hi) float32 bright levels: ``_threshold(b)`` is ``_ABS_MIN`` for every ``b <= lo`` and
    ``_ABS_MAX`` for every ``b >= hi`` (the product is monotone in ``b``, so these bound it)."""
    def first(level: float, target: float, up: bool) -> float:
        # walk float32 neighbours of the analytic boundary until the exact expression flips
        v = torch.tensor([level / _REL_THRESHOLD], dtype=torch.float32)
        t = torch.tensor([target], dtype=torch.float32)
        step = torch.tensor([float("inf") if up else float("-inf")], dtype=torch.float32)
        back = torch.tensor([float("-inf") if up else float("inf")], dtype=torch.float32)
        hit = lambda u: bool((_threshold(u) == t).all())  # noqa: E731
        while not hit(v):
            v = torch.nextafter(v, step)
        while hit(torch.nextafter(v, back)):
            v = torch.nextafter(v, back)
        return float(v)
    return first(_ABS_MIN, _ABS_MIN, up=False), first(_ABS_MAX, _ABS_MAX, up=True)


def foreground(x: torch.Tensor) -> torch.Tensor:
    """(B,H,W) bool: pixels brighter than the adaptive background threshold.

    The threshold is ``clamp(0.15 * bright, 0.03, 0.10)`` with ``bright`` the 99th percentile
    of the brightest channel. Where the clamp decides it (most photographs: bright >= 2/3),
    counting the pixels on either side of the clamp's limit is enough; the percentile itself
    (``kthvalue``) is computed only for the other images. Same result either way.
    """
    lum = x.amax(dim=1)  # (B,H,W)
    B = lum.shape[0]
    flat = lum.reshape(B, -1)
    if not flat.is_floating_point():
        flat = flat.float()
    k = max(1, int(flat.shape[1] * 0.99))
    lo, hi = _clamp_limits()
    high = (flat < hi).sum(1, dtype=torch.int32) < k    # k-th smallest >= hi: threshold _ABS_MAX
    low = (flat <= lo).sum(1, dtype=torch.int32) >= k   # k-th smallest <= lo: threshold _ABS_MIN
    thr = torch.where(high, _ABS_MAX, _ABS_MIN).to(flat.dtype)
    rest = (~high & ~low).nonzero().flatten()
    if rest.numel():
        bright = flat[rest].float().kthvalue(k, dim=1).values  # 99th percentile
        thr[rest] = _threshold(bright).to(flat.dtype)
    return lum > thr.view(B, 1, 1)


def _first_last(valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last True index along the last dim of a (B,N) bool tensor (0, N-1 if none)."""
    N = valid.shape[-1]
    idx = torch.arange(N, device=valid.device).expand_as(valid)
    big = torch.full_like(idx, N)
    first = torch.where(valid, idx, big).amin(-1)
    last = torch.where(valid, idx, torch.full_like(idx, -1)).amax(-1)
    none = ~valid.any(-1)
    first = torch.where(none, torch.zeros_like(first), first)
    last = torch.where(none, torch.full_like(last, N - 1), last)
    return first, last


@torch.no_grad()
def estimate_geometry(x: torch.Tensor) -> Geometry:
    """Estimate mask, centre and radius of the fundus disc for each image of a batch.

    ``x``: (B,3,H,W) float in [0,1] (or uint8, converted). Runs batched on x's device.
    """
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected (B,3,H,W) images, got shape {tuple(x.shape)}")
    B, _, H, W = x.shape
    fg = foreground(x)  # (B,H,W)
    # counts summed as float32 (exact below 2^24): the mean over a column is its count / H
    col_valid = fg.sum(dim=1, dtype=torch.float32) / H >= _LINE_FRACTION  # (B,W)
    row_width = fg.sum(dim=2, dtype=torch.float32)                        # (B,H)
    del fg
    row_valid = row_width >= _LINE_FRACTION * W
    left, right = _first_last(col_valid)
    top, bottom = _first_last(row_valid)
    radius = ((right - left + 1).float() / 2).clamp_min(1.0)
    cx = (left + right).float() / 2
    # Vertical centre: mean index of the rows within 3% of the widest row (a band of about
    # +-0.24 R around the centre of a full disc; unaffected by a cut at top and bottom).
    widest = row_width.amax(dim=1, keepdim=True)
    near = (row_width >= 0.97 * widest) & (widest > 0)
    rows = torch.arange(H, device=x.device, dtype=torch.float32).expand(B, H)
    cy = (rows * near).sum(1) / near.sum(1).clamp_min(1)
    # A disc cut by the frame on one side only: the widest band hugs the cut; fall back to the
    # mid-point of the rows with content when the band touches the frame edge.
    cy = torch.where(near.sum(1) == 0, torch.full_like(cy, (H - 1) / 2), cy)
    center = torch.stack([cx, cy], dim=1)
    extent = torch.stack([left, right, top, bottom], dim=1).long()
    return _from_parts(center, radius, extent, H, W)


def crop_boxes(geom: Geometry, margin: float = 1.0) -> torch.Tensor:
    """(B,4) boxes (x0, y0, x1, y1) of the square of side ``2*margin*R`` centred on the disc."""
    half = geom.radius * margin
    cx, cy = geom.center[:, 0], geom.center[:, 1]
    return torch.stack([cx - half + 0.5, cy - half + 0.5, cx + half + 0.5, cy + half + 0.5], dim=1)


def crop_resize(x: torch.Tensor, geom: Geometry, size: int, margin: float = 1.0) -> torch.Tensor:
    """Crop the square around each disc and resize it to ``size x size``, batched.

    Areas outside the photograph become black. The fundus radius becomes ``size/2 / margin``.
    Resampling averages the source pixels under each output pixel (roi_align with adaptive
    sampling), so downscaling is anti-aliased. Returns float in [0,1].
    """
    from torchvision.ops import roi_align

    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    B = x.shape[0]
    # roi_align with aligned=False maps box corner coordinates directly onto the pixel grid
    # whose pixel i spans [i, i+1); crop_boxes already shifted centres by +0.5 to match.
    boxes = torch.cat([torch.arange(B, device=x.device, dtype=x.dtype).view(B, 1),
                       crop_boxes(geom, margin).to(x.dtype)], dim=1)
    out = roi_align(x.float(), boxes.float(), output_size=(size, size), spatial_scale=1.0,
                    sampling_ratio=-1, aligned=False)
    return out.clamp(0, 1)
