"""Training data: DSB 2018 (optionally mixed with synthetic images) -> normalised images + targets."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..groundtruth import load_dsb_folder
from ..io import model_input, pixel_digest, read_image
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
    # sha256 of the image file a real training image came from (cards list them: a model's training images are
    # recognised when a user scores it on them); None for generated images and jittered copies
    file_sha256: str | None = None
    pixel_sha256: str | None = None


def is_validation(name: str, val_fraction: float, seed: int | str = 0) -> bool:
    """Deterministic split by a hash of the file name (stable when the folder grows)."""
    h = int(hashlib.sha1(f"{seed}:{name}".encode()).hexdigest()[:8], 16)
    return (h % 10000) < val_fraction * 10000


SPLITS = ("train", "val", "test")
TEST_SEED = "test"


def dsb_part(name: str, val_fraction: float = 0.2, seed: int = 0, *, hold_out_test: bool = True) -> str:
    """``"train"``, ``"val"`` or ``"test"`` for a DSB file name.

    The held-out fraction (``is_validation``) is the split every earlier model was trained without.
    With ``hold_out_test`` it is halved again by a second hash: one half validates (choosing checkpoints,
    settings and models), the other is the test part, scored once for the README. Images a shipped model
    ever trained on thus never reach either half.
    """
    if not is_validation(name, val_fraction, seed):
        return "train"
    if not hold_out_test:
        return "val"
    return "test" if is_validation(name, 0.5, TEST_SEED) else "val"


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
    if kind in ("mask", "multihead"):
        targets["mask"] = (labels > 0).astype(np.uint8)
        targets["border"] = border_target(labels, width=border_width)
    if kind in ("density", "multihead"):
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
    hold_out_test: bool = False,
    hed_variants: int = 0,
    rng: np.random.Generator | None = None,
) -> tuple[list[Item], list[Item]]:
    """Load every DSB image with its labels, split into (train, val) by :func:`dsb_part`; test images
    (``hold_out_test``) are never loaded. ``hed_variants`` adds that many stain-jittered copies of each
    colour training image (:func:`~cellcount.training.augment.hed_jitter`, before the grayscale
    conversion, which is where stain colour matters)."""
    from .augment import hed_jitter

    pairs = load_dsb_folder(root)
    if limit:
        pairs = pairs[:limit]
    rng = rng if rng is not None else np.random.default_rng(0)
    train, val = [], []
    for path, gt in pairs:
        part = dsb_part(path.name, val_fraction, seed, hold_out_test=hold_out_test)
        if part == "test":
            continue
        image = read_image(path)
        item = prepare_item(path.name, image, gt.labels, kind=kind, density_scale=density_scale, grayscale=grayscale)
        item.file_sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        item.pixel_sha256 = pixel_digest(image)
        (val if part == "val" else train).append(item)
        if part == "train" and hed_variants and item.inverted and image.ndim == 3 and image.shape[2] >= 3:
            for k in range(hed_variants):
                jittered = hed_jitter(image[..., :3], rng=rng)
                train.append(prepare_item(f"{path.name}#hed{k}", jittered, gt.labels, kind=kind,
                                          density_scale=density_scale, grayscale=grayscale))
    logger.info("DSB: %d train, %d validation images from %s", len(train), len(val), root)
    return train, val


def synthetic_items(
    n: int, *, kind: str, density_scale: float, seed: int, size: int = 256, grayscale: str = "mean",
    varied: bool = False,
) -> list[Item]:
    """``n`` generated images across conditions (see :mod:`cellcount.synthetic`)."""
    return [prepare_item(f"synthetic_{i:04d}", s.image, s.labels, kind=kind, density_scale=density_scale,
                         grayscale=grayscale)
            for i, s in enumerate(synthetic_images(n, seed=seed, size=size, varied=varied))]


def synthetic_images(n: int, *, seed: int, size: int = 256, varied: bool = False):
    """The generated images of :func:`synthetic_items` as drawn (raw image and labels), in the same order: the
    same ``seed`` gives the images a training run saw (``scripts/novelty_reference.py`` reads them back)."""
    from ..synthetic import make_synthetic

    rng = np.random.default_rng(seed)
    for _ in range(n):
        if varied:
            yield varied_synthetic(size, rng=rng)
            continue
        yield make_synthetic(
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


def varied_synthetic(size: int, *, rng: np.random.Generator):
    """One generated image from the wide range users bring (``data.synthetic_varied``).

    Nuclei 6-80 px across (log-uniform), from sparse to dense overlapping clusters; fluorescence or
    brightfield, H&E-like colour or gray; defocus blur, uneven illumination, low photon counts, and JPEG
    compression artefacts on a third of them. DSB covers few of these conditions.
    """
    import cv2

    from ..synthetic import make_synthetic

    radius = float(np.exp(rng.uniform(np.log(3.0), np.log(40.0))))
    spread = (max(2.5, radius * 0.75), radius * 1.25)
    fill = float(rng.uniform(0.05, 0.6))  # share of the field covered by nuclei
    n_cells = int(np.clip(fill * size * size / (np.pi * radius * radius), 1, 400))
    bright = bool(rng.random() < 0.4)
    dense = rng.random() < 0.3
    s = make_synthetic(
        (size, size), rng=rng, n_cells=n_cells, radius_px=spread,
        shape_irregularity=float(rng.uniform(0.05, 0.5)),
        cluster_fraction=float(rng.uniform(0.5, 0.95) if dense else rng.uniform(0, 0.5)),
        overlap=float(rng.uniform(0.2, 0.5) if dense else rng.uniform(0, 0.2)),
        texture=float(rng.uniform(0, 1.2)),
        illumination=float(rng.uniform(0, 1.2)),
        blur_sigma=float(rng.uniform(0.3, 1.5) if rng.random() < 0.7 else rng.uniform(1.5, 4.0)),
        poisson_photons=float(np.exp(rng.uniform(np.log(20), np.log(1000)))),
        bit_depth=int(rng.choice([8, 16])),
        bright_background=bright,
        background_level=float(rng.uniform(0, 0.6)),
        color=bool(rng.random() < 0.8),
    )
    if s.image.dtype == np.uint8 and rng.random() < 0.33:
        quality = int(rng.integers(25, 85))
        ok, buf = cv2.imencode(".jpg", s.image[..., ::-1] if s.image.ndim == 3 else s.image,
                               [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            dec = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
            return dataclasses.replace(s, image=dec[..., ::-1].copy() if dec.ndim == 3 else dec)
    return s
