"""The report's time budget: seconds per stage of the flow, summing to the run's total, and the
pipeline efficiency (model time / total)."""
from __future__ import annotations

import time

import pytest
from torch import nn

from robustbench_fundus import evaluate
from robustbench_fundus.bench import DataOptions
from robustbench_fundus.bench.budget import MODEL_STAGES, STAGES, StageClock


def test_nested_stages_charge_the_innermost_only():
    clock = StageClock("cpu")
    with clock("attack"):
        time.sleep(0.02)
        with clock("model_forward"):
            time.sleep(0.05)
        time.sleep(0.02)
    s = clock.seconds
    assert 0.05 <= s["model_forward"] < 0.09
    assert 0.04 <= s["attack"] < 0.08          # the inner 0.05 s is not counted twice
    b = clock.budget(total_s=0.2)
    assert b["stages_s"]["other"] == pytest.approx(0.2 - s["attack"] - s["model_forward"],
                                                   abs=1e-3)
    assert b["pipeline_efficiency"] == pytest.approx((s["attack"] + s["model_forward"]) / 0.2,
                                                     abs=1e-3)
    with pytest.raises(KeyError, match="unknown stage"):
        with clock("decoding"):
            pass


class SlowModel(nn.Module):
    """A 5-logit model whose forward takes at least 30 ms: the budget must charge that time
    to the model."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 5)

    def forward(self, x):
        time.sleep(0.03)
        return self.lin(x.mean(dim=(2, 3)))


@pytest.mark.parametrize("kind", ["corruptions", "attack"])
def test_the_budget_adds_up_and_charges_the_model(kind):
    opts = dict(corruptions="motion_blur", severities="4", attack="none") \
        if kind == "corruptions" else dict(corruptions="none", attack="pgd", eps="1/255",
                                           steps=3)
    rep = evaluate(SlowModel(), "synthetic:8", data_options=DataOptions(size=32),
                   **opts)
    t = rep.provenance["timings"]
    assert list(t["stages_s"]) == list(STAGES)
    assert sum(t["stages_s"].values()) == pytest.approx(t["total_s"], abs=0.01)
    assert sum(t["shares"].values()) == pytest.approx(1.0, abs=0.01)
    model_s = sum(t["stages_s"][k] for k in MODEL_STAGES)
    assert t["pipeline_efficiency"] == pytest.approx(model_s / t["total_s"], abs=0.01)
    n_fwd = 2 if kind == "corruptions" else 1        # clean + corrupted; clean (attack: below)
    assert t["stages_s"]["model_forward"] >= 0.03 * n_fwd * 0.9
    if kind == "corruptions":
        assert t["stages_s"]["corruption"] > 0 and t["stages_s"]["attack"] == 0
    else:
        # at least one 30 ms forward (the attack stops once every image is broken), all
        # charged to the attack
        assert t["stages_s"]["attack"] >= 0.03 * 0.9 and t["stages_s"]["corruption"] == 0
    assert t["stages_s"]["preprocessing"] > 0 and t["stages_s"]["decode_geometry"] > 0
