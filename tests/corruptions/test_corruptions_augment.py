"""RandomCorruption: per-sample corruption and severity draws, seeded by (seed, step, id)."""
from __future__ import annotations

import pytest
import torch

from _corruption_helpers import fundus_like
from robustbench_fundus.corruptions import FUNDUS_CORRUPTIONS, RandomCorruption, get_corruption
from robustbench_fundus.errors import RBFError

X = fundus_like(8, 40, seed=4)
IDS = torch.arange(100, 108)


def test_draws_and_application_match_single_corruptions():
    aug = RandomCorruption(FUNDUS_CORRUPTIONS, severities=(1, 4))
    y = aug(X, seed=1, step=3, sample_ids=IDS)
    names, sev = aug.last
    assert set(names) <= set(FUNDUS_CORRUPTIONS) and len(set(names)) > 1
    assert int(sev.min()) >= 1 and int(sev.max()) <= 4
    from robustbench_fundus.seeding import derive_seed
    for i in range(len(X)):
        ref = get_corruption(names[i])(X[i:i + 1], int(sev[i]), seed=derive_seed(1, 3),
                                       sample_ids=IDS[i:i + 1])
        assert torch.equal(y[i:i + 1], ref)


def test_batch_independent_and_reproducible():
    aug = RandomCorruption("*", severities=(1, 3))  # glob: every registered corruption
    fundus_aug = RandomCorruption(FUNDUS_CORRUPTIONS, severities=(2, 2))
    y = fundus_aug(X, seed=0, step=1, sample_ids=IDS)
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(fundus_aug(X[perm], seed=0, step=1, sample_ids=IDS[perm]), y[perm])
    assert torch.equal(fundus_aug(X[2:3], seed=0, step=1, sample_ids=IDS[2:3]), y[2:3])
    assert torch.equal(fundus_aug(X, seed=0, step=1, sample_ids=IDS), y)
    assert not torch.equal(fundus_aug(X, seed=0, step=2, sample_ids=IDS), y)
    assert len(aug.names) == len(set(aug.names)) > 4


def test_probability_and_errors():
    aug = RandomCorruption(["motion_blur"], severities=(1, 4), p=0.0)
    assert torch.equal(aug(X, seed=0), X)
    which, sev = RandomCorruption(["motion_blur"], p=0.5).draw(torch.arange(400))
    assert 120 < int((which >= 0).sum()) < 280 and int(sev[which < 0].abs().sum()) == 0
    with pytest.raises(RBFError):
        RandomCorruption(["no_such_*"])
    with pytest.raises(RBFError):
        RandomCorruption(["motion_blur"], severities=(3, 1))
    with pytest.raises(RBFError):
        RandomCorruption(["no_such_corruption"])


def test_severity_range_clamped_per_corruption():
    aug = RandomCorruption(["motion_blur", "imagenet_c/contrast"], severities=(5, 5))
    which, sev = aug.draw(torch.arange(50))
    assert set(sev[which == 0].tolist()) <= {4} and set(sev[which == 1].tolist()) <= {5}
