"""Progress that moves: one display over the run's real work (images x conditions, an attack eps
weighted by its steps), advanced after every condition of every batch, with the mean-rate ETA
and the current stage as its label; a tqdm bar on a terminal, plain lines without control codes
elsewhere."""
from __future__ import annotations

import io
import logging

import pytest

from _bench_helpers import StubAttack, tensor_data, tiny_model
from robustbench_fundus import evaluate
from robustbench_fundus.attacks import resolve_attack
from robustbench_fundus.bench import RunOptions, build_conditions, plan as plan_mod
from robustbench_fundus.bench.pipeline import work_units
from robustbench_fundus.bench.progress import Bars, clock_text, plan_units


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


class TTY(io.StringIO):
    def isatty(self):
        return True


def _conds():
    return build_conditions("motion_blur", "2,4", StubAttack(), "1/255,2/255")


def test_plan_units_weights_attack_eps_by_steps():
    conds = build_conditions("motion_blur", "4", resolve_attack("pgd", steps=7), "1/255,2/255")
    assert [work_units(c) for c in conds] == [1, 1, 7, 7]
    # chunks of 10 over 25 images; the last chunk (5 images) misses the attack conditions
    plan = [(0, [0, 1, 2, 3]), (1, [0, 1, 2, 3]), (2, [0, 1])]
    assert plan_units(plan, conds, 10, 25) == 10 * 16 + 10 * 16 + 5 * 2


def test_plain_lines_with_an_honest_eta(caplog):
    caplog.set_level(logging.INFO, logger="robustbench_fundus.progress")
    clock = Clock()
    conds = _conds()
    bars = Bars(True, [(0, list(range(len(conds))))], conds, 100, 40, stream=io.StringIO(),
                interval=5.0, clock=clock)
    assert bars.bar is None and bars.total == 40 * len(conds)  # the stub attack has no steps
    clock.t += 2
    bars.advance(40, "clean")            # before the interval: no line yet
    assert caplog.records == []
    clock.t += 8                         # 10 s for 40 of 200 units
    bars.advance(40, "motion_blur s2")
    assert [r.getMessage() for r in caplog.records] == [
        "rbf bench: 40% (80/200 units) motion_blur s2, 00:15 left"]
    assert bars.eta() == pytest.approx(15.0)
    clock.t += 1
    bars.advance(120, "stub_linf eps=2/255")
    bars.close()
    bars.close()                         # once only
    assert caplog.records[-1].getMessage() == "rbf bench: 100% (200/200 units) done in 00:11"
    assert len(caplog.records) == 2
    assert not any(getattr(r, "rbf_bar", False) for r in caplog.records)


def test_a_terminal_gets_one_tqdm_bar_with_the_stage(caplog):
    caplog.set_level(logging.INFO, logger="robustbench_fundus.progress")
    tty = TTY()
    clock = Clock()
    conds = _conds()
    bars = Bars(True, [(0, list(range(len(conds))))], conds, 100, 10, stream=tty,
                interval=0.0, clock=clock)
    assert bars.bar is not None
    clock.t += 1
    bars.advance(10, "motion_blur s4")
    bars.close()
    text = tty.getvalue()
    assert "rbf bench" in text and "motion_blur s4" in text and "units" in text
    # the lines still reach the logger (for a log file), marked as shown by the bar
    assert caplog.records and all(getattr(r, "rbf_bar", False) for r in caplog.records)


def test_world_scales_and_never_passes_the_total():
    conds = _conds()
    bars = Bars(True, [(0, [0])], conds, 100, 8, world=2, stream=io.StringIO(), interval=1e9)
    bars.advance(3, "clean")
    assert bars.done == 6
    bars.advance(3, "clean")
    assert bars.done == 8 == bars.total
    off = Bars(False, [(0, [0])], conds, 100, 8)
    off.advance(3, "clean")
    assert not off.on and off.done == 0
    assert clock_text(None) == "--:--" and clock_text(3725) == "1:02:05"


def test_a_run_advances_within_its_one_batch(tmp_path, monkeypatch, caplog):
    """20 images in one batch of 32: the display moves after every condition (it used to sit
    at 0% for the whole run), reaches exactly its total, and a resumed run has nothing to do."""
    seen = []

    class Recording(Bars):
        def advance(self, units, stage):
            super().advance(units, stage)
            seen.append((units, stage, self.done, self.total))

    monkeypatch.setattr(plan_mod, "Bars", Recording)
    caplog.set_level(logging.INFO, logger="robustbench_fundus.progress")
    x, y = tensor_data(20, 32)
    kw = dict(corruptions="motion_blur,over_exposure", severities="2,4", attack="pgd",
              eps="1/255,2/255", steps=2, store=tmp_path / "r.sqlite",
              run=RunOptions(batch_size=32, progress=True))
    evaluate(tiny_model(32, preprocessing="none"), (x, y), **kw)
    total = 20 * (1 + 4 + 2 * 2)
    assert [s[2] for s in seen] == sorted(s[2] for s in seen)       # monotone
    assert seen[0][:3] == (20, "clean", 20) and seen[0][3] == total  # moves after clean
    assert len(seen) == 1 + 4 + 2                                    # every condition
    assert seen[-1][2] == total
    assert [s[1] for s in seen][1:5] == ["motion_blur s2", "motion_blur s4",
                                         "over_exposure s2", "over_exposure s4"]
    assert seen[-1][1] == "pgd_linf_2 eps=2/255" and seen[-1][0] == 20 * 2
    assert caplog.records[-1].getMessage().startswith(f"rbf bench: 100% ({total}/{total} units)")
    seen.clear()
    caplog.clear()
    evaluate(tiny_model(32, preprocessing="none"), (x, y), **kw)   # all in the store
    assert seen == [] and caplog.records == []
