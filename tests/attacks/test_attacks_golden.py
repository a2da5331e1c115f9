"""Golden PGD sweep on a fixed tiny model: per-sample success, the step at which each sample broke
and a pooled summary of the perturbation, so a change in the attack's behaviour shows at once.

Regenerate deliberately with ``RBF_UPDATE_GOLDEN=1 pytest tests/attacks/test_attacks_golden.py``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from robustbench_fundus.attacks import get_attack
from robustbench_fundus.data import make_synthetic
from robustbench_fundus.models import create_model

GOLDEN = Path(__file__).parent / "golden" / "pgd_sweep.json"
EPS = [0.5 / 255, 2 / 255, 8 / 255]


def _run() -> dict:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = create_model("tiny_cnn", input_size=(48, 48)).eval()
    x = make_synthetic(8, 48, seed=3).images.float() / 255
    with torch.no_grad():
        y = model(x).argmax(1)  # the model's own predictions: every sample is attacked
    res = get_attack("pgd", steps=5)(model, x, y, EPS, seed=11)
    out = {"success": res.success.int().tolist(), "broken_at_step": res.broken_at_step.tolist(),
           "delta": []}
    for r in res.per_eps:
        d = (r.x_adv - x).abs().amax(dim=1, keepdim=True)
        out["delta"].append([round(v, 6) for v in F.adaptive_avg_pool2d(d, 2).flatten().tolist()])
    return out


def test_matches_golden():
    got = _run()
    if os.environ.get("RBF_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps(got, indent=1))
        pytest.skip("golden outputs rewritten")
    want = json.loads(GOLDEN.read_text())
    assert got["success"] == want["success"]
    assert got["broken_at_step"] == want["broken_at_step"]
    torch.testing.assert_close(torch.tensor(got["delta"]), torch.tensor(want["delta"]),
                               atol=2e-4, rtol=0)
