"""Saliency scores: shares inside masks, deletion curves and their areas, merging batches."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from robustbench_fundus.errors import RBFError
from robustbench_fundus.interpret import (combine_saliency, curve_area, deletion_curve,
                                          deletion_order, leaderboard_columns, mask_share,
                                          saliency_scores)
from robustbench_fundus.models.wrapper import FundusClassifier

S = 24


class Linear(nn.Module):
    """Logit 0 = sum of weights * x over a region; the other logits are constant 0.

    With a black baseline IG is exact: attribution = w * x, so the share inside the region is 1
    and deleting the most attributed pixels first lowers p(class 0) fastest."""

    def __init__(self, region: torch.Tensor):
        super().__init__()
        w = torch.zeros(5, 3, S, S)
        w[0] = region.float() * 0.05
        self.register_buffer("w", w)

    def forward(self, x):
        return torch.einsum("bchw,kchw->bk", x, self.w)


def region_mask() -> torch.Tensor:
    m = torch.zeros(S, S, dtype=torch.bool)
    m[4:12, 6:14] = True
    return m


@pytest.fixture(scope="module")
def linear_model():
    # mean 0 / std 1 so the wrapper passes x through unchanged
    return FundusClassifier(Linear(region_mask()), arch="linear_test", input_size=S,
                            mean=(0, 0, 0), std=(1, 1, 1)).eval()


def images(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.2 + 0.8 * torch.rand(n, 3, S, S, generator=g)


def test_lesion_and_disc_share_on_exact_model(linear_model):
    x = images(3)
    lesion = region_mask().expand(3, 1, S, S).clone()
    lesion[2] = False  # an image without lesions: no share
    half = torch.zeros(3, 1, S, S)
    half[:, :, :, :10] = 1  # covers columns 6-9 of the region's 6-13
    res = saliency_scores(linear_model, x, [0, 0, 0], lesion, half, steps=8)
    ps = res["per_sample"]
    assert np.allclose(ps["lesion_share"][:2], 1.0, atol=1e-5)
    assert math.isnan(ps["lesion_share"][2]) and math.isnan(ps["lesion_area"][2])
    assert res["n_lesion"] == 2 and res["n"] == 3
    assert res["lesion_share"] == pytest.approx(1.0, abs=1e-5)
    assert res["lesion_area"] == pytest.approx(64 / S**2)
    # the disc share is the region's attribution in columns 6-9 over the whole region's
    w = x[:, :, 4:12, 6:14].sum(1)
    expect = (w[:, :, :4].sum((1, 2)) / w.sum((1, 2))).numpy()
    assert np.allclose(ps["disc_share"], expect, atol=1e-5)
    assert res["ig_delta"] < 1e-4  # IG is exact on a linear model
    json.dumps({k: v for k, v in res.items() if k != "per_sample"})  # summary is JSON-able


def test_deletion_curve_on_exact_model(linear_model):
    x = images(2, 1)
    res = saliency_scores(linear_model, x, [0, 0], steps=4, points=11)
    curve = res["per_sample"]["deletion_curve"]
    assert curve.shape == (2, 11)
    assert np.all(np.diff(curve, axis=1) <= 1e-6)  # deleting positive evidence only lowers p
    with torch.no_grad():
        p_clean = torch.softmax(linear_model(x), 1)[:, 0].numpy()
    assert np.allclose(curve[:, 0], p_clean, atol=1e-6)
    assert np.allclose(curve[:, -1], 0.2, atol=1e-6)  # all black: uniform over 5 classes
    # All 64 evidence pixels are gone after 64/576 = 11% of the image: far below random order.
    assert np.allclose(curve[:, 2:], 0.2, atol=1e-6)
    assert res["deletion_auc"] < res["deletion_auc_random"] - 0.1
    assert np.allclose(res["per_sample"]["prob"], p_clean, atol=1e-6)


def test_shares_of_other_class_are_empty(linear_model):
    # class 1's logit is constant: no attribution at all -> shares are NaN, summary None
    res = saliency_scores(linear_model, images(2), [1, 1], region_mask().expand(2, 1, S, S),
                          torch.ones(2, 1, S, S), steps=4)
    assert res["lesion_share"] is None and res["disc_share"] is None
    assert leaderboard_columns(res)["saliency_lesion_share"] is None


def test_mask_share_values():
    heat = torch.tensor([[[1.0, 3.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    m = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]] * 2)
    s = mask_share(heat, m)
    assert s[0] == pytest.approx(0.25) and math.isnan(s[1])
    with pytest.raises(RBFError, match="mask shape"):
        mask_share(heat, torch.ones(2, 3, 3))


def test_deletion_order_breaks_ties_by_index():
    score = torch.tensor([[[0.5, 2.0], [0.5, 1.0]]])
    assert deletion_order(score)[0].tolist() == [[2, 0], [3, 1]]


@settings(max_examples=10, deadline=None)
@given(p=st.lists(st.floats(0, 1), min_size=2, max_size=12))
def test_curve_area_bounds(p):
    probs = torch.tensor([p], dtype=torch.float32)
    fr = torch.linspace(0, 1, len(p))
    a = float(curve_area(fr, probs)[0])
    assert min(p) - 1e-6 <= a <= max(p) + 1e-6
    assert float(curve_area(fr, torch.full_like(probs, 0.3))[0]) == pytest.approx(0.3)


def test_deletion_curve_batching_and_determinism():
    from robustbench_fundus.models.archs import create_model
    model = create_model("tiny_cnn", input_size=S).eval()
    x = images(3, 2)
    score = torch.rand(3, S, S, generator=torch.Generator().manual_seed(0))
    f1, c1 = deletion_curve(model, x, [0, 1, 2], score, "grey", 6, batch_size=4)
    f2, c2 = deletion_curve(model, x, [0, 1, 2], score, "grey", 6, batch_size=100)
    assert torch.allclose(c1, c2, atol=1e-6)
    assert f1.tolist() == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    with torch.no_grad():
        p_grey = torch.softmax(model(torch.full_like(x, 0.5)), 1)
    assert torch.allclose(c1[:, -1], p_grey[torch.arange(3), torch.tensor([0, 1, 2])], atol=1e-5)
    with pytest.raises(RBFError):
        deletion_curve(model, x, [0, 1, 2], score, "grey", 1)


def test_saliency_scores_deterministic_and_combinable():
    from robustbench_fundus.models.archs import create_model
    model = create_model("tiny_cnn", input_size=S).eval()
    x = images(4, 3)
    y = torch.tensor([0, 1, 2, 3])
    fm = torch.ones(4, 1, S, S)
    a = saliency_scores(model, x, y, fundus_masks=fm, steps=6, baseline="noise", seed=5)
    b = saliency_scores(model, x, y, fundus_masks=fm, steps=6, baseline="noise", seed=5)
    for k in ("deletion_auc", "deletion_auc_random", "disc_share", "ig_delta"):
        assert a[k] == b[k]
    assert a["disc_share"] == pytest.approx(1.0)
    parts = [saliency_scores(model, x[i:i + 2], y[i:i + 2], fundus_masks=fm[i:i + 2], steps=6,
                             baseline="noise", seed=5, sample_ids=[i, i + 1]) for i in (0, 2)]
    c = combine_saliency(parts)
    assert c["n"] == 4
    for k in ("deletion_auc", "deletion_auc_random", "disc_share"):
        assert c[k] == pytest.approx(a[k], abs=1e-5), k
    assert c["baseline"] == "noise" and c["steps"] == 6
    cols = leaderboard_columns(c)
    assert set(cols) == {"saliency_lesion_share", "saliency_disc_share", "saliency_deletion_auc",
                         "saliency_n"}
    assert cols["saliency_lesion_share"] is None and cols["saliency_n"] == 4


def test_bad_labels():
    from robustbench_fundus.models.archs import create_model
    model = create_model("tiny_cnn", input_size=S)
    with pytest.raises(RBFError, match="labels"):
        saliency_scores(model, images(2), [0, 1, 2])
    with pytest.raises(RBFError):
        combine_saliency([])


def test_crop_masks_follow_the_image_crop():
    from robustbench_fundus.data.geometry import crop_resize, estimate_geometry
    from robustbench_fundus.data.synth import make_synthetic
    from robustbench_fundus.interpret import crop_masks
    b = make_synthetic(2, 64, seed=3, grades=[3, 0])
    x = b.images.float() / 255
    geom = estimate_geometry(x)
    crop = crop_resize(x, geom, 48)
    disc = crop_masks(geom.mask, geom, 48)
    ref = estimate_geometry(crop).mask > 0.5
    iou = (disc & ref).sum() / (disc | ref).sum()
    assert iou > 0.95
    lesion = crop_masks(b.lesion_masks, geom, 48)
    assert lesion.shape == (2, 1, 48, 48) and lesion.dtype == torch.bool
    assert lesion[0].any() and not lesion[1].any()
    # end to end on synthetic images: shares are defined where there are lesions
    from robustbench_fundus.models.archs import create_model
    model = create_model("tiny_cnn", input_size=48).eval()
    res = saliency_scores(model, crop, b.grades, lesion, disc, steps=4, points=5)
    assert res["n_lesion"] == 1 and 0 <= res["lesion_share"] <= 1
    assert 0 <= res["disc_share"] <= 1 and 0 <= res["deletion_auc"] <= 1
