"""Must-show 1: `rbf bench --model CKPT --data fundus-real --limit 60 --json` on the real
photographs; the clean metrics equal scikit-learn's on the same predictions."""
from __future__ import annotations

import json

import pytest
import torch
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, cohen_kappa_score,
                             confusion_matrix)

from _bench_helpers import tiny_model
from robustbench_fundus.cli import main
from robustbench_fundus.data import estimate_geometry, graham, load_working, read_records
from robustbench_fundus.models import load_model, save_checkpoint

SIZE = 96  # working size = model input size


def _model_input(paths):
    x = torch.stack([load_working(p, SIZE) for p in paths]).float() / 255.0
    return graham(x, estimate_geometry(x))


def test_bench_real_json_matches_sklearn(real_data_dir, tmp_path, capsys):
    records = read_records(real_data_dir).records
    calib = _model_input([r.path for r in records[::75]])
    ckpt = save_checkpoint(tiny_model(SIZE, seed=4, calib=calib), tmp_path / "tiny.safetensors")
    rc = main(["bench", "--model", str(ckpt), "--data", str(real_data_dir), "--limit", "60",
               "--json", "--store", str(tmp_path / "r.sqlite"), "--steps", "2",
               "--eps", "1/255,4/255", "--batch-size", "20", "--no-progress"])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    for k in ("clean", "corruptions", "attacks", "summary", "flags", "provenance"):
        assert k in rep
    assert set(rep["clean"]) >= {"accuracy", "balanced_accuracy", "kappa", "n", "confusion"}
    assert len(rep["corruptions"]) == 16
    assert {c["name"] for c in rep["corruptions"]} == {"light_leakage", "motion_blur",
                                                       "under_exposure", "over_exposure"}
    assert all(set(c) >= {"name", "severity", "accuracy", "balanced_accuracy", "kappa", "drop",
                          "n"} for c in rep["corruptions"])
    assert [round(a["eps"] * 255, 6) for a in rep["attacks"]] == [1, 4]
    assert all(set(a) >= {"name", "eps", "success_rate", "robust_accuracy", "n", "n_attacked"}
               for a in rep["attacks"])
    assert set(rep["summary"]) >= {"mean_severity4_drop", "eps_at_50_success", "auc_success"}
    assert set(rep["provenance"]) >= {"library_version", "model_sha256", "dataset_fingerprint",
                                      "seed", "device", "torch_version", "timings"}
    # the same predictions, computed here without the benchmark
    n = len(records)
    idx = [i * n // 60 for i in range(60)]
    model = load_model(ckpt)
    with torch.no_grad():
        pred = model(_model_input([records[i].path for i in idx])).argmax(1).numpy()
    y = [records[i].label for i in idx]
    c = rep["clean"]
    assert c["n"] == 60
    assert c["confusion"] == confusion_matrix(y, pred, labels=range(5)).tolist()
    assert c["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    assert c["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred), abs=1e-12)
    assert c["kappa"] == pytest.approx(cohen_kappa_score(y, pred, weights="quadratic",
                                                         labels=range(5)), abs=1e-12)
