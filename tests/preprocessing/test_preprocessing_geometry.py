"""Geometry on drawn discs of known radius, plausibility on real photographs, the working crop."""
from __future__ import annotations

import pytest
import torch

from _datastage_helpers import disc_image
from robustbench_fundus.data import load_image, read_records, working_crop
from robustbench_fundus.preprocessing import Preprocessing, crop_resize, estimate_geometry

# (H, W, cx, cy, r): full, off-centre, cut top and bottom, cut and off-centre, small disc
CASES = [
    (96, 96, 47.5, 47.5, 40.0),
    (96, 128, 70.0, 52.0, 36.0),
    (64, 96, 47.5, 31.5, 44.0),     # cut at top and bottom (2R = 88 > H = 64)
    (72, 120, 52.0, 36.0, 50.0),    # cut top/bottom and off-centre horizontally
    (80, 80, 30.0, 45.0, 22.0),     # small, off-centre both ways
]


@pytest.mark.parametrize("h,w,cx,cy,r", CASES)
@pytest.mark.parametrize("dim_rim", [True, False])
def test_known_radius_and_centre(h, w, cx, cy, r, dim_rim):
    x = disc_image(h, w, cx, cy, r, seed=1, dim_rim=dim_rim)[None].float() / 255
    g = estimate_geometry(x)
    assert abs(g.radius.item() - r) / r < 0.03
    assert abs(g.center[0, 0].item() - cx) < 0.03 * r
    if 2 * r < h:  # vertical centre only identifiable from the widest rows
        assert abs(g.center[0, 1].item() - cy) < 0.03 * r
    else:
        assert abs(g.center[0, 1].item() - cy) < 0.08 * r
    # mask agrees with the drawn disc
    drawn = (x.amax(1, keepdim=True) > 0).float()
    iou = (g.mask * drawn).sum() / ((g.mask + drawn) > 0).float().sum()
    assert iou > 0.95


def test_batched_equals_single():
    imgs = torch.stack([disc_image(64, 96, 47.5, 31.5, 40.0, seed=0),
                        disc_image(64, 96, 40.0, 30.0, 25.0, seed=1)]).float() / 255
    gb = estimate_geometry(imgs)
    for i in range(2):
        gi = estimate_geometry(imgs[i:i + 1])
        assert torch.allclose(gb.radius[i], gi.radius[0]) and torch.allclose(gb.center[i], gi.center[0])


def test_crop_resize_puts_disc_at_working_radius():
    x = disc_image(72, 120, 52.0, 36.0, 50.0, seed=2)[None].float() / 255
    crop = crop_resize(x, estimate_geometry(x), 64)
    assert crop.shape == (1, 3, 64, 64) and 0 <= crop.min() and crop.max() <= 1
    g2 = estimate_geometry(crop)
    assert abs(g2.radius.item() - 32) / 32 < 0.04
    assert abs(g2.center[0, 0].item() - 31.5) < 1.5
    # uint8 helper used by the cache gives the same thing
    u = working_crop((x[0] * 255).round().to(torch.uint8), 64)
    assert u.dtype == torch.uint8 and (u.float() / 255 - crop[0]).abs().max() < 0.01


def test_stage_working_crop_is_geometry_then_crop():
    """working_crop = estimate_geometry + crop_resize, for uint8 and float, (3,H,W) and batches;
    the cache's uint8 crop is it at 8 bits; a given geometry crops other planes alike."""
    u = torch.stack([disc_image(72, 120, 52.0, 36.0, 50.0, seed=2),
                     disc_image(72, 120, 60.0, 38.0, 44.0, seed=3)])
    x = u.float() / 255
    pre = Preprocessing(margin=1.1)
    ref = crop_resize(x, estimate_geometry(x), 48, margin=1.1)
    assert torch.equal(pre.working_crop(u, 48), ref)
    assert torch.equal(pre.working_crop(x, 48), ref)
    assert torch.equal(pre.working_crop(u[1], 48), ref[1:])
    cached = working_crop(u[1], 48, margin=1.1)
    assert torch.equal(cached, ref[1].mul(255).round().clamp(0, 255).to(torch.uint8))
    g = estimate_geometry(x)
    plane = (torch.rand(2, 1, 72, 120, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    got = pre.working_crop(plane.expand(-1, 3, -1, -1), 48, geom=g)
    assert torch.equal(got, crop_resize(plane.expand(-1, 3, -1, -1), g, 48, margin=1.1))
    # the stage's geometry of a crop is estimate_geometry's
    gs, ge = pre.geometry(ref), estimate_geometry(ref)
    assert torch.equal(gs.mask, ge.mask) and torch.equal(gs.radius, ge.radius)


def test_real_photographs_plausible(real_data_dir):
    """Every real photograph: radius within a sensible band, centre near the frame centre."""
    rs = read_records(real_data_dir)
    assert len(rs) == 596
    bad = []
    recs = rs.records
    for i in range(0, len(recs), 32):  # batched (all 765x512): few, large tensor ops
        chunk = recs[i:i + 32]
        imgs = [load_image(r.path) for r in chunk]
        sizes = {tuple(x.shape) for x in imgs}
        batches = [torch.stack(imgs)] if len(sizes) == 1 else [x[None] for x in imgs]
        geoms = [estimate_geometry(b.float() / 255) for b in batches]
        rad = torch.cat([g.radius for g in geoms])
        cen = torch.cat([g.center for g in geoms])
        cover = torch.cat([g.mask.mean((1, 2, 3)) for g in geoms])
        for r, x, rr, (cx, cy), cv in zip(chunk, imgs, rad.tolist(), cen.tolist(), cover.tolist()):
            H, W = x.shape[1:]
            ok = (0.45 * H <= rr <= 0.5 * W + 1 and abs(cx - (W - 1) / 2) < 0.1 * W
                  and abs(cy - (H - 1) / 2) < 0.1 * H and cv > 0.5)
            if not ok:
                bad.append((r.image_id, rr, cx, cy))
    assert not bad, bad[:10]
