"""Tests of cellcount.evaluate: evaluation against ground truth, postprocessing tuning, the CLI."""

from __future__ import annotations

import dataclasses
import json
import logging
import re

import numpy as np
import pandas as pd
import pytest

from cellcount.evaluate import evaluate_predictions, predict_pairs, tune_params
from cellcount.evaluate.cli import main
from cellcount.groundtruth import GroundTruth
from cellcount.models import CLASSICAL_NAME, load_model
from cellcount.pipeline import resolve_params


@pytest.fixture
def specks_dataset(draw_disks, rng):
    """Images of radius-6 disks plus bright 2x2 specks; the ground truth holds only the disks."""
    items = []
    for i, n_disks in enumerate([3, 5, 4]):
        centres = [(12 + 20 * (k // 3), 12 + 20 * (k % 3)) for k in range(n_disks)]
        labels = draw_disks((64, 64), centres, 6)
        image = np.where(labels > 0, 200, 20).astype(np.uint8)
        for _ in range(i + 2):  # 2, 3, 4 specks in the background
            while True:
                r, c = rng.integers(1, 61, 2)
                if not labels[r - 1:r + 3, c - 1:c + 3].any():
                    break
            image[r:r + 2, c:c + 2] = 200
        items.append((f"img{i}.png", image, GroundTruth(kind="labels", count=n_disks, labels=labels)))
    return items


def test_tuning_finds_the_minimum_area_that_drops_specks(specks_dataset):
    model = load_model(CLASSICAL_NAME)
    params = resolve_params(model, {"opening_radius_px": 0, "min_area_px": 0, "split_mode": "off"})
    calls = []
    pairs = predict_pairs(specks_dataset, model, params, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (3, 3)

    before = evaluate_predictions(pairs, params)
    assert before.per_image["pred"].tolist() == [5, 8, 8]  # disks + specks
    assert before.summary["mae"] == pytest.approx(3.0)
    assert before.summary["fp"] == 9 and before.summary["tp"] == 12 and before.summary["fn"] == 0

    tuned = tune_params(pairs, params, grid={"min_area_px": [0, 2, 4, 5, 20, 200]})
    assert tuned.before == pytest.approx(3.0)
    assert tuned.after == 0.0 <= tuned.before
    assert tuned.best_params.min_area_px == 5  # the first value above the 4-px specks
    assert len(tuned.table) == 6, "each setting is evaluated once; the second round reuses the cache"
    after = evaluate_predictions(pairs, tuned.best_params)
    assert after.summary["mae"] == 0.0 and after.summary["f1"] == 1.0 and after.summary["match"] == "iou"
    assert after.per_image["abs_error"].tolist() == [0, 0, 0]


def test_tuning_skips_grid_values_that_conflict_with_fixed_settings(specks_dataset):
    model = load_model(CLASSICAL_NAME)
    params = resolve_params(model, {"opening_radius_px": 0, "min_area_px": 0, "max_area_px": 5000,
                                    "split_mode": "off"})
    pairs = predict_pairs(specks_dataset, model, params)
    calls = []
    tuned = tune_params(pairs, params, grid={"min_area_px": [0, 5, 9000]}, progress=lambda d, t: calls.append(d))
    assert tuned.best_params.min_area_px == 5 and tuned.best_params.max_area_px == 5000
    assert 9000 not in tuned.table["min_area_px"].tolist()  # above max_area_px: skipped, not an abort
    assert calls[-1] == 6  # progress still reaches the total (3 values x 2 rounds)


def test_equal_count_error_is_broken_by_f1(draw_disks):
    """Two thresholds count both disks right; only the higher one also outlines them (IoU 1 vs 0.25)."""
    from cellcount.pipeline import CountParams, Prediction

    labels = draw_disks((48, 48), [(12, 12), (34, 34)], 6)
    halo = draw_disks((48, 48), [(12, 12), (34, 34)], 12) > 0
    prob = np.where(labels > 0, 0.9, np.where(halo, 0.4, 0.0)).astype(np.float32)
    pred = Prediction(model_name="p", output_kind="mask", maps=prob[None], image_norm=prob, inverted=False,
                      input_key=())
    pairs = [("a", pred, GroundTruth(kind="labels", count=2, labels=labels))]
    start = CountParams(threshold=0.3, opening_radius_px=0, split_mode="off", min_area_px=0)
    tuned = tune_params(pairs, start, grid={"threshold": [0.3, 0.7]})
    assert tuned.after == tuned.before == 0.0
    assert tuned.best_params.threshold == 0.7, "same MAE, better outlines"
    assert tuned.table.set_index("threshold")["f1"].to_dict() == {0.3: 0.0, 0.7: 1.0}
    mae_only = tune_params(pairs, start, grid={"threshold": [0.3, 0.7]}, mae_tolerance=0)
    assert mae_only.best_params.threshold == 0.3 and mae_only.table["f1"].isna().all()
    counts_only = [("a", pred, GroundTruth(kind="count", count=2))]
    assert tune_params(counts_only, start, grid={"threshold": [0.3, 0.7]}).best_params.threshold == 0.3


def test_tuning_skips_min_distance_when_the_split_mode_ignores_it(specks_dataset):
    model = load_model(CLASSICAL_NAME)
    grid = {"min_distance_px": [2, 6], "min_area_px": [0, 5]}
    for mode, searched in (("off", False), ("distance", True)):
        params = resolve_params(model, {"opening_radius_px": 0, "split_mode": mode})
        tuned = tune_params(predict_pairs(specks_dataset, model, params), params, grid=grid)
        assert (tuned.table["min_distance_px"].nunique() > 1) == searched, mode


def test_evaluating_one_image_says_r2_needs_more_images_instead_of_nan(samples_dir, tmp_path, capsys):
    import shutil

    for name in ("s01_sparse_small.png", "s01_sparse_small_labels.tif"):
        shutil.copy(samples_dir / name, tmp_path / name)
    assert main(["--model", CLASSICAL_NAME, "--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "MAE=" in x)
    assert "n=1 " in line and "R2 n/a" in line and "nan" not in line
    assert "of 1 image flagged" in out


def test_two_plates_images_of_one_name_are_told_apart_in_the_scores(samples_dir, tmp_path):
    import shutil

    for plate, name in (("plate1", "s01_sparse_small"), ("plate2", "s02_dense_clusters")):
        (tmp_path / plate).mkdir()
        shutil.copy(samples_dir / f"{name}.png", tmp_path / plate / "A01.png")
        shutil.copy(samples_dir / f"{name}_labels.tif", tmp_path / plate / "A01_labels.tif")
    shutil.copy(samples_dir / "s03_large_nuclei.png", tmp_path / "B02.png")
    shutil.copy(samples_dir / "s03_large_nuclei_labels.tif", tmp_path / "B02_labels.tif")
    out_csv = tmp_path / "scores.csv"
    assert main(["--model", CLASSICAL_NAME, "--data", str(tmp_path), "--out", str(out_csv)]) == 0
    df = pd.read_csv(out_csv)
    manifest = pd.read_csv(samples_dir / "manifest.csv").set_index("filename")["count"]
    # a unique name stays a name; each A01.png row names its plate and holds that plate's truth
    assert dict(zip(df["file"], df["true"])) == {
        "plate1/A01.png": manifest["s01_sparse_small.png"], "plate2/A01.png": manifest["s02_dense_clusters.png"],
        "B02.png": manifest["s03_large_nuclei.png"]}


def test_default_grid_never_makes_things_worse(specks_dataset):
    model = load_model(CLASSICAL_NAME)
    params = resolve_params(model, {"opening_radius_px": 0, "min_area_px": 0, "split_mode": "off"})
    pairs = predict_pairs(specks_dataset, model, params)
    tuned = tune_params(pairs, params)
    assert tuned.after <= tuned.before and tuned.after == 0.0


def test_evaluation_cli_matches_its_csv(samples_dir, tmp_path, capsys):
    out_csv, out_json = tmp_path / "per_image.csv", tmp_path / "summary.json"
    rc = main(["--model", CLASSICAL_NAME, "--data", str(samples_dir), "--out", str(out_csv), "--json", str(out_json)])
    assert rc == 0
    df = pd.read_csv(out_csv)
    manifest = pd.read_csv(samples_dir / "manifest.csv")
    assert len(df) == 12
    assert sorted(df["file"]) == sorted(manifest["filename"])
    assert dict(zip(df["file"], df["true"])) == dict(zip(manifest["filename"], manifest["count"]))
    # a segmentation's counts are whole numbers in the CSV (they read 105.0 beside a true 105)
    assert df["pred"].dtype.kind == "i"

    line = next(x for x in capsys.readouterr().out.splitlines() if "MAE=" in x)
    printed = dict(re.findall(r"(MAE|RMSE|bias)=([-+]?\d+\.\d+)", line))
    err = df["pred"] - df["true"]
    assert float(printed["MAE"]) == pytest.approx(err.abs().mean(), abs=0.005)
    assert float(printed["RMSE"]) == pytest.approx(np.sqrt((err**2).mean()), abs=0.005)
    assert float(printed["bias"]) == pytest.approx(err.mean(), abs=0.005)
    assert "n=12" in line

    summary = json.loads(out_json.read_text())
    assert summary["n"] == 12 and summary["model"] == CLASSICAL_NAME
    assert summary["mae"] == pytest.approx(err.abs().mean())
    assert summary["tp"] == df["tp"].sum() and summary["fn"] == df["fn"].sum()
    model = load_model(CLASSICAL_NAME)  # the settings that act on it, as the CSVs list them (no density peaks)
    assert summary["params"] == resolve_params(model).acting(model.output_kind) and "count_source" not in summary["params"]


def test_cli_says_what_mape_leaves_out_and_counts_an_empty_truth_counted_as_a_large_error(samples_dir, tmp_path,
                                                                                           capsys):
    import shutil

    import tifffile

    data = tmp_path / "data"
    data.mkdir()
    for stem in ("s01_sparse_small", "s03_large_nuclei"):
        for suffix in (".png", "_labels.tif"):
            shutil.copy(samples_dir / f"{stem}{suffix}", data / f"{stem}{suffix}")
    shutil.copy(samples_dir / "s02_dense_clusters.png", data / "s02_dense_clusters.png")
    shape = tifffile.imread(samples_dir / "s02_dense_clusters_labels.tif").shape
    tifffile.imwrite(data / "s02_dense_clusters_labels.tif", np.zeros(shape, np.uint16))  # truth: no objects
    out_json, out_csv = tmp_path / "summary.json", tmp_path / "per_image.csv"
    assert main(["--model", CLASSICAL_NAME, "--data", str(data), "--json", str(out_json), "--out", str(out_csv)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "MAE=" in x)
    assert "(over 2 of the 3 images, those with objects)" in line, line
    assert "ms/image (median)" in line
    summary = json.loads(out_json.read_text())
    assert summary["mape_n"] == 2 and summary["f1_n"] == 3
    df = pd.read_csv(out_csv)
    empty = df[df["true"] == 0]
    assert len(empty) == 1 and empty["pred"].iloc[0] > 0
    # the empty image counted some: a large error, not left out as "undefined"
    large = ((df["true"] == 0) & (df["pred"] > 0)) | ((df["true"] > 0) & ((df["error"].abs() / df["true"]) > 0.15))
    assert summary["large_errors"] == int(large.sum()) and "quality flag:" in out


def test_excluding_edge_objects_leaves_them_out_of_label_truth_too(draw_disks):
    """A perfect segmentation scored -2 on every image with "Exclude edge objects" on: the truth's objects cut by
    the edge were counted as missed (an auditor). Dots cannot say which of theirs touch the edge: said."""
    from cellcount.evaluate import BORDER_TRUTH_KEPT, evaluate_predictions, tune_params
    from cellcount.pipeline import Prediction

    labels = draw_disks((64, 64), [(2, 30), (30, 30), (30, 62), (50, 20)], 6)  # two cut by the edge
    fg = (labels > 0).astype(np.float32)
    pred = Prediction(model_name="m", output_kind="mask", maps=np.stack([fg, np.zeros_like(fg)]),
                      image_norm=fg, inverted=False, input_key=())
    truth = GroundTruth(kind="labels", count=4, labels=labels)
    params = resolve_params(None, {"split_mode": "off", "threshold": 0.5, "min_area_px": 0, "opening_radius_px": 0,
                                   "closing_radius_px": 0, "auto_nucleus_size": False})
    kept = evaluate_predictions([("a.png", pred, truth)], params).summary
    assert kept["mae"] == 0 and kept["f1"] == 1.0
    cut = evaluate_predictions([("a.png", pred, truth)], params.replace(exclude_border=True))
    assert cut.summary["mae"] == 0 and cut.summary["f1"] == 1.0 and cut.per_image["true"].tolist() == [2]
    assert BORDER_TRUTH_KEPT not in cut.summary
    # the tuner scores the same way: exclude_border on costs nothing here
    assert tune_params([("a.png", pred, truth)], params.replace(exclude_border=True), grid={"threshold": [0.5]}).before == 0
    dots = GroundTruth(kind="points", count=4, points=np.array([[2, 30], [30, 30], [30, 62], [50, 20]], float))
    said = evaluate_predictions([("a.png", pred, dots)], params.replace(exclude_border=True)).summary
    assert said[BORDER_TRUTH_KEPT] == 1 and said["mae"] == 2
    # a multihead model counting from its density map counts the edge objects: its truth keeps them in its count
    density = np.zeros_like(fg)
    for r, c in [(2, 30), (30, 30), (30, 62), (50, 20)]:
        density[r, c] = 1.0
    multi = dataclasses.replace(pred, output_kind="multihead", maps=np.stack([fg, np.zeros_like(fg), density]))
    from_density = evaluate_predictions([("a.png", multi, truth)],
                                        params.replace(exclude_border=True, count_source="density"))
    assert from_density.summary["mae"] == 0 and from_density.per_image["true"].tolist() == [4]
    assert from_density.summary["f1"] == 1.0, "its objects, edge ones left out, match the truth's alike"


def _density_pair(name: str, mass: float, true: int):
    from cellcount.pipeline import Prediction

    maps = np.zeros((1, 8, 8), np.float32)
    maps[0, 2:4, 2:4] = mass / 4
    pred = Prediction(model_name="d", output_kind="density", maps=maps, image_norm=None, inverted=False,
                      input_key=())
    return (name, pred, GroundTruth(kind="count", count=true))


def test_density_calibration_fits_the_mae_minimising_gain():
    from cellcount.evaluate import calibrate_density

    k, before, after = calibrate_density([_density_pair(f"{i}", m, t) for i, (m, t) in
                                          enumerate([(10, 20), (20, 40), (40, 80)])])
    assert k == pytest.approx(2.0) and after == pytest.approx(0.0)
    assert before == pytest.approx((10 + 20 + 40) / 3, rel=1e-6)
    # one outlier cannot drag the gain: the weighted median ignores it
    k, _, after = calibrate_density([_density_pair(f"{i}", m, t) for i, (m, t) in
                                     enumerate([(10, 20), (20, 40), (40, 80), (5, 500)])])
    assert k == pytest.approx(2.0)
    assert calibrate_density([_density_pair("e", 0, 3)])[0] == 1.0  # nothing predicted: no gain


@pytest.mark.slow
def test_tune_writes_a_calibrated_density_scale_into_the_card(samples_dir, tmp_path, capsys):
    import torch

    from cellcount.models import ModelCard, create_model, read_card, save_model

    torch.manual_seed(0)
    net = create_model("unet", base_width=4, depth=2, out_channels=1, head="density")
    card = ModelCard(name="tiny-density", architecture="unet", output_kind="density",
                     kwargs={"in_channels": 1, "base_width": 4, "depth": 2, "out_channels": 1, "head": "density"},
                     density_scale=100.0)
    folder = save_model(net, card, tmp_path / "tiny-density")
    assert main(["--model", str(folder), "--data", str(samples_dir), "--tune", "--write-card"]) == 0
    said = capsys.readouterr()
    out = said.out
    k = float(re.search(r"count gain (\d+\.\d+)", out).group(1))
    tuned = read_card(folder)
    assert tuned.density_scale == pytest.approx(100.0 / k, rel=1e-3)
    # the card it replaced is kept beside it, and said (a tester's shipped card was overwritten without a copy)
    (kept,) = folder.glob("card.replaced-*.json")
    assert json.loads(kept.read_text())["density_scale"] == 100.0
    assert f"card before this run is kept as {kept}" in said.err and "shipped model" not in said.err
    assert "count gain" in tuned.postprocess_tuned_on
    assert tuned.postprocess["auto_nucleus_size"] is False  # the size mode the gain was fitted with
    # the calibrated model's counts on the same data have the MAE the calibration reported
    after = float(re.search(r"MAE \d+\.\d+ -> (\d+\.\d+)", out).group(1))
    assert main(["--model", str(folder), "--data", str(samples_dir)]) == 0
    mae = float(re.search(r"MAE=(\d+\.\d+)", capsys.readouterr().out).group(1))
    assert mae == pytest.approx(after, abs=0.02)


def _tiny_mask_folder(tmp_path):
    """An untrained tiny mask model (with a border channel) saved as a model folder."""
    import torch

    from cellcount.models import ModelCard, create_model, save_model

    torch.manual_seed(0)
    kwargs = {"in_channels": 1, "base_width": 4, "depth": 2, "out_channels": 2, "head": "mask"}
    card = ModelCard(name="tiny-mask", architecture="unet", output_kind="mask", kwargs=kwargs)
    return save_model(create_model("unet", **kwargs), card, tmp_path / "tiny-mask")


@pytest.mark.slow
def test_record_metrics_keeps_the_other_size_mode_apart(samples_dir, tmp_path, capsys):
    from cellcount.models import read_card

    folder = _tiny_mask_folder(tmp_path)

    def mae_of(*extra: str) -> float:
        """Run the evaluation CLI on the samples with ``extra`` arguments; the MAE it printed."""
        assert main(["--model", str(folder), "--data", str(samples_dir), *extra]) == 0
        return float(re.search(r"MAE=(\d+\.\d+)", capsys.readouterr().out).group(1))

    default_mae = mae_of("--record-metrics")
    auto_mae = mae_of("--record-metrics", "--auto-nucleus-size")
    metrics = read_card(folder).metrics
    assert metrics["validation"]["mae"] == pytest.approx(default_mae, abs=0.005)  # not overwritten
    assert metrics["validation_auto_nucleus_size"]["mae"] == pytest.approx(auto_mae, abs=0.005)
    assert "never used for training or tuning" in metrics["validation_note"]
    assert not list(folder.glob("card.replaced-*")), "recorded figures change no count: no copy of the card left"
    # tuned with the size estimate, the card makes it the default; the run without it is the one kept apart
    mae_of("--tune", "--write-card", "--auto-nucleus-size")
    assert read_card(folder).postprocess["auto_nucleus_size"] is True
    tuned_mae = mae_of("--record-metrics")
    fixed_mae = mae_of("--record-metrics", "--no-auto-nucleus-size")
    metrics = read_card(folder).metrics
    assert metrics["validation"]["mae"] == pytest.approx(tuned_mae, abs=0.005)
    assert metrics["validation_fixed_size"]["mae"] == pytest.approx(fixed_mae, abs=0.005)
    # the same images chose the settings: the note says so instead of calling them unseen
    assert "the postprocessing was tuned on them" in metrics["validation_note"]
    assert "validation_auto_nucleus_size" not in metrics, "made when the size estimate was not the default"
    # the default recorded again (the code changed, say): the other size mode's figures stay beside it
    assert mae_of("--record-metrics") == pytest.approx(tuned_mae, abs=0.005)
    assert read_card(folder).metrics["validation_fixed_size"]["mae"] == pytest.approx(fixed_mae, abs=0.005)


def test_a_segmentation_is_scored_against_dots_by_the_objects_holding_them():
    """Dots inside objects match them one per object; an object with two dots is a merge (one missed), an
    object with none a false positive. A segmentation's dots scored 0 before (it has no peaks)."""
    from cellcount.metrics import match_points_in_objects

    labels = np.zeros((40, 40), np.int32)
    labels[2:12, 2:12] = 1  # one dot
    labels[20:30, 2:30] = 2  # two dots: a merge
    labels[2:12, 25:35] = 3  # no dot: a false positive
    dots = np.array([[6.0, 6.0], [25.0, 8.0], [25.0, 24.0], [36.0, 36.0]])  # the last on the background: missed
    m = match_points_in_objects(dots, labels)
    assert (m.tp, m.fp, m.fn) == (2, 1, 2)
    assert match_points_in_objects(np.zeros((0, 2)), labels).fp == 3


def test_a_dot_on_the_last_pixel_is_scored_as_the_readers_accept_it():
    """A point at x = 255.7 (or 256.0) of a 256 px image passed the readers (ImageJ counts pixel corners) and then
    stopped a fine-tune after its training, and a whole evaluation, as 'outside the labels'."""
    from cellcount.metrics import match_points_in_objects

    labels = np.zeros((256, 256), np.int32)
    labels[250:, 250:] = 1
    for edge in (255.7, 256.0):
        m = match_points_in_objects(np.array([[edge, edge]]), labels)
        assert (m.tp, m.fp, m.fn) == (1, 0, 0)
    with pytest.raises(ValueError, match="outside"):
        match_points_in_objects(np.array([[257.0, 10.0]]), labels)


def test_evaluating_a_segmentation_on_a_dots_sample_reports_object_matches():
    from pathlib import Path

    from cellcount.groundtruth import read_points_csv
    from cellcount.io import read_image

    samples = Path(__file__).resolve().parents[1] / "data" / "samples"
    image = read_image(samples / "s01_sparse_small.png")
    gt = read_points_csv(samples / "s01_sparse_small_points.csv")
    model = load_model(CLASSICAL_NAME)
    params = resolve_params(model, None)
    rep = evaluate_predictions(predict_pairs([("s01", image, gt)], model, params), params)
    assert rep.summary["match"] == "objects"
    assert rep.summary["f1"] > 0.8, rep.summary


def _touching_pairs(draw_disks, *, borders: bool):
    """Two images, each of two radius-8 disks 14 px apart that the foreground map joins; the border map
    (when ``borders``) marks nothing, as a model that missed the band between them."""
    from cellcount.pipeline import Prediction

    pairs = []
    for i, shift in enumerate((0, 6)):
        labels = draw_disks((48, 64), [(24, 18 + shift), (24, 32 + shift)], 8)
        prob = (labels > 0).astype(np.float32)
        maps = np.stack([prob, np.zeros_like(prob)]) if borders else prob[None]
        pred = Prediction(model_name="p", output_kind="mask", maps=maps, image_norm=prob, inverted=False,
                          input_key=(), estimated_diameter_px=16.0)
        pairs.append((f"im{i}", pred, GroundTruth(kind="labels", count=2, labels=labels)))
    return pairs


def test_tuning_tries_each_distance_split_mode_with_every_distance(draw_disks):
    """Borders alone leave the joined disks as one; 'both' splits them only at a distance below 14 px, so
    the tuner must try it with other distances than the starting one (20) to find it."""
    from cellcount.pipeline import CountParams

    pairs = _touching_pairs(draw_disks, borders=True)
    start = CountParams(threshold=0.5, opening_radius_px=0, split_mode="borders", min_distance_px=20, min_area_px=0)
    tuned = tune_params(pairs, start, grid={"split_mode": ["borders", "both"], "min_distance_px": [0, 20]})
    assert tuned.before == 1.0 and tuned.after == 0.0
    assert (tuned.best_params.split_mode, tuned.best_params.min_distance_px) == ("both", 0), "0 = auto: 6 px"
    both = tuned.table[tuned.table["split_mode"] == "both"]
    assert set(both["min_distance_px"]) == {0, 20}


def test_tuning_never_tries_border_modes_without_a_border_map(draw_disks):
    from cellcount.pipeline import CountParams

    pairs = _touching_pairs(draw_disks, borders=False)
    start = CountParams(threshold=0.5, opening_radius_px=0, split_mode="distance", min_distance_px=20, min_area_px=0)
    tuned = tune_params(pairs, start, grid={"split_mode": ["borders", "both", "distance"], "min_distance_px": [0, 20]})
    assert set(tuned.table["split_mode"]) == {"distance"} and {0, 20} <= set(tuned.table["min_distance_px"])
    assert tuned.after == 0.0


def test_worse_images_lists_the_images_a_tuned_setting_counts_further_off(draw_disks):
    """A lower threshold joins a faint halo to one image's disks (count right either way) and brings back
    the other image's faint disk: the set improves, no image gets worse; the reverse change lists that image."""
    from cellcount.evaluate import worse_images
    from cellcount.pipeline import CountParams, Prediction

    labels = draw_disks((48, 48), [(12, 12), (34, 34)], 6)
    faint = np.where(labels == 2, 0.4, np.where(labels > 0, 0.9, 0.0)).astype(np.float32)
    pred = Prediction(model_name="p", output_kind="mask", maps=faint[None], image_norm=faint, inverted=False,
                      input_key=())
    pairs = [("faint.png", pred, GroundTruth(kind="labels", count=2, labels=labels))]
    high = CountParams(threshold=0.7, opening_radius_px=0, split_mode="off", min_area_px=0)
    low = high.replace(threshold=0.3)
    assert worse_images(pairs, high, low).empty
    got = worse_images(pairs, low, high)
    assert list(got["file"]) == ["faint.png"] and (got["before"][0], got["after"][0], got["true"][0]) == (2, 1, 2)


def test_cross_check_scores_every_image_once_by_settings_tuned_without_it(draw_disks, monkeypatch):
    """Four images whose faint second disk only a lower threshold keeps: tuned on any three, the fourth is
    counted right too, so the check says tuning helps; each image is held out exactly once."""
    import cellcount.evaluate as ev
    from cellcount.pipeline import CountParams, Prediction

    pairs = []
    for i in range(4):
        labels = draw_disks((48, 48), [(12, 12 + i), (34, 34)], 6)
        prob = np.where(labels == 2, 0.4, np.where(labels > 0, 0.9, 0.0)).astype(np.float32)
        pred = Prediction(model_name="p", output_kind="mask", maps=prob[None], image_norm=prob, inverted=False,
                          input_key=())
        pairs.append((f"im{i}", pred, GroundTruth(kind="labels", count=2, labels=labels)))
    start = CountParams(threshold=0.7, opening_radius_px=0, split_mode="off", min_area_px=0)
    seen: list[set[str]] = []
    real = ev.tune_params

    def spy(train, params, **kw):
        seen.append({name for name, _, _ in train})
        return real(train, params, **kw)

    monkeypatch.setattr(ev, "tune_params", spy)
    steps = []
    before, after = ev.cross_check(pairs, start, grid={"threshold": [0.3, 0.7]},
                                   progress=lambda done, total: steps.append((done, total)))
    assert (before, after) == (1.0, 0.0)
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]
    held_out = [{"im0", "im1", "im2", "im3"} - names for names in seen]
    assert sorted(n for h in held_out for n in h) == ["im0", "im1", "im2", "im3"] and all(len(h) == 1 for h in held_out)
    with pytest.raises(ev.ParameterError, match="at least 2"):
        ev.cross_check(pairs[:1], start)


@pytest.mark.slow
def test_cli_tuning_says_whether_it_helps_on_images_it_did_not_see(specks_dataset, tmp_path, capsys):
    from PIL import Image

    for name, image, gt in specks_dataset:
        Image.fromarray(image).save(tmp_path / name)
        (tmp_path / name.replace(".png", "_labels.tif")).write_bytes(_tiff(gt.labels))
    record = tmp_path / "e.json"
    assert main(["--model", CLASSICAL_NAME, "--data", str(tmp_path), "--tune", "--opening-radius-px", "0",
                 "--min-area-px", "0", "--json", str(record)]) == 0
    out = capsys.readouterr().out
    folds = min(4, len(specks_dataset))  # one part per image below 4 (3 here: it said "4-fold")
    assert f"checked on images each tuning did not see ({folds}-fold)" in out
    # the JSON holds what the terminal says of the tuning, not only the figures on the images it fitted to
    saved = json.loads(record.read_text())
    tuning, check = saved["tuning"], saved["tuning"]["cross_check"]
    assert saved["tuned_on_these_images"] is True and tuning["changed"]
    assert f"MAE {tuning['mae_before']:.3f} -> {tuning['mae_after']:.3f}" in out
    assert saved["mae"] == pytest.approx(tuning["mae_after"])
    assert f"MAE {check['mae_current_settings']:.3f} with the current settings, {check['mae_tuned']:.3f} tuned" in out
    assert check["verdict"] in ("helps", "unsure", "no gain") and check["folds"] == folds
    assert main(["--model", CLASSICAL_NAME, "--data", str(tmp_path), "--tune", "--opening-radius-px", "0",
                 "--min-area-px", "0", "--no-cross-check"]) == 0
    assert "-fold" not in capsys.readouterr().out


def _tiff(labels: np.ndarray) -> bytes:
    import io

    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, labels.astype(np.uint16))
    return buf.getvalue()


def test_tuning_from_a_border_mode_keeps_the_users_unused_distance(draw_disks):
    """Nothing to gain: the tuner returns the settings it started from, distance included (0 = auto), not a
    stand-in value from its bookkeeping."""
    from cellcount.pipeline import CountParams

    pairs = _touching_pairs(draw_disks, borders=True)
    for distance in (0, 6):
        start = CountParams(threshold=0.5, opening_radius_px=0, split_mode="borders", min_distance_px=distance,
                            min_area_px=0)
        tuned = tune_params(pairs, start, grid={"threshold": [0.5, 0.6]})
        assert tuned.best_params == start, distance


@pytest.mark.slow
def test_a_card_tuned_on_a_folder_with_an_unreadable_image_says_so(samples_dir, tmp_path, capsys):
    import shutil

    from cellcount.models import read_card

    folder = _tiny_mask_folder(tmp_path)
    data = tmp_path / "data"
    shutil.copytree(samples_dir, data)
    (data / "zz_broken.png").write_bytes(b"not a png")
    shutil.copy(data / "s01_sparse_small_labels.tif", data / "zz_broken_labels.tif")
    assert main(["--model", str(folder), "--data", str(data), "--tune", "--write-card", "--no-cross-check"]) == 1
    err = capsys.readouterr().err
    assert "warning: skipped" in err and "zz_broken.png" in err
    assert "1 image(s) of the folder left out (unreadable" in read_card(folder).postprocess_tuned_on


def test_a_tuning_gain_is_called_help_only_when_the_paired_interval_excludes_none():
    from cellcount.evaluate import TuningCheck

    kept = np.array([5.0, 6, 4, 7, 5, 6, 5, 4])
    clear = TuningCheck.of(kept, kept - 2.0)  # better on every image
    assert clear.verdict == "helps" and clear.high < 0 and "95% interval" in clear.interval_text()
    mixed = TuningCheck.of(kept, kept + np.array([-4.0, 3, -4, 3, -4, 3, 0, 0]))  # lower on average, by chance
    assert mixed.tuned < mixed.kept and mixed.verdict == "unsure"
    few = TuningCheck.of(np.array([5.0, 5.0]), np.array([4.0, 4.0]))  # two images: no interval, no claim
    assert few.verdict == "unsure" and few.interval_text() == "too few images for an interval"
    assert TuningCheck.of(kept, kept + 1).verdict == "no gain"


def test_a_stack_scored_on_its_first_plane_is_flagged_in_the_per_image_table(tmp_path, capsys):
    """A 3-frame TIFF among labelled images: its row is flagged with the reason, as count flags it (the table
    said check False, the warning only on stderr, naming a --plane evaluate does not have)."""
    import tifffile

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    a = np.zeros((32, 32), np.uint8)
    a[5:10, 5:10] = a[20:26, 20:26] = 200
    tifffile.imwrite(tmp_path / "images" / "tl.tif", np.stack([a] * 3), photometric="minisblack",
                     metadata={"axes": "TYX"})
    tifffile.imwrite(tmp_path / "images" / "b.tif", a[::-1].copy())
    labels = (a > 0).astype(np.uint16)
    labels[20:26, 20:26] = 2
    tifffile.imwrite(tmp_path / "labels" / "tl.tif", labels)
    tifffile.imwrite(tmp_path / "labels" / "b.tif", labels[::-1].copy())
    out = tmp_path / "ev.csv"
    assert main(["--model", CLASSICAL_NAME, "--data", str(tmp_path), "--out", str(out)]) == 0
    rows = pd.read_csv(out).set_index("file")
    note = "tl.tif: the file holds 3 time points; only the first was read and scored"
    assert note in rows.loc["tl.tif", "check_reasons"] and note not in rows.loc["b.tif", "check_reasons"]
    assert note in capsys.readouterr().err and "--plane" not in rows.loc["tl.tif", "check_reasons"]


def test_evaluate_says_which_options_do_nothing_and_saves_only_what_acts(samples_dir, tmp_path, capsys,
                                                                         tiny_models):
    """--threshold and --split-mode for a density model were accepted in silence and saved as if they acted
    (count says so and leaves them out: a tester)."""
    import shutil

    for name in ("s01_sparse_small.png", "s01_sparse_small_labels.tif"):
        shutil.copy(samples_dir / name, tmp_path / name)
    saved = tmp_path / "s.json"
    assert main(["--model", "tiny-density", "--data", str(tmp_path), "--threshold", "0.9", "--split-mode", "off",
                 "--save-settings", str(saved)]) == 0
    err = capsys.readouterr().err
    assert "note: these options do nothing here: --threshold, --split-mode" in err
    record = json.loads(saved.read_text())
    params = record["params"]
    assert "threshold" not in params and "split_mode" not in params and "peak_min_distance_px" in params
    # the backend the counts ran in, as the app's settings file records it (count --settings says when it runs another)
    assert isinstance(record.get("backend"), str) and record["backend"]


@pytest.mark.slow
def test_tuned_settings_saved_name_their_images_and_scoring_them_again_says_so(samples_dir, tmp_path, capsys):
    """A tuned settings file, loaded later on the same images, gave a flattering MAE with no word (a tester, in the
    app): the file holds the sha256 of the images tuned on, as the app records its uploads', and evaluate says so."""
    import hashlib
    import shutil

    for name in ("s01_sparse_small.png", "s01_sparse_small_labels.tif", "s03_large_nuclei.png",
                 "s03_large_nuclei_labels.tif"):
        shutil.copy(samples_dir / name, tmp_path / name)
    saved = tmp_path.parent / f"{tmp_path.name}-tuned.json"
    assert main(["--model", "classical-otsu", "--data", str(tmp_path), "--tune", "--save-settings", str(saved),
                 "-q"]) == 0
    record = json.loads(saved.read_text())
    want = sorted(hashlib.sha256((tmp_path / n).read_bytes()).hexdigest()
                  for n in ("s01_sparse_small.png", "s03_large_nuclei.png"))
    assert record["tuned_on"] == want  # the search moves the baseline's settings on these two
    capsys.readouterr()
    assert main(["--model", "classical-otsu", "--data", str(tmp_path), "--settings", str(saved)]) == 0
    assert f"{saved} holds settings tuned on 2 of these 2 images, so these figures flatter them" in capsys.readouterr().err
    # an option beside the file changes them: no longer the settings tuned (a tester's --min-area-px 60)
    assert main(["--model", "classical-otsu", "--data", str(tmp_path), "--settings", str(saved), "--min-area-px",
                 "400"]) in (0, 1)
    assert "flatter" not in capsys.readouterr().err


def test_tuning_steps_past_the_top_of_its_range_while_that_counts_better(draw_disks):
    """A tester's tuning said 'changed nothing' with min_area_px at the grid's top (50) where 90 halved the error
    of large nuclei: a best value at the top of its range is followed by larger ones (across a level stretch)
    until one counts worse, and a best still at the largest value tried is named."""
    items = []
    for i, n_disks in enumerate([3, 5, 4]):
        centres = [(12 + 20 * (k // 3), 12 + 20 * (k % 3)) for k in range(n_disks)]
        labels = draw_disks((80, 80), centres, 6)  # about 113 px each
        image = np.where(labels > 0, 200, 20).astype(np.uint8)
        image[70:72, 4 + 10 * i:6 + 10 * i] = 200  # a 4-px speck
        image[72:77, 40 + 8 * i:45 + 8 * i] = 200  # a 25-px speck
        items.append((f"img{i}.png", image, GroundTruth(kind="labels", count=n_disks, labels=labels)))
    model = load_model(CLASSICAL_NAME)
    params = resolve_params(model, {"opening_radius_px": 0, "min_area_px": 0, "split_mode": "off"})
    pairs = predict_pairs(items, model, params)
    tuned = tune_params(pairs, params, grid={"min_area_px": [0, 5]})  # drops the small specks, not the large
    assert tuned.best_params.min_area_px == 38 and tuned.after == 0.0, "5 -> 15, 25 (level) -> 38: all dropped"
    assert sorted(tuned.table["min_area_px"])[-1] == 129, "on until the disks went too (worse): stopped there"
    assert tuned.edge_note() is None, "larger values were tried"
    # the other settings are searched again around the value the walk moved to
    both = tune_params(pairs, params, grid={"min_area_px": [0, 5], "opening_radius_px": [0, 1]})
    assert both.best_params.min_area_px == 38
    assert ((both.table["min_area_px"] == 38) & (both.table["opening_radius_px"] == 1)).any()
    # a start above the grid's top (a card tuned so before) walks on from there too
    above = tune_params(pairs, dataclasses.replace(params, min_area_px=15), grid={"min_area_px": [0, 5]})
    assert above.best_params.min_area_px == 38 and above.edge_note() is None
    # where the largest value tried is the best, the note names it
    from cellcount import CountParams
    from cellcount.evaluate import at_grid_edge

    note = at_grid_edge(CountParams(min_area_px=50, threshold=0.7, split_mode="borders", min_distance_px=10))
    assert note == ("at the top of the range searched (threshold 0.7, min_area_px 50): larger values were not "
                    "tried and may count better"), "min_distance_px does not act in borders mode: not named"
    assert at_grid_edge(CountParams(min_area_px=20, threshold=0.5)) is None


@pytest.mark.slow
def test_cli_tuning_names_a_setting_at_the_top_of_its_range(samples_dir, tmp_path, capsys, monkeypatch):
    import dataclasses
    import shutil

    import cellcount.evaluate.cli as ecli

    for name in ("s01_sparse_small.png", "s01_sparse_small_labels.tif", "s03_large_nuclei.png",
                 "s03_large_nuclei_labels.tif"):
        shutil.copy(samples_dir / name, tmp_path / name)
    real = ecli.tune_params

    def tune_to_top(pairs, params, **kw):  # the search's best at the largest min area it tried
        tr = real(pairs, params, **kw)
        best = dataclasses.replace(tr.best_params, min_area_px=int(tr.table["min_area_px"].max()))
        return dataclasses.replace(tr, best_params=best)

    monkeypatch.setattr(ecli, "tune_params", tune_to_top)
    assert main(["--model", CLASSICAL_NAME, "--data", str(tmp_path), "--tune", "--no-cross-check"]) == 0
    out = capsys.readouterr().out
    assert "note: tuned settings at the top of the range searched (" in out and "min_area_px " in out


def test_evaluate_leaves_out_the_images_the_model_learnt_from(samples_dir, tmp_path, capsys, tiny_models,
                                                              monkeypatch):
    """As the Evaluate page does: a model's own training images are named and, where others remain, not scored."""
    import hashlib
    import shutil

    from cellcount.models.card import ModelCard

    names = ("s01_sparse_small", "s02_dense_clusters")
    for stem in names:
        for name in (f"{stem}.png", f"{stem}_labels.tif"):
            shutil.copy(samples_dir / name, tmp_path / name)
    learnt = {hashlib.sha256((tmp_path / "s01_sparse_small.png").read_bytes()).hexdigest()}
    monkeypatch.setattr(ModelCard, "training_digests", lambda self: learnt)
    out = tmp_path / "summary.json"
    assert main(["--model", "tiny-density", "--data", str(tmp_path), "--json", str(out)]) == 0
    err = capsys.readouterr().err
    assert "1 of these 2 images were among tiny-density's training images (s01_sparse_small.png)" in err
    assert "Left out of the scores (1 scored; --keep-trained keeps them)" in err
    record = json.loads(out.read_text())
    assert record["n"] == 1  # and the record names what its figures leave out, as the warning did
    assert record["training_images_left_out"] == ["s01_sparse_small.png"] and record["training_images_scored"] == []
    rows = tmp_path / "rows.csv"
    assert main(["--model", "tiny-density", "--data", str(tmp_path), "--json", str(out), "--keep-trained",
                 "--out", str(rows)]) == 0
    assert "Left out" not in capsys.readouterr().err and json.loads(out.read_text())["n"] == 2
    assert json.loads(out.read_text())["training_images_scored"] == ["s01_sparse_small.png"]
    import pandas as pd

    table = pd.read_csv(rows)
    assert dict(zip(table["file"], table["learnt_from"], strict=True)) == {"s01_sparse_small.png": True,
                                                                          "s02_dense_clusters.png": False}


def test_evaluate_never_writes_over_the_data_it_reads(samples_dir, tmp_path, capsys, tiny_models):
    """``--out``, ``--json`` and ``--save-settings`` replaced a user's counts table, an image and a point table
    without a word (count refuses the same for its inputs); its own earlier outputs it may replace."""
    import shutil

    data = tmp_path / "data"  # tmp_path holds the tiny models too
    data.mkdir()
    for name in ("s01_sparse_small.png", "s01_sparse_small_labels.tif"):
        shutil.copy(samples_dir / name, data / name)
    (data / "notes.csv").write_text("what,where\nplate 1,incubator\n")
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    base = ["--model", "tiny-density", "--data", str(data)]
    for option, target in (("--out", "notes.csv"), ("--json", "s01_sparse_small.png"),
                           ("--save-settings", "s01_sparse_small_labels.tif")):
        assert main([*base, option, str(data / target)]) != 0
        assert "would replace a file of --data" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before
    outputs = ["--out", str(data / "rows.csv"), "--json", str(data / "s.json"),
               "--save-settings", str(data / "settings.json")]
    assert main([*base, *outputs]) == 0
    assert main([*base, *outputs]) == 0  # the second run replaces what the first wrote
    # a link in the data folder to an image kept elsewhere: writing there would replace the link (the data's
    # entry); a link elsewhere to a file in the data folder is only a link
    store = tmp_path / "store"
    store.mkdir()
    shutil.copy(samples_dir / "s02_dense_clusters.png", store / "s02.png")
    (data / "linked.png").symlink_to(store / "s02.png")
    assert main([*base, "--out", str(data / "linked.png")]) != 0
    assert "would replace a file of --data" in capsys.readouterr().err and (data / "linked.png").is_symlink()
    (tmp_path / "elsewhere.csv").symlink_to(data / "rows.csv")
    assert main([*base, "--out", str(tmp_path / "elsewhere.csv")]) == 0


def test_a_density_models_tuned_gain_is_said_not_to_be_in_the_settings_file(samples_dir, tmp_path, capsys,
                                                                             tiny_models):
    """--tune printed the count gain it fitted and --save-settings wrote a file without it: counting with that
    file gave the MAE before the gain, not the one shown. The gain is the model's (its card): said so."""
    import shutil

    data = tmp_path / "data"
    data.mkdir()
    for stem in ("s01_sparse_small", "s02_dense_clusters"):
        for name in (f"{stem}.png", f"{stem}_labels.tif"):
            shutil.copy(samples_dir / name, data / name)
    saved = tmp_path / "tuned.json"
    assert main(["--model", "tiny-density", "--data", str(data), "--tune", "--save-settings", str(saved)]) == 0
    err = capsys.readouterr().err
    assert "the count gain is part of the model" in err and "--write-card stores it" in err
    assert json.loads(saved.read_text())["model"] == "tiny-density" and "model_sha256" in json.loads(saved.read_text())


def test_scoring_a_models_own_training_images_from_python_warns(draw_disks):
    import warnings

    from cellcount.evaluate import TrainingImagesWarning
    from cellcount.io import pixel_digest

    items = list(_touching_pairs_items(draw_disks))
    model = load_model(CLASSICAL_NAME)
    model.card = dataclasses.replace(model.card, training={"train_pixel_sha256": [pixel_digest(items[0][1])]})
    params = resolve_params(model)
    with pytest.warns(TrainingImagesWarning, match=r"1 of these 2 images were among .* training images \(a\)"):
        predict_pairs(items, model, params)
    with warnings.catch_warnings():  # a caller that leaves them out or says so itself
        warnings.simplefilter("error", TrainingImagesWarning)
        predict_pairs(items, model, params, warn_trained=False)
        predict_pairs(items[1:], load_model(CLASSICAL_NAME), params)
        # a card that knows its images by content does not go by names: plate2/a is not plate1/a
        named = load_model(CLASSICAL_NAME)
        named.card = dataclasses.replace(named.card, training={
            "train_pixel_sha256": ["0" * 64], "data": {"train_files": ["plate1/a"]}})
        predict_pairs(items, named, params)


def _touching_pairs_items(draw_disks):
    for name, centres in (("a", [(15, 15), (40, 40)]), ("b", [(20, 45), (45, 20), (30, 30)])):
        labels = draw_disks((64, 64), centres, 6)
        image = np.where(labels > 0, 200, 20).astype(np.uint8)
        yield name, image, GroundTruth(kind="labels", count=int(labels.max()), labels=labels)


@pytest.mark.slow
def test_quiet_prints_only_the_figures(samples_dir, tmp_path):
    import shutil
    import subprocess
    import sys

    for name in ("s01_sparse_small.png", "s01_sparse_small_labels.tif"):
        shutil.copy(samples_dir / name, tmp_path / name)
    done = subprocess.run([sys.executable, "-m", "cellcount.evaluate", "--model", CLASSICAL_NAME, "--data",
                           str(tmp_path), "-q"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"{CLASSICAL_NAME}: n=1 MAE=") and "quality flag" in lines[1]
    assert "predicted in" not in done.stdout + done.stderr and "with ground truth from" not in done.stdout + done.stderr


def test_a_fine_tunes_held_out_images_its_base_learnt_are_not_called_its_training_images():
    """A fine-tune held out two images its base had learnt: "among dsb-ft's training images" read as a leak of
    the held-out images into training (a tester)."""
    from cellcount.models import ModelCard

    card = ModelCard(name="dsb-ft", architecture="unet", output_kind="mask", kwargs={},
                     training={"finetuned_from": {"name": "unet-mask-varied", "sha256": "a" * 64},
                               "train_sha256": ["b" * 64],
                               "data": {"train_files": ["t1.png", "t2.png"], "holdout_files": ["h1.png", "h2.png"]}})
    note = card.trained_on_note(["h1.png", "h2.png"], 2)
    assert note.startswith("2 of these 2 images were among the images dsb-ft learnt from, itself or through "
                           "unet-mask-varied (the model it was fine-tuned from)"), note
    assert card.trained_on_note(["t1.png"], 3).startswith("1 of these 3 images were among dsb-ft's training images")


@pytest.mark.slow
def test_figures_on_the_tuning_images_say_so_and_a_saved_file_that_counts_no_better_too(samples_dir, tmp_path, capsys):
    """evaluate --tune printed MAE 1.50 on the images it tuned on without a word (4.0 on images it had not seen),
    and --save-settings wrote settings its own check had found no better."""
    import shutil

    data = tmp_path / "data"
    data.mkdir()
    for stem in ("s01_sparse_small", "s02_dense_clusters", "s03_large_nuclei", "s04_uneven_illumination"):
        for name in (f"{stem}.png", f"{stem}_labels.tif"):
            shutil.copy(samples_dir / name, data / name)
    saved = tmp_path / "tuned.json"
    assert main(["--model", CLASSICAL_NAME, "--data", str(data), "--tune", "--save-settings", str(saved)]) == 0
    out, err = capsys.readouterr()
    assert "these figures are on the images the settings were tuned on" in err and "(above)" in err
    assert "count new ones no better" in out  # the check's verdict on these four samples
    assert f"{saved} holds the tuned settings, as asked, though the check above found" in err
    assert main(["--model", CLASSICAL_NAME, "--data", str(data), "--tune", "--no-cross-check"]) == 0
    assert "score the settings on other images to know" in capsys.readouterr().err


def test_a_settings_files_plane_unused_by_evaluate_is_said_and_no_warning_names_bytes(tmp_path, capsys):
    """A settings file saved with the maximum projection: evaluate scored the first plane without a word on the
    file's plane, and a second warning named the stack "<bytes>", pointing to a --plane it does not have."""
    import tifffile

    stack = np.zeros((3, 48, 48), np.uint8)
    labels = np.zeros((48, 48), np.uint16)
    for z, (y, x) in enumerate([(6, 6), (6, 30), (30, 6)]):
        stack[z, y:y + 10, x:x + 10] = 200
        labels[y:y + 10, x:x + 10] = z + 1
    data = tmp_path / "data"
    data.mkdir()
    tifffile.imwrite(data / "stack.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    tifffile.imwrite(data / "stack_labels.tif", labels)
    settings = tmp_path / "s.json"
    settings.write_text(json.dumps({"model": CLASSICAL_NAME, "params": {"min_area_px": 5}, "plane": "max"}))
    assert main(["--data", str(data), "--settings", str(settings)]) == 0
    err = capsys.readouterr().err
    assert "only the first was read and scored" in err and "names the plane 'max'" in err
    assert "<bytes>" not in err


def test_evaluate_keeps_a_file_of_the_users_that_an_output_would_replace(samples_dir, tmp_path, capsys, tiny_models):
    """--out and --json replaced a tester's own table without a copy (count keeps them); its own outputs of an
    earlier run are replaced as before."""
    import shutil

    data = tmp_path / "data"
    data.mkdir()
    for name in ("s01_sparse_small.png", "s01_sparse_small_labels.tif"):
        shutil.copy(samples_dir / name, data / name)
    table, summary, settings = tmp_path / "my_table.csv", tmp_path / "notes.json", tmp_path / "tuned.json"
    table.write_text("sample,cells\nA,3\nB,4\n")
    summary.write_text('{"plate": 1}')
    argv = ["--model", "tiny-density", "--data", str(data), "--out", str(table), "--json", str(summary),
            "--save-settings", str(settings), "-q"]
    assert main(argv) == 0
    (kept_table,) = tmp_path.glob("my_table.replaced-*.csv")
    (kept_summary,) = tmp_path.glob("notes.replaced-*.json")
    assert kept_table.read_text() == "sample,cells\nA,3\nB,4\n" and kept_summary.read_text() == '{"plate": 1}'
    assert f"note: {table} is not a file this command wrote; kept as {kept_table}" in capsys.readouterr().err
    assert main(argv) == 0  # its own outputs: replaced
    assert len(list(tmp_path.glob("*.replaced-*"))) == 2


def test_save_settings_keeps_other_settings_it_would_replace(samples_dir, tmp_path, capsys, tiny_models):
    """A settings file downloaded from the app has the format --save-settings writes: replaced in silence, the
    settings tuned by hand in it were lost."""
    import shutil

    data = tmp_path / "data"
    data.mkdir()
    for name in ("s01_sparse_small.png", "s01_sparse_small_labels.tif"):
        shutil.copy(samples_dir / name, data / name)
    mine = tmp_path / "tuned_in_app.json"
    mine.write_text(json.dumps({"model": "tiny-mask", "params": {"threshold": 0.35}}))
    argv = ["--model", "tiny-mask", "--data", str(data), "--save-settings", str(mine), "-q"]
    assert main(argv) == 0
    (kept,) = tmp_path.glob("tuned_in_app.replaced-*.json")
    assert json.loads(kept.read_text())["params"] == {"threshold": 0.35}
    assert "held other settings; kept as" in capsys.readouterr().err
    assert main(argv) == 0 and len(list(tmp_path.glob("tuned_in_app.replaced-*.json"))) == 1, "the same: replaced"


def test_evaluate_replaces_its_own_tsv_output_without_keeping_a_copy(samples_dir, tmp_path, capsys):
    """`--out per_image.tsv` is written tab-separated; run again, it was kept as "not a file this command wrote"."""
    out = tmp_path / "per_image.tsv"
    argv = ["--model", "classical-otsu", "--data", str(samples_dir), "--limit", "2", "--out", str(out)]
    assert main(argv) == 0
    assert out.read_text().startswith("file\ttrue\tpred\t")
    capsys.readouterr()
    assert main(argv) == 0
    assert "not a file this command wrote" not in capsys.readouterr().err
    assert not list(tmp_path.glob("per_image.replaced-*"))


def test_the_closing_line_counts_every_image_left_out(tmp_path, capsys, caplog):
    """An image without ground truth is left out as surely as one whose labels have another size: the closing
    line counted only the second kind ("1 image(s) left out" after warnings about two)."""
    import tifffile

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    a = np.zeros((32, 32), np.uint8)
    a[5:10, 5:10] = a[20:26, 20:26] = 200
    labels = (a > 0).astype(np.uint16)
    labels[20:26, 20:26] = 2
    for k, name in enumerate("abcd"):  # not copies of one another (a copy is used once)
        tifffile.imwrite(tmp_path / "images" / f"{name}.tif", a + np.uint8(k))
    tifffile.imwrite(tmp_path / "labels" / "a.tif", labels)
    tifffile.imwrite(tmp_path / "labels" / "b.tif", labels)
    tifffile.imwrite(tmp_path / "labels" / "c.tif", labels[:30])  # another size: refused
    # d.tif has none
    with caplog.at_level(logging.WARNING):
        assert main(["--model", CLASSICAL_NAME, "--data", str(tmp_path), "--json", str(tmp_path / "s.json")]) == 1
    err = capsys.readouterr().err
    assert "d.tif" in caplog.text and "without ground truth" in caplog.text
    assert ("2 image(s) of the folder left out (1 without ground truth, 1 whose file or ground truth could not be "
            "used; see the warnings above); the figures are for 2 image(s)") in err
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["images_without_ground_truth"] == [str(tmp_path / "images" / "d.tif")]
    assert len(summary["files_skipped"]) == 1
    # --limit: the figures' images are said as many, not as "the other" images of the folder
    assert main(["--model", CLASSICAL_NAME, "--data", str(tmp_path), "--limit", "1"]) == 1
    assert "the figures are for 1 image(s), the first of the others (--limit 1)" in capsys.readouterr().err


def test_evaluate_runs_the_backend_asked_and_records_what_scored_each_image(tiny_models, samples_dir, tmp_path,
                                                                            monkeypatch):
    """`evaluate` ignored $CELLCOUNT_BACKEND (so a bf16 count of 160 scored as 161), and its CSV and JSON named no
    backend, weights, IoU threshold or annotation file (a reproducibility audit)."""
    import shutil
    from pathlib import Path

    for name in ("s01_sparse_small.png", "s01_sparse_small_labels.tif", "s01_sparse_small_points.csv"):
        shutil.copy(samples_dir / name, tmp_path / name)
    out, rows = tmp_path / "summary.json", tmp_path / "rows.csv"
    monkeypatch.setenv("CELLCOUNT_BACKEND", "torch")
    assert main(["--model", "tiny-mask", "--data", str(tmp_path), "--iou", "0.7", "--json", str(out),
                 "--out", str(rows), "-q"]) == 0
    summary = json.loads(out.read_text())
    assert summary["backend"] == "torch" and summary["iou_threshold"] == 0.7
    assert summary["model_sha256"] == load_model("tiny-mask").card.sha256
    table = pd.read_csv(rows)
    assert list(table["backend"]) == ["torch"] and list(table["model"]) == ["tiny-mask"]
    assert list(table["iou_threshold"]) == [0.7]
    assert [Path(p).name for p in table["ground_truth_file"]] == ["s01_sparse_small_labels.tif"]
    assert json.loads(table["settings"][0])["threshold"] == load_model("tiny-mask").card.postprocess.get(
        "threshold", 0.5), "the settings travel with the rows, as with every other CSV"
    assert main(["--model", "tiny-mask", "--data", str(tmp_path), "--backend", "onnxruntime", "--json", str(out),
                 "-q"]) == 0
    assert json.loads(out.read_text())["backend"] == "onnxruntime"  # the option over the environment, as for count
    (tmp_path / "s01_sparse_small_labels.tif").unlink()  # dots: matched by position, no IoU threshold to record
    assert main(["--model", "tiny-mask", "--data", str(tmp_path), "--json", str(out), "--out", str(rows), "-q"]) == 0
    assert json.loads(out.read_text())["iou_threshold"] is None
    table = pd.read_csv(rows)
    assert table["iou_threshold"].isna().all() and list(table["match"]) != ["iou"]
    (tmp_path / "s01_sparse_small_points.csv").unlink()  # a count alone: nothing matched at all
    (tmp_path / "counts.csv").write_text("filename,count\ns01_sparse_small.png,28\n")
    assert main(["--model", "tiny-mask", "--data", str(tmp_path), "--json", str(out), "--out", str(rows), "-q"]) == 0
    assert json.loads(out.read_text())["iou_threshold"] is None and pd.read_csv(rows)["iou_threshold"].isna().all()


def test_tuning_on_images_without_any_cell_is_refused(draw_disks, tmp_path, capsys):
    """Six negative controls (debris, truth 0) tuned to threshold 0.9 and min. area 112, "tuning helps", and the
    settings then missed a third of other images' cells (a tester). Empty images among others tune as before."""
    from cellcount.errors import ParameterError
    from cellcount.evaluate import check_tunable
    from cellcount.pipeline import Prediction

    none = GroundTruth(kind="labels", count=0, labels=np.zeros((32, 32), np.int32))
    some = GroundTruth(kind="labels", count=1, labels=draw_disks((32, 32), [(16, 16)], 5))
    pred = Prediction(model_name="p", output_kind="mask", maps=np.zeros((1, 32, 32), np.float32), image_norm=None,
                      inverted=False, input_key=())
    with pytest.raises(ParameterError, match="the ground truth of all 2 images holds no objects"):
        check_tunable([("a.png", pred, none), ("b.png", pred, none)])
    check_tunable([("a.png", pred, none), ("b.png", pred, some)])
    from PIL import Image

    for k in range(2):
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / f"c{k}.png")
        Image.fromarray(np.zeros((32, 32), np.uint16)).save(tmp_path / f"c{k}_labels.png")
    assert main(["--model", CLASSICAL_NAME, "--data", str(tmp_path), "--tune", "-q"]) == 2
    assert "holds no objects: tuning on them can only learn to count fewer" in capsys.readouterr().err
    # a density model's count gain too (it fitted 0, and --write-card divided by it)
    from cellcount.evaluate import calibrate_density

    dens = Prediction(model_name="d", output_kind="density", maps=np.full((1, 32, 32), 0.01, np.float32),
                      image_norm=None, inverted=False, input_key=())
    with pytest.raises(ParameterError, match="the count gain fitted on these images is 0"):
        calibrate_density([("a.png", dens, none), ("b.png", dens, none), ("c.png", dens, some)])


def test_an_f1_over_nothing_to_match_is_no_f1(draw_disks):
    """No object in the truth nor in the counts: F1 read 1.000 (0 of 0)."""
    from cellcount.pipeline import CountParams, Prediction

    none = GroundTruth(kind="labels", count=0, labels=np.zeros((32, 32), np.int32))
    pred = Prediction(model_name="p", output_kind="mask", maps=np.zeros((1, 32, 32), np.float32),
                      image_norm=np.zeros((32, 32), np.float32), inverted=False, input_key=())
    s = evaluate_predictions([("a.png", pred, none)], CountParams(split_mode="off")).summary
    rep = evaluate_predictions([("a.png", pred, none)], CountParams(split_mode="off"))
    assert "f1" not in s and s["f1_n"] == 1 and (s["tp"], s["fp"], s["fn"]) == (0, 0, 0)
    assert rep.per_image[["precision", "recall", "f1"]].isna().all(axis=None), "nor in its row (it read 1.000)"


def test_a_gain_from_one_kind_of_image_in_a_mixed_set_is_said():
    """A mixed set 'helped' by three brightfield images while its fluorescence images counted worse (a tester)."""
    from types import SimpleNamespace

    from cellcount.evaluate import tuning_kinds_note

    pairs = [(f"{k}.png", SimpleNamespace(inverted=k < 3), None) for k in range(7)]
    start = np.array([10.0, 8.0, 12.0, 1.0, 1.0, 2.0, 2.0])
    tuned = np.array([2.0, 2.0, 3.0, 2.0, 2.0, 2.0, 3.0])
    note = tuning_kinds_note(pairs, start, tuned)
    assert note.startswith("the gain comes from the 3 bright-background (brightfield, H&E) images (MAE 10.00 -> 2.33")
    assert "the 4 fluorescence (dark-background) images count worse with the tuned settings (1.50 -> 2.25)" in note
    assert tuning_kinds_note(pairs, start, np.minimum(start, tuned)) is None, "both kinds gain: nothing to say"
    assert tuning_kinds_note(pairs[2:], start[2:], tuned[2:]) is None, "one bright image: too few to judge"
