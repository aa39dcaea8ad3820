"""Synthetic nuclei images with exact ground truth: the generator (:mod:`~cellcount.synthetic.generator`)
and the catalogue of shipped samples (:mod:`~cellcount.synthetic.samples`, ``python -m cellcount.synthetic``)."""

from .generator import (
    CONDENSED_FRACTION,
    MIN_VISIBLE_AREA_PX,
    MIN_VISIBLE_FRACTION,
    SyntheticSample,
    make_synthetic,
)
from .samples import SAMPLE_SPECS, SampleSpec, main, sample_filename, write_samples

__all__ = [
    "CONDENSED_FRACTION",
    "MIN_VISIBLE_AREA_PX",
    "MIN_VISIBLE_FRACTION",
    "SAMPLE_SPECS",
    "SampleSpec",
    "SyntheticSample",
    "main",
    "make_synthetic",
    "sample_filename",
    "write_samples",
]
