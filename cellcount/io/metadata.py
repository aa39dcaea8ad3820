"""What an image file says about itself: its channels' names and its pixel size (TIFF: OME-XML, ImageJ's tags).

Read from the TIFF's tags only (no pixels decoded). Every function here answers "unknown" (None) for a file it
cannot read or that says nothing: metadata never stops a count, it only labels the channels and fills in a pixel
size the user did not give.
"""

from __future__ import annotations

import io
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from .files import TIFF_MAGICS
from .read import ImageSource

RGB_NAMES = ("red", "green", "blue")
"""The channels of an RGB picture (PNG, JPEG, an RGB TIFF), where no file names them otherwise."""
_MICRONS = {"µm": 1.0, "μm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0,
            "nm": 1e-3, "mm": 1e3, "cm": 1e4, "\\u00b5m": 1.0}  # ImageJ writes µ escaped: \u00B5m (lower-cased here)
MAX_METADATA_BYTES = 16 << 20
"""OME-XML above this is not parsed (a whole plate's description): the channels stay unnamed."""
_PIXEL_SIZE_RANGE_UM = (1e-4, 1e3)
"""A pixel size outside this (0.1 nm to 1 mm) is a placeholder (ImageJ's 1 inch), not a calibration."""


@dataclass(frozen=True)
class ImageMetadata:
    """``channel_names``: one per channel when the file names them (OME-XML ``Channel Name``, ImageJ's slice
    labels of a channel stack) or the channels are an RGB picture's; ``pixel_size_um``: the pixel's width in µm
    (OME ``PhysicalSizeX``, ImageJ's calibration), None when not stated or when the pixels are not square, which
    ``pixel_note`` then says (the measures in µm take one size for both axes)."""

    channel_names: tuple[str, ...] | None = None
    pixel_size_um: float | None = None
    pixel_note: str = ""


SQUARE_TOLERANCE = 0.01
"""Pixel width and height further apart than this share are not square: a width taken for both put an object's
area and its row in µm off by their ratio (a 0.4 x 0.8 µm pixel: half the area)."""


def pixel_size_conflict(setting_um: float | None, file_um: float | None) -> str | None:
    """What to say when the Pixel size setting replaces a file's own, other calibration (None when they agree or
    either is unknown): the setting measures the µm columns, so a size typed for one image would silently scale
    another file's areas by the square of their ratio."""
    if not setting_um or not file_um or abs(setting_um - file_um) <= SQUARE_TOLERANCE * file_um:
        return None
    return (f"the Pixel size setting ({setting_um:g} µm) replaces this file's own {file_um:g} µm per pixel: its µm "
            f"columns use {setting_um:g} (areas {(setting_um / file_um) ** 2:.3g}x the file's); leave Pixel size unset "
            "(0 in the app, no --pixel-size-um, null in a settings file) to measure each file by its own calibration")


def _square(width_um: float | None, height_um: float | None) -> tuple[float | None, str]:
    """(the pixel size, "") for square pixels (or a height not stated), (None, why) otherwise."""
    if width_um is None or height_um is None or abs(width_um - height_um) <= SQUARE_TOLERANCE * max(width_um, height_um):
        return width_um, ""
    return None, (f"the file's pixels are not square ({width_um:g} µm wide, {height_um:g} µm high): its calibration is "
                  "not used, since measures in µm here take one size for both axes (resample the image to square "
                  "pixels, e.g. Fiji's Image > Scale, to measure it in µm)")


def read_metadata(source: ImageSource, n_channels: int | None = None) -> ImageMetadata:
    """The channel names and pixel size a file states (see :class:`ImageMetadata`); ``n_channels``: the decoded
    image's channels, so that names of another count (a z-stack's slice labels) are not taken for channels."""
    try:
        head, data = _head(source)
    except OSError:
        return ImageMetadata()
    if head[:4] not in TIFF_MAGICS:
        return ImageMetadata(channel_names=RGB_NAMES if n_channels == 3 else None)
    try:
        import tifffile

        with tifffile.TiffFile(data) as tif:
            names, (size, note) = _ome(tif.ome_metadata) if tif.is_ome else (None, (None, ""))
            ij_names, (ij_size, ij_note) = (_imagej(tif.imagej_metadata, tif.pages[0]) if tif.is_imagej
                                            else (None, (None, "")))
            rgb = tif.pages[0].photometric == tifffile.PHOTOMETRIC.RGB
    except Exception:  # noqa: BLE001 - a damaged or unusual file: its count reports the reading error, not this
        return ImageMetadata()
    names = names or ij_names or (RGB_NAMES if rgb else None)
    if names is not None and n_channels is not None and len(names) != n_channels:
        names = None
    said = bool(size or note)  # OME's word first, as for the names
    return ImageMetadata(channel_names=names, pixel_size_um=size if said else ij_size,
                         pixel_note=note if said else ij_note)


def _head(source: ImageSource) -> tuple[bytes, object]:
    """(first bytes, something tifffile opens) of a path, bytes or binary file-like."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as fh:
            return fh.read(8), os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return data[:8], io.BytesIO(data)
    source.seek(0)
    data = source.read()
    source.seek(0)
    return bytes(data[:8]), io.BytesIO(data)


def _ome(xml: str | None) -> tuple[tuple[str, ...] | None, tuple[float | None, str]]:
    """Channel names and (pixel size in µm, note: see :func:`_square`) of the first image of an OME-XML
    description."""
    none = None, (None, "")
    if not xml or len(xml) > MAX_METADATA_BYTES or "<!ENTITY" in xml or "<!DOCTYPE" in xml:
        return none
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return none
    pixels = next((e for e in root.iter() if e.tag.endswith("}Pixels") or e.tag == "Pixels"), None)
    if pixels is None:
        return none
    channels = [e for e in pixels if e.tag.endswith("}Channel") or e.tag == "Channel"]
    names = tuple((c.get("Name") or "").strip() for c in channels)
    width = _microns(pixels.get("PhysicalSizeX"), pixels.get("PhysicalSizeXUnit") or "µm")
    height = _microns(pixels.get("PhysicalSizeY"), pixels.get("PhysicalSizeYUnit") or "µm")
    return (names if names and all(names) else None), _square(width, height)


def _imagej(meta: dict | None, page) -> tuple[tuple[str, ...] | None, tuple[float | None, str]]:
    """Channel names (the slice labels of a stack of channels only) and (pixel size in µm, note: see
    :func:`_square`) of ImageJ's tags."""
    meta = meta or {}
    names = None
    labels = meta.get("Labels")
    n_channels = int(meta.get("channels", 1) or 1)
    if (isinstance(labels, list) and n_channels > 1 and len(labels) == n_channels
            and int(meta.get("slices", 1) or 1) == 1 and int(meta.get("frames", 1) or 1) == 1):
        names = tuple(str(x).strip() for x in labels)
        names = names if all(names) else None
    unit = str(meta.get("unit", "")).strip()

    def size(tag_name: str) -> float | None:
        tag = page.tags.get(tag_name)
        if not unit or tag is None:
            return None
        num, den = tag.value
        return _microns(str(den / num), unit) if num else None  # pixels per unit

    return names, _square(size("XResolution"), size("YResolution"))


def _microns(value: str | None, unit: str) -> float | None:
    """``value`` in ``unit`` as µm, None when either is missing, unknown or implausible."""
    try:
        v = float(value) if value is not None else None
    except ValueError:
        return None
    factor = _MICRONS.get(re.sub(r"\s+", "", unit).lower())
    if v is None or factor is None or not v > 0:
        return None
    um = v * factor
    return um if _PIXEL_SIZE_RANGE_UM[0] <= um <= _PIXEL_SIZE_RANGE_UM[1] else None
