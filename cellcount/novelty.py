"""How unlike the model's training images an image looks, read from the network's own encoder.

The quality flag's other signals compare a model with itself (two counts, uncertain pixels); where a model
has never seen a kind of image, its segmentation and its density head can miss the same cells alike and
agree (docs/multihead_training.md, run 8). This signal asks the network's encoder instead: the mean of
each channel at its three coarsest levels, over one window of the image at the scale the model counts at,
is compared with the same features of the model's training images; the distance to the nearest ``k`` of
them (each feature in units of its spread over the training images) is the image's ``novelty``, scaled so
that a new image like the training images reads about 1.

The training images' features live beside the weights (``novelty.safetensors``, named and checksummed in
the card's ``extra["novelty"]``), written by ``python scripts/novelty_reference.py``; a model without them
has no novelty signal. The limit that flags it is part of the card's quality rule (``max_novelty``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

NOVELTY_FILE = "novelty.safetensors"
WINDOW_PX = 256
"""Side of the window read (at the model's scale): the one with the most foreground, as the size estimate
picks its window. 256 px hold a few dozen nuclei of the training size and cost one small encoder pass."""
MIN_WINDOW_PX = 240
"""A window whose shorter side is under this at the model's scale is too small to judge against the
:data:`WINDOW_PX` reference: the pooled features drift with the size itself (smaller crops of the same
image read as more novel, checked by hand), so windows are compared like with like: exact
:data:`WINDOW_PX` crops, and images too small for one go to :data:`SMALL_WINDOW_PX`."""
SMALL_WINDOW_PX = 128
"""Images too small for :data:`WINDOW_PX` (a quarter of DSB's images once their large nuclei are brought to
the training size) are judged over a window this size against a second reference of the training images'
windows of the same size, so that like is compared with like."""
MIN_SMALL_WINDOW_PX = 120
"""The smallest window judged against the small reference (the same 15/16 of its side as
:data:`MIN_WINDOW_PX`); smaller images get no novelty."""
MIN_CONTENT_PX = 20
"""A window with fewer pixels than this above p = 0.5 (mask models; density: less than half a nucleus of
mass) shows the model nothing to judge: an empty block of a stitched mosaic read as far 'unlike'."""
FIRST_LEVEL = 2
"""Encoder levels from this one down to the bottleneck are pooled: the finer ones mostly see texture."""
K = 3
SETTINGS = {"window_px": WINDOW_PX, "small_window_px": SMALL_WINDOW_PX, "first_level": FIRST_LEVEL, "k": K}
"""How a reference's features were taken (recorded in the card's ``extra.novelty``; checked on load)."""


def encoder_features(net: Any, image: np.ndarray, *, bf16: bool = False) -> np.ndarray:
    """The per-channel means of ``net``'s encoder levels :data:`FIRST_LEVEL` and below for one normalised
    (H, W) image at the model's scale, in fp32 (the reference's precision) or, with ``bf16`` on a CPU, under
    bf16 autocast (where the CPU runs it natively: about half the time, close to fp32's)."""
    import contextlib

    import torch
    import torch.nn.functional as F

    x = np.asarray(image, np.float32)
    d = int(getattr(net, "divisor", 1))
    pad_h, pad_w = (-x.shape[0]) % d, (-x.shape[1]) % d
    if pad_h or pad_w:
        x = np.pad(x, ((0, pad_h), (0, pad_w)), mode="symmetric")
    param = next(net.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")  # the exact path may have moved it
    t = torch.from_numpy(np.ascontiguousarray(x))[None, None].to(device).contiguous(memory_format=torch.channels_last)
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 and device.type == "cpu" else contextlib.nullcontext()
    with torch.inference_mode(), amp:
        levels = [net.stem(t)]
        for down in net.down:
            levels.append(down(F.max_pool2d(levels[-1], 2)))
    return np.concatenate([lv.float().mean(dim=(0, 2, 3)).cpu().numpy() for lv in levels[FIRST_LEVEL:]]).astype(np.float32)


def feature_count(net: Any) -> int:
    """How many features :func:`encoder_features` gives for ``net`` (a reference must have as many)."""
    d = max(int(getattr(net, "divisor", 1)), 1)
    return len(encoder_features(net, np.zeros((2 * d, 2 * d), np.float32)))


def has_encoder(net: Any) -> bool:
    return hasattr(net, "stem") and hasattr(net, "down") and len(getattr(net, "down", ())) >= FIRST_LEVEL


@dataclass(frozen=True)
class NoveltyReference:
    """The training images' encoder features and how to measure a new image against them."""

    features: np.ndarray  # (N, F) float32
    mean: np.ndarray  # (F,)
    std: np.ndarray  # (F,)
    scale: float  # the median leave-one-out distance of the training images: novelty 1
    k: int = K
    small: NoveltyReference | None = None
    """The same for :data:`SMALL_WINDOW_PX` windows (images too small for the main one); None: such images
    get no novelty (a reference written before it existed, or too few images to fit one)."""
    window_px: int = WINDOW_PX
    """The window the features were taken over: :data:`SMALL_WINDOW_PX` for a reference of small training
    images only (a fine-tune on small crops), which then judges every image over that window."""

    @classmethod
    def fit(cls, features: np.ndarray, k: int = K) -> NoveltyReference:
        f = np.asarray(features, np.float32)
        if f.ndim != 2 or len(f) <= k:
            raise ValueError(f"a novelty reference needs more than {k} images' features, got {len(f)}")
        mean, std = f.mean(0), f.std(0) + 1e-6
        ref = cls(f, mean, std, 1.0, k)
        z = ref._z(f)
        d = np.sqrt(((z[:, None, :] - z[None]) ** 2).sum(-1))
        np.fill_diagonal(d, np.inf)
        loo = np.sort(d, axis=1)[:, :k].mean(1)
        return cls(f, mean, std, float(np.median(loo)), k)

    def self_scores(self) -> np.ndarray:
        """Each reference image's novelty against the others (leave one out): what images like them read."""
        z = self._z(self.features)
        d = np.sqrt(((z[:, None, :] - z[None]) ** 2).sum(-1))
        np.fill_diagonal(d, np.inf)
        return np.sort(d, axis=1)[:, : self.k].mean(1) / self.scale

    def _z(self, f: np.ndarray) -> np.ndarray:
        return (np.asarray(f, np.float32) - self.mean) / self.std

    def score(self, features: np.ndarray) -> float:
        """Mean distance to the nearest ``k`` training images, in units of the training images' own."""
        z, ref = self._z(features)[None], self._z(self.features)
        d = np.sqrt(((ref - z) ** 2).sum(-1))
        return float(np.sort(d)[: self.k].mean() / self.scale)

    def tensors(self) -> dict[str, np.ndarray]:
        out = {"features": self.features, "mean": self.mean, "std": self.std,
               "scale": np.array([self.scale], np.float32), "k": np.array([self.k], np.int64)}
        if self.small is not None:
            out.update({f"{SMALL_PREFIX}{k}": v for k, v in self.small.tensors().items()})
        if self.window_px != WINDOW_PX:
            out["window_px"] = np.array([self.window_px], np.int64)
        return out

    def save(self, path: str | Path) -> str:
        """Write the reference; returns its sha256 (the card keeps it)."""
        from safetensors.numpy import save

        # bytes written as any file is (safetensors' save_file creates it owner-only, 0600, unlike the weights)
        data = save({k: np.ascontiguousarray(v) for k, v in self.tensors().items()})
        Path(path).write_bytes(data)
        return hashlib.sha256(data).hexdigest()

    @classmethod
    def load(cls, path: str | Path, sha256: str | None) -> NoveltyReference:
        """Read a reference written by :meth:`save`, checked against the ``sha256`` its card records."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        from .errors import WeightsIntegrityError

        path = Path(path)
        again = "; rerun `python scripts/novelty_reference.py` for a shipped model, or copy the model folder again"
        if not path.is_file():
            raise WeightsIntegrityError(f"{path} is missing (the card names it as the model's novelty reference){again}")
        if not sha256:
            raise WeightsIntegrityError(f"the card names {path.name} without its sha256; refusing an unverified file{again}")
        if hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
            raise WeightsIntegrityError(f"{path} does not match the sha256 its card records: corrupt or replaced{again}")
        try:
            t = load_file(str(path))
            small = (cls(*(t[SMALL_PREFIX + k] for k in ("features", "mean", "std")), float(t[SMALL_PREFIX + "scale"][0]),
                         int(t[SMALL_PREFIX + "k"][0])) if SMALL_PREFIX + "features" in t else None)
            window = int(t["window_px"][0]) if "window_px" in t else WINDOW_PX
            if window not in (WINDOW_PX, SMALL_WINDOW_PX):
                raise ValueError(f"window {window} px")
            ref = cls(t["features"], t["mean"], t["std"], float(t["scale"][0]), int(t["k"][0]), small, window)
        except (SafetensorError, OSError, KeyError, IndexError, ValueError) as err:
            raise WeightsIntegrityError(f"{path} is not a novelty reference: {err}{again}") from err
        n = ref.features.shape[-1] if ref.features.ndim == 2 else -1
        for r in (ref, small):
            if r is not None and (n < 1 or r.features.ndim != 2 or r.features.shape[1] != n or r.mean.shape != (n,)
                                  or r.std.shape != (n,) or len(r.features) <= r.k or not r.scale > 0):
                raise WeightsIntegrityError(f"{path} is not a usable novelty reference (shapes {r.features.shape}, "
                                            f"{r.mean.shape}, {r.std.shape}; k {r.k}){again}")
        return ref


SMALL_PREFIX = "small."
"""Key prefix of the small-window reference's tensors in the same file."""
MIN_SIDE = {WINDOW_PX: MIN_WINDOW_PX, SMALL_WINDOW_PX: MIN_SMALL_WINDOW_PX}


def novelty_window(weight: np.ndarray, scale: float, window_px: int = WINDOW_PX) -> tuple[slice, slice]:
    """The window of an image at its own size whose resize by ``scale`` is ``window_px`` across, where
    ``weight`` (foreground probability or density, same size) is largest."""
    from .sizing import size_window

    side = max(int(round(window_px / max(scale, 1e-6))), 1)
    return size_window(np.asarray(weight, np.float32), window=side, margin=0)  # exact: like with like


def image_features(net: Any, image_norm: np.ndarray, weight: np.ndarray, scale: float, *,
                   bf16: bool = False, density: bool = False, window_px: int = WINDOW_PX) -> np.ndarray | None:
    """:func:`encoder_features` of one normalised image (at its own size) over its :func:`novelty_window`
    of ``window_px`` (:data:`WINDOW_PX` or :data:`SMALL_WINDOW_PX`), resized by ``scale`` as the model counts
    it; ``weight`` (the model's first map: foreground probability, or a density map with ``density``)
    chooses the window. None where the window is too small (:data:`MIN_SIDE`) or shows no nucleus
    (:data:`MIN_CONTENT_PX`): nothing to judge."""
    from .sizing import resize_image

    rows, cols = novelty_window(weight, scale, window_px)
    seen = np.asarray(weight)[rows, cols]
    if (float(seen.sum()) < 0.5) if density else (int(np.count_nonzero(seen > 0.5)) < MIN_CONTENT_PX):
        return None
    crop = np.asarray(image_norm, np.float32)[rows, cols]
    if scale != 1.0:
        crop = resize_image(crop, scale)
    if min(crop.shape) < MIN_SIDE[window_px]:
        return None
    return encoder_features(net, crop, bf16=bf16)


def window_for(image_shape: tuple[int, ...], scale: float) -> int | None:
    """The window an image of ``image_shape`` (at its own size) is judged over at ``scale``: :data:`WINDOW_PX`
    when it is large enough, else :data:`SMALL_WINDOW_PX`, else None (too small to judge)."""
    side = min(image_shape[:2]) * scale
    return next((w for w in (WINDOW_PX, SMALL_WINDOW_PX) if round(side) >= MIN_SIDE[w]), None)


def image_novelty(net: Any, reference: NoveltyReference, image_norm: np.ndarray, weight: np.ndarray,
                  scale: float, *, bf16: bool = False, density: bool = False) -> float | None:
    """The novelty of one normalised image (see :func:`image_features`; None: nothing to judge), over the
    window its size allows (:func:`window_for`) against the reference of that window."""
    window = window_for(np.shape(image_norm), scale)
    if reference.window_px == SMALL_WINDOW_PX:  # small training images only: every image over that window
        window = SMALL_WINDOW_PX if window is not None else None
        ref = reference if window else None
    else:
        ref = reference if window == WINDOW_PX else reference.small if window == SMALL_WINDOW_PX else None
    if ref is None:
        return None
    features = image_features(net, image_norm, weight, scale, bf16=bf16, density=density, window_px=window)
    return None if features is None else ref.score(features)


def fit_reference(net: Any, views: Any, *, density: bool = False) -> tuple[NoveltyReference, int, int] | None:
    """A reference from the training images ``views`` (``(image_norm, weight, scale)`` of each, as
    :func:`image_features` takes them): every image large enough for :data:`WINDOW_PX` in the main reference,
    every image large enough for :data:`SMALL_WINDOW_PX` (the large ones too, over their small window) in
    the small one. Returns (reference, images in the main one, in the small one). With ``K`` or fewer images at
    the main window (training images all small: a fine-tune on crops) the reference is the small one alone
    (``window_px`` :data:`SMALL_WINDOW_PX`); None when neither has more than ``K``."""
    big, small = [], []
    for norm, weight, scale in views:
        for window, into in ((WINDOW_PX, big), (SMALL_WINDOW_PX, small)):
            f = image_features(net, norm, weight, scale, density=density, window_px=window)
            if f is not None:
                into.append(f)
    small_ref = NoveltyReference.fit(np.stack(small)) if len(small) > K else None
    if len(big) <= K:
        if small_ref is None:
            return None
        return dataclasses.replace(small_ref, window_px=SMALL_WINDOW_PX), 0, len(small)
    return dataclasses.replace(NoveltyReference.fit(np.stack(big)), small=small_ref), len(big), len(small)
