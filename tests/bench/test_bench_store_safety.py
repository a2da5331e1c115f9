"""The results store never changes a file it did not create, never drops a computed row
silently, and reports every store problem in one line: foreign SQLite files and text files are
refused byte-identical, stores of version 0.1.0 are recognised by their schema and stamped, a
refused row keeps its partials, a full disk / a read-only mount / a folder that cannot be made /
a damaged schema version are one-line errors, and read-only stores are read."""
from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from _bench_helpers import tiny_checkpoint
from robustbench_fundus.bench import ResultStore
from robustbench_fundus.bench.conditions import CLEAN, corruption_condition
from robustbench_fundus.bench.rows import finalize_row
from robustbench_fundus.bench.store import APPLICATION_ID, STORE_SCHEMA_VERSION
from robustbench_fundus.cli import main
from robustbench_fundus.corruptions import get_corruption
from robustbench_fundus.errors import RBFError

ENTRY = {"model_sha256": "m" * 64, "dataset_fingerprint": "d" * 16, "seed": 0,
         "library_version": "0.2.0"}
MB4 = corruption_condition(get_corruption("motion_blur"), 4)
VEC = [2] + [0] * 5 + [1] + [0] * 18


def _vec(cond):
    """A condition's full count vector: a small confusion matrix, the other counts zero."""
    return VEC + [0] * max(0, cond.n_counts - len(VEC))


def _fin(c, tot, s):
    return finalize_row(c, tot, s, {"device": "cpu"})


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file in ``folder`` (names: no -wal/-shm may appear) with its sha256."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file()}


def _header(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:100]
    return (int.from_bytes(head[68:72], "big", signed=True),
            int.from_bytes(head[60:64], "big", signed=True))


def _one_line_error(capsys, rc, *needles):
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("rbf: error: "), err
    for n in needles:
        assert n in last, last
    return last


# -- recognition ------------------------------------------------------------------------------
def test_a_new_store_carries_its_application_id_and_schema_version(tmp_path):
    p = tmp_path / "sub" / "s.sqlite"
    ResultStore(p).close()
    assert _header(p) == (APPLICATION_ID, STORE_SCHEMA_VERSION)
    con = sqlite3.connect(p)
    assert con.execute("PRAGMA application_id").fetchone()[0] == 0x52424631
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    # an empty (0-byte) file becomes a store too
    e = tmp_path / "empty.sqlite"
    e.write_bytes(b"")
    with ResultStore(e) as st:
        assert st.count() == 0
    assert _header(e) == (APPLICATION_ID, STORE_SCHEMA_VERSION)


def _sqlite(p: Path, *statements: str) -> None:
    """Another program's SQLite file at ``p``, made by ``statements``."""
    con = sqlite3.connect(p)
    for sql in statements:
        con.executescript(sql) if ";" in sql.rstrip(";") else con.execute(sql)
    con.commit()
    con.close()


def _foreign_meta_results(p: Path) -> None:
    _sqlite(p, "CREATE TABLE results (id INTEGER PRIMARY KEY, what TEXT);"
               "INSERT INTO results (what) VALUES ('theirs');"
               "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
               "INSERT INTO meta VALUES ('schema_version', '1');")


def _foreign_wal(p: Path) -> None:
    _sqlite(p, "PRAGMA journal_mode=WAL", "CREATE TABLE t (x); INSERT INTO t VALUES (1);")


def _foreign_app_id(p: Path) -> None:
    _sqlite(p, "PRAGMA application_id = 42",
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


def _v010_plus(extra_sql: str):
    def make(p: Path) -> None:
        _make_v010_store(p)
        con = sqlite3.connect(p)
        con.executescript(extra_sql)
        con.commit()
        con.close()
    return make


FOREIGN = {
    "foreign-results-and-meta-tables": _foreign_meta_results,
    "foreign-wal-database": _foreign_wal,
    "another-application-id": _foreign_app_id,
    "text-file": lambda p: p.write_text("model,accuracy\nmine,0.9\n" * 50),
    "short-binary": lambda p: p.write_bytes(b"SQLite format 3\x00" + b"\x00" * 20),
    "v010-tables-plus-another-table": _v010_plus("CREATE TABLE mine (x);"),
    "v010-tables-with-another-column": _v010_plus("ALTER TABLE partials ADD COLUMN x TEXT;"),
    "v010-tables-with-a-trigger": _v010_plus(
        "CREATE TRIGGER tr AFTER INSERT ON models BEGIN SELECT 1; END;"),
}


@pytest.mark.parametrize("kind", list(FOREIGN))
def test_a_file_that_is_not_a_store_is_refused_untouched(tmp_path, kind):
    p = tmp_path / "their.db"
    FOREIGN[kind](p)
    before = _snapshot(tmp_path)
    for readonly in (False, True):
        with pytest.raises(RBFError) as ei:
            ResultStore(p, readonly=readonly)
        msg = str(ei.value)
        assert "\n" not in msg and str(p) in msg and "not a usable results store" in msg, msg
        assert "left unchanged" in msg
    assert _snapshot(tmp_path) == before  # byte-identical, no -wal/-shm/-journal beside it


def test_a_foreign_database_in_use_is_refused_without_touching_its_wal(tmp_path):
    """Another program holds its WAL database open (a -wal and -shm beside it): not even the
    -shm changes."""
    p = tmp_path / "busy.db"
    con = sqlite3.connect(p)
    con.execute("PRAGMA journal_mode=WAL")
    con.executescript("CREATE TABLE results (x); INSERT INTO results VALUES (1);")
    con.commit()
    try:
        before = _snapshot(tmp_path)
        assert {"busy.db-wal", "busy.db-shm"} <= set(before)
        with pytest.raises(RBFError, match="not a usable results store"):
            ResultStore(p)
        assert _snapshot(tmp_path) == before
    finally:
        con.close()


def test_leaderboard_and_bench_refuse_a_foreign_store_in_one_line(tmp_path, capsys):
    p = tmp_path / "their.db"
    _foreign_meta_results(p)
    before = _snapshot(tmp_path)
    rc = main(["leaderboard", "--store", str(p), "--no-plots"])
    _one_line_error(capsys, rc, str(p), "not a usable results store")
    ckpt = tiny_checkpoint(tmp_path / "m.safetensors")
    before["m.safetensors"] = _snapshot(tmp_path)["m.safetensors"]
    rc = main(["bench", "--model", str(ckpt), "--data", "synthetic:2", "--store", str(p),
               "--corruptions", "none", "--attack", "none", "--no-progress", "--device", "cpu"])
    _one_line_error(capsys, rc, str(p), "not a usable results store")
    assert _snapshot(tmp_path) == before


#: The schema version 0.1.0 wrote (tables, columns and keys; no application id).
_V010_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE models (sha256 TEXT PRIMARY KEY, name TEXT NOT NULL, arch TEXT,
    meta TEXT NOT NULL DEFAULT '{}', created TEXT NOT NULL);
CREATE TABLE datasets (fingerprint TEXT PRIMARY KEY, name TEXT NOT NULL, n INTEGER NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}', created TEXT NOT NULL);
CREATE TABLE results (id INTEGER PRIMARY KEY, model_sha256 TEXT NOT NULL,
    dataset_fingerprint TEXT NOT NULL, condition TEXT NOT NULL, seed INTEGER NOT NULL,
    library_version TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, severity INTEGER,
    eps REAL, steps INTEGER, norm TEXT, n INTEGER NOT NULL, accuracy REAL,
    balanced_accuracy REAL, kappa REAL, confusion TEXT, n_attacked INTEGER, n_broken INTEGER,
    success_rate REAL, robust_accuracy REAL, lesion_share REAL, lesion_area REAL,
    disc_share REAL, deletion_auc REAL, deletion_auc_random REAL, ig_delta REAL, metrics TEXT,
    seconds REAL, device TEXT, torch_version TEXT, created TEXT NOT NULL,
    UNIQUE (model_sha256, dataset_fingerprint, condition, seed, library_version));
CREATE TABLE partials (model_sha256 TEXT NOT NULL, dataset_fingerprint TEXT NOT NULL,
    condition TEXT NOT NULL, seed INTEGER NOT NULL, library_version TEXT NOT NULL,
    chunk_size INTEGER NOT NULL, chunk INTEGER NOT NULL, counts TEXT NOT NULL,
    seconds REAL NOT NULL,
    UNIQUE (model_sha256, dataset_fingerprint, condition, seed, library_version, chunk_size,
            chunk));
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO models VALUES ('m', 'old-model', 'tiny_cnn', '{}', 'x');
INSERT INTO results (model_sha256, dataset_fingerprint, condition, seed, library_version, kind,
    name, n, accuracy, confusion, created)
    VALUES ('m', 'd', 'clean', 0, '0.1.0', 'clean', 'clean', 8, 0.5,
            '[[4,0,0,0,0],[4,0,0,0,0],[0,0,0,0,0],[0,0,0,0,0],[0,0,0,0,0]]', 'x');
"""


def _make_v010_store(p: Path) -> None:
    con = sqlite3.connect(p)
    con.execute("PRAGMA journal_mode=WAL")
    con.executescript(_V010_SCHEMA)
    con.commit()
    con.close()


def test_a_store_of_version_010_is_recognised_by_its_schema_and_stamped(tmp_path):
    p = tmp_path / "old.sqlite"
    _make_v010_store(p)
    assert _header(p) == (0, 0)
    before = _snapshot(tmp_path)
    with ResultStore(p, readonly=True) as st:  # reading changes nothing
        assert [r["condition"] for r in st.results()] == ["clean"]
    assert _snapshot(tmp_path) == before
    with ResultStore(p) as st:  # opened for writing: stamped, columns added, rows kept
        assert st.results()[0]["accuracy"] == 0.5 and st.models()[0]["name"] == "old-model"
        st.commit_chunk(ENTRY, 4, 1, 0, {CLEAN: (_vec(CLEAN), 0.1)}, _fin)
        assert st.count() == 2
    assert _header(p) == (APPLICATION_ID, STORE_SCHEMA_VERSION)
    cols = {r[1] for r in sqlite3.connect(p).execute("PRAGMA table_info(results)")}
    assert {"config", "config_hash", "label"} <= cols
    with ResultStore(p) as st:  # now ours by its application id
        assert st.count() == 2


def test_a_010_store_without_its_unique_keys_is_read_but_not_written(tmp_path):
    p = tmp_path / "old.sqlite"
    con = sqlite3.connect(p)
    con.executescript(_V010_SCHEMA.replace(
        ",\n    UNIQUE (model_sha256, dataset_fingerprint, condition, seed, library_version, "
        "chunk_size,\n            chunk)", ""))
    con.commit()
    con.close()
    before = _snapshot(tmp_path)
    with ResultStore(p, readonly=True) as st:
        assert st.count() == 1
    with pytest.raises(RBFError, match="no UNIQUE"):
        ResultStore(p)
    assert _snapshot(tmp_path) == before


# -- nothing dropped silently -------------------------------------------------------------------
def _with_extra_not_null_column(p: Path) -> None:
    ResultStore(p).close()
    con = sqlite3.connect(p)
    sql = con.execute("SELECT sql FROM sqlite_master WHERE name='results'").fetchone()[0]
    con.executescript("ALTER TABLE results RENAME TO results_old;"
                      + sql.replace("CREATE TABLE results (",
                                    "CREATE TABLE results (extra TEXT NOT NULL,", 1)
                      + "; DROP TABLE results_old;")
    con.commit()
    con.close()


def test_a_refused_row_is_an_error_and_keeps_its_partials(tmp_path):
    p = tmp_path / "s.sqlite"
    _with_extra_not_null_column(p)
    with ResultStore(p) as st:
        both = {CLEAN: (_vec(CLEAN), 0.1), MB4: (_vec(MB4), 0.1)}
        st.commit_chunk(ENTRY, 4, 2, 0, both, _fin)
        with pytest.raises(RBFError) as ei:
            st.commit_chunk(ENTRY, 4, 2, 1, both, _fin)
        msg = str(ei.value)
        assert "\n" not in msg and str(p) in msg and "NOT NULL" in msg and "kept" in msg
        # nothing dropped: both chunks of both conditions are still there, no row pretends
        assert st.count("results") == 0 and st.count("partials") == 4
        assert st.done_chunks(ENTRY, 4) == {CLEAN.key: {0, 1}, MB4.key: {0, 1}}


def test_a_row_that_silently_vanishes_is_caught_before_the_partials_go(tmp_path):
    """A trigger that drops inserts without an error: the row is read back before the partials
    are deleted."""
    p = tmp_path / "s.sqlite"
    ResultStore(p).close()
    con = sqlite3.connect(p)
    con.execute("CREATE TRIGGER swallow BEFORE INSERT ON results BEGIN SELECT RAISE(IGNORE); "
                "END")
    con.commit()
    con.close()
    with ResultStore(p) as st:
        with pytest.raises(RBFError, match="was not written"):
            st.commit_chunk(ENTRY, 4, 1, 0, {CLEAN: (_vec(CLEAN), 0.1)}, _fin)
        assert st.count("partials") == 1 and st.count("results") == 0


def test_bench_with_a_store_that_refuses_rows_exits_2_and_keeps_the_counts(tmp_path, capsys):
    p = tmp_path / "s.sqlite"
    _with_extra_not_null_column(p)
    ckpt = tiny_checkpoint(tmp_path / "m.safetensors")
    rc = main(["bench", "--model", str(ckpt), "--data", "synthetic:2", "--store", str(p),
               "--corruptions", "none", "--attack", "none", "--chunk-size", "1",
               "--batch-size", "1", "--no-progress", "--device", "cpu"])
    _one_line_error(capsys, rc, str(p), "NOT NULL", "kept")
    with ResultStore(p, readonly=True) as st:
        assert st.count("results") == 0 and st.count("partials") == 2


# -- full disk, read-only mounts, folders, damaged versions ----------------------------------
def test_a_full_disk_is_one_line_and_keeps_what_was_written(tmp_path):
    """SQLITE_FULL simulated with a page limit on the connection."""
    p = tmp_path / "s.sqlite"
    with ResultStore(p) as st:
        st.commit_chunk(ENTRY, 4, 1000, 0, {CLEAN: (VEC, 0.1)}, _fin)
        pages = st._con.execute("PRAGMA page_count").fetchone()[0]
        st._con.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(RBFError) as ei:
            for chunk in range(1, 200):
                st.commit_chunk(ENTRY, 4, 1000, chunk, {CLEAN: (VEC * 40, 0.1)}, _fin)
        msg = str(ei.value)
        assert "\n" not in msg and str(p) in msg and "disk is full" in msg and "kept" in msg
    with ResultStore(p, readonly=True) as st:
        done = st.done_chunks(ENTRY, 4)[CLEAN.key]
        assert 0 in done and len(done) == chunk  # every chunk committed before the error


@contextlib.contextmanager
def _mounted(target: Path, *args: str):
    target.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount here (needs root and mount rights): {r.stderr.strip()}")
    try:
        yield target
    finally:
        if subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(target)], capture_output=True)


def test_a_full_file_system_is_one_line_and_the_store_stays_readable(tmp_path, capsys):
    with _mounted(tmp_path / "small", "-t", "tmpfs", "-o", "size=160k", "tmpfs") as mnt:
        p = mnt / "s.sqlite"
        with ResultStore(p) as st:
            with pytest.raises(RBFError) as ei:
                for chunk in range(1000):
                    st.commit_chunk(ENTRY, 4, 10_000, chunk, {CLEAN: (VEC * 20, 0.1)}, _fin)
        msg = str(ei.value)
        assert "\n" not in msg and "disk is full" in msg and "kept" in msg, msg
        with ResultStore(p, readonly=True) as st:
            assert len(st.done_chunks(ENTRY, 4)[CLEAN.key]) == chunk
        # the failed transaction's journal is gone again: fill what space is left, so that the
        # bench's own commit meets a full disk too
        with contextlib.suppress(OSError), open(mnt / "filler", "wb", buffering=0) as fh:
            while True:
                fh.write(b"\0" * 4096)
        ckpt = tiny_checkpoint(tmp_path / "m.safetensors")
        rc = main(["bench", "--model", str(ckpt), "--data", "synthetic:2", "--store", str(p),
                   "--corruptions", "none", "--attack", "none", "--no-progress",
                   "--device", "cpu"])
        _one_line_error(capsys, rc, str(p), "disk is full")


def test_a_store_on_a_read_only_file_system_is_read_and_not_written(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    with ResultStore(src / "s.sqlite") as st:
        st.add_model(ENTRY["model_sha256"], "ro-model")
        st.commit_chunk(ENTRY, 4, 1, 0, {CLEAN: (_vec(CLEAN), 0.1)}, _fin)
    before = _snapshot(src)
    ro = tmp_path / "ro"
    with _mounted(ro, "--bind", str(src)):
        r = subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], capture_output=True,
                           text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot remount read-only: {r.stderr.strip()}")
        assert not os.access(ro, os.W_OK)
        p = ro / "s.sqlite"
        with ResultStore(p, readonly=True) as st:
            assert st.count() == 1 and st.models()[0]["name"] == "ro-model"
        assert main(["leaderboard", "--store", str(p), "--no-plots"]) == 0
        out = capsys.readouterr()
        assert "ro-model" in out.out and "Traceback" not in out.err
        assert main(["leaderboard", "--store", str(p), "--format", "csv", "--no-plots"]) == 0
        assert "ro-model" in capsys.readouterr().out
        with pytest.raises(RBFError, match="cannot write") as ei:
            ResultStore(p)
        assert "\n" not in str(ei.value) and "rbf leaderboard" in str(ei.value)
        with pytest.raises(RBFError, match="cannot create its folder") as ei:
            ResultStore(ro / "new" / "s.sqlite")
        assert "Read-only file system" in str(ei.value)
    assert _snapshot(src) == before


def test_reading_a_store_in_a_writable_folder_leaves_no_files_behind(tmp_path):
    p = tmp_path / "s.sqlite"
    with ResultStore(p) as st:
        st.commit_chunk(ENTRY, 4, 1, 0, {CLEAN: (_vec(CLEAN), 0.1)}, _fin)
    before = _snapshot(tmp_path)
    with ResultStore(p, readonly=True) as st:
        assert st.count() == 1
        with pytest.raises(RBFError, match="read-only"):
            st.insert_result(ENTRY, MB4, {"n": 1})
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("where", ["file-in-the-way", "unmakeable"])
def test_a_store_folder_that_cannot_be_created_is_one_line(tmp_path, where, capsys):
    (tmp_path / "afile").write_text("x")
    p = tmp_path / "afile" / "sub" / "s.sqlite" if where == "file-in-the-way" else \
        Path("/proc/rbf-no-such-dir/s.sqlite")
    with pytest.raises(RBFError) as ei:
        ResultStore(p)
    assert "\n" not in str(ei.value) and str(p) in str(ei.value)
    ckpt = tiny_checkpoint(tmp_path / "m.safetensors")
    rc = main(["bench", "--model", str(ckpt), "--data", "synthetic:2", "--store", str(p),
               "--corruptions", "none", "--attack", "none", "--no-progress", "--device", "cpu"])
    _one_line_error(capsys, rc, str(p))


@pytest.mark.parametrize("value", ["abc", "", "1.5", "2"])
def test_a_schema_version_that_is_not_ours_is_one_line(tmp_path, value, capsys):
    p = tmp_path / "s.sqlite"
    ResultStore(p).close()
    con = sqlite3.connect(p)
    con.execute("UPDATE meta SET value=? WHERE key='schema_version'", (value,))
    con.commit()
    con.close()
    before = _snapshot(tmp_path)
    for readonly in (False, True):
        with pytest.raises(RBFError) as ei:
            ResultStore(p, readonly=readonly)
        assert "\n" not in str(ei.value) and "schema version" in str(ei.value)
    rc = main(["leaderboard", "--store", str(p), "--no-plots"])
    _one_line_error(capsys, rc, "schema version")
    assert _snapshot(tmp_path) == before
