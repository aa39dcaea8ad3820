"""The samples shipped in ``data/samples/``: a catalogue of :func:`make_synthetic` calls, and the command
``python -m cellcount.synthetic --out data/samples`` that (re)writes them; the output is deterministic."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from cellcount.errors import ParameterError

from .generator import make_synthetic

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class SampleSpec:
    """One shipped sample: file stem, seed, ``make_synthetic`` keyword arguments and a description."""

    name: str
    seed: int
    kwargs: Mapping[str, Any]
    conditions: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "kwargs", MappingProxyType(dict(self.kwargs)))


SAMPLE_SPECS: list[SampleSpec] = [
    SampleSpec(
        "s01_sparse_small",
        101,
        {"shape": (256, 256), "n_cells": 28, "radius_px": (3.5, 6.0), "cluster_fraction": 0.1},
        "sparse small nuclei, fluorescence, 8-bit",
    ),
    SampleSpec(
        "s02_dense_clusters",
        102,
        {"shape": (512, 512), "n_cells": 170, "radius_px": (7.0, 12.0), "cluster_fraction": 0.85,
         "overlap": 0.2},
        "dense touching clusters, fluorescence, 8-bit",
    ),
    SampleSpec(
        "s03_large_nuclei",
        103,
        {"shape": (512, 512), "n_cells": 32, "radius_px": (18.0, 30.0), "texture": 0.5,
         "shape_irregularity": 0.35},
        "large textured nuclei, fluorescence, 8-bit",
    ),
    SampleSpec(
        "s04_uneven_illumination",
        104,
        {"shape": (512, 512), "n_cells": 80, "radius_px": (6.0, 11.0), "illumination": 1.2,
         "background_level": 0.15},
        "strong uneven illumination, fluorescence, 8-bit",
    ),
    SampleSpec(
        "s05_16bit",
        105,
        {"shape": (384, 384), "n_cells": 55, "radius_px": (6.0, 12.0), "bit_depth": 16,
         "poisson_photons": 400.0},
        "16-bit TIFF (12-bit range, offset ~100), fluorescence",
    ),
    SampleSpec(
        "s06_heavy_blur",
        106,
        {"shape": (384, 384), "n_cells": 50, "radius_px": (7.0, 12.0), "blur_sigma": 3.5},
        "heavy blur (out of focus), fluorescence, 8-bit",
    ),
    SampleSpec(
        "s07_strong_noise",
        107,
        {"shape": (384, 384), "n_cells": 55, "radius_px": (6.0, 10.0), "poisson_photons": 12.0,
         "gaussian_sigma": 0.1},
        "strong shot and read noise, fluorescence, 8-bit",
    ),
    SampleSpec(
        "s08_brightfield_rgb",
        108,
        {"shape": (384, 512), "n_cells": 40, "radius_px": (6.0, 12.0), "bright_background": True,
         "shape_irregularity": 0.4, "cluster_fraction": 0.2},
        "bright background, stained RGB (H&E-like), 8-bit",
    ),
    SampleSpec(
        "s09_brightfield_dense_rgb",
        109,
        {"shape": (384, 384), "n_cells": 75, "radius_px": (5.0, 10.0), "bright_background": True,
         "cluster_fraction": 0.6, "texture": 0.5},
        "bright background, dense stained RGB, 8-bit",
    ),
    SampleSpec(
        "s10_low_contrast",
        110,
        {"shape": (384, 384), "n_cells": 50, "radius_px": (6.0, 11.0), "background_level": 2.0,
         "poisson_photons": 120.0, "intensity_spread": 0.4},
        "low contrast (high background haze), fluorescence, 8-bit",
    ),
    SampleSpec(
        "s11_mixed_sizes",
        111,
        {"shape": (512, 512), "n_cells": 75, "radius_px": (3.0, 20.0), "intensity_spread": 0.45},
        "mixed nucleus sizes, fluorescence, 8-bit",
    ),
    SampleSpec(
        "s12_large_field",
        112,
        {"shape": (768, 1024), "n_cells": 260, "radius_px": (5.0, 10.0), "cluster_fraction": 0.4},
        "large field 1024x768, many nuclei, fluorescence, 8-bit",
    ),
]


def sample_filename(spec: SampleSpec) -> str:
    """File name of a sample image: ``<name>.tif`` for 16-bit samples, ``<name>.png`` otherwise."""
    return f"{spec.name}.tif" if spec.kwargs.get("bit_depth", 8) == 16 else f"{spec.name}.png"


def write_samples(
    out_dir: str | Path, specs: Sequence[SampleSpec] = SAMPLE_SPECS, *, seed_offset: int = 0
) -> pd.DataFrame:
    """Generate the samples and write them with their ground truth.

    For each spec writes ``<name>.png`` (8-bit, grayscale or RGB) or ``<name>.tif`` (16-bit, zlib),
    ``<name>_labels.tif`` (uint16 instance labels, zlib) and ``<name>_points.csv`` (``row,col``
    centroids), then ``manifest.csv`` and ``counts.csv`` (``filename,count``). The output is
    deterministic: the same specs and ``seed_offset`` give byte-identical files.

    Parameters
    ----------
    out_dir : str or pathlib.Path
        Output folder, created if missing.
    specs : sequence of SampleSpec
        What to generate.
    seed_offset : int
        Added to every spec's seed (0 reproduces the shipped samples).

    Returns
    -------
    pandas.DataFrame
        The manifest: ``filename, count, height, width, dtype, conditions, channels, labels_file,
        points_file, seed, bright_background``.
    """
    import pandas as pd
    import tifffile
    from PIL import Image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ParameterError(f"sample names must be unique, got {names}")
    rows = []
    for spec in specs:
        seed = int(spec.seed) + int(seed_offset)
        sample = make_synthetic(rng=seed, **spec.kwargs)
        if sample.count > np.iinfo(np.uint16).max:
            raise ParameterError(f"{spec.name}: {sample.count} nuclei do not fit uint16 labels")
        fname = sample_filename(spec)
        if fname.endswith(".tif"):
            tifffile.imwrite(out / fname, sample.image, compression="zlib", metadata=None)
        else:
            Image.fromarray(sample.image).save(out / fname, format="PNG", compress_level=9)
        labels_file = f"{spec.name}_labels.tif"
        tifffile.imwrite(out / labels_file, sample.labels.astype(np.uint16), compression="zlib", metadata=None)
        points_file = f"{spec.name}_points.csv"
        pd.DataFrame(sample.centroids.round(3), columns=["row", "col"]).to_csv(
            out / points_file, index=False, float_format="%.3f", lineterminator="\n"
        )
        rows.append(
            {
                "filename": fname,
                "count": sample.count,
                "height": sample.image.shape[0],
                "width": sample.image.shape[1],
                "dtype": str(sample.image.dtype),
                "conditions": spec.conditions,
                "channels": 1 if sample.image.ndim == 2 else sample.image.shape[2],
                "labels_file": labels_file,
                "points_file": points_file,
                "seed": seed,
                "bright_background": bool(spec.kwargs.get("bright_background", False)),
            }
        )
        logger.info("wrote %s: %d nuclei", fname, sample.count)
    manifest = pd.DataFrame(rows)
    manifest.to_csv(out / "manifest.csv", index=False, lineterminator="\n")
    manifest[["filename", "count"]].to_csv(out / "counts.csv", index=False, lineterminator="\n")
    return manifest


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m cellcount.synthetic",
        description="Write the synthetic sample images with exact ground truth (labels, points, counts).",
    )
    parser.add_argument("--out", type=Path, default=Path("data/samples"), help="output folder")
    parser.add_argument("--seed-offset", type=int, default=0, help="added to every sample seed (default 0)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every file written")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point: ``python -m cellcount.synthetic --out data/samples [--seed-offset 0]``."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    manifest = write_samples(args.out, SAMPLE_SPECS, seed_offset=args.seed_offset)
    print(f"wrote {len(manifest)} samples ({int(manifest['count'].sum())} nuclei) to {args.out}")
    return 0

