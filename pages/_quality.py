"""The quality badge: whether a count may be wrong ("check this image"), and why (:mod:`cellcount.quality`)."""

from __future__ import annotations

import streamlit as st

import cellcount as cc

CHECK_HELP = ("Check this image: a signal measured on the model's maps says the count may be wrong (limits "
              "calibrated on validation images; see the count page for the reasons).")


def quality_badge(result: cc.CountResult, file_note: str | None = None) -> None:
    """A badge under the count: "Check this image" with its reasons, or no warning. ``file_note``: a reason
    found while reading the file (one plane of a z-stack read), which flags the count whatever its model."""
    q = result.quality
    reasons = [*(q.reasons if q is not None and q.flag else ()), *([file_note] if file_note else [])]
    if q is None and not reasons:
        return
    if reasons:
        st.badge("Check this image", icon=":material/warning:", color="orange")
        st.caption("This count may be wrong: " + "; ".join(reasons) + ". Look at the outlines before using it.")
    else:
        st.badge("No quality warning", icon=":material/check:", color="green",
                 help="None of the quality signals passed its limit; this does not prove the count right.")
