"""AppTest of the Evaluate page: samples, uploads with ground truth, live re-evaluation, tuning."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"


def open_eval(**state) -> AppTest:
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    at.session_state["eval_model"] = "classical-otsu"
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    at.switch_page("pages/evaluate.py")
    at.run()
    assert not at.exception, at.exception
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def upload(name: str) -> tuple[str, bytes, str]:
    return (name, (SAMPLES / name).read_bytes(), "application/octet-stream")


def test_samples_evaluate_and_slider_reevaluates():
    at = open_eval()
    assert any("Press Evaluate" in i.value for i in at.info)
    at.button(key="eval_run").click()
    at.run()
    assert not at.exception
    assert metric(at, "Images") == "12"
    mae = float(metric(at, "MAE"))
    float(metric(at, "F1"))
    assert len(at.dataframe[0].value) == 12
    assert "Per-image CSV" in {d.label for d in at.get("download_button")}
    at.slider(key="eval_threshold").set_value(0.75)
    at.run()
    assert not at.exception
    assert float(metric(at, "MAE")) != mae
    at.session_state["eval_tabs"] = "Worst images"  # lazy tab: only drawn when selected
    at.run()
    assert not at.exception
    worst = [m.value for m in at.markdown if "— true" in m.value]
    assert len(worst) == 3 and len(at.get("plotly_chart")) == 6


def test_uploaded_labels_tune_and_apply_to_count_page():
    at = open_eval(eval_source="Upload")
    assert any("Choose the labelled samples" in i.value for i in at.info)
    at.file_uploader(key="eval_files").set_value(
        [
            upload("s01_sparse_small.png"),
            upload("s01_sparse_small_labels.tif"),
            upload("s06_heavy_blur.png"),
            upload("s06_heavy_blur_points.csv"),
        ]
    )
    at.run()
    at.button(key="eval_run").click()
    at.run()
    assert not at.exception
    assert metric(at, "Images") == "2"
    at.button(key="eval_tune").click()
    at.run()
    assert not at.exception
    before, after = float(metric(at, "MAE before")), float(metric(at, "MAE after"))
    assert after <= before
    assert "Tuned settings JSON" in {d.label for d in at.get("download_button")}
    at.button(key="eval_apply").click()
    at.run()
    assert not at.exception
    tuned = at.number_input(key="eval_min_area_px").value
    at.switch_page("pages/count.py")
    at.run()
    assert not at.exception
    assert at.selectbox(key="count_model").value == "classical-otsu"
    assert at.number_input(key="count_min_area_px").value == tuned  # one store: Count uses the tuned settings


def evaluate_zip(name: str, members: dict[str, bytes | str]) -> AppTest:
    """The Evaluate page after uploading a zip of ``members`` (path -> content) and pressing Evaluate."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, content in members.items():
            zf.writestr(path, content)
    at = open_eval(eval_source="Upload")
    at.file_uploader(key="eval_files").set_value([(name, buf.getvalue(), "application/zip")])
    at.run()
    at.button(key="eval_run").click()
    at.run()
    assert not at.exception
    return at


def test_counts_csv_and_dsb_zip():
    at = evaluate_zip("dsb.zip", {
        "dsb/images/a.png": (SAMPLES / "s01_sparse_small.png").read_bytes(),
        "dsb/labels/a.tif": (SAMPLES / "s01_sparse_small_labels.tif").read_bytes(),
    })
    assert metric(at, "Images") == "1"
    at.file_uploader(key="eval_files").set_value(
        [
            upload("s01_sparse_small.png"),
            ("counts.csv", b"filename,count\ns01_sparse_small.png,28\n", "text/csv"),
        ]
    )
    at.run()
    at.button(key="eval_run").click()
    at.run()
    assert not at.exception
    assert metric(at, "Images") == "1"
    assert "F1" not in {m.label for m in at.metric}  # counts only: no matching


def test_image_without_ground_truth_is_an_error_message():
    at = open_eval(eval_source="Upload")
    at.file_uploader(key="eval_files").set_value([upload("s01_sparse_small.png")])
    at.run()
    assert not at.exception
    assert at.error and "ground truth" in at.error[0].value


def test_zip_with_a_counts_table():
    """A zipped folder of images + counts.csv: the table inside the zip is the ground truth."""
    at = evaluate_zip("plate.zip", {
        "plate/a.png": (SAMPLES / "s01_sparse_small.png").read_bytes(),
        "plate/b.png": (SAMPLES / "s04_uneven_illumination.png").read_bytes(),
        "plate/counts.csv": "filename,count\na.png,28\nb.png,80\n",
    })
    assert metric(at, "Images") == "2"
