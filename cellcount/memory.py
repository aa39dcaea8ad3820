"""Keep freed memory in the process between images, where the C library would hand it back at once.

Every forward pass allocates and frees tens of MB of activations. glibc's malloc serves blocks above its
(adaptive) threshold with fresh ``mmap`` pages and returns freed heap memory to the system once a few MB sit
free at its top, so the next image's tensors can be page-faulted and zeroed again, in system time (with the
multihead model, ``count`` on the bench's 100 images spent several times the system time without the limits
below: docs/benchmark_history.md). The peak grows little: what was in use stays reserved for the next image (the bench's
4096 x 4096 image: 1326 MiB before, 1356-1362 MiB with it). Every process that runs a network sets it before the
backend is timed (:meth:`cellcount.models.NetModel.backend_choice`: the CLI, the app and a Python session then
time, choose and count alike). ``CELLCOUNT_KEEP_FREED_MEMORY=0`` leaves the allocator as it is; so does a
preloaded allocator (jemalloc, tcmalloc, mimalloc), which has its own rules.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import platform
import sys

logger = logging.getLogger(__name__)

MMAP_THRESHOLD = 32 << 20
"""Blocks up to this size come from the heap (glibc's largest allowed value on 64-bit systems); larger
ones, a whole 4096 x 4096 map, are still mapped on their own and returned when freed."""
TRIM_THRESHOLD = 1 << 30
"""Free memory at the heap's top is returned to the system only beyond this."""
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
ENV = "CELLCOUNT_KEEP_FREED_MEMORY"
_kept = False  # set once keep_freed_memory() has set the allocator


@functools.lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Set glibc's malloc to keep freed blocks for reuse (once per process); False where the C library is
    not glibc (macOS, Windows, musl) or refuses, another allocator is preloaded, or :data:`ENV` is ``0``, and
    nothing changes."""
    if os.environ.get(ENV, "1") == "0":
        return False
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ.get("LD_PRELOAD", "") for name in ("jemalloc", "tcmalloc", "mimalloc")):
        return False  # glibc's mallopt would still say yes, for an allocator nobody calls
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if not ok:
        logger.debug("mallopt refused the thresholds; the allocator keeps its defaults")
    global _kept
    _kept = ok
    return ok


def freed_memory_kept() -> bool:
    """Whether :func:`keep_freed_memory` has set the allocator in this process (without setting it). PyTorch's
    networks run about 1.3x faster with it (an AMD EPYC Zen 3, 1 Mpx image; ONNX Runtime keeps its own
    arena), so a backend timed under one setting is not the choice under the other."""
    return _kept
