"""False alarms of the input checks that need no model: how many images of each data set
:func:`cellcount.io.channels_differ` (or the RGB merge with an empty channel of
:func:`cellcount.io.normalize.input_note`) says mix stains, and how many of their planes
:func:`cellcount.io.normalize.label_image_note` takes for label images (with DSB's own label images, which it
should all catch).

    python scripts/check_channels.py [--datasets ../shared/datasets]

Reads every image of dsb2018, vgg_cells and mbm (no model runs) and prints, per set, the images read, those
with two or more channels holding signal, those said to mix stains and those said to be label images (with
their names).
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cellcount.io import channels_differ, list_image_files, read_image  # noqa: E402
from cellcount.io.normalize import _merge_with_an_empty_channel, label_image_note  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {platform.system()}")
    for name in ("dsb2018", "vgg_cells", "mbm"):
        files = list_image_files(args.datasets / name / "images")
        n_colour, flagged, labelled = 0, [], []
        for f in files:
            image = read_image(f)
            n_colour += image.ndim == 3
            if channels_differ(image) or _merge_with_an_empty_channel(image):
                flagged.append(f.name)
            planes = [image] if image.ndim == 2 else [image[..., c] for c in range(image.shape[2])]
            if any(label_image_note(plane) for plane in planes):
                labelled.append(f.name)
        print(f"{name}: {len(files)} images, {n_colour} with channels, {len(flagged)} said to mix stains "
              f"{flagged[:10]}, {len(labelled)} said to be label images {labelled[:10]}")
    labels = list_image_files(args.datasets / "dsb2018" / "labels", ground_truth=True)
    caught = sum(label_image_note(read_image(f)) is not None for f in labels)
    print(f"dsb2018 label images: {caught} of {len(labels)} said to be label images (the others hold fewer than "
          "3 objects)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
