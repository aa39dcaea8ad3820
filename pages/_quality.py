"""The quality badge: whether a count may be wrong ("check this image"), and why (:mod:`cellcount.quality`)."""

from __future__ import annotations

import math

import streamlit as st

import cellcount as cc

CHECK_HELP = ("Check this image: a signal measured on the model's maps, or how unlike its training images the image "
              "looks to the model, says the count may be wrong (limits calibrated on validation images; see the "
              "count page for the reasons).")


def quality_badge(result: cc.CountResult) -> None:
    """A badge under the count: "Check this image" with its reasons, or no warning."""
    q = result.quality
    if q is None:
        return
    if q.flag:
        st.badge("Check this image", icon=":material/warning:", color="orange")
        look = ("Compare the density map with the image" if result.output_kind == "density"
                else "Look at the outlines" if result.count else "Look at the image")
        if len(q.reasons) == 1:
            text = q.reasons[0]
            st.caption("This count may be wrong: " + text + ("" if text.endswith(("?", ".", "!")) else ".")
                       + f" {look} before using it.")
        else:  # one line each: nine reasons run together in one block are hard to read
            st.caption("This count may be wrong:\n" + "\n".join(f"- {r}" for r in q.reasons)
                       + f"\n\n{look} before using it.")
    elif q.nearest:
        st.badge("Near a quality limit", icon=":material/info:", color="gray",
                 help="No quality signal passed its limit, but one came within 5% of it.")
        # floored: an unflagged 0.997 shown as "100% of a limit" would read as flagged and not flagged at once
        st.caption(f"Not flagged, but close ({math.floor(100 * q.score)}% of a limit): {q.nearest}.")
    else:
        # grey, not a green tick: no warning sign is not a proof (a green tick reads as one, even on counts far off)
        st.badge("No warning sign", icon=":material/remove:", color="gray",
                 help="None of the quality signals passed its limit. This does not prove the count right: "
                 + caught_text(result.model_name))


def caught_text(model_name: str) -> str:
    """How many of its large errors the model's flag caught where it was scored (its card), in words."""
    from pages import _shared as sh

    try:
        scored = sh.get_model(model_name).card.metrics.get("validation") or {}
    except cc.CellcountError:
        scored = {}
    n, share = scored.get("large_errors"), scored.get("large_errors_flagged_share")
    if not n or share is None:
        return "check a few counts by eye on a new kind of image."
    return (f"on {scored.get('n', '?')} DSB images it never saw, this model's flag caught {round(share * n)} of its "
            f"{n} counts off by more than 15%. Check a few counts by eye on a new kind of image.")
