"""Bad input to the data stage names the file, the line and what to do, in one line: labels
files in another encoding, with a NUL, a grade that is not a number, and image folders holding
symbolic-link loops and dangling links (skipped and counted like unreadable files)."""
from __future__ import annotations

import codecs
import os

import pytest

from _datastage_helpers import make_eyepacs, make_folders, write_csv
from robustbench_fundus.cli import main
from robustbench_fundus.data import read_records
from robustbench_fundus.errors import DataError


def _one_line(exc, *needles):
    msg = str(exc)
    assert "\n" not in msg and "\r" not in msg, msg
    for n in needles:
        assert n in msg, msg


def _labels(tmp_path, data: bytes):
    make_eyepacs(tmp_path, n_patients=2)
    (tmp_path / "trainLabels.csv").write_bytes(data)


def test_a_latin1_byte_names_the_line_the_byte_and_the_fix(tmp_path, capsys):
    _labels(tmp_path, "image,level\n10_left,0\n10_right,1\n11_left,2  # caf\u00e9\n"
            .encode("latin-1"))
    with pytest.raises(DataError) as ei:
        read_records(tmp_path)
    _one_line(ei.value, "trainLabels.csv", "line 4", "0xe9", "not UTF-8", "re-save it as UTF-8")
    assert main(["data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 4" in err and "found: nothing" not in err


def test_a_latin1_header_is_named_not_reported_as_missing_columns(tmp_path):
    _labels(tmp_path, "image,level,bemerkung\u00e4\n10_left,0,x\n".encode("cp1252"))
    with pytest.raises(DataError) as ei:
        read_records(tmp_path)
    _one_line(ei.value, "line 1", "not UTF-8")
    assert "missing" not in str(ei.value)


@pytest.mark.parametrize("codec", ["utf-8", "utf-8-sig", "utf-16", "utf-32"])
def test_utf8_with_or_without_bom_and_utf16_32_with_bom_are_read(tmp_path, codec):
    text = "image,level\r\n10_left,0\r\n10_right,1\r\n11_left,2\r\n11_right,3\r\n"
    _labels(tmp_path, text.encode(codec))
    if codec in ("utf-16", "utf-32"):
        assert (tmp_path / "trainLabels.csv").read_bytes()[:2] in (codecs.BOM_UTF16_LE,
                                                                   codecs.BOM_UTF16_BE)
    rs = read_records(tmp_path)
    assert len(rs) == 4 and [r.label for r in rs.records] == [0, 1, 2, 3]


def test_old_mac_line_endings_are_read(tmp_path):
    _labels(tmp_path, b"image,level\r10_left,0\r10_right,1\r")
    rs = read_records(tmp_path)
    assert [r.image_id for r in rs.records] == ["10_left", "10_right"]


def test_a_nul_byte_is_one_line(tmp_path):
    _labels(tmp_path, b"image,level\n10_left,0\n10_ri\x00ght,1\n")
    with pytest.raises(DataError) as ei:
        read_records(tmp_path)
    _one_line(ei.value, "trainLabels.csv", "line 3", "NUL")


@pytest.mark.parametrize("grade", ["inf", "-inf", "1e400", "nan", "0x2"])
def test_grades_that_are_not_numbers_are_one_line(tmp_path, grade):
    _labels(tmp_path, f"image,level\n10_left,0\n10_right,{grade}\n".encode())
    with pytest.raises(DataError) as ei:
        read_records(tmp_path)
    _one_line(ei.value, "trainLabels.csv", "line 3", "level")


def test_a_header_with_control_characters_is_quoted_on_one_line(tmp_path):
    (tmp_path / "x.csv").write_bytes(b"file\x0bname,gr\x1bade\n")
    with pytest.raises(DataError) as ei:
        read_records(tmp_path, labels=tmp_path / "x.csv")
    _one_line(ei.value, "x.csv", "columns")
    assert "\x0b" not in str(ei.value) and "\x1b" not in str(ei.value)


def test_a_symlink_loop_in_a_grade_folder_is_skipped_and_counted(tmp_path, capsys):
    make_folders(tmp_path, per_grade=1)
    os.symlink("b.png", tmp_path / "2" / "a.png")
    os.symlink("a.png", tmp_path / "2" / "b.png")
    os.symlink("gone.png", tmp_path / "3" / "dangling.png")
    rs = read_records(tmp_path)
    assert len(rs) == 5 and len(rs.unreadable) == 3
    why = dict(rs.unreadable)
    assert why[str(tmp_path / "2" / "a.png")] == "a symbolic-link loop"
    assert "dangling" in why[str(tmp_path / "3" / "dangling.png")]
    rs = read_records(tmp_path, verify=True, progress=False)
    assert len(rs) == 5 and len(rs.unreadable) == 3
    with pytest.raises(DataError) as ei:
        read_records(tmp_path, strict=True)
    _one_line(ei.value, "--strict", "3 such")
    assert main(["data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "5 readable, 3 skipped" in out and "symbolic-link loop" in out


def test_a_labels_row_naming_a_symlink_loop_is_skipped_with_the_reason(tmp_path):
    make_eyepacs(tmp_path, n_patients=2)
    img = tmp_path / "train" / "11_right.jpeg"
    img.unlink()
    os.symlink("11_right.jpeg", img)  # a link to itself
    rs = read_records(tmp_path, verify=True, progress=False)
    assert len(rs) == 3
    assert rs.unreadable == [(str(img), "a symbolic-link loop (named in trainLabels.csv line 5)")]


def test_a_manifest_row_naming_a_loop_or_an_impossible_path_is_skipped(tmp_path):
    (tmp_path / "pics").mkdir()
    make_folders(tmp_path / "pics", per_grade=1)
    os.symlink("loop.png", tmp_path / "pics" / "loop.png")
    rows = [["pics/0/img00.png", 0], ["pics/loop.png", 1], ["x" * 300 + ".png", 2],
            ["~no-such-user-rbf/a.png", 3]]
    write_csv(tmp_path / "manifest.csv", ["path", "label"], rows)
    rs = read_records(tmp_path)
    assert len(rs) == 1
    reasons = [why for _, why in rs.unreadable]
    assert reasons[0].startswith("a symbolic-link loop") and len(reasons) == 3


def test_a_folder_that_is_a_symlink_loop_is_not_a_traceback(tmp_path):
    make_folders(tmp_path, per_grade=1)
    os.symlink("train", tmp_path / "train")  # a folder name the readers look into
    rs = read_records(tmp_path)
    assert len(rs) == 5
