"""What a person reads: ``rbf bench`` and ``rbf leaderboard`` fit 100 columns, a redirected
stderr holds no control codes, a constant predictor ranks below a real model and carries its
flag in every format, entries that are not comparable are never ranked in one table, and the
latex and DataFrame exports."""
from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _bench_helpers import tensor_data, tiny_checkpoint, tiny_model
from _leaderboard_stores import constant_and_real_store
from robustbench_fundus import evaluate
from robustbench_fundus.bench import load_entries, render
from robustbench_fundus.bench.latex import escape
from robustbench_fundus.bench.terminal import command_lines, pipe_table, wrap
from robustbench_fundus.cli import main
from robustbench_fundus.errors import RBFError

REPO = Path(__file__).resolve().parents[2]


def _long(text: str, width: int = 100) -> list[str]:
    return [ln for ln in text.splitlines() if len(ln) > width]


@pytest.fixture(scope="module")
def const_store(tmp_path_factory):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    store = constant_and_real_store(tmp_path_factory.mktemp("const") / "r.sqlite")
    torch.set_num_threads(n)
    return store


def test_rbf_bench_and_leaderboard_fit_100_columns_and_the_log_has_no_control_codes(tmp_path):
    store = tmp_path / "r.sqlite"
    env = {**os.environ, "COLUMNS": "100", "OMP_NUM_THREADS": "1"}
    base = ["--data", "synthetic:8", "--severities", "4", "--eps", "1/255,2/255,4/255",
            "--steps", "2", "--batch-size", "4", "--device", "cpu", "--store", str(store)]
    for seed, name in ((0, "tiny-with-a-rather-long-name-a"), (1, "tiny-b")):
        ckpt = tiny_checkpoint(tmp_path / f"{name}.safetensors", size=32, seed=seed)
        log = tmp_path / f"{name}.stderr"
        with open(log, "w") as err:
            r = subprocess.run([sys.executable, "-m", "robustbench_fundus", "bench", "--model",
                                str(ckpt), "--name", name, *base], stdout=subprocess.PIPE,
                               stderr=err, text=True, env=env, cwd=str(tmp_path), timeout=600)
        text = log.read_text()
        assert r.returncode == 0, text[-3000:]
        out = r.stdout
        assert _long(out) == [] and _long(text) == []
        assert "\x1b" not in text and "\r" not in text          # no control codes
        assert re.search(r"^rbf bench: 100% \(\d+/\d+ units\) done in \d\d:\d\d$", text, re.M)
        assert "![" not in out                                 # no markdown image lines
        assert f"store: {store.resolve()}" in out
        assert "rbf leaderboard --store" in out and "--format html" in out
        assert "per_sample" not in out
    # the second run's summary holds both entries, ranked
    assert "tiny-with-a-rather-long-name-a" in out and "tiny-b" in out
    r = subprocess.run([sys.executable, "-m", "robustbench_fundus", "leaderboard", "--store",
                        str(store)], capture_output=True, text=True, env=env, cwd=str(tmp_path),
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _long(r.stdout) == [] and _long(r.stderr) == []
    assert "| model |" in r.stdout and "clean_accuracy" in r.stdout
    # --columns all: everything, as the md format
    r2 = subprocess.run([sys.executable, "-m", "robustbench_fundus", "leaderboard", "--store",
                         str(store), "--columns", "all", "--no-plots"], capture_output=True,
                        text=True, env=env, cwd=str(tmp_path), timeout=300)
    assert r2.returncode == 0 and "pgd_linf_2@2/255" in r2.stdout.splitlines()[0]


def test_a_constant_predictor_ranks_below_a_real_model_in_every_format(const_store, tmp_path,
                                                                       capsys):
    entries = load_entries(str(const_store))
    assert [e.model for e in entries] == ["real", "constant"]
    real, const = entries
    assert "constant_prediction" in const.flags and const.demoted and not real.demoted
    assert const.kappa == pytest.approx(0.0) and real.kappa > 0.5
    # by the naive figures the constant one "looks" the most robust: nothing breaks it
    assert all(v[0] == 0 for v in const.attacks["stub_linf"].values())
    assert any(v[0] > 0 for v in real.attacks["stub_linf"].values())
    assert const.mean_drop4 == pytest.approx(0.0) and real.mean_drop4 > 0

    rows = list(csv.DictReader(io.StringIO(render(entries, "csv"))))
    assert [r["model"] for r in rows] == ["real", "constant"]
    assert "constant_prediction" in rows[1]["flags"]
    assert "constant_prediction" not in rows[0]["flags"]
    md = render(entries, "md").splitlines()
    assert md[2].startswith("| real |") and md[3].startswith("| constant |")
    assert "constant_prediction" in md[3] and "constant_prediction" not in md[2]
    js = json.loads(render(entries, "json"))
    assert [e["model"] for e in js["entries"]] == ["real", "constant"]
    assert {f["code"] for f in js["entries"][1]["flags"]} >= {"constant_prediction"}
    assert "single grade" in next(f["message"] for f in js["entries"][1]["flags"]
                                  if f["code"] == "constant_prediction")
    html = render(entries, "html")
    trs = re.findall(r'<tr data-rank="(\d)" data-demoted="(\d)" data-model="(\w+)"[^>]*>(.*?)</tr>',
                     html)
    assert [(t[0], t[1], t[2]) for t in trs] == [("0", "0", "real"), ("1", "1", "constant")]
    assert "constant_prediction" in trs[1][3] and "constant_prediction" not in trs[0][3]
    tex = render(entries, "latex").splitlines()
    body = [ln for ln in tex if ln.startswith(("real &", "constant &"))]
    assert [ln.split(" &")[0] for ln in body] == ["real", "constant"]
    assert "constant\\_prediction" in body[1] and "constant\\_prediction" not in body[0]
    text = render(entries, "text")
    table = [ln for ln in text.splitlines() if ln.startswith("| 1 ") or ln.startswith("| 2 ")]
    assert table[0].endswith("| real") and table[1].endswith("| constant")
    assert "constant_prediction" in table[1] and "constant_prediction" not in table[0]
    assert "  constant: constant_prediction (the model predicts a single grade" in text
    assert _long(text) == []
    # the same through the command line, default format
    assert main(["leaderboard", "--store", str(const_store), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert out == text


def test_entries_that_are_not_comparable_get_their_own_tables(tmp_path):
    store = tmp_path / "r.sqlite"
    for size, name in ((32, "at-32"), (48, "at-48")):
        x, y = tensor_data(10, size)
        evaluate(tiny_model(size, seed=1, preprocessing="none"), (x, y), corruptions="none",
                 attack="none", store=store, name=name)
    entries = load_entries(str(store))
    text = render(entries, "text")
    assert "group 1 of 2:" in text and "group 2 of 2:" in text
    assert "model input 32x32 px" in text and "model input 48x48 px" in text
    assert text.count("|--:|") == 2   # two tables
    html = render(entries, "html")
    assert html.count('<table class="lb"') == 2 and "Group 2:" in html
    assert render(entries, "latex").count("\\begin{tabular}") == 2
    js = json.loads(render(entries, "json"))
    assert len({e["comparable_group"] for e in js["entries"]}) == 2


def test_pipe_table_and_wrapping_keep_to_the_width():
    head = ["#", "n", "flags", "model"]
    rows = [["1", "12", "constant_prediction,masked_gradients,small_sample", "m" * 30],
            ["2", "12", "", "short"]]
    t = pipe_table(head, rows, width=60, clippable=[2], right=[0, 1])
    assert _long(t, 60) == [] and "..." in t
    assert t.splitlines()[0] == "| # |  n | flags" + " " * (len(t.splitlines()[2].split("|")[3])
                                                             - 7) + " | model |"
    assert t.splitlines()[1].startswith("|--:|---:|")
    t = pipe_table(head, rows, width=70, clippable=[2], lists=[2])
    assert "| constant_prediction,+2 " in t and _long(t, 70) == []   # whole codes, counted
    t = pipe_table(head, rows, width=200, clippable=[2])
    assert "constant_prediction,masked_gradients,small_sample" in t and "m" * 30 in t
    assert all(len(ln) <= 30 for ln in wrap("word " * 40, 30))
    assert wrap("a  b   c", 30) == ["a  b   c"]          # a line that fits keeps its spacing
    lines = command_lines(["rbf", "leaderboard", "--store", "/very/long/" + "p" * 80,
                           "--format", "html"], 60)
    # only a word longer than the width passes it, alone on its line
    assert all(len(ln) <= 60 or len(ln.rstrip(" \\").split()) == 1 for ln in lines)
    assert all(ln.endswith(" \\") for ln in lines[:-1]) and len(lines) > 1


def test_latex_escapes_and_is_a_booktabs_table(const_store):
    assert escape("a_b & c% $5 #1 {x} ~y ^z \\w <q>") == (
        "a\\_b \\& c\\% \\$5 \\#1 \\{x\\} \\textasciitilde{}y \\textasciicircum{}z "
        "\\textbackslash{}w \\textless{}q\\textgreater{}")
    tex = render(load_entries(str(const_store)), "latex")
    for part in ("\\toprule", "\\midrule", "\\bottomrule", "\\begin{tabular}{", "\\caption{"):
        assert part in tex
    header = next(ln for ln in tex.splitlines() if ln.startswith("model &"))
    assert "robust acc." in header and "kappa" in header and "_" not in \
        header.replace("\\_", "")
    full = render(load_entries(str(const_store)), "latex", columns="all")
    assert full.count(" & ") > tex.count(" & ")


def test_frames(const_store, monkeypatch):
    pd = pytest.importorskip("pandas", reason="pandas is an optional extra")
    from robustbench_fundus.bench.frames import leaderboard_frame, report_frame
    entries = load_entries(str(const_store))
    df = leaderboard_frame(entries)
    assert list(df["model"]) == ["real", "constant"]
    assert list(df["demoted"]) == [False, True]
    assert "stub_linf@2/255" in df.columns and df["clean_accuracy"].between(0, 1).all()
    x, y = tensor_data(8, 32)
    rep = evaluate(tiny_model(32, preprocessing="none"), (x, y), corruptions="motion_blur",
                   severities="2,4", attack="none")
    rf = report_frame(rep)
    assert list(rf["condition"]) == ["clean", "motion_blur s2", "motion_blur s4"]
    assert rf.loc[2, "drop"] == pytest.approx(rep.corruption("motion_blur", 4).drop)
    assert pd.isna(rf.loc[0, "drop"])
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(RBFError, match="pip install pandas") as ei:
        leaderboard_frame(entries)
    assert "\n" not in str(ei.value)
