"""Training augmentation: seeded per sample, batch-independent, in range, no global RNG."""
from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from robustbench_fundus.train import AugmentConfig, augment_batch


def _discs(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    r = ((xx - size / 2 + 0.5) ** 2 + (yy - size / 2 + 0.5) ** 2).sqrt()
    disc = (r < size / 2 - 1).float()
    x = torch.rand(n, 3, size, size, generator=g) * 0.5 + 0.2
    return x * disc


def test_range_shape_and_black_surround():
    x = _discs(6)
    y = augment_batch(x, torch.arange(6), seed=1, epoch=0)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert float(y[:, :, 0, 0].abs().max()) == 0.0  # corners stay black


def test_identity_config_is_identity():
    x = _discs(4)
    y = augment_batch(x, torch.arange(4), seed=0, epoch=3, config=AugmentConfig.none())
    torch.testing.assert_close(y, x, atol=1e-6, rtol=0)


def test_flip_only_flips():
    x = _discs(3)
    cfg = AugmentConfig(hflip=1.0, vflip=0.0, rotation=0.0, scale=(1.0, 1.0), brightness=0.0,
                        contrast=0.0)
    y = augment_batch(x, torch.arange(3), seed=0, epoch=0, config=cfg)
    torch.testing.assert_close(y, x.flip(-1), atol=1e-5, rtol=0)


def test_depends_on_seed_and_epoch():
    x = _discs(4)
    a = augment_batch(x, torch.arange(4), seed=0, epoch=0)
    assert torch.equal(a, augment_batch(x, torch.arange(4), seed=0, epoch=0))
    assert not torch.allclose(a, augment_batch(x, torch.arange(4), seed=0, epoch=1))
    assert not torch.allclose(a, augment_batch(x, torch.arange(4), seed=1, epoch=0))


@settings(max_examples=8, deadline=None)
@given(perm_seed=st.integers(0, 1000), k=st.integers(1, 5))
def test_independent_of_batch_composition(perm_seed, k):
    x = _discs(6, seed=perm_seed)
    draws = torch.arange(100, 106)
    full = augment_batch(x, draws, seed=7, epoch=2)
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(perm_seed))[:k]
    part = augment_batch(x[perm], draws[perm], seed=7, epoch=2)
    torch.testing.assert_close(part, full[perm], atol=1e-5, rtol=0)


def test_global_rng_untouched():
    state = torch.get_rng_state()
    augment_batch(_discs(2), torch.arange(2), seed=0, epoch=0)
    assert torch.equal(state, torch.get_rng_state())
