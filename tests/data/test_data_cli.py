"""``rbf data``: JSON report, bad input as one-line errors (exit 2), real data set."""
from __future__ import annotations

import json

import pytest

from _datastage_helpers import make_aptos, make_eyepacs, make_manifest, write_csv
from robustbench_fundus.cli import main


def _run(capsys, *argv):
    rc = main(["data", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_json_report(tmp_path, capsys):
    make_eyepacs(tmp_path, n_patients=10)
    (tmp_path / "train" / "13_left.jpeg").write_bytes(b"")
    rc, out, _ = _run(capsys, tmp_path, "--json", "--seed", "3")
    assert rc == 0
    s = json.loads(out)
    assert s["layout"] == "eyepacs" and s["n"] == 19
    assert sum(s["per_grade"].values()) == 19 and set(s["per_grade"]) == {"0", "1", "2", "3", "4"}
    assert [u["path"].endswith("13_left.jpeg") for u in s["unreadable"]] == [True]
    sp = s["split"]
    assert sp["train"] + sp["val"] == 19 and sp["subject_overlap"] == 0 and sp["val"] > 0


def test_text_report_and_strict(tmp_path, capsys):
    make_aptos(tmp_path, n=10)
    (tmp_path / "train_images" / "0003abc3.png").write_text("not a png")
    rc, out, _ = _run(capsys, tmp_path)
    assert rc == 0 and "aptos" in out and "0003abc3.png" in out and "subject overlap 0" in out
    rc, out, err = _run(capsys, tmp_path, "--strict")
    assert rc == 2 and err.startswith("rbf: error: ") and "0003abc3.png" in err
    assert err.count("\n") == 1


def test_labels_option(tmp_path, capsys):
    csv_path = make_manifest(tmp_path, n=10, name="mine.csv")
    rc, out, _ = _run(capsys, tmp_path, "--labels", csv_path, "--json")
    assert rc == 0 and json.loads(out)["layout"] == "manifest"


@pytest.mark.parametrize("setup,needle", [
    ("empty", "empty folder"),
    ("columns", "missing the expected columns"),
    ("label", "outside 0-4"),
    ("nolabels", "--labels"),
])
def test_bad_input_one_line_exit_2(tmp_path, capsys, setup, needle):
    if setup == "columns":
        write_csv(tmp_path / "trainLabels.csv", ["name", "grade"], [["a", 1]])
    elif setup == "label":
        make_eyepacs(tmp_path, n_patients=2)
        write_csv(tmp_path / "trainLabels.csv", ["image", "level"], [["10_left", 9]])
    elif setup == "nolabels":
        (tmp_path / "x.png").write_bytes(b"")
    rc, out, err = _run(capsys, tmp_path)
    assert rc == 2 and out == ""
    assert err.startswith("rbf: error: ") and needle in err and err.count("\n") == 1


def test_real_data_json(real_data_dir, capsys):
    rc, out, _ = _run(capsys, real_data_dir, "--json")
    assert rc == 0
    s = json.loads(out)
    assert s["layout"] == "fundus-real"
    assert s["n"] == 596
    assert s["per_grade"] == {"0": 276, "1": 99, "2": 166, "3": 32, "4": 23}
    assert s["unreadable"] == []
    sp = s["split"]
    assert sp["subject_overlap"] == 0 and sp["train"] + sp["val"] == 596
    assert abs(sp["val"] / 596 - 0.3) < 0.02
    for g, c in s["per_grade"].items():  # stratified
        assert abs(sp["val_per_grade"][g] - 0.3 * c) <= 3
