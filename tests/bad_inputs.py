"""A table of bad and odd inputs, shared by the robustness tests of the library, the CLI and the app.

Each :class:`BadInput` is a function that makes the bytes of one file, the name the file gets in a
folder / zip / upload, and what must happen:

* ``error`` is a :mod:`cellcount.errors` type and ``match`` a case-insensitive substring of the message
  for inputs that must be refused;
* ``error is None`` for odd-but-valid inputs, which must be *counted* (``expected_count`` when the exact
  count is known, else any count >= 0), possibly with a ``warning``.

``target`` says which reader the input is for: ``"image"`` (``read_image`` + ``count_image``),
``"ground_truth"`` (``read_ground_truth`` against an image of shape :data:`GT_IMAGE_SHAPE`),
``"zip"`` (``cellcount.io.iter_zip_images``) or ``"weights"`` (a model folder for ``load_model``;
``card_sha`` says which sha256 the card holds).

Everything is built in memory from geometry (no downloads), in a few milliseconds per case, except the
>65,535-object image (about 0.3 s to count).
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import tifffile
from PIL import Image

from cellcount.errors import (
    CellcountError,
    GroundTruthError,
    ImageReadError,
    ImageTooLargeError,
    WeightsIntegrityError,
)
from cellcount.groundtruth import BinaryMaskWarning

# Geometry of the "blobs" test picture: 4 bright disks of radius 7 on a dark background.
BLOB_SHAPE = (64, 96)
BLOB_CENTERS = ((16, 18), (20, 70), (46, 30), (48, 76))
BLOB_RADIUS = 7
N_BLOBS = len(BLOB_CENTERS)

GT_IMAGE_SHAPE = (64, 64)
"""Shape (H, W) of the image that the ground-truth cases are checked against."""

MANY_GRID = 325
"""The >65,535-object image has MANY_GRID**2 = 105,625 separate 2 x 2 dots."""
MANY_PARAMS = {"min_area_px": 0, "opening_radius_px": 0, "split_mode": "off", "fill_holes": False}
"""Count settings that keep 2 x 2 dots (the defaults drop objects below 15 px)."""

SMALL_BYTE_CAP = 1000
"""``max_bytes`` of the 'upload above the size cap' case (the real default cap is 1 GiB)."""

TINY_NET_KWARGS = {"base_width": 4, "depth": 2, "head": "mask", "out_channels": 2}
"""Constructor arguments of the tiny untrained U-Net used for weights and tiling tests."""

PICKLE_ENV_FLAG = "CELLCOUNT_TEST_PICKLE_PAYLOAD_RAN"
"""The pickle payloads set this environment variable if they are ever unpickled."""


@dataclass(frozen=True)
class BadInput:
    """One bad or odd input and the outcome it must have (see the module docstring)."""

    id: str
    filename: str
    make: Callable[[], bytes]
    error: type[CellcountError] | None
    match: str = ""
    target: str = "image"
    read_kwargs: dict[str, Any] = field(default_factory=dict)
    count_params: dict[str, Any] | None = None
    expected_count: int | None = None
    expected_shape: tuple[int, ...] | None = None
    warning: type[Warning] | None = None
    card_sha: str = "match"  # weights only: "match" | "original" | "none"
    zip_ok: tuple[str, ...] = ()  # zip only: member names that must come through as images
    zip_skipped: tuple[str, ...] = ()  # zip only: member names that must be reported with a reason
    cli: bool = True  # image only: include it in the CLI folder (False for cases that need read_kwargs)

    @property
    def valid(self) -> bool:
        return self.error is None


# --------------------------------------------------------------------------------------------------
# encoders
# --------------------------------------------------------------------------------------------------
def pil_bytes(img: Image.Image, fmt: str = "PNG", **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def png_bytes(arr: np.ndarray) -> bytes:
    """PNG of a uint8 / uint16 (H, W) or uint8 (H, W, 3|4) array (Pillow)."""
    return pil_bytes(Image.fromarray(arr))


def tiff_bytes(arr: np.ndarray, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, **kwargs)
    return buf.getvalue()


def blobs(shape: tuple[int, int] = BLOB_SHAPE, centers=BLOB_CENTERS, *, dtype=np.uint8) -> np.ndarray:
    """Dark background (20) with bright disks (200) of radius BLOB_RADIUS: exactly len(centers) cells."""
    rr, cc = np.mgrid[: shape[0], : shape[1]]
    img = np.full(shape, 20, dtype=np.float64)
    for r, c in centers:
        img[(rr - r) ** 2 + (cc - c) ** 2 <= BLOB_RADIUS**2] = 200
    return img.astype(dtype)


def blobs_rgb() -> np.ndarray:
    g = blobs()
    return np.stack([g, (g * 0.8).astype(np.uint8), (g * 0.5).astype(np.uint8)], axis=2)


def patch_png_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrite the IHDR of a PNG to claim another size (the pixel data stay tiny)."""
    assert data[12:16] == b"IHDR"
    ihdr = b"IHDR" + struct.pack(">II", width, height) + data[24:29]
    return data[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + data[33:]


def patch_tiff_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrite ImageWidth / ImageLength of the first IFD of a little-endian TIFF."""
    out = bytearray(data)
    assert out[:4] == b"II*\x00"
    off = struct.unpack("<I", out[4:8])[0]
    for i in range(struct.unpack("<H", out[off : off + 2])[0]):
        e = off + 2 + 12 * i
        tag, typ = struct.unpack("<HH", out[e : e + 4])
        if tag in (256, 257):
            value = width if tag == 256 else height
            if typ == 3:  # SHORT
                out[e + 8 : e + 10] = struct.pack("<H", min(value, 0xFFFF))
            else:
                out[e + 8 : e + 12] = struct.pack("<I", value)
    return bytes(out)


def png_bomb(side: int = 30000) -> bytes:
    """A ~70-byte PNG whose header claims side x side pixels."""
    return patch_png_size(png_bytes(np.zeros((8, 8), np.uint8)), side, side)


def png16_rgb_bomb(side: int = 30000) -> bytes:
    """16-bit RGB PNG (the OpenCV path of read_image) claiming side x side pixels."""
    import cv2

    ok, enc = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint16))
    assert ok
    return patch_png_size(enc.tobytes(), side, side)


def tiff_bomb(side: int = 30000) -> bytes:
    return patch_tiff_size(tiff_bytes(np.zeros((8, 8), np.uint8)), side, side)


def jpeg_bomb(side: int = 30000) -> bytes:
    data = bytearray(pil_bytes(Image.fromarray(np.zeros((8, 8), np.uint8)), "JPEG"))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", side, side)
    return bytes(data)


def many_objects_image() -> np.ndarray:
    """(1300, 1300) uint8 with MANY_GRID**2 separate 2 x 2 dots (more than 65,535 objects)."""
    on = np.arange(4 * MANY_GRID) % 4 < 2
    img = np.full((4 * MANY_GRID, 4 * MANY_GRID), 10, np.uint8)
    img[np.ix_(on, on)] = 200
    return img


def many_labels(n_side: int = 300) -> np.ndarray:
    """uint32 label image with n_side**2 (90,000) single-pixel objects."""
    labels = np.zeros((3 * n_side, 3 * n_side), np.uint32)
    labels[::3, ::3] = np.arange(1, n_side * n_side + 1, dtype=np.uint32).reshape(n_side, n_side)
    return labels


# --------------------------------------------------------------------------------------------------
# image cases
# --------------------------------------------------------------------------------------------------
def _truncated_png() -> bytes:
    data = png_bytes(blobs())
    return data[: len(data) // 2]


def _flip_byte(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0xFF]) + data[index + 1 :]


def _exif_rotated_jpeg() -> bytes:
    """A JPEG stored rotated, with EXIF orientation 6: displayed, it is the (96, 64) blobs picture."""
    displayed = np.ascontiguousarray(np.rot90(blobs_rgb(), k=-1))  # (96, 64, 3)
    stored = np.ascontiguousarray(np.rot90(displayed, k=1))  # rotate 90 CW to display
    img = Image.fromarray(stored)
    exif = img.getexif()
    exif[0x0112] = 6
    return pil_bytes(img, "JPEG", quality=95, exif=exif.tobytes())


def _rgba_png() -> bytes:
    rgba = np.dstack([blobs_rgb(), np.linspace(0, 255, BLOB_SHAPE[1], dtype=np.uint8)[None, :].repeat(64, 0)])
    return pil_bytes(Image.fromarray(rgba, mode="RGBA"))


def _palette_png() -> bytes:
    return pil_bytes(Image.fromarray(blobs_rgb()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16))


def _cmyk_jpeg() -> bytes:
    return pil_bytes(Image.fromarray(blobs_rgb()).convert("CMYK"), "JPEG", quality=95)


def _float_nan_inf_tiff() -> bytes:
    arr = blobs().astype(np.float32) / 255.0
    arr[0, 0] = np.nan
    arr[0, 1] = np.inf
    arr[63, 95] = -np.inf
    arr[30:33, 50:53] = np.nan
    return tiff_bytes(arr)


def _four_d_tiff() -> bytes:
    return tiff_bytes(np.zeros((2, 3, 16, 16), np.uint8), imagej=True, metadata={"axes": "TZYX"})


def _five_plane_stack() -> bytes:
    return tiff_bytes(np.zeros((2, 5, 16, 16), np.uint16))


IMAGE_CASES: list[BadInput] = [
    BadInput("zero-bytes", "empty.png", lambda: b"", ImageReadError, "empty"),
    BadInput("truncated-png", "truncated.png", _truncated_png, ImageReadError, "truncated"),
    BadInput(
        "png-signature-only", "signature_only.png", lambda: png_bytes(blobs())[:20], ImageReadError, "cannot read"
    ),
    BadInput("png-corrupt-header-crc", "bad_crc.png", lambda: _flip_byte(png_bytes(blobs()), 29), ImageReadError,
             "corrupt"),
    BadInput("text-as-png", "notes_renamed.png", lambda: b"cell count notes\n" * 20, ImageReadError, "not an image"),
    BadInput(
        "html-as-png",
        "error_page.png",
        lambda: b"<!DOCTYPE html>\n<html><head><title>404</title></head><body>Not found</body></html>\n",
        ImageReadError,
        "html",
    ),
    BadInput("text-as-tiff", "notes_renamed.tif", lambda: b"II*\x00 but then plain text", ImageReadError, "TIFF"),
    BadInput("png-bomb-30000", "bomb.png", png_bomb, ImageTooLargeError, "max_pixels"),
    BadInput("png16-rgb-bomb-30000", "bomb16.png", png16_rgb_bomb, ImageTooLargeError, "max_pixels"),
    BadInput("tiff-bomb-30000", "bomb.tif", tiff_bomb, ImageTooLargeError, "max_pixels"),
    BadInput("jpeg-bomb-30000", "bomb.jpg", jpeg_bomb, ImageTooLargeError, "max_pixels"),
    BadInput("png-9000-above-cap", "big9000.png", lambda: png_bomb(9000), ImageTooLargeError, "max_pixels"),
    BadInput("tiff-4d-tzyx", "stack_tzyx.tif", _four_d_tiff, ImageReadError, "more than 3 non-singleton"),
    BadInput("tiff-4d-plain", "stack_qqyx.tif", _five_plane_stack, ImageReadError, "maximum projection"),
    BadInput(
        "above-byte-cap",
        "upload.png",
        lambda: png_bytes(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)),
        ImageTooLargeError,
        "above the cap",
        read_kwargs={"max_bytes": SMALL_BYTE_CAP},
        cli=False,  # the CLI has the 1 GiB default; tested with a sparse file instead
    ),
    # ---- odd but valid: must be counted ------------------------------------------------------------
    BadInput("1x1", "one_pixel.png", lambda: png_bytes(np.array([[200]], np.uint8)), None,
             expected_count=0, expected_shape=(1, 1)),
    BadInput("100000x1", "tall_line.png", lambda: png_bytes((np.arange(100000) % 251).astype(np.uint8)[:, None]),
             None, expected_shape=(100000, 1)),
    BadInput("1x100000", "wide_line.tif", lambda: tiff_bytes((np.arange(100000) % 251).astype(np.uint16)[None, :]),
             None, expected_shape=(1, 100000)),
    BadInput("all-zero-16bit-png", "zeros16.png", lambda: png_bytes(np.zeros((64, 64), np.uint16)), None,
             expected_count=0, expected_shape=(64, 64)),
    BadInput("all-zero-16bit-tiff", "zeros16.tif", lambda: tiff_bytes(np.zeros((64, 64), np.uint16)), None,
             expected_count=0, expected_shape=(64, 64)),
    BadInput("float-nan-inf-tiff", "float_nan_inf.tif", _float_nan_inf_tiff, None,
             expected_count=N_BLOBS, expected_shape=BLOB_SHAPE),
    BadInput("all-nan-float-tiff", "all_nan.tif", lambda: tiff_bytes(np.full((32, 32), np.nan, np.float32)), None,
             expected_count=0, expected_shape=(32, 32)),
    BadInput("rgba-png", "rgba.png", _rgba_png, None, expected_count=N_BLOBS, expected_shape=(*BLOB_SHAPE, 3)),
    BadInput("palette-png", "palette.png", _palette_png, None, expected_count=N_BLOBS,
             expected_shape=(*BLOB_SHAPE, 3)),
    BadInput("cmyk-jpeg", "cmyk.jpg", _cmyk_jpeg, None, expected_count=N_BLOBS, expected_shape=(*BLOB_SHAPE, 3)),
    BadInput("exif-rotated-jpeg", "exif_rotated.jpg", _exif_rotated_jpeg, None, expected_count=N_BLOBS,
             expected_shape=(BLOB_SHAPE[1], BLOB_SHAPE[0], 3)),
    BadInput("more-than-65535-objects", "many_objects.png", lambda: png_bytes(many_objects_image()), None,
             count_params=MANY_PARAMS, expected_count=MANY_GRID**2, expected_shape=(4 * MANY_GRID, 4 * MANY_GRID)),
]


# --------------------------------------------------------------------------------------------------
# ground-truth cases (checked against an image of shape GT_IMAGE_SHAPE)
# --------------------------------------------------------------------------------------------------
def _labels_32() -> bytes:
    lab = np.zeros((32, 32), np.uint16)
    lab[2:8, 2:8] = 1
    lab[12:18, 12:18] = 2
    return tiff_bytes(lab)


def _binary_mask_255() -> bytes:
    mask = np.zeros(GT_IMAGE_SHAPE, np.uint8)
    for r, c in ((10, 10), (10, 40), (40, 25)):
        mask[r : r + 8, c : c + 8] = 255
    return png_bytes(mask)


def _binary_mask_01() -> bytes:
    mask = np.zeros(GT_IMAGE_SHAPE, np.uint8)
    mask[5:15, 5:15] = 1
    mask[30:40, 30:40] = 1
    return png_bytes(mask)


def _negative_labels() -> bytes:
    lab = np.zeros(GT_IMAGE_SHAPE, np.int16)
    lab[3:9, 3:9] = -4
    return tiff_bytes(lab)


def _nan_labels() -> bytes:
    lab = np.zeros(GT_IMAGE_SHAPE, np.float32)
    lab[3:9, 3:9] = np.nan
    return tiff_bytes(lab)


def _fractional_labels() -> bytes:
    lab = np.zeros(GT_IMAGE_SHAPE, np.float32)
    lab[3:9, 3:9] = 1.5
    return tiff_bytes(lab)


def _square_mask() -> np.ndarray:
    mask = np.zeros(GT_IMAGE_SHAPE, np.uint8)
    mask[4:12, 4:12] = 255
    return mask


def _many_labels_tiff() -> bytes:
    return tiff_bytes(many_labels(), compression="zlib")


GT_CASES: list[BadInput] = [
    BadInput("gt-wrong-shape", "img_labels.tif", _labels_32, GroundTruthError, "does not match", "ground_truth"),
    BadInput("gt-not-an-image", "img_labels.png", lambda: b"<html>oops</html>", GroundTruthError, "cannot read",
             "ground_truth"),
    BadInput("gt-empty-file", "img_labels.tif", lambda: b"", GroundTruthError, "empty", "ground_truth"),
    BadInput("gt-jpeg-labels", "img_labels.jpg", lambda: pil_bytes(Image.fromarray(np.zeros(GT_IMAGE_SHAPE, np.uint8)),
             "JPEG"), GroundTruthError, "lossy", "ground_truth"),
    # the format read from the content: a 0/255 mask saved as JPEG and named .png read 59 objects for 16
    BadInput("gt-jpeg-named-png", "img_labels.png", lambda: pil_bytes(Image.fromarray(_square_mask()), "JPEG"),
             GroundTruthError, "JPEG (read from its content), which is lossy", "ground_truth"),
    BadInput("gt-jpeg-compressed-tiff", "img_labels.tif", lambda: tiff_bytes(_square_mask(), compression="jpeg"),
             GroundTruthError, "a JPEG-compressed TIFF (read from its content)", "ground_truth"),
    BadInput("gt-negative-labels", "img_labels.tif", _negative_labels, GroundTruthError, ">= 0", "ground_truth"),
    BadInput("gt-nan-labels", "img_labels.tif", _nan_labels, GroundTruthError, "nan", "ground_truth"),
    BadInput("gt-fractional-labels", "img_labels.tif", _fractional_labels, GroundTruthError, "whole numbers",
             "ground_truth"),
    BadInput("gt-points-outside", "img_points.csv", lambda: b"y,x\n10,10\n500,20\n", GroundTruthError,
             "outside the image", "ground_truth"),
    BadInput("gt-points-negative", "img_points.csv", lambda: b"y,x\n10,10\n-3,20\n", GroundTruthError,
             "non-negative number", "ground_truth"),
    BadInput("gt-points-not-numbers", "img_points.csv", lambda: b"row,col\n10,ten\n", GroundTruthError,
             "non-negative number", "ground_truth"),
    BadInput("gt-counts-table-as-points", "img_points.csv", lambda: b"filename,count\nimg.png,3\n",
             GroundTruthError, "table of counts", "ground_truth"),
    BadInput("gt-points-empty-csv", "img_points.csv", lambda: b"", GroundTruthError, "empty", "ground_truth"),
    BadInput("gt-csv-without-coordinates", "img_points.csv", lambda: b"a,b\n1,2\n", GroundTruthError,
             "no coordinate columns", "ground_truth"),
    # odd but valid: binary masks given as labels are split by connectivity, with a warning
    BadInput("gt-binary-mask-255-as-labels", "img_labels.png", _binary_mask_255, None, target="ground_truth",
             expected_count=3, warning=BinaryMaskWarning),
    BadInput("gt-binary-mask-01-as-labels", "img_labels.png", _binary_mask_01, None, target="ground_truth",
             expected_count=2, warning=BinaryMaskWarning),
    BadInput("gt-more-than-65535-labels", "img_labels.tif", _many_labels_tiff, None, target="ground_truth",
             expected_count=300 * 300, read_kwargs={"expected_shape": (900, 900)}),
]


# --------------------------------------------------------------------------------------------------
# zip cases
# --------------------------------------------------------------------------------------------------
def _mixed_zip() -> bytes:
    good = png_bytes(blobs())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("top.png", good)
        zf.writestr("plate1/well_a/deep/nested.png", good)
        zf.writestr("plate1/", b"")
        zf.writestr("plate1/readme.txt", "not an image")
        zf.writestr("plate1/results.csv", "a,b\n1,2\n")
        zf.writestr("../escape.png", good)
        zf.writestr("/etc/absolute.png", good)
        zf.writestr("C:/windows/drive.png", good)
        zf.writestr("plate1/../../up_two.png", good)
        zf.writestr("__MACOSX/plate1/._nested.png", b"\x00\x05\x16\x07")
        zf.writestr("plate1/html_renamed.png", b"<html>not an image</html>")
    return buf.getvalue()


ZIP_CASES: list[BadInput] = [
    BadInput(
        "zip-nested-nonimages-traversal",
        "upload.zip",
        _mixed_zip,
        None,
        target="zip",
        zip_ok=("top.png", "plate1/well_a/deep/nested.png", "plate1/html_renamed.png"),
        zip_skipped=(
            "plate1/readme.txt",
            "plate1/results.csv",
            "../escape.png",
            "/etc/absolute.png",
            "C:/windows/drive.png",
            "plate1/../../up_two.png",
        ),
    ),
    BadInput("zip-corrupt", "broken.zip", lambda: b"PK\x03\x04" + b"\x00" * 40, ImageReadError, "not a readable zip",
             target="zip"),
    BadInput("zip-empty-bytes", "empty.zip", lambda: b"", ImageReadError, "not a readable zip", target="zip"),
    BadInput("zip-is-a-png", "image.zip", lambda: png_bytes(blobs()), ImageReadError, "not a readable zip",
             target="zip"),
]


# --------------------------------------------------------------------------------------------------
# weights cases (a model folder: card.json for the tiny U-Net + this weights file)
# --------------------------------------------------------------------------------------------------
class _PicklePayload:
    """Unpickling this sets PICKLE_ENV_FLAG: proof that a loader executed pickle code."""

    def __reduce__(self):
        return (exec, (f"import os; os.environ[{PICKLE_ENV_FLAG!r}] = '1'",))


@cache
def tiny_net_weights() -> bytes:
    """safetensors bytes of the tiny U-Net (seeded, so always the same bytes)."""
    import torch
    from safetensors.torch import save

    from cellcount.models import create_model

    torch.manual_seed(0)
    net = create_model("unet", **TINY_NET_KWARGS)
    return save({k: v.detach().contiguous() for k, v in net.state_dict().items()})


def _tampered_weights() -> bytes:
    data = bytearray(tiny_net_weights())
    data[-1] ^= 0x01  # one flipped bit in the last tensor
    return bytes(data)


def _raw_pickle() -> bytes:
    return pickle.dumps({"state_dict": _PicklePayload()})


def _torch_save_pickle() -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save({"conv.weight": _PicklePayload()}, buf)
    return buf.getvalue()


def _wrong_tensors() -> bytes:
    import torch
    from safetensors.torch import save

    return save({"not_a_layer": torch.zeros(3)})


WEIGHTS_CASES: list[BadInput] = [
    BadInput("weights-sha256-mismatch", "weights.safetensors", _tampered_weights, WeightsIntegrityError, "sha256",
             target="weights", card_sha="original"),
    BadInput("weights-pickle-payload", "weights.safetensors", _raw_pickle, WeightsIntegrityError,
             "not a valid safetensors", target="weights"),
    BadInput("weights-torch-save-pickle", "weights.safetensors", _torch_save_pickle, WeightsIntegrityError,
             "not a valid safetensors", target="weights"),
    BadInput("weights-truncated", "weights.safetensors", lambda: tiny_net_weights()[:100], WeightsIntegrityError,
             "not a valid safetensors", target="weights"),
    BadInput("weights-empty", "weights.safetensors", lambda: b"", WeightsIntegrityError, "not a valid safetensors",
             target="weights"),
    BadInput("weights-wrong-tensors", "weights.safetensors", _wrong_tensors, WeightsIntegrityError, "do not fit",
             target="weights"),
    BadInput("weights-card-without-sha256", "weights.safetensors", tiny_net_weights, WeightsIntegrityError,
             "no sha256", target="weights", card_sha="none"),
]

ALL_CASES: list[BadInput] = IMAGE_CASES + GT_CASES + ZIP_CASES + WEIGHTS_CASES


def cases(target: str) -> list[BadInput]:
    """The cases of one target ('image', 'ground_truth', 'zip', 'weights')."""
    return [c for c in ALL_CASES if c.target == target]


def write_model_folder(case: BadInput, folder) -> None:
    """Write card.json + the case's weights file into ``folder`` (a pathlib.Path)."""
    import hashlib

    from cellcount.models import ModelCard, write_card

    folder.mkdir(parents=True, exist_ok=True)
    data = case.make()
    (folder / case.filename).write_bytes(data)
    sha = {
        "match": hashlib.sha256(data).hexdigest(),
        "original": hashlib.sha256(tiny_net_weights()).hexdigest(),
        "none": "",
    }[case.card_sha]
    card = ModelCard(
        name=folder.name,
        architecture="unet",
        output_kind="mask",
        kwargs=dict(TINY_NET_KWARGS),
        weights_file=case.filename,
        sha256=sha,
    )
    write_card(card, folder)
