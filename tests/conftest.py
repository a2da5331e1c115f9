"""Shared fixtures. Tests use small images and tiny models; the real photographs in
../shared/data/fundus-real are used where present, and tests needing them skip otherwise."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
REAL_DIR = Path(os.environ.get("RBF_REAL_DATA", REPO.parent / "shared" / "data" / "fundus-real"))

# Several test processes share 2 cores: one thread each keeps them from thrashing.
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    if not (REAL_DIR / "labels.csv").is_file():
        pytest.skip(f"real fundus photographs not found at {REAL_DIR} (set RBF_REAL_DATA)")
    return REAL_DIR
