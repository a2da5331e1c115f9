"""Layout detection and reading, and each kind of bad labels/images input."""
from __future__ import annotations


import pytest

from _datastage_helpers import (make_aptos, make_eyepacs, make_folders, make_fundus_real_like,
                                make_manifest, save_image, small_disc, write_csv)
from robustbench_fundus.data import detect_layout, read_records, subject_from_name
from robustbench_fundus.errors import DataError


def _one_line(exc, *needles):
    msg = str(exc)
    assert "\n" not in msg, msg
    for n in needles:
        assert n in msg, msg


@pytest.mark.parametrize("in_train", [True, False])
def test_eyepacs(tmp_path, in_train):
    make_eyepacs(tmp_path, n_patients=4, in_train=in_train)
    assert detect_layout(tmp_path) == "eyepacs"
    rs = read_records(tmp_path)
    assert rs.layout == "eyepacs" and len(rs) == 8 and not rs.unreadable
    r = {x.image_id: x for x in rs.records}
    assert r["10_left"].subject == "10" and r["10_right"].subject == "10"
    assert r["11_left"].path.name == "11_left.jpeg" and r["11_left"].path.is_file()
    assert (r["10_right"].path.parent.name == "train") == in_train
    assert r["10_left"].label == 0 and r["10_right"].label == 1


def test_aptos(tmp_path):
    make_aptos(tmp_path, n=7)
    rs = read_records(tmp_path)
    assert rs.layout == "aptos" and len(rs) == 7
    assert all(r.subject is None and r.path.suffix == ".png" for r in rs.records)
    assert [r.label for r in rs.records] == [i % 5 for i in range(7)]


def test_folders(tmp_path):
    make_folders(tmp_path, per_grade=2)
    (tmp_path / "2" / "readme.txt").write_text("ignored: not an image name")
    rs = read_records(tmp_path)
    assert rs.layout == "folders" and len(rs) == 10
    assert rs.per_grade() == {0: 2, 1: 2, 2: 2, 3: 2, 4: 2}
    assert {r.image_id for r in rs.records} >= {"0/img00", "4/img41"}


def test_manifest_with_labels_option(tmp_path):
    csv_path = make_manifest(tmp_path, n=6, name="mylist.csv")
    with pytest.raises(DataError):  # not a recognised name: must be named
        read_records(tmp_path)
    rs = read_records(tmp_path, labels=csv_path)
    assert rs.layout == "manifest" and len(rs) == 6
    assert [r.subject for r in rs.records] == ["S0", "S0", "S1", "S1", "S2", "S2"]
    # relative --labels resolved against the folder, and a CSV passed as PATH
    assert len(read_records(tmp_path, labels="mylist.csv")) == 6
    assert read_records(csv_path).layout == "manifest"


def test_manifest_without_subject(tmp_path):
    csv_path = make_manifest(tmp_path, n=4, name="manifest.csv", subjects=False)
    rs = read_records(tmp_path)
    assert rs.layout == "manifest" and all(r.subject is None for r in rs.records)
    assert rs.labels_file == csv_path


def test_fundus_real_like(tmp_path):
    make_fundus_real_like(tmp_path, n_subjects=3)
    rs = read_records(tmp_path)
    assert rs.layout == "fundus-real" and len(rs) == 6
    assert [r.subject for r in rs.records] == ["P000", "P000", "P001", "P001", "P002", "P002"]
    assert rs.records[0].image_id == "Patient000_L"


def test_subject_from_name():
    assert subject_from_name("123_left") == "123"
    assert subject_from_name("a_b_RIGHT") == "a_b"
    assert subject_from_name("123") is None


# ------------------------------------------------------------------ bad input

def test_csv_row_naming_missing_file(tmp_path):
    make_eyepacs(tmp_path, n_patients=3)
    (tmp_path / "train" / "11_left.jpeg").unlink()
    rs = read_records(tmp_path)
    assert len(rs) == 5 and len(rs.unreadable) == 1
    path, why = rs.unreadable[0]
    assert "11_left" in path and "not found" in why
    with pytest.raises(DataError) as ei:
        read_records(tmp_path, strict=True)
    _one_line(ei.value, "11_left", "--strict")


def test_manifest_row_naming_missing_file(tmp_path):
    csv_path = make_manifest(tmp_path, n=4)
    (tmp_path / "pics" / "p2.jpg").unlink()
    rs = read_records(tmp_path, labels=csv_path)
    assert len(rs) == 3 and "p2.jpg" in rs.unreadable[0][0]
    assert "line 4" in rs.unreadable[0][1]


def test_all_files_missing(tmp_path):
    write_csv(tmp_path / "trainLabels.csv", ["image", "level"], [["1_left", 0], ["1_right", 1]])
    with pytest.raises(DataError) as ei:
        read_records(tmp_path)
    _one_line(ei.value, "trainLabels.csv", "none of the 2")


@pytest.mark.parametrize("bad", ["5", "-1", "2.5", "moderate"])
def test_label_outside_range(tmp_path, bad):
    make_aptos(tmp_path, n=4)
    rows = [["0000abc0", 0], ["0001abc1", bad], ["0002abc2", 2]]
    write_csv(tmp_path / "train.csv", ["id_code", "diagnosis"], rows)
    with pytest.raises(DataError) as ei:
        read_records(tmp_path)
    _one_line(ei.value, "train.csv", "line 3", "diagnosis")


def test_grade_folder_outside_range(tmp_path):
    make_folders(tmp_path, per_grade=1)
    save_image(small_disc(0), tmp_path / "7" / "x.png")
    with pytest.raises(DataError) as ei:
        read_records(tmp_path)
    _one_line(ei.value, "7", "outside 0-4")


def test_empty_folder(tmp_path):
    with pytest.raises(DataError) as ei:
        read_records(tmp_path)
    _one_line(ei.value, str(tmp_path), "empty folder")


def test_empty_grade_folders(tmp_path):
    for g in range(5):
        (tmp_path / str(g)).mkdir()
    with pytest.raises(DataError) as ei:
        read_records(tmp_path)
    _one_line(ei.value, "hold no images")


def test_images_without_labels(tmp_path):
    save_image(small_disc(0), tmp_path / "a.png")
    with pytest.raises(DataError) as ei:
        read_records(tmp_path)
    _one_line(ei.value, "no labels found", "--labels")


def test_missing_path(tmp_path):
    with pytest.raises(DataError) as ei:
        read_records(tmp_path / "nowhere")
    _one_line(ei.value, "nowhere", "no such folder")
    with pytest.raises(DataError) as ei:
        read_records(tmp_path, labels=tmp_path / "nope.csv")
    _one_line(ei.value, "--labels", "nope.csv")


@pytest.mark.parametrize("fname", ["trainLabels.csv", "train.csv", "labels.csv"])
def test_csv_without_expected_columns(tmp_path, fname):
    make_folders(tmp_path, per_grade=1)  # present, but the CSV takes precedence and is wrong
    write_csv(tmp_path / fname, ["file", "grade"], [["a", 0]])
    with pytest.raises(DataError) as ei:
        read_records(tmp_path)
    _one_line(ei.value, fname, "columns", "file, grade")


def test_labels_option_without_expected_columns(tmp_path):
    p = write_csv(tmp_path / "x.csv", ["filename", "dr"], [["a.png", 0]])
    with pytest.raises(DataError) as ei:
        read_records(tmp_path, labels=p)
    _one_line(ei.value, "x.csv", "path,label")


def test_duplicate_row(tmp_path):
    make_eyepacs(tmp_path, n_patients=2)
    write_csv(tmp_path / "trainLabels.csv", ["image", "level"],
              [["10_left", 0], ["10_right", 1], ["10_left", 2]])
    with pytest.raises(DataError) as ei:
        read_records(tmp_path)
    _one_line(ei.value, "line 4", "10_left", "duplicate")


def test_empty_labels_file(tmp_path):
    (tmp_path / "x.csv").write_text("")
    with pytest.raises(DataError) as ei:
        read_records(tmp_path, labels=tmp_path / "x.csv")
    _one_line(ei.value, "x.csv")


@pytest.mark.parametrize("kind", ["zero", "truncated", "text"])
def test_unreadable_image_skipped_or_strict(tmp_path, kind):
    make_eyepacs(tmp_path, n_patients=3)
    p = tmp_path / "train" / "12_right.jpeg"
    if kind == "zero":
        p.write_bytes(b"")
    elif kind == "truncated":
        p.write_bytes(p.read_bytes()[:200])
    else:
        p.write_text("hello")
    rs = read_records(tmp_path)  # no decoding: listed as a record
    assert len(rs) == 6
    rs = read_records(tmp_path, verify=True, progress=False)
    assert len(rs) == 5 and [u[0] for u in rs.unreadable] == [str(p)]
    with pytest.raises(DataError) as ei:
        read_records(tmp_path, verify=True, strict=True, progress=False)
    _one_line(ei.value, "12_right.jpeg", "--strict")


def test_odd_modes_are_readable_records(tmp_path):
    """Grayscale, RGBA and 16-bit images in a set are converted, not reported unreadable."""
    import numpy as np
    from PIL import Image

    make_folders(tmp_path, per_grade=1)
    g = small_disc(5)[0].numpy()
    Image.fromarray(g, mode="L").save(tmp_path / "1" / "gray.png")
    Image.fromarray((g.astype(np.uint16) * 257)).save(tmp_path / "2" / "g16.png")
    rgba = np.dstack([small_disc(6).permute(1, 2, 0).numpy(), np.full(g.shape, 255, np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "3" / "rgba.png")
    rs = read_records(tmp_path, verify=True, progress=False)
    assert len(rs) == 8 and not rs.unreadable
