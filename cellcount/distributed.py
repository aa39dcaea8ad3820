"""Count many images, and huge ones by blocks, on a Dask distributed cluster.

:func:`local_cluster` starts worker processes on this machine (one image at a time each, ``cores // n``
math threads each, so workers x threads = cores); :func:`connect` joins a running scheduler (SLURM,
Kubernetes: docs/SCALING.md). :func:`count_on_cluster` then yields the same :class:`BatchItem` rows as
:func:`cellcount.batch.count_many` does in-process (which it runs, one image per task), as they finish.

The model is loaded once per worker process and kept (:func:`worker_model`, checked against the client's
weights sha256). An image above the pixel cap that can be read lazily (TIFF, OME-Zarr) becomes one task per
block (:mod:`cellcount.blocks`) and a combine task, on the same workers.

Each task's result is received once. When a worker dies, the scheduler reruns its tasks on the others (up
to ``distributed.scheduler.allowed-failures`` times, 3 by default), so nothing is lost and nothing is
counted twice; an image that kills workers more often than that gets an error row, like any bad image.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .batch import BatchItem, count_many
from .blocks import (
    DEFAULT_BLOCK_PX,
    DEFAULT_OVERLAP_PX,
    BlockPart,
    BlockPlan,
    combine_blocks,
    count_block,
    is_zarr,
    lazy_shape,
    open_lazy,
    plan_blocks,
    plan_summary,
    region_grid,
)
from .errors import CellcountError, WeightsIntegrityError, error_text
from .io import DEFAULT_MAX_PIXELS, image_shape
from .io.files import TIFF_MAGICS
from .models.base import CountModel
from .parallel import THREADS_ENV  # math threads (PyTorch, OpenMP, postprocessing) of each worker process
from .pipeline import CountParams

logger = logging.getLogger(__name__)


RegionSpec = tuple[str, Any] | None
"""``("grid", (rows, cols))`` or ``("boxes", [(name, row0, col0, row1, col1), ...])`` or None."""


@contextlib.contextmanager
def _workers_ignore_ctrl_c():
    """Worker processes started inside inherit SIGINT ignored. Ctrl-C in a terminal reaches every process of
    the command; the CLI stops the run and the cluster with it, but each worker would first print a page of
    KeyboardInterrupt tracebacks over the message saying how to resume."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def local_cluster(n_workers: int, *, cores: int | None = None, memory_limit: str = "auto", backend: str | None = None):
    """A :class:`distributed.Client` on ``n_workers`` local worker processes (closed with ``client.close()``,
    which also stops the cluster). Each worker runs one task at a time with ``cores // n_workers`` threads.
    ``backend``: the inference backend every worker runs (``count --backend``); None or "auto": each worker's
    own choice, timed with its thread count (:mod:`cellcount.models.autotune`)."""
    from distributed import Client, LocalCluster

    if n_workers < 1:
        raise ValueError(f"need at least 1 worker, got {n_workers}")
    cores = cores or os.cpu_count() or 1
    threads = max(1, cores // n_workers)
    env = {THREADS_ENV: str(threads), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if backend and backend != "auto":  # --backend reached the parent only: its workers chose their own
        from .models.autotune import BACKEND_ENV

        env[BACKEND_ENV] = backend
    with _workers_ignore_ctrl_c():
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                               memory_limit=memory_limit, env=env)
    client = Client(cluster)
    client._cellcount_owns_cluster = True  # noqa: SLF001 - close() below also stops it
    return client


def connect(address: str):
    """A :class:`distributed.Client` on a running scheduler (``tcp://host:8786``)."""
    from distributed import Client

    return Client(address)


def close(client) -> None:
    """Close ``client`` and, when :func:`local_cluster` started it, its cluster."""
    cluster = client.cluster if getattr(client, "_cellcount_owns_cluster", False) else None
    client.close()
    if cluster is not None:
        cluster.close()


_MODELS: dict[tuple[str, str], CountModel] = {}


def worker_model(ref: str, sha256: str) -> CountModel:
    """The model ``ref`` (a name or folder), loaded once per process; refused when its weights differ from
    the client's (a worker with another copy of the weights would count differently)."""
    key = (ref, sha256)
    if key not in _MODELS:
        from .memory import keep_freed_memory
        from .models import load_model

        keep_freed_memory()  # a worker counts image after image, as the CLI does
        threads = os.environ.get(THREADS_ENV)
        if threads:
            import torch

            torch.set_num_threads(int(threads))
        model = load_model(ref)
        if (model.card.sha256 or "") != (sha256 or ""):
            raise WeightsIntegrityError(f"model {ref} on this worker has weights sha256 {model.card.sha256[:12]}, the client's "
                             f"{sha256[:12]}: give every worker the same weights")
        _MODELS[key] = model
    return _MODELS[key]


def load_on_workers(client, ref: str, sha256: str) -> None:
    """Load the model on every worker now (otherwise each loads it with its first task)."""
    client.run(_load_only, ref, sha256)


def _load_only(ref: str, sha256: str) -> str:
    return worker_model(ref, sha256).name  # the model itself stays on the worker


def _regions(spec: RegionSpec, shape: tuple[int, int]) -> list[tuple[str, int, int, int, int]]:
    if spec is None:
        return []
    kind, value = spec
    return region_grid(shape, *value) if kind == "grid" else list(value)


def _needs_blocks(src: Any, max_pixels: int) -> tuple[int, int] | None:
    """(H, W) of an image to count by blocks (a TIFF above the cap, any OME-Zarr); None otherwise. A Zarr folder
    that cannot be read as OME-Zarr raises its reason: read whole, it would only be told to use workers."""
    if not isinstance(src, (str, os.PathLike)):
        return None
    if is_zarr(src):  # read only by blocks, whatever its size
        return lazy_shape(src)
    try:
        h, w = image_shape(src)
        with open(src, "rb") as fh:
            tiff = fh.read(4) in TIFF_MAGICS
    except (CellcountError, OSError):
        return None  # count_many reports the problem
    return (h, w) if tiff and h * w > max_pixels else None


def _one_plane(src: Any) -> bool:
    """Whether a file counted by blocks holds one plane only (no z-planes, time points or pages left unread)."""
    try:
        with open_lazy(src) as plane:
            return plane.note is None
    except (CellcountError, OSError):
        return False


def count_task(name: str, src: Any, ref: str, sha256: str, params: CountParams, max_pixels: int,
               block_px: int, overlap_px: int, regions: RegionSpec, page: int | str | None = None,
               ) -> BatchItem | BlockPlan:
    """One image on a worker: its row, or the block plan of an image above the cap."""
    model = worker_model(ref, sha256)
    try:
        shape = _needs_blocks(src, max_pixels)
    except (CellcountError, OSError) as err:
        return _error_item(name, error_text(err, name), model, params)
    if shape is not None:
        if page is not None and not _one_plane(src):  # one plane: counted as it is, as a file read whole is
            return _error_item(name, "a plane choice (--plane) is not supported for an image counted "
                               "by blocks; save the plane or its projection as its own TIFF", model, params)
        try:
            return plan_blocks(src, model, params, block_px=block_px, overlap_px=overlap_px,
                               regions=_regions(regions, shape))
        except (CellcountError, OSError) as err:
            return _error_item(name, error_text(err, name), model, params)
    return next(iter(count_many([(name, src)], model, params, max_pixels=max_pixels, page=page)))


def block_task(plan: BlockPlan, index: int, ref: str, sha256: str, params: CountParams) -> BlockPart | str:
    """One block's part, or why it could not be counted: bad input is said in its image's row, not raised (a raised
    error prints a worker's traceback on the terminal)."""
    try:
        return count_block(plan, index, worker_model(ref, sha256), params)
    except (CellcountError, OSError) as err:
        return error_text(err)


def combine_task(name: str, plan: BlockPlan, ref: str, sha256: str, params: CountParams, started: float,
                 *parts: BlockPart | str) -> BatchItem:
    model = worker_model(ref, sha256)
    if failed := [part for part in parts if isinstance(part, str)]:
        more = f" (and {len(failed) - 1} more block(s))" if len(failed) > 1 else ""
        return _error_item(name, f"{failed[0]}{more}", model, params)
    result, regions = combine_blocks(plan, parts, model, model.output_kind, params)
    item = BatchItem(name, "ok", "", result, time.time() - started + plan.seconds)  # planning ran before `started`
    item.regions = regions.assign(file=name)[["file", *regions.columns]] if len(regions) else None
    return item


def _error_item(name: str, reason: str, model: CountModel, params: CountParams) -> BatchItem:
    return BatchItem(name, "error", " ".join(reason.split()), None, model=model.name,
                     settings=params.settings_json(model.output_kind))


@dataclass(frozen=True)
class _Block:
    """A block task's entry among the futures: which image it is a block of."""

    image: str


def count_on_cluster(
    items: Iterable[tuple[str, str | os.PathLike]],
    model: CountModel,
    params: CountParams,
    client,
    *,
    model_ref: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    block_px: int = DEFAULT_BLOCK_PX,
    overlap_px: int = DEFAULT_OVERLAP_PX,
    regions: RegionSpec = None,
    page: int | str | None = None,
    block_progress: Callable[[str, int, int], None] | None = None,
) -> Iterator[BatchItem]:
    """Count ``(name, path)`` items on ``client``'s workers; yield each row as it finishes (any order).

    ``model_ref`` is what the workers load (a name or folder; default ``model.name``). Per-image failures
    become error rows as in :func:`cellcount.batch.count_many`; so do images whose tasks failed on the
    cluster (a worker killed too often, an exception outside the counting). ``block_progress(name, done,
    total)`` is called as each block of an image counted by blocks finishes (a slide is one image of
    ``progress``, which would stand at 0 for the minutes its blocks take).
    """
    from distributed import as_completed

    ref = model_ref or model.name
    sha = model.card.sha256 or ""
    items = [(name, os.fspath(src) if isinstance(src, Path) else src) for name, src in items]
    total = len(items)
    futures = {}
    for name, src in items:
        fut = client.submit(count_task, name, src, ref, sha, params, max_pixels, block_px, overlap_px, regions,
                            page, pure=False)
        futures[fut] = name
    pending = as_completed(list(futures))
    done = 0
    blocks_done: dict[str, list[int]] = {}  # name -> [blocks finished, blocks]
    if progress is not None and total:
        progress(0, total)  # the bar is up before the first image ends: a slide's blocks are shown on it
    try:
        for fut in pending:
            name = futures.pop(fut)
            if isinstance(name, _Block):  # one block of an image: its progress, no row yet
                count = blocks_done[name.image]
                count[0] += 1
                if block_progress is not None:
                    block_progress(name.image, count[0], count[1])
                continue
            try:
                out = fut.result()
            except Exception as err:  # noqa: BLE001 - a task lost on the cluster is one image's error row
                out = _error_item(name, error_text(err, name), model, params)
            fut.release()
            if isinstance(out, BlockPlan):
                logger.info("%s: counting by blocks %s", name, plan_summary(out))
                parts = [client.submit(block_task, out, i, ref, sha, params, pure=False) for i in range(len(out.blocks))]
                combine = client.submit(combine_task, name, out, ref, sha, params, time.time(), *parts, pure=False)
                futures[combine] = name
                pending.add(combine)
                blocks_done[name] = [0, len(parts)]
                for part in parts:
                    futures[part] = _Block(name)
                    pending.add(part)
                continue
            done += 1
            yield out
            if progress is not None:
                progress(done, total)
    finally:
        if futures:  # interrupted: the tasks still queued are dropped
            client.cancel(list(futures))
