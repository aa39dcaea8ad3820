"""Tests of the command line ``python -m cellcount`` (run in-process through ``cellcount.cli.main``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from cellcount.cli import main
from cellcount.history import list_runs
from cellcount.models import CLASSICAL_NAME, load_model
from cellcount.pipeline import resolve_params

HTML = b"<html><body>not an image</body></html>"


@pytest.fixture(scope="module")
def samples_run(samples_dir, tmp_path_factory):
    """One CLI run over data/samples with every output switched on."""
    out = tmp_path_factory.mktemp("cli")
    argv = ["count", str(samples_dir), "--model", CLASSICAL_NAME, "--out", str(out / "counts.csv"),
            "--objects", str(out / "objects.csv"), "--labels-dir", str(out / "labels"), "--no-progress"]
    return main(argv), out


@pytest.fixture
def small_folder(samples_dir, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    shutil.copy(samples_dir / "s01_sparse_small.png", folder / "a.png")
    shutil.copy(samples_dir / "s06_heavy_blur.png", folder / "b.png")
    return folder


@pytest.mark.slow
def test_count_samples_folder(samples_run, samples_dir):
    rc, out = samples_run
    assert rc == 0
    df = pd.read_csv(out / "counts.csv")
    manifest = pd.read_csv(samples_dir / "manifest.csv")
    assert len(df) == 12, "ground-truth label images are not counted"
    assert sorted(df["file"].map(lambda f: f.rsplit("/", 1)[-1])) == sorted(manifest["filename"])
    assert (df["status"] == "ok").all()
    assert (df["count"] > 0).all() and (df["model"] == CLASSICAL_NAME).all()
    settings = json.loads((out / "counts.settings.json").read_text())
    assert settings["model"] == CLASSICAL_NAME
    # which cellcount counted (none of the records said; the package's metadata read 0.2.0, the module 0.1.0)
    import cellcount

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    assert settings["cellcount_version"] == cellcount.__version__
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert project["project"]["dynamic"] == ["version"]  # the package's version is the module's, in one place
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "cellcount._version.__version__"}
    from cellcount.settingsfile import params_from_json, record_text

    assert "cellcount_version" not in json.loads(record_text({"model": "m", "params": {}}, None))  # an older run's
    assert params_from_json((out / "counts.settings.json").read_text())  # read back as settings
    # the settings that act for the model, as the counts CSV lists them
    assert settings["params"] == resolve_params(load_model(CLASSICAL_NAME)).acting("mask")


def test_objects_and_labels_outputs(samples_run):
    rc, out = samples_run
    counts = pd.read_csv(out / "counts.csv")
    objects = pd.read_csv(out / "objects.csv")
    assert len(objects) == counts["count"].sum()
    assert objects.groupby("file").size().to_dict() == dict(zip(counts["file"], counts["count"]))
    tifs = sorted((out / "labels").glob("*_labels.tif"))
    assert len(tifs) == 12
    by_stem = {f.rsplit("/", 1)[-1].rsplit(".", 1)[0]: n for f, n in zip(counts["file"], counts["count"])}
    for tif in tifs:
        assert int(tifffile.imread(tif).max()) == by_stem[tif.name[: -len("_labels.tif")]]


def test_broken_file_gives_exit_code_1_and_an_error_row(small_folder, tmp_path, capsys):
    (small_folder / "broken.png").write_bytes(HTML)
    rc = main(["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(tmp_path / "c.csv"),
               "--no-progress"])
    assert rc == 1
    df = pd.read_csv(tmp_path / "c.csv")
    rows = df.set_index(df["file"].map(lambda f: f.rsplit("/", 1)[-1]))
    assert len(rows) == 3
    assert rows.loc["broken.png", "status"] == "error"
    assert "broken.png: " in rows.loc["broken.png", "reason"] and "ImageReadError" not in rows.loc["broken.png", "reason"] and "HTML" in rows.loc["broken.png", "reason"]
    assert pd.isna(rows.loc["broken.png", "count"])
    assert (rows.loc[["a.png", "b.png"], "status"] == "ok").all()
    assert (rows.loc[["a.png", "b.png"], "count"] > 0).all()
    assert rows.loc[["a.png", "b.png"], "check"].isin([True, False]).all(), "the quality flag is in the CSV"
    assert pd.isna(rows.loc["broken.png", "check"])
    captured = capsys.readouterr()
    assert "1 failed" in captured.out and "broken.png" in captured.err


def test_a_named_file_of_another_type_is_reported_not_dropped(small_folder, tmp_path, capsys):
    (small_folder / "c.heic").write_bytes((small_folder / "a.png").read_bytes())
    (small_folder / "notes.csv").write_text("x\n")
    rc = main(["count", str(small_folder / "a.png"), str(small_folder / "c.heic"), str(small_folder / "notes.csv"),
               "--model", CLASSICAL_NAME, "--out", str(tmp_path / "c.csv"), "--no-progress"])
    assert rc == 1  # not every file asked for was counted
    captured = capsys.readouterr()
    assert " not counted: " in captured.err and "warning: " in captured.err and "c.heic" in captured.err and "notes.csv" in captured.err
    assert "extension .heic" in captured.err
    # one summary: they are failures among the files asked for, as in the history (a tester's run listed 17 inputs
    # beside 14 ok and 5 failed)
    assert "counted 1/3 images" in captured.out and "2 failed" in captured.out, captured.out
    from cellcount.history import list_runs

    run = list_runs().iloc[0]
    assert (run["n_inputs"], run["n_ok"], run["n_failed"]) == (3, 1, 2)
    # and in the CSV, as every file that cannot be counted (a tester's named notes.txt had no row)
    df = pd.read_csv(tmp_path / "c.csv").set_index("file")
    assert len(df) == 3 and df.loc[str(small_folder / "a.png"), "status"] == "ok"
    for name in ("c.heic", "notes.csv"):
        row = df.loc[str(small_folder / name)]
        assert row["status"] == "error" and row["reason"].startswith("not counted: not an image file") and pd.isna(row["count"])
        assert row["model"] == CLASSICAL_NAME and row["settings"].startswith("{"), "named as every other error row"
    # a resumed run counts nothing again and writes those rows once
    rc = main(["count", str(small_folder / "a.png"), str(small_folder / "c.heic"), str(small_folder / "notes.csv"),
               "--model", CLASSICAL_NAME, "--out", str(tmp_path / "c.csv"), "--no-progress", "--resume"])
    assert rc == 1 and len(pd.read_csv(tmp_path / "c.csv")) == 3
    # in a folder, notes and tables are passed over as before: only images are the folder's content
    assert main(["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(tmp_path / "d.csv"),
                 "--no-progress"]) == 0


def test_resume_with_labels_dir_added_writes_every_images_labels(small_folder, tmp_path, capsys):
    """--labels-dir given on --resume only wrote the new images' label images, and an index of those, without a
    word (a tester): the images without one are counted again, said."""
    out, labels = tmp_path / "c.csv", tmp_path / "labels"
    a, b = str(small_folder / "a.png"), str(small_folder / "b.png")
    assert main(["count", a, "--model", CLASSICAL_NAME, "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["count", a, b, "--model", CLASSICAL_NAME, "--out", str(out), "--no-progress", "--resume",
                 "--labels-dir", str(labels)]) == 0
    assert "1 image(s) counted before have no label image" in capsys.readouterr().err
    index = pd.read_csv(labels / "labels_index.csv")
    assert sorted(index["file"]) == sorted([a, b]) and all((labels / f).is_file() for f in index["labels_file"])
    assert len(pd.read_csv(out)) == 2
    assert main(["count", a, b, "--model", CLASSICAL_NAME, "--out", str(out), "--no-progress", "--resume",
                 "--labels-dir", str(labels)]) == 0  # now all there: nothing counted again
    assert "no label image" not in capsys.readouterr().err and len(pd.read_csv(labels / "labels_index.csv")) == 2


def test_resume_counts_again_an_image_replaced_since_the_earlier_run(small_folder, tmp_path, capsys):
    import os

    out = tmp_path / "c.csv"
    argv = ["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    before = pd.read_csv(out).set_index("file")["count"]
    a, b = small_folder / "a.png", small_folder / "b.png"
    a.write_bytes(b.read_bytes())  # a.png is now another image, copied with its source's old time (rsync -a)
    os.utime(a, (1_000_000_000, 1_000_000_000))
    assert json.loads((tmp_path / "c.inputs.json").read_text())[str(a)][1] != a.stat().st_mtime_ns
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 0
    err = capsys.readouterr().err
    assert "1 image(s) changed since" in err and "1 image(s) already counted" in err
    after = pd.read_csv(out).set_index("file")["count"]
    assert after[str(a)] == before[str(b)] != before[str(a)]  # counted again, as the image it is now
    assert after[str(b)] == before[str(b)]


def test_a_name_with_a_carriage_return_keeps_its_row_whole_and_resume_counts_nothing_twice(small_folder, tmp_path,
                                                                                           capsys):
    """macOS names a folder's custom icon ``Icon\r``: written unquoted, the name split its row in two for every CSV
    reader, and ``--resume`` then kept a phantom row and counted the image again (the total 43 too high)."""
    import csv

    odd = small_folder / "Icon\r.png"
    shutil.copy(small_folder / "a.png", odd)
    out, objects = tmp_path / "c.csv", tmp_path / "o.csv"
    argv = ["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(out), "--objects", str(objects),
            "--no-progress"]
    assert main(argv) == 0
    for path in (out, objects):
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        assert all(len(r) == len(rows[0]) for r in rows), path
    table = pd.read_csv(out)
    assert str(odd) in set(table["file"])
    assert main([*argv, "--resume"]) == 0
    assert "already counted" in capsys.readouterr().err
    again = pd.read_csv(out)
    assert len(again) == len(table) and again["count"].sum() == table["count"].sum()


def test_a_rerun_over_a_name_with_a_carriage_return_replaces_its_own_rows_without_a_copy(small_folder, tmp_path,
                                                                                          capsys):
    """Its rows written in parts, quoted as each part needs, and the history's export quoted all at once: the rerun
    kept a needless ``.replaced`` copy of the run's own rows; and a folder icon's ``Icon\r`` was named with a raw
    carriage return as a file passed over (macOS's, left out unsaid as ``.DS_Store`` is)."""
    shutil.copy(small_folder / "a.png", small_folder / "odd\r.png")
    (small_folder / "Icon\r").write_bytes(b"")
    out = tmp_path / "c.csv"
    argv = ["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(out), "--no-progress"]
    assert main(argv) == 0 and main(argv) == 0
    err = capsys.readouterr().err
    assert "the rows of run" in err and "has no copy of" not in err and "passed over" not in err
    assert not list(tmp_path.glob("c.replaced-*"))


def test_a_card_changed_since_is_another_model_for_resume_and_settings(tiny_models, small_folder, tmp_path, capsys):
    """A density scale written into the card (evaluate --tune --write-card) changes the counts, not the weights:
    --resume kept rows counted before it beside rows counted after, and a settings file saved before was applied
    in silence (a tester)."""
    from cellcount.models import read_card, write_card

    out = tmp_path / "c.csv"
    argv = ["count", str(small_folder / "a.png"), "--model", "tiny-density", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    saved = tmp_path / "saved.settings.json"
    shutil.copy(tmp_path / "c.settings.json", saved)
    assert json.loads(saved.read_text())["model_card"] == load_model("tiny-density").card.counting_digest()
    card = read_card(tiny_models / "tiny-density")
    card.density_scale *= 2
    write_card(card, tiny_models / "tiny-density")
    capsys.readouterr()
    assert main(["count", str(small_folder), "--model", "tiny-density", "--out", str(out), "--no-progress",
                 "--resume"]) == 0
    err = capsys.readouterr().err
    assert "the card of tiny-density changed since" in err and "already counted" not in err
    assert main(["count", str(small_folder / "a.png"), "--settings", str(saved), "--out", str(tmp_path / "d.csv"),
                 "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "tiny-density is not the model" in err and "its card changed since" in err
    # saved again with the card as it is now, the file says nothing
    assert main(["count", str(small_folder / "a.png"), "--settings", str(tmp_path / "c.settings.json"),
                 "--out", str(tmp_path / "e.csv"), "--no-progress"]) == 0
    assert "is not the model" not in capsys.readouterr().err


def test_resume_without_the_objects_table_of_the_earlier_run_says_it_stays_partial(small_folder, tmp_path, capsys):
    """Resumed without --objects, the earlier run's objects table kept only the images counted before the stop,
    unsaid (a tester: 877 rows for 16 of 24 images)."""
    out, objects = tmp_path / "c.csv", tmp_path / "objects.csv"
    argv = ["count", "--model", CLASSICAL_NAME, "--out", str(out), "--no-progress"]
    assert main([*argv, str(small_folder / "a.png"), "--objects", str(objects)]) == 0
    capsys.readouterr()
    assert main([*argv, str(small_folder / "a.png"), str(small_folder / "b.png"), "--resume"]) == 0
    err = capsys.readouterr().err
    assert f"also wrote the objects table {objects}, which this run does not update" in err
    assert f"resume with --objects {objects} to complete it" in err


def test_a_copy_under_another_name_is_counted_and_said(small_folder, tmp_path, capsys):
    """nucA.png and nucA_copy.png (the same bytes) were two rows in a folder's total, unsaid (as on Batch: a tester)."""
    shutil.copy(small_folder / "a.png", small_folder / "a_copy.png")
    (small_folder / "c.png").write_bytes((small_folder / "a.png").read_bytes()[:-1] + b"x")  # same size, other bytes
    assert main(["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(tmp_path / "c.csv"),
                 "--no-progress"]) in (0, 1)
    err = capsys.readouterr().err
    assert "note: 1 file(s) hold the same bytes as another under another name (copies?), each counted" in err
    assert f"{small_folder / 'a_copy.png'} = {small_folder / 'a.png'}" in err
    assert len(pd.read_csv(tmp_path / "c.csv")) == 4, "each counted, as named"


def test_copies_said_are_those_counted_and_links_are_no_copies(small_folder, tmp_path, capsys):
    """Two label images of one content, left out as ground truth, were said to be counted twice; a link to a file
    was said twice (as a link and as a copy); a newline in a name split the note's line (testers)."""
    labels = np.zeros((32, 32), np.uint16)
    labels[4:9, 4:9] = 1
    for name in ("a_labels.tif", "b_labels.tif"):
        tifffile.imwrite(small_folder / name, labels)
    (small_folder / "link_a.png").symlink_to(small_folder / "a.png")
    shutil.copy(small_folder / "b.png", small_folder / "new\nline.png")
    for empty in ("zero.png", "empty.jpg"):  # no cells to count twice: each its error row, no copy
        (small_folder / empty).write_bytes(b"")
    assert main(["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(tmp_path / "c.csv"),
                 "--no-progress"]) in (0, 1)
    err = capsys.readouterr().err
    [note] = [line for line in err.splitlines() if "hold the same bytes" in line]
    assert note.startswith("note: 1 file(s)") and "new\\nline.png = " in note, note
    assert "labels" not in note and "link_a" not in note and "zero.png" not in note


def test_models_card_prints_a_models_card(capsys):
    """No command showed a model's card (a tester read card.json, hundreds of inherited image hashes in it)."""
    assert main(["models", "--card", "unet-density"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["name"] == "unet-density" and card["output_kind"] == "density" and "metrics" in card
    hashes = card["training"].get("train_sha256")
    assert hashes is None or (isinstance(hashes, str) and hashes.endswith("items>")), "shortened to their number"
    assert main(["models", "--card", "no-such-model"]) == 2 and "unknown model" in capsys.readouterr().err


def test_resume_with_fewer_inputs_keeps_every_earlier_row(small_folder, tmp_path, capsys, monkeypatch):
    """A tester resumed a 29-image CSV with two of its files: 27 rows were dropped in silence."""
    out = tmp_path / "c.csv"
    assert main(["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(out), "--no-progress"]) == 0
    before = out.read_bytes()
    capsys.readouterr()
    for extra in ([], ["--split-mode", "off"]):
        rc = main(["count", str(small_folder / "a.png"), "--model", CLASSICAL_NAME, "--out", str(out), "--no-progress",
                   "--resume", *extra])
        assert rc == 2
        err = capsys.readouterr().err
        assert f"holds 1 image(s) that are not among these inputs ({small_folder / 'b.png'})" in err
        assert out.read_bytes() == before
    # the same folder by its absolute path, and a file deleted since, resume (a reviewer's cases)
    monkeypatch.chdir(tmp_path)
    rel = ["count", "imgs", "--model", CLASSICAL_NAME, "--out", "r.csv", "--no-progress"]
    assert main(rel) == 0
    assert main(["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", "r.csv", "--no-progress",
                 "--resume"]) == 0
    assert main(rel) == 0  # the names as given here, relative
    moved = tmp_path / "b.png"
    (small_folder / "b.png").rename(moved)  # a drive unmounted, a file moved away for a while
    before = pd.read_csv(tmp_path / "r.csv").set_index("file")
    capsys.readouterr()
    assert main([*rel, "--resume"]) == 0
    assert ("1 image(s) in r.csv no longer exist; their rows are kept, counted by the earlier run, and the totals "
            "include them") in capsys.readouterr().err
    after = pd.read_csv(tmp_path / "r.csv").set_index("file")
    b_row = [f for f in before.index if f.endswith("b.png")]
    assert len(after) == 2 and after.loc[b_row, "count"].tolist() == before.loc[b_row, "count"].tolist()
    # the CSV alone says which count no file stands behind now (45 rows "ok" for a folder of 42: a tester)
    assert after.loc[b_row, "reason"].tolist() == ["the file no longer exists: counted by the earlier run, kept"]
    moved.rename(small_folder / "b.png")  # back: counted again (its size and time were not recorded meanwhile)
    assert main([*rel, "--resume"]) == 0
    back = pd.read_csv(tmp_path / "r.csv").set_index("file")
    assert len(back) == 2 and back.loc[b_row, "count"].tolist() == before.loc[b_row, "count"].tolist()


@pytest.mark.parametrize("case, match", [
    ("folder that is not a model", "is a folder without card.json"),
    ("settings file missing", "cannot read the settings file"),
    ("settings file is a folder", "is a folder; give the .json file"),
])
def test_bad_model_folder_and_settings_path_say_what_is_wrong(small_folder, tmp_path, capsys, case, match):
    extra = {"folder that is not a model": ["--model", str(small_folder)],
             "settings file missing": ["--model", CLASSICAL_NAME, "--settings", str(tmp_path / "no.json")],
             "settings file is a folder": ["--model", CLASSICAL_NAME, "--settings", str(tmp_path)]}[case]
    assert main(["count", str(small_folder), "--out", str(tmp_path / "c.csv"), *extra]) == 2
    err = capsys.readouterr().err
    assert match in err and "Errno" not in err and err.count("\n") == 1


def test_quiet_draws_no_progress_bar(small_folder, tmp_path, capsys):
    assert main(["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(tmp_path / "c.csv"), "-q"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""
    # but a file that failed is still named (a tester's -q run printed nothing and exited 1)
    (small_folder / "broken.png").write_bytes(b"not an image")
    assert main(["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(tmp_path / "c.csv"), "-q"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "failed: " in captured.err and "broken.png" in captured.err
    assert captured.err.count("broken.png") == 1, "named once, not before a reason that names it too"


def test_unknown_model_exits_2_with_valid_names(small_folder, tmp_path, capsys):
    rc = main(["count", str(small_folder), "--model", "no-such-model", "--out", str(tmp_path / "c.csv")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "no-such-model" in err and CLASSICAL_NAME in err
    assert not (tmp_path / "c.csv").exists()


def test_no_images_exits_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["count", str(tmp_path / "empty"), "--model", CLASSICAL_NAME, "--out", str(tmp_path / "c.csv")]) == 2
    assert "no image files" in capsys.readouterr().err


def test_models_subcommand_lists_the_baseline(capsys):
    assert main(["models"]) == 0
    assert CLASSICAL_NAME in capsys.readouterr().out


def test_a_user_model_named_like_a_shipped_one_is_said_not_passed_over(capsys):
    """A folder copied into the user's models under a shipped model's name is never used: `models` says so."""
    import shutil

    from cellcount.models.loading import DEFAULT_WEIGHTS_DIR, list_models, user_models_dir

    shipped = next(n for n in list_models() if (DEFAULT_WEIGHTS_DIR / n).is_dir())
    shutil.copytree(DEFAULT_WEIGHTS_DIR / shipped, user_models_dir() / shipped)
    assert main(["models"]) == 0
    assert f"{user_models_dir() / shipped} is named like a shipped model" in capsys.readouterr().out


def test_models_listed_with_figures_on_different_image_sets_say_so(capsys):
    """multihead-unet's 4.25 on the validation half's 53 images was read against the others' 3.18 on 98 (a tester)."""
    from cellcount.models import list_models, load_model

    sizes = {n for name in list_models() if (n := (load_model(name).card.metrics.get("validation") or {}).get("n"))}
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "val MAE" not in out
    if len(sizes) > 1:  # the shipped cards: 98 and 53
        assert "were measured on different image sets" in out and all(f"on {n} validation images" in out for n in sizes)
    else:
        assert "different image sets" not in out


def test_a_settings_file_counts_with_the_model_it_was_saved_for(small_folder, tmp_path, capsys):
    """Settings tuned for one model changed another's counts silently: without --model the file's model is
    used; with another --model the settings apply as asked, with a note; a model not installed is an error."""
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"model": CLASSICAL_NAME, "params": {"min_area_px": 100000}}))
    out = tmp_path / "c.csv"
    assert main(["count", str(small_folder), "--settings", str(settings), "--out", str(out), "--no-progress"]) == 0
    assert f"counting with {CLASSICAL_NAME}, the model" in capsys.readouterr().err
    counted = pd.read_csv(out)
    assert (counted["model"] == CLASSICAL_NAME).all() and (counted["count"] == 0).all()
    settings.write_text(json.dumps({"model": "someone-elses-model", "params": {"min_area_px": 100000}}))
    assert main(["count", str(small_folder), "--settings", str(settings), "--out", str(out), "--no-progress"]) == 2
    assert "was saved for the model 'someone-elses-model', which is not installed" in capsys.readouterr().err
    assert main(["count", str(small_folder), "--settings", str(settings), "--model", CLASSICAL_NAME,
                 "--out", str(out), "--no-progress"]) == 0
    said = capsys.readouterr().err
    assert f"saved for someone-elses-model; its settings are applied to {CLASSICAL_NAME}" in said
    # the card values it replaces are named (a fine-tune's learnt nucleus size went unsaid, a tester)
    card_area = resolve_params(load_model(CLASSICAL_NAME), {}).min_area_px
    assert f"replacing 1 of its card's: min_area_px {card_area} -> 100000" in said
    # set again on the command line, it is not the file's to replace; a file naming no model is said the same way
    assert main(["count", str(small_folder), "--settings", str(settings), "--model", CLASSICAL_NAME, "--min-area-px",
                 "3", "--out", str(out), "--no-progress"]) == 0
    assert "of its card's" not in capsys.readouterr().err
    settings.write_text(json.dumps({"min_area_px": 100000}))
    assert main(["count", str(small_folder), "--settings", str(settings), "--model", CLASSICAL_NAME,
                 "--out", str(out), "--no-progress"]) == 0
    assert (f"names no model: its settings are applied to {CLASSICAL_NAME} as asked, replacing 1 of its card's: "
            f"min_area_px {card_area} -> 100000") in capsys.readouterr().err


def test_a_settings_file_of_weights_since_replaced_says_so(small_folder, tmp_path, capsys):
    """A fine-tune replaced (--overwrite) under the same name took settings saved for its old weights in silence;
    --resume already said the weights had changed."""
    sha = load_model("unet-mask").card.sha256
    assert sha
    settings = tmp_path / "settings.json"
    out = ["--out", str(tmp_path / "c.csv"), "--no-progress"]
    for saved, warned in (("0" * 64, True), (sha, False)):
        settings.write_text(json.dumps({"model": "unet-mask", "model_sha256": saved, "params": {"min_area_px": 5}}))
        assert main(["count", str(small_folder / "a.png"), "--settings", str(settings), *out]) == 0
        assert ("unet-mask is not the model" in capsys.readouterr().err) == warned


def test_settings_json_is_applied_and_flags_override_it(small_folder, tmp_path):
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"model": CLASSICAL_NAME, "params": {"min_area_px": 100000, "threshold": 0.6}}))

    def run(*extra):
        out = tmp_path / f"c{len(extra)}.csv"
        assert main(["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(out), "--no-progress",
                     *extra]) == 0
        return pd.read_csv(out), json.loads(out.with_suffix(".settings.json").read_text())["params"]

    default, p0 = run()
    huge_min, p1 = run("--settings", str(settings))
    flag_wins, p2 = run("--settings", str(settings), "--min-area-px", "0", "--no-watershed")
    assert (default["count"] > 0).all() and p0 == resolve_params(load_model(CLASSICAL_NAME)).acting("mask")
    assert (huge_min["count"] == 0).all() and (p1["min_area_px"], p1["threshold"]) == (100000, 0.6)
    assert (flag_wins["count"] > 0).all()
    assert (p2["min_area_px"], p2["threshold"], p2["split_mode"]) == (0, 0.6, "off")  # old flag still read
    assert json.loads(flag_wins.loc[0, "settings"])["min_area_px"] == 0
    flips, p3 = run("--test-time-flips")
    assert p3["test_time_flips"] is True and (flips["count"] == default["count"]).all()  # Otsu: pointwise
    _, p4 = run("--nucleus-diameter-px", "40", "--auto-nucleus-size")
    assert p4["nucleus_diameter_px"] == 40.0 and p4["auto_nucleus_size"] is True


@pytest.mark.slow
def test_finetune_subcommand_delegates_to_cellcount_finetune(tiny_model, tmp_path, draw_disks, capsys):
    import numpy as np
    from PIL import Image

    from cellcount.models import list_models, save_model

    base = tiny_model(kind="mask")
    save_model(base.net, base.card, tmp_path / "base")
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        labels = draw_disks((40, 40), [(10, 10), (28, 20 + i)], 5)
        Image.fromarray(np.where(labels > 0, 200, 20).astype(np.uint8)).save(data / f"a{i}.png")
        tifffile.imwrite(data / f"a{i}_labels.tif", labels.astype(np.uint16))
    rc = main(["finetune", "--from", str(tmp_path / "base"), "--data", str(data), "--name", "via-cli", "--steps", "1"])
    assert rc == 0 and "saved via-cli" in capsys.readouterr().out and "via-cli" in list_models()
    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    assert "--from" in capsys.readouterr().out


def test_progress_bar_on_stderr(small_folder, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # a terminal: the bar (a log gets plain lines)
    n = len(list(small_folder.glob("*.png")))
    assert main(["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(tmp_path / "c.csv")]) == 0
    err = capsys.readouterr().err
    assert f"{n}/{n}" in err and "image" in err  # tqdm: done/total and the unit


def test_plane_option_counts_a_plane_or_the_projection_of_a_stack(tmp_path, capsys):
    """--plane N counts that plane, --plane max their maximum projection, neither flagged; the choice is in the
    settings file, and --resume does not keep rows counted with another plane."""
    import numpy as np

    stack = np.zeros((3, 48, 48), np.uint8)
    for z, (y, x) in enumerate([(6, 6), (6, 30), (30, 6)]):
        stack[z, y:y + 10, x:x + 10] = 200  # one nucleus in focus per plane
    folder = tmp_path / "stacks"
    folder.mkdir()
    tifffile.imwrite(folder / "stack.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    out = tmp_path / "counts.csv"
    base = ["count", str(folder), "--model", CLASSICAL_NAME, "--out", str(out), "--no-progress"]
    rows = {}
    for plane in (None, "max", "2"):
        assert main(base + ([] if plane is None else ["--plane", plane])) == 0
        rows[plane] = pd.read_csv(out).iloc[0]
    assert rows[None]["count"] == 1 and bool(rows[None]["check"]) and "--plane" in rows[None]["check_reasons"]
    # the baseline flags every count (no calibrated rule), for that reason alone once a plane is chosen
    from cellcount.models.loading import BASELINE_CHECK

    assert rows["max"]["count"] == 3 and rows["max"]["check_reasons"] == BASELINE_CHECK
    assert rows["2"]["count"] == 1 and rows["2"]["check_reasons"] == BASELINE_CHECK
    assert json.loads(out.with_name("counts.settings.json").read_text())["plane"] == 2
    # the CSV says which plane each count is of, as the Batch page's does (apart from its settings file)
    assert "plane" not in rows[None] and rows["max"]["plane"] == "max" and str(rows["2"]["plane"]) == "2"
    assert list(pd.read_csv(out).columns[:2]) == ["file", "plane"]
    capsys.readouterr()
    assert main(base + ["--plane", "2", "--resume"]) == 0
    assert "already counted" in capsys.readouterr().err and list(pd.read_csv(out)["plane"]) == [2]
    assert main(base + ["--plane", "max", "--resume"]) == 0  # rows of plane 2 are not kept for max
    assert "another --plane" in capsys.readouterr().err and pd.read_csv(out).iloc[0]["count"] == 3
    for bad in ("-1", "mean"):
        with pytest.raises(SystemExit) as exc:
            main(base + ["--plane", bad])
        assert exc.value.code == 2
    assert "a plane number >= 0 or 'max'" in capsys.readouterr().err
    assert main(base + ["--plane", "7"]) == 1  # out of range for this file: an error row, the batch goes on
    assert "out of range" in pd.read_csv(out).iloc[0]["reason"]


def test_a_settings_file_carries_the_plane_to_count_and_from_runs_export(tmp_path, capsys):
    """The plane saved with the settings (the app's Settings JSON, the run's settings file, runs --export
    --settings-out) is counted again by count --settings; --plane given on the command line wins."""
    import numpy as np

    stack = np.zeros((3, 48, 48), np.uint8)
    for z, (y, x) in enumerate([(6, 6), (6, 30), (30, 6)]):
        stack[z, y:y + 10, x:x + 10] = 200
    folder = tmp_path / "stacks"
    folder.mkdir()
    tifffile.imwrite(folder / "stack.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"model": CLASSICAL_NAME, "params": {}, "plane": "max"}))
    out = tmp_path / "counts.csv"
    base = ["count", str(folder), "--model", CLASSICAL_NAME, "--out", str(out), "--no-progress"]
    assert main(base + ["--settings", str(settings)]) == 0
    assert pd.read_csv(out).iloc[0]["count"] == 3, "the file's plane: the projection"
    assert json.loads(out.with_name("counts.settings.json").read_text())["plane"] == "max"
    assert main(base + ["--settings", str(settings), "--plane", "1"]) == 0
    assert pd.read_csv(out).iloc[0]["count"] == 1, "--plane wins over the file"
    settings.write_text(json.dumps({"params": {}, "plane": -2}))
    assert main(base + ["--settings", str(settings)]) == 2
    assert "plane must be a plane number >= 0 or 'max'" in capsys.readouterr().err
    exported = tmp_path / "exported.settings.json"
    run_id = int(list_runs()["id"].max())
    assert main(["runs", "--export", str(run_id), "--out", str(tmp_path / "x.csv"), "--settings-out",
                 str(exported)]) == 0
    assert json.loads(exported.read_text())["plane"] == 1
    # into folders not made yet, as count writes (a tester's export named a temporary file in the error)
    assert main(["runs", "--export", str(run_id), "--out", str(tmp_path / "new" / "x.csv"), "--settings-out",
                 str(tmp_path / "new2" / "s.json")]) == 0
    assert (tmp_path / "new" / "x.csv").read_text() == (tmp_path / "x.csv").read_text()
    assert json.loads((tmp_path / "new2" / "s.json").read_text())["plane"] == 1
    # a device is refused: the rename replaced /dev/null itself with the CSV (a tester, as root)
    for option in ("--out", "--settings-out"):
        assert main(["runs", "--export", str(run_id), option, "/dev/null"]) == 2
        assert "device or process entry" in capsys.readouterr().err


def test_warnings_read_as_one_plain_line(capsys):
    """A BinaryMaskWarning printed the source file and line that raised it; users see one line."""
    import warnings

    from cellcount.cliparams import plain_warnings

    before = warnings.showwarning
    with plain_warnings():
        warnings.simplefilter("always")
        warnings.warn("a.png is a binary mask", UserWarning, stacklevel=1)
    assert capsys.readouterr().err == "warning: a.png is a binary mask\n"
    assert warnings.showwarning is before, "a script calling main() keeps its own warnings"


def test_labels_dir_with_a_density_model_says_it_writes_nothing(tiny_models, samples_dir, tmp_path, capsys):
    labels = tmp_path / "labels"
    assert main(["count", str(samples_dir / "s01_sparse_small.png"), "--model", "tiny-density", "--labels-dir",
                 str(labels), "--out", str(tmp_path / "c.csv"), "--no-progress"]) == 0
    assert "draws no outlines: --labels-dir writes nothing" in capsys.readouterr().err
    assert not labels.exists()
    # the backend that ran is recorded with the settings (bf16 and fp32 may differ by an object)
    from cellcount.models.backends import BACKENDS

    assert json.loads((tmp_path / "c.settings.json").read_text())["backend"] in BACKENDS  # measured on this machine
    assert main(["count", str(samples_dir / "s01_sparse_small.png"), "--model", "tiny-density", "--backend", "torch",
                 "--out", str(tmp_path / "c.csv"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "c.settings.json").read_text())["backend"] == "torch"


def test_a_folder_named_points_is_counted(samples_dir, tmp_path):
    """dots/ and points/ hold ground truth only beside images in a labelled set; count counts them."""
    folder = tmp_path / "points"
    folder.mkdir()
    shutil.copy(samples_dir / "s01_sparse_small.png", folder / "s1.png")
    assert main(["count", str(folder), "--model", CLASSICAL_NAME, "--out", str(tmp_path / "c.csv"),
                 "--no-progress"]) == 0
    assert len(pd.read_csv(tmp_path / "c.csv")) == 1


def test_labels_dir_has_an_index_of_which_label_image_is_whose(samples_dir, tmp_path):
    """a/img.png and b/img.png gave img_labels.tif and img_2_labels.tif with no record of which was which."""
    for sub in ("a", "b"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        shutil.copy(samples_dir / "s01_sparse_small.png", tmp_path / "in" / sub / "img.png")
    labels = tmp_path / "labels"
    assert main(["count", str(tmp_path / "in"), "--model", CLASSICAL_NAME, "--labels-dir", str(labels),
                 "--out", str(tmp_path / "c.csv"), "--no-progress"]) == 0
    index = pd.read_csv(labels / "labels_index.csv")
    assert sorted(index["labels_file"]) == ["img_2_labels.tif", "img_labels.tif"]
    assert set(index["file"]) == set(pd.read_csv(tmp_path / "c.csv")["file"])
    assert all((labels / f).is_file() for f in index["labels_file"])


def test_labels_dir_never_replaces_a_label_image_it_did_not_write(samples_dir, tmp_path):
    """``count b/img.png --labels-dir b`` wrote over the user's own b/img_labels.tif (their ground truth); a
    later run may replace what an earlier run wrote, as the folder's index records."""
    folder = tmp_path / "b"
    folder.mkdir()
    shutil.copy(samples_dir / "s01_sparse_small.png", folder / "img.png")
    theirs = folder / "img_labels.tif"
    tifffile.imwrite(theirs, (pd.RangeIndex(16).to_numpy().reshape(4, 4)).astype("int32"))
    before = theirs.read_bytes()
    argv = ["count", str(folder / "img.png"), "--model", CLASSICAL_NAME, "--labels-dir", str(folder),
            "--out", str(tmp_path / "c.csv"), "--no-progress"]
    for _ in range(2):
        assert main(argv) == 0
        assert theirs.read_bytes() == before
        assert list(pd.read_csv(folder / "labels_index.csv")["labels_file"]) == ["img_2_labels.tif"]
    assert sorted(p.name for p in folder.glob("*_labels.tif")) == ["img_2_labels.tif", "img_labels.tif"]


def test_a_labels_dir_inside_the_counted_folder_is_written_over_run_after_run(samples_dir, tmp_path):
    """``count b --labels-dir b/labels``: each rerun took its own earlier label images (listed among the inputs,
    left out as ground truth) for inputs not to overwrite, and added x_2_labels.tif, x_3_labels.tif, ..."""
    folder = tmp_path / "b"
    folder.mkdir()
    shutil.copy(samples_dir / "s01_sparse_small.png", folder / "img.png")
    argv = ["count", str(folder), "--model", CLASSICAL_NAME, "--labels-dir", str(folder / "labels"),
            "--out", str(tmp_path / "c.csv"), "--no-progress"]
    for _ in range(3):
        assert main(argv) == 0
    assert sorted(p.name for p in (folder / "labels").iterdir()) == ["img_labels.tif", "labels_index.csv"]
    assert list(pd.read_csv(tmp_path / "c.csv")["file"]) == [str(folder / "img.png")]


def test_labels_dir_remembers_label_images_of_earlier_runs_of_other_images(small_folder, tmp_path):
    """Run a b, then a alone, then a b: the index of the second run forgot b's label image, so the third wrote
    b_2_labels.tif beside a stale b_labels.tif (which would later pair with b.png as its ground truth)."""
    labels = tmp_path / "labels"
    out = ["--model", CLASSICAL_NAME, "--labels-dir", str(labels), "--out", str(tmp_path / "c.csv"), "--no-progress"]
    a, b = str(small_folder / "a.png"), str(small_folder / "b.png")
    for run in ([a, b], [a], [a, b]):
        assert main(["count", *run, *out]) == 0
    assert sorted(p.name for p in labels.glob("*.tif")) == ["a_labels.tif", "b_labels.tif"]
    assert sorted(pd.read_csv(labels / "labels_index.csv")["labels_file"]) == ["a_labels.tif", "b_labels.tif"]


def test_count_leaves_dot_annotations_in_a_dots_folder_uncounted(samples_dir, tmp_path):
    """The counting benchmarks' images/ + dots/ layout, as the fine-tuning README describes it: the dot images
    were counted as cells (rows of 0-139 'cells' each); an image folder named points/ is still counted."""
    for folder, name in (("images", "001cell.png"), ("dots", "001dots.png"), ("images", "a.png"), ("dots", "a.png"),
                         ("points", "t1.png")):
        (tmp_path / "in" / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(samples_dir / "s01_sparse_small.png", tmp_path / "in" / folder / name)
    assert main(["count", str(tmp_path / "in"), "--model", CLASSICAL_NAME, "--out", str(tmp_path / "c.csv"),
                 "--no-progress"]) == 0
    counted = sorted(pd.read_csv(tmp_path / "c.csv")["file"].map(lambda f: "/".join(f.split("/")[-2:])))
    assert counted == ["images/001cell.png", "images/a.png", "points/t1.png"]
    # a microscope's numbering restarted per folder: ctrl/img001 beside points/img001 are both images
    for folder in ("ctrl", "points"):
        (tmp_path / "exp" / folder).mkdir(parents=True)
        shutil.copy(samples_dir / "s01_sparse_small.png", tmp_path / "exp" / folder / "img001.png")
    assert main(["count", str(tmp_path / "exp"), "--model", CLASSICAL_NAME, "--out", str(tmp_path / "e.csv"),
                 "--no-progress"]) == 0
    assert len(pd.read_csv(tmp_path / "e.csv")) == 2


def test_resume_after_a_run_without_an_inputs_file_goes_by_the_time(small_folder, tmp_path, capsys):
    """A counts CSV written before the inputs file existed: a file written after that run started is counted again."""
    import os
    import time

    out = tmp_path / "c.csv"
    argv = ["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    (tmp_path / "c.inputs.json").unlink()
    later = time.time() + 5
    os.utime(small_folder / "a.png", (later, later))
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 0
    assert "1 image(s) changed since" in capsys.readouterr().err


def test_ctrl_c_while_loading_is_an_exit_code_not_a_traceback(small_folder, tmp_path, capsys, monkeypatch):
    import cellcount.cli as cli

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_count", interrupted)
    assert main(["count", str(small_folder), "--out", str(tmp_path / "c.csv")]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"


def test_a_spreadsheet_name_for_the_csv_is_refused_before_counting(small_folder, tmp_path, capsys):
    """A tester's --out c.xlsx held CSV text, which Excel refused to open."""
    rc = main(["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(tmp_path / "c.xlsx"), "--no-progress"])
    assert rc == 2 and "name it c.csv" in capsys.readouterr().err
    assert not list(tmp_path.glob("c.*"))
    rc = main(["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(tmp_path / "c.csv"),
               "--objects", str(tmp_path / "o.XLSX"), "--no-progress"])
    assert rc == 2 and "--objects" in capsys.readouterr().err
    # an image's name among the images (--out b.tif) replaced nothing and wrote no table that the next run reads
    image = small_folder / "b.png"
    before = image.read_bytes()
    rc = main(["count", str(small_folder / "a.png"), "--model", CLASSICAL_NAME, "--out", str(image), "--no-progress"])
    assert rc == 2 and "is named like an image (.png): the tables are written as CSV; name it b.csv" in \
        capsys.readouterr().err
    assert image.read_bytes() == before and sorted(p.name for p in small_folder.iterdir()) == ["a.png", "b.png"]


def test_options_that_do_nothing_with_the_model_are_named(small_folder, tmp_path, capsys):
    """A tester's --min-area-px 500 with a density model, --count-source with a mask model and --test-time-flips
    with the classical baseline were accepted in silence, the counts unchanged."""
    out = ["--out", str(tmp_path / "c.csv"), "--no-progress"]
    assert main(["count", str(small_folder), "--model", CLASSICAL_NAME, "--test-time-flips",
                 "--peak-min-distance-px", "9", "--min-area-px", "3", *out]) == 0
    err = capsys.readouterr().err
    assert ("note: these options do nothing here: --peak-min-distance-px (classical-otsu: a segmentation model has "
            "no density map); --test-time-flips (classical-otsu has no network") in err
    assert "--min-area-px" not in err, "a mask setting acts for a mask model"
    assert main(["count", str(small_folder), "--model", CLASSICAL_NAME, "--split-mode", "off", "--min-distance-px", "5",
                 *out]) == 0
    assert "--min-distance-px (split mode 'off' uses no distance between centres)" in capsys.readouterr().err
    assert main(["count", str(small_folder), "--model", CLASSICAL_NAME, "--min-area-px", "3", *out, "-q"]) == 0
    assert capsys.readouterr().err == ""


def test_a_labels_tree_mirroring_the_images_tree_is_not_counted(samples_dir, tmp_path, capsys):
    """The layout the README gives for Evaluate (images/p1/A01.png, labels/p1/A01.png): `count tree` counted the
    label images too, exit 0, the total doubled (a tester)."""
    for plate in ("p1", "p2"):
        for part, name in (("images", "s01_sparse_small.png"), ("labels", "s01_sparse_small_labels.tif")):
            (tmp_path / "tree" / part / plate).mkdir(parents=True)
            shutil.copy(samples_dir / name, tmp_path / "tree" / part / plate / "A01.png")
    out = tmp_path / "c.csv"
    assert main(["count", str(tmp_path / "tree"), "--model", CLASSICAL_NAME, "--out", str(out), "--no-progress"]) == 0
    assert sorted(pd.read_csv(out)["file"]) == [str(tmp_path / "tree" / "images" / p / "A01.png") for p in ("p1", "p2")]
    assert "skipped 2 file(s) named like ground truth (labels/p1/A01.png, labels/p2/A01.png)" in capsys.readouterr().err


def test_annotation_tables_named_on_the_command_line_are_left_out_like_label_images(samples_dir, tmp_path, capsys):
    """`count folder/*` names the folder's _points.csv too: left out as ground truth (as the app does), not
    failed rows that make the exit status 1."""
    folder = tmp_path / "set"
    folder.mkdir()
    for name in ("s01_sparse_small.png", "s01_sparse_small_labels.tif", "s01_sparse_small_points.csv"):
        shutil.copy(samples_dir / name, folder / name)
    (folder / "notes.txt").write_text("not an image")
    named = [str(p) for p in sorted(folder.iterdir())]
    assert main(["count", *named, "--model", CLASSICAL_NAME, "--out", str(tmp_path / "c.csv"), "--no-progress"]) == 1
    rows = pd.read_csv(tmp_path / "c.csv").set_index("file")
    assert sorted(rows.index) == [str(folder / "notes.txt"), str(folder / "s01_sparse_small.png")]
    assert "2 file(s) named like ground truth" in capsys.readouterr().err
    (folder / "notes.txt").unlink()
    named = [str(p) for p in sorted(folder.iterdir())]
    # resumed without notes.txt: its error row is dropped, not a reason to refuse the resume
    assert main(["count", *named, "--model", CLASSICAL_NAME, "--out", str(tmp_path / "c.csv"), "--no-progress",
                 "--resume"]) == 0
    assert pd.read_csv(tmp_path / "c.csv")["file"].tolist() == [str(folder / "s01_sparse_small.png")]


def test_resume_with_another_backend_says_so_and_records_both(tiny_models, small_folder, tmp_path, capsys):
    """bf16 and fp32 may differ by an object: a resumed CSV whose rows ran with two backends must say so."""
    import torch

    from cellcount.models.backends import available_backends

    if torch.cuda.is_available():
        pytest.skip("a GPU always runs torch on it: one backend")
    other = next((b for b in available_backends() if b != "torch"), None)
    if other is None:
        pytest.skip("only the torch backend here")
    out = tmp_path / "c.csv"
    base = ["count", "--model", "tiny-density", "--out", str(out), "--no-progress"]
    assert main([*base[:1], str(small_folder / "a.png"), *base[1:], "--backend", "torch"]) == 0
    capsys.readouterr()
    assert main([*base[:1], str(small_folder), *base[1:], "--backend", other, "--resume"]) == 0
    err = capsys.readouterr().err
    assert f"include rows counted with the torch backend, the rest are counted with {other}" in err
    settings = json.loads((tmp_path / "c.settings.json").read_text())
    assert settings["backend"] == other and settings["backends_of_resumed_rows"] == ["torch"]
    # back to torch with nothing left to count: the record stays as it was, each backend where it counted (no note
    # of "the rest" counted with torch: a tester read it after "0 to go")
    assert main([*base[:1], str(small_folder), *base[1:], "--backend", "torch", "--resume"]) == 0
    assert "the rest are counted with" not in capsys.readouterr().err
    kept = json.loads((tmp_path / "c.settings.json").read_text())
    assert kept["backend"] == other and kept["backends_of_resumed_rows"] == ["torch"]
    # a run that resumes nothing records one backend
    assert main([*base[:1], str(small_folder), *base[1:], "--backend", "torch"]) == 0
    assert "backends_of_resumed_rows" not in json.loads((tmp_path / "c.settings.json").read_text())
    # rows of workers, whose run records no backend (each chose on its machine): their column says it
    assert main([*base[:1], str(small_folder / "a.png"), *base[1:], "--backend", other]) == 0
    record = json.loads((tmp_path / "c.settings.json").read_text())
    (tmp_path / "c.settings.json").write_text(json.dumps({k: v for k, v in record.items() if k != "backend"}))
    capsys.readouterr()
    assert main([*base[:1], str(small_folder), *base[1:], "--backend", "torch", "--resume"]) == 0
    assert f"include rows counted with the {other} backend, the rest are counted with torch" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["evaluate", "finetune", "train"])
def test_sub_commands_name_themselves_as_typed(command, capsys):
    """``cellcount evaluate --help`` said "usage: python -m cellcount.evaluate"; the module form keeps its own."""
    import importlib

    from cellcount.cli import MODULE_COMMANDS

    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert capsys.readouterr().out.startswith(f"usage: cellcount {command} ")
    with pytest.raises(SystemExit):
        importlib.import_module(MODULE_COMMANDS[command][0]).main(["--help"])
    assert capsys.readouterr().out.startswith(f"usage: python -m cellcount.{command} ")


def test_an_image_above_the_pixel_cap_says_how_to_count_it(small_folder, tmp_path, capsys):
    """The refusal alone left a tester with no way forward: the CLI says that TIFF and OME-Zarr images are counted
    by blocks with --workers, and what to do with other formats."""
    rc = main(["count", str(small_folder / "a.png"), "--model", CLASSICAL_NAME, "--out", str(tmp_path / "c.csv"),
               "--no-progress", "--max-pixels", "100"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "above the cap of 100 pixels (max_pixels)" in err
    assert "note: images above the pixel cap: TIFF and OME-Zarr ones are counted by blocks with --workers N" in err
    reason = pd.read_csv(tmp_path / "c.csv")["reason"].iloc[0]  # the row says it too: a table is read without stderr
    assert "above the cap of 100 pixels (max_pixels); images above the pixel cap: TIFF and OME-Zarr ones" in reason
    assert err.count("images above the pixel cap: TIFF") == 1, "said once on stderr: the failed line names the refusal"


def test_an_image_above_the_pixel_cap_on_workers_says_which_formats_go_by_blocks(capsys):
    """With --workers a PNG above the cap had its refusal alone, where a TIFF would have been counted by blocks."""
    import argparse

    from cellcount.cli import _report
    from cellcount.io.read import PIXEL_CAP_TEXT

    failed = [("big.png", f"big.png: image is 4,096 x 4,096 = 16,777,216 pixels (H x W), above the cap of 4,000,000 "
                          f"{PIXEL_CAP_TEXT}")]
    args = argparse.Namespace(quiet=True, workers=1, scheduler=None, out="c.csv")
    _report(args, load_model(CLASSICAL_NAME), n_ok=0, n_err=1, total=0, n_check=0, total_check=0, kept=0, done=set(),
            todo=[], skipped=[], failed=failed, whole=[], no_labels=[])
    err = capsys.readouterr().err
    assert "counted by blocks only where they are TIFF or OME-Zarr; other formats (PNG, JPEG, BMP): export them" in err


def test_a_file_above_the_byte_cap_says_how_to_count_it(tmp_path, capsys):
    """A 1.2 GB whole-slide TIFF read "above the cap of 1,073,741,824 bytes (max_bytes)" and no more (a tester): by
    blocks with --workers it is counted."""
    import argparse

    from cellcount.cli import _report
    from cellcount.io.read import read_image

    big = tmp_path / "slide.tif"
    tifffile.imwrite(big, np.zeros((64, 64), np.uint8))
    with pytest.raises(Exception) as refused:
        read_image(big, max_bytes=100)
    failed = [("slide.tif", str(refused.value))]
    args = argparse.Namespace(quiet=True, workers=None, scheduler=None, out="c.csv")
    _report(args, load_model(CLASSICAL_NAME), n_ok=0, n_err=1, total=0, n_check=0, total_check=0, kept=0, done=set(),
            todo=[], skipped=[], failed=failed, whole=[], no_labels=[])
    assert "note: files above the byte cap: a whole slide (a TIFF above the pixel cap too) is counted by blocks" in (
        capsys.readouterr().err)


def test_block_options_are_checked_before_any_worker_starts(small_folder, tmp_path, capsys):
    """--region-grid 0x2 started workers and gave every image an error row; small blocks say what they cost."""
    argv = ["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(tmp_path / "c.csv"), "--workers", "1",
            "--no-progress", "--block-px", "320", "--region-grid", "0x2"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--region-grid must look like 4x4" in err and "blocks of 320 px hold little context" in err
    assert not (tmp_path / "c.csv").exists()


def test_block_options_in_process_are_said_to_change_nothing(small_folder, tmp_path, capsys):
    """--block-px and --overlap-px were accepted in silence in-process, where every image is counted whole."""
    argv = ["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(tmp_path / "c.csv"), "--no-progress"]
    assert main([*argv, "--block-px", "128", "--overlap-px", "16"]) == 0
    assert "--block-px and --overlap-px set the blocks of huge images counted with --workers or --scheduler; this run " \
           "counts each image whole, so they change nothing" in capsys.readouterr().err
    assert main(argv) == 0
    assert "--block-px" not in capsys.readouterr().err


def test_an_earlier_runs_counts_are_replaced_saying_how_to_get_them_back(small_folder, samples_dir, tmp_path, capsys):
    """Two plates counted from one folder with the default counts.csv: the second replaced the first's 2 rows
    without a word (a tester). Rows the history keeps as they are in the file are replaced naming their run; a
    table edited by hand (the same number of rows), or one the history cannot give back, is kept beside it."""
    from cellcount.history import run_rows

    out = tmp_path / "counts.csv"
    assert main(["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(out), "--no-progress"]) == 0
    first = pd.read_csv(out)
    capsys.readouterr()
    one = samples_dir / "s02_dense_clusters.png"
    assert main(["count", str(one), "--model", CLASSICAL_NAME, "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"note: replacing {out}, the rows of run " in err and " --out FILE` writes them again" in err
    run_id = int(err.split("`cellcount runs --export ")[1].split(" ")[0])
    assert list(run_rows(run_id)["file"]) == list(first["file"]) and len(pd.read_csv(out)) == 1
    assert not list(tmp_path.glob("counts.replaced-*.csv"))
    edited = out.read_text().replace(f",{pd.read_csv(out)['count'][0]},", ",999,", 1)  # corrected by hand
    out.write_text(edited)
    assert main(["count", str(one), "--model", CLASSICAL_NAME, "--out", str(out), "--no-progress"]) == 0
    (kept,) = tmp_path.glob("counts.replaced-*.csv")
    assert kept.read_text() == edited and f"held rows the run history has no copy of; kept as {kept}" in \
        capsys.readouterr().err
    out.write_text("file,count\n")  # a header alone: nothing to keep
    assert main(["count", str(one), "--model", CLASSICAL_NAME, "--out", str(out), "--no-progress", "-q"]) == 0
    assert len(list(tmp_path.glob("counts.replaced-*.csv"))) == 1


def test_an_earlier_object_table_is_kept_before_a_run_replaces_it(small_folder, tmp_path, capsys):
    """The run history keeps no per-object rows, so a re-run (another Min. area, say) lost the first object table
    without a word (a tester). One that holds rows is kept beside it; a --resume appends to it instead."""
    out, objects = tmp_path / "counts.csv", tmp_path / "objects.csv"
    argv = ["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(out), "--objects", str(objects),
            "--no-progress"]
    assert main(argv) == 0
    first = objects.read_text()
    assert len(first.splitlines()) > 2 and not list(tmp_path.glob("objects.replaced-*.csv"))
    capsys.readouterr()
    assert main(argv + ["--min-area", "60"]) == 0
    (kept,) = tmp_path.glob("objects.replaced-*.csv")
    assert kept.read_text() == first and objects.read_text() != first
    assert f"note: {objects} held rows; kept as {kept}" in capsys.readouterr().err
    objects.write_text("file,label\n")  # a header alone: nothing to keep
    assert main(argv + ["-q"]) == 0
    assert len(list(tmp_path.glob("objects.replaced-*.csv"))) == 1


def test_a_one_line_file_an_output_would_replace_is_kept(small_folder, tmp_path, capsys):
    """A one-line settings JSON given as --out, and a one-line note as --objects, were replaced without a copy: a
    single line was taken for a header alone. One of this program's header lines alone still is."""
    out, objects = tmp_path / "tuned.json", tmp_path / "note.txt"
    out.write_text('{"model": "unet-mask", "params": {"threshold": 0.55}}')
    objects.write_text("important single line\n")
    assert main(["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(out), "--objects", str(objects),
                 "--no-progress"]) == 0
    (kept_out,) = tmp_path.glob("tuned.replaced-*.json")
    (kept_objects,) = tmp_path.glob("note.replaced-*.txt")
    assert kept_out.read_text().startswith('{"model"') and kept_objects.read_text() == "important single line\n"
    err = capsys.readouterr().err
    assert f"note: {out} held a line of text the run history has no copy of; kept as {kept_out}" in err
    assert f"note: {objects} held a line of text; kept as {kept_objects}" in err


def test_resume_that_counts_images_again_keeps_the_earlier_tables(small_folder, tmp_path, capsys):
    """--resume with another Min. area counted both images again and replaced their object rows in place: the
    earlier object table (which the run history does not keep) was lost. A resume that only finishes keeps none."""
    out, objects = tmp_path / "counts.csv", tmp_path / "objects.csv"
    argv = ["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(out), "--objects", str(objects),
            "--no-progress", "--resume"]
    assert main(argv) == 0
    assert main(argv) == 0  # nothing to count again: nothing kept
    assert not list(tmp_path.glob("*.replaced-*"))
    first_counts, first_objects = out.read_text(), objects.read_text()
    capsys.readouterr()
    assert main(argv + ["--min-area-px", "60"]) == 0
    (kept_counts,) = tmp_path.glob("counts.replaced-*.csv")
    (kept_objects,) = tmp_path.glob("objects.replaced-*.csv")
    assert kept_counts.read_text() == first_counts and kept_objects.read_text() == first_objects
    assert objects.read_text() != first_objects
    assert "note: --resume counts 2 image(s) again, replacing their rows" in capsys.readouterr().err


def test_a_labels_index_of_the_users_own_is_kept(small_folder, tmp_path, capsys):
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "labels_index.csv").write_text("my,own\n1,2\n")
    assert main(["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(tmp_path / "c.csv"),
                 "--labels-dir", str(labels), "--no-progress"]) == 0
    (kept,) = labels.glob("labels_index.replaced-*.csv")
    assert kept.read_text() == "my,own\n1,2\n" and "is not an index this program wrote" in capsys.readouterr().err
    assert main(["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(tmp_path / "c.csv"),
                 "--labels-dir", str(labels), "--no-progress"]) == 0
    assert len(list(labels.glob("labels_index.replaced-*.csv"))) == 1, "its own index is replaced, not kept"


def test_a_second_run_on_the_same_output_is_refused_while_the_first_writes_it(small_folder, tmp_path, capsys):
    from cellcount.csvout import hold_outputs

    out = tmp_path / "counts.csv"
    out.write_text("file,count\nkept.png,3\n")
    with hold_outputs([out]):  # the first run, still counting (an overlapping cron job)
        rc = main(["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(out), "--no-progress"])
    assert rc == 75 and "another run is writing" in capsys.readouterr().err  # EX_TEMPFAIL: retry later
    assert out.read_text() == "file,count\nkept.png,3\n"  # untouched, no rows spliced in
    # once it has ended, the file is free again and no lock file is left beside it (the user's own table, which
    # the run history holds no copy of, is kept beside it)
    assert main(["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(out), "--no-progress"]) == 0
    assert len(pd.read_csv(out)) == 2 and not list(tmp_path.glob(".*.lock"))
    assert [p.read_text() for p in tmp_path.glob("counts.replaced-*.csv")] == ["file,count\nkept.png,3\n"]


def test_an_output_through_a_symbolic_link_writes_the_linked_file(small_folder, tmp_path, capsys):
    (tmp_path / "run42.csv").write_text("old\n")
    (tmp_path / "latest.csv").symlink_to("run42.csv")
    assert main(["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(tmp_path / "latest.csv"),
                 "--no-progress"]) == 0
    assert (tmp_path / "latest.csv").is_symlink()  # the link stays; the rows are in the file it names
    assert len(pd.read_csv(tmp_path / "run42.csv")) == 2
    for out in ("-", "/dev/stdout"):  # a rename there would replace the device's link itself
        assert main(["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", out]) == 2
        assert "give a file name" in capsys.readouterr().err
    assert not Path("-").exists()
    from cellcount.csvout import not_a_file_problem

    assert not_a_file_problem("/dev/shm/run/c.csv") is None  # an ordinary folder in memory


def test_an_interrupt_while_an_images_rows_are_written_waits_for_all_of_them():
    import os
    import signal

    from cellcount.cli import _whole

    written = []
    with pytest.raises(KeyboardInterrupt):
        with _whole():
            written.append("counts row")
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C between the CSV's row and the run history's
            written.append("history row")
    assert written == ["counts row", "history row"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def test_progress_in_a_log_is_plain_lines_not_a_redrawn_bar(monkeypatch, capsys):
    import cellcount.cli as cli

    monkeypatch.setattr(cli, "PROGRESS_LINE_S", 0.0)
    progress = cli._progress_bar(True)
    for done in range(5):
        progress(done, 4)
    err = capsys.readouterr().err  # captured: no terminal, as in a cron job's log
    assert "\r" not in err and err.splitlines() == ["progress: 1/4 images", "progress: 2/4 images", "progress: 3/4 images"]
    progress.blocks("/data/slide.tif", 3, 16)  # a slide counted by blocks says where it is too (it said nothing)
    progress.blocks("/data/slide.tif", 16, 16)
    assert capsys.readouterr().err.splitlines() == ["progress: slide.tif: block 3/16"]


def test_counting_only_files_named_like_ground_truth_says_so(samples_dir, tmp_path, capsys):
    labels = samples_dir / "s01_sparse_small_labels.tif"
    assert main(["count", str(labels), "--model", CLASSICAL_NAME, "--out", str(tmp_path / "c.csv")]) == 2
    err = capsys.readouterr().err
    assert "every file given is ground truth (samples/s01_sparse_small_labels.tif)" in err
    assert "--include-ground-truth counts images named like it" in err
    assert "no image files found" not in err


def test_an_output_lock_that_cannot_be_had_lets_the_run_go_on(small_folder, tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_locks(fd, op):  # NFS without its lock service, a FUSE share
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    assert main(["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(tmp_path / "c.csv"),
                 "--no-progress"]) == 0
    # and a link into a folder that does not exist yet: created, as output folders are
    (tmp_path / "latest.csv").symlink_to(tmp_path / "runs" / "42.csv")
    monkeypatch.undo()
    assert main(["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(tmp_path / "latest.csv"),
                 "--no-progress"]) == 0
    assert len(pd.read_csv(tmp_path / "runs" / "42.csv")) == 2


def test_rows_written_whole_keep_an_ignored_interrupt_ignored_and_a_write_error_as_it_is():
    import os
    import signal

    from cellcount.cli import _whole

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a job started with &
    try:
        with _whole():
            os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    with pytest.raises(OSError, match="No space"):  # a full disk is reported as such, not as an interrupt
        with _whole():
            os.kill(os.getpid(), signal.SIGINT)
            raise OSError(28, "No space left on device")


def test_the_summary_says_how_much_of_the_total_is_in_flagged_images(samples_dir, tmp_path, capsys):
    """A nearly empty well counted in the thousands (flagged) made most of a run's total, unsaid."""
    assert main(["count", str(samples_dir / "s01_sparse_small.png"), str(samples_dir / "s03_large_nuclei.png"),
                 "--model", CLASSICAL_NAME, "--out", str(tmp_path / "c.csv"), "--no-progress"]) == 0
    rows = pd.read_csv(tmp_path / "c.csv")
    flagged = int(rows.loc[rows["check"], "count"].sum())
    assert f"{int(rows['check'].sum())} flagged 'check this image' (columns check, check_reasons), {flagged} of the " \
           "total in them" in capsys.readouterr().out


def test_a_tsv_output_is_tab_separated_and_resumes(samples_dir, tmp_path, capsys):
    """`--out counts.tsv` was written comma-separated: Excel showed each row in one cell (a tester)."""
    a, b = str(samples_dir / "s01_sparse_small.png"), str(samples_dir / "s03_large_nuclei.png")
    out, objects = tmp_path / "c.tsv", tmp_path / "objects.tsv"
    assert main(["count", a, "--model", "classical-otsu", "--out", str(out), "--objects", str(objects), "-q"]) == 0
    assert out.read_text().splitlines()[0].startswith("file\tmodel\tbackend\tcount\t")
    assert objects.read_text().splitlines()[0].startswith("file\tlabel\t")
    assert main(["count", a, b, "--model", "classical-otsu", "--out", str(out), "--objects", str(objects),
                 "--resume"]) == 0
    out_err = capsys.readouterr()
    assert "1 image(s) already counted with these settings, 1 to go" in out_err.err
    # the total covers both runs' rows: said as such, not as if both were counted now
    assert "counted 1 of the 1 image(s) left (1 kept from before): 2/2 counted with classical-otsu" in out_err.out
    rows = pd.read_csv(out, sep="\t")
    assert sorted(rows["file"]) == sorted([a, b]) and (rows["status"] == "ok").all()
    assert set(pd.read_csv(objects, sep="\t")["file"]) == {a, b}
    # a run again replaces its own rows (the history's copy named), not kept as someone else's table (a reviewer)
    capsys.readouterr()
    assert main(["count", a, b, "--model", "classical-otsu", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "the rows of run" in err and "kept as" not in err
    assert not list(tmp_path.glob("c.replaced-*"))
    # the history exports a run tab-separated to a .tsv too
    run_id = int(err.split("the rows of run ")[1].split(" ")[0])
    assert main(["runs", "--export", str(run_id), "--out", str(tmp_path / "again.tsv")]) == 0
    assert (tmp_path / "again.tsv").read_text().startswith("file\tmodel\tbackend\tcount\t")


def test_resume_of_an_output_whose_settings_file_another_output_wrote_says_so(samples_dir, tmp_path, capsys):
    """cc.csv and cc.tsv share cc.settings.json: resuming cc.csv said it was counted with the other run's model."""
    a = str(samples_dir / "s01_sparse_small.png")
    assert main(["count", a, "--model", "classical-otsu", "--out", str(tmp_path / "cc.csv"), "-q"]) == 0
    assert main(["count", a, "--model", "classical-otsu", "--out", str(tmp_path / "cc.tsv"), "-q"]) == 0
    assert main(["count", a, "--model", "classical-otsu", "--out", str(tmp_path / "cc.csv"), "--resume"]) == 0
    err = capsys.readouterr().err
    assert "cc.settings.json records the run into cc.tsv, not cc.csv" in err and "was counted with" not in err


def test_runs_limit_below_one_is_refused(capsys):
    """`runs --limit 0` said "no runs recorded yet" over a history of 24 runs (a tester)."""
    with pytest.raises(SystemExit) as stop:
        main(["runs", "--limit", "0"])
    assert stop.value.code == 2 and "--limit: must be at least 1, got 0" in capsys.readouterr().err


def test_a_runs_settings_file_is_read_back_by_count_settings(samples_dir, tmp_path):
    """The record beside --out names its output since today: `count --settings cc.settings.json` refused it as an
    unknown key "out" (a reviewer), though the README says to reuse it."""
    a = str(samples_dir / "s01_sparse_small.png")
    assert main(["count", a, "--model", "classical-otsu", "--out", str(tmp_path / "cc.csv"), "-q"]) == 0
    assert json.loads((tmp_path / "cc.settings.json").read_text())["out"] == "cc.csv"
    assert main(["count", a, "--settings", str(tmp_path / "cc.settings.json"), "--out", str(tmp_path / "again.csv"),
                 "-q"]) == 0
    assert pd.read_csv(tmp_path / "again.csv")["count"].tolist() == pd.read_csv(tmp_path / "cc.csv")["count"].tolist()


def test_a_settings_file_without_a_model_says_which_model_counts(small_folder, tmp_path, capsys):
    """A tester saved ``params.to_json()`` from Python: count --settings counted it with the default model in
    silence (29 against 32 with the model they had tuned for)."""
    from cellcount.models import default_model_name

    settings = tmp_path / "bare.json"
    settings.write_text(json.dumps({"min_area_px": 3}))
    assert main(["count", str(small_folder / "a.png"), "--settings", str(settings), "--out",
                 str(tmp_path / "c.csv"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"{settings} names no model: its settings are applied to {default_model_name()}, the default" in err


def test_settings_saved_from_python_count_with_their_model_on_the_command_line(small_folder, tmp_path, capsys):
    from cellcount import settingsfile

    path = settingsfile.save(tmp_path / "tuned.json", load_model(CLASSICAL_NAME), {"min_area_px": 7})
    assert settingsfile.load(path)[0] == CLASSICAL_NAME and settingsfile.load(path)[1]["min_area_px"] == 7
    assert main(["count", str(small_folder / "a.png"), "--settings", str(path), "--out", str(tmp_path / "c.csv"),
                 "--no-progress"]) == 0
    assert f"counting with {CLASSICAL_NAME}, the model named in {path}" in capsys.readouterr().err
    row = pd.read_csv(tmp_path / "c.csv").iloc[0]
    assert row["model"] == CLASSICAL_NAME and json.loads(row["settings"])["min_area_px"] == 7


@pytest.mark.slow
def test_a_run_recorded_with_another_backend_is_said_with_how_to_repeat_it(tiny_models, small_folder, tmp_path,
                                                                             capsys):
    """The same image counted an object apart from Python and from the CLI, each process having chosen its own
    backend: the counts CSV names the backend per row, and a settings file recording another one says so."""
    from cellcount.inference import default_device

    if str(default_device()) != "cpu":
        pytest.skip("a GPU runs PyTorch whatever backend is asked")
    out = tmp_path / "c.csv"
    assert main(["count", str(small_folder / "a.png"), "--model", "tiny-mask", "--backend", "torch", "--out", str(out),
                 "--no-progress"]) == 0
    assert pd.read_csv(out)["backend"].tolist() == ["torch"]
    sidecar = json.loads((tmp_path / "c.settings.json").read_text())
    assert sidecar["backend"] == "torch"
    # the run's settings exported again carry it too, as the Runs page's download does
    assert main(["runs", "--export", str(list_runs(limit=1)["id"].iloc[0]), "--out", str(tmp_path / "x.csv"),
                 "--settings-out", str(tmp_path / "x.json")]) == 0
    assert json.loads((tmp_path / "x.json").read_text())["backend"] == "torch"
    sidecar["backend"] = "bf16"
    (tmp_path / "other.json").write_text(json.dumps(sidecar))
    capsys.readouterr()
    assert main(["count", str(small_folder / "a.png"), "--settings", str(tmp_path / "other.json"), "--backend", "torch",
                 "--out", str(tmp_path / "d.csv"), "--no-progress"]) == 0
    assert "records a run with the bf16 backend; this one runs torch" in capsys.readouterr().err
    # a file of another model, applied to this one: its backend ran another network, so nothing is said of it
    (tmp_path / "theirs.json").write_text(json.dumps({**sidecar, "model": "someone-elses-model"}))
    assert main(["count", str(small_folder / "a.png"), "--settings", str(tmp_path / "theirs.json"), "--model",
                 "tiny-mask", "--backend", "torch", "--out", str(tmp_path / "e.csv"), "--no-progress"]) == 0
    said = capsys.readouterr().err
    assert "someone-elses-model" in said and "backend" not in said
    # a counts CSV from before the column: resumed, its rows take the backend its run's record names
    old = pd.read_csv(out).drop(columns=["backend"])
    old.to_csv(out, index=False)
    assert main(["count", str(small_folder / "a.png"), str(small_folder / "b.png"), "--model", "tiny-mask", "--backend",
                 "torch", "--out", str(out), "--no-progress", "--resume"]) == 0
    assert pd.read_csv(out)["backend"].tolist() == ["torch", "torch"]
    # resumed with another backend and nothing left to count: the record names the backend of the rows it holds
    assert main(["count", str(small_folder / "a.png"), str(small_folder / "b.png"), "--model", "tiny-mask", "--backend",
                 "onnxruntime", "--out", str(out), "--no-progress", "--resume"]) == 0
    record = json.loads((tmp_path / "c.settings.json").read_text())
    assert record["backend"] == "torch" and "backends_of_resumed_rows" not in record
    # rows of two backends, then nothing left to count with a third asked: the record of the two stays as it was
    two = tmp_path / "two.csv"
    base = ["count", "--model", "tiny-mask", "--out", str(two), "--no-progress"]
    assert main([*base, str(small_folder / "a.png"), "--backend", "torch"]) == 0
    assert main([*base, str(small_folder / "a.png"), str(small_folder / "b.png"), "--backend", "onnxruntime",
                 "--resume"]) == 0
    mixed = json.loads((tmp_path / "two.settings.json").read_text())
    assert (mixed["backend"], mixed["backends_of_resumed_rows"]) == ("onnxruntime", ["torch"])
    assert main([*base, str(small_folder / "a.png"), str(small_folder / "b.png"), "--backend", "torch",
                 "--resume"]) == 0
    assert json.loads((tmp_path / "two.settings.json").read_text()) == mixed


def test_other_files_in_a_folder_are_said_to_be_passed_over(small_folder, tmp_path, capsys):
    """A tester's notes.txt and sub/readme.md got no row and no word, where the app lists a zip's other files."""
    (small_folder / "notes.txt").write_text("x")
    (small_folder / "sub").mkdir()
    (small_folder / "sub" / "readme.md").write_text("x")
    (small_folder / "a_points.csv").write_text("x,y\n1,2\n")  # ground truth, and a table: no note of its own
    assert main(["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(tmp_path / "c.csv"),
                 "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"passed over 2 file(s) that are not images ({small_folder / 'notes.txt'}, {small_folder / 'sub' / 'readme.md'})" in err


def test_the_commands_logging_marks_warnings_and_leaves_other_handlers_alone(capsys):
    """Logged warnings read "warning: ..." as the commands' printed ones do; a second call only sets the level,
    and logging someone else set up (a script's, pytest's) keeps its handlers, format and level."""
    import logging

    from cellcount.cliparams import setup_logging

    root = logging.getLogger()
    saved, saved_level = root.handlers[:], root.level
    try:
        root.handlers = []
        setup_logging(logging.INFO)
        setup_logging(logging.WARNING)  # --quiet in a later in-process call
        assert len(root.handlers) == 1 and root.level == logging.WARNING
        logging.getLogger("cellcount.x").info("not shown")
        logging.getLogger("cellcount.x").warning("a folder's image without ground truth")
        err = capsys.readouterr().err
        assert "warning: a folder's image without ground truth" in err and "not shown" not in err
        theirs = logging.StreamHandler()
        theirs.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        root.handlers = [theirs]
        setup_logging(logging.ERROR)
        assert root.handlers == [theirs] and theirs.formatter._fmt == "%(levelname)s %(message)s"
        assert root.level == logging.WARNING, "their level too"
    finally:
        root.handlers, root.level = saved, saved_level


def test_a_file_name_that_is_not_utf8_is_one_failed_row_not_the_end_of_the_run(small_folder, tmp_path, capsys):
    """A name of Latin-1 bytes (an old share's) stopped the whole folder at the counts table (UnicodeEncodeError),
    and --resume met it again: now that file is an error row saying to rename it, the others are counted."""
    import os

    try:
        shutil.copy(small_folder / "a.png", os.fsdecode(bytes(small_folder) + b"/bad\xff.png"))
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses names that are not UTF-8 (macOS, Windows)")
    out = tmp_path / "counts.csv"
    assert main(["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(out), "--no-progress",
                 "--labels-dir", str(tmp_path / "labels")]) == 1
    df = pd.read_csv(out)
    assert sorted(df["status"]) == ["error", "ok", "ok"]
    bad = df[df["status"] == "error"].iloc[0]
    assert bad["file"].endswith("bad\\xff.png") and "not valid UTF-8" in bad["reason"]
    assert "bad\\xff.png not counted" in capsys.readouterr().err


def test_two_runs_into_one_labels_folder_are_refused_as_for_one_csv(small_folder, tmp_path, capsys):
    """Two runs sharing --labels-dir wrote one index by the same temporary name: one run failed mid-way, the index
    lost rows. The labels folder's index is held like --out."""
    from cellcount.batch import LABELS_INDEX
    from cellcount.csvout import hold_outputs

    labels = tmp_path / "labels"
    labels.mkdir()
    with hold_outputs([labels / LABELS_INDEX]):  # another run writing it
        assert main(["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(tmp_path / "b.csv"),
                     "--labels-dir", str(labels), "--no-progress"]) == 75
    assert "another run is writing" in capsys.readouterr().err and not (tmp_path / "b.csv").exists()


def test_runs_export_keeps_what_it_would_replace_and_writes_formula_safe(tmp_path, samples_dir, capsys, monkeypatch):
    """runs --export --out replaced any file unasked (an image named by a slip became a CSV) and wrote =plate.png
    unescaped, where count had written it safe for a spreadsheet."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(samples_dir / "s01_sparse_small.png", tmp_path / "=plate.png")
    assert main(["count", "=plate.png", "--model", CLASSICAL_NAME, "--out", "counts.csv", "--no-progress"]) == 0
    run_id = str(int(list_runs()["id"].max()))
    shutil.copy(samples_dir / "s01_sparse_small.png", tmp_path / "img.png")
    assert main(["runs", "--export", run_id, "--out", "img.png"]) == 2
    assert "exists and is not a .csv" in capsys.readouterr().err and (tmp_path / "img.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["runs", "--export", run_id, "--out", "new.xlsx"]) == 2, "a CSV under a spreadsheet's name"
    assert "is not named as a .csv/.tsv/.txt file" in capsys.readouterr().err and not (tmp_path / "new.xlsx").exists()
    (tmp_path / "mine.csv").write_text("my,notes\n")
    assert main(["runs", "--export", run_id, "--out", "mine.csv"]) == 0
    assert [p.read_text() for p in tmp_path.glob("mine.replaced-*.csv")] == ["my,notes\n"]
    assert (tmp_path / "mine.csv").read_text() == (tmp_path / "counts.csv").read_text()
    assert "'=plate.png" in (tmp_path / "mine.csv").read_text()


def test_a_link_loop_among_the_inputs_or_as_the_output_is_no_crash(small_folder, tmp_path, capsys):
    """Two links pointing at each other: --resume over a folder holding them, and an --out that is one, raised
    RuntimeError (a traceback)."""
    (small_folder / "loopA.png").symlink_to("loopB.png")
    (small_folder / "loopB.png").symlink_to("loopA.png")
    out = tmp_path / "counts.csv"
    base = ["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(out), "--no-progress"]
    assert main(base) == 1
    assert main(base + ["--resume"]) == 1, "the loop's rows are errors again; the rest kept"
    assert sorted(pd.read_csv(out)["status"]) == ["error", "error", "ok", "ok"]
    (tmp_path / "l1.csv").symlink_to("l2.csv")
    (tmp_path / "l2.csv").symlink_to("l1.csv")
    assert main(["count", str(small_folder / "a.png"), "--model", CLASSICAL_NAME, "--out", str(tmp_path / "l1.csv"),
                 "--no-progress"]) == 2
    assert "symbolic links" in capsys.readouterr().err


def test_a_file_listed_under_two_paths_is_said(small_folder, caplog):
    """count over a folder and a link to one of its files counted that image twice in the total with no word."""
    from cellcount.io import list_image_files

    (small_folder / "again.png").symlink_to(small_folder / "a.png")
    assert len(list_image_files([small_folder])) == 3
    assert "listed under more than one path" in caplog.text and "a.png = " in caplog.text


def test_a_plane_asked_of_one_file_named_alone_is_an_error_row_as_from_python(small_folder, tmp_path):
    """count one.png --plane 2 counted plane 0 with exit 0 while count_file(..., page=2) raises; in a folder a
    one-plane file is still counted as it is (a plane chosen for the stacks among them)."""
    out = tmp_path / "counts.csv"
    assert main(["count", str(small_folder / "a.png"), "--plane", "2", "--model", CLASSICAL_NAME, "--out", str(out),
                 "--no-progress"]) == 1
    row = pd.read_csv(out).iloc[0]
    assert row["status"] == "error" and "plane 2 is out of range" in row["reason"]
    assert main(["count", str(small_folder), "--plane", "2", "--model", CLASSICAL_NAME, "--out", str(out),
                 "--no-progress"]) == 0


def test_the_labels_folders_index_as_out_is_refused_saying_what_it_is(small_folder, tmp_path, capsys):
    labels = tmp_path / "labels"
    assert main(["count", str(small_folder), "--model", CLASSICAL_NAME, "--labels-dir", str(labels),
                 "--out", str(labels / "labels_index.csv"), "--no-progress"]) == 2
    assert "is the labels folder's own index of label images" in capsys.readouterr().err


def test_resume_says_when_the_same_files_are_named_otherwise_than_before(small_folder, tmp_path, capsys,
                                                                          monkeypatch):
    """count imgs then count $PWD/imgs --resume counted the whole batch again without saying why."""
    monkeypatch.chdir(small_folder.parent)
    out = tmp_path / "counts.csv"
    assert main(["count", small_folder.name, "--model", CLASSICAL_NAME, "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(out), "--no-progress",
                 "--resume"]) == 0
    said = f"2 of them are the same files named otherwise before ({small_folder.name}/a.png, now {small_folder}/a.png)"
    assert said in capsys.readouterr().err


def test_label_images_carry_the_pixel_size_their_objects_were_measured_with(samples_dir, tmp_path):
    """The label TIFFs said 1 pixel per unit: Fiji opened them uncalibrated beside a calibrated image (an audit)."""
    labels = tmp_path / "labels"
    assert main(["count", str(samples_dir / "s01_sparse_small.png"), "--model", CLASSICAL_NAME, "--pixel-size-um",
                 "0.25", "--out", str(tmp_path / "c.csv"), "--labels-dir", str(labels), "--no-progress", "-q"]) == 0
    page = tifffile.TiffFile(labels / "s01_sparse_small_labels.tif").pages[0]
    assert page.tags["XResolution"].value == (40000, 1) and page.tags["ResolutionUnit"].value == 3  # px per cm


def test_an_objects_table_that_cannot_be_written_at_the_end_keeps_the_counts_consistent(small_folder, tmp_path,
                                                                                          capsys, monkeypatch):
    """An --objects folder gone read-only mid-run ended in a traceback (a second error removing its working file), and
    the counts could get ahead of the objects; now one error line, the counts no further than the objects, and a
    --resume completes both."""
    from cellcount import csvout

    out, objects = tmp_path / "c.csv", tmp_path / "o.csv"
    real_publish = csvout.CsvStream._publish

    def failing(self):
        if self.path == objects and self.n_rows >= 1:
            raise PermissionError(13, "Permission denied", str(objects))
        return real_publish(self)

    monkeypatch.setattr(csvout.CsvStream, "_publish", failing)
    argv = ["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(out), "--objects", str(objects),
            "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error: cannot write the results: [Errno 13] Permission denied" in err and "--resume" in err
    assert "Traceback" not in err
    def rows(path):
        return pd.read_csv(path) if path.is_file() and path.stat().st_size else pd.DataFrame(columns=["file"])

    counted, written = rows(out), rows(objects)
    assert set(counted["file"]) <= set(written["file"]), "no count whose objects were not written"
    monkeypatch.setattr(csvout.CsvStream, "_publish", real_publish)
    assert main([*argv, "--resume"]) in (0, 1)
    assert len(pd.read_csv(out)) == 2 and set(pd.read_csv(objects)["file"]) == set(pd.read_csv(out)["file"])


def test_a_resumed_row_of_a_file_gone_since_keeps_its_place_in_the_sorted_rows(small_folder, tmp_path):
    """The row --resume keeps of a file gone since ended the CSV (a.png after b.png and c.png), where the README says
    rows are sorted by folder, then file name."""
    shutil.copy(small_folder / "a.png", small_folder / "c.png")
    out = tmp_path / "c.csv"
    argv = ["count", str(small_folder), "--model", CLASSICAL_NAME, "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    (small_folder / "a.png").rename(tmp_path / "a.png")
    assert main([*argv, "--resume"]) == 0
    assert [Path(f).name for f in pd.read_csv(out)["file"]] == ["a.png", "b.png", "c.png"]
