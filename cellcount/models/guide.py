"""Which model for which images: a plain summary of a model card, for people choosing a model.

Everything comes from the card (output kind, normalisation, training data, validation metrics) and from
the pipeline's size constants; nothing is measured here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..io import readable_paths
from .card import ModelCard

FEW_STEPS = 100
"""A fine-tune of fewer training steps learnt little (vgg_cells' fine-tunes gained most within the first 300, the
benchmarks' ran 1500-3000): its run notes it, and the model guide says it beside its held-out figures."""
WEIGHTS_LEARNT = 0.8
"""A fine-tune's held-out MAE below this share of its base's weights with its settings: its weights learnt, not only
its settings, however few its steps."""

__all__ = ["ModelGuide", "model_guide", "strengths"]


@dataclass(frozen=True)
class ModelGuide:
    """What a model does, on which images, how well, as plain values.

    Attributes
    ----------
    name : str
        The model's name.
    output : str
        What it gives: outlines and areas (mask models) or a count only (density models).
    images : str
        The images it reads well, from its normalisation and training data.
    size_px : tuple of float or None
        (smallest, largest) nucleus diameter in px it handles with its default settings (nuclei outside its
        training size are resized when ``auto_nucleus_size`` is on); None when it has no trained size.
    trained_size_px : float or None
        The nucleus diameter it was trained at.
    set_size_px : float or None
        A fine-tuned model's one object size for the user's set (its card's fixed ``nucleus_diameter_px``):
        it reads images at that magnification; None for models that take any size.
    auto_size : bool
        Whether its default settings estimate the nucleus size and resize the image to its trained size.
    validation : dict
        The card's validation summary with its default settings (``n``, ``mae``, ``mae_ci_low`` ...), or {}.
    validation_fixed_size : dict
        The same with ``auto_nucleus_size`` off, or {}.
    trained_on : str
        The training data, as the card states it.
    note : str
        What else to know when choosing it (the card's ``extra["guide_note"]``), or "".
    holdout : dict
        A fine-tuned model's scores on the user's held-out images (``holdout_after``), or {}.
    holdout_before : dict
        Its base model's scores on the same images (``holdout_before``), or {}.
    finetune_steps : int or None
        A fine-tuned model's training steps (None for other models, and for one that kept its base's weights).
    holdout_settings_only : dict
        Its base's weights with its settings on the same images (``holdout_base_weights_new_settings``), or {}:
        what its settings alone did.
    """

    name: str
    output: str
    images: str
    size_px: tuple[float, float] | None
    trained_size_px: float | None
    auto_size: bool
    validation: dict[str, Any]
    validation_fixed_size: dict[str, Any]
    trained_on: str
    note: str = ""
    holdout: dict[str, Any] = field(default_factory=dict)
    holdout_before: dict[str, Any] = field(default_factory=dict)
    set_size_px: float | None = None
    finetune_steps: int | None = None
    holdout_settings_only: dict[str, Any] = field(default_factory=dict)

    def few_steps_text(self) -> str:
        """"trained for only 8 steps ..." for a fine-tune of fewer than :data:`FEW_STEPS` steps, else ""."""
        if self.finetune_steps is None or self.finetune_steps >= FEW_STEPS:
            return ""
        alone, after = self.holdout_settings_only.get("mae"), self.holdout.get("mae")
        if alone is not None and after is not None and after < WEIGHTS_LEARNT * alone:  # its weights did learn
            return (f"trained for only {self.finetune_steps} step(s): more steps may count better (fine-tunes gain "
                    "most over hundreds of steps); check it on more of your images")
        return (f"trained for only {self.finetune_steps} step(s), so it learnt little beyond its re-tuned settings "
                "(fine-tunes gain most over hundreds of steps): check it on more of your images")

    def size_text(self) -> str:
        """The object sizes it reads, in words (the guide's "Nucleus size" column)."""
        if self.size_px is None:
            return "Any size (set the minimum and maximum area)"
        lo, hi = self.size_px
        if self.set_size_px is not None:
            return (f"{lo:.0f}–{hi:.0f} px across (fine-tuned on objects {self.set_size_px:.1f} px across; set "
                    "Nucleus diameter for images at another magnification)")
        how = "others are resized to it" if self.auto_size else "set Nucleus diameter for other sizes"
        return f"{lo:.0f}–{hi:.0f} px across (trained at {self.trained_size_px:.0f} px; {how})"


def _section(card: ModelCard, key: str) -> dict[str, Any]:
    m = card.metrics.get(key) if isinstance(card.metrics, dict) else None
    return dict(m) if isinstance(m, dict) else {}


def model_guide(card: ModelCard) -> ModelGuide:
    """Summarise ``card`` for the "which model for which images" guide (see :class:`ModelGuide`)."""
    from ..sizing import MAX_SCALE, MIN_SCALE, RESCALE_TOLERANCE, reference_diameter

    trained = bool(card.training) or card.sha256 != ""
    if card.output_kind == "density":
        output = "Counts only (a density map's integral), no outlines"
    else:
        output = "Outlines, areas and counts"
    if not trained:
        output += "; a classical threshold (no training), a quick baseline"
    norm = card.normalization if isinstance(card.normalization, dict) else {}
    if norm.get("grayscale") == "stain":
        # the stain is how colour is read, not a promise: the shipped models learnt DSB's mostly fluorescent nuclei
        images = "Fluorescence; brightfield and H&E read by their stain, counted less reliably (check, or fine-tune)"
    elif str(norm.get("invert", "auto")) == "auto":
        images = "Fluorescence; bright backgrounds are inverted first (colour is averaged)"
    else:
        images = "Fluorescence (grey or averaged colour)"
    invert = card.postprocess.get("invert")
    if isinstance(card.training, dict) and card.training.get("finetuned_from") and (
            not card.training.get("kept_base_weights") or invert is not None):
        # a fine-tune decided the background once for the user's set (or left it to each image of a mixed set); one
        # that kept its base's weights reads images as the base does: as its set's, where the base was a fine-tune
        # that fixed it (else a second round could read "Fluorescence" for a model of H&E)
        images = ("Bright-background images (brightfield, H&E) like the set it was fine-tuned on" if invert is True
                  else "Dark-background images (fluorescence) like the set it was fine-tuned on" if invert is False
                  else "Images like the set it was fine-tuned on")
    reference = reference_diameter(card) if trained else None
    size: tuple[float, float] | None = None
    auto = bool(card.postprocess.get("auto_nucleus_size"))
    fixed = card.postprocess.get("nucleus_diameter_px")
    finetuned = isinstance(card.training, dict) and bool(card.training.get("finetuned_from"))
    set_size = float(fixed) if finetuned and isinstance(fixed, (int, float)) and fixed > 0 and not auto else None
    if set_size is not None:  # images at another magnification need their own nucleus_diameter_px
        size = (set_size / RESCALE_TOLERANCE, set_size * RESCALE_TOLERANCE)
    elif reference is not None:
        if auto:
            size = (reference * MIN_SCALE, reference * MAX_SCALE)
        else:
            size = (reference / RESCALE_TOLERANCE, reference * RESCALE_TOLERANCE)
    return ModelGuide(
        name=card.name,
        output=output,
        images=images,
        size_px=size,
        trained_size_px=reference,
        auto_size=auto,
        validation=_section(card, "validation"),
        validation_fixed_size=_section(card, "validation_fixed_size"),
        trained_on=_trained_on(card),
        note=str(card.extra.get("guide_note", "")),
        holdout=_section(card, "holdout_after"),
        holdout_before=_section(card, "holdout_before"),
        set_size_px=set_size,
        finetune_steps=_finetune_steps(card),
        holdout_settings_only=_section(card, "holdout_base_weights_new_settings"),
    )


def _finetune_steps(card: ModelCard) -> int | None:
    """The training steps of a fine-tune whose weights the model kept, else None."""
    t = card.training if isinstance(card.training, dict) else {}
    steps = t.get("steps")
    if not t.get("finetuned_from") or t.get("kept_base_weights") or not isinstance(steps, int):
        return None
    return steps


def _trained_on(card: ModelCard) -> str:
    """The card's training data in words: as stated, or a fine-tune's data record summarised."""
    data = card.training.get("data", "") if isinstance(card.training, dict) else ""
    if not isinstance(data, dict):
        return readable_paths(data)
    n_train, n_held = len(data.get("train_files") or []), len(data.get("holdout_files") or [])
    kinds = ", ".join(str(k) for k in data.get("annotation") or [])
    text = f"{data.get('source', 'your images')}: {n_train} trained on, {n_held} held out"
    return text + (f" (annotations: {kinds})" if kinds else "")


def strengths(guides: list[ModelGuide]) -> dict[str, list[str]]:
    """What sets each model apart among ``guides``, from their validation figures: the lowest count error and
    the best outlines. Only figures measured on the same number of images (the set most cards share) are
    compared. Never speed: each card timed its model on the machine and backend that evaluated it (0.43 and 2.9
    s/Mpx for the same network size), so the cards' times rank the machines, not the models."""
    out: dict[str, list[str]] = {g.name: [] for g in guides}
    sizes = [g.validation.get("n") for g in guides if g.validation.get("n")]
    common = max(set(sizes), key=sizes.count) if sizes else None
    peers = [g for g in guides if g.validation.get("n") == common]

    def best(key: str, text: str, *, low: bool) -> None:
        scored = sorted((g.validation[key], g.name) for g in peers if isinstance(g.validation.get(key), (int, float)))
        if len(scored) >= 2:
            (value, name), (runner_up, _) = (scored[0], scored[1]) if low else (scored[-1], scored[-2])
            out[name].append(text + close(key, name, runner_up))

    def close(key: str, name: str, runner_up: float) -> str:
        """A ranking the figures cannot carry is said to be one (an MAE inside the next model's interval, or an
        F1 within 0.005, would otherwise read as a promise)."""
        v = next(g.validation for g in peers if g.name == name)
        lo, hi = v.get("mae_ci_low"), v.get("mae_ci_high")
        if key == "mae" and isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and lo <= runner_up <= hi:
            return ", though not clearly: the next model's is inside its 95% interval"
        if key == "f1" and abs(v[key] - runner_up) < 0.005:
            return f", by less than 0.005 ({v[key]:.3f} against {runner_up:.3f})"
        return ""

    best("mae", "lowest measured count error", low=True)
    best("f1", "best outlines", low=False)
    return out
