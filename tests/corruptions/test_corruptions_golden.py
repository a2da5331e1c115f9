"""Golden outputs: each fundus corruption at a fixed seed on fixed synthetic images, stored as
8x8-pooled tensors, so any change in behaviour (parameters, kernels, seeding) shows at once.

Regenerate deliberately with ``RBF_UPDATE_GOLDEN=1 pytest tests/corruptions/test_corruptions_golden.py``
and say in the commit why the outputs changed.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from robustbench_fundus.corruptions import FUNDUS_CORRUPTIONS, get_corruption
from robustbench_fundus.data import make_synthetic

GOLDEN = Path(__file__).parent / "golden" / "fundus_corruptions.json"
TOL = 1.0 / 255  # one 8-bit level after pooling: platform FFT/rounding differences stay below it


def _outputs() -> dict[str, list]:
    b = make_synthetic(3, 64, seed=7)
    x = b.images.float() / 255
    ids = torch.tensor([11, 12, 13])
    out = {"clean": F.adaptive_avg_pool2d(x, 8).tolist()}
    for name in FUNDUS_CORRUPTIONS:
        c = get_corruption(name)
        for s in (1, 4):
            y = c(x, s, seed=2026, sample_ids=ids)
            out[f"{name}/{s}"] = F.adaptive_avg_pool2d(y, 8).tolist()
    return {k: _round(v) for k, v in out.items()}


def _round(v):
    return [_round(u) for u in v] if isinstance(v, list) else round(v, 5)


def test_matches_golden():
    got = _outputs()
    if os.environ.get("RBF_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps(got))
        pytest.skip("golden outputs rewritten")
    want = json.loads(GOLDEN.read_text())
    assert sorted(got) == sorted(want)
    for key in want:
        diff = (torch.tensor(got[key]) - torch.tensor(want[key])).abs().max().item()
        assert diff <= TOL, f"{key} changed by {diff * 255:.2f} levels (pooled)"
