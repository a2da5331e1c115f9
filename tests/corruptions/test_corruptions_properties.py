"""Properties of the four fundus corruptions (hypothesis): shape/dtype/range, identity at
severity 0, black outside the mask, batch independence, determinism, 8-bit levels."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from _corruption_helpers import fundus_like
from robustbench_fundus.corruptions import FUNDUS_CORRUPTIONS, get_corruption, masked_rmse
from robustbench_fundus.data.geometry import estimate_geometry
from robustbench_fundus.errors import RBFError

SETTINGS = settings(max_examples=8, deadline=None)
sizes = st.sampled_from([(32, 32), (48, 48), (40, 56), (64, 64)])


@pytest.mark.parametrize("name", FUNDUS_CORRUPTIONS)
@SETTINGS
@given(seed=st.integers(0, 2**20), hw=sizes, cut=st.booleans(), data=st.data())
def test_shape_dtype_range_mask(name, seed, hw, cut, data):
    B = data.draw(st.integers(1, 4))
    x = fundus_like(B, *hw, seed=seed, cut=cut)
    c = get_corruption(name)
    sev = torch.tensor(data.draw(st.lists(st.integers(0, c.max_severity), min_size=B, max_size=B)))
    y = c(x, sev, seed=seed)
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    geom = estimate_geometry(x)
    for i in range(B):
        if sev[i] == 0:
            assert torch.equal(y[i], x[i])
        else:
            # outside the fundus mask stays black; inside on 8-bit levels
            assert float((y[i] * (1 - geom.mask[i])).abs().max()) == 0.0
            assert torch.equal(y[i], torch.round(y[i] * 255) / 255)


@pytest.mark.parametrize("name", FUNDUS_CORRUPTIONS)
@SETTINGS
@given(seed=st.integers(0, 2**20), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_severity_zero_is_exact_identity(name, seed, dtype):
    # not quantised, with non-black surround: still returned unchanged
    x = (fundus_like(3, 40, seed=seed, quantised=False) + 0.01).clamp(0, 1).to(dtype)
    y = get_corruption(name)(x, 0, seed=seed)
    assert y.dtype == dtype
    assert torch.equal(y, x)
    assert y.data_ptr() != x.data_ptr()  # a copy: the caller may modify it


@pytest.mark.parametrize("name", FUNDUS_CORRUPTIONS)
@SETTINGS
@given(seed=st.integers(0, 2**20), perm_seed=st.integers(0, 1000), hw=sizes, cut=st.booleans())
def test_same_output_alone_and_in_any_batch(name, seed, perm_seed, hw, cut):
    c = get_corruption(name)
    B = 5
    x = fundus_like(B, *hw, seed=seed, cut=cut)
    ids = torch.tensor([7, 3, 11, 0, 42])
    g = torch.Generator().manual_seed(perm_seed)
    sev = torch.randint(0, c.max_severity + 1, (B,), generator=g)
    batch = c(x, sev, seed=seed, sample_ids=ids)
    perm = torch.randperm(B, generator=g)
    permuted = c(x[perm], sev[perm], seed=seed, sample_ids=ids[perm])
    assert torch.equal(permuted, batch[perm])
    for i in range(B):
        alone = c(x[i:i + 1], int(sev[i]), seed=seed, sample_ids=ids[i:i + 1])
        assert torch.equal(alone, batch[i:i + 1])


@pytest.mark.parametrize("name", FUNDUS_CORRUPTIONS)
@SETTINGS
@given(seed=st.integers(0, 2**20), severity=st.integers(1, 4))
def test_same_seed_same_output(name, seed, severity):
    x = fundus_like(3, 48, seed=seed)
    c = get_corruption(name)
    a = c(x, severity, seed=seed)
    b = get_corruption(name)(x.clone(), severity, seed=seed)
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["light_leakage", "motion_blur"])
def test_nuisance_draws_depend_on_seed_and_sample_id(name):
    c = get_corruption(name)
    x = fundus_like(1, 64, seed=1).expand(3, -1, -1, -1).contiguous()
    y = c(x, 4, seed=0, sample_ids=torch.tensor([0, 1, 0]))
    assert torch.equal(y[0], y[2])
    assert not torch.equal(y[0], y[1])
    assert not torch.equal(c(x[:1], 4, seed=1), y[:1])


@pytest.mark.parametrize("name", FUNDUS_CORRUPTIONS)
def test_geometry_comes_from_the_clean_image(name):
    x = fundus_like(2, 48, seed=3)
    geom = estimate_geometry(x)
    c = get_corruption(name)
    assert torch.equal(c(x, 3, geom=geom), c(x, 3))


def test_resolution_independent_deviation():
    # parameters are fractions of R: the same disc at 64 and 128 px deviates by about as much
    x128 = fundus_like(1, 128, seed=5)
    x64 = torch.nn.functional.avg_pool2d(x128, 2)
    for name in FUNDUS_CORRUPTIONS:
        c = get_corruption(name)
        r = []
        for x in (x64, x128):
            g = estimate_geometry(x)
            r.append(float(masked_rmse(c(x, 3), x, g.mask)))
        assert abs(r[0] - r[1]) < 0.35 * max(r), (name, r)


def test_bad_inputs_raise_rbferror():
    c = get_corruption("motion_blur")
    x = fundus_like(2, 32)
    with pytest.raises(RBFError, match="severity"):
        c(x, 5)
    with pytest.raises(RBFError, match="severity"):
        c(x, -1)
    with pytest.raises(RBFError, match="severities for a batch"):
        c(x, torch.tensor([1, 2, 3]))
    with pytest.raises(RBFError, match="float"):
        c((x * 255).byte(), 1)
    with pytest.raises(RBFError, match="shape"):
        c(x[:, :1], 1)
    with pytest.raises(RBFError, match="sample_ids"):
        c(x, 1, sample_ids=torch.arange(3))


def test_motion_blur_kernel_is_normalised_and_recentred():
    from robustbench_fundus.corruptions.fundus import motion_blur_kernels
    r = torch.tensor([10.0, 15.0, 34.3])
    s = torch.tensor([3.0, 12.0, 27.4])
    a = torch.tensor([0.0, 37.0, 123.0])
    k = motion_blur_kernels(r, s, a, half=50).double()
    assert torch.allclose(k.sum(dim=(1, 2)), torch.ones(3, dtype=torch.float64), atol=1e-5)
    grid = torch.arange(-50, 51, dtype=torch.float64)
    cy = (k.sum(2) * grid).sum(1)
    cx = (k.sum(1) * grid).sum(1)
    assert cx.abs().max() < 1e-4 and cy.abs().max() < 1e-4
    # angle 0: a horizontal line (all weight in the centre row)
    assert float(k[0, 50].sum()) > 0.999


def test_motion_blur_matches_imagenet_c_kernel_on_a_horizontal_line():
    # At D=224 (scale 1), angle 0 and an integer radius our taps are ImageNet-C's: same
    # weights exp(-t^2/2 sigma^2) at t = 0..2r, the blur only recentred.
    from imagecorruptions.corruptions import getMotionBlurKernel
    from robustbench_fundus.corruptions.fundus import _line_taps
    t, w = _line_taps(torch.tensor([15.0]), torch.tensor([8.0]))
    ref = torch.from_numpy(getMotionBlurKernel(31, 8.0))
    assert torch.allclose(w[0], ref, atol=1e-12)
    assert torch.allclose(t[0] - t[0, 0], torch.arange(31, dtype=torch.float64))
