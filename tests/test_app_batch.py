"""AppTest of the Batch page: files and zips, bad files reported, table, downloads."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"


def open_batch(model: str = "classical-otsu") -> AppTest:
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60)
    at.session_state["batch_model"] = model
    at.run()
    at.switch_page("pages/batch.py")
    at.run()
    assert not at.exception, at.exception
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def test_empty_state():
    at = open_batch()
    assert any("Upload images" in i.value for i in at.info)
    assert at.button(key="batch_run").disabled


def test_three_files_one_broken(count_batch, monkeypatch):
    from pages import _shared

    named: list[str] = []  # the downloads' file names, as the browser saves them
    real = _shared.download_button
    monkeypatch.setattr(_shared, "download_button", lambda label, data, name, *a, **k: (named.append(name),
                                                                                       real(label, data, name, *a, **k)))
    at = open_batch()
    at.file_uploader(key="batch_files").set_value(
        [
            ("s01_sparse_small.png", sample("s01_sparse_small.png"), "image/png"),
            ("broken.png", b"this is not an image", "image/png"),
            ("s05_16bit.tif", sample("s05_16bit.tif"), "image/tiff"),
        ]
    )
    at.run()
    count_batch(at)
    assert not at.exception
    assert metric(at, "Images counted") == "2"
    assert metric(at, "Failed") == "1" and metric(at, "Not counted") == "0"
    df = at.dataframe[0].value
    assert list(df["file"]) == ["s01_sparse_small.png", "broken.png", "s05_16bit.tif"]
    assert list(df["status"]) == ["ok", "error", "ok"]
    assert df.loc[1, "reason"].startswith("broken.png: ") and "ImageReadError" not in df.loc[1, "reason"]
    listed = [m.value for m in at.markdown if m.value.startswith("- `broken.png`")]
    assert listed and "broken.png: " not in listed[0], "the file named once in the failed list"
    labels = {d.label for d in at.get("download_button")}
    assert {"Per-image CSV", "Objects CSV", "Label images (zip)", "Settings JSON"} <= labels
    # a German or French Excel opens a comma-separated file as one cell per row: each CSV says how to open it
    helps = {d.label: d.proto.help for d in at.get("download_button")}
    assert "Data > From Text/CSV" in helps["Per-image CSV"] and "Data > From Text/CSV" not in helps["Settings JSON"]
    # named by the batch (model and time): two batches' counts.csv were told apart by "(1)" alone (a tester)
    assert any(re.fullmatch(r"classical-otsu_\d{8}-\d{6}_counts\.csv", n) for n in named), named
    assert not at.get("plotly_chart"), "two counts: no histogram of one or two bars (a tester's single full bar)"
    # results stay after an unrelated rerun, and a settings change is flagged (not before it: the Settings JSON
    # lists only the settings that act, which a comparison with every setting took for a change)
    assert not any("settings changed" in w.value for w in at.warning)
    at.slider(key="batch_threshold").set_value(0.7)
    at.run()
    assert any("settings changed" in w.value for w in at.warning)
    # another model chosen: the table says whose counts it holds (a tester's stayed after its model was deleted)
    at.selectbox(key="batch_model").set_value("unet-mask").run()
    assert any("counted with classical-otsu, not unet-mask" in w.value for w in at.warning)


@pytest.mark.slow
def test_macos_dot_underscore_files_uploaded_loose_are_skipped_as_in_a_zip(count_batch):
    """A folder copied from a Mac's USB stick holds ._A01.tif beside A01.tif: in a zip it was left out, uploaded as
    loose files it failed as "not an image in a format we can read"."""
    at = open_batch()
    at.file_uploader(key="batch_files").set_value(
        [("A01.png", sample("s01_sparse_small.png"), "image/png"),
         ("._A01.png", b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ", "image/png")])
    at.run()
    assert at.button(key="batch_run").label == "Count 1 image(s)"
    count_batch(at)
    assert metric(at, "Images counted") == "1" and metric(at, "Failed") == "0" and metric(at, "Not counted") == "1"
    df = at.dataframe[0].value.set_index("file")
    assert df.loc["._A01.png", "status"] == "skipped" and "a file the operating system keeps" in df.loc["._A01.png", "reason"]
    # in a zip, a Finder's or Explorer's own files are left out unsaid, as __MACOSX is (they read as "not counted")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("set/A02.png", sample("s02_dense_clusters.png"))
        for junk in ("set/.DS_Store", "set/Thumbs.db", "set/desktop.ini", "set/Icon\r"):
            zf.writestr(junk, b"\x00\x00")
    at = open_batch()
    at.file_uploader(key="batch_files").set_value([("set.zip", buf.getvalue(), "application/zip")])
    at.run()
    count_batch(at)
    assert metric(at, "Images counted") == "1" and metric(at, "Not counted") == "0"


@pytest.mark.slow
def test_files_named_like_ground_truth_are_listed_not_counted_as_on_the_command_line(count_batch):
    """A tester's folder counted 5 images on this page and 3 with the command line, which skips label files."""
    at = open_batch()
    at.file_uploader(key="batch_files").set_value(
        [("s01_sparse_small.png", sample("s01_sparse_small.png"), "image/png"),
         ("s01_sparse_small_labels.tif", sample("s01_sparse_small_labels.tif"), "image/tiff")])
    at.run()
    assert at.button(key="batch_run").label == "Count 1 image(s), 1 named like ground truth left out"
    count_batch(at)
    assert metric(at, "Images counted") == "1" and metric(at, "Not counted") == "1" and metric(at, "Failed") == "0"
    df = at.dataframe[0].value.set_index("file")
    assert df.loc["s01_sparse_small_labels.tif", "status"] == "skipped"
    assert "named like ground truth" in df.loc["s01_sparse_small_labels.tif", "reason"]
    assert any("1 file(s) named like ground truth were not counted" in i.value for i in at.info)
    at.toggle(key="batch_include_gt").set_value(True)
    at.run()
    assert at.button(key="batch_run").label == "Count 2 image(s)"
    count_batch(at)
    assert metric(at, "Images counted") == "2" and metric(at, "Not counted") == "0"


def test_annotation_tables_in_a_zip_are_left_out_like_the_label_images_not_failed(count_batch):
    """A tester's zip of images with their label images and points CSVs: the CSV was listed under Failed; and
    another's readme.txt and Thumbs.db were failures on this page and in the run history, while the command line
    leaves a folder's other files out: in a zip they are listed, not failed."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("s01_sparse_small.png", sample("s01_sparse_small.png"))
        zf.writestr("s01_sparse_small_labels.tif", sample("s01_sparse_small_labels.tif"))
        zf.writestr("s01_sparse_small_points.csv", "x,y\n10,12\n")
        zf.writestr("notes.csv", "not an annotation")
        zf.writestr("../labels/evil_labels.tif", sample("s01_sparse_small_labels.tif"))  # refused for its path
        zf.writestr("labels/p1/s01_sparse_small.png", sample("s01_sparse_small_labels.tif"))  # a labels tree
    at = open_batch()
    at.file_uploader(key="batch_files").set_value([("set.zip", buf.getvalue(), "application/zip")])
    at.run()
    count_batch(at)
    df = at.dataframe[0].value.set_index("file")
    assert df.loc["set.zip/s01_sparse_small_points.csv", "status"] == "skipped"
    assert "named like ground truth" in df.loc["set.zip/s01_sparse_small_points.csv", "reason"]
    assert df.loc["set.zip/labels/p1/s01_sparse_small.png", "status"] == "skipped", "below labels/, at any depth"
    assert df.loc["set.zip/notes.csv", "status"] == "skipped", "not an image: left out, listed, not failed"
    assert df.loc["set.zip/notes.csv", "reason"].startswith("not an image file (extension .csv)")
    unsafe = df.loc[[f for f in df.index if "evil" in f][0]]
    assert unsafe["status"] == "error" and "unsafe path" in unsafe["reason"], "named like ground truth, still refused"
    assert metric(at, "Images counted") == "1" and metric(at, "Not counted") == "4" and metric(at, "Failed") == "1"


def test_zip_with_nested_folder_non_image_and_traversal(count_batch):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("set/a/s01.png", sample("s01_sparse_small.png"))
        zf.writestr("set/notes.txt", "hello")
        zf.writestr("../evil.png", sample("s01_sparse_small.png"))
        zf.writestr("__MACOSX/set/a/._s01.png", b"resource fork")  # left out silently, not counted
    at = open_batch()
    at.file_uploader(key="batch_files").set_value(
        [("images.zip", buf.getvalue(), "application/zip"), ("bad.zip", b"PK not really", "application/zip")]
    )
    at.run()
    assert at.button(key="batch_run").label == "Count 2 image(s) (2 zip file(s) opened)", "as the batch reads them"
    count_batch(at)
    assert not at.exception
    df: pd.DataFrame = at.dataframe[0].value
    assert (df["status"] == "ok").sum() == 1
    assert df.loc[df["status"] == "ok", "file"].iloc[0] == "images.zip/set/a/s01.png"
    reasons = " ".join(df["reason"].astype(str))
    assert "not an image file" in reasons and "unsafe path" in reasons and "zip" in reasons
    assert len(df) == 4
    status = dict(zip(df["file"], df["status"], strict=True))
    assert status["images.zip/set/notes.txt"] == "skipped" and status["bad.zip"] == "error"
    assert any("1 file(s) not counted: `images.zip/set/notes.txt`: not an image file (extension .txt)" in i.value
               for i in at.info), "the reason said above the table, not only in its last column"


def test_files_sharing_a_name_get_a_row_each_and_a_copy_counts_once(count_batch):
    """Two plates' A01.tif (a browser sends no folders) were two rows "A01.tif", and their objects one table
    mixing both; the same file uploaded twice was counted twice."""
    a, b = sample("s01_sparse_small.png"), sample("s02_dense_clusters.png")
    at = open_batch()
    at.file_uploader(key="batch_files").set_value(
        [("A01.png", a, "image/png"), ("A01.png", b, "image/png"), ("A01.png", a, "image/png")])
    at.run()
    assert at.button(key="batch_run").label == "Count 2 image(s)", "the copy is not announced as an image to count"
    count_batch(at)
    df = at.dataframe[0].value
    assert list(df["file"]) == ["A01.png", "A01 (2).png"] and list(df["status"]) == ["ok", "ok"]
    infos = " ".join(i.value for i in at.info)
    assert "1 file(s) uploaded twice (same name, same content) counted once: `A01.png`" in infos
    assert "`A01.png` as `A01 (2).png`" in infos
    objects = at.session_state["batch__result"]["objects_csv"].decode("utf-8-sig")
    files = pd.read_csv(io.StringIO(objects))["file"]
    assert set(files) == {"A01.png", "A01 (2).png"}, "each image's objects under its own name"


def test_the_same_image_under_another_name_is_counted_and_said(count_batch):
    """nucA.png and nucA_copy.png (the same bytes) were two rows in the total, unsaid (a tester)."""
    a, b = sample("s01_sparse_small.png"), sample("s02_dense_clusters.png")
    at = open_batch()
    at.file_uploader(key="batch_files").set_value(
        [("nucA.png", a, "image/png"), ("nucB.png", b, "image/png"), ("nucA_copy.png", a, "image/png")])
    at.run()
    count_batch(at)
    assert list(at.dataframe[0].value["file"]) == ["nucA.png", "nucB.png", "nucA_copy.png"]
    infos = " ".join(i.value for i in at.info)
    assert "1 file(s) hold the same bytes as another under another name (copies?)" in infos
    assert "`nucA_copy.png` = `nucA.png`" in infos


def test_two_files_of_one_name_and_size_are_announced_as_two():
    """Two plates' A01.tif from one camera (uncompressed: the same size) were announced as one image ("Count 8"),
    and 9 were counted."""
    import numpy as np
    import tifffile

    def tif(seed: int) -> bytes:
        buf = io.BytesIO()
        tifffile.imwrite(buf, np.random.default_rng(seed).integers(0, 255, (64, 64), dtype=np.uint8))
        return buf.getvalue()

    one, two = tif(1), tif(2)
    assert len(one) == len(two) and one != two
    at = open_batch()
    at.file_uploader(key="batch_files").set_value([("A01.tif", one, "image/tiff"), ("A01.tif", two, "image/tiff")])
    at.run()
    assert at.button(key="batch_run").label == "Count 2 image(s)"


def test_z_stacks_counted_from_their_maximum_projection(count_batch):
    """A z-stack with one nucleus in focus per plane: counted from its first plane (flagged) by default, from
    the maximum projection of all planes (not flagged) when chosen; a one-plane file is the same either way."""
    import numpy as np
    import tifffile

    stack = np.zeros((3, 48, 48), np.uint8)
    for z, (y, x) in enumerate([(6, 6), (6, 30), (30, 6)]):
        stack[z, y:y + 10, x:x + 10] = 200
    buf = io.BytesIO()
    tifffile.imwrite(buf, stack, imagej=True, metadata={"axes": "ZYX"})
    at = open_batch()
    at.file_uploader(key="batch_files").set_value(
        [("stack.tif", buf.getvalue(), "image/tiff"),
         ("s01_sparse_small.png", sample("s01_sparse_small.png"), "image/png")])
    at.run()
    counts = {}
    for page in ("first", "max"):
        at.selectbox(key="batch_plane").set_value(page)
        at.run()
        count_batch(at)
        assert not at.exception
        counts[page] = at.dataframe[0].value.set_index("file")
    assert counts["first"].loc["stack.tif", "count"] == 1 and bool(counts["first"].loc["stack.tif", "check"])
    total = next(m for m in at.metric if m.label == "Total count")  # the baseline flags both: all of it flagged
    assert total.delta == f"{int(counts['max']['count'].sum())} in 2 flagged" and "the 2 image(s) flagged" in total.help
    assert "plane" in counts["first"].loc["stack.tif", "check_reasons"]
    # the baseline flags every count (no calibrated rule), for that reason alone once a plane is chosen
    from cellcount.models.loading import BASELINE_CHECK

    assert counts["max"].loc["stack.tif", "count"] == 3
    assert counts["max"].loc["stack.tif", "check_reasons"] == BASELINE_CHECK
    png = "s01_sparse_small.png"
    assert counts["first"].loc[png, "count"] == counts["max"].loc[png, "count"]
    # a plane number counts that plane of each stack (the one in focus); a one-plane file as it is; a stack without
    # that plane is listed as failed with why, and the batch goes on
    short = io.BytesIO()
    tifffile.imwrite(short, stack[:2], imagej=True, metadata={"axes": "ZYX"})
    at.file_uploader(key="batch_files").set_value(
        [("stack.tif", buf.getvalue(), "image/tiff"), ("short.tif", short.getvalue(), "image/tiff"),
         ("s01_sparse_small.png", sample("s01_sparse_small.png"), "image/png")])
    at.selectbox(key="batch_plane").set_value(2)
    at.run()
    count_batch(at)
    assert not at.exception
    table = at.dataframe[0].value.set_index("file")
    assert table.loc["stack.tif", "count"] == 1 and "plane" not in str(table.loc["stack.tif", "check_reasons"])
    assert table.loc[["stack.tif", "short.tif"], "plane"].tolist() == [2, 2], "the CSV says which plane was counted"
    assert pd.isna(table.loc["s01_sparse_small.png", "plane"]), "a one-plane file's row names no plane"
    assert table.loc[png, "count"] == counts["max"].loc[png, "count"]
    failed = " ".join(m.value for m in at.markdown if "short.tif" in m.value)
    assert "out of range" in failed and "0..1" in failed, failed


def test_a_models_caveat_shows_under_the_picker():
    """multihead-unet's card says what it trades (one pass, a little less accurate on DSB's validation images):
    the user sees it where they choose the model, not only on the Models page."""
    import cellcount as cc

    if "multihead-unet" not in cc.list_models():
        pytest.skip("weights/multihead-unet is not there")
    at = open_batch("multihead-unet")
    assert any(c.value.startswith("multihead-unet:") and "a little less well" in c.value for c in at.caption)
    assert not any("a little less well" in c.value for c in open_batch().caption)


@pytest.mark.slow
def test_a_density_models_peaks_download_as_centres(tiny_models, count_batch):
    """Its objects CSV listed peaks (119 for a count of 56) under the name 'Objects CSV'."""
    at = open_batch("tiny-density")
    at.file_uploader(key="batch_files").set_value([("s01.png", sample("s01_sparse_small.png"), "image/png")])
    at.run()
    count_batch(at)
    assert not at.exception
    labels = {d.label for d in at.get("download_button")}
    assert "Centres CSV" in labels and "Objects CSV" not in labels


@pytest.mark.slow
def test_a_new_batch_never_shows_the_last_one_and_survives_a_page_switch(count_batch):
    """A tester left the page mid-batch and came back to the previous batch's results, shown as current."""
    at = open_batch()
    at.file_uploader(key="batch_files").set_value([("first.png", sample("s01_sparse_small.png"), "image/png")])
    at.run()
    count_batch(at)
    assert list(at.dataframe[0].value["file"]) == ["first.png"]
    names = [f"second_{k}.png" for k in range(4)]
    at.file_uploader(key="batch_files").set_value([(n, sample("s01_sparse_small.png"), "image/png") for n in names])
    at.run()
    # other files uploaded, not yet counted: the earlier result says whose it is
    assert any("results are of the batch counted earlier (1 file(s)), not of the files above" in w.value
               for w in at.warning)
    at.button(key="batch_run").click()
    at.run()
    assert "batch__result" not in at.session_state, "the old result is gone as soon as the new batch starts"
    job = at.session_state["batch__job"]
    at.switch_page("pages/count.py")
    at.run()
    at.switch_page("pages/batch.py")
    at.run()
    assert not at.exception, at.exception
    assert job.join(120)
    at.run()
    assert list(at.dataframe[0].value["file"]) == names, "the new batch's rows, counted while the user was away"
    assert "Showing the 4 file(s) you uploaded earlier" in " ".join([*(c.value for c in at.caption), *(m.value for m in at.markdown)])
    # one of them removed by hand (it went with all four before): the table is said to be of the batch before
    at.multiselect(key="batch_forget_uploads_some_0").select((0, 0)).run()
    at.button(key="batch_forget_uploads_some_go").click().run()
    assert not at.exception, at.exception
    assert "Showing the 3 file(s) you uploaded earlier" in " ".join(c.value for c in at.caption)
    assert any("results are of the batch counted earlier (4 file(s)), not of the files above" in w.value
               for w in at.warning), [w.value for w in at.warning]


def start_long_batch(n: int = 20, extra: list | None = None):
    """A Batch page counting ``n`` images with a network (slow enough to act on mid-run): (page, job, names).
    ``extra``: more uploads, (name, bytes, mime) each."""
    at = open_batch("unet-mask")
    names = [f"img_{k}.png" for k in range(n)]
    at.file_uploader(key="batch_files").set_value([(n, sample("s01_sparse_small.png"), "image/png") for n in names]
                                                  + list(extra or []))
    at.run()
    at.button(key="batch_run").click()
    at.run()
    return at, at.session_state["batch__job"], names


def stopped_long_batch():
    """:func:`start_long_batch`, stopped at once (unless it ended first) and drawn again: (page, job, names)."""
    at, job, names = start_long_batch()
    if job.snapshot().running:
        at.button(key="batch_stop").click()
        at.run()
    assert job.join(120)
    at.run()
    return at, job, names


@pytest.mark.slow
def test_stop_keeps_the_images_counted_so_far():
    at, job, names = stopped_long_batch()
    df = at.dataframe[0].value
    s = job.snapshot()
    # the rows counted, then a row for each image the stopped batch never reached: every input is listed
    assert list(df["file"])[: len(s.done)] == [it.name for it in s.done] and set(df["file"]) == set(names)
    rest = df.iloc[len(s.done):]
    assert (rest["status"] == "skipped").all() and rest["reason"].str.contains("stopped before this image").all()
    assert s.status == "cancelled", "the batch ended before Stop could be pressed"
    assert metric(at, "Images counted") == str(len(s.done))
    assert len(s.done) < len(names) and len(rest) == len(names) - len(s.done)
    assert any(f"Stopped after {len(s.done)} of 20 image(s)" in w.value for w in at.warning)
    # the reason once for the images it holds (a tester read "not counted: the batch was stopped ..." thrice)
    (said,) = [i.value for i in at.info if "not counted:" in i.value]
    assert said.count("stopped before this image") == 1 and f"`{rest['file'].iloc[0]}`" in said
    assert "not counted: `" in said and "not counted: the batch" not in said
    assert not at.button(key="batch_run").disabled, "the Count button is back"
    # the rest counted on, into one table of every image (Count again recounted all of them: a tester)
    assert at.button(key="batch_rest").label == f"Count the {len(rest)} not counted"
    area = at.number_input(key="batch_min_area_px").value
    at.number_input(key="batch_min_area_px").set_value(area + 5).run()
    assert not [b for b in at.button if b.key == "batch_rest"], "other settings: not the same batch's rows"
    at.number_input(key="batch_min_area_px").set_value(area).run()
    at.button(key="batch_rest").click()
    at.run()
    again = at.session_state["batch__job"]
    assert again is not job and len(again.names) == len(rest), "only the images never reached are counted"
    assert again.join(240)
    at.run()
    df = at.dataframe[0].value
    assert sorted(df["file"]) == sorted(names) and (df["status"] == "ok").all()
    assert metric(at, "Images counted") == str(len(names))
    assert not [b for b in at.button if b.key == "batch_rest"], "nothing left to count on"


@pytest.mark.slow
def test_a_batch_of_another_session_is_shown_and_can_be_stopped():
    """A batch goes on when its tab is reloaded or closed: the new session sees it, waits for it (one batch at
    a time) or stops it, instead of starting a second one beside it."""
    first, job, _ = start_long_batch()
    second = open_batch("unet-mask")  # another session: a reload of the same browser tab looks like this
    second.file_uploader(key="batch_files").set_value([("a.png", sample("s01_sparse_small.png"), "image/png")])
    second.run()
    assert job.snapshot().running, "the first batch ended before the second session looked"
    assert any("Another batch is counting in this app" in i.value and "with unet-mask, its model card's settings"
               in i.value for i in second.info), "its model and settings named (the panel here shows this tab's)"
    assert second.button(key="batch_run").disabled
    # it may be a colleague's on a shared server: said, and stopped only once that is ticked
    assert any("someone else's on this app's server" in i.value for i in second.info)
    assert second.button(key="batch_stop_other").disabled
    second.checkbox(key="batch_stop_sure").check()
    second.run()
    second.button(key="batch_stop_other").click()
    second.run()
    assert job.join(120) and job.snapshot().status == "cancelled"
    second.run()
    assert not second.button(key="batch_run").disabled, "Count is back once the other batch has ended"
    # stopped, not finished (both tabs read "has finished: 32 of 100": a tester)
    assert any("A batch counted in this app was stopped:" in i.value for i in second.info), [i.value for i in second.info]
    first.run()
    # its own session is told who stopped it
    assert any("Stopped after" in w.value and ", from a tab or browser other than the one that started it" in w.value
               for w in first.warning)
    assert "batch_stop_sure" not in second.session_state, "the next batch started elsewhere asks again"


@pytest.mark.slow
def test_a_click_after_another_session_started_a_batch_is_said_to_count_nothing():
    """A tab drawn before a colleague's batch started kept its Count button live; its click counted nothing and the
    page only redrew with the other batch (a tester thought their images were counting)."""
    second = open_batch("unet-mask")
    second.file_uploader(key="batch_files").set_value([("a.png", sample("s01_sparse_small.png"), "image/png")])
    second.run()
    assert not second.button(key="batch_run").disabled
    first, job, _ = start_long_batch()
    try:
        second.button(key="batch_run").click()
        second.run()
        assert job.snapshot().running, "the first batch ended before the click"
        assert "batch__job" not in second.session_state or second.session_state["batch__job"] is None
        assert any(w.value.startswith("Nothing was counted: another batch started in this app before your click")
                   for w in second.warning), [w.value for w in second.warning]
        assert any("Another batch is counting in this app" in i.value for i in second.info)
    finally:
        job.cancel()
        assert job.join(120)


@pytest.mark.slow
def test_counting_the_rest_after_another_session_started_a_batch_is_said_to_count_nothing():
    """The same for "Count the N not counted" (a reviewer: its click vanished, the button no longer drawn)."""
    a, _, _ = stopped_long_batch()
    assert [b for b in a.button if b.key == "batch_rest"], "the stopped batch offers its rest"
    _, other, _ = start_long_batch()
    try:
        a.button(key="batch_rest").click()
        a.run()
        assert other.snapshot().running, "the other batch ended before the click"
        assert "batch__job" not in a.session_state or a.session_state["batch__job"] is None, "nothing started"
        assert any(w.value.startswith("Nothing was counted: another batch started") for w in a.warning), \
            [w.value for w in a.warning]
    finally:
        other.cancel()
        assert other.join(120)


@pytest.mark.slow
def test_a_finished_batch_of_a_reloaded_tab_can_be_shown_with_its_label_images():
    """A tab reloaded while its batch ran showed nothing when it ended: the counts were on the Runs page, the
    label images nowhere (a tester). The new session can show its results, label images too."""
    first, job, names = start_long_batch(3)
    second = open_batch("unet-mask")  # the reloaded tab
    second.file_uploader(key="batch_files").set_value([("a.png", sample("s01_sparse_small.png"), "image/png")])
    assert job.join(240), "the batch did not end"
    second.run()
    assert any("has finished: 3 of 3 image(s) with unet-mask" in i.value for i in second.info)
    assert not second.button(key="batch_run").disabled, "Count is back"
    second.button(key="batch_claim").click()
    second.run()
    assert not second.exception
    assert list(second.dataframe[0].value["file"]) == names
    assert "Label images (zip)" in {d.label for d in second.get("download_button")}
    # the result names what counted it: this tab's panel shows this tab's settings ("The settings changed since this
    # batch ran" read as if the user had changed them)
    assert any(i.value.startswith("Counted in another tab or browser with unet-mask and its model card's settings")
               for i in second.info), [i.value for i in second.info]
    assert not any("The settings changed since" in w.value for w in second.warning)
    second.run()
    assert not any("has finished" in i.value for i in second.info), "shown once here"
    # and still on offer to the other tabs: its own, reloaded, lost its label images to whoever showed them first
    third = open_batch("unet-mask")
    assert any("has finished: 3 of 3 image(s) with unet-mask" in i.value for i in third.info)
    third.button(key="batch_claim").click()
    third.run()
    assert "Label images (zip)" in {d.label for d in third.get("download_button")}


def test_a_zips_other_files_are_rows_but_not_images_counted():
    """A zip's readme made the progress read "10 / 13 image(s)" under a button that said "Count 12" (a tester)."""
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("readme.txt", "notes")
    at, job, names = start_long_batch(20, extra=[("more.zip", buf.getvalue(), "application/zip")])
    if job.snapshot().running:
        at.button(key="batch_stop").click()
        at.run()
    assert job.join(120)
    at.run()
    s = job.snapshot()
    assert s.status == "cancelled", "the batch ended before Stop could be pressed"
    counted = len(s.done) - 1  # the readme's row is done from the start
    assert any(f"Stopped after {counted} of 20 image(s)" in w.value for w in at.warning)
    assert "more.zip/readme.txt" in set(at.dataframe[0].value["file"])


def test_a_model_deleted_elsewhere_is_not_replaced_by_the_count_button(tiny_models, monkeypatch):
    """A fine-tune deleted in another tab (or with `cellcount models --remove`) while chosen here: pressing Count
    counted with the default model at once, the CSV the only trace (a tester: 136 cells for about 164)."""
    import shutil

    import cellcount as cc
    from cellcount.models import load_model, save_model, user_models_dir

    shipped = load_model("tiny-mask")
    save_model(shipped.net, cc.models.ModelCard(**{**shipped.card.to_dict(), "name": "my-try"}),
               user_models_dir() / "my-try")
    at = open_batch("my-try")
    assert at.selectbox(key="batch_model").value == "my-try"
    at.file_uploader(key="batch_files").set_value([("s01_sparse_small.png", sample("s01_sparse_small.png"),
                                                    "image/png")])
    at.run()
    shutil.rmtree(user_models_dir() / "my-try")  # deleted elsewhere
    # AppTest re-labels the selectbox's old value to send it (a browser sends its index): keep its old label
    import types

    import pages._model_ui as model_ui

    card = model_ui.model_card
    monkeypatch.setattr(model_ui, "model_card", lambda name: types.SimpleNamespace(output_kind="mask")
                        if name == "my-try" else card(name))
    at.button(key="batch_run").click().run()
    assert not at.exception
    assert any("Nothing was counted: my-try, the model you chose, is no longer installed" in w.value for w in at.warning)
    assert not [m for m in at.metric if m.label == "Images counted"], "nothing counted"
    at.button(key="batch_run").click().run()  # pressed again, with the new model in view: it counts
    assert not at.exception and not any("Nothing was counted" in w.value for w in at.warning)


def test_a_running_batch_says_what_it_counts_with_when_the_settings_shown_change():
    """A tester edited Min. area during a batch and came back to "edited ... Min. area: 40" beside the progress of
    a batch counting with the card's 60: nothing said which applied."""
    at, job, _ = start_long_batch(80)  # long enough to be running still after the edit (it is stopped below)
    try:
        said = " ".join(c.value for c in at.caption)
        assert "Counting with unet-mask and its model card's settings." in said and "changed since it started" not in said
        at.number_input(key="batch_min_area_px").set_value(123)
        at.run()
        if not job.snapshot().running:
            pytest.skip("a machine fast enough to count 80 images in two page runs")
        said = " ".join(c.value for c in at.caption)
        assert "The settings shown were changed since it started: they apply to the next batch" in said
    finally:
        job.cancel()
        assert job.join(120)


@pytest.mark.slow
def test_images_flagged_only_for_the_users_settings_are_told_apart(count_batch):
    """A tester's batch had 4 of 7 images flagged only because Min. area differed from the card: the page said
    7 flagged, and only reading each reason told those 4 apart."""
    from cellcount.quality import names_settings

    assert names_settings("block 2: the settings' filters dropped 9 of 27 objects (9 too small): check Min. area")
    assert names_settings("two independent counts differ by 84%; the settings' filters dropped 9 of 27 objects")
    assert not names_settings("low contrast between nuclei and background") and not names_settings("")
    at = open_batch("unet-mask")
    at.number_input(key="batch_min_area_px").set_value(55)  # 8 of 27 dropped: flagged for that alone
    at.file_uploader(key="batch_files").set_value([(f"a{k}.png", sample("s01_sparse_small.png"), "image/png")
                                                   for k in range(2)])
    at.run()
    count_batch(at)
    said = " ".join(w.value for w in at.warning)
    df = at.dataframe[0].value
    flagged = df[df["check"].astype(bool)]
    by_settings = int(flagged["check_reasons"].map(names_settings).sum())
    # on this project's machines both images are flagged for the dropped share alone (19 of 27 kept); a backend
    # that counts an object apart may add or drop a reason: the page's sentence follows the rows either way
    assert f"{len(flagged)} image(s) flagged" in said
    if by_settings:
        assert f"{'All' if by_settings == len(flagged) else by_settings} of them name your settings among the " \
            "reasons" in said
    else:
        assert "name your settings" not in said


@pytest.mark.slow
def test_a_batch_counts_with_the_sessions_backend_and_records_it(count_batch):
    """Count ran the backend chosen on its Timing tab and Batch the machine's choice: the same file counted 160 and 161
    in one session, and the app's run and settings file named no backend to reproduce either."""
    import json

    from cellcount import history

    at = open_batch("unet-mask")
    at.session_state["inference_backend"] = "torch"  # the Timing tab's choice, kept for the session
    at.file_uploader(key="batch_files").set_value(
        [("s01_sparse_small.png", sample("s01_sparse_small.png"), "image/png")])
    at.run()
    count_batch(at)
    assert not at.exception, at.exception
    assert list(at.session_state["batch__result"]["counts"]["backend"]) == ["torch"]  # the CSV's column
    assert json.loads(at.session_state["batch__result"]["settings"])["backend"] == "torch"
    run = history.get_run(int(history.list_runs(1)["id"].iloc[0]))
    assert run["settings"]["backend"] == "torch"
    # and the card's digest, as the CLI records it: the Runs page's settings file then warns of a changed card
    from cellcount import load_model

    assert run["settings"]["model_card"] == load_model("unet-mask").card.counting_digest()


@pytest.mark.slow
def test_a_batch_cut_off_by_an_app_restart_is_said_on_the_next_visit():
    """The app restarted while a batch counted: the page came back empty, as if none had run, and Runs said "not
    counted 0" (a tester). The next visit says which run ended, how far it got, and what to do."""
    from cellcount import history

    run = history.start_run(source="app", model="classical-otsu", model_sha256=None, settings={},
                            inputs=[f"img_{k}.png" for k in range(10)])
    history.add_rows(run, [{"file": f"img_{k}.png", "status": "ok", "count": 3} for k in range(3)])
    with history.connect() as con:  # its process gone (the server killed)
        con.execute("UPDATE runs SET pid = ?, proc = NULL WHERE id = ?", (2**22 + 7, run))
    at = open_batch()
    said = [w.value for w in at.warning if w.value.startswith("A batch counted in this app ended before it finished")]
    assert len(said) == 1 and f"run {run} (classical-otsu), 3 of 10 image(s)" in said[0], [w.value for w in at.warning]
    at.run()
    assert not any(w.value.startswith("A batch counted in this app ended") for w in at.warning), "once a session"
    # a batch counted since in the app: the old cut-off is no news to the next new tab
    later = history.start_run(source="app", model="classical-otsu", model_sha256=None, settings={},
                              inputs=["img_0.png"])
    history.add_rows(later, [{"file": "img_0.png", "status": "ok", "count": 3}])
    history.finish_run(later, "done")
    assert not any(w.value.startswith("A batch counted in this app ended") for w in open_batch().warning)


def test_an_image_above_the_pixel_cap_says_what_to_do(monkeypatch, count_batch):
    """Batch listed the refusal alone, where the Count page and the command line say what to do (a tester)."""
    from cellcount.io import read

    real = read._check_pixels
    monkeypatch.setattr(read, "_check_pixels", lambda name, h, w, cap: real(name, h, w, 1000))  # every sample is over
    at = open_batch()
    at.file_uploader(key="batch_files").set_value([("big.png", sample("s01_sparse_small.png"), "image/png")])
    at.run()
    count_batch(at)
    assert any(c.value.startswith("Images above the pixel cap: crop it first (Fiji: Image > Crop)") for c in at.caption)
