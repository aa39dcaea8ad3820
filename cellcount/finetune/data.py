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
    trains, and at least one is held out when there are two or more (none otherwise). Images whose names make
    groups (tiles of one slide, fields of one well: :func:`group_levels`) are held out a whole group at a time, the
    coarsest grouping that allows it first."""
    n = len(names)
    if n == 0:
        raise GroundTruthError("no annotated images to fine-tune on")
    k = holdout_asked(holdout, n)
    if k < 0:
        raise ParameterError(f"holdout must be >= 0, got {holdout}")
    k = min(k, n - MIN_TRAIN_IMAGES)
    if n >= 2 and holdout:
        k = max(k, 1)
    held: list[int] = []
    for keys in group_levels(names) if k else []:
        if held := _whole_groups(keys, k, seed):
            break
    if not held:  # each image its own group, or no group small enough: images drawn one by one
        order = np.random.default_rng(seed).permutation(n)
        held = sorted(int(i) for i in order[:k])
    return [i for i in range(n) if i not in set(held)], held


def _name_fields(name: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """(the name's folder and the text between its numbers, its numbers): ``plate1/A01_s2_w1.tif`` is
    (("plate1", "a", "_s", "_w", ""), (1, 2, 1))."""
    p = PurePosixPath(str(name).replace("\\", "/"))
    # a copy's mark is not a number of the name ("img1 (2).png", "img1 - Copy.png" are img1's)
    stem = re.sub(r"( \(\d+\)| - copy( \(\d+\))?)$", "", p.stem.casefold())
    parts = re.split(r"(\d+)", stem)
    return (str(p.parent).casefold(), *parts[0::2]), tuple(int(x) for x in parts[1::2])


def group_levels(names: Sequence[str]) -> list[list[str]]:
    """Each image's group key at each level of grouping, coarsest first: names alike but for their numbers belong
    together, by the numbers that vary among them (``BM_0001_02_000.png``: patient, slide, tile; ``slideA_3_HE.png``:
    the tile number inside the name; ``A01_s2_w1.tif``: well and site, the channel alike in all). The coarsest level
    keeps none of the varying numbers (slideA, slideB), each finer one the next (patient, then patient and slide);
    the tile's own number, the last to vary, never. Only levels that say something (at least two groups of two or
    more) are listed: none for names that share nothing, or all but a few one prefix (img01 ... img19)."""
    fields = [_name_fields(name) for name in names]
    varying: dict[tuple[str, ...], list[int]] = dict.fromkeys((shape for shape, _ in fields), [])
    for shape in varying:
        values = [numbers for s, numbers in fields if s == shape]
        varying[shape] = [j for j in range(len(values[0])) if len({v[j] for v in values}) > 1]
    depth = max((len(v) for v in varying.values()), default=0)
    levels, seen = [], set()
    for level in range(max(depth, 1)):
        keys = []
        for shape, numbers in fields:
            kept = set(varying[shape][:min(level, max(len(varying[shape]) - 1, 0))])
            if not varying[shape]:  # every number alike among names of this shape: one image, or copies
                kept = set(range(len(numbers)))
            keys.append("|".join(shape) + "#" + ",".join(str(v) if j in kept or j not in varying[shape] else "*"
                                                          for j, v in enumerate(numbers)))
        sizes: dict[str, int] = {}
        for key in keys:
            sizes[key] = sizes.get(key, 0) + 1
        if sum(size > 1 for size in sizes.values()) >= 2 and tuple(keys) not in seen:
            seen.add(tuple(keys))
            levels.append(keys)
    return levels


def _whole_groups(keys: Sequence[str], k: int, seed: int) -> list[int]:
    """About ``k`` held-out images made of whole groups (images of one ``keys`` value): a tile held out beside its
    neighbours in training scores the fine-tune on its own slide, far better than on other patients'. Groups drawn
    at random up to about ``k`` (a group may take it to 1.5 ``k``, never past half the images); [] where no draw
    comes near ``k``."""
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    n = len(keys)
    cap = min(max(k + 1, math.ceil(1.5 * k)), n // 2, n - MIN_TRAIN_IMAGES)
    held: list[int] = []
    order = sorted(groups)
    for g in np.random.default_rng(seed).permutation(len(order)):
        members = groups[order[int(g)]]
        if len(held) >= k:
            break
        if len(held) + len(members) <= cap:
            held += members
    return sorted(held) if len(held) >= math.ceil(k / 2) else []


def _hold_out_unseen(items, train_idx: list[int], held_idx: list[int], seen: set[str],
                     seen_pixels: set[str] = frozenset(), *, seed: int = 0):
    """(train, held out, names held out that the base learnt from, names moved to training): held-out images the base
    model was trained on go to training, and training images it never saw take their places, up to half of those
    unseen images (they are often the few new ones a user annotated to fine-tune again, and the new model must
    learn from them too). Scored on its own training images, the base looks better than it is, and that decides
    whether its weights are kept. Only where no unseen image can be held out do they stay, said by the caller.
    Their places go to whole groups of names (:func:`split_holdout` over the unseen training images whose groups
    hold no learnt image) where there are any.
    ``seen``: the base's training images' file sha256; ``seen_pixels``: their :func:`cellcount.io.pixel_digest`."""
    if not seen or not held_idx:
        return train_idx, held_idx, [], []
    from ..io import pixel_digest

    learnt = {i for i, (_, raw, _) in enumerate(items)
              if hashlib.sha256(raw).hexdigest() in seen or (seen_pixels and pixel_digest(raw) in seen_pixels)}
    held_learnt = [i for i in held_idx if i in learnt]
    if not held_learnt:
        return train_idx, held_idx, [], []
    unseen = len(items) - len(learnt)
    held_fresh = [i for i in held_idx if i not in learnt]
    room = max(0, min(len(held_learnt), unseen // 2 - len(held_fresh)))  # at least half of the unseen keep training
    pool = [i for i in train_idx if i not in learnt]
    levels = group_levels([name for name, _, _ in items])
    if levels:  # not the tiles of a slide whose other tiles the base learnt (they train)
        learnt_groups = {levels[-1][i] for i in learnt}
        pool = [i for i in pool if levels[-1][i] not in learnt_groups] or pool
    chosen = []
    if room and len(pool) > 1:
        chosen = [pool[j] for j in split_holdout([items[i][0] for i in pool], min(room, len(pool) - 1), seed=seed)[1]]
    elif room:
        chosen = pool[:room]
    held = held_fresh + chosen
    if not held:  # nothing unseen to hold out: scored on what the base learnt, and said
        return train_idx, held_idx, [items[i][0] for i in held_learnt], []
    train = sorted(set(train_idx) - set(held) | set(held_learnt))
    return train, sorted(held), [], [items[i][0] for i in held_learnt]


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
