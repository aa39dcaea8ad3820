"""Teach a model the user's cells: fine-tune a shipped (or user) model on a few annotated images.

``python -m cellcount.finetune --from MODEL --data DIR --name NEW [--minutes 5 | --steps N] [--holdout 0.25]``

The data folder is anything :func:`cellcount.groundtruth.load_labelled_folder` reads: instance label
images, binary masks, dot images or point CSVs. Dots alone are enough for every model kind: a density
target comes straight from the dots, and segmentation targets are the base model's own segmentation
corrected by the dots (:func:`labels_from_dots`). The input is decided once for the set and kept in
the new card: its background (:func:`set_background`) and one object size (:func:`set_diameter`). Part of
the images is held out; the new model's card records the base model, a fingerprint of the data, the images
used, steps and time, the postprocessing re-tuned on the training images, and count metrics on the held-out
images before (base model) and after. The model is written to the user models folder (:func:`cellcount.models.user_models_dir`) and is usable
by name everywhere.

The steps live in submodules: ``data`` (reading and holding out), ``holdout`` (which images train and
which score), ``reading`` (one background and one size for the set), ``targets``, ``fit`` (the training loop),
``tuning`` (postprocessing re-tuned after training), ``flag`` (the new quality flag), ``verdict`` (before
against after), ``record`` (the new card), ``publish`` (name and folder), ``stages`` (what the steps hand each
other), ``core`` (:func:`finetune`, which runs them) and ``cli``.
"""

from __future__ import annotations

from .cli import build_parser, main
from .core import (
    DEFAULT_MAX_STEPS,
    DEFAULT_MINUTES,
    DOTS_ON_MASK_NOTE,
    FEW_STEPS,
    MIN_IMAGE_PX,
    MIN_TRAIN_S,
    FinetuneResult,
    finetune,
)
from .data import DEFAULT_HOLDOUT, MIN_TRAIN_IMAGES, LabelledItems, data_fingerprint, holdout_asked, split_holdout
from .fit import (
    BF16_MIN_GAIN,
    DOTS_ELASTIC_P,
    DOTS_SCALE_RANGE,
    ELASTIC_P,
    INTENSITY_JITTER,
    PRECISIONS,
    SCALE_RANGE,
    Cancelled,
    FinetuneProgress,
)
from .flag import (
    MIN_FLAG_IMAGES,
    MIN_HELDOUT_FOR_FLAG,
    MIN_NOVELTY_IMAGES,
    MIN_NOVELTY_LIMIT,
    OBJECT_SHARE_LIMITS,
    apart_digits,
    calibrate_flag,
    heldout_error_bound,
    heldout_flag_reason,
    own_novelty,
    told_apart,
)
from .holdout import FEW_TRAIN_IMAGES
from .publish import WINDOWS_RESERVED, check_new_name, free_name
from .reading import (
    DOT_HIT_MIN,
    SET_AGREEMENT,
    SIZE_SPREAD,
    SPACING_NOTE,
    SPACING_WARN,
    annotated_diameter,
    base_misses_dots,
    dot_spacing,
    measure_annotated,
    one_magnification,
    reading_note,
    set_background,
    set_diameter,
    set_misses_dots,
    several_sizes_note,
    size_spread,
    spacing_note,
)
from .record import PEAK_GAP_SHARE, backends_note
from .targets import DOT_DISC, labels_from_dots, training_item
from .tuning import CROSS_CHECK_PASSES, MIN_CROSS_CHECK, TUNE_PASSES
from .verdict import (
    GAIN_NOTE,
    OUTLINE_DROP,
    WORSE_OBJECTS,
    WORSE_SHARE,
    holdout_verdict,
    model_kind,
    outline_note,
    settings_gain_note,
    worse_than_base,
)

__all__ = [
    "backends_note",
    "BF16_MIN_GAIN",
    "CROSS_CHECK_PASSES",
    "Cancelled",
    "DEFAULT_HOLDOUT",
    "DEFAULT_MAX_STEPS",
    "DEFAULT_MINUTES",
    "MIN_IMAGE_PX",
    "DOTS_ELASTIC_P",
    "DOTS_ON_MASK_NOTE",
    "DOTS_SCALE_RANGE",
    "DOT_DISC",
    "DOT_HIT_MIN",
    "ELASTIC_P",
    "FEW_STEPS",
    "FEW_TRAIN_IMAGES",
    "FinetuneProgress",
    "FinetuneResult",
    "GAIN_NOTE",
    "INTENSITY_JITTER",
    "LabelledItems",
    "MIN_CROSS_CHECK",
    "MIN_FLAG_IMAGES",
    "MIN_HELDOUT_FOR_FLAG",
    "MIN_NOVELTY_IMAGES",
    "MIN_NOVELTY_LIMIT",
    "MIN_TRAIN_IMAGES",
    "MIN_TRAIN_S",
    "OBJECT_SHARE_LIMITS",
    "OUTLINE_DROP",
    "PEAK_GAP_SHARE",
    "PRECISIONS",
    "SCALE_RANGE",
    "SET_AGREEMENT",
    "SIZE_SPREAD",
    "SPACING_NOTE",
    "SPACING_WARN",
    "TUNE_PASSES",
    "WINDOWS_RESERVED",
    "WORSE_OBJECTS",
    "WORSE_SHARE",
    "annotated_diameter",
    "apart_digits",
    "base_misses_dots",
    "build_parser",
    "calibrate_flag",
    "check_new_name",
    "data_fingerprint",
    "dot_spacing",
    "finetune",
    "free_name",
    "heldout_error_bound",
    "heldout_flag_reason",
    "holdout_asked",
    "holdout_verdict",
    "labels_from_dots",
    "main",
    "measure_annotated",
    "model_kind",
    "one_magnification",
    "outline_note",
    "own_novelty",
    "reading_note",
    "set_background",
    "set_diameter",
    "set_misses_dots",
    "settings_gain_note",
    "several_sizes_note",
    "size_spread",
    "spacing_note",
    "split_holdout",
    "told_apart",
    "training_item",
    "worse_than_base",
]
