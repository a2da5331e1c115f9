"""RunOptions(amp="bf16", channels_last=True): recorded with every row, and a bf16 run is its
own leaderboard entry (its forwards read the weights differently)."""
from __future__ import annotations

import pytest

from _bench_helpers import tiny_model
from robustbench_fundus import evaluate
from robustbench_fundus.bench import DataOptions, RunOptions
from robustbench_fundus.bench.store import ResultStore
from robustbench_fundus.errors import RBFError


def test_precision_is_recorded_and_bf16_is_its_own_entry(tmp_path):
    model = tiny_model()
    kw = dict(corruptions="motion_blur", severities="4", attack="pgd", eps="1/255", steps=2,
              data_options=DataOptions(size=32), store=tmp_path / "r.sqlite")
    a = evaluate(model, "synthetic:6", run=RunOptions(), **kw)
    b = evaluate(model, "synthetic:6", run=RunOptions(amp="bf16", channels_last=True), **kw)
    assert a.provenance["precision"] == {"forward": "float32", "channels_last": False}
    assert b.provenance["precision"] == {"forward": "bf16-autocast", "channels_last": True}
    assert a.model["sha256"] != b.model["sha256"]
    assert b.provenance["conditions_from_store"] == 0        # nothing of the fp32 run reused
    st = ResultStore(tmp_path / "r.sqlite")
    try:
        rows = st.results()
    finally:
        st.close()
    by = {(r["model_sha256"], r["condition"]): r for r in rows}
    assert len(by) == 2 * 3
    for (sha, _), r in by.items():
        want = "bf16-autocast" if sha == b.model["sha256"] else "float32"
        assert r["precision"]["forward"] == want
    # float32 with channels-last changes no count
    c = evaluate(model, "synthetic:6", run=RunOptions(channels_last=True),
                 **{**kw, "store": None})
    assert c.clean.confusion == a.clean.confusion
    assert [x.n_broken for x in c.attacks] == [x.n_broken for x in a.attacks]


def test_bad_amp_is_a_one_line_error():
    with pytest.raises(RBFError, match="amp 'fp16'"):
        RunOptions(amp="fp16")
