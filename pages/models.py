"""Models page: every model card, rendered."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

import cellcount as cc
from cellcount import viz
from cellcount.models import model_card
from pages import _shared as sh

sh.require_entry_point("models")


def _value(v) -> str:
    if isinstance(v, list) and len(v) > 6:
        return f"{len(v)} items"
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _table(d: dict, prefix: str = "") -> pd.DataFrame:
    """Key/value rows; nested dicts are flattened (``split.n_val``), long lists summarised."""
    rows = []
    for k, v in d.items():
        if isinstance(v, dict):
            rows.extend(_table(v, f"{prefix}{k}.").to_dict("records"))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            continue  # tables such as the training history are shown on their own
        else:
            rows.append({"key": f"{prefix}{k}", "value": _value(v)})
    return pd.DataFrame(rows, columns=["key", "value"])


def _metrics_frame(metrics: dict) -> pd.DataFrame | None:
    """Metrics by split (validation / train / ...) as rows, or None when not nested by split."""
    nested = {k: v for k, v in metrics.items() if isinstance(v, dict)}
    if not nested:
        return None
    return pd.DataFrame([{"split": k, **v} for k, v in nested.items()])


def render_card(name: str) -> None:
    try:
        card = model_card(name)
    except (cc.CellcountError, OSError, ValueError) as err:
        sh.show_error(err)
        return
    if card.description:
        st.markdown(card.description)
    m = st.columns(4)
    m[0].metric(
        "Output",
        card.output_kind,
        help="mask: per-pixel probability -> objects; density: the map integrates to the count",
    )
    m[1].metric("Architecture", card.architecture)
    val = sh.validation_metrics(card)
    ci = (f" (95% bootstrap interval over its images: {val['mae_ci_low']:.2f}-{val['mae_ci_high']:.2f})"
          if "mae_ci_low" in val else "")
    m[2].metric(
        "Val. MAE", f"{val['mae']:.2f}" if "mae" in val else "—", help=f"Count MAE on the validation split{ci}"
    )
    m[3].metric("Val. F1@0.5", f"{val['f1']:.3f}" if "f1" in val else "—", help="Instance F1 at IoU 0.5")

    a, b = st.columns(2)
    with a:
        st.markdown("**Architecture arguments**")
        st.dataframe(
            _table(card.kwargs) if card.kwargs else pd.DataFrame({"key": ["(none)"]}), hide_index=True
        )
        st.markdown("**Input**")
        inp = dict(card.normalization)
        if name != cc.models.CLASSICAL_NAME:
            inp.update(tile_size=card.tile_size, tile_overlap=card.tile_overlap)
        if card.output_kind == "density":
            inp["density_scale"] = card.density_scale
        st.dataframe(_table(inp), hide_index=True)
        st.markdown("**Postprocessing defaults**")
        defaults = cc.CountParams().to_dict()
        rows = [
            {"setting": k, "card": str(v), "library default": str(defaults.get(k))}
            for k, v in card.postprocess.items()
        ]
        if rows:
            st.dataframe(pd.DataFrame(rows), hide_index=True)
        else:
            st.caption("None: the library defaults apply.")
        st.caption(f"Tuned on: {card.postprocess_tuned_on or 'not stated'}")
    with b:
        st.markdown("**Training**")
        if card.training:
            st.dataframe(_table(card.training), hide_index=True)
            history = card.training.get("history")
            if isinstance(history, list) and history and all(isinstance(h, dict) for h in history):
                st.plotly_chart(viz.training_curve(pd.DataFrame(history)), key=f"models_history_{name}")
        else:
            st.caption("Not trained (no training record).")
        st.markdown("**Metrics**")
        mf = _metrics_frame(card.metrics) if isinstance(card.metrics, dict) else None
        if mf is not None:
            sh.dataframe(mf)
        elif card.metrics:
            st.dataframe(_table(card.metrics), hide_index=True)
        else:
            st.caption("No metrics recorded.")
        flat = (
            {k: v for k, v in card.metrics.items() if not isinstance(v, dict)}
            if isinstance(card.metrics, dict)
            else {}
        )
        if flat and mf is not None:
            st.dataframe(_table(flat), hide_index=True)
    st.markdown(f"**Licence:** {card.license}")
    if card.sha256:
        st.markdown("**Weights sha256** (checked on every load):")
        st.code(f"{card.weights_file}  {card.sha256}", language=None)
    elif name != cc.models.CLASSICAL_NAME:
        st.warning("This card has no sha256: the weights will be refused.")
    with st.expander("card.json"):
        st.json(card.to_dict(), expanded=False)


st.title("Models")
names = cc.list_models()
st.caption(
    f"{len(names)} model(s): trained weights in `weights/` (each a folder with `weights.safetensors` + "
    "`card.json`) and the classical baseline. Also on the command line: `python -m cellcount models`."
)
sh.dataframe(
    sh.models_frame(names),
    column_config=sh.models_frame_columns(),
)
for tab, name in zip(st.tabs(names), names, strict=True):
    with tab:
        render_card(name)
