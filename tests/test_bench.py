"""Smoke test of the benchmark script (no timed assertions) and checks of the speed levers it measures."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cellcount.inference import balanced_tile, predict_tiled, tile_starts
from cellcount.models import create_model
from cellcount.models.backends import available_backends, buildable_backends, fold_batchnorm
from cellcount.postprocess import filter_objects, object_areas, relabel_sequential

_spec = importlib.util.spec_from_file_location("bench_script", Path(__file__).resolve().parents[1] / "scripts" / "bench.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules["bench_script"] = bench  # dataclasses look their module up there
_spec.loader.exec_module(bench)


def _table_rows(text: str, header_start: str) -> tuple[list[str], list[list[str]]]:
    """Header cells and body rows of the Markdown table whose header starts with ``header_start``."""
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(f"| {header_start}"))
    header = [c.strip() for c in lines[i].strip("|").split("|")]
    rows = []
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return header, rows


@pytest.mark.slow
def test_quick_benchmark_writes_every_table(tmp_path, capsys):
    md, js = tmp_path / "table.md", tmp_path / "bench.json"
    assert bench.main(["--quick", "--markdown", str(md), "--json", str(js)]) == 0
    text = md.read_text()
    assert text in capsys.readouterr().out  # the printed table is the written one
    assert "Machine:" in text and "Matrix-multiply peak" in text

    expected = [bm.label for bm in bench.bench_models()]
    assert len(expected) >= 1
    header, rows = _table_rows(text, "model | backend | why")
    assert [r[0] for r in rows] == expected

    header, rows = _table_rows(text, "model | backend | fast")
    assert header == bench.INFERENCE_COLUMNS
    variants = ["naive loop (fp32)", "plain fp32 path", *buildable_backends()]
    assert [r[0] for r in rows] == [label for label in expected for _ in variants]
    assert all(len(r) == len(bench.INFERENCE_COLUMNS) for r in rows)
    assert sum(r[1].endswith("(chosen)") for r in rows) == len(expected)  # one chosen backend per model
    opt_in = [b for b in buildable_backends() if b not in available_backends()]  # timed and checked, never chosen
    assert all(r[1] == f"{b} (opt-in)" for r in rows for b in opt_in if r[1].startswith(b + " ") or r[1] == b)

    header, rows = _table_rows(text, "case |")
    assert header == ["case", "map", "size", "objects", "median ms", "min ms", "median ms, one thread"]
    assert [r[0] for r in rows] == ["mask + watershed", "mask, no watershed", "density peaks"]

    header, rows = _table_rows(text, "check |")
    assert len(rows) == 2 and all(r[-1] == "exit 0" for r in rows)
    assert rows[0][2].split(" ")[0] in available_backends()  # the CLI row names the backend it ran with

    header, rows = _table_rows(text, "target |")
    assert header == ["target", "value", "met"] and rows and all(r[2] == "n/a (quick)" for r in rows)

    data = json.loads(js.read_text())
    assert data["config"]["quick"] is True and data["matmul_gflops"]["fp32"] > 0
    assert data["backends"] == buildable_backends() and data["auto_backends"] == available_backends()
    assert {m["label"] for m in data["models"]} == set(expected)
    for m in data["models"]:
        assert m["choice"]["backend"] in data["auto_backends"]
        assert set(m["inference"]["backends"]) == set(data["backends"]) == set(m["counts"]["backends"])
        assert all(b["pct_of_peak"] > 0 for b in m["inference"]["backends"].values())
        assert m["counts"]["n_images"] >= 1
    assert data["cli"]["images"] == 10 and data["memory"]["image_px"] == [1024, 1024]
    assert data["memory"]["peak_rss_mib"] > 0


@pytest.mark.slow
def test_postprocess_only_times_the_slider_path_with_and_without_the_helper_thread(capsys):
    assert bench.main(["--quick", "--postprocess-only"]) == 0
    text = capsys.readouterr().out
    assert "Machine:" in text and "### CLI and memory" not in text and "Matrix-multiply" not in text
    header, rows = _table_rows(text, "case |")
    assert header[-1] == "median ms, one thread"
    assert [r[0] for r in rows] == ["mask + watershed", "mask, no watershed", "density peaks"]
    assert all(float(r[-1]) > 0 and float(r[4].strip("*")) > 0 for r in rows)


def test_naive_loop_equals_a_whole_image_pass_for_a_pointwise_net(rng):
    net = torch.nn.Conv2d(1, 2, 1)
    image = rng.uniform(0, 1, (300, 270)).astype(np.float32)
    out = bench.naive_predict(net, image, out_channels=2, output_kind="mask")
    with torch.no_grad():
        ref = torch.sigmoid(net(torch.from_numpy(image)[None, None]))[0].numpy()
    np.testing.assert_allclose(out, ref, atol=1e-6)


@pytest.mark.slow
def test_flops_per_pixel_counts_the_convolutions():
    net = torch.nn.Conv2d(1, 4, 3, padding=1, bias=False)
    assert bench.flops_per_pixel(net, size=32) == pytest.approx(2 * 4 * 9)


@pytest.mark.parametrize("length", [1, 100, 256, 512, 700, 1024, 1025, 2048, 4096])
@pytest.mark.parametrize(("tile", "overlap", "divisor"), [(1024, 32, 16), (512, 32, 16), (256, 32, 16), (64, 8, 4)])
def test_balanced_tiles_cover_with_no_more_tiles_and_no_more_pixels(length, tile, overlap, divisor):
    t = balanced_tile(length, tile, overlap, divisor)
    assert t % divisor == 0 and t <= max(tile, -(-length // divisor) * divisor)
    if length <= t:
        return
    plain = min(tile, length)
    starts, plain_starts = tile_starts(length, t, t - overlap), tile_starts(length, plain, plain - overlap)
    assert starts[0] == 0 and starts[-1] + t == length
    assert all(b - a <= t - overlap for a, b in zip(starts, starts[1:]))  # covered, overlap kept
    assert len(starts) <= len(plain_starts) and len(starts) * t <= len(plain_starts) * plain


@pytest.mark.parametrize(("length", "tiles"), [(512, 1), (520, 1), (696, 2), (1024, 2), (2048, 5)])
def test_bf16_tiles_cover_common_camera_sizes_with_few_tiles(length, tiles):
    """1024 px (and DSB's 520 px side) in two tiles a side (one) with the cards' 32 px overlap: a largest
    tile of 512 needed three (two), 1.16x the pixels of a 1024 x 1024 image against 1.06x."""
    from cellcount.models.backends import FAST_TILE_PX

    t = balanced_tile(length, FAST_TILE_PX["bf16"], 32, 16)
    assert len(tile_starts(length, t, t - 32)) == tiles


@pytest.mark.parametrize("architecture", ["unet", "attention_unet", "residual_unet"])
def test_folded_batchnorm_gives_the_same_output(architecture):
    torch.manual_seed(0)
    net = create_model(architecture, base_width=4, depth=2, out_channels=2).train()
    with torch.no_grad():
        net(torch.rand(4, 1, 32, 32) * 3)  # move BatchNorm statistics away from the defaults
    net.eval()
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # the original is untouched
    x = torch.rand(2, 1, 48, 64)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), atol=1e-5, rtol=1e-5)


def test_balanced_fast_tiling_keeps_a_density_integral(rng):
    density = rng.uniform(0, 1, (200, 130)).astype(np.float32)
    out = predict_tiled(torch.nn.Identity(), density, out_channels=1, tile=64, overlap=8, divisor=4, device="cpu",
                        balanced=True)
    np.testing.assert_allclose(out[0], density, atol=1e-6)


def test_filter_objects_renumbers_like_relabel_sequential(draw_disks, rng):
    centres = [tuple(c) for c in rng.uniform(5, 95, (40, 2))]
    labels = draw_disks((100, 100), centres, rng.uniform(1, 6, 40))
    labels[labels == 7] = 0  # a gap in the ids
    res = filter_objects(labels, min_area_px=20, max_area_px=90, exclude_border=True)
    areas = object_areas(labels)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    keep = (areas >= 20) & (areas <= 90)
    keep[edge] = False
    np.testing.assert_array_equal(res.labels, relabel_sequential(labels, keep))


@pytest.mark.slow
def test_cli_compare_times_other_models_on_the_same_images(tmp_path, capsys):
    """--cli-compare: a CLI row per named model after the default model's, with the ratio between them;
    --cli-repeats: each check run that many times in turn, the median reported with every run."""
    from cellcount.models import CLASSICAL_NAME

    md, js = tmp_path / "table.md", tmp_path / "bench.json"
    assert bench.main(["--quick", "--cli-only", "--cli-compare", CLASSICAL_NAME, "--cli-repeats", "2",
                       "--markdown", str(md), "--json", str(js)]) == 0
    header, rows = _table_rows(md.read_text(), "check |")
    assert [r[0].startswith("`count` on the same images") for r in rows] == [False, True, False]
    assert rows[1][1] == CLASSICAL_NAME and "the default model's speed" in rows[1][3] and rows[1][4] == "exit 0"
    data = json.loads(js.read_text())
    for cli, row in ((data["cli"], rows[0]), (data["cli_compared"][0], rows[1])):
        runs = cli["seconds_runs"]
        assert len(runs) == 2 and cli["seconds"] == pytest.approx(sorted(runs)[0] / 2 + sorted(runs)[1] / 2)
        assert "median of 2 runs: " + ", ".join(f"{x:.1f}" for x in runs) in row[3]
