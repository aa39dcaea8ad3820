"""Tests of the synthetic nuclei generator and of the shipped samples in data/samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image
from scipy import ndimage as ndi

from cellcount import synthetic
from cellcount.errors import ParameterError
from cellcount.synthetic import (
    MIN_VISIBLE_AREA_PX,
    SAMPLE_SPECS,
    SampleSpec,
    SyntheticSample,
    make_synthetic,
    write_samples,
)

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "data" / "samples"


def _check_exact(sample: SyntheticSample) -> None:
    labels = sample.labels
    assert labels.dtype == np.int32
    ids = np.unique(labels)
    assert sample.count == len(ids) - 1 == len(sample.centroids) == labels.max()
    assert np.array_equal(ids, np.arange(sample.count + 1))  # 0 plus consecutive 1..N
    assert sample.centroids.shape == (sample.count, 2)
    assert sample.centroids.dtype == np.float64
    if sample.count:
        index = np.arange(1, sample.count + 1)
        expected = np.array(ndi.center_of_mass(np.ones_like(labels), labels, index))
        np.testing.assert_allclose(sample.centroids, expected, atol=1e-9)
        areas = ndi.sum_labels(np.ones_like(labels), labels, index)
        assert areas.min() >= MIN_VISIBLE_AREA_PX
        for k, sl in enumerate(ndi.find_objects(labels), start=1):  # every nucleus is one piece
            assert ndi.label(labels[sl] == k)[1] == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"n_cells": 120, "cluster_fraction": 0.9, "overlap": 0.4},
        {"bright_background": True},
        {"bit_depth": 16, "shape_irregularity": 0.0, "radius_px": (3.0, 3.0)},
    ],
)
def test_count_is_exact(kwargs):
    sample = make_synthetic((160, 192), rng=3, **kwargs)
    _check_exact(sample)
    assert sample.labels.shape == (160, 192)
    assert sample.image.shape[:2] == (160, 192)
    assert sample.count > 0


def test_same_seed_same_sample_and_generator_accepted():
    a = make_synthetic((128, 128), rng=7, n_cells=20)
    b = make_synthetic((128, 128), rng=np.random.default_rng(7), n_cells=20)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.labels, b.labels)
    assert np.array_equal(a.centroids, b.centroids)
    assert a.params["seed"] == 7 and b.params["seed"] is None


def test_different_seeds_differ():
    a = make_synthetic((128, 128), rng=1, n_cells=20)
    b = make_synthetic((128, 128), rng=2, n_cells=20)
    assert not np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.image, b.image)


def test_16bit_dtype_and_range():
    s = make_synthetic((128, 128), rng=4, n_cells=25, bit_depth=16)
    assert s.image.dtype == np.uint16 and s.image.ndim == 2
    assert s.image.max() <= 4095
    background = np.median(s.image[s.labels == 0])
    assert 100 <= background <= 250  # camera offset ~100 plus a little autofluorescence
    assert s.image[s.labels > 0].mean() > 600
    assert s.image.max() > 1500


def test_8bit_fluorescence_nuclei_brighter_than_background():
    s = make_synthetic((128, 128), rng=5, n_cells=25)
    assert s.image.dtype == np.uint8 and s.image.shape == (128, 128)
    assert s.image[s.labels > 0].mean() > 4 * s.image[s.labels == 0].mean()


def test_bright_background_rgb_and_gray():
    rgb = make_synthetic((128, 128), rng=6, n_cells=25, bright_background=True)
    assert rgb.image.shape == (128, 128, 3) and rgb.image.dtype == np.uint8
    gray = rgb.image.mean(axis=2)
    assert gray[rgb.labels == 0].mean() > gray[rgb.labels > 0].mean() + 40
    mono = make_synthetic((128, 128), rng=6, n_cells=25, bright_background=True, color=False)
    assert mono.image.shape == (128, 128)
    assert mono.image[mono.labels == 0].mean() > mono.image[mono.labels > 0].mean() + 40
    assert np.array_equal(mono.labels, rgb.labels)


def test_no_cells_gives_empty_image():
    s = make_synthetic((96, 128), rng=8, n_cells=0)
    assert s.count == 0
    assert not s.labels.any()
    assert s.centroids.shape == (0, 2)
    assert s.image.shape == (96, 128)
    assert np.percentile(s.image, 99.9) < 30  # background and noise only


def test_full_clustering_gives_touching_nuclei():
    s = make_synthetic((128, 128), rng=9, n_cells=30, cluster_fraction=1.0, overlap=0.1)
    lab = s.labels
    horiz = (lab[:, :-1] > 0) & (lab[:, 1:] > 0) & (lab[:, :-1] != lab[:, 1:])
    vert = (lab[:-1, :] > 0) & (lab[1:, :] > 0) & (lab[:-1, :] != lab[1:, :])
    assert horiz.any() or vert.any()


def test_bad_parameters_raise():
    with pytest.raises(ParameterError, match="bit_depth"):
        make_synthetic((64, 64), rng=0, bit_depth=12)
    with pytest.raises(ParameterError, match="n_cells"):
        make_synthetic((64, 64), rng=0, n_cells=-1)
    with pytest.raises(ParameterError, match="radius_px"):
        make_synthetic((64, 64), rng=0, radius_px=(9.0, 4.0))
    with pytest.raises(ParameterError, match="rng"):
        make_synthetic((64, 64), rng="seed")
    with pytest.raises(ParameterError, match="overlap"):
        make_synthetic((64, 64), rng=0, overlap=1.5)


_SMALL_SPECS = [
    SampleSpec("a_small", 1, {"shape": (64, 80), "n_cells": 6}, "small 8-bit"),
    SampleSpec("b_16bit", 2, {"shape": (64, 64), "n_cells": 5, "bit_depth": 16}, "small 16-bit"),
    SampleSpec("c_rgb", 3, {"shape": (64, 64), "n_cells": 5, "bright_background": True}, "small rgb"),
]


def test_write_samples_is_deterministic(tmp_path):
    m1 = write_samples(tmp_path / "one", _SMALL_SPECS)
    write_samples(tmp_path / "two", _SMALL_SPECS)
    files = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "two").iterdir())
    for name in files:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    assert list(m1["filename"]) == ["a_small.png", "b_16bit.tif", "c_rgb.png"]
    assert list(m1.columns[:6]) == ["filename", "count", "height", "width", "dtype", "conditions"]
    counts = pd.read_csv(tmp_path / "one" / "counts.csv")
    assert list(counts.columns) == ["filename", "count"]
    assert tifffile.imread(tmp_path / "one" / "b_16bit.tif").dtype == np.uint16


def test_main_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(synthetic.samples, "SAMPLE_SPECS", _SMALL_SPECS[:1])
    assert synthetic.main(["--out", str(tmp_path), "--seed-offset", "5"]) == 0
    manifest = pd.read_csv(tmp_path / "manifest.csv")
    assert manifest["seed"].tolist() == [6]
    assert "wrote 1 samples" in capsys.readouterr().out


def test_sample_specs_are_well_formed():
    names = [s.name for s in SAMPLE_SPECS]
    assert len(names) == len(set(names)) >= 10
    assert "s05_16bit.tif" in [synthetic.sample_filename(s) for s in SAMPLE_SPECS]


def _read_image(path: Path) -> np.ndarray:
    if path.suffix == ".tif":
        return tifffile.imread(path)
    with Image.open(path) as im:
        return np.asarray(im)


def test_shipped_manifest_matches_files():
    manifest = pd.read_csv(SAMPLES_DIR / "manifest.csv")
    assert len(manifest) == len(SAMPLE_SPECS)
    counts = pd.read_csv(SAMPLES_DIR / "counts.csv")
    assert counts.equals(manifest[["filename", "count"]])
    for row in manifest.itertuples():
        image = _read_image(SAMPLES_DIR / row.filename)
        assert image.shape[:2] == (row.height, row.width)
        assert str(image.dtype) == row.dtype
        labels = tifffile.imread(SAMPLES_DIR / row.labels_file)
        assert labels.dtype == np.uint16 and labels.shape == (row.height, row.width)
        ids = np.unique(labels)
        assert len(ids) - 1 == row.count == labels.max(), row.filename
        points = pd.read_csv(SAMPLES_DIR / row.points_file)
        assert list(points.columns) == ["row", "col"] and len(points) == row.count
    total_bytes = sum(p.stat().st_size for p in SAMPLES_DIR.iterdir())
    assert total_bytes < 3_500_000


def test_shipped_sample_is_reproduced_by_the_code():
    spec = SAMPLE_SPECS[0]
    sample = make_synthetic(rng=spec.seed, **spec.kwargs)
    shipped = tifffile.imread(SAMPLES_DIR / f"{spec.name}_labels.tif")
    assert np.array_equal(sample.labels, shipped.astype(np.int32))
