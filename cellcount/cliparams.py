"""Command-line options generated from the parameter schema, shared by every command that counts.

One form for every parameter in every command: ``--<name> VALUE`` with the schema name, dashes or
underscores (``--min-area-px 20`` = ``--min_area_px 20``); on/off settings are ``--<name>`` /
``--no-<name>``; ``--invert`` takes ``auto``, ``yes`` or ``no``. A settings JSON (``--settings``) is read
first, options override it. ``evaluate``'s older ``--set KEY=VALUE`` is still read, as a deprecated alias.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import json
import sys
from typing import Any

from .errors import CellcountError, ModelNotFoundError, ParameterError
from .params import LEGACY_KEYS, PARAMS, SCHEMA

INVERT_CHOICES = {"auto": None, "yes": True, "no": False}
BACKEND_CHOICES = ("auto", "bf16", "int8", "onnxruntime", "openvino", "torch")
"""``--backend``'s values: :data:`cellcount.models.autotune.CHOICES`, written out so that ``--help`` needs no torch
(tests/test_cli.py checks that they agree)."""
_INVERT_ALIASES = {"on": "yes", "true": "yes", "off": "no", "false": "no", "none": "auto", "null": "auto"}


def _invert_word(text: str) -> str:
    """``--invert`` as the app (on / off) and settings files (true / false / null) say it, too."""
    word = text.strip().lower()
    return _INVERT_ALIASES.get(word, word)


_PROG: contextvars.ContextVar[str | None] = contextvars.ContextVar("cellcount_prog", default=None)


def prog_name(module: str) -> str:
    """How a sub-command's help and errors name it: ``cellcount evaluate`` when it came through the ``cellcount``
    command (:func:`as_command`), else ``python -m cellcount.evaluate``."""
    return _PROG.get() or f"python -m {module}"


@contextlib.contextmanager
def as_command(name: str):
    """Within this block, :func:`prog_name` says ``cellcount NAME``."""
    token = _PROG.set(f"cellcount {name}")
    try:
        yield
    finally:
        _PROG.reset(token)


def add_param_options(parser: argparse.ArgumentParser, *, legacy_set: bool = False) -> None:
    """Add ``--settings`` and one option per :data:`~cellcount.params.PARAMS` entry to ``parser``.

    Every option defaults to None (= not given), so the model card's value stays unless overridden.
    ``legacy_set``: also read ``--set KEY=VALUE`` (evaluate's old form; hidden from the help).
    """
    parser.add_argument("--settings", help="settings JSON (as downloaded from the app or written next to a "
                        "counts CSV) with parameter values; options given here override it")
    group = parser.add_argument_group("parameters (default: the model card's; see cellcount.params)")
    for spec in PARAMS:
        unit = f" [{spec.unit}]" if spec.unit and spec.unit not in spec.help else ""
        # the app's name for it too: "Exclude edge objects" there is --exclude-border here
        app = f'; the app\'s "{spec.label.split(" (")[0]}"' if spec.label else ""
        text = f"{spec.help}{unit}{app}".replace("%", "%%")  # argparse formats help with %
        if spec.name == "invert":
            group.add_argument(spec.option, dest=spec.name, type=_invert_word, choices=list(INVERT_CHOICES),
                               default=None, help=f"{text} (on / off and true / false are read too)")
        elif spec.kind is bool:
            group.add_argument(spec.option, dest=spec.name, action=argparse.BooleanOptionalAction, default=None,
                               help=text)
        else:
            group.add_argument(spec.option, dest=spec.name, type=spec.kind, default=None,
                               choices=list(spec.choices) or None, metavar=None if spec.choices else "N",
                               help=text)
    for name in LEGACY_KEYS:  # old on/off flags, read as split_mode by cellcount.params.upgrade_keys
        parser.add_argument("--" + name.replace("_", "-"), dest=name, action=argparse.BooleanOptionalAction,
                            default=None, help=argparse.SUPPRESS)
    if legacy_set:
        parser.add_argument("--set", dest="legacy_set", action="append", default=[], metavar="KEY=VALUE",
                            help=argparse.SUPPRESS)


def normalize_argv(argv: list[str] | None) -> list[str]:
    """``argv`` with ``--min_area_px`` spelt ``--min-area-px``: the field name works as an option too."""
    args = sys.argv[1:] if argv is None else list(argv)
    names = {"--" + n for n in (*SCHEMA, *LEGACY_KEYS)} | {"--no-" + n for n in (*SCHEMA, *LEGACY_KEYS)}
    out = []
    for arg in args:
        head, eq, tail = arg.partition("=")
        if head in names:
            arg = head.replace("_", "-") + eq + tail
        out.append(arg)
    return out


_HANDLER_NAME = "cellcount-cli"


def setup_logging(level: int) -> None:
    """The commands' logging to stderr at ``level``, warnings marked "warning: ..." as their printed ones are, so
    that a folder's image without ground truth does not read as a plain line among the results. Like
    :func:`logging.basicConfig`, it acts only where the root logger has no handler but its own: a script's or a
    test's logging keeps its handlers, format and level; a second call of a command's main() sets the level."""
    import logging

    class CliFormatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            text = super().format(record)
            if record.levelno >= logging.WARNING:
                text = f"{'error' if record.levelno >= logging.ERROR else 'warning'}: {text}"
            return text

    root = logging.getLogger()
    if any(h.get_name() != _HANDLER_NAME for h in root.handlers):
        return
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(CliFormatter("%(message)s"))
        root.addHandler(handler)
    root.setLevel(level)


@contextlib.contextmanager
def plain_warnings():
    """Within it, Python warnings (a binary mask read as label image, ...) show as one 'warning: ...' line on
    stderr, not with the source file and line that raised them: the command line's users are not its
    programmers. Restored on exit, so a script that calls a command's main() keeps its own warnings."""
    import warnings

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"warning: {message}", file=file or sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def _replaced_card_values(args: argparse.Namespace, model) -> str:
    """', replacing N of its card's: key card -> file, ...': the settings of ``--settings`` that change ``model``'s
    card where they act on its counts and no option sets them again. A file saved for another model carries that
    model's nucleus size and background, which a fine-tune's card learnt for its own images; '' when none."""
    from .pipeline import resolve_params
    from .settingsfile import params_from_file

    try:
        acting, given = resolve_params(model, {}).acting(model.output_kind), params_from_file(args.settings)
    except (CellcountError, OSError):  # read and checked again where its settings are applied
        return ""
    typed = {spec.name for spec in PARAMS if getattr(args, spec.name, None) is not None}
    changed = [f"{k} {json.dumps(acting[k])} -> {json.dumps(v)}" for k, v in sorted(given.items())
               if k in acting and k not in typed and acting[k] != v]
    if not changed:
        return ""
    shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
    return f", replacing {len(changed)} of its card's: {shown}; leave a setting out of the file to keep the card's"


def load_cli_model(args: argparse.Namespace, default: str | None = None):
    """The model a command counts with: ``--model``, else the model its ``--settings`` file was saved for
    (settings tuned for one model change another's counts), else ``default``. With ``--model`` naming another
    model than the settings file, the settings still apply, with a note on stderr saying so."""
    from .models import load_model
    from .settingsfile import model_from_file

    saved_for = model_from_file(args.settings) if getattr(args, "settings", None) else None
    name = getattr(args, "model", None) or saved_for or default
    if name is None:
        raise ParameterError("no model given")
    try:
        model = load_model(name)
    except ModelNotFoundError as err:
        if getattr(args, "model", None) or not saved_for:
            raise
        raise ModelNotFoundError(f"{args.settings} was saved for the model {saved_for!r}, which is not installed "
                                 f"here ({err}); pass --model to apply these settings to another model") from err
    if getattr(args, "quiet", False):
        return model
    if saved_for == model.name:
        from .settingsfile import model_changed_note

        if changed := model_changed_note(args.settings, model):  # retrained, replaced (finetune --overwrite), recalibrated
            print(f"warning: {changed}", file=sys.stderr)
    if saved_for and getattr(args, "model", None) and saved_for != model.name:
        print(f"note: {args.settings} was saved for {saved_for}; its settings are applied to {model.name} as asked "
              f"(they may not suit it){_replaced_card_values(args, model)}", file=sys.stderr)
    elif saved_for and not getattr(args, "model", None):
        print(f"note: counting with {model.name}, the model named in {args.settings}", file=sys.stderr)
    elif getattr(args, "settings", None) and not getattr(args, "model", None):  # e.g. params.to_json() saved by hand
        print(f"note: {args.settings} names no model: its settings are applied to {model.name}, the default"
              f"{_replaced_card_values(args, model)}; pass --model to choose (a settings file saved with its model "
              "names it: cellcount.settingsfile.save)", file=sys.stderr)
    elif getattr(args, "settings", None) and not saved_for and (replaced := _replaced_card_values(args, model)):
        print(f"note: {args.settings} names no model: its settings are applied to {model.name} as asked{replaced}",
              file=sys.stderr)
    return model


def param_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The parameter overrides of a parsed command line: the settings file, then the options given."""
    from .settingsfile import params_from_file

    ov: dict[str, Any] = {}
    if getattr(args, "settings", None):
        ov.update(params_from_file(args.settings))
    for kv in getattr(args, "legacy_set", None) or []:
        key, _, value = kv.partition("=")
        print(f"note: --set {kv} is deprecated; use --{key.replace('_', '-')} {value}", file=sys.stderr)
        try:
            ov[key] = json.loads(value) if value not in ("", "None") else None
        except ValueError as err:
            raise ParameterError(f"--set {kv}: the value must be a JSON number, true/false or null ({err})") from err
    for spec in PARAMS:
        value = getattr(args, spec.name, None)
        if value is not None:
            ov[spec.name] = INVERT_CHOICES[value] if spec.name == "invert" else value
    legacy = {name: getattr(args, name) for name in LEGACY_KEYS if getattr(args, name, None) is not None}
    if legacy and getattr(args, "split_mode", None) is None:  # an old flag overrides the settings file's split_mode
        ov.pop("split_mode", None)
        ov.update(legacy)
    return ov


def inert_options_note(args: argparse.Namespace, params, model) -> str | None:
    """A note naming the setting options given on the command line that do nothing with ``model``
    (:func:`cellcount.params.inert_settings`), or None: such an option would otherwise be accepted in silence."""
    from .params import inert_settings

    why = inert_settings({spec.name for spec in PARAMS if getattr(args, spec.name, None) is not None}, params, model)
    if not why:
        return None
    parts = [", ".join("--" + n.replace("_", "-") for n in names) + f" ({reason})" for reason, names in why.items()]
    return "note: these options do nothing here: " + "; ".join(parts)


def plane_option(text: str) -> int | str:
    """``--plane`` (count, compare): a plane index >= 0 or 'max'."""
    if text.strip().lower() == "max":
        return "max"
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"a plane number >= 0 or 'max', got {text!r}")
    return value
