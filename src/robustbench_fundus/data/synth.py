"""Procedural colour fundus photographs with diabetic-retinopathy lesions and lesion masks.

The embedded default data set of the benchmark: the demo model trains on it, ``rbf bench`` with no
``--data`` evaluates on it and tests that must run anywhere use it. Each image is drawn at any
size from ``(seed, index)`` alone:

* a vignetted orange-red disc on black (radius 0.44-0.485 of the size, small random offset; in
  about 40% of the images the frame cuts the disc at the top and/or bottom, as real cameras do),
  with low-frequency choroidal texture, an off-centre illumination gradient and sensor noise;
* an optic disc with a cup and peripapillary glow, a macula with a darker fovea;
* a branching vessel tree (arteries and veins: superior/inferior temporal arcades curving round the
  macula, nasal trunks, small macular branches; recursive branching, tapering, avoiding the fovea);
* lesions whose kinds and numbers follow the grade (International Clinical DR scale):

  ===== ==========================================================================================
  grade lesions
  ===== ==========================================================================================
  0     none
  1     2-6 microaneurysms only
  2     4-12 microaneurysms, 2-7 dot/blot and 0-2 flame haemorrhages, often hard-exudate clusters,
        sometimes one cotton-wool spot
  3     8-20 microaneurysms, 20-32 haemorrhages spread over all four quadrants (>= 5 each),
        flame haemorrhages, exudates, 2-5 cotton-wool spots, often venous beading
  4     like a milder 3, plus 1-2 tufts of neovascularisation (at the disc or on an arcade) and
        sometimes a boat-shaped preretinal haemorrhage
  ===== ==========================================================================================

The grade follows from the lesions only: global colour, brightness, vignetting, texture, geometry
and the vessel tree come from a random stream keyed by (seed, index) that never sees the grade, so
an image of another grade (``grades=`` override) is the same eye with other lesions. Lesion ``k``
of each kind has its own stream keyed by (seed, kind, index, k), so a higher count adds lesions and
keeps the earlier ones: grade 3 contains grade 2's haemorrhages where both have them.

Sizes are fractions of the fundus radius ``R`` (microaneurysm radius 0.013-0.02 R, at least
1.5 px, so they remain visible at 224 px), so images of any size show the same content.

Speed: all rendering is tensor work on small patches (distance-to-segment fields for vessels and
ellipse fields for lesions, evaluated on one patch per primitive and combined with a batched
``scatter_reduce(amax)``), plus a handful of full-image fields. Scalar parameters come from
``random.Random(derive_seed(...))`` streams (local instances; ``random()`` is guaranteed stable
across Python versions), noise fields from :func:`~robustbench_fundus.seeding.torch_generator`,
grades from 53 bits of ``derive_seed(seed, "synth-grade", index)``. No global random state.
"""
from __future__ import annotations

import contextlib
import csv
import io
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..errors import RBFError
from ..seeding import derive_seed, torch_generator

__all__ = [
    "EYEPACS_PRIOR", "SynthBatch", "make_synthetic", "synthetic_grades", "SyntheticDataset",
    "write_synthetic", "synthetic_id", "parse_synthetic_spec",
]

_RAW_PRIOR = (0.73, 0.07, 0.15, 0.025, 0.025)
#: Grade prior of Kaggle's EyePACS training set (normalised to sum to 1).
EYEPACS_PRIOR: tuple[float, ...] = tuple(p / sum(_RAW_PRIOR) for p in _RAW_PRIOR)

_DEG = math.pi / 180.0
MIN_SIZE = 16


def parse_synthetic_spec(spec: object, *, what: str = "--data",
                         default_n: int | None = None) -> int | None:
    """The one reader of the ``synthetic`` / ``synthetic:N`` data spelling (bench and train).

    ``"synthetic"`` -> ``default_n``; ``"synthetic:N"`` -> N (an integer >= 1); anything else
    (a folder, a dataset, tensors) -> None, meaning "not synthetic". A malformed ``synthetic:...``
    is a one-line error naming ``what``."""
    if not isinstance(spec, str):
        return None
    text = spec.strip()
    if text.lower() == "synthetic":
        return default_n
    if not text.lower().startswith("synthetic:"):
        return None
    tail = text.split(":", 1)[1].strip()
    try:
        n = int(tail)
    except ValueError:
        raise RBFError(f"{what} {spec}: write synthetic:N with N a whole number of images, "
                       "e.g. synthetic:64") from None
    if n < 1:
        raise RBFError(f"{what} {spec}: N must be at least 1 image, e.g. synthetic:64")
    return n


def synthetic_id(index: int) -> str:
    """The image id of synthetic sample ``index`` (``synth_000042``)."""
    return f"synth_{index:06d}"


@dataclass
class SynthBatch:
    """A batch of synthetic fundus photographs.

    ``images`` uint8 (n,3,S,S) RGB; ``grades`` int64 (n,); ``lesion_masks`` bool (n,1,S,S) (union of
    all lesion pixels); ``ids`` image ids; ``radius`` float (n,) true fundus radius in pixels;
    ``center`` float (n,2) true fundus centre (x, y) in pixels (pixel (row i, col j) at x=j, y=i).
    """

    images: torch.Tensor
    grades: torch.Tensor
    lesion_masks: torch.Tensor
    ids: list[str]
    radius: torch.Tensor
    center: torch.Tensor
    counts: list[dict] = field(default_factory=list)  # lesions drawn per image, by kind

    def __len__(self) -> int:
        return self.images.shape[0]


# --------------------------------------------------------------------------------------------
# random streams


class _Stream(random.Random):
    """A local scalar random stream keyed by parts (never the global ``random`` state)."""

    def __init__(self, *parts: object) -> None:
        super().__init__(derive_seed(*parts))

    def u(self, a: float = 0.0, b: float = 1.0) -> float:
        return a + (b - a) * self.random()

    def normal(self, mu: float = 0.0, sigma: float = 1.0) -> float:
        # Box-Muller from random() only (stable across Python versions).
        u1 = 1.0 - self.random()
        u2 = self.random()
        return mu + sigma * math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)

    def integer(self, a: int, b: int) -> int:
        """Uniform integer in [a, b] (inclusive), from random() only."""
        return a + min(b - a, int(self.random() * (b - a + 1)))

    def chance(self, p: float) -> bool:
        return self.random() < p


def _check_prior(prior: Sequence[float]) -> tuple[float, ...]:
    try:
        vals = [float(p) for p in prior]
    except (TypeError, ValueError):
        raise RBFError(f"prior must be 5 numbers (grade 0-4 weights), got {prior!r}") from None
    if len(vals) != 5 or any(not math.isfinite(v) or v < 0 for v in vals) or sum(vals) <= 0:
        raise RBFError(f"prior must be 5 non-negative weights with a positive sum, got {prior!r}")
    s = sum(vals)
    return tuple(v / s for v in vals)


def synthetic_grades(n: int, seed: int = 0, prior: Sequence[float] = EYEPACS_PRIOR,
                     start: int = 0) -> torch.Tensor:
    """The grades (int64 (n,)) of samples ``start .. start+n-1``, without rendering them."""
    p = torch.tensor(_check_prior(prior), dtype=torch.float64)
    if n <= 0:
        return torch.zeros(0, dtype=torch.long)
    # one uniform per sample from a hash of (seed, index): 53 random bits of derive_seed (fast:
    # no generator per sample, so a 100k-image data set knows its labels in well under a second)
    u = torch.tensor([(derive_seed(seed, "synth-grade", i) >> 10) * 2.0 ** -53
                      for i in range(start, start + n)], dtype=torch.float64)
    cdf = torch.cumsum(p, 0)
    cdf[-1] = 1.0 + 1e-12
    g = torch.searchsorted(cdf, u, right=True).clamp_max(4)
    # zero-weight grades are never drawn (searchsorted can land on them only at exact ties)
    return g.long()


# --------------------------------------------------------------------------------------------
# patch rasterisers: one patch per primitive, combined into a flat (S*S+1) canvas with amax


def _scatter(canvas: torch.Tensor, S: int, ix: torch.Tensor, iy: torch.Tensor,
             a: torch.Tensor) -> None:
    valid = (ix >= 0) & (ix < S) & (iy >= 0) & (iy < S)
    flat = torch.where(valid, iy * S + ix, torch.full_like(ix, S * S))
    flat, a = torch.broadcast_tensors(flat, a)
    canvas.scatter_reduce_(0, flat.reshape(-1), a.reshape(-1), reduce="amax")


def _patch_grid(mx: torch.Tensor, my: torch.Tensor, P: int):
    off = torch.arange(-P, P + 1)
    ix = mx.view(-1, 1, 1) + off.view(1, 1, -1)
    iy = my.view(-1, 1, 1) + off.view(1, -1, 1)
    return ix, iy


def _draw_segments(canvas: torch.Tensor, S: int, seg: torch.Tensor) -> None:
    """Anti-aliased tapered capsules. ``seg`` (K,6) px: x0, y0, x1, y1, radius, strength."""
    if seg.numel() == 0:
        return
    x0, y0, x1, y1, r, st = seg.unbind(1)
    # sub-pixel vessels: draw at 0.5 px with proportionally lower opacity
    st = st * (r / 0.5).clamp(max=1.0)
    r = r.clamp(min=0.5)
    half = 0.5 * torch.hypot(x1 - x0, y1 - y0) + r + 1.5
    P_all = half.ceil().long()
    for P in torch.unique(P_all).tolist():
        sel = P_all == P
        a0, b0, a1, b1, rr, ss = x0[sel], y0[sel], x1[sel], y1[sel], r[sel], st[sel]
        mx = ((a0 + a1) * 0.5).round().long()
        my = ((b0 + b1) * 0.5).round().long()
        ix, iy = _patch_grid(mx, my, P)
        px, py = ix.float(), iy.float()
        a0, b0, a1, b1 = (t.view(-1, 1, 1) for t in (a0, b0, a1, b1))
        dx, dy = a1 - a0, b1 - b0
        L2 = (dx * dx + dy * dy).clamp_min(1e-9)
        t = (((px - a0) * dx + (py - b0) * dy) / L2).clamp(0.0, 1.0)
        d = torch.hypot(px - a0 - t * dx, py - b0 - t * dy)
        alpha = ((rr.view(-1, 1, 1) - d) + 0.5).clamp(0.0, 1.0) * ss.view(-1, 1, 1)
        _scatter(canvas, S, ix, iy, alpha)


def _draw_ellipses(canvas: torch.Tensor, S: int, ell: torch.Tensor) -> None:
    """Anti-aliased ellipses. ``ell`` (K,8) px: cx, cy, a, b, angle (rad), strength, edge width,
    flat-top offset (the ellipse is cut above ``cy - top`` when top > 0; 0 for none)."""
    if ell.numel() == 0:
        return
    cx, cy, a, b, ang, st, w, top = ell.unbind(1)
    a = a.clamp(min=0.5)
    b = b.clamp(min=0.5)
    P_all = (torch.maximum(a, b) + w + 1.5).ceil().long()
    for P in torch.unique(P_all).tolist():
        sel = P_all == P
        mx, my = cx[sel].round().long(), cy[sel].round().long()
        ix, iy = _patch_grid(mx, my, P)
        v = lambda t: t[sel].view(-1, 1, 1)  # noqa: E731
        dx, dy = ix.float() - v(cx), iy.float() - v(cy)
        c, s = torch.cos(v(ang)), torch.sin(v(ang))
        u_, w_ = dx * c + dy * s, -dx * s + dy * c
        aa, bb = v(a), v(b)
        e = torch.sqrt((u_ / aa) ** 2 + (w_ / bb) ** 2 + 1e-12)
        grad = torch.sqrt((u_ / aa ** 2) ** 2 + (w_ / bb ** 2) ** 2 + 1e-12) / e
        sd = (e - 1.0) / grad.clamp_min(1e-6)          # signed distance, px (approx.)
        sd = torch.where(e < 1e-3, -torch.minimum(aa, bb), sd)
        alpha = (-sd / v(w) + 0.5).clamp(0.0, 1.0)
        tp = v(top)
        cut = ((dy + tp) + 0.5).clamp(0.0, 1.0)       # 1 below the fluid level
        alpha = alpha * torch.where(tp > 0, cut, torch.ones_like(cut)) * v(st)
        _scatter(canvas, S, ix, iy, alpha)


# --------------------------------------------------------------------------------------------
# anatomy (grade-independent)


@dataclass
class _Branch:
    kind: str            # "vein" or "artery"
    depth: int
    points: list         # [(x, y, r)] in R units (canonical frame)


def _grow_tree(A: _Stream, od: tuple[float, float], r_od: float, fov: tuple[float, float],
               limits: tuple[float, float]) -> list[_Branch]:
    """Vessel tree in the canonical frame (optic disc right of the fovea, temporal = -x)."""
    step = 0.02
    branches: list[_Branch] = []
    stack: list[tuple] = []
    # trunks: (heading deg, curvature deg/R, curvature decay length, length, radius scale, kind)
    for vert in (-1.0, 1.0):                       # superior (y<0), inferior (y>0)
        for kind, rad in (("vein", A.u(0.0115, 0.0135)), ("artery", A.u(0.0082, 0.0095))):
            j = A.u(-12, 12) if kind == "artery" else 0.0
            # temporal arcade: leaves the disc vertically, bends round the macula
            th = vert * (90 + A.u(8, 25) + j)
            stack.append((th, vert * A.u(120, 175), A.u(0.35, 0.55), A.u(1.3, 1.7), rad, kind, 0,
                          vert))
            # nasal trunk
            th = vert * (A.u(45, 80) + j)
            stack.append((th, -vert * A.u(0, 50), 0.8, A.u(0.7, 1.0), rad * A.u(0.75, 0.9), kind,
                          0, vert))
    for _ in range(A.integer(2, 4)):               # small macular branches, heading temporal
        kind = "vein" if A.chance(0.5) else "artery"
        vert = -1.0 if A.chance(0.5) else 1.0
        stack.append((180 + vert * A.u(0, 30), 0.0, 1.0, A.u(0.25, 0.45), A.u(0.004, 0.006), kind,
                      1, vert))
    ox, oy = od
    fx, fy = fov
    top, bot = limits
    roots = []
    for item in stack:
        th = item[0] * _DEG
        sx = ox + math.cos(th) * r_od * 0.35
        sy = oy + math.sin(th) * r_od * 0.35
        roots.append((sx, sy) + item)
    work = roots
    while work:
        x, y, th_deg, curv, decay, length, r, kind, depth, vert = work.pop()
        th = th_deg * _DEG
        pts = [(x, y, r)]
        trav = 0.0
        next_branch = A.u(0.08, 0.2) * (1.0 + depth)
        taper = 0.25 if depth == 0 else 0.45
        jitter = (5.0 if depth == 0 else 9.0) * _DEG
        while trav < length:
            k = curv * _DEG * math.exp(-trav / decay)
            th += k * step + A.normal(0.0, jitter) * math.sqrt(step / 0.02)
            # vessels sweep round the fovea: turn away when heading into it
            vx, vy = fx - x, fy - y
            dfov2 = vx * vx + vy * vy
            if dfov2 < 0.3 ** 2:
                cos_t, sin_t = math.cos(th), math.sin(th)
                if cos_t * vx + sin_t * vy > 0:
                    th -= math.copysign(0.25 * (0.3 - math.sqrt(dfov2)) / 0.3 + 0.05,
                                        cos_t * vy - sin_t * vx)
            x += step * math.cos(th)
            y += step * math.sin(th)
            trav += step
            r *= (1.0 - taper * step)
            pts.append((x, y, r))
            if x * x + y * y > 1.03 or y < top - 0.05 or y > bot + 0.05:
                break
            if (x - fx) ** 2 + (y - fy) ** 2 < (0.09 + 0.6 * r) ** 2 and depth + trav > 0.2:
                break
            if trav >= next_branch and depth < 2 and r > 0.0035:
                next_branch = trav + A.u(0.12, 0.26) * (1.0 + 0.6 * depth)
                cr = r * A.u(0.55, 0.8)
                side = -1.0 if A.chance(0.5) else 1.0
                cth = th / _DEG + side * A.u(25, 70)
                clen = (length - trav) * A.u(0.3, 0.7) + A.u(0.05, 0.15)
                if depth >= 1:
                    clen *= 0.6
                work.append((x, y, cth, A.u(-60, 60), 0.5, clen, cr, kind, depth + 1, vert))
                r *= A.u(0.88, 0.96)
        if len(pts) > 1:
            branches.append(_Branch(kind, depth, pts))
    return branches


def _random_point(L: random.Random, geo: dict, rmin: float, rmax: float, around=(0.0, 0.0),
                  quadrant: int | None = None, avoid_od: float = 1.4) -> tuple[float, float]:
    """A point in the visible fundus (R units), ``rmin <= |p - around| <= rmax``."""
    ax, ay = around
    ox, oy = geo["od"]
    p = (ax, ay)
    for _ in range(24):
        rr = math.sqrt(L.random() * (rmax ** 2 - rmin ** 2) + rmin ** 2)
        if quadrant is None:
            th = 2 * math.pi * L.random()
        else:
            th = (quadrant + L.random()) * 0.5 * math.pi
        p = (ax + rr * math.cos(th), ay + rr * math.sin(th))
        if p[0] ** 2 + p[1] ** 2 > 0.86 ** 2:
            continue
        if p[1] < geo["top"] + 0.06 or p[1] > geo["bot"] - 0.06:
            continue
        if (p[0] - ox) ** 2 + (p[1] - oy) ** 2 < (avoid_od * geo["r_od"]) ** 2:
            continue
        return p
    return p


# --------------------------------------------------------------------------------------------
# lesions (depend on the grade)

# (min, max) counts per grade: microaneurysms, dot/blot haemorrhages, flame haemorrhages,
# exudate clusters, cotton-wool spots, NV tufts; probabilities for clusters / CWS handled below.
_COUNTS = {
    0: dict(ma=(0, 0), haem=(0, 0), flame=(0, 0), exu=(0, 0), cws=(0, 0), nv=(0, 0)),
    1: dict(ma=(2, 6), haem=(0, 0), flame=(0, 0), exu=(0, 0), cws=(0, 0), nv=(0, 0)),
    2: dict(ma=(4, 12), haem=(2, 7), flame=(0, 2), exu=(1, 2), cws=(1, 1), nv=(0, 0)),
    3: dict(ma=(8, 20), haem=(20, 32), flame=(2, 6), exu=(1, 3), cws=(2, 5), nv=(0, 0)),
    4: dict(ma=(6, 18), haem=(12, 28), flame=(1, 4), exu=(0, 3), cws=(0, 4), nv=(1, 2)),
}
_P_EXU = {2: 0.6}
_P_CWS = {2: 0.25}


def _lesion_counts(grade: int, C: _Stream) -> dict:
    spec = _COUNTS[grade]
    out = {k: C.integer(*v) for k, v in spec.items()}
    if grade in _P_EXU and not C.chance(_P_EXU[grade]):
        out["exu"] = 0
    if grade in _P_CWS and not C.chance(_P_CWS[grade]):
        out["cws"] = 0
    out["beading"] = (C.integer(1, 2) if C.chance(0.6) else 0) if grade >= 3 else 0
    out["preretinal"] = int(C.chance(0.4)) if grade == 4 else 0
    return out


def _lesions(seed: int, idx: int, grade: int, geo: dict, branches: list[_Branch], R: float):
    """Lesion primitives (canonical frame, R units) by kind. Returns (red ellipses, yellow
    ellipses, cws ellipses, nv segments, beading circles, counts)."""
    C = _Stream(seed, "synth-count", idx, grade)
    n = _lesion_counts(grade, C)
    fov = geo["fov"]
    red, yellow, cws, nv, beads = [], [], [], [], []
    px1 = 1.0 / R  # one pixel in R units
    for k in range(n["ma"]):
        L = _Stream(seed, "synth-ma", idx, k)
        x, y = _random_point(L, geo, 0.06, 0.62, around=fov, quadrant=k % 4)
        r = max(L.u(0.013, 0.02), 1.5 * px1)
        red.append((x, y, r, r * L.u(0.9, 1.1), L.u(0, math.pi), L.u(0.8, 0.95), 0.9 * px1, 0))
    for k in range(n["haem"]):
        L = _Stream(seed, "synth-haem", idx, k)
        x, y = _random_point(L, geo, 0.12, 0.84, quadrant=k % 4)
        size = L.u(0.014, 0.034)
        st = L.u(0.85, 0.98)
        for j in range(L.integer(1, 3)):          # dot (1 ellipse) or blot (2-3 overlapping)
            ox_, oy_ = (0.0, 0.0) if j == 0 else (L.normal(0, 0.6 * size), L.normal(0, 0.6 * size))
            a = size * L.u(0.7, 1.1)
            red.append((x + ox_, y + oy_, a, a * L.u(0.65, 1.0), L.u(0, math.pi), st, 1.2 * px1, 0))
    for k in range(n["flame"]):
        L = _Stream(seed, "synth-flame", idx, k)
        x, y = _random_point(L, geo, 0.1, 0.45, around=geo["od"], quadrant=k % 4, avoid_od=1.6)
        ang = math.atan2(y - geo["od"][1], x - geo["od"][0])   # along the nerve fibres
        red.append((x, y, L.u(0.04, 0.075), L.u(0.011, 0.02), ang, L.u(0.75, 0.9), 1.5 * px1, 0))
    for k in range(n["exu"]):
        L = _Stream(seed, "synth-exu", idx, k)
        cx, cy = _random_point(L, geo, 0.1, 0.42, around=fov, avoid_od=2.0)
        spread = L.u(0.03, 0.07)
        ring = L.chance(0.35)
        for _ in range(L.integer(6, 22)):
            if ring:
                th = 2 * math.pi * L.random()
                rr = spread * L.u(0.8, 1.2)
                x, y = cx + rr * math.cos(th), cy + rr * math.sin(th)
            else:
                x, y = cx + L.normal(0, spread), cy + L.normal(0, spread)
            r = max(L.u(0.006, 0.016), 0.9 * px1)
            yellow.append((x, y, r, r * L.u(0.6, 1.0), L.u(0, math.pi), L.u(0.8, 1.0), 0.8 * px1,
                           0))
    main = [b for b in branches if b.depth == 0]
    for k in range(n["cws"]):
        L = _Stream(seed, "synth-cws", idx, k)
        # near a main arcade, off the vessel
        b = main[int(L.random() * len(main))]
        i = int(L.u(0.15, 0.6) * (len(b.points) - 1))
        x, y, _ = b.points[i]
        x, y = x + L.normal(0, 0.05), y + L.normal(0, 0.05)
        if (x * x + y * y > 0.85 ** 2 or y < geo["top"] + 0.08 or y > geo["bot"] - 0.08
                or (x - fov[0]) ** 2 + (y - fov[1]) ** 2 < 0.1 ** 2):
            x, y = _random_point(L, geo, 0.15, 0.5, around=geo["od"], avoid_od=2.0)
        size = L.u(0.03, 0.055)
        st = L.u(0.6, 0.8)
        for j in range(L.integer(2, 4)):
            ox_, oy_ = (0.0, 0.0) if j == 0 else (L.normal(0, 0.5 * size), L.normal(0, 0.5 * size))
            a = size * L.u(0.6, 1.0)
            cws.append((x + ox_, y + oy_, a, a * L.u(0.5, 0.9), L.u(0, math.pi), st, 0.45 * a, 0))
    veins = [b for b in branches if b.kind == "vein" and b.depth <= 1 and len(b.points) > 30]
    for k in range(n["beading"] if veins else 0):
        L = _Stream(seed, "synth-beading", idx, k)
        b = veins[int(L.random() * len(veins))]
        m = len(b.points)
        i0 = int(L.u(0.1, 0.5) * m)
        i1 = min(m - 1, i0 + int(L.u(0.15, 0.3) / 0.02))
        i = i0
        while i <= i1:
            x, y, r = b.points[i]
            rb = max(r * L.u(1.5, 1.9), 1.6 * px1)
            beads.append((x, y, x, y, rb, L.u(0.85, 0.95)))
            i += max(1, int(round(4.0 * r / 0.02)))
    for k in range(n["nv"]):
        L = _Stream(seed, "synth-nv", idx, k)
        if k == 0 and L.chance(0.6):          # NVD: on or next to the optic disc
            th = 2 * math.pi * L.random()
            rr = geo["r_od"] * L.u(0.3, 1.1)
            cx, cy = geo["od"][0] + rr * math.cos(th), geo["od"][1] + rr * math.sin(th)
        else:                                  # NVE: on a main arcade
            b = main[int(L.random() * len(main))]
            i = int(L.u(0.2, 0.6) * (len(b.points) - 1))
            cx, cy, _ = b.points[i]
            if cx * cx + cy * cy > 0.8 ** 2 or cy < geo["top"] + 0.12 or cy > geo["bot"] - 0.12:
                cx, cy = geo["od"]
        rho = L.u(0.05, 0.09)
        rv = max(L.u(0.006, 0.008), 0.7 * px1)
        st = L.u(0.85, 0.95)
        step = 0.007
        for _ in range(L.integer(7, 12)):
            x, y = cx + L.normal(0, 0.3 * rho), cy + L.normal(0, 0.3 * rho)
            th = 2 * math.pi * L.random()
            turn = L.u(-25, 25) * _DEG
            for _ in range(int(L.u(0.12, 0.28) / step)):
                # tortuous: a steady turn (loops) plus jitter, steered back inside the tuft
                th += turn + L.normal(0, 22 * _DEG)
                if (x - cx) ** 2 + (y - cy) ** 2 > rho ** 2:
                    back = math.atan2(cy - y, cx - x)
                    th += 0.5 * math.atan2(math.sin(back - th), math.cos(back - th))
                x2, y2 = x + step * math.cos(th), y + step * math.sin(th)
                nv.append((x, y, x2, y2, rv, st))
                x, y = x2, y2
    if n["preretinal"]:
        L = _Stream(seed, "synth-preretinal", idx, 0)
        x, y = _random_point(L, geo, 0.2, 0.55, around=geo["od"], avoid_od=2.0)
        a = L.u(0.08, 0.13)
        b = a * L.u(0.75, 0.95)
        red.append((x, y, a, b, 0.0, L.u(0.9, 0.98), 1.2 * px1, b * L.u(0.2, 0.5)))
    return red, yellow, cws, nv, beads, n


# --------------------------------------------------------------------------------------------
# rendering


def _to_px(prims: list[tuple], kind: str, R: float, cx: float, cy: float,
           s: float) -> torch.Tensor:
    """Canonical-frame primitives (R units) -> pixel tensors, mirroring x when s = -1."""
    if not prims:
        return torch.zeros(0, 8 if kind == "ell" else 6)
    t = torch.tensor(prims, dtype=torch.float64)
    return _seg_to_px(t, R, cx, cy, s) if kind == "seg" else _ell_to_px(t, R, cx, cy, s)


def _ell_to_px(t: torch.Tensor, R: float, cx: float, cy: float, s: float) -> torch.Tensor:
    # cx, cy, a, b, angle, strength, edge, top
    t[:, 0] = cx + s * t[:, 0] * R
    t[:, 1] = cy + t[:, 1] * R
    t[:, 2:4] *= R
    if s < 0:
        t[:, 4] = math.pi - t[:, 4]
    t[:, 6:8] *= R
    return t.float()


def _seg_to_px(t: torch.Tensor, R: float, cx: float, cy: float, s: float) -> torch.Tensor:
    # x0, y0, x1, y1, radius, strength
    t[:, 0::2][:, :2] = cx + s * t[:, 0::2][:, :2] * R
    t[:, 1::2][:, :2] = cy + t[:, 1::2][:, :2] * R
    t[:, 4] *= R
    return t.float()


def _tree_segments(branches: list[_Branch], kind: str) -> torch.Tensor:
    """(K,6) canonical-frame segments (x0,y0,x1,y1,r,strength) of all branches of one kind."""
    pts, bid = [], []
    for j, b in enumerate(branches):
        if b.kind == kind:
            pts.extend(b.points)
            bid.extend([j] * len(b.points))
    if len(pts) < 2:
        return torch.zeros(0, 6, dtype=torch.float64)
    P = torch.tensor(pts, dtype=torch.float64)
    same = torch.tensor(bid[1:]) == torch.tensor(bid[:-1])
    a, b = P[:-1][same], P[1:][same]
    st = torch.full((a.shape[0], 1), 1.0, dtype=torch.float64)
    return torch.cat([a[:, :2], b[:, :2], 0.5 * (a[:, 2:3] + b[:, 2:3]), st], dim=1)


def _gauss(d2: torch.Tensor, sigma: float) -> torch.Tensor:
    """exp(-d2 / (2 sigma^2)), floored to exactly 0 far out (no slow denormal floats)."""
    q = d2 * (0.5 / sigma ** 2)
    return torch.where(q < 40.0, torch.exp(-q.clamp(max=40.0)), torch.zeros_like(q))


# canvases (rows of one tensor), in the order of their attenuation / blend use
_VEIN, _ART, _RED, _NV, _BEAD, _YELLOW, _CWS = range(7)
_LOWRES = 128   # smooth shading fields are computed at most at this size and upsampled


def _render(seed: int, idx: int, grade: int, S: int):
    A = _Stream(seed, "synth-anatomy", idx)
    # ---- geometry: radius, centre, frame cut
    rf = A.u(0.44, 0.485)
    R = rf * S
    mxo = max(0.0, min(0.012, 0.5 - rf - 0.006))
    cx = (S - 1) / 2 + A.u(-mxo, mxo) * S
    cy = (S - 1) / 2 + A.u(-0.02, 0.02) * S
    if A.chance(0.4):
        top, bot = -A.u(0.78, 0.95), A.u(0.78, 0.95)
    else:
        top, bot = -2.0, 2.0
    s = -1.0 if A.chance(0.5) else 1.0             # laterality: optic disc left or right
    od = (A.u(0.36, 0.46), A.u(-0.06, 0.04))
    r_od = A.u(0.095, 0.125)
    fov = (od[0] - A.u(0.66, 0.78), od[1] + A.u(0.02, 0.09))
    geo = dict(od=od, r_od=r_od, fov=fov, top=top, bot=bot)
    # ---- appearance (independent of the grade)
    bright = A.u(0.75, 1.05)
    red = A.u(0.82, 0.97)
    bg = (red, red * A.u(0.42, 0.56), red * A.u(0.1, 0.22))
    vig, vpow = A.u(0.25, 0.5), A.u(1.8, 3.2)
    gx, gy = A.u(-0.12, 0.12), A.u(-0.12, 0.12)
    tex1, tex2 = A.u(0.03, 0.07), A.u(0.01, 0.03)
    noise_sigma = A.u(0.004, 0.012)
    mac_dark, mac_sigma = A.u(0.15, 0.35), A.u(0.08, 0.13)
    fov_dark = A.u(0.15, 0.35)
    od_col = (1.0, A.u(0.66, 0.8), A.u(0.3, 0.45))
    od_str, od_elong, od_glow = A.u(0.6, 0.85), A.u(1.0, 1.15), A.u(0.08, 0.2)
    cup_frac, cup_str = A.u(0.35, 0.6), A.u(0.3, 0.6)
    cup_off = A.u(0.0, 0.3)
    k_vein = (A.u(0.28, 0.4), A.u(0.5, 0.62), A.u(0.4, 0.55))
    k_art = (A.u(0.12, 0.2), A.u(0.35, 0.45), A.u(0.28, 0.4))
    branches = _grow_tree(A, od, r_od, fov, (top, bot))

    # ---- smooth shading at low resolution: colour * illumination * texture * macula, and the
    # illumination alone (lesion and disc colours follow it); one bilinear upsample to S
    Sl = min(S, _LOWRES)
    G = torch_generator(seed, "synth-noise", idx)
    pos = (torch.arange(Sl, dtype=torch.float32) + 0.5) * (S / Sl) - 0.5
    X, Y = ((pos - cx) / R * s).view(1, Sl), ((pos - cy) / R).view(Sl, 1)
    D = (X * X + Y * Y).sqrt().clamp(max=1.0)
    base_v = vig * D ** vpow
    illum = bright * (1.0 + gx * X + gy * Y) * (1.0 - 0.25 * ((D - 0.95) / 0.05).clamp(0, 1))
    z1 = F.interpolate(torch.randn(1, 1, 6, 6, generator=G), size=(Sl, Sl), mode="bicubic",
                       align_corners=False)[0, 0]
    z2 = F.interpolate(torch.randn(1, 1, 28, 28, generator=G), size=(Sl, Sl), mode="bicubic",
                       align_corners=False)[0, 0]
    tex = 1.0 + tex1 * z1 + tex2 * z2
    M2 = (X - fov[0]) ** 2 + (Y - fov[1]) ** 2
    dark = mac_dark * _gauss(M2, mac_sigma) + fov_dark * _gauss(M2, 0.025)
    glow = od_glow * _gauss((X - od[0]) ** 2 + ((Y - od[1]) / od_elong) ** 2, 1.55 * r_od)
    fields = torch.empty(1, 4, Sl, Sl)
    for c, (kv, kd, kg) in enumerate(((1.0, 0.8, 1.2), (1.3, 1.0, 0.8), (1.3, 1.0, 0.4))):
        fields[0, c] = (bg[c] * illum * tex * (1.0 - kv * base_v) * (1.0 - kd * dark)
                        * (1.0 + kg * glow))
    fields[0, 3] = illum * (1.0 - 0.6 * base_v)
    if Sl != S:
        fields = F.interpolate(fields, size=(S, S), mode="bilinear", align_corners=False)
    img = fields[0, :3].contiguous()
    light = fields[0, 3]

    # ---- optic disc and cup, on a window around the disc
    rx, ry = r_od * R, r_od * od_elong * R
    ocx, ocy = cx + s * od[0] * R, cy + od[1] * R
    x0, x1 = max(0, int(ocx - rx - 3)), min(S, int(ocx + rx + 4))
    y0, y1 = max(0, int(ocy - ry - 3)), min(S, int(ocy + ry + 4))
    if x1 > x0 and y1 > y0:
        wx = torch.arange(x0, x1, dtype=torch.float32).view(1, -1)
        wy = torch.arange(y0, y1, dtype=torch.float32).view(-1, 1)
        dy2 = ((wy - ocy) / od_elong) ** 2
        od_d = ((wx - ocx) ** 2 + dy2).sqrt()
        disc = ((rx - od_d) / 1.5 + 0.5).clamp(0, 1) * od_str
        ccx = ocx - s * cup_off * rx * (1 - cup_frac)
        cup_d = ((wx - ccx) ** 2 + dy2).sqrt()
        cup = ((cup_frac * rx - cup_d) / (0.25 * cup_frac * rx + 1) + 0.5).clamp(0, 1) * cup_str
        win = img[:, y0:y1, x0:x1]
        lw = light[y0:y1, x0:x1]
        for c in range(3):
            win[c] = win[c] * (1 - disc) + od_col[c] * lw * disc
            win[c] = win[c] * (1 - cup) + (1.0, 0.92, 0.7)[c] * lw * cup

    # ---- vessels and lesions: patch rasterisation into canvases
    red_l, yellow_l, cws_l, nv_l, beads_l, counts = _lesions(seed, idx, grade, geo, branches, R)
    canv = torch.zeros(7, S * S + 1)
    _draw_segments(canv[_VEIN], S, _seg_to_px(_tree_segments(branches, "vein"), R, cx, cy, s))
    _draw_segments(canv[_ART], S, _seg_to_px(_tree_segments(branches, "artery"), R, cx, cy, s))
    _draw_segments(canv[_BEAD], S, _to_px(beads_l, "seg", R, cx, cy, s))
    _draw_segments(canv[_NV], S, _to_px(nv_l, "seg", R, cx, cy, s))
    _draw_ellipses(canv[_RED], S, _to_px(red_l, "ell", R, cx, cy, s))
    _draw_ellipses(canv[_YELLOW], S, _to_px(yellow_l, "ell", R, cx, cy, s))
    _draw_ellipses(canv[_CWS], S, _to_px(cws_l, "ell", R, cx, cy, s))
    cv = canv[:, :-1]
    # absorbing structures: img *= prod_k (1 - k_kc * a_k) ~ exp(-sum_k K_kc a_k)
    k_red = (0.55, 0.78, 0.7)
    k_nv = (0.4, 0.65, 0.55)
    kmat = torch.tensor([k_vein, k_art, k_red, k_nv, k_vein], dtype=torch.float32)  # (5,3)
    kmat = -torch.log1p(-kmat)
    img *= torch.exp(-(kmat.t() @ cv[:_YELLOW])).view(3, S, S)
    # scattering structures: blend towards their colour under the local illumination
    for k, col, gain in ((_CWS, (0.97, 0.9, 0.78), 1.05), (_YELLOW, (1.0, 0.88, 0.4), 1.15)):
        if counts["cws" if k == _CWS else "exu"]:
            a = cv[k].view(S, S)
            for c in range(3):
                img[c] += a * (col[c] * gain * light - img[c])
    # sensor noise, frame, quantisation
    Yf = (torch.arange(S, dtype=torch.float32) - cy).view(S, 1)
    Xf = (torch.arange(S, dtype=torch.float32) - cx).view(1, S)
    inside = (R - (Xf * Xf + Yf * Yf).sqrt() + 0.5).clamp_(0, 1)
    if top > -1.5:
        inside *= ((Yf - top * R) + 0.5).clamp(0, 1) * ((bot * R - Yf) + 0.5).clamp(0, 1)
    noise = torch.randn(1, S, S, generator=G)
    img += noise * torch.tensor([0.8 * noise_sigma, noise_sigma, 1.2 * noise_sigma]).view(3, 1, 1)
    img = img.clamp_(0, 1).mul_(inside * 255.0).round_().to(torch.uint8)
    lesion = cv[_RED:].amax(0).view(S, S)
    mask = (lesion > 0.3) & (inside > 0.5)
    return img, mask.unsqueeze(0), R, (cx, cy), counts


@contextlib.contextmanager
def _one_thread():
    """Render with one intra-op thread, restoring the caller's setting afterwards.

    Rendering is hundreds of small tensor ops: a second OpenMP thread gains little on an idle
    machine and, on a busy shared one, costs 10-50x (threads spin-waiting for each other).
    """
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _check_size(size: int) -> int:
    if not isinstance(size, int) or isinstance(size, bool) or size < MIN_SIZE:
        raise RBFError(f"size must be an integer >= {MIN_SIZE} pixels, got {size!r}")
    return size


def make_synthetic(n: int, size: int, seed: int = 0, prior: Sequence[float] = EYEPACS_PRIOR,
                   start: int = 0, grades: Sequence[int] | torch.Tensor | None = None
                   ) -> SynthBatch:
    """Render ``n`` synthetic fundus photographs ``start .. start+n-1`` of ``size x size`` pixels.

    Sample ``i`` depends only on ``(seed, start + i)`` (and its grade): any slicing of the index
    range gives the same images. ``grades`` (length ``n``, values 0-4) overrides the grades drawn
    from ``prior``; the eye (anatomy, colours, vessels) stays the same, only the lesions change.
    """
    if not isinstance(n, int) or n < 0:
        raise RBFError(f"n must be a non-negative integer, got {n!r}")
    size = _check_size(size)
    if grades is None:
        g = synthetic_grades(n, seed, prior, start)
    else:
        _check_prior(prior)
        g = torch.as_tensor(grades, dtype=torch.long).reshape(-1)
        if g.numel() != n or (g.numel() and (g.min() < 0 or g.max() > 4)):
            raise RBFError(f"grades must hold {n} values in 0-4, got {g.tolist()[:10]}")
    images = torch.zeros(n, 3, size, size, dtype=torch.uint8)
    masks = torch.zeros(n, 1, size, size, dtype=torch.bool)
    radius = torch.zeros(n)
    center = torch.zeros(n, 2)
    counts = []
    with _one_thread():
        for i in range(n):
            img, m, R, c, cnt = _render(int(seed), start + i, int(g[i]), size)
            images[i], masks[i], radius[i] = img, m, R
            center[i] = torch.tensor(c)
            counts.append(cnt)
    ids = [synthetic_id(start + i) for i in range(n)]
    return SynthBatch(images, g, masks, ids, radius, center, counts)


class SyntheticDataset(Dataset):
    """``n`` synthetic images rendered on demand (nothing held in memory).

    Items are the same dicts as :class:`~robustbench_fundus.data.dataset.FundusDataset`'s
    (``image`` uint8 (3,S,S), ``label`` int, ``index`` int, ``id`` str) plus ``lesion_mask`` bool
    (1,S,S). ``labels`` gives all grades without rendering (for class weights, stratification).
    """

    def __init__(self, n: int, size: int, seed: int = 0,
                 prior: Sequence[float] = EYEPACS_PRIOR, start: int = 0,
                 grades: Sequence[int] | torch.Tensor | None = None) -> None:
        if not isinstance(n, int) or n < 0:
            raise RBFError(f"n must be a non-negative integer, got {n!r}")
        self.n, self.size, self.seed, self.start = n, _check_size(size), int(seed), start
        self.prior = _check_prior(prior)
        if grades is None:
            self._grades = synthetic_grades(n, self.seed, self.prior, start)
        else:
            self._grades = torch.as_tensor(grades, dtype=torch.long).reshape(-1)
            if self._grades.numel() != n or (n and (self._grades.min() < 0
                                                    or self._grades.max() > 4)):
                raise RBFError(f"grades must hold {n} values in 0-4")

    @property
    def labels(self) -> list[int]:
        return self._grades.tolist()

    @property
    def ids(self) -> list[str]:
        return [synthetic_id(self.start + i) for i in range(self.n)]

    def fingerprint(self, indices: Sequence[int] | None = None) -> str:
        """A short hash of what the images are: generator seed, size, prior, first index and
        grades (of ``indices``, default all): two sets with equal fingerprints render equal."""
        from ..seeding import derive_seed as _ds
        idx = list(range(self.n)) if indices is None else [int(i) for i in indices]
        g = self._grades.tolist()
        return "%016x" % _ds("synthetic", self.seed, self.size, tuple(round(p, 12) for p in
                                                                   self.prior), self.start,
                              tuple(idx), tuple(g[i] for i in idx))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(i)
        g = int(self._grades[i])
        with _one_thread():
            img, m, _, _, _ = _render(self.seed, self.start + i, g, self.size)
        return dict(image=img, label=g, index=i, id=synthetic_id(self.start + i), lesion_mask=m)


def write_synthetic(out: str | Path, n: int, size: int, seed: int = 0,
                    prior: Sequence[float] = EYEPACS_PRIOR, chunk: int = 32) -> Path:
    """Write a Kaggle/EyePACS-layout folder of ``n`` synthetic images; returns ``out``.

    ``out/trainLabels.csv`` (columns ``image,level``; ids ``synth_000000``...),
    ``out/train/<image>.jpeg`` (JPEG quality 95, 4:4:4, no metadata) and ``out/masks/<image>.png``
    (lesion mask, 8-bit 0/255). The bytes depend only on the arguments: the same call twice gives
    identical files.
    """
    from PIL import Image

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RBFError(f"--out {out} exists and is not a folder; choose another path")
    if not isinstance(n, int) or n < 1:
        raise RBFError(f"n must be a positive integer, got {n!r}")
    _check_size(size)
    prior = _check_prior(prior)
    (out / "train").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rows = []
    for s0 in range(0, n, chunk):
        b = make_synthetic(min(chunk, n - s0), size, seed, prior, start=s0)
        for i, iid in enumerate(b.ids):
            arr = b.images[i].permute(1, 2, 0).contiguous().numpy()
            _atomic_write(out / "train" / f"{iid}.jpeg",
                          _encode(Image.fromarray(arr, "RGB"), "JPEG", quality=95, subsampling=0))
            m = (b.lesion_masks[i, 0].numpy().astype("uint8") * 255)
            _atomic_write(out / "masks" / f"{iid}.png", _encode(Image.fromarray(m, "L"), "PNG"))
            rows.append((iid, int(b.grades[i])))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["image", "level"])
    w.writerows(rows)
    _atomic_write(out / "trainLabels.csv", buf.getvalue().encode("utf-8"))
    return out


def _encode(im, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, optimize=False, **kw)
    return buf.getvalue()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
