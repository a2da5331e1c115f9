"""`rbf bench --split val`: a folder is benchmarked on the side of rbf train's subject-grouped
split that a model trained on it never saw."""
from __future__ import annotations

import json

import numpy as np
import pytest

from robustbench_fundus import evaluate
from robustbench_fundus.bench import DataOptions
from robustbench_fundus.cli import main
from robustbench_fundus.data import read_records, split_records
from robustbench_fundus.data.synth import write_synthetic
from robustbench_fundus.errors import RBFError


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("split") / "s", n=24, size=48, seed=5)


def _run(folder, **opts):
    rep = evaluate(None, str(folder), corruptions="none", attack="none",
                   data_options=DataOptions(size=48, **opts))
    return json.loads(rep.to_json())


def test_val_split_is_rbf_trains_validation_side(folder):
    recs = read_records(folder).records
    for seed, frac in [(0, 0.3), (3, 0.5)]:
        tr, va = split_records(recs, val_fraction=frac, seed=seed)
        dv = _run(folder, split="val", split_seed=seed, val_fraction=frac)
        dt = _run(folder, split="train", split_seed=seed, val_fraction=frac)
        assert dv["dataset"]["n"] == len(va) and dt["dataset"]["n"] == len(tr)
        assert dv["dataset"]["name"].startswith(f"{folder.name}[val]:{len(va)}")
        assert dv["dataset"]["split"] == "val" and dv["dataset"]["split_seed"] == seed
        assert dv["dataset"]["n_folder"] == len(recs)
        # the two sides' confusion matrices add up to the whole folder's
        da = _run(folder)
        assert da["dataset"]["n"] == len(recs)
        total = np.add(dv["clean"]["confusion"], dt["clean"]["confusion"])
        assert total.tolist() == da["clean"]["confusion"]
        assert len({dv["dataset"]["fingerprint"], dt["dataset"]["fingerprint"],
                    da["dataset"]["fingerprint"]}) == 3


@pytest.mark.parametrize("data", [None, "synthetic:8"])
def test_split_of_data_that_is_not_a_folder_is_an_error(data):
    with pytest.raises(RBFError, match="only a folder of photographs is split"):
        evaluate(None, data, corruptions="none", attack="none",
                 data_options=DataOptions(split="val"))


@pytest.mark.parametrize("bad, match", [({"split": "test"}, "--split 'test'"),
                                        ({"val_fraction": 1.0}, "--val-fraction 1.0")])
def test_bad_split_options_are_one_line_errors(bad, match):
    with pytest.raises(RBFError, match=match):
        DataOptions(**bad)


def test_cli_split_and_size_flags(folder, capsys):
    _, va = split_records(read_records(folder).records, val_fraction=0.3, seed=1)
    rc = main(["bench", "--data", str(folder), "--split", "val", "--split-seed", "1",
               "--size", "48", "--corruptions", "none", "--attack", "none", "--no-store",
               "--json"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert d["dataset"]["n"] == len(va) and d["dataset"]["size"] == 48
