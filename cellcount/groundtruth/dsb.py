"""The two DSB 2018 layouts: ``<id>/images/<id>.png`` with ``<id>/masks/*.png``, or flat ``images/`` and ``labels/``."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cellcount.errors import GroundTruthError
from cellcount.io import (
    image_shape,
    list_image_files,
)

from .images import _read_gt_image, read_label_image
from .names import folded
from .pairing import _check_against_counts, _folded_counts, _skip_warning, match_ground_truth
from .truth import GroundTruth, _check_shape, _count_labels

logger = logging.getLogger(__name__)


_DSB_GT_DIRS = ("labels", "masks", "label", "mask", "gt", "ground_truth")


# --------------------------------------------------------------------------------------------------
# folders
# --------------------------------------------------------------------------------------------------
def _dsb_nested_ids(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and (d / "images").is_dir())


def _is_dsb_nested(root: Path) -> bool:
    return any((d / "masks").is_dir() for d in _dsb_nested_ids(root))


def _labels_from_mask_files(image: Path, mask_files: list[Path]) -> np.ndarray:
    """Merge one-object-per-file masks into int32 labels; earlier masks keep contested pixels."""
    labels: np.ndarray | None = None
    shape = image_shape(image)
    for k, mask_path in enumerate(mask_files, start=1):
        mask = _read_gt_image(mask_path)
        _check_shape(str(mask_path), mask.shape, shape)
        on = mask.any(axis=2) if mask.ndim == 3 else mask != 0
        if labels is None:
            labels = np.zeros(shape, dtype=np.int32)
        labels[on & (labels == 0)] = k
    return labels if labels is not None else np.zeros(shape, dtype=np.int32)


def load_dsb_folder(root: str | os.PathLike, *, counts_only: bool = False,
                    on_missing: Callable[[list[Path]], None] | None = None) -> list[tuple[Path, GroundTruth]]:
    """Load a Data Science Bowl 2018 style folder.

    Two layouts are read:

    * nested (the Kaggle download): ``<root>/<id>/images/<id>.png`` and ``<root>/<id>/masks/*.png``, one
      nucleus per mask file, merged into instance labels in sorted file order (a pixel claimed by two
      masks keeps the earlier one); ids without a ``masks`` folder are skipped with a warning.
    * flat: ``<root>/images/*.png`` with ``<root>/labels/*.png`` (same stem; ``masks/`` also accepted)
      and / or ``<root>/counts.csv`` (``filename,count``).

    Parameters
    ----------
    root : str or os.PathLike
        The folder.
    counts_only : bool
        Do not build label arrays: return ``kind='count'`` ground truth (from ``counts.csv`` when present,
        else from the number of non-empty mask files / distinct labels). Much less memory on big sets.
    on_missing : callable, optional
        Called with the images left out for want of ground truth (each logged as a warning too), so that a
        caller can say how many images its figures leave out.

    Returns
    -------
    list of (pathlib.Path, GroundTruth)
        Sorted by image path. Label images hold int32 labels, so the full 522-image DSB training set
        takes about 300 MB unless ``counts_only``.

    Raises
    ------
    FileNotFoundError
        ``root`` is not a folder.
    GroundTruthError
        Not a DSB layout, or unreadable / mismatched ground truth.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"folder not found: {root}")
    out: list[tuple[Path, GroundTruth]] = []
    missing: list[Path] = []
    if _is_dsb_nested(root):
        for id_dir in _dsb_nested_ids(root):
            images = list_image_files([id_dir / "images"], ground_truth=True)
            if not images:
                logger.warning("%s: no image in %s, skipped", root, id_dir / "images")
                continue
            preferred = [p for p in images if p.stem == id_dir.name]
            image = (preferred or images)[0]
            mask_dir = id_dir / "masks"
            masks = list_image_files([mask_dir], ground_truth=True) if mask_dir.is_dir() else []
            if not masks:
                missing.append(image)
                continue
            labels = _labels_from_mask_files(image, masks)
            count = _count_labels(labels)
            if counts_only:
                out.append((image, GroundTruth(kind="count", count=count, source=str(mask_dir))))
            else:
                out.append(
                    (image, GroundTruth(kind="labels", count=count, labels=labels, source=str(mask_dir)))
                )
        _skip_warning(root, missing, on_missing=on_missing)
        return out

    image_dir = root / "images"
    if not image_dir.is_dir():
        raise GroundTruthError(
            f"{root}: not a DSB 2018 folder: expected <id>/images + <id>/masks, or images/ + labels/ "
            "(and/or counts.csv)"
        )
    gt_dir = next((root / d for d in _DSB_GT_DIRS if (root / d).is_dir()), None)
    counts = _folded_counts(root / "counts.csv") if (root / "counts.csv").is_file() else {}
    if gt_dir is None and not counts:
        raise GroundTruthError(f"{root}: found images/ but no labels/ folder and no counts.csv")
    images = list_image_files([image_dir], ground_truth=True)
    matches = match_ground_truth(images, list_image_files([gt_dir], ground_truth=True)) if gt_dir is not None else {}
    for image in images:
        stem = folded(image.stem)
        if counts_only and stem in counts:
            out.append(
                (image, GroundTruth(kind="count", count=counts[stem], source=str(root / "counts.csv")))
            )
        elif image in matches:
            gt = read_label_image(matches[image], expected_shape=image_shape(image))
            _check_against_counts(gt, counts.get(stem))
            if counts_only:
                gt = GroundTruth(kind="count", count=gt.count, source=gt.source)
            out.append((image, gt))
        elif stem in counts:
            out.append(
                (image, GroundTruth(kind="count", count=counts[stem], source=str(root / "counts.csv")))
            )
        else:
            missing.append(image)
    _skip_warning(root, missing, on_missing=on_missing)
    return out
