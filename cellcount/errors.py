"""Typed errors raised by cellcount. Every error a user can trigger derives from CellcountError."""

from __future__ import annotations

import sys
from collections.abc import Callable


class CellcountError(Exception):
    """Base class of all errors the library raises on bad input."""


class ImageReadError(CellcountError, ValueError):
    """The bytes or file are not a readable image (empty, truncated, not an image, bad shape)."""


class ImageTooLargeError(CellcountError, ValueError):
    """The image has more pixels than the configured cap (or is a decompression bomb)."""


class GroundTruthError(CellcountError, ValueError):
    """Ground truth cannot be read or does not match its image (shape, format)."""


class ModelNotFoundError(CellcountError, KeyError):
    """Unknown model name; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0]) if self.args else ""


class WeightsIntegrityError(CellcountError, ValueError):
    """A weights file is missing, has the wrong sha256, or holds something other than tensors."""


class ModelCardError(WeightsIntegrityError):
    """A model card (``card.json``) is not valid JSON or breaks its schema (unknown architecture argument,
    value out of range, unknown output kind, weights file outside the model folder); nothing was built."""


class ParameterError(CellcountError, ValueError):
    """A postprocessing or inference parameter is out of range; the message names the allowed values."""


class ChannelError(ParameterError):
    """The chosen channel is not in the image; ``n_channels`` says how many it has (a batch counts a one-channel
    image as it is instead: :func:`cellcount.params.channel_for_image`)."""

    def __init__(self, message: str, n_channels: int) -> None:
        super().__init__(message)
        self.n_channels = n_channels


class PlaneError(ParameterError):
    """The chosen plane (``page``) is not in the file; ``n_planes`` says how many it has (a batch counts a
    one-plane image as it is instead)."""

    def __init__(self, message: str, n_planes: int) -> None:
        super().__init__(message)
        self.n_planes = n_planes


def error_text(err: BaseException, name: str | None = None) -> str:
    """What a table or page says of an image that failed: the message alone for bad input (a
    :class:`CellcountError` or ``OSError``: the class name means nothing to a biologist), the class too for
    anything else (a bug: it helps the report); ``<bytes>`` (an upload read from memory) becomes ``name``."""
    text = " ".join(str(err).split())
    if not isinstance(err, (CellcountError, OSError)):
        text = f"{type(err).__name__}: {text or 'unexpected error'}"
    elif not text:  # OSError() says nothing: never an empty reason (a batch row must read as failed)
        text = f"{name + ': ' if name else ''}could not be read ({type(err).__name__}, no reason given)"
    elif isinstance(err, PermissionError):  # "[Errno 13] Permission denied: '...'" alone says nothing of what to do
        text += " (this user may not open it: check its permissions and its folder's)"
    return text.replace("<bytes>", name) if name else text


class ImageReadWarning(UserWarning):
    """The image was read, but its count may not be what the user meant: only one plane of a stack (z-planes,
    time points, pages, frames) was read."""


def run_cli(body: Callable[[], int], *, also: tuple[type[BaseException], ...] = ()) -> int:
    """Run a command-line body so that bad input ends in one line, never a traceback.

    A :class:`CellcountError`, ``OSError`` or ``ValueError`` (and the types in ``also``, e.g. a YAML parser
    error) prints ``error: <message on one line>`` to stderr and returns 2; Ctrl-C returns 130.
    """
    try:
        return body()
    except (CellcountError, OSError, ValueError, *also) as err:
        print(f"error: {' '.join(str(err).split()) or type(err).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
