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


def _faults(mode: str, **env: str) -> int:
    out = subprocess.run([sys.executable, "-c", _ROUNDS, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, **env})
    return int(out.stdout.strip())


@glibc
def test_freed_blocks_are_reused_not_faulted_in_again():
    default, kept = _faults("default"), _faults("keep")
    assert default > 20_000, f"glibc kept the memory by itself here ({default} faults): the test says nothing"
    assert kept < default / 10, (kept, default)


@glibc
def test_the_environment_can_leave_the_allocator_alone():
    from cellcount import memory

    script = ("import os; os.environ['CELLCOUNT_KEEP_FREED_MEMORY'] = '0'\n"
              "from cellcount.memory import keep_freed_memory\nprint(keep_freed_memory())")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False" and memory.ENV == "CELLCOUNT_KEEP_FREED_MEMORY"
