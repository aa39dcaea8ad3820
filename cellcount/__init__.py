"""cellcount: count cells and nuclei in microscopy images with deep models, on a laptop CPU.

Typical use::

    import cellcount as cc
    img = cc.read_image("nuclei.tif")
    model = cc.load_model("unet-mask")          # cc.list_models() lists the names
    result = cc.count_image(img, model, {"min_area_px": 20})
    result.count, result.objects
"""

from ._version import __version__  # noqa: F401  (cellcount.__version__)
from .errors import (
    CellcountError,
    ChannelError,
    GroundTruthError,
    ImageReadError,
    ImageReadWarning,
    ImageTooLargeError,
    ModelCardError,
    ModelNotFoundError,
    ParameterError,
    PlaneError,
    WeightsIntegrityError,
)
from .io import list_image_files, normalize_image, read_image
from .models import list_models, load_model
from .pipeline import CountParams, CountResult, Prediction, count_image, postprocess, predict, resolve_params


def __getattr__(name: str):
    # count_file reads files as a batch does: its module (and the ground-truth readers it brings) loads on first use
    if name == "count_file":
        from .batch import count_file

        return count_file
    raise AttributeError(f"module 'cellcount' has no attribute {name!r}")


def __dir__() -> list[str]:
    # the lazy count_file too: help(cellcount) and tab completion left out the function the README shows for files
    return sorted({*globals(), *__all__})


__all__ = [
    "CellcountError",
    "ChannelError",
    "CountParams",
    "CountResult",
    "GroundTruthError",
    "ImageReadError",
    "ImageReadWarning",
    "ImageTooLargeError",
    "ModelCardError",
    "ModelNotFoundError",
    "ParameterError",
    "PlaneError",
    "Prediction",
    "WeightsIntegrityError",
    "count_file",
    "count_image",
    "list_image_files",
    "list_models",
    "load_model",
    "normalize_image",
    "postprocess",
    "predict",
    "read_image",
    "resolve_params",
]
