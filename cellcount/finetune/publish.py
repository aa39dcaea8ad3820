"""The new model's name and folder: checked before training, written at the end without replacing another model."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

from ..errors import ParameterError


def free_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name-2``, ``name-3`` ...: the first not in ``taken``, whatever the case (one folder on macOS
    and Windows; a default name for a new model)."""
    taken = {t.casefold() for t in taken}
    k, out = 2, name
    while out.casefold() in taken:
        out, k = f"{name}-{k}", k + 1
    return out


WINDOWS_RESERVED = frozenset({"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                              *(f"LPT{i}" for i in range(1, 10))})
"""Folder names Windows refuses whatever follows the dot."""


MAX_NAME_CHARS = 80
"""The longest model name: the Train page's name box takes as many."""

MAX_NAME_BYTES = 180
"""... and in UTF-8 bytes: the staging folder's name adds about 30 to the 255 a folder name may hold."""


def check_new_name(name: str, *, out_dir: str | Path | None = None, overwrite: bool = False) -> Path:
    """The folder a new model ``name`` goes to; ParameterError when the name is not a plain folder name, is a
    shipped model's (or the baseline's), or is taken in ``out_dir`` (default: the user models folder) and
    ``overwrite`` is off."""
    from ..models import list_models, user_models_dir

    # the characters no folder may hold on Windows either: a model is a folder a user may copy to another computer
    reserved = name.split(".")[0].strip().upper() in WINDOWS_RESERVED
    # invisible characters (a zero-width space) make a name that reads as another; format and control characters
    invisible = any(unicodedata.category(c) in ("Cc", "Cf", "Co", "Cn", "Zl", "Zp") for c in name)
    if (not name or not name.strip() or any(c in name for c in '/\\:<>"|?*') or name.startswith(".")
            or name.endswith(".") or name != name.strip() or invisible or reserved):
        raise ParameterError(f"model name {name!r} must be a plain folder name (none of / \\ : < > \" | ? *, no "
                             "dot at either end, no spaces at either end, no invisible characters, not a name "
                             "Windows reserves such as CON or COM1)")
    # a folder name holds at most 255 bytes, and the model is first written under a longer staging name
    if len(name) > MAX_NAME_CHARS or len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise ParameterError(f"model name is {len(name)} characters long ({len(name.encode('utf-8'))} bytes); give "
                             f"at most {MAX_NAME_CHARS} characters and {MAX_NAME_BYTES} bytes (accented and non-Latin "
                             "letters take 2-4 bytes each)")
    from ..models.loading import DEFAULT_WEIGHTS_DIR

    folder = Path(out_dir) if out_dir is not None else user_models_dir()
    target = folder / name
    try:
        shipped = folder.resolve() == Path(DEFAULT_WEIGHTS_DIR).resolve()
    except (OSError, RuntimeError):
        shipped = False
    if shipped:  # --overwrite there would replace (delete) a shipped model's weights
        raise ParameterError(f"{folder} holds the shipped models; a fine-tuned model goes to the user models folder "
                             "(the default) or another folder of your own")
    if target.exists() and not overwrite:
        where = f" in {folder}" if out_dir is not None else ""  # the models folder: a path the app's user never chose
        raise ParameterError(f"a model named {name!r} already exists{where}; choose another name, or delete that model "
                             f"first (the Models page, or cellcount models --remove {name}; finetune --overwrite "
                             "replaces it)")
    if name in list_models() and not target.exists():
        raise ParameterError(f"{name!r} is the name of an existing model; choose another name")
    # UNET-MASK beside unet-mask: one folder on macOS and Windows, and two models a reader cannot tell apart
    alike = [m for m in list_models() if m.casefold() == name.casefold() and m != name]
    if alike:
        raise ParameterError(f"{name!r} differs from the existing model {alike[0]!r} only in upper / lower case; "
                             "choose another name")
    _check_model_folder(folder)
    return target


def _publish(stage: Path, target: Path, card, *, overwrite: bool) -> Path:
    """Move the finished model folder ``stage`` to ``target``, or, when a model took that name while this one
    trained and ``overwrite`` is off, to the first free ``name-2``, ``name-3`` ... (its card renamed too)."""
    import shutil

    from ..models import write_card

    old = None
    if target.exists():
        if overwrite:  # moved aside until the new one is in place: a failed rename loses neither
            old = target.with_name(f".{target.name}.replaced-{os.getpid()}")
            target.rename(old)
        else:
            target = target.with_name(free_name(target.name, {p.name for p in target.parent.iterdir()}))
            card.name = target.name
            write_card(card, stage)
    try:
        stage.rename(target)
    except OSError:
        if old is not None:
            old.rename(target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _check_model_folder(folder: Path) -> None:
    """ParameterError unless a model folder can be written in ``folder`` (created when missing): checked
    before training, so that minutes of training are not lost to a folder that cannot take the result."""
    from ..csvout import check_writable

    if folder.exists() and not folder.is_dir():
        raise ParameterError(f"the models folder {folder} is a file; give a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        check_writable(folder / "model")
    except OSError as err:
        raise ParameterError(f"cannot write a model in {folder}: {err.strerror or err}") from None


def _write_model(net, card, novelty, target: Path, *, name: str, overwrite: bool, cancel) -> Path:
    """Save ``net`` with ``card`` (and ``novelty``: a reference and its card entry, or None) as ``target`` and return
    the folder it went to (:func:`_publish`); nothing is left behind when cancelled or failing."""
    import threading

    from ..models import save_model
    from .fit import Cancelled

    # written whole into a hidden folder beside the target, then moved into place: nothing loads a half-written
    # model, and a model saved under this name meanwhile (another fine-tune, another app) is not overwritten
    stage = target.parent / f".{name}.saving-{os.getpid()}-{threading.get_ident()}"
    try:  # every file of the stage is written in here, so a failure leaves no hidden folder behind
        if cancel is not None and cancel.is_set():  # cancelled while scoring: nothing is saved, as promised
            raise Cancelled("fine-tuning was cancelled")
        if novelty is not None:
            from ..novelty import NOVELTY_FILE

            stage.mkdir(parents=True, exist_ok=True)
            card.extra["novelty"] = {**novelty[1], "file": NOVELTY_FILE, "sha256": novelty[0].save(stage / NOVELTY_FILE)}
        save_model(net, card, stage)
        if cancel is not None and cancel.is_set():  # cancelled while it was written: still nothing saved
            raise Cancelled("fine-tuning was cancelled")
        target = _publish(stage, target, card, overwrite=overwrite)
    except BaseException:
        import shutil

        shutil.rmtree(stage, ignore_errors=True)  # a half-written model is not left behind
        raise
    return target
