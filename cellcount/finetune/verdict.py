"""Before against after on the held-out images, in words: is the new model better, worse, or no different."""

from __future__ import annotations

import math
from typing import Any

from ..errors import CellcountError
from .data import _images

GAIN_NOTE = 1.2
"""A density fine-tune whose fitted count gain is further from 1 than this (either way) says so: the network's own
change may then be small next to the scale."""


def settings_gain_note(base: str, name: str, after: dict[str, float], settings_only: dict[str, float], *,
                       postprocessing_kept: bool = False) -> str:
    """A note when the base's own weights with the new settings counted the held-out images at least as well as
    the fine-tuned weights (``after``, ``settings_only``: held-out summaries), else "": the change is then the
    settings', which a verdict alone would credit to the fine-tune. ``postprocessing_kept``: the base's
    postprocessing was kept, so the settings that differ are the input's (the object size read for the set)."""
    if "mae" not in settings_only or "mae" not in after or not settings_only["mae"] <= after["mae"]:
        return ""
    how = "as well as" if settings_only["mae"] == after["mae"] else "better than"
    which = ("input settings' (the object size and how the images are read; the postprocessing is the base's)"
             if postprocessing_kept else "settings' (input and postprocessing)")
    return (f"{base}'s own weights with {name}'s settings counted the held-out images {how} the fine-tuned weights "
            f"(MAE {settings_only['mae']:.2f} against {after['mae']:.2f}): the change is the {which}, not the "
            f"training: {base} with settings tuned on your images (Evaluate page: "
            "Optimise; command line: cellcount evaluate --tune) may count them as well. More annotated images or "
            "training steps may make the fine-tuned weights worth it")


WORSE_SHARE = 0.05
"""The fine-tuned weights must count the held-out images worse by more than this share of the base's MAE..."""


WORSE_OBJECTS = 2.0
"""... and by at least this many objects over all of them, before the base's weights are kept: one nucleus
on one of two images is no evidence (a fine-tune whose F1 rose must not be discarded for it)."""


def worse_than_base(before: dict[str, float], after: dict[str, float]) -> bool:
    """Whether the fine-tuned weights counted the held-out images clearly worse than the base: a count MAE
    more than :data:`WORSE_SHARE` higher and at least :data:`WORSE_OBJECTS` objects more error in all; False
    without held-out figures."""
    a, b, n = after.get("mae", math.nan), before.get("mae", math.nan), before.get("n", math.nan)
    if not (math.isfinite(a) and math.isfinite(b)):
        return False
    extra = (a - b) * (n if math.isfinite(n) and n > 0 else 1.0)
    return a > b * (1 + WORSE_SHARE) and extra >= WORSE_OBJECTS


OUTLINE_DROP = 0.05
"""A fall in held-out F1 (outlines matched to label images or dots) that the verdict names beside the count error:
a fine-tune can count its held-out images better while its outlines match them worse."""


def _f1_fell(before: dict[str, Any] | None, after: dict[str, Any] | None) -> tuple[float, float] | None:
    """(before, after) held-out F1 when it fell by :data:`OUTLINE_DROP` or more, else None."""
    b, a = (before or {}).get("f1"), (after or {}).get("f1")
    return (b, a) if b is not None and a is not None and a <= b - OUTLINE_DROP else None


def outline_note(kind: str, before: dict[str, Any], after: dict[str, Any], base: str) -> str | None:
    """The new model's guide note (Models page) when its held-out F1 fell by :data:`OUTLINE_DROP` or more from
    the base's, for a model that outlines objects; None otherwise. Without it the guide would offer such a model
    for "outlines, areas and counts" where its verdict says to keep the base for them."""
    fell = _f1_fell(before, after) if kind != "density" else None
    if fell is None:
        return None
    return (f"its objects matched your held-out annotations less well than {base}'s (F1 {fell[0]:.3f} -> "
            f"{fell[1]:.3f}): keep {base} for areas and shapes")


def holdout_verdict(paired: dict[str, float], n_held: int, *, name: str, base: str,
                    before: dict[str, Any] | None = None, after: dict[str, Any] | None = None,
                    segmentation: bool = False) -> tuple[bool, str]:
    """(warn, text): what the paired before/after comparison on ``n_held`` held-out images says, in words
    (the CLI and the Train page). A new model that counted them worse on average is never passed as an
    improvement, whether or not the interval excludes 0; for a ``segmentation`` (a base that outlines objects),
    an F1 in the held-out summaries ``before`` and ``after`` that fell by :data:`OUTLINE_DROP` or more is said
    (and warned of) too."""
    warn, text = _count_verdict(paired, n_held, name=name, base=base, before_mae=(before or {}).get("mae"))
    fell = _f1_fell(before, after) if segmentation else None
    if fell is not None:
        text += (f" But its objects match the held-out annotations less well (F1 {fell[0]:.3f} -> {fell[1]:.3f}): if "
                 f"you measure areas or shapes, check its outlines, or keep {base} for them.")
        warn = True
    return warn, text


def _count_verdict(paired: dict[str, float], n_held: int, *, name: str, base: str,
                   before_mae: float | None = None) -> tuple[bool, str]:
    d, low, high = paired["difference"], paired["low"], paired["high"]
    if not (math.isfinite(low) and math.isfinite(high)):
        # too few images for an interval; a difference of half the base's error or more is still worth its name,
        # but no probability is put on it (a rule of thumb: "unlikely to be chance" would read as a test)
        large = isinstance(before_mae, float) and abs(d) >= max(0.5 * before_mae, 5.0)
        how = (f"but a difference this large (MAE {before_mae:.2f} -> {before_mae + d:.2f}) is worth heeding, though "
               f"{_images(n_held)} cannot say how large it is on others" if large else "so this says little either way")
        text = (f"Only {n_held} held-out image(s): too few for an interval, {how}. "
                f"MAE difference (after - before): {d:+.2f}")
        it = "it" if n_held == 1 else "them"
        more = "Hold out more images to know by how much." if large else "Hold out more images to know."
        if d > 0:
            return True, (text + f": {name} counted {it} worse than {base}. {more}")
        if d < 0:
            return False, text + f": {name} counted {it} better than {base}. {more}"
        return False, text + f". {more}"
    text = (f"Paired over the same {_images(n_held)}: MAE difference (after - before) {d:+.2f}, 95% bootstrap "
            f"interval {low:+.2f} to {high:+.2f}")
    if low > 0:
        return True, (text + f": {name} counts these images worse than {base}. Keep counting with {base}, or try "
                      "again: more annotated images, a density model as the base when your annotations are dots, "
                      "or the objects' diameter stated.")
    if d > 0:
        return True, (text + f": {name} counted these images worse than {base} on average. The interval includes "
                      f"0, so it may be chance, but it is no improvement: keep {base} unless more held-out images "
                      "say otherwise.")
    if high < 0:
        return False, text + ": the new model counts these images better."
    return False, text + ": it includes 0, so no clear difference on these images (more held-out images narrow it)."


def model_kind(name: str) -> str | None:
    """A model's output kind (``name``: a name or folder) from its card, no weights loaded; None when the card
    cannot be read."""
    from ..models import model_card

    try:
        return model_card(name).output_kind
    except (CellcountError, OSError, ValueError):
        return None
