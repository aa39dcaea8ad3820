"""Never lose a row, never crash a batch (issue 16): one row per case, through the library and the CLI.

The app side is in ``test_app_never_lose.py``; the SIGINT / ``--resume`` runs of a real CLI process are at
the end of this file.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from cellcount.batch import count_many, counts_frame, labelled_uploads
from cellcount.cli import main
from cellcount.csvout import CsvStream, csv_bytes, escape_cell
from cellcount.errors import GroundTruthError, ImageTooLargeError, ModelCardError, ParameterError
from cellcount.groundtruth import read_counts_csv, read_points_csv
from cellcount.io import list_image_files, read_image
from cellcount.models import CLASSICAL_NAME, load_model
from cellcount.pipeline import CountParams, params_from_json

REPO = Path(__file__).resolve().parents[1]


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def blobs(size: int = 48, n: int = 3) -> np.ndarray:
    img = np.zeros((size, size), np.uint8)
    for k in range(n):
        c = 8 + k * (size - 16) // max(n - 1, 1)
        img[c - 3:c + 4, c - 3:c + 4] = 200
    return img


# --------------------------------------------------------------------------------------------------
# 5. safe CSVs
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [
    ("=HYPERLINK(\"http://x\",\"y\").png", "'=HYPERLINK(\"http://x\",\"y\").png"),
    ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
    ("+1+1", "'+1+1"),
    ("-2+3", "'-2+3"),
    ("@SUM(A1)", "'@SUM(A1)"),
    ("\tx.png", "'\tx.png"),
    ("\rx.png", "'\rx.png"),
    ("plain.png", "plain.png"),
    ("a=b.png", "a=b.png"),
    (5, 5),
    (-1.5, -1.5),
    (None, None),
])
def test_escape_cell(value, expected):
    assert escape_cell(value) == expected


def test_csv_bytes_escapes_text_and_keeps_numbers():
    df = pd.DataFrame({"file": ["=1+1.png", "@x.png", "ok.png"], "count": [-3, 4, 5], "x": [-0.5, 1.0, 2.0],
                       "reason": ["", "+bad", None]})
    data = csv_bytes(df)
    assert data.startswith(b"\xef\xbb\xbf"), "a byte-order mark, so that Excel reads UTF-8"
    back = pd.read_csv(io.BytesIO(data))
    assert list(back["file"]) == ["'=1+1.png", "'@x.png", "ok.png"]
    assert back["count"].tolist() == [-3, 4, 5] and back["count"].dtype.kind == "i"
    assert back["x"].tolist() == [-0.5, 1.0, 2.0]
    assert back["reason"].iloc[1] == "'+bad"
    assert df["file"].iloc[0] == "=1+1.png", "the input frame is not modified"


def test_csv_stream_is_valid_after_every_append(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("stale,old\n1,2\n")
    stream = CsvStream(path, columns=["file", "count"])
    assert pd.read_csv(path).columns.tolist() == ["file", "count"], "the stale file is replaced at once"
    for k in range(3):
        stream.append([{"file": f"=f{k}.png", "count": k}])
        stream._publish()  # what the throttle does when publishing is cheap; forced here for the assertion
        assert len(pd.read_csv(path)) == k + 1
    stream.close()
    df = pd.read_csv(path)
    assert df["file"].tolist() == ["'=f0.png", "'=f1.png", "'=f2.png"] and df["count"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.csv"], "no working or temporary file left"


@pytest.mark.slow
def test_csv_stream_copies_about_its_final_size_a_few_times_not_once_per_row(tmp_path, monkeypatch):
    """2000 small images on a fast disk: every append republished the whole file (1.2 GB written for a 1.3 MB CSV, a
    tester); publishes now wait for the file to grow by a share of itself."""
    published = []
    real = CsvStream._publish

    def counted(self):
        published.append(self._written)
        real(self)

    monkeypatch.setattr(CsvStream, "_publish", counted)
    path = tmp_path / "c.csv"
    stream = CsvStream(path, columns=["file", "count"])
    for k in range(2000):
        stream.append([{"file": f"image_{k:05d}.png", "count": k}])
    stream.close()
    assert len(pd.read_csv(path)) == 2000
    assert sum(published) < 30 * published[-1], "the bytes copied stay a small multiple of the final file"
    assert len(published) < 300


@pytest.mark.slow
def test_counts_publish_as_often_as_their_throttle_says_never_ahead_of_regions_and_objects(tmp_path, monkeypatch):
    """Counts waited for the regions and the objects to publish on the same image, which with publishes that wait
    for growth they hardly ever did: 83 of 2000 rows before the close (a reviewer's simulation). Counts now publish
    their companions first when due."""
    from cellcount.csvout import publish_with

    shown: dict[str, list[int]] = {"c.csv": [], "r.csv": [], "o.csv": []}
    real = CsvStream._publish

    def counted(self):
        real(self)
        shown[self.path.name].append(self.n_rows)

    monkeypatch.setattr(CsvStream, "_publish", counted)
    counts, regions, objects = (CsvStream(tmp_path / n, columns=["file"]) for n in ("c.csv", "r.csv", "o.csv"))
    for k in range(2000):
        regions.append([{"file": f"img{k}.png"}] * 4)
        objects.append([{"file": f"img{k}.png"}] * 20)
        counts.append([{"file": f"img{k}.png"}], publish=False)
        publish_with(counts, regions, objects)
        done = shown["c.csv"][-1] if shown["c.csv"] else 0
        assert done * 4 <= (shown["r.csv"][-1] if shown["r.csv"] else 0), "counts ahead of the regions"
        assert done * 20 <= (shown["o.csv"][-1] if shown["o.csv"] else 0), "counts ahead of the objects"
    assert len(shown["c.csv"]) > 50 and shown["c.csv"][-1] > 1500, shown["c.csv"][-5:]
    for stream in (counts, regions, objects):
        stream.close()


def test_csv_stream_closes_in_the_order_given_keeping_every_cell_as_written(tmp_path):
    """Workers finish in any order: close(order=...) puts the rows in the inputs' order, stably, with the rows
    of names not listed after them, and every cell (escaped formulas, quoted JSON) as it was written."""
    path = tmp_path / "c.csv"
    stream = CsvStream(path, columns=["file", "count", "settings"])
    for name, k in (("b.png", 2), ("=c.png", 3), ("x.png", 9), ("a.png", 1)):
        stream.append([{"file": name, "count": k, "settings": '{"t": 0.5, "m": "a,b"}'}])
    stream.close(order=("file", ["a.png", "b.png", escape_cell("=c.png")]))
    df = pd.read_csv(path)
    assert df["file"].tolist() == ["a.png", "b.png", "'=c.png", "x.png"]
    assert df["count"].tolist() == [1, 2, 3, 9] and set(df["settings"]) == {'{"t": 0.5, "m": "a,b"}'}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.csv"]


def test_csv_stream_close_removes_a_publish_left_half_done(tmp_path):
    """A Ctrl-C between a publish creating its temporary file and the try that removes it: close() (which runs
    on the way out of the interrupted batch) removes it."""
    path = tmp_path / "c[1].csv"  # a name with glob characters
    stream = CsvStream(path, columns=["file", "count"])
    stream.append([{"file": "a.png", "count": 1}])
    (tmp_path / f".{path.name}.abc123.tmp").write_text("half")
    other = tmp_path / ".other.csv.abc123.tmp"  # another output's: not ours to remove
    other.write_text("x")
    stream.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.csv.abc123.tmp", "c[1].csv"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_outputs_get_the_usual_permissions_not_owner_only(tmp_path):
    """mkstemp makes 0600 files: renamed into place they would lock colleagues out of a shared results folder."""
    from cellcount.csvout import _UMASK, atomic_write_bytes

    atomic_write_bytes(tmp_path / "a.json", b"{}")
    with CsvStream(tmp_path / "c.csv", columns=["file"]) as stream:
        stream.append([{"file": "a.png"}])
    usual = 0o666 & ~_UMASK
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == usual
    assert stat.S_IMODE((tmp_path / "c.csv").stat().st_mode) == usual
    os.chmod(tmp_path / "c.csv", 0o640)  # a mode the user chose is kept by a rerun
    with CsvStream(tmp_path / "c.csv", columns=["file"]) as stream:
        stream.append([{"file": "b.png"}])
    assert stat.S_IMODE((tmp_path / "c.csv").stat().st_mode) == 0o640


# --------------------------------------------------------------------------------------------------
# 2. options validated up front; no image can abort the batch
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field, value", [
    ("opening_radius_px", 100000),
    ("closing_radius_px", 101),
    ("min_distance_px", 10**6),
    ("peak_min_distance_px", 0),
    ("threshold", float("nan")),
    ("threshold", "0.5"),
    ("min_area_px", 1.5),
    ("min_area_px", -1),
    ("max_area_px", 10**12),
    ("pixel_size_um", float("inf")),
    ("channel", -1),
    ("fill_holes", "yes"),
    ("split_mode", "sometimes"),
    ("low_pct", float("nan")),
])
def test_count_params_refuse_out_of_range(field, value):
    with pytest.raises(ParameterError, match=field):
        CountParams(**{field: value})


@pytest.mark.parametrize("text, match", [
    ("[" * 5000 + "]" * 5000, "nested more than"),
    ('{"a": ' * 3000 + "1" + "}" * 3000, "nested more than"),
    ('{"threshold": 1e300}', "threshold"),
    ('"just a string"', "must be an object"),
    ('{"threshold": 0.5, "junk": "' + "x" * (2 << 20) + '"}', "above the limit"),
])
def test_settings_json_bad_input(text, match):
    with pytest.raises(ParameterError, match=match):
        params_from_json(text)


def test_a_settings_files_choice_in_another_case_is_read_and_null_is_named():
    """"split_mode": "Both" was refused where "plane": "Max" was read; "invert": "yes" was refused without saying
    that null means auto (a tester)."""
    assert params_from_json('{"params": {"split_mode": " Both", "threshold": 0.4}}') == {"split_mode": "both",
                                                                                           "threshold": 0.4}
    with pytest.raises(ParameterError, match=r"invert must be true, false or null \(auto\), got 'yes'"):
        params_from_json('{"params": {"invert": "yes"}}')
    with pytest.raises(ParameterError, match="fill_holes must be true or false, got"):
        params_from_json('{"params": {"fill_holes": "yes"}}')


def test_a_bare_settings_object_may_name_its_model_and_plane():
    """``{"min_area_px": 40, "plane": 0}`` was refused as an unknown parameter 'plane'."""
    assert params_from_json('{"min_area_px": 40, "plane": 0, "model": "unet-mask"}') == {"min_area_px": 40}
    with pytest.raises(ParameterError, match="junk"):
        params_from_json('{"min_area_px": 40, "junk": 1}')


class _Exploding:
    """A model stand-in whose forward pass raises what the test asks for on chosen images."""

    def __init__(self, base, errors):
        self._base, self._errors, self._calls = base, errors, 0
        self.card = base.card

    name = property(lambda self: self._base.name)
    output_kind = property(lambda self: self._base.output_kind)

    def predict_maps(self, image, **kwargs):
        err = self._errors.get(self._calls)
        self._calls += 1
        if err is not None:
            raise err
        return self._base.predict_maps(image, **kwargs)


def test_no_image_can_abort_the_batch():
    import cv2

    errors = {0: MemoryError(), 1: cv2.error("OpenCV(4) error: (-4:Insufficient memory)"), 2: RuntimeError("boom"),
              3: ValueError("odd"), 4: ZeroDivisionError("x")}
    model = _Exploding(load_model(CLASSICAL_NAME), errors)
    items = [(f"{k}.png", png_bytes(blobs())) for k in range(6)]
    out = list(count_many(items, model, {}))
    df = counts_frame(out)
    assert df["status"].tolist() == ["error"] * 5 + ["ok"]
    for reason, word in zip(df["reason"][:5], ["out of memory", "error", "RuntimeError: boom", "ValueError: odd",
                                                "ZeroDivisionError"]):
        assert word in reason
    assert (df["model"] == CLASSICAL_NAME).all() and df["settings"].str.startswith("{").all()
    assert df["count"].iloc[5] == 3


# --------------------------------------------------------------------------------------------------
# 3. bounded memory: only the channel asked for is decoded
# --------------------------------------------------------------------------------------------------
def _write(path: Path, stack: np.ndarray, layout: str) -> None:
    if layout == "pages":
        tifffile.imwrite(path, stack, metadata={"axes": "CYX"}, compression="zlib")
    elif layout == "yxc":
        tifffile.imwrite(path, np.moveaxis(stack, 0, -1), metadata={"axes": "YXC"}, compression="zlib")
    elif layout == "tiled":
        tifffile.imwrite(path, np.moveaxis(stack, 0, -1), photometric="minisblack", planarconfig="contig",
                         compression="zlib", tile=(16, 16))
    else:
        data = stack if layout == "separate" else np.moveaxis(stack, 0, -1)
        tifffile.imwrite(path, data, photometric="minisblack", planarconfig=layout, compression="zlib",
                         rowsperstrip=7)


@pytest.mark.parametrize("layout", ["pages", "separate", "contig", "tiled", "yxc"])
def test_one_channel_decoded_and_full_decode_capped(tmp_path, rng, layout):
    stack = rng.integers(0, 60000, (6, 40, 30), dtype=np.uint16)
    path = tmp_path / f"{layout}.tif"
    _write(path, stack, layout)
    assert np.array_equal(read_image(path), np.moveaxis(stack, 0, -1))
    for c in range(6):
        assert np.array_equal(read_image(path, channel=c), stack[c])
    with pytest.raises(ParameterError, match="channel 6 is out of range"):
        read_image(path, channel=6)
    # 6 values per pixel > 4 x max_pixels: refused unless one channel is asked for
    with pytest.raises(ImageTooLargeError, match="choose one channel"):
        read_image(path, max_pixels=40 * 30)
    assert np.array_equal(read_image(path, channel=4, max_pixels=40 * 30), stack[4])


@pytest.mark.parametrize("kw", [{"photometric": "rgb"}, {"photometric": "ycbcr"}, {"photometric": "rgb", "tile": (16, 16)},
                                {"photometric": "rgb", "rowsperstrip": 8}])
def test_one_channel_of_a_jpeg_compressed_tiff(tmp_path, rng, kw):
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, rng.integers(0, 255, (40, 36, 3), dtype=np.uint8), compression="jpeg", **kw)
    full = read_image(path)
    for c in range(3):
        assert np.array_equal(read_image(path, channel=c), full[..., c])


def test_batch_reads_only_the_channel_it_counts(tmp_path):
    stack = np.zeros((8, 48, 48), np.uint8)
    stack[5] = blobs()
    path = tmp_path / "eight.tif"
    _write(path, stack, "pages")
    out = list(count_many([("eight.tif", path)], load_model(CLASSICAL_NAME), {"channel": 5}, max_pixels=48 * 48))
    assert out[0].status == "ok" and out[0].result.count == 3
    assert json.loads(counts_frame(out)["settings"][0])["channel"] == 5
    refused = list(count_many([("eight.tif", path)], load_model(CLASSICAL_NAME), {}, max_pixels=48 * 48))
    assert refused[0].status == "error" and "the cap of" in refused[0].reason


# --------------------------------------------------------------------------------------------------
# 4. checked model cards
# --------------------------------------------------------------------------------------------------
CARD_CASES = [
    ("kwargs unknown key", {"kwargs": {"base_width": 4, "depth": 2, "foo": 1}}, "unknown kwargs"),
    ("kwargs a string", {"kwargs": "abc"}, "kwargs must be an object"),
    ("kwargs value a string", {"kwargs": {"base_width": "16"}}, "kwargs.base_width"),
    ("base_width 2048", {"kwargs": {"base_width": 2048}}, "kwargs.base_width"),
    ("depth 40", {"kwargs": {"depth": 40}}, "kwargs.depth"),
    ("deepest width too wide", {"kwargs": {"base_width": 128, "depth": 5}}, "above the limit"),
    ("tile_overlap abc", {"tile_overlap": "abc"}, "tile_overlap"),
    ("tile_overlap float", {"tile_overlap": 8.5}, "tile_overlap"),
    ("tile_size 0", {"tile_size": 0}, "tile_size"),
    ("fast_tile_size 0", {"extra": {"fast_tile_size": 0}}, "fast_tile_size"),
    ("density_scale 0", {"density_scale": 0}, "density_scale"),
    ("density_scale nan", {"density_scale": float("nan")}, "density_scale"),
    ("output_kind banana", {"output_kind": "banana"}, "output_kind must be one of"),
    ("weights outside", {"weights_file": "../other/weights.safetensors"}, "weights_file"),
    ("weights absolute", {"weights_file": "/etc/passwd"}, "weights_file"),
    ("postprocess out of range", {"postprocess": {"opening_radius_px": 100000}}, "opening_radius_px"),
    ("normalization grayscale", {"normalization": {"grayscale": "purple"}}, "grayscale"),
    ("extra not an object", {"extra": "x"}, "extra must be an object"),
    ("not JSON", None, "invalid"),
]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, tiny_model):
    from cellcount.models import save_model

    model = tiny_model("unet", "mask")
    return save_model(model.net, model.card, tmp_path_factory.mktemp("tiny") / "tiny")


def _bad_card(folder: Path, target: Path, change: dict | None) -> Path:
    shutil.copytree(folder, target)
    card = json.loads((target / "card.json").read_text())
    if change is None:
        (target / "card.json").write_text("{not json")
        return target
    for key, value in change.items():
        card[key] = {**card[key], **value} if key == "kwargs" and isinstance(value, dict) else value
    (target / "card.json").write_text(json.dumps(card))
    return target


@pytest.mark.parametrize("case, change, match", CARD_CASES, ids=[c[0] for c in CARD_CASES])
def test_bad_card_refused_before_building(tiny_folder, tmp_path, case, change, match, capsys):
    folder = _bad_card(tiny_folder, tmp_path / "bad", change)
    with pytest.raises(ModelCardError, match=match):
        load_model(folder)
    img = tmp_path / "a.png"
    img.write_bytes(png_bytes(blobs()))
    rc = main(["count", str(img), "--model", str(folder), "--out", str(tmp_path / "c.csv"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert [ln for ln in err.splitlines() if ln.startswith("error:")][0].count("\n") == 0
    assert not (tmp_path / "c.csv").exists()


def test_good_tiny_card_loads(tiny_folder):
    assert load_model(tiny_folder).output_kind == "mask"


# --------------------------------------------------------------------------------------------------
# 6. ground truth: clean errors, spreadsheet CSVs
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("data, expected", [
    (b"filename;count\na.png;12\nb.png;3\n", {"a": 12, "b": 3}),
    (b"\xef\xbb\xbffilename,count\na.png,12\n", {"a": 12}),
    ("filename\tcount\r\na.png\t12\r\n".encode("utf-16"), {"a": 12}),
    ("filename;count\r\na.png;12\r\n".encode("utf-16"), {"a": 12}),
    ("filename;count\r\nb\xe9.png;2\r\n".encode("cp1252"), {"b\xe9": 2}),
    # Excel's "CSV (MS-DOS)" and "CSV (Macintosh)" where Windows-1252 cannot decode them (cp850's ü and É)
    ("filename;count\r\nKerne_Maus_\xfc1.png;27\r\n".encode("cp850"), {"Kerne_Maus_\xfc1": 27}),
    ("filename;count\r\nKern_\xdf5.png;24\r\nK\xe4fer_\xc9.png;3\r\n\xdcber_\xfc.png;5\r\n".encode("cp850"),
     {"Kern_\xdf5": 24, "K\xe4fer_\xc9": 3, "\xdcber_\xfc": 5}),  # \xfc and \xc9 no Windows-1252 byte
    ("filename;count\rnoyau_\xe91.png;3\rcellule_\xe82.png;4\r".encode("mac_roman"),  # CR alone: a Mac's
     {"noyau_\xe91": 3, "cellule_\xe82": 4}),
    # Windows-1252 wherever it decodes, whatever letters and signs it holds (Czech, Finnish, German notes)
    ("filename,count\r\nMy\u0161_j\xe1tra_01.png,12\r\n".encode("cp1252"), {"My\u0161_j\xe1tra_01": 12}),
    ("filename,count\r\n\u0160akki_\u017d\xfcrich_2.png,7\r\n".encode("cp1252"), {"\u0160akki_\u017d\xfcrich_2": 7}),
    ("filename;count;note\r\nM\xfcller\xb4s_1.png;3;\u201egut\u201c 10\u201320, l\u2019image, 5\xbc h \u2022\r\n"
     .encode("cp1252"), {"M\xfcller\xb4s_1": 3}),
    ("filename;count;Bemerkung\r\nZ\xe4hlung_1.png;28;gef\xe4rbt Mo\u2013Fr\r\nGr\xf6\xdfe_2.png;32;Maus 3 \u2020 siehe\xb9\r\n"
     .encode("cp1252"), {"Z\xe4hlung_1": 28, "Gr\xf6\xdfe_2": 32}),
    (b"File Name;Cell Count\nx,y.png;4\n", {"x,y": 4}),  # Excel's titles with spaces, read as file_name, cell_count
    ("Bildname;Anzahl\r\nx.png;4\r\n".encode("cp1252"), None),
    (b"image;count\nx,y.png;4,0\n", {"x,y": 4}),
])
def test_counts_csv_from_spreadsheets(data, expected):
    if expected is None:
        with pytest.raises(GroundTruthError, match="expected columns"):
            read_counts_csv(data)
    else:
        assert read_counts_csv(data) == expected


@pytest.mark.parametrize("cell", ["1e300", "-1", "abc", "inf", "nan", "2.5", "1e9"])
def test_absurd_or_bad_counts_refused(cell):
    with pytest.raises(GroundTruthError, match="whole number within"):
        read_counts_csv(f"filename,count\na.png,{cell}\n".encode())


@pytest.mark.parametrize("data, points", [
    (b" ,X,Y\n1,10.5,20\n2,30,40\n", [[19.5, 10], [39.5, 29.5]]),  # ImageJ Results (X = column, Y = row; its
    # fractions put a pixel's centre at +0.5)
    (b" ,X,Y\n1,10,20\n2,30,40\n", [[20, 10], [40, 30]]),  # clicked points: pixel indices
    (b"X;Y\n10,5;20\n", [[20, 10.5]]),  # semicolon with a decimal comma
    (" \tX\tY\n1\t3\t4\n".encode("utf-16"), [[4, 3]]),
])
def test_point_csvs_from_imagej_and_excel(data, points):
    assert read_points_csv(data).points.tolist() == points


@pytest.mark.parametrize("data", [b"x,y\n1e300,3\n", b"x,y\n-1,3\n", b"x,y\nabc,3\n"])
def test_bad_point_coordinates_refused(data):
    with pytest.raises(GroundTruthError, match="coordinate"):
        read_points_csv(data)


def _eval_folder(root: Path, case: str) -> Path:
    root.mkdir()
    Image.fromarray(blobs()).save(root / "a.png")
    if case == "wrong shape":
        tifffile.imwrite(root / "a_labels.tif", np.zeros((30, 30), np.uint16))
    elif case == "negative labels":
        tifffile.imwrite(root / "a_labels.tif", np.full((48, 48), -1, np.int16))
    else:
        (root / "counts.csv").write_text({"non-numeric": "filename,count\na.png,abc\n",
                                          "negative": "filename,count\na.png,-4\n",
                                          "non-finite": "filename,count\na.png,inf\n",
                                          "absurd": "filename,count\na.png,1e300\n"}[case])
    return root


@pytest.mark.parametrize("case", ["wrong shape", "negative labels", "non-numeric", "negative", "non-finite",
                                  "absurd"])
@pytest.mark.slow
def test_evaluate_cli_bad_ground_truth_one_line(tmp_path, case):
    data = _eval_folder(tmp_path / "data", case)
    proc = subprocess.run([sys.executable, "-m", "cellcount.evaluate", "--model", CLASSICAL_NAME, "--data", str(data)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "a" in lines[0]


def test_evaluate_cli_leaves_out_a_bad_pair_and_scores_the_rest(tmp_path, capsys):
    from cellcount.evaluate.cli import main as evaluate_main

    data = tmp_path / "data"
    data.mkdir()
    for n, name in enumerate(("a", "b", "c")):
        img = blobs(n=3 + n)  # three images, not one image three times
        Image.fromarray(img).save(data / f"{name}.png")
        labels = (img > 0).astype(np.uint16)
        tifffile.imwrite(data / f"{name}_labels.tif", labels if name != "b" else labels[:30, :30])
    (data / "d.png").write_bytes(b"<html>not an image</html>")
    tifffile.imwrite(data / "d_labels.tif", np.zeros((48, 48), np.uint16))
    out = tmp_path / "new" / "folder" / "per_image.csv"  # created, as count does
    rc = evaluate_main(["--model", CLASSICAL_NAME, "--data", str(data), "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 1, captured.err
    assert "skipped" in captured.err and "b.png" in captured.err and "d.png" in captured.err
    assert "n=2 " in captured.out
    assert sorted(pd.read_csv(out)["file"]) == ["a.png", "c.png"]


@pytest.mark.parametrize("option, match", [
    (["--limit", "-3"], "--limit"), (["--iou", "5"], "--iou"), (["--val-fraction", "2"], "--val-fraction"),
    (["--out", "{tmp}"], "is a folder"), (["--json", "{tmp}/afile/x.json"], "cannot write"),
])
def test_evaluate_cli_checks_options_and_outputs_before_counting(tmp_path, capsys, option, match):
    from cellcount.evaluate.cli import main as evaluate_main

    (tmp_path / "afile").write_text("x")
    data = _eval_folder(tmp_path / "data", "wrong shape")
    option = [o.replace("{tmp}", str(tmp_path)) for o in option]
    assert evaluate_main(["--model", CLASSICAL_NAME, "--data", str(data), *option]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err and "skipped" not in err  # refused before reading any image


@pytest.mark.parametrize("config, match", [
    (None, "No such file"),
    ("a: [\n", "while parsing"),
])
def test_train_cli_bad_config_one_line(tmp_path, capsys, config, match):
    from cellcount.train import main as train_main

    path = tmp_path / "c.yaml"
    if config is not None:
        path.write_text(config)
    assert train_main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and match in err and err.count("\n") == 1


def test_train_cli_without_a_config_says_so(capsys):
    """Without --config it trained from the defaults: "folder not found: ../shared/datasets/dsb2018" (a tester)."""
    from cellcount.train import main as train_main

    with pytest.raises(SystemExit) as stop:
        train_main([])
    assert stop.value.code == 2 and "the following arguments are required: --config" in capsys.readouterr().err


def test_evaluate_reads_semicolon_counts(tmp_path, capsys):
    from cellcount.evaluate.cli import main as evaluate_main

    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(blobs()).save(data / "a.png")
    (data / "counts.csv").write_bytes("filename;count\r\na.png;3\r\n".encode("utf-16"))
    assert evaluate_main(["--model", CLASSICAL_NAME, "--data", str(data), "--out", str(tmp_path / "e.csv")]) == 0
    assert pd.read_csv(tmp_path / "e.csv")["true"].tolist() == [3]


@pytest.mark.parametrize("order", [("d.png", "d.png/e.png"), ("d.png/e.png", "d.png")])
def test_zip_with_colliding_names(order):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in order:  # two images (of one size: the same pixels would be one image)
            zf.writestr(name, png_bytes(blobs(48 if name == "d.png" else 50)))
        zf.writestr("counts.csv", "filename,count\nd.png,3\ne.png,3\n")
    items, skipped = labelled_uploads([("x.zip", buf.getvalue())])
    # uploads are paired in memory (cellcount.labelled): a file and a folder of one name are both usable
    assert sorted(name for name, _, _ in items) == ["d.png", "d.png/e.png"]
    assert [gt.count for _, _, gt in items] == [3, 3] and skipped == []
    # the same image twice under two names is one image, and the copy left out is said
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("d.png", png_bytes(blobs()))
        zf.writestr("e.png", png_bytes(blobs()))
        zf.writestr("counts.csv", "filename,count\nd.png,3\ne.png,3\n")
    items, skipped = labelled_uploads([("x.zip", buf.getvalue())])
    assert [name for name, _, _ in items] == ["d.png"]
    assert skipped == [("e.png (the same image as d.png)", "uploaded more than once: used once")]


# --------------------------------------------------------------------------------------------------
# 7. nothing skipped in silence
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case, reason", [
    ("dangling link", "dangling symbolic link"),
    ("link to itself", "symbolic link loop"),
    ("unreadable folder", "cannot read folder"),
])
def test_listing_reports_what_it_skips(tmp_path, monkeypatch, case, reason):
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    (root / "a.png").write_bytes(png_bytes(blobs()))
    if case == "dangling link":
        (root / "gone.png").symlink_to(root / "nothere.png")
    elif case == "link to itself":
        (root / "self.png").symlink_to(root / "self.png")
    else:  # chmod does not stop root (CI containers), so the folder's listing fails by hand
        real = os.scandir

        def scandir(path="."):
            if Path(path) == root / "sub":
                raise PermissionError(13, "Permission denied", str(path))
            return real(path)

        monkeypatch.setattr(os, "scandir", scandir)
    skipped = []
    files = list_image_files(root, on_skip=lambda p, r: skipped.append((p, r)))
    assert [f.name for f in files] == ["a.png"]
    assert len(skipped) == 1 and reason in skipped[0][1]


def test_a_link_to_a_folder_of_the_tree_is_another_name_for_files_listed_once(tmp_path):
    root = tmp_path / "in"
    (root / "run42").mkdir(parents=True)
    (root / "run42" / "a.png").write_bytes(png_bytes(blobs()))
    (root / "latest").symlink_to("run42")  # sorted before run42: its files were listed under the link's name
    (root / "run42" / "up").symlink_to(root)  # a loop: the same folders again
    skipped = []
    files = list_image_files(root, on_skip=lambda p, r: skipped.append((p, r)))
    # each file once, under its own path, and nothing reported as skipped (a run read that as a failure)
    assert files == [root / "run42" / "a.png"] and skipped == []


def test_a_pattern_through_a_link_to_a_folder_of_the_tree_lists_each_file_once(tmp_path):
    """``imgs/**/*.png`` with ``imgs/latest -> run42`` listed every image twice (406 objects for 263); the link's
    name alone still lists its files."""
    root = tmp_path / "in"
    (root / "run42").mkdir(parents=True)
    (root / "run42" / "a.png").write_bytes(png_bytes(blobs()))
    (root / "latest").symlink_to("run42")
    assert list_image_files(str(root / "**" / "*.png")) == [root / "run42" / "a.png"]
    assert list_image_files(str(root / "latest" / "*.png")) == [root / "latest" / "a.png"]
    (tmp_path / "via").symlink_to(root)  # a link above the wildcards is the user's way in, not a copy
    assert list_image_files(str(tmp_path / "via" / "**" / "*.png")) == [tmp_path / "via" / "run42" / "a.png"]


def test_hidden_images_left_out_of_a_folder_are_said(tmp_path, capsys):
    """A folder's hidden files and folders were passed over in silence ("counted 1/1", exit 0)."""
    root = tmp_path / "in"
    (root / ".plate_A").mkdir(parents=True)
    (root / ".git").mkdir()
    for path in (root / "a.png", root / ".plate_A" / "A01.png", root / ".B02.png"):
        path.write_bytes(png_bytes(blobs()))
    (root / ".DS_Store").write_bytes(b"x")
    (root / ".git" / "config").write_text("x")
    hidden = []
    assert list_image_files(root, on_hidden=hidden.append) == [root / "a.png"]
    assert sorted(p.name for p in hidden) == [".B02.png", ".plate_A"]  # no .DS_Store, no folder without images
    assert main(["count", str(root), "--model", CLASSICAL_NAME, "--out", str(tmp_path / "c.csv"), "--no-progress"]) == 0
    assert "note: left out 2 hidden file(s) or folder(s) with images" in capsys.readouterr().err


def test_cli_prints_skipped_links(tmp_path, capsys):
    root = tmp_path / "in"
    root.mkdir()
    (root / "a.png").write_bytes(png_bytes(blobs()))
    (root / "gone.png").symlink_to(root / "nothere.png")
    # exit 1: an input was not counted (the warning says which and why)
    assert main(["count", str(root), "--model", CLASSICAL_NAME, "--out", str(tmp_path / "c.csv"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"warning: {root / 'gone.png'} not counted: dangling symbolic link" in err
    # and in the CSV, with its reason (every input left out gets its row)
    rows = pd.read_csv(tmp_path / "c.csv").set_index("file")
    assert rows.loc[str(root / "a.png"), "status"] == "ok"
    assert rows.loc[str(root / "gone.png"), "status"] == "error"
    assert rows.loc[str(root / "gone.png"), "reason"].startswith("not counted: dangling symbolic link")


# --------------------------------------------------------------------------------------------------
# 1. outputs checked before counting; formula-safe CLI CSVs
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case, extra, match", [
    ("out equals objects", ["--out", "{t}/r.csv", "--objects", "{t}/r.csv"], "name the same file"),
    ("out names an input", ["--out", "{t}/in/a.png"], "names an input file"),
    ("objects names an input", ["--objects", "{t}/in/b.png"], "names an input file"),
    ("objects is the settings file", ["--out", "{t}/r.csv", "--objects", "{t}/r.settings.json"], "same file"),
    ("out names the settings input", ["--out", "{t}/s.json", "--settings", "{t}/s.json"], "names an input"),
    ("out is a folder", ["--out", "{t}/in"], "is a folder"),
    ("labels-dir is a file", ["--labels-dir", "{t}/in/a.png"], "is a file"),
    ("labels-dir is the out file", ["--out", "{t}/r.csv", "--labels-dir", "{t}/r.csv"], "name the same path"),
    ("out is a device", ["--out", "/dev/null"], "device or process entry"),
])
def test_outputs_refused_before_counting(tmp_path, capsys, case, extra, match):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.png", "b.png"):
        (src / name).write_bytes(png_bytes(blobs()))
    (tmp_path / "s.json").write_text('{"threshold": 0.5}')
    before = {p: p.read_bytes() for p in src.iterdir()}
    argv = ["count", str(src), "--model", CLASSICAL_NAME, "--no-progress"]
    argv += [a.format(t=tmp_path) for a in extra]
    if "--out" not in extra:
        argv += ["--out", str(tmp_path / "r.csv")]
    assert main(argv) == 2
    assert match in capsys.readouterr().err
    assert {p: p.read_bytes() for p in src.iterdir()} == before, "inputs untouched"
    assert not (tmp_path / "r.csv").exists()


def test_cli_escapes_formula_file_names(tmp_path, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    names = ["=HYPERLINK(\"x\",\"y\").png", "=cmd|' calc'!A0.png", "+1+1.png", "@SUM(A1).png", "-2.png"]
    for name in names:
        (src / name).write_bytes(png_bytes(blobs()))
    monkeypatch.chdir(src)
    assert main(["count", "--model", CLASSICAL_NAME, "--out", "../c.csv", "--objects", "../o.csv",
                 "--no-progress", "--", *names]) == 0
    counts, objects = pd.read_csv(tmp_path / "c.csv"), pd.read_csv(tmp_path / "o.csv")
    assert sorted(counts["file"]) == sorted("'" + n for n in names)
    assert set(objects["file"]) == set(counts["file"])
    assert counts["count"].tolist() == [3] * len(names) and counts["count"].dtype.kind == "i"


# --------------------------------------------------------------------------------------------------
# 1 + 8. a real CLI batch interrupted by SIGINT, then finished by --resume
# --------------------------------------------------------------------------------------------------
N_RESUME = 600  # enough work left after the first rows that the interrupt lands mid-run on a fast CPU


@pytest.fixture(scope="module")
def resume_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    src = root / "in"
    src.mkdir()
    rng = np.random.default_rng(1)
    for k in range(N_RESUME):
        img = blobs(64, n=int(rng.integers(1, 5)))
        (src / f"img{k:03d}.png").write_bytes(png_bytes(img))
    (src / "broken.png").write_bytes(b"<html>not an image</html>")
    return root


def _cli(root: Path, out: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cellcount", "count", str(root / "in"), "--model", CLASSICAL_NAME,
            "--out", str(root / f"{out}.csv"), "--objects", str(root / f"{out}_objects.csv"), "--no-progress", *extra]


def _rows(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df = df.drop(columns=[c for c in ("seconds",) if c in df.columns])
    return df.sort_values(list(df.columns)).reset_index(drop=True)


@pytest.mark.slow
def test_sigint_leaves_the_finished_rows_and_resume_completes_them(resume_inputs):
    root = resume_inputs
    full = subprocess.run(_cli(root, "full"), capture_output=True, text=True, cwd=REPO, timeout=600)
    assert full.returncode == 1, full.stderr  # the broken file
    part = root / "part.csv"
    part.write_text("file,count\nstale.png,99\n")  # an old result that must not survive looking current
    # a shell's background job inherits SIGINT ignored (and Python then keeps it so): the child gets the
    # default back, as a batch started in a terminal has it
    proc = subprocess.Popen(_cli(root, "part"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    n_seen = 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            n_seen = len(pd.read_csv(part)) if "status" in part.read_text() else 0
        except (pd.errors.EmptyDataError, FileNotFoundError):
            n_seen = 0
        if n_seen >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the batch ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err
    partial = pd.read_csv(part)
    assert 3 <= len(partial) < N_RESUME + 1
    assert "stale.png" not in set(partial["file"])
    finished = _rows(part)
    reference = _rows(root / "full.csv")
    merged = finished.merge(reference, how="left", indicator=True)
    assert (merged["_merge"] == "both").all(), "every partial row equals the uninterrupted run's row"
    assert not [p for p in root.iterdir() if p.name.startswith(".")], "no working or temporary files left"

    resumed = subprocess.run(_cli(root, "part", "--resume"), capture_output=True, text=True, cwd=REPO, timeout=600)
    assert resumed.returncode == 1, resumed.stderr
    assert f"{int((partial['status'] == 'ok').sum())} image(s) already counted" in resumed.stderr
    pd.testing.assert_frame_equal(_rows(part), reference)
    pd.testing.assert_frame_equal(_rows(root / "part_objects.csv"), _rows(root / "full_objects.csv"))


@pytest.mark.slow
def test_resume_with_other_settings_counts_again(resume_inputs, tmp_path, capsys):
    out = tmp_path / "c.csv"
    argv = ["count", str(resume_inputs / "in"), "--model", CLASSICAL_NAME, "--out", str(out), "--no-progress"]
    assert main(argv) == 1
    assert all(json.loads(s)["threshold"] == 0.5 for s in pd.read_csv(out)["settings"])
    capsys.readouterr()
    assert main([*argv, "--threshold", "0.6", "--resume"]) == 1
    err = capsys.readouterr().err
    assert "already counted" not in err
    assert f"{N_RESUME} image(s) in {out} were counted with other settings; they are counted again" in err
    df = pd.read_csv(out)
    assert len(df) == N_RESUME + 1
    assert all(json.loads(s)["threshold"] == 0.6 for s in df["settings"])


def _few_images(folder: Path, n: int = 3) -> Path:
    folder.mkdir()
    for k in range(n):
        (folder / f"img{k}.png").write_bytes(png_bytes(blobs(64, n=k + 1)))
    return folder


def test_resume_keeps_rows_of_a_csv_that_listed_every_setting(tmp_path, capsys):
    """A CSV written before the settings column listed only the settings that act keeps its rows."""
    out = tmp_path / "c.csv"
    argv = ["count", str(_few_images(tmp_path / "in")), "--model", CLASSICAL_NAME, "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    from cellcount import resolve_params

    every = json.dumps(resolve_params(load_model(CLASSICAL_NAME)).to_dict(), sort_keys=True)
    df = pd.read_csv(out)
    assert len(json.loads(df["settings"][0])) < len(json.loads(every))  # the column lists fewer now
    df.assign(settings=every).to_csv(out, index=False)
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 0
    err = capsys.readouterr().err
    assert "3 image(s) already counted" in err and "other settings" not in err


def test_resume_reads_a_csv_with_the_old_quality_score_column(tmp_path, capsys):
    """Counts CSVs written before check_score was named so (quality_score) resume without counting again."""
    out = tmp_path / "c.csv"
    argv = ["count", str(_few_images(tmp_path / "in")), "--model", CLASSICAL_NAME, "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    pd.read_csv(out).rename(columns={"check_score": "quality_score"}).to_csv(out, index=False)
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 0
    assert "3 image(s) already counted" in capsys.readouterr().err
    df = pd.read_csv(out)
    assert "check_score" in df and "quality_score" not in df and len(df) == 3


def test_resume_of_a_density_model_ignores_mask_settings(tmp_path, capsys, tiny_models):
    out = tmp_path / "c.csv"
    argv = ["count", str(_few_images(tmp_path / "in")), "--model", "tiny-density", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    assert "threshold" not in json.loads(pd.read_csv(out)["settings"][0])
    capsys.readouterr()
    assert main([*argv, "--threshold", "0.9", "--resume"]) == 0  # does nothing to a density model's count
    assert "3 image(s) already counted" in capsys.readouterr().err
    assert main([*argv, "--low-pct", "2", "--resume"]) == 0  # changes its input: counted again
    assert "3 image(s) in" in capsys.readouterr().err


@pytest.mark.slow
def test_resume_with_another_model_says_the_model_changed(resume_inputs, tmp_path, capsys, tiny_models):
    out = tmp_path / "c.csv"
    argv = ["count", str(resume_inputs / "in"), "--out", str(out), "--no-progress"]
    assert main([*argv, "--model", CLASSICAL_NAME]) == 1
    capsys.readouterr()
    main([*argv, "--model", "tiny-density", "--resume"])
    err = capsys.readouterr().err
    assert f"was counted with {CLASSICAL_NAME}, not tiny-density" in err and "weights of" not in err



def test_published_counts_never_run_ahead_of_the_published_regions(tmp_path, monkeypatch):
    """A hard kill leaves the files as last published; --resume keeps each image with a counts row, so a counts
    row published before its image's region rows would lose them for good. The regions CSV's publish is held
    back at every other image here (the throttle of a long batch), and an image counted whole comes between."""
    import cellcount.cli as cli
    import cellcount.distributed as distributed

    src = tmp_path / "in"
    src.mkdir()
    for k in range(6):
        (src / f"img{k}.png").write_bytes(png_bytes(blobs(48, n=k % 3 + 1)))
    out, regions_csv = tmp_path / "c.csv", tmp_path / "c.regions.csv"
    seen: list[tuple[set, set]] = []

    def published() -> tuple[set, set]:
        def files(p):
            try:
                return set(pd.read_csv(p, dtype=str)["file"])
            except (FileNotFoundError, pd.errors.EmptyDataError):
                return set()
        return files(out), files(regions_csv)

    def fake_cluster_run(named, model, params, client, **kw):  # count_on_cluster's rows, regions by hand
        for item in count_many(named, model, params):
            seen.append(published())
            if item.status == "ok" and not item.name.endswith("img3.png"):  # img3: counted whole
                item.regions = pd.DataFrame([{"file": item.name, "region": "r1_c1", "row0": 0, "col0": 0,
                                              "row1": 48, "col1": 48, "count": item.result.count}])
            yield item

    real_may = CsvStream.may_publish

    def throttled(self):  # the regions' time throttle forbids a publish at every other row
        if Path(self.path).name == regions_csv.name:
            return self.n_rows % 2 == 0 and real_may(self)
        return real_may(self)

    monkeypatch.setattr(cli, "_start_cluster", lambda args, backend=None: object())
    monkeypatch.setattr(distributed, "count_on_cluster", fake_cluster_run)
    monkeypatch.setattr(distributed, "close", lambda client: None)
    monkeypatch.setattr(CsvStream, "may_publish", throttled)
    assert main(["count", str(src), "--model", CLASSICAL_NAME, "--out", str(out), "--workers", "2",
                 "--region-grid", "1x1", "--no-progress"]) == 0
    seen.append(published())
    assert len(seen) == 7 and seen[-1][0] == {str(p) for p in sorted(src.iterdir())}
    for counted, with_regions in seen:
        assert counted - {str(src / "img3.png")} <= with_regions, "a counts row published before its regions"
    assert any(len(c) < k for k, (c, _) in enumerate(seen)), "the throttle held some counts back"


def test_a_link_and_its_target_each_get_their_row_and_a_folder_named_twice_once(tmp_path):
    """A link in a_cond/ to z_cond/well1.png: listed by resolved path, the one sorted first (the link) took the
    row and the real file had none, its count credited to the other condition, silently."""
    (tmp_path / "a_cond").mkdir()
    (tmp_path / "z_cond").mkdir()
    for name in ("well1.png", "well2.png"):
        (tmp_path / "z_cond" / name).write_bytes(png_bytes(blobs()))
    (tmp_path / "a_cond" / "well1.png").symlink_to(tmp_path / "z_cond" / "well1.png")
    listed = [p.relative_to(tmp_path).as_posix() for p in list_image_files(tmp_path)]
    assert listed == ["a_cond/well1.png", "z_cond/well1.png", "z_cond/well2.png"]
    again = list_image_files([tmp_path, tmp_path / "z_cond", str(tmp_path / "z_cond" / "." / "well2.png")])
    assert [p.relative_to(tmp_path).as_posix() for p in again] == listed, "a path named twice is listed once"


def test_resume_after_a_folder_was_renamed_counts_each_image_once(tmp_path, capsys):
    """ctrl/ renamed control/ between a run and its --resume: the old rows were kept ("no longer exist") and the
    same images counted again under the new name, each image twice and the condition split in two."""
    for cond in ("ctrl", "drugA"):
        (tmp_path / cond).mkdir()
        for k in range(2):
            (tmp_path / cond / f"img{k}.png").write_bytes(png_bytes(blobs(n=k + 1 + (cond == "drugA"))))
    out = tmp_path / "c.csv"
    argv = ["count", "--model", CLASSICAL_NAME, "--out", str(out), "--no-progress"]
    assert main([*argv, str(tmp_path / "ctrl"), str(tmp_path / "drugA")]) == 0
    (tmp_path / "ctrl").rename(tmp_path / "control")
    capsys.readouterr()
    assert main([*argv, str(tmp_path / "control"), str(tmp_path / "drugA"), "--resume"]) == 0
    err = capsys.readouterr().err
    assert "2 image(s) in" in err and "were moved or renamed since" in err and "no longer exist" not in err
    rows = pd.read_csv(out)
    assert sorted(Path(f).relative_to(tmp_path).as_posix() for f in rows["file"]) == [
        "control/img0.png", "control/img1.png", "drugA/img0.png", "drugA/img1.png"]


def test_label_file_names_follow_the_inputs_order_not_the_order_images_finish(tmp_path, monkeypatch):
    """With workers, rep1/A01.png and rep2/A01.png finish in any order: the first to finish took A01_labels.tif,
    so two runs gave each other's names to the two label images."""
    import cellcount.batch as batch

    for rep in ("rep1", "rep2"):
        (tmp_path / "in" / rep).mkdir(parents=True)
        (tmp_path / "in" / rep / "A01.png").write_bytes(png_bytes(blobs(n=1 if rep == "rep1" else 3)))
    real = batch.count_many

    def backwards(named, *args, **kwargs):  # the last input finishes first
        return list(real(named, *args, **kwargs))[::-1]

    monkeypatch.setattr(batch, "count_many", backwards)
    assert main(["count", str(tmp_path / "in"), "--model", CLASSICAL_NAME, "--out", str(tmp_path / "c.csv"),
                 "--labels-dir", str(tmp_path / "lab"), "--no-progress"]) == 0
    index = pd.read_csv(tmp_path / "lab" / "labels_index.csv")
    named = {Path(f).parent.name: n for f, n in zip(index["file"], index["labels_file"], strict=True)}
    assert named == {"rep1": "A01_labels.tif", "rep2": "A01_2_labels.tif"}


def test_resume_never_takes_a_copy_counted_already_for_a_moved_image(tmp_path, capsys):
    """dirA/x.png and its copy dirB/x_backup.png (cp -p: the same size and time) both counted; dirA deleted: the
    copy, counted already, is no new path of x.png, whose row stays (a reviewer's case)."""
    import shutil

    (tmp_path / "r1" / "dirA").mkdir(parents=True)
    (tmp_path / "r1" / "dirB").mkdir()
    (tmp_path / "r1" / "dirA" / "x.png").write_bytes(png_bytes(blobs(n=2)))
    shutil.copy2(tmp_path / "r1" / "dirA" / "x.png", tmp_path / "r1" / "dirB" / "x_backup.png")
    out = tmp_path / "c.csv"
    argv = ["count", str(tmp_path / "r1"), "--model", CLASSICAL_NAME, "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    shutil.rmtree(tmp_path / "r1" / "dirA")
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 0
    err = capsys.readouterr().err
    assert "moved or renamed" not in err and "no longer exist" in err
    assert sorted(Path(f).name for f in pd.read_csv(out)["file"]) == ["x.png", "x_backup.png"]


def test_a_channel_out_of_range_row_names_its_file(tmp_path, capsys):
    """Every other error row's reason names its file; "channel 3 is out of range" did not."""
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[8:16, 8:16] = 200
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert main(["count", str(tmp_path / "rgba.png"), "--channel", "3", "--model", CLASSICAL_NAME,
                 "--out", str(tmp_path / "c.csv"), "--no-progress"]) == 1
    reason = pd.read_csv(tmp_path / "c.csv")["reason"].iloc[0]
    assert reason.startswith(f"{tmp_path / 'rgba.png'}: channel 3 is out of range") and "alpha left out" in reason


def test_an_unreadable_files_row_takes_its_place_among_the_others(tmp_path):
    """In-process, rows of files that could not be listed were written first; the CSV and the run's history
    disagreed on the order once the history went by the inputs."""
    from cellcount import history

    root = tmp_path / "in"
    root.mkdir()
    for name in ("a.png", "c.png"):
        (root / name).write_bytes(png_bytes(blobs()))
    (root / "b.png").symlink_to(root / "gone.png")  # a dangling link: a row of its own, with why
    assert main(["count", str(root), "--model", CLASSICAL_NAME, "--out", str(tmp_path / "c.csv"), "--no-progress"]) == 1
    names = [str(root / n) for n in ("a.png", "b.png", "c.png")]
    assert pd.read_csv(tmp_path / "c.csv")["file"].tolist() == names
    run = history.list_runs().iloc[0]
    assert history.run_rows(int(run["id"]))["file"].tolist() == names


def test_a_tsv_stream_is_tab_separated_and_sorted_into_the_inputs_order(tmp_path):
    """Rows that finish in any order (workers, --resume) are put back in the inputs' order at the end: the sort read
    a .tsv with commas and left it as it was (a reviewer)."""
    import pandas as pd

    from cellcount.csvout import CsvStream

    stream = CsvStream(tmp_path / "c.tsv", columns=["file", "count"])
    for name, n in (("c.png", 3), ("a.png", 1), ("b,x.png", 2)):  # a comma in a name, as a file may have
        stream.append(pd.DataFrame([{"file": name, "count": n}]))
    stream.close(order=("file", ["a.png", "b,x.png", "c.png"]))
    assert (tmp_path / "c.tsv").read_text().splitlines() == ["file\tcount", "a.png\t1", "b,x.png\t2", "c.png\t3"]
