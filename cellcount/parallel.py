"""Two independent pieces of postprocessing at once, on a second core.

Postprocessing is single-threaded numpy / OpenCV / scikit-image work, while the machines we aim at have at
least two cores and the network's threads are idle by then. The heavy parts (the watershed's flood, bincounts
and ufuncs over the label image, OpenCV) release the GIL, so running two independent halves in two threads
gives part of a second core (``python scripts/bench.py --postprocess-only``). Below :data:`MIN_PARALLEL_PX` pixels
the halves are too small for the hand-off to pay.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

A = TypeVar("A")
B = TypeVar("B")

MIN_PARALLEL_PX = 256 * 256
"""Pixels of the map below which :func:`pair` runs both functions in the caller's thread."""

_PREFIX = "cellcount-post"
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


THREADS_ENV = "CELLCOUNT_THREADS"
"""Math threads a worker process may use (set by :func:`cellcount.distributed.local_cluster`)."""


def enabled() -> bool:
    """False on a one-core machine, in a process given one thread (:data:`THREADS_ENV`), or with
    ``CELLCOUNT_POSTPROCESS_THREADS=1``."""
    threads = os.environ.get(THREADS_ENV, "").strip()
    return ((os.cpu_count() or 1) > 1 and not (threads.isdigit() and int(threads) < 2)
            and os.environ.get("CELLCOUNT_POSTPROCESS_THREADS", "") != "1")


def _forget_helpers() -> None:
    """In a forked child: the parent's helper threads do not exist there, so start afresh."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_helpers)


def _helper() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix=_PREFIX)
        return _pool


def pair(first: Callable[[], A], second: Callable[[], B], *, pixels: int) -> tuple[A, B]:
    """``(first(), second())``, the first on a helper thread while the caller runs the second, when the map
    has at least :data:`MIN_PARALLEL_PX` ``pixels`` and :func:`enabled`. An exception in either is raised
    here, after both have finished. Called from a helper thread, both run in it (a helper never waits
    for another: no deadlock when many callers share the helpers)."""
    if pixels < MIN_PARALLEL_PX or not enabled() or threading.current_thread().name.startswith(_PREFIX):
        return first(), second()
    try:
        future = _helper().submit(first)
    except RuntimeError:  # the interpreter is shutting down (a batch thread still finishing): no new threads
        return first(), second()
    try:
        b = second()
    except BaseException:
        future.exception()  # wait: the helper may still be reading the caller's arrays
        raise
    return future.result(), b
