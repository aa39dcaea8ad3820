"""Burned-in marks (a time stamp, a scale bar) among the objects counted: flat strokes, said in the flag."""

from __future__ import annotations

import numpy as np

from cellcount.overlay import MIN_STROKES, overlay_note, stroke_objects
from cellcount.pipeline import with_overlay


def _scene(n_strokes: int, *, clipped: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noisy round nuclei, ``clipped`` of them flat at 255, and ``n_strokes`` flat white strokes of a character's
    size (3 x 12 px), each an object of its own as a model counts them."""
    rng = np.random.default_rng(1)
    image = rng.normal(30, 4, (120, 200))
    labels = np.zeros(image.shape, np.int32)
    yy, xx = np.mgrid[:120, :200]
    k = 0
    for i in range(8):
        cy, cx = 25 + 30 * (i // 4), 25 + 45 * (i % 4)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= 81
        k += 1
        labels[disc] = k
        image[disc] = 255 if i < clipped else rng.normal(150, 15, int(disc.sum()))
    for j in range(n_strokes):
        k += 1
        r0, c0 = 95, 5 + 12 * j
        labels[r0 - 1:r0 + 13, c0 - 1:c0 + 4] = k  # the object a model draws around the stroke, a little wider
        image[r0:r0 + 12, c0:c0 + 3] = 255
    return labels, np.clip(image, 0, 255).astype(np.uint8)


def test_flat_strokes_are_counted_and_nuclei_are_not():
    labels, image = _scene(7)
    assert stroke_objects(labels, image) == 7
    # dark marks on a bright field: its bottom value
    assert stroke_objects(labels, 255 - image, bright_background=True) == 7
    assert stroke_objects(labels, 255 - image) == 0
    labels, image = _scene(0, clipped=8)  # clipped nuclei: flat at the top value, but round
    assert stroke_objects(labels, image) == 0
    assert stroke_objects(np.zeros((5, 5), np.int32), np.zeros((5, 5))) == 0
    # the same strokes all over the image (clipped, elongated nuclei), not along a line of text
    labels, image = _scene(7)
    spread = np.zeros((400, 400), np.int32)
    picture = np.random.default_rng(2).normal(30, 4, spread.shape)
    for j in range(7):
        r0, c0 = 10 + 55 * j, 10 + 50 * j
        spread[r0:r0 + 14, c0:c0 + 5] = labels[94:108, 4 + 12 * j:9 + 12 * j]
        picture[r0:r0 + 14, c0:c0 + 5] = image[94:108, 4 + 12 * j:9 + 12 * j]
    rng = np.random.default_rng(5)
    for i in range(1, 9):  # noisy nuclei too, whose levels make flatness mean something
        spread[300:320, 40 * i:40 * i + 10] = 100 + i
        picture[300:320, 40 * i:40 * i + 10] = rng.normal(150, 15, (20, 10))
    assert stroke_objects(spread, np.clip(picture, 0, 255).astype(np.uint8)) == 1


def test_every_pixel_type_reads_the_same_strokes():
    """The per-object extreme is accumulated in the image's own type: its lowest and highest values must still start
    the accumulator (an int16 image below 0, a uint16 one at its top, bool, float)."""
    labels, image = _scene(7)
    for kind in (np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64):
        for shift in (0, -300) if np.dtype(kind).kind in "if" else (0,):
            typed = image.astype(kind) + kind(shift)
            assert stroke_objects(labels, typed) == 7, (kind, shift)
            wide = typed.astype(np.float64)
            inverted = (wide.max() + wide.min() - wide).astype(kind)  # dark strokes, in the same range and type
            assert stroke_objects(labels, inverted, bright_background=True) == 7, (kind, shift)
    top = image.astype(np.uint16) * 257  # strokes at 65535, the type's own maximum
    assert stroke_objects(labels, top) == 7
    assert stroke_objects(labels, image > 128) == 0  # two levels: too few to judge


def test_the_flag_says_so_from_min_strokes_in_one_line():
    assert overlay_note(MIN_STROKES - 1) is None
    assert "time stamp, scale bar or text" in overlay_note(MIN_STROKES)
    labels, image = _scene(MIN_STROKES)
    flagged = with_overlay(None, labels, image.astype(np.float32))
    assert flagged.flag and any("thin strokes of one flat value" in r for r in flagged.reasons)
    labels, image = _scene(MIN_STROKES - 1)
    assert with_overlay(None, labels, image.astype(np.float32)) is None


def test_no_strokes_in_dim_quantised_or_clipped_elongated_nuclei():
    """A reviewer's images without text read as time stamps: dim 8-bit nuclei (values 2-3, their extremes scattered
    pixels) and clipped 3:1 nuclei laid out in rows (17 "strokes" in one row)."""
    from skimage.draw import disk, ellipse

    rng = np.random.default_rng(3)
    for kind in ("dim", "clipped"):
        labels = np.zeros((480, 480), np.int32)
        image = rng.poisson(0.4, labels.shape).astype(float) if kind == "dim" else rng.normal(20, 4, labels.shape)
        k = 0
        for r0 in range(30, 450, 60):
            for c0 in range(30, 450, 60):
                k += 1
                if kind == "dim":
                    rr, cc = disk((r0, c0), 10, shape=labels.shape)
                    image[rr, cc] = 2 + rng.poisson(0.6, rr.size)
                else:
                    rr, cc = ellipse(r0, c0, 7, 22, shape=labels.shape, rotation=rng.uniform(0, np.pi))
                    image[rr, cc] = 255
                labels[rr, cc] = k
        assert stroke_objects(labels, np.clip(image, 0, 255).astype(np.uint8)) < MIN_STROKES, kind
