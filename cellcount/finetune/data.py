"""The user's annotated images for a fine-tune: read, part held out, fingerprinted."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from ..errors import GroundTruthError, ParameterError
from ..groundtruth import GroundTruth

DEFAULT_HOLDOUT = 0.25


MIN_TRAIN_IMAGES = 1


# --------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------
def _images(n: int, kind: str = "") -> str:
    """'1 training image', '3 training images'."""
    return f"{n} {kind + ' ' if kind else ''}image{'' if n == 1 else 's'}"


def holdout_asked(holdout: float | int, n: int) -> int:
    """How many of ``n`` images ``holdout`` (a fraction below 1, or a number) asks to hold out."""
    return int(round(holdout * n)) if isinstance(holdout, float) and holdout < 1 else int(holdout)


def split_holdout(names: Sequence[str], holdout: float | int, *, seed: int = 0) -> tuple[list[int], list[int]]:
    """Indices (train, held out). ``holdout`` is a fraction (0-1) or a number of images; at least one image
    trains, and at least one is held out when there are two or more (none otherwise)."""
    n = len(names)
    if n == 0:
        raise GroundTruthError("no annotated images to fine-tune on")
    k = holdout_asked(holdout, n)
    if k < 0:
        raise ParameterError(f"holdout must be >= 0, got {holdout}")
    k = min(k, n - MIN_TRAIN_IMAGES)
    if n >= 2 and holdout:
        k = max(k, 1)
    held = _whole_groups(names, k, seed) if k else []
    if not held:  # each image its own group, or no group small enough: images drawn one by one
        order = np.random.default_rng(seed).permutation(n)
        held = sorted(int(i) for i in order[:k])
    return [i for i in range(n) if i not in set(held)], held


def name_group(name: str) -> str:
    """The images ``name`` belongs with: its folder and stem without a trailing number (``BM_0001_02_000.png`` and
    ``BM_0001_02_001.png``, two tiles of one slide; ``img3.png`` and ``img4.png``). A name that is all digits
    (``a/1.png``) and one numbered otherwise (``cell 12 (1).png``) stays a group of its own."""
    p = PurePosixPath(str(name).replace("\\", "/"))
    return str(p.parent / (re.sub(r"[ _.-]*\d+$", "", p.stem) or p.stem)).casefold()


def name_groups(names: Sequence[str]) -> dict[str, list[int]] | None:
    """The indices of ``names`` by :func:`name_group`, where the names say something: at least two groups of two
    or more (slides of tiles); None for names that share nothing, or all but a few one prefix (img01 ... img19)."""
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(name_group(name), []).append(i)
    return groups if sum(len(g) > 1 for g in groups.values()) >= 2 else None


def _whole_groups(names: Sequence[str], k: int, seed: int) -> list[int]:
    """About ``k`` held-out images made of whole :func:`name_groups` groups: a tile held out beside its neighbours
    in training scored the fine-tune on its own slide (a tester: MAE 1.76 held out, 9.27 on other patients). Groups
    drawn at random up to about ``k`` (a group may take it to 1.5 ``k``, never past half the images); [] where the
    names say nothing or no draw comes near ``k``, and the images are then drawn one by one."""
    groups = name_groups(names)
    if groups is None:
        return []
    n = len(names)
    cap = min(max(k + 1, math.ceil(1.5 * k)), n // 2, n - MIN_TRAIN_IMAGES)
    held: list[int] = []
    keys = sorted(groups)
    for g in np.random.default_rng(seed).permutation(len(keys)):
        members = groups[keys[int(g)]]
        if len(held) >= k:
            break
        if len(held) + len(members) <= cap:
            held += members
    return sorted(held) if len(held) >= math.ceil(k / 2) else []


def _hold_out_unseen(items, train_idx: list[int], held_idx: list[int], seen: set[str],
                     seen_pixels: set[str] = frozenset()):
    """(train, held out, names held out that the base learnt from): held-out images the base model was trained on
    are swapped for training images it never saw (scored on its own training images, the base looked better than
    it is, which decides whether its weights are kept), but at most half of those unseen images go: they are often
    the few new ones a user annotated to fine-tune again, and the new model must learn from them too. ``seen``: the
    base's training images' file sha256; ``seen_pixels``: their :func:`cellcount.io.pixel_digest` (saved again)."""
    if not seen or not held_idx:
        return train_idx, held_idx, []
    from ..io import pixel_digest

    learnt = {i for i, (_, raw, _) in enumerate(items)
              if hashlib.sha256(raw).hexdigest() in seen or (seen_pixels and pixel_digest(raw) in seen_pixels)}
    fresh = [i for i in train_idx if i not in learnt]
    unseen = len([i for i in range(len(items)) if i not in learnt])
    swaps = max(0, len(fresh) - math.ceil(unseen / 2))  # at least half of the unseen images keep training
    held, train = list(held_idx), list(train_idx)
    for k, i in enumerate(held):
        if i in learnt and swaps > 0:
            j = fresh.pop(0)
            swaps -= 1
            held[k] = j
            train[train.index(j)] = i
    return sorted(train), sorted(held), [items[i][0] for i in sorted(held) if i in learnt]


def data_fingerprint(items: Sequence[tuple[str, bytes, GroundTruth]]) -> str:
    """sha256 over each image's name, bytes and annotation (so the card says exactly what it learnt from)."""
    h = hashlib.sha256()
    for name, data, gt in sorted(items, key=lambda item: item[0]):
        h.update(name.encode())
        h.update(hashlib.sha256(data).digest())
        h.update(gt.content_bytes())
    return h.hexdigest()


LabelledItems = Sequence[tuple[str, bytes, GroundTruth]]
"""(image name, encoded image bytes, annotation) per image, as :func:`cellcount.labelled.labelled_set` pairs
uploads in memory."""


def _labelled_items(
    data: str | Path | LabelledItems, skipped: list[str] | None = None,
) -> tuple[list[tuple[str, bytes, GroundTruth]], str]:
    """The annotated images of a folder (read from disk) or of in-memory items, and a description of where
    they came from for the card. A folder's image whose file or annotation cannot be used is left out and
    named in ``skipped`` (as ``count`` and ``evaluate`` do) when a list is given."""
    from ..groundtruth import item_names, load_labelled_folder

    if isinstance(data, (str, Path)):
        on_error = None if skipped is None else (lambda path, why: skipped.append(f"{path.name}: {why}"))
        pairs = load_labelled_folder(data, on_error=on_error)
        if not pairs:
            raise GroundTruthError(f"no images with annotations found in {data}")
        names = item_names(data, [p for p, _ in pairs])
        # the folder's name, not its path: a card is shared, and a user's folders are not its business
        folder = Path(data).resolve().name or str(data)
        return [(n, Path(p).read_bytes(), gt) for n, (p, gt) in zip(names, pairs, strict=True)], f"folder {folder}"
    items = [(str(n), bytes(b), gt) for n, b, gt in data]
    if not items:
        raise GroundTruthError("no annotated images to fine-tune on")
    names = [n for n, _, _ in items]
    if len(set(names)) != len(names):
        raise GroundTruthError("two annotated images have the same name; rename one")
    return items, f"{len(items)} uploaded images"
