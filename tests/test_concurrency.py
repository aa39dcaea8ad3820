"""Several sessions counting at once, and memory bounds on big images (issue #6).

The app shares one loaded model between sessions (``st.cache_resource``), so counting must not mutate the
model, and concurrent counts must equal sequential ones. Caches must be bounded (``max_entries``).
Sessions of the app at once are tested against a real server in tests/test_browser.py: Streamlit's AppTest
swaps one process-wide Runtime in and out per run, so AppTests in threads race each other, not our code.
Images above the pixel cap are refused from the header; below it, tiled inference keeps memory bounded.
"""

from __future__ import annotations

import ast
import copy
import os
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import cellcount as cc
from cellcount.errors import ImageTooLargeError
from cellcount.io import DEFAULT_MAX_PIXELS, read_image

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"
SAMPLE_NAMES = (
    "s01_sparse_small.png",
    "s04_uneven_illumination.png",
    "s05_16bit.tif",
    "s08_brightfield_rgb.png",
    "s10_low_contrast.png",
)
N_THREADS = 5
CROP = 160


def _tiny_net_model() -> cc.models.NetModel:
    import torch

    from cellcount.models import ModelCard, NetModel, create_model

    kwargs = {"base_width": 4, "depth": 2, "head": "mask", "out_channels": 2}
    torch.manual_seed(0)
    net = create_model("unet", **kwargs)
    card = ModelCard(name="tiny-shared", architecture="unet", output_kind="mask", kwargs=kwargs, tile_size=128,
                     tile_overlap=16, extra={"fast_tile_size": 128})
    return NetModel(net, card)


@pytest.fixture(scope="module")
def shared_model() -> cc.models.CountModel:
    """A trained model from weights/ when one is shipped (mask models first), else a tiny untrained U-Net."""
    from cellcount.models import read_card

    trained = [n for n in cc.list_models() if n != cc.models.CLASSICAL_NAME]
    kinds = {}
    for name in trained:
        try:
            kinds[name] = read_card(cc.models.DEFAULT_WEIGHTS_DIR / name).output_kind
        except (OSError, ValueError, TypeError):
            continue
    for name in sorted(kinds, key=lambda n: kinds[n] != "mask"):
        try:
            return cc.load_model(name)
        except cc.CellcountError:
            continue  # weights being rewritten by a training run: try the next one
    return _tiny_net_model()


@pytest.fixture(scope="module")
def sample_images() -> dict[str, np.ndarray]:
    """The samples cropped to CROP x CROP: a trained U-Net stays fast on a busy 2-core machine."""
    return {name: np.ascontiguousarray(read_image(SAMPLES / name)[:CROP, :CROP]) for name in SAMPLE_NAMES}


def _snapshot(model: cc.models.CountModel) -> tuple[dict, dict[str, np.ndarray]]:
    card = copy.deepcopy(model.card.to_dict())
    net = getattr(model, "net", None)
    state = {k: v.detach().clone().numpy() for k, v in net.state_dict().items()} if net is not None else {}
    return card, state


def _params_for(model: cc.models.CountModel, images: dict[str, np.ndarray]) -> dict:
    """Settings that give non-trivial counts: an untrained network's probabilities hover near 0.5, so its
    threshold is put at the 90th percentile of the first image's map."""
    if model.card.name != "tiny-shared":
        return {}
    prob = cc.predict(next(iter(images.values())), model).maps[0]
    return {"threshold": float(np.quantile(prob, 0.9)), "min_area_px": 5}


@pytest.mark.parametrize("which", ["shared", "classical"])
@pytest.mark.slow
def test_threads_sharing_one_model_match_sequential_counts(which: str, shared_model, sample_images) -> None:
    model = shared_model if which == "shared" else cc.load_model("classical-otsu")
    params = _params_for(model, sample_images)
    before_card, before_state = _snapshot(model)
    inputs = {name: img.copy() for name, img in sample_images.items()}

    sequential = {name: cc.count_image(img, model, params) for name, img in sample_images.items()}
    assert sum(r.count for r in sequential.values()) > 0

    barrier = threading.Barrier(N_THREADS)

    def work(name: str) -> cc.CountResult:
        barrier.wait()  # start together
        return cc.count_image(sample_images[name], model, params)

    for _ in range(2):  # two rounds, so every thread overlaps with the others at least once
        with ThreadPoolExecutor(max_workers=N_THREADS) as pool:
            concurrent = dict(zip(SAMPLE_NAMES, pool.map(work, SAMPLE_NAMES)))
        for name in SAMPLE_NAMES:
            a, b = sequential[name], concurrent[name]
            assert b.count == a.count, name
            assert b.count_estimate == pytest.approx(a.count_estimate, abs=1e-4)
            for field in ("probability", "density", "labels"):
                if getattr(a, field) is None:
                    assert getattr(b, field) is None
                else:
                    np.testing.assert_allclose(getattr(b, field), getattr(a, field), rtol=0, atol=1e-5)
            assert b.params == a.params

    after_card, after_state = _snapshot(model)
    assert after_card == before_card
    assert after_state.keys() == before_state.keys()
    for key in before_state:
        np.testing.assert_array_equal(after_state[key], before_state[key], err_msg=key)
    if hasattr(model, "net"):
        assert not model.net.training  # still in eval mode
        assert not any(p.requires_grad for p in model.net.parameters())
    for name, img in sample_images.items():
        np.testing.assert_array_equal(img, inputs[name])  # images not mutated


@pytest.mark.slow
def test_threads_reading_and_batch_counting() -> None:
    """count_many in several threads at once (the app's batch page in several sessions)."""
    from cellcount.batch import count_many

    model = cc.load_model("classical-otsu")
    items = [(name, (SAMPLES / name).read_bytes()) for name in SAMPLE_NAMES]
    items.append(("broken.png", b"\x89PNG\r\n\x1a\n broken"))
    expected = {name: cc.count_image(read_image(SAMPLES / name), model).count for name in SAMPLE_NAMES}

    def work(k: int) -> dict[str, int | None]:
        rotated = items[k:] + items[:k]
        return {it.name: (it.result.count if it.result else None) for it in count_many(rotated, model)}

    with ThreadPoolExecutor(max_workers=N_THREADS) as pool:
        outcomes = list(pool.map(work, range(N_THREADS)))
    for out in outcomes:
        assert out == {**expected, "broken.png": None}


def test_concurrent_reads_leave_the_warning_filters_alone() -> None:
    """read_image swaps warning filters around Pillow's bomb guard; concurrent reads must not leak them.

    warnings.catch_warnings() is process-global: without a lock, threads restore each other's saved
    filters and one is left behind. A tiny switch interval makes the interleaving happen reliably.
    """
    import warnings

    from bad_inputs import blobs, png_bytes

    datas = [png_bytes(np.zeros((4, 4), np.uint8)), png_bytes(blobs())]
    barrier = threading.Barrier(N_THREADS)

    def work(k: int) -> None:
        barrier.wait()
        for i in range(200):
            read_image(datas[(k + i) % 2])

    interval = sys.getswitchinterval()
    with warnings.catch_warnings():  # restores the filters for the other tests whatever happens
        before = list(warnings.filters)
        sys.setswitchinterval(1e-5)
        try:
            with ThreadPoolExecutor(max_workers=N_THREADS) as pool:
                list(pool.map(work, range(N_THREADS)))
        finally:
            sys.setswitchinterval(interval)
        leaked = [f for f in warnings.filters if f not in before]
    assert not leaked, f"concurrent read_image calls left warning filters behind: {leaked}"


# --------------------------------------------------------------------------------------------------
# app sessions
# --------------------------------------------------------------------------------------------------
APP_FILES = [ROOT / "streamlit_app.py", *sorted((ROOT / "pages").glob("*.py"))]


def _cache_decorators(path: Path) -> list[tuple[str, int, set[str]]]:
    """(decorator name, line, keyword names) of every st.cache_data / st.cache_resource in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for dec in node.decorator_list:
            target = dec.func if isinstance(dec, ast.Call) else dec
            if isinstance(target, ast.Attribute) and target.attr in ("cache_data", "cache_resource"):
                keywords = {k.arg for k in dec.keywords} if isinstance(dec, ast.Call) else set()
                found.append((f"{target.attr} {node.name}", node.lineno, keywords))
    return found


def test_app_caches_are_bounded() -> None:
    """Every st.cache_data / st.cache_resource in the app sets max_entries (memory bounded)."""
    decorators = [(p.name, *d) for p in APP_FILES if p.is_file() for d in _cache_decorators(p)]
    assert decorators, "no caches found in the app"
    unbounded = [f"{f}:{line} {name}" for f, name, line, kw in decorators if "max_entries" not in kw]
    assert not unbounded, f"caches without max_entries: {unbounded}"


# --------------------------------------------------------------------------------------------------
# big images
# --------------------------------------------------------------------------------------------------
def test_above_the_pixel_cap_refused_from_the_header(tmp_path: Path) -> None:
    """A 30000 x 30000 PNG bomb is a tiny file; its refusal names the cap and how to change it."""
    from bad_inputs import png_bomb

    path = tmp_path / "bomb.png"
    path.write_bytes(png_bomb(30000))
    assert path.stat().st_size < 1000
    with pytest.raises(ImageTooLargeError, match="max_pixels"):
        read_image(path)
    side = int(DEFAULT_MAX_PIXELS**0.5)
    with pytest.raises(ImageTooLargeError, match="max_pixels"):
        read_image(png_bomb(side + 1))


_RSS_SCRIPT = textwrap.dedent(
    """
    import resource, sys, time
    import numpy as np
    import torch

    def peak_kib():
        # VmHWM is this process's own high-water mark; ru_maxrss also carries the parent's (pytest's)
        # peak into a forked child on Linux, which would hide any growth here.
        try:
            with open("/proc/self/status") as f:
                return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
        except OSError:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    torch.set_num_threads(1)
    import cellcount as cc
    from cellcount.models import ModelCard, NetModel, create_model

    kwargs = {"base_width": 4, "depth": 2, "head": "mask", "out_channels": 2}
    torch.manual_seed(0)
    card = ModelCard(name="tiny", architecture="unet", output_kind="mask", kwargs=kwargs,
                     tile_size=256, tile_overlap=32, extra={"fast_tile_size": 256})
    model = NetModel(create_model("unet", **kwargs), card)
    rng = np.random.default_rng(0)
    image = (rng.random((2048, 2048)) * 255).astype(np.uint8)
    cc.count_image(image[:256, :256], model)  # warm up torch and the postprocessing
    before = peak_kib()
    tiles = []
    t0 = time.perf_counter()
    result = cc.count_image(image, model, progress=lambda done, total: tiles.append((done, total)))
    seconds = time.perf_counter() - t0
    after = peak_kib()
    assert result.labels.shape == (2048, 2048) and result.count >= 0
    print((after - before) / 1024, tiles[-1][1], seconds)
    """
)


@pytest.mark.slow
def test_tiled_counting_of_a_2048_image_keeps_memory_bounded() -> None:
    """2048 x 2048 through a tiny U-Net with 256 px tiles: peak RSS grows by well under 1.5 GB.

    Measured in a fresh process (ru_maxrss is a high-water mark). The dense per-pixel arrays of a
    4-megapixel image (float32 maps, int32 labels, the blend accumulators) take ~100-300 MB; running
    the network on the whole image at once would need several GB of activations.
    """
    proc = subprocess.run([sys.executable, "-c", _RSS_SCRIPT], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    growth_mb, n_tiles, seconds = (float(v) for v in proc.stdout.split()[-3:])
    assert n_tiles > 16  # really tiled
    assert growth_mb < 1536, f"peak RSS grew by {growth_mb:.0f} MB"
