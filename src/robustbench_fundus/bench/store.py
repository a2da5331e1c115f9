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
  ``device``, ``torch_version``, ``precision`` (JSON: the forwards' float32 or bf16 autocast,
  channels-last; NULL in rows written before it was recorded: float32). Columns added after a
  store was created are added to it when it is opened for writing (same schema version; old
  rows read them as NULL, and :meth:`ResultStore.results` maps such rows to the settings they
  were run with: see :func:`legacy_identity`).
* ``partials``: integer counts of one condition on one *chunk* of the data set (the unit of
  progress), kept until every chunk of the condition is in; then, in the same transaction, the
  ``results`` row is written, checked to be there, and only then the partials deleted. A
  saliency condition's partials hold the per-sample scores of one part of its images (JSON)
  instead of counts.

Recognition. A store the library creates carries ``PRAGMA application_id`` =
:data:`APPLICATION_ID` (``0x52424631``, "RBF1") and ``PRAGMA user_version`` = the schema
version. An existing file is read before anything is written to it (its 100-byte header, with
plain file reads; then, for a file without an application id, its schema through a read-only,
``immutable`` SQLite connection that creates no ``-wal``/``-shm`` file): it is used only when it
is ours (our application id), or a store written by version 0.1.0 of the library (no
application id, but exactly our tables and ``schema_version`` '1': stamped with the
application id when opened for writing). Anything else -- another program's database, a text
file -- is refused with a one-line :class:`RBFError` and left byte-identical. A missing or
empty (0-byte) file becomes a new store.

Writing. Every write is one ``BEGIN IMMEDIATE`` transaction, the database in WAL mode with a
busy timeout: a run killed at any moment leaves only whole rows (SQLite's atomic commit), a
rerun computes only what is missing, and two runs writing the same store at once serialise on
the write lock and can only insert identical rows (the numbers are deterministic integer
sums), never duplicates. Only the duplicate of a unique key is ignored (``INSERT ...
ON CONFLICT(<key columns>) DO NOTHING``); any other refusal (a NOT NULL or CHECK constraint of
a changed table, a full disk, a read-only file) is a one-line :class:`RBFError` naming the
store, and the counts of the chunk in hand are kept as partials whenever SQLite can still write
them.

Reading. ``ResultStore(path, readonly=True)`` (the leaderboard) never writes: in a writable
folder through a normal connection with ``PRAGMA query_only`` (it sees what concurrent writers
committed and leaves no ``-wal``/``-shm`` behind), and where the folder or the file is not
writable (a read-only file system, a read-only copy) through a ``mode=ro`` URI, with
``immutable=1`` unless a writer's ``-wal`` and ``-shm`` files are beside it.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from ..errors import RBFError
from .conditions import Condition

STORE_SCHEMA_VERSION = 1
DEFAULT_STORE = Path("rbf-results") / "results.sqlite"
#: ``PRAGMA application_id`` of a results store: "RBF1" as a big-endian 32-bit integer.
APPLICATION_ID = 0x52424631

_RESULT_KEY = ("model_sha256", "dataset_fingerprint", "condition", "seed", "library_version")
_PARTIAL_KEY = (*_RESULT_KEY, "chunk_size", "chunk")
_SQLITE_MAGIC = b"SQLite format 3\x00"

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
    precision TEXT,
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
                  ("label", "TEXT"), ("precision", "TEXT"))



#: The tables of a store and their columns (``results``: the columns every version 0.1.0 store
#: has; it may also have any of :data:`_ADDED_COLUMNS`).
_TABLE_COLUMNS = {
    "meta": ("key", "value"),
    "models": ("sha256", "name", "arch", "meta", "created"),
    "datasets": ("fingerprint", "name", "n", "meta", "created"),
    "results": ("id", *_RESULT_KEY, "kind", "name", "severity", "eps", "steps", "norm", "n",
                "accuracy", "balanced_accuracy", "kappa", "confusion", "n_attacked",
                "n_broken", "success_rate", "robust_accuracy", "seconds", "device",
                "torch_version", "created"),
    "partials": (*_PARTIAL_KEY, "counts", "seconds"),
}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())


def _errcode(exc: BaseException) -> int | None:
    return getattr(exc, "sqlite_errorcode", None)


def _is_full(exc: BaseException) -> bool:
    code = _errcode(exc)
    if code is not None:
        return code & 0xFF == getattr(sqlite3, "SQLITE_FULL", 13)
    return "disk is full" in str(exc) or "database or disk is full" in str(exc)


def _is_readonly(exc: BaseException) -> bool:
    code = _errcode(exc)
    if code is not None and code & 0xFF == getattr(sqlite3, "SQLITE_READONLY", 8):
        return True
    return "readonly database" in str(exc) or "read-only" in str(exc)


def _is_busy(exc: BaseException) -> bool:
    code = _errcode(exc)
    if code is not None and code & 0xFF in (getattr(sqlite3, "SQLITE_BUSY", 5),
                                             getattr(sqlite3, "SQLITE_LOCKED", 6)):
        return True
    return "database is locked" in str(exc)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _has_unique(con: sqlite3.Connection, table: str, cols: Sequence[str]) -> bool:
    for row in con.execute(f"PRAGMA index_list({table})").fetchall():
        if row[2]:  # unique
            have = [r[2] for r in con.execute(f"PRAGMA index_info({row[1]!r})").fetchall()]
            if sorted(have) == sorted(cols):
                return True
    return False


def _v010_mismatch(con: sqlite3.Connection, writing: bool = False) -> str | None:
    """Why the database on ``con`` is not a store of version 0.1.0 (None: it is one): exactly
    our five tables with their columns (``results`` with any of the columns added since), no
    views or triggers, and ``schema_version`` '1' in ``meta``; to be written, also the unique
    keys of ``results`` and ``partials`` that make a rerun skip what is there."""
    objs = con.execute("SELECT type, name FROM sqlite_master").fetchall()
    tables = {n for t, n in objs if t == "table" and not n.startswith("sqlite_")}
    other = sorted(f"{t} {n}" for t, n in objs if t in ("view", "trigger"))
    if tables != set(_TABLE_COLUMNS):
        extra = sorted(tables - set(_TABLE_COLUMNS))
        missing = sorted(set(_TABLE_COLUMNS) - tables)
        what = []
        if extra:
            what.append(f"table {', '.join(extra)}")
        if missing:
            what.append(f"no table {', '.join(missing)}")
        return "; ".join(what)
    if other:
        return f"has {other[0]}"
    added = {c for c, _ in _ADDED_COLUMNS}
    for table, want in _TABLE_COLUMNS.items():
        have = [r[1] for r in con.execute(f"PRAGMA table_info({table})").fetchall()]
        if table == "results":
            ok = set(want) <= set(have) and set(have) <= set(want) | added
        else:
            ok = sorted(have) == sorted(want)
        if not ok:
            return f"table {table} has columns {', '.join(have)}"
    v = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    if v is None or str(v[0]) != "1":
        return f"schema_version {v[0] if v else 'missing'!r}"
    if writing:
        for table, key in (("results", _RESULT_KEY), ("partials", _PARTIAL_KEY)):
            if not _has_unique(con, table, key):
                return f"table {table} has no UNIQUE ({', '.join(key)})"
    return None


class ResultStore:
    """A results store at ``path``: a missing or empty file becomes a new store (its folder is
    created), an existing one is used only if it is a results store (see the module docstring);
    ``readonly=True`` opens an existing store without writing anything."""

    def __init__(self, path: str | os.PathLike = DEFAULT_STORE, timeout: float = 60.0,
                 readonly: bool = False):
        self.path = Path(path)
        self.timeout = float(timeout)
        self.readonly = bool(readonly)
        self._con: sqlite3.Connection | None = None
        kind = self._recognise()
        if readonly:
            if kind in ("missing", "empty"):
                raise RBFError(f"--store {self.path}: no results store there"
                               + (" (an empty file)" if kind == "empty" else "")
                               + "; run `rbf bench` first or pass --store PATH")
            self._con = self._connect_readonly()
            try:
                self._check_version(self._con)
            except BaseException:
                self.close()
                raise
        else:
            if kind == "missing":
                self._make_folder()
            else:
                self._check_writable()
            self._con = self._connect(f"{self.path}", uri=False)
            try:
                self._prepare(kind)
            except BaseException:
                self.close()
                raise

    # -- opening ------------------------------------------------------------------------------
    def _refuse(self, why: str) -> RBFError:
        return RBFError(f"--store {self.path}: not a usable results store ({why}); it was left "
                        "unchanged: pass another --store path")

    def _recognise(self) -> str:
        """'missing', 'empty', 'ours' or 'v010', from reads that change nothing; RBFError for
        anything else."""
        p = self.path
        try:
            st = p.stat()
        except FileNotFoundError:
            return "missing"
        except OSError as exc:
            if isinstance(exc, NotADirectoryError):
                raise RBFError(f"--store {p}: a folder on that path is a file; pass a --store "
                               "path in a folder") from None
            raise RBFError(f"--store {p}: cannot read it ({exc.strerror or exc}); pass another "
                           "--store path") from None
        if p.is_dir():
            raise RBFError(f"--store {p}: is a folder; pass the path of the store file, e.g. "
                           f"{p / 'results.sqlite'}")
        if st.st_size == 0:
            return "empty"
        try:
            with open(p, "rb") as fh:
                head = fh.read(100)
        except OSError as exc:
            raise RBFError(f"--store {p}: cannot read it ({exc.strerror or exc}); check its "
                           "permissions or pass another --store path") from None
        if len(head) < 100 or not head.startswith(_SQLITE_MAGIC):
            raise self._refuse("not an SQLite database")
        app_id = int.from_bytes(head[68:72], "big", signed=True)
        if app_id == APPLICATION_ID:
            return "ours"
        if app_id != 0:
            raise self._refuse(f"an SQLite database of another program, application_id "
                               f"{app_id & 0xFFFFFFFF:#010x}")
        why = self._inspect_readonly(lambda con: _v010_mismatch(con, writing=not self.readonly))
        if why is not None:
            raise self._refuse(f"an SQLite database without the results store's tables: {why}")
        return "v010"

    def _ro_uri(self, immutable: bool) -> str:
        return self.path.absolute().as_uri() + "?mode=ro" + ("&immutable=1" if immutable else "")

    def _writer_files(self) -> bool:
        """A writer's ``-wal`` (non-empty) and ``-shm`` files are beside the store."""
        wal, shm = Path(f"{self.path}-wal"), Path(f"{self.path}-shm")
        try:
            return wal.stat().st_size > 0 and shm.is_file()
        except OSError:
            return False

    def _inspect_readonly(self, fn) -> Any:
        """``fn(connection)`` on a connection that cannot write, creates no file and touches no
        file (``immutable``: not even another program's ``-shm``)."""
        try:
            con = sqlite3.connect(self._ro_uri(immutable=True), uri=True,
                                  timeout=self.timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._refuse(_one_line(exc)) from None
        try:
            return fn(con)
        except sqlite3.Error as exc:
            raise self._refuse(_one_line(exc)) from None
        finally:
            con.close()

    def _check_writable(self) -> None:
        """An existing store is written together with its ``-wal``/``-shm`` files beside it: the
        file and its folder must be writable."""
        for what, p in (("the file", self.path), ("its folder", self.path.parent)):
            if not os.access(p, os.W_OK):
                raise RBFError(f"--store {self.path}: cannot write {what} (a read-only file, "
                               "folder or file system); `rbf leaderboard --store "
                               f"{self.path}` reads it as it is; pass a --store path you can "
                               "write to add results")

    def _make_folder(self) -> None:
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            why = exc.strerror or str(exc)
            if isinstance(exc, (FileExistsError, NotADirectoryError)):
                why = "a file is in the way"
            raise RBFError(f"--store {self.path}: cannot create its folder {folder} ({why}); "
                           "pass a --store path in a folder you can write") from None

    def _connect(self, target: str, uri: bool) -> sqlite3.Connection:
        try:
            con = sqlite3.connect(target, timeout=self.timeout, uri=uri, isolation_level=None,
                                  check_same_thread=False)
            con.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            return con
        except sqlite3.Error as exc:
            raise RBFError(f"--store {self.path}: cannot open it ({_one_line(exc)}); pass a "
                           "--store path in a folder you can write") from None

    def _connect_readonly(self) -> sqlite3.Connection:
        folder_ok = os.access(self.path.parent, os.W_OK)
        file_ok = os.access(self.path, os.W_OK)
        if folder_ok and file_ok:
            con = self._connect(str(self.path), uri=False)
            con.execute("PRAGMA query_only = 1")
            return con
        if self._writer_files():  # a writer's WAL is there: read it with the main file
            con = self._connect(self._ro_uri(immutable=False), uri=True)
            try:
                con.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
                return con
            except sqlite3.Error:  # its -shm cannot be used here: read the main file alone
                con.close()
        return self._connect(self._ro_uri(immutable=True), uri=True)

    def _prepare(self, kind: str) -> None:
        """Create, stamp or bring up to date the store (one transaction), then WAL mode."""
        with self.transaction() as cur:
            app_id = cur.execute("PRAGMA application_id").fetchone()[0]
            n_objects = cur.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
            if n_objects == 0 and app_id in (0, APPLICATION_ID):
                # a new store (or one left empty by a run killed while creating it)
                cur.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                cur.execute(f"PRAGMA user_version = {STORE_SCHEMA_VERSION}")
                for stmt in _SCHEMA.strip().split(";"):
                    if stmt.strip():
                        cur.execute(stmt)
                cur.execute("INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT(key) "
                            "DO NOTHING", (str(STORE_SCHEMA_VERSION),))
            elif app_id == APPLICATION_ID or (app_id == 0 and kind == "v010"):
                if app_id == 0:
                    why = _v010_mismatch(self._con, writing=True)
                    if why is not None:  # changed since it was looked at: leave it alone
                        raise self._refuse(f"an SQLite database without the results store's "
                                           f"tables: {why}")
                self._check_version(self._con)
                if app_id == 0:  # a store of version 0.1.0: stamp it as ours
                    cur.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    cur.execute(f"PRAGMA user_version = {STORE_SCHEMA_VERSION}")
                have = {r[1] for r in cur.execute("PRAGMA table_info(results)").fetchall()}
                for col, typ in _ADDED_COLUMNS:
                    if col not in have:
                        cur.execute(f"ALTER TABLE results ADD COLUMN {col} {typ}")
            else:
                raise self._refuse("another program's SQLite database appeared there meanwhile")
        try:
            self._con.execute("PRAGMA journal_mode = WAL")
            self._con.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            raise self._error(exc, "switching it to WAL mode") from None

    def _check_version(self, con: sqlite3.Connection) -> None:
        try:
            v = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.Error as exc:
            raise self._refuse(_one_line(exc)) from None
        if v is None:
            raise self._refuse("its meta table has no schema_version")
        try:
            version = int(str(v[0]).strip())
        except ValueError:
            raise RBFError(f"--store {self.path}: its schema version {v[0]!r} is not a number; "
                           "the file is damaged or was changed by another program: pass "
                           "another --store path") from None
        if version != STORE_SCHEMA_VERSION:
            raise RBFError(f"--store {self.path}: schema version {version} is not "
                           f"{STORE_SCHEMA_VERSION} (written by another version of "
                           "robustbench-fundus); use a new --store path")

    # -- plumbing ---------------------------------------------------------------------------------
    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _disk_full(self) -> bool:
        """Whether the store's file system has (almost) no space left: SQLite reports a journal
        it cannot create as a plain I/O error."""
        try:
            return shutil.disk_usage(Path(self.path).parent).free < 64 * 1024
        except OSError:
            return False

    def _error(self, exc: sqlite3.Error, doing: str = "writing") -> RBFError:
        """A one-line error for a failed SQLite call on this store."""
        where = f"--store {self.path}"
        if _is_full(exc) or ("I/O error" in str(exc) and self._disk_full()):
            return RBFError(f"{where}: the disk is full ({_one_line(exc)}) while {doing}; the "
                            "results written before are kept in the store: free some space "
                            "and rerun the same command to resume")
        if _is_readonly(exc):
            return RBFError(f"{where}: cannot write it ({_one_line(exc)}: a read-only file or "
                            "file system); pass a --store path you can write (rbf leaderboard "
                            "reads it as it is)")
        if _is_busy(exc):
            return RBFError(f"{where}: locked by another process for more than "
                            f"{self.timeout:g} s while {doing}; results written before are "
                            "kept: rerun when the other run is done")
        if isinstance(exc, sqlite3.IntegrityError):
            return RBFError(f"{where}: the store refused a row ({_one_line(exc)}) while "
                            f"{doing}: its tables are not the ones this version writes; the "
                            "results written before are kept: pass a new --store path")
        return RBFError(f"{where}: SQLite error while {doing} ({_one_line(exc)}); the results "
                        "written before are kept")

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on error; an SQLite error becomes a
        one-line :class:`RBFError` naming the store."""
        if self._con is None:
            raise RBFError(f"--store {self.path}: the store is closed")
        if self.readonly:
            raise RBFError(f"--store {self.path}: opened read-only; open it without "
                           "readonly=True to write")
        con = self._con
        try:
            con.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._error(exc, "starting a transaction") from None
        cur = _Cursor(con.cursor())
        try:
            yield cur
        except BaseException as exc:
            self._rollback()
            if isinstance(exc, sqlite3.Error):
                raise self._error(exc) from None
            raise
        try:
            con.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise self._error(exc, "committing") from None

    def _rollback(self) -> None:
        con = self._con
        if con is not None and con.in_transaction:
            try:
                con.execute("ROLLBACK")
            except sqlite3.Error:
                # SQLite may have rolled back itself (e.g. after SQLITE_FULL); if the
                # transaction is still open, the connection cannot be trusted: close it, so
                # that a later call says the store is closed instead of writing into it
                if con.in_transaction:
                    self.close()

    def _read(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        if self._con is None:
            raise RBFError(f"--store {self.path}: the store is closed")
        try:
            return self._con.execute(sql, tuple(args))
        except sqlite3.Error as exc:
            raise self._error(exc, "reading") from None

    # -- models and data sets -----------------------------------------------------------------
    def add_model(self, sha256: str, name: str, arch: str | None = None,
                  meta: dict | None = None) -> None:
        with self.transaction() as cur:
            cur.execute("INSERT INTO models (sha256, name, arch, meta, created) "
                        "VALUES (?, ?, ?, ?, ?) ON CONFLICT(sha256) DO NOTHING",
                        (sha256, name, arch, json.dumps(meta or {}, sort_keys=True, default=str),
                         _now()))

    def add_dataset(self, fingerprint: str, name: str, n: int, meta: dict | None = None) -> None:
        with self.transaction() as cur:
            cur.execute("INSERT INTO datasets (fingerprint, name, n, meta, created) "
                        "VALUES (?, ?, ?, ?, ?) ON CONFLICT(fingerprint) DO NOTHING",
                        (fingerprint, name, int(n),
                         json.dumps(meta or {}, sort_keys=True, default=str), _now()))

    def models(self) -> list[dict]:
        rows = self._read("SELECT sha256, name, arch, meta FROM models ORDER BY created, "
                          "name").fetchall()
        return [{"sha256": r[0], "name": r[1], "arch": r[2], "meta": json.loads(r[3])}
                for r in rows]

    def datasets(self) -> dict[str, dict]:
        rows = self._read("SELECT fingerprint, name, n, meta FROM datasets").fetchall()
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
        cur = self._read(sql, args)
        cols = [c[0] for c in cur.description]
        out = []
        for row in cur.fetchall():
            d = dict(zip(cols, row))
            if d.get("confusion"):
                d["confusion"] = json.loads(d["confusion"])
            d["metrics"] = json.loads(d["metrics"]) if d.get("metrics") else {}
            if isinstance(d.get("precision"), str):
                d["precision"] = json.loads(d["precision"])
            if d.get("kind") in ("attack", "corruption") and not d.get("config_hash"):
                d.update(legacy_identity(d))
            out.append(d)
        return out

    def done_conditions(self, entry: dict) -> set[str]:
        rows = self._read(
            "SELECT condition FROM results WHERE model_sha256=? AND dataset_fingerprint=? AND "
            "seed=? AND library_version=?", _entry_args(entry)).fetchall()
        return {r[0] for r in rows}

    def done_chunks(self, entry: dict, chunk_size: int) -> dict[str, set[int]]:
        rows = self._read(
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
        rows written by this call.

        A condition's partials are deleted only after its row is written and read back, in the
        same transaction. If SQLite refuses a row (e.g. a constraint of a changed table), that
        condition's partials -- this chunk's included -- are kept, the rest of the chunk is
        committed, and a one-line :class:`RBFError` names the store and the condition."""
        written = []
        failed: list[tuple[Condition, sqlite3.Error]] = []
        args = _entry_args(entry)
        with self.transaction() as cur:
            done = {r[0] for r in cur.execute(
                "SELECT condition FROM results WHERE model_sha256=? AND dataset_fingerprint=? "
                "AND seed=? AND library_version=?", args).fetchall()}
            for cond, (vec, secs) in counts.items():
                if cond.key in done:
                    continue  # another run finished it meanwhile
                self._insert_partial(cur, (args[0], args[1], cond.key, args[2], args[3],
                                           int(chunk_size), int(chunk)),
                                     encode_counts(vec), float(secs))
                rows = cur.execute(
                    "SELECT counts, seconds FROM partials WHERE model_sha256=? AND "
                    "dataset_fingerprint=? AND condition=? AND seed=? AND library_version=? AND "
                    "chunk_size=?", (args[0], args[1], cond.key, args[2], args[3],
                                     int(chunk_size))).fetchall()
                if len(rows) < n_chunks:
                    continue
                total = np.zeros(len(vec), dtype=np.int64)
                seconds = 0.0
                for c, s in rows:
                    total += decode_counts(c, len(vec))
                    seconds += s
                row = finalize(cond, total.tolist(), seconds)
                err = self._finish(cur, entry, cond, row)
                if err is None:
                    written.append(row)
                else:
                    failed.append((cond, err))
        if failed:
            cond, err = failed[0]
            raise self._error(err, f"writing the row of {cond.key} (its chunk counts are kept "
                                   "as partials)")
        return written

    def commit_parts(self, entry: dict, cond: Condition, part_size: int, n_parts: int,
                     parts: dict[int, tuple[Any, float]], finalize: "Any") -> dict | None:
        """Write parts of a condition that is not a sum of counts (a saliency condition): each
        part's JSON-able ``payload`` (e.g. per-sample scores of ``part_size`` images) in one
        transaction; when all ``n_parts`` are in, ``finalize(condition, [payload of part 0, 1,
        ...], seconds) -> dict of result columns`` makes its ``results`` row and the parts are
        deleted (after the row is written and read back). Returns that row, or None."""
        args = _entry_args(entry)
        key = (args[0], args[1], cond.key, args[2], args[3], int(part_size))
        err = None
        with self.transaction() as cur:
            if cur.execute("SELECT 1 FROM results WHERE model_sha256=? AND dataset_fingerprint=? "
                           "AND condition=? AND seed=? AND library_version=?",
                           key[:5]).fetchone():
                return None
            for part, (payload, secs) in parts.items():
                self._insert_partial(cur, (*key, int(part)), json.dumps(payload), float(secs))
            rows = cur.execute(
                "SELECT chunk, counts, seconds FROM partials WHERE model_sha256=? AND "
                "dataset_fingerprint=? AND condition=? AND seed=? AND library_version=? AND "
                "chunk_size=? ORDER BY chunk", key).fetchall()
            if len(rows) < n_parts:
                return None
            row = finalize(cond, [json.loads(r[1]) for r in rows], sum(r[2] for r in rows))
            err = self._finish(cur, entry, cond, row)
        if err is not None:
            raise self._error(err, f"writing the row of {cond.key} (its parts are kept)")
        return row

    def insert_result(self, entry: dict, cond: Condition, row: dict) -> None:
        with self.transaction() as cur:
            self._insert_result(cur, entry, cond, row)
            if not self._has_result(cur, entry, cond):
                raise RBFError(f"--store {self.path}: the row of {cond.key} was not written "
                               "(the store's tables are not the ones this version writes); "
                               "pass a new --store path")

    @staticmethod
    def _insert_partial(cur, key: tuple, counts: str, seconds: float) -> None:
        cur.execute(f"INSERT INTO partials ({', '.join(_PARTIAL_KEY)}, counts, seconds) "
                    f"VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT({', '.join(_PARTIAL_KEY)}) "
                    "DO NOTHING", (*key, counts, seconds))

    def _finish(self, cur, entry: dict, cond: Condition, row: dict) -> sqlite3.Error | None:
        """Write the results row of ``cond``, check it is there, then delete its partials, in a
        savepoint of the open transaction; on an SQLite error roll back to the savepoint (the
        partials stay) and return the error."""
        cur.execute("SAVEPOINT finish_condition")
        try:
            self._insert_result(cur, entry, cond, row)
            if not self._has_result(cur, entry, cond):
                raise sqlite3.IntegrityError(f"the row of {cond.key} was not written")
            cur.execute("DELETE FROM partials WHERE model_sha256=? AND dataset_fingerprint=? "
                        "AND condition=? AND seed=? AND library_version=?",
                        (entry["model_sha256"], entry["dataset_fingerprint"], cond.key,
                         int(entry["seed"]), entry["library_version"]))
        except sqlite3.Error as exc:
            if _is_full(exc) or _is_busy(exc) or not self._con.in_transaction:
                raise  # the transaction cannot go on: roll it all back
            cur.execute("ROLLBACK TO finish_condition")
            cur.execute("RELEASE finish_condition")
            return exc
        cur.execute("RELEASE finish_condition")
        return None

    @staticmethod
    def _has_result(cur, entry: dict, cond: Condition) -> bool:
        return cur.execute(
            "SELECT 1 FROM results WHERE model_sha256=? AND dataset_fingerprint=? AND "
            "condition=? AND seed=? AND library_version=?",
            (entry["model_sha256"], entry["dataset_fingerprint"], cond.key, int(entry["seed"]),
             entry["library_version"])).fetchone() is not None

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
        for k in ("metrics", "precision"):
            if isinstance(cols.get(k), dict):
                cols[k] = json.dumps(cols[k], sort_keys=True, allow_nan=False)
        names = list(cols)
        cur.execute(f"INSERT INTO results ({', '.join(names)}) VALUES "
                    f"({', '.join('?' * len(names))}) "
                    f"ON CONFLICT({', '.join(_RESULT_KEY)}) DO NOTHING",
                    [cols[k] for k in names])

    def clear_partials(self, entry: dict, keep_chunk_size: int) -> None:
        """Drop partials of this entry made with another chunk size (they cannot be combined)."""
        with self.transaction() as cur:
            cur.execute("DELETE FROM partials WHERE model_sha256=? AND dataset_fingerprint=? AND "
                        "seed=? AND library_version=? AND chunk_size != ?",
                        (*_entry_args(entry), int(keep_chunk_size)))

    def count(self, table: str = "results") -> int:
        if table not in ("results", "partials", "models", "datasets"):
            raise ValueError(table)
        return int(self._read(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


class _Cursor:
    """A cursor whose ``execute`` returns itself (for fetch chaining)."""

    def __init__(self, cur: sqlite3.Cursor):
        self._cur = cur

    def execute(self, sql: str, args: Sequence[Any] | Iterable = ()) -> sqlite3.Cursor:
        return self._cur.execute(sql, tuple(args))


def _entry_args(entry: dict) -> tuple:
    return (entry["model_sha256"], entry["dataset_fingerprint"], int(entry["seed"]),
            entry["library_version"])


def encode_counts(vec) -> str:
    """One chunk's count vector as JSON: a list, or, when most entries are zero (the screening
    counts: histograms and per-bin tables), ``{"n": length, "nz": [[index, value], ...]}``."""
    v = np.asarray(vec, dtype=np.int64)
    nz = np.flatnonzero(v)
    if 2 * len(nz) < len(v) // 2:
        return json.dumps({"n": int(len(v)), "nz": [[int(i), int(v[i])] for i in nz]},
                          separators=(",", ":"))
    return json.dumps([int(x) for x in v], separators=(",", ":"))


def decode_counts(text: str, n: int | None = None) -> np.ndarray:
    """The count vector of :func:`encode_counts` (either form; stores written before the
    sparse form hold plain lists)."""
    obj = json.loads(text)
    if isinstance(obj, dict):
        v = np.zeros(int(obj["n"]), dtype=np.int64)
        for i, c in obj["nz"]:
            v[int(i)] = int(c)
    else:
        v = np.asarray(obj, dtype=np.int64)
    if n is not None and len(v) != n:
        raise RBFError(f"a partial row holds {len(v)} counts where {n} were expected; the "
                       "store was written by another version: use a new --store path")
    return v


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
