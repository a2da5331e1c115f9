"""The ImageNet-C adapter: all 19 run through our interface, seeded per sample, global NumPy
state untouched."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from _corruption_helpers import fundus_like
from robustbench_fundus.corruptions import IMAGENET_C_CORRUPTIONS, get_corruption
from robustbench_fundus.data.geometry import estimate_geometry

X = fundus_like(2, 40, seed=2)


@pytest.mark.parametrize("name", IMAGENET_C_CORRUPTIONS)
def test_runs_seeded_and_restores_numpy_state(name):
    c = get_corruption(name)
    np.random.seed(1234)
    state = np.random.get_state()
    y = c(X, torch.tensor([1, 5]), seed=3, sample_ids=torch.tensor([4, 9]))
    after = np.random.get_state()
    assert after[0] == state[0] and np.array_equal(after[1], state[1]) and after[2:] == state[2:]
    assert y.shape == X.shape and y.dtype == X.dtype
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    m = estimate_geometry(X).mask
    assert float((y * (1 - m)).abs().max()) == 0.0
    # same seed and ids: same output, alone or in the batch
    y2 = c(X[1:], 5, seed=3, sample_ids=torch.tensor([9]))
    assert torch.equal(y2, y[1:])
    assert torch.equal(c(X, 0), X)


def test_seed_changes_random_corruptions():
    c = get_corruption("imagenet_c/gaussian_noise")
    a = c(X, 3, seed=0)
    assert not torch.equal(a, c(X, 3, seed=1))
    # the draws follow the sample id, not the position in the batch
    assert torch.equal(a[0], c(X[:1], 3, seed=0, sample_ids=torch.tensor([0]))[0])
    assert not torch.equal(a[:1], c(X[:1], 3, seed=0, sample_ids=torch.tensor([1])))
