"""Models page: which model for which images, each model's measured error in plain words, its full card."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

import cellcount as cc
from cellcount import viz
from cellcount.io import readable_paths
from cellcount.metrics import MIN_BOOTSTRAP_IMAGES
from cellcount.models import model_card
from cellcount.models.guide import ModelGuide, model_guide, strengths
from cellcount.params import setting_label, setting_text
from cellcount.quality import quality_summary
from pages import _settings as settings
from pages import _shared as sh
from pages._model_ui import SHOWN_MODEL_KEY

sh.require_entry_point("models")

# card metric key -> (plain label, format)
METRIC_LABELS = {
    "n": ("Images", "{:.0f}"),
    "mae": ("Count error (MAE, nuclei per image)", "{:.2f}"),
    "rmse": ("Root-mean-square count error", "{:.2f}"),
    "bias": ("Bias (predicted − true; below 0 under-counts)", "{:+.2f}"),
    "mape": ("Relative count error (%)", "{:.1f}"),
    "r2": ("R² of predicted vs true counts", "{:.3f}"),
    "precision": ("Precision (found nuclei that are real)", "{:.3f}"),
    "recall": ("Recall (real nuclei that are found)", "{:.3f}"),
    "f1": ("Object match F1 (outlines: IoU ≥ 0.5; dots: one per object or peak)", "{:.3f}"),
    "mean_iou": ("Mean IoU of matched outlines", "{:.3f}"),
}
# no time per megapixel: each card timed its model on the machine and backend that evaluated it (0.43 to 2.9 s/Mpx),
# so side by side the times compared machines, not models; speed is in BENCHMARKS.md and on Count's Timing tab
SPLITS = {"validation": "with its default settings", "validation_fixed_size": "without the nucleus-size estimate",
          "holdout_before": "held-out images: the base model", "holdout_after": "held-out images: this model",
          "holdout_finetuned_weights": "held-out images: the fine-tuned weights (not kept)",
          "holdout_base_weights_new_settings": "held-out images: the base's weights with this model's settings"}


def _interval(m: dict) -> str:
    """'2.27–4.63', the MAE's 95% interval, or '' when the card has none (too few images for one)."""
    lo, hi = m.get("mae_ci_low"), m.get("mae_ci_high")
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return ""
    return f"{lo:.2f}–{hi:.2f}"


def mae_sentence(g: ModelGuide) -> str:
    """'Count error (MAE) on 98 validation images: 3.30 (95% interval 2.27-4.63)', or a fine-tuned model's
    error on the user's held-out images beside its base's."""
    m, where = (g.validation, "validation images") if "mae" in g.validation else (g.holdout, "of your held-out images")
    if "mae" not in m:
        return "No measured count error in its card."
    n = f" on {int(m['n'])} {where}" if "n" in m else ""
    interval = _interval(m)
    text = f"Count error (MAE){n}: **{m['mae']:.2f}** nuclei per image" + (f" (95% interval {interval})" if interval else "")
    if m is g.holdout and "mae" in g.holdout_before:
        text += f"; the base model on the same images: {g.holdout_before['mae']:.2f}"
    if few := g.few_steps_text():  # an 8-step fine-tune's figures would read as excellent
        text += f". It was {few}"
    return text


def short_error(m: dict, where: str = "images") -> str:
    """'MAE 3.30 (2.27–4.63) on 98 images; F1 0.81' for the guide table."""
    if "mae" not in m:
        return "No measured count error in its card"
    text = f"MAE {m['mae']:.2f}"
    if _interval(m):
        text += f" ({_interval(m)})"
    if "n" in m:
        few = int(m["n"]) < MIN_BOOTSTRAP_IMAGES
        text += f" on {int(m['n'])} {where}" + (" (too few for an interval)" if few else "")
    f1 = m.get("f1")
    return text + (f"; F1 {f1:.2f}" if isinstance(f1, (int, float)) and math.isfinite(f1) else "")


def guide_table(guides: list[ModelGuide], default: str | None = None) -> str:
    """Markdown table, one row per model: wraps long text instead of cutting it."""
    best = strengths(guides)
    rows = ["| Model | Choose it for | Images | Nucleus size | Measured error |", "|---|---|---|---|---|"]
    for g in guides:
        claims = [s.split(", ", 1) for s in best.get(g.name, [])]  # the claim in bold, its caveat plain
        use = (g.output + "".join(f"; **{c[0]}**" + (f", {c[1]}" if len(c) > 1 else "") for c in claims)
               + (f"; {g.note}" if g.note else ""))
        name = f"**{g.name}**" + (" (default)" if g.name == default else "")
        error = (short_error(g.validation) if "mae" in g.validation or not g.holdout
                 else short_error(g.holdout, "of your held-out images")
                 # beside the base on the same images: another set than the shipped models' (a fine-tune's 7.05,
                 # down from 106, would read as the worst model)
                 + (f"; its base on them: MAE {g.holdout_before['mae']:.2f}" if "mae" in g.holdout_before else "")
                 + (f"; {few}" if (few := g.few_steps_text()) else ""))
        rows.append(f"| {name} | {use} | {g.images} | {g.size_text()} | {error} |")
    return "\n".join(rows)


def metrics_frame(card: cc.models.ModelCard) -> pd.DataFrame:
    """Rows: plain metric labels; columns: the card's validation runs; values formatted as text."""
    cols = {}
    for key, title in SPLITS.items():
        m = card.metrics.get(key) if isinstance(card.metrics, dict) else None
        if not isinstance(m, dict):
            continue
        values = {}
        for k, (label, fmt) in METRIC_LABELS.items():
            if k in m and m[k] is not None and not (isinstance(m[k], float) and math.isnan(m[k])):
                values[label] = fmt.format(m[k])
            if k == "mae" and _interval(m):
                values["95% interval of the MAE"] = _interval(m)
        cols[title] = values
    return pd.DataFrame(cols).rename_axis("measure") if cols else pd.DataFrame()


def finetuned(card: cc.models.ModelCard) -> None:
    """What a fine-tuned model (Train page, ``cellcount.finetune``) learnt from."""
    t = card.training if isinstance(card.training, dict) else {}
    base, data = t.get("finetuned_from"), t.get("data")
    if not isinstance(base, dict) or not isinstance(data, dict):
        return
    run = t.get("discarded_finetune") or t  # the base's weights kept: the run's figures are the discarded weights'
    precision = f" in {run['precision']}" if run.get("precision") else ""
    st.markdown(
        f"**Fine-tuned** from {base.get('name')} on {len(data.get('train_files', []))} of your images "
        f"({', '.join(data.get('annotation', []))}): {run.get('steps')} steps{precision}, {run.get('total_seconds')} s; "
        f"{len(data.get('holdout_files', []))} image(s) held out for the scores."
        + (f" The fine-tuned weights counted the held-out images worse, so this model keeps {base.get('name')}'s "
           "weights and settings." if t.get("kept_base_weights") else "")
    )
    held = [str(n) for n in data.get("holdout_files", [])]
    if held:  # the images to leave out when checking this model later: it never trained on them
        st.caption("Held out (never trained on): " + ", ".join(f"`{n}`" for n in held[:12])
                   + (f" and {len(held) - 12} more" if len(held) > 12 else ""))


def render_card(name: str) -> None:
    try:
        card = model_card(name)
    except (cc.CellcountError, OSError, ValueError) as err:
        sh.show_error(err)
        return
    g = model_guide(card)
    base_too = " (those its base learnt from included)" if isinstance(card.training, dict) and card.training.get(
        "finetuned_from") else ""
    if card.description:
        st.markdown(card.description)
    st.markdown(
        f"- **Gives:** {g.output}\n- **Images:** {g.images}\n- **Nucleus size:** {g.size_text()}\n"
        f"- {mae_sentence(g)}"
        + (f"\n- Without the nucleus-size estimate: {short_error(g.validation_fixed_size)}"
           if "mae" in g.validation_fixed_size else "")
        + (f"\n- **Trained on:** {g.trained_on}" if g.trained_on else "")
        + (f"\n- **Scored on its training images?** Evaluate and Compare recognise the {len(learnt)} real images "
           f"it learnt from{base_too} by their content, under any file name, and leave them out of the scores where "
           "other images remain." if (learnt := card.training_digests()) else "")
    )
    a, b = st.columns(2, gap="large")
    with a:
        st.markdown("**Measured**")
        mf = metrics_frame(card)
        if len(mf):
            st.table(mf)  # a static table: fits its column, nothing to scroll
            notes = [card.metrics.get(k) for k in ("validation_note", "holdout_note") if isinstance(card.metrics, dict)]
            if any(notes):  # the record behind the figures (commands, splits): there for who asks, not in the way
                with st.expander("How these figures were measured"):
                    for note in filter(None, notes):
                        st.caption(readable_paths(note))
        else:
            st.caption("No metrics recorded.")
        st.markdown("**Default settings**")
        defaults = cc.CountParams().to_dict()
        rows = [
            {"setting": setting_label(k), "this model": setting_text(k, v),
             "library default": setting_text(k, defaults.get(k))}
            for k, v in card.postprocess.items()
        ]
        if rows:
            st.table(pd.DataFrame(rows).set_index("setting"))
        else:
            st.caption("None: the library defaults apply.")
        with st.expander("How these settings were chosen"):
            st.caption(readable_paths(card.postprocess_tuned_on or "not stated"))
    with b:
        finetuned(card)
        history = card.training.get("history") if isinstance(card.training, dict) else None
        if isinstance(history, list) and history and all(isinstance(h, dict) for h in history):
            st.markdown("**Training**")
            st.plotly_chart(viz.training_curve(pd.DataFrame(history)), key=f"models_history_{name}")
        elif not card.training:
            st.caption("Not trained (no training record).")
        if name != cc.models.CLASSICAL_NAME:
            st.markdown("**Quality flag** (\"check this image\")")
            st.caption(" ".join(quality_summary(card)))
        st.markdown(f"**Licence:** {card.license}")
        if card.sha256:
            st.markdown(f"**Weights:** `{card.weights_file}`, sha256 `{card.sha256}` (checked on every load)")
        elif name != cc.models.CLASSICAL_NAME:
            st.warning("This card has no sha256: the weights will be refused.")
    with st.expander("Full model card (card.json)"):
        st.json(card.to_dict(), expanded=1)
    if cc.models.is_user_model(name):
        with st.popover("Delete this model", icon=":material/delete:"):
            st.caption(f"Deletes `{name}` (weights and card) from `{cc.models.user_models_dir()}`, for everyone "
                       "using this app's server (their pages using it switch to the default model as they next run) "
                       "and the command line. Counts and runs made with it stay in their CSVs and on the Runs page.")
            st.button(f"Delete {name}", key="models_delete", type="primary", on_click=delete_model, args=(name,))


def delete_model(name: str) -> None:
    """Remove a model the user trained; the page then shows another one, and says what happened."""
    try:
        folder = cc.models.remove_user_model(name)
    except (cc.CellcountError, OSError) as err:
        st.session_state["models__msg"] = ("error", f"{name} could not be deleted: {err}")
        return
    st.session_state.pop("models_show", None)
    then = ""
    if settings.current_model() == name:  # the other pages used it: they go back to the default, and say so once
        default = cc.models.default_model_name()
        settings.set_current_model(default)
        st.session_state[SHOWN_MODEL_KEY] = default
        then = f" Count, Batch, Evaluate and Compare now use {default}, the default model."
        for page in ("count", "batch", "eval"):  # said there too: the count changes under the user's eyes
            st.session_state[f"{page}__msg"] = ("info", f"{name} was deleted (Models page): this page now uses "
                                                        f"{default}, the default model.")
    st.session_state["models__msg"] = ("success", f"Deleted {name} ({folder}).{then}")


st.title("Models")
sh.finetune_watch("models")  # a fine-tune of this session that ends while the table is open: its card comes at once
sh.show_messages("models")  # what a Delete did, or that a fine-tune ended
names = cc.list_models()
st.caption(
    f"{len(names)} model(s): those shipped with cellcount, the models trained on the Train page by anyone using this app's server (kept in "
    f"`{cc.models.user_models_dir()}`) and a classical baseline. Also on the command line: `cellcount models`."
)
st.subheader("Which model for which images")
guides = []
for n in sorted(names, key=lambda n: n != cc.models.default_model_name()):  # the default first, the rest in order
    try:
        guides.append(model_guide(model_card(n)))
    except (cc.CellcountError, OSError, ValueError) as err:
        sh.show_error(err)
st.markdown(guide_table(guides, cc.models.default_model_name()))
st.caption(
    "Measured error: count MAE on DSB 2018 validation images that no model trained on (for models you "
    "fine-tuned: on your held-out images; the base model's on the same images is in the model's section), "
    "with the model's "
    "default settings; 95% bootstrap intervals and how the settings were chosen in each model's section. "
    "Only models measured on the same images are ranked; differences smaller than the intervals are not "
    "meaningful, and a figure over images that chose a model's checkpoint or settings flatters it a little (each "
    "model's section says which images chose what). Check a model on your own images with Evaluate; its speed on "
    "this machine is on Count's Timing tab (each CPU kind's in BENCHMARKS.md)."
)
with st.expander("How to read these figures", icon=":material/help:"):
    st.markdown(
        "- **MAE** (mean absolute error): how many nuclei a count is off, on average per image, either way. An MAE "
        "of 3 on images of about 50 nuclei is about 6%.\n"
        "- **95% interval**: the range the MAE would likely fall in on other images like these; two models whose "
        "ranges overlap much may not differ at all.\n"
        "- **F1**: how well the outlines match hand-drawn ones (1 is perfect): the share of nuclei found and "
        "outlined about right (overlapping the true outline by at least half, IoU ≥ 0.5), balanced against the "
        "objects found that are not nuclei.\n"
        "- **Bias**: the average of counted − true; below 0 the model misses nuclei, above 0 it finds too many.\n"
        "- **DSB 2018**: a public set of nuclei images of many kinds (mostly fluorescence, some brightfield and "
        "H&E), 522 of them with outlines drawn by hand; **validation images** are those of them set aside to choose "
        "models and settings, never trained on.\n"
        "- **Quality flag**: \"check this image\" on a count likely to be off; the share of such errors it "
        "catches is in each model's section.\n"
        "- Files named like `docs/quality.md` are in the cellcount project's folder (or its repository)."
    )
st.info(
    "**Images unlike DSB 2018's nuclei** (H&E tissue, bone marrow, cells rather than nuclei): the shipped models "
    "learnt DSB, and every one of them miscounts H&E bone marrow by more than half (a median 66-91% on the public "
    "mbm set, docs/quality.md; 91-100% of its images flagged), and fluorescent cells stained whole rather than their "
    "nuclei by a median 25-34% (the mask models; unet-density 18%) on the public vgg_cells set, mostly under-counting, "
    "with many such counts flagged but not all. There, check counts by eye against a few of yours with Evaluate, or "
    "teach a model your cells on the Train page (15 annotated mbm images took the error to about 6 cells per image, "
    "32 vgg_cells images to 2.3-2.7 depending on the CPU, docs/finetuning.md).",
    icon=":material/science:",
)
st.subheader("Each model")
# opens on the model in use on the other pages (the default on a first visit), not the first name
shown = next((n for n in (settings.current_model(), cc.models.default_model_name()) if n in names), names[0])
pick = st.segmented_control("Model", names, default=shown, key="models_show", label_visibility="collapsed")
render_card(pick or shown)
