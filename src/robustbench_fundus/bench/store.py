"""The results store: one SQLite file, resumable, safe under concurrent writers and SIGKILL.

Tables (``schema_version`` in ``meta``):

* ``models``: one row per model (``sha256`` primary key, ``name``, ``arch``, ``meta`` JSON).
* ``datasets``: one row per data set fingerprint (``name``, ``n``, ``meta`` JSON).
* ``results``: one row per (model_sha256, dataset_fingerprint, condition, seed,
  library_version) -- a UNIQUE key -- with the typed numbers of that condition on the whole
  data set: ``n``, ``accuracy``, ``balanced_accuracy``, ``kappa``, ``confusion`` (JSON), or for
  an attack ``eps`` (REAL, [0,1] units), ``steps``, ``n_attacked``, ``n_broken``,
  ``success_rate``, ``robust_accuracy``; for a saliency condition (``--saliency N``) the
  summary floats ``lesion_share``, ``lesion_area``, ``disc_share``, ``deletion_auc``,
  ``deletion_auc_random``, ``ig_delta`` (REAL); ``metrics`` (JSON) holds the rest of a
  condition's numbers (an attack's sanity counters and flags, the saliency summary in full);
  for a corruption or an attack ``config`` (JSON: the whole configuration that produced the
  row) and ``config_hash`` (its identity, also part of the condition key), for an attack
  ``norm`` (``linf``/``l2``) and ``label`` (e.g. ``pgd_linf_10``); plus ``seconds``,
  ``device``, ``torch_version``. Columns added after a store was created are added to it when it
  is opened for writing (same schema version; old rows read them as NULL, and
  :meth:`ResultStore.results` maps such rows to the settings they were run with: see
  :func:`legacy_identity`).
* ``partials``: integer counts of one condition on one *chunk* of the data set (the unit of
  progress), kept until every chunk of the condition is in; then, in the same transaction, the
  counts are summed into the ``results`` row and the partials deleted. A saliency condition's
  partials hold the per-sample scores of one part of its images (JSON) instead of counts.

Every write is one ``BEGIN IMMEDIATE`` transaction with ``INSERT OR IGNORE`` on the unique keys,
the database in WAL mode with a busy timeout: a run killed at any moment leaves only whole rows
(SQLite's atomic commit), a rerun computes only what is missing, and two runs writing the same
store at once serialise on the write lock and can only insert identical rows (the numbers are
deterministic integer sums), never duplicates.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from ..errors import RBFError
from .conditions import Condition

STORE_SCHEMA_VERSION = 1
DEFAULT_STORE = Path("rbf-results") / "results.sqlite"

_RESULT_KEY = ("model_sha256", "dataset_fingerprint", "condition", "seed", "library_version")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models (
    sha256 TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    arch TEXT,
    meta TEXT NOT NULL DEFAULT '{}',
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS datasets (
    fingerprint TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    n INTEGER NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}',
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY,
    model_sha256 TEXT NOT NULL,
    dataset_fingerprint TEXT NOT NULL,
    condition TEXT NOT NULL,
    seed INTEGER NOT NULL,
    library_version TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    severity INTEGER,
    eps REAL,
    steps INTEGER,
    norm TEXT,
    n INTEGER NOT NULL,
    accuracy REAL,
    balanced_accuracy REAL,
    kappa REAL,
    confusion TEXT,
    n_attacked INTEGER,
    n_broken INTEGER,
    success_rate REAL,
    robust_accuracy REAL,
    lesion_share REAL,
    lesion_area REAL,
    disc_share REAL,
    deletion_auc REAL,
    deletion_auc_random REAL,
    ig_delta REAL,
    metrics TEXT,
    config TEXT,
    config_hash TEXT,
    label TEXT,
    seconds REAL,
    device TEXT,
    torch_version TEXT,
    created TEXT NOT NULL,
    UNIQUE (model_sha256, dataset_fingerprint, condition, seed, library_version)
);
CREATE TABLE IF NOT EXISTS partials (
    model_sha256 TEXT NOT NULL,
    dataset_fingerprint TEXT NOT NULL,
    condition TEXT NOT NULL,
    seed INTEGER NOT NULL,
    library_version TEXT NOT NULL,
    chunk_size INTEGER NOT NULL,
    chunk INTEGER NOT NULL,
    counts TEXT NOT NULL,
    seconds REAL NOT NULL,
    UNIQUE (model_sha256, dataset_fingerprint, condition, seed, library_version, chunk_size, chunk)
);
"""


#: Columns of ``results`` added after schema version 1 was first written (added on open).
_ADDED_COLUMNS = (("lesion_share", "REAL"), ("lesion_area", "REAL"), ("disc_share", "REAL"),
                  ("deletion_auc", "REAL"), ("deletion_auc_random", "REAL"), ("ig_delta", "REAL"),
                  ("metrics", "TEXT"), ("config", "TEXT"), ("config_hash", "TEXT"),
                  ("label", "TEXT"))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())


class ResultStore:
    """A results store at ``path`` (created with its folder when missing)."""

    def __init__(self, path: str | os.PathLike = DEFAULT_STORE, timeout: float = 60.0,
                 readonly: bool = False):
        self.path = Path(path)
        self.timeout = float(timeout)
        if readonly:
            if not self.path.is_file():
                raise RBFError(f"--store {self.path}: no results store there; run `rbf bench` "
                               "first or pass --store PATH")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = sqlite3.connect(str(self.path), timeout=self.timeout,
                                        isolation_level=None, check_same_thread=False)
            self._con.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            if not readonly:
                self._con.execute("PRAGMA journal_mode = WAL")
                self._con.execute("PRAGMA synchronous = NORMAL")
                with self.transaction() as cur:
                    for stmt in _SCHEMA.strip().split(";"):
                        if stmt.strip():
                            cur.execute(stmt)
                    cur.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                                (str(STORE_SCHEMA_VERSION),))
                    have = {r[1] for r in cur.execute("PRAGMA table_info(results)").fetchall()}
                    for col, typ in _ADDED_COLUMNS:
                        if col not in have:
                            cur.execute(f"ALTER TABLE results ADD COLUMN {col} {typ}")
            v = self._con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise RBFError(f"--store {self.path}: not a usable results store ({exc}); pass "
                           "another --store path") from None
        if v is None or int(v[0]) != STORE_SCHEMA_VERSION:
            raise RBFError(f"--store {self.path}: schema version {v[0] if v else '?'} is not "
                           f"{STORE_SCHEMA_VERSION}; use a new --store path")

    # -- plumbing ---------------------------------------------------------------------------------
    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on error)."""
        cur = _Cursor(self._con.cursor())
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        else:
            self._con.execute("COMMIT")

    # -- models and data sets -----------------------------------------------------------------
    def add_model(self, sha256: str, name: str, arch: str | None = None,
                  meta: dict | None = None) -> None:
        with self.transaction() as cur:
            cur.execute("INSERT OR IGNORE INTO models (sha256, name, arch, meta, created) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (sha256, name, arch, json.dumps(meta or {}, sort_keys=True, default=str),
                         _now()))

    def add_dataset(self, fingerprint: str, name: str, n: int, meta: dict | None = None) -> None:
        with self.transaction() as cur:
            cur.execute("INSERT OR IGNORE INTO datasets (fingerprint, name, n, meta, created) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (fingerprint, name, int(n),
                         json.dumps(meta or {}, sort_keys=True, default=str), _now()))

    def models(self) -> list[dict]:
        rows = self._con.execute("SELECT sha256, name, arch, meta FROM models ORDER BY created, "
                                 "name").fetchall()
        return [{"sha256": r[0], "name": r[1], "arch": r[2], "meta": json.loads(r[3])}
                for r in rows]

    def datasets(self) -> dict[str, dict]:
        rows = self._con.execute("SELECT fingerprint, name, n, meta FROM datasets").fetchall()
        return {r[0]: {"fingerprint": r[0], "name": r[1], "n": r[2], "meta": json.loads(r[3])}
                for r in rows}

    # -- results ----------------------------------------------------------------------------------
    def results(self, **where: Any) -> list[dict]:
        """Result rows as dicts (``confusion`` parsed), filtered by column equality."""
        sql = "SELECT * FROM results"
        args: list[Any] = []
        if where:
            sql += " WHERE " + " AND ".join(f"{k} = ?" for k in where)
            args = list(where.values())
        sql += " ORDER BY model_sha256, dataset_fingerprint, seed, library_version, condition"
        cur = self._con.execute(sql, args)
        cols = [c[0] for c in cur.description]
        out = []
        for row in cur.fetchall():
            d = dict(zip(cols, row))
            if d.get("confusion"):
                d["confusion"] = json.loads(d["confusion"])
            d["metrics"] = json.loads(d["metrics"]) if d.get("metrics") else {}
            if d.get("kind") in ("attack", "corruption") and not d.get("config_hash"):
                d.update(legacy_identity(d))
            out.append(d)
        return out

    def done_conditions(self, entry: dict) -> set[str]:
        rows = self._con.execute(
            "SELECT condition FROM results WHERE model_sha256=? AND dataset_fingerprint=? AND "
            "seed=? AND library_version=?", _entry_args(entry)).fetchall()
        return {r[0] for r in rows}

    def done_chunks(self, entry: dict, chunk_size: int) -> dict[str, set[int]]:
        rows = self._con.execute(
            "SELECT condition, chunk FROM partials WHERE model_sha256=? AND "
            "dataset_fingerprint=? AND seed=? AND library_version=? AND chunk_size=?",
            (*_entry_args(entry), int(chunk_size))).fetchall()
        out: dict[str, set[int]] = {}
        for cond, chunk in rows:
            out.setdefault(cond, set()).add(int(chunk))
        return out

    def commit_chunk(self, entry: dict, chunk_size: int, n_chunks: int, chunk: int,
                     counts: dict[Condition, tuple[list[int], float]],
                     finalize: "Any") -> list[dict]:
        """Write one chunk's counts for several conditions in one transaction, and turn every
        condition whose chunks are now all present into its ``results`` row (via
        ``finalize(condition, summed_counts) -> dict of result columns``). Returns the result
        rows written by this call."""
        written = []
        args = _entry_args(entry)
        with self.transaction() as cur:
            done = {r[0] for r in cur.execute(
                "SELECT condition FROM results WHERE model_sha256=? AND dataset_fingerprint=? "
                "AND seed=? AND library_version=?", args).fetchall()}
            for cond, (vec, secs) in counts.items():
                if cond.key in done:
                    continue  # another run finished it meanwhile
                cur.execute("INSERT OR IGNORE INTO partials VALUES (?,?,?,?,?,?,?,?,?)",
                            (args[0], args[1], cond.key, args[2], args[3], int(chunk_size),
                             int(chunk), json.dumps([int(v) for v in vec]), float(secs)))
                rows = cur.execute(
                    "SELECT counts, seconds FROM partials WHERE model_sha256=? AND "
                    "dataset_fingerprint=? AND condition=? AND seed=? AND library_version=? AND "
                    "chunk_size=?", (args[0], args[1], cond.key, args[2], args[3],
                                     int(chunk_size))).fetchall()
                if len(rows) < n_chunks:
                    continue
                total = [0] * len(vec)
                seconds = 0.0
                for c, s in rows:
                    for i, v in enumerate(json.loads(c)):
                        total[i] += v
                    seconds += s
                row = finalize(cond, total, seconds)
                self._insert_result(cur, entry, cond, row)
                cur.execute("DELETE FROM partials WHERE model_sha256=? AND dataset_fingerprint=? "
                            "AND condition=? AND seed=? AND library_version=?",
                            (args[0], args[1], cond.key, args[2], args[3]))
                written.append(row)
        return written

    def commit_parts(self, entry: dict, cond: Condition, part_size: int, n_parts: int,
                     parts: dict[int, tuple[Any, float]], finalize: "Any") -> dict | None:
        """Write parts of a condition that is not a sum of counts (a saliency condition): each
        part's JSON-able ``payload`` (e.g. per-sample scores of ``part_size`` images) in one
        transaction; when all ``n_parts`` are in, ``finalize(condition, [payload of part 0, 1,
        ...], seconds) -> dict of result columns`` makes its ``results`` row and the parts are
        deleted. Returns that row, or None."""
        args = _entry_args(entry)
        key = (args[0], args[1], cond.key, args[2], args[3], int(part_size))
        with self.transaction() as cur:
            if cur.execute("SELECT 1 FROM results WHERE model_sha256=? AND dataset_fingerprint=? "
                           "AND condition=? AND seed=? AND library_version=?",
                           key[:5]).fetchone():
                return None
            for part, (payload, secs) in parts.items():
                cur.execute("INSERT OR IGNORE INTO partials VALUES (?,?,?,?,?,?,?,?,?)",
                            (*key, int(part), json.dumps(payload), float(secs)))
            rows = cur.execute(
                "SELECT chunk, counts, seconds FROM partials WHERE model_sha256=? AND "
                "dataset_fingerprint=? AND condition=? AND seed=? AND library_version=? AND "
                "chunk_size=? ORDER BY chunk", key).fetchall()
            if len(rows) < n_parts:
                return None
            row = finalize(cond, [json.loads(r[1]) for r in rows], sum(r[2] for r in rows))
            self._insert_result(cur, entry, cond, row)
            cur.execute("DELETE FROM partials WHERE model_sha256=? AND dataset_fingerprint=? "
                        "AND condition=? AND seed=? AND library_version=?", key[:5])
        return row

    def insert_result(self, entry: dict, cond: Condition, row: dict) -> None:
        with self.transaction() as cur:
            self._insert_result(cur, entry, cond, row)

    def _insert_result(self, cur, entry: dict, cond: Condition, row: dict) -> None:
        cols = dict(row)
        cols.update({"model_sha256": entry["model_sha256"],
                     "dataset_fingerprint": entry["dataset_fingerprint"],
                     "condition": cond.key, "seed": int(entry["seed"]),
                     "library_version": entry["library_version"], "kind": cond.kind,
                     "name": cond.name, "severity": cond.severity, "eps": cond.eps,
                     "steps": cond.steps, "norm": cond.norm, "config": cond.config,
                     "config_hash": cond.config_hash, "label": cond.label, "created": _now()})
        if isinstance(cols.get("confusion"), (list, tuple)):
            cols["confusion"] = json.dumps(cols["confusion"])
        if isinstance(cols.get("metrics"), dict):
            cols["metrics"] = json.dumps(cols["metrics"], sort_keys=True, allow_nan=False)
        names = list(cols)
        cur.execute(f"INSERT OR IGNORE INTO results ({', '.join(names)}) VALUES "
                    f"({', '.join('?' * len(names))})", [cols[k] for k in names])

    def clear_partials(self, entry: dict, keep_chunk_size: int) -> None:
        """Drop partials of this entry made with another chunk size (they cannot be combined)."""
        with self.transaction() as cur:
            cur.execute("DELETE FROM partials WHERE model_sha256=? AND dataset_fingerprint=? AND "
                        "seed=? AND library_version=? AND chunk_size != ?",
                        (*_entry_args(entry), int(keep_chunk_size)))

    def count(self, table: str = "results") -> int:
        if table not in ("results", "partials", "models", "datasets"):
            raise ValueError(table)
        return int(self._con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


class _Cursor:
    """A cursor whose ``execute`` returns itself (for fetch chaining)."""

    def __init__(self, cur: sqlite3.Cursor):
        self._cur = cur

    def execute(self, sql: str, args: Sequence[Any] | Iterable = ()) -> sqlite3.Cursor:
        return self._cur.execute(sql, tuple(args))


def _entry_args(entry: dict) -> tuple:
    return (entry["model_sha256"], entry["dataset_fingerprint"], int(entry["seed"]),
            entry["library_version"])


def legacy_identity(row: dict) -> dict:
    """The identity columns of a row written before rows carried their configuration
    (``config``, ``config_hash``, ``label``, and the norm of an attack: such stores wrote every
    attack as ``linf``, ``pgd_l2`` included): rebuilt from the settings those versions ran,
    which were the registered configuration with only the step count varied. Read-only: the
    file is not changed."""
    from .conditions import canonical_json
    out: dict = {}
    try:
        if row["kind"] == "attack":
            from ..attacks import resolve_attack
            atk = resolve_attack(row["name"])
            if row.get("steps") is not None and "steps" in atk.options():
                atk = atk.with_options(steps=int(row["steps"]))
            ident = atk.identity()
            out.update(norm=ident.norm, label=ident.label, steps=ident.steps,
                       config=canonical_json(ident.config), config_hash=ident.config_hash)
        else:
            from ..corruptions import get_corruption
            ident = get_corruption(row["name"]).identity()
            out.update(config=canonical_json(ident["config"]), config_hash=ident["config_hash"])
    except RBFError:  # no longer registered (a plugin that is gone): name what is known
        if row["kind"] == "attack":
            steps = row.get("steps")
            out.update(label=f"{row['name']}_{row.get('norm') or 'linf'}"
                             + (f"_{steps}" if steps else ""), config_hash="legacy")
        else:
            out.update(config_hash="legacy")
    return out
