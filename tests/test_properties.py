"""Property-based tests (hypothesis) of image reading, normalisation and postprocessing (issue #6).

* reading: random arrays (uint8 / uint16 / float32; (H, W), (H, W, 3) or (H, W, 4); 1 <= H, W <= 64)
  encoded as PNG or TIFF come back with the same data, or raise a cellcount error, never anything else;
  random corruptions of valid files raise only cellcount errors;
* normalisation: any finite or non-finite float array gives a finite float32 (H, W) output within
  NORMALIZED_RANGE, and the input is not mutated;
* postprocessing: ``segment`` gives int32 consecutive labels with count == labels.max() and valid
  rejection codes; ``filter_objects`` keeps exactly the objects whose area is within [min, max].
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from cellcount.errors import CellcountError
from cellcount.io import NORMALIZED_RANGE, normalize_image, read_image, to_gray
from cellcount.postprocess import KEPT, ON_BORDER, TOO_LARGE, TOO_SMALL, filter_objects, segment

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

DTYPES = (np.uint8, np.uint16, np.float32)


@st.composite
def images(draw, dtypes=DTYPES) -> np.ndarray:
    """A random image: dtype from ``dtypes``; shape (H, W), (H, W, 3) or (H, W, 4); 1 <= H, W <= 64."""
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    h = draw(st.integers(1, 64))
    w = draw(st.integers(1, 64))
    channels = draw(st.sampled_from([None, 3, 4]))
    shape = (h, w) if channels is None else (h, w, channels)
    if dtype.kind == "f":
        elements = st.floats(-1e6, 1e6, width=32, allow_nan=False, allow_infinity=False)
    else:
        info = np.iinfo(dtype)
        elements = st.integers(int(info.min), int(info.max))
    # a few random values spread over the array, so encoders see more than constant planes
    fill = draw(elements)
    arr = draw(hnp.arrays(dtype, shape, elements=elements, fill=st.just(fill)))
    return arr


def _encode_png(arr: np.ndarray) -> tuple[bytes, np.ndarray] | None:
    """PNG bytes and the array read_image must return, or None when PNG cannot hold this array."""
    import cv2

    if arr.dtype == np.float32:
        return None
    buf = io.BytesIO()
    if arr.ndim == 2:
        Image.fromarray(arr).save(buf, format="PNG")
        return buf.getvalue(), arr
    if arr.dtype == np.uint8:
        Image.fromarray(arr, mode="RGB" if arr.shape[2] == 3 else "RGBA").save(buf, format="PNG")
        return buf.getvalue(), arr[:, :, :3]  # alpha is dropped
    bgr = arr[:, :, [2, 1, 0]] if arr.shape[2] == 3 else arr[:, :, [2, 1, 0, 3]]
    ok, enc = cv2.imencode(".png", np.ascontiguousarray(bgr))
    assert ok
    return enc.tobytes(), arr[:, :, :3]  # 16-bit colour keeps 16 bits; alpha is dropped


def _encode_tiff(arr: np.ndarray, how: str = "photometric") -> tuple[bytes, np.ndarray]:
    """TIFF bytes written with photometric hints, with no hints ('plain') or with axes metadata ('axes')."""
    buf = io.BytesIO()
    if how == "photometric":
        kwargs: dict = {"photometric": "rgb"} if arr.ndim == 3 else {"photometric": "minisblack"}
        if arr.ndim == 3 and arr.shape[2] == 4:
            kwargs["extrasamples"] = ["unassalpha"]
    elif how == "axes":
        kwargs = {"metadata": {"axes": "YXC" if arr.ndim == 3 else "YX"}}
    else:
        kwargs = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tifffile: "data with shape ... are stored as RGB" hints
        tifffile.imwrite(buf, arr, **kwargs)
    return buf.getvalue(), arr  # TIFF keeps every sample


def _encode(arr: np.ndarray, fmt: str) -> tuple[bytes, np.ndarray] | None:
    if fmt == "png":
        return _encode_png(arr)
    return _encode_tiff(arr, fmt.split("-", 1)[1])


FORMATS = ["png", "tiff-photometric", "tiff-plain", "tiff-axes"]


@SETTINGS
@given(arr=images(), fmt=st.sampled_from(FORMATS))
@pytest.mark.slow
def test_read_image_round_trip(arr: np.ndarray, fmt: str) -> None:
    encoded = _encode(arr, fmt)
    assume(encoded is not None)
    data, expected = encoded
    try:
        out = read_image(data)
    except CellcountError:
        return  # a typed refusal is allowed; anything else fails the test
    assert out.dtype == expected.dtype, (out.dtype, expected.dtype)
    assert out.shape == expected.shape, (out.shape, expected.shape)
    np.testing.assert_array_equal(out, expected)


@SETTINGS
@given(
    arr=images(),
    fmt=st.sampled_from(FORMATS),
    cut=st.floats(0.0, 1.0),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, 255)), max_size=4),
)
@pytest.mark.slow
def test_read_image_on_corrupted_bytes_raises_only_cellcount_errors(arr, fmt, cut, flips) -> None:
    encoded = _encode(arr, fmt)
    assume(encoded is not None)
    data = bytearray(encoded[0])
    for pos, xor in flips:
        data[min(int(pos * len(data)), len(data) - 1)] ^= xor
    data = bytes(data[: max(int(cut * len(data)), 0)] if cut < 1.0 else data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # decoders may warn about the damage
        try:
            out = read_image(data)
        except CellcountError as err:
            assert str(err)
            return
    assert out.ndim in (2, 3) and 0 not in out.shape


@pytest.mark.parametrize("fmt", FORMATS)
def test_read_image_round_trip_tiny_and_thin_shapes(fmt: str) -> None:
    """Every dtype / channel layout at the shapes most likely to confuse layout guessing (1..5 px sides)."""
    rng = np.random.default_rng(0)
    for dtype in DTYPES:
        for channels in (None, 3, 4):
            for h in (1, 2, 3, 4, 5, 33):
                for w in (1, 2, 3, 4, 5, 33):
                    shape = (h, w) if channels is None else (h, w, channels)
                    arr = (rng.random(shape) * 250).astype(dtype)
                    encoded = _encode(arr, fmt)
                    if encoded is None:
                        continue
                    out = read_image(encoded[0])
                    assert out.shape == encoded[1].shape and out.dtype == arr.dtype, (fmt, shape, dtype, out.shape)
                    np.testing.assert_array_equal(out, encoded[1])


@pytest.mark.parametrize("channels", [1, 2, 3, 5, 7])
def test_read_image_tiff_with_yxc_axes_metadata(channels: int) -> None:
    """tifffile stores an (H, W, C) array saved with metadata={'axes': 'YXC'} as H pages of (W, C) rows."""
    arr = np.random.default_rng(channels).random((20, 30, channels)).astype(np.float32)
    data, _ = _encode_tiff(arr, "axes")
    out = read_image(data)
    np.testing.assert_array_equal(out, arr[:, :, 0] if channels == 1 else arr)
    stack = np.stack([arr, arr + 1, arr + 2])
    buf = io.BytesIO()
    tifffile.imwrite(buf, stack, photometric="minisblack", metadata={"axes": "ZYXC"})
    out = read_image(buf.getvalue(), page=2)
    np.testing.assert_array_equal(out, stack[2][:, :, 0] if channels == 1 else stack[2])


float_arrays = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64]),
    shape=st.one_of(
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=32),
        st.tuples(st.integers(1, 32), st.integers(1, 32), st.sampled_from([1, 2, 3, 4])),
    ),
    elements=st.floats(allow_nan=True, allow_infinity=True, width=32),
)


@SETTINGS
@example(arr=np.full((1, 1, 3), 1.1342746e38, np.float32), invert=None, pcts=(0.0, 1.0))  # a float32 sum overflowed
@given(
    arr=float_arrays,
    invert=st.sampled_from([None, True, False]),
    pcts=st.floats(0.0, 99.5).flatmap(lambda lo: st.tuples(st.just(lo), st.floats(lo + 0.01, 100.0))),
)
@pytest.mark.slow
def test_normalize_image_output_is_finite_and_bounded(arr: np.ndarray, invert, pcts) -> None:
    before = arr.copy()
    out = normalize_image(arr, low_pct=pcts[0], high_pct=pcts[1], invert=invert)
    assert out.dtype == np.float32
    assert out.shape == arr.shape[:2]
    assert np.isfinite(out).all()
    assert out.min() >= NORMALIZED_RANGE[0] and out.max() <= NORMALIZED_RANGE[1]
    np.testing.assert_array_equal(arr, before)  # NaNs compare equal here: input untouched
    gray = to_gray(arr)
    assert gray.dtype == np.float32 and np.isfinite(gray).all()


@SETTINGS
@given(arr=hnp.arrays(st.sampled_from([np.uint8, np.uint16, np.int32, np.bool_]), hnp.array_shapes(
    min_dims=2, max_dims=2, min_side=1, max_side=32)))
def test_normalize_image_any_integer_dtype(arr: np.ndarray) -> None:
    out = normalize_image(arr)
    assert out.dtype == np.float32 and out.shape == arr.shape and np.isfinite(out).all()


# --------------------------------------------------------------------------------------------------
# postprocessing
# --------------------------------------------------------------------------------------------------
@st.composite
def probability_maps(draw) -> np.ndarray:
    """Blocky random probability maps (so objects of several pixels exist), sometimes with NaN."""
    h = draw(st.integers(1, 48))
    w = draw(st.integers(1, 48))
    block = draw(st.integers(1, 8))
    coarse = draw(hnp.arrays(np.float32, ((h + block - 1) // block, (w + block - 1) // block),
                             elements=st.floats(0.0, 1.0, width=32)))
    prob = np.kron(coarse, np.ones((block, block), np.float32))[:h, :w]
    if draw(st.booleans()):
        noise = draw(hnp.arrays(np.float32, (h, w), elements=st.floats(-0.25, 0.25, width=32)))
        prob = np.clip(prob + noise, 0, 1)
    if draw(st.booleans()):
        prob = prob.copy()
        prob[draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))] = np.nan
    return np.ascontiguousarray(prob, dtype=np.float32)


def _check_labels(labels: np.ndarray, count: int) -> None:
    assert labels.dtype == np.int32
    assert labels.min() >= 0
    assert count == int(labels.max())
    ids = np.unique(labels)
    assert np.array_equal(ids[ids > 0], np.arange(1, count + 1))  # consecutive 1..N


@SETTINGS
@given(
    prob=probability_maps(),
    threshold_level=st.floats(0.0, 1.0),
    opening=st.integers(0, 3),
    closing=st.integers(0, 3),
    fill=st.booleans(),
    split_mode=st.sampled_from(["borders", "distance", "both", "off"]),
    min_distance=st.integers(1, 8),
    min_area=st.integers(0, 40),
    extra_max=st.one_of(st.none(), st.integers(0, 400)),
    exclude_border=st.booleans(),
    use_border=st.booleans(),
)
@pytest.mark.slow
def test_segment_labels_are_consistent(
    prob, threshold_level, opening, closing, fill, split_mode, min_distance, min_area, extra_max, exclude_border,
    use_border,
) -> None:
    before = prob.copy()
    border = np.flipud(np.nan_to_num(prob)) if use_border or split_mode in ("borders", "both") else None
    res = segment(
        prob, threshold=threshold_level, opening_radius_px=opening, closing_radius_px=closing, fill_holes=fill,
        split_mode=split_mode, min_distance_px=min_distance, min_area_px=min_area,
        max_area_px=None if extra_max is None else min_area + extra_max, exclude_border=exclude_border,
        border_prob=border,
    )
    _check_labels(res.labels, res.count)
    assert res.labels.shape == prob.shape
    assert res.rejected.dtype == np.uint8 and res.rejected.shape == prob.shape
    assert set(np.unique(res.rejected)) <= {KEPT, TOO_SMALL, TOO_LARGE, ON_BORDER}
    assert not ((res.labels > 0) & (res.rejected != KEPT)).any()  # a pixel is kept or rejected, not both
    fg = np.nan_to_num(prob, nan=-1.0) > threshold_level
    if opening == 0 and closing == 0 and not fill:
        assert not ((res.labels > 0) & ~fg).any()  # objects lie inside the thresholded mask
    np.testing.assert_array_equal(prob, before)
    if exclude_border and res.count:
        edges = np.concatenate([res.labels[0], res.labels[-1], res.labels[:, 0], res.labels[:, -1]])
        assert not edges.any()


@SETTINGS
@given(
    labels=hnp.arrays(np.int32, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=24),
                      elements=st.integers(0, 12)),
    min_area=st.integers(0, 30),
    extra_max=st.one_of(st.none(), st.integers(0, 60)),
    exclude_border=st.booleans(),
)
def test_filter_objects_keeps_exactly_the_objects_within_bounds(labels, min_area, extra_max, exclude_border) -> None:
    max_area = None if extra_max is None else min_area + extra_max
    before = labels.copy()
    res = filter_objects(labels, min_area_px=min_area, max_area_px=max_area, exclude_border=exclude_border)
    _check_labels(res.labels, res.count)
    ids, areas = np.unique(labels[labels > 0], return_counts=True)
    edge = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])).tolist())
    keep = [
        int(i) for i, a in zip(ids, areas)
        if min_area <= a and (max_area is None or a <= max_area) and not (exclude_border and int(i) in edge)
    ]
    assert res.count == len(keep)
    # the kept pixels are exactly the pixels of the kept input objects, one output id per input id
    np.testing.assert_array_equal(res.labels > 0, np.isin(labels, keep))
    for i in keep:
        out_ids = np.unique(res.labels[labels == i])
        assert len(out_ids) == 1 and out_ids[0] > 0
    # order is preserved: output ids follow the input ids
    firsts = [int(np.unique(res.labels[labels == i])[0]) for i in keep]
    assert firsts == list(range(1, len(keep) + 1))
    # every rejected pixel carries the reason of its object
    for i, a in zip(ids, areas):
        if int(i) in keep:
            continue
        codes = np.unique(res.rejected[labels == i])
        assert len(codes) == 1
        if exclude_border and int(i) in edge:
            assert codes[0] == ON_BORDER
        elif a < min_area:
            assert codes[0] == TOO_SMALL
        else:
            assert codes[0] == TOO_LARGE
    assert not res.rejected[labels == 0].any()
    np.testing.assert_array_equal(labels, before)


@pytest.mark.parametrize("area", [9, 10, 11])
def test_filter_objects_bounds_are_inclusive(area: int) -> None:
    labels = np.zeros((20, 20), np.int32)
    labels.flat[:area] = 1  # one object of exactly `area` pixels (a run along the first rows)
    assert filter_objects(labels, min_area_px=10).count == (area >= 10)
    assert filter_objects(labels, min_area_px=0, max_area_px=10).count == (area <= 10)
