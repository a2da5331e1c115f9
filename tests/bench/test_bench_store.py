from __future__ import annotations

import multiprocessing as mp
import sqlite3

import pytest

from robustbench_fundus.bench import ResultStore
from robustbench_fundus.bench.conditions import CLEAN, attack_condition, corruption_condition
from robustbench_fundus.bench.evaluate import _finalize
from robustbench_fundus.errors import RBFError

ENTRY = {"model_sha256": "m" * 64, "dataset_fingerprint": "d" * 16, "seed": 0,
         "library_version": "0.1.0"}
CONDS = [CLEAN, corruption_condition("motion_blur", 4), attack_condition("pgd", 2 / 255, 10)]


def _counts(cond, chunk):
    if cond.kind == "attack":
        return [3, 2, chunk % 2]
    v = [0] * 25
    v[0] = 2
    v[6 + chunk % 3] = 1
    return v


def _fin(c, tot, s):
    return _finalize(c, tot, s, {"device": "cpu"})


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
    a = rows["attack/pgd/linf/steps=10/eps=0.0078431"]
    assert a["eps"] == pytest.approx(2 / 255) and a["n_attacked"] == 8 and a["n_broken"] == 2
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
