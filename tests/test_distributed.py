"""Counting on a real local Dask cluster (no mocks): same rows as in-process, a worker killed mid-run,
a huge image by blocks with region counts. Each test starts worker processes: marked slow."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("distributed")

import cellcount as cc  # noqa: E402
from cellcount import blocks, history  # noqa: E402
from cellcount.cli import main  # noqa: E402
from cellcount.distributed import close, count_on_cluster, local_cluster  # noqa: E402
from cellcount.synthetic_large import write_large_tiff  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"
pytestmark = pytest.mark.slow


def _rows(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path).sort_values("file").reset_index(drop=True)
    return df.drop(columns=["seconds"])


def test_workers_give_the_in_process_rows_and_count_a_huge_image_by_blocks(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("s01_sparse_small.png", "s02_dense_clusters.png", "s05_16bit.tif"):
        shutil.copy(SAMPLES / name, folder / name)
    write_large_tiff(folder / "big.tif", (1024, 512), seed=1, cells_per_tile=40)
    (folder / "big.json").unlink()
    zarr = pytest.importorskip("zarr")
    small = cc.read_image(SAMPLES / "s01_sparse_small.png")  # as an OME-Zarr: one block, counted the same
    level = zarr.open_array(str(folder / "s01.ome.zarr" / "0"), mode="w", shape=small.shape, chunks=(64, 64),
                            dtype=small.dtype)
    level[:] = small
    zarr.open_group(str(folder / "s01.ome.zarr"), mode="a").attrs["multiscales"] = [
        {"axes": [{"name": "y"}, {"name": "x"}], "datasets": [{"path": "0"}]}]
    common = ["--model", "classical-otsu", "--max-pixels", "300000", "--no-progress", "-q"]
    assert main(["count", str(folder), "--out", str(tmp_path / "inproc.csv"), *common]) == 1  # big.tif: too large
    assert main(["count", str(folder), "--out", str(tmp_path / "w2.csv"), "--workers", "2", "--block-px", "300",
                 "--overlap-px", "32", "--region-grid", "2x1", *common]) == 0
    # the workers' rows end in the order of the inputs, as in-process rows are
    assert pd.read_csv(tmp_path / "w2.csv")["file"].tolist() == pd.read_csv(tmp_path / "inproc.csv")["file"].tolist()
    inproc, w2 = _rows(tmp_path / "inproc.csv"), _rows(tmp_path / "w2.csv")
    big, ome = str(folder / "big.tif"), str(folder / "s01.ome.zarr")
    assert "above the cap of" in inproc.loc[inproc["file"] == big, "reason"].iloc[0]
    assert inproc.loc[inproc["file"] == ome, "status"].iloc[0] == "error"  # Zarr: read by blocks only
    assert "counted by blocks: count it with --workers N" in inproc.loc[inproc["file"] == ome, "reason"].iloc[0]
    whole = ~inproc["file"].isin([big, ome])
    pd.testing.assert_frame_equal(inproc[whole], w2[whole], check_dtype=False)
    assert w2.loc[w2["file"] == ome, "count"].iloc[0] == w2.loc[w2["file"].str.endswith("s01_sparse_small.png"),
                                                                "count"].iloc[0]
    # the huge image: by blocks on the workers, the same as by blocks in this process
    model = cc.load_model("classical-otsu")
    local, regions = blocks.count_blocks(big, model, cc.resolve_params(model), block_px=300, overlap_px=32,
                                         regions=blocks.region_grid((1024, 512), 2, 1))
    row = w2[w2["file"] == big].iloc[0]
    assert row["status"] == "ok" and row["count"] == local.count > 0
    on_cluster = pd.read_csv(tmp_path / "w2.regions.csv")
    assert set(on_cluster["file"]) == {big, ome}  # every image counted by blocks
    on_cluster = on_cluster[on_cluster["file"] == big]
    assert list(on_cluster["region"]) == ["r0c0", "r1c0"]
    assert list(on_cluster["count"]) == list(regions["count"]) and on_cluster["count"].sum() == local.count
    assert list(history.list_runs()["status"]) == ["done", "done"]


@pytest.fixture(scope="module")
def cluster():
    client = local_cluster(2, cores=2)
    client.wait_for_workers(2, timeout=120)
    yield client
    close(client)


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(cluster):
    files = [f for f in sorted(SAMPLES.glob("s*.png")) if not f.stem.endswith("_labels")][:4]
    model = cc.load_model("unet-mask")
    params = cc.resolve_params(model, {"auto_nucleus_size": False})
    # the same counts as an undisturbed run on the same workers (one thread each: the backend their first-use
    # timing picks, and its rounding, may differ from this two-thread process's by an object on some CPUs)
    expected = {it.name: it.result.count for it in count_on_cluster([(str(f), f) for f in files], model, params,
                                                                    cluster)}
    assert len(expected) == len(files)
    pids = cluster.run(os.getpid)
    got, victim = [], None
    for item in count_on_cluster([(str(f), f) for f in files], model, params, cluster):
        got.append(item)
        if victim is None:  # both workers are busy with the next images: kill one of them outright
            victim = next(iter(pids.values()))
            os.kill(victim, signal.SIGKILL)
    assert sorted(it.name for it in got) == sorted(expected)  # each image exactly once
    assert all(it.status == "ok" for it in got), [it.reason for it in got]
    assert {it.name: it.result.count for it in got} == expected
    cluster.wait_for_workers(2, timeout=120)
    assert victim not in cluster.run(os.getpid).values()  # the nanny started a fresh worker


def test_resume_keeps_the_region_counts_of_the_images_it_keeps(tmp_path, capsys):
    """A resumed run rewrote the regions CSV with the new images' rows only: a slide's region counts were lost
    after one interrupt. An image counted whole has no regions, and the run says so."""
    folder = tmp_path / "images"
    folder.mkdir()
    write_large_tiff(folder / "big.tif", (1024, 512), seed=1, cells_per_tile=40)
    (folder / "big.json").unlink()
    common = ["--model", "classical-otsu", "--max-pixels", "300000", "--no-progress", "--workers", "1",
              "--block-px", "300", "--overlap-px", "32", "--region-grid", "2x1", "--out", str(tmp_path / "c.csv")]
    labels = ["--labels-dir", str(tmp_path / "labels")]
    assert main(["count", str(folder), *common, *labels]) == 0
    first = pd.read_csv(tmp_path / "c.regions.csv")
    assert list(first["region"]) == ["r0c0", "r1c0"]
    # no label image for it, said (the folder held an empty index, unsaid: an audit)
    assert "1 image(s) counted by blocks have no label image in" in capsys.readouterr().err
    assert not list((tmp_path / "labels").glob("*.tif"))
    shutil.copy(SAMPLES / "s01_sparse_small.png", folder / "small.png")  # under the cap: counted whole
    capsys.readouterr()
    assert main(["count", str(folder), *common, *labels, "--resume"]) == 0
    err = capsys.readouterr().err
    assert "1 image(s) were counted whole, not by blocks, so they have no region counts" in err
    # the image counted by blocks has no label image on purpose: kept, not counted again at every resume (a review)
    assert "have no label image in" not in err and "1 image(s) already counted with these settings, 1 to go" in err
    assert [p.name for p in (tmp_path / "labels").glob("*.tif")] == ["small_labels.tif"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "c.regions.csv"), first)
    assert len(pd.read_csv(tmp_path / "c.csv")) == 2
    # another grid: everything counted again, never two grids in one regions CSV
    other = [a if a != "2x1" else "1x2" for a in common]
    assert main(["count", str(folder), *other, "--resume"]) == 0
    assert "counted with other regions (--region-grid, --regions) or blocks for them; counting all images again" in \
        capsys.readouterr().err
    assert list(pd.read_csv(tmp_path / "c.regions.csv")["region"]) == ["r0c0", "r0c1"]


def test_resume_with_workers_added_keeps_the_rows_counted_without(tmp_path, capsys):
    """--workers alone, added on --resume, recounted every image, saying the block or region settings differed
    though none was given (a tester): counts by blocks equal whole-image counts, so the rows stay."""
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("s01_sparse_small.png", "s03_large_nuclei.png"):
        shutil.copy(SAMPLES / name, folder / name)
    out = tmp_path / "c.csv"
    assert main(["count", str(folder / "s01_sparse_small.png"), "--model", "classical-otsu", "--no-progress",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["count", str(folder / "s01_sparse_small.png"), str(folder / "s03_large_nuclei.png"), "--model",
                 "classical-otsu", "--no-progress", "--workers", "1", "--out", str(out), "--resume"]) == 0
    err = capsys.readouterr().err
    assert "counting all images again" not in err and "1 image(s) already counted with these settings, 1 to go" in err


def test_an_image_counted_by_blocks_reports_each_block(cluster, tmp_path):
    """A slide is one image of the progress bar, which stood at 0/1 for the minutes its blocks took: each
    finished block is reported, and the row comes once, after the last."""
    write_large_tiff(tmp_path / "big.tif", (1024, 512), seed=1, cells_per_tile=40)
    model = cc.load_model("classical-otsu")
    seen, rows = [], []
    for item in count_on_cluster([("big.tif", tmp_path / "big.tif")], model, cc.resolve_params(model), cluster,
                                 max_pixels=300_000, block_px=300, overlap_px=32,
                                 block_progress=lambda name, done, total: seen.append((name, done, total))):
        rows.append(item)
    assert len(rows) == 1 and rows[0].status == "ok"
    n = seen[-1][2]
    assert n > 1 and seen == [("big.tif", k, n) for k in range(1, n + 1)]


def test_local_workers_run_the_backend_asked_for(monkeypatch):
    """`count --backend X --workers N`: the option reached the parent only, and each worker timed its own backend
    (with its thread count), so the rows could differ from in-process ones by an object or two (a tester)."""
    import distributed

    seen = {}

    class Cluster:
        def __init__(self, **kwargs):
            seen.update(kwargs)

    monkeypatch.setattr(distributed, "LocalCluster", Cluster)
    monkeypatch.setattr(distributed, "Client", lambda cluster: type("C", (), {})())
    local_cluster(2, cores=2, backend="onnxruntime")
    assert seen["env"]["CELLCOUNT_BACKEND"] == "onnxruntime"
    seen.clear()
    local_cluster(2, cores=2, backend="auto")
    assert "CELLCOUNT_BACKEND" not in seen["env"]


def test_a_zarr_folder_that_is_not_ome_zarr_says_why_on_workers(tmp_path):
    """Counted with --workers, a Zarr group without multiscales (and a store missing its array) was told to "count it
    with --workers N", its own reason lost (a tester)."""
    zarr = pytest.importorskip("zarr")
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w").create_array("a", shape=(64, 64), dtype="uint8")
    group = zarr.open_group(str(tmp_path / "gone.ome.zarr"), mode="w")
    group.attrs["multiscales"] = [{"axes": [{"name": "y"}, {"name": "x"}], "datasets": [{"path": "0"}]}]
    assert main(["count", str(tmp_path / "plain.zarr"), str(tmp_path / "gone.ome.zarr"), "--model", "classical-otsu",
                 "--workers", "1", "--out", str(tmp_path / "c.csv"), "--no-progress", "-q"]) == 1
    reasons = dict(zip(*(pd.read_csv(tmp_path / "c.csv")[c].tolist() for c in ("file", "reason")), strict=True))
    assert "Zarr group without OME multiscales metadata" in reasons[str(tmp_path / "plain.zarr")]
    assert "its array '0' is missing or unreadable" in reasons[str(tmp_path / "gone.ome.zarr")]
    assert not any("count it with --workers" in r for r in reasons.values())


def test_local_workers_count_in_the_backend_asked_for(tmp_path):
    """The workers got $CELLCOUNT_BACKEND but counted in the backend their own timing chose (bf16), their rows one
    object apart from the in-process run, while the settings file named the one asked (a tester)."""
    from cellcount.models.backends import available_backends

    other = next(b for b in ("onnxruntime", "torch") if b in available_backends())
    common = [str(SAMPLES / "s01_sparse_small.png"), "--model", "unet-density", "--backend", other, "--no-progress", "-q"]
    assert main(["count", *common, "--workers", "1", "--out", str(tmp_path / "w.csv")]) == 0
    assert main(["count", *common, "--out", str(tmp_path / "p.csv")]) == 0
    workers, inproc = pd.read_csv(tmp_path / "w.csv"), pd.read_csv(tmp_path / "p.csv")
    assert workers["backend"].tolist() == [other] == inproc["backend"].tolist()
    assert workers["count"].tolist() == inproc["count"].tolist()


def test_local_workers_choosing_their_backend_record_it_in_the_settings_file(tmp_path, capsys):
    """`count --workers 2` wrote no backend into its settings file (the workers choose theirs), so `count --settings`
    with it switched backend without a note (a tester's 71 became 72)."""
    out = tmp_path / "w.csv"
    assert main(["count", str(SAMPLES / "s01_sparse_small.png"), "--model", "unet-density", "--no-progress",
                 "--workers", "1", "--out", str(out)]) == 0
    ran = pd.read_csv(out)["backend"].tolist()
    recorded = json.loads(out.with_name("w.settings.json").read_text())
    assert recorded["backend"] == ran[0]
    assert f"note: the workers ran the {ran[0]} backend" in capsys.readouterr().err
