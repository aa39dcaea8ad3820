"""Settings files: the JSON the app downloads and the CLI writes next to its outputs, read back as overrides.

The format is ``{"model": NAME, "params": {...}}`` (a bare object of parameters is read too); the values
are checked against :mod:`cellcount.params` before anything is counted. From Python::

    cellcount.settingsfile.save("tuned.json", model, params)     # what `count --settings` and the app read
    name, overrides = cellcount.settingsfile.load("tuned.json")
    result = cellcount.count_image(image, cellcount.load_model(name), overrides)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ParameterError
from .params import CountParams, acting_settings, resolve_params

if TYPE_CHECKING:
    from .models import CountModel

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
    data = _load(text)
    if isinstance(data, dict) and "params" in data and isinstance(data["params"], dict):
        _check_beside_params(data)
        data = data["params"]
    elif isinstance(data, dict):  # a bare object of parameters may name its model and plane beside them too
        data = {k: v for k, v in data.items() if k not in ("model", "model_sha256", "plane")}
    if not isinstance(data, dict):
        raise ParameterError("settings JSON must be an object of parameter names to values")
    from .params import SCHEMA

    # a choice in another case ("split_mode": "Both", as the app shows it) is the choice, as "plane": "Max" is
    data = {k: v.strip().lower() if isinstance(v, str) and k in SCHEMA and SCHEMA[k].choices
            and v.strip().lower() in SCHEMA[k].choices else v for k, v in data.items()}
    try:
        resolve_params(None, data)  # validate now, with a clear message
    except ParameterError as first:
        from .params import LEGACY_KEYS, PARAM_NAMES, check_value

        # every mistake at once (not a file with two refused for the first, then the second): unknown names
        # together, each value on its own, then the known ones together (two settings that disagree, read with the
        # file's values, not the defaults)
        unknown = [key for key in data if key not in PARAM_NAMES and key not in LEGACY_KEYS]
        problems = [f"unknown parameters {unknown}; valid: {', '.join(PARAM_NAMES)}"] if unknown else []
        own = len(problems)
        for key, value in data.items():
            if key in PARAM_NAMES:
                try:
                    check_value(key, value)
                except ParameterError as err:
                    problems.append(str(err))
        if len(problems) == own:
            try:
                resolve_params(None, {k: v for k, v in data.items() if k not in unknown})
            except ParameterError as err:
                problems.append(str(err))
        raise ParameterError("; ".join(problems) if problems else str(first)) from None
    return data


FILE_KEYS = ("model", "model_sha256", "model_card", "out", "objects", "params", "plane", "blocks", "backend",
             "backends_of_resumed_rows",
             "cellcount_version")
"""What a settings file holds beside its ``params`` (the app's downloads and the CLI's ``counts.settings.json``)."""


def _check_beside_params(data: dict[str, Any]) -> None:
    """Refuse a key beside ``params`` that is a setting put there by hand (``"min_area_px"`` beside ``params`` is not
    read, so the card's value would count in silence) or a misspelt setting or file key (``"treshold"``, ``"plain"``).
    Other keys are a later version's records (as ``cellcount_version`` was to 0.2.0, which refused it): read past."""
    import difflib

    from .params import LEGACY_KEYS, PARAM_NAMES

    if "data" in data and "split" in data:  # evaluate's summary (--json): its settings, beside its figures
        return
    for key in data:
        if key in FILE_KEYS:
            continue
        if key in PARAM_NAMES or key in LEGACY_KEYS:
            raise ParameterError(f'the setting "{key}" stands beside "params", where it is not read: move it into '
                                 '"params"')
        if difflib.get_close_matches(key, [*FILE_KEYS, *PARAM_NAMES, *LEGACY_KEYS], n=1, cutoff=0.8):
            raise ParameterError(f'unknown key "{key}": a settings file holds "model", "params" and "plane" (settings '
                                 'go inside "params", by the names `cellcount count --help` lists)')


def model_from_json(text: str | bytes) -> str | None:
    """The model a settings file was saved for (``"model"``), None when it names none."""
    data = _load(text)
    model = data.get("model") if isinstance(data, dict) else None
    return model if isinstance(model, str) and model.strip() else None


def model_changed_from_json(text: str | bytes, model: Any) -> str | None:
    """How ``model`` differs from the one of that name the settings file was saved with: "weights" (retrained or
    replaced: ``"model_sha256"``), "card" (its density scale, normalisation, tiles or size model:
    ``"model_card"``, :meth:`cellcount.models.ModelCard.counting_digest`; a calibration written into the card
    since, or a model folder of that name counted from), None when the same or the file does not say."""
    data = _load(text)
    if not isinstance(data, dict):
        return None
    card = getattr(model, "card", None)
    sha, digest = data.get("model_sha256"), data.get("model_card")
    if isinstance(sha, str) and sha.strip() and getattr(card, "sha256", None) and sha != card.sha256:
        return "weights"
    if isinstance(digest, str) and digest.strip() and card is not None and digest != card.counting_digest():
        return "card"
    return None


MODEL_CHANGED = {
    "weights": "its weights changed since (retrained or replaced), so settings chosen for the old weights may not suit "
               "them",
    "card": "its card changed since (its density scale, normalisation, tiles or size model: a calibration written "
            "into it, or another model folder by that name), so the same settings may count otherwise",
}
"""What :func:`model_changed_from_json`'s answers mean, after "MODEL is not the model FILE was saved with: "."""


def model_changed_note(path: str | os.PathLike, model: Any) -> str | None:
    """"MODEL is not the model FILE was saved with: why", for a settings file saved for ``model``'s name; None
    when nothing says it changed."""
    changed = _named(path, lambda text: model_changed_from_json(text, model))
    return f"{model.name} is not the model {path} was saved with: {MODEL_CHANGED[changed]}" if changed else None


def plane_from_json(text: str | bytes) -> int | str | None:
    """The plane of z-stacks a settings file names (``"plane": N``, 0 = the first, or ``"max"``, the
    maximum-intensity projection; the app and the CLI write it when one was chosen), None when it names none.
    The plane is not a postprocessing parameter: it chooses what is read, so it sits beside ``params``."""
    data = _load(text)
    plane = data.get("plane") if isinstance(data, dict) else None
    return None if plane is None else check_plane(plane)


def check_plane(plane: Any) -> int | str:
    """A plane choice as the readers take it: an int >= 0 or "max" (ParameterError otherwise)."""
    if isinstance(plane, str) and plane.strip().lower() == "max":
        return "max"
    if isinstance(plane, int) and not isinstance(plane, bool) and plane >= 0:
        return plane
    raise ParameterError(f"plane must be a plane number >= 0 or 'max', got {plane!r}")


def _load(text: str | bytes) -> Any:
    """The JSON value of a settings file, within the size and depth limits."""
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
    return data


def _named(path: str | os.PathLike, parse: Any) -> Any:
    """``parse`` of the file's text, reading no more than the size limit (a wrong file given as settings may be
    gigabytes); an error names the file."""
    try:
        return parse(_read(path))
    except ParameterError as err:
        if str(path) in str(err):
            raise
        text = str(err)
        text = text[len("settings file "):] if text.startswith("settings file ") else text
        raise ParameterError(f"settings file {path}: {text}") from None


def settings_text(model_name: str, params: CountParams | dict[str, Any], output_kind: str | None, *,
                  model_sha256: str | None = None, plane: int | str | None = None, backend: str | None = None,
                  version: str | None = "", model_card: str | None = None, tuned_on: Iterable[str] = ()) -> str:
    """A settings file's text: the model, its weights' sha256 and ``model_card`` (its card's counting digest: counting
    with either changed since warns, :func:`model_changed_note`), the
    settings that act for ``output_kind`` (a density model's file naming a threshold contradicts a count that no
    threshold changes; None: every one given), the ``plane`` of z-stacks when one was chosen and the ``backend`` a
    recorded run used, with the ``version`` of cellcount that counted ("": this one; None: not known, left out);
    ``tuned_on``: the sha256 of the image files tuned settings were fitted to (:func:`tuned_on_from_json`), so that
    scores on those images later, anywhere the file is loaded, are said to flatter them."""
    from ._version import __version__

    values = params.acting(output_kind) if isinstance(params, CountParams) else acting_settings(params, output_kind)
    return json.dumps({"model": model_name, **({"model_sha256": model_sha256} if model_sha256 else {}),
                       **({"model_card": model_card} if model_card else {}),
                       **({} if version is None else {"cellcount_version": version or __version__}),
                       "params": values, **({} if plane is None else {"plane": check_plane(plane)}),
                       **({"backend": backend} if backend else {}),
                       **({"tuned_on": sorted(set(tuned_on))} if tuned_on else {})}, indent=2)


def tuned_on_from_json(text: str | bytes) -> set[str]:
    """The sha256 of the image files a settings file's settings were tuned on (``"tuned_on"``, as Evaluate's tuned
    settings and ``evaluate --tune --save-settings`` write it); empty when it names none."""
    data = _load(text)
    digests = data.get("tuned_on") if isinstance(data, dict) else None
    return {d for d in digests if isinstance(d, str)} if isinstance(digests, list) else set()


def record_text(record: dict[str, Any], output_kind: str | None) -> str:
    """A settings file's text from a run's recorded settings (:mod:`cellcount.history`: the Runs page's download,
    ``cellcount runs --export --settings-out``): its model, weights, the settings that act for ``output_kind`` (None:
    the model is not installed here, every one recorded), plane and the backend it ran in."""
    backend = record.get("backend")
    return settings_text(str(record.get("model", "")), record.get("params") or {}, output_kind,
                         model_sha256=record.get("model_sha256") or None, plane=record.get("plane"),
                         model_card=record.get("model_card") or None,
                         backend=backend if isinstance(backend, str) else None,
                         version=str(record["cellcount_version"]) if record.get("cellcount_version") else None)


def save(path: str | os.PathLike, model: CountModel, params: CountParams | dict[str, Any] | None = None, *,
         plane: int | str | None = None) -> Path:
    """Write ``model``'s settings (``params`` over its card's; None: the card's) to ``path``, as the app's download
    and ``cellcount count`` write them, so that ``count --settings``, the app and :func:`load` count with the same
    model and settings (a bare ``params.to_json()`` names no model: the CLI then counts with the default)."""
    from .csvout import atomic_write_bytes

    resolved = params if isinstance(params, CountParams) else resolve_params(model, params)
    text = settings_text(model.name, resolved, model.output_kind, model_sha256=model.card.sha256 or None, plane=plane,
                         model_card=model.card.counting_digest())
    atomic_write_bytes(path, text.encode("utf-8"))
    return Path(path)


def load(path: str | os.PathLike) -> tuple[str | None, dict[str, Any]]:
    """(the model a settings file was saved for, or None; its settings as overrides for
    :func:`cellcount.count_image` or :func:`cellcount.resolve_params`), checked as the CLI checks them."""
    return model_from_file(path), params_from_file(path)


def params_from_file(path: str | os.PathLike) -> dict[str, Any]:
    """:func:`params_from_json` of a file."""
    return _named(path, params_from_json)


def model_from_file(path: str | os.PathLike) -> str | None:
    """:func:`model_from_json` of a file."""
    return _named(path, model_from_json)


def backend_from_json(text: str | bytes) -> str | None:
    """The inference backend a run recorded (``"backend"``, as ``cellcount count`` writes it), None when none."""
    data = _load(text)
    backend = data.get("backend") if isinstance(data, dict) else None
    return backend if isinstance(backend, str) and backend.strip() else None


def backend_from_file(path: str | os.PathLike) -> str | None:
    """:func:`backend_from_json` of a file."""
    return _named(path, backend_from_json)


def plane_from_file(path: str | os.PathLike) -> int | str | None:
    """:func:`plane_from_json` of a file."""
    return _named(path, plane_from_json)


def _read(path: str | os.PathLike) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(MAX_SETTINGS_JSON_BYTES + 1)
    except IsADirectoryError:
        raise ParameterError(f"settings file {path} is a folder; give the .json file") from None
    except OSError as err:
        raise ParameterError(f"cannot read the settings file {path}: {err.strerror or err}") from None
