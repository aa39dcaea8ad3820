"""Writing results as files: label images as TIFF."""

from __future__ import annotations

import io

import numpy as np
import tifffile

from cellcount.errors import ParameterError

PREDICTION_TAG = "cellcount prediction"
"""How a label image cellcount writes begins its TIFF description: read back as ground truth, it is the model's
own count (:class:`cellcount.groundtruth.PredictedLabelsWarning`), unless someone corrected it."""


def labels_to_tiff_bytes(labels: np.ndarray, *, model: str | None = None, pixel_size_um: float | None = None) -> bytes:
    """Encode a label image as a zlib-compressed TIFF; described as a model's prediction (:data:`PREDICTION_TAG`)
    when ``model`` is given.

    Parameters
    ----------
    labels : numpy.ndarray
        (H, W) non-negative integers (or bool).
    model : str, optional
        The model that counted them: the TIFF then says they are its prediction, and reading it back as ground
        truth warns. Without it (labels drawn or corrected by hand) the file is plain.
    pixel_size_um : float, optional
        The image's pixel size: written as the TIFF's resolution (pixels per cm), which Fiji reads as the
        calibration, so the labels open measured like their image.

    Returns
    -------
    bytes
        A uint16 TIFF when the largest label is <= 65535, else uint32.

    Raises
    ------
    ParameterError
        Not a 2-D array of non-negative integers, or labels above 2**32 - 1.
    """
    arr = np.asarray(labels)
    if arr.ndim != 2 or not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise ParameterError(f"labels must be a 2-D integer array, got shape {arr.shape} dtype {arr.dtype}")
    if arr.size and int(arr.min()) < 0:
        raise ParameterError("labels must be non-negative")
    top = int(arr.max()) if arr.size else 0
    if top > np.iinfo(np.uint32).max:
        raise ParameterError(f"label {top} does not fit in uint32")
    out_dtype = np.uint16 if top <= np.iinfo(np.uint16).max else np.uint32
    buf = io.BytesIO()
    tag = {"description": f"{PREDICTION_TAG}: objects counted by the model {model}"} if model else {}
    if pixel_size_um:
        per_cm = 1e4 / float(pixel_size_um)
        tag.update(resolution=(per_cm, per_cm), resolutionunit="CENTIMETER")
    tifffile.imwrite(buf, arr.astype(out_dtype), compression="zlib", photometric="minisblack", metadata=None, **tag)
    return buf.getvalue()
