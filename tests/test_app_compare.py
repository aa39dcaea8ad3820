"""AppTest of the Compare page: one model with two settings, several models, uploads."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"


def open_compare(**state) -> AppTest:
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    at.switch_page("pages/compare.py")
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def tiny_models(tmp_path, monkeypatch):
    """An untrained tiny density network next to the baseline (the only shipped weights)."""
    torch = pytest.importorskip("torch")
    from cellcount.models import ModelCard, create_model, loading, save_model

    torch.manual_seed(0)
    kwargs = {"base_width": 4, "depth": 2, "out_channels": 1, "head": "density"}
    card = ModelCard(
        name="tiny-density", architecture="unet", output_kind="density", kwargs=kwargs, tile_size=128
    )
    save_model(create_model("unet", **kwargs), card, tmp_path / "tiny-density")
    monkeypatch.setattr(loading, "DEFAULT_WEIGHTS_DIR", tmp_path)
    return tmp_path


@pytest.mark.slow
def test_one_model_two_settings():
    at = open_compare(
        compare_mode="Settings",
        compare_model="classical-otsu",
        compare_samples=["s01_sparse_small.png", "s02_dense_clusters.png"],
    )
    assert any("identical" in w.value for w in at.warning)
    at.slider(key="compare_b_threshold").set_value(0.8)
    at.run()
    assert any("Press Compare" in i.value for i in at.info)
    at.button(key="compare_run").click()
    at.run()
    assert not at.exception
    per_config, table = at.dataframe[0].value, at.dataframe[1].value
    # B named by what it changes (the table, verdict and CSV said "B: classical-otsu" alone: a tester)
    assert list(per_config["config"]) == ["A: classical-otsu", "B: classical-otsu (Probability threshold 0.8)"]
    assert {"MAE", "MAE 95% CI", "bias", "images flagged"} <= set(per_config.columns)
    assert list(table["true"]) == [28, 167]
    # the classical baseline flags both samples: agreement is not correctness, and the page says so with reasons
    assert list(per_config["images flagged"]) == [2, 2]
    assert any("2 of the 2 image(s) counted flagged" in w.value and "agreement is not correctness" in w.value for w in at.warning)
    # with ground truth on only two images, no interval on the MAE difference is claimed
    assert any("needs at least 5 images" in c.value for c in at.caption)
    assert (table["A: classical-otsu"] != table["B: classical-otsu (Probability threshold 0.8)"]).any()
    assert "Comparison CSV" in {d.label for d in at.get("download_button")}
    next(b for b in at.selectbox if b.label == "Image").set_value("s02_dense_clusters.png")
    at.run()
    assert not at.exception
    # a new comparison starts the picker from the image chosen, and the panels show that one
    at.slider(key="compare_b_threshold").set_value(0.7)
    at.run()
    at.button(key="compare_run").click()
    at.run()
    assert next(b for b in at.selectbox if b.label == "Image").value == "s02_dense_clusters.png"
    assert any("s02" in str(c.proto) or "167" in str(c.proto) for c in at.get("plotly_chart"))
    # the image's ground truth drawn beside the predictions (the titles alone said "true 167")
    assert sum("Ground truth" in str(c.proto) and "167 annotated" in str(c.proto) for c in at.get("plotly_chart")) == 1
    # a setting changed after the comparison: said, not a silent "Press Compare" (a tester, from Batch)
    at.slider(key="compare_b_threshold").set_value(0.6)
    at.run()
    assert any("The last comparison (A: classical-otsu; B: classical-otsu (Probability threshold 0.7), on 2 image(s)) "
               "no longer matches" in i.value for i in at.info), [i.value for i in at.info]
    # edge objects left out by a setting: the truth it is scored against said beside what is drawn (a tester read 3
    # truths for one image)
    at.toggle(key="compare_b_exclude_border").set_value(True).run()
    at.button(key="compare_run").click().run()
    scored = at.session_state["compare__result"]["table"]
    b_true = scored[(scored["file"] == "s02_dense_clusters.png") & scored["config"].str.startswith("B")]["true"].iloc[0]
    assert b_true < 167
    assert sum(f"167 annotated ({b_true} off the edge)" in str(c.proto) for c in at.get("plotly_chart")) == 1


@pytest.mark.slow
def test_models_mode_and_upload(tiny_models, monkeypatch):
    from pages import _shared as sh

    names = {}
    monkeypatch.setattr(sh, "download_button", lambda label, data, name, *a, **k: names.__setitem__(label, name))
    at = open_compare(
        compare_mode="Models", compare_models=["tiny-density", "classical-otsu"], compare_source="Upload"
    )
    assert any("Choose at least one model" in i.value for i in at.info)
    assert at.button(key="compare_run").disabled
    img = np.zeros((48, 48), np.uint8)
    img[10:20, 10:20] = 200
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    at.file_uploader(key="compare_files").set_value(
        [("one.png", buf.getvalue(), "image/png"), ("bad.png", b"nope", "image/png")]
    )
    at.run()
    at.button(key="compare_run").click()
    at.run()
    assert not at.exception
    bad = [w.value for w in at.warning if "bad.png" in w.value]
    assert len(bad) == 1 and "<bytes>" not in bad[0], "once for the file, named, not once per model"
    table = at.dataframe[1].value
    # the unreadable file keeps its row, empty, so the comparison CSV lists every image given
    # in file-name order, as every labelled set (the command line's folder order)
    assert list(table["file"]) == ["bad.png", "one.png"] and "true" not in table
    assert table.loc[1, "classical-otsu"] == 1 and table.iloc[0, 1:].isna().all()
    # every count with its model, settings and flag, and the file that could not be read, in one CSV
    assert "Every count CSV" in names
    long = at.session_state["compare__result"]["table"]  # what that CSV holds (with an error column)
    assert {"model", "settings", "check", "check_score", "check_reasons", "status"} <= set(long.columns)
    assert long.loc[long["status"] == "ok", "check_score"].notna().all(), "the score, as every other table has it"
    assert set(long["file"]) == {"one.png", "bad.png"}
    unread = long[long["file"] == "bad.png"]  # status and reason as Batch's and the command line's CSVs say them
    assert (unread["status"] == "error").all() and unread["reason"].str.startswith("bad.png: ").all()
    # written as `compare --rows` writes them: its columns in its order, whole numbers whole (true 28, not 28.0)
    from cellcount.evaluate.compare import ROW_COLUMNS, rows_table

    written = rows_table(long)
    assert list(written.columns) == [c for c in ROW_COLUMNS if c in long or c == "error"]
    assert pd.api.types.is_integer_dtype(written["count"])
    # named by when the comparison ran (two were "comparison.csv" and "comparison (1).csv")
    stamp = at.session_state["compare__result"]["stamp"]
    assert re.fullmatch(r"\d{8}-\d{6}", stamp)
    assert names["Comparison CSV"] == f"comparison_{stamp}.csv" and names["Every count CSV"] == f"comparison_{stamp}_rows.csv"


def test_a_configuration_that_cannot_count_an_image_has_its_row_with_why(monkeypatch):
    """One configuration refused for one image: its row says status error with the reason, as Batch's and the command
    line's counts CSVs do, and the page names the file and the configuration."""
    at = open_compare(compare_mode="Settings", compare_model="classical-otsu",
                      compare_samples=["s01_sparse_small.png", "s02_dense_clusters.png"])
    at.slider(key="compare_b_threshold").set_value(0.8)
    at.run()
    import cellcount as cc

    real = cc.postprocess

    def refuse_b(pred, params, **kw):
        if params.threshold == pytest.approx(0.8) and pred.shape[0] == 256:  # B on s01 (256 px) only
            raise cc.ParameterError("refused for this test")
        return real(pred, params, **kw)

    monkeypatch.setattr(cc, "postprocess", refuse_b)
    at.button(key="compare_run").click()
    at.run()
    assert not at.exception
    long = at.session_state["compare__result"]["table"]
    failed = long[long["status"] != "ok"]
    assert len(failed) == 1 and failed["status"].iloc[0] == "error" and failed["config"].iloc[0].startswith("B")
    assert "refused for this test" in failed["reason"].iloc[0]
    assert (long.loc[long["status"] == "ok", "reason"] == "").all()
    assert any("with B: classical-otsu (Probability threshold 0.8): " in w.value and "refused for this test" in w.value for w in at.warning)
    # the two configurations' agreement on the image both counted (the page crashed on the missing count)
    assert any("(on the 1 of 2 images both counted)" in c.value for c in at.caption)


@pytest.mark.slow
def test_paired_interval_with_five_images():
    at = open_compare(
        compare_mode="Settings",
        compare_model="classical-otsu",
        compare_samples=["s01_sparse_small.png", "s02_dense_clusters.png", "s03_large_nuclei.png",
                         "s04_uneven_illumination.png", "s06_heavy_blur.png"],
    )
    at.slider(key="compare_b_threshold").set_value(0.8)
    at.run()
    at.button(key="compare_run").click()
    at.run()
    assert not at.exception
    per_config = at.dataframe[0].value
    assert all("–" in v for v in per_config["MAE 95% CI"])  # an interval per configuration
    # each configuration against the lowest MAE, paired, in the table (the scatter's caption names one pair only)
    against = per_config["vs lowest MAE"].tolist()
    best = per_config["MAE"].idxmin()
    assert against[best] == "lowest" and list(per_config.columns).index("vs lowest MAE") == 3
    other = against[1 - best]
    assert re.fullmatch(r"\+\d+\.\d\d \(-?\+?\d+\.\d\d to [-+]\d+\.\d\d\): (more error|within luck|less error on these images)", other), other
    cap = next(c.value for c in at.caption if "paired bootstrap interval" in c.value)
    assert "MAE(B: classical-otsu (Probability threshold 0.8)) − MAE(A: classical-otsu)" in cap
    assert ("more accurate" in cap) or ("image-to-image luck" in cap)


def test_settings_on_uploaded_images_with_same_name_labels():
    """Compare on the user's labelled uploads: the error of each configuration over the labelled images."""
    from cellcount.synthetic import make_synthetic

    def png(arr) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        return buf.getvalue()

    truth = {}
    images, labels = [], []
    for k in range(3):
        s = make_synthetic((96, 128), rng=20 + k, n_cells=6 + 5 * k, radius_px=(4.0, 7.0))
        truth[f"f{k}.png"] = s.count
        images.append((f"f{k}.png", png(s.image), "image/png"))
        labels.append((f"f{k}.png", png(s.labels.astype(np.uint16)), "image/png"))
    extra = ("no_truth.png", png(make_synthetic((64, 64), rng=5, n_cells=4).image), "image/png")
    at = open_compare(compare_mode="Settings", compare_model="classical-otsu", compare_source="Upload")
    at.file_uploader(key="compare_files").set_value([*images, extra, images[0]])  # f0 twice
    at.file_uploader(key="compare_gt_files").set_value(labels)
    at.slider(key="compare_b_threshold").set_value(0.8)
    at.run()
    assert not at.exception
    assert any("used once" in i.value for i in at.info)
    assert any("3 image(s) with ground truth (3 with label images); 1 without ground truth." in c.value
               for c in at.caption)
    at.button(key="compare_run").click()
    at.run()
    assert not at.exception
    per_config, table = at.dataframe[0].value, at.dataframe[1].value
    assert list(per_config["images with ground truth"]) == [3, 3]
    assert len(table) == 4 and table.set_index("file")["true"].drop("no_truth.png").to_dict() == truth
    assert pd.isna(table.set_index("file").loc["no_truth.png", "true"])
    err = table.set_index("file")["error: A: classical-otsu"].drop("no_truth.png")
    mae = float(err.abs().mean())
    assert per_config.loc[0, "MAE"] == pytest.approx(mae)
    assert any("3 of 4 images that have ground truth" in c.value for c in at.caption)
    # F1 beside the MAE, as Evaluate matches the objects (the page had none; `cellcount compare` had)
    import cellcount as cc
    from cellcount.evaluate import evaluate_predictions, predict_pairs
    from cellcount.groundtruth import labels_from_array

    model = cc.load_model("classical-otsu")
    params = cc.resolve_params(model)
    items = [(n, np.array(Image.open(io.BytesIO(d))), labels_from_array(np.array(Image.open(io.BytesIO(lab)))))
             for (n, d, _), (_, lab, _) in zip(images, labels, strict=True)]
    report = evaluate_predictions(predict_pairs(items, model, params, warn_trained=False), params)
    assert per_config.loc[0, "F1"] == pytest.approx(report.summary["f1"])
    assert 0 < per_config.loc[1, "F1"] <= 1

    # corrected ground truth for the same images: the earlier table is not shown as if it were scored on it
    fewer = []
    for name, data, kind in labels:
        lab = np.array(Image.open(io.BytesIO(data)))
        lab[lab == lab.max()] = 0  # one nucleus fewer in each
        fewer.append((name, png(lab.astype(np.uint16)), kind))
    at.file_uploader(key="compare_gt_files").set_value(fewer)
    at.run()
    assert any("Press Compare" in i.value for i in at.info), "new ground truth: compare again"
    at.button(key="compare_run").click().run()
    table = at.dataframe[1].value
    assert table.set_index("file")["true"].drop("no_truth.png").to_dict() == {k: v - 1 for k, v in truth.items()}


def test_dotted_colour_uploads_draw_their_dots_beside_the_predictions():
    """Compare on H&E images with dot CSVs raised a ValueError in its side-by-side panels (the truth's panel asked
    its picture for a legend): every dotted upload broke the page under its table."""
    from cellcount.synthetic import make_synthetic

    images, dots = [], []
    for k in range(2):
        s = make_synthetic((96, 128), rng=30 + k, n_cells=5 + 3 * k, radius_px=(4.0, 7.0))
        rgb = np.stack([255 - s.image, 255 - s.image // 2, 255 - s.image // 3], axis=-1).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="PNG")
        images.append((f"he{k}.png", buf.getvalue(), "image/png"))
        centres = pd.DataFrame({"x": s.centroids[:, 1], "y": s.centroids[:, 0]})
        dots.append((f"he{k}.csv", centres.to_csv(index=False).encode(), "text/csv"))
    at = open_compare(compare_mode="Settings", compare_model="classical-otsu", compare_source="Upload")
    at.file_uploader(key="compare_files").set_value(images)
    at.file_uploader(key="compare_gt_files").set_value(dots)
    at.run()
    at.button(key="compare_run").click().run()
    assert not at.exception, at.exception
    n = len(pd.read_csv(io.BytesIO(dots[0][1])))
    assert sum("Ground truth" in str(c.proto) and f"{n} annotated" in str(c.proto) for c in at.get("plotly_chart")) == 1


def test_the_model_in_use_is_among_the_preselected_models(tiny_models):
    """Compare preselected the first two models, not the one the user had tuned or loaded settings for."""
    import shutil

    import cellcount as cc

    shutil.copytree(tiny_models / "tiny-density", tiny_models / "tiny-density-2")  # three models to choose from
    assert len(cc.list_models()) == 3
    last = cc.list_models()[-1]
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    at.session_state["count_model"] = last
    at.run()
    at.switch_page("pages/count.py").run()
    at.switch_page("pages/compare.py").run()
    assert not at.exception
    assert last in at.multiselect(key="compare_models").value


def test_a_model_list_emptied_by_the_user_stays_empty(tiny_models):
    """Removing the last chip brought the two default models back, so a later pick hit the 4-model limit."""
    at = open_compare(compare_mode="Models")
    assert len(at.multiselect(key="compare_models").value) == 2  # first visit: two models to start from
    at.multiselect(key="compare_models").set_value([]).run()
    assert not at.exception
    assert at.multiselect(key="compare_models").value == []
    assert any("Choose at least one model" in i.value for i in at.info)
    at.run()  # any later run keeps the user's empty choice
    assert at.multiselect(key="compare_models").value == []


def test_a_models_own_training_images_are_named(tiny_models, monkeypatch):
    from cellcount.models.card import ModelCard
    from pages._model_ui import _trained_on

    _trained_on.clear()  # the check is cached per image set and model version: an earlier test's answer is kept
    monkeypatch.setattr(ModelCard, "trained_on", lambda self, images: (
        [n for n, _ in images if n.startswith("s01")] if self.name == "tiny-density" else []))
    at = open_compare(compare_mode="Models", compare_models=["tiny-density", "classical-otsu"],
                      compare_source="Samples")
    note = [w.value for w in at.warning if "training images" in w.value]
    assert len(note) == 1 and "tiny-density's training images (s01_sparse_small.png)" in note[0]
    # a fair comparison leaves it out unless the user keeps it
    assert at.toggle(key="compare_unseen_only").value is True
    n = int(at.button(key="compare_run").proto.label.split()[2])
    at.toggle(key="compare_unseen_only").set_value(False).run()
    assert at.button(key="compare_run").proto.label == f"Compare on {n + 1} image(s)"


def test_a_first_visit_compares_the_default_with_the_model_it_replaced():
    import cellcount as cc
    from cellcount.models.loading import FALLBACK_MODEL

    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/compare.py").run()
    at.radio(key="compare_mode").set_value("Models").run()
    assert not at.exception
    assert at.multiselect(key="compare_models").value == [cc.models.default_model_name(), FALLBACK_MODEL]


def test_images_learnt_by_several_compared_models_make_one_note(tiny_models, monkeypatch):
    """Three near-identical boxes, one per model, for the same images (a tester): one note names them all."""
    from cellcount.models.card import ModelCard
    from pages._model_ui import _trained_on

    _trained_on.clear()
    monkeypatch.setattr(ModelCard, "trained_on", lambda self, images: [n for n, _ in images if n.startswith("s01")])
    at = open_compare(compare_mode="Models", compare_models=["tiny-density", "classical-otsu"],
                      compare_source="Samples")
    notes = [w.value for w in at.warning if "training images" in w.value]
    assert len(notes) == 1 and "tiny-density (1), classical-otsu (1)" in notes[0] and "s01_sparse_small.png" in notes[0]


def test_a_model_deleted_meanwhile_leaves_the_comparison_saying_so(tiny_models):
    """A model deleted in another tab vanished from the Models box without a word (a tester)."""
    at = open_compare(compare_mode="Models", compare_models=["tiny-density", "mine-deleted"])
    assert not at.exception
    assert at.multiselect(key="compare_models").value == ["tiny-density"]
    assert any("mine-deleted is no longer installed" in w.value for w in at.warning)


def _png(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _stack_tif() -> bytes:
    """A z-stack with one nucleus in focus per plane: 1 in the first plane, 3 in the maximum projection."""
    import tifffile

    stack = np.zeros((3, 48, 48), np.uint8)
    for z, (y, x) in enumerate([(6, 6), (6, 30), (30, 6)]):
        stack[z, y:y + 10, x:x + 10] = 200
    buf = io.BytesIO()
    tifffile.imwrite(buf, stack, imagej=True, metadata={"axes": "ZYX"})
    return buf.getvalue()


@pytest.mark.slow
def test_a_z_stack_is_compared_on_the_plane_chosen_on_count():
    """The maximum projection chosen on Count (161 nuclei) was compared on the first plane (55), unflagged."""
    at = open_compare(compare_mode="Settings", compare_model="classical-otsu", compare_source="Upload")
    at.file_uploader(key="compare_files").set_value([("stack.tif", _stack_tif(), "image/tiff")])
    at.session_state["plane_choice"] = "max"  # what choosing it on Count left in the session
    at.run()
    assert at.selectbox(key="compare_plane").value == "max"
    assert len(at.selectbox(key="compare_plane").options) == 2 + 3, "first, max and the 3 planes the stack holds"
    # said with the settings in use, as every page shares it (Batch's line said "the model card" alone: a tester)
    assert any("z-stacks: their maximum projection" in c.value for c in at.caption)
    at.button(key="compare_run").click()
    at.run()
    assert not at.exception
    long = at.session_state["compare__result"]["table"]
    assert set(long["count"]) == {3}
    # what was counted of the stack, in the rows CSV as in the counts CSVs (both downloads read alike: a tester)
    from cellcount.evaluate.compare import rows_table

    assert rows_table(long).columns[1] == "plane" and set(rows_table(long)["plane"]) == {"max"}
    at.selectbox(key="compare_plane").set_value("first")
    at.run()
    at.button(key="compare_run").click()
    at.run()
    long = at.session_state["compare__result"]["table"]
    assert set(long["count"]) == {1} and long["check"].all()
    assert long["check_reasons"].str.contains("only the first of its 3").all(), "the first plane alone is flagged"
    # a plane number reads that plane of the stack, and a one-plane file as it is (it failed: "page 1 is out of range")
    one = np.zeros((48, 48), np.uint8)
    one[6:16, 6:16] = 200
    at.file_uploader(key="compare_files").set_value([("stack.tif", _stack_tif(), "image/tiff"),
                                                     ("one.png", _png(one), "image/png")])
    at.run()
    at.selectbox(key="compare_plane").set_value(1)
    at.run()
    at.button(key="compare_run").click()
    at.run()
    long = at.session_state["compare__result"]["table"].set_index("file")
    assert (long["status"] == "ok").all() and long.loc["one.png", "count"].tolist() == [1, 1]
    assert long.loc["stack.tif", "plane"].tolist() == [1, 1] and long.loc["one.png", "plane"].isna().all()


def test_exclude_edge_objects_is_scored_against_the_truth_without_them_as_evaluate_does():
    """Compare scored "Exclude edge objects" against the truth with its edge objects (MAE 11.25 where Evaluate
    said 4.75): each configuration is scored against the truth its count can be compared with."""
    from cellcount.groundtruth import read_ground_truth
    from cellcount.postprocess import edge_ids

    samples = ["s01_sparse_small.png", "s02_dense_clusters.png"]
    at = open_compare(compare_mode="Settings", compare_model="classical-otsu", compare_samples=samples)
    at.toggle(key="compare_b_exclude_border").set_value(True)
    at.run()
    at.button(key="compare_run").click()
    at.run()
    assert not at.exception
    long = at.session_state["compare__result"]["table"]
    edges = {n: len(edge_ids(read_ground_truth(SAMPLES / n.replace(".png", "_labels.tif")).labels)) for n in samples}
    b = long[long["config"] == "B: classical-otsu (Exclude edge objects on)"].set_index("file")
    a = long[long["config"] == "A: classical-otsu"].set_index("file")
    assert all(edges.values())
    assert {n: a.loc[n, "true"] - b.loc[n, "true"] for n in samples} == edges
    per_config, table = at.dataframe[0].value.set_index("config"), at.dataframe[1].value.set_index("file")
    expected = sum(abs(b.loc[n, "count"] - b.loc[n, "true"]) for n in samples) / 2
    assert per_config.loc["B: classical-otsu (Exclude edge objects on)", "MAE"] == pytest.approx(expected)
    assert list(table["true"]) == [28, 167], "the table's truth column is the truth as given"
    assert table.loc["s01_sparse_small.png", "error: B: classical-otsu (Exclude edge objects on)"] == b.loc["s01_sparse_small.png", "count"] - (
        28 - edges["s01_sparse_small.png"])
    assert any("Exclude edge objects" in c.value and "as Evaluate scores them" in c.value for c in at.caption)
    assert list(at.dataframe[2].value["true: B: classical-otsu (Exclude edge objects on)"]) == [t - edges[n] for n, t in zip(samples, (28, 167))]


def test_the_flagged_share_is_of_the_images_counted():
    """An unreadable upload was counted among the images the flag was out of ("3 of 4" for 3 of the 3 read)."""
    at = open_compare(compare_mode="Settings", compare_model="classical-otsu", compare_source="Upload")
    at.file_uploader(key="compare_files").set_value(
        [("s01.png", (SAMPLES / "s01_sparse_small.png").read_bytes(), "image/png"),
         ("notes.png", b"not an image at all", "image/png")])
    at.slider(key="compare_b_threshold").set_value(0.8)
    at.run()
    at.button(key="compare_run").click().run()
    assert not at.exception
    assert any("1 of the 1 image(s) counted flagged" in w.value for w in at.warning)
    assert any("notes.png" in w.value for w in at.warning), "the unreadable file is named"


def test_a_model_change_in_settings_mode_is_said_on_compare_not_on_the_next_page(tiny_models):
    """Changing the model of "one model, two settings" said nothing on Compare; the notice popped up on the next
    visit to Count, where nothing had changed (a tester)."""
    at = open_compare(compare_mode="Settings", compare_model="classical-otsu")
    at.selectbox(key="compare_model").set_value("tiny-density").run()
    assert not at.exception
    assert any("Model changed from classical-otsu to tiny-density" in t.value for t in at.toast)
    at.switch_page("pages/count.py")
    at.run()
    assert not any("Model changed" in t.value for t in at.toast)


def test_models_mode_names_what_was_edited_for_each_model(tiny_models):
    """Two models read "edited" for a nucleus diameter set on Count, with no word of what (a tester)."""
    at = open_compare(compare_mode="Models", compare_models=["tiny-density", "classical-otsu"])
    assert any("**tiny-density**: the model card" in c.value for c in at.caption)
    at.switch_page("pages/count.py")
    at.run()
    at.number_input(key="count_nucleus_diameter_px").set_value(30.0).run()
    at.switch_page("pages/compare.py")
    at.run()
    said = next(c.value for c in at.caption if "Each model runs with the settings in use" in c.value)
    assert said.count("Input changed: Nucleus diameter 30") == 2, said


@pytest.mark.slow
def test_models_mode_resets_every_compared_model_to_its_card_in_one_click(tiny_models):
    """The models mode had no way back to the cards but visiting Count once per model."""
    at = open_compare(compare_mode="Models", compare_models=["tiny-density", "classical-otsu"])
    assert at.button(key="compare_reset_all").disabled  # nothing edited yet
    at.switch_page("pages/count.py")
    at.run()
    at.number_input(key="count_nucleus_diameter_px").set_value(30.0).run()
    at.switch_page("pages/compare.py")
    at.run()
    assert not at.button(key="compare_reset_all").disabled
    at.button(key="compare_reset_all").click().run()
    assert not at.exception, at.exception
    said = next(c.value for c in at.caption if "Each model runs with the settings in use" in c.value)
    assert said.count("the model card") == 2 and "Nucleus diameter" not in said, said
    assert any("reset to their model cards" in i.value for i in at.info), [i.value for i in at.info]
    assert at.button(key="compare_reset_all").disabled


def test_times_are_of_predictions_made_in_the_comparison(tiny_models):
    """Predictions made on Count (cold, under other load) kept their times: the default model read 5x slower than
    another on Compare (a tester). Those kept are left out of the times, and the caption says how many."""
    at = open_compare(compare_mode="Models", compare_models=["tiny-density"], compare_source="Upload")
    img = np.zeros((48, 48), np.uint8)
    img[5:25, 30:41] = 180  # an image no other test predicts (the cache is the process's)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    at.file_uploader(key="compare_files").set_value([("one.png", buf.getvalue(), "image/png")])
    at.run()
    at.button(key="compare_run").click().run()
    long = at.session_state["compare__result"]["table"]
    assert long["timed_here"].all() and long["seconds"].notna().all(), "made here: timed here"
    assert not any("were made earlier" in c.value for c in at.caption)
    at.button(key="compare_run").click().run()  # the same image and model again: the prediction kept
    long = at.session_state["compare__result"]["table"]
    assert not long["timed_here"].any() and long["seconds"].isna().all()
    assert any("1 of the 1 were made earlier" in c.value and "no time is shown" in c.value for c in at.caption)
