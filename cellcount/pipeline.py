"""The one place that chains image -> model maps -> postprocessing -> CountResult.

``predict`` runs the model (slow, cache it); ``postprocess`` turns a cached :class:`Prediction` into a
:class:`CountResult` for any :class:`CountParams` without touching the model. ``count_image`` does both.
Parameter precedence: :class:`CountParams` defaults < the model card's ``postprocess`` < overrides.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import postprocess as pp
from .errors import ParameterError
from .io import DEFAULT_MAX_PIXELS, model_input
from .measure import object_table, peaks_table
from .models.base import CountModel
from .quality import Quality, QualityRule, judge, quality_signals
from .training.targets import DENSITY_SIGMA_SCALE

logger = logging.getLogger(__name__)


MAX_RADIUS_PX = 100
"""Largest opening / closing radius: a disk of radius r costs (2r + 1)^2 per pixel in OpenCV, and a radius
far above a nucleus size removes every object anyway (radius 100000 would allocate 40 GB)."""
MAX_DISTANCE_PX = 1000
"""Largest watershed / peak distance (as large as the largest nucleus diameter accepted)."""

PARAM_RANGES: dict[str, tuple[type, float, float, Any]] = {
    # name: (type, lowest, highest, value meaning "off"/"unknown" that skips the range check)
    "channel": (int, 0, 65535, None),
    "invert": (bool, 0, 1, None),
    "low_pct": (float, 0.0, 100.0, None),
    "high_pct": (float, 0.0, 100.0, None),
    "threshold": (float, 0.0, 1.0, None),
    "opening_radius_px": (int, 0, MAX_RADIUS_PX, None),
    "closing_radius_px": (int, 0, MAX_RADIUS_PX, None),
    "fill_holes": (bool, 0, 1, None),
    "min_distance_px": (int, 1, MAX_DISTANCE_PX, None),
    "min_area_px": (int, 0, DEFAULT_MAX_PIXELS, None),
    "max_area_px": (int, 1, DEFAULT_MAX_PIXELS, 0),
    "exclude_border": (bool, 0, 1, None),
    "peak_min_distance_px": (int, 1, MAX_DISTANCE_PX, None),
    "pixel_size_um": (float, 1e-6, 1e6, None),
    "test_time_flips": (bool, 0, 1, None),
    "nucleus_diameter_px": (float, 2.0, 1000.0, 0),
    "auto_nucleus_size": (bool, 0, 1, None),
}
"""Type and accepted range of every :class:`CountParams` field, checked when one is built (so the CLI,
settings files and the app all get a usage error instead of a failure deep inside OpenCV)."""
OPTIONAL_PARAMS = frozenset({"channel", "invert", "max_area_px", "pixel_size_um", "nucleus_diameter_px"})
"""Fields that may be None (auto / unknown / no limit)."""


REFERENCE_DIAMETER_PX = 18.4
"""Median nucleus diameter of the DSB 2018 training images (median over the 424 training images of each
image's median equivalent diameter; ``scripts/reference_diameter.py``): the size every shipped model was
trained at. A card may state its own as ``extra["reference_diameter_px"]``."""


COUNT_SOURCES = ("segmentation", "density")


@dataclass(frozen=True)
class CountParams:
    """Every setting that changes a count. Units are in the names; area bounds are inclusive.

    Input (changing these reruns the model): ``channel``, ``invert`` (None = auto-detect bright
    background), ``low_pct``/``high_pct`` (percentile normalisation), ``test_time_flips`` (average the
    model's maps over the image and its three flips: 4x the model time, a little more accurate),
    ``nucleus_diameter_px`` (typical nucleus diameter in this image, when known - say from the
    magnification; the image is resized so its nuclei match the size the model was trained on, see
    :func:`model_scale`; None or 0 = use the image as it is), ``auto_nucleus_size`` (when no diameter
    is given: estimate it from a first pass and rerun resized when it is far from the training size;
    mask models by :func:`estimate_nucleus_diameter`, about 2x the model time; density models from
    their own map by :func:`density_nucleus_diameter`, a second pass only on the images it resizes).
    Mask models: ``threshold`` on the foreground probability, ``opening_radius_px``,
    ``closing_radius_px``, ``fill_holes``, ``split_mode`` (how touching objects are split, one of
    :data:`~cellcount.postprocess.SPLIT_MODES`: "borders" needs a model with a border channel) with
    ``min_distance_px`` (acts in "distance" and "both"), ``min_area_px`` and ``max_area_px`` (None or 0 =
    no upper bound; an object of exactly either bound is kept), ``exclude_border``. Old settings keys
    ``watershed`` / ``use_border_channel`` are mapped onto ``split_mode`` by :func:`resolve_params`.
    Density models: ``peak_min_distance_px`` for the approximate centroids.
    Multihead models: ``count_source`` - ``segmentation`` counts the objects (the default), ``density`` reports
    the density head's integral instead (better where objects overlap too much to outline; a fine-tune
    picks it when it counts the user's training images better); the objects are outlined either way.
    """

    channel: int | None = None
    invert: bool | None = None
    low_pct: float = 1.0
    high_pct: float = 99.8
    threshold: float = 0.5
    opening_radius_px: int = 1
    closing_radius_px: int = 0
    fill_holes: bool = True
    split_mode: str = "distance"
    min_distance_px: int = 4
    min_area_px: int = 10
    max_area_px: int | None = None
    exclude_border: bool = False
    peak_min_distance_px: int = 3
    pixel_size_um: float | None = None
    test_time_flips: bool = False
    nucleus_diameter_px: float | None = None
    auto_nucleus_size: bool = False
    count_source: str = "segmentation"

    INPUT_FIELDS = (
        "channel", "invert", "low_pct", "high_pct", "test_time_flips", "nucleus_diameter_px", "auto_nucleus_size",
    )

    def __post_init__(self) -> None:
        try:
            self._validate()
        except TypeError as err:  # e.g. "0.5" (a string) from a hand-edited settings file
            raise ParameterError(f"a parameter has the wrong type ({err}); numbers must not be quoted") from err

    def _validate(self) -> None:
        if self.split_mode not in pp.SPLIT_MODES:
            raise ParameterError(f"split_mode must be one of {', '.join(pp.SPLIT_MODES)}; got {self.split_mode!r}")
        for name, (kind, lo, hi, unset) in PARAM_RANGES.items():
            value = getattr(self, name)
            if value is None or (unset is not None and value == unset and not isinstance(value, bool)):
                if value is None and unset is None and name not in OPTIONAL_PARAMS:
                    raise ParameterError(f"{name} must be set, got None")
                continue
            _check_param(name, value, kind, lo, hi, unset)
        if self.max_area_px is not None and self.max_area_px not in (0,) and self.max_area_px < self.min_area_px:
            raise ParameterError(f"max_area_px ({self.max_area_px}) must be >= min_area_px ({self.min_area_px})")
        if not self.low_pct < self.high_pct:
            raise ParameterError(f"need 0 <= low_pct < high_pct <= 100, got {self.low_pct}, {self.high_pct}")
        if self.count_source not in COUNT_SOURCES:
            raise ParameterError(f"count_source must be one of {', '.join(COUNT_SOURCES)}, got {self.count_source!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def replace(self, **changes: Any) -> CountParams:
        return resolve_params(None, {**self.to_dict(), **changes})

    def input_key(self) -> tuple:
        """The fields that change the model input (and so the cached prediction)."""
        return tuple(getattr(self, f) for f in self.INPUT_FIELDS)


PARAM_NAMES = tuple(f.name for f in dataclasses.fields(CountParams))


def _check_param(name: str, value: Any, kind: type, lo: float, hi: float, unset: Any) -> None:
    """Raise ParameterError unless ``value`` is a ``kind`` (bool, int or float) within [lo, hi]."""
    extra = "" if unset is None else f" (or {unset} = off)"
    lo_s, hi_s = (f"{int(v):,}" if float(v).is_integer() else f"{v:g}" for v in (lo, hi))
    if kind is bool:
        if not isinstance(value, (bool, np.bool_)):
            raise ParameterError(f"{name} must be true or false, got {value!r}")
        return
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    is_num = is_int or isinstance(value, (float, np.floating))
    if not is_num or (kind is int and not is_int and not float(value).is_integer()):
        what = "a whole number" if kind is int else "a number"
        raise ParameterError(f"{name} must be {what} within [{lo_s}, {hi_s}]{extra}, got {value!r}")
    if not (np.isfinite(float(value)) and lo <= value <= hi):
        raise ParameterError(f"{name} must be within [{lo_s}, {hi_s}]{extra}, got {value!r}")


LEGACY_SPLIT_KEYS = ("watershed", "use_border_channel")
"""Settings keys before ``split_mode`` (cards, settings files, CLI flags); :func:`upgrade_split_keys` maps them."""


def has_border_channel(model: CountModel | None) -> bool:
    """Whether ``model`` predicts a touching-border map (``split_mode`` "borders" / "both" need it)."""
    return model is not None and model.output_kind in ("mask", "multihead") and int(model.card.kwargs.get("out_channels", 1)) > 1


def upgrade_split_keys(values: dict[str, Any], *, borders_available: bool = True) -> dict[str, Any]:
    """``values`` with the old ``watershed`` / ``use_border_channel`` keys replaced by ``split_mode``.

    Old meaning: ``watershed`` off = no split; on = split along the model's borders when
    ``use_border_channel`` (default on) and the model has them, else at distance-transform maxima. A
    ``split_mode`` given alongside them wins (it is the newer key).
    """
    if not any(k in values for k in LEGACY_SPLIT_KEYS):
        return dict(values)
    out = {k: v for k, v in values.items() if k not in LEGACY_SPLIT_KEYS}
    if "split_mode" not in out:
        if not values.get("watershed", True):
            out["split_mode"] = "off"
        elif values.get("use_border_channel", True) and borders_available:
            out["split_mode"] = "borders"
        else:
            out["split_mode"] = "distance"
    return out


def resolve_params(model: CountModel | None, overrides: CountParams | dict[str, Any] | None = None) -> CountParams:
    """Defaults < ``model.card.postprocess`` < ``overrides``; unknown keys raise ParameterError.

    Old split keys are upgraded per layer (:func:`upgrade_split_keys`), so an old ``watershed: false``
    override still turns off a card's ``split_mode``. A mode needing borders on a model without them raises.
    """
    borders = model is None or has_border_channel(model)
    merged: dict[str, Any] = {}
    if model is not None:
        merged.update(upgrade_split_keys(model.card.postprocess, borders_available=borders))
    if isinstance(overrides, CountParams):
        overrides = overrides.to_dict()
    if overrides:
        merged.update(upgrade_split_keys(overrides, borders_available=borders))
    unknown = sorted(set(merged) - set(PARAM_NAMES))
    if unknown:
        raise ParameterError(f"unknown parameters {unknown}; valid: {', '.join(PARAM_NAMES)}")
    params = CountParams(**merged)
    if model is not None and model.output_kind == "mask" and not borders and params.split_mode in pp.BORDER_SPLIT_MODES:
        raise ParameterError(
            f"split_mode {params.split_mode!r} needs a model that predicts borders; {model.name} does not: "
            "use 'distance' or 'off'"
        )
    return params


MAX_SETTINGS_JSON_DEPTH = 16
"""Deepest nesting of objects / arrays accepted in a settings JSON (ours is 2 deep); deeper input would
otherwise reach Python's recursion limit inside the JSON parser."""
MAX_SETTINGS_JSON_BYTES = 1 << 20
"""Largest settings JSON accepted (ours is under 2 kB)."""


def _json_depth(text: str) -> int:
    """Deepest nesting of ``[`` / ``{`` in JSON text, brackets inside strings ignored (no parsing)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def params_from_json(text: str | bytes) -> dict[str, Any]:
    """Parse a settings JSON (as downloaded from the app or written by the CLI) into overrides.

    Raises
    ------
    ParameterError
        Not JSON, larger than :data:`MAX_SETTINGS_JSON_BYTES`, nested deeper than
        :data:`MAX_SETTINGS_JSON_DEPTH`, not an object, or a parameter that is unknown or out of range.
    """
    if len(text) > MAX_SETTINGS_JSON_BYTES:
        raise ParameterError(
            f"settings file is {len(text):,} bytes, above the limit of {MAX_SETTINGS_JSON_BYTES:,}; "
            "is it a settings JSON?"
        )
    try:
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8-sig")
        if _json_depth(text) > MAX_SETTINGS_JSON_DEPTH:
            raise ParameterError(
                f"settings JSON is nested more than {MAX_SETTINGS_JSON_DEPTH} levels deep; "
                "expected an object of parameter names to values"
            )
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ParameterError(f"settings file is not valid JSON: {err}") from err
    except RecursionError as err:  # a guard behind the depth check
        raise ParameterError("settings JSON is nested too deeply") from err
    if isinstance(data, dict) and "params" in data and isinstance(data["params"], dict):
        data = data["params"]
    if not isinstance(data, dict):
        raise ParameterError("settings JSON must be an object of parameter names to values")
    resolve_params(None, data)  # validate now, with a clear message
    return data


def params_from_file(path: str | os.PathLike) -> dict[str, Any]:
    """:func:`params_from_json` of a file, reading no more than the size limit (a wrong file given as
    settings may be gigabytes)."""
    with open(path, "rb") as fh:
        return params_from_json(fh.read(MAX_SETTINGS_JSON_BYTES + 1))


@dataclass
class Prediction:
    """Model output for one image: the expensive part, cached and reused across parameter changes.

    ``maps`` is (C, H, W) float32: mask models' probabilities (0 foreground, 1 touching border if
    present) or a density model's map (1, H, W) in count units.
    """

    model_name: str
    output_kind: str
    maps: np.ndarray
    image_norm: np.ndarray
    inverted: bool
    input_key: tuple
    seconds: dict[str, float] = field(default_factory=dict)
    model_scale: float = 1.0
    """Factor the image was resized by for the model (``nucleus_diameter_px`` or ``auto_nucleus_size``);
    maps are at full size."""
    estimated_diameter_px: float | None = None
    """With ``auto_nucleus_size``: the nucleus diameter estimated from the first pass."""
    reference_diameter_px: float = REFERENCE_DIAMETER_PX
    """The nucleus diameter the model was trained at (:data:`REFERENCE_DIAMETER_PX` or its card's)."""
    quality_rule: QualityRule = field(default_factory=QualityRule)
    """The model's limits for the quality flag (its card's, calibrated on validation images)."""

    @property
    def shape(self) -> tuple[int, int]:
        return self.image_norm.shape


@dataclass
class CountResult:
    """Everything a page, the CLI or an evaluation needs about one counted image."""

    model_name: str
    output_kind: str
    count: int
    count_estimate: float
    labels: np.ndarray | None
    rejected: np.ndarray | None
    probability: np.ndarray | None
    density: np.ndarray | None
    peaks: np.ndarray
    objects: pd.DataFrame
    params: CountParams
    seconds: dict[str, float]
    inverted: bool
    n_rejected: dict[str, int] = field(default_factory=dict)
    """Mask models: objects rejected by the area / border filters, per reason (see ``REJECT_REASONS``)."""
    model_scale: float = 1.0
    """Factor the image was resized by for the model (``nucleus_diameter_px`` or ``auto_nucleus_size``)."""
    estimated_diameter_px: float | None = None
    """With ``auto_nucleus_size``: the nucleus diameter estimated from the first pass."""
    density_count: float | None = None
    """Multihead models: the integral of the density head, a second count beside the segmentation's."""
    quality: Quality | None = None
    """Whether this count may be wrong ("check this image"), with the reasons (:mod:`cellcount.quality`)."""

    def summary_row(self) -> dict[str, Any]:
        """Flat row for a counts table (settings as one JSON string)."""
        q = self.quality.row() if self.quality is not None else {"check": None, "quality_score": None,
                                                                   "check_reasons": ""}
        return {
            "model": self.model_name,
            "count": self.count,
            "count_estimate": round(self.count_estimate, 3),
            "density_count": None if self.density_count is None else round(self.density_count, 2),
            **q,
            "inverted": self.inverted,
            "model_scale": round(self.model_scale, 4),
            "estimated_diameter_px": None if self.estimated_diameter_px is None else round(self.estimated_diameter_px, 2),
            "seconds": round(sum(self.seconds.values()), 4),
            "settings": json.dumps(self.params.to_dict(), sort_keys=True),
        }


def predict(
    image: np.ndarray,
    model: CountModel,
    params: CountParams | dict[str, Any] | None = None,
    *,
    progress=None,
    fast: bool = True,
    backend: str | None = None,
) -> Prediction:
    """Normalise ``image`` (any dtype, (H, W) or (H, W, C)) and run the model's forward pass.

    ``backend`` runs the fast path (None: the one measured fastest on this machine; see
    :meth:`cellcount.models.NetModel.predict_maps`)."""
    p = params if isinstance(params, CountParams) else resolve_params(model, params)
    t0 = time.perf_counter()
    norm, inverted = model_input(
        np.asarray(image), channel=p.channel, invert=p.invert, low_pct=p.low_pct, high_pct=p.high_pct,
        grayscale=model.card.normalization.get("grayscale", "mean"),
    )
    t1 = time.perf_counter()

    def run(view: np.ndarray) -> np.ndarray:
        if p.test_time_flips:
            return flip_averaged_maps(model, view, progress=progress, fast=fast, backend=backend)
        return model.predict_maps(view, progress=progress, fast=fast, **_backend_kw(backend))

    density = density_channels(model.output_kind)

    def run_at(scale: float) -> np.ndarray:
        """Maps of the image resized by ``scale``, back at full size."""
        if scale == 1.0:
            return run(norm)
        return resize_maps(run(resize_image(norm, scale)), norm.shape, density=density)

    estimated = None
    if not p.nucleus_diameter_px and p.auto_nucleus_size:
        maps = run_at(1.0)  # the first pass; kept when the estimate is close to the training size
        if density:  # the size is read off the model's own density map: no second network
            estimated, tolerance = density_nucleus_diameter(maps[density[0]]), RESCALE_TOLERANCE
        else:
            estimated, tolerance = estimate_nucleus_diameter(norm, maps[0], fast=fast, backend=backend), AUTO_RESCALE_TOLERANCE
        scale = model_scale(model, estimated, norm.shape, tolerance=tolerance)
        if scale != 1.0:
            maps = run_at(scale)
    else:
        scale = model_scale(model, p.nucleus_diameter_px, norm.shape)
        maps = run_at(scale)
    t2 = time.perf_counter()
    return Prediction(
        model_name=model.name,
        output_kind=model.output_kind,
        maps=maps,
        image_norm=norm,
        inverted=inverted,
        input_key=p.input_key(),
        seconds={"normalize": t1 - t0, "model": t2 - t1},
        model_scale=scale,
        estimated_diameter_px=estimated,
        reference_diameter_px=float(model.card.extra.get("reference_diameter_px", REFERENCE_DIAMETER_PX)),
        quality_rule=QualityRule.from_card(model.card),
    )


def assess(prediction: Prediction, params: CountParams, count: float, *, probability: np.ndarray | None = None,
           density_count: float | None = None) -> Quality:
    """The quality flag of one count (see :mod:`cellcount.quality`)."""
    diameter = params.nucleus_diameter_px or prediction.estimated_diameter_px
    at_limit = False
    if diameter:
        needed = prediction.reference_diameter_px / float(diameter)
        # the resize the size called for was clamped (MIN_SCALE / MAX_SCALE / the pixel cap) by more than 25%;
        # a size left alone within the tolerance is not a limit
        clamped = prediction.model_scale != 1.0 and abs(np.log(needed / prediction.model_scale)) > np.log(1.25)
        at_limit = clamped or not (MIN_SCALE / 1.25 <= needed <= MAX_SCALE * 1.25)
    signals = quality_signals(
        count=count, density_count=density_count, probability=probability, image_norm=prediction.image_norm,
        diameter_px=diameter, reference_diameter_px=prediction.reference_diameter_px, size_at_limit=at_limit,
    )
    return judge(signals, prediction.quality_rule)


RESCALE_TOLERANCE = 1.25
"""Nuclei within this factor of the reference size are used as they are: training already showed every
image at 0.6-1.6x its size (scale augmentation), and resampling blurs a little. This value and the
[MIN_SCALE, MAX_SCALE] clamp had the lowest count MAE on 120 DSB training-split images (docs/RESULTS.md)."""

MIN_SCALE, MAX_SCALE = 0.25, 4.0
MAX_SCALED_PIXELS = DEFAULT_MAX_PIXELS
"""An upscaled model input never exceeds the pixel cap of an image read (the scale is capped instead)."""


AUTO_RESCALE_TOLERANCE = 1.5
"""Estimated sizes (``auto_nucleus_size``, mask models) act only beyond this factor: an estimate is less
certain than a size the user states, so its band is wider (the choice is in docs/RESULTS.md)."""

SIZE_MODEL = "unet-density"
"""Counts nuclei for :func:`estimate_nucleus_diameter`: a density model integrates its map instead of
cutting objects, so oversized textured nuclei are still counted about once each."""


@functools.lru_cache(maxsize=2)
def _size_model(name: str) -> CountModel:
    from .errors import CellcountError
    from .models import load_model

    try:
        return load_model(name)
    except CellcountError as err:
        raise ParameterError(f"auto_nucleus_size needs the size model {name!r}, which did not load: {err}") from err


SIZE_WINDOW_PX = 1024
"""The size model reads at most this square of an image (the one with the most foreground) plus a
:data:`SIZE_WINDOW_MARGIN_PX` margin of context, so its cost stops growing with the image: a 1024 px
square holds hundreds of nuclei even at 40-50 px, and nearly every DSB image fits in it whole. (A
256 px window, 0.4x the size model's time on 512 x 512 images, flipped the rescaling decision on 4 of
120 training-split images and raised their count MAE 4.49 -> 4.60 in a scratch probe.)"""
SIZE_WINDOW_MARGIN_PX = 32


def size_window(foreground: np.ndarray, window: int | None = None) -> tuple[slice, slice]:
    """Rows and columns of the ``window`` x ``window`` region (default :data:`SIZE_WINDOW_PX`, clipped
    to the image) holding the most ``foreground`` pixels; the whole image when it fits in the window
    plus its margins."""
    window = SIZE_WINDOW_PX if window is None else window
    h, w = foreground.shape
    if max(h, w) <= window + 2 * SIZE_WINDOW_MARGIN_PX:
        return slice(0, h), slice(0, w)
    import cv2

    wh, ww = min(window, h), min(window, w)
    # box sums anchored at the top-left corner: sums[y, x] = foreground pixels of the window at (y, x)
    sums = cv2.boxFilter(foreground.astype(np.float32), -1, (ww, wh), normalize=False, anchor=(0, 0),
                         borderType=cv2.BORDER_CONSTANT)[: h - wh + 1, : w - ww + 1]
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return slice(int(y), int(y) + wh), slice(int(x), int(x) + ww)


def estimate_nucleus_diameter(
    image_norm: np.ndarray, foreground_prob: np.ndarray, *, fast: bool = True, backend: str | None = None
) -> float | None:
    """Typical nucleus diameter (px) of a normalised image: foreground area of the mask model's first
    pass divided by the :data:`SIZE_MODEL`'s count, as the diameter of a disc of that area, both taken
    in the :func:`size_window` (the density mass of nuclei cut by its edge is cut like their area).

    A mask model that learnt 18 px nuclei cuts 40-50 px textured nuclei into pieces, so its own
    objects understate their size; the foreground still covers them, and the density model still
    counts them about once. On 218 DSB images the whole-image estimate's log-correlation with the
    true median nucleus area was 0.97 (docs/RESULTS.md). The size model reads the mask model's normalised
    image: every shipped card normalises alike. None when there is too little foreground or count.
    """
    fg = foreground_prob > 0.5
    rows, cols = size_window(fg)
    m = SIZE_WINDOW_MARGIN_PX
    ctx_rows = slice(max(0, rows.start - m), min(fg.shape[0], rows.stop + m))
    ctx_cols = slice(max(0, cols.start - m), min(fg.shape[1], cols.stop + m))
    density = _size_model(SIZE_MODEL).predict_maps(
        np.ascontiguousarray(image_norm[ctx_rows, ctx_cols]), fast=fast, **_backend_kw(backend))[0]
    inner = density[rows.start - ctx_rows.start: rows.stop - ctx_rows.start,
                    cols.start - ctx_cols.start: cols.stop - ctx_cols.start]
    count = float(inner.sum(dtype=np.float64))
    area = float(np.count_nonzero(fg[rows, cols]))
    if count < 0.5 or area < 4:
        return None
    return float(np.sqrt(4 * area / (np.pi * max(count, 1.0))))


def density_nucleus_diameter(density: np.ndarray) -> float | None:
    """Typical nucleus diameter (px) from a density model's own map, for ``auto_nucleus_size``.

    The model learnt a unit-mass Gaussian per nucleus whose sigma is :data:`DENSITY_SIGMA_SCALE` times
    the nucleus diameter. For N such Gaussians that do not overlap, sum(D) = N and sum(D^2) = N / (4 pi
    sigma^2), so sigma^2 = sum(D) / (4 pi sum(D^2)); overlap makes it an underestimate. Log-correlation
    with the true median diameter 0.94 on 120 DSB training-split images (*scratch*). Needs no second
    model; with the stated-size tolerance (1.25x) it had the lower count MAE there (docs/RESULTS.md). None when the
    map holds less than half a nucleus.
    """
    d = np.asarray(density, np.float64)
    total, energy = float(d.sum()), float(np.square(d).sum())
    if total < 0.5 or energy <= 0:
        return None
    return float(np.sqrt(total / (4 * np.pi * energy)) / DENSITY_SIGMA_SCALE)


def model_scale(
    model: CountModel, nucleus_diameter_px: float | None, shape: tuple[int, int], *,
    tolerance: float = RESCALE_TOLERANCE,
) -> float:
    """Factor to resize an image by so that nuclei of ``nucleus_diameter_px`` reach the model's
    reference diameter (1.0 = leave it: unknown size, or within :data:`RESCALE_TOLERANCE`).

    Large nuclei (high magnification, H&E at 40x) are otherwise cut into pieces by a model that learnt
    nuclei of about 18 px, and very small ones merge. Clamped to [0.25, 4] and to
    :data:`MAX_SCALED_PIXELS`.
    """
    if not nucleus_diameter_px:
        return 1.0
    ref = float(model.card.extra.get("reference_diameter_px", REFERENCE_DIAMETER_PX))
    scale = ref / float(nucleus_diameter_px)
    if 1 / tolerance <= scale <= tolerance:
        return 1.0
    cap = float(np.sqrt(MAX_SCALED_PIXELS / max(1, shape[0] * shape[1])))
    return float(np.clip(scale, MIN_SCALE, max(1.0, min(MAX_SCALE, cap))))


def resize_image(image: np.ndarray, scale: float) -> np.ndarray:
    """(H, W) float32 image resized by ``scale`` (area averaging down, bilinear up), at least 1 px."""
    import cv2

    h, w = image.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def density_channels(output_kind: str) -> tuple[int, ...]:
    """Channels of a model's maps that are densities (count units): the rest are probabilities."""
    return {"density": (0,), "multihead": (2,)}.get(output_kind, ())


def resize_maps(maps: np.ndarray, shape: tuple[int, int], *, density: bool | tuple[int, ...]) -> np.ndarray:
    """(C, h, w) maps back to (C, H, W) = ``shape``, bilinear. A density map keeps its total (the count):
    each density channel (``density``: True for all, or their indices) is rescaled to the sum it had
    before resizing."""
    import cv2

    h, w = shape
    dens = set(range(maps.shape[0])) if density is True else set(density or ())
    out = np.empty((maps.shape[0], h, w), np.float32)
    for c, m in enumerate(maps):
        out[c] = cv2.resize(np.ascontiguousarray(m, dtype=np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        if c in dens:
            before, after = float(m.sum(dtype=np.float64)), float(out[c].sum(dtype=np.float64))
            if after > 0:
                out[c] *= np.float32(before / after)
    return out


def _backend_kw(backend: str | None) -> dict[str, str]:
    """``backend=`` only when one is asked for: a model class written before backends keeps working."""
    return {} if backend is None else {"backend": backend}


FLIPS: tuple[tuple[int, ...], ...] = ((), (1,), (0,), (0, 1))
"""Test-time flips: identity, left-right, up-down, both (axes of the (H, W) image)."""


def flip_averaged_maps(
    model: CountModel, image_norm: np.ndarray, *, progress=None, fast: bool = True, backend: str | None = None
) -> np.ndarray:
    """Mean of ``model.predict_maps`` over the image and its three flips, each flipped back.

    A fully convolutional network is not exactly flip-equivariant, so the four views disagree a little
    near the decision boundary; their mean is steadier (docs/RESULTS.md: ``scripts/quality_probes.py`` measures
    it on the DSB validation split). A density map stays a density map: the mean of four count maps.
    """
    acc: np.ndarray | None = None
    for k, axes in enumerate(FLIPS):
        view = np.ascontiguousarray(np.flip(image_norm, axes)) if axes else image_norm
        step = None if progress is None else (lambda d, t, k=k: progress(k * t + d, len(FLIPS) * t))
        maps = model.predict_maps(view, progress=step, fast=fast, **_backend_kw(backend))
        maps = np.flip(maps, tuple(a + 1 for a in axes)) if axes else maps
        if acc is None:
            acc = np.array(maps, dtype=np.float32, copy=True)
        else:
            acc += maps
    assert acc is not None
    acc /= np.float32(len(FLIPS))
    return acc


def postprocess(
    prediction: Prediction,
    params: CountParams,
    *,
    image: np.ndarray | None = None,
    measure: bool = True,
) -> CountResult:
    """Cached prediction + parameters -> CountResult. Never runs the model.

    ``image`` (the original, any dtype) is used for intensity measurements; the normalised image
    otherwise. ``measure=False`` skips the object table (faster for parameter searches).
    """
    t0 = time.perf_counter()
    intensity_src = image if image is not None else prediction.image_norm
    if intensity_src is not None and np.asarray(intensity_src).shape[:2] != prediction.shape:
        intensity_src = prediction.image_norm
    if prediction.output_kind == "density":
        density = prediction.maps[0]
        estimate = pp.density_count(density)
        peaks = pp.density_peaks(density, min_distance_px=params.peak_min_distance_px)
        t1 = time.perf_counter()
        objects = peaks_table(peaks, density, pixel_size_um=params.pixel_size_um) if measure else pd.DataFrame()
        t2 = time.perf_counter()
        return CountResult(
            model_name=prediction.model_name, output_kind="density", count=int(round(estimate)),
            count_estimate=estimate, labels=None, rejected=None, probability=None, density=density,
            peaks=peaks, objects=objects, params=params,
            seconds={**prediction.seconds, "postprocess": t1 - t0, "measure": t2 - t1},
            inverted=prediction.inverted, model_scale=prediction.model_scale,
            estimated_diameter_px=prediction.estimated_diameter_px,
            quality=assess(prediction, params, estimate),
        )
    prob = prediction.maps[0]
    border = prediction.maps[1] if prediction.maps.shape[0] > 1 else None
    # multihead: the density head's integral is a second, independent count of the same image
    density_map = prediction.maps[2] if prediction.output_kind == "multihead" else None
    density_total = None if density_map is None else pp.density_count(density_map)
    seg = pp.segment(
        prob,
        threshold_level=params.threshold,
        opening_radius_px=params.opening_radius_px,
        closing_radius_px=params.closing_radius_px,
        fill=params.fill_holes,
        split_mode=params.split_mode,
        min_distance_px=params.min_distance_px,
        min_area_px=params.min_area_px,
        max_area_px=params.max_area_px or None,
        exclude_border=params.exclude_border,
        border_prob=border,
    )
    t1 = time.perf_counter()
    objects = object_table(seg.labels, intensity_src, pixel_size_um=params.pixel_size_um) if measure else None
    t2 = time.perf_counter()
    if objects is not None and len(objects):
        peaks = objects[["centroid_row", "centroid_col"]].to_numpy()
    else:
        peaks = np.zeros((0, 2))
    count, estimate = seg.count, float(seg.count)
    if density_total is not None and params.count_source == "density":
        count, estimate = int(round(density_total)), density_total
    return CountResult(
        model_name=prediction.model_name, output_kind="mask", count=count, count_estimate=estimate,
        labels=seg.labels, rejected=seg.rejected, probability=prob, density=density_map, peaks=peaks,
        objects=objects if objects is not None else pd.DataFrame(), params=params,
        seconds={**prediction.seconds, "postprocess": t1 - t0, "measure": t2 - t1},
        inverted=prediction.inverted, n_rejected=dict(seg.n_rejected), model_scale=prediction.model_scale,
        estimated_diameter_px=prediction.estimated_diameter_px,
        density_count=density_total,
        quality=assess(prediction, params, seg.count, probability=prob, density_count=density_total),
    )


def count_image(
    image: np.ndarray,
    model: CountModel,
    params: CountParams | dict[str, Any] | None = None,
    *,
    progress=None,
    fast: bool = True,
    measure: bool = True,
    backend: str | None = None,
) -> CountResult:
    """Count objects in one image: :func:`predict` then :func:`postprocess`."""
    p = params if isinstance(params, CountParams) else resolve_params(model, params)
    pred = predict(image, model, p, progress=progress, fast=fast, backend=backend)
    return postprocess(pred, p, image=image, measure=measure)
