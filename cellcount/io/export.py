"""Writing results as files: label images as TIFF."""

from __future__ import annotations

import io

import numpy as np
import tifffile

from cellcount.errors import ParameterError


def labels_to_tiff_bytes(labels: np.ndarray) -> bytes:
    """Encode a label image as a zlib-compressed TIFF.

    Parameters
    ----------
    labels : numpy.ndarray
        (H, W) non-negative integers (or bool).

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
    tifffile.imwrite(buf, arr.astype(out_dtype), compression="zlib", photometric="minisblack")
    return buf.getvalue()
