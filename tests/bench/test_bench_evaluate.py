from __future__ import annotations

import json

import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, cohen_kappa_score

from _bench_helpers import StubAttack, assert_same, tensor_data, tiny_model
from robustbench_fundus import evaluate
from robustbench_fundus.bench import BenchReport, ResultStore, RunOptions
from robustbench_fundus.errors import RBFError


def _strip(d):
    """The report without timings and store provenance (which legitimately differ)."""
    d = json.loads(json.dumps(d))
    for k in ("timings", "store", "conditions_computed", "conditions_from_store", "batch_size",
              "chunk_size"):
        d["provenance"].pop(k, None)
    for sec in [d["clean"], *d["corruptions"], *d["attacks"]]:
        sec.pop("seconds", None)
    return d


def test_tensor_input_clean_metrics_equal_sklearn():
    m = tiny_model(32, seed=1)
    x, y = tensor_data(23, 32)
    rep = evaluate(m, (x, y), corruptions="none", attack=None,
                   run=RunOptions(batch_size=4, chunk_size=7))
    with torch.no_grad():
        pred = m(x).argmax(1).numpy()
    yt = y.numpy()
    c = rep.to_dict()["clean"]
    assert c["n"] == 23
    assert c["accuracy"] == pytest.approx(accuracy_score(yt, pred))
    assert c["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(yt, pred))
    assert c["kappa"] == pytest.approx(cohen_kappa_score(yt, pred, weights="quadratic",
                                                         labels=range(5)))
    from sklearn.metrics import confusion_matrix
    assert c["confusion"] == confusion_matrix(yt, pred, labels=range(5)).tolist()
    assert len(set(pred.tolist())) > 1  # the helper model is not constant


def test_report_keys_and_json_roundtrip():
    m = tiny_model(32)
    x, y = tensor_data(9, 32)
    rep = evaluate(m, (x, y), corruptions="under_exposure,over_exposure", severities="2,4",
                   attack=StubAttack(), eps="1/255,4/255,8/255", seed=3,
                   run=RunOptions(batch_size=4))
    d = rep.to_dict()
    assert set(d) >= {"schema_version", "clean", "corruptions", "attacks", "summary", "flags",
                      "provenance", "model", "dataset"}
    assert set(d["clean"]) >= {"accuracy", "balanced_accuracy", "kappa", "n", "confusion"}
    assert len(d["corruptions"]) == 4
    for c in d["corruptions"]:
        assert set(c) >= {"name", "severity", "accuracy", "balanced_accuracy", "kappa", "drop", "n"}
        assert c["drop"] == pytest.approx(d["clean"]["accuracy"] - c["accuracy"])
    assert [a["eps"] for a in d["attacks"]] == pytest.approx([1 / 255, 4 / 255, 8 / 255])
    for a in d["attacks"]:
        assert set(a) >= {"name", "eps", "success_rate", "robust_accuracy", "n", "n_attacked"}
        assert a["n_attacked"] == round(d["clean"]["accuracy"] * 9)
        if a["n_attacked"]:
            assert a["success_rate"] == pytest.approx(a["n_broken"] / a["n_attacked"])
        assert a["robust_accuracy"] == pytest.approx((a["n_attacked"] - a["n_broken"]) / 9)
    s = d["summary"]
    assert set(s) >= {"mean_severity4_drop", "eps_at_50_success", "auc_success"}
    p = d["provenance"]
    for k in ("library_version", "model_sha256", "dataset_fingerprint", "seed", "device",
              "torch_version", "timings"):
        assert k in p
    assert p["seed"] == 3 and len(p["model_sha256"]) == 64
    assert isinstance(d["flags"], list) and all("code" in f for f in d["flags"])
    text = rep.to_json()
    back = BenchReport.from_dict(json.loads(text))
    assert _strip(back.to_dict()) == _strip(d)
    assert "NaN" not in text and "Infinity" not in text


def test_batch_and_chunk_size_do_not_change_results():
    m = tiny_model(32, seed=2)
    x, y = tensor_data(11, 32, seed=5)
    kw = dict(corruptions="motion_blur,light_leakage", severities="1,4", attack=StubAttack(),
              eps="2/255,8/255")
    a = evaluate(m, (x, y), run=RunOptions(batch_size=2, chunk_size=3), **kw)
    b = evaluate(m, (x, y), run=RunOptions(batch_size=16, chunk_size=100), **kw)
    assert_same(_strip(a.to_dict()), _strip(b.to_dict()))
    assert a.clean.confusion == b.clean.confusion


def test_store_resume_computes_nothing_twice(tmp_path):
    m = tiny_model(32)
    x, y = tensor_data(10, 32)
    kw = dict(corruptions="over_exposure", severities="1-4", attack=StubAttack(),
              eps="1/255,2/255", store=tmp_path / "r.sqlite",
              run=RunOptions(batch_size=4, chunk_size=4))
    a = evaluate(m, (x, y), **kw)
    assert a.provenance["conditions_computed"] == 7
    b = evaluate(m, (x, y), **kw)
    assert b.provenance["conditions_computed"] == 0 and b.provenance["conditions_from_store"] == 7
    assert _strip(a.to_dict()) == _strip(b.to_dict())
    # a larger request only computes the new conditions
    kw["eps"] = "1/255,2/255,8/255"
    c = evaluate(m, (x, y), **kw)
    assert c.provenance["conditions_computed"] == 1
    st = ResultStore(tmp_path / "r.sqlite")
    assert st.count("results") == 8 and st.count("partials") == 0
    assert len(st.models()) == 1


class _NaNAfter(torch.nn.Module):
    """Returns NaN logits for over-exposed (bright) images only."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.input_size = inner.input_size
        self.preprocessing = "none"

    def forward(self, x):
        out = self.inner(x)
        bright = (x.mean(dim=(1, 2, 3)) > 0.52).view(-1, 1)
        return torch.where(bright, torch.full_like(out, float("nan")), out)


def test_nan_logits_name_the_condition_and_keep_rows(tmp_path):
    inner = tiny_model(32)
    x, y = tensor_data(6, 32)
    x = x * 0.9 + 0.04  # clean mean ~0.49: clean and under-exposure fine, over-exposure NaN
    model = _NaNAfter(inner)
    store = tmp_path / "r.sqlite"
    with pytest.raises(RBFError, match=r"NaN.*corruption/over_exposure/\d"):
        evaluate(model, (x, y), corruptions="under_exposure,over_exposure", severities="2",
                 attack=None, store=store, run=RunOptions(chunk_size=100))
    # the conditions that were sound are kept
    st = ResultStore(store)
    assert {(r["kind"], r["name"], r["severity"]) for r in st.results()} == {
        ("clean", "clean", None), ("corruption", "under_exposure", 2)}
    assert st.count("partials") == 0


def test_bad_arguments():
    m = tiny_model(32)
    x, y = tensor_data(4, 32)
    with pytest.raises(RBFError):
        evaluate(m, (x, y), corruptions="nope", attack=None)
    with pytest.raises(RBFError, match="\\[0,1\\]"):
        evaluate(m, (x * 3, y), attack=None)
    with pytest.raises(RBFError, match="checkpoint not found"):
        evaluate("/nonexistent/model.safetensors", (x, y), attack=None)
    with pytest.raises(RBFError, match="--eps"):
        evaluate(m, (x, y), eps="2", corruptions="none")
