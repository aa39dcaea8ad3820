"""A local history of counting runs: one SQLite database in the user's data folder.

Every batch (CLI or app) is a row of ``runs`` (when, host, where from, model and its card's sha256,
settings, inputs, status) with its per-image rows in ``rows`` (the counts CSV's columns as JSON, so a
run's CSV can be written again). Several app sessions and a CLI may write at once: the database is in
WAL mode with a busy timeout, and every write is one short transaction (a :class:`Recorder` keeps its
connection open between them: opening one is most of the cost of writing an image's row).

Recording never stops a count: a database that cannot be opened or written is reported with a warning
(:data:`logging`) and the run goes on; a damaged file is renamed aside (``history.sqlite.damaged-<time>``)
and a fresh database started.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "CELLCOUNT_DATA_DIR"
DB_NAME = "history.sqlite"
BUSY_TIMEOUT_MS = 30_000
"""How long a writer waits for another one's transaction (they last milliseconds)."""
STATUSES = ("running", "done", "interrupted", "stopped", "failed")
"""``interrupted``: ended by Ctrl-C or a signal (a command line run, and app batches stopped before 0.3.0; ``--resume``
continues a command line run); ``stopped``: by the user's Stop on the Batch page, which that page says in the same word."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    host TEXT NOT NULL,
    source TEXT NOT NULL,
    model TEXT NOT NULL,
    model_sha256 TEXT,
    settings TEXT NOT NULL,
    inputs TEXT NOT NULL,
    n_inputs INTEGER NOT NULL,
    status TEXT NOT NULL,
    out_path TEXT,
    pid INTEGER,
    proc TEXT
);
CREATE TABLE IF NOT EXISTS rows (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    file TEXT NOT NULL,
    status TEXT NOT NULL,
    count INTEGER,
    row TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
"""


def data_dir() -> Path:
    """The user's cellcount data folder: ``$CELLCOUNT_DATA_DIR``, else ``$XDG_DATA_HOME/cellcount``, else
    ``~/.local/share/cellcount``. Read at each call, so a changed environment takes effect at once."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cellcount"


def db_path() -> Path:
    """The history database file (in :func:`data_dir`)."""
    return data_dir() / DB_NAME


def objects_path(run_id: int, *, path: str | os.PathLike | None = None) -> Path:
    """Where an app run's object table is kept (one CSV per run, beside the history database ``path``): a batch's
    objects outlive the browser tab that counted them, as its counts do."""
    return Path(path or db_path()).parent / "objects" / f"run-{int(run_id)}.csv"


class HistoryError(Exception):
    """The history database cannot be used (reported as a warning by the callers that record)."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _set_aside(path: Path, err: Exception) -> Path:
    """Rename a damaged database (and its WAL files) out of the way; return the new name."""
    target = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    k = 1
    while target.exists():
        k += 1
        target = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{k}")
    os.replace(path, target)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.replace(side, target.with_name(target.name + suffix))
    logger.warning("history database %s is damaged (%s); set aside as %s, a new one is started", path, err, target)
    return target


def _open(path: Path, *, shared: bool = False) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=not shared)
    try:
        con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("PRAGMA foreign_keys = ON")
        con.executescript(_SCHEMA)
        _add_columns(con)
        con.execute("SELECT id FROM runs LIMIT 1").fetchall()
    except BaseException:
        con.close()
        raise
    return con


_ADDED_COLUMNS = (("pid", "INTEGER"), ("proc", "TEXT"))
"""Columns newer than the first histories: added to an old file when it is opened."""


def _add_columns(con: sqlite3.Connection) -> None:
    have = {row[1] for row in con.execute("PRAGMA table_info(runs)")}
    for name, kind in _ADDED_COLUMNS:
        if name in have:
            continue
        try:
            con.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
        except sqlite3.OperationalError as err:
            # another process added it a moment ago, or a read-only history (read as it is: see _run_columns)
            if "duplicate column" not in str(err).lower() and "readonly" not in str(err).lower().replace("-", ""):
                raise


def _run_columns(con: sqlite3.Connection) -> str:
    """``r.pid, r.proc``, or NULLs for a read-only history from before those columns."""
    have = {row[1] for row in con.execute("PRAGMA table_info(runs)")}
    return ", ".join(f"r.{name}" if name in have else f"NULL AS {name}" for name, _ in _ADDED_COLUMNS)


def _damaged(err: sqlite3.DatabaseError) -> bool:
    """Whether an error says the file is not a usable history (as opposed to busy or unreadable)."""
    text = str(err).lower()
    if any(s in text for s in ("not a database", "malformed", "corrupt", "no such column", "has no column")):
        return True
    return not isinstance(err, sqlite3.OperationalError)  # OperationalError: locked, read-only, disk I/O


@contextlib.contextmanager
def connect(path: str | os.PathLike | None = None, *, shared: bool = False) -> Iterator[sqlite3.Connection]:
    """A connection to the history database (created when missing), closed on exit.

    A damaged file is set aside and a fresh database opened instead. Raises :class:`HistoryError` when
    the database cannot be opened at all (read-only folder, locked for longer than the busy timeout).
    ``shared``: usable from other threads than the one opening it (one at a time).
    """
    p = Path(path) if path is not None else db_path()
    try:
        try:
            con = _open(p, shared=shared)
        except sqlite3.DatabaseError as err:
            if not _damaged(err) or not p.exists():
                raise
            _set_aside(p, err)
            con = _open(p, shared=shared)
    except (sqlite3.Error, OSError) as err:
        raise HistoryError(f"cannot open the run history {p}: {err}") from err
    try:
        yield con
    except sqlite3.Error as err:
        raise HistoryError(f"run history {p}: {err}") from err
    finally:
        con.close()


def _jsonable(value: Any) -> Any:
    """Row values as plain JSON (numpy / pandas scalars, NaN and pandas' NA -> None)."""
    if value is None or value is pd.NA:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def start_run(
    *,
    source: str,
    model: str,
    model_sha256: str | None,
    settings: dict[str, Any],
    inputs: Sequence[str],
    out_path: str | None = None,
    path: str | os.PathLike | None = None,
) -> int:
    """Record a new run (status ``running``); return its id."""
    with connect(path) as con:
        cur = con.execute(
            "INSERT INTO runs (started_at, host, source, model, model_sha256, settings, inputs, n_inputs, status,"
            " out_path, pid, proc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)",
            (_now(), socket.gethostname(), source, model, model_sha256, json.dumps(settings, sort_keys=True),
             json.dumps(list(inputs)), len(inputs), out_path, os.getpid(), _proc_token(os.getpid())),
        )
        return int(cur.lastrowid)


def add_rows(run_id: int, rows: Iterable[dict[str, Any]], *, path: str | os.PathLike | None = None,
             con: sqlite3.Connection | None = None) -> None:
    """Append per-image rows (dicts with the counts CSV's columns) to a run, in one short transaction
    (on ``con`` when given, else on a connection of its own)."""
    rows = [{k: _jsonable(v) for k, v in r.items()} for r in rows]
    if not rows:
        return
    if con is None:
        with connect(path) as own:
            _insert_rows(own, run_id, rows)
    else:
        _insert_rows(con, run_id, rows)


def _insert_rows(con: sqlite3.Connection, run_id: int, rows: list[dict[str, Any]]) -> None:
    con.execute("BEGIN IMMEDIATE")
    try:
        (seq,) = con.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM rows WHERE run_id = ?", (run_id,)).fetchone()
        con.executemany(
            "INSERT INTO rows (run_id, seq, file, status, count, row) VALUES (?, ?, ?, ?, ?, ?)",
            [(run_id, seq + i, str(r.get("file", "")), str(r.get("status", "")),
              None if r.get("count") in (None, "") else int(float(r["count"])), json.dumps(r))
             for i, r in enumerate(rows)],
        )
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:  # an interrupt can land after COMMIT ended the transaction
            con.execute("ROLLBACK")
        raise


def finish_run(run_id: int, status: str, *, path: str | os.PathLike | None = None) -> None:
    """Mark a run ``done``, ``interrupted``, ``stopped`` or ``failed`` (:data:`STATUSES`)."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    with connect(path) as con:
        con.execute("UPDATE runs SET status = ?, finished_at = ? WHERE id = ?", (status, _now(), run_id))


_LIST_SQL = """
SELECT r.id, r.started_at, r.finished_at, r.host, r.source, r.model, r.model_sha256, r.n_inputs, r.status,
       COUNT(x.seq) AS n_rows, SUM(x.status = 'ok') AS n_ok, SUM(x.status = 'error') AS n_failed,
       SUM(x.status = 'skipped') AS n_skipped,
       SUM(x.count) AS total_count, r.out_path, r.settings, {process}
FROM runs r LEFT JOIN rows x ON x.run_id = r.id
GROUP BY r.id ORDER BY r.id DESC LIMIT ?
"""
RUN_COLUMNS = ("id", "started_at", "finished_at", "host", "source", "model", "model_sha256", "n_inputs", "status",
               "n_rows", "n_ok", "n_failed", "n_skipped", "total_count", "out_path", "settings", "pid", "proc")
"""Columns of :func:`list_runs`: ``n_failed`` the rows that could not be read or counted (status ``error``),
``n_skipped`` those left out on purpose (status ``skipped``: in the app, files named like ground truth, a zip's
files that are not images, images a stopped batch never reached; the command line writes no row for the files it
leaves out, and an error row for a file named on it that it cannot read)."""

ENDED = "ended"
"""The status :func:`list_runs` shows for a run recorded as running whose process is gone (killed, or the
machine went down): it will never finish, and its rows are what it counted."""


def list_runs(limit: int = 100, *, path: str | os.PathLike | None = None) -> pd.DataFrame:
    """The latest ``limit`` runs, newest first, with their row counts (:data:`RUN_COLUMNS`). A run still
    marked running by a process of this host that no longer exists shows as :data:`ENDED`."""
    with connect(path) as con:
        rows = con.execute(_LIST_SQL.format(process=_run_columns(con)), (int(limit),)).fetchall()
    df = pd.DataFrame(rows, columns=list(RUN_COLUMNS))
    for col in ("n_ok", "n_failed", "n_skipped", "total_count"):
        df[col] = df[col].fillna(0).astype(int)
    gone = [_ended(s, h, pid, proc) for s, h, pid, proc in zip(df["status"], df["host"], df["pid"], df["proc"],
                                                                  strict=True)]
    df.loc[gone, "status"] = ENDED
    return df


def last_run_writing(out_path: str | os.PathLike, *, path: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The latest run recorded as writing the counts CSV ``out_path``: ``{"id", "started_at", "n_rows"}`` (its rows
    kept here), or None where no run is."""
    with connect(path) as con:
        row = con.execute("SELECT r.id, r.started_at, COUNT(x.seq) FROM runs r LEFT JOIN rows x ON x.run_id = r.id "
                          "WHERE r.out_path = ? GROUP BY r.id ORDER BY r.id DESC LIMIT 1",
                          (str(Path(out_path).resolve()),)).fetchone()
    return None if row is None else {"id": int(row[0]), "started_at": str(row[1]), "n_rows": int(row[2])}


def _ended(status: str, host: str, pid: Any, proc: Any = None) -> bool:
    """A run recorded as running by a process of this machine that no longer exists."""
    if status != "running" or host != socket.gethostname() or pid is None or pd.isna(pid):
        return False
    if isinstance(proc, str) and proc:
        mine = _proc_token(os.getpid())
        if mine is None or mine.split(":")[0] != proc.split(":")[0]:
            return False  # another pid namespace (a container sharing the host name): not ours to judge
        return _proc_token(int(pid)) != proc  # gone, or the pid now belongs to a later process
    return not _alive(int(pid))


def _proc_token(pid: int) -> str | None:
    """``<pid namespace>:<start time>`` of a process (Linux), so that a reused pid is not taken for the
    process that recorded a run; None where it cannot be read (the process is gone, or not Linux)."""
    try:
        namespace = os.stat(f"/proc/{pid}/ns/pid").st_ino
        stat = Path(f"/proc/{pid}/stat").read_text()
        start = stat[stat.rindex(")") + 2:].split()[19]  # field 22: start time, in clock ticks after boot
    except (OSError, ValueError, IndexError):
        return None
    return f"{namespace}:{start}"


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (True where that cannot be told)."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: it exists
        return True
    return True


def get_run(run_id: int, *, path: str | os.PathLike | None = None) -> dict[str, Any]:
    """One run's record (settings and inputs decoded from JSON); KeyError when there is no such run."""
    with connect(path) as con:
        con.row_factory = sqlite3.Row
        row = con.execute("SELECT * FROM runs WHERE id = ?", (int(run_id),)).fetchone()
    if row is None:
        raise KeyError(f"no run {run_id} in the history")
    run = dict(row)
    run["settings"] = json.loads(run["settings"])
    run["inputs"] = json.loads(run["inputs"])
    if _ended(run["status"], run["host"], run.get("pid"), run.get("proc")):
        run["status"] = ENDED
    return run


def run_rows(run_id: int, *, path: str | os.PathLike | None = None) -> pd.DataFrame:
    """A run's per-image rows as the counts table (the columns they were recorded with, in order), in the order
    of the run's inputs (workers finish in any order; a row of no input listed follows as it came)."""
    with connect(path) as con:
        rows = con.execute("SELECT row FROM rows WHERE run_id = ? ORDER BY seq", (int(run_id),)).fetchall()
        found = con.execute("SELECT inputs FROM runs WHERE id = ?", (int(run_id),)).fetchone()
    from .csvout import unescape_cell

    rank = {str(name): i for i, name in enumerate(json.loads(found[0]) if found else [])}
    # rows kept by --resume were recorded as their CSV wrote them ('=x for =x)
    records = sorted((json.loads(r[0]) for r in rows),
                     key=lambda rec: rank.get(unescape_cell(str(rec.get("file", ""))), len(rank)))
    frame = pd.DataFrame(records)
    for col in frame.columns:  # whole numbers stay whole where a failed row's empty cell made the column float
        values = [r[col] for r in records if r.get(col) is not None]
        if values and frame[col].dtype.kind == "f" and all(isinstance(v, int) and not isinstance(v, bool)
                                                            for v in values):
            frame[col] = frame[col].astype("Int64")
    return frame


def _interrupt_behind(err: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt somewhere in ``err``'s chain of causes and contexts, if any."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


class Recorder:
    """Records one run, never raising: a history that cannot be written is reported once and skipped.

    ``warning`` holds the message for a UI to show (None while all is well).
    """

    def __init__(self, *, source: str, model: str, model_sha256: str | None, settings: dict[str, Any],
                 inputs: Sequence[str], out_path: str | None = None, path: str | os.PathLike | None = None) -> None:
        self.path = path
        self.warning: str | None = None
        self.run_id: int | None = None
        self._con: sqlite3.Connection | None = None
        self._stack: contextlib.ExitStack | None = None
        self._objects_columns: list[str] | None = None
        self._objects_failed = False
        self._try(lambda: setattr(self, "run_id", start_run(
            source=source, model=model, model_sha256=model_sha256, settings=settings, inputs=inputs,
            out_path=out_path, path=path)))

    def _try(self, action) -> None:
        try:
            action()
        except (HistoryError, sqlite3.Error, OSError) as err:
            interrupt = _interrupt_behind(err)
            if interrupt is not None:
                # Ctrl-C during a write: an error on the way out (a failed rollback) must not hide it
                raise interrupt from None
            if self.warning is None:
                self.warning = f"the run is not recorded in the history: {err}"
                logger.warning("%s", self.warning)
            self.run_id = None
            self._close()

    def _connection(self) -> sqlite3.Connection:
        """The connection the rows are written on, opened at the first row and kept until :meth:`finish`
        (the writing thread may change: a background job's rows after the page's first)."""
        if self._con is None:
            stack = contextlib.ExitStack()
            self._con = stack.enter_context(connect(self.path, shared=True))
            self._stack = stack
        return self._con

    def _close(self) -> None:
        stack, self._stack, self._con = self._stack, None, None
        if stack is not None:
            with contextlib.suppress(sqlite3.Error, HistoryError):
                stack.close()

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        if self.run_id is not None:
            rows = list(rows)
            self._try(lambda: add_rows(self.run_id, rows, con=self._connection()))

    def add_objects(self, objects: pd.DataFrame) -> None:
        """Append one image's object table to the run's objects CSV (:func:`objects_path`); a file that cannot be
        written is reported once (:attr:`warning`) and the counts go on being recorded."""
        if self.run_id is None or self._objects_failed or not len(objects):
            return
        from .csvout import csv_text

        target = objects_path(self.run_id, path=self.path)
        try:
            if self._objects_columns is None:  # the run's first: a file left by a run of this id before is replaced
                target.parent.mkdir(parents=True, exist_ok=True)
                self._objects_columns = [str(c) for c in objects.columns]
                mode, header = "w", True
            else:
                mode, header = "a", False
            with open(target, mode, encoding="utf-8", newline="") as fh:
                fh.write(csv_text(objects.reindex(columns=self._objects_columns), header=header))
        except OSError as err:
            self._objects_failed = True
            note = f"the run's object table is not kept in the history: {err}"
            self.warning = self.warning or note
            logger.warning("%s", note)

    def finish(self, status: str) -> None:
        self._close()
        if self.run_id is not None:
            run_id = self.run_id
            self._try(lambda: finish_run(run_id, status, path=self.path))
