"""Deviation from the clean image (masked RMSE) rises strictly with severity, for each fundus
corruption, on every real photograph of fundus-real and on synthetic ones."""
from __future__ import annotations

import csv

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from _corruption_helpers import fundus_like
from robustbench_fundus.corruptions import FUNDUS_CORRUPTIONS, get_corruption, masked_rmse
from robustbench_fundus.data.geometry import estimate_geometry

WORKING = 128  # px: small enough for all 596 photographs in a test, large enough for detail


def deviations(x: torch.Tensor, name: str, seed: int = 0) -> torch.Tensor:
    """(B, 5) masked RMSE against the clean image at severities 0..4, in batches."""
    c = get_corruption(name)
    out = []
    for i in range(0, len(x), 64):
        xb = x[i:i + 64]
        g = estimate_geometry(xb)
        ids = torch.arange(i, i + len(xb))
        out.append(torch.stack([masked_rmse(c(xb, s, seed=seed, sample_ids=ids, geom=g), xb, g.mask)
                                for s in range(c.max_severity + 1)], dim=1))
    return torch.cat(out)


def assert_strictly_rising(dev: torch.Tensor, name: str, labels=None):
    steps = dev.diff(dim=1)
    bad = (steps <= 0).any(dim=1).nonzero().flatten().tolist()
    where = [labels[i] if labels else i for i in bad[:5]]
    assert not bad, (f"{name}: deviation not strictly rising for {len(bad)} image(s), e.g. "
                     f"{where}: {dev[bad[:3]].tolist()}")


@pytest.fixture(scope="module")
def real_working(real_data_dir):
    """All real photographs at the working size (through the data stage's cache when present)."""
    rows = list(csv.DictReader(open(real_data_dir / "labels.csv", newline="")))
    paths = [real_data_dir / "images" / r["image"] for r in rows]
    try:
        from robustbench_fundus.data.cache import load_working
        imgs = [load_working(p, WORKING) for p in paths]
        x = torch.stack(imgs).float() / 255.0
    except ImportError:  # pragma: no cover - before the data stage landed
        from robustbench_fundus.data.geometry import crop_resize
        from robustbench_fundus.data.io import load_image
        parts = []
        for p in paths:
            u = load_image(p, min_size=WORKING).float().unsqueeze(0) / 255.0
            parts.append(crop_resize(u, estimate_geometry(u), WORKING))
        x = torch.round(torch.cat(parts) * 255) / 255
    return x, [p.name for p in paths]


@pytest.mark.slow
@pytest.mark.parametrize("name", FUNDUS_CORRUPTIONS)
def test_rising_on_every_real_photograph(real_working, name):
    x, labels = real_working
    assert len(x) == 596
    assert_strictly_rising(deviations(x, name), name, labels)


@pytest.fixture(scope="module")
def synthetic_working():
    from robustbench_fundus.data.synth import make_synthetic
    return make_synthetic(4, 96, seed=11).images.float() / 255.0


@pytest.mark.parametrize("name", FUNDUS_CORRUPTIONS)
def test_rising_on_generated_fundus_images(synthetic_working, name):
    assert_strictly_rising(deviations(synthetic_working, name), name)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**20), size=st.sampled_from([48, 64, 96]), cut=st.booleans())
def test_rising_on_random_synthetic_images(seed, size, cut):
    x = fundus_like(3, size, int(size * 1.25) if cut else size, seed=seed, cut=cut)
    for name in FUNDUS_CORRUPTIONS:
        assert_strictly_rising(deviations(x, name, seed=seed), name)
