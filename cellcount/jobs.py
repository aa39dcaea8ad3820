"""Long work in a background thread: start, watch its progress, cancel, read its result or error.

A UI (the app's Train and Batch pages) or a notebook starts a job and polls its ``snapshot()``, so the work
goes on while the user looks at other pages. :class:`FinetuneJob` runs :func:`cellcount.finetune.finetune`,
which reports progress through a callback and stops between steps when the job's cancel event is set;
:class:`JobBoard` keeps one fine-tune per owner (a session) and lets one run at a time, since a laptop CPU
has no room for two trainings. :class:`BatchJob` runs :func:`cellcount.batch.count_many` and keeps every
finished image, so a batch stopped half-way still has its rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .batch import BatchItem, count_many, counts_frame, item_objects
from .errors import CellcountError
from .finetune import Cancelled, FinetuneProgress, FinetuneResult, finetune
from .finetune.fit import NOTE_PREFIX
from .history import Recorder
from .models.base import CountModel
from .params import CountParams

logger = logging.getLogger(__name__)

MAX_LOSSES = 2000
"""Loss history kept for a plot: enough for a long run; older points are thinned out."""


@dataclass(frozen=True)
class JobSnapshot:
    """A job's state at one moment. ``status``: 'running', 'done', 'cancelled' or 'failed'."""

    status: str
    name: str
    base: str
    progress: FinetuneProgress | None
    losses: tuple[tuple[int, float], ...]
    started_s: float
    elapsed_s: float
    result: FinetuneResult | None = None
    error: str | None = None
    unexpected: bool = False
    """The error is no :class:`~cellcount.errors.CellcountError` (a refusal with its reason) but a fault."""
    cancelled_by: str | None = None
    """Who asked the run to stop, where the caller said (the app: "elsewhere" for a run started in another tab)."""
    notes: tuple[str, ...] = ()
    """The run's notes so far (partly dotted images, dots in µm, images left out ...), as they come: said while it
    runs, the user may cancel and fix the set rather than wait for the result to say them."""

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def fraction(self) -> float:
        """0-1 for a progress bar: the training steps done (reading and scoring take the ends)."""
        p = self.progress
        if self.status != "running":
            return 1.0
        if p is None or p.stage == "prepare":
            return 0.0
        if p.stage == "train":  # no total yet while the first steps time the pace
            return min(0.05 + 0.85 * p.step / p.steps, 0.9) if p.steps else 0.05
        return 0.95


class _Threaded:
    """What both jobs share: a daemon thread running ``self._run``, a cancel event, waiting for the end."""

    _thread_name = "job"

    def _init_thread(self) -> None:
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._status = "running"
        self._t0 = time.time()
        self._t_end: float | None = None
        self._cancelled_by: str | None = None

    def _start_thread(self) -> None:
        self._t0 = time.time()
        self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        raise NotImplementedError

    def cancel(self, by: str | None = None) -> None:
        """Ask the work to stop at its next stopping point (see the job's class); ``by``: who asked, said to the
        one who started it (else a run cancelled from a second tab reads as if its owner cancelled it)."""
        with self._lock:
            self._cancelled_by = self._cancelled_by or by
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; True once it has finished."""
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            return self._status != "running"


@dataclass
class FinetuneJob(_Threaded):
    """:func:`cellcount.finetune.finetune` (``base``, ``data``, ``name`` and ``options``) in a daemon thread."""

    base: str
    data: Any
    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._init_thread()
        self.job_id = uuid.uuid4().hex  # which session started it (an object's id() can be reused)
        self._thread_name = f"finetune-{self.name}"
        self._progress: FinetuneProgress | None = None
        self._losses: list[tuple[int, float]] = []
        self._notes: list[str] = []
        self._result: FinetuneResult | None = None
        self._error: str | None = None
        self._unexpected = False

    def start(self) -> FinetuneJob:
        """Start the fine-tune; :meth:`cancel` stops it before its next training step, writing nothing."""
        self._start_thread()
        return self

    def _report(self, p: FinetuneProgress) -> None:
        with self._lock:
            self._progress = p
            if p.message.startswith(NOTE_PREFIX) and (note := p.message[len(NOTE_PREFIX):]) not in self._notes:
                self._notes.append(note)
            if p.stage == "train" and math.isfinite(p.loss):
                self._losses.append((p.step, p.loss))
                if len(self._losses) > MAX_LOSSES:
                    self._losses = self._losses[::2]

    def _run(self) -> None:
        status, result, error, unexpected = "failed", None, None, False
        mark = _mark_running(self)
        try:
            result = finetune(self.base, self.data, name=self.name, progress=self._report, cancel=self._cancel,
                              **self.options)
            status = "done"
        except Cancelled:
            status = "cancelled"
        except CellcountError as err:
            error = str(err)
        except Exception as err:  # noqa: BLE001 - a worker thread must report, never die silently
            logger.exception("fine-tune %s failed", self.name)
            error, unexpected = f"unexpected error ({type(err).__name__}): {err}", True
        finally:
            self.data = None  # the images are not needed any more
            if mark is not None:
                with contextlib.suppress(OSError):
                    mark.unlink()
        with self._lock:
            self._status, self._result, self._error, self._unexpected = status, result, error, unexpected
            self._t_end = time.time()

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            end = self._t_end if self._t_end is not None else time.time()
            return JobSnapshot(status=self._status, name=self.name, base=str(self.base), progress=self._progress,
                               losses=tuple(self._losses), started_s=self._t0, elapsed_s=end - self._t0,
                               result=self._result, error=self._error, unexpected=self._unexpected,
                               cancelled_by=self._cancelled_by, notes=tuple(self._notes))


RUNNING_MARK_GLOB = ".finetune-running-*.json"
"""Beside the user's models while a fine-tune runs in the app: what it is, where it runs. A server stopped mid-run
(a restart, a crash) leaves it behind, so the next visit can say what became of that run."""


def _mark_running(job: FinetuneJob) -> Path | None:
    """Write the running mark of ``job`` (None where the models folder cannot be written: nothing to tell then)."""
    from .models.loading import user_models_dir

    path = user_models_dir() / RUNNING_MARK_GLOB.replace("*", job.job_id)
    mark = {"name": job.name, "base": str(job.base), "started": time.time(), "pid": os.getpid(),
            "host": socket.gethostname(), "process": _process_tag(os.getpid())}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(mark), encoding="utf-8")
    except OSError:
        return None
    return path


def _process_tag(pid: int) -> str | None:
    """When process ``pid`` started (Linux: its start time since boot, with the boot's id), or None where unknown: a
    restarted container's server is often pid 1 again, on the same host name."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return f"{boot}:{fields[19]}"  # field 22 of stat, the start time in clock ticks
    except (OSError, IndexError):
        return None


def _alive(pid: int, tag: str | None = None) -> bool:
    """Whether process ``pid`` still runs, the one that wrote ``tag`` (:func:`_process_tag`) where one was written."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        pass
    now = _process_tag(pid)
    return tag is None or now is None or now == tag


CUT_OFF_MARK_GLOB = ".finetune-cut-off-*.json"
"""A running mark whose process is gone, kept under this name while it is said (:data:`CUT_OFF_SAID_S`)."""
CUT_OFF_SAID_S = 24 * 3600.0
"""How long after it is found a cut-off run is said to every visit of the Train page: one tab's reload, or a
colleague's tab opened first, would otherwise take the only notice."""


def interrupted_finetunes(now: float | None = None) -> list[dict[str, Any]]:
    """The fine-tunes whose server stopped while they ran (their marks left behind on this machine, their process
    gone), found so within :data:`CUT_OFF_SAID_S`: name, base and start time (seconds since the epoch), for every visit
    to say; nothing of those runs was saved (a model is written only at the end). Older ones are forgotten."""
    from .models.loading import user_models_dir

    now = time.time() if now is None else now
    folder = user_models_dir()
    for path in sorted(folder.glob(RUNNING_MARK_GLOB)):
        try:
            mark = json.loads(path.read_text(encoding="utf-8"))
            if mark.get("host") != socket.gethostname() or _alive(int(mark["pid"]), mark.get("process")):
                continue  # running on (this server, another one sharing the folder): not cut off
            # the day it is said runs from now, when it is found cut off (a run cut off over a weekend is still said)
            (folder / CUT_OFF_MARK_GLOB.replace("*", path.name[len(".finetune-running-"):-len(".json")])).write_text(
                json.dumps({**mark, "found": now}), encoding="utf-8")
            path.unlink()
        except (OSError, ValueError, KeyError, TypeError):
            continue
    out = []
    for path in sorted(folder.glob(CUT_OFF_MARK_GLOB)):
        try:
            mark = json.loads(path.read_text(encoding="utf-8"))
            started = float(mark.get("started", 0.0))
            if now - float(mark.get("found", started)) > CUT_OFF_SAID_S:
                path.unlink()
                continue
        except (OSError, ValueError, TypeError):
            continue
        out.append({"name": str(mark.get("name", "")), "base": str(mark.get("base", "")), "started": started})
    return out


class JobBoard:
    """At most one job per owner and one running job in all; a finished job stays until its owner clears it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, FinetuneJob] = {}

    def get(self, owner: str) -> FinetuneJob | None:
        with self._lock:
            return self._jobs.get(owner)

    def running(self) -> FinetuneJob | None:
        """The job running now, whoever started it."""
        with self._lock:
            return next((j for j in self._jobs.values() if j.snapshot().running), None)

    def start(self, owner: str, job: FinetuneJob) -> FinetuneJob:
        """Start ``job`` for ``owner``; CellcountError when a job is already running (this owner's or another's)."""
        with self._lock:
            busy = next((j for j in self._jobs.values() if j.snapshot().running), None)
            if busy is not None:
                raise CellcountError(f"a fine-tune ({busy.name}) is already running in this app; "
                                     "wait for it or cancel it first")
            self._jobs[owner] = job
            return job.start()

    def follow(self, owner: str) -> FinetuneJob | None:
        """Show the running job to ``owner`` too when ``owner`` has none (running or finished and not cleared):
        a session cannot tell its tab's earlier self (before a reload) from another tab, and either wants to
        see the run that holds the CPU, stop it, and read its outcome. Returns ``owner``'s job after that."""
        with self._lock:
            mine = self._jobs.get(owner)
            if mine is None:
                mine = next((j for j in self._jobs.values() if j.snapshot().running), None)
                if mine is not None:
                    self._jobs[owner] = mine
            return mine

    def latest_finished(self) -> FinetuneJob | None:
        """The job that finished last and that no owner has cleared: a tab reloaded after its run ended starts a
        new session, which :meth:`follow` gives nothing, and would see no word of the run."""
        with self._lock:
            done = [(s.started_s + s.elapsed_s, j) for j in self._jobs.values() if not (s := j.snapshot()).running]
        return max(done, key=lambda t: t[0])[1] if done else None

    def clear(self, owner: str) -> None:
        """Forget the owner's finished job (a running one is kept)."""
        with self._lock:
            job = self._jobs.get(owner)
            if job is not None and not job.snapshot().running:
                del self._jobs[owner]


@dataclass(frozen=True)
class BatchSnapshot:
    """A batch's state at one moment. ``status``: 'running', 'done', 'cancelled' or 'failed' (``error`` says
    why; the images finished before it are in ``done`` all the same)."""

    status: str
    done: tuple[BatchItem, ...]
    total: int
    elapsed_s: float
    error: str | None = None
    cancelled_by: str | None = None
    """Who asked it to stop, where the caller said (the app: a tab or browser other than the one that started it)."""

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass
class BatchJob(_Threaded):
    """:func:`cellcount.batch.count_many` over ``items`` ((name, bytes or path) pairs) in a daemon thread.

    ``failed``: rows known before it starts, reported first: items already known to fail (unreadable zip members),
    or those a stopped batch counted, where this one counts the images it never reached. ``record``: the run's
    history entry, given the rows as they finish and closed as done, stopped (cancelled) or failed.
    ``options``: more keywords of ``count_many`` (``size_model``, ``page`` ...).
    """

    items: list[tuple[str, Any]]
    model: CountModel
    params: CountParams
    failed: list[BatchItem] = field(default_factory=list)
    record: Recorder | None = None
    options: dict[str, Any] = field(default_factory=dict)

    _thread_name = "batch"

    def __post_init__(self) -> None:
        self._init_thread()
        # rows the page made before the model was known (unreadable zip members, files named like ground truth)
        # carry the batch's model and settings like every other row of its CSV
        self._settings = self.params.settings_json(self.model.output_kind)
        self.failed = [it if it.result is not None else
                       dataclasses.replace(it, model=it.model or self.model.name, settings=it.settings or self._settings)
                       for it in self.failed]
        self._done: list[BatchItem] = list(self.failed)
        self._error: str | None = None
        self.total = len(self.failed) + len(self.items)
        self.names = [name for name, _ in self.items]  # the items' bytes are let go at the end; their names stay

    def start(self) -> BatchJob:
        """Start counting; :meth:`cancel` stops it after the image being counted, keeping the finished ones."""
        if self.record is not None and self.failed:
            self.record.add(counts_frame(self.failed, self.options.get("page")).to_dict("records"))
            for item in self.failed:  # a stopped batch's counted images, with their objects, as if never stopped
                if item.result is not None:
                    self.record.add_objects(item_objects(item))
        self._start_thread()
        return self

    def _run(self) -> None:
        status, error = "failed", None
        try:
            for item in count_many(self.items, self.model, self.params, total=len(self.items), **self.options):
                with self._lock:
                    self._done.append(item)
                if self.record is not None:
                    # the plane counted, as the page's CSV says it (the Runs page exports these rows)
                    self.record.add(counts_frame([item], self.options.get("page")).to_dict("records"))
                    # and its objects: the page's table is gone with a reloaded tab, the Runs page keeps them
                    self.record.add_objects(item_objects(item))
                if self._cancel.is_set():
                    break
            # a Stop pressed during the last image stopped nothing
            status = "done" if self._reached() == len(self.names) else "cancelled"
        except CellcountError as err:
            error = str(err)
        except Exception as err:  # noqa: BLE001 - a worker thread must report, never die silently
            logger.exception("batch failed")
            error = f"unexpected error ({type(err).__name__}): {err}"
        finally:
            self.items = []  # the uploaded bytes are not needed any more
            if self.record is not None:
                with self._lock:
                    rest = self._rest(status)
                if rest:  # the inputs never reached stay in the run's record (not "not counted 0" on the Runs page)
                    self.record.add(counts_frame(rest, self.options.get("page")).to_dict("records"))
                self.record.finish({"done": "done", "cancelled": "stopped"}.get(status, "failed"))
        with self._lock:
            self._status, self._error = status, error
            self._t_end = time.time()

    @property
    def ended_at(self) -> float | None:
        """When the batch ended (``time.time()``); None while it runs."""
        with self._lock:
            return self._t_end

    def snapshot(self) -> BatchSnapshot:
        with self._lock:
            end = self._t_end if self._t_end is not None else time.time()
            return BatchSnapshot(status=self._status, done=tuple(self._done), total=self.total,
                                 elapsed_s=end - self._t0, error=self._error, cancelled_by=self._cancelled_by)

    def _reached(self) -> int:
        """Items count_many has yielded, in order (by position: names may repeat, a/img.png and b/img.png)."""
        return len(self._done) - len(self.failed)

    def not_counted(self) -> list[BatchItem]:
        """A row for each input the batch did not reach (stopped or failed before it), so that a table of
        the batch lists every input it was given."""
        with self._lock:
            return self._rest(self._status)

    def _rest(self, status: str) -> list[BatchItem]:
        """:meth:`not_counted` for a batch that ended with ``status`` (the caller holds the lock)."""
        why = ("not counted: the batch was stopped before this image" if status == "cancelled" else
               "not counted: the batch ended before this image")
        return [BatchItem(name, "skipped", why, None, model=self.model.name, settings=self._settings)
                for name in self.names[self._reached():]]
