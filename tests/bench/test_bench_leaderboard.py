"""Must-show 4: the leaderboard in md, csv, json and html with its two plots, for two models."""
from __future__ import annotations

import csv
import io
import json

import pytest
import torch

from _bench_helpers import StubAttack, tensor_data, tiny_model
from robustbench_fundus import evaluate
from robustbench_fundus.bench import load_entries, render
from robustbench_fundus.cli import main


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("lb") / "r.sqlite"
    x, y = tensor_data(12, 32)
    for seed, name in ((0, "model-a"), (7, "model-b")):
        evaluate(tiny_model(32, seed=seed), (x, y), corruptions="all", severities="1-4",
                 attack=StubAttack(), eps="1/255,2/255,8/255", store=path, name=name)
    torch.set_num_threads(n)
    return path


def test_entries_and_columns(store):
    entries = load_entries(str(store))
    assert sorted(e.model for e in entries) == ["model-a", "model-b"]
    for e in entries:
        assert set(e.drop4) == {"light_leakage", "motion_blur", "under_exposure", "over_exposure"}
        assert e.mean_drop4 == pytest.approx(sum(e.drop4.values()) / 4)
        assert len(e.attacks["stub_linf"]) == 3
    text = render(entries, "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 2
    for col in ("clean_accuracy", "balanced_accuracy", "kappa", "mean_sev4_drop",
                "sev4_drop_motion_blur", "stub_linf@1/255", "stub_linf@8/255",
                "stub_linf_robust_acc@2/255", "eps_at_50_success_255"):
        assert col in rows[0]
    assert 0 <= float(rows[0]["clean_accuracy"]) <= 1


@pytest.mark.parametrize("fmt", ["md", "csv", "json", "html"])
def test_cli_formats_and_plots(store, tmp_path, fmt, capsys):
    out = tmp_path / f"board.{fmt}"
    assert main(["leaderboard", "--store", str(store), "--format", fmt, "--out", str(out)]) == 0
    text = out.read_text()
    assert "model-a" in text and "model-b" in text
    if fmt == "json":
        d = json.loads(text)
        assert len(d["entries"]) == 2 and "columns" in d
        assert {a["eps_255"] for a in d["entries"][0]["attacks"]["stub_linf"]} == {
            "1/255", "2/255", "8/255"}
    if fmt == "html":
        assert text.startswith("<!DOCTYPE html>") and "<img" in text
    for png in ("board_success_vs_eps.png", "board_accuracy_vs_severity.png"):
        p = tmp_path / png
        assert p.is_file() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert p.stat().st_size > 5000


def test_leaderboard_missing_store(tmp_path, capsys):
    assert main(["leaderboard", "--store", str(tmp_path / "none.sqlite")]) == 2
    assert "no results store" in capsys.readouterr().err
