from __future__ import annotations

import multiprocessing as mp
import sqlite3

import pytest

from robustbench_fundus.attacks import get_attack
from robustbench_fundus.bench import ResultStore
from robustbench_fundus.bench.conditions import CLEAN, attack_conditions, corruption_condition
from robustbench_fundus.bench.rows import finalize_row
from robustbench_fundus.corruptions import get_corruption
from robustbench_fundus.errors import RBFError

ENTRY = {"model_sha256": "m" * 64, "dataset_fingerprint": "d" * 16, "seed": 0,
         "library_version": "0.1.0"}
CONDS = [CLEAN, corruption_condition(get_corruption("motion_blur"), 4),
         attack_conditions(get_attack("pgd", steps=10), [2 / 255])[0]]


def _counts(cond, chunk):
    """A condition's full count vector (the rest, e.g. the screening counts, zeros)."""
    if cond.kind == "attack":
        v = [3, 2, chunk % 2]
    else:
        v = [0] * 25
        v[0] = 2
        v[6 + chunk % 3] = 1
    return v + [0] * (cond.n_counts - len(v))


def _fin(c, tot, s):
    return finalize_row(c, tot, s, {"device": "cpu"})


def _write_all(path, order, n_chunks=4):
    st = ResultStore(path, timeout=30)
    for ci in order:
        st.commit_chunk(ENTRY, 5, n_chunks, ci, {c: (_counts(c, ci), 0.1) for c in CONDS}, _fin)
    st.close()


def test_schema_and_rows(tmp_path):
    p = tmp_path / "s.sqlite"
    st = ResultStore(p)
    con = sqlite3.connect(p)
    assert con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "1"
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cols = {r[1]: r[2] for r in con.execute("PRAGMA table_info(results)")}
    assert cols["eps"] == "REAL" and cols["accuracy"] == "REAL" and cols["n"] == "INTEGER"
    # a condition becomes a results row only when all its chunks are in
    for ci in (0, 1, 2):
        st.commit_chunk(ENTRY, 5, 4, ci, {c: (_counts(c, ci), 0.1) for c in CONDS}, _fin)
    assert st.count("results") == 0 and st.count("partials") == 9
    assert st.done_chunks(ENTRY, 5)["clean"] == {0, 1, 2}
    st.commit_chunk(ENTRY, 5, 4, 3, {c: (_counts(c, 3), 0.1) for c in CONDS}, _fin)
    assert st.count("results") == 3 and st.count("partials") == 0
    rows = {r["condition"]: r for r in st.results()}
    assert rows["clean"]["n"] == 4 * 3 and isinstance(rows["clean"]["confusion"], list)
    a = rows[CONDS[2].key]
    assert a["eps"] == pytest.approx(2 / 255) and a["n_attacked"] == 8 and a["n_broken"] == 2
    assert a["norm"] == "linf" and a["steps"] == 10 and a["label"] == "pgd_linf_10"
    assert a["config_hash"] == CONDS[2].config_hash and '"steps":10' in a["config"]
    cr = rows[CONDS[1].key]
    assert cr["config_hash"] == CONDS[1].config_hash and cr["config"]
    assert a["success_rate"] == pytest.approx(0.25) and a["robust_accuracy"] == pytest.approx(0.5)
    # re-committing a finished condition changes nothing
    st.commit_chunk(ENTRY, 5, 4, 0, {c: (_counts(c, 0), 0.1) for c in CONDS}, _fin)
    assert st.count("results") == 3 and st.count("partials") == 0
    assert st.done_conditions(ENTRY) == {c.key for c in CONDS}


def test_two_writers_no_duplicates(tmp_path):
    p = tmp_path / "s.sqlite"
    ResultStore(p).close()
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_write_all, args=(p, order))
             for order in ([0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2])]
    for pr in procs:
        pr.start()
    for pr in procs:
        pr.join(60)
        assert pr.exitcode == 0
    st = ResultStore(p)
    rows = st.results()
    assert len(rows) == 3 and st.count("partials") == 0
    one = tmp_path / "one.sqlite"
    _write_all(one, [0, 1, 2, 3])
    ref = ResultStore(one).results()
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("id", "created", "seconds")}
                        for r in rs]
    assert strip(rows) == strip(ref)


def test_readonly_missing_and_garbage(tmp_path):
    with pytest.raises(RBFError, match="no results store"):
        ResultStore(tmp_path / "none.sqlite", readonly=True)
    bad = tmp_path / "bad.sqlite"
    bad.write_text("not a database " * 100)
    with pytest.raises(RBFError, match="not a usable results store"):
        ResultStore(bad)


#: The results table as version 0.1.0 wrote it: no config, config_hash or label columns, and
#: every attack stored as linf (pgd_l2 included).
_V010_RESULTS = """CREATE TABLE results (
    id INTEGER PRIMARY KEY, model_sha256 TEXT NOT NULL, dataset_fingerprint TEXT NOT NULL,
    condition TEXT NOT NULL, seed INTEGER NOT NULL, library_version TEXT NOT NULL,
    kind TEXT NOT NULL, name TEXT NOT NULL, severity INTEGER, eps REAL, steps INTEGER, norm TEXT,
    n INTEGER NOT NULL, accuracy REAL, balanced_accuracy REAL, kappa REAL, confusion TEXT,
    n_attacked INTEGER, n_broken INTEGER, success_rate REAL, robust_accuracy REAL,
    lesion_share REAL, lesion_area REAL, disc_share REAL, deletion_auc REAL,
    deletion_auc_random REAL, ig_delta REAL, metrics TEXT, seconds REAL, device TEXT,
    torch_version TEXT, created TEXT NOT NULL,
    UNIQUE (model_sha256, dataset_fingerprint, condition, seed, library_version))"""


def test_a_store_of_the_previous_version_reads_as_the_settings_it_ran(tmp_path):
    import csv
    import io

    from robustbench_fundus.bench import load_entries, render
    p = tmp_path / "old.sqlite"
    con = sqlite3.connect(p)
    con.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                      "INSERT INTO meta VALUES ('schema_version', '1');"
                      "CREATE TABLE models (sha256 TEXT PRIMARY KEY, name TEXT NOT NULL, arch TEXT,"
                      " meta TEXT NOT NULL DEFAULT '{}', created TEXT NOT NULL);"
                      "CREATE TABLE datasets (fingerprint TEXT PRIMARY KEY, name TEXT NOT NULL,"
                      " n INTEGER NOT NULL, meta TEXT NOT NULL DEFAULT '{}', created TEXT NOT NULL);"
                      + _V010_RESULTS + ";"
                      "CREATE TABLE partials (model_sha256 TEXT, dataset_fingerprint TEXT,"
                      " condition TEXT, seed INTEGER, library_version TEXT, chunk_size INTEGER,"
                      " chunk INTEGER, counts TEXT, seconds REAL);")
    con.execute("INSERT INTO models VALUES ('m', 'old-model', 'tiny_cnn', '{}', 'x')")
    con.execute("INSERT INTO datasets VALUES ('d', 'synthetic:8', 8, '{}', 'x')")
    rows = [("clean", "clean", "clean", None, None, None, None),
            ("corruption/motion_blur/4", "corruption", "motion_blur", 4, None, None, None),
            ("attack/pgd/linf/steps=1/eps=0.0078431", "attack", "pgd", None, 2 / 255, 1, "linf"),
            ("attack/pgd/linf/steps=10/eps=0.0078431", "attack", "pgd", None, 2 / 255, 10,
             "linf"),
            ("attack/pgd_l2/linf/steps=3/eps=0.5000000", "attack", "pgd_l2", None, 0.5, 3,
             "linf")]
    for cond, kind, name, sev, eps, steps, norm in rows:
        con.execute("INSERT INTO results (model_sha256, dataset_fingerprint, condition, seed, "
                    "library_version, kind, name, severity, eps, steps, norm, n, accuracy, "
                    "confusion, n_attacked, n_broken, success_rate, robust_accuracy, created) "
                    "VALUES ('m', 'd', ?, 0, '0.1.0', ?, ?, ?, ?, ?, ?, 8, 0.5, ?, 4, 2, 0.5, "
                    "0.25, 'x')", (cond, kind, name, sev, eps, steps, norm,
                                   str([[1, 0, 0, 0, 0]] + [[0] * 5] * 4)))
    con.commit()
    con.close()
    before = p.read_bytes()
    with ResultStore(p, readonly=True) as st:
        got = {r["condition"]: r for r in st.results()}
    l2 = got["attack/pgd_l2/linf/steps=3/eps=0.5000000"]
    assert l2["norm"] == "l2" and l2["label"] == "pgd_l2_3" and len(l2["config_hash"]) == 12
    one, ten = (got[f"attack/pgd/linf/steps={k}/eps=0.0078431"] for k in (1, 10))
    assert (one["label"], ten["label"]) == ("pgd_linf_1", "pgd_linf_10")
    assert one["config_hash"] != ten["config_hash"]
    assert one["config_hash"] == attack_conditions(get_attack("pgd", steps=1),
                                                   [2 / 255])[0].config_hash
    assert got["corruption/motion_blur/4"]["config_hash"] == CONDS[1].config_hash
    header = next(csv.reader(io.StringIO(render(load_entries(str(p)), "csv"))))
    assert {"pgd_linf_1@2/255", "pgd_linf_10@2/255", "pgd_l2_3@0.5"} <= set(header)
    assert p.read_bytes() == before  # reading changed nothing
