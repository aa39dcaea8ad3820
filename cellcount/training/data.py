"""Training data: DSB 2018 (optionally mixed with synthetic images) -> normalised images + targets."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..groundtruth import load_dsb_folder
from ..io import model_input, read_image
from .targets import border_target, density_from_labels

logger = logging.getLogger(__name__)


@dataclass
class Item:
    """One training/validation image with its targets (full size)."""

    name: str
    image: np.ndarray  # (H, W) float32 normalised
    labels: np.ndarray  # (H, W) int32
    count: int
    targets: dict[str, np.ndarray]
    inverted: bool = False


def is_validation(name: str, val_fraction: float, seed: int = 0) -> bool:
    """Deterministic split by a hash of the file name (stable when the folder grows)."""
    h = int(hashlib.sha1(f"{seed}:{name}".encode()).hexdigest()[:8], 16)
    return (h % 10000) < val_fraction * 10000


def prepare_item(
    name: str,
    image: np.ndarray,
    labels: np.ndarray,
    *,
    kind: str,
    density_scale: float,
    border_width: int = 1,
    grayscale: str = "mean",
) -> Item:
    """Normalise like inference does and build the targets for ``kind`` ('mask' or 'density')."""
    norm, inverted = model_input(image, grayscale=grayscale)
    labels = np.asarray(labels, np.int32)
    targets: dict[str, np.ndarray] = {}
    if kind == "mask":
        targets["mask"] = (labels > 0).astype(np.uint8)
        targets["border"] = border_target(labels, width=border_width)
    else:
        targets["density"] = density_from_labels(labels) * np.float32(density_scale)
    count = int(len(np.unique(labels)) - (1 if (labels == 0).any() else 0))
    return Item(name=name, image=norm, labels=labels, count=count, targets=targets, inverted=inverted)


def load_dsb_split(
    root: str | Path,
    *,
    kind: str,
    val_fraction: float,
    seed: int,
    density_scale: float,
    limit: int | None = None,
    grayscale: str = "mean",
) -> tuple[list[Item], list[Item]]:
    """Load every DSB image with its labels, split into (train, val)."""
    pairs = load_dsb_folder(root)
    if limit:
        pairs = pairs[:limit]
    train, val = [], []
    for path, gt in pairs:
        item = prepare_item(
            path.name, read_image(path), gt.labels, kind=kind, density_scale=density_scale, grayscale=grayscale
        )
        (val if is_validation(path.name, val_fraction, seed) else train).append(item)
    logger.info("DSB: %d train, %d validation images from %s", len(train), len(val), root)
    return train, val


def synthetic_items(
    n: int, *, kind: str, density_scale: float, seed: int, size: int = 256, grayscale: str = "mean"
) -> list[Item]:
    """``n`` generated images across conditions (see :mod:`cellcount.synthetic`)."""
    from ..synthetic import make_synthetic

    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        s = make_synthetic(
            (size, size),
            rng=rng,
            n_cells=int(rng.integers(5, 80)),
            radius_px=(float(rng.uniform(3, 8)), float(rng.uniform(9, 18))),
            cluster_fraction=float(rng.uniform(0, 0.6)),
            blur_sigma=float(rng.uniform(0.3, 2.5)),
            illumination=float(rng.uniform(0, 0.5)),
            bit_depth=int(rng.choice([8, 16])),
            bright_background=bool(rng.random() < 0.2),
        )
        items.append(prepare_item(f"synthetic_{i:04d}", s.image, s.labels, kind=kind, density_scale=density_scale,
                                  grayscale=grayscale))
    return items
