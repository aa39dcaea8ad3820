"""Model cards: everything needed to rebuild, run and judge a model, stored as ``card.json``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CARD_FILE = "card.json"
WEIGHTS_FILE = "weights.safetensors"

OUTPUT_KINDS = ("mask", "density", "multihead")
"""Every ``output_kind`` a card may declare; the one list to extend when a new kind of head is added."""

MAX_DEEPEST_WIDTH = 1024
"""Largest channel count at the bottom of a U-Net (``base_width * 2**depth``): about 40 M parameters.
A card asking for more (``base_width: 2048`` or ``depth: 40``) would allocate tens of GB before any check."""

# name: (type, lowest, highest), (str, allowed values or None for any text) or ("choice", allowed values)
ARCHITECTURE_KWARGS: dict[str, tuple] = {
    "in_channels": (int, 1, 16),
    "out_channels": (int, 1, 16),
    "base_width": (int, 1, 256),
    "depth": (int, 1, 8),
    "head": (str, None),  # its values are checked by the architecture's constructor
    "density_act": (str, ("softplus", "relu")),
    "density_branch": ("choice", (False, True, "block", "decoder")),  # unet.DENSITY_BRANCHES
}
"""Arguments a card's ``kwargs`` may pass to the U-Net family (every registered architecture)."""

CARD_NUMBERS: dict[str, tuple[type, float, float]] = {
    "tile_size": (int, 16, 4096),
    "tile_overlap": (int, 0, 1024),
    "density_scale": (float, 1e-9, 1e12),
}
"""Top-level numeric card fields: type and accepted range (``density_scale`` must be > 0)."""

EXTRA_NUMBERS: dict[str, tuple[type, float, float]] = {
    "fast_tile_size": (int, 16, 4096),
    "reference_diameter_px": (float, 2.0, 1000.0),
    "trained_diameter_px": (float, 0.5, 100000.0),
}
"""Numeric keys under ``extra`` that inference reads."""

COUNTING_FIELDS = ("architecture", "output_kind", "kwargs", "normalization", "tile_size", "tile_overlap",
                   "density_scale", "sha256")
"""The card's fields that change how its weights count (:meth:`ModelCard.counting_digest`)."""


@dataclass
class ModelCard:
    """Description of a model on disk (``weights/<name>/card.json``).

    ``postprocess`` holds default postprocessing parameters (names from the schema
    :data:`cellcount.params.PARAMS`); ``postprocess_tuned_on`` says which data they were tuned on.
    """

    name: str
    architecture: str
    output_kind: str  # "density" | "mask"
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    normalization: dict[str, Any] = field(
        default_factory=lambda: {"low_pct": 1.0, "high_pct": 99.8, "invert": "auto", "grayscale": "mean"}
    )
    tile_size: int = 256
    tile_overlap: int = 32
    density_scale: float = 1.0
    postprocess: dict[str, Any] = field(default_factory=dict)
    postprocess_tuned_on: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    weights_file: str = WEIGHTS_FILE
    sha256: str = ""
    license: str = "MIT (weights); trained on DSB 2018 (CC0)"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def counting_digest(self) -> str:
        """A short sha256 of what in the card changes a count besides its default settings (which a run and a settings
        file record themselves): the network, its weights, normalisation, tiles, density scale and the numbers and
        size model inference reads from ``extra``. ``evaluate --tune --write-card`` on a density model changes its
        scale, not its weights: rows counted before and after must not pass for one run's."""
        counting = {k: getattr(self, k) for k in COUNTING_FIELDS}
        counting["extra"] = {k: self.extra[k] for k in (*EXTRA_NUMBERS, "size_model") if k in self.extra}
        return hashlib.sha256(json.dumps(finite_json(counting), sort_keys=True, default=str).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        known = {f.name for f in dataclasses.fields(cls)}
        extra = {k: v for k, v in data.items() if k not in known}
        if extra:
            logger.warning("card %s has unknown keys %s (kept under 'extra')", data.get("name"), sorted(extra))
        kept = {k: v for k, v in data.items() if k in known}
        if not isinstance(kept.get("extra", {}), dict):
            raise TypeError(f"extra must be an object, got {type(kept['extra']).__name__}")
        kept.setdefault("extra", {}).update(extra)
        return cls(**kept)

    def training_digests(self) -> set[str]:
        """sha256 of every image file this model's weights learnt from, as far as its card records them: a
        fine-tune's own images (``training.data.train_sha256``) and the images the weights had learnt from before
        (``training.train_sha256``: the real images of a training run, and of the weights it started from)."""
        if not isinstance(self.training, dict):
            return set()
        data = self.training.get("data")
        own = data.get("train_sha256") if isinstance(data, dict) else None
        return set(own or []) | set(self.training.get("train_sha256") or [])

    def training_pixel_digests(self) -> set[str]:
        """:func:`cellcount.io.pixel_digest` of the images this model's weights learnt from, as far as its card
        records them (``training.data.train_pixel_sha256``, ``training.train_pixel_sha256``): the same images
        saved again in another form."""
        if not isinstance(self.training, dict):
            return set()
        data = self.training.get("data")
        own = data.get("train_pixel_sha256") if isinstance(data, dict) else None
        return set(own or []) | set(self.training.get("train_pixel_sha256") or [])

    def trained_on(self, images: Iterable[tuple[str, bytes | None]]) -> list[str]:
        """Names of ``images`` ((name, encoded bytes or None) pairs) that this model learnt from: by content
        where the card lists its training images' sha256 and the bytes are given (the file's, else its pixels'
        where the card lists those: :meth:`training_pixel_digests`), else by the file names a
        fine-tune's card lists. A model's error on its own training images says little about new ones. Empty
        when the card records neither."""
        digests, pixels = self.training_digests(), self.training_pixel_digests()
        data = self.training.get("data") if isinstance(self.training, dict) else None
        files = {Path(str(f)).name.lower() for f in (data.get("train_files") or [] if isinstance(data, dict) else [])}

        def seen(name: str, raw: bytes | None) -> bool:
            if not digests or raw is None:
                return Path(name).name.lower() in files
            if hashlib.sha256(raw).hexdigest() in digests:
                return True
            if not pixels:
                return False
            from ..io import pixel_digest  # the same image saved again (grayscale, TIFF, RGB without alpha)

            return pixel_digest(raw) in pixels

        return [name for name, raw in images if seen(name, raw)]

    def trained_on_note(self, seen: Sequence[str], n_images: int, *, advice: bool = True) -> str | None:
        """The warning for :meth:`trained_on`'s ``seen`` among ``n_images`` scored (None when there are none);
        ``advice``: end with "Leave them out to judge it" (not where the caller offers to)."""
        if not seen:
            return None
        from ..io.files import short_name

        shown = ", ".join(short_name(s) for s in seen[:5]) + (f" and {len(seen) - 5} more" if len(seen) > 5 else "")
        which = f"{len(seen)} of these {n_images} images were" if n_images > 1 else "This image was"
        training = self.training if isinstance(self.training, dict) else {}
        base = (training.get("finetuned_from") or {}).get("name")
        data = training.get("data") if isinstance(training.get("data"), dict) else {}
        own = {Path(str(f)).name.lower() for f in data.get("train_files") or []}
        whose = f"{self.name}'s training images"
        if base and not any(Path(s).name.lower() in own for s in seen):
            # a fine-tune's held-out images its base learnt would read as a leak into the fine-tune; found by
            # their pixels they may be its own under another name as well: both said
            whose = f"the images {self.name} learnt from, itself or through {base} (the model it was fine-tuned from)"
        return (f"{which} among {whose} ({shown}): its error on them is likely lower than on images it has not "
                "seen." + (" Leave them out to judge it." if advice else ""))

    def summary(self) -> str:
        """One line: name, kind, architecture, headline validation metrics."""
        m = self.metrics.get("validation", {}) if isinstance(self.metrics, dict) else {}
        parts = [f"{self.name}: {self.output_kind} model ({self.architecture})"]
        if "mae" in m:
            # the cards' validation sets differ in size (the 98 held-out images, or the validation half's 53)
            # never trained on, whichever: the README calls the 98 so, and "validation" read as the 53 alone
            parts.append(f"MAE {m['mae']:.2f}" + (f" on {m['n']} validation images (never trained on)" if m.get("n")
                                                  else " on validation images (never trained on)"))
        if "f1" in m:
            parts.append(f"F1@0.5 {m['f1']:.3f}")
        held = {k: (self.metrics.get(k) or {}) for k in ("holdout_before", "holdout_after", "holdout_finetuned_weights")
                } if isinstance(self.metrics, dict) else {}
        b, a, f = (held.get(k, {}).get("mae") for k in ("holdout_before", "holdout_after", "holdout_finetuned_weights"))
        if isinstance(b, (int, float)) and isinstance(a, (int, float)):
            n = held["holdout_before"].get("n")
            parts.append(f"held-out MAE {b:.2f} (base) -> {a:.2f}" + (f" on {int(n)} image{'s' if int(n) != 1 else ''}" if n else "")
                         + (f"; fine-tuned weights {f:.2f}, not kept" if isinstance(f, (int, float)) else ""))
        if self.description:
            parts.append(self.description)
        note = self.extra.get("guide_note") if isinstance(self.extra, dict) else None
        if note and "quality flag" not in (self.description or ""):  # its caveat, unless the description has it
            parts.append(str(note).replace("**", ""))
        return " - ".join(parts)


def _check_number(where: str, value: Any, kind: type, lo: float, hi: float) -> None:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    ok_type = is_int if kind is int else (is_int or isinstance(value, float))
    if not ok_type or not math.isfinite(value) or not lo <= value <= hi:
        what = "a whole number" if kind is int else "a number"
        raise ValueError(f"{where} must be {what} within [{lo:g}, {hi:g}], got {value!r}")


def validate_card(card: ModelCard, folder: str | Path | None = None) -> None:
    """Check a card against its schema before anything is built from it.

    Checks: text fields are text; ``output_kind`` is one of :data:`OUTPUT_KINDS`; ``kwargs`` has only
    :data:`ARCHITECTURE_KWARGS` keys with the right types and ranges and a deepest width of at most
    :data:`MAX_DEEPEST_WIDTH`; :data:`CARD_NUMBERS` and :data:`EXTRA_NUMBERS` in range, with
    ``2 * tile_overlap < tile_size``; ``normalization`` and ``postprocess`` hold valid settings; and
    ``weights_file`` names a file inside ``folder`` (when given).

    Raises
    ------
    ModelCardError
        The first problem found, naming the field and the accepted values.
    """
    from ..errors import ModelCardError

    name = card.name if isinstance(card.name, str) else "?"
    try:
        _validate(card, folder)
    except (ValueError, TypeError) as err:
        raise ModelCardError(f"model card of {name!r} is invalid: {err}") from err


def _validate(card: ModelCard, folder: str | Path | None) -> None:
    for field_name in ("name", "architecture", "output_kind", "weights_file", "sha256", "description"):
        if not isinstance(getattr(card, field_name), str):
            raise ValueError(f"{field_name} must be text, got {getattr(card, field_name)!r}")
    if not card.name:
        raise ValueError("name is empty")
    if card.output_kind not in OUTPUT_KINDS:
        raise ValueError(f"output_kind must be one of {', '.join(OUTPUT_KINDS)}, got {card.output_kind!r}")
    for field_name in ("kwargs", "normalization", "postprocess", "training", "metrics", "extra"):
        if not isinstance(getattr(card, field_name), dict):
            raise ValueError(f"{field_name} must be an object, got {type(getattr(card, field_name)).__name__}")
    unknown = sorted(set(card.kwargs) - set(ARCHITECTURE_KWARGS))
    if unknown:
        raise ValueError(f"unknown kwargs {unknown}; valid: {', '.join(ARCHITECTURE_KWARGS)}")
    for key, value in card.kwargs.items():
        spec = ARCHITECTURE_KWARGS[key]
        if spec[0] == "choice":
            if not isinstance(value, (bool, str)) or value not in spec[1]:
                raise ValueError(f"kwargs.{key} must be one of {', '.join(map(str, spec[1]))}, got {value!r}")
        elif spec[0] is bool:
            if not isinstance(value, bool):
                raise ValueError(f"kwargs.{key} must be true or false, got {value!r}")
        elif spec[0] is str:
            if not isinstance(value, str) or (spec[1] is not None and value not in spec[1]):
                allowed = "text" if spec[1] is None else " or ".join(spec[1])
                raise ValueError(f"kwargs.{key} must be {allowed}, got {value!r}")
        else:
            _check_number(f"kwargs.{key}", value, *spec)
    deepest = card.kwargs.get("base_width", 16) * 2 ** card.kwargs.get("depth", 4)
    if deepest > MAX_DEEPEST_WIDTH:
        raise ValueError(
            f"kwargs base_width * 2**depth = {deepest:,} channels, above the limit of {MAX_DEEPEST_WIDTH}"
        )
    for key, spec in CARD_NUMBERS.items():
        _check_number(key, getattr(card, key), *spec)
    if not 2 * card.tile_overlap < card.tile_size:
        raise ValueError(f"tile_overlap ({card.tile_overlap}) must be less than half of tile_size ({card.tile_size})")
    for key, spec in EXTRA_NUMBERS.items():
        if key in card.extra:
            _check_number(f"extra.{key}", card.extra[key], *spec)
    if "fast_tile_size" in card.extra and not 2 * card.tile_overlap < card.extra["fast_tile_size"]:
        raise ValueError(f"tile_overlap ({card.tile_overlap}) must be less than half of extra.fast_tile_size "
                         f"({card.extra['fast_tile_size']})")
    _validate_normalization(card.normalization)
    from ..errors import ParameterError
    from ..params import resolve_params

    try:
        resolve_params(None, card.postprocess)
    except ParameterError as err:
        raise ValueError(f"postprocess: {err}") from err
    _validate_weights_file(card.weights_file, folder)


def _validate_normalization(norm: dict[str, Any]) -> None:
    from ..io import GRAYSCALE_MODES

    unknown = sorted(set(norm) - {"low_pct", "high_pct", "invert", "grayscale"})
    if unknown:
        raise ValueError(f"unknown normalization keys {unknown}; valid: low_pct, high_pct, invert, grayscale")
    for key in ("low_pct", "high_pct"):
        if key in norm:
            _check_number(f"normalization.{key}", norm[key], float, 0.0, 100.0)
    if not norm.get("low_pct", 0.0) < norm.get("high_pct", 100.0):
        raise ValueError("normalization.low_pct must be below normalization.high_pct")
    if norm.get("invert", "auto") not in ("auto", True, False, None):
        raise ValueError(f"normalization.invert must be \"auto\", true or false, got {norm['invert']!r}")
    if norm.get("grayscale", "mean") not in GRAYSCALE_MODES:
        raise ValueError(f"normalization.grayscale must be one of {', '.join(GRAYSCALE_MODES)}, "
                         f"got {norm['grayscale']!r}")


def _validate_weights_file(weights_file: str, folder: str | Path | None) -> None:
    if not weights_file or "\\" in weights_file or Path(weights_file).is_absolute() or ".." in Path(weights_file).parts:
        raise ValueError(f"weights_file must be a file name inside the model folder, got {weights_file!r}")
    if folder is not None:
        root = Path(folder).resolve()
        target = (root / weights_file).resolve()
        if target == root or root not in target.parents:
            raise ValueError(f"weights_file {weights_file!r} points outside the model folder {folder}")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_card(folder: str | Path) -> ModelCard:
    """Read and validate ``folder/card.json`` (see :func:`validate_card`).

    Raises
    ------
    ModelCardError
        Not readable JSON, not an object, missing required keys, or a schema violation.
    """
    from ..errors import ModelCardError

    path = Path(folder) / CARD_FILE
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        if not isinstance(data, dict):
            raise TypeError("the card must be a JSON object")
        card = ModelCard.from_dict(data)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError, RecursionError) as err:
        raise ModelCardError(f"model card {path} is invalid: {err}") from err
    validate_card(card, folder)
    return card


def finite_json(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None: a card is strict JSON (an interval of one
    held-out image is undefined, and ``NaN`` is no JSON value for other readers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def write_card(card: ModelCard, folder: str | Path) -> Path:
    path = Path(folder) / CARD_FILE
    path.write_text(json.dumps(finite_json(card.to_dict()), indent=2, sort_keys=False, allow_nan=False) + "\n",
                    encoding="utf-8")
    return path
