"""cellcount.memory: freed blocks are kept for the next image instead of being faulted in again."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

# 8 blocks of 1 MiB allocated and freed 40 times: glibc's defaults hand the freed heap back each time (its
# adaptive trim threshold is twice the largest block freed), so every round faults 2048 pages in again
_ROUNDS = """
import resource, sys
import numpy as np
if sys.argv[1] == "keep":
    from cellcount.memory import keep_freed_memory
    assert keep_freed_memory()
start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):
    blocks = [np.ones(1 << 17) for _ in range(8)]
    del blocks
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
"""

glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                           reason="the limits are glibc's")


def _faults(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "GLIBC_TUNABLES")}
    env["CELLCOUNT_KEEP_FREED_MEMORY"] = "1"  # a user's own setting must not decide the test
    out = subprocess.run([sys.executable, "-c", _ROUNDS, mode], capture_output=True, text=True, check=True, env=env)
    return int(out.stdout.strip())


@pytest.mark.slow
@glibc
def test_freed_blocks_are_reused_not_faulted_in_again():
    default, kept = _faults("default"), _faults("keep")
    if default < 20_000:  # huge pages always on, or a glibc that keeps such blocks by itself: nothing to show
        pytest.skip(f"this system's malloc faulted only {default} pages without the limits")
    assert kept < default / 10, (kept, default)


@pytest.mark.slow
@glibc
def test_the_environment_can_leave_the_allocator_alone():
    from cellcount import memory

    script = ("import os; os.environ['CELLCOUNT_KEEP_FREED_MEMORY'] = '0'\n"
              "from cellcount.memory import keep_freed_memory\nprint(keep_freed_memory())")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False" and memory.ENV == "CELLCOUNT_KEEP_FREED_MEMORY"


def test_a_preloaded_allocator_is_left_alone(monkeypatch):
    from cellcount import memory

    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    memory.keep_freed_memory.cache_clear()
    try:
        assert memory.keep_freed_memory() is False
    finally:
        memory.keep_freed_memory.cache_clear()


@pytest.mark.slow
@glibc
def test_whether_freed_memory_is_kept_is_read_without_setting_it_and_keys_the_backend_choice():
    """A backend timed with the allocator's defaults is not the choice where freed memory is kept (PyTorch runs
    about 1.3x faster there), so the backend cache's key says which."""
    script = ("import os; os.environ['CELLCOUNT_KEEP_FREED_MEMORY'] = '1'\n"
              "from cellcount.memory import freed_memory_kept, keep_freed_memory\n"
              "from cellcount.models.autotune import cache_key, machine_fingerprint\n"
              "before, key = freed_memory_kept(), cache_key('w')\n"
              "keep_freed_memory()\n"
              "print(before, machine_fingerprint()['freed_memory_kept'], key != cache_key('w'))")
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD",)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == ["False", "True", "True"]
