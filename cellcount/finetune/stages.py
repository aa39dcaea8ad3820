"""What the stages of a fine-tune hand each other (:func:`cellcount.finetune.core.finetune` runs them)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .fit import NOTE_PREFIX, FinetuneProgress

if TYPE_CHECKING:
    from ..groundtruth import GroundTruth
    from ..models import ModelCard
    from ..models.base import NetModel


@dataclass
class Run:
    """What every stage may tell the user: progress reports, and the notes kept for the end."""

    sink: Callable[[FinetuneProgress], None]
    notes: list[str] = field(default_factory=list)  # for the user at the end (CLI, Train page), not only in passing
    last: FinetuneProgress = field(default_factory=lambda: FinetuneProgress("prepare"))

    def report(self, p: FinetuneProgress) -> None:
        self.last = p
        self.sink(p)

    def note(self, text: str) -> None:
        """Kept for the end, and said now at the stage the run is in (a note while re-tuning reported as
        "prepare" would send the Train page's progress bar back to the start)."""
        self.notes.append(text)
        self.sink(dataclasses.replace(self.last, loss=math.nan, message=f"{NOTE_PREFIX}{text}"))  # no second loss point


@dataclass
class AnnotatedSet:
    """The user's annotated images as read, and which of them train and which are held out."""

    labelled: list[tuple[str, bytes, GroundTruth]]
    source: str
    skipped: list[str]  # images left out: named in the notes
    names: list[str]
    gts: list[GroundTruth]
    images: dict[int, np.ndarray]
    train_idx: list[int]
    held_idx: list[int]

    @property
    def train_gts(self) -> list[GroundTruth]:
        return [self.gts[i] for i in self.train_idx]


@dataclass
class Base:
    """The base model and the settings it reads the user's images with (the fine-tuned model keeps its card's)."""

    model: NetModel
    kind: str
    params: Any
    size_model: Any


@dataclass
class Reading:
    """How the new model reads the set: its background and object size, decided once for it or per image."""

    background: str
    size: str
    diameter: float | None
    fixed: dict[str, Any]  # settings decided once for the user's set, kept in the new card
    size_note: str
    spread: tuple[float, float] | None
    own_sizes: dict[int, float | None]  # each training image's own size, when measured (size "image")


@dataclass
class Trained:
    """The trained network and how its training ran."""

    net: Any
    n_steps: int
    train_s: float
    losses: list[float]
    used: dict[str, Any]
    loss_cfg: dict[str, Any]
    scale_range: tuple[float, float]
    elastic_p: float


@dataclass
class Tuned:
    """The new model with its re-tuned postprocessing, and what it counted on its training images."""

    new: NetModel
    params: Any
    train_pairs: list
    train_rep: Any  # what it counted on its training images with ``params``
    settings_kept: bool  # re-tuned settings that counted unseen training images no better: the base's stay
    gain_text: str | None  # a density fine-tune's large count gain, said once the saved weights are known


@dataclass
class Scores:
    """The held-out figures of the base (``before``) and of the new model (``after``)."""

    before: dict[str, float]
    after: dict[str, float]
    paired: dict[str, float]
    settings_only: dict[str, float]
    counts: list[dict[str, Any]]
    backends: dict[str, str] = field(default_factory=dict)
    """What each model's network ran in for these figures ("before", "after"): backends near a tie may count
    an object or more apart, so a recount reproduces them with the same one (``count --backend``)."""


@dataclass
class Verdict:
    """Whether the base's weights are kept, and what is saved then: the network, its card, its novelty reference."""

    kept_base: bool
    scores: Scores  # ``after``: the saved model's figures (the base's where its weights are kept)
    rejected: dict[str, float]  # the fine-tuned weights' figures where they were not kept
    net: Any
    card: ModelCard
    novelty: tuple[Any, dict[str, Any]] | None  # the novelty reference to save with the model, its card entry
    kept_worse: bool = False  # fine-tuned weights saved at the user's request although clearly worse than the base's
