"""Fixtures for the attack tests: a toy 5-class model trained once per session (weights cached
under pytest's tmp dir, never in the repository) and held-out toy images."""
from __future__ import annotations

import pytest
import torch

from _attack_toy import ToyNet, make_toy, train_toy


@pytest.fixture(scope="session")
def toy_model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("attack_toy") / "toy.pt"
    torch.save(train_toy(seed=0).state_dict(), path)
    return path


@pytest.fixture
def toy_model(toy_model_path):
    """A fresh copy for each test (tests change its mode)."""
    m = ToyNet()
    m.load_state_dict(torch.load(toy_model_path, weights_only=True))
    return m.eval()


@pytest.fixture(scope="session")
def toy_data():
    return make_toy(200, 32, seed=99)


@pytest.fixture
def small_batch(toy_data):
    x, y = toy_data
    return x[:16].clone(), y[:16].clone()
