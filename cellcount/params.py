"""The parameter schema: every setting that changes a count, declared once.

Each :class:`Param` carries the name, type, accepted range, default, unit, group and help of one setting.
Everything else is generated from :data:`PARAMS`: the :class:`CountParams` dataclass and its validation,
the command-line options (:mod:`cellcount.cliparams`), the app's widgets and their help
(``pages/_widgets.py``), and the keys a model card's ``postprocess`` may hold. The name is the same all
the way down: field = card key = ``--option`` (with dashes) = widget key suffix = keyword of
:func:`cellcount.postprocess.segment`.

Precedence when resolving: :class:`CountParams` defaults < the model card's ``postprocess`` < overrides
(:func:`resolve_params`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ParameterError
from .io import DEFAULT_MAX_PIXELS
from .protocols import ModelLike

MAX_RADIUS_PX = 100
"""Largest opening / closing radius: a disk of radius r costs (2r + 1)^2 per pixel in OpenCV, and a radius
far above a nucleus size removes every object anyway (radius 100000 would allocate 40 GB)."""
MAX_DISTANCE_PX = 1000
"""Largest watershed / peak distance (as large as the largest nucleus diameter accepted)."""

AUTO_DISTANCE_FRACTION = 0.4
"""``min_distance_px`` 0 ("auto"): this fraction of the image's nucleus diameter. A fixed distance in pixels
splits large nuclei in pieces and leaves clumps of small ones whole; 0.3-0.5 gave the same F1 on DSB's
validation half with unet-mask in split mode "both" (docs/RESULTS.md, "Splitting by nucleus size")."""



def auto_distance_px(diameter_px: float) -> int:
    """The split distance ``min_distance_px`` 0 (auto) stands for, for nuclei ``diameter_px`` across:
    :data:`AUTO_DISTANCE_FRACTION` of it, at least 2 px."""
    return max(2, int(round(AUTO_DISTANCE_FRACTION * float(diameter_px))))


SPLIT_MODES = {
    "borders": "seeds are the cores left after removing the model's predicted border band",
    "distance": "seeds are distance-transform maxima at least min_distance_px apart",
    "both": "border cores, each split further at distance-transform maxima min_distance_px apart",
    "off": "no splitting: touching objects stay one object",
    "auto": "borders; both where over 30% of the objects touch on a dark background (crowded fluorescent nuclei)",
}
"""How touching objects are split (``split_mode``); "borders", "both" and "auto" need a model with a border map."""
BORDER_SPLIT_MODES = ("borders", "both", "auto")
DISTANCE_SPLIT_MODES = ("distance", "both", "auto")
"""Split modes in which ``min_distance_px`` acts."""
COUNT_SOURCES = ("segmentation", "density")

GROUPS = {
    "input": "changes the model input, so the model reruns",
    "mask": "postprocessing of mask models' probability maps",
    "density": "postprocessing of density models' maps",
    "multihead": "multihead models (a mask and a density head)",
    "measure": "measurements only; never changes the count",
}
"""What a parameter's ``group`` means; ``input`` fields key the cached prediction."""


@dataclass(frozen=True)
class Param:
    """One setting: its value's type and range, its default, and how it is shown.

    ``off`` is a value (besides None) that means "off / unknown / no limit" (or what ``off_means`` says, as
    "auto") and skips the range check;
    ``optional`` allows None. ``help`` is one line (CLI ``--help``, docs); ``explain`` says how the setting
    moves the count (the app's tooltip). ``label``, ``ui_range``, ``step`` and ``fmt`` describe the widget;
    ``ui_range`` may be narrower than the accepted range where larger values are never useful on screen;
    ``choice_labels`` name the ``choices`` on screen. An optional number's widget shows None as 0;
    ``none_means`` says what None does ("auto").
    """

    name: str
    kind: type
    default: Any
    group: str
    help: str
    explain: str
    label: str
    unit: str = ""
    lo: float | None = None
    hi: float | None = None
    off: Any = None
    off_means: str = "off"
    optional: bool = False
    none_means: str = "none"
    choices: tuple[str, ...] = ()
    choice_labels: tuple[str, ...] = ()
    ui_range: tuple[float, float] | None = None
    step: float | None = None
    fmt: str | None = None

    @property
    def option(self) -> str:
        """The command-line option: the name with dashes (``--min-area-px``)."""
        return "--" + self.name.replace("_", "-")


PARAMS: tuple[Param, ...] = (
    # ---------------------------------------------------------------------------------------- input
    Param(
        "channel", int, None, "input", lo=0, hi=65535, optional=True, none_means="all (their mean, or H&E's stain for a model reading stain)",
        label="Channel",
        help="channel index of multichannel images, numbered from 0 (Fiji's C=1 is channel 0; default: mean of "
        "the channels, or the hematoxylin stain of a colour bright-background image with a model that reads stain)",
        explain="Which channel holds the nuclei (e.g. DAPI); 'all' averages the channels, except that a model reading "
        "stain (its card's normalisation says so; every shipped network does, not classical-otsu) reads a colour image with a bright background "
        "(H&E, brightfield) by its hematoxylin stain. Counting in a channel "
        "without nuclei gives a wrong, usually much lower, count.",
    ),
    Param(
        "invert", bool, None, "input", optional=True, none_means="auto",
        label="Invert (dark objects on a bright background)",
        help="invert bright-background images (default: auto-detect)",
        explain="Auto detects a bright background (brightfield, H&E) and inverts so nuclei are bright, as the "
        "models expect. Set the wrong way, the model reads the background as nuclei or misses faint ones: the "
        "count can collapse, or look plausible and still be off (a few percent to a half on the samples); the "
        "quality flag then names the background. Set it by hand where auto reads the image wrongly.",
    ),
    Param(
        "low_pct", float, 1.0, "input", unit="%", lo=0.0, hi=100.0, ui_range=(0.0, 50.0), step=0.1,
        label="Low percentile",
        help="intensity percentile mapped to black before the model",
        explain="Intensity percentile mapped to black before the model (of the inverted image, on a bright "
        "background). Higher: more of the faint background maps to black. With the shipped networks the count "
        "changes little, by a few objects and more often up than down (faint nuclei stand out more from the "
        "background); check the outlines.",
    ),
    Param(
        "high_pct", float, 99.8, "input", unit="%", lo=0.0, hi=100.0, ui_range=(50.0, 100.0), step=0.1,
        label="High percentile",
        help="intensity percentile mapped to white before the model (above low_pct)",
        explain="Intensity percentile mapped to white before the model. Lower: faint nuclei become brighter "
        "(often a higher count); bright nuclei saturate.",
    ),
    Param(
        "test_time_flips", bool, False, "input", label="Test-time flips (4x slower)",
        help="average the model over the image and its three flips (4x the model time)",
        explain="Run the model on the image and its three mirror images and average the maps: 4x the model "
        "time, slightly more accurate counts and outlines. The count usually moves by a few percent either way; "
        "on an image the model finds hard (unusual size or look) it can move by a fifth, a sign to check it.",
    ),
    Param(
        "nucleus_diameter_px", float, None, "input", unit="px", lo=2.0, hi=1000.0, off=0, off_means="not given",
        optional=True, none_means="not given",
        ui_range=(0.0, 1000.0), step=0.5, fmt="%.1f", label="Nucleus diameter (px, 0 = not given)",
        help="typical nucleus diameter, px: images are resized so that nuclei match the model's training size "
        "(about 18 px; 0 or unset: estimated when auto-nucleus-size is on, as in the shipped models' settings, "
        "else images as they are)",
        explain="Typical nucleus diameter in this image, if you know it (from the magnification: diameter in µm "
        "/ pixel size in µm). The image is resized so that its nuclei match the size the model was trained on "
        "(about 18 px); large nuclei are then no longer cut into pieces. Far larger than the nuclei: the image "
        "is shrunk too much and nuclei merge or vanish; far smaller: large nuclei are cut into pieces. Near the "
        "true size the count can move either way by a few objects (the models read some sizes better than "
        "others): check the outlines. 0 = not given: the image is used as it is, or resized by the estimate "
        "when 'Estimate nucleus size' is on.",
    ),
    Param(
        "auto_nucleus_size", bool, False, "input", label="Estimate nucleus size",
        help="when no diameter is given: estimate the nucleus size from a first pass and rerun resized when it "
        "is far from the training size (mask models: about 2x the model time)",
        explain="When no diameter is given: estimate the nucleus size from a first pass and resize the image "
        "when nuclei are far from the training size (mask models: foreground area / the size model's count, a "
        "density pass per image; density models: the spread of their own map, free). A second pass runs only "
        "on images it resizes. On by default for the shipped models (their settings were tuned with it); "
        "lowers the count error on large nuclei (docs/RESULTS.md): nuclei no longer cut into pieces, nor "
        "small crowded ones merged. Which way it moves an image's count depends on the model and the image: "
        "check the outlines.",
    ),
    # ----------------------------------------------------------------------------------------- mask
    Param(
        "threshold", float, 0.5, "mask", lo=0.0, hi=1.0, ui_range=(0.0, 1.0), step=0.01, fmt="%.2f",
        label="Probability threshold",
        help="foreground probability threshold (mask models), 0-1: pixels above it are foreground",
        explain="Pixels whose foreground probability is above this value are nucleus. Lower: objects grow and "
        "may merge; higher: they shrink and faint ones vanish. The histogram below shows how many pixels lie "
        "at each probability: when nearly all are at 0 or 1 (the shipped models), the threshold barely moves "
        "the objects, which is why it sits under Advanced for such images; the count can still jump where the "
        "objects that grow touch and the split changes with them (Auto may switch to Both, which cuts more; the "
        "note under the result says which split ran).",
    ),
    Param(
        "opening_radius_px", int, 1, "mask", unit="px", lo=0, hi=MAX_RADIUS_PX, ui_range=(0, 10),
        label="Opening radius (px)",
        help="binary opening radius, px (0 = off)",
        explain="Removes specks and thin bridges narrower than about twice this radius before counting (0 = "
        "off). Larger: fewer tiny objects and more clumps separated; too large erodes small nuclei away (lower "
        "count).",
    ),
    Param(
        "closing_radius_px", int, 0, "mask", unit="px", lo=0, hi=MAX_RADIUS_PX, ui_range=(0, 10),
        label="Closing radius (px)",
        help="binary closing radius, px (0 = off)",
        explain="Closes gaps and notches narrower than about twice this radius (0 = off). Larger: broken nuclei "
        "become whole (lower count), but it also fills the gaps between touching nuclei, and the split that follows "
        "may then cut the clumps into more pieces than nuclei (higher count, more so where Auto switches to Both), "
        "and large radii leave slivers. Which way it goes depends on the image: check the outlines.",
    ),
    Param(
        "fill_holes", bool, True, "mask", label="Fill holes",
        help="fill holes inside objects (mask models)",
        explain="Fills background holes inside an object (hollow-looking nuclei). With the shipped networks it "
        "changes areas, rarely the count; with classical-otsu, whose masks hold rings and gaps, filling can join "
        "many nuclei into one object and lower the count a lot (or, off, leave rings as extra objects): check the "
        "outlines.",
    ),
    Param(
        "split_mode", str, "distance", "mask", choices=tuple(SPLIT_MODES), label="Split touching nuclei",
        choice_labels=("Model borders", "Distance transform", "Both", "Off", "Auto"),
        help="how touching objects are split (mask models): borders = along the model's predicted borders, "
        "distance = at distance-transform maxima, both, off, auto = borders, and both where over 30% of the "
        "objects touch on a dark background (borders, both and auto need a model that predicts borders: not "
        "classical-otsu)",
        explain="How nuclei that touch are separated. Model borders: along the thin border the model predicts "
        "between touching nuclei. Distance transform: at the centres of round shapes, at least 'Min. distance' "
        "apart. Both: border split first, then the distance transform on what is still joined (the older mask "
        "models' default). Off: touching nuclei count as one (lowest count). Auto (the default model's): model "
        "borders, and Both on an image where over 30% of the nuclei touch on a dark background (crowded "
        "fluorescent nuclei, whose borders the model misses more often); not on bright backgrounds, where the "
        "distance transform cuts textured nuclei. The result says which one an image got.",
    ),
    Param(
        "min_distance_px", int, 4, "mask", unit="px", lo=1, hi=MAX_DISTANCE_PX, off=0, off_means="auto",
        ui_range=(0, 50), label="Min. distance between centres (px, 0 = auto)",
        help="split modes 'distance' and 'both' (and 'auto' on the images it splits by both): minimum distance "
        "between object centres, px; larger = fewer "
        f"splits, lower count; 0 = auto: {AUTO_DISTANCE_FRACTION:g} x the nucleus diameter (given, else estimated, "
        "else the model's training size)",
        explain="Acts where the distance transform splits: 'Distance transform', 'Both', and 'Auto' on the images it "
        "splits by Both (the result says which split an image got). Two centres closer than this are one nucleus. "
        "Larger: fewer splits, lower count; smaller: more "
        "splits, higher count (too small cuts elongated nuclei in pieces). 0 = auto: "
        f"{AUTO_DISTANCE_FRACTION:g} x the nucleus diameter of each image (the one you give, else the "
        "estimated one, else the size the model was trained on), so large and small nuclei are split alike.",
    ),
    Param(
        "min_area_px", int, 10, "mask", unit="px", lo=0, hi=DEFAULT_MAX_PIXELS, step=1, label="Min. area (px)",
        help="drop objects smaller than this, px (an object of exactly this area is kept); also sets the split "
        "seeds' minimum area, max(4, min_area_px // 2)",
        explain="Objects smaller than this many pixels are not counted (an object of exactly this area is "
        "counted). Larger: lower count, by more than the objects marked too small: it also stops splitting off "
        "parts of clumps smaller than half of it (and may change the split 'Auto' chooses).",
    ),
    Param(
        "max_area_px", int, None, "mask", unit="px", lo=1, hi=DEFAULT_MAX_PIXELS, off=0, off_means="no limit",
        optional=True, step=10, none_means="no limit",
        label="Max. area (px, 0 = no limit)",
        help="drop objects larger than this, px (0 or unset = no limit; exactly this area is kept)",
        explain="Objects larger than this many pixels are not counted (0 = no limit). Smaller: lower count "
        "(clumps and debris dropped).",
    ),
    Param(
        "exclude_border", bool, False, "mask", label="Exclude edge objects",
        help="drop objects that touch the image border",
        explain="Does not count objects that touch the image edge (they are cut, so their areas are wrong). "
        "On: lower count.",
    ),
    # -------------------------------------------------------------------------------------- density
    Param(
        "peak_min_distance_px", int, 3, "density", unit="px", lo=1, hi=MAX_DISTANCE_PX, ui_range=(1, 30),
        label="Approximate centres: min. distance (px)",
        help="density models: minimum distance between the approximate centres (peaks), px",
        explain="Only for the markers: two approximate centres closer than this are one marker. The count is "
        "the integral (sum) of the density map and does not change with it.",
    ),
    # ------------------------------------------------------------------------------------ multihead
    Param(
        "count_source", str, "segmentation", "multihead", choices=COUNT_SOURCES, label="Count from",
        choice_labels=("Segmentation", "Density"),
        help="multihead models: 'segmentation' counts the objects, 'density' reports the density head's "
        "integral (objects are outlined either way)",
        explain="Segmentation counts the outlined objects; density reports the density head's integral, "
        "better where nuclei overlap too much to outline.",
    ),
    # -------------------------------------------------------------------------------------- measure
    Param(
        "pixel_size_um", float, None, "measure", unit="µm", lo=1e-6, hi=1e6, optional=True, step=0.01,
        none_means="not given",
        fmt="%.4f", label="Pixel size (µm, 0 = unknown)",
        help="pixel size in micrometres for the object table's µm columns (not given: the file's own, where an OME "
        "or ImageJ TIFF states it)",
        explain="Pixel size in micrometres for the µm and µm² columns of the object table (0 = not given: the file's "
        "own, where an OME or ImageJ TIFF states it). Does not change the count.",
    ),
)
"""Every parameter, in the order the CLI help and settings files list them."""

SCHEMA: dict[str, Param] = {p.name: p for p in PARAMS}
PARAM_NAMES = tuple(SCHEMA)
INPUT_FIELDS = tuple(p.name for p in PARAMS if p.group == "input")
MASK_FIELDS = tuple(p.name for p in PARAMS if p.group == "mask")
DENSITY_FIELDS = tuple(p.name for p in PARAMS if p.group == "density")
TUNED_FIELDS = (*MASK_FIELDS, *DENSITY_FIELDS, "auto_nucleus_size")
"""What ``cellcount.evaluate --tune --write-card`` stores in a card: the postprocessing it searched, and
the size mode its predictions were made with (the tuned values belong to it)."""
KIND_GROUPS: dict[str, tuple[str, ...]] = {"mask": ("mask",), "density": ("density",),
                                           "multihead": ("mask", "multihead")}
"""The postprocessing groups that act for each model output kind (besides ``input`` and ``measure``)."""


def setting_label(name: str, *, short: bool = False) -> str:
    """A setting as the app names it (its widget's label), or the name itself for unknown keys; ``short``: without
    its unit note ("Nucleus diameter", not "Nucleus diameter (px, 0 = not given)")."""
    spec = SCHEMA.get(name)
    label = spec.label if spec is not None and spec.label else name
    return label.split(" (")[0] if short else label


def setting_text(name: str, value: Any) -> str:
    """A setting's value as the app shows it: on/off, the choice's label, what unset does (``none_means``), and the
    ``off`` value with what it means ("0 (auto)")."""
    spec = SCHEMA.get(name)
    if value is None:
        return spec.none_means if spec is not None else "none"
    if isinstance(value, (bool, np.bool_)):
        return "on" if value else "off"
    if spec is not None and spec.choices and value in spec.choices and spec.choice_labels:
        return dict(zip(spec.choices, spec.choice_labels, strict=True))[value]
    if spec is not None and spec.off is not None and value == spec.off:
        return f"{value} ({spec.off_means})"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def seed_area_px(min_area_px: int) -> int:
    """Smallest watershed seed kept when splitting: derived from ``min_area_px``, not a parameter of its own.

    A seed much smaller than the smallest object kept would only split off pieces that the area filter then
    drops (or count a speck twice), so seeds follow the area bound at half its size, at least 4 px.
    """
    return max(4, int(min_area_px) // 2)


LEGACY_KEYS = ("watershed", "use_border_channel")
"""Settings keys from before ``split_mode`` (cards, settings files, CLI flags); :func:`upgrade_keys` maps them."""


def upgrade_keys(values: Mapping[str, Any], *, borders_available: bool = True) -> dict[str, Any]:
    """``values`` with old keys replaced by today's: the one place where old settings are read.

    ``watershed`` off = ``split_mode`` "off"; on = "borders" when ``use_border_channel`` (default on) and
    the model has borders, else "distance". A ``split_mode`` given alongside them wins (it is the newer key).
    """
    if not any(k in values for k in LEGACY_KEYS):
        return dict(values)
    out = {k: v for k, v in values.items() if k not in LEGACY_KEYS}
    if "split_mode" not in out:
        if not values.get("watershed", True):
            out["split_mode"] = "off"
        elif values.get("use_border_channel", True) and borders_available:
            out["split_mode"] = "borders"
        else:
            out["split_mode"] = "distance"
    return out


def _check(spec: Param, value: Any) -> None:
    """Raise ParameterError unless ``value`` suits ``spec`` (type, range or choices)."""
    if value is None:
        if not spec.optional:
            raise ParameterError(f"{spec.name} must be set, got None")
        return
    if spec.choices:
        if value not in spec.choices:
            raise ParameterError(f"{spec.name} must be one of {', '.join(spec.choices)}; got {value!r}")
        return
    if spec.kind is bool:
        if not isinstance(value, (bool, np.bool_)):
            allowed = f"true, false or null ({spec.none_means})" if spec.optional else "true or false"
            raise ParameterError(f"{spec.name} must be {allowed}, got {value!r}")
        return
    if spec.off is not None and not isinstance(value, (bool, np.bool_)) and value == spec.off:
        return
    extra = "" if spec.off is None else f" (or {spec.off} = {spec.off_means})"
    lo_s, hi_s = (f"{int(v):,}" if float(v).is_integer() else f"{v:g}" for v in (spec.lo, spec.hi))
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    is_num = is_int or isinstance(value, (float, np.floating))
    if not is_num or (spec.kind is int and not is_int and not float(value).is_integer()):
        what = "a whole number" if spec.kind is int else "a number"
        raise ParameterError(f"{spec.name} must be {what} within [{lo_s}, {hi_s}]{extra}, got {value!r}")
    if not (np.isfinite(float(value)) and spec.lo <= value <= spec.hi):
        raise ParameterError(f"{spec.name} must be within [{lo_s}, {hi_s}]{extra}, got {value!r}")


def check_value(name: str, value: Any) -> None:
    """ParameterError unless ``value`` suits the setting ``name`` on its own (type, range or choices; the checks
    between two settings are :class:`CountParams`')."""
    try:
        _check(SCHEMA[name], value)
    except TypeError as err:  # e.g. "0.5" (a string) from a hand-edited settings file
        raise ParameterError(f"{name} has the wrong type ({err}); numbers must not be quoted") from err


class _CountParamsBase:
    """Methods of :class:`CountParams`; its fields come from :data:`PARAMS`."""

    INPUT_FIELDS = INPUT_FIELDS

    def __post_init__(self) -> None:
        try:
            for spec in PARAMS:
                value = getattr(self, spec.name)
                _check(spec, value)
                if spec.kind is int and isinstance(value, (float, np.floating)):  # 20.0 from a file: 20, as written
                    object.__setattr__(self, spec.name, int(value))
        except TypeError as err:  # e.g. "0.5" (a string) from a hand-edited settings file
            raise ParameterError(f"a parameter has the wrong type ({err}); numbers must not be quoted") from err
        # said in the words of the app's controls, with the command line's and settings files' names after them
        if self.max_area_px and self.max_area_px < self.min_area_px:
            raise ParameterError(f"Max. area ({self.max_area_px} px) is below Min. area ({self.min_area_px} px): "
                                 "no object could be kept; raise Max. area or set it to 0 (no limit) "
                                 "(on the command line --max-area-px, --min-area-px; in a settings file: max_area_px, "
                                 "min_area_px)")
        if not self.low_pct < self.high_pct:
            raise ParameterError(f"the Low percentile ({self.low_pct:g}) must be below the High percentile "
                                 f"({self.high_pct:g}) (on the command line --low-pct, --high-pct; in a settings file: "
                                 "low_pct, high_pct)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def replace(self, **changes: Any) -> CountParams:
        new = resolve_params(None, {**self.to_dict(), **changes})
        object.__setattr__(new, "_resolved", getattr(self, "_resolved", False))  # still from the same card
        return new

    def values(self, group: str) -> dict[str, Any]:
        """The fields of one :data:`GROUPS` entry, by name (``segment(prob, **p.values("mask"))``)."""
        return {p.name: getattr(self, p.name) for p in PARAMS if p.group == group}

    def acting(self, output_kind: str) -> dict[str, Any]:
        """The fields that act for this kind of model: a density model's count ignores the mask
        postprocessing, and a split mode without the distance transform ignores ``min_distance_px``. What a
        results table lists, so it names no setting that did nothing (an unknown kind keeps every field)."""
        groups = KIND_GROUPS.get(output_kind)
        if groups is None:
            return self.to_dict()
        out = {p.name: getattr(self, p.name) for p in PARAMS if p.group in ("input", "measure", *groups)}
        if "split_mode" in out and out["split_mode"] not in DISTANCE_SPLIT_MODES:
            del out["min_distance_px"]
        return out

    def settings_json(self, output_kind: str) -> str:
        """:meth:`acting` as one JSON string: the ``settings`` column of every counts table."""
        return json.dumps(self.acting(output_kind), sort_keys=True)

    def input_key(self) -> tuple:
        """The fields that change the model input (and so the cached prediction)."""
        return tuple(getattr(self, f) for f in INPUT_FIELDS)


def _docstring() -> str:
    lines = ["Every setting that changes a count, generated from :data:`cellcount.params.PARAMS`.", "",
             "Units are in the names; area bounds are inclusive. Fields:", ""]
    lines += [f"* ``{p.name}`` ({p.group}): {p.help}." for p in PARAMS]
    return "\n".join(lines)


CountParams = dataclasses.make_dataclass(
    "CountParams",
    [(p.name, p.kind | None if p.optional else p.kind, dataclasses.field(default=p.default)) for p in PARAMS],
    bases=(_CountParamsBase,),
    frozen=True,
    namespace={"__doc__": _docstring()},
)
CountParams.__module__ = __name__  # pickled by reference (Streamlit caches, worker processes)


def measuring_by_file(params: CountParams, file_pixel_size_um: float | None) -> CountParams:
    """``params`` to measure one file's objects with: its own pixel size (OME, ImageJ) where the settings give none.
    It measures, it is no setting: a batch's settings keep the size given (or none) for the other files."""
    if params.pixel_size_um is None and file_pixel_size_um:
        return params.replace(pixel_size_um=file_pixel_size_um)
    return params


def channel_for_image(params: CountParams, n_channels: int) -> tuple[CountParams, str | None]:
    """``params`` as they apply to an image of ``n_channels`` channels, and a note when that differs: a channel
    chosen for multi-channel images does not apply to a one-channel image (a DAPI-only file in a folder of
    composites, or after a composite on the Count page), which is counted as it is, with the note."""
    if params.channel is None or n_channels != 1 or params.channel == 0:
        return params, None
    return params.replace(channel=None), (f"channel {params.channel} was chosen, but this image has only one "
                                          "channel: it was counted as it is")


def has_border_channel(model: ModelLike | None) -> bool:
    """Whether ``model`` predicts a touching-border map (``split_mode`` "borders" / "both" need it)."""
    return (model is not None and model.output_kind in ("mask", "multihead")
            and int(model.card.kwargs.get("out_channels", 1)) > 1)


def resolve_params(model: ModelLike | None, overrides: CountParams | Mapping[str, Any] | None = None) -> CountParams:
    """Defaults < ``model.card.postprocess`` < ``overrides``; unknown keys raise ParameterError.

    Old keys are upgraded per layer (:func:`upgrade_keys`), so an old ``watershed: false`` override still
    turns off a card's ``split_mode``. A mode needing borders on a model without them raises.
    """
    if isinstance(model, str):
        raise ParameterError(f"resolve_params takes a loaded model, got the name {model!r}: "
                             f"cellcount.load_model({model!r})")
    borders = model is None or has_border_channel(model)
    merged: dict[str, Any] = {}
    if model is not None:
        merged.update(upgrade_keys(model.card.postprocess, borders_available=borders))
    if isinstance(overrides, CountParams):
        overrides = overrides.to_dict()
    if overrides is not None and not isinstance(overrides, Mapping):
        raise ParameterError(f"settings must be a dict such as {{'threshold': 0.5}} (or CountParams), got a "
                             f"{type(overrides).__name__} ({overrides!r:.40}): json.loads a JSON string first")
    if overrides:
        merged.update(upgrade_keys(overrides, borders_available=borders))
    unknown = sorted(set(merged) - set(PARAM_NAMES))
    if unknown:
        raise ParameterError(f"unknown parameters {unknown}; valid: {', '.join(PARAM_NAMES)}")
    params = CountParams(**merged)
    if model is not None and model.output_kind == "mask" and not borders and params.split_mode in BORDER_SPLIT_MODES:
        raise ParameterError(
            f"split_mode {params.split_mode!r} needs a model that predicts borders; {model.name} does not: "
            "use 'distance' or 'off'"
        )
    # resolved from a card (or from other resolved settings): cellcount.count_image trusts these as they are
    object.__setattr__(params, "_resolved", model is not None)
    return params


KIND_WORDS = {"density": "a density model counts the integral of its map",
              "mask": "a segmentation model has no density map", "multihead": "a three-head model"}


def inert_settings(given: set[str], params: CountParams, model: Any) -> dict[str, list[str]]:
    """The settings of ``given`` (names) that do nothing with ``model`` and ``params``, grouped by why: a mask
    setting for a density model, the split distance outside the distance modes, test-time flips for a model
    without a network, a size estimate when a diameter is given. Empty when every one acts."""
    acting = params.acting(model.output_kind)
    why: dict[str, list[str]] = {}
    # old names (watershed, use_border_channel) are read as the current ones: not judged here
    for name in sorted((set(given) & set(SCHEMA)) - set(acting), key=list(SCHEMA).index):
        if name == "min_distance_px" and "split_mode" in acting:
            reason = f"split mode {params.split_mode!r} uses no distance between centres"
        else:
            reason = f"{model.name}: {KIND_WORDS.get(model.output_kind, model.output_kind)}"
        why.setdefault(reason, []).append(name)
    if "test_time_flips" in given and params.test_time_flips and not hasattr(model, "net"):
        why.setdefault(f"{model.name} has no network whose maps flips could average", []).append("test_time_flips")
    if "auto_nucleus_size" in given and params.auto_nucleus_size and params.nucleus_diameter_px:
        why.setdefault("the nucleus diameter given is used instead of an estimate", []).append("auto_nucleus_size")
    return why


def acting_settings(values: Mapping[str, Any], output_kind: str | None) -> dict[str, Any]:
    """A dict of settings with only those that act for ``output_kind`` (:meth:`CountParams.acting`), old keys
    upgraded first (:func:`upgrade_keys`); as it is when the kind is unknown or the settings do not resolve (a
    record of another version: nothing recorded is dropped then). For settings files written from a dict."""
    if output_kind is None or not values:
        return dict(values)
    try:
        upgraded = upgrade_keys(values)
        acting = resolve_params(None, upgraded).acting(output_kind)
    except ParameterError:
        return dict(values)
    return {k: v for k, v in upgraded.items() if k in acting}
