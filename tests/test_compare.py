"""Models or settings side by side: the library's comparison (``cellcount.evaluate.compare``) and ``cellcount
compare``."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from cellcount.evaluate.cli import main as evaluate_main
from cellcount.evaluate.compare import compare_counts
from cellcount.evaluate.compare_cli import main
from cellcount.models.loading import CLASSICAL_NAME


def _long(truth: dict[str, int], counts: dict[str, dict[str, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"file": f, "true": t, "config": c, "count": counts[c][f], "count_estimate": counts[c][f],
                          "seconds": 0.1, "check": False} for c in counts for f, t in truth.items()])


def test_the_lowest_mae_and_each_others_paired_verdict():
    """B is off by 5 on every image, A by 0-1, C like A: B 'more error', C 'within luck' of A."""
    rng = np.random.default_rng(0)
    truth = {f"f{i}.png": int(t) for i, t in enumerate(rng.integers(20, 80, 12))}
    a = {f: t + rng.integers(-1, 2) for f, t in truth.items()}
    c = {f: t + rng.integers(-1, 2) for f, t in truth.items()}
    b = {f: t + 5 for f, t in truth.items()}
    cmp = compare_counts(_long(truth, {"A": a, "B": b, "C": c}), ["A", "B", "C"], truth)
    rows = cmp.per_config.set_index("config")
    assert rows.loc["B", "MAE"] == 5 and rows.loc["B", "bias"] == 5
    best = "A" if rows.loc["A", "MAE"] <= rows.loc["C", "MAE"] else "C"
    other = "C" if best == "A" else "A"
    assert rows.loc[best, "vs lowest MAE"] == "lowest"
    assert rows.loc["B", "vs lowest MAE"].endswith("more error")
    assert rows.loc[other, "vs lowest MAE"].endswith("within luck")
    assert list(cmp.table.columns[:2]) == ["file", "true"] and "error: B" in cmp.table


def test_a_density_models_total_is_the_sum_of_the_counts_shown():
    """A density model's total summed its rounded counts (302) beside counts shown and a bias that summed to 300.8."""
    truth = {"a.png": 10, "b.png": 20}
    long = pd.DataFrame([{"file": f, "true": t, "config": "D", "count": round(t + 0.4), "count_estimate": t + 0.4,
                          "seconds": 0.1, "check": False} for f, t in truth.items()])
    cmp = compare_counts(long, ["D"], truth)
    assert cmp.per_config.set_index("config").loc["D", "total count"] == pytest.approx(30.8)


def test_a_configuration_scored_against_a_truth_without_edge_objects_is_named():
    truth = {"f0.png": 10, "f1.png": 12}
    long = _long(truth, {"A": {"f0.png": 9, "f1.png": 12}, "B": {"f0.png": 8, "f1.png": 10}})
    long.loc[long["config"] == "B", "true"] = [8, 11]  # B leaves edge objects out: its own truth is lower
    cmp = compare_counts(long, ["A", "B"], truth)
    assert cmp.edges_out == ["B"]
    assert list(cmp.table["true: B"]) == [8, 11] and list(cmp.table["error: B"]) == [0, -1]
    assert cmp.per_config.set_index("config").loc["B", "MAE"] == 0.5


def test_f1_is_over_the_images_every_configuration_matched():
    """A density model matched on the two dot images alone showed the best F1 beside mask models matched on all
    six (a tester): where the matched images differ, each F1 is over the ones they share, and said."""
    truth = {f"f{i}.png": 10 for i in range(3)}
    long = _long(truth, {"mask": {f: 10 for f in truth}, "density": {f: 10 for f in truth}})
    long["tp"], long["fp"], long["fn"] = 10.0, 0.0, 0.0
    long.loc[(long["config"] == "mask") & (long["file"] != "f2.png"), ["tp", "fp"]] = [5.0, 5.0]  # poor where only it matched
    long.loc[(long["config"] == "density") & (long["file"] != "f2.png"), ["tp", "fp", "fn"]] = None
    cmp = compare_counts(long, ["mask", "density"], truth)
    rows = cmp.per_config.set_index("config")
    assert rows.loc["mask", "F1"] == rows.loc["density", "F1"] == 1.0  # f2.png alone, for both
    assert list(rows["F1 images"]) == [1, 1] and "F1 over the 1 image(s) every configuration's" in cmp.f1_note
    # matched on the same images, nothing changes: each its own F1, no column or note
    long["tp"], long["fp"], long["fn"] = 10.0, 0.0, 0.0
    cmp = compare_counts(long, ["mask", "density"], truth)
    assert "F1 images" not in cmp.per_config and not cmp.f1_note


def _data(samples_dir, tmp_path, stems=("s01_sparse_small", "s02_dense_clusters", "s03_large_nuclei")):
    data = tmp_path / "data"
    data.mkdir()
    for stem in stems:
        for name in (f"{stem}.png", f"{stem}_labels.tif"):
            shutil.copy(samples_dir / name, data / name)
    return data


@pytest.mark.slow
def test_compare_scores_each_model_as_evaluate_does(samples_dir, tmp_path, capsys, tiny_models):
    data = _data(samples_dir, tmp_path)
    rows, summary = tmp_path / "rows.csv", tmp_path / "summary.json"
    assert main(["--data", str(data), "tiny-mask", CLASSICAL_NAME, "--out", str(rows), "--json", str(summary)]) == 0
    out = capsys.readouterr().out
    assert "A: tiny-mask" in out and f"B: {CLASSICAL_NAME}" in out and "vs lowest MAE" in out
    figures = {c["label"]: c["figures"] for c in json.loads(summary.read_text())["configs"]}
    for label, model in (("A: tiny-mask", "tiny-mask"), (f"B: {CLASSICAL_NAME}", CLASSICAL_NAME)):
        alone = tmp_path / f"{model}.json"
        assert evaluate_main(["--model", model, "--data", str(data), "--json", str(alone), "-q"]) == 0
        assert figures[label]["mae"] == pytest.approx(json.loads(alone.read_text())["mae"])
    table = pd.read_csv(rows)
    assert list(table["file"]) == ["s01_sparse_small.png", "s02_dense_clusters.png", "s03_large_nuclei.png"]
    assert table["true"].tolist() == [28, 167, 32]
    assert pd.api.types.is_integer_dtype(table[f"B: {CLASSICAL_NAME}"]), "whole counts written as whole numbers"
    assert (table[f"error: B: {CLASSICAL_NAME}"] == table[f"B: {CLASSICAL_NAME}"] - table["true"]).all()
    every = tmp_path / "every.csv"  # each row names the backend its network ran in (models may run in different ones)
    assert main(["--data", str(data), "tiny-mask", CLASSICAL_NAME, "--rows", str(every), "-q"]) == 0
    ran = pd.read_csv(every).groupby("model")["backend"].agg(lambda b: set(b.dropna()))
    assert len(ran["tiny-mask"]) == 1 and ran[CLASSICAL_NAME] == set(), ran
    # the Compare page's "Every count CSV" has these columns in this order (rows_table): one script reads both
    from cellcount.evaluate.compare import ROW_COLUMNS

    header = list(pd.read_csv(every).columns)
    common = [c for c in ROW_COLUMNS if c != "plane"]  # the plane only where one was chosen (the page's z-stacks)
    assert header == [c for c in ROW_COLUMNS if c in header][:len(header)] and header[:8] == common[:8]


def test_two_settings_files_of_one_model_compare_two_settings(samples_dir, tmp_path, capsys):
    data = _data(samples_dir, tmp_path)
    files = []
    for name, threshold in (("low.json", 0.3), ("high.json", 0.7)):
        path = tmp_path / name
        path.write_text(json.dumps({"model": CLASSICAL_NAME, "params": {"threshold": threshold}}))
        files.append(str(path))
    rows = tmp_path / "rows.csv"
    assert main(["--data", str(data), *files, "--out", str(rows), "-q"]) == 0
    out = capsys.readouterr().out
    assert f"A: {CLASSICAL_NAME} (low.json)" in out and f"B: {CLASSICAL_NAME} (high.json)" in out
    for label, path in ((f"A: {CLASSICAL_NAME} (low.json)", files[0]), (f"B: {CLASSICAL_NAME} (high.json)", files[1])):
        alone = tmp_path / "alone.csv"
        assert evaluate_main(["--settings", path, "--data", str(data), "--out", str(alone), "-q"]) == 0
        assert pd.read_csv(rows)[label].tolist() == pd.read_csv(alone)["pred"].tolist()


def test_compare_refuses_what_it_cannot_compare_before_counting(samples_dir, tmp_path, capsys):
    data = _data(samples_dir, tmp_path, stems=("s01_sparse_small",))
    assert main(["--data", str(data), CLASSICAL_NAME]) == 2
    assert "compare takes 2 to 8" in capsys.readouterr().err
    nameless = tmp_path / "nameless.json"
    nameless.write_text(json.dumps({"threshold": 0.5}))
    assert main(["--data", str(data), CLASSICAL_NAME, str(nameless)]) == 2
    assert "names no model" in capsys.readouterr().err
    assert main(["--data", str(data), CLASSICAL_NAME, "no-such-model"]) == 2
    assert "no-such-model" in capsys.readouterr().err
    assert main(["--data", str(data), CLASSICAL_NAME, CLASSICAL_NAME, "--out",
                 str(data / "s01_sparse_small_labels.tif")]) == 2
    assert "would replace a file of --data" in capsys.readouterr().err


def test_the_images_one_model_learnt_from_are_left_out_for_every_model(samples_dir, tmp_path, capsys, tiny_models,
                                                                       monkeypatch):
    import hashlib

    from cellcount.models.card import ModelCard

    data = _data(samples_dir, tmp_path, stems=("s01_sparse_small", "s02_dense_clusters"))
    learnt = {hashlib.sha256((data / "s01_sparse_small.png").read_bytes()).hexdigest()}
    real = ModelCard.training_digests
    monkeypatch.setattr(ModelCard, "training_digests",
                        lambda self: learnt if self.name == "tiny-density" else real(self))
    rows = tmp_path / "rows.csv"
    assert main(["--data", str(data), "tiny-density", "tiny-mask", "--out", str(rows)]) == 0
    err = capsys.readouterr().err
    assert "A: tiny-density: 1 of these 2 images were among tiny-density's training images" in err
    assert "left out of every configuration's scores (1 scored; --keep-trained keeps them)" in err
    assert pd.read_csv(rows)["file"].tolist() == ["s02_dense_clusters.png"]
    assert main(["--data", str(data), "tiny-density", "tiny-mask", "--out", str(rows), "--keep-trained"]) == 0
    assert len(pd.read_csv(rows)) == 2


def test_cellcount_compare_is_a_command(samples_dir, tmp_path, capsys):
    from cellcount.cli import main as cellcount_main

    data = _data(samples_dir, tmp_path, stems=("s01_sparse_small",))
    with pytest.raises(SystemExit) as done:
        cellcount_main(["compare", "--help"])
    assert done.value.code == 0 and "usage: cellcount compare" in capsys.readouterr().out
    assert cellcount_main(["compare", "--data", str(data), CLASSICAL_NAME, CLASSICAL_NAME, "-q"]) == 0
    said = capsys.readouterr()
    assert "+0.00 (too few images to tell)" in said.out
    assert "a difference needs at least" in said.err


def test_compare_keeps_a_file_of_the_users_that_an_output_would_replace(samples_dir, tmp_path, capsys):
    data = _data(samples_dir, tmp_path, stems=("s01_sparse_small",))
    rows = tmp_path / "rows.csv"
    rows.write_text("file,true\nmine.png,3\n")  # a counts table of the user's, not a comparison
    argv = ["--data", str(data), CLASSICAL_NAME, CLASSICAL_NAME, "--out", str(rows), "-q"]
    assert main(argv) == 0
    (kept,) = tmp_path.glob("rows.replaced-*.csv")
    assert kept.read_text() == "file,true\nmine.png,3\n" and "not a file this command wrote" in capsys.readouterr().err
    assert main(argv) == 0 and len(list(tmp_path.glob("rows.replaced-*.csv"))) == 1


def test_compares_own_outputs_in_the_data_folder_are_replaced_on_a_rerun(samples_dir, tmp_path):
    """A second run refused to write over its own --out in the data folder ("would replace ... an image or its
    ground truth")."""
    data = _data(samples_dir, tmp_path, stems=("s01_sparse_small",))
    argv = ["--data", str(data), CLASSICAL_NAME, CLASSICAL_NAME, "--out", str(data / "cmp.csv"),
            "--rows", str(data / "rows.csv"), "--json", str(data / "cmp.json"), "-q"]
    assert main(argv) == 0
    assert main(argv) == 0


def test_outputs_that_would_write_over_each_other_or_an_input_are_refused(samples_dir, tmp_path, capsys):
    """--out and --json on one path lost the CSV; --json on a settings file compared wrote over it."""
    data = _data(samples_dir, tmp_path, stems=("s01_sparse_small",))
    same = tmp_path / "same"
    assert main(["--data", str(data), CLASSICAL_NAME, CLASSICAL_NAME, "--out", str(same), "--json", str(same)]) == 2
    assert "give each output a file of its own" in capsys.readouterr().err
    settings = tmp_path / "t.json"
    settings.write_text(json.dumps({"model": CLASSICAL_NAME, "params": {"threshold": 0.4}}))
    before = settings.read_text()
    assert main(["--data", str(data), CLASSICAL_NAME, str(settings), "--json", str(settings)]) == 2
    assert f"is also the settings file {settings} this command reads" in capsys.readouterr().err
    assert settings.read_text() == before and not list(tmp_path.glob("t.replaced-*"))
    assert evaluate_main(["--data", str(data), "--model", CLASSICAL_NAME, "--out", str(same), "--json",
                          str(same)]) == 2
    assert "give each output a file of its own" in capsys.readouterr().err


def test_what_the_figures_rest_on_is_said(samples_dir, tmp_path, capsys):
    """-q hid how many images were scored; an edge-excluding setting scored against dots said nothing; a dots F1
    was headed F1@0.5; two identical configurations passed in silence."""
    data = tmp_path / "dots"
    data.mkdir()
    for stem in ("s01_sparse_small", "s03_large_nuclei"):
        shutil.copy(samples_dir / f"{stem}.png", data / f"{stem}.png")
        shutil.copy(samples_dir / f"{stem}_points.csv", data / f"{stem}_points.csv")
    edges = tmp_path / "edges.json"
    edges.write_text(json.dumps({"model": CLASSICAL_NAME, "params": {"exclude_border": True}}))
    assert main(["--data", str(data), CLASSICAL_NAME, str(edges), CLASSICAL_NAME, "-q"]) == 0
    said = capsys.readouterr()
    assert said.out.startswith("3 configurations on 2 image(s) with ground truth from")
    assert "leaves out the objects touching the edge, but the truth of 2 image(s) (dots or counts)" in said.err
    assert "F1 matches dots inside its objects" in said.err
    assert f"C: {CLASSICAL_NAME} counts as A: {CLASSICAL_NAME} does" in said.err


def test_every_count_with_its_flag_and_the_figures_as_numbers(samples_dir, tmp_path):
    """The CLI's outputs said how many images were flagged but not which or why, and its JSON held the table's
    strings ("1.67–13.48") instead of numbers."""
    data = _data(samples_dir, tmp_path)
    rows, summary = tmp_path / "rows.csv", tmp_path / "s.json"
    assert main(["--data", str(data), CLASSICAL_NAME, CLASSICAL_NAME, "--rows", str(rows),
                 "--json", str(summary), "--limit", "2", "-q"]) == 0
    every = pd.read_csv(rows)
    assert list(every.columns) == ["file", "true", "config", "model", "backend", "settings", "count", "count_estimate",
                                   "error", "check", "check_score", "check_reasons", "status", "reason",
                                   "tp", "fp", "fn",  # matched: F1
                                   "seconds"]  # the page's "Every count CSV" columns, status and reason too
    assert len(every) == 4 and (every["error"] == every["count"] - every["true"]).all()
    assert every["check"].all() and every["check_reasons"].str.len().gt(0).all(), "the baseline flags every count"
    d = json.loads(summary.read_text())
    assert d["limit"] == 2 and d["iou"] == 0.5 and d["images"] == 2
    a, b = d["configs"]
    assert isinstance(a["figures"]["mae_ci_low"], float) or a["figures"]["mae_ci_low"] is None
    assert a["vs_lowest_mae"] == {"lowest": True} and set(b["vs_lowest_mae"]) >= {"difference", "low", "high"}
    assert b["vs_lowest_mae"]["significant"] is None or type(b["vs_lowest_mae"]["significant"]) is bool  # was 0.0


def test_a_settings_file_for_a_model_not_installed_is_named(tmp_path, samples_dir, capsys):
    data = _data(samples_dir, tmp_path, stems=("s01_sparse_small",))
    gone = tmp_path / "gone.json"
    gone.write_text(json.dumps({"model": "no-such-model", "params": {}}))
    assert main(["--data", str(data), CLASSICAL_NAME, str(gone)]) == 2
    assert f"{gone} was saved for the model 'no-such-model', which is not installed here" in capsys.readouterr().err
    text = tmp_path / "tuned.txt"
    text.write_text("{}")
    assert main(["--data", str(data), CLASSICAL_NAME, str(text)]) == 2
    assert "is a file, not a model: a settings file's name ends in .json" in capsys.readouterr().err


def test_images_every_model_learnt_are_scored_with_a_warning(samples_dir, tmp_path, capsys, tiny_models,
                                                             monkeypatch):
    import hashlib

    from cellcount.models.card import ModelCard

    data = _data(samples_dir, tmp_path, stems=("s01_sparse_small",))
    learnt = {hashlib.sha256((data / "s01_sparse_small.png").read_bytes()).hexdigest()}
    monkeypatch.setattr(ModelCard, "training_digests", lambda self: learnt if self.name == "tiny-mask" else set())
    assert main(["--data", str(data), "tiny-mask", CLASSICAL_NAME, "-q"]) == 0
    assert "are scored, as no other image would be left: the figures flatter" in capsys.readouterr().err


def test_a_density_models_rows_give_its_count_rounded_as_the_page_does(samples_dir, tmp_path, tiny_models):
    """The page's "Every count CSV" gave a density model's count 38 beside count_estimate 37.547; `compare --rows` gave
    37.547 in both columns (a tester): one file, two meanings of ``count``."""
    data = _data(samples_dir, tmp_path)
    rows = tmp_path / "rows.csv"
    assert main(["--data", str(data), CLASSICAL_NAME, "tiny-density", "--rows", str(rows), "--limit", "2", "-q"]) == 0
    every = pd.read_csv(rows)
    assert (every["count"] == every["count_estimate"].round()).all() and every["count"].dtype.kind == "i"
    assert (every["status"] == "ok").all()


def _stack_folder(samples_dir, folder, **imwrite) -> np.ndarray:
    """``folder`` with zs.tif (s01 as given by ``imwrite``: a stack of it, or the plane alone when ``plain``), its
    labels, and s03 with its labels; returns s01's plane."""
    import shutil

    import tifffile

    folder.mkdir()
    plane = np.asarray(__import__("cellcount").io.read_image(samples_dir / "s01_sparse_small.png"))
    plane = plane if plane.ndim == 2 else plane[..., 0]
    alone = imwrite.pop("plain", False)
    tifffile.imwrite(folder / "zs.tif", plane if alone else np.stack([plane // 4, plane, plane // 3]), **imwrite)
    shutil.copy(samples_dir / "s01_sparse_small_labels.tif", folder / "zs_labels.tif")
    shutil.copy(samples_dir / "s03_large_nuclei.png", folder / "s03.png")
    shutil.copy(samples_dir / "s03_large_nuclei_labels.tif", folder / "s03_labels.tif")
    return plane


def test_compare_scores_a_z_stacks_plane_or_projection_as_the_page_does(samples_dir, tmp_path):
    """`cellcount compare` had no --plane: a z-stack was scored on its first plane only, where the page's Z-stacks
    choice compares the maximum projection (a tester)."""
    data = tmp_path / "zs"
    _stack_folder(samples_dir, data, imagej=True, metadata={"axes": "ZYX"})
    rows = tmp_path / "rows.csv"
    assert main(["--data", str(data), CLASSICAL_NAME, CLASSICAL_NAME, "--plane", "max", "--rows", str(rows), "-q"]) == 0
    every = pd.read_csv(rows).set_index("file")
    assert set(every.loc["zs.tif", "plane"]) == {"max"} and every.loc["s03.png", "plane"].isna().all()
    assert not every.loc["zs.tif", "check_reasons"].str.contains("only the first").any()
    flat = tmp_path / "flat"
    _stack_folder(samples_dir, flat, plain=True)  # the projection's plane alone: the same count
    alone = tmp_path / "alone.csv"
    assert main(["--data", str(flat), CLASSICAL_NAME, CLASSICAL_NAME, "--rows", str(alone), "-q"]) == 0
    assert every.loc["zs.tif", "count"].tolist() == pd.read_csv(alone).set_index("file").loc["zs.tif", "count"].tolist()


def test_a_plane_asked_of_a_stack_saved_without_axes_is_said_in_compare_as_in_count(samples_dir, tmp_path):
    """tifffile's plain (3, H, W) stack reads as one picture of 3 channels: --plane 2 scored their mean, unsaid."""
    data = tmp_path / "plain"
    _stack_folder(samples_dir, data)
    rows = tmp_path / "rows.csv"
    assert main(["--data", str(data), CLASSICAL_NAME, CLASSICAL_NAME, "--plane", "2", "--rows", str(rows), "-q"]) == 0
    every = pd.read_csv(rows).set_index("file")
    assert every.loc["zs.tif", "check_reasons"].str.contains("plane 2 was asked for, but this file holds one plane").all()
