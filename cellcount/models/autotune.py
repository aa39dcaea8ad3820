"""Choose the inference backend by timing it on this machine, once, and remember the choice.

Which backend runs a network fastest depends on the CPU far more than on the network: bf16 is about
3x fp32 on a CPU with AMX, half of it on one with AVX512-BF16 only, and emulated (many times slower)
without either; ONNX Runtime's fp32 kernels beat PyTorch's on some CPUs and not on others. So on first
use the available backends (:func:`~cellcount.models.backends.available_backends`) each run a few
forward passes of one representative tile, taking turns, the fastest wins, and the timings are kept in a small JSON
file in the user's cache folder (:func:`cache_file`) under a key of the CPU (model name and flags), the
torch and ONNX Runtime versions, the thread count, whether the process keeps freed memory
(:mod:`cellcount.memory`), the timing rule and the weights' sha256. A later process with the
same key reads the choice instead of timing again; anything in the key changing times again.

The user overrides the choice with ``--backend`` (CLI), the app's Timing tab, or the
``CELLCOUNT_BACKEND`` environment variable, all read by :func:`requested_backend`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ParameterError
from ..memory import freed_memory_kept
from .backends import BACKENDS, available_backends, cache_dir, check_backend, cpu_flags
from .openvino_net import openvino_version

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

BACKEND_ENV = "CELLCOUNT_BACKEND"
CHOICES = ("auto", *BACKENDS)
"""What the user may ask for: ``auto`` (the measured choice) or one backend by name."""
CACHE_FILE_NAME = "backends.json"
MEASURE_TILE_PX = 256
"""Side of the tile timed at first use: a quarter of the pixels of a 512 px image's one tile, so that every backend is
timed in about a second (on an Intel Xeon without AMX the fastest, OpenVINO, was the same at 256 px and on a 512 px
image's one tile: BENCHMARKS.md, ``scripts/tile_time_probe.py``)."""
TIMING_RULE = "in turns, cpu share"
"""Part of the cache key: choices timed by an earlier rule (each backend's calls in one block; no check of the
cores each call got) are timed again."""
SETTLE_S = 0.01
"""A pause before each timed call, so that the last call's idle threads (PyTorch's OpenMP threads spin for a
while after a call) have let go of the cores before the next backend is timed."""
MEASURE_BUDGET_S = 0.12
"""Timed calls per backend stop after this long (at least two calls; the first, untimed, warms up)."""


BUSY_LOAD_PER_CORE = 1.0
"""A timing made while the machine's 1-minute load average per core was above this (other work on every core) is
used, but timed again by a later process when the machine is quiet (:data:`QUIET_LOAD_PER_CORE`): one made
under load would otherwise stick for good, and keep a backend slower than the fastest."""
QUIET_LOAD_PER_CORE = 0.75
MIN_CPU_SHARE, MAX_CPU_SHARE = 0.6, 1.2
"""A timing whose backends' fastest calls did not all get at least the first share of their threads' CPU time
(process CPU time over wall time x threads; 0.88-0.99 on an idle 2-core machine, 0.34-0.51 beside two busy loops:
scripts/probe_cpu_share.py) was made while other work held the cores, whatever the load average says, which lags
a minute behind; above the second, other threads of this process (a batch in the app) ran during the calls. Such a
timing is used but counted as busy (timed again when quiet)."""
MAX_BUSY_TIMINGS = 3
"""After this many busy timings in a row the last one stands: a machine whose threads never get their cores (a
container allowed fewer CPUs than torch starts threads for) would otherwise time again at every start."""


class Timings(dict):
    """Seconds per megapixel by backend (a dict), with ``cpu_share``: the lowest share of its threads' CPU time
    that a backend's fastest call got (None where not measured)."""

    cpu_share: float | None = None


def load_per_core() -> float | None:
    """The 1-minute load average over the cores this process may use (None where the system has none)."""
    try:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return os.getloadavg()[0] / max(cores or 1, 1)
    except (OSError, AttributeError):
        return None


def requested_backend(option: str | None = None, *, environ: Mapping[str, str] | None = None) -> str:
    """The backend the user asked for: ``option`` (CLI / app) if given, else ``$CELLCOUNT_BACKEND``, else
    ``"auto"``. Raises ParameterError naming the valid values."""
    env = os.environ if environ is None else environ
    value = (option or env.get(BACKEND_ENV) or "auto").strip().lower()
    if value not in CHOICES:
        source = "backend" if option else BACKEND_ENV
        raise ParameterError(f"{source} must be one of {', '.join(map(repr, CHOICES))}, got {value!r}")
    return value


def cache_file() -> Path:
    """``$XDG_CACHE_HOME/cellcount/backends.json``, else ``~/.cache/cellcount/backends.json``."""
    return cache_dir() / CACHE_FILE_NAME


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo, else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_fingerprint() -> dict[str, Any]:
    """What decides which backend is fastest, apart from the network: CPU, its flags, library versions,
    threads, and whether the process keeps freed memory (:mod:`cellcount.memory`)."""
    import torch

    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    return {
        "cpu": cpu_model(),
        "flags_sha": hashlib.sha256(" ".join(sorted(cpu_flags())).encode()).hexdigest()[:16],
        "machine": platform.machine(),
        "torch": torch.__version__,
        "onnxruntime": ort_version,
        "openvino": openvino_version(),
        "threads": torch.get_num_threads(),
        "freed_memory_kept": freed_memory_kept(),
    }


def cache_key(weights_digest: str, fingerprint: Mapping[str, Any] | None = None) -> str:
    """Key of one (machine, network) pair in the cache file."""
    fp = machine_fingerprint() if fingerprint is None else fingerprint
    text = json.dumps({**fp, "weights": weights_digest, "timing": TIMING_RULE}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class BackendChoice:
    """The backend a model runs with, and why.

    ``reason``: ``"measured"`` (timed just now), ``"cached"`` (timed by an earlier process on this machine),
    ``"requested"`` (the user's override) or ``"only one available"``. ``timings_s_per_mpx``: seconds per
    megapixel of each backend timed on a ``tile_px`` tile (empty when nothing was timed), ``measure_s``:
    how long the timing took (calls and the pauses between them; building the backends not included).
    """

    backend: str
    reason: str
    timings_s_per_mpx: dict[str, float] = field(default_factory=dict)
    tile_px: int = MEASURE_TILE_PX
    measure_s: float = 0.0
    cache_file: str | None = None

    def why(self) -> str:
        """The reason and the timings behind it, e.g. ``measured; s/Mpx on a 256 px tile: onnxruntime 0.41,
        torch 0.62; timing took 0.45 s``."""
        return self.reason + timings_text(self.timings_s_per_mpx, self.tile_px) + (
            f"; timing took {self.measure_s:.2f} s" if self.reason == "measured" else "")

    def describe(self) -> str:
        """One line for the CLI's verbose output: the backend and :meth:`why`."""
        return f"{self.backend} ({self.why()})"

    def to_dict(self) -> dict[str, Any]:
        """The cache file's record (and the bench's JSON)."""
        return {"backend": self.backend, "reason": self.reason, "timings_s_per_mpx": dict(self.timings_s_per_mpx),
                "tile_px": self.tile_px, "measure_s": self.measure_s}


def time_backends(
    nets: Mapping[str, Callable[[Any], Any]], *, tile_px: int = MEASURE_TILE_PX, budget_s: float = MEASURE_BUDGET_S
) -> Timings:
    """Seconds per megapixel of each network on one ``tile_px`` tile: the fastest of at least two calls after one
    warm-up call each. The calls take turns (A B A B ...) until ``budget_s`` per network is spent, so that a shared
    machine slowing down for a moment slows every backend alike instead of the one being timed then (timed one
    after the other, the two fp32 backends of an AMD EPYC Zen 3 came out in either order from one run to the
    next: results/bench/amd-zen3-2026-12-05-backend-timing.txt). Each fastest call's share of its threads' CPU time
goes with it (:class:`Timings`): a low one means other work held the cores."""
    import torch

    x = torch.from_numpy(np.random.default_rng(0).uniform(0, 1, (1, 1, tile_px, tile_px)).astype(np.float32))
    x = x.contiguous(memory_format=torch.channels_last)
    best = dict.fromkeys(nets, float("inf"))
    share = dict.fromkeys(nets, 1.0)
    threads = max(torch.get_num_threads(), 1)
    with torch.inference_mode():
        for net in nets.values():
            net(x)
        spent, rounds = 0.0, 0
        while rounds < 2 or (spent < budget_s * len(nets) and rounds < 8):
            for name, net in nets.items():
                time.sleep(SETTLE_S)
                c0, t0 = time.process_time(), time.perf_counter()
                net(x)
                dt = time.perf_counter() - t0
                if dt < best[name]:
                    best[name], share[name] = dt, (time.process_time() - c0) / (max(dt, 1e-9) * threads)
                spent += dt
            rounds += 1
    out = Timings({name: t / (tile_px * tile_px) * 1e6 for name, t in best.items()})
    out.cpu_share = min(share.values(), default=None)
    return out


def timings_text(timings: Mapping[str, float], tile_px: int) -> str:
    """"; s/Mpx on a 256 px tile: onnxruntime 0.570, torch 0.660" (fastest first); "" when nothing was timed."""
    if not timings:
        return ""
    order = sorted(timings.items(), key=lambda kv: kv[1])
    return f"; s/Mpx on a {tile_px} px tile: " + ", ".join(f"{k} {v:.3f}" for k, v in order)


def read_cache(path: Path) -> dict[str, Any]:
    """The cache file's entries; an unreadable or malformed file is ignored with a warning."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        logger.warning("ignoring the backend cache %s (%s); the backends will be timed again", path, err)
        return {}
    if not isinstance(data, dict):
        logger.warning("ignoring the backend cache %s (not a JSON object); the backends will be timed again", path)
        return {}
    return data


def write_cache(path: Path, entries: Mapping[str, Any]) -> None:
    """Replace the cache file at once (a reader never sees half a file); a failure only warns."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(entries, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:
        logger.warning("cannot write the backend cache %s (%s); the choice holds for this process only", path, err)
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def _valid_entry(entry: Any, candidates: Sequence[str]) -> bool:
    """A cache entry this code can read back (a hand-edited or damaged one is timed again instead)."""
    return (isinstance(entry, dict) and entry.get("backend") in candidates
            and isinstance(entry.get("timings_s_per_mpx"), dict)
            and all(isinstance(v, (int, float)) for v in entry["timings_s_per_mpx"].values())
            and isinstance(entry.get("tile_px", MEASURE_TILE_PX), int)
            and isinstance(entry.get("measure_s", 0.0), (int, float))
            and isinstance(entry.get("busy_timings", 1), int))


def choose_backend(
    weights_digest: str,
    build: Callable[[str], torch.nn.Module],
    *,
    requested: str = "auto",
    candidates: Sequence[str] | None = None,
    path: Path | None = None,
    measure: Callable[[dict[str, Any]], dict[str, float]] = time_backends,
    fingerprint: Mapping[str, Any] | None = None,
) -> BackendChoice:
    """The backend to run the network with hash ``weights_digest`` on this machine.

    ``requested`` other than ``"auto"`` is returned as it is (the user's override; the cached timings,
    if any, come with it so the UI can still show them). ``"auto"``: the cached choice for this machine
    and network, else each of ``candidates`` (default :func:`available_backends`) is built with
    ``build(name)`` and timed with ``measure({name: net})``, the fastest wins and is written to ``path``
    (default :func:`cache_file`).
    """
    if requested not in CHOICES:
        raise ParameterError(f"backend must be one of {', '.join(map(repr, CHOICES))}, got {requested!r}")
    cands = list(available_backends() if candidates is None else candidates)
    path = cache_file() if path is None else path
    key = cache_key(weights_digest, fingerprint)
    entries = read_cache(path)
    entry = entries.get(key)
    cached = entry if _valid_entry(entry, cands) else None
    if requested != "auto":
        timings = dict(cached["timings_s_per_mpx"]) if cached else {}
        return BackendChoice(check_backend(requested), "requested", timings,
                             int(cached.get("tile_px", MEASURE_TILE_PX)) if cached else MEASURE_TILE_PX,
                             cache_file=str(path))
    if len(cands) == 1:
        return BackendChoice(cands[0], "only one available")
    busy_before = int(cached.get("busy_timings", 1)) if cached is not None and cached.get("busy") else 0
    # where there is no load average (Windows) a busy timing is timed again at once (at most MAX_BUSY_TIMINGS times)
    if busy_before and ((load := load_per_core()) is None or load <= QUIET_LOAD_PER_CORE):
        logger.info("timing the backends again: the cached choice was timed while the machine was busy (load %.2f "
                    "per core, %s of its threads' CPU time then; load %s now)",
                    cached.get("load_per_core", float("nan")), cached.get("cpu_share", "?"), load)
        cached = None
    if cached is not None:
        return BackendChoice(cached["backend"], "cached", dict(cached["timings_s_per_mpx"]),
                             int(cached.get("tile_px", MEASURE_TILE_PX)), float(cached.get("measure_s", 0.0)),
                             str(path))
    nets = {name: build(name) for name in cands}
    t0 = time.perf_counter()
    measured = measure(nets)
    timings = {k: float(v) for k, v in measured.items()}
    measure_s = time.perf_counter() - t0
    load = load_per_core()
    share = getattr(measured, "cpu_share", None)
    busy = ((load is not None and load > BUSY_LOAD_PER_CORE)
            or (share is not None and not MIN_CPU_SHARE <= share <= MAX_CPU_SHARE))
    busy_timings = busy_before + 1 if busy else 0
    busy = busy and busy_timings < MAX_BUSY_TIMINGS
    best = min(timings, key=timings.__getitem__)
    choice = BackendChoice(best, "measured", timings, MEASURE_TILE_PX, measure_s, str(path))
    entries[key] = {**choice.to_dict(), "fingerprint": dict(fingerprint or machine_fingerprint()),
                    "weights": weights_digest, "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
                    **({"load_per_core": round(load, 2)} if load is not None else {}),
                    **({"cpu_share": round(share, 2)} if share is not None else {}), "busy": busy,
                    **({"busy_timings": busy_timings} if busy_timings else {})}
    entries[key].pop("reason")
    write_cache(path, entries)
    logger.info("inference backend: %s", choice.describe())
    return choice
