"""Record in a shipped model's card the sha256 of each DSB image its weights learnt from, of the file and of its
pixels (:func:`cellcount.io.pixel_digest`: the same image saved again), so that scoring it on them (Evaluate,
Compare, ``python -m cellcount.evaluate``) warns that the error there flatters the model.

    python scripts/card_train_digests.py [--data ../shared/datasets/dsb2018] [MODEL ...]

``cellcount.train`` records the lists itself (``training.train_sha256``, ``training.train_pixel_sha256``); this fills
them in for cards written before it did. The training part is rebuilt from the split rule the card states (the DSB files outside the held-out
part); the weights are untouched, only ``card.json`` changes.
"""
from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

from cellcount.groundtruth import load_dsb_folder
from cellcount.io import pixel_digest
from cellcount.models.card import CARD_FILE, read_card, write_card
from cellcount.models.loading import DEFAULT_WEIGHTS_DIR
from cellcount.training.data import dsb_part

RULE = re.compile(r"sha1\('(\d+):'\+filename\) % 10000 < ([0-9.]+) \* 10000 -> validation")


def training_files(data: Path, split: dict) -> list[Path]:
    """The files of ``data`` that a card's ``training.split`` puts in the training part."""
    m = RULE.fullmatch(str(split.get("rule")))
    if not m:
        raise SystemExit(f"unknown split rule {split.get('rule')!r}")
    seed, fraction = int(m.group(1)), float(m.group(2))
    if any(dsb_part(f, fraction, seed) == "train" for f in split.get("val_files") or []):
        raise SystemExit("the card's validation files are not its rule's held-out part")
    paths = [p for p, _ in load_dsb_folder(data, counts_only=True)]
    return [p for p in paths if dsb_part(p.name, fraction, seed) == "train"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", help="model names (default: every shipped model trained on DSB)")
    ap.add_argument("--data", type=Path, default=Path("../shared/datasets/dsb2018"))
    args = ap.parse_args(argv)
    names = args.models or sorted(p.parent.name for p in Path(DEFAULT_WEIGHTS_DIR).glob(f"*/{CARD_FILE}"))
    for name in names:
        folder = Path(DEFAULT_WEIGHTS_DIR) / name
        card = read_card(folder)
        split = card.training.get("split") if isinstance(card.training, dict) else None
        if not isinstance(split, dict) or "rule" not in split:
            print(f"{name}: no DSB split on its card, left as it is", file=sys.stderr)
            continue
        files = training_files(args.data, split)
        card.training["train_sha256"] = sorted({hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
                                               | card.training_digests())
        card.training["train_pixel_sha256"] = sorted({d for d in map(pixel_digest, files) if d}
                                                     | card.training_pixel_digests())
        write_card(card, folder)
        print(f"{name}: {len(card.training['train_sha256'])} training images recorded "
              f"({len(card.training['train_pixel_sha256'])} by their pixels)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
