"""Burned-in marks (a time stamp, a scale bar) among the objects counted: flat strokes, said in the flag."""

from __future__ import annotations

import numpy as np

from cellcount.overlay import MIN_STROKES, overlay_note, stroke_objects
from cellcount.pipeline import with_overlay


def _scene(n_strokes: int, *, clipped: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noisy round nuclei, ``clipped`` of them flat at 255, and ``n_strokes`` flat white strokes of a character's
    size (2 x 12 px), each an object of its own as a model counts them."""
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
        labels[r0 - 1:r0 + 14, c0 - 1:c0 + 4] = k  # the object a model draws around the stroke, wider than it
        image[r0 - 1:r0 + 14, c0 - 1:c0 + 4] = 40
        image[r0:r0 + 12, c0:c0 + 2] = 255
    return labels, np.clip(image, 0, 255).astype(np.uint8)


def test_flat_strokes_are_counted_and_nuclei_are_not():
    labels, image = _scene(7)
    assert stroke_objects(labels, image) == 7
    labels, image = _scene(0, clipped=8)  # clipped nuclei: flat at the top value, but round
    assert stroke_objects(labels, image) == 0
    assert stroke_objects(np.zeros((5, 5), np.int32), np.zeros((5, 5))) == 0
    scattered = np.zeros((200, 200), np.int32)
    flat = np.zeros((200, 200), np.uint8)
    for j in range(7):  # long flat objects all over the image (clipped, elongated nuclei), not a line of text
        r0, c0 = 5 + 27 * j, 10 + 25 * j
        scattered[r0:r0 + 12, c0:c0 + 2] = j + 1
        flat[r0:r0 + 12, c0:c0 + 2] = 255
    assert stroke_objects(scattered, flat) == 1


def test_the_flag_says_so_from_min_strokes_in_one_line():
    assert overlay_note(MIN_STROKES - 1) is None
    assert "time stamp, scale bar or text" in overlay_note(MIN_STROKES)
    labels, image = _scene(MIN_STROKES)
    flagged = with_overlay(None, labels, image.astype(np.float32))
    assert flagged.flag and any("thin strokes of one flat value" in r for r in flagged.reasons)
    labels, image = _scene(MIN_STROKES - 1)
    assert with_overlay(None, labels, image.astype(np.float32)) is None
