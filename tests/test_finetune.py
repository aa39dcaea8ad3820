"""Fine-tuning on a few annotated images: dots-only targets, the run, the card, cancellation, the CLI."""

from __future__ import annotations

import dataclasses
import json
import re
import threading

import numpy as np
import pytest
import tifffile
from PIL import Image

import cellcount as cc
from cellcount.errors import GroundTruthError, ParameterError
from cellcount.finetune import (
    Cancelled,
    base_misses_dots,
    dot_spacing,
    finetune,
    labels_from_dots,
    main,
    set_background,
    set_diameter,
    several_sizes_note,
    spacing_note,
    split_holdout,
    worse_than_base,
)
from cellcount.groundtruth import GroundTruth
from cellcount.models import list_models, load_model, save_model, user_models_dir
from cellcount.novelty import NOVELTY_FILE, NoveltyReference


@pytest.fixture(autouse=True)
def _fine_tunes_keep_their_weights(monkeypatch):
    """Tiny untrained networks' held-out scores are noise: whether the base's weights are kept is tested on its
    own (``worse_than_base`` forced), not left to chance in the tests of everything else."""

    monkeypatch.setattr("cellcount.finetune.core.worse_than_base", lambda before, after: False)



def test_labels_from_dots_keeps_splits_drops_and_adds(draw_disks):
    base = draw_disks((60, 60), [(15, 15), (45, 45)], 6)        # two objects
    merged = draw_disks((60, 60), [(15, 40), (15, 48)], 5)      # a merged pair, one object
    base[merged > 0] = 3
    dots = np.array([[15, 15],            # object 1: one dot -> kept
                     [15, 38], [15, 50],  # object 3: two dots -> split in two
                     [50, 10]])           # background -> a disc; object 2 (45, 45) has no dot -> dropped
    out = labels_from_dots(base, dots, diameter_px=8)
    assert out.max() == 4 and len(np.unique(out[out > 0])) == 4
    assert out[45, 45] == 0, "an object the user did not dot is dropped"
    assert out[15, 15] > 0 and np.count_nonzero(out == out[15, 15]) == np.count_nonzero(base == 1)
    assert out[15, 38] != out[15, 50] and out[15, 38] > 0 and out[15, 50] > 0
    assert np.count_nonzero(out == out[50, 10]) == pytest.approx(np.pi * 16, rel=0.3)


def test_dot_spacing_is_the_median_nearest_neighbour_gap():
    grid = np.array([(r, c) for r in range(0, 50, 10) for c in range(0, 50, 10)], float)  # 10 px apart
    assert dot_spacing([grid, grid[:2] * 2.0]) == pytest.approx(10.0)
    assert dot_spacing([grid[:1], np.zeros((0, 2))]) is None, "one dot has no neighbour"


def test_set_diameter_uses_label_areas_and_caps_by_dot_spacing(tiny_model, draw_disks):
    base = tiny_model(kind="density")
    labels = draw_disks((64, 64), [(16, 16), (16, 44), (44, 30)], 5)  # discs of radius 5 -> ~10 px across
    image = np.where(labels > 0, 200, 20).astype(np.uint8)
    by_labels = set_diameter([image], [GroundTruth(kind="labels", labels=labels, count=3)], base)
    assert by_labels == pytest.approx(10.0, rel=0.15)
    dots = np.array([(10.0, 10.0), (10.0, 14.0), (40.0, 40.0), (40.0, 44.0)])  # pairs 4 px apart
    gt = GroundTruth(kind="points", points=dots, count=4)
    assert set_diameter([image], [gt], base) <= 4.0 + 1e-9, "objects cannot be wider than the dots' spacing"


def test_set_background_is_one_decision_for_the_set(draw_disks):
    sparse = np.where(draw_disks((64, 64), [(16, 16), (44, 44)], 6) > 0, 220, 10).astype(np.uint8)
    dense = np.where(draw_disks((64, 64), [(r, c) for r in range(6, 64, 10) for c in range(6, 64, 10)], 6) > 0,
                     220, 10).astype(np.uint8)  # objects cover most of it: alone it reads as a bright background
    brightfield = 255 - sparse
    assert set_background([sparse] * 4 + [dense]) is False
    assert set_background([brightfield] * 4 + [dense]) is True
    assert set_background([sparse, sparse, brightfield, brightfield]) is None, "a mixed set: each image decides"


def test_spacing_note_when_dots_lie_far_beyond_the_measured_size():
    grid = np.array([(r, c) for r in range(0, 300, 60) for c in range(0, 300, 60)], float)  # 60 px apart
    dots = [GroundTruth("points", len(grid), points=grid)] * 2
    note = spacing_note(8.0, dots)
    assert "measured 8.0 px across" in note and "60 px apart" in note and "--diameter" in note
    assert spacing_note(25.0, dots) == "", "60 px apart at 25 px across: sparse objects, nothing suspect"
    labelled = dots[:1] + [GroundTruth("labels", 1, labels=np.ones((4, 4), np.int32))]
    assert spacing_note(8.0, labelled) == "", "label images measure the size themselves"
    assert spacing_note(None, dots) == ""
    assert spacing_note(8.0, dots, hits=[1.0, 0.9]) == "", "the base sees the dots: sparse objects of its size"
    # 2.4 sizes apart over objects the base does not see (fat cells): said, though not taken as the size
    unseen = spacing_note(25.0, dots, measured=25.0, hits=[0.04, 0.0])
    assert "sees an object under only 2% of your dots (median over images) and measured 25.0 px" in unseen
    assert "about 60 px across" in unseen and "--diameter" in unseen
    assert spacing_note(35.0, dots, measured=35.0, hits=[0.04, 0.0]) == "", "1.7 sizes apart: nothing suspect"
    replaced = spacing_note(60.0, dots, measured=8.0)
    assert "sees no object under most of your dots and measured 8.0 px" in replaced and "(60 px" in replaced


def test_a_stated_diameter_for_several_magnifications_is_questioned(draw_disks):
    dots = GroundTruth(kind="points", points=np.array([(10.0, 10.0), (40.0, 40.0)]), count=2)
    note = several_sizes_note(20.0, [dots] * 4, [9.0, 41.0, 12.0, 38.0])
    assert "one object diameter (20 px)" in note and "the base model's estimates" in note and "to 0" in note
    assert several_sizes_note(20.0, [dots] * 3, [19.0, 21.0, 20.0]) == ""

    def labels(radius):
        return GroundTruth(kind="labels", labels=draw_disks((96, 96), [(24, 24), (24, 70), (70, 48)], radius), count=3)

    assert "your label images" in several_sizes_note(20.0, [labels(4), labels(12), labels(4), labels(12)], [None] * 4)


def test_the_dots_spacing_sizes_a_set_whose_dots_the_base_does_not_see():
    assert base_misses_dots(8.0, 60.0, [0.1, 0.2, 0.0]), "dots on background, far apart: not the base's objects"
    assert not base_misses_dots(8.0, 60.0, [0.9, 0.8, 0.7]), "sparse objects the base sees"
    assert not base_misses_dots(8.0, 20.0, [0.1, 0.2]), "dots about the estimate apart"
    assert not base_misses_dots(8.0, 60.0, [None, None]), "no dots: nothing to tell"
    grid = np.array([(r, c) for r in range(0, 300, 60) for c in range(0, 300, 60)], float)
    dots = [GroundTruth("points", len(grid), points=grid)] * 2
    assert set_diameter([], dots, None, sizes=[8.0, 8.2], hits=[0.1, 0.0]) == pytest.approx(60.0)
    assert set_diameter([], dots, None, sizes=[8.0, 8.2], hits=[0.9, 1.0]) == pytest.approx(8.1)
    labelled = [GroundTruth("labels", 1, labels=np.pad(np.ones((20, 20), np.int32), 5)), dots[0]]
    assert set_diameter([], labelled, None, sizes=[22.6, 8.0], hits=[None, 0.1]) != pytest.approx(60.0), \
        "label images measure the objects: the dots' spacing does not override them"


def test_one_magnification_from_label_images_or_the_bases_estimates(draw_disks):
    from cellcount.finetune import one_magnification

    def labels(radius):
        return GroundTruth(kind="labels", labels=draw_disks((96, 96), [(24, 24), (24, 70), (70, 48)], radius), count=3)

    assert one_magnification([labels(5), labels(6), labels(5)])
    assert not one_magnification([labels(4), labels(12), labels(4), labels(12)]), "two magnifications"
    dots = GroundTruth(kind="points", points=np.array([(10.0, 10.0), (40.0, 40.0)]), count=2)
    assert one_magnification([labels(4), dots]), "dots cannot tell"
    # dots only: the base model's per-image size estimates decide
    assert one_magnification([dots] * 4, [10.5, 11.0, 10.8, 11.6]), "vgg_cells-like: one size"
    assert not one_magnification([dots] * 4, [13.0, 48.0, 24.0, 52.0]), "DSB-like mixed magnifications"
    assert one_magnification([labels(5), labels(6), dots], [13.0, 48.0, 24.0]), "two label images outrank estimates"
    assert one_magnification([dots, dots], [12.0, None]), "one known size"


def test_split_holdout_rules():
    assert split_holdout(["a"], 0.25) == ([0], [])
    tr, ho = split_holdout([str(i) for i in range(8)], 0.25, seed=1)
    assert len(ho) == 2 and sorted(tr + ho) == list(range(8))
    assert len(split_holdout([str(i) for i in range(8)], 3)[1]) == 3
    assert split_holdout(["a", "b"], 0.1)[1] != [], "two or more images: one is held out"


def test_tiles_of_one_slide_are_held_out_together():
    """A tester's hold-out took two tiles whose neighbours trained (MAE 1.76 held out, 9.27 on other patients):
    names alike but for their number are held out as a whole, where the groups allow it."""
    from cellcount.finetune.data import group_levels

    tiles = [f"BM_HE_{p:04d}_{s:02d}_{t:03d}.png" for p in (1, 2, 3) for s in (1, 2) for t in range(2)][:10]
    patient, slide = group_levels(tiles)  # coarse to fine: the tile's own number never groups
    assert slide[0] == slide[1] != slide[2] and patient[0] == patient[3] != patient[4]
    for seed in range(5):  # whole patients where one fits (patient 3's two tiles), so whole slides too
        train, held = split_holdout(tiles, 0.25, seed=seed)
        assert len(held) == 2 and not {patient[i] for i in held} & {patient[i] for i in train}
    # the tile's number inside the name (slideA_3_HE), and wells of sites with the channel alike in all
    named = [f"slide{c}_{i}_HE.png" for c in "ABC" for i in range(1, 5)]
    train, held = split_holdout(named, 0.25, seed=0)
    assert len({named[i][:6] for i in held}) == 1 and not {named[i][:6] for i in held} & {named[i][:6] for i in train}
    wells = [f"{w}_s{s}_w1.tif" for w in ("A01", "A02", "B01", "B02") for s in (1, 2, 3)]
    (rows, by_well) = group_levels(wells)
    assert by_well[0] == by_well[2] != by_well[3] and rows[0] == rows[3] != rows[6]
    # a group too large to hold out whole: the images one by one, as where every name is its own
    big = [f"slide_{t:02d}.png" for t in range(6)] + ["other_1.png", "other_2.png"]
    train, held = split_holdout(big, 0.25, seed=0)
    assert held == [6, 7], "the smaller group, whole"
    assert len(split_holdout([f"slide_{t:02d}.png" for t in range(8)], 0.25, seed=0)[1]) == 2, "one group: image by image"
    assert split_holdout([f"{i:03d}cell.png" for i in range(8)], 0.25, seed=1) == \
        split_holdout([str(i) for i in range(8)], 0.25, seed=1), "names that share nothing: as before"
    # one prefix and an odd one out say nothing: not the odd one alone for every seed, but images one by one
    plain = [f"img{i:02d}.png" for i in range(1, 20)] + ["overview.png"]
    assert all(len(split_holdout(plain, 0.25, seed=s)[1]) == 5 for s in range(5))
    assert split_holdout(plain, 0.25, seed=0) == split_holdout([str(i) for i in range(20)], 0.25, seed=0)


def test_the_holdout_note_says_how_held_out_names_relate_to_training_ones():
    """slideA_3_HE held out beside slideA_1,2,4 in training said nothing (the tile number inside the name), and
    0002_01 held out beside 0002_02 read as "not on the training images' own slides" (a tester)."""
    from cellcount.finetune.holdout import holdout_groups_note

    named = [f"slide{c}_{i}_HE.png" for c in "ABC" for i in range(1, 5)]
    note = holdout_groups_note(named, [i for i in range(12) if i not in (2, 7)], [2, 7], 2)
    assert note.startswith("2 held-out image(s) are named like training images but for their last number")
    note = holdout_groups_note(named, list(range(8)), list(range(8, 12)), 3)
    assert "no held-out image is named like a training image but for its numbers" in note and "3 were asked" in note
    patients = [f"BM_{p:04d}_{s:02d}_{t:03d}.png" for p in (1, 2, 3) for s in (1, 2) for t in range(2)]
    note = holdout_groups_note(patients, list(range(8)), [8, 9, 10, 11], 3)  # patient 3 held out whole
    assert "no held-out image shares the first number that varies in the names (a patient" in note
    tiles = [f"BM_{p:04d}_{s:02d}_{t:03d}.png" for p in (1, 2) for s in (1, 2) for t in range(3)]
    note = holdout_groups_note(tiles, list(range(9)), [9, 10, 11], 3)  # patient 2's second slide, its first trains
    assert "share an earlier number with training images" in note
    assert holdout_groups_note([f"{i:03d}cell.png" for i in range(8)], [0, 1, 2, 3, 4, 5], [6, 7], 2) is None


def test_a_held_out_image_without_dots_is_said_before_training():
    """field3.csv held its header line only and was held out: both models were scored on it as an image of no cells,
    and the held-out MAE (50.47) was all its doing, unsaid (a tester)."""
    from types import SimpleNamespace

    from cellcount.finetune.holdout import check_training_set

    said: list[str] = []
    dots = GroundTruth("points", 2, points=np.array([[3.0, 3.0], [6.0, 6.0]]), source="a.csv")
    empty = GroundTruth("points", 0, points=np.zeros((0, 2)), source="field3.csv")
    check_training_set(["a.png", "b.png", "field3.png"], [dots, dots, empty], [0, 1], [2],
                        run=SimpleNamespace(note=said.append))
    assert any(s.startswith("field3.png's annotation (field3.csv) holds no dots, and it is held out") for s in said)


def test_points_that_look_like_microns_are_among_the_runs_notes(tiny_model, tmp_path, draw_disks):
    """Coordinates halved (µm on a 0.5 µm/px image) were warned of once among the reading lines, and the image
    trained with no word of it in the run's summary or card (a tester)."""
    from types import SimpleNamespace

    from cellcount.finetune.core import _read_annotated

    data = _folder(tmp_path, draw_disks, "points", n=3)
    (data / "img0_points.csv").write_text("x,y\n" + "\n".join(f"{3 + k},{2 + k}" for k in range(12)) + "\n")
    said: list[str] = []
    with pytest.warns(UserWarning, match="top-left"):
        _read_annotated(data, 1, seed=0, model=tiny_model(kind="density"),
                        run=SimpleNamespace(note=said.append, report=lambda p: None))
    assert any("img0_points.csv: all 12 points lie within the top-left" in s and s.endswith("(read as it is)")
               for s in said), said
    # uploaded (the Train page reads them before the run): among the run's notes all the same, once; dots clicked on
    # the image itself (their source is the image's name) are the user's own
    from cellcount.labelled import labelled_set

    files = [(p.name, p.read_bytes()) for p in sorted(data.iterdir())]
    found = labelled_set(files)
    clicked = GroundTruth("points", 12, points=np.array([[2.0 + k, 3.0 + k] for k in range(12)]), source="img1.png")
    items = [(n, d, clicked if n == "img1.png" else gt) for n, d, gt in found.items]
    said.clear()
    _read_annotated(items, 1, seed=0, model=tiny_model(kind="density"),
                    run=SimpleNamespace(note=said.append, report=lambda p: None))
    assert [s for s in said if "top-left" in s] == [next(n for n in found.notes if "img0_points.csv" in n
                                                         and "top-left" in n) + " (read as it is)"], said


def test_partly_dotted_images_are_said_from_the_command_line_too(tiny_model, draw_disks):
    """A CSV cut to 4 dots for an image of 106 cells trained without a word from the command line, where the Train
    page asks "Fewer dots than cells?" of images dotted there (a tester)."""
    from cellcount.finetune.reading import few_dots_note, measure_annotated

    note = few_dots_note(["a.png", "b.png", "c.png"], [4, 100, 3], [106.2, 110.0, 6.0], "unet-density")
    assert note.startswith("fewer dots than cells? 1 image(s) have under half the cells unet-density finds on them: "
                           "a.png (4 dots; unet-density finds about 106)")
    assert few_dots_note(["b.png"], [100], [110.0], "m") is None and few_dots_note(["c.png"], [3], [None], "m") is None
    # dotted completely but over-counted by the base (mbm's H&E and unet-density): its extra cells lie near the dots
    assert few_dots_note(["a.png"], [40], [106.2], "m", undotted=[2.0]) is None
    # a few example cells dotted across the image: near them all, but far too few
    # ("0 of them far from every dot" read as though the dots covered the cells: their scatter is said instead)
    assert "a.png (4 dots; m finds about 106, the dots scattered among them)" in few_dots_note(
        ["a.png"], [4], [106.2], "m", undotted=[2.0])
    assert "a.png (4 dots; m finds about 106, 53 of them far from every dot)" in few_dots_note(
        ["a.png"], [4], [106.2], "m", undotted=[53.0])
    image = np.where(draw_disks((64, 64), [(16, 16), (40, 40)], 6) > 0, 200, 20).astype(np.uint8)
    dots = GroundTruth("points", 1, points=np.array([[16.0, 16.0]]))
    _, _, found, undotted = measure_annotated(image, dots, tiny_model(kind="density"))
    assert found is not None and found >= 0, "the base's count beside the dots"
    assert undotted is None, "one dot has no spacing to judge 'far' by"
    labels = np.zeros((64, 64), np.int32)
    labels[10:20, 10:20], labels[30:40, 30:40] = 1, 2
    assert len(measure_annotated(image, GroundTruth("labels", 2, labels=labels), tiny_model(kind="density"))) == 4


def test_the_base_count_far_from_every_dot():
    """:func:`undotted_share`: a map's mass beyond three dot spacings of every dot."""
    from cellcount.finetune.reading import undotted_share

    mass = np.zeros((100, 100), np.float32)
    mass[10:20, 10:20] = 1  # near the dots
    mass[80:90, 80:90] = 1  # 60+ px from them, with dots 10 px apart
    dots = np.array([[15.0, 10.0], [15.0, 20.0], [15.0, 30.0]])
    assert undotted_share(mass, dots) == pytest.approx(0.5)
    assert undotted_share(mass, np.vstack([dots, [[85.0, 85.0]]])) == 0.0
    assert undotted_share(np.zeros((10, 10)), dots) is None, "no mass: unknown, the count alone decides"
    assert undotted_share(mass, np.vstack([dots, dots])) is None, "every dot twice: no spacing to judge by"
    assert undotted_share(np.full((100, 100), np.nan), dots) is None


def test_a_held_out_image_at_another_magnification_is_named(draw_disks):
    """A held-out image enlarged 2x was counted at the training images' size (307 for 122) and the fine-tune blamed
    for the held-out MAE (a tester): such an image is named before training."""
    from types import SimpleNamespace

    from cellcount.finetune.holdout import check_held_out

    small = draw_disks((96, 96), [(20, 20), (60, 60)], 6)
    big = draw_disks((96, 96), [(30, 30), (66, 66)], 14)
    gts = [GroundTruth("labels", 2, labels=lab.astype(np.int32)) for lab in (small, small, big)]
    s = SimpleNamespace(held_idx=[1, 2], images=[np.zeros((96, 96), np.uint8)] * 3, gts=gts,
                        names=["a.png", "b.png", "big.png"])
    said: list[str] = []
    base = SimpleNamespace(model=SimpleNamespace(name="m"), size_model=None)
    check_held_out(s, base, {}, run=SimpleNamespace(note=said.append), like_px=12.0)
    assert len(said) == 1 and said[0].startswith("big.png (") and "(held out) measures more than 1.5x" in said[0]
    said.clear()
    check_held_out(s, base, {}, run=SimpleNamespace(note=said.append), like_px=None)  # each image sized alone
    assert not said


@pytest.mark.slow
def test_a_finetune_says_partly_dotted_and_other_magnification_images(tiny_model, tmp_path, draw_disks, monkeypatch):
    """The notes reach a run: a training image and a held-out one with far fewer dots than the base counts, and a
    held-out image whose objects measure twice the set's (the base's measurements stood in)."""
    from cellcount.finetune import core

    base_dir = tmp_path / "base"
    save_model(tiny_model(kind="density").net, tiny_model(kind="density").card, base_dir)
    data = _folder(tmp_path, draw_disks, "points", n=6)

    def measured(image, gt, base, **kw):  # img5 (8 dots) at twice the size; every image counted at 100 cells
        return (24.0 if len(gt.points) == 8 else 12.0), 1.0, 100.0, 50.0  # half of them far from every dot

    monkeypatch.setattr(core, "measure_annotated", measured)  # the training images (the set's size)
    monkeypatch.setattr("cellcount.finetune.holdout.measure_annotated", measured)  # the held-out ones
    for seed in range(4):
        res = finetune(base_dir, data, name=f"noted{seed}", steps=1, holdout=2, batch_size=2, crop=32, size="set",
                       seed=seed)
        notes = " ".join(res.notes)
        assert "fewer dots than cells? 4 image(s) have under half the cells" in notes
        assert "fewer dots than cells? 2 held-out image(s)" in notes, notes
        if "img5.png" in res.holdout_files:
            assert ("img5.png (24 px) (held out) measures more than 1.5x from the training images' 12.0 px objects, "
                    "both as tiny-unet-density measures them") in notes, notes
            break
    else:
        pytest.fail("img5.png was never held out")

    def misses(image, gt, base, **kw):  # the base sees no object under the dots: it measures something else
        return (2.0 if len(gt.points) == 8 else 1.0), 0.0, 100.0, 50.0

    monkeypatch.setattr(core, "measure_annotated", misses)
    monkeypatch.setattr("cellcount.finetune.holdout.measure_annotated", misses)
    res = finetune(base_dir, data, name="missed", steps=1, holdout=2, batch_size=2, crop=32, size="set", seed=seed)
    assert "img5.png" in res.holdout_files and "measures more than" not in " ".join(res.notes), (
        "sized from the dots' spacing, the base's own measurements say nothing of a magnification")


def test_a_kept_base_models_note_keeps_its_caveats_only():
    """Fine-tuning a model that kept its own base's weights nested two verdicts ('count with X' and 'count with Y')."""
    from cellcount.finetune.record import _without_finetune_advice

    note = ("it keeps unet-density's weights and settings, as the fine-tune counted your held-out images worse (MAE "
            "3 against 2): count with unet-density, or fine-tune again with more annotated images; not for H&E bone "
            "marrow as it is (the mbm benchmark: off by a median 87%): fine-tune it on a few of your images first")
    assert _without_finetune_advice(note) == "not for H&E bone marrow as it is (the mbm benchmark: off by a median 87%)"


@pytest.mark.slow
def test_a_finetune_says_how_its_held_out_images_relate_to_the_training_ones(tiny_model, tmp_path, draw_disks):
    base_dir = tmp_path / "base"
    save_model(tiny_model(kind="density").net, tiny_model(kind="density").card, base_dir)
    data = _folder(tmp_path, draw_disks, "points", n=6)
    for i, new in enumerate(["a_01", "a_02", "b_01", "b_02", "c_01", "c_02"]):  # three slides of two tiles
        (data / f"img{i}.png").rename(data / f"{new}.png")
        (data / f"img{i}_points.csv").rename(data / f"{new}_points.csv")
    res = finetune(base_dir, data, name="grouped", steps=2, holdout=2, batch_size=2, crop=32)
    held = load_model(res.folder).card.training["data"]["holdout_files"]
    assert len(held) == 2 and held[0][0] == held[1][0], "one slide's two tiles"
    assert any(n.startswith("held out whole groups of images named alike") for n in res.notes), res.notes


def _folder(tmp_path, draw_disks, kind: str, n: int = 4):
    data = tmp_path / f"data-{kind}"
    data.mkdir()
    for i in range(n):
        centres = [(12 + 18 * (k // 3), 12 + 18 * (k % 3)) for k in range(3 + i)]
        labels = draw_disks((64, 64), centres, 6)
        Image.fromarray(np.where(labels > 0, 200, 20).astype(np.uint8)).save(data / f"img{i}.png")
        if kind == "labels":
            tifffile.imwrite(data / f"img{i}_labels.tif", labels.astype(np.uint16))
        else:
            rows = "\n".join(f"{c},{r}" for r, c in centres)
            (data / f"img{i}_points.csv").write_text("x,y\n" + rows + "\n")
    return data


@pytest.mark.parametrize("kind,annotation", [("mask", "labels"), ("mask", "points"), ("density", "points"),
                                             ("multihead", "points")])
@pytest.mark.slow
def test_two_step_finetune_writes_a_usable_user_model(kind, annotation, tiny_model, tmp_path, draw_disks):
    base_dir = tmp_path / "base"
    base = tiny_model(kind=kind)
    # the base's novelty reference (its training images' encoder features) is not the fine-tune's
    base_dir.mkdir()
    sha = NoveltyReference.fit(np.random.default_rng(0).normal(size=(8, 16))).save(base_dir / NOVELTY_FILE)
    base.card.extra = {**base.card.extra, "novelty": {"file": NOVELTY_FILE, "sha256": sha}}
    base.card.training = {**base.card.training, "train_sha256": ["b" * 64]}  # what the base learnt from
    save_model(base.net, base.card, base_dir)
    data = _folder(tmp_path, draw_disks, annotation)
    seen = []
    res = finetune(base_dir, data, name=f"mine-{kind}-{annotation}", steps=2, holdout=1, batch_size=2, crop=32,
                   progress=seen.append, keep_worse=True)
    assert res.steps == 2 and len(res.holdout_files) == 1 and len(res.train_files) == 3
    assert {p.stage for p in seen} >= {"prepare", "train", "tune", "evaluate", "done"}
    assert res.name in list_models(), "a fine-tuned model is found by name"
    model = load_model(res.name)
    card = model.card
    assert card.training["finetuned_from"]["sha256"] == base.card.sha256 != ""
    assert card.training["data"]["annotation"] == [annotation]
    assert len(card.training["data"]["fingerprint_sha256"]) == 64
    # its own training images are recognised by content, under any name; its held-out ones are not
    train_bytes = [(data / f).read_bytes() for f in res.train_files]
    assert card.trained_on([(f"renamed_{i}.png", b) for i, b in enumerate(train_bytes)]) == [
        f"renamed_{i}.png" for i in range(len(train_bytes))]
    assert card.trained_on([(f, (data / f).read_bytes()) for f in res.holdout_files]) == []
    assert len(card.training["data"]["train_pixel_sha256"]) == len(res.train_files), "re-saved, too"
    assert card.training["train_sha256"] == ["b" * 64], "the base's training images stay recognised"
    if kind == "density":  # the count gain is said in plain words, and said loudly when it is large
        from cellcount.finetune import GAIN_NOTE

        gain = base.card.density_scale / card.density_scale
        assert card.postprocess_tuned_on.startswith(f"counts scaled by {gain:.2f}")
        loud = any("much of the change may be this one factor" in p.message for p in seen)
        assert loud == (abs(np.log(gain)) > np.log(GAIN_NOTE))
    if kind == "density":  # the evaluate command names them too (once is enough: it reads the same card)
        import contextlib
        import io

        from cellcount.evaluate.cli import main as evaluate_main

        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert evaluate_main(["--model", res.name, "--data", str(data)]) == 0
        assert f"3 of these 4 images were among {res.name}'s training images" in err.getvalue()
    assert set(card.metrics["holdout_before"]) >= {"mae", "n"} and card.metrics["holdout_after"]["n"] == 1
    assert "f1" in res.before and "f1" in res.after, "outlines by IoU, dots by the objects or peaks near them"
    assert card.postprocess["auto_nucleus_size"] is False, "the set's one size replaces per-image estimates"
    assert card.postprocess["nucleus_diameter_px"] == pytest.approx(card.training["object_diameter_px"])
    d = card.postprocess["nucleus_diameter_px"]
    assert d == round(d, 1), "measured to a tenth of a pixel, as every page shows it (14.15 read 14.1 and 14.2)"
    assert "3 training images of the fine-tune" in card.extra["quality"]["calibrated_on"], "its own flag"
    assert "novelty" not in card.extra and model.novelty is None and load_model(base_dir).novelty is not None
    assert card.training["precision"] == res.precision == "fp32", "two steps are too few to time bf16"
    dots_advice = any("density model (unet-density) learns from dots directly" in p.message for p in seen)
    assert dots_advice == (kind == "mask" and annotation == "points"), "said for dots on a segmentation base only"
    assert "too few to time bf16" in res.precision_why or "no native bf16" in res.precision_why
    assert card.training["precision_why"] == res.precision_why != ""
    jitter = (card.training["scale_range"], card.training["elastic_p"], card.training["intensity_jitter"])
    taught_by_dots = kind != "density" and annotation == "points"
    assert jitter == ([0.9, 1.11], 0.3, 0.0) if taught_by_dots else ([1.0, 1.0], 0.0, 0.0), \
        "geometric jitter only for segmentation targets built from dots"
    result = cc.count_image(np.zeros((40, 40), np.float32), model)
    assert result.count >= 0


@pytest.mark.slow
def test_a_density_fine_tunes_flag_is_calibrated_on_the_counts_of_the_saved_model(tiny_model, tmp_path, draw_disks,
                                                                                  monkeypatch):
    """The count gain changes what the saved model counts: the flag is fitted on those counts, not on the ones
    before the gain (a tester's card said 6 large errors on training images the saved model counted within 15%)."""
    import cellcount.finetune as ft
    from cellcount.pipeline import predict

    base = tiny_model(kind="density")
    seen = {}
    real = ft.calibrate_flag

    def capture(pairs, params, base_card, rep=None):
        seen["pairs"], seen["params"] = list(pairs), params
        return real(pairs, params, base_card, rep=rep)

    monkeypatch.setattr("cellcount.finetune.tuning.calibrate_flag", capture)
    base_dir = tmp_path / "base"
    save_model(base.net, base.card, base_dir)
    data = _folder(tmp_path, draw_disks, "points")
    res = finetune(base_dir, data, name="gained", steps=2, holdout=1, batch_size=2, crop=32, keep_worse=True)
    saved = load_model(res.name)
    gain = base.card.density_scale / saved.card.density_scale
    assert abs(np.log(gain)) > 0.01, "an untrained tiny net's counts need a gain: the case under test"
    for name, pred, _ in seen["pairs"]:
        image = np.asarray(Image.open(data / name))
        again = predict(image, saved, seen["params"])
        assert pred.maps[0].sum() == pytest.approx(again.maps[0].sum(), rel=1e-4), name


@pytest.mark.slow
def test_a_budget_too_short_is_refused_after_two_images_with_the_budget_needed(tiny_model, tmp_path, draw_disks,
                                                                                     monkeypatch):
    """A tester's 1-minute budget failed after 25 s of reading 8 images, without saying what would do."""
    import time

    import cellcount.finetune as ft

    real, calls = ft.measure_annotated, []

    def slow(*args, **kwargs):  # a slow computer: each base pass 0.5 s
        calls.append(1)
        time.sleep(0.5)
        return real(*args, **kwargs)

    monkeypatch.setattr("cellcount.finetune.core.measure_annotated", slow)
    base = tiny_model(kind="density")
    base_dir = tmp_path / "base"
    save_model(base.net, base.card, base_dir)
    with pytest.raises(ParameterError, match=r"a budget of 0.1 min leaves 0 s of training .* give about \d"):
        finetune(base_dir, _folder(tmp_path, draw_disks, "points"), name="short", minutes=0.1, holdout=1)
    assert len(calls) == 2, "refused after timing the second image (the first may set up), not after measuring all"


def test_a_budget_refused_before_the_settings_search_is_timed_names_a_least_budget():
    """A mask fine-tune refused at 0.5 min said "give about 1.5 min"; given 1.5 it said "about 3": the first
    reckoning had not timed the settings search yet."""
    from cellcount.finetune.core import _check_budget

    with pytest.raises(ParameterError, match=r"give more than 1.5 min \(a minute of training, and the search"):
        _check_budget(0.5, 20.0, 10.0, 6, partial=True)
    with pytest.raises(ParameterError, match=r"give about 1.5 min or more"):
        _check_budget(0.5, 20.0, 10.0, 6)
    assert _check_budget(2.0, 20.0, 10.0, 6) == pytest.approx(90.0)


@pytest.mark.slow
def test_a_mixed_set_keeps_per_image_background_and_size(tiny_model, tmp_path, draw_disks):
    base_dir = tmp_path / "base"
    base = tiny_model(kind="mask")
    save_model(base.net, base.card, base_dir)
    data = tmp_path / "mixed"
    data.mkdir()
    for i, (radius, bright) in enumerate([(4, False), (4, True), (11, False), (11, True)]):
        labels = draw_disks((96, 96), [(24, 24), (24, 70), (70, 48)], radius)
        image = np.where(labels > 0, 200, 20).astype(np.uint8)
        Image.fromarray(255 - image if bright else image).save(data / f"img{i}.png")
        tifffile.imwrite(data / f"img{i}_labels.tif", labels.astype(np.uint16))
    res = finetune(base_dir, data, name="mixed", steps=1, holdout=0, batch_size=2, crop=32)
    assert "read per image" in res.reading and "estimated on its own" in res.reading
    assert "more than 1.5x apart: several magnifications" in res.reading, "why each image is sized on its own"
    card = load_model(res.folder).card
    assert card.training["size"] == "image" and card.training["background"] == "image"
    assert card.postprocess.get("invert") is None, "each image is read as the base reads it"
    assert card.postprocess.get("auto_nucleus_size", True) is not False, "each image is sized on its own"
    forced = load_model(finetune(base_dir, data, name="forced", steps=1, holdout=0, batch_size=2, crop=32,
                                 size="set", background="set").folder).card
    assert forced.training["size"] == "set" and forced.postprocess["auto_nucleus_size"] is False
    assert forced.training["background"] == "image", "a 2 : 2 tie has no majority"


@pytest.mark.slow
def test_an_image_outvoted_on_its_background_is_named(tiny_model, tmp_path, draw_disks):
    """A fluorescence image among bright-background ones was read as the set is, without a word (a tester's vgg cell
    among mbm H&E tiles)."""
    base_dir = tmp_path / "base"
    base = tiny_model(kind="density")
    save_model(base.net, base.card, base_dir)
    data = tmp_path / "five"
    data.mkdir()
    for i in range(5):  # five different images (copies would count once)
        labels = draw_disks((96, 96), [(24, 24 + 4 * i), (24, 70), (70, 48 - 3 * i)], 6)
        image = np.where(labels > 0, 200, 20).astype(np.uint8)
        Image.fromarray(image if i == 4 else 255 - image).save(data / f"img{i}.png")
        tifffile.imwrite(data / f"img{i}_labels.tif", labels.astype(np.uint16))
    res = finetune(base_dir, data, name="outvoted", steps=1, holdout=0, batch_size=2, crop=32)
    assert load_model(res.folder).card.postprocess.get("invert") is True
    assert any(n.startswith("img4.png has a dark background (as fluorescence) on its own, but is read as "
                            "bright-background with the rest of the set") for n in res.notes), res.notes


def test_a_model_fine_tuned_at_another_reference_counts_at_it(tiny_model, tmp_path, draw_disks):
    base_dir = tmp_path / "base"
    base = tiny_model(kind="density")
    save_model(base.net, base.card, base_dir)
    res = finetune(base_dir, _folder(tmp_path, draw_disks, "points"), name="native", steps=1, holdout=0,
                   batch_size=2, crop=32, reference_px=6.0)
    model = load_model(res.name)
    diameter = model.card.postprocess["nucleus_diameter_px"]
    assert model.card.extra["reference_diameter_px"] == 6.0 == model.card.training["reference_diameter_px"]
    pred = cc.predict(np.zeros((64, 64), np.uint8), model)
    assert pred.model_scale == pytest.approx(cc.sizing.model_scale(model, diameter, (64, 64)))
    assert pred.model_scale == pytest.approx(1.0 if 6.0 / 1.25 <= diameter <= 6.0 * 1.25 else 6.0 / diameter,
                                             rel=0.045)  # on the resize grid


@pytest.mark.slow
def test_a_stated_diameter_is_the_sets_one_size(tiny_model, tmp_path, draw_disks, capsys):
    base_dir = tmp_path / "base"
    base = tiny_model(kind="density")
    save_model(base.net, base.card, base_dir)
    data = _folder(tmp_path, draw_disks, "points")  # dots: otherwise sized by the base model and dot spacing
    res = finetune(base_dir, data, name="sized", steps=1, holdout=0, batch_size=2, crop=32, diameter_px=30.0)
    card = load_model(res.folder).card
    assert card.training["size"] == "given" and card.training["object_diameter_px"] == 30.0
    assert card.postprocess["nucleus_diameter_px"] == 30.0 and card.postprocess["auto_nucleus_size"] is False
    # its approximate centres a quarter of that size apart (3 px found ~40x too many on 100 px fat cells)
    assert card.postprocess["peak_min_distance_px"] == 8
    assert "objects 30.0 px across in every image (the size you gave" in res.reading
    # the size flag measures from the size it learnt (the base's 18.4 px gave every count the same 1.6x doubt)
    assert card.extra["trained_diameter_px"] == 30.0
    image = np.asarray(Image.open(data / "img0.png"))
    sized = load_model(res.folder)
    assert cc.count_image(image, sized).quality.signals["size_ratio"] == pytest.approx(1.0)
    bigger = cc.count_image(image, sized, {"nucleus_diameter_px": 45.0})
    assert bigger.quality.signals["size_ratio"] == pytest.approx(1.5)
    measured = load_model(finetune(base_dir, data, name="measured", steps=1, holdout=0, batch_size=2,
                                   crop=32).folder).card
    assert measured.training["size"] == "set" and measured.training["object_diameter_px"] != 30.0
    for bad in (0.5, float("nan"), 5000.0):
        with pytest.raises(cc.ParameterError, match="diameter_px"):
            finetune(base_dir, data, name="bad", steps=1, holdout=0, diameter_px=bad)
    with pytest.raises(cc.ParameterError, match="one size for the whole set"):
        finetune(base_dir, data, name="bad", steps=1, holdout=0, diameter_px=20.0, size="image")
    assert main(["--from", str(base_dir), "--data", str(data), "--name", "cli-sized", "--steps", "1",
                 "--holdout", "0", "--diameter", "24"]) == 0
    assert "objects 24.0 px across in every image (the size you gave" in capsys.readouterr().out


def test_an_image_with_a_count_only_is_left_out_naming_it_and_the_others_train(tiny_model, tmp_path, draw_disks):
    """A tester's folder with one image counted in a counts table (the rest with labels or points) ended the whole
    fine-tune with an error after its preparation: that image is left out and named."""
    base_dir = tmp_path / "base"
    base = tiny_model(kind="density")
    save_model(base.net, base.card, base_dir)
    data = _folder(tmp_path, draw_disks, "points", n=3)
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(data / "counted.png")
    (data / "counts.csv").write_text("filename,count\ncounted.png,3\n")
    res = finetune(base_dir, data, name="some-counted", steps=1, holdout=0, batch_size=2, crop=32)
    assert "counted.png" not in res.train_files and len(res.train_files) == 3
    assert any(n.startswith("left out: counted.png: a count alone cannot teach a model where the cells are")
               for n in res.notes), res.notes
    for f in data.glob("*_points.csv"):  # the others' dots exported empty: the counted image held every cell
        f.write_text("x,y\n")
    with pytest.raises(cc.CellcountError, match=r"counted.png: a count alone cannot teach a model where the cells are; "
                                                r"give .*; the other images' annotations hold no objects"):
        finetune(base_dir, data, name="none-dotted", steps=1, holdout=0, batch_size=2, crop=32)


def test_finetune_refuses_counts_only_and_existing_names(tiny_model, tmp_path, draw_disks):
    base_dir = tmp_path / "base"
    base = tiny_model(kind="mask")
    save_model(base.net, base.card, base_dir)
    data = tmp_path / "counts"
    data.mkdir()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(data / "a.png")
    (data / "counts.csv").write_text("filename,count\na.png,3\n")
    with pytest.raises(cc.CellcountError, match="count alone"):
        finetune(base_dir, data, name="x", steps=1, holdout=0)
    with pytest.raises(cc.CellcountError, match="existing model"):
        finetune(base_dir, data, name="unet-mask", steps=1)
    with pytest.raises(cc.CellcountError, match="differs from the existing model 'unet-mask' only in upper / lower"):
        finetune(base_dir, data, name="UNET-Mask", steps=1)


def test_cancel_stops_between_steps_and_writes_nothing(tiny_model, tmp_path, draw_disks):
    base_dir = tmp_path / "base"
    base = tiny_model(kind="mask")
    save_model(base.net, base.card, base_dir)
    data = _folder(tmp_path, draw_disks, "labels")
    stop = threading.Event()

    def on_progress(p):
        if p.stage == "train" and p.step >= 1:
            stop.set()

    with pytest.raises(Cancelled):
        finetune(base_dir, data, name="cancelled", steps=50, batch_size=2, crop=32, progress=on_progress, cancel=stop)
    assert "cancelled" not in list_models()


@pytest.mark.slow
def test_a_cancel_while_the_model_is_written_saves_nothing(tiny_model, tmp_path, draw_disks, monkeypatch):
    """A Cancel pressed after the last check before writing ended in "saved" (a tester read the code): the model is
    written into a hidden folder first, and a cancel by then still leaves nothing."""
    import cellcount.models as models

    base_dir = tmp_path / "base"
    base = tiny_model(kind="mask")
    save_model(base.net, base.card, base_dir)
    data = _folder(tmp_path, draw_disks, "labels")
    stop = threading.Event()
    real = models.save_model

    def save_and_cancel(*args, **kwargs):
        out = real(*args, **kwargs)
        stop.set()  # the user presses Cancel while the files are written
        return out

    monkeypatch.setattr(models, "save_model", save_and_cancel)
    with pytest.raises(Cancelled):
        finetune(base_dir, data, name="late", steps=1, batch_size=2, crop=32, cancel=stop)
    assert "late" not in list_models()
    assert not [p for p in user_models_dir().glob(".late.saving-*")], "no hidden half-written folder left"


@pytest.mark.slow
def test_a_name_taken_while_training_is_not_overwritten(tiny_model, tmp_path, draw_disks):
    """Another run (a CLI fine-tune, a second app) saved a model under the same name while this one trained: it
    was silently overwritten. This one is saved under the next free name, said in a note; nothing half-written
    is ever listed."""
    base_dir = tmp_path / "base"
    base = tiny_model(kind="mask")
    save_model(base.net, base.card, base_dir)
    data = _folder(tmp_path, draw_disks, "labels")
    out = tmp_path / "models"

    def on_progress(p):
        if p.stage == "train" and not (out / "mine").exists():
            save_model(base.net, dataclasses.replace(base.card, name="mine"), out / "mine")

    res = finetune(base_dir, data, name="mine", steps=2, batch_size=2, crop=32, out_dir=out, progress=on_progress)
    assert res.name == "mine-2" and res.folder == out / "mine-2"
    assert cc.models.model_card(out / "mine-2").name == "mine-2"
    assert (out / "mine" / "card.json").is_file()
    assert any("saved as mine-2" in n for n in res.notes)
    before = [n for n in res.notes if "saved as mine-2" not in n]
    assert not any(re.search(r"(?<![\w.-])mine(?![\w-])", n) for n in before), "earlier notes name mine-2"
    assert sorted(p.name for p in out.iterdir()) == ["mine", "mine-2"]


@pytest.mark.slow
def test_cli_reports_before_and_after(tiny_model, tmp_path, draw_disks, capsys):
    base_dir = tmp_path / "base"
    base = tiny_model(kind="mask")
    save_model(base.net, base.card, base_dir)
    data = _folder(tmp_path, draw_disks, "labels")
    rc = main(["--from", str(base_dir), "--data", str(data), "--name", "cli-model", "--steps", "2", "--holdout", "1"])
    out = capsys.readouterr().out
    assert rc == 0 and "held-out images (1): count MAE" in out
    # each held-out image's counts (one far-off image made a tester's MAE alone, unseen from the command line)
    assert re.search(r"\n  \S+\.png: true \d+, \S+ \d+\.\d, cli-model \d+\.\d\n", out), out
    # the base's weights with the new settings (here its set's object size): what the settings alone do
    assert re.search(r"weights with cli-model's settings \(input and postprocessing\): MAE \d+\.\d\d, what the settings "
                     r"alone do", out), out
    assert "mae" in load_model("cli-model").card.metrics["holdout_base_weights_new_settings"]
    # what each network ran in, so that a recount gives these figures (a tester's recount differed by backend)
    ran = load_model("cli-model").card.metrics["holdout_backends"]
    assert set(ran) == {"before", "after"} and all(ran.values()), ran
    assert "for these figures" in load_model("cli-model").card.metrics["holdout_note"], "the Models page's record"
    assert re.search(r"(both networks ran in \S+|ran in \S+, cli-model in \S+) for these figures; a recount with "
                     r"another backend may differ", out), out
    assert "Dark (fluorescence) background, decided once for the set; objects 12." in out, "the set decisions, said"
    assert main(["--from", str(base_dir), "--data", str(data), "--name", "cli-model", "--steps", "1"]) == 2
    err = capsys.readouterr().err
    # what to do in the app too, without the models folder's path (a tester's Train page showed it)
    assert "already exists; choose another name, or delete that model first (the Models page" in err, err
    assert "outside your models folder" not in out
    # elsewhere than the models folder: not usable by name, and said so (a tester's count then failed)
    assert main(["--from", str(base_dir), "--data", str(data), "--name", "away", "--steps", "1",
                 "--out-dir", str(tmp_path / "elsewhere")]) == 0
    assert f"use it by its folder (--model {tmp_path / 'elsewhere' / 'away'})" in capsys.readouterr().out


def test_cli_help_lists_the_set_decisions(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # the help is wrapped to the terminal's width
    assert "--size {auto,set,image}" in out and "80% of the training images agree" in out
    assert "(MAE over 5% higher and at least 2 objects more error over the held-out images together;" in out  # a literal %


@pytest.mark.parametrize("case, match", [
    ("out-dir is a file", "is a file"),
    ("out-dir cannot be created", "cannot write a model"),
    ("holdout 1.5", "whole number of images"),
    ("data missing", "folder not found"),
])
def test_cli_refuses_bad_options_before_training(tmp_path, capsys, case, match):
    """Checked first, in one line: a folder that cannot take the model would lose the minutes of training."""
    (tmp_path / "afile").write_text("x")
    data = tmp_path / "data"
    data.mkdir()
    argv = ["--from", "unet-mask", "--data", str(data), "--name", "new-one", "--steps", "1",
            "--out-dir", str(tmp_path / "models")]
    extra = {"out-dir is a file": ["--out-dir", str(tmp_path / "afile")],
             "out-dir cannot be created": ["--out-dir", str(tmp_path / "afile" / "sub")],
             "holdout 1.5": ["--holdout", "1.5"],
             "data missing": ["--data", str(tmp_path / "nothere")]}[case]
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err and err.count("\n") == 1


@pytest.mark.slow
def test_time_budget_follows_a_machine_that_slows_down(tiny_model, draw_disks):
    import time

    from cellcount.finetune.fit import _fit
    from cellcount.train import DEFAULTS

    base = tiny_model(kind="density")
    items = [three_dots_item(base, draw_disks)]

    seen, shown = [], []

    def slow_after_three(p):  # the first steps are fast, then the machine gets busy
        seen.append(p.estimated)
        shown.append((p.step, p.steps))
        assert p.remaining_s <= max(1.0 - p.elapsed_s, 0.0) + 1e-6, "never more time left than the budget has"
        if p.step >= 3:
            time.sleep(0.1)

    steps, seconds, _, _ = _fit(copy_net(base), items, kind="density", steps=None, seconds=1.0, batch_size=2, crop=32,
                             lr=1e-3, rng=np.random.default_rng(0), report=slow_after_three, cancel=None,
                             loss_cfg=dict(DEFAULTS["loss"]), scale_range=(0.8, 1.25))
    assert seconds < 1.6, "the plan made from the first, fast steps is revised when steps slow down"
    assert 5 <= steps <= 16
    assert seen and all(seen), "a time budget's step total is an estimate, and says so"
    # no total before the pace is known: the warm-up steps read as "step 1 of about 20" on a run of 82 (a tester)
    assert [total for step, total in shown if step < 3] == [0, 0] and all(total >= step for step, total in shown[2:])
    # the Train page's bar stays at the start meanwhile (at no total it jumped to the end's 0.95)
    from cellcount.finetune import FinetuneProgress
    from cellcount.jobs import JobSnapshot

    first = FinetuneProgress("train", 1, 0, 0.5, 0.4, 0.6, estimated=True)
    snap = JobSnapshot("running", "m", "b", first, (), 0.0, 1.0)
    assert snap.fraction == 0.05
    later = dataclasses.replace(snap, progress=FinetuneProgress("train", 10, 40, 0.5, 4.0, 6.0, estimated=True))
    assert 0.05 < later.fraction < 0.9


def three_dots_item(base, draw_disks):
    """One 64 x 64 training item of three discs, dotted, at the base's own size."""
    from cellcount.finetune import training_item

    centres = [(16, 16), (16, 44), (44, 30)]
    image = np.where(draw_disks((64, 64), centres, 5) > 0, 200, 20).astype(np.uint8)
    gt = GroundTruth(kind="points", points=np.array(centres, float), count=3)
    return training_item("a", image, gt, base, density_scale=100.0, diameter_px=18.4)


def copy_net(model):
    import copy

    net = copy.deepcopy(model.net).float()
    for par in net.parameters():
        par.requires_grad_(True)
    return net


def test_training_targets_run_the_base_only_where_dots_correct_its_segmentation(tiny_model, draw_disks, monkeypatch):
    """Dots for a density head and label images need only the base's input, not its maps: preparing a set
    then costs no network pass per image. Dots for a segmentation head correct the base's segmentation."""
    from cellcount import pipeline
    from cellcount.finetune import training_item

    passes = []
    real = pipeline.predict
    monkeypatch.setattr(pipeline, "predict", lambda *a, **k: passes.append(1) or real(*a, **k))
    density, mask = tiny_model(kind="density"), tiny_model(kind="mask")
    item = three_dots_item(density, draw_disks)
    assert item.targets["density"].sum() == pytest.approx(300.0, rel=1e-4) and passes == []
    labels = draw_disks((64, 64), [(16, 16), (44, 30)], 5).astype(np.int32)
    image = np.where(labels > 0, 200, 20).astype(np.uint8)
    labelled = training_item("b", image, GroundTruth(kind="labels", labels=labels, count=2), mask,
                             density_scale=1.0, diameter_px=18.4)
    assert passes == [] and labelled.targets["mask"].sum() == (labels > 0).sum()
    # the input the base's full pass normalises (its own path, not the helper the item now calls)
    expected_input = real(image, mask, cc.resolve_params(mask, {"nucleus_diameter_px": 18.4})).image_norm
    np.testing.assert_array_equal(labelled.image, expected_input)
    training_item("c", image, GroundTruth(kind="points", points=np.array([[16.0, 16.0]]), count=1), mask,
                  density_scale=1.0, diameter_px=18.4)
    assert passes == [1]


def test_training_item_scale_and_density_target_follow_their_settings(tiny_model, draw_disks):
    from cellcount.finetune import training_item

    base = tiny_model(kind="density")  # its card has no reference: the shipped 18.4 px
    centres = [(16, 16), (16, 44), (44, 30)]
    image = np.where(draw_disks((64, 64), centres, 5) > 0, 200, 20).astype(np.uint8)
    gt = GroundTruth(kind="points", points=np.array(centres, float), count=3)
    upscaled = training_item("a", image, gt, base, density_scale=1.0, diameter_px=9.2)
    native = training_item("a", image, gt, base, density_scale=1.0, diameter_px=9.2, reference_px=9.2)
    wide = training_item("a", image, gt, base, density_scale=1.0, diameter_px=9.2, reference_px=9.2,
                         density_sigma=0.5)
    assert upscaled.image.shape == (128, 128), "9.2 px objects are resized 2x to the base's 18.4 px"
    assert native.image.shape == (64, 64), "objects already at the reference diameter stay as they are"
    for item in (upscaled, native, wide):
        assert item.targets["density"].sum() == pytest.approx(3.0, rel=1e-4), "one unit of mass per dot"
    assert wide.targets["density"].max() < 0.5 * native.targets["density"].max(), "twice the sigma: a lower peak"
    assert native.targets["density"][16, 16] == native.targets["density"].max()


def test_average_last_ends_with_the_mean_of_the_last_steps_weights(tiny_model, draw_disks):
    from cellcount.finetune.fit import _fit
    from cellcount.train import DEFAULTS

    base = tiny_model(kind="density")
    items = [three_dots_item(base, draw_disks)]
    net = copy_net(base)
    seen = {}

    def snapshot(p):  # the weights after each step
        seen[p.step] = {k: v.detach().clone() for k, v in net.state_dict().items() if v.is_floating_point()}

    _fit(net, items, kind="density", steps=4, seconds=None, batch_size=2, crop=32, lr=1e-2,
         rng=np.random.default_rng(0), report=snapshot, cancel=None, loss_cfg=dict(DEFAULTS["loss"]),
         scale_range=(0.9, 1.11), average_last=0.5)
    final = net.state_dict()
    name = next(k for k in seen[4] if k.endswith("weight"))
    assert not np.allclose(seen[2][name].numpy(), seen[4][name].numpy()), "the weights moved"
    mean = sum(seen[s][name] for s in (2, 3, 4)) / 3  # the last half of 4 steps: after steps 2, 3 and 4
    np.testing.assert_allclose(final[name].numpy(), mean.numpy(), rtol=1e-5, atol=1e-7)


def test_a_frozen_encoder_keeps_the_bases_weights_and_statistics(tiny_model, draw_disks):
    import torch

    from cellcount.finetune.fit import _fit
    from cellcount.train import DEFAULTS

    base = tiny_model(kind="density")
    items = [three_dots_item(base, draw_disks)]
    net = copy_net(base)
    before = {k: v.detach().clone() for k, v in net.state_dict().items()}
    _fit(net, items, kind="density", steps=3, seconds=None, batch_size=2, crop=32, lr=1e-2,
         rng=np.random.default_rng(0), report=lambda p: None, cancel=None, loss_cfg=dict(DEFAULTS["loss"]),
         scale_range=(0.9, 1.11), freeze_encoder=True)
    after = net.state_dict()
    encoder = [k for k in after if k.startswith(("stem.", "down."))]
    decoder = [k for k in after if k.startswith(("dec.", "up.", "out.")) and after[k].is_floating_point()]
    assert encoder and decoder
    # weights and BatchNorm running statistics alike: the crops do not move the base's encoder
    assert all(torch.equal(before[k], after[k]) for k in encoder)
    assert any(not torch.equal(before[k], after[k]) for k in decoder), "the decoder learnt"


@pytest.mark.parametrize("n_images", [8, 3])
def test_the_flag_is_fitted_on_the_training_images(tiny_model, draw_disks, n_images):
    """Objects 6 px across, counted at that one size (the fine-tune's set size): 3x off the base's 18.4 px,
    which the base's rule flags on every image; the new rule does not flag the images the model learnt."""
    from cellcount.finetune import MIN_FLAG_IMAGES, calibrate_flag
    from cellcount.quality import QualityRule, judge

    model = tiny_model(kind="density")
    params = cc.resolve_params(model, {"nucleus_diameter_px": 6.0, "auto_nucleus_size": False})
    pairs = []
    for i in range(n_images):
        centres = [(10 + 9 * (k % 5), 10 + 9 * (k // 5)) for k in range(5 + i)]
        image = np.where(draw_disks((56, 56), centres, 3) > 0, 200, 20).astype(np.uint8)
        gt = GroundTruth(kind="points", points=np.array(centres, float), count=len(centres))
        pairs.append((f"img{i}", cc.predict(image, model, params), gt))
    signals = [cc.postprocess(pred, params).quality.signals for _, pred, _ in pairs]
    assert all(judge(x, QualityRule()).flag for x in signals), "the base's rule: 3x off its size, every image"
    entry = calibrate_flag(pairs, params, model.card)
    rule = QualityRule(**{**entry["rule"], "joint_limits": tuple(entry["rule"]["joint_limits"].items())})
    assert not any("size" in r for x in signals for r in judge(x, rule).reasons)
    assert rule.max_size_ratio >= max(x["size_ratio"] for x in signals)
    assert entry["calibration"]["n"] == n_images
    fitted = n_images >= MIN_FLAG_IMAGES
    if fitted:
        assert not rule.joint_limits and entry["calibration"]["fitted_limits"] == [], "no limit fitted to its errors"
    assert not any(judge(x, rule).flag for x in signals), "no training image reaches a limit (fitted or widened)"
    assert ("training images of the fine-tune (range limits" in entry["calibrated_on"]) == fitted
    assert ("the base model's rule" in entry["calibrated_on"]) == (not fitted)


def test_too_few_images_widen_the_base_rule_to_take_them_in():
    """A fine-tune on 6 H&E images kept the base's fluorescence limits: 5 of 6 training images and most unseen
    ones of their kind flagged "unsure", counted right."""
    from cellcount.finetune.flag import _widened_to
    from cellcount.quality import QualityRule, judge

    base = QualityRule(max_uncertain_fraction=0.25, min_contrast=0.15, max_merge_share=None,
                       joint_limits=(("uncertain_fraction", 0.2), ("contrast", 0.3)))
    signals = [{"uncertain_fraction": 0.33, "contrast": 0.1, "merge_share": 0.4},
               {"uncertain_fraction": 0.1, "contrast": 0.5, "merge_share": 0.1}]
    rule = _widened_to(base, signals)
    assert rule.max_uncertain_fraction == pytest.approx(0.363) and rule.min_contrast == pytest.approx(0.1 / 1.1, abs=1e-4)
    assert rule.max_merge_share is None, "no limit where the base had none"
    assert dict(rule.joint_limits) == pytest.approx({"uncertain_fraction": 0.363, "contrast": 0.1 / 1.1}, abs=1e-4)
    calm = [{"uncertain_fraction": 0.05, "contrast": 0.9}]
    assert _widened_to(base, calm) == base, "never tighter than the base's"
    # objects darker than their surroundings in the training images (fat cells): no lower contrast limit is left
    # (the base's, kept, flagged every count of a fine-tune on them)
    dark = [{"uncertain_fraction": 0.1, "contrast": -0.01}, {"uncertain_fraction": 0.1, "contrast": 0.2}]
    rule = _widened_to(base, dark)
    assert rule.min_contrast is None and rule.joint_limits == ()
    assert not judge({"uncertain_fraction": 0.1, "contrast": -0.02}, rule).flag


def test_auto_precision_times_both_and_keeps_the_faster(tiny_model, draw_disks, monkeypatch):
    from cellcount.finetune.fit import _AUTO_PLAN, _fit
    from cellcount.models import backends
    from cellcount.train import DEFAULTS

    base = tiny_model(kind="density")
    items = [three_dots_item(base, draw_disks)]
    monkeypatch.setattr(backends, "cpu_has_bf16", lambda: True)
    seen = []
    steps, _, _, used = _fit(copy_net(base), items, kind="density", steps=24, seconds=None, batch_size=2,
                             crop=32, lr=1e-3, rng=np.random.default_rng(0), report=seen.append, cancel=None,
                                loss_cfg=dict(DEFAULTS["loss"]), scale_range=(0.9, 1.11), precision="auto")
    assert steps == 24 and used["precision"] in ("fp32", "bf16")
    assert set(used["s_per_step"]) == {"fp32", "bf16"}, "two timed steps of each after a warm-up"
    assert [p.message for p in seen if p.message] == [used["why"]], "said once, when chosen"
    assert seen[len(_AUTO_PLAN) - 1].message == used["why"]

    _, _, _, used = _fit(copy_net(base), items, kind="density", steps=5, seconds=None, batch_size=2, crop=32,
                            lr=1e-3, rng=np.random.default_rng(0), report=lambda p: None, cancel=None,
                            loss_cfg=dict(DEFAULTS["loss"]), scale_range=(0.9, 1.11), precision="auto")
    assert used == {"precision": "fp32", "why": "fp32: 5 steps are too few to time bf16", "s_per_step": {}}

    monkeypatch.setattr(backends, "cpu_has_bf16", lambda: False)
    _, _, _, used = _fit(copy_net(base), items, kind="density", steps=2, seconds=None, batch_size=2, crop=32,
                            lr=1e-3, rng=np.random.default_rng(0), report=lambda p: None, cancel=None,
                            loss_cfg=dict(DEFAULTS["loss"]), scale_range=(0.9, 1.11), precision="auto")
    assert used["precision"] == "fp32" and "no native bf16" in used["why"], "emulated bf16 is never timed"


@pytest.mark.slow
def test_a_precision_timed_while_the_machine_was_busy_is_timed_again(tiny_model, draw_disks, monkeypatch):
    """Both precisions timed at 2.2-2.4 s a step while a page reloaded in the same server, then 0.25 s a step:
    the 15% rule kept fp32 for a whole run on a CPU where bf16 was faster. Timed steps far slower than the steps
    since are timed again."""
    import time

    from cellcount.finetune.fit import _AUTO_PLAN, _RETIME_PLAN, RETIME_AFTER, _fit
    from cellcount.models import backends
    from cellcount.train import DEFAULTS

    base = tiny_model(kind="density")
    items = [three_dots_item(base, draw_disks)]
    monkeypatch.setattr(backends, "cpu_has_bf16", lambda: True)
    net, calls = copy_net(base), [0]
    forward = net.forward

    def busy_at_first(x):  # the first timing's steps (after the warm-up) held up by something else
        calls[0] += 1
        if 3 <= calls[0] <= len(_AUTO_PLAN):
            time.sleep(0.2)
        return forward(x)

    net.forward = busy_at_first
    seen = []
    steps, _, _, used = _fit(net, items, kind="density", steps=30, seconds=None, batch_size=2, crop=32, lr=1e-3,
                             rng=np.random.default_rng(0), report=seen.append, cancel=None,
                             loss_cfg=dict(DEFAULTS["loss"]), scale_range=(0.9, 1.11), precision="auto")
    assert steps == 30 and "timed again: the first timing ran while the machine was busy" in used["why"]
    assert max(used["s_per_step"].values()) < 0.2, "the second timing's steps, not the first's"
    said = [p.message for p in seen if p.message]
    assert len(said) == 2 and said[-1] == used["why"]
    second_decision = len(_AUTO_PLAN) + RETIME_AFTER + len(_RETIME_PLAN)  # the step after which it is said
    assert seen[second_decision - 1].message == used["why"]


def test_precision_choice_needs_a_clear_gain():
    from cellcount.finetune import BF16_MIN_GAIN
    from cellcount.finetune.fit import _choose_precision

    assert _choose_precision({"fp32": [0.50, 0.52], "bf16": [0.15, 0.17]})["precision"] == "bf16"
    assert _choose_precision({"fp32": [0.50], "bf16": [0.50 / (BF16_MIN_GAIN - 0.05)]})["precision"] == "fp32"
    slow = _choose_precision({"fp32": [0.3, 0.3], "bf16": [0.6, 0.6]})
    assert slow["precision"] == "fp32" and "0.60 s in bf16 and 0.30 s in fp32" in slow["why"]


def test_a_forced_precision_is_used_and_a_bad_one_refused(tiny_model, draw_disks, tmp_path):
    from cellcount.finetune.fit import _fit
    from cellcount.train import DEFAULTS

    base = tiny_model(kind="density")
    items = [three_dots_item(base, draw_disks)]
    _, _, losses, used = _fit(copy_net(base), items, kind="density", steps=2, seconds=None, batch_size=2, crop=32,
                              lr=1e-3, rng=np.random.default_rng(0), report=lambda p: None, cancel=None,
                              loss_cfg=dict(DEFAULTS["loss"]), scale_range=(0.9, 1.11), precision="bf16")
    assert used["precision"] == "bf16" and all(np.isfinite(losses))
    with pytest.raises(ParameterError, match="precision must be one of auto, fp32, bf16"):
        finetune("unet-density", tmp_path, name="x", steps=1, precision="fp16", out_dir=tmp_path / "out")


def test_a_time_budget_buys_at_most_max_steps(tiny_model, draw_disks):
    from cellcount.finetune.fit import _fit
    from cellcount.train import DEFAULTS

    base = tiny_model(kind="density")
    items = [three_dots_item(base, draw_disks)]
    steps, seconds, _, _ = _fit(copy_net(base), items, kind="density", steps=None, seconds=60.0, batch_size=2,
                                crop=32, lr=1e-3, rng=np.random.default_rng(0), report=lambda p: None, cancel=None,
                                loss_cfg=dict(DEFAULTS["loss"]), scale_range=(0.9, 1.11), max_steps=7)
    assert steps == 7 and seconds < 30, "the cap ends the run long before the minute it could have used"
    with pytest.raises(ParameterError, match="max_steps must be a whole number of steps >= 1"):
        finetune("unet-density", "missing", name="x", max_steps=0)


@pytest.mark.slow
def test_notes_say_when_holdout_is_capped_few_images_train_or_dots_are_missing(tiny_model, tmp_path, draw_disks):
    """A held-out request capped to leave one training image, and a header-only points CSV (a failed export),
    ran without a word; now each is a note in the result (printed by the CLI, shown by the Train page)."""
    base_dir = tmp_path / "base"
    base = tiny_model(kind="density")
    base.card.extra = {**base.card.extra, "guide_note": "its quality flag misses errors"}
    save_model(base.net, base.card, base_dir)
    data = _folder(tmp_path, draw_disks, "points", n=3)
    with pytest.raises(ParameterError, match="asks to hold out 3 of the 3 annotated image.s.; at most 2 can be"):
        finetune(base_dir, data, name="capped", steps=1, holdout=3, batch_size=2, crop=32)
    assert "capped" not in list_models(), "nothing trained, nothing saved"
    res = finetune(base_dir, data, name="capped", steps=1, holdout=2, batch_size=2, crop=32)
    assert "guide_note" not in load_model(res.folder).card.extra, "the base's caveat is not the new model's"
    assert "its quality flag misses errors" in load_model(base_dir).card.summary()
    assert len(res.train_files) == 1 and len(res.holdout_files) == 2
    assert any("only 1 image(s) to train on" in n for n in res.notes)
    (data / "img0_points.csv").write_text("x,y\n")
    res = finetune(base_dir, data, name="empty-dots", steps=1, holdout=0, batch_size=2, crop=32)
    assert [n for n in res.notes if "holds no dots" in n] == [
        n for n in res.notes if n.startswith("img0.png's annotation")], "named, once"
    assert any("holds no dots" in n for n in res.notes)
    assert not any("to train on" in n for n in res.notes), "three training images: no note"
    assert any(n.startswith("too few images to learn what yours look like (3 annotated image(s), 4 needed)")
               for n in res.notes), res.notes
    # every export failed: refused before training (a density fine-tune crashed dividing by its count gain of 0)
    for i in (1, 2):
        (data / f"img{i}_points.csv").write_text("x,y\n")
    with pytest.raises(GroundTruthError, match=r"every annotation holds no objects \(those of img0.png, img1.png, "
                                               r"img2.png\): there is nothing to learn"):
        finetune(base_dir, data, name="no-dots", steps=1, holdout=0, batch_size=2, crop=32)
    assert "no-dots" not in list_models()
    # the only dots are in the held-out images: that is what to change, not the export
    (data / "img2_points.csv").write_text("x,y\n12,12\n30,12\n")
    with pytest.raises(GroundTruthError, match=r"The images with objects \(img2.png\) are all held out: hold out "
                                               r"fewer, or others"):
        finetune(base_dir, data, name="no-dots", steps=1, holdout=2, batch_size=2, crop=32)


@pytest.mark.slow
def test_a_fine_tune_far_off_on_its_held_out_images_flags_every_count(tiny_model, tmp_path, draw_disks):
    """Its own flag is fitted on the images it learnt, so it stayed quiet on images like them where a short
    fine-tune was still far off (a 20-step one flagged none of its 27% undercounts): a held-out error of 15% or
    more on average flags every count with that reason; a good one, or one held-out image, does not."""
    from cellcount.finetune import heldout_flag_reason

    assert heldout_flag_reason({"n": 4.0, "mape": 27.0}, "m").startswith("m counted its 4 held-out images 27% off")
    assert heldout_flag_reason({"n": 4.0, "mape": 9.0}, "m") is None
    assert heldout_flag_reason({"n": 2.0, "mape": 17.0}, "m") is None, "two images say little (3.8% off on ten new)"
    assert heldout_flag_reason({}, "m") is None, "nothing held out"
    assert heldout_flag_reason({"n": 4.0, "mape": 60.0}, "m", scored=3) is None, "one of the four had no objects"
    base_dir = tmp_path / "base"
    base = tiny_model(kind="density")
    save_model(base.net, base.card, base_dir)
    res = finetune(base_dir, _folder(tmp_path, draw_disks, "points", n=6), name="short", steps=1, holdout=4,
                   batch_size=2, crop=32)
    model = load_model(res.folder)
    mape = model.card.metrics["holdout_after"]["mape"]
    assert mape >= 15, "one step of an untrained tiny network: far off (the case under test)"
    assert "held-out images" in model.card.extra["quality"]["rule"]["always"]
    assert any("every count of it is flagged" in n for n in res.notes)
    result = cc.count_image(np.full((64, 64), 20, np.uint8), model)
    assert result.quality.flag and any("held-out images" in r for r in result.quality.reasons)
    # fine-tuned again with nothing held out: no verdict of its own, and not its base's either
    (tmp_path / "b").mkdir()
    again = load_model(finetune(res.folder, _folder(tmp_path / "b", draw_disks, "points", n=4), name="again",
                                steps=1, holdout=0, batch_size=2, crop=32).folder)
    assert "always" not in again.card.extra["quality"]["rule"]


def test_a_few_held_out_images_counted_just_within_the_large_error_flag_every_count_when_they_cannot_show_it():
    """A tester's fine-tune counted its 5 held-out fat-cell images 13.7% off and 13 of 20 new ones more than 15%
    off, none flagged: five images cannot show a mean under 15%, so the bound on it flags every count; five counted
    about 2% off, or many images 12% off with little spread, do not."""
    from cellcount.finetune import heldout_error_bound, heldout_flag_reason

    spread = [0.02, 0.08, 0.12, 0.18, 0.285]  # mean 13.7%
    assert heldout_error_bound(spread) > 0.15
    reason = heldout_flag_reason({"n": 5.0, "mape": 13.7}, "m", rel_errors=spread)
    assert reason.startswith("m counted its 5 held-out images 14% off on average when it was fine-tuned, and 5 "
                             "images cannot show it within 15% (it may be ")
    assert heldout_flag_reason({"n": 5.0, "mape": 13.7}, "m") is None, "the mean alone stays under the limit"
    good = [0.016, 0.0, 0.063, 0.0, 0.016]  # the probe's 1.9%
    assert heldout_error_bound(good) < 0.04
    assert heldout_flag_reason({"n": 5.0, "mape": 1.9}, "m", rel_errors=good) is None
    many = [0.12 + 0.01 * ((i % 5) - 2) for i in range(40)]
    assert heldout_flag_reason({"n": 40.0, "mape": 12.0}, "m", rel_errors=many) is None
    assert heldout_flag_reason({"n": 4.0, "mape": 27.0}, "m", rel_errors=[0.27] * 4).startswith(
        "m counted its 4 held-out images 27% off on average when it was fine-tuned, so every count")
    assert heldout_flag_reason({"n": 3.0, "mape": 13.7}, "m", rel_errors=spread[:3]) is None, "too few to judge"
    assert heldout_error_bound([0.1]) != heldout_error_bound([0.1]), "one image: no bound (NaN)"
    near = heldout_flag_reason({"n": 5.0, "mape": 14.8}, "m", rel_errors=[0.02, 0.08, 0.12, 0.18, 0.34])
    assert "held-out images 14.8% off on average" in near, "not '15% off ... cannot show it within 15%'"


def test_the_saved_card_flags_every_count_when_the_held_out_bound_reaches_the_large_error():
    """The held-out counts reach the bound: five images 13.7% off on average, spread 2-28%, put the reason on the
    card and say so in the notes; the same mean without the spread does not."""
    import types

    from cellcount.finetune.core import _heldout_flag
    from cellcount.finetune.stages import Run
    from cellcount.models.card import ModelCard

    def verdict(afters):
        counts = [{"file": f"i{k}.png", "true": 100.0, "before": 100.0, "after": a} for k, a in enumerate(afters)]
        mape = sum(abs(a - 100.0) for a in afters) / len(afters)
        card = ModelCard(name="m", architecture="unet", output_kind="mask")
        return types.SimpleNamespace(card=card, kept_base=False, kept_worse=False, scores=types.SimpleNamespace(
            after={"n": float(len(afters)), "mape": mape}, counts=counts))

    spread, run = verdict([98, 108, 112, 82, 128.5]), Run(lambda p: None)
    _heldout_flag(spread, name="m", run=run)
    assert "5 images cannot show it within 15%" in spread.card.extra["quality"]["rule"]["always"]
    assert run.notes == ["m counted the held-out images 14% off on average, and so few images may show it better "
                         "than it is: every count of it is flagged 'check this image' with that reason"]
    even, run = verdict([86.3] * 5), Run(lambda p: None)
    _heldout_flag(even, name="m", run=run)
    assert "always" not in (even.card.extra.get("quality") or {}).get("rule", {}) and not run.notes


@pytest.mark.slow
def test_a_segmentation_fine_tuned_on_dots_that_counts_its_own_images_far_off_points_to_a_density_model(
        tiny_model, tmp_path, draw_disks):
    """On vgg_cells (crowded cells) a unet-mask fine-tune from dots counted held-out images ~27% off where
    unet-density's reaches ~2%: when even its training images are counted 15% or more off, the result says so and
    names the density model; from label images (outlines given) it does not."""
    base_dir = tmp_path / "base"
    base = tiny_model(kind="mask")
    save_model(base.net, base.card, base_dir)
    hint = "fine-tune unet-density instead"
    res = finetune(base_dir, _folder(tmp_path, draw_disks, "points"), name="dots", steps=1, holdout=0,
                   batch_size=2, crop=32)
    pred = [cc.count_image(cc.read_image(p), load_model(res.folder)).count
            for p in sorted((tmp_path / "data-points").glob("img?.png"))]
    true = [3, 4, 5, 6]
    far = np.mean([abs(p - t) / t for p, t in zip(pred, true)]) >= 0.15
    assert far, "an untrained tiny network after one step: far off (the case under test)"
    assert any(hint in n and "% off on average" in n for n in res.notes)
    res = finetune(base_dir, _folder(tmp_path, draw_disks, "labels"), name="labels", steps=1, holdout=0,
                   batch_size=2, crop=32)
    assert not any(hint in n for n in res.notes), "outlines were given: no advice to count from dots"


def test_cli_ctrl_c_says_nothing_was_saved(monkeypatch, capsys, tmp_path):
    import cellcount.finetune as ft

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("cellcount.finetune.cli.finetune", interrupted)
    assert ft.main(["--from", "unet-mask", "--data", str(tmp_path), "--name", "n", "--steps", "1"]) == 130
    assert "interrupted: the fine-tune stopped and nothing was saved" in capsys.readouterr().err


@pytest.mark.slow
def test_a_budget_that_buys_few_steps_says_so(tiny_model, tmp_path, draw_disks, monkeypatch):

    monkeypatch.setattr("cellcount.finetune.core.FEW_STEPS", 10**6)  # a tiny network buys many steps in any budget
    base_dir = tmp_path / "base"
    base = tiny_model(kind="density")
    save_model(base.net, base.card, base_dir)
    data = _folder(tmp_path, draw_disks, "points", n=3)
    res = finetune(base_dir, data, name="short", minutes=0.3, holdout=0, batch_size=2, crop=32, max_steps=None)
    assert any(f"bought only {res.steps} training step(s)" in n for n in res.notes)
    # most of a budget kept for reading and scoring: said (a 5-minute run ended in 2.5 without a word)
    monkeypatch.setattr("cellcount.finetune.core._train_budget", lambda *a, **k: 12.0)
    short = finetune(base_dir, data, name="shorter", minutes=0.5, holdout=0, batch_size=2, crop=32, max_steps=None)
    assert any("the 0.5-min budget leaves 12 s of training: the rest is for reading, scoring and re-tuning these 3 "
               "images" in n for n in short.notes), short.notes
    fixed = finetune(base_dir, data, name="fixed", steps=2, holdout=0, batch_size=2, crop=32)
    assert not any("bought only" in n for n in fixed.notes), "a fixed number of steps is the user's choice"


def test_worse_than_base_needs_clear_evidence():
    assert worse_than_base({"mae": 2.0, "n": 10}, {"mae": 2.5, "n": 10}), "5 objects and 25% worse"
    assert not worse_than_base({"mae": 4.0, "n": 2}, {"mae": 4.5, "n": 2}), "one nucleus on one of two images"
    assert not worse_than_base({"mae": 10.0, "n": 40}, {"mae": 10.4, "n": 40}), "within 5% of the base"
    assert not worse_than_base({"mae": 2.0, "n": 10}, {"mae": 2.0, "n": 10}), "as good is no harm"
    assert not worse_than_base({}, {}), "no held-out images, nothing to compare"
    assert not worse_than_base({"mae": float("nan")}, {"mae": 3.0})


@pytest.mark.slow
def test_weights_that_count_the_held_out_images_worse_are_not_saved(tiny_model, tmp_path, draw_disks, monkeypatch,
                                                                    capsys):
    """A fine-tune on a set the base already knows can do harm (docs/finetuning.md: +0.5 to +1.0 MAE on DSB
    from dots): the new model then keeps the base's weights and settings, and says so."""
    from cellcount.models.card import sha256_file

    base_dir = tmp_path / "base"
    base = tiny_model(kind="density")
    base_dir.mkdir()
    sha = NoveltyReference.fit(np.random.default_rng(0).normal(size=(8, 16))).save(base_dir / NOVELTY_FILE)
    caveat = "not for H&E bone marrow as it is (mbm: off by a median 87%; docs/quality.md)"
    base.card.extra = {**base.card.extra, "novelty": {"file": NOVELTY_FILE, "sha256": sha},
                       "guide_note": f"{caveat}: fine-tune it on a few of your images first"}
    save_model(base.net, base.card, base_dir)
    data = _folder(tmp_path, draw_disks, "points")
    monkeypatch.setattr("cellcount.finetune.core.worse_than_base", lambda before, after: True)
    res = finetune(base_dir, data, name="mine-kept", steps=2, holdout=1, batch_size=2, crop=32)
    assert res.kept_base and any("keeps" in n and f"--keep-worse --steps {res.steps}" in n for n in res.notes)
    assert res.reading.startswith("as ") and "were kept" in res.reading
    model = load_model(res.name)
    assert sha256_file(res.folder / model.card.weights_file) == base.card.sha256, "the base's weights, byte for byte"
    assert model.card.postprocess == load_model(base_dir).card.postprocess
    assert model.card.training["kept_base_weights"] is True
    # how the discarded weights were trained and read images is set apart (a tester read their "size: set, 53.6 px"
    # on a model that sizes each image as its base does)
    discarded = model.card.training["discarded_finetune"]
    assert discarded["steps"] == res.steps and "size" in discarded and "precision" in discarded
    assert not {"size", "object_diameter_px", "steps", "precision"} & set(model.card.training)
    assert model.card.training["data"]["holdout_files"] and model.card.training["finetuned_from"]
    assert model.card.metrics["holdout_after"] == model.card.metrics["holdout_before"]
    assert model.card.metrics["holdout_after"]["mae"] == res.before["mae"]
    assert model.card.metrics["holdout_finetuned_weights"]["mae"] == res.after["mae"]
    assert "fine-tuned weights" in model.card.summary() and "not kept" in model.card.summary()
    # the guide neither offers it for "images like the set it was fine-tuned on" nor repeats "fine-tune it" (a tester)
    from cellcount.models.guide import model_guide

    guide = model_guide(model.card)
    assert "fine-tuned on" not in guide.images and guide.images == model_guide(load_model(base_dir).card).images
    assert guide.note.startswith(f"it keeps {load_model(base_dir).name}'s weights and settings, as the fine-tune counted")
    # the base's caveat stays, without its advice to fine-tune (done, and it did not help)
    assert guide.note.endswith(f"; {caveat}") and "fine-tune it on" not in guide.note
    assert model.novelty is not None, "the base's encoder, so the base's novelty reference"
    b = load_model(base_dir)
    assert model.card.density_scale == b.card.density_scale and model.card.extra.get("quality") == b.card.extra.get("quality")
    assert model.card.extra["novelty"]["sha256"] == sha and model.card.normalization == b.card.normalization
    img = draw_disks((64, 64), [(20, 20), (44, 40)], 6).astype(np.float32)
    assert cc.count_image(img, model).count_estimate == cc.count_image(img, b).count_estimate, "counts as the base"
    assert "holdout_paired_mae_difference_finetuned" in model.card.metrics and not res.size_note
    # the base's weights learnt nothing from the user's images: none of them is left out of its scores as seen in
    # training (a tester's Evaluate scored 2 of 8 images, Compare 1 of 4), and no count gain of the discarded weights
    assert not model.card.training_digests() - b.card.training_digests()
    assert not model.card.training_pixel_digests() - b.card.training_pixel_digests()
    assert not any("counts are scaled by" in n for n in res.notes)
    kept = finetune(base_dir, data, name="mine-forced", steps=2, holdout=1, batch_size=2, crop=32, keep_worse=True)
    forced = load_model("mine-forced").card
    assert not kept.kept_base and forced.training["kept_base_weights"] is False and forced.training["keep_worse"] is True
    assert forced.training_digests(), "weights fine-tuned on the images did learn from them"
    # kept over the verdict: every count flagged, and the guide says to count with the base (a tester's 6-image
    # fine-tune, kept at 2.3x its base's held-out error, left 27-30% undercounts unflagged)
    # (worse_than_base patched above: these weights count as the verdict's "clearly worse")
    assert "counted its held-out images worse than" in forced.extra["quality"]["rule"]["always"]
    assert forced.extra["guide_note"].startswith("it counted your held-out images worse than")
    assert any("is kept although it counted the held-out images worse" in n for n in kept.notes)
    assert any("(fewer than 8) mine-forced's quality flag could not be fitted to your images" in n for n in kept.notes)
    assert not any("(fewer than 8)" in n for n in res.notes), "the base's weights kept: the base's own flag"
    flagged = cc.count_image(img, load_model("mine-forced")).quality
    assert flagged.flag and any("was kept all the same" in r for r in flagged.reasons)
    # a fine-tune of that fine-tune: its own story, not its parent's, and the licence said once
    # a fine-tune of it that keeps its weights keeps its verdict too: it counts as mine-forced does
    kept2 = finetune("mine-forced", data, name="mine-kept2", steps=2, holdout=1, batch_size=2, crop=32)
    assert kept2.kept_base and "worse than" in load_model("mine-kept2").card.extra["quality"]["rule"]["always"]
    again = finetune("mine-forced", data, name="mine-again", steps=2, holdout=1, batch_size=2, crop=32, keep_worse=True)
    card = load_model(again.name).card
    assert card.description.count("Fine-tuned from") == 1 and "Fine-tuned from mine-forced" in card.description
    assert "(1 more held out to score it)" in card.description, "the images given: trained on, and held out"
    from cellcount.cli import main

    assert main(["models", "--card", again.name]) == 0  # the base's images beside the user's, said which they are
    shown = json.loads(capsys.readouterr().out)["training"]
    assert shown["data"]["train_files"] and "the images mine-forced and the models it came from learnt from" in shown[
        "train_sha256"]
    assert card.license.count("fine-tuned on user data") == 1


def test_a_fine_tunes_object_share_and_size_limits_are_never_tighter_than_its_bases():
    from cellcount.finetune.flag import _no_tighter_than
    from cellcount.quality import QualityRule

    mine = QualityRule(max_merge_share=0.033, max_touching_share=None, max_large_object_share=0.9,
                       max_size_ratio=2.35, max_uncertain_fraction=0.2)
    base = QualityRule(max_merge_share=0.38, max_touching_share=0.66, max_large_object_share=0.5,
                       max_size_ratio=2.9, max_uncertain_fraction=0.7)
    got = _no_tighter_than(mine, base)
    assert (got.max_merge_share, got.max_touching_share, got.max_large_object_share) == (0.38, 0.66, 0.9)
    assert got.max_size_ratio == 2.9
    assert got.max_uncertain_fraction == 0.2, "the other limits stay its own"


def test_cli_says_when_the_bases_weights_were_kept(monkeypatch, capsys, tmp_path):
    import cellcount.finetune as ft

    monkeypatch.setattr("cellcount.finetune.cli.finetune", lambda *a, **k: ft.FinetuneResult(
        folder=tmp_path, name="new", steps=1, seconds=1.0, before={"mae": 2.0}, after={"mae": 9.0}, kept_base=True,
        paired={"difference": 7.0, "low": 5.0, "high": 9.0}, holdout_files=["a", "b"],
        notes=["the fine-tuned weights counted the 2 held-out image(s) worse than unet-mask"]))
    assert ft.main(["--from", "unet-mask", "--data", str(tmp_path), "--name", "new", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "count MAE 2.00 -> 9.00 (the fine-tuned weights, not saved" in out
    assert "the fine-tuned model (not kept) counts these images worse" in out and "new keeps unet-mask's weights" in out


def test_own_novelty_reads_the_training_images_in_the_new_encoders_terms(tiny_model, draw_disks, monkeypatch):
    from cellcount import pipeline
    from cellcount.finetune import own_novelty

    model = tiny_model()
    monkeypatch.setattr(model, "predict_maps", lambda view, **kw: np.stack([view, np.zeros_like(view)]))
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(9):
        centres = [tuple(c) for c in rng.uniform(20, 236, (12, 2))]
        img = (draw_disks((256, 256), centres, 7) > 0).astype(np.float32)
        pairs.append((f"{i}.png", pipeline.predict(img, model), None))
    from cellcount.finetune import MIN_NOVELTY_LIMIT

    ref, limit = own_novelty(model, pairs, density=False)
    assert len(ref.features) == 9 and limit > ref.self_scores().max() and limit >= MIN_NOVELTY_LIMIT
    small, _ = own_novelty(model, pairs[:4], density=False)
    assert len(small.features) == 4, "a few images give a (rough) reference: without one nothing is ever unlike them"
    assert own_novelty(model, pairs[:3], density=False) is None, "no more than its k nearest: nothing to fit"


@pytest.mark.slow
def test_a_fine_tune_keeps_its_own_novelty_reference(tiny_model, tmp_path, draw_disks, monkeypatch):

    base_dir = tmp_path / "base"
    base = tiny_model(kind="density")
    save_model(base.net, base.card, base_dir)
    data = _folder(tmp_path, draw_disks, "points")
    ref = NoveltyReference.fit(np.random.default_rng(1).normal(size=(10, 16)))
    judged = []

    def own(model, pairs, *, density):
        judged.extend(name for name, _, _ in pairs)
        return ref, 1.5

    monkeypatch.setattr("cellcount.finetune.tuning.own_novelty", own)
    res = finetune(base_dir, data, name="mine-novel", steps=2, holdout=1, batch_size=2, crop=32)
    model = load_model(res.name)
    assert model.novelty is not None and model.card.extra["quality"]["rule"]["max_novelty"] == 1.5
    assert model.card.extra["novelty"]["fitted_on"].startswith("the training and held-out images of the fine-tune")
    assert sorted(judged) == sorted(res.train_files + res.holdout_files), "the user's held-out images widen it"


@pytest.mark.parametrize("helps", [False, True])
def test_re_tuned_settings_are_kept_only_where_they_count_unseen_training_images_better(
        helps, tiny_model, tmp_path, draw_disks, monkeypatch):
    """Settings tuned on a few images can fit only those: the 4-fold check decides (here forced both ways)."""
    import cellcount.evaluate as ev
    import cellcount.finetune as ft

    assert ft.MIN_CROSS_CHECK == 4
    monkeypatch.setattr(ev, "tune_params", lambda pairs, params, **kw: ev.TuneResult(
        params.replace(threshold=0.35), 2.0, 1.0, None))
    monkeypatch.setattr(ev, "cross_check", lambda pairs, params, **kw: (2.0, 1.0) if helps else (1.0, 2.0))
    base_dir = tmp_path / "base"
    base = tiny_model(kind="mask")
    save_model(base.net, base.card, base_dir)
    data = _folder(tmp_path, draw_disks, "labels", n=5)
    seen = []
    res = finetune(base_dir, data, name=f"checked-{helps}", steps=1, holdout=1, batch_size=2, crop=32,
                   progress=seen.append)
    card = load_model(res.name).card
    # (2.0 against 1.0: "worse", not "no better")
    said = [p for p in seen if "keeps tiny" in p.message and "counted the other parts worse" in p.message]
    assert bool(said) == (not helps), "the user is told when the base's settings stay"
    # said at the stage the run is in: a note sent as "prepare" put the Train page's progress bar back to 0
    assert all(p.stage == "tune" for p in said)
    stages = [p.stage for p in seen]
    assert "prepare" not in stages[stages.index("train"):]
    if helps:
        assert card.postprocess["threshold"] == 0.35 and "checked on training images" in card.postprocess_tuned_on
    else:
        assert card.postprocess["threshold"] == resolve_base_threshold(base) and "the base's settings kept" in \
            card.postprocess_tuned_on


def test_told_apart_shows_two_different_figures_as_different():
    from cellcount.finetune import told_apart

    assert told_apart(3.001, 3.0) == "3.001 against 3.000", "'worse' beside 3.00 against 3.00 reads as a mistake"
    assert told_apart(2.5, 1.25) == "2.50 against 1.25"
    assert told_apart(1.0, 1.0) == "1.00 against 1.00"


def resolve_base_threshold(base) -> float:
    return cc.resolve_params(base, None).threshold


@pytest.mark.parametrize("under_blobs", [False, True])
def test_grad_under_blobs_lets_a_relu_head_learn_cells_it_draws_none_of(tiny_model, draw_disks, under_blobs):
    import torch

    from cellcount.finetune.fit import _fit
    from cellcount.models import create_model
    from cellcount.train import DEFAULTS

    base = tiny_model(kind="density")
    net = create_model("unet", **{**base.card.kwargs, "density_act": "relu"}).float()
    with torch.no_grad():
        net.out.bias.fill_(-100.0)  # the base draws nothing anywhere: a plain ReLU passes no gradient
    before = float(net.out.bias.detach())
    _fit(net, [three_dots_item(base, draw_disks)], kind="density", steps=1, seconds=None, batch_size=2, crop=32,
         lr=1e-2, rng=np.random.default_rng(0), report=lambda p: None, cancel=None, loss_cfg=dict(DEFAULTS["loss"]),
         scale_range=(1.0, 1.0), grad_under_blobs=under_blobs)
    moved = float(net.out.bias.detach()) - before
    if under_blobs:
        assert moved > 5e-4, "(a warm-up step of lr / 10) the cells' blobs pull the head's output up"
    else:
        assert abs(moved) < 1e-4, "only the weight decay moves it"
    assert net.raw_head is False, "the trained network counts with its ReLU again"


@pytest.mark.parametrize("bad", ["a/b", "a\\b", "a:b", "x<y", "a|b", 'say "hi"', "what?", "all*", ".hidden", " pad",
                                 "trailing.", "CON", "com1.model", "del\x7f", "my-cells\u200b", "rtl\u202eexe"])
def test_a_new_model_name_must_be_a_folder_name_on_any_system(bad, tmp_path):
    from cellcount.finetune import check_new_name

    with pytest.raises(ParameterError, match="plain folder name"):
        check_new_name(bad, out_dir=tmp_path)
    assert check_new_name("marrow test #1", out_dir=tmp_path) == tmp_path / "marrow test #1"


def test_a_new_model_name_too_long_for_a_folder_is_refused_before_training(tmp_path):
    """300 characters failed with an OSError traceback (a folder name holds at most 255 bytes)."""
    from cellcount.finetune import check_new_name

    with pytest.raises(ParameterError, match="300 characters long .300 bytes.; give at most 80 characters"):
        check_new_name("x" * 300, out_dir=tmp_path)
    assert check_new_name("é" * 80, out_dir=tmp_path).name == "é" * 80
    with pytest.raises(ParameterError, match="240 bytes"):  # 80 CJK characters: the staging folder fails to save
        check_new_name("細" * 80, out_dir=tmp_path)


@pytest.mark.slow
def test_a_broken_image_is_left_out_and_a_stack_named(tiny_model, tmp_path, draw_disks):
    """A truncated file among the annotated images is named and left out, the others train (the whole fine-tune
    stopped at it); a 3-frame TIFF is named in the note (it said '<bytes>') and trains on its first frame."""
    base_dir = tmp_path / "base"
    base = tiny_model(kind="density")
    save_model(base.net, base.card, base_dir)
    data = _folder(tmp_path, draw_disks, "points", n=5)
    good = (data / "img0.png").read_bytes()
    (data / "img0.png").write_bytes(good[: len(good) // 2])  # truncated: header fine, pixels cut
    frame = np.asarray(Image.open(data / "img1.png"))
    (data / "img1.png").unlink()
    tifffile.imwrite(data / "img1.tif", np.stack([frame] * 3), photometric="minisblack", metadata={"axes": "TYX"})
    # a 20 px crop of one cell trained in silence (a tester's, alone, made weights that counted 565 for ~150)
    Image.fromarray(np.full((20, 20), 20, np.uint8)).save(data / "tiny.png")
    (data / "tiny_points.csv").write_text("x,y\n10,10\n")
    res = finetune(base_dir, data, name="mine-broken", steps=2, holdout=1, batch_size=2, crop=32, keep_worse=True)
    assert len(res.train_files) + len(res.holdout_files) == 4 and "img0.png" not in res.train_files + res.holdout_files
    assert "tiny.png" not in res.train_files + res.holdout_files
    text = " | ".join(res.notes)
    assert "left out: img0.png" in text and "<bytes>" not in text
    assert "left out: tiny.png: 20 x 20 px, too small to learn from or to score (at least 32 px on each side)" in text
    left = load_model(res.folder).card.training["data"]["left_out"]  # the card says what was not used, and why
    assert len(left) == 2 and left[0].startswith("img0.png: ")
    assert "img1.tif: the file holds 3 time points; only the first was used" in text
    # the command saves the model and exits 1, as count and evaluate do when they left a file out
    from cellcount import finetune as ft

    assert ft.main(["--from", str(base_dir), "--data", str(data), "--name", "mine-broken-cli", "--steps", "2",
                    "--holdout", "1", "--keep-worse"]) == 1
    assert load_model("mine-broken-cli").name == "mine-broken-cli"


def test_a_flag_that_marks_most_training_images_is_said(tiny_model, tmp_path, draw_disks, monkeypatch):
    """A fine-tune whose flag marked all its training images said nothing: every count came out flagged."""
    from cellcount import finetune as ft

    base_dir = tmp_path / "base"
    base = tiny_model(kind="density")
    save_model(base.net, base.card, base_dir)
    data = _folder(tmp_path, draw_disks, "points", n=3)
    real = ft.calibrate_flag

    def marks_all(*args, **kwargs):
        entry = real(*args, **kwargs)
        return {**entry, "calibration": {**entry.get("calibration", {}), "flagged_share": 1.0}}

    monkeypatch.setattr("cellcount.finetune.tuning.calibrate_flag", marks_all)
    res = finetune(base_dir, data, name="marks-all", steps=1, holdout=0, batch_size=2, crop=32)
    assert any(n.startswith("marks-all's quality flag marks 100% of the images it learnt") for n in res.notes)


def test_a_gain_made_by_the_settings_alone_is_said():
    """A 20-step fine-tune read MAE 129 -> 4.00, the base's weights with its settings 3.00, and the verdict credited
    the fine-tune."""
    from cellcount.finetune import settings_gain_note

    text = settings_gain_note("unet-mask", "mbm1", {"mae": 4.0}, {"mae": 3.0})
    assert text.startswith("unet-mask's own weights with mbm1's settings counted the held-out images better than "
                           "the fine-tuned weights (MAE 3.00 against 4.00): the change is the settings'")
    assert "as well as" in settings_gain_note("b", "n", {"mae": 2.0}, {"mae": 2.0})
    assert settings_gain_note("b", "n", {"mae": 2.0}, {"mae": 9.0}) == "", "the training did the rest"
    assert settings_gain_note("b", "n", {"mae": 2.0}, {}) == "", "no settings-only figure (density, same settings)"
    # the base's postprocessing kept (its own note says so): the settings that differ are the input's, not
    # "input and postprocessing" (a tester read the two notes as contradicting each other)
    kept = settings_gain_note("b", "n", {"mae": 4.0}, {"mae": 3.0}, postprocessing_kept=True)
    assert "the change is the input settings'" in kept and "the postprocessing is the base's" in kept
    assert "input and postprocessing" not in kept


def test_a_fine_tune_never_goes_into_the_shipped_weights_folder():
    """--out-dir weights/ --name unet-mask --overwrite passed the name check and would have replaced (deleted)
    the shipped model's weights."""
    from cellcount.finetune import check_new_name
    from cellcount.models.loading import DEFAULT_WEIGHTS_DIR

    for name in ("unet-mask", "new-model"):
        with pytest.raises(ParameterError, match="holds the shipped models"):
            check_new_name(name, out_dir=DEFAULT_WEIGHTS_DIR, overwrite=True)


def test_held_out_images_the_base_learnt_from_are_swapped_for_unseen_ones():
    """A fine-tune held out one of unet-mask's own DSB training images: the base's 'before' there flattered it,
    and that comparison decides whether the base's weights are kept."""
    import hashlib

    from cellcount.finetune.data import _hold_out_unseen

    items = [(f"im{i}.png", f"bytes {i}".encode(), None) for i in range(7)]
    seen = {hashlib.sha256(f"bytes {i}".encode()).hexdigest() for i in (1, 3)}
    train, held, named, moved = _hold_out_unseen(items, [0, 2, 4, 5, 6], [1, 3], seen)
    assert len(held) == 2 and set(held) <= {0, 2, 4, 5, 6} and sorted(train + held) == list(range(7))
    assert {1, 3} <= set(train) and named == [] and moved == ["im1.png", "im3.png"]
    # their places go to whole groups whose tiles the base did not learn (the first unseen by index split slide C)
    slides = [(f"slide{c}_{i}.png", f"{c}{i}".encode(), None) for c in "ABCD" for i in (1, 2, 3)]
    learnt = {hashlib.sha256(f"C{i}".encode()).hexdigest() for i in (1, 2)}
    train, held, _, moved = _hold_out_unseen(slides, [i for i in range(12) if i not in (6, 7)], [6, 7], learnt)
    assert moved == ["slideC_1.png", "slideC_2.png"] and 8 in train, "slideC_3 trains beside its learnt tiles"
    assert len({slides[i][0][:6] for i in held}) == 1 and not {slides[i][0][:6] for i in held} & {slides[i][0][:6] for i in train}
    # unseen images held out already stay; the learnt ones go to training even where none can take their place (a
    # tester's round two held out 4 of its base's own images beside new ones, and kept the base's weights on them)
    train, held, named, moved = _hold_out_unseen(items, [0, 2], [1, 3, 4, 5, 6], seen)
    assert held == [4, 5, 6] and train == [0, 1, 2, 3] and named == [] and moved == ["im1.png", "im3.png"]
    # half of the unseen images at least keep training: a user's few new images are what a fine-tune is for
    many = {hashlib.sha256(f"bytes {i}".encode()).hexdigest() for i in range(5)}  # 5 seen, 2 new (5, 6)
    train, held, named, moved = _hold_out_unseen(items, [0, 1, 2, 5, 6], [3, 4], many)
    assert held == [5] and train == [0, 1, 2, 3, 4, 6] and moved == ["im3.png", "im4.png"]
    # nothing unseen to hold out: they stay, named for the caller's note
    every = {hashlib.sha256(f"bytes {i}".encode()).hexdigest() for i in range(7)}
    assert _hold_out_unseen(items, [0, 2], [1], every) == ([0, 2], [1], ["im1.png"], [])
    assert _hold_out_unseen(items, [0, 2], [1], set()) == ([0, 2], [1], [], [])


def test_a_folder_of_plates_names_its_images_apart(samples_dir, tmp_path):
    import shutil

    from cellcount.finetune.data import _labelled_items

    for plate, name in (("plate1", "s01_sparse_small"), ("plate2", "s02_dense_clusters")):
        (tmp_path / plate).mkdir()
        shutil.copy(samples_dir / f"{name}.png", tmp_path / plate / "A01.png")
        shutil.copy(samples_dir / f"{name}_labels.tif", tmp_path / plate / "A01_labels.tif")
    items, source = _labelled_items(tmp_path)
    # the held-out split, the card's list of images and the scores tell the two A01.png apart
    assert sorted(n for n, _, _ in items) == ["plate1/A01.png", "plate2/A01.png"]
    assert source == f"folder {tmp_path.name}", "the folder's name on a card that may be shared, not its path"


@pytest.mark.slow
def test_a_density_fine_tune_reading_images_otherwise_scores_the_base_with_its_input_settings(tiny_model, tmp_path,
                                                                                              draw_disks):
    """A tester's 12-step density fine-tune on mbm read MAE 107.7 -> 8.8 with the images now inverted and read at
    13 px, and nothing said how much of it the reading alone made (only segmentation fine-tunes had that figure)."""
    base_dir = tmp_path / "base"
    base = tiny_model(kind="density")
    save_model(base.net, base.card, base_dir)
    data = _folder(tmp_path, draw_disks, "points", n=5)
    res = finetune(base_dir, data, name="read-otherwise", steps=2, holdout=2, batch_size=2, crop=32, keep_worse=True,
                   diameter_px=30.0)
    assert load_model(res.folder).card.postprocess["nucleus_diameter_px"] == 30.0
    assert res.settings_only.get("n") == 2 and "mae" in res.settings_only, res.settings_only
