"""cellcount.io.percentile: np.percentile's numbers, from a histogram for integer pixels."""

from __future__ import annotations

import numpy as np
import pytest

from cellcount.io import percentile as pct
from cellcount.io.percentile import percentiles

QS = ([0.1, 50.0, 99.9], [1.0, 99.8], [0.0, 100.0], [0.5, 99.5], [50.0], [33.3, 66.7])


def _images(rng):
    for h, w in ((1, 1), (1, 7), (5, 3), (64, 48), (257, 255)):
        yield rng.integers(0, 256, (h, w)).astype(np.uint8)
        yield rng.integers(0, 65536, (h, w)).astype(np.uint16)
        yield rng.integers(-128, 128, (h, w)).astype(np.int8)  # np.percentile's own int8 arithmetic too
        yield rng.integers(0, 4096, (h, w)).astype(np.float32)  # 12-bit pixels as to_gray gives them
        yield (rng.poisson(2.0, (h, w)) - 3).astype(np.float32)  # few levels, negative, many ties
        yield np.full((h, w), 7, np.uint8)


def test_the_same_numbers_as_numpy_for_integer_pixels():
    rng = np.random.default_rng(0)
    for image in _images(rng):
        for qs in QS:
            ref, got = np.percentile(image, qs), percentiles(image, qs)
            assert got.dtype == ref.dtype and np.array_equal(got, ref), (image.dtype, image.shape, qs, ref, got)


@pytest.mark.parametrize("image", [
    np.linspace(0, 1, 300, dtype=np.float32).reshape(20, 15),  # fractional values
    np.array([[0, 70000]], np.uint32),  # wider than the histogram's span
    np.array([[0.0, np.nan, 3.0]], np.float32),  # NaN: numpy's own answer
    np.arange(12, dtype=np.float64).reshape(3, 4),  # float64 is left to numpy
    np.array([[0, 2**63 + 5, 2**64 - 1]], np.uint64),  # 64-bit extremes too
], ids=["fractions", "wide-span", "nan", "float64", "uint64"])
def test_other_images_go_to_numpy(image, monkeypatch):
    calls = []
    real = np.percentile
    monkeypatch.setattr(pct.np, "percentile", lambda *a, **k: calls.append(1) or real(*a, **k))
    with np.errstate(invalid="ignore"):
        got, ref = percentiles(image, [1.0, 99.0]), real(image, [1.0, 99.0])
    assert calls and np.array_equal(got, ref, equal_nan=True)


def test_integer_pixels_are_not_sorted(monkeypatch):
    monkeypatch.setattr(pct.np, "percentile", lambda *a, **k: pytest.fail("sorted instead of counted"))
    image = np.random.default_rng(1).integers(0, 256, (128, 128)).astype(np.float32)
    assert percentiles(image, [1.0, 99.8]).shape == (2,)


def test_a_bad_percentile_raises_as_numpy_does():
    with pytest.raises(ValueError):
        percentiles(np.zeros((4, 4), np.uint8), [101.0])
