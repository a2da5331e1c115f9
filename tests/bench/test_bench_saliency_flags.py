"""Must-show 3 of issue 8: `rbf bench --saliency N` puts the saliency summary into the report, the
store and the leaderboard (only for the entries benchmarked with it); the attack's sanity flags
(masked gradients) reach the report and the leaderboard; `rbf bench` ends with the leaderboard."""
from __future__ import annotations

import csv
import io
import json

import pytest
import torch

from _bench_helpers import tensor_data, tiny_checkpoint, tiny_model
from robustbench_fundus import evaluate
from robustbench_fundus.bench import ResultStore, RunOptions, load_entries, render
from robustbench_fundus.bench import saliency as sal_mod
from robustbench_fundus.cli import main

SAL_COLS = ("saliency_lesion_share", "saliency_disc_share", "saliency_deletion_auc",
            "saliency_n")
# synthetic:8 -> grades [0, 0, 2, 0, 0, 1, 2, 2]; --saliency 4 takes images 0, 2, 4, 6 (two
# with lesions)
BASE = ["--data", "synthetic:8", "--corruptions", "none", "--attack", "none", "--no-progress",
        "--device", "cpu", "--batch-size", "2"]


def test_saliency_report_store_and_leaderboard(tmp_path, capsys):
    store = tmp_path / "r.sqlite"
    a = tiny_checkpoint(tmp_path / "a.safetensors", size=32, seed=0)
    b = tiny_checkpoint(tmp_path / "b.safetensors", size=32, seed=1)
    sal = ["--saliency", "4", "--saliency-steps", "4"]
    assert main(["bench", "--model", str(a), "--store", str(store), "--name", "with-sal",
                 "--json", *sal, *BASE]) == 0
    rep = json.loads(capsys.readouterr().out)
    s = rep["saliency"]
    assert s["n"] == 4 and s["n_lesion"] == 2 and s["n_disc"] == 4
    assert s["method"] == "ig" and s["steps"] == 4 and s["baseline"] == "grey"  # Graham model
    for k in ("lesion_share", "lesion_area", "disc_share", "deletion_auc",
              "deletion_auc_random"):
        assert s[k] is not None and 0.0 <= s[k] <= 1.0, (k, s[k])
    assert "per_sample" not in s
    # the store holds it as its own condition row, with typed columns
    with ResultStore(store) as st:
        rows = [r for r in st.results() if r["kind"] == "saliency"]
        assert len(rows) == 1 and st.count("partials") == 0
    r = rows[0]
    assert r["condition"] == "saliency/ig/baseline=grey/steps=4/n=4"
    assert r["lesion_share"] == pytest.approx(s["lesion_share"])
    assert r["deletion_auc"] == pytest.approx(s["deletion_auc"]) and r["n"] == 4

    # a second model without --saliency; the plain command ends with the leaderboard
    assert main(["bench", "--model", str(b), "--store", str(store), "--name", "no-sal",
                 *BASE]) == 0
    out = capsys.readouterr().out
    assert "| model |" in out and "with-sal" in out and "no-sal" in out
    assert "saliency_lesion_share" in out and f"store: {store.resolve()}" in out
    assert "leaderboard_success_vs_eps.png" in out

    entries = load_entries(str(store))
    rows = {row["model"]: row for row in csv.DictReader(io.StringIO(render(entries, "csv")))}
    for c in SAL_COLS:
        assert rows["no-sal"][c] == ""
        assert rows["with-sal"][c] != ""
    assert float(rows["with-sal"]["saliency_lesion_share"]) == pytest.approx(s["lesion_share"])
    assert int(rows["with-sal"]["saliency_n"]) == 4
    md = render(entries, "md").splitlines()
    header = [h.strip() for h in md[0].strip("|").split("|")]
    for line in md[2:4]:
        cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|"))))
        shown = [cells[c] != "-" for c in SAL_COLS]
        assert all(shown) if cells["model"] == "with-sal" else not any(shown)
    js = json.loads(render(entries, "json"))
    by = {e["model"]: e for e in js["entries"]}
    assert "saliency" in by["with-sal"] and "saliency" not in by["no-sal"]
    assert "saliency_lesion_share" in render(entries, "html")

    # rerun: nothing recomputed, same summary
    assert main(["bench", "--model", str(a), "--store", str(store), "--name", "with-sal",
                 "--json", *sal, *BASE]) == 0
    rep2 = json.loads(capsys.readouterr().out)
    assert rep2["provenance"]["timings"]["saliency_s"] == 0
    assert {k: v for k, v in rep2["saliency"].items() if k != "seconds"} == \
        {k: v for k, v in s.items() if k != "seconds"}


def test_without_saliency_no_columns(tmp_path, capsys):
    store = tmp_path / "r.sqlite"
    ckpt = tiny_checkpoint(tmp_path / "a.safetensors", size=32)
    assert main(["bench", "--model", str(ckpt), "--store", str(store), "--json", *BASE]) == 0
    assert json.loads(capsys.readouterr().out)["saliency"] is None
    text = render(load_entries(str(store)), "csv")
    assert "saliency" not in text and "attack_flags" not in text


class _Killed(Exception):
    pass


def test_saliency_resumes_per_part(tmp_path, monkeypatch):
    """A run interrupted in the middle of the saliency images keeps the finished parts; the
    rerun scores only the rest and gives the uninterrupted run's numbers."""
    m = tiny_model(32)
    kw = dict(corruptions="none", attack=None, saliency=6, saliency_steps=3,
              run=RunOptions(batch_size=2))
    ref = evaluate(m, "synthetic:8", **kw).saliency  # no store
    real = sal_mod._saliency_part
    calls = []
    kill = [True]

    def flaky(pipe, di, idx, cond, seed):
        calls.append(list(idx))
        if kill[0] and len(calls) == 2:
            raise _Killed  # killed in the second part
        return real(pipe, di, idx, cond, seed)

    monkeypatch.setattr(sal_mod, "_saliency_part", flaky)
    store = tmp_path / "r.sqlite"
    with pytest.raises(_Killed):
        evaluate(m, "synthetic:8", store=store, **kw)
    with ResultStore(store) as st:
        assert st.count("partials") == 1
        assert not [r for r in st.results() if r["kind"] == "saliency"]
    calls.clear()
    kill[0] = False
    got = evaluate(m, "synthetic:8", store=store, **kw).saliency
    assert calls == [[2, 4], [5, 6]]  # 6 of 8 images in parts of 2: part 0 was kept
    strip = lambda d: {k: v for k, v in d.items() if k not in ("seconds", "ig_delta")}
    assert strip(got) == strip(ref)
    assert got["ig_delta"] == pytest.approx(ref["ig_delta"], rel=1e-4)


class _Rounded(torch.nn.Module):
    """Quantises its input (torch.round): zero input gradients everywhere (gradient masking)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.input_size = inner.input_size
        self.preprocessing = "none"

    def forward(self, x):
        return self.inner(torch.round(x * 8) / 8)


def test_masked_gradients_flag_reaches_report_and_leaderboard(tmp_path):
    inner = tiny_model(32, seed=2, preprocessing="none")
    x, _ = tensor_data(8, 32, seed=4)
    masked = _Rounded(inner)
    with torch.no_grad():
        y = masked(x).argmax(1)  # every image right on clean input: all are attacked
    store = tmp_path / "r.sqlite"
    kw = dict(corruptions="none", attack="pgd", eps="1/255,4/255", steps=2,
              run=RunOptions(batch_size=4), store=store)
    rep = evaluate(masked, (x, y), name="masked", **kw)
    flags = {f.code: f for f in rep.flags}
    assert "masked_gradients" in flags, [f.code for f in rep.flags]
    f = flags["masked_gradients"]
    assert f.condition == "attack/pgd_linf_2" and f.details["n_zero"] == f.details["n_checked"] > 0
    d = rep.to_dict()
    assert any(fl["code"] == "masked_gradients" and fl["details"]["n_zero"] > 0
               for fl in d["flags"])
    # the same model without the rounding: no such flag (the check can fail)
    with torch.no_grad():
        y2 = inner(x).argmax(1)
    plain = evaluate(inner, (x, y2), name="plain", **kw)
    assert "masked_gradients" not in {f.code for f in plain.flags}
    # the store keeps the counters: the leaderboard shows the flag for that model only
    rows = {r["model"]: r for r in csv.DictReader(io.StringIO(render(load_entries(str(store)),
                                                                    "csv")))}
    assert "masked_gradients" in rows["masked"]["attack_flags"]
    assert "masked_gradients" not in rows["plain"]["attack_flags"]
    # and a rerun from the store gives the same flags
    again = evaluate(masked, (x, y), name="masked", **kw)
    assert again.provenance["conditions_computed"] == 0
    assert [fl.to_dict() for fl in again.flags] == [fl.to_dict() for fl in rep.flags]
