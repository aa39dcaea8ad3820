"""AppTest side of issue 16: the app survives hostile uploads with a message on the page.

One row per case: formula-like file names in the Batch downloads, a zip with colliding names, absurd
ground-truth counts, a settings JSON nested thousands deep, a bad value in a settings file.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = (ROOT / "data" / "samples" / "s01_sparse_small.png").read_bytes()


def open_page(page: str, **state) -> AppTest:
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    at.switch_page(f"pages/{page}.py")
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.mark.slow
def test_batch_downloads_escape_formula_names(count_batch):
    names = ["=HYPERLINK(1).png", "+1+1.png", "@SUM(A1).png", "-2.png", "plain.png"]
    at = open_page("batch", batch_model="classical-otsu")
    at.file_uploader(key="batch_files").set_value([(n, SAMPLE, "image/png") for n in names])
    at.run()
    count_batch(at)
    assert not at.exception
    res = at.session_state["batch__result"]
    objects = pd.read_csv(io.BytesIO(res["objects_csv"]))
    assert set(objects["file"]) == {"'=HYPERLINK(1).png", "'+1+1.png", "'@SUM(A1).png", "'-2.png", "plain.png"}
    assert objects["area_px"].dtype.kind == "i", "numbers stay numbers"


def _zip(members: dict[str, bytes | str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, content in members.items():
            zf.writestr(path, content)
    return buf.getvalue()


@pytest.mark.parametrize("case, members, expect", [
    # uploads are paired in memory (cellcount.labelled): a file and a folder of one name cannot collide
    ("file then folder of the same name",
     {"d.png": SAMPLE, "d.png/e.png": SAMPLE, "counts.csv": "filename,count\nd.png,20\ne.png,20\n"},
     ("clean", None)),
    ("folder then file of the same name",
     {"d.png/e.png": SAMPLE, "d.png": SAMPLE, "counts.csv": "filename,count\nd.png,20\ne.png,20\n"},
     ("clean", None)),
    ("absurd count", {"a.png": SAMPLE, "counts.csv": "filename,count\na.png,1e300\n"},
     ("error", "whole number within")),
    ("non-numeric count", {"a.png": SAMPLE, "counts.csv": "filename,count\na.png,many\n"},
     ("error", "whole number within")),
    ("semicolon UTF-16 counts", {"a.png": SAMPLE, "counts.csv": "filename;count\r\na.png;20\r\n".encode("utf-16")},
     ("metric", "1")),
])
@pytest.mark.slow
def test_evaluate_page_survives_hostile_zips(case, members, expect):
    at = open_page("evaluate", eval_model="classical-otsu", eval_source="Upload")
    at.file_uploader(key="eval_files").set_value([("set.zip", _zip(members), "application/zip")])
    at.run()
    assert not at.exception, at.exception
    kind, text = expect
    if kind == "clean":
        assert not at.error, [e.value for e in at.error]
    elif kind == "metric":
        at.button(key="eval_run").click()
        at.run()
        assert not at.exception
        assert next(m.value for m in at.metric if m.label == "Images") == text
    else:
        shown = [e.value for e in (at.warning if kind == "warning" else at.error)]
        assert any(text in s for s in shown), shown


@pytest.mark.parametrize("case, data, text", [
    ("nested 5000 deep", b"[" * 5000 + b"]" * 5000, "nested more than"),
    ("out of range", b'{"opening_radius_px": 100000}', "opening_radius_px"),
    ("absurd number", b'{"threshold": 1e300}', "threshold"),
])
@pytest.mark.slow
def test_count_page_settings_file_errors(case, data, text):
    at = open_page("count", count_model="classical-otsu")
    at.file_uploader(key="count_settings_file").set_value(("s.json", data, "application/json"))
    at.run()
    assert not at.exception, at.exception
    assert at.error and text in at.error[0].value
