"""Geometry on drawn discs of known radius, plausibility on real photographs, Graham output."""
from __future__ import annotations

import pytest
import torch

from _datastage_helpers import disc_image
from robustbench_fundus.data import (crop_resize, estimate_geometry, graham, load_image,
                                     read_records, working_crop)

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


def test_graham_range_shape_and_grey_surround():
    x = torch.stack([disc_image(64, 64, 31.5, 31.5, 30.0, seed=s) for s in range(3)]).float() / 255
    y = graham(x)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert y.min() >= 0 and y.max() <= 1
    g = estimate_geometry(x)
    outside = g.distance() > 0.9
    assert torch.all(y.masked_select(outside.expand_as(y)) == 0.5)
    inside = g.distance() < 0.8
    # high-pass: inside the disc the mean is near the 0.5 offset, and texture survives
    v = y.masked_select(inside.expand_as(y))
    assert abs(v.mean().item() - 0.5) < 0.08 and v.std() > 0.02
    # uint8 input accepted; a uniform brightness change is removed
    assert torch.allclose(graham((x * 255).round().to(torch.uint8)), graham(torch.round(x * 255) / 255))
    brighter = graham((x * 1.0 + 0.05).clamp(0, 1), g)
    assert (brighter - graham(x, g)).abs()[inside.expand_as(y)].mean() < 0.02


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


@pytest.mark.parametrize("erode", [None, 0])
def test_graham_no_dark_line_along_frame_cut(erode, monkeypatch):
    """A disc cut at top and bottom: after crop + Graham the rows along the cut are not dark."""
    import importlib

    gmod = importlib.import_module("robustbench_fundus.data.graham")

    if erode is not None:  # the un-eroded mask shows the line: the check can fail
        monkeypatch.setattr(gmod, "EDGE_ERODE", erode)
    x = disc_image(90, 150, 74.5, 44.5, 70.0, seed=5, dim_rim=False)[None].float() / 255
    crop = crop_resize(x, estimate_geometry(x), 61)
    g = estimate_geometry(crop)
    y = graham(crop, g)
    rows = y[0].mean(0)[:, 25:36].mean(1)          # central columns
    inside = (rows != 0.5).nonzero().flatten()
    edge = torch.stack([rows[inside[0]], rows[inside[-1]]])
    worst = (edge - 0.5).abs().max().item()
    if erode is None:
        assert worst < 0.06, rows[inside[0]:inside[0] + 3]
    else:
        assert worst > 0.06
