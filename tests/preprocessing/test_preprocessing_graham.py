"""Graham output: range, grey surround, high-pass, no dark line along a frame cut."""
from __future__ import annotations

import importlib

import pytest
import torch

from _datastage_helpers import disc_image
from robustbench_fundus.preprocessing import crop_resize, estimate_geometry, graham


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


@pytest.mark.parametrize("erode", [None, 0])
def test_graham_no_dark_line_along_frame_cut(erode, monkeypatch):
    """A disc cut at top and bottom: after crop + Graham the rows along the cut are not dark."""
    gmod = importlib.import_module("robustbench_fundus.preprocessing.graham")

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


def _reference_graham(x: torch.Tensor) -> torch.Tensor:
    """Graham as the grouped 2-D depthwise convolution of the first version (the formula of the
    module docstring, evaluated directly): what the banded, decimated blur must match."""
    import torch.nn.functional as F

    gmod = importlib.import_module("robustbench_fundus.preprocessing.graham")
    geom = estimate_geometry(x)
    sigma = geom.radius.float() / gmod.SIGMA_DIVISOR
    m = geom.mask.float()
    k = 2 * gmod.EDGE_ERODE + 1
    m = 1.0 - F.max_pool2d(1.0 - m, kernel_size=k, stride=1, padding=gmod.EDGE_ERODE)
    num = gmod.gaussian_blur(torch.cat([x * m, m], dim=1), sigma)
    blurred = num[:, :3] / num[:, 3:].clamp_min(1e-4)
    out = (4.0 * x - 4.0 * blurred + 0.5).clamp(0.0, 1.0)
    inside = (geom.distance() <= gmod.RIM_FRACTION) & (m > 0.5)
    return torch.where(inside, out, torch.full_like(out, 0.5)), inside


@pytest.mark.parametrize("size", [64, 256, 512])
def test_graham_within_one_grey_level_of_the_direct_convolution(size):
    """Exact path (small sigma) and decimated path (sigma >= 3): inside the mask the result is
    within one 8-bit grey level of the direct convolution; the surround is identical."""
    c = (size - 1) / 2
    x = torch.stack([disc_image(size, size, c, c, size * r, seed=s)
                     for s, r in ((0, 0.47), (1, 0.40))]).float() / 255
    ref, inside = _reference_graham(x)
    got = graham(x)
    diff = (got - ref).abs()
    assert diff[inside.expand_as(diff)].max().item() <= 1.0 / 255
    assert torch.equal(got[~inside.expand_as(got)], ref[~inside.expand_as(ref)])


def test_graham_of_a_sample_does_not_depend_on_its_batch():
    x = torch.stack([disc_image(256, 256, 127.5, 127.5, 120.0 - 10 * s, seed=s)
                     for s in range(3)]).float() / 255
    whole = graham(x)
    for i in range(3):
        assert torch.equal(whole[i:i + 1], graham(x[i:i + 1]))


@pytest.mark.parametrize("size", [64, 256])
def test_graham_direct_is_the_reference_definition(size):
    """graham_direct (per-sample truncation) agrees with this file's independent reference (the
    batch's longest kernel for every sample) to well within a grey level, and the fast graham
    stays within one grey level of it inside the mask, identical outside."""
    from robustbench_fundus.preprocessing import graham_direct

    c = (size - 1) / 2
    x = torch.stack([disc_image(size, size, c, c, size * r, seed=s)
                     for s, r in ((0, 0.47), (1, 0.40))]).float() / 255
    ref, inside = _reference_graham(x)
    direct = graham_direct(x)
    assert (direct - ref).abs().max().item() <= 0.25 / 255
    fast = graham(x)
    ins = inside.expand_as(fast)
    assert (fast - direct).abs()[ins].max().item() <= 1.0 / 255
    assert torch.equal(fast[~ins], direct[~ins])


def test_graham_within_one_grey_level_on_real_photographs(real_data_dir):
    from robustbench_fundus.data import load_working, read_records
    from robustbench_fundus.preprocessing import graham_direct

    recs = read_records(real_data_dir).records[::75]
    x = torch.stack([load_working(r.path, 512, cache_dir=False) for r in recs]).float() / 255
    g = estimate_geometry(x)
    fast, direct = graham(x, g), graham_direct(x, g)
    d = (fast - direct).abs()
    assert d.max().item() <= 1.0 / 255
    outside = (g.distance() > 0.9).expand_as(fast)       # the grey surround, in both exactly
    assert bool((fast[outside] == 0.5).all()) and bool((direct[outside] == 0.5).all())


@pytest.mark.parametrize("n", [9, 10, 17, 64])
@pytest.mark.parametrize("dim", [0, 3])
def test_interpolation_back_from_the_decimated_positions(n, dim):
    """Pixel p lies between the decimated positions 2i - 1.5: p = 2i gets v[i]/4 + 3v[i+1]/4,
    p = 2i + 1 gets 3v[i+1]/4 + v[i+2]/4 (the linear interpolation, written out)."""
    gmod = importlib.import_module("robustbench_fundus.preprocessing.graham")
    shape = [5, 2, 4, 7]
    shape[dim] = n // 2 + 2
    v = torch.randn(*shape, generator=torch.Generator().manual_seed(n))
    out_shape = list(shape)
    out_shape[dim] = n
    out = torch.full(out_shape, float("nan"))
    gmod._interpolate(v, out, dim)
    pos = 2 * torch.arange(n // 2 + 2, dtype=torch.float64) - 1.5
    vm = v.movedim(dim, -1).double()
    for p in range(n):
        i = int(torch.searchsorted(pos, torch.tensor(float(p)))) - 1   # pos[i] < p < pos[i+1]
        t = (p - pos[i]) / 2
        want = (1 - t) * vm[..., i] + t * vm[..., i + 1]
        torch.testing.assert_close(out.movedim(dim, -1)[..., p].double(), want, atol=1e-6,
                                   rtol=0)
