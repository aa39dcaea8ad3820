"""Model cards: everything needed to rebuild, run and judge a model, stored as ``card.json``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CARD_FILE = "card.json"
WEIGHTS_FILE = "weights.safetensors"


@dataclass
class ModelCard:
    """Description of a model on disk (``weights/<name>/card.json``).

    ``postprocess`` holds default postprocessing parameters (field names of
    :class:`cellcount.pipeline.CountParams`); ``postprocess_tuned_on`` says which data they were tuned on.
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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        known = {f.name for f in dataclasses.fields(cls)}
        extra = {k: v for k, v in data.items() if k not in known}
        if extra:
            logger.warning("card %s has unknown keys %s (kept under 'extra')", data.get("name"), sorted(extra))
        kept = {k: v for k, v in data.items() if k in known}
        kept.setdefault("extra", {}).update(extra)
        return cls(**kept)

    def summary(self) -> str:
        """One line: name, kind, architecture, headline validation metrics."""
        m = self.metrics.get("validation", {}) if isinstance(self.metrics, dict) else {}
        parts = [f"{self.name}: {self.output_kind} model ({self.architecture})"]
        if "mae" in m:
            parts.append(f"val MAE {m['mae']:.2f}")
        if "f1" in m:
            parts.append(f"F1@0.5 {m['f1']:.3f}")
        if self.description:
            parts.append(self.description)
        return " - ".join(parts)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_card(folder: str | Path) -> ModelCard:
    from ..errors import WeightsIntegrityError

    path = Path(folder) / CARD_FILE
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        if not isinstance(data, dict):
            raise TypeError("the card must be a JSON object")
        return ModelCard.from_dict(data)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as err:
        raise WeightsIntegrityError(f"model card {path} is invalid: {err}") from err


def write_card(card: ModelCard, folder: str | Path) -> Path:
    path = Path(folder) / CARD_FILE
    path.write_text(json.dumps(card.to_dict(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path
