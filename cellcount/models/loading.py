"""Find, load and save models. Weights are safetensors (no pickle) and checked against the card's sha256."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import weakref
from pathlib import Path

from ..errors import CellcountError, ModelCardError, ModelNotFoundError, WeightsIntegrityError
from .base import ClassicalModel, CountModel, NetModel, weights_bytes
from .card import CARD_FILE, ModelCard, read_card, sha256_file, write_card

logger = logging.getLogger(__name__)

def _shipped_weights_dir() -> Path:
    """The shipped model folders: inside the installed package (setup.py maps the checkout's weights/ to
    cellcount/_weights), else the checkout's weights/ (running from the source tree)."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "_weights"
    return installed if installed.is_dir() else package.parent / "weights"


DEFAULT_WEIGHTS_DIR = _shipped_weights_dir()
CLASSICAL_NAME = "classical-otsu"

BASELINE_CHECK = ("a classical threshold baseline with no calibrated quality flag: check its count by eye, or use a "
                  "trained model")

CLASSICAL_CARD = ModelCard(
    name=CLASSICAL_NAME,
    architecture="otsu",
    output_kind="mask",
    description="Non-learned baseline: Otsu threshold + the same postprocessing as the mask models.",
    postprocess={
        "threshold": 0.5,
        "opening_radius_px": 1,
        "closing_radius_px": 0,
        "fill_holes": True,
        "split_mode": "distance",
        "min_distance_px": 5,
        "min_area_px": 15,
    },
    postprocess_tuned_on="defaults chosen by hand (not tuned)",
    license="MIT",
    # its "probability" is the image's intensity rescaled around Otsu's level, not a confidence (the
    # uncertain-pixels signal called every image uncertain), and no rule was calibrated for it: every count
    # says so, with the other signals' reasons beside it
    extra={"quality": {"rule": {"max_uncertain_fraction": None, "always": BASELINE_CHECK}},
           "guide_note": "a threshold with no learned confidence and no calibrated quality flag: check its counts"},
)


DEFAULT_MODEL = "unet-mask-varied"
"""The model used when none is named (CLI ``count`` without ``--model``, the app's preselection): unet-mask's
network trained on a GPU on DSB plus generated images of the range users bring, which counts DSB's validation
half better than unet-mask (MAE 3.58 against 3.79, F1@0.5 0.846 against 0.833; docs/gpu_training.md). Not the
faster ``multihead-unet``: its density head reads the same features as its segmentation, so on unfamiliar
images the two counts agree even when both are wrong and the quality flag stays silent (docs/quality.md)."""
FALLBACK_MODEL = "unet-mask"  # the same network trained on DSB alone


def default_model_name(weights_dir: str | Path | None = None) -> str:
    """:data:`DEFAULT_MODEL` when its weights are present, else :data:`FALLBACK_MODEL`, else the first
    model listed."""
    names = list_models(weights_dir)
    return next((n for n in (DEFAULT_MODEL, FALLBACK_MODEL) if n in names), names[0])


DEFAULT_SIZE_MODEL = "unet-density"
"""The size model of a mask model whose card names none (``extra.size_model``): a density model integrates
its map instead of cutting objects, so oversized textured nuclei are still counted about once each."""


def size_model_name(model: CountModel, params=None) -> str | None:
    """The name of the density model that estimates nucleus sizes for ``model`` (its card's
    ``extra.size_model``, else :data:`DEFAULT_SIZE_MODEL`); None when ``params`` (a CountParams) need none
    (:func:`cellcount.sizing.needs_size_model`)."""
    from ..sizing import needs_size_model

    if model.output_kind != "mask" or (params is not None and not needs_size_model(model, params)):
        return None
    return str(model.card.extra.get("size_model", DEFAULT_SIZE_MODEL))


_SIZE_MODELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_SIZE_MODELS_LOCK = threading.Lock()


def size_model_for(model: CountModel, params=None) -> CountModel | None:
    """The size model :func:`size_model_name` names (None when none is needed), for
    :func:`cellcount.pipeline.predict`'s ``size_model``.

    Loaded once per ``model`` object and kept with it (it goes when the model goes), so a loop of
    ``count_image`` calls, or threads sharing one model, share one size model and its fast path.
    """
    from ..errors import CellcountError, ParameterError

    name = size_model_name(model, params)
    if name is None:
        return None
    with _SIZE_MODELS_LOCK:
        held = _SIZE_MODELS.get(model)
        if held is not None and held.name == name:
            return held
        try:
            sized = load_model(name)
        except CellcountError as err:
            raise ParameterError(f"auto_nucleus_size needs the size model {name!r}, which did not load: {err}") from err
        _SIZE_MODELS[model] = sized
        return sized


USER_MODELS_ENV = "CELLCOUNT_MODELS_DIR"


def user_models_dir() -> Path:
    """Where models the user trains (``cellcount.finetune``) live: ``$CELLCOUNT_MODELS_DIR``, else
    ``$XDG_DATA_HOME/cellcount/models``, else ``~/.local/share/cellcount/models``. Read at each call, so
    a changed environment takes effect without a restart."""
    import os

    env = os.environ.get(USER_MODELS_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cellcount" / "models"


def is_user_model(name: str) -> bool:
    """Whether ``name`` is one of the user's models (a folder in :func:`user_models_dir`, not a link to one
    elsewhere), not a shipped one: what :func:`remove_user_model` deletes."""
    folder = _dirs_in(user_models_dir()).get(name)
    return (folder is not None and not folder.is_symlink() and name != CLASSICAL_NAME
            and name not in _dirs_in(DEFAULT_WEIGHTS_DIR))


def remove_user_model(name: str) -> Path:
    """Delete the user's model ``name``: its folder in :func:`user_models_dir` (weights, card and all).
    Returns the folder removed. ParameterError for a shipped model, the baseline or a name that is no user
    model (nothing else is ever deleted)."""
    import os
    import shutil

    from ..errors import ParameterError

    if name == CLASSICAL_NAME or name in _dirs_in(DEFAULT_WEIGHTS_DIR):
        raise ParameterError(f"{name} is a shipped model: only models you trained can be removed")
    folder = _dirs_in(user_models_dir()).get(name)
    if folder is not None and folder.is_symlink():
        raise ParameterError(f"{folder} is a link to a folder elsewhere: remove the link yourself if you mean to")
    if folder is None:  # "MY CELLS" for "my cells": named, never guessed and deleted
        same = [n for n in _dirs_in(user_models_dir()) if n.casefold() == name.casefold()]
        hint = f" (did you mean {same[0]!r}? model names are case-sensitive)" if same else ""
        raise ParameterError(f"{name} is not one of your models (in {user_models_dir()}){hint}; "
                             "`python -m cellcount models` lists them")
    # out of the list at once (a hidden name), then deleted: a failure halfway leaves no half model listed
    gone = folder.with_name(f".{name}.removed-{os.getpid()}")
    folder.rename(gone)
    shutil.rmtree(gone, ignore_errors=True)
    return folder


def _dirs_in(folder: Path) -> dict[str, Path]:
    try:
        if not folder.is_dir():
            return {}
        # hidden folders are models still being written (cellcount.finetune saves into one, then renames it)
        return {p.name: p for p in sorted(folder.iterdir()) if not p.name.startswith(".") and (p / CARD_FILE).is_file()}
    except OSError as err:  # an unreadable user folder must not hide the shipped models
        logger.warning("cannot list models in %s: %s", folder, err)
        return {}


def _model_dirs(weights_dir: Path) -> dict[str, Path]:
    """Shipped models, then the user's (a user model never shadows a shipped name)."""
    shipped = _dirs_in(weights_dir)
    user = {k: v for k, v in _dirs_in(user_models_dir()).items() if k not in shipped and k != CLASSICAL_NAME}
    return {**shipped, **user}


def shadowed_user_models(weights_dir: str | Path | None = None) -> list[Path]:
    """The user's model folders that :func:`list_models` passes over: named like a shipped model or the baseline,
    which keep their names."""
    wd = Path(weights_dir) if weights_dir is not None else DEFAULT_WEIGHTS_DIR
    shipped = _dirs_in(wd)
    return [p for name, p in _dirs_in(user_models_dir()).items() if name in shipped or name == CLASSICAL_NAME]


def list_models(weights_dir: str | Path | None = None) -> list[str]:
    """Names accepted by :func:`load_model`: the shipped models in ``weights_dir``, the user's models
    (:func:`user_models_dir`) and the baseline. A ``weights_dir`` that is no folder raises
    :class:`ModelNotFoundError` rather than listing none of the shipped models."""
    wd = Path(weights_dir) if weights_dir is not None else DEFAULT_WEIGHTS_DIR
    if weights_dir is not None and not wd.is_dir():
        raise ModelNotFoundError(f"weights folder not found: {wd} (leave it out for the shipped models)")
    return [*_model_dirs(wd), CLASSICAL_NAME]


def model_card(name_or_path: str | Path, *, weights_dir: str | Path | None = None) -> ModelCard:
    """A model's card (as :func:`load_model` would use it) without loading or verifying its weights."""
    if str(name_or_path) == CLASSICAL_NAME:
        return CLASSICAL_CARD
    folder = _model_folder(name_or_path, weights_dir)
    return _as_listed(read_card(folder), folder, weights_dir)


def _as_listed(card: ModelCard, folder: Path, weights_dir: str | Path | None) -> ModelCard:
    """``card`` named as its folder is listed (:func:`list_models`): a model folder copied or renamed by hand keeps
    the card of the old name, which would otherwise name the old model in every count made with the new one."""
    wd = Path(weights_dir) if weights_dir is not None else DEFAULT_WEIGHTS_DIR
    listed = _model_dirs(wd).get(folder.name)
    if card.name == folder.name or listed is None or listed.resolve() != folder.resolve():
        return card
    logger.info("the model folder %s holds a card named %r: the model is named %r, as listed", folder, card.name,
                folder.name)
    return dataclasses.replace(card, name=folder.name)


def with_base_training(card: ModelCard) -> ModelCard:
    """``card`` with the training images of the weights it was fine-tuned from, for a fine-tune whose card does not
    list them (made before cards did): its base's card, found by name, when its sha256 is the one recorded. A
    model's error on its base's training images flatters it too."""
    training = card.training if isinstance(card.training, dict) else {}
    base = training.get("finetuned_from")
    if training.get("train_sha256") is not None or not isinstance(base, dict) or not base.get("name"):
        return card
    try:
        base_card = model_card(str(base["name"]))
    except CellcountError:
        return card
    if base.get("sha256") and base_card.sha256 != base["sha256"]:  # another model under that name now
        return card
    digests = with_base_training(base_card).training_digests()
    if not digests:
        return card
    return dataclasses.replace(card, training={**training, "train_sha256": sorted(digests)})


def _model_folder(name_or_path: str | Path, weights_dir: str | Path | None) -> Path:
    """The folder holding ``card.json`` for a shipped model name or a path; ModelNotFoundError otherwise."""
    wd = Path(weights_dir) if weights_dir is not None else DEFAULT_WEIGHTS_DIR
    folder = Path(name_or_path)
    if not (folder / CARD_FILE).is_file():
        folder = _model_dirs(wd).get(str(name_or_path), Path("/nonexistent"))
    if not (folder / CARD_FILE).is_file():
        given = Path(name_or_path)
        if given.is_dir() and str(name_or_path) not in _model_dirs(wd):  # a folder, but not a model's
            raise ModelNotFoundError(f"{given} is a folder without {CARD_FILE}: not a model folder (a model folder "
                                     f"holds {CARD_FILE} and its weights); valid model names: "
                                     f"{', '.join([*_model_dirs(wd), CLASSICAL_NAME])}")
        names = [*_model_dirs(wd), CLASSICAL_NAME]  # as list_models lists them, a missing weights folder too
        # names are told apart case-insensitively when saved, so one spelt in other case is the one meant
        same = [n for n in names if n.casefold() == str(name_or_path).casefold()]
        hint = f" (did you mean {same[0]!r}? model names are case-sensitive)" if same else ""
        if not same:  # a typo (unet-mask-variied) or the other separator (unet_mask)
            import difflib

            given_key = str(name_or_path).casefold().replace("_", "-")
            close = difflib.get_close_matches(given_key, [n.casefold() for n in names], n=1, cutoff=0.8)
            hint = next((f" (did you mean {n!r}?)" for n in names if close and n.casefold() == close[0]), "")
        text = str(name_or_path)
        if not same and not hint and (os.sep in text or "/" in text or text.startswith(("~", "."))):  # a path
            what = "is a file, not a model folder" if given.is_file() else "does not exist"
            raise ModelNotFoundError(f"{text} {what}: give a model folder (it holds {CARD_FILE} and its weights) or "
                                     f"a model name: {', '.join(names)}")
        raise ModelNotFoundError(f"unknown model {text!r}{hint}; valid models: {', '.join(names)}")
    return folder


def load_model(name_or_path: str | Path, *, weights_dir: str | Path | None = None) -> CountModel:
    """Load a model by name (see :func:`list_models`) or from a folder holding ``card.json``.

    Raises
    ------
    ModelNotFoundError
        Unknown name; the message lists the valid names.
    WeightsIntegrityError
        Missing weights, sha256 mismatch, or a file that is not a safetensors archive.
    """
    if not isinstance(name_or_path, (str, Path)):
        raise ModelNotFoundError(f"a model is named by a string or a folder path, got {name_or_path!r}; "
                                 f"available: {', '.join(list_models())}")
    if str(name_or_path) == CLASSICAL_NAME:
        return ClassicalModel(CLASSICAL_CARD)
    if not str(name_or_path).strip() or (isinstance(name_or_path, Path) and str(name_or_path) == "."
                                          and not (Path(".") / "card.json").is_file()):
        # Path("") is "." : the current folder, not a model
        raise ModelNotFoundError(f"the model name is empty; available: {', '.join(list_models())}")
    folder = _model_folder(name_or_path, weights_dir)
    model = load_model_folder(folder)
    model.card = _as_listed(model.card, folder, weights_dir)
    return model


def load_model_folder(folder: str | Path, *, with_novelty: bool = True) -> NetModel:
    """Rebuild the network from the card's architecture + kwargs and load verified weights (and, with
    ``with_novelty``, the novelty reference the card names; off to write a new one)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .registry import create_model

    folder = Path(folder)
    card = read_card(folder)  # validated: nothing is built from a card that breaks its schema
    from .registry import list_architectures

    if card.architecture not in list_architectures():
        raise ModelNotFoundError(
            f"model card of {card.name!r}: unknown architecture {card.architecture!r}; "
            f"valid architectures: {', '.join(list_architectures())}"
        )
    wpath = folder / card.weights_file
    if not wpath.is_file():
        raise WeightsIntegrityError(f"weights file {wpath} is missing")
    digest = sha256_file(wpath)
    if card.sha256 and digest != card.sha256:
        raise WeightsIntegrityError(
            f"sha256 of {wpath} is {digest}, the card says {card.sha256}: the file is corrupt or was replaced"
        )
    if not card.sha256:
        raise WeightsIntegrityError(f"card of {card.name} has no sha256; refusing unverified weights")
    try:
        state = load_file(str(wpath))
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsIntegrityError(f"{wpath} is not a valid safetensors weights file: {err}") from err
    try:
        net = create_model(card.architecture, **card.kwargs)
    except (TypeError, ValueError) as err:  # an argument the constructor refuses, after the card's schema
        raise ModelCardError(f"model card of {card.name!r}: cannot build {card.architecture}: {err}") from err
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise WeightsIntegrityError(f"weights in {wpath} do not fit architecture {card.architecture}: {err}") from err
    model = NetModel(net, card)
    if with_novelty:
        model.novelty = _novelty_reference(folder, card, net)
    return model


def _novelty_reference(folder: Path, card: ModelCard, net):
    """The model's novelty reference (:mod:`cellcount.novelty`) when its card names one, checked against
    the card's sha256, the way its features were taken and the network's encoder."""
    from ..novelty import SETTINGS, NoveltyReference, feature_count

    entry = card.extra.get("novelty")
    if not entry:
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or Path(entry["file"]).name != entry["file"]:
        raise ModelCardError(f"model card of {card.name!r}: extra.novelty must name a file in the model folder")
    ref = NoveltyReference.load(folder / entry["file"], entry.get("sha256"))
    stale = {k: entry[k] for k, v in SETTINGS.items() if k in entry and entry[k] != v}
    n = feature_count(net)
    if stale or ref.features.shape[1] != n:
        raise WeightsIntegrityError(
            f"the novelty reference of {card.name!r} was taken with other settings ({stale or ref.features.shape[1]} "
            f"features, this code: {SETTINGS}, {n} features): rerun `python scripts/novelty_reference.py`")
    return ref


def save_model(net, card: ModelCard, folder: str | Path) -> Path:
    """Write ``weights.safetensors`` + ``card.json`` (with the weights' sha256) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    novelty = card.extra.get("novelty") if isinstance(card.extra, dict) else None
    if novelty and not (isinstance(novelty, dict) and (folder / str(novelty.get("file", ""))).is_file()):
        # a card copied from another folder: its reference describes that folder's network, not this one
        card.extra = {k: v for k, v in card.extra.items() if k != "novelty"}
    wpath = folder / card.weights_file
    wpath.write_bytes(weights_bytes(net))
    card.sha256 = sha256_file(wpath)
    write_card(card, folder)
    return folder
