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


@pytest.mark.slow
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
    assert "check" in at.dataframe[0].value.columns, "the quality flag beside each image's error"
    flag = next(c.value for c in at.caption if c.value.startswith("Quality flag:"))
    assert "of 12 images flagged" in flag and "off by more than 15% of the true count" in flag
    # the flagged images with their reasons, not a tick alone (they were in the CSV only)
    n_flagged = int(at.dataframe[0].value["check"].fillna(False).astype(bool).sum())
    assert n_flagged, "some samples are flagged (the case under test)"
    (why,) = [e for e in at.expander if e.label == f"Why {n_flagged} image(s) were flagged"]
    listed = why.markdown[0].value
    assert listed.count("\n- `") == min(n_flagged, 20) - 1 and "(true " in listed and ", counted " in listed
    # the time in words a user can weigh: per image first, and what the figure counts (a tester read
    # "Model speed: 54840 ms per megapixel" as a fault)
    timing = next(c.value for c in at.caption if c.value.startswith("Time in the networks:"))
    assert "s per image (median)" in timing and "size estimate" in timing
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
    # the objects without a match are marked on each side and named in the legends (a tester)
    legends = " ".join(str(c.proto.spec) for c in at.get("plotly_chart"))
    assert "missed (" in legends or "no true match (" in legends
    assert any("Objects without a match at IoU" in c.value for c in at.caption)


@pytest.mark.slow
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
    # the values tried include the walk past a range's top (a tester read "threshold 0.3 ... 0.7" and got 0.9)
    assert any("Values tried: " in c.value and "threshold in steps of 0.1 up to 0.9" in c.value for c in at.caption)
    at.button(key="eval_tune").click()
    at.run()
    assert not at.exception
    before, after = float(metric(at, "MAE before")), float(metric(at, "MAE after (these images)"))
    assert after <= before
    assert "Tuned settings JSON" in {d.label for d in at.get("download_button")}
    changed = int(metric(at, "Settings changed"))
    assert any("images the tuning did not see" in m.value for m in [*at.success, *at.info, *at.warning]), "checked held out"
    # two images cannot show a gain: no "tuning helps" from them (a tester read one from 5 images, MAE 5.00 -> 4.40)
    assert not any("tuning helps" in m.value for m in at.success)
    table = next(df.value for df in at.dataframe if "setting" in df.value.columns)
    assert len(table) == changed and not any("_" in name for name in table["setting"]), "named as on the Count page"
    # a setting moved after tuning: the check compares with the settings tuning started from, and says so
    area = at.number_input(key="eval_min_area_px")
    assert not any("settings tuned on these same images" in i.value for i in at.info), "not applied yet"
    area.set_value(area.value + 7).run()
    assert any("changed after tuning" in w.value for w in at.warning)
    assert any("the settings tuning started from count at MAE" in m.value for m in [*at.success, *at.info, *at.warning])
    area.set_value(area.value - 7).run()
    assert any("the current settings count at MAE" in m.value for m in [*at.success, *at.info, *at.warning])
    # an edit the tuning did not touch: Apply would undo it, and says so first (a tester's Max. area 2000 went in
    # silence)
    at.number_input(key="eval_max_area_px").set_value(2000).run()
    said = [w.value for w in at.warning if "changed after tuning" in w.value]
    assert said and "Apply would also undo what you changed since: Max. area 2000" in said[0], said
    at.number_input(key="eval_max_area_px").set_value(0).run()
    at.button(key="eval_apply").click()
    at.run()
    assert not at.exception
    assert not any("changed after tuning" in w.value for w in at.warning), "applying is not a change after tuning"
    # once applied, the tuned settings are the current ones: the check names those tuning started from
    assert any("the settings tuning started from count at MAE" in m.value for m in [*at.success, *at.info, *at.warning])
    assert changed > 0, "this set's tuning changes settings"
    assert at.button(key="eval_apply").disabled and at.button(key="eval_apply").label == "Applied (all pages)"
    # the scores at the top are now in-sample: said above them, with the check's figure for unseen images
    assert any("settings tuned on these same images" in i.value and "did not see" in i.value for i in at.info)
    tuned = at.number_input(key="eval_min_area_px").value
    at.switch_page("pages/count.py")
    at.run()
    assert not at.exception
    assert at.selectbox(key="count_model").value == "classical-otsu"
    assert at.number_input(key="count_min_area_px").value == tuned  # one store: Count uses the tuned settings
    # Compare on images the settings were tuned on says so: its verdict favours them (a tester read "more
    # accurate" from in-sample settings)
    at.switch_page("pages/compare.py")
    at.session_state["compare_mode"] = "Settings"
    at.session_state["compare_model"] = "classical-otsu"
    at.session_state["compare_source"] = "Upload"
    at.run()
    at.file_uploader(key="compare_files").set_value([upload("s01_sparse_small.png"), upload("s03_large_nuclei.png")])
    at.run()
    assert not at.exception
    said = [w.value for w in at.warning if "Settings tuned on" in w.value]
    # A (the session's tuned settings) and B while still their copy; B changed here is not
    assert said and "Settings tuned on 1 of these 2 images: A: classical-otsu (tuned on your data: " in said[0], said
    assert " and B: classical-otsu (same as A)" in said[0], said
    at.number_input(key="compare_b_min_area_px").set_value(at.number_input(key="compare_b_min_area_px").value + 3)
    at.run()
    said = [w.value for w in at.warning if "Settings tuned on" in w.value]
    assert said and "1 of these 2 images: A: classical-otsu (" in said[0] and "B:" not in said[0], said
    at.file_uploader(key="compare_files").set_value([upload("s03_large_nuclei.png")])
    at.run()
    assert not any("Settings tuned on" in w.value for w in at.warning), "none of them tuned on"


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


@pytest.mark.slow
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


def test_images_first_then_ground_truth_that_matches_none_is_an_error_message():
    """Images uploaded before their labels: the next step, not an error; labels that match no image: an error."""
    at = open_eval(eval_source="Upload")
    at.file_uploader(key="eval_files").set_value([upload("s01_sparse_small.png")])
    at.run()
    assert not at.exception and not at.error and not at.warning
    assert any("Now add their ground truth" in i.value for i in at.info), [i.value for i in at.info]
    labels = (SAMPLES / "s01_sparse_small_labels.tif").read_bytes()
    at.file_uploader(key="eval_gt_files").set_value([("other_labels.tif", labels, "image/tiff")])
    at.run()
    assert not at.exception
    assert at.error and "ground truth" in at.error[0].value


def test_ground_truth_named_like_an_image_gets_a_hint():
    """vgg_cells' own names (001cell.png, 001dots.png) in the images uploader: the dots were silently taken
    for an image. Now such a pair is ground truth; a lookalike without its image gets a hint."""
    import numpy as np
    from PIL import Image

    def png_bytes(array):
        buf = io.BytesIO()
        Image.fromarray(array).save(buf, format="PNG")
        return buf.getvalue()

    at = open_eval(eval_source="Upload")
    image = (SAMPLES / "s01_sparse_small.png").read_bytes()
    dots = np.zeros((256, 256), np.uint8)
    dots[[20, 60, 100], [30, 90, 150]] = 255
    at.file_uploader(key="eval_files").set_value([("001cell.png", image, "image/png"),
                                                   ("001dots.png", png_bytes(dots), "image/png")])
    at.run()
    assert not at.exception
    assert any("1 image(s) with ground truth" in c.value for c in at.caption), "paired as the benchmark names them"
    at.file_uploader(key="eval_files").set_value([("001cell.png", image, "image/png"),
                                                   ("009dots.png", png_bytes(dots), "image/png")])
    at.run()
    assert not at.exception
    assert any("009dots.png" in i.value and "looks like ground truth" in i.value for i in at.info)
    hint = next(i.value for i in at.info if "looks like ground truth" in i.value)
    assert "001cell.png" not in hint.split("looks like")[0], "the image itself is not listed"


def test_zip_with_a_counts_table():
    """A zipped folder of images + counts.csv: the table inside the zip is the ground truth."""
    at = evaluate_zip("plate.zip", {
        "plate/a.png": (SAMPLES / "s01_sparse_small.png").read_bytes(),
        "plate/b.png": (SAMPLES / "s04_uneven_illumination.png").read_bytes(),
        "plate/counts.csv": "filename,count\na.png,28\nb.png,80\n",
    })
    assert metric(at, "Images") == "2"


# --------------------------------------------------------------------------------------------------
# images and ground truth through two uploaders
# --------------------------------------------------------------------------------------------------
def _synthetic_set(n: int = 3) -> list[tuple[str, bytes, bytes, int]]:
    """(name, image PNG, same-name 16-bit label PNG, true count) from cellcount.synthetic."""
    import numpy as np
    from PIL import Image

    from cellcount.synthetic import make_synthetic

    def png(arr) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        return buf.getvalue()

    out = []
    for k in range(n):
        s = make_synthetic((96, 128), rng=10 + k, n_cells=8 + 4 * k, radius_px=(4.0, 7.0))
        out.append((f"field_{k}.png", png(s.image), png(s.labels.astype(np.uint16)), s.count))
    return out


@pytest.mark.slow
def test_same_name_labels_in_a_second_uploader_and_duplicates_once():
    data = _synthetic_set()
    at = open_eval(eval_source="Upload")
    images = [(name, img, "image/png") for name, img, _, _ in data]
    labels = [(name, lab, "image/png") for name, _, lab, _ in data]
    # the same three images uploaded twice (as dropping them again onto the uploader does)
    at.file_uploader(key="eval_files").set_value(images + images)
    at.file_uploader(key="eval_gt_files").set_value(labels)
    at.run()
    assert not at.exception
    assert any("3 extra copies of files uploaded more than once (the same file" in i.value for i in at.info)
    assert any("3 image(s) with ground truth (3 with label images)" in c.value for c in at.caption)
    # each image with its annotation, by full name (the uploaders cut long names short)
    pairs = at.table[0].value
    assert list(pairs.index) == sorted(name for name, _, _, _ in data)
    assert list(pairs["ground truth"]) == sorted(name for name, _, _, _ in data)
    assert list(pairs["objects"]) == [n for _, _, _, n in sorted(data)]
    # and once more inside a zip, under other names: the same images, not three more
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, img, _ in images:
            zf.writestr(f"copy_{name}", img)
    at.file_uploader(key="eval_files").set_value(images + [("again.zip", buf.getvalue(), "application/zip")])
    at.run()
    assert any("3 image(s) with ground truth (3 with label images)" in c.value for c in at.caption)
    assert any("the same image as" in i.value for i in at.info)
    at.button(key="eval_run").click()
    at.run()
    assert not at.exception
    assert metric(at, "Images") == "3"
    table = at.dataframe[0].value
    assert sorted(table["file"]) == [name for name, _, _, _ in data]
    assert dict(zip(table["file"], table["true"])) == {name: n for name, _, _, n in data}
    assert float(metric(at, "F1")) > 0.5  # the labels were read as instances of these very images
    # signed error per image as sorted bars
    at.session_state["eval_tabs"] = "Errors"
    at.run()
    assert not at.exception
    import json

    bars = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]
    errors = dict(zip(table["file"], table["error"]))
    assert bars["y"] == sorted(errors, key=errors.get) and bars["orientation"] == "h"
    at.session_state["eval_err_sort"] = "file"
    at.run()
    assert json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]["y"] == sorted(errors)


@pytest.mark.slow
def test_unmatched_and_broken_files_are_named_without_temporary_paths():
    data = _synthetic_set(2)
    at = open_eval(eval_source="Upload")
    at.file_uploader(key="eval_files").set_value(
        [(data[0][0], data[0][1], "image/png"), (data[1][0], data[1][1], "image/png")]
    )
    at.file_uploader(key="eval_gt_files").set_value(
        [(data[0][0], data[0][2], "image/png"), ("other_labels.png", data[1][2], "image/png"),
         ("field_1.csv", b"X,Y\n5,5\n9999,5\n", "text/csv")]
    )
    at.run()
    assert not at.exception
    text = " ".join(w.value for w in at.warning)
    assert "`other_labels.png`" in text  # matches no image
    assert "`field_1.png`: field_1.csv:" in text and "outside" in text  # a point beyond the image
    assert "/tmp" not in text and "cellcount-labelled" not in text and "<bytes>" not in text
    at.button(key="eval_run").click()
    at.run()
    assert not at.exception
    assert metric(at, "Images") == "1"


@pytest.mark.slow
def test_a_zip_of_images_and_a_zip_of_same_name_labels():
    data = _synthetic_set()

    def zipped(folder: str, which: int) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for item in data:
                zf.writestr(f"{folder}/{item[0]}", item[which])
        return buf.getvalue()

    at = open_eval(eval_source="Upload")
    at.file_uploader(key="eval_files").set_value([("images.zip", zipped("images", 1), "application/zip")])
    at.file_uploader(key="eval_gt_files").set_value([("labels.zip", zipped("labels", 2), "application/zip")])
    at.run()
    at.button(key="eval_run").click()
    at.run()
    assert not at.exception
    assert metric(at, "Images") == "3"


def test_new_ground_truth_for_the_same_images_is_scored_anew():
    """The predictions depend on the images only, the scores on the ground truth too: replacing the labels
    with points CSVs (one dot fewer each) must not show the scores against the earlier labels."""
    names = ["s01_sparse_small", "s03_large_nuclei"]
    at = open_eval(eval_source="Upload")
    at.file_uploader(key="eval_files").set_value([upload(f"{n}.png") for n in names])
    at.file_uploader(key="eval_gt_files").set_value([upload(f"{n}_labels.tif") for n in names])
    at.run()
    at.button(key="eval_run").click().run()
    assert not at.exception
    truth_labels = at.dataframe[0].value["true"].tolist()
    fewer = []
    for n in names:
        head, first, rest = (SAMPLES / f"{n}_points.csv").read_bytes().split(b"\n", 2)
        fewer.append((f"{n}_points.csv", head + b"\n" + rest, "text/csv"))
    at.file_uploader(key="eval_gt_files").set_value(fewer)
    at.run()
    assert not at.exception
    assert any("Press Evaluate" in i.value for i in at.info), "new ground truth: the old scores are not shown"
    at.button(key="eval_run").click().run()
    assert at.dataframe[0].value["true"].tolist() == [t - 1 for t in truth_labels], "scored against the new dots"


def test_figures_round_as_the_tables_do():
    """Evaluate showed MAE 4.12 where Compare's table showed 4.13 for the same 4.125."""
    from pages._ui import fixed

    assert fixed(33 / 8) == "4.13" and fixed(-11 / 8, sign=True) == "-1.38" and fixed(1.0, sign=True) == "+1.00"
    assert fixed(float("nan")) == "—"


@pytest.mark.slow
def test_a_models_own_training_images_are_named_before_its_error(monkeypatch):
    """A tester's fine-tuned model scored 6.45 on four images, two of them its training images, unsaid."""
    from cellcount.models.card import ModelCard
    from pages._model_ui import _trained_on

    _trained_on.clear()  # the check is cached per image set and model version: an earlier test's answer is kept
    monkeypatch.setattr(ModelCard, "trained_on",
                        lambda self, images: [n for n, _ in images if n.startswith(("s01", "s02"))])
    at = open_eval()
    at.button(key="eval_run").click()
    at.run()
    assert not at.exception
    note = [w.value for w in at.warning if "training images" in w.value]
    assert len(note) == 1 and note[0].startswith("2 of these 12 images were among classical-otsu's training images")
    assert "s01_sparse_small.png" in note[0]
    # and left out of the scores unless the user keeps them
    files = at.dataframe[0].value["file"].tolist()
    assert len(files) == 10 and not any(f.startswith(("s01", "s02")) for f in files)
    assert at.toggle(key="eval_unseen_only").value is True
    assert "learnt_from" not in at.dataframe[0].value
    at.toggle(key="eval_unseen_only").set_value(False).run()
    assert not at.exception and len(at.dataframe[0].value) == 12
    table = at.dataframe[0].value  # kept in: each row says whether the model learnt from it (the CSV too)
    assert table.set_index("file")["learnt_from"].to_dict() == {f: f.startswith(("s01", "s02")) for f in table["file"]}
    # a segmentation's counts are whole: shown without ".0" (a tester read "predicted 23.0, error +0.0")
    import json

    columns = json.loads(at.dataframe[0].proto.columns)
    assert columns["pred"]["type_config"]["format"] == "%d" and columns["error"]["type_config"]["format"] == "%+d"


def test_pairs_name_ground_truth_as_the_user_knows_it():
    """The labelled samples' ground truth read as the server's absolute paths in the pairs table."""
    from pages._groundtruth import _source_name

    assert _source_name("/srv/app/data/samples/s01_labels.tif") == "s01_labels.tif"
    assert _source_name("labels/a.tif") == "labels/a.tif", "a zip member keeps its folder"
    assert _source_name(None) == ""


def test_files_refused_for_one_reason_are_listed_once():
    """Eight QuPath tables in microns: one line naming the files, not the same paragraph eight times (a tester)."""
    from pages._groundtruth import _names, skipped_by_reason

    why = "the coordinates are in microns ('centroid x µm', 'centroid y µm'), and ground truth needs pixels"
    skipped = [(f"s{i}_points.csv", f"s{i}_points.csv: {why}") for i in range(8)] + [("x.png", "x.png: not an image")]
    groups = skipped_by_reason(skipped)
    assert list(groups) == [why, "not an image"] and len(groups[why]) == 8
    assert _names(groups[why], 3) == "`s0_points.csv`, `s1_points.csv`, `s2_points.csv` and 5 more"


def test_images_in_the_ground_truth_box_are_told_apart_from_labels_named_like_them():
    """A zip of images/ and labels/ in the ground-truth box alone: say to put it in the Images box; labels named
    exactly like their images, waiting for the images, are not called images."""
    from pages._groundtruth import images_among

    assert images_among(["images/DAPI_s01.tif", "labels/DAPI_s01.tif"]) == ["images/DAPI_s01.tif"]
    assert images_among(["DAPI_s01.tif", "DAPI_s02.tif"]) == []
    assert images_among(["g/images/a.png", "g/CellCounter_a.xml"]) == ["g/images/a.png"], "Cell Counter's too"
    # on the page: the warning says where the zip goes
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("mydata/images/a.png", (SAMPLES / "s01_sparse_small.png").read_bytes())
        zf.writestr("mydata/labels/a.tif", (SAMPLES / "s01_sparse_small_labels.tif").read_bytes())
    at = open_eval(eval_source="Upload")
    at.file_uploader(key="eval_gt_files").set_value([("mydata.zip", buf.getvalue(), "application/zip")])
    at.run()
    assert not at.exception
    said = " ".join(w.value for w in at.warning)
    assert "Some of them are images (`images/a.png`)" in said and "in the Images uploader" in said, said


def test_evaluate_does_not_run_a_replacement_for_a_model_deleted_elsewhere(tiny_models, monkeypatch):
    import shutil
    import types

    import cellcount as cc
    import pages._model_ui as model_ui
    from cellcount.models import load_model, save_model, user_models_dir

    shipped = load_model("tiny-mask")
    save_model(shipped.net, cc.models.ModelCard(**{**shipped.card.to_dict(), "name": "my-try"}),
               user_models_dir() / "my-try")
    at = open_eval(eval_model="my-try")
    assert at.selectbox(key="eval_model").value == "my-try"
    shutil.rmtree(user_models_dir() / "my-try")  # deleted in another tab or on the command line
    card = model_ui.model_card  # AppTest re-labels the old choice to send it (a browser sends its index)
    monkeypatch.setattr(model_ui, "model_card", lambda name: types.SimpleNamespace(output_kind="mask")
                        if name == "my-try" else card(name))
    at.button(key="eval_run").click().run()
    assert not at.exception
    assert any("Nothing was evaluated: my-try, the model you chose, is no longer installed" in w.value
               for w in at.warning)
    assert not [m for m in at.metric if m.label == "MAE"]


def test_a_z_stack_is_scored_on_its_first_plane_and_flagged_as_on_the_command_line():
    """The app scored a stack's first plane without a word; the command line's evaluate flags it."""
    import numpy as np
    import tifffile
    from PIL import Image

    stack = np.zeros((3, 48, 48), np.uint8)
    labels = np.zeros((48, 48), np.uint16)
    for z, (y, x) in enumerate([(6, 6), (6, 30), (30, 6)]):
        stack[z, y:y + 10, x:x + 10] = 200
        labels[y:y + 10, x:x + 10] = z + 1
    buf, lab = io.BytesIO(), io.BytesIO()
    tifffile.imwrite(buf, stack, imagej=True, metadata={"axes": "ZYX"})
    Image.fromarray(labels).save(lab, format="PNG")
    at = open_eval(eval_source="Upload")
    at.file_uploader(key="eval_files").set_value([("stack.tif", buf.getvalue(), "image/tiff")])
    at.file_uploader(key="eval_gt_files").set_value([("stack_labels.png", lab.getvalue(), "image/png")])
    at.run()
    at.button(key="eval_run").click()
    at.run()
    assert not at.exception
    row = at.dataframe[0].value.iloc[0]
    assert row["pred"] == 1 and row["true"] == 3 and bool(row["check"])
    assert "the file holds 3 z-planes; only the first was read and scored" in row["check_reasons"]


def test_worst_images_with_dots_mark_the_objects_holding_none_and_the_dots_missed():
    """With dot ground truth the worst images showed only "kept (271)": no extra or missed, as label images get."""
    at = open_eval(eval_source="Upload")
    at.file_uploader(key="eval_files").set_value([upload("s06_heavy_blur.png"), upload("s06_heavy_blur_points.csv")])
    at.run()
    at.button(key="eval_run").click()
    at.run()
    at.session_state["eval_tabs"] = "Worst images"
    at.run()
    assert not at.exception
    legends = " ".join(str(c.proto.spec) for c in at.get("plotly_chart"))
    assert "ground truth (" in legends and ("no dot inside (" in legends or "missed (" in legends), legends[:300]



def test_an_f1_pooled_over_outlines_and_dots_says_so_on_its_tile():
    """Label images for one image, dots for another: one F1 over two matching rules (dots match more loosely), and
    the tile said "F1" alone (a tester)."""
    at = open_eval(eval_source="Upload")
    at.file_uploader(key="eval_files").set_value([upload("s01_sparse_small.png"), upload("s03_large_nuclei.png")])
    at.file_uploader(key="eval_gt_files").set_value([upload("s01_sparse_small_labels.tif"),
                                                     upload("s03_large_nuclei_points.csv")])
    at.run()
    at.button(key="eval_run").click().run()
    assert not at.exception, at.exception
    labels = {m.label for m in at.metric}
    assert "F1 (mixed)" in labels and "F1" not in labels
    assert any("IoU matching (IoU ≥ 0.50) for label images, dots inside the objects for dots" in c.value
               for c in at.caption)


@pytest.mark.slow
def test_an_optimise_ended_by_leaving_the_page_is_said():
    """Optimise stopped by a visit to Count at 70 of 94 settings came back as its bare button (a tester)."""
    at = open_eval(eval_source="Upload")
    at.file_uploader(key="eval_files").set_value([upload("s01_sparse_small.png"), upload("s01_sparse_small_labels.tif"),
                                                  upload("s03_large_nuclei.png"), upload("s03_large_nuclei_labels.tif")])
    at.run()
    at.button(key="eval_run").click().run()
    at.session_state["eval__tuning"] = at.session_state["eval__active"]  # as a run ended midway leaves it
    at.run()
    assert any(i.value.startswith("Optimise stopped before it finished") for i in at.info)
    at.run()
    assert not any(i.value.startswith("Optimise stopped") for i in at.info), "said once"
    at.button(key="eval_tune").click().run()
    assert not at.exception and "eval__tuning" not in at.session_state, "a run that ends clears it"


@pytest.mark.parametrize("verdict, kept, tuned, low, high", [
    ("helps", 5.17, 3.58, -3.42, -0.17), ("unsure", 5.0, 4.8, -1.0, 0.5), ("no gain", 4.0, 4.5, -0.2, 1.2)])
def test_one_verdict_on_the_tuning_and_the_mixed_set_note_beside_it(verdict, kept, tuned, low, high):
    """"Tuning helps" and "count new ones no better" showed together, and with the mixed-set note the unsure and
    no-gain verdicts did not show (a reviewer)."""
    import pandas as pd

    import cellcount as cc
    from cellcount.evaluate import TuningCheck

    at = open_eval(eval_source="Upload")
    at.file_uploader(key="eval_files").set_value([upload("s01_sparse_small.png"), upload("s01_sparse_small_labels.tif"),
                                                  upload("s03_large_nuclei.png"), upload("s03_large_nuclei_labels.tif")])
    at.run()
    at.button(key="eval_run").click().run()
    start = cc.resolve_params(cc.load_model("classical-otsu")).to_dict()
    check = TuningCheck(kept, tuned, low, high)
    assert check.verdict == verdict
    at.session_state["eval__tune"] = {
        "check": check, "kinds": "the gain comes from the 3 bright-background images", "worse": pd.DataFrame(),
        "sig": at.session_state["eval__active"], "before": 5.0, "after": 3.0, "best": {**start, "min_area_px": 33},
        "edge": None, "start": start, "table": pd.DataFrame([{**start, "mae": 5.0}]), "model": "classical-otsu",
        "digests": ()}
    at.run()
    assert not at.exception, at.exception
    said = [e.value for e in [*at.success, *at.info, *at.warning] if e.value.startswith("On images the tuning did not see")]
    assert len(said) == 1 and {"helps": "tuning helps", "unsure": "cannot tell from chance",
                               "no gain": "count new ones no better"}[verdict] in said[0], said
    assert any(w.value.startswith("The gain comes from the 3 bright-background images") for w in at.warning)


def test_labels_of_part_of_each_image_are_said_before_the_error_or_optimise_is_trusted():
    """Labels of each image's left half: MAE 23 and Optimise "helped" to settings that missed real cells, with no
    word that the annotation covered half the image (a tester)."""
    import tifffile

    labels = tifffile.imread(SAMPLES / "s02_dense_clusters_labels.tif")
    labels[:, labels.shape[1] // 2:] = 0
    buf = io.BytesIO()
    tifffile.imwrite(buf, labels)
    at = open_eval(eval_source="Upload")
    at.file_uploader(key="eval_files").set_value([upload("s02_dense_clusters.png")])
    at.file_uploader(key="eval_gt_files").set_value([("s02_dense_clusters.tif", buf.getvalue(), "image/tiff")])
    at.run()
    at.button(key="eval_run").click().run()
    assert not at.exception, at.exception
    said = [w.value for w in at.warning]
    assert any(w.startswith("1 of the 1 image(s) have a quarter or more of their counted objects") for w in said), said
    assert any(w.startswith("These images look partly annotated") for w in said)
