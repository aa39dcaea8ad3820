"""The one place that chains image -> model maps -> postprocessing -> CountResult.

``predict`` runs the model (slow, cache it); ``postprocess`` turns a cached :class:`Prediction` into a
:class:`CountResult` for any :class:`CountParams` without touching the model. ``count_image`` does both.
Parameter precedence: :class:`CountParams` defaults < the model card's ``postprocess`` < overrides.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import parallel
from . import postprocess as pp
from .errors import ParameterError
from .flips import flip_averaged_maps, flip_maps  # noqa: F401  (flip_averaged_maps: re-exported)
from .io import as_pixels, background_note, check_pixels, exposure_note, hot_pixel_note, input_note, model_input
from .measure import object_table, peaks_table
from .models.base import CountModel
from .novelty import has_encoder, image_novelty
from .overlay import overlay_note, stroke_objects
from .params import (  # noqa: F401
    DISTANCE_SPLIT_MODES,
    SCHEMA,
    CountParams,
    auto_distance_px,
    channel_for_image,
    has_border_channel,
    inert_settings,
    resolve_params,
)
from .protocols import backend_kw
from .quality import Quality, QualityRule, density_foreground, image_signals, judge, quality_signals, with_note
from .settingsfile import params_from_file, params_from_json  # noqa: F401  (re-exported)
from .sizing import (
    AUTO_RESCALE_TOLERANCE,
    MAX_SCALE,
    MIN_SCALE,
    REFERENCE_DIAMETER_PX,
    RESCALE_TOLERANCE,
    area_count_size,
    density_channels,
    density_nucleus_diameter,
    estimate_nucleus_size,
    model_scale,
    needs_size_model,
    reference_diameter,
    resize_image,
    resize_maps,
    trained_diameter,
)

logger = logging.getLogger(__name__)


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
    trained_diameter_px: float | None = None
    """A model fine-tuned at one size for its set: that size in the images' own pixels
    (:func:`cellcount.sizing.trained_diameter`), which the quality flag's size signal is measured from."""
    quality_rule: QualityRule = field(default_factory=QualityRule)
    """The model's limits for the quality flag (its card's, calibrated on validation images)."""
    size_count: float | None = None
    """Mask models sized by a size model: that density model's count over ``size_window`` (the region it
    read), a second count made by an independent network, which the quality flag compares."""
    size_window: tuple[slice, slice] | None = None
    part_of_image: bool = False
    """A block of a larger image (normalised with the whole image's ``limits``): an empty block is no empty image."""
    backend: str | None = None
    """The inference backend the network ran in (:meth:`cellcount.models.NetModel.backend_in_use`: ``bf16``,
    ``torch``, ``onnxruntime``; counts agree within 0.5% between them, not always to the object); None for a
    model without a network."""
    flip_disagreement: float | None = None
    """With ``test_time_flips``: how much the four views disagree (:func:`cellcount.flips.flip_maps`)."""
    novelty: float | None = None
    """How unlike the model's training images this image looks to its encoder (:mod:`cellcount.novelty`);
    None for a model without a novelty reference."""
    card_mask_settings: dict | None = None
    """The model card's postprocessing settings of mask models (:func:`card_shift_note` compares with them)."""
    input_note: str | None = None
    """Why a count of this input may not be what the user meant (a blank channel, a merge of stains averaged;
    :func:`cellcount.io.input_note`): added to every count's quality flag."""
    memo: dict = field(default_factory=dict, repr=False, compare=False)
    """Postprocessing's last intermediate stages for these maps (:func:`cellcount.postprocess.segment`)."""

    @property
    def shape(self) -> tuple[int, int]:
        return self.image_norm.shape


@dataclass
class CountResult:
    """Everything a page, the CLI or an evaluation needs about one counted image.

    ``count``: the number counted (mask models: the objects kept; density models: the map's integral, rounded);
    ``count_estimate``: the same unrounded (a density model's integral); ``labels``: (H, W) int32 of the kept
    objects 1..count (mask models; None for density models and images counted by blocks); ``rejected``: (H, W)
    uint8, why each rejected object's pixels were dropped (``cellcount.postprocess.REJECT_REASONS``);
    ``probability``: the model's foreground probability (mask models); ``density``: the density map (cells per
    pixel); ``peaks``: (N, 2) row, col of the objects' centres (density models: approximate centres, local maxima,
    not the count); ``objects``: one row per object (area, centroid, diameter, intensity, bounding box; µm columns
    with ``params.pixel_size_um``); ``params``: the settings counted with; ``seconds``: time per stage;
    ``inverted``: the image was read as a bright background and inverted for the model; ``quality``: whether
    to check this count, and why. The maps are at the image's full size, whatever the model's scale.
    """

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
    rejected_ids: np.ndarray | None = None
    """Mask models: (H, W) int32, each rejected object's own id (0 elsewhere; None when none was rejected), so the
    viewer outlines touching rejected objects apart."""
    model_scale: float = 1.0
    """Factor the image was resized by for the model (``nucleus_diameter_px`` or ``auto_nucleus_size``)."""
    estimated_diameter_px: float | None = None
    """With ``auto_nucleus_size``: the nucleus diameter estimated from the first pass."""
    density_count: float | None = None
    """Multihead models: the integral of the density head, a second count beside the segmentation's."""
    quality: Quality | None = None
    """Whether this count may be wrong ("check this image"), with the reasons (:mod:`cellcount.quality`)."""
    min_distance_px: int | None = None
    """Mask models: the split distance used (``params.min_distance_px``, or what 0 = auto made of it)."""
    pixel_size_um: float | None = None
    """The pixel size (µm) its µm columns were measured with, and its label image is calibrated by: the setting's,
    else the file's own (a batch's ``params`` keep the setting alone)."""
    split_used: str | None = None
    """``split_mode="auto"``: the split it chose for this image ("borders" or "both")."""
    touching_share: float | None = None
    """``split_mode="auto"``: the share of objects touching another after the border split, which chose it."""
    backend: str | None = None
    """The inference backend the network ran in (:attr:`Prediction.backend`): the same image and settings can
    count an object apart in another, so it is part of the record (the counts CSV's ``backend`` column)."""

    @property
    def counted_from_density(self) -> bool:
        """A one-pass (multihead) model's count taken from its density head (``count_source`` "density"): the
        objects outlined are its segmentation's, which the object settings change and the count not."""
        return self.density_count is not None and self.params.count_source == "density"

    def summary_row(self) -> dict[str, Any]:
        """Flat row for a counts table (settings as one JSON string)."""
        q = self.quality.row() if self.quality is not None else {"check": None, "check_score": None,
                                                                   "check_reasons": ""}
        return {
            "model": self.model_name,
            "backend": self.backend,
            "count": self.count,
            "count_estimate": round(self.count_estimate, 3),
            "density_count": None if self.density_count is None else round(self.density_count, 2),
            **q,
            "inverted": self.inverted,
            "model_scale": round(self.model_scale, 4),
            "estimated_diameter_px": None if self.estimated_diameter_px is None else round(self.estimated_diameter_px, 2),
            "split_used": self.split_used,
            "seconds": round(sum(self.seconds.values()), 4),
            # a multihead result reads as a mask result everywhere else; its density count tells it apart
            "settings": self.params.settings_json("multihead" if self.density_count is not None else self.output_kind),
        }


def normalize(image: np.ndarray, model: CountModel, params: CountParams, *,
              limits: tuple[float, float] | None = None) -> tuple[np.ndarray, bool]:
    """``image`` as ``model``'s input with ``params`` (what :func:`predict` runs the network on), and whether
    it was read as a bright background (inverted)."""
    return model_input(
        np.asarray(image), channel=params.channel, invert=params.invert, low_pct=params.low_pct,
        high_pct=params.high_pct, grayscale=model.card.normalization.get("grayscale", "mean"), limits=limits,
    )


SETUP_SHOWN_S = 0.005
"""A model's setup time is reported when it took longer than this (its first use), not as a 0 on every image."""


def _prepare(model: CountModel | None, fast: bool, backend: str | None) -> None:
    """Choose the backend and build its runner before the clock starts, so that a first use (timing the
    backends, building the runner: up to a second) is not counted as the model's time on the first image: Compare
    would show one of two models of the same size several times slower for it."""
    if model is None or not fast or not hasattr(model, "backend_choice"):
        return
    from .inference import default_device

    if str(default_device()) == "cpu":
        model.fast_net(model.backend_choice(backend or "auto").backend)


def _check_call(image: Any, model: Any, what: str) -> None:
    """Refuse, saying what to do, a model given by name or several images given as one."""
    check_model(model, what)
    if isinstance(image, (list, tuple)):
        raise ParameterError(f"{what} takes one image (a 2-D array, or H x W x channels), got a {type(image).__name__} "
                             f"of {len(image)}: count arrays one by one ([{what}(a, model) for a in images]), or files with "
                             "cellcount.batch.count_many([(name, path), ...], model)")


def check_model(model: Any, what: str) -> None:
    """Refuse, saying what to do, a model given by name (or anything but a loaded model) to ``what``."""
    if isinstance(model, (str, os.PathLike)):
        raise ParameterError(f"{what} takes a loaded model, got {os.fspath(model)!r}: model = "
                             f"cellcount.load_model({os.fspath(model)!r}), once for all your images")
    if not hasattr(model, "output_kind") or not hasattr(model, "card"):  # None, or another library's model
        raise ParameterError(f"{what} takes a model loaded by cellcount.load_model(name), got "
                             f"{'None' if model is None else type(model).__name__}: cellcount.list_models() lists the names")


def _check_size_model(size_model: Any) -> None:
    """Refuse a ``size_model`` that cannot size nuclei: a name, or a model without a density map (a mask model given
    as its own size model resizes by a wrong size and counts far off, flagged only as two counts that disagree)."""
    if size_model is None:
        return
    if isinstance(size_model, (str, os.PathLike)):
        raise ParameterError(f"size_model takes a loaded density model, got {os.fspath(size_model)!r}: size_model = "
                             f"cellcount.load_model({os.fspath(size_model)!r}), or leave it out (the card names one)")
    if getattr(size_model, "output_kind", None) != "density":
        raise ParameterError(f"size_model must be a density model (it sizes nuclei from its density map), got "
                             f"{getattr(size_model, 'name', type(size_model).__name__)!r} "
                             f"({getattr(size_model, 'output_kind', 'no model')}): leave it out, and the model's card "
                             "names its size model")


def predict(
    image: np.ndarray,
    model: CountModel,
    params: CountParams | dict[str, Any] | None = None,
    *,
    progress=None,
    fast: bool = True,
    size_model: CountModel | None = None,
    backend: str | None = None,
    limits: tuple[float, float] | None = None,
    normalized: bool = False,
) -> Prediction:
    """Normalise ``image`` (any dtype, (H, W) or (H, W, C)) and run the model's forward pass.

    ``size_model``: the density model that estimates nucleus sizes for a mask model with
    ``auto_nucleus_size`` on and no ``nucleus_diameter_px`` (:func:`cellcount.models.size_model_for` loads
    the one its card names; loaded here when not given, once per model object); other models and settings need none.
    ``backend`` runs the fast path (None: ``$CELLCOUNT_BACKEND`` where set, else the one measured fastest on this
    machine; see :meth:`cellcount.models.NetModel.predict_maps`).
    ``limits``: normalise with these values instead of the image's percentiles (a block of a huge image,
    see :mod:`cellcount.blocks`).
    ``normalized``: ``image`` is already the model's input (2-D float, as training items hold it).
    """
    _check_call(image, model, "predict")
    check_pixels(image)
    image = as_pixels(image)
    if backend is None and hasattr(model, "backend_choice"):  # the environment's, as the CLI reads it (workers too)
        from .models.autotune import requested_backend

        backend = None if (asked := requested_backend()) == "auto" else asked  # a model may take no backend
    p = params if isinstance(params, CountParams) else resolve_params(model, params)
    key, channel_note = p.input_key(), None  # keyed on what was asked: postprocess() checks it against its params
    if not normalized:
        shape = np.shape(image)
        p, channel_note = channel_for_image(p, shape[2] if len(shape) == 3 else 1)  # other shapes: refused below
    if needs_size_model(model, p) and size_model is None:  # loaded once per model object and kept with it
        from .models import size_model_for

        size_model = size_model_for(model, p)
    _check_size_model(size_model)
    ts = time.perf_counter()
    for net_model in (model, size_model):
        _prepare(net_model, fast, backend)
    t0 = time.perf_counter()
    norm, inverted = (np.asarray(image, np.float32), False) if normalized else normalize(image, model, p, limits=limits)
    t1 = time.perf_counter()

    flips: list[float] = []

    def run(view: np.ndarray) -> np.ndarray:
        if p.test_time_flips:
            maps, disagreement = flip_maps(model, view, progress=progress, fast=fast, backend=backend)
            flips.append(disagreement)  # the last pass's (at the model's scale) is the one counted
            return maps
        return model.predict_maps(view, progress=progress, fast=fast, **backend_kw(backend))

    density = density_channels(model.output_kind)

    def run_at(scale: float) -> np.ndarray:
        """Maps of the image resized by ``scale``, back at full size."""
        if scale == 1.0:
            return run(norm)
        return resize_maps(run(resize_image(norm, scale)), norm.shape, density=density)

    estimated = size = None
    if not p.nucleus_diameter_px and p.auto_nucleus_size:
        maps = run_at(1.0)  # the first pass; kept when the estimate is close to the training size
        if model.output_kind == "multihead":  # foreground area over density count, both from this one pass
            estimated, tolerance = area_count_size(maps[0], maps[2]).diameter, AUTO_RESCALE_TOLERANCE
        elif density:  # the size is read off the density model's own map
            estimated, tolerance = density_nucleus_diameter(maps[density[0]]), RESCALE_TOLERANCE
        else:
            size = estimate_nucleus_size(norm, maps[0], size_model, fast=fast, backend=backend)
            estimated, tolerance = size.diameter, AUTO_RESCALE_TOLERANCE
        scale = model_scale(model, estimated, norm.shape, tolerance=tolerance)
        if scale != 1.0:
            maps = run_at(scale)
    else:
        scale = model_scale(model, p.nucleus_diameter_px, norm.shape)
        maps = run_at(scale)
    novelty = _novelty(model, norm, maps, scale, fast=fast, backend=backend)
    t2 = time.perf_counter()
    return Prediction(
        model_name=model.name,
        output_kind=model.output_kind,
        maps=maps,
        image_norm=norm,
        inverted=inverted,
        input_key=key,
        # "setup": a model's first use on this machine (timing the backends, building the runner), once per model
        seconds={**({"setup": t0 - ts} if t0 - ts > SETUP_SHOWN_S else {}), "normalize": t1 - t0, "model": t2 - t1},
        model_scale=scale,
        estimated_diameter_px=estimated,
        reference_diameter_px=reference_diameter(model.card),
        trained_diameter_px=trained_diameter(model.card),
        quality_rule=QualityRule.from_card(model.card),
        card_mask_settings=resolve_params(model).values("mask") if model.output_kind != "density" else None,
        size_count=None if size is None else size.count,
        size_window=None if size is None else size.window,
        backend=_backend_name(model, fast, backend), part_of_image=limits is not None,
        flip_disagreement=flips[-1] if flips else None,
        novelty=novelty,
        input_note=None if limits is not None else _notes(channel_note, input_note(image, channel=p.channel),  # blocks: the whole's
                                                           exposure_note(image, channel=p.channel),
                                                           hot_pixel_note(image, channel=p.channel, high_pct=p.high_pct),
                                                           background_note(image, channel=p.channel, invert=p.invert)),
    )


def _backend_name(model: CountModel, fast: bool, backend: str | None) -> str | None:
    """What :func:`predict` ran ``model``'s network in: the fast path's backend, ``torch-plain`` for the plain
    PyTorch loop (``fast=False``: the network as trained, unfolded, which counts an object apart from the fast
    ``torch`` backend now and then), None without a network."""
    if getattr(model, "net", None) is None:
        return None
    if fast and hasattr(model, "backend_in_use"):
        return model.backend_in_use(backend or "auto")[0]
    from .inference import default_device

    device = default_device()
    return "torch-plain" if device.type == "cpu" else f"torch-plain ({device.type})"


def _notes(*notes: str | None) -> str | None:
    """The notes that apply, as one (the quality flag's reason), or None."""
    found = [n for n in notes if n]
    return "; ".join(found) if found else None


def _novelty(model: CountModel, norm: np.ndarray, maps: np.ndarray, scale: float, *, fast: bool,
             backend: str | None) -> float | None:
    """The image's novelty for the quality flag, where the model has a reference: one small encoder pass
    over the window with the most foreground, in bf16 where the CPU fast path runs in bf16 and in fp32
    otherwise; None where there is nothing to judge (:func:`cellcount.novelty.image_features`)."""
    reference, net = getattr(model, "novelty", None), getattr(model, "net", None)
    if reference is None or net is None or not has_encoder(net):
        return None
    on_cpu = all(p.device.type == "cpu" for p in net.parameters())
    bf16 = (fast and on_cpu and hasattr(model, "backend_choice")
            and model.backend_choice(backend or "auto").backend == "bf16")
    return image_novelty(net, reference, norm, maps[0], scale, bf16=bf16, density=model.output_kind == "density")


def assess(prediction: Prediction, params: CountParams, count: float, second_count: float | None = None,
           comparison: str | None = None, *, probability: np.ndarray | None = None,
           labels: np.ndarray | None = None) -> Quality:
    """The quality flag of one count (see :mod:`cellcount.quality`); ``comparison`` names what ``count`` and
    ``second_count`` are (a :data:`cellcount.quality.COMPARISONS` key) for the flag's reason."""
    diameter = params.nucleus_diameter_px or prediction.estimated_diameter_px
    at_limit = False
    if diameter:
        needed = prediction.reference_diameter_px / float(diameter)
        # the resize the size called for was clamped (MIN_SCALE / MAX_SCALE / the pixel cap) by more than 25%;
        # a size left alone within the tolerance is not a limit
        clamped = prediction.model_scale != 1.0 and abs(np.log(needed / prediction.model_scale)) > np.log(1.25)
        at_limit = clamped or not (MIN_SCALE / 1.25 <= needed <= MAX_SCALE * 1.25)
    image_sig = None
    if probability is not None:
        # the image signals do not change with the settings: kept per prediction (a slider move skips them)
        key = ("quality", diameter if prediction.output_kind == "density" else None)
        kept = prediction.memo.get("quality")
        if kept is not None and kept[0] == key:
            image_sig = kept[1]
        else:
            image_sig = image_signals(probability, prediction.image_norm)
            prediction.memo["quality"] = (key, image_sig)
    signals = quality_signals(
        count=count, second_count=second_count, probability=probability, image_norm=prediction.image_norm,
        diameter_px=diameter, reference_diameter_px=prediction.trained_diameter_px or prediction.reference_diameter_px,
        size_at_limit=at_limit,
        labels=labels, flip_disagreement=prediction.flip_disagreement, image_sig=image_sig,
        novelty=prediction.novelty,
    )
    counts = None if second_count is None or comparison is None else (comparison, count, second_count)
    quality = judge(signals, prediction.quality_rule, counts=counts)
    return with_note(quality, prediction.input_note) if prediction.input_note else quality


NOTHING_FOUND = ("no nuclei were found: if the image shows any, the model did not recognise them (check Invert, the "
                 "nucleus size and the channel, or fine-tune a model on images like it), unless the field is empty")


def with_overlay(quality: Quality | None, labels: np.ndarray, image: np.ndarray | None, *,
                 bright_background: bool = False) -> Quality | None:
    """``quality`` flagged where the objects include a time stamp's or scale bar's strokes (:mod:`cellcount.overlay`):
    counted letter by letter, within every calibrated limit. Beside an overexposure note too: a time stamp on a sparse
    field is a large share of its bright pixels."""
    if image is None or np.ndim(image) != 2:
        return quality
    note = overlay_note(stroke_objects(labels, image, bright_background=bright_background))
    return with_note(quality, note) if note else quality


def nothing_found(quality: Quality | None, count: int, *, part_of_image: bool = False, dropped: int = 0) -> Quality | None:
    """``quality`` flagged with :data:`NOTHING_FOUND` for a count of nothing that nothing else flagged: with no object
    every signal is unmeasured (NaN), so no limit can fire, however many nuclei the image shows. Not for a block of a
    larger image (empty background is common there; the whole image's count is judged) nor where the filters dropped
    what was found (their own reason says so)."""
    if count or (quality is not None and quality.flag) or part_of_image or dropped:
        return quality
    return with_note(quality, NOTHING_FOUND)


def _density_probability(prediction: Prediction, params: CountParams, density: np.ndarray) -> np.ndarray | None:
    """A density model's foreground for the quality signals (:func:`cellcount.quality.density_foreground`)."""
    diameter = params.nucleus_diameter_px or prediction.estimated_diameter_px or density_nucleus_diameter(density)
    return density_foreground(density, diameter) if diameter else None


def _two_counts(prediction: Prediction, labels: np.ndarray, count: int,
                density_total: float | None) -> tuple[float, float | None, str | None]:
    """The segmentation's count and an independent one of the same region, for the quality flag: the
    density head's (multihead), else the size model's over the region it read (objects reaching into it);
    with the comparison's name (:data:`cellcount.quality.COMPARISONS`)."""
    if density_total is not None:
        return float(count), density_total, "density_head"
    if prediction.size_count is None or prediction.size_window is None:
        return float(count), None, None
    rows, cols = prediction.size_window
    if (rows.stop - rows.start, cols.stop - cols.start) == labels.shape:
        return float(count), prediction.size_count, "size_model"
    return float(np.count_nonzero(np.unique(labels[rows, cols]))), prediction.size_count, "size_window"


def _channel_mean(image: np.ndarray, memo: dict) -> np.ndarray:
    """A colour image's channel mean (what the object table measures intensities on), kept in ``memo`` for
    the same image object: a slider move does not average 3 x 1 Mpx again."""
    arr = np.asarray(image)
    if arr.ndim != 3:
        return arr
    hit = memo.get("channel_mean")
    if hit is not None and hit[0] is image:
        return hit[1]
    mean = arr.mean(axis=2)
    memo["channel_mean"] = (image, mean)
    return mean


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
    if not isinstance(prediction, Prediction):  # a model, an image: said here, not as an AttributeError deep inside
        raise ParameterError(f"postprocess takes the Prediction that predict(image, model, params) returns, got "
                             f"{type(prediction).__name__}: postprocess(predict(image, model, params), params)")
    if not isinstance(params, CountParams):  # a dict or a model: it has no model card to resolve settings against
        raise ParameterError(f"postprocess takes CountParams, got {type(params).__name__}: "
                             "cellcount.resolve_params(model, {...}) makes them from a model and the settings to change")
    if prediction.input_key and params.input_key() != prediction.input_key:  # the model saw other input
        from .params import INPUT_FIELDS

        changed = [f for f, a, b in zip(INPUT_FIELDS, params.input_key(), prediction.input_key, strict=True) if a != b]
        raise ParameterError(
            f"{', '.join(changed)} change{'s' if len(changed) == 1 else ''} what the model sees, and this prediction "
            "was made with other values: run predict() again with these settings")
    t0 = time.perf_counter()
    intensity_src = image if image is not None else prediction.image_norm
    if intensity_src is not None and np.asarray(intensity_src).shape[:2] != prediction.shape:
        intensity_src = prediction.image_norm
    # dark marks on a bright field are the image's lowest values, but the model's input is inverted: its highest
    marks_dark = prediction.inverted and intensity_src is not prediction.image_norm
    if (params.channel is not None and intensity_src is not None and np.ndim(intensity_src) == 3
            and params.channel < np.shape(intensity_src)[2]):
        # the channel counted, as the CLI and Batch measure it (they decode only that one): not the mean of all
        intensity_src = np.asarray(intensity_src)[..., params.channel]
    else:
        intensity_src = _channel_mean(intensity_src, prediction.memo)
    if prediction.output_kind == "density":
        density = prediction.maps[0]
        estimate = pp.density_count(density)
        # a map that integrates to no cell has no centres: its peaks at 25% of its own faint maximum are noise
        # (a blank field would show count 0 beside 11 "approximate centres")
        peaks = (pp.density_peaks(density, min_distance_px=params.peak_min_distance_px,
                                  smooth_px=pp.PEAK_SMOOTH_SHARE * read_diameter_px(prediction))
                 if round(estimate) > 0 else np.zeros((0, 2)))
        t1 = time.perf_counter()
        objects = peaks_table(peaks, density, pixel_size_um=params.pixel_size_um) if measure else pd.DataFrame()
        t2 = time.perf_counter()
        return CountResult(
            model_name=prediction.model_name, output_kind="density", count=int(round(estimate)),
            count_estimate=estimate, labels=None, rejected=None, probability=None, density=density,
            peaks=peaks, objects=objects, params=params, pixel_size_um=params.pixel_size_um,
            seconds={**prediction.seconds, "postprocess": t1 - t0, "measure": t2 - t1},
            inverted=prediction.inverted, model_scale=prediction.model_scale,
            estimated_diameter_px=prediction.estimated_diameter_px, backend=prediction.backend,
            quality=nothing_found(assess(prediction, params, estimate, float(len(peaks)), "peaks",
                                         probability=_density_probability(prediction, params, density)),
                                  int(round(estimate)), part_of_image=prediction.part_of_image),
        )
    prob = prediction.maps[0]
    border = prediction.maps[1] if prediction.maps.shape[0] > 1 else None
    # multihead: the density head's integral is a second, independent count of the same image
    density_map = prediction.maps[2] if prediction.output_kind == "multihead" else None
    density_total = None if density_map is None else pp.density_count(density_map)
    mask_params = params.values("mask")
    mask_params["min_distance_px"] = split_distance_px(prediction, params)
    seg = pp.segment(prob, **mask_params, border_prob=border, memo=prediction.memo, bright_background=prediction.inverted)
    t1 = time.perf_counter()
    # the object table and the quality flag read the same labels: one on a second core
    objects, quality = parallel.pair(
        lambda: object_table(seg.labels, intensity_src, pixel_size_um=params.pixel_size_um) if measure else None,
        lambda: with_overlay(assess(prediction, params, *_two_counts(prediction, seg.labels, seg.count, density_total),
                                    probability=prob, labels=seg.labels), seg.labels, intensity_src,
                                 bright_background=marks_dark),
        pixels=seg.labels.size)
    t2 = time.perf_counter()
    if objects is not None and len(objects):
        peaks = objects[["centroid_row", "centroid_col"]].to_numpy()
    else:
        peaks = np.zeros((0, 2))
    from_density = density_total is not None and params.count_source == "density"
    count, estimate = (int(round(density_total)), density_total) if from_density else (seg.count, float(seg.count))
    # the user's settings: a large share dropped by the filters, else a count far from the card settings'; neither
    # moves a count from the density head, so neither is its reason to check
    note = None if from_density else (
        (_filters_reason(seg.n_rejected, seg.count) if _own_filters(prediction, params) else None)
        or card_shift_note(prediction, params, seg.count, mask_params["min_distance_px"]))
    if note:
        quality = with_note(quality, note)
    quality = nothing_found(quality, count, part_of_image=prediction.part_of_image,
                            dropped=0 if from_density else sum(seg.n_rejected.values()))
    return CountResult(
        model_name=prediction.model_name, output_kind="mask", count=count, count_estimate=estimate,
        labels=seg.labels, rejected=seg.rejected, probability=prob, density=density_map, peaks=peaks,
        objects=objects if objects is not None else pd.DataFrame(), params=params, pixel_size_um=params.pixel_size_um,
        seconds={**prediction.seconds, "postprocess": t1 - t0, "measure": t2 - t1},
        inverted=prediction.inverted, n_rejected=dict(seg.n_rejected), rejected_ids=seg.rejected_ids,
        model_scale=prediction.model_scale,
        estimated_diameter_px=prediction.estimated_diameter_px,
        density_count=density_total, min_distance_px=mask_params["min_distance_px"], quality=quality,
        split_used=seg.split_used, touching_share=seg.touching_share, backend=prediction.backend,
    )


def split_distance_px(prediction: Prediction, params: CountParams) -> int:
    """The watershed's minimum distance between centres for this image, px: ``params.min_distance_px``, or
    for 0 (auto) :func:`~cellcount.params.auto_distance_px` of the nucleus diameter (given, else estimated,
    else the model's training size at the scale the model ran)."""
    if params.min_distance_px:
        return int(params.min_distance_px)
    return auto_distance_px(params.nucleus_diameter_px or prediction.estimated_diameter_px
                            or read_diameter_px(prediction))


def read_diameter_px(prediction: Prediction) -> float:
    """The nucleus diameter, in the image's pixels, at which the model read it: its training size undone by the
    resize it ran at."""
    return prediction.reference_diameter_px / prediction.model_scale


MAX_REJECTED_SHARE = 0.25
"""Objects the settings' area / edge filters may drop before the count is flagged: a share, of at least
:data:`MIN_REJECTED` objects. The shipped cards' settings drop only specks; a
user's filters that drop a quarter of the objects change what is counted more than any model error."""
MIN_REJECTED = 5


FILTER_SETTINGS = ("min_area_px", "max_area_px", "exclude_border")


def _own_filters(prediction: Prediction, params: CountParams) -> bool:
    """Whether the object filters are other than the model card's (or the card is not known): the card's own
    filters drop what they were tuned to drop (a fine-tune's min. area tuned on mbm drops many specks and debris
    on a held-out image it counts well, and the flag must not tell the user to check settings they never
    changed)."""
    card = prediction.card_mask_settings
    mine = params.values("mask")
    return card is None or any(card.get(k, mine[k]) != mine[k] for k in FILTER_SETTINGS)


def _filters_reason(n_rejected: dict[str, int], kept: int) -> str | None:
    """A reason to check the count when the filters dropped a large share of the objects, or None."""
    dropped = sum(n_rejected.values())
    if dropped >= MIN_REJECTED and dropped > MAX_REJECTED_SHARE * (dropped + kept):
        why = ", ".join(f"{n} {reason}" for reason, n in n_rejected.items() if n)
        return (f"the settings' filters dropped {dropped} of {dropped + kept} objects ({why}): "
                "check Min. area, Max. area and Exclude edge objects")
    return None


MAX_CARD_SHIFT = 0.25
"""How far settings other than the model card's may move a mask model's count (a share of the card settings'
count, and at least :data:`MIN_CARD_SHIFT` objects) before the count is flagged: the flag's limits were
calibrated with the card's settings, so beyond that its "no warning sign" says little: turning the split off
can lose a large share of the objects with no warning sign."""
MIN_CARD_SHIFT = 5


def card_shift_note(prediction: Prediction, params: CountParams, count: int, min_distance_px: int) -> str | None:
    """Why the count may be wrong when settings other than the card's move it far from what the card's settings
    count on the same prediction, or None. ``count`` was made with ``params`` at the split distance
    ``min_distance_px`` (:func:`split_distance_px`). Settings compare as they act: the auto distance and the
    number it stands for are the same setting, and the distance does not count in a mode that does not use it.
    The card settings' count is kept in the prediction's memo (a count made with them is stored as it is), so it
    is made at most once per prediction object, without touching the stages a slider move reuses."""
    card = prediction.card_mask_settings
    if card is None:
        return None
    mine = {**params.values("mask"), "min_distance_px": min_distance_px}
    theirs = {**card, "min_distance_px": split_distance_px(prediction, params.replace(**card))}
    if not {mine["split_mode"], theirs["split_mode"]} & set(DISTANCE_SPLIT_MODES):
        del mine["min_distance_px"], theirs["min_distance_px"]
    changed = [name for name in mine if name in theirs and mine[name] != theirs[name]]
    if not changed:
        prediction.memo.setdefault("card_count", count)
        return None
    kept = prediction.memo.get("card_count")
    if kept is None:
        border = prediction.maps[1] if prediction.maps.shape[0] > 1 else None
        kept = pp.segment(prediction.maps[0], **theirs, border_prob=border, bright_background=prediction.inverted).count
        prediction.memo["card_count"] = kept
    diff = count - kept
    if abs(diff) < max(MAX_CARD_SHIFT * kept, MIN_CARD_SHIFT):
        return None
    labels = ", ".join(SCHEMA[name].label if name in SCHEMA else name for name in changed)
    return (f"settings other than the model card's ({labels}) count {abs(diff)} {'more' if diff > 0 else 'fewer'} "
            f"objects than the card's would ({count} against {kept}): check that the change is wanted")


def _warn_card_defaults_lost(model: CountModel, params: CountParams) -> None:
    """Warn when ``params`` holds the library defaults where ``model``'s card tuned other values: a
    ``CountParams(...)`` built by hand is complete settings, not overrides of the card (a dict is)."""
    if getattr(params, "_resolved", False):  # from resolve_params(model, ...): the user's choices, as they are
        return
    card = getattr(getattr(model, "card", None), "postprocess", None) or {}
    defaults, tuned = CountParams(), resolve_params(model, None)
    lost = [k for k in card if hasattr(params, k) and getattr(params, k) == getattr(defaults, k)
            != getattr(tuned, k)]
    if lost:
        import warnings

        warnings.warn(
            f"these settings leave {', '.join(lost)} at the library defaults, not {model.name}'s tuned values "
            f"({', '.join(f'{k}={getattr(tuned, k)!r}' for k in lost)}): a CountParams is the whole set of settings; "
            "pass a dict of the settings to change, or cellcount.resolve_params(model, {...})", UserWarning,
            stacklevel=3)


def count_image(
    image: np.ndarray,
    model: CountModel,
    params: CountParams | dict[str, Any] | None = None,
    *,
    progress=None,
    fast: bool = True,
    measure: bool = True,
    size_model: CountModel | None = None,
    backend: str | None = None,
) -> CountResult:
    """Count objects in one image: :func:`predict` then :func:`postprocess`.

    ``image``: an (H, W) or (H, W, C) array of any real dtype (colour in RGB order: ``cv2.imread`` gives BGR,
    which reads stains wrong), or a Pillow image; a stack (Z, H, W) is refused (pass one plane). ``model``: from
    :func:`cellcount.load_model`. A one-image convenience: :func:`predict` loads the size model the card names when
    the settings need one and none is given (once per model object). Raises :class:`~cellcount.errors.ImageReadError`
    for an array that is no image, :class:`~cellcount.errors.ParameterError` for a setting out of range.
    """
    _check_call(image, model, "count_image")
    image = as_pixels(image)  # a Pillow image's colours, here too: the object table measures its intensities
    if isinstance(params, CountParams):
        _warn_card_defaults_lost(model, params)
    p = params if isinstance(params, CountParams) else resolve_params(model, params)
    if isinstance(params, dict) and inert_settings(set(params), p, model):  # as the CLI says it
        card = resolve_params(model).to_dict()  # those equal to the card's (its own settings passed back): not said
        why = inert_settings({k for k, v in params.items() if k not in card or card[k] != v}, p, model)
        if why:
            warnings.warn("these settings do nothing here: " + "; ".join(f"{', '.join(names)} ({reason})"
                                                                       for reason, names in why.items()),
                          UserWarning, stacklevel=2)
    pred = predict(image, model, p, progress=progress, fast=fast, size_model=size_model, backend=backend)
    return postprocess(pred, p, image=image, measure=measure)
