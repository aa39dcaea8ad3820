"""Shared fixtures: a seeded rng, the shipped sample folder, geometric label drawing, tiny networks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op thread: tiny tensors gain nothing from more, and spinning threads stall on a busy CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return REPO / "data" / "samples"


def _draw_disks(
    shape: tuple[int, int], centres: Sequence[tuple[float, float]], radius: float | Sequence[float]
) -> np.ndarray:
    """int32 labels with disk ``i + 1`` of ``radius`` at ``centres[i]`` (later disks overwrite earlier ones)."""
    labels = np.zeros(shape, np.int32)
    radii = np.broadcast_to(np.asarray(radius, np.float64), (len(centres),))
    rr, cc = np.indices(shape)
    for i, ((r, c), rad) in enumerate(zip(centres, radii)):
        labels[(rr - r) ** 2 + (cc - c) ** 2 <= rad**2] = i + 1
    return labels


@pytest.fixture(scope="session")
def draw_disks() -> Callable[..., np.ndarray]:
    """``draw_disks(shape, centres, radius) -> int32 labels``, disk ids 1..N in the order given."""
    return _draw_disks


@pytest.fixture(scope="session")
def tiny_model() -> Callable[..., object]:
    """``tiny_model(architecture='unet', kind='mask', seed=0) -> NetModel``: base width 4, depth 2, 32 px tiles.

    Mask models have two output channels (foreground, touching border), density models one.
    BatchNorm running statistics are moved away from their defaults so that save/load tests see them.
    """
    import torch

    from cellcount.models import ModelCard, NetModel, create_model

    def make(architecture: str = "unet", kind: str = "mask", seed: int = 0) -> NetModel:
        torch.manual_seed(seed)
        kwargs = {"in_channels": 1, "out_channels": {"mask": 2, "density": 1, "multihead": 3}[kind], "base_width": 4,
                  "depth": 2, "head": "density" if kind == "density" else "mask"}
        net = create_model(architecture, **kwargs)
        net.train()
        with torch.no_grad():
            net(torch.rand(2, 1, 32, 32))  # updates the BatchNorm running statistics
        card = ModelCard(name=f"tiny-{architecture}-{kind}", architecture=architecture, output_kind=kind,
                         kwargs=kwargs, tile_size=32, tile_overlap=8,
                         density_scale=1.0 if kind == "mask" else 100.0, extra={"fast_tile_size": 32})
        return NetModel(net, card)

    return make


@pytest.fixture
def tiny_models(tmp_path, monkeypatch):
    """Two untrained tiny networks (density; mask with a border channel) as the only shipped weights."""
    torch = pytest.importorskip("torch")
    from cellcount.models import ModelCard, create_model, loading, save_model

    torch.manual_seed(0)
    for name, kind, out in (("tiny-density", "density", 1), ("tiny-mask", "mask", 2)):
        kwargs = {"base_width": 4, "depth": 2, "out_channels": out, "head": kind}
        card = ModelCard(
            name=name,
            architecture="unet",
            output_kind=kind,
            kwargs=kwargs,
            tile_size=128,
            metrics={"validation": {"mae": 1.5, "f1": 0.9}},
            training={"steps": 1},
        )
        save_model(create_model("unet", **kwargs), card, tmp_path / name)
    monkeypatch.setattr(loading, "DEFAULT_WEIGHTS_DIR", tmp_path)
    return tmp_path


@pytest.fixture(autouse=True, scope="session")
def _user_folders_in_tmp_for_the_session(tmp_path_factory, _backend_cache_dir):
    """The user's folders (models, run history, backend cache) point to temporary ones before anything else
    starts, so that servers started by module-scoped fixtures (the browser tests' app) inherit them too and
    never write into the real ones; the function-scoped fixtures below give each test its own."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CELLCOUNT_MODELS_DIR", str(tmp_path_factory.mktemp("session-user-models")))
        mp.setenv("CELLCOUNT_DATA_DIR", str(tmp_path_factory.mktemp("session-data")))
        # the tests' own backend cache: a browser test's server and the test comparing its counts in-process
        # then run the same measured backend (two caches timed apart on a loaded machine chose bf16 in one and
        # ONNX Runtime in the other, and counts differed by an object or two)
        mp.setenv("XDG_CACHE_HOME", str(_backend_cache_dir))
        mp.delenv("CELLCOUNT_BACKEND", raising=False)
        yield


@pytest.fixture(autouse=True)
def _user_models_in_tmp(tmp_path_factory, monkeypatch):
    """Models a test fine-tunes go to a temporary user models folder, never the real one (and never
    into another test's model list)."""
    monkeypatch.setenv("CELLCOUNT_MODELS_DIR", str(tmp_path_factory.mktemp("user-models")))


@pytest.fixture(scope="session")
def _backend_cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("xdg-cache")


@pytest.fixture(autouse=True)
def _backend_cache_in_tmp(_backend_cache_dir, monkeypatch):
    """The measured backend choice goes to one temporary cache folder for the session (each model is
    timed once), never the user's; a ``CELLCOUNT_BACKEND`` of the shell does not steer the tests."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(_backend_cache_dir))
    monkeypatch.delenv("CELLCOUNT_BACKEND", raising=False)


@pytest.fixture(autouse=True)
def _main_module_kept():
    """AppTest runs its script as ``__main__`` and leaves it there; a process started by "spawn" later
    (multiprocessing, Dask workers) then runs that script first, and one written by ``AppTest.from_string`` to a
    temporary file fails in every such process (a pool that respawns its workers forever)."""
    import sys

    main = sys.modules.get("__main__")
    yield
    if main is not None and sys.modules.get("__main__") is not main:
        sys.modules["__main__"] = main


@pytest.fixture(autouse=True)
def _history_in_tmp(tmp_path_factory, monkeypatch):
    """The run history goes to a temporary data folder, never the user's."""
    monkeypatch.setenv("CELLCOUNT_DATA_DIR", str(tmp_path_factory.mktemp("data")))


@pytest.fixture
def count_batch() -> Callable[..., object]:
    """``count_batch(at)``: press the Batch page's Count (AppTest), wait for its background job
    (:class:`cellcount.jobs.BatchJob`) and run the page again, which then shows the result."""

    def run(at, timeout: float = 180):
        at.button(key="batch_run").click()
        at.run()
        job = at.session_state["batch__job"] if "batch__job" in at.session_state else None
        if job is not None:
            assert job.join(timeout), "the batch did not finish"
            at.run()
        return at

    return run
