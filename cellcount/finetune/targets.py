"""Training targets from the user's annotations; dots become outlines by correcting the base model's own segmentation."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..errors import GroundTruthError
from ..groundtruth import GroundTruth
from .reading import _median_diameter, annotated_diameter

DOT_DISC = 1.0
"""Segmentation targets from dots: a dot the base model segmented nothing under becomes a disc this fraction
of the object diameter across."""


# --------------------------------------------------------------------------------------------------
# targets from dots
# --------------------------------------------------------------------------------------------------
def labels_from_dots(base_labels: np.ndarray, points: np.ndarray, *, diameter_px: float) -> np.ndarray:
    """Instance labels for training a segmentation head from dot annotations alone.

    The base model's segmentation ``base_labels`` (H, W) is corrected by the user's dots ``points``
    (N, 2) (row, col): an object hit by one dot is kept; an object hit by several is split between them
    (a watershed of its distance transform seeded at the dots); an object hit by none is dropped (the
    user did not count it); a dot on background gets a disc of ``diameter_px`` (only on background
    pixels). Returns int32 labels numbered 1..N (N = the number of dots inside the image).
    """
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    base = np.asarray(base_labels)
    h, w = base.shape
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    rc = np.rint(pts).astype(np.int64)
    inside = (rc[:, 0] >= 0) & (rc[:, 0] < h) & (rc[:, 1] >= 0) & (rc[:, 1] < w)
    rc = rc[inside]
    out = np.zeros((h, w), np.int32)
    hit = base[rc[:, 0], rc[:, 1]] if len(rc) else np.zeros(0, base.dtype)
    next_id = 1
    objects = ndi.find_objects(base.astype(np.int64)) if base.max(initial=0) > 0 else []
    for obj in np.unique(hit[hit > 0]):
        dots = rc[hit == obj]
        sl = objects[int(obj) - 1]
        region = base[sl] == obj
        if len(dots) == 1:
            out[sl][region] = next_id
            next_id += 1
            continue
        markers = np.zeros(region.shape, np.int32)
        for k, (r, c) in enumerate(dots):
            markers[r - sl[0].start, c - sl[1].start] = k + 1
        split = watershed(-ndi.distance_transform_edt(region), markers, mask=region)
        view = out[sl]
        view[region] = split[region] + next_id - 1
        next_id += len(dots)
    radius = max(1.0, diameter_px / 2.0)
    yy, xx = np.ogrid[:h, :w]
    for r, c in rc[hit == 0]:
        r0, r1 = max(0, int(r - radius - 1)), min(h, int(r + radius + 2))
        c0, c1 = max(0, int(c - radius - 1)), min(w, int(c + radius + 2))
        disc = (yy[r0:r1] - r) ** 2 + (xx[:, c0:c1] - c) ** 2 <= radius * radius
        view = out[r0:r1, c0:c1]
        view[disc & (view == 0)] = next_id
        view[r - r0, c - c0] = next_id  # the dot itself, even where a neighbour's disc got there first
        next_id += 1
    return out


COUNT_ONLY = ("a count alone cannot teach a model where the cells are; give label images, masks, dot images or "
              "point CSVs")
"""Why an image with a count only (a counts table's row) is left out of a fine-tune."""


def training_item(name: str, image: np.ndarray, gt: GroundTruth, base, *, density_scale: float,
                  diameter_px: float | None = None, size_model=None, overrides: dict[str, Any] | None = None,
                  reference_px: float | None = None, density_sigma: float = 0.25, dot_disc: float = DOT_DISC,
                  measured_px: float | None = None):
    """One image + annotation -> a training :class:`~cellcount.training.data.Item` for ``base``'s kind,
    resized so that nuclei of ``diameter_px`` (default: this image's own, :func:`annotated_diameter`)
    reach the model's training size (``reference_px``, default the base card's). ``size_model``: see
    :func:`cellcount.pipeline.predict`; ``overrides``: settings over the base card's (e.g. the set's
    ``invert``). Dots become Gaussians of sigma ``density_sigma`` x the diameter; for a segmentation head, a dot
    the base segmented nothing under becomes a disc ``dot_disc`` x the diameter across. ``measured_px``: this
    image's :func:`annotated_diameter`, when the caller measured it already (one base pass less)."""
    from .. import pipeline, sizing
    from ..training.data import Item
    from ..training.targets import border_target, density_from_labels, density_from_points

    kind = base.output_kind
    # the base run at the scale the fine-tune trains at: its segmentation is what the dots correct
    params = pipeline.resolve_params(base, overrides)
    if diameter_px:
        params = dataclasses.replace(params, auto_nucleus_size=False, nucleus_diameter_px=float(diameter_px))
    # the base's maps correct dots for a segmentation head; otherwise only its input is needed (no network pass)
    pred = (pipeline.predict(image, base, params, size_model=size_model)
            if gt.labels is None and gt.points is not None and kind != "density" else None)
    norm, inverted = (pred.image_norm, pred.inverted) if pred is not None else pipeline.normalize(image, base, params)
    reference_diameter = sizing.reference_diameter(base.card)
    own = None
    if gt.labels is not None:
        labels = np.asarray(gt.labels, np.int32)
        own = _median_diameter(labels)
    elif gt.points is not None:
        labels = None
        if kind != "density":
            base_res = pipeline.postprocess(pred, params, measure=False)
            seg = base_res.labels if base_res.labels is not None else np.zeros(norm.shape, np.int32)
            own = diameter_px or pred.estimated_diameter_px or _median_diameter(seg)
            labels = labels_from_dots(seg, gt.points, diameter_px=dot_disc * (own or reference_diameter))
    else:
        raise GroundTruthError(f"{name}: {COUNT_ONLY}")
    diameter = (diameter_px or own or measured_px
                or annotated_diameter(image, gt, base, size_model=size_model, overrides=overrides) or reference_diameter)
    scale = pipeline.model_scale(base, diameter, norm.shape, reference_px=reference_px)
    if scale != 1.0:
        norm = pipeline.resize_image(norm, scale)
    shape = norm.shape

    def resized_labels(lab: np.ndarray) -> np.ndarray:
        if scale == 1.0:
            return lab
        import cv2

        return cv2.resize(lab.astype(np.int32).astype(np.float32), shape[::-1],
                          interpolation=cv2.INTER_NEAREST).astype(np.int32)

    targets: dict[str, np.ndarray] = {}
    lab = resized_labels(labels) if labels is not None else None
    if kind in ("mask", "multihead"):
        assert lab is not None
        targets["mask"] = (lab > 0).astype(np.uint8)
        targets["border"] = border_target(lab)
    if kind in ("density", "multihead"):
        if gt.points is not None:
            pts = np.asarray(gt.points, np.float64) * scale
            sigma = max(1.0, density_sigma * diameter * scale)
            targets["density"] = density_from_points(pts, shape, sigmas=sigma) * np.float32(density_scale)
        else:
            targets["density"] = density_from_labels(lab) * np.float32(density_scale)
    count = gt.count
    return Item(name=name, image=norm.astype(np.float32), labels=lab if lab is not None else np.zeros(shape, np.int32),
                count=int(count), targets=targets, inverted=inverted)
