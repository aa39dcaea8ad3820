"""Image input/output, one module per concern; every public name is importable from ``cellcount.io``.

* :mod:`~cellcount.io.read`: bytes, paths or file-likes -> arrays in their native dtype, caps checked first;
* :mod:`~cellcount.io.normalize`: any image -> the models' float32 (H, W) input (:func:`model_input`);
* :mod:`~cellcount.io.display`: any image -> a uint8 RGB picture;
* :mod:`~cellcount.io.files`: image files in folders and globs, ground-truth file names;
* :mod:`~cellcount.io.archive`: zip uploads, read safely within budgets;
* :mod:`~cellcount.io.export`: label images as TIFF;
* :mod:`~cellcount.io.metadata`: what a file says of itself (channel names, pixel size).

Arrays are (row, col) = (H, W) or (H, W, C) with the channel last. Every error a user can trigger is one
of :mod:`cellcount.errors`.
"""

from .archive import (
    DEFAULT_ZIP_MAX_BYTES,
    DEFAULT_ZIP_MAX_FILES,
    GROUND_TRUTH_TABLE_EXTENSIONS,
    count_zip_images,
    iter_zip_images,
    iter_zip_members,
    left_out,
    open_zip,
    zip_files,
    zip_image_names,
)
from .display import image_to_display_rgb
from .export import labels_to_tiff_bytes
from .files import (
    DOT_DIRS,
    GROUND_TRUTH_DIRS,
    GROUND_TRUTH_SUFFIXES,
    GROUND_TRUTH_WORDS,
    IMAGE_EXTENSIONS,
    IMAGE_WORDS,
    IMAGEJ_ROI_EXTENSIONS,
    cell_counter_stem,
    ground_truth_suffix,
    imagej_roi_stem,
    list_image_files,
    readable_paths,
    role_word_ground_truth,
    short_name,
    split_ground_truth_files,
    word_base,
)
from .metadata import ImageMetadata, read_metadata
from .normalize import (
    BRIGHT_BACKGROUND_POSITION,
    CLIPPED_SHARE,
    GRAYSCALE_MODES,
    NORMALIZED_RANGE,
    SMALL_IMAGE_PX,
    background_note,
    channels_differ,
    check_pixels,
    exposure_note,
    hematoxylin,
    input_note,
    is_bright_background,
    is_colour,
    model_input,
    normalization_limits,
    normalize_image,
    to_gray,
)
from .read import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    MAX_SAMPLES_PER_PIXEL,
    ImageSource,
    as_pixels,
    image_shape,
    not_an_image,
    pixel_digest,
    planes_note,
    projection_note,
    read_image,
    read_image_and_note,
    read_image_planes,
)

__all__ = [
    "ImageMetadata",
    "read_metadata",
    "BRIGHT_BACKGROUND_POSITION",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_ZIP_MAX_BYTES",
    "DEFAULT_ZIP_MAX_FILES",
    "GRAYSCALE_MODES",
    "DOT_DIRS",
    "GROUND_TRUTH_DIRS",
    "GROUND_TRUTH_SUFFIXES",
    "GROUND_TRUTH_WORDS",
    "IMAGE_WORDS",
    "GROUND_TRUTH_TABLE_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "MAX_SAMPLES_PER_PIXEL",
    "NORMALIZED_RANGE",
    "ImageSource",
    "ground_truth_suffix",
    "readable_paths",
    "short_name",
    "role_word_ground_truth",
    "word_base",
    "hematoxylin",
    "image_shape",
    "image_to_display_rgb",
    "check_pixels",
    "background_note",
    "CLIPPED_SHARE",
    "SMALL_IMAGE_PX",
    "exposure_note",
    "input_note",
    "is_bright_background",
    "channels_differ",
    "is_colour",
    "count_zip_images",
    "zip_image_names",
    "iter_zip_images",
    "iter_zip_members",
    "open_zip",
    "zip_files",
    "left_out",
    "labels_to_tiff_bytes",
    "list_image_files",
    "model_input",
    "normalization_limits",
    "normalize_image",
    "as_pixels",
    "read_image",
    "pixel_digest",
    "read_image_and_note",
    "not_an_image",
    "planes_note",
    "projection_note",
    "read_image_planes",
    "split_ground_truth_files",
    "cell_counter_stem",
    "IMAGEJ_ROI_EXTENSIONS",
    "imagej_roi_stem",
    "to_gray",
]
