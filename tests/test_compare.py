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


def test_a_configuration_scored_against_a_truth_without_edge_objects_is_named():
    truth = {"f0.png": 10, "f1.png": 12}
    long = _long(truth, {"A": {"f0.png": 9, "f1.png": 12}, "B": {"f0.png": 8, "f1.png": 10}})
    long.loc[long["config"] == "B", "true"] = [8, 11]  # B leaves edge objects out: its own truth is lower
    cmp = compare_counts(long, ["A", "B"], truth)
    assert cmp.edges_out == ["B"]
    assert list(cmp.table["true: B"]) == [8, 11] and list(cmp.table["error: B"]) == [0, -1]
    assert cmp.per_config.set_index("config").loc["B", "MAE"] == 0.5


def _data(samples_dir, tmp_path, stems=("s01_sparse_small", "s02_dense_clusters", "s03_large_nuclei")):
    data = tmp_path / "data"
    data.mkdir()
    for stem in stems:
        for name in (f"{stem}.png", f"{stem}_labels.tif"):
            shutil.copy(samples_dir / name, data / name)
    return data


def test_compare_scores_each_model_as_evaluate_does(samples_dir, tmp_path, capsys, tiny_models):
    data = _data(samples_dir, tmp_path)
    rows, summary = tmp_path / "rows.csv", tmp_path / "summary.json"
    assert main(["--data", str(data), "tiny-mask", CLASSICAL_NAME, "--out", str(rows), "--json", str(summary)]) == 0
    out = capsys.readouterr().out
    assert "A: tiny-mask" in out and f"B: {CLASSICAL_NAME}" in out and "vs lowest MAE" in out
    figures = {f["config"]: f for f in json.loads(summary.read_text())["figures"]}
    for label, model in (("A: tiny-mask", "tiny-mask"), (f"B: {CLASSICAL_NAME}", CLASSICAL_NAME)):
        alone = tmp_path / f"{model}.json"
        assert evaluate_main(["--model", model, "--data", str(data), "--json", str(alone), "-q"]) == 0
        assert figures[label]["MAE"] == pytest.approx(json.loads(alone.read_text())["mae"])
    table = pd.read_csv(rows)
    assert list(table["file"]) == ["s01_sparse_small.png", "s02_dense_clusters.png", "s03_large_nuclei.png"]
    assert table["true"].tolist() == [28, 167, 32]
    assert pd.api.types.is_integer_dtype(table[f"B: {CLASSICAL_NAME}"]), "whole counts written as whole numbers"
    assert (table[f"error: B: {CLASSICAL_NAME}"] == table[f"B: {CLASSICAL_NAME}"] - table["true"]).all()


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
    assert "+0.00 (too few images for an interval)" in said.out
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
