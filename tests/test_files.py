"""write_atomic: whole files with the usual mode, a one-line error, nothing left behind."""
import os
import stat

import pytest

from robustbench_fundus.errors import RBFError
from robustbench_fundus.files import write_atomic


def test_writes_whole_file_with_the_umask_mode(tmp_path):
    p = write_atomic(tmp_path / "sub" / "a.txt", "héllo")
    assert p.read_text(encoding="utf-8") == "héllo"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask
    write_atomic(p, b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01"
    assert sorted(x.name for x in p.parent.iterdir()) == ["a.txt"]


def test_unwritable_folder_is_one_line_and_keeps_the_old_file(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere: the permission case cannot be made here")
    d = tmp_path / "ro"
    d.mkdir()
    (d / "a.txt").write_text("old")
    d.chmod(0o500)
    try:
        with pytest.raises(RBFError, match="cannot write") as ei:
            write_atomic(d / "a.txt", "new", what="--out")
        assert "\n" not in str(ei.value) and "--out" in str(ei.value)
        assert (d / "a.txt").read_text() == "old"
    finally:
        d.chmod(0o700)


def test_a_folder_in_the_way_is_one_line(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(RBFError, match="cannot write"):
        write_atomic(tmp_path / "f" / "a.txt", "new")
