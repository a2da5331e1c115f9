"""eps at 50% success is only bounded when the smallest eps already reaches 50%: the report says
so (``eps_at_50_success_below_smallest``) and the text and leaderboard show ``<= eps``."""
from __future__ import annotations

from robustbench_fundus import evaluate
from robustbench_fundus.bench.columns import _eps50
from robustbench_fundus.bench.leaderboard import load_entries


def test_eps50_reached_at_the_smallest_eps_is_a_bound(tmp_path):
    store = tmp_path / "r.sqlite"
    rep = evaluate(None, "synthetic:8", corruptions="none", eps="2/255,4/255", steps=3,
                   store=store)
    a = rep.summary["attacks"]["pgd_linf_3"]
    first = min(rep.attacks, key=lambda r: r.eps)
    assert first.success_rate >= 0.5          # the demo model breaks at once on these images
    assert a["eps_at_50_success_below_smallest"] is True
    assert a["eps_at_50_success"] < first.eps  # the interpolated value, below what was measured
    assert "eps at 50% success <= 2/255 (reached at the smallest eps" in rep.summary_table()
    (entry,) = load_entries(str(store))
    assert _eps50(entry) == "<=2/255"


def test_eps50_bracketed_is_the_interpolation(tmp_path):
    rep = evaluate(None, "synthetic:8", corruptions="none", eps="0.05/255,4/255", steps=3)
    a = rep.summary["attacks"]["pgd_linf_3"]
    first = min(rep.attacks, key=lambda r: r.eps)
    assert first.success_rate < 0.5
    assert a["eps_at_50_success_below_smallest"] is False
    assert "reached at the smallest eps" not in rep.summary_table()
