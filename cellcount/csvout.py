"""The one way cellcount writes CSV files and other results: formula-safe cells, atomic replacement.

Spreadsheets run a cell that starts with ``=``, ``+``, ``-`` or ``@`` (and some treat a leading tab or
carriage return the same way) as a formula, so a file named ``=HYPERLINK(...).png`` would become a live
link in Excel. Every text cell with such a start is written with a leading apostrophe (the OWASP advice),
which spreadsheets show as plain text; numbers stay numbers. Files are written to a temporary file in the
same folder and renamed into place, so a reader (or an interrupted run) never sees half a file.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

logger = logging.getLogger(__name__)

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
"""Text cells starting with one of these are escaped by :func:`escape_cell`."""


def escape_cell(value: Any) -> Any:
    """``value`` with a leading apostrophe when it is text starting with one of :data:`FORMULA_PREFIXES`.

    Non-text values (numbers, booleans, None, NaN) are returned unchanged.
    """
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def unescape_cell(value: Any) -> Any:
    """:func:`escape_cell` undone: the text as it was before the apostrophe, for a cell read back."""
    if isinstance(value, str) and value.startswith("'") and value[1:].startswith(FORMULA_PREFIXES):
        return value[1:]
    return value


def safe_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its text cells (and column names) escaped with :func:`escape_cell`; ``df`` itself when
    nothing needs escaping (a counts row is written per image: copying every frame cost ~4 ms a row).

    Only object / string columns are touched, so numeric columns keep their dtype (and ``-1.5`` stays a
    number). The input is not modified.
    """
    escaped = {}
    for col in df.columns:
        series = df[col]
        if not (pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)):
            continue
        values = series.tolist()
        if any(isinstance(v, str) and v.startswith(FORMULA_PREFIXES) for v in values):
            escaped[col] = pd.Series([escape_cell(v) for v in values], index=series.index, dtype=object)
    names = [escape_cell(str(c)) if isinstance(c, str) else c for c in df.columns]
    if not escaped and names == list(df.columns):
        return df
    out = df.copy()
    for col, series in escaped.items():
        out[col] = series
    out.columns = names
    return out


TAB_SEPARATED = (".tsv", ".tab")
"""Output names written tab-separated (Excel opens a ``.tsv`` expecting tabs: a comma-separated one shows each
row in one cell)."""


def delimiter(path: str | os.PathLike) -> str:
    """The field separator a table written to ``path`` gets, and is read back with: a tab for ``.tsv``."""
    return "\t" if Path(path).suffix.lower() in TAB_SEPARATED else ","


def csv_text(df: pd.DataFrame, *, header: bool = True, sep: str = ",") -> str:
    """``df`` as CSV text (no index), formula-safe: the one formatting every CSV writer uses. Text holding a
    carriage return (macOS names a folder's custom icon ``Icon\r``) is quoted, all text then: the lines end in
    ``\n`` alone, which Python's writer quotes and a bare ``\r`` it does not, so such a name split its row in two
    for every reader (and ``--resume`` counted the image again)."""
    safe = safe_frame(df)
    return safe.to_csv(index=False, header=header, lineterminator="\n", sep=sep, quoting=_quoting(safe))


def _quoting(df: pd.DataFrame) -> int:
    """csv's quoting for ``df``: every text quoted where one holds a carriage return (see :func:`csv_text`)."""
    import csv

    texts = [c for c in df.columns if df[c].dtype == object or pd.api.types.is_string_dtype(df[c])]
    held = any(df[c].map(lambda v: isinstance(v, str) and "\r" in v).any() for c in texts)
    return csv.QUOTE_NONNUMERIC if held else csv.QUOTE_MINIMAL


def csv_bytes(df: pd.DataFrame) -> bytes:
    """``df`` as formula-safe UTF-8 CSV bytes for downloads, with a byte-order mark: Excel reads a CSV without
    one in the system's legacy code page, so a file named ``Kern_µm.tif`` would show as ``Kern_Âµm.tif``
    (pandas and other CSV readers skip the mark)."""
    return csv_text(df).encode("utf-8-sig")


def _read_umask() -> int:
    try:  # Linux says it without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere reading the umask means setting it: done once, at import
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _give_mode(tmp: str, target: Path) -> None:
    """Permissions for a temporary file about to replace ``target``: the old file's, else what a plain
    ``open()`` would give (0666 less the umask), instead of mkstemp's owner-only 0600, so colleagues who
    could read a counts CSV in a shared folder still can after a rerun."""
    try:
        mode = target.stat().st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~_UMASK
    try:
        os.chmod(tmp, mode)
    except OSError:  # a share that refuses chmod (CIFS, FUSE) still takes the file, with its own modes
        pass


def write_target(path: str | os.PathLike) -> Path:
    """The file a write to ``path`` replaces: the file a symbolic link points to, so that ``latest.csv ->
    run42.csv`` keeps its link and run42.csv gets the rows (a rename over the link replaced the link itself)."""
    target = Path(path)
    return Path(os.path.realpath(target)) if target.is_symlink() else target


def not_a_file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot take an output written by rename, or None: ``-`` (standard output) or an entry of
    ``/dev`` or ``/proc`` (``/dev/stdout`` sent to a file would be replaced by the CSV, link and all)."""
    text = str(path)
    if text == "-":
        return ("'-' (standard output): results are written to files, row by row as the run goes (a resume reads "
                "them back)")
    parts = Path(os.path.abspath(text)).parts
    if parts[:2] == ("/", "proc") or (parts[:2] == ("/", "dev") and parts[:3] != ("/", "dev", "shm")):
        return f"{text} is a device or process entry, not a file or folder"
    return None


class OutputBusy(OSError):
    """Another process is writing this output (:func:`hold_outputs`)."""


@contextlib.contextmanager
def hold_outputs(paths: Iterable[str | os.PathLike]) -> Iterator[None]:
    """Hold each of ``paths`` for this run: a second run started on the same file meanwhile (an overlapping cron
    job) gets :class:`OutputBusy` instead of splicing its rows into this one's file mid-row. An advisory lock
    (``fcntl.flock``) on a hidden ``.<name>.lock`` beside each file, removed at the end. Where no lock can be taken
    (Windows, a share without locks, a lock file another user left read-only to us), the run goes on unheld."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    held: list[tuple[Path, int]] = []
    try:
        for path in paths:
            target = write_target(path)
            lock = target.parent / f".{target.name}.lock"
            fd = _locked(lock, fcntl)
            if fd is _BUSY:
                other = ""
                with contextlib.suppress(OSError):
                    other = lock.read_text(encoding="ascii", errors="replace").strip()[:32]
                raise OutputBusy(f"another run is writing {path}{f' (process {other})' if other else ''}; "
                                 "wait for it to end, or give this run another output file")
            if fd is not None:
                held.append((lock, fd))
        yield
    finally:
        for lock, fd in reversed(held):
            with contextlib.suppress(OSError):
                lock.unlink()  # while still held: a run that opened it meanwhile sees it gone
            os.close(fd)


_BUSY = -1


def _locked(lock: Path, fcntl: Any) -> int | None:
    """An open descriptor of ``lock`` holding its exclusive lock, :data:`_BUSY` when another process holds it, or
    None when no lock can be had here (locks unsupported, the file unreadable)."""
    import errno

    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)  # every user of a shared folder can lock it after us
        except PermissionError:  # another user's lock file: a read-only descriptor locks as well
            try:
                fd = os.open(lock, os.O_RDONLY)
            except OSError:
                return None
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return _BUSY
            logger.debug("no lock on %s: %s", lock, err)  # NFS without its lock service, a FUSE share
            return None
        try:  # the holder before may have removed the file just after this open: lock the one in place
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            with contextlib.suppress(OSError):  # who holds it, for the message a second run gets
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode("ascii"))
            return fd
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path`` and rename it into place (through a symbolic link:
    :func:`write_target`).

    A reader sees the old file or the new one, never a half-written one; on error the old file is kept
    and the temporary file removed.
    """
    target = write_target(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        _give_mode(tmp, target)
        os.replace(tmp, target)
    except BaseException:  # also KeyboardInterrupt: never leave the temporary file behind
        Path(tmp).unlink(missing_ok=True)
        raise


def write_csv(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write ``df`` as a formula-safe CSV, atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, csv_text(df, sep=delimiter(path)).encode("utf-8"))  # for pipelines: no byte-order mark


def keep_copy(path: str | os.PathLike) -> Path:
    """Copy ``path`` to ``NAME.replaced-DATE-TIME.SUFFIX`` beside it, before a run replaces it."""
    path = Path(path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kept = path.with_name(f"{path.stem}.replaced-{stamp}{path.suffix}")
    n = 1
    while kept.exists():  # two runs within a second (a script over small folders) keep both copies
        n += 1
        kept = path.with_name(f"{path.stem}.replaced-{stamp}-{n}{path.suffix}")
    shutil.copy2(path, kept)
    return kept


def check_writable(path: str | os.PathLike) -> None:
    """Raise OSError when a file cannot be created in ``path``'s folder (tried with a temporary file)."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".check", dir=target.parent or ".")
    os.close(fd)
    os.unlink(tmp)


SORT_MAX_BYTES = 256 << 20
"""Largest CSV that :meth:`CsvStream.close` puts in order (an objects CSV of a slide can hold millions of rows)."""


PUBLISH_GROWTH = 0.05
"""A throttled publish waits until the file has grown by this share since the last one (or :data:`PUBLISH_EVERY_S`):
the bytes copied over a run are then about 1 / PUBLISH_GROWTH times the final file, not the square of its rows."""
PUBLISH_EVERY_S = 30.0


def publish_with(main: CsvStream, *companions: CsvStream | None) -> None:
    """Publish ``main`` (the counts, whose rows mark work done for ``--resume``) when its throttle says it is due, its
    ``companions`` (regions, objects, the label index) first where they hold rows not yet published, so that it never
    runs ahead of them; where a companion's own time throttle forbids a publish now, ``main`` waits. (Waiting for the
    companions to publish on their own held counts back nearly to the end of a run: they publish on different
    images.)"""
    if not main.pending or not main.due():
        return
    pending = [c for c in companions if c is not None and c.pending]
    if any(not c.may_publish() for c in pending):
        return
    for c in pending:
        c.publish()
    main.publish()


class CsvStream:
    """A CSV file that grows row by row and is valid after every :meth:`append`.

    Rows accumulate in a hidden working file next to ``path`` (``.<name>.part``); after each append the
    working file is copied to a temporary file and renamed over ``path``. An interrupt or crash leaves
    ``path`` holding the header and every row appended so far. Copying a large file after every image
    would make a long batch quadratic, so a publish is skipped while the last one took more than a fifth
    of the time since it ended, and until the rows since add :data:`PUBLISH_GROWTH` of the file or
    :data:`PUBLISH_EVERY_S` have passed (2000 small images on a fast disk wrote 1.2 GB for a 1.3 MB CSV);
    :meth:`close` always publishes, so an interrupted run keeps every row.

    Parameters
    ----------
    path : path
        The CSV to write (replaced at once by a file holding the header and ``keep`` rows).
    columns : sequence of str, optional
        Column order; default: the columns of the first appended frame.
    keep : pandas.DataFrame, optional
        Rows to start with (e.g. rows of an interrupted run being resumed), written as they are: they
        were escaped when first written.
    empty_columns : sequence of str, optional
        Header written by :meth:`close` when no columns were ever known (nothing appended).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        columns: Sequence[str] | None = None,
        keep: pd.DataFrame | None = None,
        empty_columns: Sequence[str] | None = None,
    ) -> None:
        self.path = write_target(path)
        self.sep = delimiter(self.path)
        self.columns: list[str] | None = list(columns) if columns is not None else None
        self._empty_columns = list(empty_columns) if empty_columns is not None else None
        self.n_rows = 0
        self._part = self.path.parent / f".{self.path.name}.part"
        self._fh = open(self._part, "w", encoding="utf-8", newline="")
        self._publish_seconds = 0.0
        self._last_publish = 0.0
        self._dirty = False
        self._written = 0  # characters written to the working file, and at the last publish
        self._published = 0
        if keep is not None and len(keep.columns):
            self.columns = self.columns or [str(c) for c in keep.columns]
            kept = keep.reindex(columns=self.columns)
            self._written += self._fh.write(kept.to_csv(index=False, lineterminator="\n", sep=self.sep,
                                                        quoting=_quoting(kept)))
            self.n_rows = len(keep)
        elif self.columns is not None:
            self._written += self._fh.write(pd.DataFrame(columns=self.columns).to_csv(index=False, lineterminator="\n",
                                                                                      sep=self.sep))
        self._publish()

    def append(self, df: pd.DataFrame | Iterable[dict[str, Any]], *, publish: bool | None = None) -> bool:
        """Append rows (a frame or dicts); publish the file unless throttled (see the class notes).

        ``publish=False`` holds the publish back (until a later append or :meth:`close`), ``True`` forces
        it. Returns whether the file was published, so a second file can be kept from running ahead.
        """
        frame = df if isinstance(df, pd.DataFrame) else pd.DataFrame(list(df))
        header = self.columns is None and len(frame.columns) > 0
        if header:
            self.columns = [str(c) for c in frame.columns]
        if self.columns is not None and (len(frame) or header):
            self._written += self._fh.write(csv_text(frame.reindex(columns=self.columns), header=header, sep=self.sep))
            self.n_rows += len(frame)
            self._dirty = True
        if publish is None:
            publish = self.due()
        if publish:
            self._publish()
        return publish

    def may_publish(self) -> bool:
        """Whether the time throttle allows a publish now (the last one took at most a fifth of the time since)."""
        return time.perf_counter() - self._last_publish >= 5 * self._publish_seconds

    def due(self) -> bool:
        """Whether a throttled publish is due: allowed by time, and the file grew by :data:`PUBLISH_GROWTH` since the
        last one or :data:`PUBLISH_EVERY_S` passed."""
        since = time.perf_counter() - self._last_publish
        return self.may_publish() and (self._written - self._published >= PUBLISH_GROWTH * self._published
                                       or since >= PUBLISH_EVERY_S)

    def publish(self) -> None:
        """Publish the rows so far now."""
        self._publish()

    @property
    def pending(self) -> bool:
        """Whether rows were appended since the file was last published."""
        return self._dirty

    def _publish(self) -> None:
        t0 = time.perf_counter()
        self._fh.flush()
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        try:
            shutil.copyfile(self._part, tmp)
            _give_mode(tmp, self.path)
            os.replace(tmp, self.path)
        except BaseException:  # also KeyboardInterrupt: never leave the temporary file behind
            Path(tmp).unlink(missing_ok=True)
            raise
        self._last_publish = time.perf_counter()
        self._publish_seconds = self._last_publish - t0
        self._dirty = False
        self._published = self._written

    def close(self, *, order: tuple[str, Sequence[str]] | None = None, publish: bool = True) -> None:
        """Publish the rows not yet published and remove the working file.

        ``order=(column, values)`` sorts the rows first, stably, by where their ``column`` cell stands in
        ``values`` (rows whose cell is not there follow, as they were): rows appended as parallel work
        finished end in the order of the inputs. ``publish=False``: the file keeps what it last published (a
        table published with this one could not be written: this one must not get ahead of it).
        """
        if self._fh.closed:
            return
        if not publish:
            self._dirty = False
            order = None
        try:
            if self.columns is None and self._empty_columns is not None:
                self.columns = self._empty_columns
                self._fh.write(csv_text(pd.DataFrame(columns=self.columns), sep=self.sep))
                self._dirty = True
            if order is not None and self.n_rows > 1:
                try:
                    self._dirty = self._sort_part(*order) or self._dirty
                except Exception as err:  # noqa: BLE001 - the rows matter more than their order: published as they are
                    logger.warning("%s: rows left in the order they were counted (%s)", self.path, err)
            if self._dirty:
                self._publish()
        finally:
            self._fh.close()
            # a folder no longer writable keeps them: the error that made it so is the one to report
            with contextlib.suppress(OSError):
                self._part.unlink(missing_ok=True)
                # a Ctrl-C can land between creating a publish's temporary file and the try that removes it
                for tmp in self.path.parent.glob(f".{glob.escape(self.path.name)}.*.tmp"):
                    tmp.unlink(missing_ok=True)

    def _sort_part(self, column: str, values: Sequence[str]) -> bool:
        """Sort the working file's rows as :meth:`close` says; whether their order changed. A file above
        :data:`SORT_MAX_BYTES` stays as it is (sorting reads it whole)."""
        self._fh.flush()
        if self._part.stat().st_size > SORT_MAX_BYTES:
            logger.info("%s: too large to sort (%d bytes); rows left in the order they were counted", self.path,
                        self._part.stat().st_size)
            return False
        with open(self._part, encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh, delimiter=self.sep))
        if not rows or column not in rows[0]:
            return False
        at = rows[0].index(column)
        rank = {value: i for i, value in enumerate(values)}
        body = rows[1:]
        ordered = sorted(body, key=lambda row: rank.get(row[at], len(rank)) if len(row) > at else len(rank))
        if ordered == body:
            return False
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
                held = any("\r" in cell for row in body for cell in row)  # quoted, as csv_text quotes it
                csv.writer(out, lineterminator="\n", delimiter=self.sep,
                           quoting=csv.QUOTE_ALL if held else csv.QUOTE_MINIMAL).writerows([rows[0], *ordered])
            os.replace(tmp, self._part)  # the open handle keeps the old file; publishing copies the new one
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return True

    def __enter__(self) -> CsvStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
