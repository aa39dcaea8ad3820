"""Tests of cellcount.parallel and of the postprocessing that uses it: the same objects with or without
the second thread."""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pytest

from cellcount import parallel


def test_pair_returns_both_results_in_order_and_uses_a_helper_thread(monkeypatch):
    monkeypatch.delenv("CELLCOUNT_POSTPROCESS_THREADS", raising=False)
    monkeypatch.setattr(parallel.os, "cpu_count", lambda: 2)
    names = []

    def first():
        names.append(threading.current_thread().name)
        return 1

    assert parallel.pair(first, lambda: "b", pixels=parallel.MIN_PARALLEL_PX) == (1, "b")
    assert names[0] != threading.current_thread().name  # the first ran on the helper


@pytest.mark.parametrize("why", ["small", "env", "one core", "worker of one thread"])
def test_pair_runs_in_the_callers_thread_when_it_cannot_pay(monkeypatch, why):
    monkeypatch.setattr(parallel.os, "cpu_count", lambda: 1 if why == "one core" else 2)
    monkeypatch.delenv("CELLCOUNT_POSTPROCESS_THREADS", raising=False)
    monkeypatch.delenv(parallel.THREADS_ENV, raising=False)
    if why == "env":
        monkeypatch.setenv("CELLCOUNT_POSTPROCESS_THREADS", "1")
    if why == "worker of one thread":
        monkeypatch.setenv(parallel.THREADS_ENV, "1")
    pixels = 10 if why == "small" else parallel.MIN_PARALLEL_PX
    me = threading.current_thread().name
    assert parallel.pair(lambda: threading.current_thread().name, lambda: 2, pixels=pixels) == (me, 2)


def test_pair_raises_either_functions_error_after_both_finished(monkeypatch):
    monkeypatch.setattr(parallel.os, "cpu_count", lambda: 2)
    monkeypatch.delenv("CELLCOUNT_POSTPROCESS_THREADS", raising=False)
    done = threading.Event()

    def slow_ok():
        done.wait(0.05)
        done.set()
        return 1

    def fails():
        raise ValueError("second")

    with pytest.raises(ValueError, match="second"):
        parallel.pair(slow_ok, fails, pixels=parallel.MIN_PARALLEL_PX)
    assert done.is_set()  # the helper had finished before the error reached the caller

    def fails_first():
        raise KeyError("first")

    with pytest.raises(KeyError, match="first"):
        parallel.pair(fails_first, lambda: 2, pixels=parallel.MIN_PARALLEL_PX)


def test_nested_pairs_on_a_helper_run_inline_instead_of_waiting_for_another(monkeypatch):
    monkeypatch.setattr(parallel.os, "cpu_count", lambda: 2)
    monkeypatch.delenv("CELLCOUNT_POSTPROCESS_THREADS", raising=False)
    big = parallel.MIN_PARALLEL_PX

    def inner():
        here = threading.current_thread().name
        return parallel.pair(lambda: threading.current_thread().name, lambda: here, pixels=big)

    (a, b), _ = parallel.pair(inner, lambda: None, pixels=big)
    assert a == b  # both halves of the nested pair ran on the same helper thread


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_helpers_of_its_own(monkeypatch):
    """A user's multiprocessing pool may fork after a count: the child must not wait on the parent's threads."""
    monkeypatch.setattr(parallel.os, "cpu_count", lambda: 2)
    monkeypatch.delenv("CELLCOUNT_POSTPROCESS_THREADS", raising=False)
    monkeypatch.delenv(parallel.THREADS_ENV, raising=False)
    big = parallel.MIN_PARALLEL_PX
    assert parallel.pair(lambda: 1, lambda: 2, pixels=big) == (1, 2)  # the parent's helper exists now
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only when its own helper ran the first function
        code = 1
        try:
            signal.alarm(20)
            code = 0 if parallel.pair(lambda: threading.current_thread().name, lambda: 2, pixels=big)[0].startswith(
                "cellcount-post") else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_segment_gives_the_same_objects_with_and_without_the_second_thread(monkeypatch, draw_disks):
    """A 512 x 512 field of touching disks (many clumps to flood, so the flood is split in two) and the
    'both' split: labels, rejections and the object table are identical."""
    from cellcount.measure import object_table
    from cellcount.postprocess import segment

    rng = np.random.default_rng(3)
    centres = [tuple(int(v) for v in rng.integers(10, 502, 2)) for _ in range(500)]
    disks = draw_disks((512, 512), centres, 9) > 0
    prob = disks.astype(np.float32)
    border = np.zeros_like(prob)  # no band: the cores are the clumps, which "both" splits by distance
    monkeypatch.setattr(parallel.os, "cpu_count", lambda: 2)
    calls = []
    real_pair = parallel.pair

    def spy(first, second, *, pixels):
        if parallel.enabled() and pixels >= parallel.MIN_PARALLEL_PX:
            calls.append(pixels)
        return real_pair(first, second, pixels=pixels)

    monkeypatch.setattr(parallel, "pair", spy)
    monkeypatch.setattr(parallel, "MIN_PARALLEL_PX", 1000)  # this field's clumps hold fewer pixels than a Mpx's
    out = {}
    for env in ("1", ""):
        monkeypatch.setenv("CELLCOUNT_POSTPROCESS_THREADS", env)
        seg = segment(prob, split_mode="both", min_distance_px=5, min_area_px=10, border_prob=border)
        out[env] = (seg, object_table(seg.labels))
    (a, ta), (b, tb) = out["1"], out[""]
    assert a.count > 100
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.rejected, b.rejected)
    assert a.n_rejected == b.n_rejected
    assert ta.equals(tb)
    assert calls, "the flood was not split between two threads"


def test_local_workers_leave_ctrl_c_to_the_command() -> None:
    """Processes started while the cluster starts ignore SIGINT (Ctrl-C reaches every process of the command:
    each worker printed a page of tracebacks over the resume message); the command's own handler comes back."""
    import signal
    import subprocess
    import sys

    from cellcount.distributed import _workers_ignore_ctrl_c

    before = signal.getsignal(signal.SIGINT)
    probe = [sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)"]
    with _workers_ignore_ctrl_c():
        inside = subprocess.run(probe, capture_output=True, text=True, check=True).stdout
    outside = subprocess.run(probe, capture_output=True, text=True, check=True).stdout
    assert inside.strip() == "True" and outside.strip() == "False"
    assert signal.getsignal(signal.SIGINT) is before
