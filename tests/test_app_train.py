"""AppTest of the Train page: upload, dots made in the app, start, progress, cancel, result, errors."""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("streamlit")
import streamlit as st  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from cellcount.models import list_models, load_model  # noqa: E402
from cellcount.synthetic import make_synthetic  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(autouse=True)
def _fine_tunes_keep_their_weights(monkeypatch):
    """Tiny untrained networks' held-out scores are noise: whether the base's weights are kept is tested on its
    own (``worse_than_base`` forced), not left to chance in the tests of everything else."""

    monkeypatch.setattr("cellcount.finetune.core.worse_than_base", lambda before, after: False)



@pytest.fixture(autouse=True)
def _fresh_board():
    """The job board is an app-wide resource: each test starts with an empty one."""
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _set(n: int = 4) -> tuple[list, list, dict[str, np.ndarray]]:
    """n synthetic 64 x 64 images with x,y point CSVs at the true centres; returns (images, csvs, points)."""
    images, csvs, points = [], [], {}
    for k in range(n):
        s = make_synthetic((64, 64), rng=10 + k, n_cells=4 + k, radius_px=(4.0, 6.0))
        name = f"cells_{k}.png"
        pts = np.array([[r, c] for r, c in s.centroids], np.float64)
        images.append((name, _png(s.image), "image/png"))
        rows = "".join(f"{c:.1f},{r:.1f}\n" for r, c in pts)
        csvs.append((f"cells_{k}_points.csv", ("x,y\n" + rows).encode(), "text/csv"))
        points[name] = pts
    return images, csvs, points


def open_train(images, gt=()) -> AppTest:
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/train.py")
    at.run()
    at.file_uploader(key="train_files").set_value(list(images))
    if gt:
        at.file_uploader(key="train_gt_files").set_value(list(gt))
    at.run()
    assert not at.exception, at.exception
    return at


def start(at: AppTest, *, name: str, steps: int) -> AppTest:
    at.selectbox(key="train_base").set_value("tiny-mask")
    at.text_input(key="train_name").set_value(name)
    at.number_input(key="train_steps").set_value(steps)
    at.run()
    at.button(key="train_start").click().run()
    assert not at.exception, at.exception
    return at


def _saved(folder: Path) -> Path:
    """A stand-in fine-tune's model folder, there as a saved model's is (the page says when it was deleted)."""
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait_until(at: AppTest, done, timeout_s: float = 120) -> AppTest:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        at.run()
        if done(at):
            return at
        time.sleep(0.3)
    raise AssertionError(f"timed out; page says {[m.value for m in at.markdown][:5]}")


def texts(at: AppTest) -> str:
    return " ".join(str(e.value) for kind in ("success", "info", "error", "warning", "caption", "markdown")
                    for e in getattr(at, kind))


@pytest.mark.slow
def test_upload_train_result_and_new_model_everywhere(tiny_models):
    images, csvs, points = _set(4)
    at = open_train(images, csvs)
    assert any("4 image(s) with ground truth (4 with dots)" in c.value for c in at.caption)
    assert at.number_input(key="train_holdout").value == 1
    start(at, name="my-cells", steps=2)
    assert at.button(key="train_start").disabled, "one fine-tune at a time"
    at = wait_until(at, lambda a: len(a.success) > 0 or len(a.error) > 0)
    assert not at.error, [e.value for e in at.error]
    assert "**my-cells** is saved" in at.success[0].value
    assert any(c.value.startswith("How my-cells reads images: ") and "background" in c.value for c in at.caption)
    summary, per = at.dataframe[-2].value, at.dataframe[-1].value
    assert list(summary["measure"])[0] == "count MAE"
    assert len(per) == 1 and set(per.columns) >= {"file", "true", "before", "after", "error after"}
    assert per["true"].iloc[0] == len(points[per["file"].iloc[0]]), "true counts are the held-out image's dots"
    assert "my-cells" in list_models()
    card = load_model("my-cells").card
    assert card.training["finetuned_from"]["name"] == "tiny-mask" and card.training["steps"] == 2
    assert card.training["data"]["source"] == "4 uploaded images"
    # the new model is offered on the other pages, and its card shows on the Models page
    at.switch_page("pages/count.py").run()
    assert "my-cells (mask)" in at.selectbox(key="count_model").options
    at.switch_page("pages/models.py").run()
    at.session_state["models_show"] = "my-cells"
    at.run()
    assert not at.exception
    assert any("**Fine-tuned** from tiny-mask on 3 of your images (points): 2 steps" in m.value for m in at.markdown)
    assert "held-out images: this model" in at.table[0].value.columns
    card_text = " ".join(m.value for m in at.markdown)
    assert "on 1 of your held-out images" in card_text and "the base model on the same images" in card_text
    assert "**Trained on:** 4 uploaded images: 3 trained on, 1 held out (annotations: points)" in card_text
    held = load_model("my-cells").card.training["data"]["holdout_files"]
    assert any(c.value == f"Held out (never trained on): `{held[0]}`" for c in at.caption)
    assert "nan" not in card_text + " ".join(str(v) for v in at.table[0].value.to_numpy().ravel())
    # back on Train the outcome is still there until cleared
    at.switch_page("pages/train.py").run()
    assert "**my-cells** is saved" in at.success[0].value
    at.button(key="train_use").click().run()
    assert not at.exception and at.selectbox(key="count_model").value == "my-cells", "Count with the new model"
    # on one of the user's own images, a held-out one, not a shipped sample (a tester's H&E fine-tune opened s01)
    assert at.radio(key="count_source").value == "Upload"
    assert any(f"Showing **{held[0]}**, which you uploaded earlier" in c.value for c in at.caption)
    assert at.session_state["count_upload_kept"][0][0].name == held[0]
    at.switch_page("pages/train.py").run()
    # deleted since (Models page): the outcome no longer says it is saved, nor offers "Count with" it (a tester's
    # button opened Count with the default model, in silence)
    from cellcount.models.loading import remove_user_model

    remove_user_model("my-cells")
    at.run()
    assert not at.success and not any(b.key == "train_use" for b in at.button)
    assert any("**my-cells** was saved, then deleted" in i.value for i in at.info)
    at.button(key="train_clear").click().run()
    assert not at.success
    at.file_uploader(key="train_files").set_value(list(images))
    at.file_uploader(key="train_gt_files").set_value(list(csvs))
    at.run()
    at.selectbox(key="train_base").set_value("tiny-mask").run()
    assert at.text_input(key="train_name").value not in list_models(), "a free name, not a saved model's"
    assert not at.error


@pytest.mark.slow
def test_a_stated_object_diameter_reaches_the_new_model(tiny_models):
    images, csvs, _ = _set(3)
    at = open_train(images, csvs)
    assert at.number_input(key="train_diameter").value == 0, "measured unless the user says"
    at.number_input(key="train_diameter").set_value(22.0)
    start(at, name="sized-cells", steps=1)
    at = wait_until(at, lambda a: len(a.success) > 0 or len(a.error) > 0)
    assert not at.error, [e.value for e in at.error]
    assert any("objects 22.0 px across in every image (the size you gave" in c.value for c in at.caption)
    card = load_model("sized-cells").card
    assert card.training["size"] == "given" and card.postprocess["nucleus_diameter_px"] == 22.0


@pytest.mark.slow
def test_cancel_stops_the_run_and_saves_nothing(tiny_models):
    images, csvs, _ = _set(3)
    at = start(open_train(images, csvs), name="never-saved", steps=100_000)
    at = wait_until(at, lambda a: any(b.key == "train_cancel" for b in a.button))
    assert at.get("progress"), "a progress bar while it runs"
    assert not any("another tab" in c.value for c in at.caption), "its own run"
    # the run's notes while it runs (2 of 3 images train: said), not only in the result after the budget is spent
    at = wait_until(at, lambda a: any(i.value.startswith("Notes so far") for i in a.info))
    assert any("Only 2 image(s) to train on" in i.value for i in at.info if i.value.startswith("Notes so far"))
    # a second browser session (another tab, or this one reloaded: no uploads) sees the run, its progress and
    # its Cancel, and cannot start another
    other = open_train(images, csvs)
    assert other.button(key="train_start").disabled
    reloaded = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60).run()
    reloaded.switch_page("pages/train.py").run()
    for view in (other, reloaded):
        assert any("Started in another tab or browser on this app's server (yours, or someone else's" in c.value
                   for c in view.caption)
        assert view.get("progress") and any(b.key == "train_cancel" for b in view.button)
    # someone else's run: one click from a second tab cancelled it, and its owner read "was cancelled" as if
    # they had done it (a tester): a confirmation first, and the owner is told where it came from
    assert reloaded.button(key="train_cancel").disabled
    reloaded.checkbox(key="train_cancel_sure").check().run()
    reloaded.button(key="train_cancel").click().run()
    at = wait_until(at, lambda a: any("was cancelled" in i.value for i in a.info))
    assert any("was cancelled after" in i.value and ", from a tab or browser other than the one that started it"
               in i.value for i in at.info)
    assert "train_cancel_sure" not in reloaded.session_state, "the next run started elsewhere asks again"
    reloaded = wait_until(reloaded, lambda a: any("was cancelled" in i.value for i in a.info))
    assert "never-saved" not in list_models()
    assert not at.button(key="train_start").disabled
    # nothing was saved under it: Clear keeps the name typed for the next try (a tester's next run was saved
    # under the proposed name instead)
    at.button(key="train_clear").click().run()
    assert at.text_input(key="train_name").value == "never-saved"


@pytest.mark.slow
def test_dots_made_in_the_app_are_the_annotations(tiny_models):
    """Images without annotation files: the dots clicked (here put in session state as the click handler does)
    are counted, downloadable as a points CSV and used for training."""
    images, _, points = _set(2)
    at = open_train(images)
    assert any("Image to annotate" == s.label for s in at.selectbox)
    assert at.metric[0].value == "0"
    assert any("No image has annotations yet" in i.value for i in at.info)
    keys = {name: f"{name}#{hashlib.sha256(data).hexdigest()[:12]}" for name, data, _ in images}
    at.session_state["train__points"] = {keys[n]: points[n] for n in points}
    at.run()
    assert at.metric[0].value == str(len(points["cells_0.png"]))
    assert any("2 annotated image(s)" in c.value for c in at.caption)
    start(at, name="from-clicks", steps=1)
    at = wait_until(at, lambda a: len(a.success) > 0 or len(a.error) > 0)
    assert not at.error, [e.value for e in at.error]
    assert load_model("from-clicks").card.training["data"]["annotation"] == ["points"]
    assert any(c.value.startswith("Trained in fp32") for c in at.caption), "which precision ran, and why"


def test_a_points_file_uploaded_after_its_image_shows_its_dots(tiny_models):
    """The image alone first (no dots), then its points CSV: the annotator shows the file's dots to edit, not
    the empty set it showed before (which a click would have turned into the image's only dot)."""
    images, csvs, points = _set(2)
    at = open_train(images)
    assert at.metric[0].value == "0"
    at.file_uploader(key="train_gt_files").set_value(list(csvs))
    at.run()
    assert not at.exception
    shown = at.selectbox(key="train_annotate_image").value
    assert at.metric[0].value == str(len(points[shown])), "the file's dots, shown and counted"
    assert any("2 image(s) with ground truth (2 with dots)" in c.value for c in at.caption)


def test_uploads_are_still_there_after_another_page(tiny_models):
    images, csvs, _ = _set(3)
    at = open_train(images, csvs)
    assert any("3 image(s) with ground truth (3 with dots)" in c.value for c in at.caption)
    at.switch_page("pages/models.py").run()
    at.switch_page("pages/train.py").run()
    assert not at.exception
    assert any("Showing the 6 file(s) you uploaded earlier" in c.value for c in at.caption)
    assert any("3 image(s) with ground truth (3 with dots)" in c.value for c in at.caption), "paired again"
    at.text_input(key="train_name").set_value("after-return").run()
    assert any("3 image(s) with ground truth" in c.value for c in at.caption), "and kept through the next change"
    at.button(key="train_forget_uploads").click().run()
    assert not any("with ground truth" in c.value for c in at.caption), "removed on request"


def test_some_of_the_files_kept_from_an_earlier_visit_can_be_removed(tiny_models):
    """Back on the page, one wrong file among those kept could only go with all of them (then upload the rest again)."""
    images, csvs, _ = _set(3)
    at = open_train(images, csvs)
    at.switch_page("pages/models.py").run()
    at.switch_page("pages/train.py").run()
    assert any("3 image(s) with ground truth (3 with dots)" in c.value for c in at.caption)
    pick = at.multiselect(key="train_forget_uploads_some_0")
    assert "cells_1.png (image)" in pick.options and "cells_1_points.csv (ground truth)" in pick.options
    pick.select((0, 1)).select((1, 1)).run()
    at.button(key="train_forget_uploads_some_go").click().run()
    assert not at.exception
    assert any("2 image(s) with ground truth (2 with dots)" in c.value for c in at.caption), "the others kept"
    at.text_input(key="train_name").set_value("after-removal").run()
    assert any("2 image(s) with ground truth" in c.value for c in at.caption), "and on the next change"
    pick = at.multiselect(key="train_forget_uploads_some_1")
    assert pick.value == [], "a fresh choice"
    for option in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        pick.select(option)
    pick.run()
    at.button(key="train_forget_uploads_some_go").click().run()
    assert not any("with ground truth" in c.value for c in at.caption), "all chosen: all removed"


@pytest.mark.slow
def test_a_new_upload_into_one_uploader_keeps_the_other_uploaders_files(tiny_models):
    """Back on the page with the earlier files shown, the user brings corrected ground truth only: the kept
    images stay beside it (they were shown as there), until removed; the uploader that got files replaces its own."""
    images, csvs, points = _set(3)
    at = open_train(images, csvs)
    at.switch_page("pages/models.py").run()
    at.switch_page("pages/train.py").run()
    assert any("Showing the 6 file(s) you uploaded earlier" in c.value for c in at.caption)
    fewer = [(name, b"x,y\n" + data.split(b"\n", 2)[2], kind) for name, data, kind in csvs]  # one dot less each
    at.file_uploader(key="train_gt_files").set_value(fewer)
    at.run()
    assert not at.exception
    assert any("Using the 3 image(s) you uploaded earlier beside your new upload" in c.value for c in at.caption)
    assert any("3 image(s) with ground truth (3 with dots)" in c.value for c in at.caption), "kept images, new dots"
    shown = at.selectbox(key="train_annotate_image").value
    assert at.metric[0].value == str(len(points[shown]) - 1), "the new file's dots, not the earlier ones"
    at.text_input(key="train_name").set_value("next-change").run()
    assert any("3 image(s) with ground truth" in c.value for c in at.caption), "still paired on the next change"
    at.button(key="train_forget_uploads_fill").click().run()
    assert not any("image(s) with ground truth" in c.value for c in at.caption), "the earlier images removed"

    at.switch_page("pages/models.py").run()  # back again: new images do not keep the earlier ground truth
    at.switch_page("pages/train.py").run()
    at.file_uploader(key="train_files").set_value(list(images)).run()
    assert not any("you uploaded earlier beside" in c.value for c in at.caption)


def test_the_form_keeps_its_values_through_a_visit_to_another_page(tiny_models):
    """Name and budget went back to their defaults after a visit to Count, also while a run was going."""
    images, csvs, _ = _set(3)
    at = open_train(images, csvs)
    at.text_input(key="train_name").set_value("my-dots-model").run()
    at.number_input(key="train_minutes").set_value(2.0).run()
    at.switch_page("pages/models.py").run()
    at.switch_page("pages/train.py").run()
    assert not at.exception
    assert at.text_input(key="train_name").value == "my-dots-model"
    assert at.number_input(key="train_minutes").value == 2.0


def test_a_fixed_number_of_steps_turns_the_time_budget_off(tiny_models):
    """With 20 fixed steps the run took 1:26 while the budget still read 1.00 minute (a tester)."""
    images, csvs, _ = _set(3)
    at = open_train(images, csvs)
    assert not at.number_input(key="train_minutes").disabled
    at.number_input(key="train_steps").set_value(20).run()
    assert at.number_input(key="train_minutes").disabled
    assert "a fixed number of training steps is set" in at.number_input(key="train_minutes").help


def test_clearing_a_new_upload_brings_back_the_files_shown_before_it(tiny_models):
    """Back on the page, the user tries other ground truth, then clears it with x: the images and the ground
    truth shown before come back (nothing lost by trying a file)."""
    images, csvs, points = _set(3)
    at = open_train(images, csvs)
    at.switch_page("pages/models.py").run()
    at.switch_page("pages/train.py").run()
    fewer = [(name, b"x,y\n" + data.split(b"\n", 2)[2], kind) for name, data, kind in csvs]
    at.file_uploader(key="train_gt_files").set_value(fewer).run()
    assert any("you uploaded earlier beside your new upload" in c.value for c in at.caption)
    at.file_uploader(key="train_gt_files").set_value([]).run()
    assert not at.exception
    assert any("Showing the 6 file(s) you uploaded earlier" in c.value for c in at.caption), "the earlier set back"
    shown = at.selectbox(key="train_annotate_image").value
    assert at.metric[0].value == str(len(points[shown])), "with the earlier dots, not the cleared ones"


def test_the_proposed_name_follows_the_base_until_the_user_types_one(tiny_models):
    images, csvs, _ = _set(2)
    at = open_train(images, csvs)
    at.selectbox(key="train_base").set_value("tiny-mask").run()
    assert at.text_input(key="train_name").value == "tiny-mask-mine"
    at.selectbox(key="train_base").set_value("tiny-density").run()
    assert at.text_input(key="train_name").value == "tiny-density-mine", "the proposal follows the base"
    at.text_input(key="train_name").set_value("my-nuclei").run()
    at.selectbox(key="train_base").set_value("tiny-mask").run()
    assert at.text_input(key="train_name").value == "my-nuclei", "a name the user typed stays"


def test_dots_only_preselect_a_density_base(tiny_models):
    images, csvs, _ = _set(2)
    at = open_train(images, csvs)
    assert at.selectbox(key="train_base").value == "tiny-density", "dots only: a density base by default"
    assert at.text_input(key="train_name").value == "tiny-density-mine"
    assert not any("Your annotations are dots" in i.value for i in at.info), "no advice needed for its choice"


@pytest.mark.slow
def test_name_clash_and_worker_errors_are_messages(tiny_models, monkeypatch):
    images, csvs, _ = _set(2)
    at = open_train(images, csvs)
    at.text_input(key="train_name").set_value("tiny-mask").run()
    assert any("name of an existing model" in e.value for e in at.error)
    assert at.button(key="train_start").disabled

    import cellcount.jobs as jobs

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(jobs, "finetune", broken)
    at = start(at, name="doomed", steps=1)
    at = wait_until(at, lambda a: len(a.error) > 0)
    assert "failed: unexpected error (RuntimeError): disk on fire" in at.error[0].value
    assert not at.exception and not at.button(key="train_start").disabled


def test_a_run_refused_before_training_is_said_so_not_as_a_failure(tiny_models, monkeypatch):
    """A 1-minute budget, refused with its reason before any step, showed under a red "failed" (a tester)."""
    import cellcount.jobs as jobs
    from cellcount.errors import ParameterError

    def refused(*args, **kwargs):
        raise ParameterError("a budget of 1 min leaves 12 s of training after reading and scoring")

    monkeypatch.setattr(jobs, "finetune", refused)
    images, csvs, _ = _set(2)
    at = start(open_train(images, csvs), name="short", steps=1)
    at = wait_until(at, lambda a: any("did not start training" in w.value for w in a.warning))
    assert not at.error and "a budget of 1 min leaves 12 s" in next(w.value for w in at.warning
                                                                      if "did not start training" in w.value)


def test_a_new_model_worse_than_its_base_is_a_warning(tiny_models, monkeypatch, tmp_path):
    import cellcount.jobs as jobs
    from cellcount.finetune import FinetuneResult

    def worse(base, data, *, name, **kwargs):
        return FinetuneResult(
            folder=_saved(tmp_path / name), name=name, steps=1, seconds=1.0, before={"mae": 2.0, "n": 2},
            after={"mae": 9.0, "n": 2}, paired={"difference": 7.0, "low": 5.0, "high": 9.0},
            holdout_files=["a.png", "b.png"], holdout_counts=[{"file": "a.png", "true": 10, "before": 9, "after": 1},
                                                              {"file": "b.png", "true": 10, "before": 11, "after": 19}],
            reading="Dark (fluorescence) background, decided once for the set; objects 8.0 px across.",
            size_note="Objects were measured 8.0 px across, but your dots lie a median 60 px apart.",
            settings_only={"mae": 4.0, "n": 2})

    monkeypatch.setattr(jobs, "finetune", worse)
    images, csvs, _ = _set(2)
    at = start(open_train(images, csvs), name="worse-model", steps=1)
    at = wait_until(at, lambda a: len(a.success) > 0 or len(a.error) > 0)
    warnings = [w.value for w in at.warning]
    assert any("worse-model counts these images worse than tiny-mask." in w and "+7.00" in w for w in warnings)
    assert any("your dots lie a median 60 px apart" in w for w in warnings), "the size note is shown"
    summary = next(d.value for d in at.dataframe if "measure" in d.value.columns)
    assert summary.set_index("measure").loc["count MAE", "base weights, new settings"] == 4.0, \
        "what the settings alone do, beside before and after"


@pytest.mark.slow
def test_one_held_out_image_says_too_few_and_a_worse_count_still_warns(tiny_models, monkeypatch, tmp_path):
    import cellcount.jobs as jobs
    from cellcount.finetune import FinetuneResult

    monkeypatch.setattr(jobs, "finetune", lambda base, data, *, name, **kw: FinetuneResult(
        folder=_saved(tmp_path / name), name=name, steps=1, seconds=1.0, before={"mae": 3.0, "n": 1},
        after={"mae": 9.0, "n": 1}, paired={"difference": 6.0, "low": float("nan"), "high": float("nan")},
        holdout_files=["a.png"], holdout_counts=[{"file": "a.png", "true": 80, "before": 77, "after": 71}]))
    images, csvs, _ = _set(2)
    at = start(open_train(images, csvs), name="one-held", steps=1)
    at = wait_until(at, lambda a: len(a.success) > 0 or len(a.error) > 0)
    page = texts(at) + " ".join(w.value for w in at.warning)
    assert "nan" not in page, "no 'nan' interval"
    assert any("Only 1 held-out image(s): too few for an interval" in w.value and "counted it worse than tiny-mask"
               in w.value for w in at.warning)
    at.button(key="train_clear").click().run()
    assert not at.warning and not at.exception


@pytest.mark.slow
def test_clear_after_a_run_offers_a_free_name(tiny_models):
    images, csvs, _ = _set(2)
    at = start(open_train(images, csvs), name="tiny-mask-mine", steps=1)
    at = wait_until(at, lambda a: len(a.success) > 0 or len(a.error) > 0)
    assert "tiny-mask-mine" in list_models()
    at.button(key="train_clear").click().run()
    assert at.text_input(key="train_name").value == "tiny-mask-mine-2", "not the name just saved"
    assert not at.error and not at.button(key="train_start").disabled


def test_the_name_box_offers_a_free_name():
    from cellcount.finetune import free_name

    assert free_name("unet-mask-mine", {"unet-mask"}) == "unet-mask-mine"
    assert free_name("unet-mask-mine", {"unet-mask-mine", "unet-mask-mine-2"}) == "unet-mask-mine-3"


def test_cli_warns_when_the_new_model_is_worse(monkeypatch, capsys, tmp_path):
    import cellcount.finetune as ft

    monkeypatch.setattr("cellcount.finetune.cli.finetune", lambda *a, **k: ft.FinetuneResult(
        folder=tmp_path, name="new", steps=1, seconds=1.0, before={"mae": 2.0}, after={"mae": 9.0},
        paired={"difference": 7.0, "low": 5.0, "high": 9.0}, size_note="dots far apart", holdout_files=["a", "b"]))
    assert ft.main(["--from", "unet-mask", "--data", str(tmp_path), "--name", "new", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "warning: Paired over the same 2 images" in out and "new counts these images worse than unet-mask" in out and "note: dots far apart" in out


def test_cli_names_the_input_settings_when_the_postprocessing_is_the_bases(monkeypatch, capsys, tmp_path):
    """The CLI said "settings (input and postprocessing)" beside a note that the base's postprocessing was kept."""
    import cellcount.finetune as ft

    monkeypatch.setattr("cellcount.finetune.cli.finetune", lambda *a, **k: ft.FinetuneResult(
        folder=tmp_path, name="new", steps=1, seconds=1.0, before={"mae": 9.0}, after={"mae": 4.0},
        paired={"difference": -5.0, "low": -6.0, "high": -4.0}, holdout_files=["a", "b"],
        settings_only={"mae": 3.0}, settings_kept=True))
    ft.main(["--from", "unet-mask", "--data", str(tmp_path), "--name", "new", "--steps", "1"])
    out = capsys.readouterr().out
    assert "unet-mask's weights with new's input settings; its postprocessing is the base's: MAE 3.00" in out
    assert "input and postprocessing" not in out


def test_cli_says_when_nothing_was_held_out(monkeypatch, capsys, tmp_path):
    """--holdout 0 printed nothing about it: no before/after score, and no check against the base's weights."""
    import cellcount.finetune as ft

    monkeypatch.setattr("cellcount.finetune.cli.finetune", lambda *a, **k: ft.FinetuneResult(
        folder=tmp_path, name="new", steps=1, seconds=1.0, before={}, after={}, paired={}))
    assert ft.main(["--from", "unet-mask", "--data", str(tmp_path), "--name", "new", "--steps", "1",
                    "--holdout", "0"]) == 0
    out = capsys.readouterr().out
    assert "note: no image was held out" in out and "counts worse than unet-mask is kept as well" in out


def test_a_worse_mean_is_a_warning_even_when_the_interval_includes_0():
    """11 held-out images, +7.38 MAE: the interval included 0 and nothing warned (a helper's run)."""
    from cellcount.finetune import holdout_verdict

    warn, text = holdout_verdict({"difference": 7.38, "low": -8.01, "high": 18.11}, 11, name="x4", base="b")
    assert warn and "x4 counted these images worse than b on average" in text and "may be chance" in text
    warn, text = holdout_verdict({"difference": -1.0, "low": -3.0, "high": 0.5}, 11, name="x4", base="b")
    assert not warn and "no clear difference" in text
    warn, text = holdout_verdict({"difference": -2.0, "low": -3.0, "high": -0.5}, 11, name="x4", base="b")
    assert not warn and "counts these images better" in text
    assert holdout_verdict({"difference": 0.5, "low": float("nan"), "high": float("nan")}, 2, name="x", base="b")[0]
    warn, text = holdout_verdict({"difference": -5.3, "low": float("nan"), "high": float("nan")}, 2, name="x", base="b")
    assert not warn and "x counted them better than b" in text and "Hold out more" in text
    # counted better, outlined worse: said and warned of for a segmentation (a tester's 0.816 -> 0.688, unsaid)
    few = {"difference": -1.5, "low": float("nan"), "high": float("nan")}
    warn, text = holdout_verdict(few, 2, name="x", base="b", before={"f1": 0.816}, after={"f1": 0.688},
                                 segmentation=True)
    assert warn and "x counted them better than b" in text and "F1 0.816 -> 0.688" in text
    assert not holdout_verdict(few, 2, name="x", base="b", before={"f1": 0.816}, after={"f1": 0.79},
                               segmentation=True)[0]
    assert not holdout_verdict(few, 2, name="x", base="b", before={"f1": 0.816}, after={"f1": 0.688})[0]
    from cellcount.finetune import outline_note

    assert outline_note("mask", {"f1": 0.919}, {"f1": 0.865}, "b") == (
        "its objects matched your held-out annotations less well than b's (F1 0.919 -> 0.865): keep b for areas and "
        "shapes")
    assert outline_note("mask", {"f1": 0.919}, {"f1": 0.9}, "b") is None
    assert outline_note("density", {"f1": 0.919}, {"f1": 0.5}, "b") is None and outline_note("mask", {}, {}, "b") is None
    # too few for an interval, but 116.57 -> 1.06 is not "little either way" (a tester's run)
    text = holdout_verdict({"difference": -115.51, "low": float("nan"), "high": float("nan")}, 2, name="x", base="b",
                           before={"mae": 116.57}, after={"mae": 1.06})[1]
    assert "is worth heeding, though 2 images cannot say how large it is on others" in text
    assert "says little" not in text and "chance" not in text
    assert "says little either way" in holdout_verdict(few, 2, name="x", base="b", before={"mae": 6.0})[1]


def test_ground_truth_named_the_datasets_way_gets_its_new_name():
    """009dots.png beside 009cell.png (vgg_cells' own names): the hint names the file to rename it to."""
    from pages._groundtruth import rename_hints

    assert rename_hints(["009dots.png", "x.png"], ["009cell.png", "001cell.png"]) == [("009dots.png",
                                                                                      "009cell_dots.png")]
    assert rename_hints(["009dots.png"], ["009cell.png", "009other.png"]) == [], "two candidates: no guess"


@pytest.mark.slow
def test_dots_only_on_a_segmentation_base_says_a_density_base_learns_from_dots(tiny_models):
    """All annotations are dots: starting from a segmentation model shows why a density model may count
    touching cells better; a density base, or label images, show no such note."""
    images, csvs, _ = _set(2)
    at = open_train(images, csvs)
    at.selectbox(key="train_base").set_value("tiny-mask").run()
    notes = [i.value for i in at.info if "Your annotations are dots" in i.value]
    assert len(notes) == 1 and "tiny-density" in notes[0], [i.value for i in at.info]
    at.selectbox(key="train_base").set_value("tiny-density").run()
    assert not any("Your annotations are dots" in i.value for i in at.info)
    labels = []
    for k, (name, _, _) in enumerate(images):
        s = make_synthetic((64, 64), rng=10 + k, n_cells=4 + k, radius_px=(4.0, 6.0))  # as _set draws them
        labels.append((name.replace(".png", "_labels.png"), _png(s.labels.astype(np.uint8)), "image/png"))
    at = open_train(images, labels)
    at.selectbox(key="train_base").set_value("tiny-mask").run()
    assert not at.exception and not any("Your annotations are dots" in i.value for i in at.info)
    assert not any("include outlines" in i.value for i in at.info)
    # outlines on a density base: said that only a segmentation model learns them (a tester's labels went unused)
    at.selectbox(key="train_base").set_value("tiny-density").run()
    notes = [i.value for i in at.info if "Your annotations include outlines" in i.value]
    assert len(notes) == 1 and "tiny-mask" in notes[0]


@pytest.mark.slow
def test_kept_base_weights_are_reported_as_such(tiny_models, monkeypatch, tmp_path):
    """A user pass: when the base's weights were kept, the page called the discarded weights 'after (new model)'
    and the verdict named the new model, which counts as the base does."""
    import cellcount.jobs as jobs
    from cellcount.finetune import FinetuneResult

    monkeypatch.setattr(jobs, "finetune", lambda base, data, *, name, **kw: FinetuneResult(
        folder=_saved(tmp_path / name), name=name, steps=1, seconds=1.0, before={"mae": 2.0, "n": 2},
        after={"mae": 9.0, "n": 2}, paired={"difference": 7.0, "low": 5.0, "high": 9.0}, kept_base=True,
        holdout_files=["a.png", "b.png"], holdout_counts=[{"file": "a.png", "true": 10, "before": 9, "after": 1},
                                                          {"file": "b.png", "true": 10, "before": 11, "after": 19}],
        reading="as tiny-mask reads them (its weights and settings were kept)"))
    images, csvs, _ = _set(2)
    at = start(open_train(images, csvs), name="kept-model", steps=1)
    at = wait_until(at, lambda a: len(a.success) > 0 or len(a.error) > 0)
    summary, per = at.dataframe[-2].value, at.dataframe[-1].value
    assert "fine-tuned weights (not kept)" in summary.columns and "after (new model)" not in summary.columns
    assert "fine-tuned (not kept)" in per.columns and "after" not in per.columns
    verdict = " ".join(w.value for w in at.warning)
    assert "the fine-tuned model (not kept) counts these images worse than tiny-mask" in verdict
    assert "kept-model keeps tiny-mask's weights and settings" in verdict
    assert any("counts them as tiny-mask does" in m.value for m in at.markdown)


def test_header_only_points_files_are_called_empty_before_training(tiny_models):
    """"3 image(s) with ground truth (3 with dots)" for three header-only CSVs (a failed export) read as a set
    ready to train; the fine-tune then failed after its whole budget."""
    images, csvs, _ = _set(3)
    empty = [(name, b"x,y\n", mime) for name, _, mime in csvs[:2]] + csvs[2:]
    at = open_train(images, empty)
    assert not at.exception
    assert any("3 image(s) with ground truth (3 with dots). 2 of them hold no objects" in c.value for c in at.caption)


def test_an_image_with_far_fewer_dots_than_cells_is_named_before_training(tiny_models):
    """A tester dotted 3 of about 20 nuclei and could train on it without a word: every cell without a dot is
    taught as background. The count a model finds on each image shown for dotting is the yardstick."""
    images, _, points = _set(2)
    at = open_train(images)
    assert any("finds about" in c.value for c in at.caption), "the model's count beside the dots"
    # the base chosen to start from gives it, not the model in use elsewhere (70% off on a tester's set)
    at.session_state["train_base"] = "tiny-density"
    at.run()
    assert any("tiny-density finds about" in c.value for c in at.caption), [c.value for c in at.caption]
    at.session_state["train_base"] = "tiny-mask"
    at.run()
    keys = {name: f"{name}#{hashlib.sha256(data).hexdigest()[:12]}" for name, data, _ in images}
    second = sorted(keys)[1]  # not the image shown: its guess is put here as the page keeps it
    at.session_state["train__points"] = {keys[second]: points[second][:2]}
    at.session_state["train__guesses"] = {keys[second]: ("tiny-mask", 40)}
    at.run()
    warned = [w.value for w in at.warning if "Fewer dots than cells?" in w.value]
    assert len(warned) == 1 and f"{second} (2 dots; tiny-mask finds about 40)" in warned[0]
    at.session_state["train__points"] = {keys[second]: np.tile(points[second][:1], (25, 1))}
    at.run()
    assert not any("Fewer dots than cells?" in w.value for w in at.warning), "dotted enough: no warning"


@pytest.mark.slow
def test_an_image_dotted_completely_that_the_model_over_counts_is_not_called_partly_dotted(tiny_models):
    """12 dots where the model finds 40, little of its count far from every dot: dotted completely and over-counted
    (H&E), as the command line judges it; told to "dot every cell" on the page all the same."""
    from cellcount.finetune.reading import SCATTERED_DOTS

    images, _, points = _set(2)
    at = open_train(images)
    at.session_state["train_base"] = "tiny-mask"
    keys = {name: f"{name}#{hashlib.sha256(data).hexdigest()[:12]}" for name, data, _ in images}
    second = sorted(keys)[1]
    dots = np.array([[8.0 + 3 * k, 10.0 + 2 * k] for k in range(12)])
    assert SCATTERED_DOTS * 40 <= len(dots) < 0.5 * 40
    at.session_state["train__points"] = {keys[second]: dots}
    at.session_state["train__guesses"] = {keys[second]: ("tiny-mask", 40)}
    from cellcount.annotate import dots_id

    at.session_state["train__far"] = {keys[second]: ((("tiny-mask", 40), dots_id(dots)), 1.0)}
    at.run()
    assert not any("Fewer dots than cells?" in w.value for w in at.warning), "1 of 40 far from the dots: complete"
    at.session_state["train__far"] = {keys[second]: ((("tiny-mask", 40), dots_id(dots)), 9.0)}
    at.run()
    warned = [w.value for w in at.warning if "Fewer dots than cells?" in w.value]
    assert len(warned) == 1 and "(12 dots; tiny-mask finds about 40, 9 of them far from every dot)" in warned[0]
    at.session_state["train__far"] = {keys[second]: ((("tiny-mask", 40), dots_id(dots[:11])), 1.0)}
    at.run()
    assert any("Fewer dots than cells?" in w.value for w in at.warning), "measured for other dots: the count alone"
    shown = sorted(keys)[0]  # the image shown for dotting: measured by the page itself (a density map: mass > 0)
    at.session_state["train_base"] = "tiny-density"
    at.session_state["train__points"] = {keys[shown]: points[shown][:3]}
    at.session_state["train__guesses"] = {keys[shown]: ("tiny-density", 40)}
    at.run()
    assert not at.exception
    (model, dots_seen), far = at.session_state["train__far"][keys[shown]]
    assert model == ("tiny-density", 40) and dots_seen == dots_id(points[shown][:3]) and 0 <= far <= 40


@pytest.mark.slow
def test_a_held_out_image_with_far_fewer_dots_than_cells_is_named_under_the_result(tiny_models, monkeypatch,
                                                                                     tmp_path):
    """A tester's image of 3 dots (about 150 cells) was drawn as the held-out one: MAE 158 -> 562 and errors of
    5275% against "true = 3", the warning given before Start long gone."""
    import cellcount.jobs as jobs
    from cellcount.finetune import FinetuneResult

    images, _, points = _set(2)
    at = open_train(images)
    keys = {name: f"{name}#{hashlib.sha256(data).hexdigest()[:12]}" for name, data, _ in images}
    full, thin = sorted(keys)
    at.session_state["train__points"] = {keys[full]: points[full], keys[thin]: points[thin][:2]}
    at.session_state["train__guesses"] = {keys[thin]: ("tiny-mask", 40)}
    at.run()
    monkeypatch.setattr(jobs, "finetune", lambda base, data, *, name, **kw: FinetuneResult(
        folder=_saved(tmp_path / name), name=name, steps=1, seconds=1.0, before={"mae": 30.0, "n": 1},
        after={"mae": 35.0, "n": 1}, paired={}, holdout_files=[thin], train_files=[full],
        holdout_counts=[{"file": thin, "true": 2, "before": 32, "after": 37}]))
    at = start(at, name="thin-held", steps=1)
    at = wait_until(at, lambda a: len(a.success) > 0 or len(a.error) > 0)
    said = [w.value for w in at.warning if "held-out image(s) had far fewer dots than cells" in w.value]
    assert len(said) == 1 and f"{thin} (2 dots; tiny-mask finds about 40)" in said[0], [w.value for w in at.warning]


def test_dots_clicked_on_an_image_that_gets_label_images_are_said_to_be_unused(tiny_models):
    """A tester's clicked dots vanished without a word when the image's label image was uploaded."""
    images, _, points = _set(2)
    keys = {name: f"{name}#{hashlib.sha256(data).hexdigest()[:12]}" for name, data, _ in images}
    first = sorted(keys)[0]
    labels = []
    for k, (name, _, _) in enumerate(images):
        s = make_synthetic((64, 64), rng=10 + k, n_cells=4 + k, radius_px=(4.0, 6.0))
        labels.append((name.replace(".png", "_labels.png"), _png(s.labels.astype(np.uint8)), "image/png"))
    at = open_train(images, labels)
    at.session_state["train__points"] = {keys[first]: points[first]}
    at.run()
    notes = [i.value for i in at.info if "are not used" in i.value]
    assert len(notes) == 1 and first in notes[0]


def test_an_image_with_a_count_only_can_be_dotted_and_then_trains(tiny_models):
    """A counts table gives no positions: such an image is offered for dotting, and its dots are its annotation."""
    images, _, points = _set(2)
    counts = ("counts.csv", ("filename,count\n" + "".join(f"{n},{len(points[n])}\n" for n, _, _ in images)).encode(),
              "text/csv")
    at = open_train(images, [counts])
    assert any("count only" in w.value for w in at.warning), "left out until dotted"
    assert any("Image to annotate" == s.label for s in at.selectbox), "offered for dotting"
    keys = {name: f"{name}#{hashlib.sha256(data).hexdigest()[:12]}" for name, data, _ in images}
    first = sorted(keys)[0]
    at.session_state["train__points"] = {keys[first]: points[first]}
    at.run()
    assert any("1 annotated image(s)" in c.value for c in at.caption)
    assert not any("are not used" in i.value for i in at.info), "dots on a count-only image are used"


def test_an_image_whose_points_file_is_refused_can_still_be_dotted(tiny_models):
    """A points file with x and y swapped (outside the image) is refused with its reason; the image itself was
    then gone from dotting, so the user had to remove the file to dot it (a tester)."""
    images, _, points = _set(2)
    first = sorted(points)[0]
    h, w = 64, 64
    bad = ("x,y\n" + f"{w + 10},{h + 20}\n").encode()
    at = open_train(images, [(first.replace(".png", "_points.csv"), bad, "text/csv")])
    assert any("lie outside" in e.value for e in [*at.warning, *at.error]), "the reason is shown"
    [pick] = [s for s in at.selectbox if s.label == "Image to annotate"]
    assert first in pick.options
    keys = {name: f"{name}#{hashlib.sha256(data).hexdigest()[:12]}" for name, data, _ in images}
    at.session_state["train__points"] = {keys[first]: points[first]}
    at.run()
    assert any("1 annotated image(s)" in c.value for c in at.caption), "its dots are its annotation"
    # said as such: a tester's 3 clicks from before stood in for a refused 56-dot file under "could not be used"
    assert any(f"{first} ({len(points[first])} clicked)" in w.value and "are used instead" in w.value
               for w in at.warning)


def test_the_held_out_proposal_follows_the_images_dotted_until_the_user_sets_it(tiny_models):
    """A tester dotted four images one by one: the 0 held out proposed for the first stayed, and the run had no
    before/after score and no fallback to the base. The proposal follows the set; a number typed stays."""
    images, _, points = _set(4)
    at = open_train(images)
    keys = {name: f"{name}#{hashlib.sha256(data).hexdigest()[:12]}" for name, data, _ in images}
    names = sorted(keys)
    at.session_state["train__points"] = {keys[names[0]]: points[names[0]]}
    at.run()
    assert at.number_input(key="train_holdout").value == 0, "one image: nothing to hold out"
    at.session_state["train__points"] = {keys[n]: points[n] for n in names}
    at.run()
    assert any("4 annotated image(s)" in c.value for c in at.caption)
    assert at.number_input(key="train_holdout").value == 1, "four images: one held out, as an upload of four gets"
    at.number_input(key="train_holdout").set_value(2).run()
    at.session_state["train__points"] = {keys[n]: points[n] for n in names[:3]}
    at.run()
    assert at.number_input(key="train_holdout").value == 2, "the user's own number stays"


@pytest.mark.slow
def test_a_points_file_uploaded_after_clicks_on_its_image_is_said_and_can_be_used(tiny_models):
    """A tester dotted an image by clicking, then uploaded its 3-point CSV: the clicks were used and the file's
    dots ignored without a word."""
    images, csvs, points = _set(2)
    keys = {name: f"{name}#{hashlib.sha256(data).hexdigest()[:12]}" for name, data, _ in images}
    first = sorted(keys)[0]
    at = open_train(images)
    clicks = np.tile(points[first][:1], (9, 1))  # as the click handler stores them: made from no dots
    at.session_state["train__points"] = {keys[first]: clicks}
    at.session_state["train__basis"] = {keys[first]: "none"}
    at.run()
    assert not any("points files uploaded since" in i.value for i in at.info)
    at.file_uploader(key="train_gt_files").set_value(list(csvs)).run()
    said = [i.value for i in at.info if "points files uploaded since" in i.value]
    assert len(said) == 1 and f"{first} (9 clicked, {len(points[first])} in the file)" in said[0]
    at.button(key="train_use_file_dots").click().run()
    assert not any("points files uploaded since" in i.value for i in at.info)
    # the same dots clicked as the file holds (a points CSV downloaded here and uploaded again): nothing to say
    at.session_state["train__points"] = {keys[first]: np.round(points[first], 1)}
    at.session_state["train__basis"] = {keys[first]: "none"}
    at.run()
    assert not any("points files uploaded since" in i.value for i in at.info)
    at.selectbox(key="train_annotate_image").set_value(first).run()
    assert at.metric[0].value == str(len(points[first])), "the file's dots, shown and used"


def test_an_annotation_file_without_cells_is_said_before_training(tiny_models):
    """A points CSV with only its header line teaches its image as holding no cells: said as a warning, by name."""
    images, csvs, _ = _set(3)
    csvs[1] = (csvs[1][0], b"x,y\n", "text/csv")
    at = open_train(images, csvs)
    warned = [w.value for w in at.warning if "annotation files without a single cell" in w.value]
    assert len(warned) == 1 and "cells_1.png" in warned[0] and "cells_0.png" not in warned[0]


def test_the_upload_summary_says_images_without_annotations_are_dotted_below(tiny_models):
    """The summary said "1 without" of an image the user went on to dot: it names what those images are for."""
    images, csvs, _ = _set(3)
    at = open_train(images, csvs[:2])
    # the picker starts on it, and names the images without dots (every image looked alike: a tester)
    assert at.selectbox(key="train_annotate_image").value == "cells_2.png"
    assert any(c.value == "No dots yet: cells_2.png." for c in at.caption)
    (summary,) = [c.value for c in at.caption if "image(s) with ground truth" in c.value]
    assert "2 image(s) with ground truth (2 with dots); 1 uploaded without annotations (dot them below to use " \
           "them)." in summary


def test_a_file_that_is_no_image_is_listed_as_such_not_offered_for_dotting(tiny_models):
    """Text saved as fake.png was listed as an image without annotations and offered for dotting; opened, its
    error named it <bytes>."""
    images, csvs, _ = _set(2)
    at = open_train([*images, ("fake.png", b"hello, not an image", "image/png")], csvs)
    assert "fake.png" not in at.selectbox(key="train_annotate_image").options
    said = [w.value for w in at.warning if "could not be used" in w.value]
    assert len(said) == 1 and "fake.png" in said[0] and "not an image" in said[0]
    (summary,) = [c.value for c in at.caption if "image(s) with ground truth" in c.value]
    assert "without" not in summary, "not counted among the images without annotations"


@pytest.mark.slow
def test_a_run_that_ended_before_a_reload_is_named_on_the_new_session(tiny_models, monkeypatch, tmp_path):
    """A tester reloaded the tab after a fine-tune finished: the new session's Train page said nothing of it. It
    names the last run now, until its own session clears it; a session with a run of its own shows that instead."""
    import cellcount.jobs as jobs
    from cellcount.finetune import FinetuneResult

    monkeypatch.setattr(jobs, "finetune", lambda base, data, *, name, **kw: FinetuneResult(
        folder=_saved(tmp_path / name), name=name, steps=1, seconds=1.0, before={}, after={}, paired={}))
    images, csvs, _ = _set(2)
    at = start(open_train(images, csvs), name="before-reload", steps=1)
    at = wait_until(at, lambda a: len(a.success) > 0 or len(a.error) > 0)
    assert not any("The last fine-tune on this app's server" in c.value for c in at.caption), "its own run is shown"
    reloaded = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60).run()
    reloaded.switch_page("pages/train.py").run()
    said = [c.value for c in reloaded.caption if "The last fine-tune on this app's server" in c.value]
    assert len(said) == 1 and "from tiny-mask" in said[0] and "saved before-reload" in said[0] and "Models page" in said[0]
    at.button(key="train_clear").click().run()
    reloaded.run()
    assert not any("The last fine-tune on this app's server" in c.value for c in reloaded.caption), "cleared"


def test_an_image_too_small_to_learn_from_is_named_before_start(tiny_models):
    """A 20 x 20 image was counted among "4 annotated image(s)" and in the held-out proposal, and named as left out
    only in the result (a tester)."""
    images, csvs, _ = _set(3)
    tiny = np.full((20, 20), 30, np.uint8)
    tiny[8:12, 8:12] = 200
    at = open_train([*images, ("tiny.png", _png(tiny), "image/png")],
                    [*csvs, ("tiny_points.csv", b"x,y\n10,10\n", "text/csv")])
    said = [w.value for w in at.warning if "under 32 px on a side" in w.value]
    assert len(said) == 1 and "tiny.png" in said[0]
    assert any(c.value == "3 annotated image(s)." for c in at.caption)


@pytest.mark.slow
def test_other_pages_say_when_this_sessions_fine_tune_ends():
    """A run that finished while the user sat on Count left its model out of Count's list, with no word of the end,
    until the page happened to run again (a tester): a page's model picker polls while it runs and says it, once;
    a run the user cleared on Train (having seen its outcome there) is not announced as failed."""
    script = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
import streamlit as st
from cellcount.jobs import JobSnapshot
from pages import _model_ui as mu
from pages._ui import show_messages

class Fake:
    name, status, job_id = "mine", "running", st.session_state["fake_id"]
    def start(self):
        return self
    def snapshot(self):
        return JobSnapshot(status=self.status, name="mine", base="b", progress=None, losses=(), started_s=0.0,
                           elapsed_s=0.0)

board, me = mu.finetune_board(), mu.finetune_owner()
if st.session_state.get("clear"):
    board.get(me).status = "done"
    board.clear(me)  # as Train's Clear does once the outcome shows
elif board.get(me) is None:
    board.start(me, Fake())
if board.get(me) is not None:
    board.get(me).status = st.session_state["fake_status"]
mu.pick_model("count")
show_messages("count")
"""
    at = AppTest.from_string(script, default_timeout=60)
    at.session_state["fake_id"], at.session_state["fake_status"] = "run-1", "running"
    at.run()
    assert not at.exception, at.exception
    assert not at.toast and at.session_state["train__watched"] == ("run-1", "mine")
    at.session_state["fake_status"] = "done"
    at.run()
    assert [t.value for t in at.toast] == ["Fine-tuning finished: mine is in the model list."]
    at.run()
    assert not at.toast, "said once"

    at = AppTest.from_string(script, default_timeout=60)  # seen running, then its outcome seen and cleared on Train
    at.session_state["fake_id"], at.session_state["fake_status"] = "run-2", "running"
    at.run()
    at.session_state["clear"] = True
    at.run()
    assert not at.exception and not at.toast and "train__watched" not in at.session_state


@pytest.mark.slow
def test_the_models_and_compare_pages_watch_the_fine_tune_too():
    """Compare's several-model list and the Models table also missed a model whose fine-tune ended meanwhile."""
    from cellcount.jobs import JobSnapshot
    from pages import _model_ui as mu

    class Fake:
        name, job_id = "mine", "run-1"

        def start(self):
            return self

        def snapshot(self):
            return JobSnapshot(status="running", name="mine", base="b", progress=None, losses=(), started_s=0.0,
                               elapsed_s=0.0)

    mu.finetune_board().start("me", Fake())  # the process's board, as the app's pages get it
    for page in ("pages/models.py", "pages/compare.py"):
        at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60)
        at.session_state["train__owner"] = "me"
        at.run()
        at.switch_page(page)
        at.run()
        assert not at.exception, at.exception
        assert at.session_state["train__watched"] == ("run-1", "mine"), page


def test_dots_that_look_like_microns_are_warned_before_start(tiny_models):
    """A Fiji points file in µm (all dots in the image's top-left corner) was said only among the reading notes in
    section 1, and trained on; the result never named it (a tester)."""
    images, csvs, _ = _set(3)
    corner = ("cells_0_points.csv", ("x,y\n" + "".join(f"{2 + 2 * k},{3 + k}\n" for k in range(12))).encode(),
              "text/csv")
    at = open_train(images, [corner, *csvs[1:]])
    warned = [w.value for w in at.warning if w.value.startswith("Dots in µm?")]
    assert len(warned) == 1 and "cells_0_points.csv: all 12 points lie within the top-left" in warned[0], warned
    at.file_uploader(key="train_gt_files").set_value(list(csvs)).run()
    assert not any(w.value.startswith("Dots in µm?") for w in at.warning), "the right file: no warning"


def test_a_points_file_with_far_fewer_dots_than_cells_is_named_before_training(tiny_models):
    """The page's own points CSV of 9 dots (the model finds about 152), uploaded again, drew no warning before Start:
    only clicked dots were judged, and the result said it after the budget was spent (a tester)."""
    images, csvs, points = _set(2)
    thin = [(csvs[0][0], ("x,y\n" + "".join(f"{c:.1f},{r:.1f}\n" for r, c in points["cells_0.png"][:2])).encode(),
             "text/csv"), csvs[1]]
    at = open_train(images, thin)
    keys = {name: f"{name}#{hashlib.sha256(data).hexdigest()[:12]}" for name, data, _ in images}
    at.session_state["train_base"] = "tiny-mask"
    at.session_state["train__guesses"] = {keys["cells_0.png"]: ("tiny-mask", 40)}  # as shown for dotting
    at.run()
    warned = [w.value for w in at.warning if "Fewer dots than cells?" in w.value]
    assert len(warned) == 1 and "cells_0.png (2 dots; tiny-mask finds about 40" in warned[0], warned


@pytest.mark.slow
def test_a_fine_tune_cut_off_by_a_server_restart_is_said_on_the_next_visit():
    """A run going when the server was killed vanished from the Train page, unsaid."""
    import json
    import socket

    from cellcount.jobs import RUNNING_MARK_GLOB
    from cellcount.models.loading import user_models_dir

    user_models_dir().mkdir(parents=True, exist_ok=True)
    gone = {"name": "appR", "base": "unet-mask-varied", "started": time.time() - 60, "pid": 2**22 + 12345,
            "host": socket.gethostname()}
    (user_models_dir() / RUNNING_MARK_GLOB.replace("*", "old")).write_text(json.dumps(gone))
    at = open_train([])
    assert any("The fine-tune of **appR** from unet-mask-varied" in w.value and "nothing of it was saved" in w.value
               for w in at.warning)
    at.run()
    assert any("appR" in w.value for w in at.warning), "kept on the page's reruns"
    other = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60).run()
    other.switch_page("pages/train.py").run()
    assert any("appR" in w.value for w in other.warning), "said to another tab too (one took the only notice)"
